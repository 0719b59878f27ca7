//! Waiting for a child process, always with a bound. Shared by the test support
//! crate (`komlogd-tests`) and the integration tests of `host/` and `hub/`,
//! which include this file with `#[path]`; it uses nothing but std.

#![allow(dead_code)]

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// SIGTERM.
pub const SIGTERM: i32 = 15;

/// Poll `child` until it exits; `None` when it still runs after `limit`.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait up to `limit` for `child` to exit; otherwise kill it, reap it and fail
/// naming `what`.
pub fn wait_or_kill(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    match wait_within(child, limit) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}, killed");
        }
    }
}

/// Send `signal` to `child`.
pub fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("a pid fits an i32");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { kill(pid, signal) };
}

/// SIGTERM, then wait up to `limit`; `None` when it still runs (it is left
/// running).
pub fn terminate(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    signal(child, SIGTERM);
    wait_within(child, limit)
}

/// Poll until `path` exists (a process's socket or file), every 20 ms, at
/// most `limit`; past it, kill `child` and panic naming the path.
pub fn wait_for_path(child: &mut Child, path: &std::path::Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not appear within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
