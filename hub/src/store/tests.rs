//! Every store against the trait's rules: each rule test runs on the redb
//! store (a real database file) and on the PostgreSQL store (a fresh schema of
//! the local test database; skipped when none answers at 127.0.0.1:5432,
//! unless `KOMLOGD_TESTS_NO_SKIP` is set). Tests of one store's own matters
//! (file locking, foreign files, rollup tables, shared logins) run on it alone.

use super::postgres::PgStore;
use super::postgres::testing::{self, TestSchema};
use super::redb::RedbStore;
use super::*;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn sample(uri: &str, kind: Kind, us: i64, content: &str) -> NewSample {
    NewSample {
        uri: uri.into(),
        kind,
        t: TimeUuid::random_at(us).unwrap(),
        content: content.into(),
    }
}

fn open() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("data")).unwrap();
    (dir, store)
}

/// Where a store under test lives.
enum Place {
    Redb(tempfile::TempDir),
    Pg(TestSchema),
}

/// A store under test. The store is dropped before its place (fields drop in
/// order), so the directory or schema is removed after it is closed.
struct Subject {
    store: Option<Box<dyn HubStore>>,
    place: Place,
}

impl Subject {
    fn s(&self) -> &dyn HubStore {
        self.store.as_deref().expect("open")
    }

    /// Close the store and open it again on the same data: a redb file
    /// reopened, or a new connection pool on the same PostgreSQL schema.
    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(match &self.place {
            Place::Redb(dir) => Box::new(RedbStore::open(&dir.path().join("data")).unwrap()),
            Place::Pg(schema) => Box::new(schema.connect()),
        });
    }
}

/// A fresh redb store, and a fresh PostgreSQL store when the database answers.
fn subjects() -> Vec<Subject> {
    let (dir, store) = open();
    let mut out = vec![Subject {
        store: Some(Box::new(store)),
        place: Place::Redb(dir),
    }];
    if testing::available() {
        let schema = TestSchema::new();
        out.push(Subject {
            store: Some(Box::new(schema.connect())),
            place: Place::Pg(schema),
        });
    }
    out
}

#[test]
fn users_agents_and_shares() {
    for t in subjects() {
        users_agents_and_shares_on(t.s());
    }
}

fn users_agents_and_shares_on(store: &dyn HubStore) {
    let alice = user("Alice");
    store.add_user(&alice).unwrap();
    assert!(matches!(
        store.add_user(&user("alice")),
        Err(StoreError::UserExists(_))
    ));
    assert!(store.user_exists(&user("ALICE")).unwrap());
    assert!(!store.user_exists(&user("bob")).unwrap());
    assert!(matches!(
        store.add_agent(&user("bob"), "ssh-rsa AAAA"),
        Err(StoreError::NoSuchUser(_))
    ));
    let a = store.add_agent(&alice, "ssh-rsa AAAA").unwrap();
    assert_eq!(a.id.len(), 32);
    assert_eq!(
        store.find_agent(&alice, "ssh-rsa AAAA").unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.find_agent(&alice, "ssh-rsa AAAB").unwrap(), None);
    store.add_user(&user("bob")).unwrap();
    assert!(matches!(
        store.add_agent(&user("bob"), "ssh-rsa AAAA"),
        Err(StoreError::KeyRegistered { .. })
    ));
    assert_eq!(store.agents_of(&alice).unwrap(), vec![a]);
    assert!(store.agents_of(&user("bob")).unwrap().is_empty());
    let share = Share {
        owner: alice.clone(),
        prefix: "host".into(),
        with: user("bob"),
    };
    store.add_share(&share).unwrap();
    store.add_share(&share).unwrap();
    assert_eq!(store.shares_of(&alice).unwrap(), vec![share]);
    assert!(store.shares_of(&user("bob")).unwrap().is_empty());
    assert!(matches!(
        store.add_share(&Share {
            owner: alice.clone(),
            prefix: "x".into(),
            with: user("carol"),
        }),
        Err(StoreError::NoSuchUser(_))
    ));
    assert_eq!(store.users().unwrap(), vec![alice, user("bob")]);
}

#[test]
fn kinds_are_fixed_and_writes_are_all_or_nothing() {
    for t in subjects() {
        kinds_are_fixed_and_writes_are_all_or_nothing_on(t.s());
    }
}

fn kinds_are_fixed_and_writes_are_all_or_nothing_on(store: &dyn HubStore) {
    let alice = user("alice");
    store.add_user(&alice).unwrap();
    let out = store
        .write(
            &alice,
            &[
                sample("a.ds", Kind::Datasource, 1, "x"),
                sample("a.dp", Kind::Datapoint, 1, "1"),
            ],
        )
        .unwrap();
    assert_eq!(out.created, vec!["a.ds".to_owned(), "a.dp".to_owned()]);
    let id = |uri: &str| MetricId {
        owner: alice.clone(),
        local: uri.into(),
    };
    assert_eq!(
        store.metric_kind(&id("a.ds")).unwrap(),
        Some(Kind::Datasource)
    );
    assert_eq!(
        store.metric_kind(&id("a.dp")).unwrap(),
        Some(Kind::Datapoint)
    );
    assert_eq!(store.metric_kind(&id("a")).unwrap(), None);
    assert_eq!(
        store
            .metric_kinds(&[id("a.dp"), id("a"), id("a.ds"), id("a.dp")])
            .unwrap(),
        vec![
            Some(Kind::Datapoint),
            None,
            Some(Kind::Datasource),
            Some(Kind::Datapoint)
        ],
        "in the order asked, once per id"
    );
    // A batch with one wrong kind writes nothing, not even the new uri before it.
    let err = store
        .write(
            &alice,
            &[
                sample("a.new", Kind::Datapoint, 2, "2"),
                sample("a.ds", Kind::Datapoint, 2, "2"),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::KindMismatch {
                existing: Kind::Datasource,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.metric_kind(&id("a.new")).unwrap(), None);
    assert_eq!(
        store
            .read_newest(&id("a.ds"), TimeUuid::MIN, TimeUuid::MAX, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.metrics_of(&alice).unwrap(),
        vec![
            ("a.dp".to_owned(), Kind::Datapoint),
            ("a.ds".to_owned(), Kind::Datasource)
        ]
    );
}

#[test]
fn reads_are_newest_first_bounded_and_upserting() {
    for t in subjects() {
        reads_are_newest_first_bounded_and_upserting_on(t.s());
    }
}

fn reads_are_newest_first_bounded_and_upserting_on(store: &dyn HubStore) {
    let alice = user("alice");
    store.add_user(&alice).unwrap();
    let id = MetricId {
        owner: alice.clone(),
        local: "m".into(),
    };
    let batch: Vec<NewSample> = (0..50)
        .map(|i| sample("m", Kind::Datapoint, 1_000 + i, &i.to_string()))
        .collect();
    store.write(&alice, &batch).unwrap();
    let all = store
        .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 1000)
        .unwrap();
    assert_eq!(all.len(), 50);
    assert_eq!(all[0].1, "49");
    assert!(all.windows(2).all(|w| w[0].0 > w[1].0));
    let some = store
        .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 5)
        .unwrap();
    assert_eq!(
        some.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["49", "48", "47", "46", "45"]
    );
    // Bounds are inclusive: the exact TimeUUIDs of rows 10 and 20.
    let t10 = batch[10].t;
    let t20 = batch[20].t;
    let mid = store.read_newest(&id, t10, t20, 1000).unwrap();
    assert_eq!(mid.len(), 11);
    assert_eq!(mid.first().unwrap().0, t20);
    assert_eq!(mid.last().unwrap().0, t10);
    assert!(store.read_newest(&id, t20, t10, 1000).unwrap().is_empty());
    // The same TimeUUID again replaces the value.
    store
        .write(
            &alice,
            &[NewSample {
                uri: "m".into(),
                kind: Kind::Datapoint,
                t: t10,
                content: "99".into(),
            }],
        )
        .unwrap();
    let again = store.read_newest(&id, t10, t10, 10).unwrap();
    assert_eq!(again, vec![(t10, "99".to_owned())]);
}

#[test]
fn supplies_round_trip() {
    for t in subjects() {
        supplies_round_trip_on(t.s());
    }
}

fn supplies_round_trip_on(store: &dyn HubStore) {
    let alice = user("alice");
    store.add_user(&alice).unwrap();
    store
        .write(&alice, &[sample("ds", Kind::Datasource, 1, "x")])
        .unwrap();
    let id = MetricId {
        owner: alice,
        local: "ds".into(),
    };
    assert_eq!(store.supplies(&id).unwrap(), None);
    store
        .set_supplies(&id, &["a".into(), "b.c".into()])
        .unwrap();
    assert_eq!(
        store.supplies(&id).unwrap(),
        Some(vec!["a".into(), "b.c".into()])
    );
}

#[test]
fn persists_and_refuses_a_second_opener_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = RedbStore::open(&data).unwrap();
        store.add_user(&user("alice")).unwrap();
        let second = RedbStore::open(&data);
        assert!(
            matches!(second, Err(StoreError::Locked { .. })),
            "second opener"
        );
    }
    let store = RedbStore::open(&data).unwrap();
    assert!(store.user_exists(&user("alice")).unwrap());
    drop(store);
    // A file that is not a redb database.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join(super::redb::DATABASE_FILE),
        b"not a database at all",
    )
    .unwrap();
    let err = RedbStore::open(&other).err().expect("refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("hub.redb"), "{err}");
}

#[test]
fn removing_a_user_takes_everything_of_theirs_and_only_that() {
    for t in subjects() {
        removing_a_user_takes_everything_of_theirs_and_only_that_on(t.s());
    }
}

fn removing_a_user_takes_everything_of_theirs_and_only_that_on(store: &dyn HubStore) {
    let (alice, bob, al) = (user("alice"), user("bob"), user("alice.b"));
    for u in [&alice, &bob, &al] {
        store.add_user(u).unwrap();
    }
    store.add_agent(&alice, "ssh-rsa AAAA").unwrap();
    store.add_agent(&al, "ssh-rsa AAAB").unwrap();
    let share = |o: &Username, p: &str, w: &Username| Share {
        owner: o.clone(),
        prefix: p.into(),
        with: w.clone(),
    };
    store.add_share(&share(&alice, "x", &bob)).unwrap();
    store.add_share(&share(&bob, "y", &alice)).unwrap();
    store.add_share(&share(&bob, "y", &al)).unwrap();
    let ds = |us| sample("ds", Kind::Datasource, us, "t");
    store.write(&alice, &[ds(1), ds(2)]).unwrap();
    store
        .write(&alice, &[sample("x.p", Kind::Datapoint, 1, "1")])
        .unwrap();
    store.write(&al, &[ds(1)]).unwrap();
    let alice_ds = MetricId {
        owner: alice.clone(),
        local: "ds".into(),
    };
    store.set_supplies(&alice_ds, &["x.p".into()]).unwrap();

    let removed = store.remove_user(&alice).unwrap();
    assert_eq!(
        removed,
        UserRemoval {
            agents: 1,
            shares_given: 1,
            shares_received: 1,
            metrics: 2,
            samples: 3,
        }
    );
    assert!(matches!(
        store.remove_user(&alice),
        Err(StoreError::NoSuchUser(_))
    ));
    assert_eq!(store.users().unwrap(), vec![al.clone(), bob.clone()]);
    assert_eq!(store.all_shares().unwrap(), vec![share(&bob, "y", &al)]);
    // "alice.b" sorts right after "alice": untouched.
    assert_eq!(store.agents_of(&al).unwrap().len(), 1);
    assert_eq!(store.metrics_of(&al).unwrap().len(), 1);
    // A write for the removed user is refused and leaves nothing.
    assert!(matches!(
        store.write(&alice, &[ds(3)]),
        Err(StoreError::NoSuchUser(_))
    ));
    store.add_user(&alice).unwrap();
    assert!(store.metrics_of(&alice).unwrap().is_empty());
    assert!(store.agents_of(&alice).unwrap().is_empty());
    assert_eq!(store.supplies(&alice_ds).unwrap(), None);
    // The key is free again, and agent and share removals name what is missing.
    let a = store.add_agent(&alice, "ssh-rsa AAAA").unwrap();
    assert_eq!(store.remove_agent(&alice, "ssh-rsa AAAA").unwrap(), a);
    assert!(matches!(
        store.remove_agent(&alice, "ssh-rsa AAAA"),
        Err(StoreError::NoSuchAgent { .. })
    ));
    assert!(matches!(
        store.remove_share(&share(&alice, "x", &bob)),
        Err(StoreError::NoSuchShare(_))
    ));
}

/// A seeded generator (splitmix64), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The column of `t` as `reduce` defines it: equal spans of µs from `start`.
fn column_of(t: TimeUuid, start: TimeUuid, end: TimeUuid, columns: u32) -> u32 {
    let total = i128::from(end.micros()) - i128::from(start.micros()) + 1;
    let span = (total + i128::from(columns) - 1) / i128::from(columns);
    ((i128::from(t.micros()) - i128::from(start.micros())) / span) as u32
}

/// `reduce` computed the obvious way from the rows `read_oldest` returns.
fn naive_reduce(
    rows: &[(TimeUuid, String)],
    start: TimeUuid,
    end: TimeUuid,
    columns: u32,
    datapoint: bool,
) -> Reduced {
    let mut out = Reduced::default();
    for (t, content) in rows {
        let index = column_of(*t, start, end, columns);
        let p = Point {
            t: *t,
            v: if datapoint {
                content.parse().unwrap()
            } else {
                0.0
            },
        };
        out.rows += 1;
        match out.columns.last_mut() {
            Some(c) if c.index == index => {
                c.count += 1;
                c.last = *t;
                if let Some(v) = &mut c.values {
                    v.last = p;
                    if p.v < v.min.v {
                        v.min = p;
                    }
                    if p.v > v.max.v {
                        v.max = p;
                    }
                }
            }
            _ => out.columns.push(Column {
                index,
                count: 1,
                first: *t,
                last: *t,
                values: datapoint.then_some(ColumnValues {
                    first: p,
                    last: p,
                    min: p,
                    max: p,
                }),
            }),
        }
    }
    out
}

/// The smallest and largest points of a reduction (the oldest of equals).
fn extremes(r: &Reduced) -> Option<(Point, Point)> {
    let mut out: Option<(Point, Point)> = None;
    for v in r.columns.iter().filter_map(|c| c.values) {
        out = Some(match out {
            None => (v.min, v.max),
            Some((lo, hi)) => (
                if v.min.v < lo.v { v.min } else { lo },
                if v.max.v > hi.v { v.max } else { hi },
            ),
        });
    }
    out
}

/// Check `got` against the naive reduction of the same range; returns whether
/// the range was large enough to be served from rollups.
fn check_reduction(
    store: &dyn HubStore,
    id: &MetricId,
    start: TimeUuid,
    end: TimeUuid,
    columns: u32,
    datapoint: bool,
) -> bool {
    let got = store.reduce(id, start, end, columns).unwrap();
    let rows = store.read_oldest(id, start, end, usize::MAX).unwrap();
    let want = naive_reduce(&rows, start, end, columns, datapoint);
    let what = format!("{id} {start}..={end} in {columns} columns");
    assert_eq!(got.rows, want.rows, "{what}");
    assert_eq!(
        got.columns.iter().map(|c| c.count).sum::<u64>(),
        got.rows,
        "{what}"
    );
    if rows.len() as u64 <= 4 * u64::from(columns) {
        assert_eq!(got, want, "{what}");
        return false;
    }
    let stored: std::collections::HashMap<TimeUuid, f64> = rows
        .iter()
        .filter(|_| datapoint)
        .map(|(t, c)| (*t, c.parse().unwrap()))
        .collect();
    let (first, last) = (&got.columns[0], &got.columns[got.columns.len() - 1]);
    assert_eq!(first.first, want.columns[0].first, "{what}");
    assert_eq!(last.last, rows[rows.len() - 1].0, "{what}");
    let mut previous = None;
    for c in &got.columns {
        assert!(
            c.index < columns && Some(c.index) > previous,
            "{what}: {c:?}"
        );
        previous = Some(c.index);
        assert!(c.count > 0 && c.first <= c.last, "{what}: {c:?}");
        // A bucket sits in the column of its first sample and is no wider than a column.
        assert_eq!(
            column_of(c.first, start, end, columns),
            c.index,
            "{what}: {c:?}"
        );
        assert!(
            column_of(c.last, start, end, columns) <= c.index + 1,
            "{what}: {c:?}"
        );
        assert_eq!(c.values.is_some(), datapoint, "{what}: {c:?}");
        if let Some(v) = c.values {
            // Every point is a stored sample with its current value.
            for p in [v.first, v.last, v.min, v.max] {
                assert_eq!(stored.get(&p.t), Some(&p.v), "{what}: {c:?}");
                assert!(c.first <= p.t && p.t <= c.last, "{what}: {c:?}");
                assert!(v.min.v <= p.v && p.v <= v.max.v, "{what}: {c:?}");
            }
            assert_eq!((v.first.t, v.last.t), (c.first, c.last), "{what}: {c:?}");
        }
    }
    if datapoint {
        let got_values = (first.values.unwrap().first, last.values.unwrap().last);
        let want_values = (
            want.columns[0].values.unwrap().first,
            want.columns[want.columns.len() - 1].values.unwrap().last,
        );
        assert_eq!(got_values, want_values, "{what}");
        assert_eq!(extremes(&got), extremes(&want), "{what}");
    }
    // Columns at least as wide as the finest rollup tier's buckets.
    let total = i128::from(end.micros()) - i128::from(start.micros()) + 1;
    (total + i128::from(columns) - 1) / i128::from(columns) >= 10_000_000
}

#[test]
fn reduce_matches_a_naive_reduction_of_the_rows() {
    for t in subjects() {
        reduce_matches_a_naive_reduction_of_the_rows_on(t);
    }
}

fn reduce_matches_a_naive_reduction_of_the_rows_on(mut t: Subject) {
    let store = t.s();
    let (alice, bob) = (user("alice"), user("bob"));
    store.add_user(&alice).unwrap();
    store.add_user(&bob).unwrap();
    let mut rng = Rng(0x5eed_2026_1206);
    let base: i64 = 1_700_000_000_000_000;
    // (owner, uri, kind, centre µs): one metric straddles the Unix epoch.
    let metrics = [
        (&alice, "a.dp", Kind::Datapoint, base),
        (&alice, "b.dp", Kind::Datapoint, base),
        (&alice, "c.ds", Kind::Datasource, base),
        (&alice, "e.dp", Kind::Datapoint, 0),
        (&bob, "a.dp", Kind::Datapoint, base),
    ];
    let mut written: Vec<Vec<TimeUuid>> = vec![Vec::new(); metrics.len()];
    let value = |rng: &mut Rng, kind: Kind| match kind {
        Kind::Datapoint if rng.below(4) == 0 => format!("{}.5", rng.below(41) as i64 - 20),
        Kind::Datapoint => format!("{}", rng.below(41) as i64 - 20),
        Kind::Datasource => format!("line {}", rng.below(100)),
    };
    for _ in 0..80 {
        let mut group: Vec<(Username, Vec<NewSample>)> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let mut samples = Vec::new();
            let mut this_write: Vec<(usize, TimeUuid)> = Vec::new();
            for _ in 0..1 + rng.below(120) {
                let m = rng.below(metrics.len() as u64) as usize;
                let (_, uri, kind, centre) = metrics[m];
                let t = match rng.below(10) {
                    // A rewrite of a stored sample, or of one earlier in this write.
                    0 | 1 if !written[m].is_empty() => {
                        written[m][rng.below(written[m].len() as u64) as usize]
                    }
                    2 if this_write.iter().any(|(i, _)| *i == m) => {
                        let mine: Vec<_> = this_write.iter().filter(|(i, _)| *i == m).collect();
                        mine[rng.below(mine.len() as u64) as usize].1
                    }
                    // Another TimeUUID of a stored sample's microsecond.
                    3 if !written[m].is_empty() => {
                        let us = written[m][rng.below(written[m].len() as u64) as usize].micros();
                        TimeUuid::build(us, rng.below(1 << 14) as u16, rng.next()).unwrap()
                    }
                    spread => {
                        let offset = match spread % 3 {
                            // Four days, sparse.
                            0 => rng.below(345_600_000_000) as i64 - 172_800_000_000,
                            // Half an hour, about a sample a second.
                            1 => rng.below(1_800_000_000) as i64,
                            // A minute, dense.
                            _ => rng.below(60_000_000) as i64 + 600_000_000,
                        };
                        let us = centre + offset;
                        TimeUuid::build(us, rng.below(1 << 14) as u16, rng.next()).unwrap()
                    }
                };
                this_write.push((m, t));
                samples.push((
                    metrics[m].0.clone(),
                    sample_at(uri, kind, t, value(&mut rng, kind)),
                ));
            }
            // One write per owner, out of time order.
            for owner in [&alice, &bob] {
                let mine: Vec<NewSample> = samples
                    .iter()
                    .filter(|(o, _)| o == owner)
                    .map(|(_, s)| s.clone())
                    .collect();
                if !mine.is_empty() {
                    group.push((owner.clone(), mine));
                }
            }
            for (m, t) in this_write {
                written[m].push(t);
            }
        }
        for result in store.write_group(&group).unwrap() {
            result.unwrap();
        }
    }
    let total: usize = written.iter().map(Vec::len).sum();
    assert!(total > 8_000, "{total}");

    let mut rollup_served = 0;
    let mut check_all = |store: &dyn HubStore, rng: &mut Rng, queries: usize| {
        for _ in 0..queries {
            let m = rng.below(metrics.len() as u64) as usize;
            let (owner, uri, kind, centre) = metrics[m];
            let id = MetricId {
                owner: owner.clone(),
                local: uri.into(),
            };
            let bound = |rng: &mut Rng| match rng.below(8) {
                0 => TimeUuid::MIN,
                1 => TimeUuid::MAX,
                2 | 3 => written[m][rng.below(written[m].len() as u64) as usize],
                4 => {
                    let us = centre + rng.below(1_800_000_000) as i64;
                    TimeUuid::lowest_at(us).unwrap()
                }
                _ => {
                    let us = centre + rng.below(345_600_000_000) as i64 - 172_800_000_000;
                    TimeUuid::build(us, rng.below(1 << 14) as u16, rng.next()).unwrap()
                }
            };
            let (a, b) = (bound(rng), bound(rng));
            let (start, end) = if rng.below(20) == 0 {
                (a, b)
            } else {
                (a.min(b), a.max(b))
            };
            let columns = [1, 2, 3, 5, 8, 13, 64, 500, 2000][rng.below(9) as usize];
            if check_reduction(store, &id, start, end, columns, kind == Kind::Datapoint) {
                rollup_served += 1;
            }
        }
    };
    check_all(store, &mut rng, 400);
    t.reopen();
    let store = t.s();
    check_all(store, &mut rng, 100);
    assert!(
        rollup_served > 100,
        "only {rollup_served} ranges used the rollups"
    );
    // A reduction of nothing, and of a metric that does not exist.
    let id = MetricId {
        owner: alice.clone(),
        local: "a.dp".into(),
    };
    assert_eq!(
        store.reduce(&id, TimeUuid::MAX, TimeUuid::MIN, 10).unwrap(),
        Reduced::default()
    );
    let none = MetricId {
        owner: alice,
        local: "nothing".into(),
    };
    assert_eq!(
        store
            .reduce(&none, TimeUuid::MIN, TimeUuid::MAX, 10)
            .unwrap(),
        Reduced::default()
    );
}

fn sample_at(uri: &str, kind: Kind, t: TimeUuid, content: String) -> NewSample {
    NewSample {
        uri: uri.into(),
        kind,
        t,
        content,
    }
}

#[test]
fn summaries_count_once_follow_removals_and_survive_reopening_and_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = RedbStore::open(&data).unwrap();
    let (alice, bob) = (user("alice"), user("bob"));
    store.add_user(&alice).unwrap();
    store.add_user(&bob).unwrap();
    let t = |us: i64| TimeUuid::build(us, 7, 7).unwrap();
    let dp = |us, v: &str| sample_at("a.dp", Kind::Datapoint, t(us), v.into());
    store
        .write(&alice, &[dp(20, "2"), dp(10, "1"), dp(30, "3")])
        .unwrap();
    store
        .write(
            &alice,
            &[sample_at("a.ds", Kind::Datasource, t(5), "x".into())],
        )
        .unwrap();
    // Rewrites, with a new value and with the same one, count nothing.
    store.write(&alice, &[dp(20, "9"), dp(10, "1")]).unwrap();
    store.write(&bob, &[dp(1_000, "4")]).unwrap();
    // A datapoint that is not a number is refused, and nothing of its write kept.
    assert!(matches!(
        store.write(&alice, &[dp(40, "4"), dp(50, "nan")]),
        Err(StoreError::Unsupported(_))
    ));
    let summary = |uri: &str, kind, count, first: i64, last: i64| MetricSummary {
        uri: uri.into(),
        kind,
        count,
        first: Some(t(first)),
        last: Some(t(last)),
    };
    let alices = vec![
        summary("a.dp", Kind::Datapoint, 3, 10, 30),
        summary("a.ds", Kind::Datasource, 1, 5, 5),
    ];
    assert_eq!(store.summaries_of(&alice).unwrap(), alices);
    assert_eq!(
        store.summaries_of(&bob).unwrap(),
        vec![summary("a.dp", Kind::Datapoint, 1, 1_000, 1_000)]
    );
    assert!(store.summaries_of(&user("carol")).unwrap().is_empty());
    let id = MetricId {
        owner: alice.clone(),
        local: "a.dp".into(),
    };
    let reduced = store.reduce(&id, TimeUuid::MIN, TimeUuid::MAX, 1).unwrap();
    assert_eq!(reduced.rows, 3);
    let values = reduced.columns[0].values.unwrap();
    assert_eq!(values.max, Point { t: t(20), v: 9.0 });
    assert_eq!(values.min, Point { t: t(10), v: 1.0 });

    // Three metrics, one bucket per tier each.
    assert_eq!(store.rollup_table_sizes().unwrap(), (3, 18));
    store.remove_user(&bob).unwrap();
    assert!(store.summaries_of(&bob).unwrap().is_empty());
    assert_eq!(store.rollup_table_sizes().unwrap(), (2, 12));
    store.add_user(&bob).unwrap();
    assert!(store.summaries_of(&bob).unwrap().is_empty());

    drop(store);
    let store = RedbStore::open(&data).unwrap();
    assert_eq!(store.summaries_of(&alice).unwrap(), alices);
    assert_eq!(
        store.reduce(&id, TimeUuid::MIN, TimeUuid::MAX, 1).unwrap(),
        reduced
    );
    drop(store);

    // A store written before the stats and rollups existed: format version 1
    // without their tables.
    {
        let db = ::redb::Database::create(data.join(super::redb::DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        for name in ["metric_stats", "rollups"] {
            let table: ::redb::TableDefinition<u64, u64> = ::redb::TableDefinition::new(name);
            assert!(txn.delete_table(table).unwrap(), "{name}");
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&data).unwrap();
    assert_eq!(store.rollup_table_sizes().unwrap(), (2, 12));
    assert_eq!(store.summaries_of(&alice).unwrap(), alices);
    assert_eq!(
        store.reduce(&id, TimeUuid::MIN, TimeUuid::MAX, 1).unwrap(),
        reduced
    );
    // Writes after the backfill go on from it.
    store.write(&alice, &[dp(40, "-1")]).unwrap();
    assert_eq!(
        store.summaries_of(&alice).unwrap()[0],
        summary("a.dp", Kind::Datapoint, 4, 10, 40)
    );
}

#[test]
fn summaries_count_once_follow_removals_and_survive_reopening() {
    for t in subjects() {
        summaries_on(t);
    }
}

fn summaries_on(mut subject: Subject) {
    let store = subject.s();
    let (alice, bob) = (user("alice"), user("bob"));
    store.add_user(&alice).unwrap();
    store.add_user(&bob).unwrap();
    let t = |us: i64| TimeUuid::build(us, 7, 7).unwrap();
    let dp = |us, v: &str| sample_at("a.dp", Kind::Datapoint, t(us), v.into());
    store
        .write(&alice, &[dp(20, "2"), dp(10, "1"), dp(30, "3")])
        .unwrap();
    store
        .write(
            &alice,
            &[sample_at("a.ds", Kind::Datasource, t(5), "x".into())],
        )
        .unwrap();
    // Rewrites, with a new value and with the same one, count nothing; nor
    // does a TimeUUID written twice in one write.
    store.write(&alice, &[dp(20, "9"), dp(10, "1")]).unwrap();
    store
        .write(&bob, &[dp(1_000, "5"), dp(1_000, "4")])
        .unwrap();
    assert!(matches!(
        store.write(&alice, &[dp(40, "4"), dp(50, "nan")]),
        Err(StoreError::Unsupported(_))
    ));
    let summary = |uri: &str, kind, count, first: i64, last: i64| MetricSummary {
        uri: uri.into(),
        kind,
        count,
        first: Some(t(first)),
        last: Some(t(last)),
    };
    let alices = vec![
        summary("a.dp", Kind::Datapoint, 3, 10, 30),
        summary("a.ds", Kind::Datasource, 1, 5, 5),
    ];
    assert_eq!(store.summaries_of(&alice).unwrap(), alices);
    let bob_id = MetricId {
        owner: bob.clone(),
        local: "a.dp".into(),
    };
    assert_eq!(
        store
            .read_newest(&bob_id, TimeUuid::MIN, TimeUuid::MAX, 10)
            .unwrap(),
        vec![(t(1_000), "4".to_owned())]
    );
    assert_eq!(
        store.summaries_of(&bob).unwrap(),
        vec![summary("a.dp", Kind::Datapoint, 1, 1_000, 1_000)]
    );
    assert!(store.summaries_of(&user("carol")).unwrap().is_empty());
    let id = MetricId {
        owner: alice.clone(),
        local: "a.dp".into(),
    };
    let reduced = store.reduce(&id, TimeUuid::MIN, TimeUuid::MAX, 1).unwrap();
    assert_eq!(reduced.rows, 3);
    let values = reduced.columns[0].values.unwrap();
    assert_eq!(values.max, Point { t: t(20), v: 9.0 });
    assert_eq!(values.min, Point { t: t(10), v: 1.0 });
    store.remove_user(&bob).unwrap();
    assert!(store.summaries_of(&bob).unwrap().is_empty());
    store.add_user(&bob).unwrap();
    assert!(store.summaries_of(&bob).unwrap().is_empty());

    subject.reopen();
    let store = subject.s();
    assert_eq!(store.summaries_of(&alice).unwrap(), alices);
    assert_eq!(
        store.reduce(&id, TimeUuid::MIN, TimeUuid::MAX, 1).unwrap(),
        reduced
    );
    store.write(&alice, &[dp(40, "-1")]).unwrap();
    assert_eq!(
        store.summaries_of(&alice).unwrap()[0],
        summary("a.dp", Kind::Datapoint, 4, 10, 40)
    );
}

#[test]
fn a_group_refuses_only_its_bad_writes() {
    for t in subjects() {
        let store = t.s();
        let (alice, bob) = (user("alice"), user("bob"));
        store.add_user(&alice).unwrap();
        store.add_user(&bob).unwrap();
        store
            .write(&alice, &[sample("ds", Kind::Datasource, 1, "x")])
            .unwrap();
        let group = vec![
            (alice.clone(), vec![sample("a.p", Kind::Datapoint, 2, "2")]),
            (
                alice.clone(),
                vec![
                    sample("b.p", Kind::Datapoint, 2, "2"),
                    sample("ds", Kind::Datapoint, 2, "2"),
                ],
            ),
            (user("carol"), vec![sample("c", Kind::Datapoint, 2, "2")]),
            (
                bob.clone(),
                vec![
                    sample("b", Kind::Datasource, 3, "y"),
                    sample("b", Kind::Datasource, 4, "z"),
                ],
            ),
        ];
        let results = store.write_group(&group).unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[0].as_ref().unwrap().created, vec!["a.p".to_owned()]);
        assert!(matches!(results[1], Err(StoreError::KindMismatch { .. })));
        assert!(matches!(results[2], Err(StoreError::NoSuchUser(_))));
        assert_eq!(results[3].as_ref().unwrap().created, vec!["b".to_owned()]);
        assert_eq!(
            store.metrics_of(&alice).unwrap(),
            vec![
                ("a.p".to_owned(), Kind::Datapoint),
                ("ds".to_owned(), Kind::Datasource)
            ]
        );
        let b = MetricId {
            owner: bob.clone(),
            local: "b".into(),
        };
        let rows = store
            .read_oldest(&b, TimeUuid::MIN, TimeUuid::MAX, 10)
            .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            ["y", "z"]
        );
        assert!(store.write_group(&[]).unwrap().is_empty());
    }
}

#[test]
fn web_records_round_trip() {
    for t in subjects() {
        let store = t.s();
        let alice = user("alice");
        assert!(matches!(
            store.set_password(&alice, Some("$argon2id$x")),
            Err(StoreError::NoSuchUser(_))
        ));
        store.add_user(&alice).unwrap();
        store.set_password(&alice, Some("$argon2id$x")).unwrap();
        assert_eq!(
            store.password(&alice).unwrap().as_deref(),
            Some("$argon2id$x")
        );
        store.set_password(&alice, None).unwrap();
        assert_eq!(store.password(&alice).unwrap(), None);
        let a = store.add_token(&alice, "b", [2; 32]).unwrap();
        let b = store.add_token(&alice, "a", [1; 32]).unwrap();
        assert!(matches!(
            store.add_token(&alice, "a", [3; 32]),
            Err(StoreError::TokenExists { .. })
        ));
        assert_eq!(store.find_token([2; 32]).unwrap(), Some(a.clone()));
        assert_eq!(store.find_token([3; 32]).unwrap(), None);
        assert_eq!(store.tokens_of(&alice).unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(
            store.token_digests_of(&alice).unwrap(),
            vec![([1; 32], b), ([2; 32], a)]
        );
        assert!(store.remove_token(&alice, "a").unwrap());
        assert!(!store.remove_token(&alice, "a").unwrap());
        let agent = store.add_agent(&alice, "ssh-rsa AAAA").unwrap();
        store.note_login(&agent.id, 5).unwrap();
        store.note_login(&agent.id, 7).unwrap();
        store.note_login("someone-else", 9).unwrap();
        assert_eq!(
            store.last_logins(&alice).unwrap(),
            std::collections::BTreeMap::from([(agent.id.clone(), 7)])
        );
    }
}

/// Two hubs on one database: a challenge issued at one is answered at the
/// other, once.
#[test]
fn shared_logins_across_two_hubs() {
    use crate::auth::ChallengeRefusal;
    if !testing::available() {
        return;
    }
    let schema = TestSchema::new();
    let (a, b) = (schema.connect(), schema.connect());
    let validity = std::time::Duration::from_secs(60);
    a.issue_challenge([1; 32], "agent-1").unwrap();
    assert_eq!(
        b.check_challenge([1; 32], "agent-1", validity).unwrap(),
        Ok(())
    );
    assert_eq!(
        b.check_challenge([1; 32], "agent-2", validity).unwrap(),
        Err(ChallengeRefusal::NotFound)
    );
    assert_eq!(
        b.check_challenge([2; 32], "agent-1", validity).unwrap(),
        Err(ChallengeRefusal::NotFound)
    );
    assert!(b.use_challenge([1; 32]).unwrap());
    assert!(!a.use_challenge([1; 32]).unwrap());
    assert!(!b.use_challenge([1; 32]).unwrap());
    assert!(!b.use_challenge([9; 32]).unwrap());
    assert_eq!(
        a.check_challenge([1; 32], "agent-1", validity).unwrap(),
        Err(ChallengeRefusal::Used)
    );
    // Expiry by the database's clock.
    a.issue_challenge([3; 32], "agent-1").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        b.check_challenge([3; 32], "agent-1", std::time::Duration::from_millis(200))
            .unwrap(),
        Err(ChallengeRefusal::Expired)
    );
    // Many hubs racing to use one challenge: exactly one wins.
    a.issue_challenge([4; 32], "agent-1").unwrap();
    let a = std::sync::Arc::new(a);
    let b = std::sync::Arc::new(b);
    let wins: usize = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || store.use_challenge([4; 32]).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| usize::from(h.join().unwrap()))
        .sum();
    assert_eq!(wins, 1);
}

#[test]
fn shared_sessions_across_two_hubs() {
    if !testing::available() {
        return;
    }
    let schema = TestSchema::new();
    let (a, b) = (schema.connect(), schema.connect());
    let record = |sid: &str, u: &str, agent: &str| SessionRecord {
        sid: sid.into(),
        user: user(u),
        agent_id: agent.into(),
    };
    a.add_session([1; 32], &record("s1", "alice", "ag1"))
        .unwrap();
    a.add_session([2; 32], &record("s2", "alice", "ag2"))
        .unwrap();
    a.add_session([3; 32], &record("s3", "alice", "ag2"))
        .unwrap();
    a.add_session([4; 32], &record("s4", "bob", "ag3")).unwrap();
    assert_eq!(
        b.find_session([1; 32]).unwrap(),
        Some(record("s1", "alice", "ag1"))
    );
    assert_eq!(b.find_session([9; 32]).unwrap(), None);
    assert_eq!(
        b.remove_sessions(&user("alice"), Some("s1"), None).unwrap(),
        vec!["s1".to_owned()]
    );
    assert_eq!(a.find_session([1; 32]).unwrap(), None);
    assert!(
        b.remove_sessions(&user("bob"), None, Some("ag2"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.remove_sessions(&user("alice"), None, Some("ag2"))
            .unwrap(),
        vec!["s2".to_owned(), "s3".to_owned()]
    );
    assert_eq!(
        a.remove_sessions(&user("bob"), None, None).unwrap(),
        vec!["s4".to_owned()]
    );
    assert_eq!(a.find_session([4; 32]).unwrap(), None);
}

/// Two hubs writing the same metrics at once: every sample is kept once and
/// counted once, whichever hub created the metric.
#[test]
fn two_hubs_writing_the_same_metrics_count_each_sample_once() {
    if !testing::available() {
        return;
    }
    let schema = TestSchema::new();
    let a = std::sync::Arc::new(schema.connect());
    let b = std::sync::Arc::new(schema.connect());
    let alice = user("alice");
    a.add_user(&alice).unwrap();
    let times: Vec<TimeUuid> = (0..400)
        .map(|i| TimeUuid::random_at(1_700_000_000_000_000 + i * 3_600_000_000).unwrap())
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            let (alice, times) = (alice.clone(), times.clone());
            std::thread::spawn(move || {
                for chunk in times.chunks(50) {
                    let samples: Vec<NewSample> = chunk
                        .iter()
                        .flat_map(|t| {
                            ["m.one", "m.two"].map(|uri| NewSample {
                                uri: uri.into(),
                                kind: Kind::Datapoint,
                                t: *t,
                                content: w.to_string(),
                            })
                        })
                        .collect();
                    store.write(&alice, &samples).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let summaries = b.summaries_of(&alice).unwrap();
    assert_eq!(summaries.len(), 2);
    for s in summaries {
        assert_eq!(s.count, 400, "{s:?}");
        assert_eq!(s.first, times.iter().min().copied());
        assert_eq!(s.last, times.iter().max().copied());
    }
    // The samples span months: each went to its month's partition.
    let id = MetricId {
        owner: alice,
        local: "m.one".into(),
    };
    assert_eq!(
        a.read_oldest(&id, TimeUuid::MIN, TimeUuid::MAX, 1000)
            .unwrap()
            .len(),
        400
    );
}

#[test]
fn connecting_to_nothing_names_the_database_and_what_to_do() {
    // Port 1 on loopback: nothing listens there.
    let err = PgStore::connect("postgres://someone:secret@127.0.0.1:1/nodb", None)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("postgres://someone@127.0.0.1:1/nodb"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("check that PostgreSQL runs there"), "{text}");
    let err = PgStore::connect("postgres://x@127.0.0.1/db", Some("Bad-Name"))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not a plain schema name"), "{err}");
}

/// The hub's way: connect and query on tokio's blocking pool, drop the store
/// inside an async task (its runtime must not block there).
#[test]
fn a_pg_store_works_from_blocking_threads_and_drops_in_async_code() {
    if !testing::available() {
        return;
    }
    let schema = TestSchema::new();
    let name = schema.name.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = tokio::task::spawn_blocking(move || {
            PgStore::connect(testing::URL, Some(&name)).unwrap()
        })
        .await
        .unwrap();
        let store = std::sync::Arc::new(store);
        let s = store.clone();
        let users = tokio::task::spawn_blocking(move || {
            s.add_user(&user("alice")).unwrap();
            s.users().unwrap()
        })
        .await
        .unwrap();
        assert_eq!(users, vec![user("alice")]);
        drop(store);
    });
}
