//! `komlog-hub migrate`: copy a data directory's embedded store into
//! PostgreSQL, then check the copy.
//!
//! **Owns:** the copy of every record through the [`HubStore`] trait (users,
//! agent keys with their ids, shares, web passwords, API tokens by digest,
//! last logins, metrics with their kind and supplies, and every sample, in
//! pages of [`PAGE`] samples, each page one transaction), and the check: per
//! uri, the sample count and a SHA-256 over the rows in TimeUUID order (the
//! uuid's 16 bytes, the content's length as 8 bytes big-endian, the content)
//! must be equal on both sides; the other records must be equal too.
//!
//! Re-runnable: every copy is an upsert or skips what is there, so a second
//! run adds nothing and the counts stay equal. The hub must not be serving on
//! the data directory meanwhile (the embedded store is locked while it does).

use std::io::Write;

use komlog_protocol::{MetricId, TimeUuid, Username};
use sha2::{Digest, Sha256};

use crate::store::postgres::PgStore;
use crate::store::{HubStore, NewSample, StoreError};

/// Samples per read and per write transaction.
pub const PAGE: usize = 5000;

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A store refused or failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being copied or checked.
        what: String,
        /// The store's error.
        source: StoreError,
    },
    /// The report could not be written.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

fn at(what: impl Into<String>) -> impl FnOnce(StoreError) -> MigrateError {
    let what = what.into();
    move |source| MigrateError::Store { what, source }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// Users.
    pub users: usize,
    /// Agent keys.
    pub agents: usize,
    /// Shares.
    pub shares: usize,
    /// API tokens.
    pub tokens: usize,
    /// Metrics.
    pub metrics: usize,
    /// Samples written (upserted: a second run writes them again, unchanged).
    pub samples: u64,
}

/// One uri's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriCheck {
    /// The metric.
    pub id: MetricId,
    /// Samples in the source.
    pub from_count: u64,
    /// Samples in the copy.
    pub to_count: u64,
    /// Same rows on both sides (count and checksum).
    pub ok: bool,
}

/// Copy everything of `from` into `to`.
pub fn copy(from: &dyn HubStore, to: &PgStore) -> Result<Copied, MigrateError> {
    let mut n = Copied::default();
    let users = from.users().map_err(at("listing the users"))?;
    for u in &users {
        to.import_user(u).map_err(at(format!("user {u}")))?;
        n.users += 1;
    }
    for u in &users {
        for agent in from.agents_of(u).map_err(at(format!("agents of {u}")))? {
            to.import_agent(&agent)
                .map_err(at(format!("agent {} of {u}", agent.id)))?;
            n.agents += 1;
        }
        if let Some(phc) = from.password(u).map_err(at(format!("password of {u}")))? {
            to.set_password(u, Some(&phc))
                .map_err(at(format!("password of {u}")))?;
        }
        for (digest, token) in from
            .token_digests_of(u)
            .map_err(at(format!("tokens of {u}")))?
        {
            to.import_token(digest, &token)
                .map_err(at(format!("token {:?} of {u}", token.name)))?;
            n.tokens += 1;
        }
        for (agent, at_us) in from
            .last_logins(u)
            .map_err(at(format!("last logins of {u}")))?
        {
            to.note_login(&agent, at_us)
                .map_err(at(format!("last login of agent {agent}")))?;
        }
    }
    for share in from.all_shares().map_err(at("listing the shares"))? {
        to.add_share(&share).map_err(at(format!(
            "share of {}:{} with {}",
            share.owner, share.prefix, share.with
        )))?;
        n.shares += 1;
    }
    for u in &users {
        for (uri, kind) in from.metrics_of(u).map_err(at(format!("metrics of {u}")))? {
            let id = MetricId {
                owner: u.clone(),
                local: uri.clone(),
            };
            to.import_metric(&id, kind)
                .map_err(at(format!("metric {id}")))?;
            n.metrics += 1;
            n.samples += pages(from, &id, |rows| {
                let samples: Vec<NewSample> = rows
                    .iter()
                    .map(|(t, content)| NewSample {
                        uri: uri.clone(),
                        kind,
                        t: *t,
                        content: content.clone(),
                    })
                    .collect();
                to.write(u, &samples).map(|_| ())
            })
            .map_err(at(format!("samples of {id}")))?;
            if let Some(supplies) = from
                .supplies(&id)
                .map_err(at(format!("supplies of {id}")))?
            {
                to.set_supplies(&id, &supplies)
                    .map_err(at(format!("supplies of {id}")))?;
            }
        }
    }
    Ok(n)
}

/// Feed every sample of `id` to `each`, oldest first, [`PAGE`] at a time;
/// returns how many there were.
fn pages(
    store: &dyn HubStore,
    id: &MetricId,
    mut each: impl FnMut(&[(TimeUuid, String)]) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut cursor = TimeUuid::MIN;
    let mut first = true;
    let mut total = 0;
    loop {
        let mut rows = store.read_oldest(id, cursor, TimeUuid::MAX, PAGE)?;
        let full = rows.len() == PAGE;
        // Bounds are inclusive: the page after the first starts with the last row seen.
        if !first && rows.first().is_some_and(|r| r.0 == cursor) {
            rows.remove(0);
        }
        if !rows.is_empty() {
            each(&rows)?;
            total += rows.len() as u64;
        }
        match rows.last() {
            Some(last) if full => {
                cursor = last.0;
                first = false;
            }
            _ => return Ok(total),
        }
    }
}

/// The count and SHA-256 of a metric's rows in TimeUUID order.
fn fingerprint(store: &dyn HubStore, id: &MetricId) -> Result<(u64, [u8; 32]), StoreError> {
    let mut hash = Sha256::new();
    let count = pages(store, id, |rows| {
        for (t, content) in rows {
            hash.update(t.as_bytes());
            hash.update((content.len() as u64).to_be_bytes());
            hash.update(content.as_bytes());
        }
        Ok(())
    })?;
    Ok((count, hash.finalize().into()))
}

/// One of a user's records as a store answers it, as text.
type Answer = dyn Fn(&dyn HubStore, &Username) -> Result<String, StoreError>;

/// Compare the records of both stores; returns the differences found (empty
/// when the copy is complete), each as a line of text.
pub fn compare_records(
    from: &dyn HubStore,
    to: &dyn HubStore,
) -> Result<Vec<String>, MigrateError> {
    let mut diffs = Vec::new();
    let mut same = |what: String, equal: bool| {
        if !equal {
            diffs.push(format!("{what} differ"));
        }
    };
    let users = from.users().map_err(at("listing the users"))?;
    same(
        "users".into(),
        users == to.users().map_err(at("listing the users"))?,
    );
    same(
        "shares".into(),
        from.all_shares().map_err(at("listing the shares"))?
            == to.all_shares().map_err(at("listing the shares"))?,
    );
    for u in &users {
        let both = |f: &Answer| Ok::<bool, StoreError>(f(from, u)? == f(to, u)?);
        let checks: [(&str, &Answer); 6] = [
            ("agents", &|s, u| Ok(format!("{:?}", s.agents_of(u)?))),
            ("password", &|s, u| Ok(format!("{:?}", s.password(u)?))),
            ("tokens", &|s, u| {
                Ok(format!("{:?}", s.token_digests_of(u)?))
            }),
            ("last logins", &|s, u| {
                Ok(format!("{:?}", s.last_logins(u)?))
            }),
            ("metrics", &|s, u| Ok(format!("{:?}", s.metrics_of(u)?))),
            ("supplies", &|s, u| {
                let mut out = Vec::new();
                for (uri, _) in s.metrics_of(u)? {
                    let id = MetricId {
                        owner: u.clone(),
                        local: uri,
                    };
                    out.push(s.supplies(&id)?);
                }
                Ok(format!("{out:?}"))
            }),
        ];
        for (what, f) in checks {
            let equal = both(f).map_err(at(format!("{what} of {u}")))?;
            same(format!("{what} of {u}"), equal);
        }
    }
    Ok(diffs)
}

/// Check every uri of the source: the same count and checksum in the copy.
pub fn verify(from: &dyn HubStore, to: &dyn HubStore) -> Result<Vec<UriCheck>, MigrateError> {
    let mut out = Vec::new();
    for u in from.users().map_err(at("listing the users"))? {
        for (uri, _) in from.metrics_of(&u).map_err(at(format!("metrics of {u}")))? {
            let id = MetricId {
                owner: u.clone(),
                local: uri,
            };
            let (from_count, a) = fingerprint(from, &id).map_err(at(format!("reading {id}")))?;
            let (to_count, b) =
                fingerprint(to, &id).map_err(at(format!("reading the copy of {id}")))?;
            out.push(UriCheck {
                ok: from_count == to_count && a == b,
                id,
                from_count,
                to_count,
            });
        }
    }
    Ok(out)
}

/// Copy `from` into `to`, check the copy, and print one
/// `OWNER:URI COUNT checksum-ok` line per uri (`checksum-MISMATCH` with both
/// counts when it differs) and a summary to `out`. Returns true when the copy
/// is complete and equal.
pub fn migrate(
    from: &dyn HubStore,
    to: &PgStore,
    out: &mut dyn Write,
) -> Result<bool, MigrateError> {
    let copied = copy(from, to)?;
    writeln!(
        out,
        "copied {} user(s), {} agent key(s), {} share(s), {} token(s), {} metric(s) and {} sample(s) to {}",
        copied.users,
        copied.agents,
        copied.shares,
        copied.tokens,
        copied.metrics,
        copied.samples,
        to.target()
    )?;
    let mut ok = true;
    for check in verify(from, to)? {
        if check.ok {
            writeln!(out, "{} {} checksum-ok", check.id, check.from_count)?;
        } else {
            ok = false;
            writeln!(
                out,
                "{} {} checksum-MISMATCH (the copy has {})",
                check.id, check.from_count, check.to_count
            )?;
        }
    }
    for diff in compare_records(from, to)? {
        ok = false;
        writeln!(out, "MISMATCH: {diff}")?;
    }
    writeln!(
        out,
        "{}",
        if ok {
            "the copy is complete: every uri's count and checksum match"
        } else {
            "the copy differs from the source (see the MISMATCH lines)"
        }
    )?;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Share;
    use crate::store::postgres::testing::{self, TestSchema};
    use crate::store::redb::RedbStore;
    use komlog_protocol::Kind;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    /// Every answer the trait gives for `store`'s data, as text.
    fn answers(store: &dyn HubStore) -> Vec<String> {
        let mut out = vec![
            format!("{:?}", store.users().unwrap()),
            format!("{:?}", store.all_shares().unwrap()),
        ];
        for u in store.users().unwrap() {
            out.push(format!("{:?}", store.agents_of(&u).unwrap()));
            for a in store.agents_of(&u).unwrap() {
                out.push(format!(
                    "{:?}",
                    store.find_agent(&u, &a.public_line).unwrap()
                ));
            }
            out.push(format!("{:?}", store.shares_of(&u).unwrap()));
            out.push(format!("{:?}", store.password(&u).unwrap()));
            out.push(format!("{:?}", store.tokens_of(&u).unwrap()));
            for (d, _) in store.token_digests_of(&u).unwrap() {
                out.push(format!("{:?}", store.find_token(d).unwrap()));
            }
            out.push(format!("{:?}", store.last_logins(&u).unwrap()));
            out.push(format!("{:?}", store.metrics_of(&u).unwrap()));
            out.push(format!("{:?}", store.summaries_of(&u).unwrap()));
            for (uri, _) in store.metrics_of(&u).unwrap() {
                let id = MetricId {
                    owner: u.clone(),
                    local: uri,
                };
                out.push(format!("{:?}", store.metric_kind(&id).unwrap()));
                out.push(format!("{:?}", store.supplies(&id).unwrap()));
                let all = store
                    .read_oldest(&id, TimeUuid::MIN, TimeUuid::MAX, usize::MAX)
                    .unwrap();
                out.push(format!("{all:?}"));
                out.push(format!(
                    "{:?}",
                    store
                        .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 7)
                        .unwrap()
                ));
                if let (Some(a), Some(b)) = (all.get(3), all.get(20)) {
                    out.push(format!(
                        "{:?}",
                        store.read_newest(&id, a.0, b.0, 100).unwrap()
                    ));
                    // Few rows per column: both stores reduce exactly.
                    out.push(format!("{:?}", store.reduce(&id, a.0, b.0, 8).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn a_redb_store_migrates_twice_and_answers_the_same() {
        if !testing::available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStore::open(dir.path()).unwrap();
        let (alice, bob) = (user("alice"), user("bob"));
        redb.add_user(&alice).unwrap();
        redb.add_user(&bob).unwrap();
        let agent = redb.add_agent(&alice, "ssh-rsa AAAA").unwrap();
        redb.add_agent(&bob, "ssh-rsa BBBB").unwrap();
        redb.note_login(&agent.id, 1_700_000_000_000_000).unwrap();
        redb.add_share(&Share {
            owner: alice.clone(),
            prefix: "host".into(),
            with: bob.clone(),
        })
        .unwrap();
        redb.set_password(&bob, Some("$argon2id$v=19$x")).unwrap();
        redb.add_token(&alice, "script", [7; 32]).unwrap();
        // More than a page of samples, some rewritten, over several months.
        let base = 1_690_000_000_000_000_i64;
        let samples: Vec<NewSample> = (0..(PAGE as i64 * 2 + 17))
            .map(|i| NewSample {
                uri: "host.cpu".into(),
                kind: Kind::Datapoint,
                t: TimeUuid::build(base + i * 1_000_000_000, (i % 5) as u16, 9).unwrap(),
                content: format!("{}.5", i % 100),
            })
            .collect();
        for chunk in samples.chunks(3000) {
            redb.write(&alice, chunk).unwrap();
        }
        redb.write(&alice, &samples[10..20]).unwrap();
        let ds = MetricId {
            owner: alice.clone(),
            local: "host".into(),
        };
        redb.write(
            &alice,
            &[NewSample {
                uri: "host".into(),
                kind: Kind::Datasource,
                t: TimeUuid::build(base, 1, 1).unwrap(),
                content: "line one\nline two".into(),
            }],
        )
        .unwrap();
        redb.set_supplies(&ds, &["host.cpu".into()]).unwrap();
        redb.write(
            &bob,
            &[NewSample {
                uri: "x".into(),
                kind: Kind::Datasource,
                t: TimeUuid::build(0, 1, 1).unwrap(),
                content: "epoch".into(),
            }],
        )
        .unwrap();

        let schema = TestSchema::new();
        let pg = schema.connect();
        let mut report = Vec::new();
        assert!(migrate(&redb, &pg, &mut report).unwrap());
        let text = String::from_utf8(report).unwrap();
        assert!(
            text.contains(&format!("alice:host.cpu {} checksum-ok", samples.len())),
            "{text}"
        );
        assert!(text.contains("bob:x 1 checksum-ok"), "{text}");
        let first = answers(&pg);
        assert_eq!(first, answers(&redb));
        // Again: nothing doubles.
        let mut again = Vec::new();
        assert!(migrate(&redb, &pg, &mut again).unwrap());
        assert_eq!(answers(&pg), first);
        // A sample the copy lacks is a mismatch.
        redb.write(
            &bob,
            &[NewSample {
                uri: "x".into(),
                kind: Kind::Datasource,
                t: TimeUuid::build(5, 1, 1).unwrap(),
                content: "late".into(),
            }],
        )
        .unwrap();
        let checks = verify(&redb, &pg).unwrap();
        let bad: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
        assert_eq!(bad.len(), 1, "{checks:?}");
        assert_eq!((bad[0].from_count, bad[0].to_count), (2, 1));
    }
}
