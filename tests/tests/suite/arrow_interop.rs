//! The window the host builds is standard Arrow: pyarrow (an independent
//! implementation) reads it with the documented schema and values.
//!
//! The test installs pyarrow from PyPI into `target/pyarrow-venv` on first use
//! (`python3 -m venv` + `pip install pyarrow`); it needs python3 with venv.

use std::path::PathBuf;
use std::process::Command;

use komlogd::impulses::window::WindowEncoder;
use komlogd::model::Value;
use komlogd_tests::repo_root;
use serde_json::{Value as Json, json};

/// A Python with pyarrow, installed once per checkout.
fn python_with_pyarrow() -> PathBuf {
    let venv = repo_root().join("target").join("pyarrow-venv");
    let python = venv.join("bin").join("python");
    let has_pyarrow = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import pyarrow"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !has_pyarrow(&python) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for this test");
        assert!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "pyarrow"])
            .status()
            .expect("pip");
        assert!(status.success(), "pip install pyarrow failed");
    }
    assert!(
        has_pyarrow(&python),
        "pyarrow is not importable in {}",
        venv.display()
    );
    python
}

const READER: &str = r#"
import json, sys
import pyarrow as pa
with open(sys.argv[1], 'rb') as f:
    reader = pa.ipc.open_stream(f)
    table = reader.read_all()
schema = [[f.name, str(f.type), f.nullable] for f in table.schema]
ts = table.column('ts').cast(pa.int64()).to_pylist()
rows = [[u, t, d, s] for u, t, d, s in zip(table.column('uri').to_pylist(), ts,
        table.column('datapoint').to_pylist(), table.column('datasource').to_pylist())]
print(json.dumps({"schema": schema, "rows": rows, "batches": len(table.to_batches())}))
"#;

fn read_with_pyarrow(python: &PathBuf, bytes: &[u8]) -> Json {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("window.arrows");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(python)
        .args(["-c", READER])
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from python")
}

#[test]
fn pyarrow_reads_host_windows() {
    let python = python_with_pyarrow();
    let mut encoder = WindowEncoder::new();
    encoder.push("cpu.system", 1_700_000_000_000_000, &Value::Datapoint(12.5));
    encoder.push(
        "cpu.system",
        1_700_000_060_000_001,
        &Value::Datapoint(-0.25),
    );
    encoder.push(
        "bob:host.disk",
        -5,
        &Value::Datasource("Filesystem ñ\n/ 42%".into()),
    );
    encoder.push("empty", 7, &Value::Datasource(String::new()));
    let mut bytes = Vec::new();
    encoder.finish_into(&mut bytes).unwrap();
    let got = read_with_pyarrow(&python, &bytes);
    assert_eq!(
        got["schema"],
        json!([
            ["uri", "string", false],
            ["ts", "timestamp[us, tz=UTC]", false],
            ["datapoint", "double", true],
            ["datasource", "string", true]
        ])
    );
    assert_eq!(
        got["rows"],
        json!([
            ["cpu.system", 1_700_000_000_000_000i64, 12.5, null],
            ["cpu.system", 1_700_000_060_000_001i64, -0.25, null],
            ["bob:host.disk", -5, null, "Filesystem ñ\n/ 42%"],
            ["empty", 7, null, ""]
        ])
    );
    assert_eq!(got["batches"], json!(1));

    // An empty window is a valid stream with the schema and no rows.
    encoder.finish_into(&mut bytes).unwrap();
    let got = read_with_pyarrow(&python, &bytes);
    assert_eq!(got["rows"], json!([]));
    assert_eq!(
        got["schema"][1],
        json!(["ts", "timestamp[us, tz=UTC]", false])
    );
}
