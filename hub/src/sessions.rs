//! Logins, their live websocket connections, hooks, notifications and kicks.
//!
//! **Owns:** the server-side sessions. A successful login creates one, with a
//! fresh `sid` and a random token that is the `kid` cookie. Hooks belong to the
//! session (spec §4.3 `hook_to_uri`): active hooks on existing metrics, and
//! pending hooks on uris that do not exist yet, which become active when a
//! write creates the uri. A session has at most one live connection; a second
//! websocket with the same cookie replaces the first (closed with 4503).
//!
//! **Notifications** (spec §4.4, §14.6): one write message gives each connected
//! session that hooked some of the written metrics one `send_multi_data` with
//! those items, naming each uri as that session's user sees it (`owner:uri`
//! for others' metrics). Metrics the write created for pending hooks are sent in
//! a separate notification after that one. Messages go through a bounded
//! outbox per connection; a connection whose outbox is full is closed with 4503
//! rather than letting memory grow.
//!
//! A session left without a connection for 15 minutes is forgotten (as on the
//! original server), so one-shot uploads do not accumulate.
//!
//! **Kicks:** [`Registry::kick`] forgets sessions, so their cookie no longer
//! opens a websocket, and closes their connections with 4403, which makes an
//! agent log in again; [`Registry::kick_agent`] does so for the sessions of one
//! agent key. [`Registry::drop_hooks`] ends the hooks a withdrawn share or a
//! removed user no longer allows.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use komlog_protocol::{
    Body, Kind, Message, MetricId, MultiData, MultiItem, Status, TimeUuid, Uri, Username,
};

use crate::store::SessionRecord;
use tokio::sync::{mpsc, watch};

/// How long a session without a connection is kept (the original server's
/// `SESSION_INACTIVITY_EXPIRATION_SECONDS`); its cookie stops working after that.
pub const SESSION_IDLE_EXPIRY: Duration = Duration::from_secs(900);

/// Why a connection is being closed: a websocket close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The close code (4403, 4503).
    pub code: u16,
    /// The close reason text.
    pub reason: String,
}

impl CloseReason {
    /// 4403 "Access denied".
    pub fn access_denied() -> CloseReason {
        CloseReason {
            code: Status::ACCESS_DENIED.code(),
            reason: "Access denied".into(),
        }
    }

    /// 1003: a text frame that is not JSON (the original server closed such a
    /// connection without answering).
    pub fn not_json() -> CloseReason {
        CloseReason {
            code: 1003,
            reason: "Malformed message: not JSON".into(),
        }
    }

    /// 4503 with a reason.
    pub fn unavailable(reason: &str) -> CloseReason {
        CloseReason {
            code: Status::UNAVAILABLE.code(),
            reason: reason.into(),
        }
    }
}

/// One frame for a connection's websocket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A message (written with `v` 1).
    Message(Message),
    /// A message already written as JSON: a refusal that echoes the refused
    /// frame's `v` ([`komlog_protocol::FrameError::reply_json`]).
    Json(serde_json::Value),
}

impl Outgoing {
    /// The text of the websocket frame.
    pub fn to_text(&self) -> String {
        match self {
            Outgoing::Message(m) => m.to_text(),
            Outgoing::Json(v) => v.to_string(),
        }
    }
}

impl From<Message> for Outgoing {
    fn from(m: Message) -> Outgoing {
        Outgoing::Message(m)
    }
}

/// A login just created.
#[derive(Debug, Clone)]
pub struct NewLogin {
    /// The cookie value.
    pub token: String,
    /// The session id.
    pub sid: String,
}

/// What a connection gets when it attaches to its session.
#[derive(Debug)]
pub struct Attached {
    /// This connection's number (to detach only itself).
    pub conn_id: u64,
    /// The session id.
    pub sid: String,
    /// The session's user.
    pub user: Username,
    /// Sender for this connection's own replies.
    pub outbox: mpsc::Sender<Outgoing>,
    /// Frames to write to the websocket, in order.
    pub outbox_rx: mpsc::Receiver<Outgoing>,
    /// Set when the connection must close.
    pub close_rx: watch::Receiver<Option<CloseReason>>,
}

/// A session as the admin interface lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionInfo {
    /// The session id.
    pub sid: String,
    /// The user.
    pub user: Username,
    /// The agent that logged in.
    pub agent_id: String,
    /// True while a websocket is connected.
    pub connected: bool,
    /// Active hooks, as `owner:uri`.
    pub hooks: Vec<String>,
    /// Pending hooks, as `owner:uri`.
    pub pending: Vec<String>,
}

struct Connection {
    id: u64,
    outbox: mpsc::Sender<Outgoing>,
    close: watch::Sender<Option<CloseReason>>,
}

impl Connection {
    fn close(&self, why: CloseReason) {
        // The receiver may be gone already: the connection is then closing anyway.
        let _ = self.close.send(Some(why));
    }

    /// Queue a message without waiting; a full outbox closes the connection.
    fn push(&self, sid: &str, msg: Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(msg.into()) {
            tracing::warn!(sid, "closing a connection that does not read its messages");
            self.close(CloseReason::unavailable("Too many undelivered messages"));
        }
    }
}

struct Login {
    /// When it was created or last lost its connection (for idle expiry).
    idle_since: Instant,
    sid: String,
    user: Username,
    agent_id: String,
    hooks: BTreeSet<MetricId>,
    pending: BTreeSet<MetricId>,
    conn: Option<Connection>,
}

/// A sample just written, for notifications.
#[derive(Debug, Clone)]
pub struct Written {
    /// The metric.
    pub id: MetricId,
    /// Its kind.
    pub kind: Kind,
    /// The value as stored.
    pub content: String,
}

/// How the sessions of one hub meet those of the other hubs of a cluster
/// ([`crate::cluster::ClusterSessions`]): logins are recorded where every hub
/// finds them, and kicks and changed shares reach every hub.
pub trait SessionSharing: Send + Sync {
    /// A login was created on this hub.
    fn login_created(&self, token: &str, sid: &str, user: &Username, agent_id: &str);
    /// A login made on another hub, by its cookie.
    fn find_login(&self, token: &str) -> Option<SessionRecord>;
    /// Sessions were kicked here; kick them everywhere. Returns the sids
    /// removed from the shared record.
    fn kicked(&self, user: &Username, sid: Option<&str>, agent_id: Option<&str>) -> Vec<String>;
    /// `owner`'s shares changed: every hub checks its hooks on `owner`'s metrics.
    fn shares_changed(&self, owner: &Username);
}

/// Every live session.
pub struct Registry {
    logins: Mutex<HashMap<String, Login>>,
    next_conn: AtomicU64,
    outbox_capacity: usize,
    idle_expiry: Duration,
    sharing: OnceLock<Arc<dyn SessionSharing>>,
}

impl Registry {
    /// An empty registry; each connection's outbox holds `outbox_capacity`
    /// messages, and a session left without a connection for `idle_expiry`
    /// ([`SESSION_IDLE_EXPIRY`] in a served hub) is forgotten.
    pub fn new(outbox_capacity: usize, idle_expiry: Duration) -> Registry {
        Registry {
            logins: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            outbox_capacity: outbox_capacity.max(1),
            idle_expiry,
            sharing: OnceLock::new(),
        }
    }

    /// Share sessions with the other hubs of a cluster (set once, at start).
    pub fn share_with(&self, sharing: Arc<dyn SessionSharing>) {
        if self.sharing.set(sharing).is_err() {
            tracing::warn!("sessions are already shared");
        }
    }

    /// Sessions with a live connection, and all sessions.
    pub fn counts(&self) -> (usize, usize) {
        let logins = self.lock();
        (
            logins.values().filter(|l| l.conn.is_some()).count(),
            logins.len(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Login>> {
        // Every update below leaves the map consistent, even if interrupted.
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Create a session for a successful login. Sessions left without a
    /// connection for the idle expiry are forgotten here.
    pub fn create_login(&self, user: &Username, agent_id: &str) -> NewLogin {
        let new = NewLogin {
            token: random_hex(32),
            sid: random_hex(16),
        };
        let mut logins = self.lock();
        let expiry = self.idle_expiry;
        logins.retain(|_, l| l.conn.is_some() || l.idle_since.elapsed() < expiry);
        logins.insert(
            new.token.clone(),
            Login {
                idle_since: Instant::now(),
                sid: new.sid.clone(),
                user: user.clone(),
                agent_id: agent_id.to_owned(),
                hooks: BTreeSet::new(),
                pending: BTreeSet::new(),
                conn: None,
            },
        );
        drop(logins);
        if let Some(sharing) = self.sharing.get() {
            sharing.login_created(&new.token, &new.sid, user, agent_id);
        }
        new
    }

    /// Attach a new connection to the session of `token`; `None` when the token
    /// opens no session (none, kicked, or left without a connection for the
    /// idle expiry). An older connection of the session is closed with 4503.
    pub fn attach(&self, token: &str) -> Option<Attached> {
        if !self.lock().contains_key(token)
            && let Some(found) = self.sharing.get().and_then(|s| s.find_login(token))
        {
            // A login made on another hub of the cluster.
            self.lock()
                .entry(token.to_owned())
                .or_insert_with(|| Login {
                    idle_since: Instant::now(),
                    sid: found.sid,
                    user: found.user,
                    agent_id: found.agent_id,
                    hooks: BTreeSet::new(),
                    pending: BTreeSet::new(),
                    conn: None,
                });
        }
        let mut logins = self.lock();
        let expired = logins
            .get(token)
            .is_some_and(|l| l.conn.is_none() && l.idle_since.elapsed() >= self.idle_expiry);
        if expired {
            logins.remove(token);
            return None;
        }
        let login = logins.get_mut(token)?;
        let (outbox, outbox_rx) = mpsc::channel(self.outbox_capacity);
        let (close, close_rx) = watch::channel(None);
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = login.conn.replace(Connection {
            id: conn_id,
            outbox: outbox.clone(),
            close,
        }) {
            old.close(CloseReason::unavailable("Replaced by a new connection"));
        }
        Some(Attached {
            conn_id,
            sid: login.sid.clone(),
            user: login.user.clone(),
            outbox,
            outbox_rx,
            close_rx,
        })
    }

    /// Forget connection `conn_id` of the session of `token` (if still current).
    pub fn detach(&self, token: &str, conn_id: u64) {
        if let Some(login) = self.lock().get_mut(token)
            && login.conn.as_ref().is_some_and(|c| c.id == conn_id)
        {
            login.conn = None;
            login.idle_since = Instant::now();
        }
    }

    /// True while the session of `token` exists (it was not kicked).
    pub fn is_valid(&self, token: &str) -> bool {
        self.lock().contains_key(token)
    }

    /// Add an active hook; false when the session is gone.
    pub fn hook(&self, token: &str, id: &MetricId) -> bool {
        self.update(token, |l| {
            l.pending.remove(id);
            l.hooks.insert(id.clone());
        })
    }

    /// Add a pending hook; false when the session is gone.
    pub fn hook_pending(&self, token: &str, id: &MetricId) -> bool {
        self.update(token, |l| {
            l.pending.insert(id.clone());
        })
    }

    /// Remove a hook, active or pending; false when the session is gone.
    pub fn unhook(&self, token: &str, id: &MetricId) -> bool {
        self.update(token, |l| {
            l.hooks.remove(id);
            l.pending.remove(id);
        })
    }

    fn update(&self, token: &str, f: impl FnOnce(&mut Login)) -> bool {
        match self.lock().get_mut(token) {
            Some(l) => {
                f(l);
                true
            }
            None => false,
        }
    }

    /// Notify every hooked session of one write message's samples at `t`;
    /// `created` are the metrics the write created (activating pending hooks).
    pub fn notify(&self, t: TimeUuid, written: &[Written], created: &[MetricId]) -> usize {
        let mut queued = 0;
        // The last value of a metric in the message wins, as in the store.
        let mut latest: Vec<&Written> = Vec::with_capacity(written.len());
        for w in written {
            match latest.iter_mut().find(|x| x.id == w.id) {
                Some(slot) => *slot = w,
                None => latest.push(w),
            }
        }
        let mut logins = self.lock();
        for login in logins.values_mut() {
            // Every session is looked at for every write, on every hub of a
            // cluster: one without hooks (most of them) costs a check.
            let may_activate = !created.is_empty() && !login.pending.is_empty();
            if login.hooks.is_empty() && !may_activate {
                continue;
            }
            let items: Vec<MultiItem> = latest
                .iter()
                .filter(|w| login.hooks.contains(&w.id))
                .filter_map(|w| item_for(&login.user, w))
                .collect();
            let activated: Vec<MetricId> = if may_activate {
                created
                    .iter()
                    .filter(|id| login.pending.remove(id))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            login.hooks.extend(activated.iter().cloned());
            let Some(conn) = &login.conn else { continue };
            if !items.is_empty() {
                conn.push(&login.sid, notification(t, items));
                queued += 1;
            }
            let fresh: Vec<MultiItem> = latest
                .iter()
                .filter(|w| activated.contains(&w.id))
                .filter_map(|w| item_for(&login.user, w))
                .collect();
            if !fresh.is_empty() {
                conn.push(&login.sid, notification(t, fresh));
                queued += 1;
            }
        }
        queued
    }

    /// Forget the sessions of `user` (only the one with `sid`, if given) and close
    /// their connections with 4403. Returns the sids kicked.
    /// In a cluster, the sessions are kicked on every hub.
    pub fn kick(&self, user: &Username, sid: Option<&str>) -> Vec<String> {
        let here = self.kick_here(user, sid, None);
        self.kicked_everywhere(here, user, sid, None)
    }

    /// Kick on this hub only: the sessions of `user`, only `sid` or only those
    /// of `agent_id` when given (a kick made on another hub of the cluster).
    pub fn kick_here(
        &self,
        user: &Username,
        sid: Option<&str>,
        agent_id: Option<&str>,
    ) -> Vec<String> {
        self.kick_where(|l| {
            &l.user == user
                && sid.is_none_or(|s| s == l.sid)
                && agent_id.is_none_or(|a| a == l.agent_id)
        })
    }

    fn kicked_everywhere(
        &self,
        mut here: Vec<String>,
        user: &Username,
        sid: Option<&str>,
        agent_id: Option<&str>,
    ) -> Vec<String> {
        if let Some(sharing) = self.sharing.get() {
            here.extend(sharing.kicked(user, sid, agent_id));
            here.sort();
            here.dedup();
        }
        here
    }

    /// Forget the sessions `user` opened with agent `agent_id` (its key was
    /// unregistered) and close their connections with 4403. Returns the sids
    /// kicked.
    pub fn kick_agent(&self, user: &Username, agent_id: &str) -> Vec<String> {
        let here = self.kick_here(user, None, Some(agent_id));
        self.kicked_everywhere(here, user, None, Some(agent_id))
    }

    /// Drop the hooks, active and pending, that sessions of other users than
    /// `owner` hold on `owner`'s metrics and may no longer read:
    /// `still_readable(reader, metric)` says which stay. Returns how many were
    /// dropped. A share withdrawn or a user removed ends the notifications its
    /// readers got.
    /// In a cluster, every other hub checks its hooks against the store.
    pub fn drop_hooks(
        &self,
        owner: &Username,
        still_readable: impl Fn(&Username, &MetricId) -> bool,
    ) -> usize {
        let dropped = self.drop_hooks_here(owner, still_readable);
        if let Some(sharing) = self.sharing.get() {
            sharing.shares_changed(owner);
        }
        dropped
    }

    /// [`Registry::drop_hooks`] on this hub only.
    pub fn drop_hooks_here(
        &self,
        owner: &Username,
        still_readable: impl Fn(&Username, &MetricId) -> bool,
    ) -> usize {
        let mut dropped = 0;
        for login in self.lock().values_mut() {
            if &login.user == owner {
                continue;
            }
            let reader = login.user.clone();
            let keep = |id: &MetricId| &id.owner != owner || still_readable(&reader, id);
            let before = login.hooks.len() + login.pending.len();
            login.hooks.retain(|id| keep(id));
            login.pending.retain(|id| keep(id));
            dropped += before - login.hooks.len() - login.pending.len();
        }
        dropped
    }

    fn kick_where(&self, which: impl Fn(&Login) -> bool) -> Vec<String> {
        let mut logins = self.lock();
        let tokens: Vec<String> = logins
            .iter()
            .filter(|(_, l)| which(l))
            .map(|(t, _)| t.clone())
            .collect();
        let mut kicked = Vec::with_capacity(tokens.len());
        for token in tokens {
            if let Some(login) = logins.remove(&token) {
                if let Some(conn) = &login.conn {
                    conn.close(CloseReason::access_denied());
                }
                tracing::info!(user = %login.user, sid = %login.sid, "session kicked");
                kicked.push(login.sid);
            }
        }
        kicked.sort();
        kicked
    }

    /// Close every connection (the hub is stopping).
    pub fn close_all(&self, why: CloseReason) {
        for login in self.lock().values() {
            if let Some(conn) = &login.conn {
                conn.close(why.clone());
            }
        }
    }

    /// Every session, sorted by user then sid.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .lock()
            .values()
            .map(|l| SessionInfo {
                sid: l.sid.clone(),
                user: l.user.clone(),
                agent_id: l.agent_id.clone(),
                connected: l.conn.is_some(),
                hooks: l.hooks.iter().map(ToString::to_string).collect(),
                pending: l.pending.iter().map(ToString::to_string).collect(),
            })
            .collect();
        out.sort_by(|a, b| (&a.user, &a.sid).cmp(&(&b.user, &b.sid)));
        out
    }
}

fn item_for(viewer: &Username, w: &Written) -> Option<MultiItem> {
    Some(MultiItem {
        uri: Uri::parse(&w.id.uri_for(viewer)).ok()?,
        kind: w.kind,
        content: w.content.clone(),
    })
}

fn notification(t: TimeUuid, uris: Vec<MultiItem>) -> Message {
    Message::new(None, Body::SendMultiData(MultiData { t, uris }))
}

/// `bytes` random bytes as lowercase hex (the clock if the system RNG fails,
/// which only happens on a broken system; tokens then stay unique but guessable,
/// so this is logged).
fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("the system random number generator failed; using the clock");
        let t = komlog_protocol::timeuuid::now_micros().to_be_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % 8] ^ (i as u8);
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    fn id(owner: &str, uri: &str) -> MetricId {
        MetricId {
            owner: user(owner),
            local: uri.into(),
        }
    }

    fn written(owner: &str, uri: &str, content: &str) -> Written {
        Written {
            id: id(owner, uri),
            kind: Kind::Datapoint,
            content: content.into(),
        }
    }

    fn items(m: &Outgoing) -> Vec<(String, String)> {
        let Outgoing::Message(m) = m else {
            panic!("not a message: {m:?}")
        };
        match &m.body {
            Body::SendMultiData(d) => d
                .uris
                .iter()
                .map(|i| (i.uri.to_string(), i.content.clone()))
                .collect(),
            other => panic!("not a notification: {other:?}"),
        }
    }

    #[test]
    fn notifications_reach_hooked_sessions_with_their_view_of_the_uri() {
        let reg = Registry::new(16, SESSION_IDLE_EXPIRY);
        let a = reg.create_login(&user("alice"), "a1");
        let b = reg.create_login(&user("bob"), "b1");
        let mut ca = reg.attach(&a.token).unwrap();
        let mut cb = reg.attach(&b.token).unwrap();
        assert!(reg.hook(&a.token, &id("alice", "x")));
        assert!(reg.hook(&b.token, &id("alice", "x")));
        assert!(reg.hook_pending(&b.token, &id("alice", "new")));
        let t = TimeUuid::now();
        reg.notify(
            t,
            &[
                written("alice", "x", "1"),
                written("alice", "y", "2"),
                written("alice", "x", "3"),
                written("alice", "new", "4"),
            ],
            &[id("alice", "new")],
        );
        let ma = ca.outbox_rx.try_recv().unwrap();
        assert_eq!(items(&ma), [("x".to_owned(), "3".to_owned())]);
        assert!(ca.outbox_rx.try_recv().is_err());
        let mb = cb.outbox_rx.try_recv().unwrap();
        assert_eq!(items(&mb), [("alice:x".to_owned(), "3".to_owned())]);
        let mb2 = cb.outbox_rx.try_recv().unwrap();
        assert_eq!(items(&mb2), [("alice:new".to_owned(), "4".to_owned())]);
        assert!(reg.list().iter().any(|s| s.user == user("bob")
            && s.hooks.contains(&"alice:new".to_owned())
            && s.pending.is_empty()));
    }

    #[test]
    fn a_session_left_without_a_connection_for_the_idle_expiry_is_forgotten() {
        assert_eq!(SESSION_IDLE_EXPIRY, Duration::from_secs(15 * 60));
        let expiry = Duration::from_millis(50);
        let reg = Registry::new(16, expiry);
        let idle = reg.create_login(&user("alice"), "a1");
        let connected = reg.create_login(&user("alice"), "a2");
        let _conn = reg.attach(&connected.token).unwrap();
        let returning = reg.create_login(&user("alice"), "a3");
        let c = reg.attach(&returning.token).unwrap();
        reg.detach(&returning.token, c.conn_id);
        std::thread::sleep(expiry * 2);
        // The cookie of the idle session opens nothing any more, even before
        // another login sweeps the registry.
        assert!(reg.attach(&idle.token).is_none());
        assert!(!reg.is_valid(&idle.token));
        // A new login forgets the other idle one; the connected one stays.
        let _new = reg.create_login(&user("bob"), "b1");
        assert!(!reg.is_valid(&returning.token));
        assert!(reg.is_valid(&connected.token));
        // Within the expiry a session is kept.
        let reg = Registry::new(16, SESSION_IDLE_EXPIRY);
        let fresh = reg.create_login(&user("alice"), "a4");
        std::thread::sleep(expiry * 2);
        assert!(reg.attach(&fresh.token).is_some());
    }

    #[test]
    fn kick_forgets_the_session_and_closes_with_4403() {
        let reg = Registry::new(16, SESSION_IDLE_EXPIRY);
        let a = reg.create_login(&user("alice"), "a1");
        let other = reg.create_login(&user("alice"), "a2");
        let ca = reg.attach(&a.token).unwrap();
        let kicked = reg.kick(&user("alice"), Some(&a.sid));
        assert_eq!(kicked, vec![a.sid.clone()]);
        assert!(!reg.is_valid(&a.token));
        assert!(reg.is_valid(&other.token));
        assert_eq!(*ca.close_rx.borrow(), Some(CloseReason::access_denied()));
        assert!(reg.attach(&a.token).is_none());
        assert_eq!(reg.kick(&user("alice"), None), vec![other.sid]);
    }

    #[test]
    fn kick_agent_closes_only_that_agents_sessions_and_drop_hooks_spares_the_readable() {
        let reg = Registry::new(16, SESSION_IDLE_EXPIRY);
        let a1 = reg.create_login(&user("alice"), "a1");
        let a2 = reg.create_login(&user("alice"), "a2");
        let b = reg.create_login(&user("bob"), "b1");
        let c1 = reg.attach(&a1.token).unwrap();
        let c2 = reg.attach(&a2.token).unwrap();
        assert_eq!(reg.kick_agent(&user("alice"), "a1"), vec![a1.sid.clone()]);
        assert_eq!(*c1.close_rx.borrow(), Some(CloseReason::access_denied()));
        assert!(c2.close_rx.borrow().is_none());
        assert!(reg.is_valid(&a2.token));
        assert!(reg.kick_agent(&user("bob"), "a2").is_empty());

        reg.hook(&a2.token, &id("alice", "host.cpu"));
        reg.hook(&b.token, &id("alice", "host.cpu"));
        reg.hook(&b.token, &id("alice", "web.hits"));
        reg.hook_pending(&b.token, &id("alice", "host.new"));
        reg.hook(&b.token, &id("bob", "own"));
        let dropped = reg.drop_hooks(&user("alice"), |_, m| m.is_under(&user("alice"), "web"));
        assert_eq!(dropped, 2);
        let listed = reg.list();
        let bob = listed.iter().find(|s| s.user == user("bob")).unwrap();
        assert_eq!(bob.hooks, ["alice:web.hits", "bob:own"]);
        assert!(bob.pending.is_empty());
        let alice = listed.iter().find(|s| s.user == user("alice")).unwrap();
        assert_eq!(alice.hooks, ["alice:host.cpu"], "the owner keeps hers");
    }

    #[test]
    fn a_second_connection_replaces_the_first_and_a_full_outbox_closes() {
        let reg = Registry::new(1, SESSION_IDLE_EXPIRY);
        let a = reg.create_login(&user("alice"), "a1");
        let first = reg.attach(&a.token).unwrap();
        let second = reg.attach(&a.token).unwrap();
        assert_eq!(first.close_rx.borrow().as_ref().map(|c| c.code), Some(4503));
        reg.detach(&a.token, first.conn_id);
        assert!(
            reg.list()[0].connected,
            "detaching the old one keeps the new one"
        );
        reg.hook(&a.token, &id("alice", "x"));
        let t = TimeUuid::now();
        reg.notify(t, &[written("alice", "x", "1")], &[]);
        assert!(second.close_rx.borrow().is_none());
        reg.notify(t, &[written("alice", "x", "2")], &[]);
        assert_eq!(
            second.close_rx.borrow().as_ref().map(|c| c.code),
            Some(4503)
        );
        reg.detach(&a.token, second.conn_id);
        assert!(!reg.list()[0].connected);
    }
}
