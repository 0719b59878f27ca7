//! Replays (`komlogd::replay`, what `komlogd impulse test` runs):
//!
//! * the examples — summary, threshold and counter in Rust, Python,
//!   JavaScript and C, df in Rust, and the df → threshold chain — replayed on
//!   the recorded data in `examples/replay/` write exactly the committed
//!   golden files there (every language the same file);
//! * a replay is deterministic: twice the same records, the guest's wall
//!   clock reads `now`, its monotonic clock stands still and its randomness
//!   follows the seed;
//! * a replay is faithful: the outputs are those a live agent stores when the
//!   same samples are uploaded to it.
//!
//! `KOMLOGD_UPDATE_GOLDEN=1` rewrites the golden files from the Rust replays.

use std::path::PathBuf;

use komlogd::agent::AgentOptions;
use komlogd::engine::Determinism;
use komlogd::impulses::dispatch::{FireOutcome, FireRecord};
use komlogd::model::{Sample, Value};
use komlogd::replay::{Replay, golden};
use komlogd_tests::{AgentDir, example_in, repo_root, shared_cache};

const LANGUAGES: [&str; 4] = ["rust", "python", "js", "c"];

/// `examples/replay/<file>`.
fn replay_file(file: &str) -> PathBuf {
    repo_root().join("examples").join("replay").join(file)
}

/// The samples of a JSON-lines data file (`{"uri","ts","kind","value"}`).
fn samples(file: &str) -> Vec<Sample> {
    let path = replay_file(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let value = match row["kind"].as_str() {
                Some("datapoint") => Value::Datapoint(row["value"].as_f64().expect("a number")),
                Some("datasource") => {
                    Value::Datasource(row["value"].as_str().expect("a text").to_owned())
                }
                other => panic!("{}: kind {other:?}", path.display()),
            };
            Sample {
                uri: row["uri"].as_str().expect("uri").to_owned(),
                ts: row["ts"].as_i64().expect("ts"),
                value,
            }
        })
        .collect()
}

/// Replay `data` through the impulses of `yaml` (a komlogd.yaml) with the
/// guests' clocks at `now` and randomness from `seed`.
fn replay(yaml: &str, data: Vec<Sample>, now_us: i64, seed: u64) -> Vec<FireRecord> {
    let dir = AgentDir::new(yaml);
    let options = AgentOptions {
        cache_dir: Some(shared_cache()),
        ..AgentOptions::default()
    };
    let mut replay = Replay::open(&dir.config(), &options, Determinism { now_us, seed })
        .unwrap_or_else(|e| panic!("replay: {e}"));
    let mut records = Vec::new();
    let report = replay
        .run(data, |r| records.push(r))
        .unwrap_or_else(|e| panic!("replay: {e}"));
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    replay.close().expect("close");
    records
}

/// The golden lines of `records`.
fn golden_lines(records: &[FireRecord]) -> Vec<String> {
    records.iter().flat_map(golden::lines).collect()
}

/// Compare with `examples/replay/<name>.golden.jsonl` (or write it, with
/// `KOMLOGD_UPDATE_GOLDEN=1` and `update`).
fn check_golden(name: &str, lines: &[String], update: bool, what: &str) {
    let path = replay_file(&format!("{name}.golden.jsonl"));
    if update && std::env::var_os("KOMLOGD_UPDATE_GOLDEN").is_some() {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (KOMLOGD_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    if let Err(mismatch) = golden::compare(&expected, lines, None, &path.display().to_string()) {
        panic!("{what} differs from its golden file:\n{}", mismatch.diff);
    }
}

/// The first time in `data`.
fn first_ts(data: &[Sample]) -> i64 {
    data.iter().map(|s| s.ts).min().expect("samples")
}

/// One example in every language, each replayed on `data` with the block
/// `block` (its `filename:` line is added), against one golden file.
fn example_in_every_language(example: &str, languages: &[&str], data: &str, block: &str) {
    let data = samples(data);
    for lang in languages {
        let module = example_in(lang, example);
        let yaml = format!(
            "- impulses:\n    name: {example}\n    filename: {}\n{block}",
            module.display()
        );
        let records = replay(&yaml, data.clone(), first_ts(&data), 0);
        let lines = golden_lines(&records);
        assert!(!lines.is_empty(), "{example} in {lang} wrote nothing");
        check_golden(
            example,
            &lines,
            *lang == "rust",
            &format!("{example} in {lang}"),
        );
    }
}

#[test]
fn summary_in_every_language_matches_its_golden_file() {
    example_in_every_language("summary", &LANGUAGES, "cpu.jsonl", "");
}

#[test]
fn threshold_in_every_language_matches_its_golden_file() {
    example_in_every_language(
        "threshold",
        &LANGUAGES,
        "cpu.jsonl",
        "    uris: [cpu.system, cpu.user]\n    params: {threshold: 25}\n",
    );
}

#[test]
fn counter_in_every_language_matches_its_golden_file() {
    example_in_every_language(
        "counter",
        &LANGUAGES,
        "cpu.jsonl",
        "    uris: [cpu.system, cpu.user]\n",
    );
}

#[test]
fn df_matches_its_golden_file() {
    example_in_every_language("df", &["rust"], "df.jsonl", "    uris: [host.disk]\n");
}

/// The demo's chain: df's outputs fire threshold, one hop later.
#[test]
fn the_df_threshold_chain_matches_its_golden_file() {
    let yaml = "- impulses:\n    name: df\n    filename: {guest:df}\n    uris: [host.disk]\n\
                - impulses:\n    name: threshold\n    filename: {guest:threshold}\n    \
                uris: [host.disk.root.used_pct]\n    params: {threshold: 75}\n";
    let data = samples("df.jsonl");
    let records = replay(yaml, data.clone(), first_ts(&data), 0);
    let hops: Vec<(&str, u32)> = records.iter().map(|r| (&*r.impulse, r.depth)).collect();
    assert_eq!(
        hops,
        [("df", 0), ("threshold", 1), ("df", 0), ("threshold", 1)],
        "each df -k text fires df, and df's root usage fires threshold"
    );
    check_golden(
        "chain",
        &golden_lines(&records),
        true,
        "the df → threshold chain",
    );
}

/// What `misbehave` in `clock` mode saw: `(wall_us, monotonic_ns, random)`.
fn clock_reading(records: &[FireRecord]) -> (i64, u64, String) {
    let [record] = records else {
        panic!("one fire expected, got {records:?}");
    };
    assert_eq!(record.outcome, FireOutcome::Returned);
    let Value::Datasource(text) = &record.outputs[0].value else {
        panic!("a text expected: {:?}", record.outputs);
    };
    let field = |name: &str| {
        text.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_owned()
    };
    (
        field("wall_us").parse().expect("wall_us"),
        field("monotonic_ns").parse().expect("monotonic_ns"),
        field("random"),
    )
}

#[test]
fn the_guests_clocks_are_frozen_and_its_randomness_seeded() {
    let yaml = "- impulses:\n    filename: {guest:misbehave}\n    uris: [tick]\n    \
                params: {mode: clock}\n";
    let tick = || vec![komlogd_tests::dp("tick", 1_000_000, 1.0)];
    let now = 1_714_564_800_000_000;
    let first = clock_reading(&replay(yaml, tick(), now, 7));
    let again = clock_reading(&replay(yaml, tick(), now, 7));
    let other_seed = clock_reading(&replay(yaml, tick(), now + 5, 8));
    assert_eq!(first.0, now, "the wall clock reads --now");
    assert_eq!(first.1, 0, "the monotonic clock stands still");
    assert_eq!(first, again, "the same seed gives the same reading");
    assert_eq!(other_seed.0, now + 5);
    assert_ne!(other_seed.2, first.2, "another seed, other random bytes");
}

#[test]
fn a_replay_gives_the_same_records_every_run() {
    let yaml = "- impulses:\n    name: summary\n    filename: {guest:summary}\n\
                - impulses:\n    name: threshold\n    filename: {guest:threshold}\n    \
                uris: [cpu.system, cpu.user]\n    params: {threshold: 25}\n\
                - impulses:\n    name: counter\n    filename: {guest:counter}\n    \
                uris: [cpu.system, cpu.user.last_60min_stats]\n";
    let data = samples("cpu.jsonl");
    let strip = |records: Vec<FireRecord>| -> Vec<FireRecord> {
        records
            .into_iter()
            .map(|r| FireRecord {
                call: std::time::Duration::ZERO,
                ..r
            })
            .collect()
    };
    let first = strip(replay(yaml, data.clone(), first_ts(&data), 0));
    // Three impulses on their own threads, and a chain (summary → counter):
    // the order must not depend on which thread answers first.
    for _ in 0..3 {
        assert_eq!(strip(replay(yaml, data.clone(), first_ts(&data), 0)), first);
    }
    let impulses: Vec<&str> = first.iter().map(|r| &*r.impulse).collect();
    assert!(impulses.contains(&"counter") && impulses.contains(&"threshold"));
}

#[test]
fn a_replay_writes_what_a_live_agent_stores_from_the_same_samples() {
    let yaml = "- impulses:\n    name: summary\n    filename: {guest:summary}\n\
                - impulses:\n    name: threshold\n    filename: {guest:threshold}\n    \
                uris: [cpu.system, cpu.user]\n    params: {threshold: 25}\n";
    let data = samples("cpu.jsonl");
    let records = replay(yaml, data.clone(), first_ts(&data), 0);
    let mut replayed: Vec<(String, i64, Value)> = records
        .iter()
        .flat_map(|r| &r.outputs)
        .map(|s| (s.uri.clone(), s.ts, s.value.clone()))
        .collect();

    // The live agent, fed one upload per sample in time order as `komlogd -u`
    // would, on its own store.
    let dir = AgentDir::new(yaml);
    let mut agent = dir.open();
    let mut by_time = data.clone();
    by_time.sort_by_key(|s| s.ts);
    for sample in by_time {
        let report = agent.dispatcher.upload(vec![sample]).expect("upload");
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    }
    let inputs: Vec<&str> = vec!["cpu.system", "cpu.user"];
    let mut stored: Vec<(String, i64, Value)> = Vec::new();
    for info in agent.dispatcher.store().uris().expect("uris") {
        if inputs.contains(&info.uri.as_str()) {
            continue;
        }
        for s in agent
            .dispatcher
            .store()
            .range(&info.uri, i64::MIN, i64::MAX, usize::MAX)
            .expect("read")
        {
            stored.push((s.uri, s.ts, s.value));
        }
    }
    let key = |a: &(String, i64, Value)| (a.0.clone(), a.1);
    replayed.sort_by_key(key);
    stored.sort_by_key(key);
    assert!(!stored.is_empty());
    assert_eq!(replayed, stored);
}

/// A failing impulse in a replay: every event fails (no wall-clock backoff
/// skips the next ones), until `disable_after` failures in a row disable it.
#[test]
fn a_failing_impulse_is_reported_fire_by_fire_and_disabled_as_configured() {
    let yaml = "- impulses:\n    filename: {guest:misbehave}\n    uris: [tick]\n    \
                params: {mode: panic}\n    limits: {disable_after: 3}\n";
    let ticks: Vec<Sample> = (1..=5)
        .map(|i| komlogd_tests::dp("tick", i * 1_000_000, i as f64))
        .collect();
    let records = replay(yaml, ticks, 0, 0);
    let outcomes: Vec<String> = records
        .iter()
        .map(|r| match &r.outcome {
            FireOutcome::Failed { kind, .. } => format!("failed {kind}"),
            FireOutcome::Skipped(why) => format!("skipped {why}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "failed trap",
            "failed trap",
            "failed trap",
            "skipped disabled",
            "skipped disabled"
        ]
    );
    let lines = golden_lines(&records);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].ends_with(r#""failed":"trap"}"#), "{}", lines[0]);
}
