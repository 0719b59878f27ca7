//! `komlogd impulse test`, the real binary on the real example guests and the
//! recordings and golden files of `examples/replay/`:
//!
//! * a replay that matches its golden file exits 0; one that differs prints a
//!   unified diff and exits 1; `--update` writes the same file as committed;
//!   `--tolerance` forgives small differences in values only;
//! * the fires printed (table and `--json`) are byte-identical across runs;
//! * `-c komlogd.yaml` replays a chain, `--impulse` narrows it, and the
//!   overrides (`--params`, `--uris`, `--data-reqs`) apply;
//! * bad usage and bad data exit 2 with a message naming what and where;
//! * a replay writes what the agent stores when `komlogd import` feeds it the
//!   same recording.

use std::path::Path;
use std::process::Command;

use crate::common::{self, guest};

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");

/// How a run ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run komlogd with `args` in `dir` (also `HOME`, so no user cache is shared
/// with the machine's).
fn komlogd(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(KOMLOGD)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("run komlogd");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `examples/replay/<file>`, as text for an argument.
fn replay_file(file: &str) -> String {
    common::repo_root()
        .join("examples/replay")
        .join(file)
        .display()
        .to_string()
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// A komlogd.yaml in `dir` with `summary` (its defaults) and `threshold` at
/// 25 on cpu.system and cpu.user; its path.
fn summary_and_threshold(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("komlogd.yaml");
    std::fs::write(
        &config,
        format!(
            "- impulses:\n    name: summary\n    filename: {}\n\
             - impulses:\n    name: threshold\n    filename: {}\n    \
             uris: [cpu.system, cpu.user]\n    params: {{threshold: 25}}\n",
            guest("summary").display(),
            guest("threshold").display()
        ),
    )
    .expect("config");
    config
}

#[test]
fn a_golden_file_passes_and_a_changed_one_fails_with_a_diff() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = path_text(&guest("summary"));
    let data = replay_file("cpu.jsonl");
    let golden = replay_file("summary.golden.jsonl");

    let ok = komlogd(
        dir.path(),
        &[
            "impulse", "test", &summary, "--data", &data, "--expect", &golden,
        ],
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout.is_empty(),
        "no fires printed with --expect: {ok:?}"
    );
    assert!(ok.stderr.contains("ok: 20 lines as in"), "{}", ok.stderr);
    assert!(ok.stderr.contains("summary: 13 fires"), "{}", ok.stderr);

    // One mean changed in a copy of the golden file.
    let text = std::fs::read_to_string(&golden).expect("golden");
    assert!(
        text.contains("mean: 13.75\\n"),
        "the recording's second mean"
    );
    let changed = dir.path().join("changed.jsonl");
    std::fs::write(&changed, text.replace("mean: 13.75\\n", "mean: 13.5\\n")).expect("write");
    let diff = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &summary,
            "--data",
            &data,
            "--expect",
            &path_text(&changed),
        ],
    );
    assert_eq!(diff.code, 1, "{diff:?}");
    let minus: Vec<&str> = diff
        .stdout
        .lines()
        .filter(|l| l.starts_with("-{"))
        .collect();
    let plus: Vec<&str> = diff
        .stdout
        .lines()
        .filter(|l| l.starts_with("+{"))
        .collect();
    assert_eq!(minus.len(), 1, "{}", diff.stdout);
    assert_eq!(plus.len(), 1, "{}", diff.stdout);
    assert!(minus[0].contains("mean: 13.5\\n") && plus[0].contains("mean: 13.75\\n"));
    assert!(
        diff.stderr
            .contains("1 line expected and not written, 1 line written and not expected"),
        "{}",
        diff.stderr
    );

    // --update writes exactly the committed file.
    let fresh = dir.path().join("fresh.jsonl");
    let update = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &summary,
            "--data",
            &data,
            "--expect",
            &path_text(&fresh),
            "--update",
        ],
    );
    assert_eq!(update.code, 0, "{update:?}");
    assert_eq!(std::fs::read_to_string(&fresh).expect("written"), text);

    // A missing golden file fails before anything runs, and says what to do.
    let missing = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &summary,
            "--data",
            &data,
            "--expect",
            "nowhere.jsonl",
        ],
    );
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("nowhere.jsonl: no such golden file")
    );
    assert!(missing.stderr.contains("--update"));
}

#[test]
fn a_tolerance_forgives_small_value_differences_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let threshold = path_text(&guest("threshold"));
    let data = replay_file("cpu.jsonl");
    let args = |golden: &str| -> Vec<String> {
        [
            "impulse",
            "test",
            &threshold,
            "--data",
            &data,
            "--uris",
            "cpu.system,cpu.user",
            "--params",
            "threshold=25",
            "--expect",
            golden,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let text = std::fs::read_to_string(replay_file("threshold.golden.jsonl")).expect("golden");
    let first = text.lines().next().expect("a line");
    assert!(first.contains("\"value\":0.0}"), "{first}");
    let near = dir.path().join("near.jsonl");
    std::fs::write(
        &near,
        text.replacen("\"value\":0.0}", "\"value\":0.0000001}", 1),
    )
    .expect("write");
    let run = |extra: &[&str]| {
        let mut all = args(&path_text(&near));
        all.extend(extra.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        komlogd(dir.path(), &all)
    };
    assert_eq!(run(&[]).code, 1, "exact by default");
    assert_eq!(run(&["--tolerance", "1e-6"]).code, 0);
    assert_eq!(run(&["--tolerance", "1e-9"]).code, 1);
    let bad = run(&["--tolerance=-1"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("expected a number ≥ 0"),
        "{}",
        bad.stderr
    );
}

#[test]
fn the_fires_printed_are_the_same_bytes_every_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = summary_and_threshold(dir.path());
    let data = replay_file("cpu.jsonl");
    let config = path_text(&config);
    for json in [false, true] {
        let mut args = vec!["-c", &config, "impulse", "test", "--data", &data];
        if json {
            args.push("--json");
        }
        let first = komlogd(dir.path(), &args);
        assert_eq!(first.code, 0, "{first:?}");
        for _ in 0..2 {
            let again = komlogd(dir.path(), &args);
            assert_eq!(again.stdout, first.stdout, "json: {json}");
        }
        if json {
            let lines: Vec<serde_json::Value> = first
                .stdout
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            // summary fires at each of the 13 times, threshold too.
            assert_eq!(lines.len(), 26, "{}", first.stdout);
            assert!(lines.iter().all(|l| l["outcome"] == "ok"));
            let first_threshold = lines
                .iter()
                .find(|l| l["impulse"] == "threshold")
                .expect("threshold fired");
            assert_eq!(
                first_threshold["updated"],
                serde_json::json!(["cpu.system", "cpu.user"])
            );
            assert_eq!(
                first_threshold["outputs"][0],
                serde_json::json!({"uri": "cpu.system._anomaly", "ts": 1_714_564_800_000_000_i64,
                    "kind": "datapoint", "value": 0.0})
            );
        } else {
            assert!(
                first.stdout.contains("summary ← cpu.system, cpu.user"),
                "{}",
                first.stdout
            );
        }
    }
}

#[test]
fn a_chain_of_a_configuration_replays_whole_or_narrowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("komlogd.yaml");
    std::fs::write(
        &config,
        format!(
            "- impulses:\n    name: df\n    filename: {}\n    uris: [host.disk]\n\
             - impulses:\n    name: threshold\n    filename: {}\n    \
             uris: [host.disk.root.used_pct]\n    params: {{threshold: 75}}\n",
            guest("df").display(),
            guest("threshold").display()
        ),
    )
    .expect("config");
    let config = path_text(&config);
    let data = replay_file("df.jsonl");
    let whole = komlogd(
        dir.path(),
        &[
            "-c",
            &config,
            "impulse",
            "test",
            "--data",
            &data,
            "--expect",
            &replay_file("chain.golden.jsonl"),
        ],
    );
    assert_eq!(whole.code, 0, "{whole:?}");

    // df alone writes its usages and nothing fires threshold.
    let df_only = komlogd(
        dir.path(),
        &[
            "-c",
            &config,
            "impulse",
            "test",
            "--data",
            &data,
            "--impulse",
            "df",
            "--json",
        ],
    );
    assert_eq!(df_only.code, 0, "{df_only:?}");
    assert!(!df_only.stdout.contains("\"impulse\":\"threshold\""));
    assert_eq!(df_only.stdout.lines().count(), 2);

    // Overrides need one impulse.
    let ambiguous = komlogd(
        dir.path(),
        &[
            "-c",
            &config,
            "impulse",
            "test",
            "--data",
            &data,
            "--params",
            "threshold=1",
        ],
    );
    assert_eq!(ambiguous.code, 2, "{ambiguous:?}");
    assert!(
        ambiguous.stderr.contains("pick one with --impulse NAME"),
        "{}",
        ambiguous.stderr
    );
    let unknown = komlogd(
        dir.path(),
        &[
            "-c",
            &config,
            "impulse",
            "test",
            "--data",
            &data,
            "--impulse",
            "nope",
        ],
    );
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("--impulse nope: no impulse of that name"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn uris_data_reqs_and_params_override_the_modules_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = path_text(&guest("summary"));
    let data = replay_file("cpu.jsonl");
    // summary subscribes to cpu.system and cpu.user with an hour's window
    // (past_delta); each field of --data-reqs overrides the module's.
    let run = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &summary,
            "--data",
            &data,
            "--uris",
            "cpu.user",
            "--data-reqs",
            "past_delta=0s,past_count=1",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let fires: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(fires.len(), 7, "cpu.user has 7 samples: {}", run.stdout);
    for fire in &fires {
        assert_eq!(fire["updated"], serde_json::json!(["cpu.user"]));
        assert_eq!(fire["others"], serde_json::json!([]));
        assert_eq!(fire["window_rows"], 1, "the latest sample alone");
        let text = fire["outputs"][0]["value"].as_str().expect("a text");
        assert!(text.starts_with("count: 1\n"), "{text}");
    }

    // threshold's param decides what it flags.
    let threshold = path_text(&guest("threshold"));
    let flags = |level: &str| -> Vec<f64> {
        let run = komlogd(
            dir.path(),
            &[
                "impulse",
                "test",
                &threshold,
                "--data",
                &data,
                "--uris",
                "cpu.system",
                "--params",
                &format!("threshold={level}"),
                "--json",
            ],
        );
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .map(|f| f["outputs"][0]["value"].as_f64().expect("a flag"))
            .collect()
    };
    assert_eq!(flags("0"), vec![1.0; 13]);
    assert_eq!(flags("1000"), vec![0.0; 13]);
    // Without the param, each fire is the guest's error, reported as such.
    let missing = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &threshold,
            "--data",
            &data,
            "--uris",
            "cpu.system",
            "--json",
        ],
    );
    assert_eq!(missing.code, 0, "{missing:?}");
    assert!(
        missing
            .stdout
            .lines()
            .all(|l| l.contains("\"outcome\":\"error\"")),
        "{}",
        missing.stdout
    );
    assert!(missing.stderr.contains("13 errors"), "{}", missing.stderr);
}

#[test]
fn bad_usage_and_bad_data_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = path_text(&guest("summary"));
    let data = replay_file("cpu.jsonl");
    let nothing = komlogd(dir.path(), &["impulse", "test", "--data", &data]);
    assert_eq!(nothing.code, 2, "{nothing:?}");
    assert!(
        nothing
            .stderr
            .contains("give the impulse's MODULE.wasm, or -c"),
        "{}",
        nothing.stderr
    );

    let bad_reqs = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &summary,
            "--data",
            &data,
            "--data-reqs",
            "past_cont=3",
        ],
    );
    assert_eq!(bad_reqs.code, 2, "{bad_reqs:?}");
    let bad_param = komlogd(
        dir.path(),
        &[
            "impulse",
            "test",
            &summary,
            "--data",
            &data,
            "--params",
            "threshold",
        ],
    );
    assert_eq!(bad_param.code, 2, "{bad_param:?}");
    assert!(
        bad_param.stderr.contains("expected KEY=VALUE"),
        "{}",
        bad_param.stderr
    );
    assert!(bad_reqs.stderr.contains("past_cont"), "{}", bad_reqs.stderr);

    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "uri,time,value\ncpu.system,2024-05-01T12:00:00Z,1\ncpu.system,yesterday,2\n",
    )
    .expect("write");
    let bad_time = komlogd(
        dir.path(),
        &["impulse", "test", &summary, "--data", &path_text(&csv)],
    );
    assert_eq!(bad_time.code, 2, "{bad_time:?}");
    assert!(
        bad_time.stderr.contains(&format!("{}:3", csv.display())),
        "{}",
        bad_time.stderr
    );

    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, b"not a module").expect("write");
    let load = komlogd(
        dir.path(),
        &["impulse", "test", &path_text(&not_wasm), "--data", &data],
    );
    assert_eq!(load.code, 1, "{load:?}");
    assert!(load.stderr.contains("not.wasm"), "{}", load.stderr);
}

/// The recording imported into a fresh agent's store with `komlogd import`
/// (which fires the impulses) leaves there what the replay writes.
#[test]
fn a_replay_writes_what_komlogd_import_stores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = summary_and_threshold(dir.path());
    let config = path_text(&config);
    let data = replay_file("cpu.jsonl");
    let replayed = komlogd(
        dir.path(),
        &["-c", &config, "impulse", "test", "--data", &data, "--json"],
    );
    assert_eq!(replayed.code, 0, "{replayed:?}");
    let mut from_replay: Vec<serde_json::Value> = replayed
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .flat_map(|fire| fire["outputs"].as_array().cloned().unwrap_or_default())
        .collect();

    let import = komlogd(dir.path(), &["-c", &config, "import", &data]);
    assert_eq!(import.code, 0, "{import:?}");
    let mut uris: Vec<String> = from_replay
        .iter()
        .map(|o| o["uri"].as_str().expect("uri").to_owned())
        .collect();
    uris.sort();
    uris.dedup();
    let mut args = vec!["-c", config.as_str(), "query"];
    args.extend(uris.iter().map(String::as_str));
    args.extend(["--format", "jsonl"]);
    let stored = komlogd(dir.path(), &args);
    assert_eq!(stored.code, 0, "{stored:?}");
    let mut from_store: Vec<serde_json::Value> = stored
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let key = |v: &serde_json::Value| (v["uri"].to_string(), v["ts"].as_i64());
    from_replay.sort_by_key(key);
    from_store.sort_by_key(key);
    assert_eq!(from_replay.len(), 40, "20 summaries and 13 + 7 flags");
    assert_eq!(from_store, from_replay);
}
