//! Fire semantics with the real `probe` guest, which writes back what it received:
//! ts, updated, others, params and the decoded window.

use komlogd::agent::Agent;
use komlogd::model::Value;
use komlogd_tests::{AgentDir, dp};
use serde_json::{Value as Json, json};

const S: i64 = 1_000_000; // one second in µs

/// The probe's report written at `out` (its latest sample).
fn report(agent: &Agent, out: &str) -> Json {
    let samples = agent.dispatcher.store().latest(out, 1).expect("store read");
    let sample = samples
        .first()
        .unwrap_or_else(|| panic!("no probe report at {out}"));
    match &sample.value {
        Value::Datasource(text) => serde_json::from_str(text).expect("probe writes JSON"),
        other => panic!("probe report is not text: {other:?}"),
    }
}

/// The probe's report written at exactly `ts`.
fn report_at(agent: &Agent, out: &str, ts: i64) -> Json {
    let samples = agent
        .dispatcher
        .store()
        .range(out, ts, ts, 1)
        .expect("store read");
    match samples.first().map(|s| &s.value) {
        Some(Value::Datasource(text)) => serde_json::from_str(text).expect("probe writes JSON"),
        other => panic!("no probe report at {out} @ {ts}: {other:?}"),
    }
}

/// (uri, ts) of each window row.
fn window(report: &Json) -> Vec<(String, i64)> {
    report["window"]
        .as_array()
        .expect("window array")
        .iter()
        .map(|r| {
            (
                r["uri"].as_str().unwrap().to_owned(),
                r["ts"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn probe_config(extra: &str) -> String {
    format!(
        "- username: alice\n- impulses:\n    filename: {{guest:probe}}\n    uris: [a, b, c]\n{extra}"
    )
}

#[test]
fn ts_updated_others_and_params() {
    let dir = AgentDir::new(&probe_config(
        "    params:\n      out: probe.out\n      threshold: 90\n      tags: [x, y]\n",
    ));
    let mut agent = dir.open();
    let r = agent
        .dispatcher
        .ingest(vec![dp("a", 100, 1.0), dp("b", 100, 2.0)])
        .unwrap();
    assert_eq!(
        (r.accepted, r.fires),
        (2, 1),
        "one fire per batch timestamp"
    );
    let rep = report(&agent, "probe.out");
    assert_eq!(rep["ts"], json!(100));
    assert_eq!(rep["updated"], json!(["a", "b"]));
    assert_eq!(rep["others"], json!(["c"]));
    assert_eq!(
        rep["params"],
        json!([
            ["out", "probe.out"],
            ["threshold", "90"],
            ["tags", "[\"x\",\"y\"]"]
        ])
    );
    assert_eq!(window(&rep), vec![("a".into(), 100), ("b".into(), 100)]);
    assert_eq!(rep["window"][1]["datapoint"], json!(2.0));

    // A batch with two timestamps fires twice, in timestamp order.
    let r = agent
        .dispatcher
        .ingest(vec![dp("c", 300, 3.0), dp("a", 200, 4.0)])
        .unwrap();
    assert_eq!(r.fires, 2);
    let rep = report(&agent, "probe.out");
    assert_eq!(rep["ts"], json!(300));
    assert_eq!(rep["updated"], json!(["c"]));
    assert_eq!(rep["others"], json!(["a", "b"]));
    // Default window: the latest sample at or before ts, per uri.
    assert_eq!(
        window(&rep),
        vec![("a".into(), 200), ("b".into(), 100), ("c".into(), 300)]
    );
}

/// Feed `a` at 0, 5, 10, 15, 20 s and return the window of the last fire.
fn window_with(data_reqs: &str) -> Vec<i64> {
    let dir = AgentDir::new(&probe_config(data_reqs));
    let mut agent = dir.open();
    for t in [0, 5, 10, 15, 20] {
        agent
            .dispatcher
            .ingest(vec![dp("a", t * S, t as f64)])
            .unwrap();
    }
    window(&report(&agent, "probe.out"))
        .into_iter()
        .map(|(_, ts)| ts / S)
        .collect()
}

#[test]
fn window_past_delta_only() {
    // (ts - 10 s, ts]: the lower bound is excluded.
    assert_eq!(
        window_with("    data_reqs: {past_delta: 10s}\n"),
        vec![15, 20]
    );
}

#[test]
fn window_past_count_only() {
    assert_eq!(
        window_with("    data_reqs: {past_count: 3}\n"),
        vec![10, 15, 20]
    );
}

#[test]
fn window_past_delta_and_count_unite() {
    // The count adds samples beyond the delta ...
    assert_eq!(
        window_with("    data_reqs: {past_delta: 6s, past_count: 3}\n"),
        vec![10, 15, 20]
    );
    // ... and the delta adds samples beyond the count.
    assert_eq!(
        window_with("    data_reqs: {past_delta: 12s, past_count: 1}\n"),
        vec![10, 15, 20]
    );
}

#[test]
fn window_default_is_the_latest_sample() {
    assert_eq!(window_with(""), vec![20]);
}

#[test]
fn window_is_relative_to_the_firing_timestamp() {
    let dir = AgentDir::new(&probe_config("    data_reqs: {past_count: 2}\n"));
    let mut agent = dir.open();
    for t in [10, 20, 30] {
        agent.dispatcher.ingest(vec![dp("a", t * S, 0.0)]).unwrap();
    }
    // A late sample replayed at 12 s sees the data around 12 s, not the newest.
    agent.dispatcher.ingest(vec![dp("a", 12 * S, 0.0)]).unwrap();
    let rep = report_at(&agent, "probe.out", 12 * S);
    assert_eq!(rep["ts"], json!(12 * S));
    assert_eq!(
        window(&rep),
        vec![("a".into(), 10 * S), ("a".into(), 12 * S)]
    );
}

#[test]
fn min_exec_delta_skips_and_counts() {
    let dir = AgentDir::new(&probe_config("    min_exec_delta: 10s\n"));
    let mut agent = dir.open();
    let mut fired = Vec::new();
    for t in [0, 5, 10, 15, 25] {
        let r = agent.dispatcher.ingest(vec![dp("a", t * S, 0.0)]).unwrap();
        fired.push(r.fires);
    }
    assert_eq!(fired, vec![1, 0, 1, 0, 1]);
    let (_, stats) = &agent.dispatcher.stats()[0];
    assert_eq!((stats.fires, stats.skips), (3, 2));
}

#[test]
fn two_blocks_of_one_module_are_independent_impulses() {
    let dir = AgentDir::new(
        "- impulses:\n    name: first\n    filename: {guest:probe}\n    uris: [a]\n    params: {out: first.out}\n    min_exec_delta: 1h\n\
         - impulses:\n    name: second\n    filename: {guest:probe}\n    uris: [a, b]\n    params: {out: second.out}\n",
    );
    let mut agent = dir.open();
    agent.dispatcher.ingest(vec![dp("a", S, 1.0)]).unwrap();
    agent.dispatcher.ingest(vec![dp("a", 2 * S, 1.0)]).unwrap();
    assert_eq!(
        report(&agent, "first.out")["ts"],
        json!(S),
        "first skips the second fire"
    );
    assert_eq!(report(&agent, "second.out")["ts"], json!(2 * S));
    assert_eq!(report(&agent, "second.out")["others"], json!(["b"]));
    let stats = agent.dispatcher.stats();
    assert_eq!(&*stats[0].0, "first");
    assert_eq!((stats[0].1.fires, stats[0].1.skips), (1, 1));
    assert_eq!((stats[1].1.fires, stats[1].1.skips), (2, 0));
}

#[test]
fn windows_survive_a_restart() {
    let dir = AgentDir::new(&probe_config("    data_reqs: {past_count: 10}\n"));
    {
        let mut agent = dir.open();
        for t in 1..=3 {
            agent
                .dispatcher
                .ingest(vec![dp("a", t * S, t as f64)])
                .unwrap();
        }
    }
    let mut agent = dir.open();
    agent.dispatcher.ingest(vec![dp("b", 4 * S, 4.0)]).unwrap();
    let rep = report(&agent, "probe.out");
    assert_eq!(
        window(&rep),
        vec![
            ("a".into(), S),
            ("a".into(), 2 * S),
            ("a".into(), 3 * S),
            ("b".into(), 4 * S)
        ]
    );
}

#[test]
fn own_global_uris_are_local_in_subscriptions() {
    let dir = AgentDir::new(
        "- username: Alice\n- impulses:\n    filename: {guest:probe}\n    uris: ['alice:a']\n",
    );
    let mut agent = dir.open();
    let r = agent.dispatcher.ingest(vec![dp("a", S, 1.0)]).unwrap();
    assert_eq!(r.fires, 1);
    assert_eq!(report(&agent, "probe.out")["updated"], json!(["alice:a"]));
}

#[test]
fn refire_runs_impulses_over_stored_data() {
    let dir = AgentDir::new(&probe_config("    data_reqs: {past_count: 5}\n"));
    let mut agent = dir.open();
    for t in [1, 2, 3] {
        agent.dispatcher.ingest(vec![dp("a", t * S, 0.0)]).unwrap();
    }
    // Re-run at 2 s: the window is cut there, nothing new is written to `a`.
    let r = agent.dispatcher.refire("a", 2 * S).unwrap();
    assert_eq!((r.fires, r.accepted), (1, 0));
    let rep = report_at(&agent, "probe.out", 2 * S);
    assert_eq!(window(&rep), vec![("a".into(), S), ("a".into(), 2 * S)]);
    assert_eq!(agent.dispatcher.store().latest("a", 10).unwrap().len(), 3);
    let bad = agent.dispatcher.refire("not..valid", 1).unwrap();
    assert_eq!(bad.fires, 0);
    assert!(bad.rejected[0].reason.to_string().contains("invalid uri"));
}

#[test]
fn a_uri_listed_twice_is_subscribed_once() {
    let dir = AgentDir::new(
        "- username: alice\n- impulses:\n    filename: {guest:probe}\n    uris: [e.a, e.a, e.b, 'alice:e.b']\n    data_reqs: {past_count: 5}\n",
    );
    let mut agent = dir.open();
    let uris: Vec<String> = agent
        .dispatcher
        .specs()
        .next()
        .unwrap()
        .uris
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(uris, ["e.a", "e.b"]);
    agent
        .dispatcher
        .ingest(vec![dp("e.a", S, 1.0), dp("e.b", S, 2.0)])
        .unwrap();
    let r = agent
        .dispatcher
        .ingest(vec![dp("e.a", 2 * S, 3.0)])
        .unwrap();
    assert_eq!(r.fires, 1);
    let rep = report(&agent, "probe.out");
    assert_eq!(rep["updated"], json!(["e.a"]));
    assert_eq!(rep["others"], json!(["e.b"]));
    assert_eq!(
        window(&rep),
        vec![("e.a".into(), S), ("e.a".into(), 2 * S), ("e.b".into(), S)]
    );
}

#[test]
fn a_retried_upload_is_held_not_fired_or_queued_again() {
    // The one-shot path (`komlogd -u` with no agent running).
    let dir = AgentDir::new(&probe_config(""));
    {
        let mut agent = dir.open();
        let r = agent.dispatcher.upload(vec![dp("a", S, 1.0)]).unwrap();
        assert_eq!((r.accepted, r.held, r.fires), (1, 0, 1));
        let r = agent.dispatcher.upload(vec![dp("a", S, 1.0)]).unwrap();
        assert_eq!((r.accepted, r.held, r.fires, r.outputs), (1, 1, 0, 0));
        // In a batch, the held sample is left out and the rest goes on.
        let r = agent
            .dispatcher
            .upload(vec![dp("a", S, 1.0), dp("b", S, 2.0)])
            .unwrap();
        assert_eq!((r.accepted, r.held, r.fires), (2, 1, 1));
        assert_eq!(report(&agent, "probe.out")["updated"], json!(["b"]));
        // Another value at the same time is a correction: stored and fired.
        let r = agent.dispatcher.upload(vec![dp("a", S, 5.0)]).unwrap();
        assert_eq!((r.accepted, r.held, r.fires), (1, 0, 1));
    }
    // The control socket's path, with a server configured: the held sample is
    // not queued for the server again either.
    dir.write_config(&format!(
        "{}- server:\n    url: http://127.0.0.1:9/\n",
        probe_config("")
    ));
    let mut agent = dir.open();
    let inbox = agent.dispatcher.inbox();
    let dispatcher = &mut agent.dispatcher;
    let fires = std::thread::scope(|s| {
        let serving = s.spawn(move || {
            let mut fires = 0;
            dispatcher.serve(|r| fires += r.fires, |e| panic!("store failure: {e}"));
            fires
        });
        let held = inbox.upload(vec![dp("a", S, 5.0)]).unwrap();
        assert_eq!((held.accepted, held.held), (1, 1));
        let new = inbox.upload(vec![dp("a", 2 * S, 6.0)]).unwrap();
        assert_eq!((new.accepted, new.held), (1, 0));
        inbox.stop().unwrap();
        serving.join().unwrap()
    });
    assert_eq!(fires, 1, "only the new sample fires");
    // The new sample and the probe's report on it; not the held one.
    let outbox = agent.dispatcher.store().outbox().unwrap();
    assert_eq!(outbox.depth().unwrap(), 2);
}
