//! The Python side of komlog-hub's compatibility test (hub/tests/python_client.rs):
//! pyenv's Python 3.6.15 and a venv with the real komlogd 0.12.0 from PyPI,
//! cached as `target/tmp/komlogd-py36`. `cargo xtask test` builds the venv beside
//! the main build, so the test finds it ready; the test builds it when missing.
//!
//! The recipe: `python -m venv`, `pip install 'pip<22'`, then
//! `pip install -c constraints.txt komlogd==0.12.0`. The constraints keep aiohttp
//! 2.x (komlogd calls `send_str` without `await`, which only works on aiohttp 2)
//! and its era's dependencies, and `cryptography<3.4` (3.3.2 has a manylinux1
//! wheel that the package venv's old pip 18.1 can install).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Python komlogd 0.12.0 runs on (3.5 and 3.6 only).
pub const PYTHON_VERSION: &str = "3.6.15";

/// pip constraints for komlogd 0.12.0's dependencies.
pub const CONSTRAINTS: &str =
    "aiohttp<3\nasync-timeout<3\nmultidict<5\nyarl<1.2\nchardet<4\ncryptography<3.4\n";

/// pyenv's Python 3.6.15: under `$PYENV_ROOT`, else `pyenv root`, else `~/.pyenv`.
pub fn python36() -> Result<PathBuf, String> {
    let root = match std::env::var_os("PYENV_ROOT") {
        Some(r) => PathBuf::from(r),
        None => match Command::new("pyenv").arg("root").output() {
            Ok(out) if out.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".pyenv"),
        },
    };
    let python = root
        .join("versions")
        .join(PYTHON_VERSION)
        .join("bin/python");
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "{} is missing: komlogd 0.12.0 needs Python 3.5/3.6 (`pyenv install {PYTHON_VERSION}`)",
            python.display()
        ))
    }
}

/// The constraints file in `tmp` (written), for `pip install -c` and `PIP_CONSTRAINT`.
pub fn constraints(tmp: &Path) -> Result<PathBuf, String> {
    let path = tmp.join("komlogd-py36-constraints.txt");
    std::fs::create_dir_all(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::write(&path, CONSTRAINTS).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The venv with komlogd 0.12.0 in `tmp`, built when missing or incomplete.
pub fn komlogd_venv(tmp: &Path) -> Result<PathBuf, String> {
    let venv = tmp.join("komlogd-py36");
    let ready = venv.join(".komlogd-0.12.0-ready");
    if ready.exists() && venv.join("bin/komlogd").exists() {
        return Ok(venv);
    }
    let constraints = constraints(tmp)?;
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&venv);
    let python = python36()?;
    run(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(300),
        "create the venv",
        tmp,
    )?;
    let vpy = venv.join("bin/python");
    run(
        Command::new(&vpy).args(["-m", "pip", "install", "-q", "pip<22"]),
        Duration::from_secs(600),
        "pip install pip<22",
        tmp,
    )?;
    run(
        Command::new(&vpy)
            .args(["-m", "pip", "install", "-q", "-c"])
            .arg(&constraints)
            .arg("komlogd==0.12.0"),
        Duration::from_secs(1200),
        "pip install komlogd==0.12.0",
        tmp,
    )?;
    std::fs::write(&ready, "").map_err(|e| format!("{}: {e}", ready.display()))?;
    eprintln!("built {} in {:?}", venv.display(), started.elapsed());
    Ok(venv)
}

/// Run `cmd` to success within `limit`, its output in a file of `tmp` (shown on failure).
fn run(cmd: &mut Command, limit: Duration, what: &str, tmp: &Path) -> Result<(), String> {
    let log = tmp.join("komlogd-py36-build.log");
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: no result within {limit:?}: {cmd:?}"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({status}): {cmd:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }
}
