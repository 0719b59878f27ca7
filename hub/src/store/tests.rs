//! The redb store against the trait's rules, on a real database file.

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

#[test]
fn users_agents_and_shares() {
    let (_dir, store) = open();
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
    let (_dir, store) = open();
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
    let (_dir, store) = open();
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
    let (_dir, store) = open();
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
