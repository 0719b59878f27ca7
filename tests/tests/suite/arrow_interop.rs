//! The window the host builds is standard Arrow: pyarrow (an independent
//! implementation) reads it with the documented schema and values. So are the
//! Parquet and Arrow files of `komlogd query --format`: pyarrow and pandas
//! read them back exactly.
//!
//! The tests use pyarrow and pandas from PyPI in `target/pyarrow-venv`
//! (`python3 -m venv` + `pip install pyarrow pandas`): `cargo xtask test`
//! installs them beside the build, a test on first use when missing. They need
//! python3 with venv.

use std::path::PathBuf;
use std::process::Command;

use komlogd::impulses::window::WindowEncoder;
use komlogd::model::Value;
use komlogd_tests::repo_root;
use serde_json::{Value as Json, json};

#[path = "../../support/pyarrow.rs"]
mod pyarrow;

/// A Python with pyarrow and pandas, installed once per checkout
/// (`tests/support/pyarrow.rs`).
fn python_with_pyarrow() -> PathBuf {
    pyarrow::python_with_pyarrow(&repo_root().join("target")).unwrap_or_else(|e| panic!("{e}"))
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

/// Reads an export with pyarrow (Parquet or Arrow IPC file, by extension) and
/// with pandas, and prints both as JSON: the schema, and the rows with each
/// number as Python's `repr` (the shortest text of the same double).
const EXPORT_READER: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq, pandas as pd
path = sys.argv[1]
if path.endswith('.parquet'):
    table = pq.read_table(path)
    frame = pd.read_parquet(path)
else:
    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
    frame = pd.read_feather(path)
num = lambda v: None if v is None or v != v else repr(float(v))
ts = table.column('ts').cast(pa.int64()).to_pylist()
arrow_rows = [[u, t, num(d), s] for u, t, d, s in zip(table.column('uri').to_pylist(), ts,
              table.column('datapoint').to_pylist(), table.column('datasource').to_pylist())]
pandas_rows = [[u, int(t), num(d), None if s is None or s != s else s]
               for u, t, d, s in zip(frame['uri'], frame['ts'].array.asi8,
                                     frame['datapoint'], frame['datasource'])]
print(json.dumps({
    "schema": [[f.name, str(f.type), f.nullable] for f in table.schema],
    "arrow": arrow_rows,
    "pandas": pandas_rows,
    "pandas_ts": str(frame['ts'].dtype),
}))
"#;

#[test]
fn pyarrow_and_pandas_read_komlogd_exports() {
    use clap::Parser;
    use komlogd::model::{MAX_TS, MIN_TS, Sample};

    let python = python_with_pyarrow();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("komlogd.yaml"), "- username: me\n").unwrap();
    let samples = vec![
        Sample::new("cpu.system", MIN_TS, Value::Datapoint(-0.25)).unwrap(),
        Sample::new("cpu.system", 0, Value::Datapoint(0.1 + 0.2)).unwrap(),
        Sample::new(
            "cpu.system",
            1_700_000_000_000_001,
            Value::Datapoint(1e-300),
        )
        .unwrap(),
        Sample::new("cpu.system", MAX_TS, Value::Datapoint(f64::MAX)).unwrap(),
        Sample::new("host.df", -5, Value::Datasource("a, \"b\"\nñ 日本".into())).unwrap(),
        Sample::new("host.df", 7, Value::Datasource(String::new())).unwrap(),
    ];
    {
        let mut store =
            komlogd::store::Store::open(&dir.path().join("data").join("store.redb")).unwrap();
        let outcomes = store.append(&samples).unwrap();
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    }
    // komlogd's command line, in this process: cargo builds the `komlogd`
    // binary only for its own package's tests.
    let config = dir.path().join("komlogd.yaml").display().to_string();
    for name in ["export.parquet", "export.arrow"] {
        let out = dir.path().join(name).display().to_string();
        let cli =
            komlogd::cli::Cli::try_parse_from(["komlogd", "-c", &config, "query", "-o", &out])
                .expect("a valid command line");
        komlogd::cli::run(cli)
            .map_err(|f| f.message)
            .expect("the export");
        let got = std::process::Command::new(&python)
            .args(["-c", EXPORT_READER, &out])
            .output()
            .expect("run python");
        assert!(
            got.status.success(),
            "{name}: python failed: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        let got: Json = serde_json::from_slice(&got.stdout).expect("json from python");
        assert_eq!(
            got["schema"],
            json!([
                ["uri", "string", false],
                ["ts", "timestamp[us, tz=UTC]", false],
                ["datapoint", "double", true],
                ["datasource", "string", true]
            ]),
            "{name}"
        );
        assert_eq!(got["pandas_ts"], json!("datetime64[us, UTC]"), "{name}");
        for reader in ["arrow", "pandas"] {
            let rows = got[reader].as_array().expect("rows");
            assert_eq!(rows.len(), samples.len(), "{name} {reader}");
            for (row, s) in rows.iter().zip(&samples) {
                assert_eq!(row[0], json!(s.uri), "{name} {reader}");
                assert_eq!(row[1], json!(s.ts), "{name} {reader}");
                match &s.value {
                    Value::Datapoint(v) => {
                        let text = row[2].as_str().expect("a number's repr");
                        assert_eq!(
                            text.parse::<f64>().map(f64::to_bits),
                            Ok(v.to_bits()),
                            "{name} {reader}"
                        );
                        assert_eq!(row[3], Json::Null, "{name} {reader}");
                    }
                    Value::Datasource(t) => {
                        assert_eq!(row[2], Json::Null, "{name} {reader}");
                        assert_eq!(row[3], json!(t), "{name} {reader}");
                    }
                }
            }
        }
    }
}
