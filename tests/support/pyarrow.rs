//! The Python side of the Arrow interoperability tests
//! (tests/tests/suite/arrow_interop.rs): a venv with pyarrow and pandas from
//! PyPI in `<target>/pyarrow-venv`. `cargo xtask test` builds it beside the
//! main build, so the tests find it ready; a test builds it when missing. A
//! lock file keeps builds that start together (threads or processes) from
//! installing at the same time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The venv's Python, with pyarrow and pandas importable, built in `target`
/// when it is not there yet.
pub fn python_with_pyarrow(target: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    let lock_path = target.join("pyarrow-venv.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("the venv's lock file {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let venv = target.join("pyarrow-venv");
    let python = venv.join("bin").join("python");
    let has_pyarrow = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import pyarrow, pandas"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_pyarrow(&python) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 is needed for the pyarrow venv: {e}"))?;
        if !status.success() {
            return Err(format!(
                "python3 -m venv {} failed ({status})",
                venv.display()
            ));
        }
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "pyarrow", "pandas"])
            .status()
            .map_err(|e| format!("cannot run pip in {}: {e}", venv.display()))?;
        if !status.success() {
            return Err(format!("pip install pyarrow pandas failed ({status})"));
        }
    }
    if has_pyarrow(&python) {
        Ok(python)
    } else {
        Err(format!(
            "pyarrow or pandas is not importable in {}",
            venv.display()
        ))
    }
}
