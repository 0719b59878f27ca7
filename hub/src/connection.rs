//! One agent websocket at `/`.
//!
//! **Owns:** the upgrade (the `kid` cookie must open a session, otherwise the
//! upgrade is accepted and the socket closed at once with 4403 "Access denied",
//! as the original server did), reading frames in order, re-checking the
//! session before each frame (a kicked session gets 4403), a text frame that is
//! not JSON (the connection is closed with 1003, no answer), and a writer task
//! that sends the connection's outbox and, when told to, the close frame.
//!
//! Frames from one connection take effect and are answered in order, and a
//! reply always precedes the notifications its write causes. Writes are
//! pipelined: the reader checks a write and queues it for the group commit
//! ([`crate::store::group`]), then reads the next frame while a replier task
//! waits for the commits and answers in frame order (at most
//! [`PIPELINE_DEPTH`] frames wait for their answer before the reader waits in
//! turn). A binary frame is answered with 4400. Pings are answered by the
//! websocket layer.
//!
//! **Closing.** Whoever closes, the hub completes the websocket close
//! handshake: after sending its close frame it reads (and drops) what the
//! client still sends until the client's close frame, for at most
//! [`CLOSE_WAIT`]. Dropping the socket with unread input would reset it, and
//! the client could lose the close frame and see 1006 instead of the code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::response::Response;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use komlog_protocol::login::COOKIE_NAME;
use komlog_protocol::status::error;
use komlog_protocol::{Kind, Message, Status, Username};
use tokio::sync::{mpsc, oneshot, watch};

use crate::actions::Reply;
use crate::server::Hub;
use crate::sessions::{Attached, CloseReason, Outgoing};

/// Frames of one connection read ahead of their answers.
pub const PIPELINE_DEPTH: usize = 1024;

/// The websocket read buffer of a connection.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// How long a closing connection waits for the client's close frame.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the action handlers know about the connection they serve.
pub struct ConnCtx {
    /// The session's cookie value.
    pub token: String,
    /// The session id.
    pub sid: String,
    /// The session's user.
    pub user: Username,
    /// This connection's outbox.
    pub outbox: mpsc::Sender<Outgoing>,
    /// Set to close the connection once the frames read so far are answered.
    close_now: watch::Sender<Option<CloseReason>>,
    /// The kinds of the user's metrics this connection has found to exist,
    /// by local uri: a metric's kind never changes while it exists, and it
    /// is removed only with its user, whose sessions are kicked. Spares a
    /// write of known uris its lookup in the store.
    pub known_kinds: std::sync::Mutex<HashMap<String, Kind>>,
}

impl ConnCtx {
    /// Queue a message for this connection, waiting for room in the outbox.
    pub async fn send(&self, msg: impl Into<Outgoing>) {
        // An error means the connection is closing; the message has nowhere to go.
        let _ = self.outbox.send(msg.into()).await;
    }

    /// Stop reading this connection and close it with `why` (the first reason
    /// given wins).
    pub fn close(&self, why: CloseReason) {
        self.close_now.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(why);
                true
            } else {
                false
            }
        });
    }
}

/// `GET /`: the websocket upgrade.
pub async fn upgrade(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = cookie_value(&headers, COOKIE_NAME);
    // A 16 KiB read buffer rather than the default 128 KiB, allocated per
    // connection up front: agents' frames are small (a larger one grows it),
    // and a hub holds thousands of connections.
    ws.max_message_size(hub.config.max_frame_bytes)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run(hub, token, socket))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

fn close_frame(why: &CloseReason) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: why.code,
        reason: why.reason.clone().into(),
    }))
}

/// Read and drop what the client still sends until its close frame or the end
/// of the stream, for at most [`CLOSE_WAIT`].
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn run(hub: Arc<Hub>, token: Option<String>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    if hub.is_draining() {
        let _ = sink
            .send(close_frame(&CloseReason::unavailable(
                "The hub is stopping",
            )))
            .await;
        drain(&mut stream).await;
        let _ = sink.close().await;
        return;
    }
    let attached = token
        .as_deref()
        .and_then(|t| hub.sessions.attach(t).map(|a| (t.to_owned(), a)));
    let Some((token, attached)) = attached else {
        tracing::info!(
            cookie = token.is_some(),
            "websocket refused: no valid session cookie"
        );
        let _ = sink.send(close_frame(&CloseReason::access_denied())).await;
        drain(&mut stream).await;
        let _ = sink.close().await;
        return;
    };
    let Attached {
        conn_id,
        sid,
        user,
        outbox,
        mut outbox_rx,
        mut close_rx,
    } = attached;
    tracing::info!(user = %user, sid = %sid, "websocket connected");
    let (local_close_tx, mut local_close_rx) = oneshot::channel::<CloseReason>();
    let mut writer_close = close_rx.clone();
    let writer = tokio::spawn(async move {
        // False once the session let go of this connection (detached, or the
        // session forgotten): then a close decided here, or the end of the
        // outbox, ends the writer.
        let mut watching = true;
        let why = loop {
            tokio::select! {
                biased;
                changed = writer_close.changed(), if watching => {
                    let why = writer_close.borrow().clone();
                    if changed.is_ok() || why.is_some() {
                        break why;
                    }
                    watching = false;
                }
                local = &mut local_close_rx => {
                    // The replies queued before a close this connection decided go first.
                    while let Ok(m) = outbox_rx.try_recv() {
                        if sink.send(WsMessage::Text(m.to_text().into())).await.is_err() {
                            break;
                        }
                    }
                    break local.ok();
                }
                msg = outbox_rx.recv() => match msg {
                    Some(m) => {
                        if sink.send(WsMessage::Text(m.to_text().into())).await.is_err() {
                            break None;
                        }
                    }
                    None => break None,
                },
            }
        };
        if let Some(why) = why {
            let _ = sink.send(close_frame(&why)).await;
        }
        let _ = sink.close().await;
    });
    let (close_now, mut close_now_rx) = watch::channel(None);
    let ctx = Arc::new(ConnCtx {
        token,
        sid,
        user,
        outbox,
        close_now,
        known_kinds: std::sync::Mutex::new(HashMap::new()),
    });
    let (reply_tx, mut reply_rx) = mpsc::channel::<Reply>(PIPELINE_DEPTH);
    let replier = tokio::spawn(async move {
        while let Some(reply) = reply_rx.recv().await {
            reply.await;
        }
    });
    // A close this reader decides (sent once the frames before it are answered),
    // and whether the client's side of the stream has ended.
    let mut close_here = None;
    let mut stream_ended = false;
    loop {
        let frame = tokio::select! {
            _ = close_rx.changed() => break,
            _ = close_now_rx.changed() => {
                close_here = close_now_rx.borrow().clone();
                break;
            }
            f = stream.next() => f,
        };
        let text = match frame {
            None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => {
                stream_ended = true;
                break;
            }
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Binary(_))) => {
                let ctx = Arc::clone(&ctx);
                let reply: Reply = Box::pin(async move {
                    ctx.send(Message::response(
                        None,
                        Status::PROTOCOL_ERROR,
                        error::MALFORMED_MESSAGE,
                        Some(
                            "Malformed message: binary frames are not accepted; send JSON text"
                                .into(),
                        ),
                    ))
                    .await;
                });
                if reply_tx.send(reply).await.is_err() {
                    break;
                }
                continue;
            }
            Some(Ok(_)) => continue,
        };
        if !hub.sessions.is_valid(&ctx.token) {
            close_here = Some(CloseReason::access_denied());
            break;
        }
        let value = match serde_json::from_str::<serde_json::Value>(text.as_str()) {
            Ok(value) => value,
            Err(e) => {
                tracing::debug!(sid = %ctx.sid, "a text frame that is not JSON ({e}): closing");
                close_here = Some(CloseReason::not_json());
                break;
            }
        };
        let reply = crate::actions::start(&hub, &ctx, value).await;
        if reply_tx.send(reply).await.is_err() {
            break;
        }
    }
    // Answer what was read before the connection ended.
    drop(reply_tx);
    let abort_replier = replier.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), replier)
        .await
        .is_err()
    {
        abort_replier.abort();
    }
    if close_here.is_none() {
        // A reply decided it while the last frames were answered.
        close_here = close_now_rx.borrow().clone();
    }
    match close_here {
        Some(why) => {
            let _ = local_close_tx.send(why);
        }
        None => drop(local_close_tx),
    }
    hub.sessions.detach(&ctx.token, conn_id);
    tracing::info!(user = %ctx.user, sid = %ctx.sid, "websocket disconnected");
    drop(ctx);
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
    if !stream_ended {
        drain(&mut stream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kid_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; kid=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, "kid").as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1".parse().unwrap());
        h.append(COOKIE, "kid=\"q\"".parse().unwrap());
        assert_eq!(cookie_value(&h, "kid").as_deref(), Some("q"));
        assert_eq!(cookie_value(&HeaderMap::new(), "kid"), None);
        let mut h = HeaderMap::new();
        h.append(COOKIE, "kidx=1; xkid=2".parse().unwrap());
        assert_eq!(cookie_value(&h, "kid"), None);
    }
}
