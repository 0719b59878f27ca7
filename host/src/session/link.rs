//! The link's loop: log in, hook, fill history, then send the outbox and
//! forward notifications until the connection ends; back off and start over.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use komlog_protocol::{Kind, TimeUuid};
use komlog_session::{Endpoint, Notification, Session, SessionConfig, SessionError};
use tokio::sync::{Notify, mpsc, watch};

use super::{Hook, LinkConfig, ServerBoard, WINDOW, backoff_delay};
use crate::impulses::Inbox;
use crate::model::{Sample, Value, now_us};
use crate::store::{Outbox, Queued, StoreError};

/// Outbox rows read at once.
const READ_BATCH: usize = 2048;
/// Acknowledged rows removed from the outbox in one transaction, at most.
const REMOVE_BATCH: usize = 1024;

type Reply = Pin<Box<dyn Future<Output = Result<(), SessionError>> + Send>>;

/// A message sent and not yet answered: its reply and the rows it carries.
struct InFlight {
    reply: Reply,
    rows: Vec<(i64, String, u64)>,
}

/// Why a connection ended.
enum End {
    Shutdown,
    Lost(String),
}

pub(super) async fn run(
    config: LinkConfig,
    outbox: Outbox,
    signal: Arc<Notify>,
    inbox: Inbox,
    board: ServerBoard,
    mut shutdown: watch::Receiver<bool>,
) {
    let session_config = Endpoint::parse(&config.url)
        .and_then(|endpoint| SessionConfig::new(endpoint, &config.username, config.key.clone()));
    let mut session_config = match session_config {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("server link not started: {e}");
            board.update(|s| {
                s.state = "stopped".into();
                s.last_error = Some(e.to_string());
            });
            return;
        }
    };
    session_config.reply_timeout = config.reply_timeout;
    session_config.ca_file = config.ca_file.clone();
    session_config.login_timeout = config.reply_timeout;
    // Failed attempts in a row; a successful login resets it.
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        board.update(|s| {
            s.state = "connecting".into();
            s.backoff_ms = None;
        });
        let login = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = Session::login(session_config.clone()) => r,
        };
        let reason = match login {
            Ok(mut session) => {
                failures = 0;
                board.update(|s| s.logins += 1);
                tracing::info!(url = %config.url, user = %config.username, "logged in to the server");
                let end = connected(
                    &config,
                    &mut session,
                    &outbox,
                    &signal,
                    &inbox,
                    &board,
                    &mut shutdown,
                )
                .await;
                session.close().await;
                match end {
                    End::Shutdown => break,
                    End::Lost(why) => why,
                }
            }
            Err(e) => format!("cannot log in: {e}"),
        };
        let delay = backoff_delay(failures, random());
        failures = failures.saturating_add(1);
        tracing::warn!(
            url = %config.url,
            retry_in_ms = delay.as_millis() as u64,
            "server link down: {reason}"
        );
        board.update(|s| {
            s.state = "backoff".into();
            s.backoff_ms = Some(delay.as_millis() as u64);
            s.last_error = Some(reason);
        });
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    board.update(|s| {
        s.state = "stopped".into();
        s.backoff_ms = None;
    });
}

/// Resolves once `shutdown` is true (the watch guard is not held across awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return now_us() as u64;
    }
    u64::from_le_bytes(b)
}

/// One connection: hooks, history, then the outbox and notifications.
async fn connected(
    config: &LinkConfig,
    session: &mut Session,
    outbox: &Outbox,
    signal: &Notify,
    inbox: &Inbox,
    board: &ServerBoard,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let Some(mut notes) = session.take_notifications() else {
        return End::Lost("no notification channel".into());
    };
    let prepared = tokio::select! {
        _ = stopped(shutdown) => return End::Shutdown,
        r = hook_and_fill(config, session, inbox, board) => r,
    };
    if let Err(e) = prepared {
        return End::Lost(e);
    }
    board.update(|s| {
        s.state = "connected".into();
        s.backoff_ms = None;
    });
    let mut link = Sender {
        outbox,
        inbox,
        board,
        cursor: None,
        buffered: VecDeque::new(),
        in_flight: VecDeque::new(),
        acked: Vec::new(),
        node: outbox.time_uuid_parts(),
    };
    let end = link.serve(session, &mut notes, signal, shutdown).await;
    // What was acknowledged leaves the outbox even when the connection dropped.
    if let Err(e) = link.flush_acked().await {
        tracing::error!("cannot remove acknowledged samples from the outbox: {e}");
    }
    end
}

/// Hook every uri and fetch the history its impulses need.
async fn hook_and_fill(
    config: &LinkConfig,
    session: &Session,
    inbox: &Inbox,
    board: &ServerBoard,
) -> Result<(), String> {
    let mut hooked = 0;
    for hook in &config.hooks {
        match session.hook(&hook.uri).await {
            Ok(_) => hooked += 1,
            Err(e @ (SessionError::Disconnected { .. } | SessionError::Timeout { .. })) => {
                return Err(format!("hooking {}: {e}", hook.uri));
            }
            Err(e) => {
                tracing::warn!(uri = %hook.uri, "hook refused: {e}");
                board.update(|s| s.last_error = Some(format!("hook {}: {e}", hook.uri)));
                continue;
            }
        }
        match fetch_history(session, hook).await {
            Ok(samples) if samples.is_empty() => {}
            Ok(samples) => {
                let n = samples.len() as u64;
                forward(inbox, samples, true).await;
                board.update(|s| s.history += n);
            }
            Err(e @ (SessionError::Disconnected { .. } | SessionError::Timeout { .. })) => {
                return Err(format!("history of {}: {e}", hook.uri));
            }
            // 4404: nothing there yet.
            Err(e) => tracing::debug!(uri = %hook.uri, "no history: {e}"),
        }
    }
    board.update(|s| s.hooked = hooked);
    tracing::info!(hooked, "uris hooked and history fetched");
    Ok(())
}

/// What the windows of a hooked uri need: every sample of the last `past_delta`,
/// the last `past_count`, or (neither set) the latest one.
async fn fetch_history(session: &Session, hook: &Hook) -> Result<Vec<Sample>, SessionError> {
    let mut rows = Vec::new();
    let mut kind = None;
    let delta = hook.reqs.past_delta_us.filter(|d| *d > 0);
    if let Some(delta) = delta {
        let from = now_us().saturating_sub(i64::try_from(delta).unwrap_or(i64::MAX));
        let start = TimeUuid::lowest_at(from.max(0)).unwrap_or(TimeUuid::MIN);
        let (k, r) = session
            .request_history(&hook.uri, Some(start), Some(TimeUuid::MAX), None)
            .await?;
        kind = Some(k);
        rows.extend(r);
    }
    let count = match (delta, hook.reqs.past_count) {
        (_, Some(c)) if c > 0 => Some(u64::from(c)),
        (None, _) => Some(1),
        _ => None,
    };
    if let Some(count) = count {
        let (k, r) = session
            .request_history(&hook.uri, None, None, Some(count))
            .await?;
        kind = Some(k);
        rows.extend(r);
    }
    let Some(kind) = kind else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(rows.len());
    for (t, content) in rows {
        match sample_of(&hook.uri, t, kind, content) {
            Some(s) => out.push(s),
            None => tracing::warn!(uri = %hook.uri, "history row with an unreadable value skipped"),
        }
    }
    out.sort_by_key(|s| s.ts);
    out.dedup_by_key(|s| s.ts);
    Ok(out)
}

fn sample_of(uri: &str, t: TimeUuid, kind: Kind, content: String) -> Option<Sample> {
    let value = match kind {
        Kind::Datasource => Value::Datasource(content),
        Kind::Datapoint => Value::Datapoint(content.trim().parse::<f64>().ok()?),
    };
    Some(Sample {
        uri: uri.to_owned(),
        ts: t.micros(),
        value,
    })
}

fn samples_of(n: Notification) -> Vec<Sample> {
    let t = n.t;
    n.items
        .into_iter()
        .filter_map(|item| {
            let uri = item.uri.to_string();
            let s = sample_of(&uri, t, item.kind, item.content);
            if s.is_none() {
                tracing::warn!(uri, "notified sample with an unreadable value skipped");
            }
            s
        })
        .collect()
}

/// Hand samples from the server to the dispatcher: history (stored, fires
/// nothing) or notifications (stored and fired).
async fn forward(inbox: &Inbox, samples: Vec<Sample>, history: bool) {
    let samples = if history {
        samples
    } else {
        match inbox.try_remote(samples) {
            Ok(()) => return,
            Err(back) => back,
        }
    };
    let inbox = inbox.clone();
    let sent = tokio::task::spawn_blocking(move || {
        if history {
            inbox.history(samples)
        } else {
            inbox.remote(samples)
        }
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("the dispatcher has stopped; samples from the server dropped");
    }
}

/// The sending side of one connection.
struct Sender<'a> {
    outbox: &'a Outbox,
    inbox: &'a Inbox,
    board: &'a ServerBoard,
    /// The last outbox key read.
    cursor: Option<(i64, String)>,
    /// Rows read and not yet sent, in key order.
    buffered: VecDeque<Queued>,
    in_flight: VecDeque<InFlight>,
    /// Acknowledged rows not yet removed.
    acked: Vec<(i64, String, u64)>,
    node: (u16, u64),
}

impl Sender<'_> {
    async fn serve(
        &mut self,
        session: &Session,
        notes: &mut mpsc::Receiver<Notification>,
        signal: &Notify,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        loop {
            if let Err(e) = self.fill(session).await {
                return End::Lost(e);
            }
            if !self.acked.is_empty()
                && (self.in_flight.is_empty() || self.acked.len() >= REMOVE_BATCH)
                && let Err(e) = self.flush_acked().await
            {
                tracing::error!("cannot remove acknowledged samples from the outbox: {e}");
            }
            let window_full = self.in_flight.len() >= WINDOW;
            tokio::select! {
                biased;
                _ = stopped(shutdown) => return End::Shutdown,
                r = next_reply(&mut self.in_flight) => {
                    let Some((result, rows)) = r else { continue };
                    let n = rows.len() as u64;
                    match result {
                        Ok(()) => {
                            self.board.update(|s| s.acked += n);
                            self.acked.extend(rows);
                        }
                        Err(SessionError::Refused { action, response }) => {
                            tracing::error!(
                                samples = n,
                                first = ?rows.first().map(|r| (&r.1, r.0)),
                                "the server refused {action} ({}: {}); the samples are dropped from the outbox",
                                response.status,
                                response.reason.as_deref().unwrap_or("no reason"),
                            );
                            self.board.update(|s| {
                                s.refused += n;
                                s.last_error = Some(format!(
                                    "server refused {action}: {}",
                                    response.reason.as_deref().unwrap_or("no reason")
                                ));
                            });
                            self.acked.extend(rows);
                        }
                        Err(e) => return End::Lost(e.to_string()),
                    }
                }
                n = notes.recv() => match n {
                    Some(n) => {
                        let samples = samples_of(n);
                        let count = samples.len() as u64;
                        forward(self.inbox, samples, false).await;
                        self.board.update(|s| s.notified += count);
                    }
                    None => {
                        let code = session.disconnected().flatten();
                        return End::Lost(match code {
                            Some(4403) => "the server closed the session with 4403 (access denied): logging in again".into(),
                            Some(c) => format!("the server closed the connection with code {c}"),
                            None => "the connection was lost".into(),
                        });
                    }
                },
                _ = signal.notified(), if !window_full => {}
            }
        }
    }

    /// Send outbox rows until the window is full or the outbox is drained.
    async fn fill(&mut self, session: &Session) -> Result<(), String> {
        let mut restarted = false;
        while self.in_flight.len() < WINDOW {
            if self.buffered.is_empty() {
                let rows = self.read().await.map_err(|e| e.to_string())?;
                if rows.is_empty() {
                    // Everything after the cursor is sent. Once nothing is in
                    // flight, start again from the beginning: rows written with
                    // an older time than the cursor, or rewritten after being
                    // sent, are still there.
                    if restarted
                        || self.cursor.is_none()
                        || !self.in_flight.is_empty()
                        || !self.acked.is_empty()
                    {
                        break;
                    }
                    self.cursor = None;
                    restarted = true;
                    continue;
                }
                if let Some(last) = rows.last() {
                    self.cursor = Some((last.sample.ts, last.sample.uri.clone()));
                }
                self.buffered.extend(rows);
            }
            let Some(ts) = self.buffered.front().map(|q| q.sample.ts) else {
                break;
            };
            let mut group = Vec::new();
            while self.buffered.front().is_some_and(|q| q.sample.ts == ts) {
                if let Some(q) = self.buffered.pop_front() {
                    group.push(q);
                }
            }
            self.send(session, ts, group).await?;
        }
        Ok(())
    }

    fn read(&self) -> impl Future<Output = Result<Vec<Queued>, StoreError>> + Send + 'static {
        let outbox = self.outbox.clone();
        let after = self.cursor.clone();
        read_outbox(outbox, after)
    }
}

async fn read_outbox(
    outbox: Outbox,
    after: Option<(i64, String)>,
) -> Result<Vec<Queued>, StoreError> {
    {
        tokio::task::spawn_blocking(move || {
            outbox.read(after.as_ref().map(|(t, u)| (*t, u.as_str())), READ_BATCH)
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Database {
                path: std::path::PathBuf::new(),
                op: "reading the outbox",
                reason: e.to_string(),
            })
        })
    }
}

impl Sender<'_> {
    /// Send the rows of one time as one message.
    async fn send(&mut self, session: &Session, ts: i64, group: Vec<Queued>) -> Result<(), String> {
        let (cs, node) = self.node;
        let Some(t) = TimeUuid::build(ts, cs, node) else {
            tracing::error!(
                ts,
                "a sample time out of the TimeUUID range; dropped from the outbox"
            );
            self.acked.extend(
                group
                    .into_iter()
                    .map(|q| (q.sample.ts, q.sample.uri, q.generation)),
            );
            return Ok(());
        };
        let mut samples = Vec::with_capacity(group.len());
        let mut rows = Vec::with_capacity(group.len());
        for q in group {
            let s = match &q.sample.value {
                Value::Datapoint(v) => komlog_session::Sample::datapoint(&q.sample.uri, t, *v),
                Value::Datasource(text) => {
                    komlog_session::Sample::datasource(&q.sample.uri, t, text)
                }
            };
            match s {
                Ok(s) => samples.push(s),
                Err(e) => {
                    tracing::error!(uri = %q.sample.uri, ts, "cannot send a queued sample: {e}; dropped from the outbox");
                }
            }
            rows.push((q.sample.ts, q.sample.uri, q.generation));
        }
        if samples.is_empty() {
            self.acked.extend(rows);
            return Ok(());
        }
        let n = samples.len() as u64;
        let pending = session
            .submit_samples(t, &samples)
            .await
            .map_err(|e| e.to_string())?;
        self.board.update(|s| s.sent += n);
        self.in_flight.push_back(InFlight {
            reply: Box::pin(pending.wait()),
            rows,
        });
        Ok(())
    }

    async fn flush_acked(&mut self) -> Result<(), StoreError> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.acked);
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || outbox.remove(&rows))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Database {
                    path: std::path::PathBuf::new(),
                    op: "removing acknowledged samples",
                    reason: e.to_string(),
                })
            })
    }
}

/// The reply to the oldest message in flight (replies come in order); pending
/// forever when nothing is in flight.
async fn next_reply(
    in_flight: &mut VecDeque<InFlight>,
) -> Option<(Result<(), SessionError>, Vec<(i64, String, u64)>)> {
    let Some(front) = in_flight.front_mut() else {
        return std::future::pending().await;
    };
    let result = (&mut front.reply).await;
    let done = in_flight.pop_front()?;
    Some((result, done.rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notified_values_become_samples() {
        let t = TimeUuid::build(1_700_000_000_000_001, 5, 7).unwrap();
        let s = sample_of("alice:a.b", t, Kind::Datapoint, "1E+2".into()).unwrap();
        assert_eq!(s.ts, 1_700_000_000_000_001);
        assert_eq!(s.value, Value::Datapoint(100.0));
        assert_eq!(s.uri, "alice:a.b");
        assert!(sample_of("a", t, Kind::Datapoint, "x".into()).is_none());
        let d = sample_of("a", t, Kind::Datasource, " x ".into()).unwrap();
        assert_eq!(d.value, Value::Datasource(" x ".into()));
    }
}
