//! The conformance corpus (`tests/conformance/*.json`) run against the `summary`
//! and `threshold` examples of every language: Rust, Python, JavaScript and C.
//!
//! Each corpus file names an impulse, its expected `describe()` and cases: a
//! fire's `ts`, `updated`, `others`, `params` and window (as samples, encoded
//! by the host's own window encoder), with the exact result expected (`ok`
//! samples in order, or the `err` text). The expectations are written in the
//! corpus from the documented behaviour (examples/README.md); each case says
//! why. Every language's component is loaded by the real engine and called on
//! every case; one report lists every difference.
//!
//! A second test loads all eight components into one agent through komlogd.yaml
//! and feeds them the same readings: the samples they store must be identical.

use std::path::PathBuf;
use std::sync::Arc;

use komlogd::engine::bindings::{Context, Sample, Subscription, Value as WitValue};
use komlogd::engine::{Engine, EngineConfig, Limits};
use komlogd::impulses::window::WindowEncoder;
use komlogd::model::Value;
use komlogd_tests::{AgentDir, OTHER_LANGUAGES, dp, example_in, repo_root, shared_cache};
use serde_json::Value as Json;

const IMPULSES: [&str; 2] = ["summary", "threshold"];

fn corpus(impulse: &str) -> Json {
    let path = repo_root()
        .join("tests/conformance")
        .join(format!("{impulse}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let corpus: Json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(corpus["impulse"], impulse, "{}", path.display());
    corpus
}

fn str_list(v: &Json) -> Vec<String> {
    v.as_array()
        .expect("a list of strings")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The window of a case, encoded by the host's encoder in the listed order.
fn window(rows: &Json) -> Vec<u8> {
    let mut encoder = WindowEncoder::new();
    for row in rows.as_array().expect("window rows") {
        let uri = row["uri"].as_str().expect("row uri");
        let ts = row["ts"].as_i64().expect("row ts");
        let value = match (&row["datapoint"], &row["datasource"]) {
            (Json::Number(n), Json::Null) => Value::Datapoint(n.as_f64().expect("a number")),
            (Json::Null, Json::String(s)) => Value::Datasource(s.clone()),
            other => panic!("row needs one of datapoint/datasource: {other:?}"),
        };
        encoder.push(uri, ts, &value);
    }
    let mut bytes = Vec::new();
    encoder.finish_into(&mut bytes).expect("encode the window");
    bytes
}

fn context(case: &Json) -> Context {
    Context {
        ts: case["ts"].as_i64().expect("ts"),
        updated: str_list(&case["updated"]),
        others: str_list(&case["others"]),
        params: case["params"]
            .as_array()
            .expect("params")
            .iter()
            .map(|p| {
                let pair = str_list(p);
                assert_eq!(pair.len(), 2, "a param is [name, value]: {p}");
                (pair[0].clone(), pair[1].clone())
            })
            .collect(),
        window: window(&case["window"]),
    }
}

/// A sample as the corpus writes it.
fn sample_json(s: &Sample) -> Json {
    let mut o = serde_json::Map::new();
    o.insert("uri".into(), s.uri.clone().into());
    o.insert("ts".into(), s.ts.into());
    match &s.value {
        WitValue::Datapoint(v) => o.insert("datapoint".into(), (*v).into()),
        WitValue::Datasource(t) => o.insert("datasource".into(), t.clone().into()),
    };
    Json::Object(o)
}

fn describe_json(s: &Option<Subscription>) -> Json {
    match s {
        None => Json::Null,
        Some(s) => serde_json::json!({
            "uris": s.uris,
            "past_delta": s.data_reqs.past_delta,
            "past_count": s.data_reqs.past_count,
            "min_exec_delta": s.min_exec_delta,
        }),
    }
}

/// Expected samples are compared field by field: numbers by value (1 == 1.0).
fn same_samples(got: &[Json], want: &Json) -> bool {
    let Some(want) = want.as_array() else {
        return false;
    };
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g["uri"] == w["uri"]
                && g["ts"] == w["ts"]
                && g["datasource"] == w["datasource"]
                && g["datapoint"].as_f64() == w["datapoint"].as_f64()
        })
}

/// Run both corpora against one language's examples; the differences, one per line.
fn run_corpus(lang: &str) -> Vec<String> {
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(shared_cache()),
        ..EngineConfig::default()
    })
    .expect("engine");
    let mut failures = Vec::new();
    for impulse in IMPULSES {
        let corpus = corpus(impulse);
        let path = example_in(lang, impulse);
        let module = engine
            .load(&path)
            .unwrap_or_else(|e| panic!("{lang} {impulse}: {e}"));
        let mut instance = module
            .instantiate(Arc::from(format!("{lang}-{impulse}")), Limits::default())
            .unwrap_or_else(|e| panic!("{lang} {impulse}: {e}"));
        let described = instance
            .describe()
            .unwrap_or_else(|e| panic!("{lang} {impulse} describe: {e}"));
        if describe_json(&described) != corpus["describe"] {
            failures.push(format!(
                "{lang} {impulse} describe: got {}, want {}",
                describe_json(&described),
                corpus["describe"]
            ));
        }
        let cases = corpus["cases"].as_array().expect("cases");
        assert!(!cases.is_empty(), "{impulse}: an empty corpus");
        for case in cases {
            let name = case["name"].as_str().expect("case name");
            let result = instance
                .on_update(&context(case))
                .unwrap_or_else(|e| panic!("{lang} {impulse} `{name}`: the call failed: {e}"));
            let expect = &case["expect"];
            let matches = match (&result, expect.get("ok"), expect.get("err")) {
                (Ok(samples), Some(want), None) => {
                    same_samples(&samples.iter().map(sample_json).collect::<Vec<_>>(), want)
                }
                (Err(message), None, Some(want)) => want.as_str() == Some(message.as_str()),
                (_, None, None) | (_, Some(_), Some(_)) => {
                    panic!("{impulse} `{name}`: expect needs exactly one of ok/err")
                }
                _ => false,
            };
            if !matches {
                let got = match &result {
                    Ok(samples) => serde_json::json!({
                        "ok": samples.iter().map(sample_json).collect::<Vec<_>>()
                    }),
                    Err(message) => serde_json::json!({ "err": message }),
                };
                failures.push(format!(
                    "{lang} {impulse} `{name}`:\n    got  {got}\n    want {expect}"
                ));
            }
        }
    }
    failures
}

fn assert_passes(lang: &str) {
    let failures = run_corpus(lang);
    assert!(
        failures.is_empty(),
        "{} difference(s) from the corpus:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rust_examples_pass_the_corpus() {
    assert_passes("rust");
}

#[test]
fn python_examples_pass_the_corpus() {
    assert_passes("python");
}

#[test]
fn js_examples_pass_the_corpus() {
    assert_passes("js");
}

#[test]
fn c_examples_pass_the_corpus() {
    assert_passes("c");
}

#[test]
fn the_corpus_covers_both_results_and_every_case_says_why() {
    let mut errs = 0;
    let mut oks = 0;
    for impulse in IMPULSES {
        for case in corpus(impulse)["cases"].as_array().expect("cases") {
            assert!(
                case["why"].as_str().is_some_and(|w| !w.is_empty()),
                "{impulse} `{}` has no why",
                case["name"]
            );
            if case["expect"].get("err").is_some() {
                errs += 1;
            } else {
                oks += 1;
            }
        }
    }
    assert!(errs >= 5 && oks >= 15, "{errs} err cases, {oks} ok cases");
}

/// Every language's example in one agent, fed the same readings through the
/// whole pipeline (store, window cut, fire, validation, store).
#[test]
fn every_language_stores_the_same_samples_in_one_agent() {
    let languages: Vec<&str> = std::iter::once("rust").chain(OTHER_LANGUAGES).collect();
    let paths: Vec<(String, PathBuf, PathBuf)> = languages
        .iter()
        .map(|l| {
            (
                l.to_string(),
                example_in(l, "summary"),
                example_in(l, "threshold"),
            )
        })
        .collect();
    let mut yaml = String::new();
    for (lang, summary, threshold) in &paths {
        yaml.push_str(&format!(
            "- impulses:\n    name: summary_{lang}\n    filename: {}\n    uris: [{lang}.cpu]\n\
             - impulses:\n    name: threshold_{lang}\n    filename: {}\n    uris: [{lang}.cpu]\n    params: {{threshold: 30}}\n",
            summary.display(),
            threshold.display()
        ));
    }
    let dir = AgentDir::new(&yaml);
    let mut agent = dir.open();
    assert!(agent.load_errors.is_empty(), "{:?}", agent.load_errors);
    assert_eq!(agent.dispatcher.specs().count(), 2 * languages.len());

    // A stale reading, then the corpus' six readings one minute apart (the
    // summary case "six readings"), each language on its own uri.
    const T: i64 = 36_000_000_000;
    const MIN: i64 = 60_000_000;
    let readings: Vec<(i64, f64)> = std::iter::once((T - 7_200_000_000, 1000.0))
        .chain(
            [12.5, 40.0, 33.3, 8.0, 75.25, 20.0]
                .into_iter()
                .enumerate()
                .map(|(i, v)| (T - (5 - i as i64) * MIN, v)),
        )
        .collect();
    for (ts, v) in &readings {
        let batch = languages
            .iter()
            .map(|l| dp(&format!("{l}.cpu"), *ts, *v))
            .collect();
        let report = agent.dispatcher.ingest(batch).expect("ingest");
        assert_eq!(report.fires, 2 * languages.len() as u64, "at ts {ts}");
    }
    for (name, stats) in agent.dispatcher.stats() {
        assert_eq!(stats.guest_errors, 0, "{name}: {:?}", stats.last_error);
        assert!(stats.failures.is_empty(), "{name}: {:?}", stats.failures);
        assert_eq!(stats.outputs, readings.len() as u64, "{name}");
    }

    let store = agent.dispatcher.store();
    let history = |uri: &str| -> Vec<(i64, String)> {
        store
            .latest(uri, 100)
            .expect("store read")
            .into_iter()
            .map(|s| (s.ts, format!("{:?}", s.value)))
            .collect()
    };
    let rust_stats = history("rust.cpu.last_60min_stats");
    let rust_flags = history("rust.cpu._anomaly");
    assert_eq!(rust_stats.len(), readings.len());
    let six = corpus("summary")["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "six readings (the integration test's series)")
        .expect("the six readings case")["expect"]["ok"][0]["datasource"]
        .as_str()
        .expect("its text")
        .to_owned();
    for lang in &languages {
        let stats = history(&format!("{lang}.cpu.last_60min_stats"));
        assert_eq!(
            stats, rust_stats,
            "{lang} summary outputs differ from Rust's"
        );
        let last = store
            .range(&format!("{lang}.cpu.last_60min_stats"), T, T, 1)
            .expect("read");
        assert_eq!(
            last.first().map(|s| &s.value),
            Some(&Value::Datasource(six.clone())),
            "{lang}"
        );
        let flags = history(&format!("{lang}.cpu._anomaly"));
        assert_eq!(
            flags, rust_flags,
            "{lang} threshold outputs differ from Rust's"
        );
        // 1000, 12.5, 40, 33.3, 8, 75.25, 20 against 30, newest first.
        let values: Vec<String> = flags.iter().map(|(_, v)| v.clone()).collect();
        let want: Vec<String> = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
            .iter()
            .map(|v| format!("{:?}", Value::Datapoint(*v)))
            .collect();
        assert_eq!(values, want, "{lang}");
    }
}
