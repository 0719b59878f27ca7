//! The link's loop: log in, hook, fill history, then send the outbox, forward
//! notifications and follow changes to the hooked uris until the connection
//! ends; move to the next server url, or back off, and start over.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use komlog_protocol::{Kind, Status, TimeUuid};
use komlog_session::{Endpoint, HookOutcome, Notification, Session, SessionConfig, SessionError};
use tokio::sync::{Notify, mpsc, watch};

use super::{Hook, LinkConfig, ServerBoard, Supplies, WINDOW, backoff_delay};
use crate::impulses::Inbox;
use crate::model::{Sample, Value, now_us};
use crate::store::{Cursor, Outbox, Queued, StoreError};

/// Outbox rows read at once.
const READ_BATCH: usize = 2048;
/// Acknowledged rows removed from the outbox in one transaction, at most.
const REMOVE_BATCH: usize = 1024;
/// How long a change to the hooks waits for the rest of its reload before it
/// is applied, so an impulse renamed or moved within one reload does not
/// unhook and hook its uri again.
const HOOKS_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

type Reply = Pin<Box<dyn Future<Output = Result<(), SessionError>> + Send>>;

/// A message sent and not yet answered: its reply and what it carries.
struct InFlight {
    reply: Reply,
    carries: Carries,
}

/// What a message in flight carries.
enum Carries {
    /// Samples of the outbox.
    Write {
        /// Their outbox rows.
        rows: Vec<(i64, String, u64)>,
        /// Those of them that are datasources declaring what they supply.
        declaring: Vec<String>,
    },
    /// A `send_ds_info`: the datasource and the list sent.
    Info { uri: String, list: Vec<String> },
}

/// Why a connection ended.
enum End {
    Shutdown,
    Lost(String),
}

/// The close code of a server that is stopping (or shedding connections): the
/// link reconnects at once, to the next url, without backing off.
const CLOSE_UNAVAILABLE: u16 = 4503;

/// The session settings of a link's configuration for the server at `url`.
fn session_config(config: &LinkConfig, url: &str) -> Result<SessionConfig, SessionError> {
    let mut session_config = Endpoint::parse(url)
        .and_then(|endpoint| SessionConfig::new(endpoint, &config.username, config.key.clone()))?;
    session_config.reply_timeout = config.reply_timeout;
    session_config.ca_file = config.ca_file.clone();
    session_config.login_timeout = config.reply_timeout;
    Ok(session_config)
}

/// Log in once and send the whole outbox, waiting for every answer, within
/// `within`: what a one-shot `komlogd -u` does when no agent runs. With
/// several urls each is tried in turn until one logs in. Rows acknowledged (or
/// refused) are removed; the rest stay for the next run.
pub(super) async fn deliver(
    config: LinkConfig,
    outbox: Outbox,
    inbox: Inbox,
    within: std::time::Duration,
) -> Delivery {
    let board = ServerBoard::new(&config.urls, outbox.clone());
    let deadline = tokio::time::Instant::now() + within;
    let several = config.urls.len() > 1;
    // Why each url tried could not be used (with one url, without its name).
    let mut failed: Vec<String> = Vec::new();
    let mut fail = |url: &str, why: String| {
        failed.push(if several {
            format!("{url}: {why}")
        } else {
            why
        });
    };
    let mut error = None;
    let mut logged_in = false;
    for url in &config.urls {
        board.update(|s| s.url.clone_from(url));
        let mut session_config = match session_config(&config, url) {
            Ok(c) => c,
            Err(e) => {
                fail(url, e.to_string());
                continue;
            }
        };
        session_config.login_timeout = session_config.login_timeout.min(within);
        session_config.reply_timeout = session_config.reply_timeout.min(within);
        let session = match tokio::time::timeout_at(deadline, Session::login(session_config)).await
        {
            Err(_) => {
                fail(url, format!("no login within {} s", within.as_secs_f64()));
                break;
            }
            Ok(Err(e)) => {
                fail(url, format!("cannot log in: {e}"));
                continue;
            }
            Ok(Ok(session)) => session,
        };
        logged_in = true;
        let mut sender = Sender::new(&outbox, &inbox, &board, &config.supplies);
        let drained = tokio::time::timeout_at(deadline, sender.drain(&session)).await;
        // What was answered leaves the outbox whatever happened.
        let flushed = sender.flush_acked().await;
        session.close().await;
        error = match (drained, flushed) {
            (Err(_), _) => Some(format!(
                "not every sample was answered within {} s",
                within.as_secs_f64()
            )),
            (Ok(Err(e)), _) => Some(e),
            (Ok(Ok(())), Err(e)) => Some(format!(
                "cannot remove acknowledged samples from the outbox: {e}"
            )),
            (Ok(Ok(())), Ok(())) => None,
        };
        break;
    }
    if !logged_in {
        error = Some(if failed.is_empty() {
            "no server url".to_owned()
        } else {
            failed.join("; ")
        });
    }
    let status = board.snapshot();
    Delivery {
        url: status.url,
        acked: status.acked,
        refused: status.refused,
        left: status.outbox,
        refusal: status.last_error,
        error,
    }
}

/// What [`deliver`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The server that got the samples (or the last one tried).
    pub url: String,
    /// Samples the server acknowledged.
    pub acked: u64,
    /// Samples the server refused (removed from the outbox).
    pub refused: u64,
    /// Samples still in the outbox.
    pub left: u64,
    /// The last refusal, if any.
    pub refusal: Option<String>,
    /// Why the outbox could not be sent whole, if it could not.
    pub error: Option<String>,
}

/// The link's loop over the configured urls (see the module documentation of
/// [`super`] for the order and the backoff).
pub(super) async fn run(
    config: LinkConfig,
    outbox: Outbox,
    signal: Arc<Notify>,
    inbox: Inbox,
    board: ServerBoard,
    mut shutdown: watch::Receiver<bool>,
) {
    let session_configs: Result<Vec<SessionConfig>, SessionError> = config
        .urls
        .iter()
        .map(|url| session_config(&config, url))
        .collect();
    let session_configs = match session_configs {
        Ok(c) if !c.is_empty() => c,
        failed => {
            let e = match failed {
                Err(e) => e.to_string(),
                Ok(_) => "no server url".to_owned(),
            };
            tracing::error!("server link not started: {e}");
            board.update(|s| {
                s.state = "stopped".into();
                s.error(e);
            });
            return;
        }
    };
    let count = session_configs.len();
    let several = count > 1;
    let mut hooks = Hooks {
        wanted: config.hooks.clone(),
        open: true,
        held: Vec::new(),
    };
    // Failed rounds in a row (with one url, failed attempts); a successful
    // login resets it.
    let mut failures: u32 = 0;
    // The url to try next.
    let mut next: usize = 0;
    // Urls tried in this round without a login: a round ends, and the link
    // backs off, when every url has been tried.
    let mut tried: usize = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let at = next;
        next = (at + 1) % count;
        let url = &config.urls[at];
        board.update(|s| {
            s.state = "connecting".into();
            s.url.clone_from(url);
            s.backoff_ms = None;
            s.connected_since_ts = None;
        });
        let login = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = Session::login(session_configs[at].clone()) => r,
        };
        let (reason, at_once) = match login {
            Ok(mut session) => {
                failures = 0;
                board.update(|s| s.logins += 1);
                tracing::info!(url = %url, user = %config.username, "logged in to the server at {url}");
                let ends = Ends {
                    outbox: &outbox,
                    signal: &signal,
                    inbox: &inbox,
                    board: &board,
                    supplies: &config.supplies,
                };
                let end = connected(&mut hooks, &mut session, &ends, &mut shutdown).await;
                let code = session.disconnected().flatten();
                let established = board.lock().connected_since_ts.is_some();
                session.close().await;
                match end {
                    End::Shutdown => break,
                    End::Lost(why) if established => {
                        // The server just lost is the first tried of the new round.
                        tried = 1;
                        // Moving on after a connection that worked needs no
                        // pause: the next server is another one, or (with one
                        // url) the server said it is going away.
                        (why, several || code == Some(CLOSE_UNAVAILABLE))
                    }
                    // Lost before it was up (hooking, history): a failed
                    // attempt, so a server that keeps doing it is not
                    // tried in a loop.
                    End::Lost(why) => {
                        tried += 1;
                        (why, tried < count)
                    }
                }
            }
            Err(e) => {
                tried += 1;
                (format!("cannot log in: {e}"), tried < count)
            }
        };
        let reason = if several {
            format!("{url}: {reason}")
        } else {
            reason
        };
        if at_once {
            tracing::warn!(
                url = %url,
                next = %config.urls[next],
                "server link down: {reason}; trying {} at once",
                config.urls[next]
            );
            board.update(|s| s.error(reason));
            continue;
        }
        tried = 0;
        let delay = backoff_delay(failures, random());
        failures = failures.saturating_add(1);
        tracing::warn!(
            url = %url,
            retry_in_ms = delay.as_millis() as u64,
            "server link down: {reason}"
        );
        board.update(|s| {
            s.state = "backoff".into();
            s.backoff_ms = Some(delay.as_millis() as u64);
            s.connected_since_ts = None;
            s.error(reason);
        });
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    board.update(|s| {
        s.state = "stopped".into();
        s.backoff_ms = None;
        s.connected_since_ts = None;
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

/// What a connection works with on the agent's side.
struct Ends<'a> {
    outbox: &'a Outbox,
    /// Woken by the dispatcher when it puts samples in the outbox.
    signal: &'a Notify,
    inbox: &'a Inbox,
    board: &'a ServerBoard,
    supplies: &'a Supplies,
}

/// One connection: hooks, history, then the outbox, notifications and changes
/// to the hooks.
async fn connected(
    hooks: &mut Hooks,
    session: &mut Session,
    ends: &Ends<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let Ends {
        outbox,
        signal,
        inbox,
        board,
        supplies,
    } = *ends;
    let Some(mut notes) = session.take_notifications() else {
        return End::Lost("no notification channel".into());
    };
    // Hooks belong to the server's session: a new login holds none.
    hooks.held.clear();
    let prepared = tokio::select! {
        _ = stopped(shutdown) => return End::Shutdown,
        r = hooks.sync(session, inbox, board, Sync::Login) => r,
    };
    if let Err(e) = prepared {
        return End::Lost(e);
    }
    board.update(|s| {
        s.state = "connected".into();
        s.backoff_ms = None;
        s.connected_since_ts = Some(now_us());
    });
    let mut link = Sender::new(outbox, inbox, board, supplies);
    let end = link
        .serve(session, &mut notes, hooks, signal, shutdown)
        .await;
    // What was acknowledged leaves the outbox even when the connection dropped.
    if let Err(e) = link.flush_acked().await {
        tracing::error!("cannot remove acknowledged samples from the outbox: {e}");
    }
    end
}

/// When [`Hooks::sync`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Right after a login: the session holds no hook yet.
    Login,
    /// While connected, after the impulses changed.
    Change,
}

/// The uris the impulses want hooked, as the agent keeps them current, and the
/// ones this connection's session holds.
struct Hooks {
    wanted: watch::Receiver<Vec<Hook>>,
    /// False once the agent's side of the channel is gone (it is stopping).
    open: bool,
    /// Hooked in this session (active or pending at the server), with the
    /// data requirements their history was fetched for.
    held: Vec<Hook>,
}

impl Hooks {
    /// Bring the session's hooks to the wanted set: unhook the uris no impulse
    /// subscribes to any more, hook the new ones and fetch the history their
    /// impulses need (again for a held uri whose requirements changed). After a
    /// login everything wanted is new. A lost connection is an error; a hook or
    /// unhook the server refuses is logged and the others go on (a refused hook
    /// is tried again at the next change or login).
    async fn sync(
        &mut self,
        session: &Session,
        inbox: &Inbox,
        board: &ServerBoard,
        when: Sync,
    ) -> Result<(), String> {
        let wanted = self.wanted.borrow_and_update().clone();
        // Unhooks first: `me:x` and `x` are one metric at the server, so a uri
        // rewritten that way must be hooked after the old text is unhooked.
        let gone: Vec<String> = self
            .held
            .iter()
            .filter(|h| !wanted.iter().any(|w| w.uri == h.uri))
            .map(|h| h.uri.clone())
            .collect();
        for uri in gone {
            self.held.retain(|h| h.uri != uri);
            match session.unhook(&uri).await {
                Ok(()) => {
                    tracing::info!(uri = %uri, "uri unhooked: no impulse subscribes to it any more")
                }
                Err(e) if e.is_connection_lost() => {
                    return Err(format!("unhooking {uri}: {e}"));
                }
                Err(e) => {
                    tracing::error!(uri = %uri, "unhook refused: {e}");
                    board.update(|s| s.error(format!("unhook {uri}: {e}")));
                }
            }
        }
        let mut fetched = 0;
        for hook in &wanted {
            match self.held.iter_mut().find(|h| h.uri == hook.uri) {
                Some(held) if held.reqs == hook.reqs => continue,
                Some(held) => held.reqs = hook.reqs,
                None => {
                    if !hook_one(session, board, hook, when).await? {
                        continue;
                    }
                    self.held.push(hook.clone());
                }
            }
            fill(session, inbox, board, hook).await?;
            fetched += 1;
        }
        let hooked = self.held.len() as u64;
        board.update(|s| {
            s.hooked = hooked;
            // A refusal stands for a uri still wanted and not hooked since,
            // naming the impulses subscribed to it now.
            s.hooks_refused.retain_mut(|r| {
                let Some(hook) = wanted.iter().find(|w| w.uri == r.uri) else {
                    return false;
                };
                r.impulses.clone_from(&hook.impulses);
                true
            });
        });
        match when {
            Sync::Login => tracing::info!(hooked, "uris hooked and history fetched"),
            Sync::Change if fetched > 0 => {
                tracing::debug!(hooked, fetched, "history fetched for the changed hooks")
            }
            Sync::Change => {}
        }
        Ok(())
    }
}

/// Hook one uri: true when the server holds the hook (4200, or 4404 pending
/// until the uri exists), false when it refused it.
async fn hook_one(
    session: &Session,
    board: &ServerBoard,
    hook: &Hook,
    when: Sync,
) -> Result<bool, String> {
    let state = match session.hook(&hook.uri).await {
        Ok(HookOutcome::Hooked) => "active",
        Ok(HookOutcome::Pending) => "pending: the uri does not exist yet",
        Err(e) if e.is_connection_lost() => {
            return Err(format!("hooking {}: {e}", hook.uri));
        }
        Err(e) => {
            tracing::warn!(uri = %hook.uri, impulses = ?hook.impulses, "hook refused: {e}");
            board.update(|s| {
                s.error(format!("hook {}: {e}", hook.uri));
                let refusal = super::HookRefusal {
                    uri: hook.uri.clone(),
                    reason: e.to_string(),
                    ts: now_us(),
                    impulses: hook.impulses.clone(),
                };
                match s.hooks_refused.iter_mut().find(|r| r.uri == hook.uri) {
                    Some(r) => *r = refusal,
                    None => s.hooks_refused.push(refusal),
                }
            });
            return Ok(false);
        }
    };
    board.update(|s| s.hooks_refused.retain(|r| r.uri != hook.uri));
    match when {
        Sync::Login => tracing::debug!(uri = %hook.uri, "uri hooked ({state})"),
        Sync::Change => tracing::info!(uri = %hook.uri, "uri hooked ({state})"),
    }
    Ok(true)
}

/// Fetch the history a hooked uri's impulses need and hand it to the store.
async fn fill(
    session: &Session,
    inbox: &Inbox,
    board: &ServerBoard,
    hook: &Hook,
) -> Result<(), String> {
    match fetch_history(session, hook).await {
        Ok(samples) if samples.is_empty() => {}
        Ok(samples) => {
            let n = samples.len() as u64;
            forward(inbox, samples, None).await;
            board.update(|s| s.history += n);
        }
        Err(e) if e.is_connection_lost() => {
            return Err(format!("history of {}: {e}", hook.uri));
        }
        // 4404: nothing there yet.
        Err(e) => tracing::debug!(uri = %hook.uri, "no history: {e}"),
    }
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

/// Hand samples from the server to the dispatcher: history (no notification:
/// stored, fires nothing) or the samples of a notification (stored and fired;
/// what the impulses write in answer carries its `seq`).
async fn forward(inbox: &Inbox, samples: Vec<Sample>, notification: Option<TimeUuid>) {
    let history = notification.is_none();
    let seq = notification.map(|t| *t.as_bytes());
    let samples = if history {
        samples
    } else {
        match inbox.try_remote(samples, seq) {
            Ok(()) => return,
            Err(back) => back,
        }
    };
    let inbox = inbox.clone();
    let sent = tokio::task::spawn_blocking(move || {
        if history {
            inbox.history(samples)
        } else {
            inbox.remote(samples, seq)
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
    /// Where the next outbox read starts: after the last row read, or further
    /// back when a commit queued rows behind it.
    from: ReadFrom,
    /// Rows read and not yet sent, in key order; the rows of a time are
    /// always read together.
    buffered: VecDeque<Queued>,
    /// Rows sent on this connection that are still in the outbox (in flight,
    /// or acknowledged and not yet removed), by time: a read skips them.
    held: BTreeMap<i64, Vec<(String, u64)>>,
    in_flight: VecDeque<InFlight>,
    /// Acknowledged rows not yet removed.
    acked: Vec<(i64, String, u64)>,
    node: (u16, u64),
    /// What the datasources declare they supply.
    supplies: &'a Supplies,
    /// The lists sent on this connection (and acknowledged), by datasource.
    infos_sent: HashMap<String, Vec<String>>,
    /// Lists to send: a write to the datasource was acknowledged and its list
    /// differs from the one sent.
    infos_due: BTreeMap<String, Vec<String>>,
}

impl<'a> Sender<'a> {
    fn new(
        outbox: &'a Outbox,
        inbox: &'a Inbox,
        board: &'a ServerBoard,
        supplies: &'a Supplies,
    ) -> Sender<'a> {
        Sender {
            outbox,
            inbox,
            board,
            from: ReadFrom::Start,
            buffered: VecDeque::new(),
            held: BTreeMap::new(),
            in_flight: VecDeque::new(),
            acked: Vec::new(),
            node: outbox.time_uuid_parts(),
            supplies,
            infos_sent: HashMap::new(),
            infos_due: BTreeMap::new(),
        }
    }

    async fn serve(
        &mut self,
        session: &Session,
        notes: &mut mpsc::Receiver<Notification>,
        hooks: &mut Hooks,
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
                    let Some((result, carries)) = r else { continue };
                    if let Err(e) = self.answered(result, carries) {
                        return End::Lost(e);
                    }
                }
                n = notes.recv() => match n {
                    Some(n) => {
                        let seq = n.seq;
                        let samples = samples_of(n);
                        let count = samples.len() as u64;
                        forward(self.inbox, samples, Some(seq)).await;
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
                changed = hooks.wanted.changed(), if hooks.open => {
                    if changed.is_err() {
                        hooks.open = false;
                        continue;
                    }
                    // Notifications wait meanwhile, as at login, so a new
                    // impulse's first fire already has its history.
                    let synced = tokio::select! {
                        _ = stopped(shutdown) => return End::Shutdown,
                        r = async {
                            tokio::time::sleep(HOOKS_SETTLE).await;
                            hooks.sync(session, self.inbox, self.board, Sync::Change).await
                        } => r,
                    };
                    if let Err(e) = synced {
                        return End::Lost(e);
                    }
                }
                _ = signal.notified(), if !window_full => {}
            }
        }
    }

    /// The server answered a message: acknowledged rows are removed from the
    /// outbox (in the next flush), refused ones too (sending them again would
    /// not change the answer), and a lost connection ends this one.
    fn answered(
        &mut self,
        result: Result<(), SessionError>,
        carries: Carries,
    ) -> Result<(), String> {
        let (rows, declaring) = match carries {
            Carries::Write { rows, declaring } => (rows, declaring),
            Carries::Info { uri, list } => {
                return self
                    .info_answered(&uri, list, result)
                    .map_err(|e| e.to_string());
            }
        };
        let n = rows.len() as u64;
        match result {
            Ok(()) => {
                self.board.update(|s| s.acked += n);
                self.acked.extend(rows);
                self.written(declaring);
            }
            // 4501 and 4503 are the server's trouble, not the samples': they
            // stay in the outbox, and the link starts again (the next server)
            // and sends them again, with the same TimeUUIDs.
            Err(SessionError::Refused { action, response })
                if response.status == Status::EXECUTION_ERROR
                    || response.status == Status::UNAVAILABLE =>
            {
                return Err(format!(
                    "the server could not take {action} ({}: {}); the samples stay in the outbox",
                    response.status,
                    response.reason.as_deref().unwrap_or("no reason"),
                ));
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
                    s.error(format!(
                        "server refused {action}: {}",
                        response.reason.as_deref().unwrap_or("no reason")
                    ));
                });
                self.acked.extend(rows);
            }
            Err(e) => return Err(e.to_string()),
        }
        Ok(())
    }

    /// Send the outbox until it is empty: every row sent and answered, the
    /// answered ones removed. For a one-shot upload; the caller bounds it in
    /// time.
    async fn drain(&mut self, session: &Session) -> Result<(), String> {
        loop {
            self.fill(session).await?;
            if self.in_flight.is_empty() {
                // Nothing more to send: remove what was answered and look once
                // more (a removal that failed reads the outbox again).
                self.flush_acked().await.map_err(|e| e.to_string())?;
                self.fill(session).await?;
                if self.in_flight.is_empty() {
                    return Ok(());
                }
            }
            if let Some((result, carries)) = next_reply(&mut self.in_flight).await {
                self.answered(result, carries)?;
            }
        }
    }

    /// Send the datasource lists due, then outbox rows, until the window is
    /// full or nothing is left.
    async fn fill(&mut self, session: &Session) -> Result<(), String> {
        while self.in_flight.len() < WINDOW {
            let Some((uri, list)) = self.infos_due.pop_first() else {
                break;
            };
            self.send_info(session, uri, list).await?;
        }
        while self.in_flight.len() < WINDOW {
            if let Some(low) = self.outbox.take_low_water() {
                self.rewind(low);
            }
            if self.buffered.is_empty() {
                let rows = self.read().await.map_err(|e| e.to_string())?;
                let Some(last) = rows.last() else {
                    break;
                };
                self.from = ReadFrom::After(last.sample.ts, last.sample.uri.clone());
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

    /// A commit queued rows at `low` or later: read again from there when the
    /// reads have passed it (the rows read and not sent are read again).
    fn rewind(&mut self, low: i64) {
        let passed = match &self.from {
            ReadFrom::Start => false,
            ReadFrom::At(ts) => *ts > low,
            ReadFrom::After(ts, _) => *ts >= low,
        };
        if !passed {
            return;
        }
        let low = self.buffered.front().map_or(low, |q| q.sample.ts.min(low));
        self.buffered.clear();
        self.from = ReadFrom::At(low);
    }

    fn read(&self) -> impl Future<Output = Result<Vec<Queued>, StoreError>> + Send + 'static {
        let outbox = self.outbox.clone();
        let from = self.from.clone();
        // Rows read before are behind the cursor: only the held rows from its
        // time on can be met (after a rewind, or at the cursor's own time).
        let first = match &from {
            ReadFrom::Start => i64::MIN,
            ReadFrom::At(ts) | ReadFrom::After(ts, _) => *ts,
        };
        let held: HashMap<i64, Vec<(String, u64)>> = self
            .held
            .range(first..)
            .map(|(ts, rows)| (*ts, rows.clone()))
            .collect();
        read_outbox(outbox, from, held)
    }

    /// `rows` (sent on this connection) are still in the outbox: reads skip them.
    fn hold(&mut self, rows: &[(i64, String, u64)]) {
        for (ts, uri, generation) in rows {
            self.held
                .entry(*ts)
                .or_default()
                .push((uri.clone(), *generation));
        }
    }

    /// `rows` left the outbox (or were given up on).
    fn release(&mut self, rows: &[(i64, String, u64)]) {
        for (ts, uri, generation) in rows {
            if let Some(at) = self.held.get_mut(ts) {
                at.retain(|(u, g)| !(u == uri && g == generation));
                if at.is_empty() {
                    self.held.remove(ts);
                }
            }
        }
    }
}

/// Where an outbox read starts (an owned [`Cursor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadFrom {
    Start,
    At(i64),
    After(i64, String),
}

impl ReadFrom {
    fn cursor(&self) -> Cursor<'_> {
        match self {
            ReadFrom::Start => Cursor::Start,
            ReadFrom::At(ts) => Cursor::At(*ts),
            ReadFrom::After(ts, uri) => Cursor::After(*ts, uri),
        }
    }
}

async fn read_outbox(
    outbox: Outbox,
    from: ReadFrom,
    held: HashMap<i64, Vec<(String, u64)>>,
) -> Result<Vec<Queued>, StoreError> {
    {
        tokio::task::spawn_blocking(move || {
            outbox.read(from.cursor(), READ_BATCH, |ts, uri, generation| {
                held.get(&ts)
                    .is_some_and(|at| at.iter().any(|(u, g)| u == uri && *g == generation))
            })
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
    /// Send the rows of one time as one message. Its `irt` is the notification
    /// that one of them answers, if any. From here until they are removed from
    /// the outbox, the rows are held: reads skip them.
    async fn send(&mut self, session: &Session, ts: i64, group: Vec<Queued>) -> Result<(), String> {
        let held: Vec<(i64, String, u64)> = group
            .iter()
            .map(|q| (q.sample.ts, q.sample.uri.clone(), q.generation))
            .collect();
        self.hold(&held);
        let (cs, node) = self.node;
        let Some(t) = TimeUuid::build(ts, cs, node) else {
            tracing::error!(
                ts,
                "a sample time out of the TimeUUID range; dropped from the outbox"
            );
            self.acked.extend(held);
            return Ok(());
        };
        let answers = group
            .iter()
            .find_map(|q| q.answers)
            .and_then(TimeUuid::from_bytes);
        let mut samples = Vec::with_capacity(group.len());
        let mut rows = Vec::with_capacity(group.len());
        let mut declaring = Vec::new();
        let any_declared = !self.supplies.is_empty();
        for q in group {
            if any_declared
                && matches!(q.sample.value, Value::Datasource(_))
                && self.supplies.declares(&q.sample.uri)
            {
                declaring.push(q.sample.uri.clone());
            }
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
            .submit_samples_answering(t, &samples, answers)
            .await
            .map_err(|e| e.to_string())?;
        self.board.update(|s| {
            s.sent += n;
            s.messages += 1;
        });
        self.in_flight.push_back(InFlight {
            reply: Box::pin(pending.wait()),
            carries: Carries::Write { rows, declaring },
        });
        Ok(())
    }

    /// Writes to `datasources` were acknowledged: their lists are due where
    /// they differ from what this connection sent.
    fn written(&mut self, datasources: Vec<String>) {
        for uri in datasources {
            let Some(list) = self.supplies.of(&uri) else {
                continue;
            };
            if self.infos_sent.get(&uri) != Some(&list) {
                self.infos_due.insert(uri, list);
            }
        }
    }

    /// Send what the datasource `uri` supplies.
    async fn send_info(
        &mut self,
        session: &Session,
        uri: String,
        list: Vec<String>,
    ) -> Result<(), String> {
        let pending = match session.submit_ds_info(&uri, Some(&list)).await {
            Ok(p) => p,
            Err(e @ SessionError::Invalid(_)) => {
                tracing::error!(datasource = %uri, "cannot send what the datasource supplies: {e}");
                self.infos_sent.insert(uri, list);
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        self.in_flight.push_back(InFlight {
            reply: Box::pin(pending.wait()),
            carries: Carries::Info { uri, list },
        });
        Ok(())
    }

    /// The server answered a `send_ds_info`. A refusal is logged and not
    /// retried for the same list; a lost connection ends it.
    fn info_answered(
        &mut self,
        uri: &str,
        list: Vec<String>,
        result: Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        match result {
            Ok(()) => {
                tracing::debug!(datasource = uri, supplies = ?list, "the server has what the datasource supplies");
                self.board.update(|s| s.supplies_sent += 1);
            }
            Err(SessionError::Refused { response, .. }) => {
                tracing::error!(
                    datasource = uri,
                    "the server refused what the datasource supplies ({}: {})",
                    response.status,
                    response.reason.as_deref().unwrap_or("no reason"),
                );
                self.board.update(|s| {
                    s.error(format!(
                        "server refused send_ds_info for {uri}: {}",
                        response.reason.as_deref().unwrap_or("no reason")
                    ))
                });
            }
            Err(e) => return Err(e),
        }
        self.infos_sent.insert(uri.to_owned(), list);
        Ok(())
    }

    /// Remove the acknowledged rows from the outbox. When that fails, they
    /// stay there and the next read starts from the beginning, so they are
    /// sent again (a resend is harmless: same TimeUUID, same value).
    async fn flush_acked(&mut self) -> Result<(), StoreError> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.acked);
        let outbox = self.outbox.clone();
        let (rows, removed) = tokio::task::spawn_blocking(move || {
            let removed = outbox.remove(&rows);
            (rows, removed)
        })
        .await
        .unwrap_or_else(|e| {
            let failed = Err(StoreError::Database {
                path: std::path::PathBuf::new(),
                op: "removing acknowledged samples",
                reason: e.to_string(),
            });
            (Vec::new(), failed)
        });
        self.release(&rows);
        if removed.is_err() {
            self.held.clear();
            self.buffered.clear();
            self.from = ReadFrom::Start;
        }
        removed
    }
}

/// The reply to the oldest message in flight (replies come in order); pending
/// forever when nothing is in flight.
async fn next_reply(
    in_flight: &mut VecDeque<InFlight>,
) -> Option<(Result<(), SessionError>, Carries)> {
    let Some(front) = in_flight.front_mut() else {
        return std::future::pending().await;
    };
    let result = (&mut front.reply).await;
    let done = in_flight.pop_front()?;
    Some((result, done.carries))
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
