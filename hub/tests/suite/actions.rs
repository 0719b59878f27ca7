//! Each action at the hub over a real websocket: happy paths, refusals with the
//! spec's status codes, malformed frames, sharing, pending hooks, notification
//! fan-out and history paging.

use crate::common;

use common::*;
use komlog_protocol::status::error;
use komlog_protocol::{
    Body, DataInterval, DpData, DsData, DsInfo, Kind, Message, MetricId, MultiData, MultiItem,
    RequestData, Status, TimeUuid, Uri, UriPayload,
};
use serde_json::json;

common::on_both_stores!(
    single_writes_store_and_keep_their_kind,
    multi_writes_are_checked_whole_before_anything_is_written,
    ds_info_needs_an_own_existing_datasource,
    malformed_frames_and_unknown_actions_are_answered_and_the_connection_lives,
    hooks_notify_every_hooked_session_after_the_writers_reply,
    a_pending_hook_activates_when_the_uri_appears,
    sharing_allows_reading_and_refuses_writing,
    request_data_pages_newest_first,
);

fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap()
}

fn ds(u: &str, t: TimeUuid, content: &str) -> Body {
    Body::SendDsData(DsData {
        uri: uri(u),
        t,
        content: content.into(),
    })
}

fn dp(u: &str, t: TimeUuid, content: &str) -> Body {
    Body::SendDpData(DpData {
        uri: uri(u),
        t,
        content: content.into(),
    })
}

fn item(u: &str, kind: Kind, content: &str) -> MultiItem {
    MultiItem {
        uri: uri(u),
        kind,
        content: content.into(),
    }
}

fn hook(u: &str) -> Body {
    Body::HookToUri(UriPayload { uri: uri(u) })
}

fn rows(hub: &TestHub, owner: &str, local: &str) -> Vec<(TimeUuid, String)> {
    hub.store()
        .read_newest(
            &MetricId {
                owner: user(owner),
                local: local.into(),
            },
            TimeUuid::MIN,
            TimeUuid::MAX,
            100_000,
        )
        .unwrap()
}

fn kind_of(hub: &TestHub, owner: &str, local: &str) -> Option<Kind> {
    hub.store()
        .metric_kind(&MetricId {
            owner: user(owner),
            local: local.into(),
        })
        .unwrap()
}

fn notification(m: &Message) -> (TimeUuid, Vec<(String, Kind, String)>) {
    assert_eq!(m.irt, None, "notifications answer nothing");
    match &m.body {
        Body::SendMultiData(d) => (
            d.t,
            d.uris
                .iter()
                .map(|i| (i.uri.to_string(), i.kind, i.content.clone()))
                .collect(),
        ),
        other => panic!("expected a notification, got {other:?}"),
    }
}

async fn two_users() -> (TestHub, Client, Client) {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    hub.add_user_with_key("bob", 1);
    let alice = hub.connect("alice", 0).await;
    let bob = hub.connect("bob", 1).await;
    (hub, alice, bob)
}

async fn single_writes_store_and_keep_their_kind() {
    let (hub, mut alice, _bob) = two_users().await;
    let t = TimeUuid::now();
    let r = alice.request(ds("host.df", t, "text\nlines")).await;
    assert_status(&r, Status::OK, "send_ds_data");
    assert_eq!((r.error, r.reason.as_deref()), (0, None));
    assert_eq!(
        rows(&hub, "alice", "host.df"),
        vec![(t, "text\nlines".to_owned())]
    );
    // One's own global uri is local.
    let r = alice.request(dp("ALICE:cpu.user", t, " +1.3E+3 ")).await;
    assert_status(&r, Status::OK, "send_dp_data with own global uri");
    assert_eq!(
        rows(&hub, "alice", "cpu.user"),
        vec![(t, "1.3E+3".to_owned())]
    );
    // The kind is fixed by the first write.
    let r = alice.request(dp("host.df", t, "1")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::NOT_A_DATAPOINT),
        "{r:?}"
    );
    let r = alice.request(ds("cpu.user", t, "x")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::NOT_A_DATASOURCE),
        "{r:?}"
    );
    // Another user's uri is read-only, shared or not.
    hub.share("bob", "b", "alice");
    let r = alice.request(ds("bob:b.x", t, "x")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::DS_FOREIGN_URI),
        "{r:?}"
    );
    assert!(
        r.reason
            .unwrap()
            .contains("Cannot modify other user's uris")
    );
    let r = alice.request(dp("bob:b.y", t, "1")).await;
    assert_eq!(r.status, Status::DENIED);
    assert_eq!(kind_of(&hub, "bob", "b.x"), None);
    // Bad contents are protocol errors.
    let r = alice.request(dp("cpu.user", t, "NaN")).await;
    assert_eq!(r.status, Status::PROTOCOL_ERROR);
    // Same TimeUUID again: replaced.
    let r = alice.request(dp("cpu.user", t, "7")).await;
    assert_status(&r, Status::OK, "upsert");
    assert_eq!(rows(&hub, "alice", "cpu.user"), vec![(t, "7".to_owned())]);
}

async fn multi_writes_are_checked_whole_before_anything_is_written() {
    let (hub, mut alice, _bob) = two_users().await;
    let t = TimeUuid::now();
    let r = alice
        .request(Body::SendMultiData(MultiData {
            t,
            uris: vec![
                item("m.ds", Kind::Datasource, "hello"),
                item("m.dp", Kind::Datapoint, "1.50"),
            ],
        }))
        .await;
    assert_status(&r, Status::OK, "multi");
    assert_eq!(rows(&hub, "alice", "m.dp"), vec![(t, "1.50".to_owned())]);
    let t2 = TimeUuid::now();
    let refused = [
        // A foreign uri anywhere refuses the whole message.
        (
            vec![
                item("m.new1", Kind::Datapoint, "1"),
                item("bob:x", Kind::Datapoint, "1"),
            ],
            Status::DENIED,
            error::MULTI_FOREIGN_URI,
        ),
        // A "p" item to an existing datasource.
        (
            vec![
                item("m.new2", Kind::Datapoint, "1"),
                item("m.ds", Kind::Datapoint, "2"),
            ],
            Status::PROTOCOL_ERROR,
            error::MULTI_INVALID_CONTENT,
        ),
        // A "d" item that is not a number, to an existing datapoint.
        (
            vec![
                item("m.new3", Kind::Datapoint, "1"),
                item("m.dp", Kind::Datasource, "abc"),
            ],
            Status::PROTOCOL_ERROR,
            error::MULTI_INVALID_CONTENT,
        ),
        // One new uri written as both kinds.
        (
            vec![
                item("m.twice", Kind::Datapoint, "1"),
                item("m.twice", Kind::Datasource, "a"),
            ],
            Status::DENIED,
            error::MULTI_KIND_MISMATCH,
        ),
    ];
    for (uris, status, code) in refused {
        let r = alice
            .request(Body::SendMultiData(MultiData { t: t2, uris }))
            .await;
        assert_eq!((r.status, r.error), (status, code), "{r:?}");
    }
    for new in ["m.new1", "m.new2", "m.new3", "m.twice"] {
        assert_eq!(kind_of(&hub, "alice", new), None, "{new} must not exist");
    }
    // A "d" item with numeric text goes into an existing datapoint.
    let r = alice
        .request(Body::SendMultiData(MultiData {
            t: t2,
            uris: vec![item("m.dp", Kind::Datasource, " 42 ")],
        }))
        .await;
    assert_status(&r, Status::OK, "numeric d item into a datapoint");
    assert_eq!(rows(&hub, "alice", "m.dp")[0], (t2, "42".to_owned()));
    // The same rules for a message whose uris this connection has all seen
    // already (their kinds are remembered, not looked up again).
    let t3 = TimeUuid::now();
    let r = alice
        .request(Body::SendMultiData(MultiData {
            t: t3,
            uris: vec![item("m.ds", Kind::Datapoint, "2")],
        }))
        .await;
    assert_eq!(
        (r.status, r.error),
        (Status::PROTOCOL_ERROR, error::MULTI_INVALID_CONTENT),
        "a \"p\" item to a known datasource: {r:?}"
    );
    let r = alice
        .request(Body::SendMultiData(MultiData {
            t: t3,
            uris: vec![
                item("m.ds", Kind::Datasource, "7"),
                item("m.dp", Kind::Datasource, "8"),
            ],
        }))
        .await;
    assert_status(&r, Status::OK, "known uris, each read by its kind");
    assert_eq!(rows(&hub, "alice", "m.ds")[0], (t3, "7".to_owned()));
    assert_eq!(rows(&hub, "alice", "m.dp")[0], (t3, "8".to_owned()));
}

async fn ds_info_needs_an_own_existing_datasource() {
    let (hub, mut alice, _bob) = two_users().await;
    let t = TimeUuid::now();
    alice.request(ds("pkg.cpu", t, "x")).await;
    alice.request(dp("pkg.load", t, "1")).await;
    let info = |u: &str, supplies: Option<Vec<&str>>| {
        Body::SendDsInfo(DsInfo {
            uri: uri(u),
            supplies: supplies.map(|v| v.into_iter().map(String::from).collect()),
        })
    };
    let r = alice
        .request(info("pkg.cpu", Some(vec!["b", "a", "b"])))
        .await;
    assert_status(&r, Status::OK, "ds_info");
    let id = MetricId {
        owner: user("alice"),
        local: "pkg.cpu".into(),
    };
    assert_eq!(
        hub.store().supplies(&id).unwrap(),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    let r = alice.request(info("pkg.cpu", None)).await;
    assert_status(&r, Status::OK, "null supplies keep the list");
    assert_eq!(hub.store().supplies(&id).unwrap().map(|v| v.len()), Some(2));
    let r = alice.request(info("pkg.none", Some(vec![]))).await;
    assert_eq!(
        (r.status, r.error),
        (Status::NOT_FOUND, error::INFO_NOT_FOUND)
    );
    let r = alice.request(info("pkg.load", Some(vec![]))).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::INFO_NOT_A_DATASOURCE)
    );
    let r = alice.request(info("bob:pkg", Some(vec![]))).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::INFO_FOREIGN_URI)
    );
}

async fn malformed_frames_and_unknown_actions_are_answered_and_the_connection_lives() {
    let (_hub, mut alice, _bob) = two_users().await;
    let seq = "bb359680683d11e78000000000000000";
    // Refusals that echo a `v` other than 1, and frames that are not JSON
    // (which close the connection), are in tests/answers.rs.
    let cases = [
        (
            json!({"v":1,"action":"hook_to_uri","payload":{"uri":"a"}}).to_string(),
            error::MALFORMED_MESSAGE,
            false,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":"0b5ad3e4d8a94f8e9e3ac9b1c0b1a1a1","payload":{"uri":"a"}})
                .to_string(),
            error::MALFORMED_MESSAGE,
            false,
        ),
        (
            json!({"v":1,"action":"drop_tables","seq":seq,"payload":{}}).to_string(),
            error::UNSUPPORTED_ACTION,
            true,
        ),
        (
            json!({"v":1,"action":"generic_response","seq":seq,"irt":null,
                   "payload":{"status":4200,"error":0,"reason":null}})
            .to_string(),
            error::UNSUPPORTED_ACTION,
            true,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":seq,"irt":null,"payload":{"uri":"a..b"}})
                .to_string(),
            error::HOOK_INVALID_URI,
            true,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":seq,"payload":{"uri":"a"}}).to_string(),
            error::HOOK_PAYLOAD,
            true,
        ),
    ];
    for (text, code, answered) in cases {
        alice.send_text(text.clone()).await;
        let m = alice.next().await;
        let Body::GenericResponse(r) = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(
            (r.status, r.error),
            (Status::PROTOCOL_ERROR, code),
            "{text}: {r:?}"
        );
        assert_eq!(m.irt.is_some(), answered, "{text}");
        if answered {
            assert_eq!(m.irt.unwrap().hex(), seq);
        }
    }
    alice.send_binary(vec![1, 2, 3]).await;
    let m = alice.next().await;
    assert!(matches!(m.body, Body::GenericResponse(ref r) if r.status == Status::PROTOCOL_ERROR));
    // Still usable.
    let r = alice
        .request(ds("still.alive", TimeUuid::now(), "yes"))
        .await;
    assert_status(&r, Status::OK, "after bad frames");
}

async fn hooks_notify_every_hooked_session_after_the_writers_reply() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    hub.add_user_with_key("alice", 2);
    let mut first = hub.connect("alice", 0).await;
    let mut second = hub.connect("alice", 2).await;
    let t0 = TimeUuid::now();
    first.request(dp("cpu.user", t0, "1")).await;
    for c in [&mut first, &mut second] {
        let r = c.request(hook("cpu.user")).await;
        assert_eq!(r.status, Status::OK);
        assert_eq!(r.reason.as_deref(), Some("Hooked successfully"));
    }
    let t = TimeUuid::now();
    let seq = first
        .send(Body::SendMultiData(MultiData {
            t,
            uris: vec![
                item("cpu.user", Kind::Datapoint, "12.5"),
                item("cpu.other", Kind::Datapoint, "3"),
            ],
        }))
        .await;
    // The writer: its reply, then its own notification.
    let r = first.reply_to(seq).await;
    assert_eq!(r.status, Status::OK);
    let n = notification(&first.next().await);
    assert_eq!(
        n,
        (
            t,
            vec![("cpu.user".to_owned(), Kind::Datapoint, "12.5".to_owned())]
        )
    );
    let n = notification(&second.next().await);
    assert_eq!(
        n,
        (
            t,
            vec![("cpu.user".to_owned(), Kind::Datapoint, "12.5".to_owned())]
        )
    );
    // After unhook, nothing more for the second session: its next message is
    // the notification of a later write to a uri it still hooks, which the hub
    // sends after whatever the earlier write caused.
    let r = second.request(hook("cpu.other")).await;
    assert_eq!(r.status, Status::OK);
    let r = second
        .request(Body::UnhookFromUri(UriPayload {
            uri: uri("cpu.user"),
        }))
        .await;
    assert_eq!(r.status, Status::OK);
    first.request(dp("cpu.user", TimeUuid::now(), "2")).await;
    let _own = notification(&first.next().await);
    let later = TimeUuid::now();
    first.request(dp("cpu.other", later, "4")).await;
    assert_eq!(
        notification(&second.next().await),
        (
            later,
            vec![("cpu.other".to_owned(), Kind::Datapoint, "4".to_owned())]
        )
    );
}

async fn a_pending_hook_activates_when_the_uri_appears() {
    let (hub, mut alice, mut bob) = two_users().await;
    hub.share("alice", "later", "bob");
    let r = bob.request(hook("alice:later.metric")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::NOT_FOUND, error::HOOK_PENDING)
    );
    assert_eq!(
        r.reason.as_deref(),
        Some("Operation registered, but uri does not exist yet")
    );
    let r = alice.request(hook("later.metric")).await;
    assert_eq!(r.status, Status::NOT_FOUND);
    let sessions = hub.running.hub.sessions.list();
    assert!(
        sessions
            .iter()
            .all(|s| s.pending == vec!["alice:later.metric".to_owned()])
    );
    let t = TimeUuid::now();
    let r = alice.request(ds("later.metric", t, "born")).await;
    assert_eq!(r.status, Status::OK);
    let n = notification(&bob.next().await);
    assert_eq!(
        n,
        (
            t,
            vec![(
                "alice:later.metric".to_owned(),
                Kind::Datasource,
                "born".to_owned()
            )]
        )
    );
    let n = notification(&alice.next().await);
    assert_eq!(n.1[0].0, "later.metric");
    // Now an active hook.
    let t2 = TimeUuid::now();
    alice.request(ds("later.metric", t2, "again")).await;
    let n = notification(&bob.next().await);
    assert_eq!(n.0, t2);
    assert!(
        hub.running
            .hub
            .sessions
            .list()
            .iter()
            .all(|s| s.pending.is_empty())
    );
}

async fn sharing_allows_reading_and_refuses_writing() {
    let (hub, mut alice, mut bob) = two_users().await;
    let t = TimeUuid::now();
    alice.request(dp("host.cpu", t, "5")).await;
    alice.request(dp("hostname", t, "6")).await;
    alice.request(dp("private.x", t, "7")).await;
    // Not shared yet.
    let r = bob.request(hook("alice:host.cpu")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::HOOK_DENIED_DATAPOINT)
    );
    hub.share("alice", "host", "bob");
    let r = bob.request(hook("alice:host.cpu")).await;
    assert_status(&r, Status::OK, "hook a shared uri");
    // The prefix stops at level boundaries.
    let r = bob.request(hook("alice:hostname")).await;
    assert_eq!(r.status, Status::DENIED);
    let r = bob.request(hook("alice:private.x")).await;
    assert_eq!(r.status, Status::DENIED);
    // An unknown owner.
    let r = bob.request(hook("carol:x")).await;
    assert_eq!(r.status, Status::DENIED);
    // History of a shared uri, named as bob sees it.
    let seq = bob
        .send(Body::RequestData(RequestData {
            uri: uri("ALICE:host.cpu"),
            start: None,
            end: None,
            count: Some(10),
        }))
        .await;
    assert_eq!(bob.reply_to(seq).await.status, Status::ACCEPTED);
    let m = bob.next().await;
    let Body::SendDataInterval(d) = m.body else {
        panic!("{m:?}")
    };
    assert_eq!(m.irt, Some(seq));
    assert_eq!(d.uri.to_string(), "alice:host.cpu");
    assert_eq!(d.data, vec![(t, "5".to_owned())]);
    let r = bob
        .request(Body::RequestData(RequestData {
            uri: uri("alice:private.x"),
            start: None,
            end: None,
            count: Some(1),
        }))
        .await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::DATA_DENIED_DATAPOINT)
    );
    // Writes stay refused.
    let r = bob
        .request(dp("alice:host.cpu", TimeUuid::now(), "9"))
        .await;
    assert_eq!(r.status, Status::DENIED);
    let r = bob
        .request(Body::SendMultiData(MultiData {
            t: TimeUuid::now(),
            uris: vec![item("alice:host.cpu", Kind::Datapoint, "9")],
        }))
        .await;
    assert_eq!(r.status, Status::DENIED);
    assert_eq!(rows(&hub, "alice", "host.cpu").len(), 1);
    // Notifications of the shared uri reach bob with the owner's name.
    let t2 = TimeUuid::now();
    alice.request(dp("host.cpu", t2, "8")).await;
    let n = notification(&bob.next().await);
    assert_eq!(
        n,
        (
            t2,
            vec![("alice:host.cpu".to_owned(), Kind::Datapoint, "8".to_owned())]
        )
    );
}

/// Collect the `expected` chunks answering `request`, and check nothing follows.
async fn chunks(client: &mut Client, request: RequestData, expected: usize) -> Vec<DataInterval> {
    let seq = client.send(Body::RequestData(request)).await;
    let r = client.reply_to(seq).await;
    assert_eq!(
        (r.status, r.reason.as_deref()),
        (Status::ACCEPTED, Some("message accepted for processing"))
    );
    let mut out = Vec::new();
    while out.len() < expected {
        let m = client.next().await;
        assert_eq!(m.irt, Some(seq));
        let Body::SendDataInterval(d) = m.body else {
            panic!("{m:?}")
        };
        out.push(d);
    }
    // Nothing follows: frames are answered in order, so the next message
    // answers a later request (an unhook of a uri that was never hooked).
    let later = client
        .send(Body::UnhookFromUri(UriPayload {
            uri: uri("not.hooked"),
        }))
        .await;
    let m = client.next().await;
    assert_eq!(m.irt, Some(later), "a message after the last chunk: {m:?}");
    out
}

async fn request_data_pages_newest_first() {
    let (hub, mut alice, _bob) = two_users().await;
    let base = 1_700_000_000_000_000i64;
    let dps: Vec<_> = (0..2500)
        .map(|i| new_sample("big.dp", Kind::Datapoint, base + i, &i.to_string()))
        .collect();
    hub.seed("alice", &dps);
    let dss: Vec<_> = (0..250)
        .map(|i| new_sample("big.ds", Kind::Datasource, base + i, &format!("row {i}")))
        .collect();
    hub.seed("alice", &dss);
    let start = TimeUuid::MIN;
    let end = TimeUuid::MAX;

    // Every row: 1000-row chunks, each ending at the previous chunk's oldest row.
    let got = chunks(
        &mut alice,
        RequestData {
            uri: uri("big.dp"),
            start: Some(start),
            end: Some(end),
            count: None,
        },
        3,
    )
    .await;
    assert_eq!(
        got.iter().map(|c| c.data.len()).collect::<Vec<_>>(),
        [1000, 1000, 502]
    );
    assert_eq!(got[0].end, end);
    assert_eq!(got[0].start, got[0].data[999].0);
    assert_eq!(got[1].end, got[0].start);
    assert_eq!(
        got[1].data[0].0, got[0].start,
        "the boundary row comes twice"
    );
    assert_eq!(
        got[2].start, start,
        "the last chunk reaches the requested start"
    );
    let mut all: Vec<(TimeUuid, String)> = got.iter().flat_map(|c| c.data.clone()).collect();
    assert!(all.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");
    all.dedup();
    assert_eq!(all.len(), 2500);
    assert_eq!(all[0].1, "2499");
    assert_eq!(all[2499].1, "0");

    // A count: the newest rows, the chunks' rows adding up to `count` (the
    // boundary row counted each time it comes), and no chunk after that.
    let got = chunks(
        &mut alice,
        RequestData {
            uri: uri("big.dp"),
            start: None,
            end: None,
            count: Some(1500),
        },
        2,
    )
    .await;
    assert_eq!(
        got.iter().map(|c| c.data.len()).collect::<Vec<_>>(),
        [1000, 500]
    );
    assert_eq!(
        got[1].data[0].0, got[0].start,
        "the boundary row comes twice"
    );
    assert_ne!(
        got[1].start, start,
        "a chunk that meets the count is cut at its oldest row"
    );
    assert_eq!(got[0].data[0].1, "2499");
    assert_eq!(got[1].data[499].1, "1001", "1499 distinct rows, the newest");

    // Small counts, bounds given in the wrong order (swapped), inclusive.
    let t10 = dps[10].t;
    let t20 = dps[20].t;
    let got = chunks(
        &mut alice,
        RequestData {
            uri: uri("big.dp"),
            start: Some(t20),
            end: Some(t10),
            count: None,
        },
        1,
    )
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), 11);
    assert_eq!((got[0].start, got[0].end), (t10, t20));

    // Datasources page by 100.
    let got = chunks(
        &mut alice,
        RequestData {
            uri: uri("big.ds"),
            start: Some(start),
            end: Some(end),
            count: None,
        },
        3,
    )
    .await;
    assert_eq!(
        got.iter().map(|c| c.data.len()).collect::<Vec<_>>(),
        [100, 100, 52]
    );
    assert!(got.iter().all(|c| c.kind == Kind::Datasource));

    // Unknown uri, and count null with an open side.
    let r = alice
        .request(Body::RequestData(RequestData {
            uri: uri("nothing.here"),
            start: None,
            end: None,
            count: Some(5),
        }))
        .await;
    assert_eq!(
        (r.status, r.error),
        (Status::NOT_FOUND, error::DATA_NOT_FOUND)
    );
    alice
        .send_text(
            json!({"v":1,"action":"request_data","seq":TimeUuid::now().hex(),"irt":null,
                   "payload":{"uri":"big.dp","start":null,"end":TimeUuid::MAX.hex(),"count":null}})
            .to_string(),
        )
        .await;
    let m = alice.next().await;
    assert!(
        matches!(m.body, Body::GenericResponse(ref r) if r.status == Status::PROTOCOL_ERROR),
        "{m:?}"
    );
}
