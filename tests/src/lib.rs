//! Shared helpers for the integration tests: where the real guest components are,
//! and throwaway agent directories with a komlogd.yaml.

use std::path::{Path, PathBuf};

use komlogd::agent::{Agent, AgentOptions};
use komlogd::config::Config;
use komlogd::model::{Sample, Value};

/// Waiting for a child process, with a bound (shared with `host/` and `hub/`).
#[path = "../support/child.rs"]
pub mod child;

/// The directory holding the guests built from `examples/` by this crate's build script.
pub fn guests_dir() -> PathBuf {
    PathBuf::from(env!("KOMLOG_GUESTS_DIR"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("KOMLOG_REPO_ROOT"))
}

/// Path of a guest component by crate name (`threshold`, `wrong-world`, …).
pub fn guest(name: &str) -> PathBuf {
    rust_guests::guest_in(&guests_dir(), name)
}

/// The guests' build and names, shared with the build script and `host/tests`.
#[allow(dead_code)] // the build itself is the build script's
#[path = "../support/rust_guests.rs"]
pub mod rust_guests;

/// The languages whose examples are built besides Rust (`examples/<lang>/`).
pub const OTHER_LANGUAGES: [&str; 3] = ["python", "js", "c"];

/// Path of an example built in another language: `lang` is `python`, `js` or
/// `c`, `name` is `summary` or `threshold`.
pub fn lang_guest(lang: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("KOMLOG_LANG_GUESTS_DIR"))
        .join(lang)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "the {lang} example {name} was not built: {} (see examples/{lang}/build.sh)",
        path.display()
    );
    path
}

/// Path of the example `name` in `lang`, Rust included (`rust`).
pub fn example_in(lang: &str, name: &str) -> PathBuf {
    if lang == "rust" {
        guest(name)
    } else {
        lang_guest(lang, name)
    }
}

/// A compiled-module cache shared by every test, so each guest compiles once per run.
pub fn shared_cache() -> PathBuf {
    repo_root().join("target").join("test-compiled-cache")
}

/// A throwaway agent directory with its komlogd.yaml.
pub struct AgentDir {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl AgentDir {
    /// A new directory whose komlogd.yaml is `yaml`, where `{guest:NAME}` is
    /// replaced by the path of that guest.
    pub fn new(yaml: &str) -> Self {
        Self::with_dir(tempfile::tempdir().expect("temp dir"), yaml)
    }

    /// Like [`AgentDir::new`], in a directory made under `parent` (e.g. a tmpfs,
    /// where fsync costs nothing).
    pub fn new_in(parent: &Path, yaml: &str) -> Self {
        Self::with_dir(tempfile::tempdir_in(parent).expect("temp dir"), yaml)
    }

    fn with_dir(dir: tempfile::TempDir, yaml: &str) -> Self {
        let agent = AgentDir { dir };
        agent.write_config(yaml);
        agent
    }

    /// Replace the configuration.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), expand(yaml)).expect("write komlogd.yaml");
    }

    /// Path of komlogd.yaml.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("komlogd.yaml")
    }

    /// Parse the configuration (panics with the errors if invalid).
    pub fn config(&self) -> Config {
        Config::load(&self.config_path()).unwrap_or_else(|e| panic!("config: {e}"))
    }

    /// Open an agent on it with the shared compiled cache.
    pub fn open(&self) -> Agent {
        Agent::open_with(
            &self.config(),
            &AgentOptions {
                cache_dir: Some(shared_cache()),
                ..AgentOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("agent: {e}"))
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Replace `{guest:NAME}` placeholders by guest paths.
pub fn expand(yaml: &str) -> String {
    let mut out = String::new();
    let mut rest = yaml;
    while let Some(start) = rest.find("{guest:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 7..];
        let end = after.find('}').expect("unclosed {guest:");
        out.push_str(&guest(&after[..end]).display().to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A datapoint sample.
pub fn dp(uri: &str, ts: i64, v: f64) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datapoint(v),
    }
}

/// A datasource sample.
pub fn ds(uri: &str, ts: i64, text: &str) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datasource(text.into()),
    }
}

/// The counters of the impulse `name` of an in-process agent.
pub fn impulse_stats(agent: &Agent, name: &str) -> komlogd::impulses::ImpulseStats {
    agent
        .dispatcher
        .stats()
        .into_iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no impulse {name}"))
}

/// An agent running its daemon loop (jobs, hot reload, control socket) on a
/// thread of its own, fed by the test through its inbox and observed through
/// its stats board and output tap.
pub struct RunningAgent {
    /// Sends samples and changes to the dispatcher.
    pub inbox: komlogd::impulses::Inbox,
    /// Live stats of every impulse.
    pub board: komlogd::impulses::StatsBoard,
    /// Every stored impulse output, in commit order.
    pub tap: std::sync::mpsc::Receiver<komlogd::impulses::Tapped>,
    /// The agent's engine (for loading module versions beside the reloader).
    pub engine: komlogd::engine::Engine,
    /// The state of its packages.
    pub packages: komlogd::packages::PackageBoard,
    /// What its hot reload has handled.
    pub reload: komlogd::agent::reload::ReloadStats,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<komlogd::agent::daemon::RunSummary>>,
}

impl RunningAgent {
    /// Open the agent of `dir` and start it; every impulse must load.
    pub fn start(dir: &AgentDir) -> RunningAgent {
        Self::launch(dir, false)
    }

    /// Like [`RunningAgent::start`], but impulses may fail to load.
    pub fn start_allowing_load_errors(dir: &AgentDir) -> RunningAgent {
        Self::launch(dir, true)
    }

    fn launch(dir: &AgentDir, allow_load_errors: bool) -> RunningAgent {
        let config = dir.config();
        let mut agent = dir.open();
        assert!(
            allow_load_errors || agent.load_errors.is_empty(),
            "load errors: {:?}",
            agent.load_errors
        );
        let (tap_tx, tap) = std::sync::mpsc::channel();
        agent.dispatcher.set_tap(tap_tx);
        let inbox = agent.dispatcher.inbox();
        let board = agent.dispatcher.board();
        let engine = agent.engine.clone();
        let packages = agent.packages.clone();
        let reload = agent.reload.clone();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let clock = std::sync::Arc::new(komlogd::sources::jobs::SystemClock);
            runtime.block_on(komlogd::agent::daemon::run(agent, &config, clock, shutdown))
        });
        // The control socket appears once the daemon is up (watching included).
        let socket = komlogd::agent::status::control_socket_path(dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline && !thread.is_finished(),
                "the agent did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        RunningAgent {
            inbox,
            board,
            tap,
            engine,
            packages,
            reload,
            stop,
            thread: Some(thread),
        }
    }

    /// The stats of impulse `name` now.
    pub fn stats(&self, name: &str) -> komlogd::impulses::ImpulseStats {
        self.board
            .snapshot()
            .into_iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no impulse {name} running"))
    }

    /// Wait (up to `limit`) until `check` holds for the stats of `name`.
    pub fn wait_for(
        &self,
        name: &str,
        limit: std::time::Duration,
        check: impl Fn(&komlogd::impulses::ImpulseStats) -> bool,
    ) -> komlogd::impulses::ImpulseStats {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let found = self
                .board
                .snapshot()
                .into_iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, s)| s);
            if let Some(s) = &found
                && check(s)
            {
                return s.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "impulse {name}: condition not met within {limit:?}; last stats: {found:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Stop the agent (it finishes every queued fire) and return its summary.
    pub fn stop(mut self) -> komlogd::agent::daemon::RunSummary {
        let _ = self.stop.send(true);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the agent thread panicked")
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Report a test (or a check) that cannot run here: `SKIPPED: <reason>` on
/// stderr, past the harness's capture, so a passing run shows it. With
/// `KOMLOGD_TESTS_NO_SKIP` set (CI sets it) a skip is a failure instead.
pub fn skip(reason: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Poll `check` every 10 ms until it holds; fail naming `what` after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Replace `dest` by a copy of `src` the way an editor does: write a temporary
/// file beside it, then rename it over.
pub fn replace_file(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp-write");
    std::fs::copy(src, &tmp).expect("copy to temporary file");
    std::fs::rename(&tmp, dest).expect("rename over the destination");
}

/// Resident set size of this process, bytes (Linux: `VmRSS` of /proc/self/status).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// Run `f` with this thread's log lines (komlogd's `tracing` events at info
/// and up, formatted without colours) captured; returns `f`'s result and the
/// lines. Only events emitted on this thread are seen.
pub fn capture_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text =
        String::from_utf8_lossy(&lines.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    (out, text)
}

/// `bytes` of a component with a custom section `name` appended: another
/// module version (another hash) that behaves the same.
pub fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}
