//! The delivery loop in-process, over a real store and a real file: max_lag drops
//! the oldest, and reconfiguring adds, keeps and forgets sinks and their cursors.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{SinkBoard, SinkReport, Sinks, UriPattern};
use crate::config::{Destination, FileFormat, SinkConfig};
use crate::model::{Sample, Value};
use crate::store::Store;

fn file_sink(name: &str, path: PathBuf, max_lag: u64) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        destination: Destination::File {
            path,
            format: FileFormat::Jsonl,
            rotate_bytes: None,
            keep: 1,
        },
        uris: vec![UriPattern::parse("**").unwrap()],
        datapoints: true,
        datasources: true,
        batch_size: 5,
        batch_age: Duration::from_millis(10),
        max_lag,
        ca: None,
    }
}

fn samples(from: i64, to: i64) -> Vec<Sample> {
    (from..to)
        .map(|ts| Sample {
            uri: "a.b".into(),
            ts,
            value: Value::Datapoint(ts as f64),
        })
        .collect()
}

/// The timestamps in a jsonl file.
fn stamps(path: &Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn report(board: &SinkBoard, name: &str) -> SinkReport {
    board
        .snapshot()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no sink {name}"))
}

#[test]
fn a_sink_past_max_lag_drops_the_oldest_and_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("store.redb")).unwrap();
    // The file's directory is a file: the destination is down.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, b"").unwrap();
    let path = blocker.join("a.jsonl");
    let board = SinkBoard::default();
    let sinks = Sinks::start(
        store.sample_log().unwrap(),
        &[file_sink("a", path.clone(), 10)],
        None,
        board.clone(),
    );
    store.append(&samples(0, 30)).unwrap();
    until("retrying", || report(&board, "a").retried > 0);
    let r = report(&board, "a");
    assert_eq!(r.dropped, 20, "{r:?}");
    assert_eq!(r.state, "retrying");
    std::fs::remove_file(&blocker).unwrap();
    until("delivered", || stamps(&path).len() >= 10);
    assert_eq!(stamps(&path), (20..30).collect::<Vec<_>>());
    until("caught up", || report(&board, "a").lag_samples == 0);
    let r = report(&board, "a");
    assert_eq!((r.sent, r.failed, r.resent), (10, 0, 0), "{r:?}");
    sinks.stop();
}

#[test]
fn reconfiguring_starts_new_sinks_at_the_head_and_forgets_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("store.redb")).unwrap();
    let log = store.sample_log().unwrap();
    let (pa, pb) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let a = file_sink("a", pa.clone(), 1000);
    let b = file_sink("b", pb.clone(), 1000);
    let board = SinkBoard::default();
    let sinks = Sinks::start(log.clone(), std::slice::from_ref(&a), None, board.clone());
    store.append(&samples(0, 7)).unwrap();
    until("a has 7", || stamps(&pa).len() == 7);
    sinks.apply(&[a.clone(), b.clone()]);
    store.append(&samples(7, 12)).unwrap();
    until("a has 12", || stamps(&pa).len() == 12);
    until("b has 5", || stamps(&pb).len() == 5);
    assert_eq!(
        stamps(&pb),
        (7..12).collect::<Vec<_>>(),
        "b starts at the head"
    );
    // The counters are bumped after the write the file shows: wait for them.
    until("a's counters go on to 12", || {
        report(&board, "a").sent == 12
    });
    until("log pruned", || {
        log.first().unwrap().is_none_or(|f| f >= 13)
    });

    sinks.apply(std::slice::from_ref(&b));
    assert_eq!(
        log.cursor("a").unwrap(),
        None,
        "a removed: its cursor forgotten"
    );
    assert_eq!(board.snapshot().len(), 1);

    sinks.apply(&[]);
    assert!(!log.enabled());
    assert_eq!(log.first().unwrap(), None, "no sink: the log is emptied");
    let head = log.head();
    store.append(&samples(12, 20)).unwrap();
    assert_eq!(log.head(), head, "no sink: nothing is logged");
    assert!(board.snapshot().is_empty());
}
