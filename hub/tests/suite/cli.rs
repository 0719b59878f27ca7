//! The `komlog-hub` binary: management commands on a data directory, and the
//! same commands reaching a running `komlog-hub serve` process.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use komlog_protocol::login::PrivateKey;
use komlog_protocol::{Body, DsData, Status, TimeUuid, Uri, UriPayload};

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
fn serve_needs_store_and_bus_together_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let lone_bus = hub_cmd(
        Path::new(data),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bus",
            "nats://127.0.0.1:1",
        ],
    );
    fails(&lone_bus, 2, "serve --store and --bus go together");
    let lone_store = hub_cmd(
        Path::new(data),
        &[
            "--store",
            "postgres://postgres@127.0.0.1:1/test",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    fails(&lone_store, 2, "serve --store and --bus go together");
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

/// `komlog-hub user passwd` and `token add/list/remove`, on a stopped hub and
/// through a running one, and the web API taking what they set.
#[test]
fn web_passwords_and_tokens_from_the_command_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&hub_cmd(&data, &["user", "add", "alice"]));
    let passwd = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
            .arg("--data")
            .arg(&data)
            .args(["user", "passwd"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    fails(&passwd(&["alice"], "x\n"), 1, "--password-stdin");
    fails(
        &passwd(&["alice", "--password-stdin"], "short\n"),
        1,
        "at least 8 characters",
    );
    fails(
        &passwd(&["bob", "--password-stdin"], "long enough\n"),
        1,
        "user bob does not exist",
    );
    let set = passwd(&["alice", "--password-stdin"], "first password\n");
    assert!(ok(&set).contains("set the web password of alice"));
    fails(
        &hub_cmd(&data, &["token", "add", "alice", "bad name"]),
        1,
        "token name",
    );
    let token = ok(&hub_cmd(&data, &["token", "add", "alice", "script"]));
    let token = token.trim().to_owned();
    assert!(token.starts_with("kt_") && token.len() == 67, "{token}");
    fails(
        &hub_cmd(&data, &["token", "add", "alice", "script"]),
        1,
        "already has a token named \"script\"",
    );
    let list = ok(&hub_cmd(&data, &["token", "list", "alice"]));
    assert!(
        list.contains("\"name\": \"script\"") && !list.contains(&token[3..]),
        "{list}"
    );

    // Through a running hub: the password set before works, a new one replaces it.
    let mut served = Served::start(&data);
    let addr = served.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let login = |password: &str| {
        let body = serde_json::json!({"user": "alice", "password": password});
        rt.block_on(komlog_hub::http_client::request(
            addr,
            "POST",
            "/api/v1/login",
            &[("content-type", "application/json".to_owned())],
            body.to_string().into_bytes(),
            WAIT,
        ))
        .unwrap()
        .status
    };
    let me = |token: &str| {
        rt.block_on(komlog_hub::http_client::request(
            addr,
            "GET",
            "/api/v1/me",
            &[("authorization", format!("Bearer {token}"))],
            Vec::new(),
            WAIT,
        ))
        .unwrap()
        .status
    };
    assert_eq!(login("first password"), 200);
    assert_eq!(me(&token), 200);
    ok(&passwd(&["alice", "--password-stdin"], "second password\n"));
    assert_eq!(login("first password"), 401);
    assert_eq!(login("second password"), 200);
    let revoked = ok(&hub_cmd(&data, &["token", "remove", "alice", "script"]));
    assert!(
        revoked.contains("revoked token \"script\" of alice"),
        "{revoked}"
    );
    assert_eq!(me(&token), 401);
    fails(
        &hub_cmd(&data, &["token", "remove", "alice", "script"]),
        1,
        "no token named \"script\"",
    );
    ok(&hub_cmd(&data, &["user", "passwd", "alice", "--clear"]));
    assert_eq!(login("second password"), 401);
    served.stop();
}
