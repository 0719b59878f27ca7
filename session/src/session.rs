//! The websocket session: sending, matching replies by `irt`, notifications,
//! and failing pending waits on disconnect.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use komlog_protocol::login::{COOKIE_NAME, PrivateKey};
use komlog_protocol::value::{MAX_DATASOURCE_BYTES, format_datapoint};
use komlog_protocol::{
    Body, DpData, DsData, DsInfo, GenericResponse, Kind, Message, MultiData, MultiItem,
    RequestData, Status, TimeUuid, Uri, UriPayload, Username,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::tls::Stream;
use crate::{Endpoint, SessionError};

type Ws = WebSocketStream<Stream>;

/// How to log in and how long to wait.
#[derive(Clone)]
pub struct SessionConfig {
    /// The server.
    pub endpoint: Endpoint,
    /// The user to log in as.
    pub username: Username,
    /// The agent's key (RSA, at least 4096 bits).
    pub key: PrivateKey,
    /// The longest wait for any one reply or chunk (default 30 s).
    pub reply_timeout: Duration,
    /// The longest wait for each login POST and the websocket handshake (default 30 s).
    pub login_timeout: Duration,
    /// Notifications buffered before new ones are dropped (default 10000).
    pub notification_capacity: usize,
    /// A PEM file of CA certificates trusted for a TLS endpoint besides the
    /// Mozilla roots (default none); read at each login.
    pub ca_file: Option<PathBuf>,
}

impl SessionConfig {
    /// A configuration with the default timeouts.
    pub fn new(endpoint: Endpoint, username: &str, key: PrivateKey) -> Result<Self, SessionError> {
        Ok(SessionConfig {
            endpoint,
            username: Username::parse(username)
                .map_err(|e| SessionError::Invalid(e.to_string()))?,
            key,
            reply_timeout: Duration::from_secs(30),
            login_timeout: Duration::from_secs(30),
            notification_capacity: 10_000,
            ca_file: None,
        })
    }
}

/// A sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text, at most 131072 UTF-8 bytes.
    Datasource(String),
    /// A finite number.
    Datapoint(f64),
}

/// One sample to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Where it goes (local, or the session user's own `user:uri`).
    pub uri: Uri,
    /// Its time.
    pub t: TimeUuid,
    /// Its value.
    pub value: Value,
}

impl Sample {
    /// A checked datapoint sample (NaN and infinities are refused here).
    pub fn datapoint(uri: &str, t: TimeUuid, value: f64) -> Result<Sample, SessionError> {
        if !value.is_finite() {
            return Err(SessionError::Invalid(format!(
                "datapoint {value} for {uri} is not finite"
            )));
        }
        Ok(Sample {
            uri: parse_uri(uri)?,
            t,
            value: Value::Datapoint(value),
        })
    }

    /// A checked datasource sample.
    pub fn datasource(uri: &str, t: TimeUuid, text: &str) -> Result<Sample, SessionError> {
        if text.len() > MAX_DATASOURCE_BYTES {
            return Err(SessionError::Invalid(format!(
                "datasource text for {uri} is {} bytes, over the limit of {MAX_DATASOURCE_BYTES}",
                text.len()
            )));
        }
        Ok(Sample {
            uri: parse_uri(uri)?,
            t,
            value: Value::Datasource(text.to_owned()),
        })
    }

    fn kind_and_content(&self) -> Result<(Kind, String), SessionError> {
        match &self.value {
            Value::Datasource(s) => Ok((Kind::Datasource, s.clone())),
            Value::Datapoint(v) => format_datapoint(*v)
                .map(|text| (Kind::Datapoint, text))
                .ok_or_else(|| SessionError::Invalid(format!("datapoint {v} is not finite"))),
        }
    }
}

fn parse_uri(uri: &str) -> Result<Uri, SessionError> {
    Uri::parse(uri).map_err(|e| SessionError::Invalid(e.to_string()))
}

/// A `send_multi_data` pushed by the server for hooked uris.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The notification's `seq` (the `irt` of writes it causes, in the original agent).
    pub seq: TimeUuid,
    /// The samples' time.
    pub t: TimeUuid,
    /// The samples (`owner:uri` for other users' metrics).
    pub items: Vec<MultiItem>,
}

/// What `hook_to_uri` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// 4200: the uri exists and is hooked.
    Hooked,
    /// 4404: the uri does not exist yet; the hook activates when it appears.
    Pending,
}

/// What the reader shares with the callers.
#[derive(Default)]
struct Shared {
    /// Waiting requests by `seq`; dropped on disconnect, which fails the waits.
    waiting: HashMap<TimeUuid, mpsc::UnboundedSender<Message>>,
    /// Set once the connection is gone: the close code, if any.
    closed: Option<Option<u16>>,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    // The map stays consistent even if a holder panicked.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A wait for the replies to one request; deregisters itself when dropped.
struct Waiter {
    seq: TimeUuid,
    action: &'static str,
    rx: mpsc::UnboundedReceiver<Message>,
    shared: SharedRef,
    timeout: Duration,
}

impl Waiter {
    async fn next(&mut self) -> Result<Message, SessionError> {
        match tokio::time::timeout(self.timeout, self.rx.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(SessionError::Disconnected {
                code: lock(&self.shared).closed.flatten(),
            }),
            Err(_) => Err(SessionError::Timeout {
                action: self.action,
                timeout: self.timeout,
            }),
        }
    }

    async fn generic(&mut self) -> Result<GenericResponse, SessionError> {
        let m = self.next().await?;
        match m.body {
            Body::GenericResponse(r) => Ok(r),
            other => Err(SessionError::Unexpected {
                action: self.action,
                what: format!("{} instead of generic_response", other.action()),
            }),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        lock(&self.shared).waiting.remove(&self.seq);
    }
}

/// A write sent with [`Session::submit_samples`] whose reply has not been read.
/// Dropping it stops waiting (the server still applies the write).
pub struct PendingReply {
    waiter: Waiter,
}

impl PendingReply {
    /// The `seq` of the message sent.
    pub fn seq(&self) -> TimeUuid {
        self.waiter.seq
    }

    /// Wait (at most the reply timeout) for the reply: `Ok` on 4200/4202,
    /// [`SessionError::Refused`] otherwise.
    pub async fn wait(mut self) -> Result<(), SessionError> {
        let r = self.waiter.generic().await?;
        if r.status.is_success() {
            Ok(())
        } else {
            Err(SessionError::Refused {
                action: self.waiter.action,
                response: r,
            })
        }
    }
}

/// A logged-in session with a live websocket.
pub struct Session {
    shared: SharedRef,
    sink: tokio::sync::Mutex<SplitSink<Ws, WsMessage>>,
    reader: JoinHandle<()>,
    notifications: Option<mpsc::Receiver<Notification>>,
    reply_timeout: Duration,
}

impl Session {
    /// Log in (challenge handshake) and open the websocket with the cookie.
    pub async fn login(config: SessionConfig) -> Result<Session, SessionError> {
        let tls = if config.endpoint.tls {
            Some(crate::tls::client_config(config.ca_file.as_deref())?)
        } else {
            None
        };
        let cookie = crate::http::login(
            &config.endpoint,
            tls.as_ref(),
            config.username.as_str(),
            &config.key,
            config.login_timeout,
        )
        .await?;
        let endpoint = format!("{}:{}", config.endpoint.host, config.endpoint.port);
        let connect_err = |reason: String| SessionError::Connect {
            endpoint: endpoint.clone(),
            reason,
        };
        let scheme = if config.endpoint.tls { "wss" } else { "ws" };
        let mut req = format!("{scheme}://{endpoint}/")
            .into_client_request()
            .map_err(|e| connect_err(e.to_string()))?;
        let cookie_header = format!("{COOKIE_NAME}={cookie}")
            .parse()
            .map_err(|_| connect_err("the cookie is not a valid header".into()))?;
        req.headers_mut().insert("cookie", cookie_header);
        let connect = async {
            let stream = crate::tls::connect(&config.endpoint, tls.as_ref())
                .await
                .map_err(&connect_err)?;
            tokio_tungstenite::client_async(req, stream)
                .await
                .map_err(|e| connect_err(e.to_string()))
        };
        let (ws, _) = tokio::time::timeout(config.login_timeout, connect)
            .await
            .map_err(|_| {
                connect_err(format!("no handshake within {:?}", config.login_timeout))
            })??;
        let (sink, stream) = ws.split();
        let shared = SharedRef::default();
        let (tx, rx) = mpsc::channel(config.notification_capacity.max(1));
        let reader = tokio::spawn(read_loop(stream, Arc::clone(&shared), tx));
        Ok(Session {
            shared,
            sink: tokio::sync::Mutex::new(sink),
            reader,
            notifications: Some(rx),
            reply_timeout: config.reply_timeout,
        })
    }

    /// The notification channel (once); it ends when the connection does.
    pub fn take_notifications(&mut self) -> Option<mpsc::Receiver<Notification>> {
        self.notifications.take()
    }

    /// `None` while connected; the close code (if any) once disconnected.
    pub fn disconnected(&self) -> Option<Option<u16>> {
        lock(&self.shared).closed
    }

    /// Send a message and register for its replies (before sending, so none is missed).
    async fn request(&self, action: &'static str, body: Body) -> Result<Waiter, SessionError> {
        self.request_answering(None, action, body).await
    }

    /// [`Session::request`] with the envelope's `irt` set to `irt`.
    async fn request_answering(
        &self,
        irt: Option<TimeUuid>,
        action: &'static str,
        body: Body,
    ) -> Result<Waiter, SessionError> {
        let msg = Message::new(irt, body);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut shared = lock(&self.shared);
            if let Some(code) = shared.closed {
                return Err(SessionError::Disconnected { code });
            }
            shared.waiting.insert(msg.seq, tx);
        }
        let waiter = Waiter {
            seq: msg.seq,
            action,
            rx,
            shared: Arc::clone(&self.shared),
            timeout: self.reply_timeout,
        };
        let sent = tokio::time::timeout(self.reply_timeout, async {
            self.sink
                .lock()
                .await
                .send(WsMessage::Text(msg.to_text().into()))
                .await
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(waiter),
            Ok(Err(_)) => Err(SessionError::Disconnected {
                code: lock(&self.shared).closed.flatten(),
            }),
            Err(_) => Err(SessionError::Timeout {
                action,
                timeout: self.reply_timeout,
            }),
        }
    }

    async fn simple(
        &self,
        action: &'static str,
        body: Body,
    ) -> Result<GenericResponse, SessionError> {
        let mut waiter = self.request(action, body).await?;
        waiter.generic().await
    }

    /// Send samples: grouped by time, ascending; one `send_multi_data` for two or
    /// more samples at one time, `send_ds_data`/`send_dp_data` for one; each
    /// message waits for its reply. Stops at the first refusal (samples at later
    /// times are then not sent) and returns it.
    pub async fn send_samples(&self, samples: &[Sample]) -> Result<(), SessionError> {
        let mut by_time: BTreeMap<TimeUuid, Vec<&Sample>> = BTreeMap::new();
        for s in samples {
            by_time.entry(s.t).or_default().push(s);
        }
        for (t, group) in by_time {
            self.submit_group(t, &group, None).await?.wait().await?;
        }
        Ok(())
    }

    /// Send the samples of one time (`t`, which every sample must carry) as one
    /// message and return without waiting for the reply: the caller keeps a
    /// window of such messages in flight and waits for each with
    /// [`PendingReply::wait`]. The server answers a connection's messages in the
    /// order they were sent.
    pub async fn submit_samples(
        &self,
        t: TimeUuid,
        samples: &[Sample],
    ) -> Result<PendingReply, SessionError> {
        self.submit_samples_answering(t, samples, None).await
    }

    /// [`Session::submit_samples`] for samples that answer a notification:
    /// the message's `irt` is the notification's `seq`, as the original agent
    /// sent the outputs of a method fired by a notification (since 0.9.0).
    pub async fn submit_samples_answering(
        &self,
        t: TimeUuid,
        samples: &[Sample],
        irt: Option<TimeUuid>,
    ) -> Result<PendingReply, SessionError> {
        if samples.is_empty() {
            return Err(SessionError::Invalid("no samples to send".into()));
        }
        if let Some(other) = samples.iter().find(|s| s.t != t) {
            return Err(SessionError::Invalid(format!(
                "sample of {} is at {}, not at the message's time {t}",
                other.uri, other.t
            )));
        }
        let group: Vec<&Sample> = samples.iter().collect();
        self.submit_group(t, &group, irt).await
    }

    async fn submit_group(
        &self,
        t: TimeUuid,
        group: &[&Sample],
        irt: Option<TimeUuid>,
    ) -> Result<PendingReply, SessionError> {
        let (action, body) = if let [one] = group {
            let (kind, content) = one.kind_and_content()?;
            match kind {
                Kind::Datasource => (
                    "send_ds_data",
                    Body::SendDsData(DsData {
                        uri: one.uri.clone(),
                        t,
                        content,
                    }),
                ),
                Kind::Datapoint => (
                    "send_dp_data",
                    Body::SendDpData(DpData {
                        uri: one.uri.clone(),
                        t,
                        content,
                    }),
                ),
            }
        } else {
            let mut uris = Vec::with_capacity(group.len());
            for s in group {
                let (kind, content) = s.kind_and_content()?;
                uris.push(MultiItem {
                    uri: s.uri.clone(),
                    kind,
                    content,
                });
            }
            // Datasources first, as the original agent sends them.
            uris.sort_by_key(|i| i.kind != Kind::Datasource);
            (
                "send_multi_data",
                Body::SendMultiData(MultiData { t, uris }),
            )
        };
        let waiter = self.request_answering(irt, action, body).await?;
        Ok(PendingReply { waiter })
    }

    /// Tell the server which datapoints the datasource `uri` supplies
    /// (`send_ds_info`): local uris, sent sorted and without repeats; `None`
    /// keeps what the server holds. Returns without waiting for the reply, like
    /// [`Session::submit_samples`].
    pub async fn submit_ds_info(
        &self,
        uri: &str,
        supplies: Option<&[String]>,
    ) -> Result<PendingReply, SessionError> {
        let supplies = match supplies {
            None => None,
            Some(list) => {
                let mut list = list.to_vec();
                for s in &list {
                    if !matches!(parse_uri(s)?, Uri::Local(_)) {
                        return Err(SessionError::Invalid(format!(
                            "supplies of {uri}: {s:?} is not a local uri"
                        )));
                    }
                }
                list.sort();
                list.dedup();
                Some(list)
            }
        };
        let body = Body::SendDsInfo(DsInfo {
            uri: parse_uri(uri)?,
            supplies,
        });
        let waiter = self.request("send_ds_info", body).await?;
        Ok(PendingReply { waiter })
    }

    /// [`Session::submit_ds_info`], waiting for the reply: `Ok` on 4200,
    /// [`SessionError::Refused`] otherwise (4404: no such uri; 4430: not a
    /// datasource, or another user's uri).
    pub async fn send_ds_info(
        &self,
        uri: &str,
        supplies: Option<&[String]>,
    ) -> Result<(), SessionError> {
        self.submit_ds_info(uri, supplies).await?.wait().await
    }

    /// Subscribe to a uri's updates (local, or `owner:uri` when shared).
    pub async fn hook(&self, uri: &str) -> Result<HookOutcome, SessionError> {
        let action = "hook_to_uri";
        let r = self
            .simple(
                action,
                Body::HookToUri(UriPayload {
                    uri: parse_uri(uri)?,
                }),
            )
            .await?;
        match r.status {
            Status::OK => Ok(HookOutcome::Hooked),
            Status::NOT_FOUND => Ok(HookOutcome::Pending),
            _ => Err(SessionError::Refused {
                action,
                response: r,
            }),
        }
    }

    /// Drop a subscription (active or pending).
    pub async fn unhook(&self, uri: &str) -> Result<(), SessionError> {
        let action = "unhook_from_uri";
        let r = self
            .simple(
                action,
                Body::UnhookFromUri(UriPayload {
                    uri: parse_uri(uri)?,
                }),
            )
            .await?;
        if r.status == Status::OK {
            Ok(())
        } else {
            Err(SessionError::Refused {
                action,
                response: r,
            })
        }
    }

    /// History of a uri: rows with `start <= t <= end` (open sides are the
    /// lowest/highest TimeUUID), at most `count` of the newest, newest first,
    /// without the rows repeated at chunk boundaries. `count` is required when
    /// a side is open.
    pub async fn request_data(
        &self,
        uri: &str,
        start: Option<TimeUuid>,
        end: Option<TimeUuid>,
        count: Option<u64>,
    ) -> Result<Vec<(TimeUuid, String)>, SessionError> {
        Ok(self.request_history(uri, start, end, count).await?.1)
    }

    /// [`Session::request_data`], also giving the uri's kind as the server's
    /// chunks carry it (datapoint rows hold decimal text).
    pub async fn request_history(
        &self,
        uri: &str,
        start: Option<TimeUuid>,
        end: Option<TimeUuid>,
        count: Option<u64>,
    ) -> Result<(Kind, Vec<(TimeUuid, String)>), SessionError> {
        let action = "request_data";
        if count.is_none() && (start.is_none() || end.is_none()) {
            return Err(SessionError::Invalid(
                "request_data needs a count when start or end is open".into(),
            ));
        }
        if count == Some(0) {
            return Err(SessionError::Invalid(
                "request_data count must be > 0".into(),
            ));
        }
        // The server's chunks add up to the count asked, and a row on the
        // boundary of two chunks is sent (and counted) twice: ask for enough
        // to cover one repeat per chunk of at least 100 rows, and keep `count`.
        let asked = count.map(|c| c.saturating_add(c.div_ceil(99)));
        let body = Body::RequestData(RequestData {
            uri: parse_uri(uri)?,
            start,
            end,
            count: asked,
        });
        let mut waiter = self.request(action, body).await?;
        let first = waiter.generic().await?;
        if first.status != Status::ACCEPTED && first.status != Status::OK {
            return Err(SessionError::Refused {
                action,
                response: first,
            });
        }
        let (s, e) = (start.unwrap_or(TimeUuid::MIN), end.unwrap_or(TimeUuid::MAX));
        let lowest = s.min(e);
        let wanted = count.map(|c| usize::try_from(c).unwrap_or(usize::MAX));
        let asked = asked.map(|c| usize::try_from(c).unwrap_or(usize::MAX));
        let mut rows: Vec<(TimeUuid, String)> = Vec::new();
        let mut kind;
        loop {
            let m = waiter.next().await?;
            let Body::SendDataInterval(chunk) = m.body else {
                return Err(SessionError::Unexpected {
                    action,
                    what: format!("{} instead of send_data_interval", m.body.action()),
                });
            };
            kind = chunk.kind;
            let page = match chunk.kind {
                Kind::Datapoint => 1000,
                Kind::Datasource => 100,
            };
            let page = asked.map_or(page, |w| w.min(page));
            let before = rows.len();
            let short = chunk.data.len() < page;
            for row in chunk.data {
                // Chunks come newest first; a boundary row repeats the previous one's last.
                if rows.last().is_none_or(|last| last.0 > row.0) {
                    rows.push(row);
                }
            }
            let done = chunk.start == lowest
                || short
                || wanted.is_some_and(|w| rows.len() >= w)
                || rows.len() == before;
            if done {
                break;
            }
        }
        if let Some(w) = wanted {
            rows.truncate(w);
        }
        Ok((kind, rows))
    }

    /// Close the websocket; pending waits fail with [`SessionError::Disconnected`].
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut sink = self.sink.lock().await;
            let _ = sink.send(WsMessage::Close(None)).await;
            let _ = sink.close().await;
        })
        .await;
        self.reader.abort();
        let mut shared = lock(&self.shared);
        shared.closed.get_or_insert(None);
        shared.waiting.clear();
    }
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    shared: SharedRef,
    notifications: mpsc::Sender<Notification>,
) {
    let mut code = None;
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(WsMessage::Text(t)) => t,
            Ok(WsMessage::Close(f)) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("websocket error: {e}");
                break;
            }
        };
        let msg = match Message::parse(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("ignoring a frame from the server: {e}");
                continue;
            }
        };
        let waiting = msg
            .irt
            .and_then(|irt| lock(&shared).waiting.get(&irt).cloned());
        if let Some(tx) = waiting {
            let _ = tx.send(msg);
            continue;
        }
        match msg.body {
            Body::SendMultiData(d) => {
                let n = Notification {
                    seq: msg.seq,
                    t: d.t,
                    items: d.uris,
                };
                if notifications.try_send(n).is_err() {
                    tracing::warn!("notification dropped: the receiver is full or gone");
                }
            }
            other => tracing::debug!(action = %other.action(), "unsolicited message ignored"),
        }
    }
    let mut s = lock(&shared);
    s.closed = Some(code);
    // Dropping the senders fails every pending wait with Disconnected.
    s.waiting.clear();
}
