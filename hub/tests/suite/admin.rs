//! The `komlog-hub` removal and listing commands (`user remove`, `agent
//! remove`, `unshare`, `share list`) and `query`'s numbers, run as real
//! processes on a data directory and against a running `komlog-hub serve`.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::*;
use komlog_hub::store::HubStore;
use komlog_hub::store::redb::RedbStore;

use komlog_protocol::status::{error, login_error as login_errors};
use komlog_protocol::{Body, DpData, Kind, RequestData, Status, TimeUuid, Uri, UriPayload};
use serde_json::Value;

#[track_caller]
fn ok_json(o: &Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The fingerprint `agent list` gives the key `public_line` of `owner`.
#[track_caller]
fn fingerprint_of(data: &Path, owner: &str, line: &str) -> String {
    let list = ok_json(&hub_cmd(data, &["agent", "list", owner]));
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["public_line"] == line)
        .and_then(|a| a["fingerprint"].as_str())
        .unwrap_or_else(|| panic!("no agent with this key: {list}"))
        .to_owned()
}

/// (owner, uri, with) of every share, from `share list --json`.
#[track_caller]
fn shares(data: &Path, owner: Option<&str>) -> Vec<(String, String, String)> {
    let mut args = vec!["share", "list", "--json"];
    args.extend(owner);
    let list = ok_json(&hub_cmd(data, &args));
    list["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_owned();
            (f("owner"), f("uri"), f("with"))
        })
        .collect()
}

fn triple(o: &str, u: &str, w: &str) -> (String, String, String) {
    (o.to_owned(), u.to_owned(), w.to_owned())
}

#[test]
fn removals_and_share_listing_on_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["alice", "bob", "carol"] {
        ok(&hub_cmd(&data, &["user", "add", name]));
    }
    let key0 = write_key(dir.path(), "key0.pub", key(0));
    let key1 = write_key(dir.path(), "key1.pub", key(1));
    let key2 = write_key(dir.path(), "key2.pub", key(2));
    let added = ok(&hub_cmd(
        &data,
        &["agent", "add", "alice", "--pubkey", arg(&key0)],
    ));
    let id0 = added
        .trim()
        .strip_prefix("registered agent ")
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_owned();
    ok(&hub_cmd(
        &data,
        &["agent", "add", "alice", "--pubkey", arg(&key1)],
    ));
    ok(&hub_cmd(
        &data,
        &["agent", "add", "bob", "--pubkey", arg(&key2)],
    ));

    // agent remove: usage, unknown user, unknown key, then each way of naming one.
    fails(
        &hub_cmd(&data, &["agent", "remove", "alice"]),
        2,
        "--fingerprint",
    );
    fails(
        &hub_cmd(
            &data,
            &[
                "agent",
                "remove",
                "alice",
                "--id",
                &id0,
                "--pubkey",
                arg(&key0),
            ],
        ),
        2,
        "cannot be used with",
    );
    fails(
        &hub_cmd(&data, &["agent", "remove", "dave", "--id", &id0]),
        1,
        "user dave does not exist",
    );
    let fp2 = fingerprint_of(&data, "bob", &public_line(key(2)));
    assert!(fp2.starts_with("SHA256:") && fp2.len() == 7 + 43, "{fp2}");
    fails(
        &hub_cmd(&data, &["agent", "remove", "alice", "--fingerprint", &fp2]),
        1,
        &format!("user alice has no agent with key {fp2}"),
    );
    fails(
        &hub_cmd(&data, &["agent", "remove", "alice", "--pubkey", arg(&key2)]),
        1,
        &format!("user alice has no agent with key {fp2}"),
    );
    fails(
        &hub_cmd(&data, &["agent", "remove", "alice", "--id", "0123"]),
        1,
        "user alice has no agent with id 0123",
    );
    let out = ok(&hub_cmd(&data, &["agent", "remove", "alice", "--id", &id0]));
    assert!(
        out.starts_with(&format!("removed agent {id0} (SHA256:")),
        "{out}"
    );
    fails(
        &hub_cmd(&data, &["agent", "remove", "alice", "--pubkey", arg(&key0)]),
        1,
        "user alice has no agent with key SHA256:",
    );
    let fp1 = fingerprint_of(&data, "alice", &public_line(key(1)));
    // The fingerprint works without its prefix too.
    let bare = fp1.strip_prefix("SHA256:").unwrap();
    ok(&hub_cmd(
        &data,
        &["agent", "remove", "alice", "--fingerprint", bare],
    ));
    let agents = ok_json(&hub_cmd(&data, &["agent", "list", "alice"]));
    assert_eq!(agents["agents"], serde_json::json!([]));
    ok(&hub_cmd(
        &data,
        &["agent", "remove", "bob", "--pubkey", arg(&key2)],
    ));
    // A removed key can be registered again.
    ok(&hub_cmd(
        &data,
        &["agent", "add", "bob", "--pubkey", arg(&key2)],
    ));

    // share list, in text and JSON, and unshare.
    assert_eq!(ok(&hub_cmd(&data, &["share", "list"])), "");
    ok(&hub_cmd(&data, &["share", "alice", "web", "--with", "bob"]));
    ok(&hub_cmd(
        &data,
        &["share", "alice", "host", "--with", "carol"],
    ));
    ok(&hub_cmd(
        &data,
        &["share", "alice", "host", "--with", "bob"],
    ));
    ok(&hub_cmd(&data, &["share", "bob", "x.y", "--with", "alice"]));
    assert_eq!(
        ok(&hub_cmd(&data, &["share", "list"])),
        "alice\thost\tbob\nalice\thost\tcarol\nalice\tweb\tbob\nbob\tx.y\talice\n"
    );
    assert_eq!(
        shares(&data, Some("bob")),
        vec![triple("bob", "x.y", "alice")]
    );
    assert_eq!(shares(&data, Some("carol")), vec![]);
    fails(
        &hub_cmd(&data, &["share", "list", "dave"]),
        1,
        "user dave does not exist",
    );
    fails(
        &hub_cmd(&data, &["unshare", "alice", "host.cpu", "--with", "bob"]),
        1,
        "alice does not share host.cpu with bob",
    );
    fails(
        &hub_cmd(&data, &["unshare", "alice", "host", "--with", "dave"]),
        1,
        "user dave does not exist",
    );
    fails(
        &hub_cmd(&data, &["unshare", "alice", "a..b", "--with", "bob"]),
        1,
        "not a local uri",
    );
    fails(&hub_cmd(&data, &["unshare", "alice", "host"]), 2, "--with");
    let out = ok(&hub_cmd(
        &data,
        &["unshare", "alice", "host", "--with", "bob"],
    ));
    assert_eq!(out.trim(), "alice no longer shares host with bob");
    fails(
        &hub_cmd(&data, &["unshare", "alice", "host", "--with", "bob"]),
        1,
        "alice does not share host with bob",
    );
    assert_eq!(
        shares(&data, None),
        vec![
            triple("alice", "host", "carol"),
            triple("alice", "web", "bob"),
            triple("bob", "x.y", "alice"),
        ]
    );

    // user remove: bob's keys, shares given and received, metrics and samples go.
    {
        let store = RedbStore::open(&data).unwrap();
        store
            .write(
                &user("bob"),
                &[
                    new_sample("x.y.z", Kind::Datapoint, 1, "1"),
                    new_sample("x.y.z", Kind::Datapoint, 2, "2"),
                    new_sample("notes", Kind::Datasource, 3, "text"),
                ],
            )
            .unwrap();
        store
            .write(
                &user("alice"),
                &[new_sample("web", Kind::Datapoint, 1, "7")],
            )
            .unwrap();
    }
    let q = ok_json(&hub_cmd(&data, &["query", "bob", "x.y.z"]));
    assert_eq!(q["rows"].as_array().unwrap().len(), 2, "{q}");
    fails(
        &hub_cmd(&data, &["user", "remove", "dave"]),
        1,
        "user dave does not exist",
    );
    let out = ok(&hub_cmd(&data, &["user", "remove", "bob"]));
    assert_eq!(
        out.trim(),
        "removed user bob with 1 agent key(s), 1 share(s) given, 1 share(s) received, \
         2 metric(s) and 3 sample(s)"
    );
    fails(
        &hub_cmd(&data, &["user", "remove", "bob"]),
        1,
        "user bob does not exist",
    );
    let users = ok_json(&hub_cmd(&data, &["user", "list"]));
    assert_eq!(users["users"], serde_json::json!(["alice", "carol"]));
    assert_eq!(shares(&data, None), vec![triple("alice", "host", "carol")]);
    // Others' data stays.
    let q = ok_json(&hub_cmd(&data, &["query", "alice", "web"]));
    assert_eq!(q["rows"][0]["value"], 7, "{q}");

    // Added again, bob starts empty; his old key is free.
    ok(&hub_cmd(&data, &["user", "add", "bob"]));
    let q = ok_json(&hub_cmd(&data, &["query", "bob", "x.y.z"]));
    assert_eq!(
        (&q["kind"], &q["rows"]),
        (&Value::Null, &serde_json::json!([]))
    );
    let q = ok_json(&hub_cmd(&data, &["query", "bob", "notes"]));
    assert_eq!(q["kind"], Value::Null);
    let agents = ok_json(&hub_cmd(&data, &["agent", "list", "bob"]));
    assert_eq!(agents["agents"], serde_json::json!([]));
    assert_eq!(shares(&data, Some("bob")), vec![]);
    ok(&hub_cmd(
        &data,
        &["agent", "add", "bob", "--pubkey", arg(&key2)],
    ));
    {
        let store = RedbStore::open(&data).unwrap();
        assert!(store.metrics_of(&user("bob")).unwrap().is_empty());
    }
}

fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap()
}

fn dp(u: &str, t: TimeUuid, content: &str) -> Body {
    Body::SendDpData(DpData {
        uri: uri(u),
        t,
        content: content.into(),
    })
}

fn hook(u: &str) -> Body {
    Body::HookToUri(UriPayload { uri: uri(u) })
}

fn request_data(u: &str) -> Body {
    Body::RequestData(RequestData {
        uri: uri(u),
        start: None,
        end: None,
        count: Some(10),
    })
}

/// The hooks of `user`'s sessions, from the `sessions` command.
fn hooks_of(data: &Path, user: &str) -> Vec<String> {
    let s = ok_json(&hub_cmd(data, &["sessions"]));
    s["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["user"] == user)
        .flat_map(|s| s["hooks"].as_array().unwrap().clone())
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_reach_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = Served::start(&data);
    let addr = served.addr();
    for name in ["alice", "bob"] {
        ok(&hub_cmd(&data, &["user", "add", name]));
    }
    let key0 = write_key(dir.path(), "key0.pub", key(0));
    let key1 = write_key(dir.path(), "key1.pub", key(1));
    let key2 = write_key(dir.path(), "key2.pub", key(2));
    ok(&hub_cmd(
        &data,
        &["agent", "add", "alice", "--pubkey", arg(&key0)],
    ));
    ok(&hub_cmd(
        &data,
        &["agent", "add", "alice", "--pubkey", arg(&key2)],
    ));
    ok(&hub_cmd(
        &data,
        &["agent", "add", "bob", "--pubkey", arg(&key1)],
    ));

    let mut alice0 = Client::open(addr, Some(&login_ok(addr, "alice", key(0)).await)).await;
    let mut alice2 = Client::open(addr, Some(&login_ok(addr, "alice", key(2)).await)).await;
    let mut bob = Client::open(addr, Some(&login_ok(addr, "bob", key(1)).await)).await;

    // query: datapoint values are JSON numbers with the stored digits.
    let now = komlog_protocol::timeuuid::now_micros();
    let (t1, t2) = (
        TimeUuid::random_at(now).unwrap(),
        TimeUuid::random_at(now + 1).unwrap(),
    );
    let r = alice0
        .request(dp("host.cpu", t1, "12345678901234567.5"))
        .await;
    assert_status(&r, Status::OK, "first datapoint");
    let r = alice0.request(dp("host.cpu", t2, "0.1")).await;
    assert_status(&r, Status::OK, "second datapoint");
    let out = ok(&hub_cmd(&data, &["query", "alice", "host.cpu", "--json"]));
    assert!(
        out.contains("\"value\": 12345678901234567.5"),
        "exact digits: {out}"
    );
    let q: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(q["kind"], "datapoint");
    let rows = q["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{q}");
    assert!(rows.iter().all(|r| r["value"].is_number()), "{q}");
    assert_eq!(rows[0]["t"], t2.hex());
    assert_eq!(rows[0]["value"].as_f64(), Some(0.1));
    assert_eq!(rows[1]["value"].as_f64(), Some(12345678901234567.5));
    // The count as komlogd spells it, and the old spelling.
    for flag in ["-n", "--limit", "--count"] {
        let q = ok_json(&hub_cmd(&data, &["query", "alice", "host.cpu", flag, "1"]));
        assert_eq!(q["rows"].as_array().unwrap().len(), 1, "{flag}: {q}");
        assert_eq!(q["rows"][0]["t"], t2.hex(), "{flag}: {q}");
    }

    // Shared, bob hooks and reads alice's uri; unshared, the hook ends and
    // both are refused.
    ok(&hub_cmd(
        &data,
        &["share", "alice", "host", "--with", "bob"],
    ));
    let r = bob.request(hook("alice:host.cpu")).await;
    assert_status(&r, Status::OK, "hook a shared uri");
    let r = bob.request(request_data("alice:host.cpu")).await;
    assert_status(&r, Status::ACCEPTED, "read a shared uri");
    let m = bob.next().await;
    assert!(matches!(m.body, Body::SendDataInterval(_)), "{m:?}");
    assert_eq!(hooks_of(&data, "bob"), ["alice:host.cpu"]);
    let out = ok(&hub_cmd(
        &data,
        &["unshare", "alice", "host", "--with", "bob"],
    ));
    assert_eq!(out.trim(), "alice no longer shares host with bob");
    assert!(hooks_of(&data, "bob").is_empty());
    let r = bob.request(hook("alice:host.cpu")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::HOOK_DENIED_DATAPOINT)
    );
    let r = bob.request(request_data("alice:host.cpu")).await;
    assert_eq!(
        (r.status, r.error),
        (Status::DENIED, error::DATA_DENIED_DATAPOINT)
    );

    // agent remove: the sessions of that key close with 4403 and it cannot log
    // in again; alice's other key is untouched.
    let fp0 = fingerprint_of(&data, "alice", &public_line(key(0)));
    let out = ok(&hub_cmd(
        &data,
        &["agent", "remove", "alice", "--fingerprint", &fp0],
    ));
    assert!(out.contains("closed 1 session(s) with 4403"), "{out}");
    alice0.expect_close(4403).await;
    let first = ask_challenge(addr, "alice", key(0)).await;
    assert_eq!(
        (first.status, login_error(&first)),
        (403, u64::from(login_errors::KEY_NOT_REGISTERED))
    );
    let r = alice2.request(dp("host.mem", TimeUuid::now(), "3")).await;
    assert_status(&r, Status::OK, "the other key's session stays");
    let _again = login_ok(addr, "alice", key(2)).await;

    // user remove: all of alice's sessions close with 4403 and her logins are
    // refused; bob's hooks on her uris end.
    ok(&hub_cmd(
        &data,
        &["share", "alice", "host", "--with", "bob"],
    ));
    let r = bob.request(hook("alice:host.mem")).await;
    assert_status(&r, Status::OK, "hook before the removal");
    let out = ok(&hub_cmd(&data, &["user", "remove", "alice"]));
    assert!(
        out.starts_with(
            "removed user alice with 1 agent key(s), 1 share(s) given, 0 share(s) received, \
             2 metric(s) and 3 sample(s); closed"
        ),
        "{out}"
    );
    alice2.expect_close(4403).await;
    let first = ask_challenge(addr, "alice", key(2)).await;
    assert_eq!(
        (first.status, login_error(&first)),
        (403, u64::from(login_errors::USER_NOT_FOUND))
    );
    assert!(hooks_of(&data, "bob").is_empty());
    let r = bob.request(request_data("alice:host.cpu")).await;
    assert_eq!(r.status, Status::DENIED);

    // Added again, alice starts empty and needs a key again.
    ok(&hub_cmd(&data, &["user", "add", "alice"]));
    let q = ok_json(&hub_cmd(&data, &["query", "alice", "host.cpu"]));
    assert_eq!(
        (&q["kind"], &q["rows"]),
        (&Value::Null, &serde_json::json!([]))
    );
    let first = ask_challenge(addr, "alice", key(2)).await;
    assert_eq!(
        (first.status, login_error(&first)),
        (403, u64::from(login_errors::KEY_NOT_REGISTERED))
    );
    // bob is untouched.
    let r = bob.request(dp("own", TimeUuid::now(), "1")).await;
    assert_status(&r, Status::OK, "bob writes on");

    assert_eq!(served.stop().code(), Some(0));
}
