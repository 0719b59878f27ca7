//! Store tests: window semantics against a brute-force reference, kinds, upserts,
//! restarts, locking, corrupt files, the CLI read side, and crash safety with a real
//! SIGKILLed child process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::model::Value;
use crate::test_util::dp;

/// Set in a re-executed test binary to make one of the `child_*` tests do its job.
const CHILD_ENV: &str = "KOMLOGD_STORE_TEST_CHILD";

fn ds(uri: &str, ts: i64, s: &str) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datasource(s.into()),
    }
}

fn reqs(delta: Option<u64>, count: Option<u32>) -> DataReqs {
    DataReqs {
        past_delta_us: delta,
        past_count: count,
    }
}

fn stamps(w: &[Entry]) -> Vec<i64> {
    w.iter().map(|e| e.ts).collect()
}

/// An append that a store holding its writes back keeps in memory (not durable,
/// nothing queued).
fn append_held(store: &mut Store, samples: &[Sample]) -> Vec<Result<(), SampleError>> {
    store.append_queued(samples, |_| None, false).unwrap()
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("komlogd").join("store.redb")
}

/// A store holding `u` = datapoints at 10, 20, ..., 100 (value = ts / 10).
fn store_with_ten() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&db_path(&dir)).unwrap();
    let samples: Vec<Sample> = (1..=10).map(|i| dp("u", i * 10, i as f64)).collect();
    assert!(store.append(&samples).unwrap().iter().all(|r| r.is_ok()));
    store.set_retention("u", reqs(Some(1_000), Some(100)));
    (dir, store)
}

fn cached_len(store: &Store, uri: &str) -> Option<usize> {
    store.uris[uri].series.as_ref().map(|s| s.entries.len())
}

/// The window by the definition, computed from everything stored.
fn reference(all: &BTreeMap<i64, Value>, ts: i64, r: DataReqs) -> Vec<Entry> {
    let (delta, count) = match (r.past_delta_us, r.past_count) {
        (None, None) => (0u64, 1usize),
        (d, c) => (d.unwrap_or(0), c.unwrap_or(0) as usize),
    };
    let upto: Vec<(&i64, &Value)> = all.range(..=ts).collect();
    let from_count = upto.len().saturating_sub(count);
    upto.iter()
        .enumerate()
        .filter(|(i, (t, _))| {
            *i >= from_count || (delta > 0 && i128::from(**t) > i128::from(ts) - i128::from(delta))
        })
        .map(|(_, (t, v))| Entry {
            ts: **t,
            value: (*v).clone(),
        })
        .collect()
}

// ---------------------------------------------------------------- window semantics

#[test]
fn window_past_delta_only() {
    let (_dir, mut store) = store_with_ten();
    // (100 - 30, 100] = 80, 90, 100: ts - delta (70) is excluded.
    assert_eq!(
        stamps(store.window("u", 100, reqs(Some(30), None)).unwrap()),
        [80, 90, 100]
    );
    assert_eq!(
        stamps(store.window("u", 100, reqs(Some(31), None)).unwrap()),
        [70, 80, 90, 100]
    );
    assert_eq!(
        stamps(store.window("u", 95, reqs(Some(30), None)).unwrap()),
        [70, 80, 90]
    );
    // Nothing in range: empty, not the latest.
    assert!(
        store
            .window("u", 105, reqs(Some(5), None))
            .unwrap()
            .is_empty()
    );
    // past_delta = 0 contributes nothing.
    assert!(
        store
            .window("u", 100, reqs(Some(0), None))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn window_past_count_only() {
    let (_dir, mut store) = store_with_ten();
    assert_eq!(
        stamps(store.window("u", 100, reqs(None, Some(3))).unwrap()),
        [80, 90, 100]
    );
    assert_eq!(
        stamps(store.window("u", 55, reqs(None, Some(2))).unwrap()),
        [40, 50]
    );
    assert_eq!(
        store.window("u", 100, reqs(None, Some(50))).unwrap().len(),
        10
    );
    assert!(
        store
            .window("u", 100, reqs(None, Some(0)))
            .unwrap()
            .is_empty()
    );
    let w = store.window("u", 100, reqs(None, Some(2))).unwrap();
    assert_eq!(w[1].value, Value::Datapoint(10.0));
}

#[test]
fn window_union_of_delta_and_count() {
    let (_dir, mut store) = store_with_ten();
    // Count reaches further: last 4.
    assert_eq!(
        stamps(store.window("u", 100, reqs(Some(15), Some(4))).unwrap()),
        [70, 80, 90, 100]
    );
    // Delta reaches further: (40, 100].
    assert_eq!(
        store
            .window("u", 100, reqs(Some(60), Some(2)))
            .unwrap()
            .len(),
        6
    );
    // Delta 0 with a count: just the count.
    assert_eq!(
        stamps(store.window("u", 100, reqs(Some(0), Some(2))).unwrap()),
        [90, 100]
    );
}

#[test]
fn window_with_neither_is_the_latest_at_or_before_ts() {
    let (_dir, mut store) = store_with_ten();
    assert_eq!(
        stamps(store.window("u", 100, DataReqs::default()).unwrap()),
        [100]
    );
    assert_eq!(
        stamps(store.window("u", 1_000, DataReqs::default()).unwrap()),
        [100]
    );
    assert_eq!(
        stamps(store.window("u", 59, DataReqs::default()).unwrap()),
        [50]
    );
    assert!(
        store
            .window("u", 9, DataReqs::default())
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .window("nobody", 9, DataReqs::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn window_excludes_samples_after_ts_and_respects_boundaries() {
    let (_dir, mut store) = store_with_ten();
    // ts itself is included, ts - delta excluded, anything after ts excluded.
    assert_eq!(
        stamps(store.window("u", 50, reqs(Some(20), None)).unwrap()),
        [40, 50]
    );
    assert_eq!(
        stamps(store.window("u", 49, reqs(Some(20), Some(1))).unwrap()),
        [30, 40]
    );
    assert_eq!(
        stamps(store.window("u", 50, reqs(Some(10), Some(1))).unwrap()),
        [50]
    );
    assert_eq!(
        stamps(store.window("u", 51, reqs(Some(1), Some(0))).unwrap()),
        Vec::<i64>::new()
    );
    // Extreme values do not overflow.
    assert_eq!(
        store
            .window("u", i64::MAX, reqs(Some(u64::MAX), None))
            .unwrap()
            .len(),
        10
    );
    assert!(
        store
            .window("u", i64::MIN, reqs(Some(u64::MAX), Some(u32::MAX)))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn replay_in_the_past_reloads_what_the_cache_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&db_path(&dir)).unwrap();
    store.set_retention("u", reqs(None, Some(2)));
    for chunk in (0..100).collect::<Vec<i64>>().chunks(10) {
        let batch: Vec<Sample> = chunk.iter().map(|&t| dp("u", t * 10, t as f64)).collect();
        store.append(&batch).unwrap();
    }
    assert!(
        cached_len(&store, "u").unwrap() <= 4,
        "trimmed to about the retention"
    );
    // A window at the newest sample, wider than the retention: loaded from disk.
    assert_eq!(
        store.window("u", 990, reqs(None, Some(50))).unwrap().len(),
        50
    );
    // A window in the past, below everything cached.
    assert_eq!(
        stamps(store.window("u", 105, reqs(Some(30), None)).unwrap()),
        [80, 90, 100]
    );
    assert_eq!(
        stamps(store.window("u", 5, reqs(None, Some(3))).unwrap()),
        [0]
    );
    // The cache is again a suffix holding all of it.
    assert_eq!(cached_len(&store, "u"), Some(100));
    assert_eq!(store.uris["u"].series.as_ref().unwrap().complete_from, None);
    // The next append trims back.
    store.append(&[dp("u", 1_000, 100.0)]).unwrap();
    assert!(cached_len(&store, "u").unwrap() <= 4);
}

#[test]
fn window_far_behind_the_cache_is_read_without_caching_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&db_path(&dir)).unwrap();
    let n = (window::MAX_GAP + 1_000) as i64;
    let batch: Vec<Sample> = (0..n).map(|t| dp("u", t, t as f64)).collect();
    store.append(&batch).unwrap();
    store.set_retention("u", reqs(None, Some(10)));
    assert!(cached_len(&store, "u").unwrap() <= 20);
    let w = store.window("u", 100, reqs(Some(5), Some(3))).unwrap();
    assert_eq!(stamps(w), [96, 97, 98, 99, 100]);
    assert!(
        cached_len(&store, "u").unwrap() <= 20,
        "far window not cached"
    );
    // A window near the cache is loaded into it.
    assert_eq!(
        store
            .window("u", n - 50, reqs(None, Some(3)))
            .unwrap()
            .len(),
        3
    );
    assert!(cached_len(&store, "u").unwrap() >= 50);
}

/// Random batches (out of order, overwrites), retention trimming, reopen in the middle,
/// and windows at random timestamps and requirements, all checked against the
/// definition computed from every stored sample.
#[test]
fn windows_match_the_definition_under_random_workloads() {
    windows_under_random_workloads(None);
}

/// The same with the writes held back (a replay's scratch store), written to the
/// file every 7 samples, at a window that needs the file, and at each reopen.
#[test]
fn windows_match_the_definition_with_writes_held_back() {
    windows_under_random_workloads(Some(7));
}

fn windows_under_random_workloads(held: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let deltas = [
        None,
        Some(0),
        Some(1),
        Some(50),
        Some(500),
        Some(5_000),
        Some(u64::MAX),
    ];
    let counts = [None, Some(0), Some(1), Some(3), Some(40), Some(3_000)];
    let mut all: BTreeMap<i64, Value> = BTreeMap::new();
    let mut store = Store::open(&path).unwrap();
    if let Some(limit) = held {
        store.hold_back_writes(limit);
    }
    let retention = reqs(Some(500), Some(5));
    store.set_retention("p.x", retention);
    let mut checked = 0;
    for round in 0..150 {
        // Reopen twice: once leaving the retention unset (newest only), once setting it.
        if round == 50 || round == 100 {
            // Closing writes what is held back.
            store.close().unwrap();
            store = Store::open(&path).unwrap();
            if let Some(limit) = held {
                store.hold_back_writes(limit);
            }
            if round == 100 {
                store.set_retention("p.x", retention);
            }
        }
        let size = 1 + next(30) as usize;
        let newest = all.keys().next_back().copied().unwrap_or(0);
        let batch: Vec<Sample> = (0..size)
            .map(|_| {
                // Mostly forward, sometimes back in time, sometimes onto an existing ts.
                let ts = match next(10) {
                    0 => next(newest as u64 + 1) as i64,
                    1 => newest,
                    _ => newest + 1 + next(100) as i64,
                };
                dp("p.x", ts, next(1_000) as f64)
            })
            .collect();
        for s in &batch {
            all.insert(s.ts, s.value.clone());
        }
        let outcomes = match held {
            None => store.append(&batch).unwrap(),
            Some(_) => append_held(&mut store, &batch),
        };
        assert!(outcomes.iter().all(|r| r.is_ok()));
        let newest = *all.keys().next_back().unwrap();
        for _ in 0..6 {
            let ts = match next(3) {
                0 => newest,
                1 => next(newest as u64 + 200) as i64,
                _ => newest - next(300) as i64,
            };
            let r = reqs(
                deltas[next(deltas.len() as u64) as usize],
                counts[next(counts.len() as u64) as usize],
            );
            let got = store.window("p.x", ts, r).unwrap().to_vec();
            assert_eq!(got, reference(&all, ts, r), "round {round}, ts {ts}, {r:?}");
            checked += 1;
        }
    }
    store.write_held().unwrap();
    assert_eq!(store.uris().unwrap()[0].count, all.len() as u64);
    assert_eq!(checked, 900);
}

#[test]
fn held_back_writes_are_read_after_they_are_written_and_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = Store::open(&path).unwrap();
    store.hold_back_writes(1_000);
    // The cache keeps the newest sample (and trims past two).
    store.set_retention("u", reqs(None, Some(1)));
    let first: Vec<Sample> = (1..=5).map(|i| dp("u", i * 10, i as f64)).collect();
    assert!(append_held(&mut store, &first).iter().all(|r| r.is_ok()));
    // Held: reads of the file refuse, and the cache answers the window.
    let refused = store.latest("u", 10).unwrap_err().to_string();
    assert!(refused.contains("held back"), "{refused}");
    assert!(store.uris().is_err());
    assert_eq!(
        stamps(store.window("u", 50, reqs(None, Some(1))).unwrap()),
        [50]
    );
    assert!(
        store
            .window("unknown", 50, reqs(None, Some(1)))
            .unwrap()
            .is_empty()
    );
    assert!(
        store.uris().is_err(),
        "a window from the cache, or of a uri with nothing stored, writes nothing"
    );
    // A kind change is refused at once, as at any append.
    let text = ds("u", 60, "x");
    assert!(matches!(
        append_held(&mut store, std::slice::from_ref(&text))[0],
        Err(SampleError::KindChange { .. })
    ));
    // The same time again, then a window that reaches past the cache: it writes
    // what is held first and reads it back from the file.
    let again = [dp("u", 20, 22.0), dp("u", 60, 6.0)];
    assert!(append_held(&mut store, &again).iter().all(|r| r.is_ok()));
    let window = store.window("u", 25, reqs(None, Some(2))).unwrap().to_vec();
    assert_eq!(stamps(&window), [10, 20]);
    assert_eq!(window[1].value, Value::Datapoint(22.0));
    let info = &store.uris().unwrap()[0];
    assert_eq!((info.count, info.first_ts, info.last_ts), (6, 10, 60));
    // `holds` writes first; a durable append writes the held samples before its own.
    assert!(append_held(&mut store, &[dp("u", 70, 7.0)])[0].is_ok());
    assert!(store.holds("u", 70, &Value::Datapoint(7.0)).unwrap());
    assert!(append_held(&mut store, &[dp("u", 80, 8.0)])[0].is_ok());
    assert!(store.append(&[dp("u", 90, 9.0)]).unwrap()[0].is_ok());
    assert_eq!(store.uris().unwrap()[0].count, 9);
    // Close writes the rest: all of it is on file after a reopen.
    assert!(append_held(&mut store, &[dp("u", 100, 10.0)])[0].is_ok());
    store.close().unwrap();
    let store = Store::open(&path).unwrap();
    let all = store.range("u", 0, 1_000, 100).unwrap();
    assert_eq!(
        all.iter().map(|s| s.ts).collect::<Vec<_>>(),
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    );
    assert_eq!(store.uris().unwrap()[0].count, 10);
}

// ---------------------------------------------------------------- kinds and upserts

#[test]
fn kind_is_fixed_by_the_first_write_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = Store::open(&path).unwrap();
    let out = store
        .append(&[
            dp("a", 1, 1.0),
            ds("a", 2, "text"),
            dp("b", 1, 2.0),
            dp("a", 3, 3.0),
        ])
        .unwrap();
    assert!(out[0].is_ok() && out[2].is_ok() && out[3].is_ok());
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(
        *err,
        SampleError::KindChange {
            uri: "a".into(),
            existing: Kind::Datapoint,
            written: Kind::Datasource
        }
    );
    assert_eq!(
        err.to_string(),
        "uri a is a datapoint; a datasource cannot be written to it"
    );
    assert_eq!(
        store.latest("a", 10).unwrap().len(),
        2,
        "the rest of the batch landed"
    );
    assert_eq!(store.latest("b", 10).unwrap().len(), 1);

    // Within a batch, the first sample of a new uri fixes its kind.
    let out = store.append(&[ds("c", 1, "x"), dp("c", 2, 1.0)]).unwrap();
    assert!(out[0].is_ok());
    assert!(matches!(out[1], Err(SampleError::KindChange { .. })));

    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.kind_of("a"), Some(Kind::Datapoint));
    assert_eq!(store.kind_of("c"), Some(Kind::Datasource));
    assert_eq!(store.kind_of("zzz"), None);
    let out = store.append(&[ds("a", 9, "no")]).unwrap();
    assert!(matches!(out[0], Err(SampleError::KindChange { .. })));
    assert_eq!(store.latest("a", 10).unwrap().len(), 2);
}

#[test]
fn invalid_samples_are_refused_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&db_path(&dir)).unwrap();
    let out = store
        .append(&[
            dp("a..b", 1, 1.0),
            dp("a", 1, f64::NAN),
            dp("bob:a.b", 1, 1.0),
        ])
        .unwrap();
    assert!(matches!(out[0], Err(SampleError::Uri(_))));
    assert!(matches!(out[1], Err(SampleError::NotFinite(_))));
    assert!(out[2].is_ok());
    // A refused first sample does not fix the kind.
    assert_eq!(store.kind_of("a"), None);
    assert!(store.append(&[]).unwrap().is_empty());
}

#[test]
fn same_timestamp_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = Store::open(&path).unwrap();
    store.set_retention("u", reqs(None, Some(10)));
    store
        .append(&[dp("u", 1, 1.0), dp("u", 2, 2.0), dp("u", 2, 20.0)])
        .unwrap();
    store.append(&[dp("u", 1, 10.0)]).unwrap();
    let w = store.window("u", 2, reqs(None, Some(10))).unwrap().to_vec();
    assert_eq!(
        w,
        [
            Entry {
                ts: 1,
                value: Value::Datapoint(10.0)
            },
            Entry {
                ts: 2,
                value: Value::Datapoint(20.0)
            }
        ]
    );
    let info = &store.uris().unwrap()[0];
    assert_eq!((info.count, info.first_ts, info.last_ts), (2, 1, 2));
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.latest("u", 1).unwrap()[0].value,
        Value::Datapoint(20.0)
    );
    assert_eq!(store.uris().unwrap()[0].count, 2);
}

// ---------------------------------------------------------------- restarts and files

#[test]
fn restart_keeps_windows() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let r = reqs(Some(35), Some(2));
    let before = {
        let (_d, _s) = (0, 0);
        let mut store = Store::open(&path).unwrap();
        let samples: Vec<Sample> = (1..=10).map(|i| dp("u", i * 10, i as f64)).collect();
        store.append(&samples).unwrap();
        store
            .append(&[ds("t", 5, "hello"), ds("t", 7, "world")])
            .unwrap();
        store.set_retention("u", r);
        let w = store.window("u", 100, r).unwrap().to_vec();
        assert_eq!(stamps(&w), [70, 80, 90, 100]);
        w
    }; // dropped, no close
    let mut store = Store::open(&path).unwrap();
    assert!(store.uris["u"].series.is_none(), "nothing loaded at open");
    assert_eq!(store.window("u", 100, r).unwrap(), before.as_slice());
    assert_eq!(stamps(store.window("u", 60, r).unwrap()), [30, 40, 50, 60]);
    let t = store.window("t", 7, reqs(None, Some(5))).unwrap();
    assert_eq!(t[1].value, Value::Datasource("world".into()));
    // Appending to a uri not loaded since open, then reading a window.
    store
        .append(&[dp("u", 110, 11.0), dp("u", 45, 4.5)])
        .unwrap();
    assert_eq!(
        stamps(store.window("u", 110, r).unwrap()),
        [80, 90, 100, 110]
    );
    assert_eq!(
        stamps(store.window("u", 50, reqs(Some(10), None)).unwrap()),
        [45, 50]
    );
    store.close().unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.uris().unwrap()[1].count, 12);
}

#[test]
fn dropped_store_keeps_every_committed_sample() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let mut store = Store::open(&path).unwrap();
        for i in 0..50 {
            store
                .append(&[dp("d", i, i as f64), ds("e", i, &i.to_string())])
                .unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    let d = store.range("d", 0, 100, 1_000).unwrap();
    assert_eq!(d.len(), 50);
    assert_eq!(
        store.latest("e", 1).unwrap()[0].value,
        Value::Datasource("49".into())
    );
}

#[test]
fn open_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/store.redb");
    Store::open(&path).unwrap().close().unwrap();
    assert!(path.is_file());
    let err = Store::open(dir.path()).err().unwrap();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn second_open_in_the_same_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::AlreadyOpen { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "store {} is already open in this process; a store can be opened only once at a time",
            path.display()
        )
    );
    // Another spelling of the same file is recognised too.
    let other = dir.path().join("komlogd/../komlogd/store.redb");
    assert!(matches!(
        Store::open(&other),
        Err(StoreError::AlreadyOpen { .. })
    ));
    drop(store);
    Store::open(&other).unwrap();
}

/// This test binary running only `test`, one of the child sides below. They
/// are `#[ignore]`d, so that a normal run does not count them as tests, and
/// run here with `--ignored`.
fn child(test: &str, arg: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env(CHILD_ENV, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Child side of `open_held_by_another_process_is_locked`: tries to open, prints the error.
#[test]
#[ignore = "the child process of open_held_by_another_process_is_locked"]
fn child_lock_probe() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let Some(path) = path.to_str().and_then(|p| p.strip_prefix("lock:")) else {
        return;
    };
    match Store::open(Path::new(path)) {
        Ok(_) => println!("probe: opened"),
        Err(e) => println!("probe: {e}"),
    }
}

#[test]
fn open_held_by_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    let out = child(
        "store::tests::child_lock_probe",
        &format!("lock:{}", path.display()),
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints `test <name> ... ` before the child's own output, on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.find("probe: ").map(|i| &l[i..]))
        .unwrap_or("");
    assert_eq!(
        line,
        format!(
            "probe: store {} is locked: another komlogd process is using it; stop that process, \
             or give this agent its own config directory",
            path.display()
        )
    );
    drop(store);
    let out = child(
        "store::tests::child_lock_probe",
        &format!("lock:{}", path.display()),
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("probe: opened"));
}

#[test]
fn garbage_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert_eq!(err.path(), path);
    assert_eq!(
        err.to_string(),
        format!(
            "store {} is corrupt or not a komlogd store: Not a redb database: magic number mismatch",
            path.display()
        )
    );
    // The file is left alone.
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn other_redb_databases_and_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&foreign).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("other"))
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&foreign).err().unwrap();
    assert!(
        err.to_string().ends_with(
            "is corrupt or not a komlogd store: it is a redb database without a komlogd meta table"
        ),
        "{err}"
    );

    let future = dir.path().join("future.redb");
    Store::open(&future).unwrap().close().unwrap();
    {
        let db = redb::Database::create(&future).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(disk::META)
            .unwrap()
            .insert(b"format_version".as_slice(), 99u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&future).err().unwrap();
    assert!(matches!(
        err,
        StoreError::UnsupportedVersion {
            found: 99,
            supported: 1,
            ..
        }
    ));
    assert!(
        err.to_string()
            .contains("has format version 99, but this komlogd reads only version 1")
    );

    // A damaged uri record is an error, not a panic.
    let damaged = dir.path().join("damaged.redb");
    {
        let mut store = Store::open(&damaged).unwrap();
        store.append(&[dp("u", 1, 1.0)]).unwrap();
    }
    {
        let db = redb::Database::create(&damaged).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(disk::URIS)
            .unwrap()
            .insert(b"u".as_slice(), [1u8, 2, 3].as_slice())
            .unwrap();
        txn.open_table(disk::SAMPLES)
            .unwrap()
            .insert((b"v".as_slice(), 5), [9u8].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&damaged).err().unwrap();
    assert!(
        err.to_string()
            .contains("uri u: uri record of 3 bytes, expected 25"),
        "{err}"
    );
}

#[test]
fn damaged_sample_value_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let mut store = Store::open(&path).unwrap();
        store.append(&[dp("u", 1, 1.0), dp("u", 2, 2.0)]).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(disk::SAMPLES)
            .unwrap()
            .insert((b"u".as_slice(), 1), [0u8, 1].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    let err = store.window("u", 2, reqs(None, Some(2))).err().unwrap();
    assert!(
        err.to_string()
            .ends_with("sample u at 1: datapoint value of 1 bytes, expected 8"),
        "{err}"
    );
    // The cache was left as it was; the undamaged window still works.
    assert_eq!(
        stamps(store.window("u", 2, DataReqs::default()).unwrap()),
        [2]
    );
    assert!(store.latest("u", 5).is_err());
}

#[test]
fn integrity_check_refuses_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rot.redb");
    {
        let mut store = Store::open(&path).unwrap();
        let batch: Vec<Sample> = (0..20_000).map(|t| dp("u", t, t as f64)).collect();
        store.append(&batch).unwrap();
        store.close().unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip bytes in the middle of the data pages (past redb's header).
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let options = StoreOptions {
        check_integrity: true,
        ..StoreOptions::default()
    };
    let err = Store::open_with(&path, options).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("store {} is corrupt", path.display()))
    );

    // Without the check, redb trusts the file and panics reading the damaged page (it
    // does, measured); the store turns that into an error and stays usable.
    let mut store = Store::open(&path).unwrap();
    let err = store
        .window("u", 20_000, reqs(None, Some(20_000)))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the database engine failed while reading samples"),
        "{err}"
    );
    assert!(store.latest("u", 20_000).is_err());
    assert!(store.kind_of("u").is_some());
}

#[test]
fn store_can_move_between_threads() {
    fn is_send<T: Send>() {}
    is_send::<Store>();
}

// ---------------------------------------------------------------- read side

#[test]
fn latest_range_and_uris() {
    let (_dir, mut store) = store_with_ten();
    store
        .append(&[ds("bob:notes", 3, "a"), ds("bob:notes", 4, "b")])
        .unwrap();
    let latest = store.latest("u", 3).unwrap();
    assert_eq!(
        latest.iter().map(|s| s.ts).collect::<Vec<_>>(),
        [100, 90, 80]
    );
    assert_eq!(latest[0], dp("u", 100, 10.0));
    assert!(store.latest("u", 0).unwrap().is_empty());
    assert!(store.latest("nobody", 5).unwrap().is_empty());
    let range = store.range("u", 20, 50, 100).unwrap();
    assert_eq!(
        range.iter().map(|s| s.ts).collect::<Vec<_>>(),
        [20, 30, 40, 50]
    );
    assert_eq!(store.range("u", 20, 50, 2).unwrap().len(), 2);
    assert!(store.range("u", 50, 20, 100).unwrap().is_empty());
    // A uri that is a prefix of another does not leak into its range.
    store.append(&[dp("u.v", 30, 0.0)]).unwrap();
    assert_eq!(store.range("u", i64::MIN, i64::MAX, 100).unwrap().len(), 10);
    assert_eq!(
        store.uris().unwrap(),
        [
            UriInfo {
                uri: "bob:notes".into(),
                kind: Kind::Datasource,
                count: 2,
                first_ts: 3,
                last_ts: 4
            },
            UriInfo {
                uri: "u".into(),
                kind: Kind::Datapoint,
                count: 10,
                first_ts: 10,
                last_ts: 100
            },
            UriInfo {
                uri: "u.v".into(),
                kind: Kind::Datapoint,
                count: 1,
                first_ts: 30,
                last_ts: 30
            },
        ]
    );
}

#[test]
fn retention_keeps_only_the_newest_when_unset_and_is_the_union_of_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&db_path(&dir)).unwrap();
    for t in 0..100 {
        store
            .append(&[dp("plain", t, 0.0), dp("held", t * 1_000, 0.0)])
            .unwrap();
    }
    assert!(cached_len(&store, "plain").unwrap() <= 2);
    let r = reqs(Some(10_000), None).union(reqs(None, Some(20)));
    assert_eq!(r, reqs(Some(10_000), Some(20)));
    store.set_retention("held", r);
    store.window("held", 99_000, r).unwrap();
    for t in 100..300 {
        store.append(&[dp("held", t * 1_000, 0.0)]).unwrap();
        let n = cached_len(&store, "held").unwrap();
        assert!((20..=40).contains(&n), "{n}");
        assert_eq!(store.window("held", t * 1_000, r).unwrap().len(), 20);
    }
    store.clear_retention("held");
    assert_eq!(cached_len(&store, "held"), Some(1));
}

// ---------------------------------------------------------------- crash safety

const CRASH_BATCH: i64 = 200;
const CRASH_URIS: [&str; 2] = ["crash.a", "crash.b"];

/// Child side of `sigkill_mid_append_leaves_whole_batches`: appends batch after batch
/// (each `CRASH_BATCH` samples to each of two uris, one call) and prints `committed N`
/// after each returns, until killed or bounded by count and time.
#[test]
#[ignore = "the child process of sigkill_mid_append_leaves_whole_batches"]
fn child_crash_writer() {
    let Some(arg) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let Some(path) = arg.to_str().and_then(|p| p.strip_prefix("crash:")) else {
        return;
    };
    let mut store = Store::open(Path::new(path)).unwrap();
    let start = store
        .uris()
        .unwrap()
        .first()
        .map_or(0, |u| u.count as i64 / CRASH_BATCH);
    let t0 = Instant::now();
    for batch in start..start + 5_000 {
        if t0.elapsed() > Duration::from_secs(20) {
            break;
        }
        let samples: Vec<Sample> = CRASH_URIS
            .iter()
            .flat_map(|uri| {
                (0..CRASH_BATCH).map(move |j| dp(uri, batch * CRASH_BATCH + j, batch as f64))
            })
            .collect();
        store.append(&samples).unwrap();
        println!("committed {batch}");
    }
}

/// The batch number of a child's `committed N` line (libtest may print its own text
/// before it on the same line).
fn committed(line: &str) -> Option<i64> {
    let i = line.find("committed ")?;
    line[i + "committed ".len()..].trim().parse().ok()
}

#[test]
fn sigkill_mid_append_leaves_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut acknowledged: i64 = -1;
    for round in 0..6u64 {
        let mut proc = child(
            "store::tests::child_crash_writer",
            &format!("crash:{}", path.display()),
        )
        .spawn()
        .unwrap();
        let stdout = proc.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let target = 2 + round as usize * 3;
        let mut seen = 0;
        let t0 = Instant::now();
        while seen < target && t0.elapsed() < Duration::from_secs(30) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = committed(&line) {
                acknowledged = n;
                seen += 1;
            }
        }
        assert_eq!(
            seen, target,
            "the child committed fewer batches than expected"
        );
        // Kill at a varying point of the next commit.
        std::thread::sleep(Duration::from_micros(round * 900));
        proc.kill().unwrap();
        proc.wait().unwrap();
        for line in lines.map_while(Result::ok) {
            if let Some(n) = committed(&line) {
                acknowledged = n;
            }
        }

        let store = Store::open(&path).unwrap();
        let infos = store.uris().unwrap();
        assert_eq!(infos.len(), 2);
        let batches = infos[0].count as i64 / CRASH_BATCH;
        assert!(
            batches > acknowledged,
            "batch {acknowledged} was acknowledged but is missing"
        );
        assert!(batches <= acknowledged + 2);
        eprintln!("round {round}: acknowledged {acknowledged}, found {batches} batches");
        for (info, uri) in infos.iter().zip(CRASH_URIS) {
            assert_eq!(info.uri, uri);
            assert_eq!(
                info.count as i64,
                batches * CRASH_BATCH,
                "torn batch in {uri}"
            );
            let all = store.range(uri, i64::MIN, i64::MAX, usize::MAX).unwrap();
            assert_eq!(
                all.len() as i64,
                batches * CRASH_BATCH,
                "stats and samples disagree"
            );
            for (i, s) in all.iter().enumerate() {
                assert_eq!(s.ts, i as i64);
                assert_eq!(s.value, Value::Datapoint((i as i64 / CRASH_BATCH) as f64));
            }
        }
    }
}
