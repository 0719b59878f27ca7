//! Protocol v1 messages (spec §4): the envelope `{v, action, seq, irt, payload}`
//! and a typed payload for each of the nine actions, in both directions.
//!
//! **Owns:** reading a websocket text frame into a [`Message`] with every field
//! checked (uris, TimeUUIDs, value rules), and writing a [`Message`] as JSON.
//! A frame that does not pass gives a [`FrameError`] that says which status,
//! error number and reason to answer with, and which `seq` to answer.
//!
//! **Does not:** decide what a message may do (who may write or read a uri).
//! Who sends which action is checked only by [`Message::parse_from_agent`],
//! the server's reading; [`Action::sent_by_agent`] and
//! [`Action::sent_by_server`] say who sends what.
//!
//! Checks, in the order of the original server (spec §4.6); the first that
//! fails answers, always with status 4400:
//!
//! 1. the frame is a JSON object, `v` an integer ≥ 0, `action` a string and
//!    `seq` a version-1 uuid: "Malformed message", 350000;
//! 2. `v` is 1: "Unsupported protocol version", 350001;
//! 3. the action is one of the nine (from an agent, one agents send):
//!    "unsupported action", 200000;
//! 4. `irt` is null or a uuid (from an agent the key must be there) and
//!    `payload` an object: the action's payload error
//!    ([`error::payload_error`], e.g. 202303 for `hook_to_uri`);
//! 5. the payload's fields, each failure with the action's own number
//!    ([`error`]: first the payload error for missing keys, then the uri,
//!    then the content or the other fields).
//!
//! Every refusal is in reply to `seq` when it parses, and echoes `v` when it
//! is an integer (0 otherwise; [`FrameError::reply_json`]). Payload reasons
//! start with "protocol error", as the original's did, followed by the field.

use serde_json::{Map, Number, Value, json};

use crate::status::{Status, error};
use crate::timeuuid::TimeUuid;
use crate::uri::{Uri, is_local_uri};
use crate::value::{Kind, check_datasource, parse_datapoint};

/// The protocol version, sent as `v` in every message and `pv` at login.
pub const VERSION: u64 = 1;

/// The nine actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `generic_response`: a status reply (server → agent).
    GenericResponse,
    /// `request_data`: ask for history (agent → server).
    RequestData,
    /// `hook_to_uri`: subscribe to a uri's updates (agent → server).
    HookToUri,
    /// `send_data_interval`: one chunk of history (server → agent).
    SendDataInterval,
    /// `send_multi_data`: samples sharing one time (both ways; server → agent it is
    /// a notification).
    SendMultiData,
    /// `send_dp_data`: one datapoint sample (agent → server).
    SendDpData,
    /// `send_ds_data`: one datasource sample (agent → server).
    SendDsData,
    /// `send_ds_info`: the datapoints a datasource supplies (agent → server).
    SendDsInfo,
    /// `unhook_from_uri`: drop a subscription (agent → server).
    UnhookFromUri,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 9] = [
        Action::GenericResponse,
        Action::RequestData,
        Action::HookToUri,
        Action::SendDataInterval,
        Action::SendMultiData,
        Action::SendDpData,
        Action::SendDsData,
        Action::SendDsInfo,
        Action::UnhookFromUri,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::GenericResponse => "generic_response",
            Action::RequestData => "request_data",
            Action::HookToUri => "hook_to_uri",
            Action::SendDataInterval => "send_data_interval",
            Action::SendMultiData => "send_multi_data",
            Action::SendDpData => "send_dp_data",
            Action::SendDsData => "send_ds_data",
            Action::SendDsInfo => "send_ds_info",
            Action::UnhookFromUri => "unhook_from_uri",
        }
    }

    /// Look up a wire name.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// True for the actions an agent sends to a server.
    pub fn sent_by_agent(self) -> bool {
        !matches!(self, Action::GenericResponse | Action::SendDataInterval)
    }

    /// True for the actions a server sends to an agent.
    pub fn sent_by_server(self) -> bool {
        matches!(
            self,
            Action::GenericResponse | Action::SendDataInterval | Action::SendMultiData
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message: the envelope's `seq` and `irt` and the typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// A fresh TimeUUID per message.
    pub seq: TimeUuid,
    /// The `seq` of the message this one answers, if any.
    pub irt: Option<TimeUuid>,
    /// The action and its payload.
    pub body: Body,
}

/// The action and its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `generic_response`.
    GenericResponse(GenericResponse),
    /// `request_data`.
    RequestData(RequestData),
    /// `hook_to_uri`.
    HookToUri(UriPayload),
    /// `send_data_interval`.
    SendDataInterval(DataInterval),
    /// `send_multi_data`.
    SendMultiData(MultiData),
    /// `send_dp_data`.
    SendDpData(DpData),
    /// `send_ds_data`.
    SendDsData(DsData),
    /// `send_ds_info`.
    SendDsInfo(DsInfo),
    /// `unhook_from_uri`.
    UnhookFromUri(UriPayload),
}

impl Body {
    /// The action of this payload.
    pub fn action(&self) -> Action {
        match self {
            Body::GenericResponse(_) => Action::GenericResponse,
            Body::RequestData(_) => Action::RequestData,
            Body::HookToUri(_) => Action::HookToUri,
            Body::SendDataInterval(_) => Action::SendDataInterval,
            Body::SendMultiData(_) => Action::SendMultiData,
            Body::SendDpData(_) => Action::SendDpData,
            Body::SendDsData(_) => Action::SendDsData,
            Body::SendDsInfo(_) => Action::SendDsInfo,
            Body::UnhookFromUri(_) => Action::UnhookFromUri,
        }
    }
}

/// `generic_response` payload: `{status, error, reason}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericResponse {
    /// The status code.
    pub status: Status,
    /// The error number, 0 on success.
    pub error: u32,
    /// A readable reason, or none.
    pub reason: Option<String>,
}

/// `hook_to_uri` and `unhook_from_uri` payload: `{uri}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriPayload {
    /// A local or global uri.
    pub uri: Uri,
}

/// `send_ds_data` payload: `{uri, t, content}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsData {
    /// Where the sample goes.
    pub uri: Uri,
    /// The sample time.
    pub t: TimeUuid,
    /// The text, at most 131072 UTF-8 bytes.
    pub content: String,
}

/// `send_dp_data` payload: `{uri, t, content}`, content a decimal string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpData {
    /// Where the sample goes.
    pub uri: Uri,
    /// The sample time.
    pub t: TimeUuid,
    /// The finite decimal value, as `str(Decimal)` writes it.
    pub content: String,
}

/// One item of `send_multi_data`: `{uri, type, content}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiItem {
    /// The uri (local, or `owner:uri` in notifications of others' metrics).
    pub uri: Uri,
    /// The item's kind (`type`: `"d"` or `"p"`).
    pub kind: Kind,
    /// The value as a string; for datapoints the canonical decimal text.
    pub content: String,
}

/// `send_multi_data` payload: `{t, uris: [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiData {
    /// The time shared by every item.
    pub t: TimeUuid,
    /// The samples.
    pub uris: Vec<MultiItem>,
}

/// `send_ds_info` payload: `{uri, supplies}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsInfo {
    /// The datasource.
    pub uri: Uri,
    /// Local uris of the datapoints it supplies, or none.
    pub supplies: Option<Vec<String>>,
}

/// `request_data` payload: `{uri, start, end, count}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestData {
    /// The metric.
    pub uri: Uri,
    /// The interval's start (inclusive); none means the lowest TimeUUID.
    pub start: Option<TimeUuid>,
    /// The interval's end (inclusive); none means the highest TimeUUID.
    pub end: Option<TimeUuid>,
    /// At most this many rows (the newest); none or 0 means every row. When
    /// none, both `start` and `end` must be given.
    pub count: Option<u64>,
}

/// `send_data_interval` payload: `{uri: {uri, type}, start, end, data: [[t, value], ...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInterval {
    /// The metric as the receiver names it.
    pub uri: Uri,
    /// Its kind.
    pub kind: Kind,
    /// The start of the interval this chunk covers.
    pub start: TimeUuid,
    /// The end of the interval this chunk covers.
    pub end: TimeUuid,
    /// Rows, newest first; every value a string.
    pub data: Vec<(TimeUuid, String)>,
}

/// Why a frame was refused, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason} (error {error})")]
pub struct FrameError {
    /// The frame's `seq` when it could be read (the answer's `irt`).
    pub seq: Option<TimeUuid>,
    /// The frame's `v` when it is an integer, else 0: the answer echoes it.
    pub v: Number,
    /// The status to answer with.
    pub status: Status,
    /// The error number.
    pub error: u32,
    /// What is wrong, naming the field.
    pub reason: String,
}

impl FrameError {
    fn malformed(seq: Option<TimeUuid>, v: &Number, detail: impl std::fmt::Display) -> FrameError {
        FrameError {
            seq,
            v: v.clone(),
            status: Status::PROTOCOL_ERROR,
            error: error::MALFORMED_MESSAGE,
            reason: format!("Malformed message: {detail}"),
        }
    }

    /// The `generic_response` that answers the refused frame, with `v` 1.
    pub fn reply(&self) -> Message {
        Message::response(self.seq, self.status, self.error, Some(self.reason.clone()))
    }

    /// The answer as the original server writes it: [`FrameError::reply`]
    /// with the refused frame's `v` echoed.
    pub fn reply_json(&self) -> Value {
        let mut json = self.reply().to_json();
        json["v"] = Value::Number(self.v.clone());
        json
    }
}

impl Message {
    /// A new message with a fresh `seq`.
    pub fn new(irt: Option<TimeUuid>, body: Body) -> Message {
        Message {
            seq: TimeUuid::now(),
            irt,
            body,
        }
    }

    /// A `generic_response` with a fresh `seq`.
    pub fn response(
        irt: Option<TimeUuid>,
        status: Status,
        error: u32,
        reason: Option<String>,
    ) -> Message {
        Message::new(
            irt,
            Body::GenericResponse(GenericResponse {
                status,
                error,
                reason,
            }),
        )
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.body.action()
    }

    /// Read a text frame from either side, as an agent reads the server's
    /// frames: every field is checked (see the module documentation for the
    /// order and the answers), a missing `irt` counts as null, and all nine
    /// actions are read.
    pub fn parse(frame: &str) -> Result<Message, FrameError> {
        Message::from_json(parse_json(frame)?)
    }

    /// Check a decoded JSON value as a message (see [`Message::parse`]).
    pub fn from_json(value: Value) -> Result<Message, FrameError> {
        read(value, Peer::Any)
    }

    /// Read a text frame as a server reads an agent's (spec §4.6): as
    /// [`Message::parse`], but the `irt` key is required and the actions only
    /// servers send (`generic_response`, `send_data_interval`) are refused as
    /// unsupported.
    pub fn parse_from_agent(frame: &str) -> Result<Message, FrameError> {
        Message::from_agent_json(parse_json(frame)?)
    }

    /// Check a decoded JSON value as an agent's message (see
    /// [`Message::parse_from_agent`]).
    pub fn from_agent_json(value: Value) -> Result<Message, FrameError> {
        read(value, Peer::Agent)
    }

    /// The message as a JSON value.
    pub fn to_json(&self) -> Value {
        let payload = match &self.body {
            Body::GenericResponse(r) => json!({
                "status": r.status.code(),
                "error": r.error,
                "reason": r.reason,
            }),
            Body::RequestData(r) => json!({
                "uri": r.uri.to_string(),
                "start": r.start.map(|t| t.hex()),
                "end": r.end.map(|t| t.hex()),
                "count": r.count,
            }),
            Body::HookToUri(p) | Body::UnhookFromUri(p) => json!({"uri": p.uri.to_string()}),
            Body::SendDataInterval(d) => json!({
                "uri": {"uri": d.uri.to_string(), "type": d.kind.letter()},
                "start": d.start.hex(),
                "end": d.end.hex(),
                "data": d.data.iter().map(|(t, v)| json!([t.hex(), v])).collect::<Vec<_>>(),
            }),
            Body::SendMultiData(m) => json!({
                "t": m.t.hex(),
                "uris": m.uris.iter().map(|i| json!({
                    "uri": i.uri.to_string(),
                    "type": i.kind.letter(),
                    "content": i.content,
                })).collect::<Vec<_>>(),
            }),
            Body::SendDpData(d) => json!({
                "uri": d.uri.to_string(), "t": d.t.hex(), "content": d.content,
            }),
            Body::SendDsData(d) => json!({
                "uri": d.uri.to_string(), "t": d.t.hex(), "content": d.content,
            }),
            Body::SendDsInfo(i) => json!({"uri": i.uri.to_string(), "supplies": i.supplies}),
        };
        json!({
            "v": VERSION,
            "action": self.action().as_str(),
            "seq": self.seq.hex(),
            "irt": self.irt.map(|t| t.hex()),
            "payload": payload,
        })
    }

    /// The message as the text of a websocket frame.
    pub fn to_text(&self) -> String {
        self.to_json().to_string()
    }
}

/// Whose frames are being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// An agent's, at a server: `irt` is required and the actions only servers
    /// send are unsupported.
    Agent,
    /// Either side's.
    Any,
}

fn parse_json(frame: &str) -> Result<Value, FrameError> {
    serde_json::from_str(frame)
        .map_err(|e| FrameError::malformed(None, &Number::from(0), format_args!("not JSON ({e})")))
}

/// The `v` an answer echoes: the frame's when it is an integer, else 0.
fn echoed_version(obj: &Map<String, Value>) -> Number {
    match obj.get("v") {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.clone(),
        _ => Number::from(0),
    }
}

/// The checks of spec §4.6, in its order; the first that fails answers.
fn read(value: Value, peer: Peer) -> Result<Message, FrameError> {
    let Value::Object(mut obj) = value else {
        return Err(FrameError::malformed(
            None,
            &Number::from(0),
            "not a JSON object",
        ));
    };
    let v = echoed_version(&obj);
    // Every refusal is in reply to `seq` when it parses, whatever else is wrong.
    let seq = match obj.get("seq") {
        Some(Value::String(s)) => TimeUuid::parse(s).map_err(|e| format!("`seq`: {e}")),
        Some(_) => Err("`seq` is not a string".to_owned()),
        None => Err("`seq` is missing".to_owned()),
    };
    let answer_to = seq.as_ref().ok().copied();
    let version = match obj.get("v").map(Value::as_u64) {
        Some(Some(version)) => version,
        Some(None) => {
            return Err(FrameError::malformed(
                answer_to,
                &v,
                "`v` is not an integer >= 0",
            ));
        }
        None => return Err(FrameError::malformed(answer_to, &v, "`v` is missing")),
    };
    let action_name = match obj.get("action") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(FrameError::malformed(
                answer_to,
                &v,
                "`action` is not a string",
            ));
        }
        None => return Err(FrameError::malformed(answer_to, &v, "`action` is missing")),
    };
    let seq = seq.map_err(|detail| FrameError::malformed(None, &v, detail))?;
    if version != VERSION {
        return Err(FrameError {
            seq: Some(seq),
            v,
            status: Status::PROTOCOL_ERROR,
            error: error::UNSUPPORTED_VERSION,
            reason: format!("Unsupported protocol version {version}; this side speaks 1"),
        });
    }
    let unsupported = |reason: String| FrameError {
        seq: Some(seq),
        v: Number::from(VERSION),
        status: Status::PROTOCOL_ERROR,
        error: error::UNSUPPORTED_ACTION,
        reason,
    };
    let action = match Action::from_name(&action_name) {
        Some(a) if peer == Peer::Any || a.sent_by_agent() => a,
        Some(_) => {
            return Err(unsupported(format!(
                "unsupported action {action_name:?}: only servers send it"
            )));
        }
        None => return Err(unsupported(format!("unsupported action {action_name:?}"))),
    };
    let empty = Map::new();
    let mut fields = Fields {
        seq,
        action,
        load: error::payload_error(action),
        obj: &empty,
    };
    let irt = match obj.get("irt") {
        None if peer == Peer::Agent => return Err(fields.load_err("`irt` is missing")),
        None | Some(Value::Null) => None,
        Some(v) => Some(fields.timeuuid_in("irt", v, fields.load)?),
    };
    let payload = match obj.remove("payload") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err(fields.load_err("`payload` is not an object")),
        None => return Err(fields.load_err("`payload` is missing")),
    };
    fields.obj = &payload;
    let body = match action {
        Action::GenericResponse => Body::GenericResponse(fields.generic_response()?),
        Action::RequestData => Body::RequestData(fields.request_data()?),
        Action::HookToUri => Body::HookToUri(fields.uri_payload(error::HOOK_INVALID_URI)?),
        Action::UnhookFromUri => {
            Body::UnhookFromUri(fields.uri_payload(error::UNHOOK_INVALID_URI)?)
        }
        Action::SendDataInterval => Body::SendDataInterval(fields.data_interval()?),
        Action::SendMultiData => Body::SendMultiData(fields.multi_data()?),
        Action::SendDpData => {
            let (uri, t, content) = fields.sample(
                Kind::Datapoint,
                error::DP_INVALID_URI,
                error::DP_INVALID_CONTENT,
            )?;
            Body::SendDpData(DpData { uri, t, content })
        }
        Action::SendDsData => {
            let (uri, t, content) = fields.sample(
                Kind::Datasource,
                error::DS_INVALID_URI,
                error::DS_INVALID_CONTENT,
            )?;
            Body::SendDsData(DsData { uri, t, content })
        }
        Action::SendDsInfo => Body::SendDsInfo(fields.ds_info()?),
    };
    Ok(Message { seq, irt, body })
}

/// Field readers over one payload object. Every error names the field and
/// carries the number given, or the action's payload error (`load`) for a
/// missing field.
struct Fields<'a> {
    seq: TimeUuid,
    action: Action,
    /// The action's payload error number ([`error::payload_error`]).
    load: u32,
    obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, code: u32, detail: impl std::fmt::Display) -> FrameError {
        FrameError {
            seq: Some(self.seq),
            v: Number::from(VERSION),
            status: Status::PROTOCOL_ERROR,
            error: code,
            reason: format!("protocol error: invalid {} payload: {detail}", self.action),
        }
    }

    fn load_err(&self, detail: impl std::fmt::Display) -> FrameError {
        self.err(self.load, detail)
    }

    /// A field that must be there (any value); missing is a payload error.
    fn get(&self, name: &str) -> Result<&Value, FrameError> {
        self.obj
            .get(name)
            .ok_or_else(|| self.load_err(format_args!("`{name}` is missing")))
    }

    fn string_in<'v>(&self, name: &str, v: &'v Value, code: u32) -> Result<&'v str, FrameError> {
        v.as_str()
            .ok_or_else(|| self.err(code, format_args!("`{name}` is not a string")))
    }

    fn uri_in(&self, name: &str, v: &Value, code: u32) -> Result<Uri, FrameError> {
        let text = self.string_in(name, v, code)?;
        Uri::parse(text).map_err(|e| self.err(code, format_args!("`{name}`: {e}")))
    }

    fn timeuuid_in(&self, name: &str, v: &Value, code: u32) -> Result<TimeUuid, FrameError> {
        let text = self.string_in(name, v, code)?;
        TimeUuid::parse(text).map_err(|e| self.err(code, format_args!("`{name}`: {e}")))
    }

    /// A field that must be there and be a TimeUUID; anything else is a payload error.
    fn timeuuid(&self, name: &str) -> Result<TimeUuid, FrameError> {
        self.timeuuid_in(name, self.get(name)?, self.load)
    }

    /// A field that must be there and be null or a TimeUUID; anything else is
    /// a payload error.
    fn bound(&self, name: &str) -> Result<Option<TimeUuid>, FrameError> {
        match self.get(name)? {
            Value::Null => Ok(None),
            v => self.timeuuid_in(name, v, self.load).map(Some),
        }
    }

    fn datasource_content(&self, name: &str, v: &Value, code: u32) -> Result<String, FrameError> {
        let text = self.string_in(name, v, code)?;
        check_datasource(text).map_err(|e| self.err(code, format_args!("`{name}`: {e}")))?;
        Ok(text.to_owned())
    }

    /// A datapoint content: a decimal string (a JSON number is read by its text).
    fn datapoint_content(&self, name: &str, v: &Value, code: u32) -> Result<String, FrameError> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(self.err(code, format_args!("`{name}` is not a string"))),
        };
        parse_datapoint(&text)
            .map(|d| d.text)
            .map_err(|e| self.err(code, format_args!("`{name}`: {e}")))
    }

    fn content(&self, kind: Kind, name: &str, v: &Value, code: u32) -> Result<String, FrameError> {
        match kind {
            Kind::Datasource => self.datasource_content(name, v, code),
            Kind::Datapoint => self.datapoint_content(name, v, code),
        }
    }

    fn generic_response(&self) -> Result<GenericResponse, FrameError> {
        let status = self
            .get("status")?
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| *s > 0)
            .ok_or_else(|| self.load_err("`status` is not an integer > 0"))?;
        let error = self
            .get("error")?
            .as_u64()
            .and_then(|e| u32::try_from(e).ok())
            .ok_or_else(|| self.load_err("`error` is not an integer >= 0"))?;
        let reason = match self.obj.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(self.load_err("`reason` is neither null nor a string")),
        };
        Ok(GenericResponse {
            status: Status(status),
            error,
            reason,
        })
    }

    /// `send_ds_data` / `send_dp_data`: `uri`, `content` and a good `t` first
    /// (the payload error), then the uri, then the content.
    fn sample(
        &self,
        kind: Kind,
        bad_uri: u32,
        bad_content: u32,
    ) -> Result<(Uri, TimeUuid, String), FrameError> {
        let uri = self.get("uri")?;
        let content = self.get("content")?;
        let t = self.timeuuid("t")?;
        let uri = self.uri_in("uri", uri, bad_uri)?;
        let content = self.content(kind, "content", content, bad_content)?;
        Ok((uri, t, content))
    }

    /// `hook_to_uri` / `unhook_from_uri`.
    fn uri_payload(&self, bad_uri: u32) -> Result<UriPayload, FrameError> {
        Ok(UriPayload {
            uri: self.uri_in("uri", self.get("uri")?, bad_uri)?,
        })
    }

    fn multi_data(&self) -> Result<MultiData, FrameError> {
        let t = self.timeuuid("t")?;
        let bad = error::MULTI_INVALID_URIS;
        let Value::Array(items) = self.get("uris")? else {
            return Err(self.err(bad, "`uris` is not a list"));
        };
        let mut uris = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(obj) = item else {
                return Err(self.err(bad, format_args!("`uris[{i}]` is not an object")));
            };
            let field = |name: &str| {
                obj.get(name)
                    .ok_or_else(|| self.err(bad, format_args!("`uris[{i}].{name}` is missing")))
            };
            let uri = self.uri_in(&format!("uris[{i}].uri"), field("uri")?, bad)?;
            let letter = self.string_in(&format!("uris[{i}].type"), field("type")?, bad)?;
            let kind = Kind::from_letter(letter).ok_or_else(|| {
                self.err(
                    bad,
                    format_args!("`uris[{i}].type` is {letter:?}; expected \"d\" or \"p\""),
                )
            })?;
            let content =
                self.content(kind, &format!("uris[{i}].content"), field("content")?, bad)?;
            uris.push(MultiItem { uri, kind, content });
        }
        Ok(MultiData { t, uris })
    }

    fn ds_info(&self) -> Result<DsInfo, FrameError> {
        let uri = self.get("uri")?;
        let supplies = self.get("supplies")?;
        let uri = self.uri_in("uri", uri, error::INFO_INVALID_URI)?;
        let supplies = match supplies {
            Value::Null => None,
            Value::Array(items) => {
                let mut list = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let name = format!("supplies[{i}]");
                    let text = self.string_in(&name, item, error::INFO_INVALID_SUPPLY)?;
                    if !is_local_uri(text) {
                        return Err(self.err(
                            error::INFO_INVALID_SUPPLY,
                            format_args!("`{name}` is {text:?}, not a local uri"),
                        ));
                    }
                    list.push(text.to_owned());
                }
                Some(list)
            }
            _ => {
                return Err(self.err(
                    error::INFO_INVALID_SUPPLIES,
                    "`supplies` is neither null nor a list",
                ));
            }
        };
        Ok(DsInfo { uri, supplies })
    }

    /// Every key first (the payload error), then the uri, the count, and a
    /// count for an open interval.
    fn request_data(&self) -> Result<RequestData, FrameError> {
        let uri = self.get("uri")?;
        let count = self.get("count")?;
        let start = self.bound("start")?;
        let end = self.bound("end")?;
        let uri = self.uri_in("uri", uri, error::DATA_INVALID_URI)?;
        let count = match count {
            Value::Null => None,
            v => Some(v.as_u64().ok_or_else(|| {
                self.err(
                    error::DATA_INVALID_COUNT,
                    "`count` is neither null nor an integer >= 0",
                )
            })?),
        };
        if count.is_none() && (start.is_none() || end.is_none()) {
            return Err(self.err(
                error::DATA_COUNT_OR_INTERVAL,
                "`count` is required when `start` or `end` is null",
            ));
        }
        Ok(RequestData {
            uri,
            start,
            end,
            count,
        })
    }

    fn data_interval(&self) -> Result<DataInterval, FrameError> {
        let load = self.load;
        let Value::Object(metric) = self.get("uri")? else {
            return Err(self.load_err("`uri` is not an object {uri, type}"));
        };
        let uri = self.uri_in(
            "uri.uri",
            metric
                .get("uri")
                .ok_or_else(|| self.load_err("`uri.uri` is missing"))?,
            load,
        )?;
        let letter = self.string_in(
            "uri.type",
            metric
                .get("type")
                .ok_or_else(|| self.load_err("`uri.type` is missing"))?,
            load,
        )?;
        let kind = Kind::from_letter(letter).ok_or_else(|| {
            self.load_err(format_args!(
                "`uri.type` is {letter:?}; expected \"d\" or \"p\""
            ))
        })?;
        let start = self.timeuuid("start")?;
        let end = self.timeuuid("end")?;
        let Value::Array(rows) = self.get("data")? else {
            return Err(self.load_err("`data` is not a list"));
        };
        let mut data = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let (Some(t), Some(v), 2) =
                (row.get(0), row.get(1), row.as_array().map_or(0, Vec::len))
            else {
                return Err(self.load_err(format_args!("`data[{i}]` is not a [t, value] pair")));
            };
            let t = self.timeuuid_in(&format!("data[{i}][0]"), t, load)?;
            let value = self.content(kind, &format!("data[{i}][1]"), v, load)?;
            data.push((t, value));
        }
        Ok(DataInterval {
            uri,
            kind,
            start,
            end,
            data,
        })
    }
}

#[cfg(test)]
mod tests;
