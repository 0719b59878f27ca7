//! The on-disk cache of compiled modules: a second engine (a restart) loads the
//! artifact instead of compiling, also for the large Python and JavaScript
//! guests, and a damaged artifact is rebuilt, not fatal. Each test has a cache
//! of its own, fresh, so what it asserts about compiling does not depend on
//! earlier runs. How much faster a cached load is than compiling is measured by
//! `cargo bench -p komlogd --bench languages` (first load and cached load per
//! language), not asserted here. Beside the artifacts, the cache keeps compiled
//! functions (`functions/`), so a new version of a large guest compiles only
//! what changed.

use std::sync::Arc;

use komlogd::engine::{Engine, EngineConfig, Limits};
use komlogd_tests::{guest, lang_guest, with_custom_section};

/// The compiled artifacts (`.cwasm`) in a cache directory.
fn artifacts(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

/// The sizes of the compiled-function packs in a cache directory, by name.
fn function_packs(cache: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    std::fs::read_dir(cache.join("functions"))
        .map(|listing| {
            listing
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .map(|e| {
                    let size = e.metadata().map_or(0, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn engine(cache: &std::path::Path) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(cache.to_owned()),
        ..EngineConfig::default()
    })
    .expect("engine")
}

#[test]
fn a_restart_loads_the_compiled_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let summary = guest("summary");

    let first = engine(cache.path()).load(&summary).expect("first load");
    assert!(!first.from_cache(), "the first load compiles");
    let artifacts: Vec<_> = artifacts(cache.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].starts_with(first.hash()));

    let second = engine(cache.path()).load(&summary).expect("second load");
    assert!(second.from_cache(), "a new engine finds the artifact");
    assert_eq!(first.hash(), second.hash());
}

#[test]
fn a_damaged_artifact_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let trivial = guest("trivial");
    let module = engine(cache.path()).load(&trivial).expect("load");
    let artifact = artifacts(cache.path()).pop().expect("an artifact");
    std::fs::write(&artifact, b"garbage").unwrap();
    let again = engine(cache.path())
        .load(&trivial)
        .expect("load after damage");
    assert!(!again.from_cache(), "the damaged artifact is not used");
    assert_eq!(again.hash(), module.hash());
    assert!(
        std::fs::read(&artifact).unwrap().len() > 1000,
        "and it is rewritten"
    );
    let third = engine(cache.path()).load(&trivial).expect("third load");
    assert!(third.from_cache());
}

/// Two engines (two agents, or a test run's processes) sharing a cache
/// directory load the same module at the same moment: it is compiled once, and
/// the other waits for that compile and loads its artifact.
#[test]
fn engines_loading_one_module_at_once_compile_it_once() {
    let cache = tempfile::tempdir().unwrap();
    let summary = guest("summary");
    let start = Arc::new(std::sync::Barrier::new(2));
    let loads: Vec<_> = (0..2)
        .map(|_| {
            let (cache, summary, start) = (cache.path().to_owned(), summary.clone(), start.clone());
            std::thread::spawn(move || {
                let engine = engine(&cache);
                start.wait();
                engine.load(&summary).expect("load").from_cache()
            })
        })
        .collect();
    let from_cache: Vec<bool> = loads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        from_cache.iter().filter(|cached| !**cached).count(),
        1,
        "exactly one of the two loads compiles: {from_cache:?}"
    );
    let left: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "functions")
        .collect();
    assert!(
        left.len() == 1 && left[0].ends_with(".cwasm"),
        "one artifact and no lock file left: {left:?}"
    );
}

/// The large guests (Python ~18 MB, JavaScript ~12 MB) take seconds to
/// compile; a restart (a new engine) and a reload in the same engine after the
/// module was dropped both load the cached artifact instead, and it runs.
fn large_guest_starts_and_reloads_from_the_cache(lang: &str) {
    let cache = tempfile::tempdir().unwrap();
    let path = lang_guest(lang, "summary");

    let first = engine(cache.path()).load(&path).expect("first load");
    assert!(!first.from_cache(), "{lang}: the first load compiles");
    let first_report = first.compiled_functions().expect("a compile report");
    // (Functions found in a fresh cache are duplicates within the module.)
    assert!(
        first_report.known == 0 && first_report.compiled > 1000,
        "{lang}: a fresh cache has no functions to give: {first_report:?}"
    );
    drop(first);

    let restarted = engine(cache.path());
    let second = restarted.load(&path).expect("load after a restart");
    assert!(
        second.from_cache(),
        "{lang}: a new engine finds the artifact"
    );
    drop(second);

    let third = restarted.load(&path).expect("reload");
    assert!(third.from_cache(), "{lang}: a reload finds the artifact");
    assert_summary_runs(&third, &format!("{lang}: the cached module"));

    // A new version (here the same code with a custom section added) is not
    // in the artifact cache, but nearly all its functions are (the
    // interpreter is the same), and only what it compiled is kept anew.
    let packs = function_packs(cache.path());
    assert_eq!(
        packs.len(),
        1,
        "{lang}: the first compile kept its functions: {packs:?}"
    );
    let first_pack = packs.values().sum::<u64>();
    let next = with_custom_section(&std::fs::read(&path).unwrap(), "komlogd-test", b"v2");
    let next = restarted
        .load_bytes(&next, &path.with_extension("v2.wasm"))
        .expect("load a new version");
    assert!(!next.from_cache(), "{lang}: a new version compiles");
    let report = next.compiled_functions().expect("a compile report");
    eprintln!("{lang}: first compile {first_report:?}, new version {report:?}");
    assert!(
        report.reused > 9 * report.compiled,
        "{lang}: most functions reused: {report:?}"
    );
    let added: u64 = function_packs(cache.path())
        .iter()
        .filter(|(name, _)| !packs.contains_key(*name))
        .map(|(_, size)| size)
        .sum();
    assert!(
        added * 5 < first_pack,
        "{lang}: the new version kept {added} bytes of functions, the first {first_pack}"
    );
    assert_summary_runs(
        &next,
        &format!("{lang}: the new version, compiled from kept functions,"),
    );
}

/// `summary` instantiates and describes its subscriptions.
fn assert_summary_runs(module: &komlogd::engine::Module, what: &str) {
    let described = module
        .instantiate(Arc::from("summary"), Limits::default())
        .unwrap_or_else(|e| panic!("{what} instantiates: {e}"))
        .describe()
        .unwrap_or_else(|e| panic!("{what} describes: {e}"));
    assert_eq!(
        described.map(|s| s.uris),
        Some(vec!["cpu.system".to_string(), "cpu.user".to_string()]),
        "{what} runs"
    );
}

#[test]
fn python_guest_starts_and_reloads_from_the_cache() {
    large_guest_starts_and_reloads_from_the_cache("python");
}

#[test]
fn js_guest_starts_and_reloads_from_the_cache() {
    large_guest_starts_and_reloads_from_the_cache("js");
}
