//! What each action does at the hub, and the answer it gets: the rows of spec
//! §4.6, checked in its order (the first that fails answers).
//!
//! | action | success | refusals |
//! |---|---|---|
//! | any | | a frame that fails the envelope or payload checks: 4400 with the number [`komlog_protocol::Message::parse_from_agent`] gives; an unexpected failure (the store): 4501, error 0, except for a write: no answer, the connection closes with 4503 so that the agent sends it again |
//! | `send_ds_data` / `send_dp_data` | 4200 | another user's uri: 4430 "Cannot modify other user's uris" (201102 / 201202); a uri of the other kind: 4430 "uri is not a datasource/datapoint" (201100 / 201200) |
//! | `send_multi_data` | 4200 | another user's uri: 4430 (201309); a `"p"` item to a datasource, or a `"d"` item that is not a number to a datapoint: 4400 (201308); kinds in conflict within the message: 4430 (201301) |
//! | `send_ds_info` | 4200 | another user's uri: 4430 (201152); no such uri: 4404 (201151); not a datasource: 4430 (201150) |
//! | `hook_to_uri` | 4200 "Hooked successfully" | owner not a user: 4430 (201402); not readable: 4430 "msg exec denied" (52411 missing, 52370 datasource, 52360 datapoint); uri not there yet: 4404 "Operation registered, but uri does not exist yet" (201400, a pending hook) |
//! | `unhook_from_uri` | 4200 "Unhooked" (a missing uri too) | owner not a user: 4430 (201502); not readable: 4430 (52421 / 52390 / 52380) |
//! | `request_data` | 4202, then `send_data_interval` chunks | owner not a user: 4430 (201604); missing: 4404 (201600), or 4430 (52401) when not readable; not readable: 4430 (52030 datasource, 52060 datapoint) |
//!
//! Every check of a message happens before anything is written: a refused
//! message changes nothing.
//!
//! **Reading others' metrics.** A user reads their own metrics and those under a
//! prefix another user shared with them ([`crate::store::Share`]); shares are
//! read-only, so any write naming another user's uri is refused with 4430.
//!
//! **History** (`request_data`): rows newest first, in chunks of at most 1000
//! datapoint or 100 datasource rows (or the rows still owed, if fewer). A full
//! chunk's `start` is its oldest row's TimeUUID and, while rows are still owed,
//! the next chunk covers `[requested start, that TimeUUID]` (both bounds
//! inclusive, so the boundary row appears twice). With a `count`, the rows of
//! all chunks add up to `count`, a repeated boundary row counting each time
//! (as on the original server); `count` 0 or null means every row. The last
//! chunk's `start` is the requested start when the rows ran out before the
//! count.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use komlog_protocol::status::error;
use komlog_protocol::value::parse_datapoint;
use komlog_protocol::{
    Body, DataInterval, DsInfo, Kind, Message, MetricId, MultiData, RequestData, Status, TimeUuid,
    Uri, Username,
};
use serde_json::Value;

use crate::connection::ConnCtx;
use crate::server::Hub;
use crate::sessions::{CloseReason, Outgoing, Written};
use crate::store::group::WriteReceipt;
use crate::store::{NewSample, StoreError};

/// The largest datapoint chunk of `send_data_interval`.
pub const DATAPOINT_PAGE: usize = 1000;
/// The largest datasource chunk of `send_data_interval`.
pub const DATASOURCE_PAGE: usize = 100;

/// A refusal: status, error number, reason.
struct Refusal(Status, u32, String);

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        tracing::error!("store failure: {e}");
        Refusal(
            Status::EXECUTION_ERROR,
            error::NONE,
            "Internal error while executing the message".into(),
        )
    }
}

/// The rest of a frame's handling, run in frame order by the connection: the
/// reply (and, for a write, the notifications it causes) once the work is done.
pub type Reply = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Start handling one frame of a connection, already read as JSON. A write is
/// checked and queued for the group commit now, so the connection can read its
/// next frame while it commits; the returned [`Reply`] waits for the commit and
/// answers. Any other action runs entirely in its `Reply`, after every earlier
/// frame's reply: a connection's frames take effect and are answered in order.
pub async fn start(hub: &Arc<Hub>, ctx: &Arc<ConnCtx>, frame: Value) -> Reply {
    let (hub, ctx) = (Arc::clone(hub), Arc::clone(ctx));
    let msg = match Message::from_agent_json(frame) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(sid = %ctx.sid, "refused frame: {e}");
            return Box::pin(async move { ctx.send(Outgoing::Json(e.reply_json())).await });
        }
    };
    let seq = msg.seq;
    let pending = match msg.body {
        Body::SendDsData(d) => submit_single(&hub, &ctx, d.t, (d.uri, Kind::Datasource, d.content)),
        Body::SendDpData(d) => submit_single(&hub, &ctx, d.t, (d.uri, Kind::Datapoint, d.content)),
        Body::SendMultiData(m) => submit_multi(&hub, &ctx, m).await,
        body => {
            return Box::pin(async move {
                let result = act(&hub, &ctx, seq, body).await;
                answer(&ctx, seq, result).await;
            });
        }
    };
    Box::pin(async move {
        let result = match pending {
            Ok(p) => finish_write(&hub, &ctx, seq, p).await,
            Err(refusal) => Err(refusal),
        };
        answer(&ctx, seq, result).await;
    })
}

/// Every action but the writes.
async fn act(hub: &Arc<Hub>, ctx: &ConnCtx, seq: TimeUuid, body: Body) -> Outcome {
    match body {
        Body::SendDsInfo(i) => ds_info(hub, ctx, i).await,
        Body::HookToUri(p) => hook(hub, ctx, p.uri).await,
        Body::UnhookFromUri(p) => unhook(hub, ctx, p.uri).await,
        Body::RequestData(r) => request_data(hub, ctx, seq, r).await,
        // Writes are started before this; servers' actions are refused by the
        // parse. Neither can arrive here.
        other => Err(Refusal(
            Status::EXECUTION_ERROR,
            error::NONE,
            format!("{} reached the wrong handler", other.action()),
        )),
    }
}

async fn answer(ctx: &ConnCtx, seq: TimeUuid, result: Outcome) {
    match result {
        // The handler already answered (request_data, writes).
        Ok(None) => {}
        Ok(Some((status, reason))) => {
            let reason = (!reason.is_empty()).then_some(reason);
            ctx.send(Message::response(Some(seq), status, error::NONE, reason))
                .await;
        }
        Err(Refusal(status, code, reason)) => {
            tracing::debug!(sid = %ctx.sid, %status, code, "refused: {reason}");
            ctx.send(Message::response(Some(seq), status, code, Some(reason)))
                .await;
        }
    }
}

type Outcome = Result<Option<(Status, String)>, Refusal>;

/// Refuse a write naming another user's uri.
fn own_metric(me: &Username, uri: &Uri, code: u32) -> Result<MetricId, Refusal> {
    let id = uri.metric_id(me);
    if &id.owner != me {
        return Err(Refusal(
            Status::DENIED,
            code,
            format!("Cannot modify other user's uris ({uri})"),
        ));
    }
    Ok(id)
}

/// A write queued for the group commit, with what its answer needs.
struct PendingWrite {
    receipt: WriteReceipt,
    t: TimeUuid,
    written: Vec<Written>,
    /// How a kind mismatch is answered.
    mismatch: Mismatch,
}

enum Mismatch {
    /// `send_ds_data`/`send_dp_data`: the error number, the reason, the uri.
    Single(u32, &'static str, Uri),
    /// `send_multi_data`.
    Multi,
}

fn submit_single(
    hub: &Arc<Hub>,
    ctx: &ConnCtx,
    t: TimeUuid,
    (uri, kind, content): (Uri, Kind, String),
) -> Result<PendingWrite, Refusal> {
    let (foreign, wrong_kind, reason) = match kind {
        Kind::Datasource => (
            error::DS_FOREIGN_URI,
            error::NOT_A_DATASOURCE,
            "uri is not a datasource",
        ),
        Kind::Datapoint => (
            error::DP_FOREIGN_URI,
            error::NOT_A_DATAPOINT,
            "uri is not a datapoint",
        ),
    };
    let id = own_metric(&ctx.user, &uri, foreign)?;
    let sample = NewSample {
        uri: id.local.clone(),
        kind,
        t,
        content,
    };
    let written = vec![Written {
        id,
        kind,
        content: sample.content.clone(),
    }];
    Ok(PendingWrite {
        receipt: hub.writer.submit(ctx.user.clone(), vec![sample]),
        t,
        written,
        mismatch: Mismatch::Single(wrong_kind, reason, uri),
    })
}

/// Wait for a queued write's commit, then answer and notify.
async fn finish_write(hub: &Arc<Hub>, ctx: &ConnCtx, seq: TimeUuid, p: PendingWrite) -> Outcome {
    let result = p.receipt.await.unwrap_or_else(|_| {
        Err(StoreError::Database {
            path: hub.config.data_dir.clone(),
            op: "writing samples",
            reason: "the writer thread stopped".into(),
        })
    });
    match result {
        Ok(outcome) => {
            answer_then_notify(hub, ctx, seq, p.t, &p.written, &outcome.created).await;
            Ok(None)
        }
        Err(StoreError::KindMismatch {
            uri,
            existing,
            written,
        }) => Err(match p.mismatch {
            Mismatch::Single(code, reason, uri) => {
                Refusal(Status::DENIED, code, format!("{reason} ({uri})"))
            }
            Mismatch::Multi => Refusal(
                Status::DENIED,
                error::MULTI_KIND_MISMATCH,
                format!("uri {uri} is a {existing}; a {written} cannot be written to it"),
            ),
        }),
        Err(e) => {
            // Not the write's fault: nothing is answered, and the connection
            // closes with 4503 so that the agent sends it again, here or at
            // another hub.
            tracing::error!(sid = %ctx.sid, "a write is not answered: {e}");
            hub.metrics.write_errors.inc();
            ctx.close(CloseReason::unavailable(match e {
                StoreError::Unpublished { .. } => {
                    "The hub cannot notify writes now; send them again"
                }
                _ => "The hub cannot store writes now; send them again",
            }));
            Ok(None)
        }
    }
}

/// Answer 4200 to the writer, and notify hooked sessions (the writer
/// included). On one hub the answer goes first, so a writer always sees its
/// reply before its own notification. In a cluster the writer thread has
/// published the write on the bus after its commit, and the bus's events
/// notify every hub's sessions (this one's too, as they arrive): a write is
/// only answered once its notifications cannot be lost; when the bus does not
/// take it, the write fails as a failed commit does ([`StoreError::Unpublished`]).
async fn answer_then_notify(
    hub: &Arc<Hub>,
    ctx: &ConnCtx,
    seq: TimeUuid,
    t: TimeUuid,
    written: &[Written],
    created_local: &[String],
) {
    hub.metrics.writes.inc();
    hub.metrics.samples.add(written.len() as u64);
    ctx.send(Message::response(Some(seq), Status::OK, error::NONE, None))
        .await;
    // In a cluster the writer published it after the commit
    // (`server::publish_after_commit`), and the bus notifies.
    if hub.bus.is_none() {
        let created: Vec<MetricId> = created_local
            .iter()
            .map(|local| MetricId {
                owner: ctx.user.clone(),
                local: local.clone(),
            })
            .collect();
        hub.notify_here(t, written, &created);
    }
}

async fn submit_multi(
    hub: &Arc<Hub>,
    ctx: &ConnCtx,
    m: MultiData,
) -> Result<PendingWrite, Refusal> {
    let mut ids = Vec::with_capacity(m.uris.len());
    for item in &m.uris {
        ids.push(own_metric(&ctx.user, &item.uri, error::MULTI_FOREIGN_URI)?);
    }
    let known: Option<Vec<Option<Kind>>> = {
        let cache = ctx.known_kinds.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .map(|id| cache.get(&id.local).map(|k| Some(*k)))
            .collect()
    };
    let looked_up = match known {
        Some(kinds) => Ok(kinds),
        None => hub
            .store_call({
                let lookup = ids.clone();
                move |s| s.metric_kinds(&lookup)
            })
            .await
            .inspect(|kinds| {
                let mut cache = ctx.known_kinds.lock().unwrap_or_else(|p| p.into_inner());
                for (id, kind) in ids.iter().zip(kinds) {
                    if let Some(kind) = kind {
                        cache.insert(id.local.clone(), *kind);
                    }
                }
            }),
    };
    let kinds = match looked_up {
        Ok(kinds) => kinds,
        // Not the write's fault: it fails as a failed commit does (no answer,
        // the connection closes with 4503, the agent sends it again).
        Err(e) => {
            let (tx, receipt) = tokio::sync::oneshot::channel();
            let _ = tx.send(Err(e));
            return Ok(PendingWrite {
                receipt,
                t: m.t,
                written: Vec::new(),
                mismatch: Mismatch::Multi,
            });
        }
    };
    let mut samples = Vec::with_capacity(m.uris.len());
    let mut written = Vec::with_capacity(m.uris.len());
    for ((item, id), existing) in m.uris.into_iter().zip(ids).zip(kinds) {
        // An existing uri's kind decides how the content is read (spec §14.5).
        let (kind, content) = match (existing, item.kind) {
            (Some(Kind::Datasource), Kind::Datapoint) => {
                return Err(Refusal(
                    Status::PROTOCOL_ERROR,
                    error::MULTI_INVALID_CONTENT,
                    format!(
                        "protocol error: uri {} is a datasource; a datapoint item cannot be written to it",
                        item.uri
                    ),
                ));
            }
            (Some(Kind::Datapoint), Kind::Datasource) => match parse_datapoint(&item.content) {
                Ok(d) => (Kind::Datapoint, d.text),
                Err(e) => {
                    return Err(Refusal(
                        Status::PROTOCOL_ERROR,
                        error::MULTI_INVALID_CONTENT,
                        format!("protocol error: uri {} is a datapoint: {e}", item.uri),
                    ));
                }
            },
            (_, kind) => (kind, item.content),
        };
        written.push(Written {
            id: id.clone(),
            kind,
            content: content.clone(),
        });
        samples.push(NewSample {
            uri: id.local,
            kind,
            t: m.t,
            content,
        });
    }
    Ok(PendingWrite {
        receipt: hub.writer.submit(ctx.user.clone(), samples),
        t: m.t,
        written,
        mismatch: Mismatch::Multi,
    })
}

async fn ds_info(hub: &Arc<Hub>, ctx: &ConnCtx, info: DsInfo) -> Outcome {
    let id = own_metric(&ctx.user, &info.uri, error::INFO_FOREIGN_URI)?;
    let lookup = id.clone();
    match hub.store_call(move |s| s.metric_kind(&lookup)).await? {
        None => Err(Refusal(
            Status::NOT_FOUND,
            error::INFO_NOT_FOUND,
            format!("uri {} does not exist", info.uri),
        )),
        Some(Kind::Datapoint) => Err(Refusal(
            Status::DENIED,
            error::INFO_NOT_A_DATASOURCE,
            format!("uri {} is not a datasource", info.uri),
        )),
        Some(Kind::Datasource) => {
            if let Some(mut supplies) = info.supplies {
                supplies.sort();
                supplies.dedup();
                hub.store_call(move |s| s.set_supplies(&id, &supplies))
                    .await?;
            }
            Ok(Some((Status::OK, String::new())))
        }
    }
}

/// Whether the session's user may read a metric, and the metric's kind.
enum Access {
    /// The owner of `owner:uri` is not a user.
    NoSuchOwner,
    /// Another user's metric that is not shared with the reader.
    NotShared(Option<Kind>),
    /// Own, or shared with the reader: its kind, none when it does not exist
    /// (or is only an intermediate node of longer uris).
    Readable(Option<Kind>),
}

/// May `reader` read `id`? Own metrics, or under a prefix shared with them.
async fn access(hub: &Arc<Hub>, reader: &Username, id: &MetricId) -> Result<Access, Refusal> {
    let (lookup, owner, me) = (id.clone(), id.owner.clone(), reader.clone());
    let (owner_exists, shared, kind) = hub
        .store_call(move |s| {
            if owner == me {
                return Ok((true, true, s.metric_kind(&lookup)?));
            }
            if !s.user_exists(&owner)? {
                return Ok((false, false, None));
            }
            let shared = s
                .shares_of(&owner)?
                .iter()
                .any(|sh| sh.lets_read(&me, &lookup));
            Ok((true, shared, s.metric_kind(&lookup)?))
        })
        .await?;
    Ok(match (owner_exists, shared) {
        (false, _) => Access::NoSuchOwner,
        (true, false) => Access::NotShared(kind),
        (true, true) => Access::Readable(kind),
    })
}

/// The error numbers of an action refused for readability: owner not a user,
/// then not shared for a missing uri, a datasource, a datapoint.
struct DeniedNumbers {
    no_such_owner: u32,
    missing: u32,
    datasource: u32,
    datapoint: u32,
}

/// The kind of a uri the session may read, or the refusal.
async fn readable(
    hub: &Arc<Hub>,
    ctx: &ConnCtx,
    id: &MetricId,
    numbers: &DeniedNumbers,
) -> Result<Option<Kind>, Refusal> {
    match access(hub, &ctx.user, id).await? {
        Access::NoSuchOwner => Err(Refusal(
            Status::DENIED,
            numbers.no_such_owner,
            format!("user {} does not exist", id.owner),
        )),
        Access::NotShared(kind) => Err(Refusal(
            Status::DENIED,
            match kind {
                None => numbers.missing,
                Some(Kind::Datasource) => numbers.datasource,
                Some(Kind::Datapoint) => numbers.datapoint,
            },
            format!("msg exec denied: {id} is not shared with {}", ctx.user),
        )),
        Access::Readable(kind) => Ok(kind),
    }
}

async fn hook(hub: &Arc<Hub>, ctx: &ConnCtx, uri: Uri) -> Outcome {
    let id = uri.metric_id(&ctx.user);
    let numbers = DeniedNumbers {
        no_such_owner: error::HOOK_NO_SUCH_OWNER,
        missing: error::HOOK_DENIED_MISSING,
        datasource: error::HOOK_DENIED_DATASOURCE,
        datapoint: error::HOOK_DENIED_DATAPOINT,
    };
    if readable(hub, ctx, &id, &numbers).await?.is_some() {
        hub.sessions.hook(&ctx.token, &id);
        Ok(Some((Status::OK, "Hooked successfully".into())))
    } else {
        hub.sessions.hook_pending(&ctx.token, &id);
        Err(Refusal(
            Status::NOT_FOUND,
            error::HOOK_PENDING,
            "Operation registered, but uri does not exist yet".into(),
        ))
    }
}

/// Drops an active or pending hook; a uri that does not exist is unhooked too.
async fn unhook(hub: &Arc<Hub>, ctx: &ConnCtx, uri: Uri) -> Outcome {
    let id = uri.metric_id(&ctx.user);
    let numbers = DeniedNumbers {
        no_such_owner: error::UNHOOK_NO_SUCH_OWNER,
        missing: error::UNHOOK_DENIED_MISSING,
        datasource: error::UNHOOK_DENIED_DATASOURCE,
        datapoint: error::UNHOOK_DENIED_DATAPOINT,
    };
    readable(hub, ctx, &id, &numbers).await?;
    hub.sessions.unhook(&ctx.token, &id);
    Ok(Some((Status::OK, "Unhooked".into())))
}

async fn request_data(hub: &Arc<Hub>, ctx: &ConnCtx, seq: TimeUuid, r: RequestData) -> Outcome {
    let id = r.uri.metric_id(&ctx.user);
    let numbers = DeniedNumbers {
        no_such_owner: error::DATA_NO_SUCH_OWNER,
        missing: error::DATA_DENIED_MISSING,
        datasource: error::DATA_DENIED_DATASOURCE,
        datapoint: error::DATA_DENIED_DATAPOINT,
    };
    let Some(kind) = readable(hub, ctx, &id, &numbers).await? else {
        return Err(Refusal(
            Status::NOT_FOUND,
            error::DATA_NOT_FOUND,
            format!("uri {} does not exist", r.uri),
        ));
    };
    let mut start = r.start.unwrap_or(TimeUuid::MIN);
    let mut end = r.end.unwrap_or(TimeUuid::MAX);
    if start > end {
        std::mem::swap(&mut start, &mut end);
    }
    ctx.send(Message::response(
        Some(seq),
        Status::ACCEPTED,
        error::NONE,
        Some("message accepted for processing".into()),
    ))
    .await;
    let page = match kind {
        Kind::Datapoint => DATAPOINT_PAGE,
        Kind::Datasource => DATASOURCE_PAGE,
    };
    let uri = Uri::parse(&id.uri_for(&ctx.user)).unwrap_or(r.uri);
    // Rows still owed (none: every row). Each chunk's rows count, the boundary
    // row a chunk repeats from the previous one included.
    let mut owed = r
        .count
        .filter(|c| *c > 0)
        .map(|c| usize::try_from(c).unwrap_or(usize::MAX));
    let mut chunk_end = end;
    loop {
        let size = owed.map_or(page, |o| o.min(page));
        let (read_id, from, to) = (id.clone(), start, chunk_end);
        let rows = match hub
            .store_call(move |s| s.read_newest(&read_id, from, to, size))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("request_data: {e}");
                ctx.send(Message::response(
                    Some(seq),
                    Status::EXECUTION_ERROR,
                    error::NONE,
                    Some("Internal error while reading".into()),
                ))
                .await;
                return Ok(None);
            }
        };
        let full = rows.len() == size;
        let oldest = rows.last().map(|(t, _)| *t);
        if let Some(o) = owed.as_mut() {
            *o = o.saturating_sub(rows.len());
        }
        let chunk_start = match oldest {
            Some(t) if full => t,
            _ => start,
        };
        ctx.send(Message::new(
            Some(seq),
            Body::SendDataInterval(DataInterval {
                uri: uri.clone(),
                kind,
                start: chunk_start,
                end: chunk_end,
                data: rows,
            }),
        ))
        .await;
        // Rows run out, or the count is delivered. A full chunk of more than
        // one row makes progress: the next one ends at its oldest row, older
        // than its newest. (A one-row chunk only comes with a count, which it
        // delivers.)
        if !full || owed == Some(0) || oldest == Some(chunk_end) {
            return Ok(None);
        }
        chunk_end = chunk_start;
    }
}
