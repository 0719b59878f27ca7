//! The hub's web page in a real headless Chromium (`/usr/bin/chromium`, or
//! `$CHROMIUM`), driven by playwright-core through `hub/web/e2e/flows.mjs`,
//! against a real `komlog-hub serve` and a real `komlogd` agent connected to
//! it (the helpers of [`crate::connected`]). The flows: a wrong password
//! refused with the API's message, then the right one; the tree and its
//! filter; the chart drawing every uploaded point; a sample uploaded through
//! the agent appearing on the open chart within a second; a datasource text
//! that holds markup shown literally, with no script run; its neighbours and
//! what it supplies; CSV and JSON exports equal to what the store holds; the
//! agents page (add a key, revoke it); a share seen by a second user, then
//! gone after revocation; log out. Screenshots of each page go to
//! `target/web-screenshots/`.
//!
//! The same harness runs the main flows in Firefox ESR
//! (`/usr/bin/firefox-esr`, or `$FIREFOX`) through `hub/web/e2e/firefox.mjs`,
//! driven by puppeteer-core over WebDriver BiDi; its screenshots are the
//! `firefox-*.png` ones.
//!
//! The script asks for what only this side can do (`need upload host.cpu`,
//! `need check-export PATH`) on its stdout and waits for `done` on its stdin.

use crate::common;
use crate::connected::{Agent, Hub, eventually, hub_bin, now_us};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const ALICE_PASSWORD: &str = "alice's web password";
const BOB_PASSWORD: &str = "bob's web password";

/// Report a test that cannot run here: `SKIPPED: <reason>` on stderr; with
/// `KOMLOGD_TESTS_NO_SKIP` set (CI sets it) a skip is a failure instead.
fn skip(reason: &str) {
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

/// The target directory (`<target>/<profile>/komlogd`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_komlogd"))
        .ancestors()
        .nth(2)
        .expect("the target directory")
        .to_owned()
}

fn set_password(hub: &Hub, user: &str, password: &str) {
    let mut child = Command::new(hub_bin())
        .arg("--data")
        .arg(&hub.data)
        .args(["user", "passwd", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(
        child.wait().unwrap().success(),
        "komlog-hub user passwd {user}"
    );
}

/// The pinned tools of `hub/web/package.json` (playwright-core, puppeteer-core)
/// in `hub/web/node_modules`, from the committed lock: `npm ci` unless each
/// devDependency is installed at its pinned version. Under a lock file, so that
/// the Chromium and the Firefox test, run at once by nextest, do not run
/// `npm ci` together or one under the other's running script.
fn npm_ci(web: &Path) {
    let lock = std::fs::File::create(target_dir().join("web-npm-ci.lock")).unwrap();
    lock.lock().unwrap();
    let manifest: Json =
        serde_json::from_str(&std::fs::read_to_string(web.join("package.json")).unwrap()).unwrap();
    let installed = manifest["devDependencies"]
        .as_object()
        .expect("devDependencies in hub/web/package.json")
        .iter()
        .all(|(name, version)| {
            std::fs::read_to_string(web.join("node_modules").join(name).join("package.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Json>(&t).ok())
                .is_some_and(|p| p["version"] == *version)
        });
    if installed {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .env("PUPPETEER_SKIP_DOWNLOAD", "1")
        .status()
        .expect("npm");
    assert!(status.success(), "npm ci in {}", web.display());
}

/// `(time_us, value)` of each row of an export, oldest first.
fn exported(path: &Path) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "csv") {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("time_us,time,value"), "{text}");
        lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 3, "{l}");
                (f[0].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect()
    } else {
        let json: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(json["more"], false, "{text}");
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["t"].as_i64().unwrap(), r["value"].as_f64().unwrap()))
            .collect()
    }
}

#[test]
fn the_page_logs_in_plots_live_reads_texts_exports_and_shares() {
    if let Some(chromium) = browser("CHROMIUM", "/usr/bin/chromium", "chromium chromium-driver") {
        page_flows("flows", ("CHROMIUM", &chromium));
    }
}

/// The main flows in Firefox ESR (`/usr/bin/firefox-esr`, or `$FIREFOX`),
/// driven by puppeteer-core over WebDriver BiDi through
/// `hub/web/e2e/firefox.mjs`: the refused and the accepted login, the tree,
/// the chart (by keyboard), the live sample within a second, the datasource
/// text shown literally, the CSV and JSON exports (real downloads), the UTC
/// toggle, a phone-width screenshot and log out.
#[test]
fn the_page_works_in_firefox() {
    if let Some(firefox) = browser("FIREFOX", "/usr/bin/firefox-esr", "firefox-esr") {
        page_flows("firefox", ("FIREFOX", &firefox));
    }
}

/// The browser named by `$var`, or `default`, when it and node are installed;
/// otherwise a [`skip`].
fn browser(var: &str, default: &str, packages: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into());
    if !path.exists() {
        skip(&format!(
            "no browser at {} (${var}; apt-get install {packages})",
            path.display()
        ));
        return None;
    }
    if Command::new("node").arg("--version").output().is_err() {
        skip("node is not installed");
        return None;
    }
    Some(path)
}

/// Runs `hub/web/e2e/<script>.mjs` with the browser `(variable, path)` against
/// a hub with alice's uploads and her connected agent, answering the script's
/// `need` lines and checking the exports it hands back. Its stderr goes to
/// `target/web-screenshots/<script>.stderr`.
fn page_flows(script: &str, (browser_var, browser): (&str, &Path)) {
    let web = common::repo_root().join("hub/web");
    npm_ci(&web);

    let root = tempfile::tempdir().unwrap();
    let mut hub = Hub::new(root.path());
    for (user, password) in [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)] {
        hub.cmd(&["user", "add", user]);
        set_password(&hub, user, password);
    }
    hub.start();
    // host.log, a datasource written by the test, supplies host.cpu.
    let extra = "- job:\n    uri: host.log\n    command: 'true'\n    schedule: '0 0 1 1 *'\n    supplies: [host.cpu]\n";
    let mut agent = Agent::new(root.path(), "alice", &hub, extra);
    agent.start();
    agent.wait_connected(1);

    let now = now_us();
    let mut expected: Vec<(i64, f64)> = [1.5, 2.0, -3.25, 4.0, 10.0]
        .into_iter()
        .enumerate()
        .map(|(i, v)| (now - (600 - 60 * i as i64) * 1_000_000, v))
        .collect();
    for &(t, v) in &expected {
        agent.upload("host.cpu", t, v);
    }
    // A second metric, for two uris on one chart and stacked charts.
    for (t, v) in [(now - 500_000_000, 3.0), (now - 200_000_000, 4.0)] {
        agent.upload("host.mem", t, v);
    }
    let texts = [
        "Filesystem 1K-blocks Used\n/dev/root 100 40".to_owned(),
        "<script>window.__xss=1</script>\n<img src=x onerror=\"window.__xss=1\"> & &amp; done"
            .to_owned(),
    ];
    agent.upload_text("host.log", now - 300_000_000, &texts[0]);
    agent.upload_text("host.log", now - 120_000_000, &texts[1]);
    eventually(
        "the hub to hold the uploads",
        Duration::from_secs(30),
        || {
            (hub.values("alice", "host.cpu").len() == expected.len()
                && hub.values("alice", "host.log").len() == texts.len()
                && hub.values("alice", "host.mem").len() == 2)
                .then_some(())
        },
    );

    let spare = root.path().join("spare");
    std::fs::create_dir_all(&spare).unwrap();
    komlogd::keys::load_or_create(&spare.join("key.priv")).expect("key pair");
    let spare_key = std::fs::read_to_string(spare.join("key.pub")).unwrap();

    let out = target_dir().join("web-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let stderr_path = out.join(format!("{script}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let started = std::time::Instant::now();
    let mut flows = Command::new("node")
        .arg(web.join(format!("e2e/{script}.mjs")))
        .env("KOMLOG_WEB_URL", hub.url())
        .env("KOMLOG_WEB_USER", "alice")
        .env("KOMLOG_WEB_PASSWORD", ALICE_PASSWORD)
        .env("KOMLOG_WEB_USER2", "bob")
        .env("KOMLOG_WEB_PASSWORD2", BOB_PASSWORD)
        .env("KOMLOG_WEB_POINTS", expected.len().to_string())
        .env("KOMLOG_WEB_TEXTS", serde_json::to_string(&texts).unwrap())
        .env("KOMLOG_WEB_NEW_KEY", spare_key.trim())
        .env("KOMLOG_WEB_OUT", &out)
        .env(browser_var, browser)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("node");
    let mut answer = flows.stdin.take().unwrap();
    let mut passed = false;
    for line in BufReader::new(flows.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        eprintln!("{script}: {line}");
        if line == "all flows passed" {
            passed = true;
        } else if line == "need upload host.cpu" {
            let t = now_us();
            agent.upload("host.cpu", t, 7.5);
            expected.push((t, 7.5));
            writeln!(answer, "done").unwrap();
        } else if let Some(path) = line.strip_prefix("need check-export ") {
            let rows = exported(Path::new(path));
            assert_eq!(rows, expected, "{path}");
            // And what the store holds, read by the hub's own query command.
            let stored: Vec<f64> = hub
                .values("alice", "host.cpu")
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
            let values: Vec<f64> = rows.iter().map(|r| r.1).collect();
            assert_eq!(values, stored, "{path}");
            writeln!(answer, "done").unwrap();
        }
    }
    let status = flows.wait().unwrap();
    let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success() && passed,
        "the browser flows of {script}.mjs failed ({status}):\n{errors}\nscreenshots in {}",
        out.display()
    );
    eprintln!(
        "{script}: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    agent.stop();
}
