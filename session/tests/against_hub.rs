//! The session library against a real komlog-hub on 127.0.0.1 (in process, with
//! a redb store in a temporary directory), over plain HTTP and over TLS.

#[path = "../../hub/tests/common/certs.rs"]
mod certs;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use komlog_hub::server::{self, HubConfig, RunningHub};
use komlog_hub::store::redb::RedbStore;
use komlog_hub::store::{HubStore, NewSample, Share};
use komlog_hub::tls::HubTls;
use komlog_protocol::login::PrivateKey;
use komlog_protocol::openssh::openssh_public_line;
use komlog_protocol::{Kind, MetricId, Status, TimeUuid, Username};
use komlog_session::http::LoginError;
use komlog_session::{Endpoint, HookOutcome, Sample, Session, SessionConfig, SessionError};

const WAIT: Duration = Duration::from_secs(20);

/// Report a test that cannot run here: `SKIPPED: <reason>` on stderr, past
/// the harness's capture, so a passing run shows it. With
/// `KOMLOGD_TESTS_NO_SKIP` set (CI sets it) a skip is a failure instead.
fn skip(reason: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

#[path = "../../tests/support/test_keys.rs"]
mod test_keys;

/// One of two 4096-bit keys, generated once and kept (see `test_keys`).
fn key(i: usize) -> PrivateKey {
    static KEYS: [OnceLock<PrivateKey>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[i]
        .get_or_init(|| test_keys::kept_key(&format!("session-{i}"), 4096))
        .clone()
}

fn user(n: &str) -> Username {
    Username::parse(n).unwrap()
}

struct Hub {
    running: RunningHub,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start() -> Hub {
        Hub::start_with(|_| {}).await
    }

    /// A hub serving TLS with a test CA's certificate; returns the CA's files
    /// too, in a directory that lives as long as the returned guard.
    async fn start_tls() -> (Hub, certs::TestCerts, tempfile::TempDir) {
        let cert_dir = tempfile::tempdir().unwrap();
        let certs = certs::write_test_certs(cert_dir.path());
        let tls = HubTls::load(&certs.cert, &certs.key).unwrap();
        (
            Hub::start_with(|c| c.tls = Some(tls)).await,
            certs,
            cert_dir,
        )
    }

    async fn start_with(adjust: impl FnOnce(&mut HubConfig)) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("data")).unwrap();
        let mut config = HubConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
        adjust(&mut config);
        let running = server::start(config, Arc::new(store)).await.unwrap();
        let hub = Hub { running, _dir: dir };
        for (name, k) in [("alice", 0), ("bob", 1)] {
            hub.store().add_user(&user(name)).unwrap();
            hub.store()
                .add_agent(&user(name), &openssh_public_line(key(k).as_public_key()))
                .unwrap();
        }
        hub
    }

    fn store(&self) -> &dyn HubStore {
        self.running.hub.store.as_ref()
    }

    fn config(&self, name: &str, k: usize) -> SessionConfig {
        self.config_at("http://localhost", name, k)
    }

    /// A configuration for `base` (`scheme://host`) and the hub's port.
    fn config_at(&self, base: &str, name: &str, k: usize) -> SessionConfig {
        let endpoint = Endpoint::parse(&format!("{base}:{}/", self.running.addr.port())).unwrap();
        let mut c = SessionConfig::new(endpoint, name, key(k)).unwrap();
        c.reply_timeout = WAIT;
        c
    }

    async fn session(&self, name: &str, k: usize) -> Session {
        Session::login(self.config(name, k)).await.unwrap()
    }

    fn rows(&self, owner: &str, uri: &str) -> Vec<(TimeUuid, String)> {
        let id = MetricId {
            owner: user(owner),
            local: uri.into(),
        };
        self.store()
            .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 100_000)
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_samples_hooks_and_receives_notifications() {
    let hub = Hub::start().await;
    hub.store()
        .add_share(&Share {
            owner: user("alice"),
            prefix: "cpu".into(),
            with: user("bob"),
        })
        .unwrap();
    let alice = hub.session("alice", 0).await;
    let mut bob = hub.session("bob", 1).await;
    let mut updates = bob.take_notifications().unwrap();
    assert!(bob.take_notifications().is_none());
    assert_eq!(
        bob.hook("alice:cpu.user").await.unwrap(),
        HookOutcome::Pending
    );

    let t1 = TimeUuid::now();
    // A later instant: two `now()` in one microsecond order by their random
    // clock bits, not by the order they were made.
    let t2 = TimeUuid::random_at(t1.micros() + 1).expect("a time in range");
    alice
        .send_samples(&[
            Sample::datapoint("cpu.user", t2, 2.5).unwrap(),
            Sample::datapoint("cpu.user", t1, 1.0).unwrap(),
            Sample::datasource("cpu.text", t1, "one").unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(
        hub.rows("alice", "cpu.user"),
        vec![(t2, "2.5".to_owned()), (t1, "1".to_owned())]
    );
    assert_eq!(hub.rows("alice", "cpu.text"), vec![(t1, "one".to_owned())]);
    // The pending hook became active with t1's write (which created the uri).
    let n = tokio::time::timeout(WAIT, updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.t, t1);
    assert_eq!(n.items[0].uri.to_string(), "alice:cpu.user");
    let n = tokio::time::timeout(WAIT, updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.t, n.items[0].content.as_str()), (t2, "2.5"));

    // Refusals come back as errors with the server's answer.
    let err = bob
        .send_samples(&[Sample::datapoint("alice:cpu.user", TimeUuid::now(), 1.0).unwrap()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Refused { action: "send_dp_data", response } if response.status == Status::DENIED),
        "{err}"
    );
    let err = bob.hook("alice:private").await.unwrap_err();
    assert!(matches!(err, SessionError::Refused { .. }), "{err}");
    bob.unhook("alice:cpu.user").await.unwrap();
    // Local checks: nothing is sent.
    assert!(Sample::datapoint("x", TimeUuid::now(), f64::NAN).is_err());
    assert!(Sample::datasource("a..b", TimeUuid::now(), "x").is_err());
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_data_follows_the_pages_and_stops_at_count() {
    let hub = Hub::start().await;
    let base = 1_700_000_000_000_000i64;
    let samples: Vec<NewSample> = (0..2300)
        .map(|i| NewSample {
            uri: "big".into(),
            kind: Kind::Datapoint,
            t: TimeUuid::random_at(base + i).unwrap(),
            content: i.to_string(),
        })
        .collect();
    hub.store().write(&user("alice"), &samples).unwrap();
    let alice = hub.session("alice", 0).await;
    let all = alice
        .request_data("big", Some(TimeUuid::MIN), Some(TimeUuid::MAX), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2300, "every row once");
    assert_eq!((all[0].1.as_str(), all[2299].1.as_str()), ("2299", "0"));
    assert!(all.windows(2).all(|w| w[0].0 > w[1].0));
    // An open start with a count: the hub's last chunk stops short of the start;
    // the session stops at the count instead of waiting.
    let newest = alice
        .request_data("big", None, None, Some(1500))
        .await
        .unwrap();
    assert_eq!(newest.len(), 1500);
    assert_eq!(newest[1499].1, "800");
    let few = alice
        .request_data("big", None, Some(samples[99].t), Some(3))
        .await
        .unwrap();
    assert_eq!(
        few.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["99", "98", "97"]
    );
    let err = alice
        .request_data("nothing", None, None, Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Refused { response, .. } if response.status == Status::NOT_FOUND),
        "{err}"
    );
    assert!(matches!(
        alice.request_data("big", None, None, None).await,
        Err(SessionError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_fails_requests_with_4403_and_login_errors_are_explained() {
    let hub = Hub::start().await;
    let mut alice = hub.session("alice", 0).await;
    let mut updates = alice.take_notifications().unwrap();
    assert!(alice.disconnected().is_none());
    hub.running.hub.sessions.kick(&user("alice"), None);
    // The notification channel ends with the connection.
    assert!(
        tokio::time::timeout(WAIT, updates.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(alice.disconnected(), Some(Some(4403)));
    let err = alice.hook("x").await.unwrap_err();
    assert!(err.is_access_denied(), "{err}");
    // Logging in again works.
    let again = hub.session("alice", 0).await;
    assert_eq!(again.hook("x").await.unwrap(), HookOutcome::Pending);

    let err = match Session::login(hub.config("carol", 0)).await {
        Err(e) => e,
        Ok(_) => panic!("carol does not exist"),
    };
    assert!(
        matches!(
            &err,
            SessionError::Login(LoginError::Refused {
                status: 403,
                error: Some(3702),
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("username"), "{err}");
    let err = match Session::login(hub.config("alice", 1)).await {
        Err(e) => e,
        Ok(_) => panic!("bob's key is not alice's"),
    };
    assert!(err.to_string().contains("registered"), "{err}");
    // Nothing listens: a clear connection error, in time.
    let closed = Endpoint::parse("http://127.0.0.1:9/").unwrap();
    let err = match Session::login(SessionConfig::new(closed, "alice", key(0)).unwrap()).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens on port 9"),
    };
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_what_a_datasource_supplies() {
    let hub = Hub::start().await;
    let alice = hub.session("alice", 0).await;
    let t = TimeUuid::now();
    alice
        .send_samples(&[
            Sample::datasource("host.disk", t, "/ 10 20").unwrap(),
            Sample::datapoint("host.disk.used", t, 10.0).unwrap(),
        ])
        .await
        .unwrap();
    let supplies = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    alice
        .send_ds_info(
            "host.disk",
            Some(&supplies(&[
                "host.disk.used",
                "host.disk.free",
                "host.disk.used",
            ])),
        )
        .await
        .unwrap();
    let id = MetricId {
        owner: user("alice"),
        local: "host.disk".into(),
    };
    // Sorted, each once.
    assert_eq!(
        hub.store().supplies(&id).unwrap(),
        Some(supplies(&["host.disk.free", "host.disk.used"]))
    );

    let refused = |e: SessionError| match e {
        SessionError::Refused {
            action: "send_ds_info",
            response,
        } => response.status,
        other => panic!("expected a refusal of send_ds_info, got {other}"),
    };
    let no_uri = alice.send_ds_info("host.nothing", None).await.unwrap_err();
    assert_eq!(refused(no_uri), Status::NOT_FOUND);
    let datapoint = alice
        .send_ds_info("host.disk.used", Some(&supplies(&["a"])))
        .await
        .unwrap_err();
    assert_eq!(refused(datapoint), Status::DENIED);
    // A remote uri in the list is refused before anything is sent.
    let err = alice
        .send_ds_info("host.disk", Some(&supplies(&["bob:x"])))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Invalid(m) if m.contains("\"bob:x\" is not a local uri")),
        "{err}"
    );
    assert_eq!(
        hub.store().supplies(&id).unwrap(),
        Some(supplies(&["host.disk.free", "host.disk.used"]))
    );
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_over_https_and_wss_with_the_ca_file_and_sends_samples() {
    let (hub, certs, _cert_dir) = Hub::start_tls().await;
    // A client that never starts its handshake and one that sends garbage do
    // not hold up or stop the server.
    let mut idle = tokio::net::TcpStream::connect(hub.running.addr)
        .await
        .unwrap();
    let mut garbage = tokio::net::TcpStream::connect(hub.running.addr)
        .await
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    }
    for (i, base) in ["https://localhost", "wss://127.0.0.1"]
        .into_iter()
        .enumerate()
    {
        let mut config = hub.config_at(base, "alice", 0);
        assert!(config.endpoint.tls);
        config.ca_file = Some(certs.ca.clone());
        let session = Session::login(config).await.unwrap();
        let t = TimeUuid::now();
        session
            .send_samples(&[Sample::datapoint("tls.value", t, i as f64 + 0.5).unwrap()])
            .await
            .unwrap();
        assert_eq!(hub.rows("alice", "tls.value")[0], (t, format!("{}.5", i)));
        let newest = session
            .request_data("tls.value", None, None, Some(10))
            .await
            .unwrap();
        assert_eq!(newest.len(), i + 1);
        session.close().await;
    }
    {
        use tokio::io::AsyncReadExt;
        // The garbage connection was closed after its failed handshake (an
        // alert may come first); the idle one is still waiting.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(WAIT, garbage.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "the failed handshake's connection was not closed"
        );
        let mut buf = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), idle.read(&mut buf))
                .await
                .is_err(),
            "the idle connection is left to its handshake deadline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_errors_name_the_certificate_problem_and_the_ca_file() {
    let (hub, certs, _cert_dir) = Hub::start_tls().await;
    // Without the CA file the hub's certificate chains to no known root.
    let err = match Session::login(hub.config_at("https://localhost", "alice", 0)).await {
        Err(e) => e,
        Ok(_) => panic!("the test CA is not trusted without ca_file"),
    };
    let text = err.to_string();
    assert!(
        text.contains("TLS handshake with localhost failed") && text.contains("UnknownIssuer"),
        "{text}"
    );
    // A missing CA file and a file without a certificate are named.
    let mut config = hub.config_at("https://localhost", "alice", 0);
    let missing = certs.ca.with_file_name("missing.pem");
    config.ca_file = Some(missing.clone());
    let err = match Session::login(config.clone()).await {
        Err(e) => e,
        Ok(_) => panic!("the CA file is missing"),
    };
    assert!(matches!(err, SessionError::Tls(_)), "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    config.ca_file = Some(certs.key.clone());
    let text = match Session::login(config).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a key is not a CA certificate"),
    };
    assert!(
        text.contains(&format!(
            "the CA file {} contains no PEM certificate",
            certs.key.display()
        )),
        "{text}"
    );
    // A plain client reaching the TLS port gets a clear failure, not a hang.
    let text = match Session::login(hub.config("alice", 0)).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("plain HTTP to a TLS port"),
    };
    assert!(text.contains("login at localhost"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_at_an_ipv6_address() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        skip(&format!(
            "logs_in_at_an_ipv6_address: no IPv6 loopback here (binding [::1]: {e})"
        ));
        return;
    }
    let hub = Hub::start_with(|c| c.listen = "[::1]:0".parse().unwrap()).await;
    let alice = Session::login(hub.config_at("http://[::1]", "alice", 0))
        .await
        .unwrap();
    let t = TimeUuid::now();
    alice
        .send_samples(&[Sample::datapoint("v6.value", t, 6.0).unwrap()])
        .await
        .unwrap();
    assert_eq!(hub.rows("alice", "v6.value"), vec![(t, "6".to_owned())]);
    alice.close().await;
}
