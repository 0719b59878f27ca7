//! The `komlog-hub` binary: management commands on a data directory, and the
//! same commands reaching a running `komlog-hub serve` process.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use komlog_protocol::login::PrivateKey;
use komlog_protocol::{Body, DsData, Status, TimeUuid, Uri, UriPayload};

fn hub_cmd(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KOMLOG_HUB_DATA")
        .output()
        .expect("run komlog-hub")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    text(&o.stdout)
}

#[track_caller]
fn fails(o: &Output, code: i32, needle: &str) {
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

fn write_key(dir: &Path, name: &str, key: &PrivateKey) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, public_line(key)).unwrap();
    path
}

#[test]
fn manages_users_agents_and_shares_on_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(ok(&hub_cmd(&data, &["user", "add", "Alice"])).contains("added user alice"));
    fails(
        &hub_cmd(&data, &["user", "add", "alice"]),
        1,
        "user alice already exists",
    );
    fails(
        &hub_cmd(&data, &["user", "add", "bad name"]),
        2,
        "invalid username",
    );
    let no_data = Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
        .args(["user", "add", "x"])
        .env_remove("KOMLOG_HUB_DATA")
        .output()
        .unwrap();
    fails(&no_data, 2, "--data");

    let missing = dir.path().join("missing.pub");
    fails(
        &hub_cmd(
            &data,
            &[
                "agent",
                "add",
                "alice",
                "--pubkey",
                missing.to_str().unwrap(),
            ],
        ),
        1,
        "missing.pub",
    );
    let garbage = dir.path().join("garbage.pub");
    std::fs::write(&garbage, "ssh-ed25519 AAAAC3Nza").unwrap();
    fails(
        &hub_cmd(
            &data,
            &[
                "agent",
                "add",
                "alice",
                "--pubkey",
                garbage.to_str().unwrap(),
            ],
        ),
        1,
        "garbage.pub: invalid OpenSSH RSA public key",
    );
    let small = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let small_pub = write_key(dir.path(), "small.pub", &small);
    fails(
        &hub_cmd(
            &data,
            &[
                "agent",
                "add",
                "alice",
                "--pubkey",
                small_pub.to_str().unwrap(),
            ],
        ),
        1,
        "2048-bit",
    );
    let good = write_key(dir.path(), "key.pub", key(0));
    fails(
        &hub_cmd(
            &data,
            &["agent", "add", "bob", "--pubkey", good.to_str().unwrap()],
        ),
        1,
        "user bob does not exist",
    );
    let out = ok(&hub_cmd(
        &data,
        &["agent", "add", "alice", "--pubkey", good.to_str().unwrap()],
    ));
    assert!(out.starts_with("registered agent "), "{out}");
    fails(
        &hub_cmd(
            &data,
            &["agent", "add", "alice", "--pubkey", good.to_str().unwrap()],
        ),
        1,
        "already registered",
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(&hub_cmd(&data, &["agent", "list", "alice"]))).unwrap();
    assert_eq!(
        list["agents"][0]["public_line"].as_str(),
        Some(public_line(key(0)).as_str())
    );

    fails(
        &hub_cmd(&data, &["share", "alice", "host", "--with", "bob"]),
        1,
        "user bob does not exist",
    );
    ok(&hub_cmd(&data, &["user", "add", "bob"]));
    fails(
        &hub_cmd(&data, &["share", "alice", "a..b", "--with", "bob"]),
        1,
        "not a local uri",
    );
    assert!(
        ok(&hub_cmd(
            &data,
            &["share", "alice", "host", "--with", "bob"]
        ))
        .contains("read-only")
    );
    fails(
        &hub_cmd(&data, &["kick", "alice"]),
        1,
        "needs a running komlog-hub",
    );
    fails(
        &hub_cmd(&data, &["sessions"]),
        1,
        "needs a running komlog-hub",
    );
    let q: serde_json::Value =
        serde_json::from_str(&ok(&hub_cmd(&data, &["query", "alice", "host"]))).unwrap();
    assert_eq!(q["kind"], serde_json::Value::Null);

    // A file that is not a hub database.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("hub.redb"), b"garbage").unwrap();
    fails(&hub_cmd(&other, &["user", "list"]), 1, "hub.redb");
}

/// A `komlog-hub serve` child, stopped (SIGTERM) when dropped.
struct Served {
    child: Child,
    data: PathBuf,
}

impl Served {
    fn start(data: &Path) -> Served {
        Served::start_with(data, &[])
    }

    /// `serve` with `extra` arguments.
    fn start_with(data: &Path, extra: &[&str]) -> Served {
        Served::start_logging(data, extra, Stdio::inherit())
    }

    /// `serve` with `extra` arguments and its stderr (its log) to `stderr`.
    fn start_logging(data: &Path, extra: &[&str], stderr: Stdio) -> Served {
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

    fn addr(&mut self) -> std::net::SocketAddr {
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

    fn stop(mut self) -> std::process::ExitStatus {
        child::terminate(&mut self.child, WAIT).expect("komlog-hub stops on SIGTERM")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_a_running_hub_and_kick_closes_with_4403() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = Served::start(&data);
    let addr = served.addr();
    // The store is held by the server: these go through POST /admin.
    ok(&hub_cmd(&data, &["user", "add", "alice"]));
    let good = write_key(dir.path(), "key.pub", key(0));
    ok(&hub_cmd(
        &data,
        &["agent", "add", "alice", "--pubkey", good.to_str().unwrap()],
    ));
    fails(
        &hub_cmd(&data, &["user", "add", "alice"]),
        1,
        "already exists",
    );

    let cookie = login_ok(addr, "alice", key(0)).await;
    let mut ws = Client::open(addr, Some(&cookie)).await;
    let t = TimeUuid::now();
    let r = ws
        .request(Body::SendDsData(DsData {
            uri: Uri::parse("cli.uri").unwrap(),
            t,
            content: "stored".into(),
        }))
        .await;
    assert_eq!(r.status, Status::OK);
    let r = ws
        .request(Body::HookToUri(UriPayload {
            uri: Uri::parse("cli.uri").unwrap(),
        }))
        .await;
    assert_eq!(r.status, Status::OK);

    let q: serde_json::Value =
        serde_json::from_str(&ok(&hub_cmd(&data, &["query", "alice", "cli.uri"]))).unwrap();
    assert_eq!(q["kind"], "datasource");
    assert_eq!(q["rows"][0]["value"], "stored");
    assert_eq!(q["rows"][0]["t"], t.hex());
    let s: serde_json::Value = serde_json::from_str(&ok(&hub_cmd(&data, &["sessions"]))).unwrap();
    let session = &s["sessions"][0];
    assert_eq!(session["user"], "alice");
    assert_eq!(session["connected"], true);
    assert_eq!(session["hooks"][0], "alice:cli.uri");

    let out = ok(&hub_cmd(&data, &["kick", "alice"]));
    assert!(out.contains("kicked 1 session(s) of alice"), "{out}");
    ws.expect_close(4403).await;

    let status = served.stop();
    assert_eq!(status.code(), Some(0), "clean stop on SIGTERM");
    assert!(!data.join("hub.json").exists(), "run file removed on stop");
    // The data persists for the next run.
    let users: serde_json::Value =
        serde_json::from_str(&ok(&hub_cmd(&data, &["user", "list"]))).unwrap();
    assert_eq!(users["users"][0], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_tls_takes_admin_commands_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let certs = common::certs::write_test_certs(&dir.path().join("certs"));
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());

    // Bad files: each error names the file; one flag without the other is usage.
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let serve = |c: &str, k: &str| {
        hub_cmd(
            &data,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                c,
                "--tls-key",
                k,
            ],
        )
    };
    fails(
        &serve(missing, key),
        1,
        &format!("cannot read the TLS certificate file {missing}"),
    );
    fails(
        &serve(cert, missing),
        1,
        &format!("cannot read the TLS key file {missing}"),
    );
    fails(
        &serve(key, key),
        1,
        &format!("the TLS certificate file {key} contains no PEM certificate"),
    );
    fails(
        &serve(cert, cert),
        1,
        &format!("the TLS key file {cert} contains no PEM private key"),
    );
    let other_key = dir.path().join("other.key");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    fails(
        &serve(cert, other_key.to_str().unwrap()),
        1,
        &format!(
            "the TLS key {} cannot serve the certificate {cert}",
            other_key.display()
        ),
    );
    fails(
        &hub_cmd(&data, &["serve", "--tls-cert", cert]),
        2,
        "--tls-key",
    );

    // Served with TLS: the commands reach it over TLS through /admin.
    let mut served = Served::start_with(&data, &["--tls-cert", cert, "--tls-key", key]);
    let addr = served.addr();
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("hub.json")).unwrap()).unwrap();
    assert!(run["tls_certificate"].is_string(), "{run}");
    ok(&hub_cmd(&data, &["user", "add", "alice"]));
    let users: serde_json::Value =
        serde_json::from_str(&ok(&hub_cmd(&data, &["user", "list"]))).unwrap();
    assert_eq!(users["users"][0], "alice");
    // Plain HTTP to the TLS port gets no answer from the routes.
    let plain = komlog_hub::http_client::post(
        addr,
        "localhost",
        "/login",
        "application/x-www-form-urlencoded",
        &[],
        Vec::new(),
        WAIT,
    )
    .await;
    assert!(plain.is_err(), "{plain:?}");
    let status = served.stop();
    assert_eq!(status.code(), Some(0), "clean stop on SIGTERM");
}

#[test]
fn a_log_redirected_to_a_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("hub.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut served = Served::start_logging(&data, &[], Stdio::from(file));
    served.addr();
    assert_eq!(served.stop().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("komlog-hub listening"), "{text}");
    assert!(text.contains("SIGTERM: stopping"), "{text}");
    assert!(!text.contains('\x1b'), "ANSI escape codes in {text:?}");
}
