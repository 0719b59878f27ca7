//! Helpers shared by the unit tests of several modules.

use std::fs;
use std::path::Path;

use crate::model::{Sample, Value};

/// A datapoint sample.
pub fn dp(uri: &str, ts: i64, v: f64) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datapoint(v),
    }
}

/// The sorted file names in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Report a test that cannot run here: `SKIPPED: <reason>` on stderr, past
/// the harness's capture, so a passing run shows it. With
/// `KOMLOGD_TESTS_NO_SKIP` set (CI sets it) a skip is a failure instead.
pub fn skip(reason: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}
