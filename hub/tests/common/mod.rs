//! Shared test helpers: an in-process hub on an ephemeral 127.0.0.1 port with a
//! real redb store in a temporary directory, RSA keys, the login handshake over
//! real HTTP, and a websocket client. Every wait has a deadline.

#![allow(dead_code)]

pub mod certs;
#[path = "../../../tests/support/child.rs"]
pub mod child;
#[path = "../../../tests/support/test_keys.rs"]
mod test_keys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use komlog_hub::http_client::{self, HttpResponse};
use komlog_hub::server::{self, HubConfig, RunningHub};
use komlog_hub::store::redb::RedbStore;
use komlog_hub::store::{HubStore, NewSample, Share};
use komlog_protocol::login::{self, PrivateKey};
use komlog_protocol::openssh::openssh_public_line;
use komlog_protocol::{Body, GenericResponse, Kind, Message, Status, TimeUuid, Username};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The deadline of every single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// One of four 4096-bit keys, generated once and kept (see `test_keys`).
pub fn key(index: usize) -> &'static PrivateKey {
    static KEYS: [OnceLock<PrivateKey>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    KEYS[index].get_or_init(|| test_keys::kept_key(&format!("hub-{index}"), 4096))
}

/// The canonical OpenSSH line of a key.
pub fn public_line(key: &PrivateKey) -> String {
    openssh_public_line(key.as_public_key())
}

pub fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Which store an in-process [`TestHub`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded redb store in a temporary directory.
    Redb,
    /// PostgreSQL at 127.0.0.1:5432 (database `test`), in a schema of its own.
    Postgres,
}

thread_local! {
    /// The store of the hubs the running test starts ([`on_both_stores!`]).
    static STORE_KIND: std::cell::Cell<StoreKind> = const { std::cell::Cell::new(StoreKind::Redb) };
}

/// The PostgreSQL database of the tests.
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// True when something answers TCP at `addr` within 2 s.
pub fn up(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

/// A test that cannot run here says SKIPPED, or fails when
/// KOMLOGD_TESTS_NO_SKIP is set.
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

/// Run a test body with its hubs on PostgreSQL (skipped, or failed with
/// KOMLOGD_TESTS_NO_SKIP, when nothing answers at 127.0.0.1:5432).
pub async fn on_postgres(body: impl std::future::Future<Output = ()>) {
    if !up("127.0.0.1:5432") {
        return skip("no PostgreSQL at 127.0.0.1:5432");
    }
    STORE_KIND.set(StoreKind::Postgres);
    // The body runs on this thread (the runtime's block_on), where its
    // TestHubs read the kind.
    body.await;
    STORE_KIND.set(StoreKind::Redb);
}

/// Each named `async fn` of the module becomes a module with two tests,
/// `redb` and `postgres`: the same protocol checks on either store.
#[allow(unused_macros)] // benches include this file without the protocol tests
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redb() {
                    super::$name().await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::common::on_postgres(super::$name()).await
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// A schema of its own in the tests' database, dropped with the hub.
pub struct PgSchema(pub String);

impl Drop for PgSchema {
    fn drop(&mut self) {
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0);
        // A runtime of its own: drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                let task = tokio::spawn(conn);
                let _ = client.batch_execute(&statement).await;
                drop(client);
                let _ = task.await;
                Some(())
            })
        })
        .join();
    }
}

/// A hub running in this process.
pub struct TestHub {
    pub running: RunningHub,
    pub dir: tempfile::TempDir,
    /// Its schema, when it runs on PostgreSQL.
    pub schema: Option<PgSchema>,
}

impl TestHub {
    pub async fn start() -> TestHub {
        TestHub::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut HubConfig)) -> TestHub {
        TestHub::start_wrapped(adjust, Arc::from).await
    }

    /// A hub whose store is `wrap` around the test's store (to inject
    /// failures): redb, or PostgreSQL in a test run by [`on_postgres`].
    pub async fn start_wrapped(
        adjust: impl FnOnce(&mut HubConfig),
        wrap: impl FnOnce(Box<dyn HubStore>) -> Arc<dyn HubStore>,
    ) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (store, schema): (Box<dyn HubStore>, _) = match STORE_KIND.get() {
            StoreKind::Redb => (Box::new(RedbStore::open(&data).unwrap()), None),
            StoreKind::Postgres => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let schema = PgSchema(format!("hubsuite_{}_{n}", std::process::id()));
                let name = schema.0.clone();
                let store = tokio::task::spawn_blocking(move || {
                    komlog_hub::store::postgres::PgStore::connect(PG_URL, Some(&name))
                })
                .await
                .unwrap()
                .expect("the PostgreSQL store");
                (Box::new(store), Some(schema))
            }
        };
        let mut config = HubConfig::new("127.0.0.1:0".parse().unwrap(), data);
        adjust(&mut config);
        let running = server::start(config, wrap(store)).await.unwrap();
        TestHub {
            running,
            dir,
            schema,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    pub fn store(&self) -> &dyn HubStore {
        self.running.hub.store.as_ref()
    }

    /// Create a user with agent key `key_index`.
    pub fn add_user_with_key(&self, name: &str, key_index: usize) {
        let u = user(name);
        if !self.store().user_exists(&u).unwrap() {
            self.store().add_user(&u).unwrap();
        }
        self.store()
            .add_agent(&u, &public_line(key(key_index)))
            .unwrap();
    }

    pub fn share(&self, owner: &str, prefix: &str, with: &str) {
        self.store()
            .add_share(&Share {
                owner: user(owner),
                prefix: prefix.into(),
                with: user(with),
            })
            .unwrap();
    }

    /// Write samples straight into the store (test setup, no notifications).
    pub fn seed(&self, owner: &str, samples: &[NewSample]) {
        self.store().write(&user(owner), samples).unwrap();
    }

    /// Log in and open a websocket.
    pub async fn connect(&self, name: &str, key_index: usize) -> Client {
        let cookie = login_ok(self.addr(), name, key(key_index)).await;
        Client::open(self.addr(), Some(&cookie)).await
    }
}

/// POST a login form.
pub async fn post_login(addr: SocketAddr, fields: &[(&str, &str)]) -> HttpResponse {
    http_client::post(
        addr,
        "localhost",
        "/login",
        "application/x-www-form-urlencoded",
        &[],
        http_client::form_body(fields).into_bytes(),
        WAIT,
    )
    .await
    .expect("login POST")
}

/// Step 1: ask for a challenge; returns the response.
pub async fn ask_challenge(addr: SocketAddr, name: &str, key: &PrivateKey) -> HttpResponse {
    let k = login::key_field(&public_line(key));
    post_login(addr, &[("u", name), ("k", &k), ("pv", "1")]).await
}

/// Steps 1 and 2; returns the second response.
pub async fn login(addr: SocketAddr, name: &str, key: &PrivateKey) -> HttpResponse {
    let first = ask_challenge(addr, name, key).await;
    assert_eq!(first.status, 200, "challenge: {:?}", first.json());
    let challenge = first.json().unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c, s) = login::answer_challenge(key, &challenge).unwrap();
    answer(addr, name, key, &c, &s).await
}

/// Step 2 with given `c` and `s`.
pub async fn answer(
    addr: SocketAddr,
    name: &str,
    key: &PrivateKey,
    c: &str,
    s: &str,
) -> HttpResponse {
    let k = login::key_field(&public_line(key));
    post_login(
        addr,
        &[("u", name), ("k", &k), ("pv", "1"), ("c", c), ("s", s)],
    )
    .await
}

/// Log in; returns the `kid` cookie value.
pub async fn login_ok(addr: SocketAddr, name: &str, key: &PrivateKey) -> String {
    let resp = login(addr, name, key).await;
    assert_eq!(resp.status, 200, "login: {:?}", resp.json());
    assert_eq!(resp.json().unwrap(), serde_json::Value::Null);
    resp.set_cookie("kid").expect("kid cookie")
}

/// The `{"error": N}` of a refused login.
pub fn login_error(resp: &HttpResponse) -> u64 {
    resp.json().unwrap()["error"].as_u64().unwrap()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket client speaking the protocol.
pub struct Client {
    ws: Ws,
}

/// What arrived on a websocket, read as plain JSON (a refusal may echo a `v`
/// that [`Message::parse`] would not take).
#[derive(Debug)]
pub enum RawEvent {
    Json(serde_json::Value),
    /// A text frame that is not JSON.
    Text(String),
    /// The close frame's code and reason; `None` when the connection ended
    /// without one (what a client reports as 1006).
    Close(Option<(u16, String)>),
}

/// What the next event on a websocket was.
#[derive(Debug)]
pub enum Event {
    Message(Message),
    Close(Option<u16>),
}

impl Client {
    /// Open the websocket, with `kid=cookie` if given.
    pub async fn open(addr: SocketAddr, cookie: Option<&str>) -> Client {
        let mut req = format!("ws://localhost:{}/", addr.port())
            .into_client_request()
            .unwrap();
        if let Some(c) = cookie {
            req.headers_mut()
                .insert("cookie", format!("kid={c}").parse().unwrap());
        }
        let stream = TcpStream::connect(addr).await.unwrap();
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");
        Client { ws }
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(WsMessage::Text(text.into())).await.unwrap();
    }

    /// Send a text frame; false when the connection is gone.
    pub async fn try_send_text(&mut self, text: String) -> bool {
        self.ws.send(WsMessage::Text(text.into())).await.is_ok()
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    /// Send a message; returns its seq.
    pub async fn send(&mut self, body: Body) -> TimeUuid {
        let m = Message::new(None, body);
        self.send_text(m.to_text()).await;
        m.seq
    }

    /// The next message or close, within `WAIT`.
    pub async fn next_event(&mut self) -> Event {
        self.next_event_within(WAIT)
            .await
            .expect("an event in time")
    }

    /// The next message or close, or `None` if nothing comes within `d`.
    pub async fn next_event_within(&mut self, d: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match frame {
                None => return Some(Event::Close(None)),
                Some(Err(_)) => return Some(Event::Close(None)),
                Some(Ok(WsMessage::Text(t))) => {
                    let m = Message::parse(t.as_str()).expect("the hub sends valid messages");
                    return Some(Event::Message(m));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Some(Event::Close(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame as JSON, or the close, or `None` if nothing comes within `d`.
    pub async fn next_raw_within(&mut self, d: Duration) -> Option<RawEvent> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match frame {
                None | Some(Err(_)) => return Some(RawEvent::Close(None)),
                Some(Ok(WsMessage::Text(t))) => {
                    return Some(match serde_json::from_str(t.as_str()) {
                        Ok(v) => RawEvent::Json(v),
                        Err(_) => RawEvent::Text(t.as_str().to_owned()),
                    });
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Some(RawEvent::Close(
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    ));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// After a close frame: read until the connection ends, which must be a
    /// clean end (the peer waited for our close reply), not a reset.
    pub async fn clean_end(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err("the connection did not end".into()),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return match e {
                        tokio_tungstenite::tungstenite::Error::ConnectionClosed
                        | tokio_tungstenite::tungstenite::Error::AlreadyClosed => Ok(()),
                        e => Err(format!("the connection ended with an error: {e}")),
                    };
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next message (panics on close).
    pub async fn next(&mut self) -> Message {
        match self.next_event().await {
            Event::Message(m) => m,
            Event::Close(c) => panic!("closed with {c:?}"),
        }
    }

    /// Send and return the generic response in reply to it.
    pub async fn request(&mut self, body: Body) -> GenericResponse {
        let seq = self.send(body).await;
        self.reply_to(seq).await
    }

    /// The next message, which must be a generic response to `seq`.
    pub async fn reply_to(&mut self, seq: TimeUuid) -> GenericResponse {
        let m = self.next().await;
        assert_eq!(m.irt, Some(seq), "reply to our message: {m:?}");
        match m.body {
            Body::GenericResponse(r) => r,
            other => panic!("not a generic response: {other:?}"),
        }
    }

    /// Expect the connection to close with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        loop {
            match self.next_event().await {
                Event::Close(c) => {
                    assert_eq!(c, Some(code), "close code");
                    return;
                }
                Event::Message(m) => {
                    // Messages queued before the close may still arrive.
                    let _ = m;
                }
            }
        }
    }

    /// Assert that nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(e) = self.next_event_within(d).await {
            panic!("expected nothing, got {e:?}");
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `CloseCode` for a numeric code (keeps the tungstenite type out of tests).
pub fn close_code(code: u16) -> CloseCode {
    CloseCode::from(code)
}

pub fn assert_status(r: &GenericResponse, status: Status, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
}

pub fn new_sample(uri: &str, kind: Kind, us: i64, content: &str) -> NewSample {
    NewSample {
        uri: uri.into(),
        kind,
        t: TimeUuid::random_at(us).unwrap(),
        content: content.into(),
    }
}

/// A `komlog-hub serve` child, stopped (SIGTERM) when dropped.
pub struct Served {
    pub child: Child,
    data: PathBuf,
}

impl Served {
    pub fn start(data: &Path) -> Served {
        Served::start_with(data, &[])
    }

    /// `serve` with `extra` arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> Served {
        Served::start_logging(data, extra, Stdio::inherit())
    }

    /// `serve` with `extra` arguments and its stderr (its log) to `stderr`.
    pub fn start_logging(data: &Path, extra: &[&str], stderr: Stdio) -> Served {
        let child = Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env_remove("KOMLOG_HUB_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn komlog-hub serve");
        Served {
            child,
            data: data.to_owned(),
        }
    }

    pub fn addr(&mut self) -> std::net::SocketAddr {
        let run_file = self.data.join("hub.json");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&run_file)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                return v["listen"].as_str().unwrap().parse().unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("komlog-hub serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "no {} in time",
                run_file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        child::terminate(&mut self.child, WAIT).expect("komlog-hub stops on SIGTERM")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the komlog-hub binary on `data` with `args`.
pub fn hub_cmd(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KOMLOG_HUB_DATA")
        .output()
        .expect("run komlog-hub")
}

/// Bytes as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Its stdout, asserting it exited 0.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Asserting it exited with `code` and said `needle` on stderr.
#[track_caller]
pub fn fails(o: &Output, code: i32, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {} stderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains(needle),
        "stderr lacks {needle:?}: {}",
        text(&o.stderr)
    );
}

/// Write `key`'s public line to `dir/name`.
pub fn write_key(dir: &Path, name: &str, key: &PrivateKey) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, public_line(key)).unwrap();
    path
}
