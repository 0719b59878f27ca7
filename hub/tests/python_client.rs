//! The real Python agent, komlogd 0.12.0 from PyPI, unmodified, against a real
//! `komlog-hub serve` process on 127.0.0.1.
//!
//! Recipe (everything is installed by the test; a failing step fails the test):
//!
//! 1. Python: pyenv's 3.6.15 (`$PYENV_ROOT`, else `$(pyenv root)`, else
//!    `~/.pyenv`, then `/versions/3.6.15/bin/python`); komlogd 0.12.0 runs only
//!    on 3.5/3.6.
//! 2. A venv with komlogd 0.12.0, cached as `target/tmp/komlogd-py36`
//!    (`tests/support/py36.rs` has the recipe; `cargo xtask test` builds it
//!    beside the main build, and this test when it is missing).
//! 3. The URLs: komlogd hard-codes https://www.komlog.io/login and
//!    https://agents.komlog.io/. `tests/python/sitecustomize.py`, put on
//!    `PYTHONPATH`, rewrites those two constants in the code of
//!    `KomlogSession._auth` and `_ws_connect` when `komlogd.api.session` is
//!    imported, from `KOMLOG_HUB_LOGIN_URL` / `KOMLOG_HUB_WS_URL`. The hub is
//!    reached as `localhost`, not `127.0.0.1`: aiohttp's default cookie jar
//!    ignores cookies from an IP-address host. The hub's cookie has no `Secure`
//!    flag, so it is sent over plain http.
//! 4. The agent's configuration directory is cached as
//!    `target/tmp/komlogd-py36-agent`: its first run creates `key.priv`/`key.pub`
//!    (and stops asking for a username); the key is registered with
//!    `komlog-hub agent add hubtester --pubkey key.pub`. Its `.venvs/default`,
//!    the package virtualenv komlogd builds itself, is kept between runs;
//!    `PIP_CONSTRAINT` gives that build the same constraints.
//! 5. A transfer method of the test's own (`tests/python/hubtest_tm`, a setuptools
//!    package with a `komlogd.package` entry point) is installed by komlogd from
//!    a `- package:` block; it hooks `hubtest.in` and writes `hubtest.out` =
//!    value + 1.
//!
//! Checks: a stdin upload (`echo … | komlogd -u hubtest.stdin`) is stored by the
//! hub; the package's session hooks `hubtest.in`; a stdin upload to `hubtest.in`
//! makes the hub notify it and its transfer method's write of `hubtest.out`
//! arrives; `komlog-hub kick` (close code 4403) makes the agent log in again
//! (a new session re-hooks `hubtest.in`). After a re-login komlogd 0.12.0 stops
//! reading its socket (spec §14.1), so nothing is checked after that.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../../tests/support/child.rs"]
mod child;
#[path = "../../tests/support/part.rs"]
mod part;
#[path = "../../tests/support/py36.rs"]
mod py36;
use part::part;

const USER: &str = "hubtester";
fn tmp_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Run a command to completion within `limit`; panics (with its output) on a
/// timeout or when `expect_success` and it fails.
fn run(cmd: &mut Command, limit: Duration, what: &str, expect_success: bool) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            kill(pid, 9);
            panic!("{what}: no result within {limit:?}: {cmd:?}");
        }
    };
    if expect_success && !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn kill(pid: u32, sig: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on a child process this test started.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// A background process killed when dropped; its output goes to files.
struct Background {
    child: Child,
    name: &'static str,
    stderr: PathBuf,
}

impl Background {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Background {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Background {
            child,
            name,
            stderr,
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited early ({status}); stderr:\n{}",
                self.name,
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }

    /// SIGTERM, then wait up to `limit`; returns whether it stopped by itself.
    fn terminate(&mut self, limit: Duration) -> bool {
        child::terminate(&mut self.child, limit).is_some()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Hub {
    data: PathBuf,
}

impl Hub {
    fn cmd(&self, args: &[&str]) -> serde_json::Value {
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
                .arg("--data")
                .arg(&self.data)
                .args(args),
            Duration::from_secs(60),
            "komlog-hub",
            true,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    }

    fn newest(&self, uri: &str) -> Option<(String, String)> {
        let q = self.cmd(&["query", USER, uri, "-n", "1"]);
        let row = q["rows"].get(0)?;
        Some((
            row["t"].as_str()?.to_owned(),
            // A datapoint's value is a JSON number (its exact decimal), a
            // datasource's a string.
            match &row["value"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            },
        ))
    }

    fn sessions(&self) -> Vec<serde_json::Value> {
        self.cmd(&["sessions"])["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Poll `f` every `every` until it gives `Some`, at most until `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
    on_timeout: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                on_timeout()
            );
        }
        std::thread::sleep(every);
    }
}

fn hooked_sids(sessions: &[serde_json::Value], metric: &str) -> Vec<String> {
    sessions
        .iter()
        .filter(|s| {
            ["hooks", "pending"].iter().any(|k| {
                s[k].as_array()
                    .is_some_and(|a| a.iter().any(|h| h.as_str() == Some(metric)))
            })
        })
        .filter_map(|s| s["sid"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn python_komlogd_0_12_works_against_the_hub() {
    let tmp = tmp_root();
    std::fs::create_dir_all(&tmp).unwrap();
    let constraints = py36::constraints(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let venv = py36::komlogd_venv(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let komlogd = venv.join("bin/komlogd");
    let run_dir = tempfile::tempdir().unwrap();
    let log_dir = run_dir.path().join("log");
    let log_file = log_dir.join("komlogd.log");
    let show_log = || {
        format!(
            "komlogd log ({}):\n{}",
            log_file.display(),
            std::fs::read_to_string(&log_file).unwrap_or_default()
        )
    };

    // The agent's configuration directory; its first run creates the key pair.
    let agent_dir = tmp.join("komlogd-py36-agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let config = agent_dir.join("komlogd.yaml");
    let logging_block = format!(
        "- logging:\n    level: DEBUG\n    rotation: no\n    dirname: {}\n    filename: komlogd.log\n",
        log_dir.display()
    );
    if !agent_dir.join("key.pub").exists() {
        part("komlogd's first run writes its key pair", || {
            std::fs::write(&config, &logging_block).unwrap();
            let out = run(
                Command::new(&komlogd)
                    .arg("-c")
                    .arg(&config)
                    .stdin(Stdio::null()),
                Duration::from_secs(120),
                "komlogd first run",
                true,
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("Set username in configuration file."),
                "{stderr}"
            );
            assert!(
                agent_dir.join("key.pub").exists(),
                "the first run writes key.pub"
            );
        });
    }

    // The hub, serving plain HTTP on 127.0.0.1, reached as localhost.
    let hub = Hub {
        data: run_dir.path().join("hub-data"),
    };
    let mut hub_process = Background::spawn(
        "komlog-hub",
        Command::new(env!("CARGO_BIN_EXE_komlog-hub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&hub.data),
        run_dir.path(),
    );
    let port = part("the hub starts and registers the agent's key", || {
        let port = wait_for(
            "the hub's run file",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                hub_process.assert_running();
                let text = std::fs::read_to_string(hub.data.join("hub.json")).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                v["listen"].as_str()?.parse::<std::net::SocketAddr>().ok()
            },
            String::new,
        )
        .port();
        hub.cmd(&["user", "add", USER]);
        let pubkey = agent_dir.join("key.pub");
        let registered = hub.cmd(&["agent", "add", USER, "--pubkey", pubkey.to_str().unwrap()]);
        assert!(
            registered.to_string().contains("registered agent"),
            "{registered}"
        );
        port
    });

    // The configuration: the user, the log, and the test's package.
    let package_src = run_dir.path().join("hubtest_tm");
    copy_dir(&python_dir().join("hubtest_tm"), &package_src);
    std::fs::write(
        &config,
        format!(
            "- username: {USER}\n{logging_block}- package:\n    install: {}\n    enabled: yes\n    venv: default\n",
            package_src.display()
        ),
    )
    .unwrap();
    let agent = |cmd: &mut Command| {
        cmd.arg("-c")
            .arg(&config)
            .env("PYTHONPATH", python_dir())
            .env(
                "KOMLOG_HUB_LOGIN_URL",
                format!("http://localhost:{port}/login"),
            )
            .env("KOMLOG_HUB_WS_URL", format!("http://localhost:{port}/"))
            .env("PIP_CONSTRAINT", &constraints)
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONHOME");
    };
    let upload = |uri: &str, text: &str| {
        let mut cmd = Command::new(&komlogd);
        agent(&mut cmd);
        cmd.args(["-u", uri]).stdin(Stdio::piped());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start komlogd -u");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(o) => o.unwrap(),
            Err(_) => {
                kill(pid, 9);
                panic!("komlogd -u {uri} did not finish\n{}", show_log());
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // komlogd exits 0 even on errors (spec §1.3): its stderr tells.
        assert!(
            out.status.success() && !stderr.contains("Error"),
            "komlogd -u {uri}: {}\n{stderr}\n{}",
            out.status,
            show_log()
        );
    };

    // 1. A stdin upload is stored.
    part("1. a stdin upload is stored", || {
        upload("hubtest.stdin", "hello from komlogd 0.12\nline two\n");
        let (_, value) = hub.newest("hubtest.stdin").expect("hubtest.stdin stored");
        assert_eq!(value, "hello from komlogd 0.12\nline two\n");
    });

    // 2. The agent with the package: its package session hooks hubtest.in.
    //    The first run builds .venvs/default (minutes); later runs reuse it.
    let mut daemon = {
        let mut cmd = Command::new(&komlogd);
        agent(&mut cmd);
        Background::spawn("komlogd", &mut cmd, run_dir.path())
    };
    let metric = format!("{USER}:hubtest.in");
    let first_sids = part("2. the package's session hooks hubtest.in", || {
        wait_for(
            "the package's transfer method to hook hubtest.in",
            Duration::from_secs(1500),
            Duration::from_secs(1),
            || {
                daemon.assert_running();
                let sids = hooked_sids(&hub.sessions(), &metric);
                (!sids.is_empty()).then_some(sids)
            },
            show_log,
        )
    });

    // 3. A sample to hubtest.in: the hub notifies the hooked session, the
    //    transfer method writes hubtest.out = 41 + 1 at the same time.
    part("3. a notification runs the transfer method", || {
        upload("hubtest.in", "41\n");
        let (t_in, _) = hub.newest("hubtest.in").expect("hubtest.in stored");
        let (t_out, value) = wait_for(
            "the transfer method's hubtest.out",
            Duration::from_secs(120),
            Duration::from_millis(500),
            || hub.newest("hubtest.out"),
            show_log,
        );
        assert_eq!((t_out.as_str(), value.as_str()), (t_in.as_str(), "42"));
    });

    // 4. A kick (close code 4403) makes the agent log in again: after its fixed
    //    15 s pause, a new session re-hooks hubtest.in.
    part(
        "4. after a kick the agent logs in again and re-hooks",
        || {
            let kicked = hub.cmd(&["kick", USER]);
            assert!(kicked.to_string().contains("kicked"), "{kicked}");
            assert!(
                hub.sessions().is_empty(),
                "every session of {USER} was kicked"
            );
            let new_sids = wait_for(
                "komlogd to log in again and re-hook",
                Duration::from_secs(120),
                Duration::from_secs(1),
                || {
                    daemon.assert_running();
                    let sids = hooked_sids(&hub.sessions(), &metric);
                    (!sids.is_empty()).then_some(sids)
                },
                show_log,
            );
            assert!(
                new_sids.iter().all(|s| !first_sids.contains(s)),
                "new sessions"
            );
        },
    );

    // Stop the agent (it stops its package process) and the hub.
    if !daemon.terminate(Duration::from_secs(40)) {
        eprintln!("komlogd did not stop on SIGTERM within 40 s; killing it");
    }
    assert!(
        hub_process.terminate(Duration::from_secs(20)),
        "the hub stops on SIGTERM"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
