//! Guests per language: the `summary` and `threshold` examples in Rust,
//! Python, JavaScript and C. For each: the component's size, the first load
//! (compile and cache), a cached load by a new engine (a restart), the compile
//! of a new version (the same code with a custom section added: not in the
//! artifact cache, its functions in the compiled functions' cache), and the
//! cost of one call with a 100-sample window. Every figure is also printed as a
//! ratio to the Rust guest, measured in the same run. A second table compiles
//! each `summary` three ways: as the agent does (Cranelift optimising, a
//! module's functions compiled on several threads), on one thread, and
//! unoptimised; with the call cost of the unoptimised code beside the
//! optimised one's.
//!
//! Build the guests first: `examples/build.sh`, `examples/python/build.sh`,
//! `examples/js/build.sh`, `examples/c/build.sh`; then
//! `cargo bench -p komlogd --bench languages`. `KOMLOGD_BENCH_QUICK=1` gives a
//! short run.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use komlogd::engine::bindings::Context;
use komlogd::engine::{Engine, EngineConfig, Limits};
use komlogd::impulses::window::WindowEncoder;
use komlogd::model::Value;

const LANGUAGES: [&str; 4] = ["rust", "python", "js", "c"];

fn component(lang: &str, name: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/target");
    let path = if lang == "rust" {
        examples.join(format!("wasm32-wasip2/release/{name}.wasm"))
    } else {
        examples.join(format!("{lang}/{name}.wasm"))
    };
    if !path.exists() {
        eprintln!(
            "{} is missing: build the {lang} examples first (see the header of this file)",
            path.display()
        );
        std::process::exit(2);
    }
    path
}

fn engine(cache: &Path) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(cache.to_owned()),
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// An engine without a compiled cache, compiling the given way.
fn compiling_engine(parallel_compilation: bool, optimize: bool) -> Engine {
    Engine::new(&EngineConfig {
        parallel_compilation,
        optimize,
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// Compile times of `summary` (median of `rounds`, ms): parallel and
/// optimised (the agent's way), one thread, unoptimised; and the call cost of
/// the optimised and the unoptimised code (µs).
fn compile_strategies(lang: &str, rounds: usize, iterations: usize) -> [f64; 5] {
    let summary = component(lang, "summary");
    let compile_ms = |parallel: bool, optimize: bool| {
        let mut times: Vec<f64> = (0..rounds)
            .map(|_| {
                let engine = compiling_engine(parallel, optimize);
                let t = Instant::now();
                let module = engine.load(&summary).expect("compile");
                let ms = t.elapsed().as_secs_f64() * 1e3;
                assert!(!module.from_cache());
                ms
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        times[times.len() / 2]
    };
    let call_us = |optimize: bool| {
        let engine = compiling_engine(true, optimize);
        let module = engine.load(&summary).expect("load");
        let mut instance = module
            .instantiate(Arc::from(format!("{lang}-summary")), Limits::default())
            .expect("instantiate");
        let ctx = context("summary");
        for _ in 0..iterations / 10 {
            let _ = black_box(instance.on_update(&ctx));
        }
        median_us(iterations, || {
            let _ = black_box(instance.on_update(&ctx));
        })
    };
    [
        compile_ms(true, true),
        compile_ms(false, true),
        compile_ms(true, false),
        call_us(true),
        call_us(false),
    ]
}

/// A component's bytes with a custom section appended: a new version (another
/// hash) with the same code.
fn with_custom_section(bytes: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"komlogd-bench";
    const PAYLOAD: &[u8] = b"next";
    let body_len = 1 + NAME.len() + PAYLOAD.len();
    assert!(
        NAME.len() < 128 && body_len < 128,
        "one-byte LEB128 lengths"
    );
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0, body_len as u8, NAME.len() as u8]);
    out.extend_from_slice(NAME);
    out.extend_from_slice(PAYLOAD);
    out
}

/// Median of per-iteration times, in µs.
fn median_us(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// A fire of `name` on `uri` with a window of 100 datapoints 30 s apart
/// (all inside summary's hour).
fn context(name: &str) -> Context {
    let uri = "cpu.system";
    let ts = 36_000_000_000i64;
    let mut encoder = WindowEncoder::new();
    for i in 0..100i64 {
        let t = ts - (99 - i) * 30_000_000;
        encoder.push(uri, t, &Value::Datapoint(20.0 + (i % 17) as f64 * 3.5));
    }
    let mut window = Vec::new();
    encoder.finish_into(&mut window).expect("encode");
    let params = if name == "threshold" {
        vec![("threshold".to_string(), "50".to_string())]
    } else {
        vec![]
    };
    Context {
        ts,
        updated: vec![uri.into()],
        others: vec!["cpu.user".into()],
        params,
        window,
    }
}

struct Row {
    lang: &'static str,
    bytes: u64,
    first_load_ms: f64,
    cached_load_ms: f64,
    new_version_ms: f64,
    summary_call_us: f64,
    threshold_call_us: f64,
}

fn measure(lang: &'static str, iterations: usize, root: &Path) -> Row {
    let cache = root.join(lang);
    let summary = component(lang, "summary");
    let bytes = std::fs::metadata(&summary).map(|m| m.len()).unwrap_or(0);

    let t = Instant::now();
    let first = engine(&cache).load(&summary).expect("first load");
    let first_load_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(!first.from_cache());
    drop(first);

    // A restart: a new engine loads the cached artifact (median of 5).
    let mut cached: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let module = engine(&cache).load(&summary).expect("cached load");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert!(module.from_cache());
            ms
        })
        .collect();
    cached.sort_by(|a, b| a.total_cmp(b));
    let cached_load_ms = cached[cached.len() / 2];

    // A new version, by a new engine: compiled, from the functions kept by
    // the first compile.
    let next = with_custom_section(&std::fs::read(&summary).expect("read summary"));
    let t = Instant::now();
    let module = engine(&cache)
        .load_bytes(&next, &summary.with_extension("next.wasm"))
        .expect("load a new version");
    let new_version_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(!module.from_cache());
    drop(module);

    let engine = engine(&cache);
    let call = |name: &str| {
        let module = engine.load(&component(lang, name)).expect("load");
        let mut instance = module
            .instantiate(Arc::from(format!("{lang}-{name}")), Limits::default())
            .expect("instantiate");
        let ctx = context(name);
        let out = instance.on_update(&ctx).expect("call").expect("ok");
        assert_eq!(out.len(), 1, "{lang} {name}: one output");
        for _ in 0..iterations / 10 {
            let _ = black_box(instance.on_update(&ctx));
        }
        median_us(iterations, || {
            let _ = black_box(instance.on_update(&ctx));
        })
    };
    let summary_call_us = call("summary");
    let threshold_call_us = call("threshold");
    Row {
        lang,
        bytes,
        first_load_ms,
        cached_load_ms,
        new_version_ms,
        summary_call_us,
        threshold_call_us,
    }
}

fn main() {
    let quick = std::env::var_os("KOMLOGD_BENCH_QUICK").is_some();
    let iterations = if quick { 50 } else { 500 };
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "Guests per language: summary and threshold examples ({iterations} calls per median)\n"
    );
    println!(
        "   {:<7} {:>11} {:>14} {:>15} {:>19} {:>21}",
        "lang", "bytes", "first load ms", "cached load ms", "summary call µs", "threshold call µs"
    );
    let rows: Vec<Row> = LANGUAGES
        .iter()
        .map(|lang| measure(lang, iterations, dir.path()))
        .collect();
    let rust = &rows[0];
    for r in &rows {
        println!(
            "   {:<7} {:>11} {:>14.0} {:>15.2} {:>19.1} {:>21.1}",
            r.lang,
            r.bytes,
            r.first_load_ms,
            r.cached_load_ms,
            r.summary_call_us,
            r.threshold_call_us
        );
    }
    println!("\n   ratio to the Rust guest:");
    for r in &rows {
        println!(
            "   {:<7} {:>10.1}x {:>13.1}x {:>14.1}x {:>18.1}x {:>20.1}x",
            r.lang,
            r.bytes as f64 / rust.bytes as f64,
            r.first_load_ms / rust.first_load_ms,
            r.cached_load_ms / rust.cached_load_ms,
            r.summary_call_us / rust.summary_call_us,
            r.threshold_call_us / rust.threshold_call_us
        );
    }
    let rounds = if quick { 1 } else { 3 };
    println!(
        "\n   compiling summary (median of {rounds}): as the agent does, on one thread, unoptimised"
    );
    println!(
        "   {:<7} {:>12} {:>14} {:>16} {:>15} {:>18}",
        "lang", "agent ms", "1 thread ms", "unoptimised ms", "agent call µs", "unoptimised call µs"
    );
    for lang in LANGUAGES {
        let [agent, serial, unopt, call, unopt_call] = compile_strategies(lang, rounds, iterations);
        println!(
            "   {:<7} {:>12.0} {:>8.0} ({:.2}x) {:>9.0} ({:.2}x) {:>15.1} {:>11.1} ({:.2}x)",
            lang,
            agent,
            serial,
            serial / agent,
            unopt,
            unopt / agent,
            call,
            unopt_call,
            unopt_call / call
        );
    }
    println!("\n   cached load vs first load, same language:");
    for r in &rows {
        println!(
            "   {:<7} {:.4}x ({:.0}x faster)",
            r.lang,
            r.cached_load_ms / r.first_load_ms,
            r.first_load_ms / r.cached_load_ms
        );
    }
    println!(
        "\n   a new version's compile (functions from the cache) vs first load, same language:"
    );
    for r in &rows {
        println!(
            "   {:<7} {:>8.0} ms vs {:>8.0} ms: {:.2}x",
            r.lang,
            r.new_version_ms,
            r.first_load_ms,
            r.new_version_ms / r.first_load_ms
        );
    }
}
