//! Spec §4.6, "The server's answers, case by case": every row of the table is
//! one or more named cases here (a row with alternatives gets one case each),
//! with the status and error number the table gives, sent over a real
//! websocket to a hub on 127.0.0.1. A failure names its case; all cases run
//! and every failing one is listed.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use komlog_hub::store::{
    AgentRecord, HubStore, NewSample, Share, StoreError, TokenRecord, WriteOutcome,
};
use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use serde_json::{Value, json};

/// A uuid of version 4: not a TimeUUID.
const V4_UUID: &str = "0b5ad3e4d8a94f8e9e3ac9b1c0b1a1a1";
/// Rows of alice's `big.dp`.
const BIG_ROWS: usize = 2500;
/// How often each upgrade case is tried (the refusal must win every time).
const UPGRADE_TRIES: usize = 10;
/// Messages of about 20 KB sent at once after each of those upgrades.
const UPGRADE_FRAMES: usize = 50;
/// How long "nothing more comes" is watched.
const QUIET: Duration = Duration::from_millis(300);

/// The redb store, failing every operation on a uri under `boom`: the
/// "unexpected failure" row.
struct FailingStore(Box<dyn HubStore>);

fn boom(path: &str) -> StoreError {
    StoreError::Database {
        path: PathBuf::from("test"),
        op: "an injected failure",
        reason: format!("{path} is under boom"),
    }
}

fn is_boom(local: &str) -> bool {
    local == "boom" || local.starts_with("boom.")
}

impl HubStore for FailingStore {
    fn add_user(&self, name: &Username) -> Result<(), StoreError> {
        self.0.add_user(name)
    }
    fn user_exists(&self, name: &Username) -> Result<bool, StoreError> {
        self.0.user_exists(name)
    }
    fn users(&self) -> Result<Vec<Username>, StoreError> {
        self.0.users()
    }
    fn add_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError> {
        self.0.add_agent(owner, public_line)
    }
    fn find_agent(
        &self,
        owner: &Username,
        public_line: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.0.find_agent(owner, public_line)
    }
    fn agents_of(&self, owner: &Username) -> Result<Vec<AgentRecord>, StoreError> {
        self.0.agents_of(owner)
    }
    fn add_share(&self, share: &Share) -> Result<(), StoreError> {
        self.0.add_share(share)
    }
    fn shares_of(&self, owner: &Username) -> Result<Vec<Share>, StoreError> {
        self.0.shares_of(owner)
    }
    fn metric_kind(&self, id: &MetricId) -> Result<Option<Kind>, StoreError> {
        if is_boom(&id.local) {
            return Err(boom(&id.local));
        }
        self.0.metric_kind(id)
    }
    fn metrics_of(&self, owner: &Username) -> Result<Vec<(String, Kind)>, StoreError> {
        self.0.metrics_of(owner)
    }
    fn write(&self, owner: &Username, samples: &[NewSample]) -> Result<WriteOutcome, StoreError> {
        if let Some(s) = samples.iter().find(|s| is_boom(&s.uri)) {
            return Err(boom(&s.uri));
        }
        self.0.write(owner, samples)
    }
    fn set_supplies(&self, id: &MetricId, supplies: &[String]) -> Result<(), StoreError> {
        self.0.set_supplies(id, supplies)
    }
    fn supplies(&self, id: &MetricId) -> Result<Option<Vec<String>>, StoreError> {
        self.0.supplies(id)
    }
    fn read_newest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.0.read_newest(id, start, end, limit)
    }
    fn read_oldest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.0.read_oldest(id, start, end, limit)
    }
    fn set_password(&self, user: &Username, phc: Option<&str>) -> Result<(), StoreError> {
        self.0.set_password(user, phc)
    }
    fn password(&self, user: &Username) -> Result<Option<String>, StoreError> {
        self.0.password(user)
    }
    fn add_token(
        &self,
        owner: &Username,
        name: &str,
        digest: [u8; 32],
    ) -> Result<TokenRecord, StoreError> {
        self.0.add_token(owner, name, digest)
    }
    fn find_token(&self, digest: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.0.find_token(digest)
    }
    fn tokens_of(&self, owner: &Username) -> Result<Vec<TokenRecord>, StoreError> {
        self.0.tokens_of(owner)
    }
    fn remove_token(&self, owner: &Username, name: &str) -> Result<bool, StoreError> {
        self.0.remove_token(owner, name)
    }
    fn note_login(&self, agent_id: &str, at_us: i64) -> Result<(), StoreError> {
        self.0.note_login(agent_id, at_us)
    }
    fn last_logins(
        &self,
        owner: &Username,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.0.last_logins(owner)
    }
}

/// What a case sends.
enum Send {
    /// This frame (its `seq`, when it is a TimeUUID, is what the answer is
    /// in reply to).
    Frame(Value),
    /// A text frame that is not JSON.
    Text(&'static str),
    /// Open a websocket with this cookie and send a message at once.
    Upgrade(Cookie),
    /// Revoke the connection's session, then send a message.
    AfterRevoke,
}

enum Cookie {
    Missing,
    Unknown,
    Revoked,
}

/// What must come back.
enum Expect {
    /// A `generic_response` to the frame's seq with `v` 1, this status and
    /// error, and a reason starting with the text (a 4400 reason starts with
    /// "protocol error" unless given).
    Answer(u16, u32, Option<&'static str>),
    /// A 4400 refusal of the envelope: error, the `v` echoed, whether `irt` is
    /// the frame's seq (else null), the reason's start.
    Envelope {
        error: u32,
        v: i64,
        irt_is_seq: bool,
        reason: &'static str,
    },
    /// 4202, then `send_data_interval` chunks of these sizes, then nothing.
    Chunks(&'static [usize]),
    /// The connection closes with this code and a reason starting with the
    /// text, and then ends cleanly (the close handshake completes: no reset);
    /// the frame gets no `generic_response`.
    Close(u16, &'static str),
}

struct Case {
    name: &'static str,
    send: Send,
    expect: Expect,
}

fn case(name: &'static str, send: Value, expect: Expect) -> Case {
    Case {
        name,
        send: Send::Frame(send),
        expect,
    }
}

fn answer(status: u16, error: u32) -> Expect {
    Expect::Answer(status, error, None)
}

fn answer_why(status: u16, error: u32, reason: &'static str) -> Expect {
    Expect::Answer(status, error, Some(reason))
}

fn hex() -> String {
    TimeUuid::now().hex()
}

/// A frame of `action` with a fresh seq, `irt` null.
fn frame(action: &str, payload: Value) -> Value {
    json!({"v": 1, "action": action, "seq": hex(), "irt": null, "payload": payload})
}

/// [`frame`] without the `irt` key.
fn without_irt(action: &str, payload: Value) -> Value {
    let mut f = frame(action, payload);
    if let Some(o) = f.as_object_mut() {
        o.remove("irt");
    }
    f
}

fn with(mut f: Value, key: &str, value: Value) -> Value {
    f[key] = value;
    f
}

fn sample(owner_local: &str, kind: Kind, us: i64) -> NewSample {
    new_sample(owner_local, kind, us, "1")
}

/// The table, in its order.
fn cases() -> Vec<Case> {
    let big = "x".repeat(131_073);
    let ds = |payload: Value| frame("send_ds_data", payload);
    let dp = |payload: Value| frame("send_dp_data", payload);
    let multi = |uris: Value| frame("send_multi_data", json!({"t": hex(), "uris": uris}));
    let info = |payload: Value| frame("send_ds_info", payload);
    let hook = |uri: &str| frame("hook_to_uri", json!({"uri": uri}));
    let unhook = |uri: &str| frame("unhook_from_uri", json!({"uri": uri}));
    let data = |payload: Value| frame("request_data", payload);
    let closed = |start: &str, end: &str| json!({"uri": "big.dp", "start": start, "end": end, "count": null});
    let envelope = |error, v, irt_is_seq, reason| Expect::Envelope {
        error,
        v,
        irt_is_seq,
        reason,
    };
    vec![
        // websocket
        Case {
            name: "websocket: upgrade with no kid cookie",
            send: Send::Upgrade(Cookie::Missing),
            expect: Expect::Close(4403, "Access denied"),
        },
        Case {
            name: "websocket: upgrade with an unknown cookie",
            send: Send::Upgrade(Cookie::Unknown),
            expect: Expect::Close(4403, "Access denied"),
        },
        Case {
            name: "websocket: upgrade with a revoked cookie",
            send: Send::Upgrade(Cookie::Revoked),
            expect: Expect::Close(4403, "Access denied"),
        },
        Case {
            name: "websocket: a message after the cookie was revoked",
            send: Send::AfterRevoke,
            expect: Expect::Close(4403, "Access denied"),
        },
        Case {
            name: "websocket: a text frame that is not JSON",
            send: Send::Text("{not json"),
            expect: Expect::Close(1003, ""),
        },
        // envelope
        case(
            "envelope: not an object",
            json!([1, 2]),
            envelope(350_000, 0, false, "Malformed message"),
        ),
        case(
            "envelope: v missing",
            json!({"action": "hook_to_uri", "seq": hex(), "irt": null, "payload": {"uri": "a"}}),
            envelope(350_000, 0, true, "Malformed message"),
        ),
        case(
            "envelope: v not an int",
            with(hook("a"), "v", json!("1")),
            envelope(350_000, 0, true, "Malformed message"),
        ),
        case(
            "envelope: action not a string",
            with(hook("a"), "action", json!(7)),
            envelope(350_000, 1, true, "Malformed message"),
        ),
        case(
            "envelope: seq not a version-1 uuid",
            with(hook("a"), "seq", json!(V4_UUID)),
            envelope(350_000, 1, false, "Malformed message"),
        ),
        case(
            "envelope: seq missing",
            json!({"v": 1, "action": "hook_to_uri", "irt": null, "payload": {"uri": "a"}}),
            envelope(350_000, 1, false, "Malformed message"),
        ),
        case(
            "envelope: v is not 1",
            with(hook("a"), "v", json!(2)),
            envelope(350_001, 2, true, "Unsupported protocol version"),
        ),
        case(
            "envelope: unknown action",
            frame("drop_tables", json!({})),
            answer_why(4400, 200_000, "unsupported action"),
        ),
        case(
            "envelope: generic_response from an agent",
            frame(
                "generic_response",
                json!({"status": 4200, "error": 0, "reason": null}),
            ),
            answer_why(4400, 200_000, "unsupported action"),
        ),
        case(
            "envelope: send_data_interval from an agent (its payload invalid)",
            frame("send_data_interval", json!({"uri": "x"})),
            answer_why(4400, 200_000, "unsupported action"),
        ),
        case(
            "envelope: irt missing, send_ds_data",
            without_irt(
                "send_ds_data",
                json!({"uri": "a", "t": hex(), "content": "x"}),
            ),
            answer(4400, 202_053),
        ),
        case(
            "envelope: irt missing, send_dp_data",
            without_irt(
                "send_dp_data",
                json!({"uri": "a", "t": hex(), "content": "1"}),
            ),
            answer(4400, 202_103),
        ),
        case(
            "envelope: irt missing, send_multi_data",
            without_irt("send_multi_data", json!({"t": hex(), "uris": []})),
            answer(4400, 202_203),
        ),
        case(
            "envelope: irt missing, send_ds_info",
            without_irt("send_ds_info", json!({"uri": "host.ds", "supplies": null})),
            answer(4400, 202_153),
        ),
        case(
            "envelope: irt missing, hook_to_uri",
            without_irt("hook_to_uri", json!({"uri": "host.dp"})),
            answer(4400, 202_303),
        ),
        case(
            "envelope: irt missing, unhook_from_uri",
            without_irt("unhook_from_uri", json!({"uri": "host.dp"})),
            answer(4400, 202_403),
        ),
        case(
            "envelope: irt missing, request_data",
            without_irt(
                "request_data",
                closed(&TimeUuid::MIN.hex(), &TimeUuid::MAX.hex()),
            ),
            answer(4400, 202_503),
        ),
        case(
            "envelope: irt neither null nor a uuid",
            with(hook("host.dp"), "irt", json!("not a uuid")),
            answer(4400, 202_303),
        ),
        case(
            "envelope: irt a uuid of version 4",
            with(data(closed(&hex(), &hex())), "irt", json!(V4_UUID)),
            answer(4400, 202_503),
        ),
        case(
            "envelope: payload not an object",
            with(info(json!({})), "payload", json!([])),
            answer(4400, 202_153),
        ),
        // any action
        case(
            "any action: an unexpected failure (hook_to_uri)",
            hook("boom.x"),
            answer(4501, 0),
        ),
        // A write the store cannot take is not refused (the agent would drop
        // it): it goes unanswered and the connection closes with 4503, so the
        // agent sends it again.
        case(
            "any action: an unexpected failure (send_dp_data)",
            dp(json!({"uri": "boom.y", "t": hex(), "content": "1"})),
            Expect::Close(4503, "The hub cannot store writes now; send them again"),
        ),
        case(
            "any action: an unexpected failure (send_multi_data, reading the kinds)",
            multi(json!([{"uri": "boom.z", "type": "p", "content": "1"}])),
            Expect::Close(4503, "The hub cannot store writes now; send them again"),
        ),
        // send_ds_data / send_dp_data
        case(
            "send_ds_data: uri missing",
            ds(json!({"t": hex(), "content": "x"})),
            answer(4400, 202_053),
        ),
        case(
            "send_ds_data: content missing",
            ds(json!({"uri": "a", "t": hex()})),
            answer(4400, 202_053),
        ),
        case(
            "send_ds_data: t not a version-1 uuid (and a bad uri)",
            ds(json!({"uri": "a..b", "t": V4_UUID, "content": "x"})),
            answer(4400, 202_053),
        ),
        case(
            "send_dp_data: uri missing",
            dp(json!({"t": hex(), "content": "1"})),
            answer(4400, 202_103),
        ),
        case(
            "send_dp_data: t missing",
            dp(json!({"uri": "a", "content": "1"})),
            answer(4400, 202_103),
        ),
        case(
            "send_ds_data: invalid uri",
            ds(json!({"uri": "a b", "t": hex(), "content": "x"})),
            answer(4400, 202_050),
        ),
        case(
            "send_dp_data: invalid uri",
            dp(json!({"uri": "a..b", "t": hex(), "content": "NaN"})),
            answer(4400, 202_100),
        ),
        case(
            "send_ds_data: content not a string",
            ds(json!({"uri": "a", "t": hex(), "content": 5})),
            answer(4400, 202_052),
        ),
        case(
            "send_ds_data: content over 131072 bytes",
            ds(json!({"uri": "a", "t": hex(), "content": big})),
            answer(4400, 202_052),
        ),
        case(
            "send_dp_data: content NaN",
            dp(json!({"uri": "a", "t": hex(), "content": "NaN"})),
            answer(4400, 202_102),
        ),
        case(
            "send_dp_data: content Infinity",
            dp(json!({"uri": "a", "t": hex(), "content": "Infinity"})),
            answer(4400, 202_102),
        ),
        case(
            "send_dp_data: content -Infinity",
            dp(json!({"uri": "a", "t": hex(), "content": "-Infinity"})),
            answer(4400, 202_102),
        ),
        case(
            "send_dp_data: content not a decimal",
            dp(json!({"uri": "a", "t": hex(), "content": "1,5"})),
            answer(4400, 202_102),
        ),
        case(
            "send_ds_data: another user's uri",
            ds(json!({"uri": "bob:b.ds", "t": hex(), "content": "x"})),
            answer_why(4430, 201_102, "Cannot modify other user's uris"),
        ),
        case(
            "send_dp_data: another user's uri",
            dp(json!({"uri": "bob:b.dp", "t": hex(), "content": "1"})),
            answer_why(4430, 201_202, "Cannot modify other user's uris"),
        ),
        case(
            "send_ds_data: the uri is a datapoint",
            ds(json!({"uri": "host.dp", "t": hex(), "content": "x"})),
            answer_why(4430, 201_100, "uri is not a datasource"),
        ),
        case(
            "send_dp_data: the uri is a datasource",
            dp(json!({"uri": "host.ds", "t": hex(), "content": "1"})),
            answer_why(4430, 201_200, "uri is not a datapoint"),
        ),
        case(
            "send_ds_data: ok",
            ds(json!({"uri": "host.ds", "t": hex(), "content": "x"})),
            answer(4200, 0),
        ),
        case(
            "send_dp_data: ok (own global uri)",
            dp(json!({"uri": "alice:host.dp", "t": hex(), "content": "2.5"})),
            answer(4200, 0),
        ),
        // send_multi_data
        case(
            "send_multi_data: uris missing",
            frame("send_multi_data", json!({"t": hex()})),
            answer(4400, 202_203),
        ),
        case(
            "send_multi_data: t bad",
            frame("send_multi_data", json!({"t": "x", "uris": []})),
            answer(4400, 202_203),
        ),
        case(
            "send_multi_data: an item not {uri, type, content}",
            multi(json!([{"uri": "a", "type": "p"}])),
            answer(4400, 202_200),
        ),
        case(
            "send_multi_data: a bad uri",
            multi(json!([{"uri": "a b", "type": "p", "content": "1"}])),
            answer(4400, 202_200),
        ),
        case(
            "send_multi_data: a type not d/p",
            multi(json!([{"uri": "a", "type": "x", "content": "1"}])),
            answer(4400, 202_200),
        ),
        case(
            "send_multi_data: invalid content",
            multi(json!([{"uri": "a", "type": "p", "content": "Infinity"}])),
            answer(4400, 202_200),
        ),
        case(
            "send_multi_data: an item of another user",
            multi(json!([
                {"uri": "mine.new", "type": "p", "content": "1"},
                {"uri": "bob:b.dp", "type": "p", "content": "1"},
            ])),
            answer(4430, 201_309),
        ),
        case(
            "send_multi_data: a p item onto an existing datasource",
            multi(json!([{"uri": "host.ds", "type": "p", "content": "1"}])),
            answer(4400, 201_308),
        ),
        case(
            "send_multi_data: a numeric d item onto an existing datapoint",
            multi(json!([{"uri": "host.dp", "type": "d", "content": "7"}])),
            answer(4200, 0),
        ),
        // send_ds_info
        case(
            "send_ds_info: uri missing",
            info(json!({"supplies": null})),
            answer(4400, 202_153),
        ),
        case(
            "send_ds_info: supplies missing",
            info(json!({"uri": "host.ds"})),
            answer(4400, 202_153),
        ),
        case(
            "send_ds_info: bad uri",
            info(json!({"uri": "a..b", "supplies": []})),
            answer(4400, 202_150),
        ),
        case(
            "send_ds_info: supplies not a list",
            info(json!({"uri": "host.ds", "supplies": "cpu"})),
            answer(4400, 202_152),
        ),
        case(
            "send_ds_info: a supply not a local uri",
            info(json!({"uri": "host.ds", "supplies": ["ok", "bob:remote"]})),
            answer(4400, 202_151),
        ),
        case(
            "send_ds_info: another user's uri",
            info(json!({"uri": "bob:b.ds", "supplies": ["x"]})),
            answer(4430, 201_152),
        ),
        case(
            "send_ds_info: missing uri",
            info(json!({"uri": "not.there", "supplies": ["x"]})),
            answer(4404, 201_151),
        ),
        case(
            "send_ds_info: not a datasource",
            info(json!({"uri": "host.dp", "supplies": ["x"]})),
            answer(4430, 201_150),
        ),
        case(
            "send_ds_info: ok",
            info(json!({"uri": "host.ds", "supplies": ["cpu.user"]})),
            answer(4200, 0),
        ),
        // hook_to_uri
        case(
            "hook_to_uri: uri missing",
            frame("hook_to_uri", json!({})),
            answer(4400, 202_303),
        ),
        case(
            "hook_to_uri: uri invalid",
            hook("a..b"),
            answer(4400, 202_300),
        ),
        case(
            "hook_to_uri: owner: that is not a user",
            hook("ghost:x"),
            answer(4430, 201_402),
        ),
        case(
            "hook_to_uri: not readable, missing uri",
            hook("bob:not.there"),
            answer_why(4430, 52_411, "msg exec denied"),
        ),
        case(
            "hook_to_uri: not readable, datasource",
            hook("bob:b.ds"),
            answer_why(4430, 52_370, "msg exec denied"),
        ),
        case(
            "hook_to_uri: not readable, datapoint",
            hook("bob:b.dp"),
            answer_why(4430, 52_360, "msg exec denied"),
        ),
        case(
            "hook_to_uri: missing uri",
            hook("later.dp"),
            answer_why(
                4404,
                201_400,
                "Operation registered, but uri does not exist yet",
            ),
        ),
        case(
            "hook_to_uri: intermediate uri",
            hook("tree"),
            answer_why(
                4404,
                201_400,
                "Operation registered, but uri does not exist yet",
            ),
        ),
        case(
            "hook_to_uri: missing shared uri",
            hook("bob:pub.later"),
            answer(4404, 201_400),
        ),
        case(
            "hook_to_uri: ok",
            hook("host.dp"),
            answer_why(4200, 0, "Hooked successfully"),
        ),
        case(
            "hook_to_uri: ok, shared",
            hook("bob:pub.dp"),
            answer_why(4200, 0, "Hooked successfully"),
        ),
        // unhook_from_uri
        case(
            "unhook_from_uri: uri missing",
            frame("unhook_from_uri", json!({})),
            answer(4400, 202_403),
        ),
        case(
            "unhook_from_uri: uri invalid",
            unhook("a b"),
            answer(4400, 202_400),
        ),
        case(
            "unhook_from_uri: owner: that is not a user",
            unhook("ghost:x"),
            answer(4430, 201_502),
        ),
        case(
            "unhook_from_uri: not readable, missing uri",
            unhook("bob:not.there"),
            answer_why(4430, 52_421, "msg exec denied"),
        ),
        case(
            "unhook_from_uri: not readable, datasource",
            unhook("bob:b.ds"),
            answer_why(4430, 52_390, "msg exec denied"),
        ),
        case(
            "unhook_from_uri: not readable, datapoint",
            unhook("bob:b.dp"),
            answer_why(4430, 52_380, "msg exec denied"),
        ),
        case(
            "unhook_from_uri: missing uri",
            unhook("later.dp"),
            answer_why(4200, 0, "Unhooked"),
        ),
        case(
            "unhook_from_uri: intermediate uri",
            unhook("tree"),
            answer_why(4200, 0, "Unhooked"),
        ),
        case("unhook_from_uri: ok", unhook("bob:pub.dp"), answer(4200, 0)),
        // request_data
        case(
            "request_data: uri missing",
            data(json!({"start": null, "end": null, "count": 5})),
            answer(4400, 202_503),
        ),
        case(
            "request_data: count missing",
            data(json!({"uri": "big.dp", "start": hex(), "end": hex()})),
            answer(4400, 202_503),
        ),
        case(
            "request_data: start missing",
            data(json!({"uri": "big.dp", "end": null, "count": 5})),
            answer(4400, 202_503),
        ),
        case(
            "request_data: end missing",
            data(json!({"uri": "big.dp", "start": null, "count": 5})),
            answer(4400, 202_503),
        ),
        case(
            "request_data: start neither null nor a uuid",
            data(json!({"uri": "big.dp", "start": 5, "end": null, "count": 5})),
            answer(4400, 202_503),
        ),
        case(
            "request_data: end not a version-1 uuid",
            data(json!({"uri": "a b", "start": null, "end": V4_UUID, "count": "x"})),
            answer(4400, 202_503),
        ),
        case(
            "request_data: bad uri",
            data(json!({"uri": "a b", "start": null, "end": null, "count": "x"})),
            answer(4400, 202_500),
        ),
        case(
            "request_data: count not an int",
            data(json!({"uri": "big.dp", "start": null, "end": null, "count": "5"})),
            answer(4400, 202_505),
        ),
        case(
            "request_data: count a fraction",
            data(json!({"uri": "big.dp", "start": null, "end": null, "count": 2.5})),
            answer(4400, 202_505),
        ),
        case(
            "request_data: count null with an open start",
            data(json!({"uri": "big.dp", "start": null, "end": hex(), "count": null})),
            answer(4400, 202_504),
        ),
        case(
            "request_data: count null with an open end",
            data(json!({"uri": "big.dp", "start": hex(), "end": null, "count": null})),
            answer(4400, 202_504),
        ),
        case(
            "request_data: owner: that is not a user",
            data(json!({"uri": "ghost:x", "start": null, "end": null, "count": 5})),
            answer(4430, 201_604),
        ),
        case(
            "request_data: missing uri (readable)",
            data(json!({"uri": "not.there", "start": null, "end": null, "count": 5})),
            answer(4404, 201_600),
        ),
        case(
            "request_data: missing uri (shared prefix)",
            data(json!({"uri": "bob:pub.later", "start": null, "end": null, "count": 5})),
            answer(4404, 201_600),
        ),
        case(
            "request_data: missing and not readable",
            data(json!({"uri": "bob:not.there", "start": null, "end": null, "count": 5})),
            answer(4430, 52_401),
        ),
        case(
            "request_data: not readable, datasource",
            data(json!({"uri": "bob:b.ds", "start": null, "end": null, "count": 5})),
            answer(4430, 52_030),
        ),
        case(
            "request_data: not readable, datapoint",
            data(json!({"uri": "bob:b.dp", "start": null, "end": null, "count": 5})),
            answer(4430, 52_060),
        ),
        case(
            "request_data: ok",
            data(json!({"uri": "bob:pub.dp", "start": null, "end": null, "count": 5})),
            Expect::Chunks(&[1]),
        ),
        case(
            "request_data: ok, every row (count null, both bounds)",
            data(closed(&TimeUuid::MIN.hex(), &TimeUuid::MAX.hex())),
            Expect::Chunks(&[1000, 1000, 502]),
        ),
        case(
            "request_data: count 0 means unlimited",
            data(json!({"uri": "big.dp", "start": TimeUuid::MIN.hex(),
                        "end": TimeUuid::MAX.hex(), "count": 0})),
            Expect::Chunks(&[1000, 1000, 502]),
        ),
        case(
            "request_data: count 0 with open bounds means unlimited",
            data(json!({"uri": "big.dp", "start": null, "end": null, "count": 0})),
            Expect::Chunks(&[1000, 1000, 502]),
        ),
        case(
            "request_data: count 1500 of 2500 rows: the chunks add up to 1500",
            data(json!({"uri": "big.dp", "start": null, "end": null, "count": 1500})),
            Expect::Chunks(&[1000, 500]),
        ),
        case(
            "request_data: count 1001 of 2500 rows: the chunks add up to 1001",
            data(json!({"uri": "big.dp", "start": null, "end": null, "count": 1001})),
            Expect::Chunks(&[1000, 1]),
        ),
    ]
}

/// The hub and its users: alice (the connection under test) owns `host.ds`,
/// `host.dp`, `tree.leaf` (so `tree` is an intermediate uri) and `big.dp`
/// with [`BIG_ROWS`] rows; bob owns `b.ds`, `b.dp` and `pub.dp`, and shares
/// `pub` with alice; dave's sessions get revoked. `ghost` is no user.
async fn fixture() -> TestHub {
    let hub = TestHub::start_wrapped(|_| {}, |store| Arc::new(FailingStore(store))).await;
    hub.add_user_with_key("alice", 0);
    hub.add_user_with_key("bob", 1);
    hub.add_user_with_key("dave", 2);
    let base = 1_700_000_000_000_000i64;
    hub.seed(
        "alice",
        &[
            sample("host.ds", Kind::Datasource, base),
            sample("host.dp", Kind::Datapoint, base),
            sample("tree.leaf", Kind::Datapoint, base),
        ],
    );
    let rows: Vec<NewSample> = (0..BIG_ROWS)
        .map(|i| sample("big.dp", Kind::Datapoint, base + i as i64))
        .collect();
    hub.seed("alice", &rows);
    hub.seed(
        "bob",
        &[
            sample("b.ds", Kind::Datasource, base),
            sample("b.dp", Kind::Datapoint, base),
            sample("pub.dp", Kind::Datapoint, base),
        ],
    );
    hub.share("bob", "pub", "alice");
    hub
}

common::on_both_stores!(every_row_of_the_answers_table);

async fn every_row_of_the_answers_table() {
    let hub = fixture().await;
    let cookie = login_ok(hub.addr(), "alice", key(0)).await;
    let mut alice = Some(Client::open(hub.addr(), Some(&cookie)).await);
    let mut failures = Vec::new();
    let cases = cases();
    let total = cases.len();
    for c in cases {
        let result = match c.send {
            Send::Frame(f) => {
                let client = match alice.as_mut() {
                    Some(client) => client,
                    None => alice.insert(Client::open(hub.addr(), Some(&cookie)).await),
                };
                let seq = f
                    .get("seq")
                    .and_then(Value::as_str)
                    .filter(|s| TimeUuid::parse(s).is_ok())
                    .map(str::to_owned);
                client.send_text(f.to_string()).await;
                let checked = check(client, seq.as_deref(), &c.expect).await;
                if matches!(c.expect, Expect::Close(..)) {
                    // The next case opens a new connection.
                    alice = None;
                }
                checked
            }
            Send::Text(text) => {
                let mut client = match alice.take() {
                    Some(client) => client,
                    None => Client::open(hub.addr(), Some(&cookie)).await,
                };
                client.send_text(text.to_owned()).await;
                check(&mut client, None, &c.expect).await
            }
            Send::Upgrade(cookie) => upgrade(&hub, cookie, &c.expect).await,
            Send::AfterRevoke => after_revoke(&hub, &c.expect).await,
        };
        if let Err(why) = result {
            failures.push(format!("{}: {why}", c.name));
            // What else the failed case causes must not reach the next one.
            if let Some(client) = alice.as_mut() {
                for _ in 0..10_000 {
                    match client.next_raw_within(QUIET).await {
                        None => break,
                        Some(RawEvent::Close(_)) => {
                            alice = None;
                            break;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases of spec §4.6 fail:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Open a websocket with `cookie`, send a message at once, and check the close.
async fn upgrade(hub: &TestHub, cookie: Cookie, expect: &Expect) -> Result<(), String> {
    let value = match cookie {
        Cookie::Missing => None,
        Cookie::Unknown => Some("0123456789abcdef0123456789abcdef".to_owned()),
        Cookie::Revoked => {
            let c = login_ok(hub.addr(), "dave", key(2)).await;
            hub.running.hub.sessions.kick(&user("dave"), None);
            Some(c)
        }
    };
    for attempt in 1..=UPGRADE_TRIES {
        let mut ws = Client::open(hub.addr(), value.as_deref()).await;
        // Messages the hub has not read when it closes (as an agent that sends
        // at once after connecting, over a real network), then read late: the
        // close frame must still arrive, not a reset.
        let f = frame(
            "hook_to_uri",
            json!({"uri": "x", "pad": "x".repeat(20_000)}),
        );
        let seq = f["seq"].as_str().map(str::to_owned);
        for _ in 0..UPGRADE_FRAMES {
            if !ws.try_send_text(f.to_string()).await {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        check(&mut ws, seq.as_deref(), expect)
            .await
            .map_err(|e| format!("attempt {attempt}: {e}"))?;
    }
    Ok(())
}

/// A connected session is revoked; the next message gets the close.
async fn after_revoke(hub: &TestHub, expect: &Expect) -> Result<(), String> {
    let cookie = login_ok(hub.addr(), "dave", key(2)).await;
    let mut ws = Client::open(hub.addr(), Some(&cookie)).await;
    let f = frame("unhook_from_uri", json!({"uri": "x"}));
    let seq = f["seq"].as_str().map(str::to_owned);
    ws.send_text(f.to_string()).await;
    check(&mut ws, seq.as_deref(), &answer(4200, 0))
        .await
        .map_err(|e| format!("before the revocation: {e}"))?;
    hub.running.hub.sessions.kick(&user("dave"), None);
    let f = frame("unhook_from_uri", json!({"uri": "x"}));
    let seq = f["seq"].as_str().map(str::to_owned);
    ws.send_text(f.to_string()).await;
    check(&mut ws, seq.as_deref(), expect).await
}

/// The next frame that is not a notification (`send_multi_data` with `irt`
/// null, from the hooks the cases make) nor an answer to another message (a
/// late answer to an earlier case: `irt` neither null nor `irt`).
async fn next_answer(client: &mut Client, irt: &Value) -> Result<RawEvent, String> {
    loop {
        match client.next_raw_within(WAIT).await {
            None => return Err("nothing came".into()),
            Some(RawEvent::Json(v))
                if (v["action"] == "send_multi_data" && v["irt"].is_null())
                    || (!v["irt"].is_null() && v["irt"] != *irt) =>
            {
                continue;
            }
            Some(e) => return Ok(e),
        }
    }
}

fn describe(e: &RawEvent) -> String {
    match e {
        RawEvent::Json(v) => v.to_string(),
        RawEvent::Text(t) => format!("text {t:?}"),
        RawEvent::Close(None) => "closed without a close frame (1006)".into(),
        RawEvent::Close(Some((code, reason))) => format!("close {code} {reason:?}"),
    }
}

/// A generic_response: (status, error, reason, v, irt).
fn response(e: &RawEvent) -> Result<(u64, u64, String, Value, Value), String> {
    match e {
        RawEvent::Json(v) if v["action"] == "generic_response" => Ok((
            v["payload"]["status"].as_u64().unwrap_or_default(),
            v["payload"]["error"].as_u64().unwrap_or_default(),
            v["payload"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            v["v"].clone(),
            v["irt"].clone(),
        )),
        other => Err(format!(
            "expected a generic_response, got {}",
            describe(other)
        )),
    }
}

async fn check(client: &mut Client, seq: Option<&str>, expect: &Expect) -> Result<(), String> {
    let irt = seq.map_or(Value::Null, |s| json!(s));
    match *expect {
        Expect::Answer(status, error, reason) => {
            let got = response(&next_answer(client, &irt).await?)?;
            let reason = reason.unwrap_or(if status == 4400 { "protocol error" } else { "" });
            let want = (u64::from(status), u64::from(error));
            if (got.0, got.1) != want
                || !got.2.starts_with(reason)
                || got.3 != json!(1)
                || got.4 != irt
            {
                return Err(format!(
                    "expected {want:?} reason {reason:?} v 1 irt {irt}, got {:?} reason {:?} v {} irt {}",
                    (got.0, got.1),
                    got.2,
                    got.3,
                    got.4
                ));
            }
        }
        Expect::Envelope {
            error,
            v,
            irt_is_seq,
            reason,
        } => {
            let want_irt = if irt_is_seq { irt } else { Value::Null };
            let got = response(&next_answer(client, &want_irt).await?)?;
            let want = (4400, u64::from(error));
            if (got.0, got.1) != want
                || !got.2.starts_with(reason)
                || got.3 != json!(v)
                || got.4 != want_irt
            {
                return Err(format!(
                    "expected {want:?} reason {reason:?} v {v} irt {want_irt}, got {:?} reason {:?} v {} irt {}",
                    (got.0, got.1),
                    got.2,
                    got.3,
                    got.4
                ));
            }
        }
        Expect::Chunks(sizes) => {
            let got = response(&next_answer(client, &irt).await?)?;
            if (got.0, got.1, &got.4) != (4202, 0, &irt) {
                return Err(format!(
                    "expected 4202 0 irt {irt}, got {} {} {:?} irt {}",
                    got.0, got.1, got.2, got.4
                ));
            }
            let mut seen = Vec::new();
            loop {
                let event = if seen.len() < sizes.len() {
                    next_answer(client, &irt).await?
                } else {
                    match client.next_raw_within(QUIET).await {
                        None => break,
                        Some(e) => e,
                    }
                };
                match &event {
                    RawEvent::Json(v) if v["action"] == "send_data_interval" && v["irt"] == irt => {
                        seen.push(v["payload"]["data"].as_array().map_or(0, Vec::len));
                    }
                    RawEvent::Json(v) if v["action"] == "send_multi_data" && v["irt"].is_null() => {
                    }
                    other => {
                        return Err(format!("chunks {seen:?} so far, then {}", describe(other)));
                    }
                }
            }
            if seen != sizes {
                return Err(format!("expected chunks of {sizes:?} rows, got {seen:?}"));
            }
        }
        Expect::Close(code, reason) => loop {
            match next_answer(client, &irt).await? {
                RawEvent::Close(Some((c, r))) if c == code && r.starts_with(reason) => {
                    break client.clean_end().await?;
                }
                RawEvent::Json(v) if v["action"] == "generic_response" && v["irt"] == irt => {
                    return Err(format!("expected close {code} and no answer, got {v}"));
                }
                RawEvent::Json(v) if v["action"] == "generic_response" && seq.is_none() => {
                    return Err(format!("expected close {code} and no answer, got {v}"));
                }
                RawEvent::Json(_) => continue,
                other => {
                    return Err(format!(
                        "expected close {code} {reason:?}, got {}",
                        describe(&other)
                    ));
                }
            }
        },
    }
    Ok(())
}
