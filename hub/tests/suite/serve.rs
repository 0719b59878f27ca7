//! What a served hub promises about its files, its admin endpoint and its
//! deadlines: `hub.json` is private, `/admin` answers loopback only, a TLS
//! handshake has a deadline, an idle session is forgotten, and the durations
//! default to the protocol's (60 s challenges, 15 min sessions, 10 s
//! handshakes). The tests shorten the durations through `HubConfig`.

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use komlog_hub::http_client::{self, HttpResponse};
use komlog_hub::server::{HubConfig, RunFile, run_file_path};
use komlog_hub::tls::HubTls;
use tokio::io::AsyncReadExt;

/// `POST /admin` `{"command":"list_users"}` at `addr` with the run file's token.
async fn list_users(
    addr: SocketAddr,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    token: &str,
) -> HttpResponse {
    http_client::post_tls(
        addr,
        tls,
        "localhost",
        "/admin",
        "application/json",
        &[("authorization", format!("Bearer {token}"))],
        br#"{"command":"list_users"}"#.to_vec(),
        WAIT,
    )
    .await
    .expect("admin POST")
}

fn run_file(hub: &TestHub) -> RunFile {
    let path = run_file_path(&hub.running.hub.config.data_dir);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// This machine's address on its default route, if it has one that is not
/// loopback (no packet is sent: a UDP `connect` only picks the source).
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("203.0.113.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn the_durations_default_to_the_protocols() {
    let config = HubConfig::new("127.0.0.1:0".parse().unwrap(), "data".into());
    assert_eq!(config.challenge_validity, Duration::from_secs(60));
    assert_eq!(config.session_idle_expiry, Duration::from_secs(15 * 60));
    assert_eq!(config.tls_handshake_timeout, Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_file_is_private_and_admin_answers_loopback_only() {
    let hub = TestHub::start_with(|c| c.listen = "0.0.0.0:0".parse().unwrap()).await;
    let path = run_file_path(&hub.running.hub.config.data_dir);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} mode {mode:o}", path.display());
    let token = run_file(&hub).admin_token;
    let port = hub.addr().port();

    let local = list_users(SocketAddr::from(([127, 0, 0, 1], port)), None, &token).await;
    assert_eq!(
        local.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&local.body)
    );

    let Some(ip) = non_loopback_ip() else {
        skip("no non-loopback address to reach /admin from");
        return;
    };
    let remote = list_users(SocketAddr::new(ip, port), None, &token).await;
    assert_eq!(
        remote.status,
        403,
        "{:?}",
        String::from_utf8_lossy(&remote.body)
    );
    let error = remote.json().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("only accepted from loopback"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_dropped_at_its_deadline_and_holds_up_no_one() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = certs::write_test_certs(certs_dir.path());
    let tls = HubTls::load(&certs.cert, &certs.key).unwrap();
    let pinned = komlog_hub::tls::pinned_client_config(&tls.certificate_hex()).unwrap();
    let deadline = Duration::from_millis(300);
    let hub = TestHub::start_with(|c| {
        c.tls = Some(tls);
        c.tls_handshake_timeout = deadline;
    })
    .await;
    let token = run_file(&hub).admin_token;

    // A client that connects and never says hello.
    let started = Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    // Meanwhile a real client is served.
    let r = list_users(hub.addr(), Some(pinned), &token).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    // The hub drops the stalled one at the deadline (well before the 10 s default).
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("the stalled connection was dropped within 5 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without data: {read:?}"
    );
    assert!(started.elapsed() >= deadline, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_left_without_a_connection_is_forgotten_after_the_idle_expiry() {
    let expiry = Duration::from_millis(300);
    let hub = TestHub::start_with(|c| c.session_idle_expiry = expiry).await;
    hub.add_user_with_key("alice", 0);

    // A cookie used within the expiry opens the websocket; once its
    // connection closes, the session is idle.
    let used = login_ok(hub.addr(), "alice", key(0)).await;
    let ws = Client::open(hub.addr(), Some(&used)).await;
    ws.close().await;
    let limit = Instant::now() + WAIT;
    while hub.running.hub.sessions.list().iter().any(|s| s.connected) {
        assert!(Instant::now() < limit, "the connection was not detached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A cookie never used.
    let unused = login_ok(hub.addr(), "alice", key(0)).await;

    tokio::time::sleep(expiry * 2).await;
    for cookie in [&used, &unused] {
        let mut late = Client::open(hub.addr(), Some(cookie)).await;
        late.expect_close(4403).await;
    }
    // A new login works.
    let cookie = login_ok(hub.addr(), "alice", key(0)).await;
    let mut fresh = Client::open(hub.addr(), Some(&cookie)).await;
    fresh.expect_silence(Duration::from_millis(200)).await;
}
