//! Every rule applied to what a guest returns, with the real `probe` guest told
//! (through its `emit` param) exactly what to return, and `misbehave` returning
//! more samples than a call may.

use komlogd::agent::Agent;
use komlogd::impulses::ImpulseStats;
use komlogd::model::{Kind, Value};
use komlogd_tests::{AgentDir, dp, impulse_stats};

fn agent_emitting(emit: &str, extra_top: &str) -> (AgentDir, Agent) {
    let dir = AgentDir::new(&format!(
        "- username: alice\n{extra_top}- impulses:\n    name: emitter\n    filename: {{guest:probe}}\n    uris: [trigger]\n    params:\n      emit: '{emit}'\n"
    ));
    let agent = dir.open();
    (dir, agent)
}

fn stats(agent: &Agent) -> ImpulseStats {
    agent.dispatcher.stats()[0].1.clone()
}

fn stored(agent: &Agent, uri: &str) -> Vec<Value> {
    agent
        .dispatcher
        .store()
        .latest(uri, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.value)
        .collect()
}

#[test]
fn bad_uri_is_dropped_and_the_rest_kept() {
    let (_d, mut agent) = agent_emitting(
        r#"[{"uri": "bad..uri", "datapoint": 1}, {"uri": "good.one", "datapoint": 2}]"#,
        "",
    );
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 1, 0.0)])
        .unwrap();
    assert_eq!(stored(&agent, "good.one"), vec![Value::Datapoint(2.0)]);
    let s = stats(&agent);
    assert_eq!(s.invalid_outputs, 1);
    let err = s.last_error.unwrap();
    assert!(
        err.contains("bad..uri") && err.contains("invalid uri"),
        "{err}"
    );
}

#[test]
fn oversized_datasource_is_dropped() {
    let (_d, mut agent) = agent_emitting(
        r#"[{"uri": "big", "datasource_len": 131073}, {"uri": "fits", "datasource_len": 131072}]"#,
        "",
    );
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 1, 0.0)])
        .unwrap();
    assert!(stored(&agent, "big").is_empty());
    assert_eq!(
        stored(&agent, "fits"),
        vec![Value::Datasource("x".repeat(131_072))]
    );
    let s = stats(&agent);
    assert_eq!(s.invalid_outputs, 1);
    assert!(
        s.last_error
            .unwrap()
            .contains("over the limit of 131072 bytes")
    );
}

#[test]
fn nan_and_infinities_are_dropped() {
    let (_d, mut agent) = agent_emitting(
        r#"[{"uri": "n", "datapoint": "nan"}, {"uri": "i", "datapoint": "inf"}, {"uri": "m", "datapoint": "-inf"}, {"uri": "f", "datapoint": 1.5}]"#,
        "",
    );
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 1, 0.0)])
        .unwrap();
    for uri in ["n", "i", "m"] {
        assert!(stored(&agent, uri).is_empty(), "{uri} must not be stored");
    }
    assert_eq!(stored(&agent, "f"), vec![Value::Datapoint(1.5)]);
    assert_eq!(stats(&agent).invalid_outputs, 3);
}

#[test]
fn a_time_outside_the_valid_range_is_refused_at_every_entry() {
    const RANGE: &str =
        "outside the valid time range 1582-10-15T00:00:00Z ..= 5236-03-31T21:21:00.684697Z";
    // Impulse outputs.
    let (_d, mut agent) = agent_emitting(
        r#"[{"uri": "max", "ts": 9223372036854775807, "datapoint": 1}, {"uri": "y10k", "ts": 253402300800000000, "datapoint": 1}, {"uri": "early", "ts": -12219292800000001, "datapoint": 1}, {"uri": "last", "ts": 103072857660684697, "datapoint": 1}, {"uri": "first", "ts": -12219292800000000, "datapoint": 1}]"#,
        "",
    );
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 1, 0.0)])
        .unwrap();
    for uri in ["max", "y10k", "early"] {
        assert!(stored(&agent, uri).is_empty(), "{uri} must not be stored");
    }
    for uri in ["last", "first"] {
        assert_eq!(stored(&agent, uri), vec![Value::Datapoint(1.0)], "{uri}");
    }
    let s = stats(&agent);
    assert_eq!(s.invalid_outputs, 3);
    let err = s.last_error.unwrap();
    assert!(err.contains(RANGE), "{err}");
    // Source samples: uploads, jobs, packages.
    let report = agent
        .dispatcher
        .ingest(vec![dp("src", i64::MAX, 1.0), dp("src", 2, 1.0)])
        .unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(report.rejected.len(), 1);
    let reason = report.rejected[0].reason.to_string();
    assert!(reason.contains(RANGE), "{reason}");
    // History from the server: dropped, the rest stored.
    let inbox = agent.dispatcher.inbox();
    inbox
        .history(vec![dp("bob:x", i64::MAX, 1.0), dp("bob:x", 5, 2.0)])
        .unwrap();
    inbox.stop().unwrap();
    agent
        .dispatcher
        .serve(|_| {}, |e| panic!("store failure: {e}"));
    let held: Vec<i64> = agent
        .dispatcher
        .store()
        .latest("bob:x", 10)
        .unwrap()
        .iter()
        .map(|s| s.ts)
        .collect();
    assert_eq!(held, [5]);
}

#[test]
fn a_uri_keeps_the_kind_of_its_first_write() {
    let (_d, mut agent) = agent_emitting(r#"[{"uri": "k", "datasource": "text"}]"#, "");
    agent.dispatcher.ingest(vec![dp("k", 1, 7.0)]).unwrap();
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 2, 0.0)])
        .unwrap();
    assert_eq!(stored(&agent, "k"), vec![Value::Datapoint(7.0)]);
    assert_eq!(agent.dispatcher.store().kind_of("k"), Some(Kind::Datapoint));
    let s = stats(&agent);
    assert_eq!(s.invalid_outputs, 1);
    let err = s.last_error.unwrap();
    assert!(err.contains("k is a datapoint"), "{err}");
}

#[test]
fn remote_writes_are_dropped_and_counted_own_global_uri_is_local() {
    let (_d, mut agent) = agent_emitting(
        r#"[{"uri": "bob:their.uri", "datapoint": 1}, {"uri": "ALICE:mine", "datapoint": 2}]"#,
        "",
    );
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 1, 0.0)])
        .unwrap();
    let s = stats(&agent);
    assert_eq!(s.remote_writes_dropped, 1);
    assert_eq!(s.invalid_outputs, 0);
    assert!(stored(&agent, "bob:their.uri").is_empty());
    assert_eq!(stored(&agent, "mine"), vec![Value::Datapoint(2.0)]);
    let uris: Vec<String> = agent
        .dispatcher
        .store()
        .uris()
        .unwrap()
        .into_iter()
        .map(|u| u.uri)
        .collect();
    assert!(!uris.iter().any(|u| u.contains("bob")), "{uris:?}");
}

#[test]
fn source_samples_follow_the_same_rules() {
    let (_d, mut agent) = agent_emitting("[]", "");
    let report = agent
        .dispatcher
        .ingest(vec![
            dp("ok", 1, 1.0),
            dp("bob:x", 1, 1.0),
            dp("not ok", 1, 1.0),
            dp("nan", 1, f64::NAN),
        ])
        .unwrap();
    assert_eq!(report.accepted, 1);
    let reasons: Vec<String> = report
        .rejected
        .iter()
        .map(|r| r.reason.to_string())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("remote uris are read-only"));
    assert!(reasons[1].contains("invalid uri"));
    assert!(reasons[2].contains("not finite"));
}

#[test]
fn an_impulse_loop_stops_at_the_chain_depth() {
    // The impulse writes to the uri it subscribes to: every output fires it again.
    let dir = AgentDir::new(
        "- max_chain_depth: 3\n- impulses:\n    name: looper\n    filename: {guest:probe}\n    uris: [loop.x]\n    params:\n      emit: '[{\"uri\": \"loop.x\", \"datapoint\": 1}]'\n",
    );
    let mut agent = dir.open();
    let report = agent.dispatcher.ingest(vec![dp("loop.x", 1, 0.0)]).unwrap();
    assert_eq!(
        report.fires, 3,
        "depth 0, 1 and 2 fire; depth 3 is stored only"
    );
    let s = stats(&agent);
    assert_eq!((s.fires, s.chain_cut), (3, 1));
    assert_eq!(stored(&agent, "loop.x"), vec![Value::Datapoint(1.0)]);
}

#[test]
fn a_chain_of_impulses_runs_through() {
    // a → first → b → second → c
    let dir = AgentDir::new(
        "- impulses:\n    name: first\n    filename: {guest:probe}\n    uris: [a]\n    params: {out: first.out, emit: '[{\"uri\": \"b\", \"datapoint\": 1}]'}\n\
         - impulses:\n    name: second\n    filename: {guest:probe}\n    uris: [b]\n    params: {out: second.out, emit: '[{\"uri\": \"c\", \"datapoint\": 2}]'}\n",
    );
    let mut agent = dir.open();
    let report = agent.dispatcher.ingest(vec![dp("a", 5, 0.0)]).unwrap();
    assert_eq!(report.fires, 2);
    let c = agent.dispatcher.store().latest("c", 1).unwrap();
    assert_eq!((c[0].ts, &c[0].value), (5, &Value::Datapoint(2.0)));
}

#[test]
fn a_call_returning_more_samples_than_its_limit_has_none_written() {
    // `flood` returns 20,000 samples (over the default limit of 10,000);
    // `five` returns exactly its limit.
    let dir = AgentDir::new(
        "- impulses:\n    name: flood\n    filename: {guest:misbehave}\n    uris: [trigger]\n    params: {mode: flood}\n\
         - impulses:\n    name: five\n    filename: {guest:misbehave}\n    uris: [other]\n    params: {mode: flood, count: 5}\n    limits: {outputs: 5}\n",
    );
    let mut agent = dir.open();
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 1, 0.0), dp("other", 1, 0.0)])
        .unwrap();
    let flood = impulse_stats(&agent, "flood");
    assert_eq!(
        (flood.fires, flood.outputs, flood.invalid_outputs),
        (1, 0, 20_000)
    );
    let err = flood.last_error.unwrap();
    assert!(
        err.contains("returned 20000 samples, more than its limit of 10000 a call"),
        "{err}"
    );
    assert!(stored(&agent, "misbehave.flood.19999").is_empty());
    let five = impulse_stats(&agent, "five");
    assert_eq!((five.outputs, five.invalid_outputs), (5, 0), "{five:?}");
    assert_eq!(
        stored(&agent, "misbehave.flood.4"),
        vec![Value::Datapoint(4.0)]
    );
}

/// In connected mode the outputs of an impulse fired by a server notification
/// are queued as answers to it (the message's `irt`, as the original agent
/// sent them since 0.9.0); outputs of a fire on a local sample, the local
/// sample itself and further hops of a chain answer nothing.
#[test]
fn outputs_of_a_fire_on_a_notification_answer_it() {
    use komlogd::store::Cursor;
    let dir = AgentDir::new(
        "- username: alice\n- server:\n    url: http://127.0.0.1:9/\n- impulses:\n    name: first\n    filename: {guest:probe}\n    uris: [bob:shared.x, trigger]\n    params:\n      emit: '[{\"uri\": \"out.first\", \"datapoint\": 1}]'\n- impulses:\n    name: second\n    filename: {guest:probe}\n    uris: [out.first]\n    params:\n      emit: '[{\"uri\": \"out.second\", \"datapoint\": 2}]'\n",
    );
    let mut agent = dir.open();
    let seq = [0x11u8; 16];
    let inbox = agent.dispatcher.inbox();
    inbox
        .remote(vec![dp("bob:shared.x", 10, 5.0)], Some(seq))
        .unwrap();
    inbox.stop().unwrap();
    agent
        .dispatcher
        .serve(|_| {}, |e| panic!("store failure: {e}"));
    agent
        .dispatcher
        .ingest(vec![dp("trigger", 20, 6.0)])
        .unwrap();
    let outbox = agent.dispatcher.store().outbox().unwrap();
    let rows: Vec<(i64, String, Option<[u8; 16]>)> = outbox
        .read(Cursor::Start, 100, |_, _, _| false)
        .unwrap()
        .into_iter()
        .map(|q| (q.sample.ts, q.sample.uri, q.answers))
        // The probe also writes its report, `probe.out`, at every fire.
        .filter(|(_, uri, _)| uri != "probe.out")
        .collect();
    assert_eq!(
        rows,
        vec![
            (10, "out.first".into(), Some(seq)),
            (10, "out.second".into(), None),
            (20, "out.first".into(), None),
            (20, "out.second".into(), None),
            (20, "trigger".into(), None),
        ]
    );
}
