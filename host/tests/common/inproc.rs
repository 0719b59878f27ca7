//! An agent's dispatcher and server link in this test process, for tests that
//! drive the link against an in-process komlog-hub: the user `alice`, her
//! agent key (generated once and kept in target/tmp/test-keys), and an agent with no impulses that
//! queues what it stores for the hub. Included with `#[path]` by the tests
//! that use it.

#![allow(dead_code)]

#[path = "../../../tests/support/test_keys.rs"]
mod test_keys;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use komlog_hub::store::HubStore;
use komlog_protocol::login::PrivateKey;
use komlog_protocol::openssh::openssh_public_line;
use komlogd::impulses::{Dispatcher, DispatcherConfig, Inbox};
use komlogd::model::{Sample, Username};
use komlogd::session::{Hook, Link, LinkConfig, ServerStatus, Supplies};
use komlogd::store::Store;
use tokio::sync::{Notify, watch};

/// Alice's agent key, the same for every agent of the tests (generated once
/// and kept, see `test_keys`).
pub fn key() -> PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| test_keys::kept_key("agent-alice", 4096))
        .clone()
}

/// A hub username.
pub fn user(name: &str) -> komlog_protocol::Username {
    komlog_protocol::Username::parse(name).expect("a username")
}

/// The hub's user `alice`.
pub fn alice() -> komlog_protocol::Username {
    user("alice")
}

/// Add `alice` and her agent key ([`key`]) to a hub's store.
pub fn add_alice(store: &dyn HubStore) {
    store.add_user(&alice()).expect("user");
    store
        .add_agent(&alice(), &openssh_public_line(key().as_public_key()))
        .expect("agent key");
}

/// Alice's agent: a dispatcher with no impulses that queues what it stores
/// for the server, and its link to the hub at 127.0.0.1.
pub struct Agent {
    pub inbox: Inbox,
    pub link: Option<Link>,
    /// The hooks the link keeps (send a new set to change them).
    pub hooks: watch::Sender<Vec<Hook>>,
    stop: watch::Sender<bool>,
    dispatcher: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Start one on a fresh store, linked to the hub on `port`, hooking
    /// `hooks`, waiting up to `reply_timeout` for each answer. Must be called
    /// inside a tokio runtime.
    pub fn start(port: u16, hooks: Vec<Hook>, reply_timeout: Duration) -> Agent {
        Agent::start_urls(
            vec![format!("http://127.0.0.1:{port}/")],
            hooks,
            reply_timeout,
        )
    }

    /// [`Agent::start`] with the link trying `urls` in turn (`- server: urls:`).
    pub fn start_urls(urls: Vec<String>, hooks: Vec<Hook>, reply_timeout: Duration) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store.redb")).expect("store");
        let outbox = store.outbox().expect("outbox");
        let mut dispatcher = Dispatcher::new(
            store,
            DispatcherConfig {
                username: Some(Username::parse("alice").expect("username")),
                max_chain_depth: 8,
                queue_for_server: true,
                replay: false,
            },
        );
        let signal = Arc::new(Notify::new());
        dispatcher.set_outbox_signal(Arc::clone(&signal));
        let inbox = dispatcher.inbox();
        let thread = std::thread::spawn(move || {
            dispatcher.serve(|_| {}, |e| panic!("store failure: {e}"));
            let _ = dispatcher.close();
        });
        let (stop, shutdown) = watch::channel(false);
        let (hooks_tx, hooks) = watch::channel(hooks);
        let config = LinkConfig {
            urls,
            ca_file: None,
            username: "alice".into(),
            key: key(),
            hooks,
            supplies: Supplies::new(),
            reply_timeout,
        };
        let link = Link::start(config, outbox, signal, inbox.clone(), shutdown);
        Agent {
            inbox,
            link: Some(link),
            hooks: hooks_tx,
            stop,
            dispatcher: Some(thread),
            _dir: dir,
        }
    }

    /// Commit `samples` (as an upload: returns once they are committed).
    pub fn commit(&self, samples: Vec<Sample>) {
        let receipt =
            tokio::task::block_in_place(|| self.inbox.upload(samples)).expect("dispatcher running");
        assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
    }

    /// The link's status now.
    pub fn status(&self) -> ServerStatus {
        self.link
            .as_ref()
            .expect("the link runs until stop")
            .board
            .snapshot()
    }

    /// Poll the status every 10 ms until `ok` holds, at most `limit`.
    pub async fn until(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&ServerStatus) -> bool,
    ) -> ServerStatus {
        let start = Instant::now();
        loop {
            // The status reads the store (blocking).
            let status = tokio::task::block_in_place(|| self.status());
            if ok(&status) {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop the link, then the dispatcher.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(link) = self.link.take() {
            link.join().await;
        }
        let _ = self.inbox.stop();
        if let Some(t) = self.dispatcher.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
