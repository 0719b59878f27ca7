//! Samples in the PostgreSQL store: the group-commit write, ranged reads,
//! reductions, and the monthly partitions of `samples`.
//!
//! **Owns:** turning writes into SQL (one transaction per group, in a fixed
//! number of statements whatever its size), the per-metric count and first/last key kept in `metrics`, and
//! creating `samples_yYYYYmMM` partitions before a write needs them (outside
//! the write's transaction, so readers are not blocked; a concurrent creation
//! by another hub is tolerated by retrying once).
//!
//! **Locking:** a group locks its users' rows (`FOR KEY SHARE`, so a removal
//! waits for it or refuses it) and its metrics' rows (`FOR UPDATE`, in id
//! order) before it upserts, so two hubs writing the same metric count each
//! new sample once. A group chosen as a deadlock victim is tried again whole.
//! (A SAVEPOINT per write, the obvious way to keep writes apart, costs a
//! round trip each and a subtransaction each: past 64 of them PostgreSQL
//! slows down; the rules are checked before anything is written instead.)

use std::collections::{HashMap, HashSet};

use futures_util::future::{try_join, try_join3};
use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use tokio_postgres::error::SqlState;

use super::{Shared, kind_of, pg_err};
use crate::store::{Column, ColumnValues, Point, Reduced, StoreError, WriteOutcome};

/// µs in a day.
const DAY_US: i64 = 86_400_000_000;

/// How often a write picked as a deadlock victim is tried.
const DEADLOCK_TRIES: usize = 3;

/// A sample's value for reductions: its number for a datapoint (the embedded
/// store's rule: finite numbers only).
fn datapoint_value(content: &str) -> Option<f64> {
    content.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The TimeUUID of a stored sort key.
pub(super) fn time_of(op: &'static str, key: &[u8]) -> Result<TimeUuid, StoreError> {
    <[u8; 16]>::try_from(key)
        .ok()
        .and_then(TimeUuid::from_sort_key)
        .ok_or_else(|| super::corrupt(op, "a sample key that is not a TimeUUID".into()))
}

/// The (year, month) of µs since the Unix epoch, UTC.
pub(super) fn month_of(us: i64) -> (i64, u32) {
    // Howard Hinnant's civil_from_days.
    let z = us.div_euclid(DAY_US) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// µs since the Unix epoch at the start of the first day of a month, UTC.
pub(super) fn month_start_us(year: i64, month: u32) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY_US
}

fn partition_name((year, month): (i64, u32)) -> String {
    format!("samples_y{year:04}m{month:02}")
}

/// The month of a partition's name, for partitions this store made.
pub(super) fn parse_partition_name(name: &str) -> Option<(i64, u32)> {
    let rest = name.strip_prefix("samples_y")?;
    let (year, month) = rest.split_once('m')?;
    let month: u32 = month.parse().ok()?;
    (1..=12).contains(&month).then_some(())?;
    Some((year.parse().ok()?, month))
}

/// Make the partitions of `months` that are not known to exist.
async fn ensure_partitions(s: &Shared, months: HashSet<(i64, u32)>) -> Result<(), StoreError> {
    let missing: Vec<(i64, u32)> = {
        let known = s.partitions.lock().unwrap_or_else(|p| p.into_inner());
        months.into_iter().filter(|m| !known.contains(m)).collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let op = "creating a partition of samples";
    let c = s.client(op).await?;
    for month in missing {
        let (year, m) = month;
        let (ny, nm) = if m == 12 {
            (year + 1, 1)
        } else {
            (year, m + 1)
        };
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF samples FOR VALUES FROM ({}) TO ({})",
            partition_name(month),
            month_start_us(year, m),
            month_start_us(ny, nm)
        );
        // Another hub creating the same partition at the same moment makes
        // this fail once (a duplicate catalog entry); then it exists.
        if c.batch_execute(&sql).await.is_err() {
            c.batch_execute(&sql).await.map_err(pg_err(op))?;
        }
        s.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(month);
    }
    Ok(())
}

pub(super) async fn write_group(
    s: &Shared,
    writes: Vec<(Username, Vec<NewSample>)>,
) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
    let op = "writing samples";
    let months: HashSet<(i64, u32)> = writes
        .iter()
        .flat_map(|(_, samples)| samples.iter().map(|x| month_of(x.t.micros())))
        .collect();
    ensure_partitions(s, months).await?;
    let mut c = s.client(op).await?;
    let mut tries = 0;
    loop {
        tries += 1;
        let txn = c.transaction().await.map_err(pg_err(op))?;
        match write_all(&txn, &writes).await {
            Ok(results) => {
                txn.commit().await.map_err(pg_err(op))?;
                return Ok(results);
            }
            // Rolled back when `txn` drops.
            Err(Fail::Pg(e))
                if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) && tries < DEADLOCK_TRIES => {
            }
            Err(Fail::Pg(e)) => return Err(pg_err(op)(e)),
            Err(Fail::Store(e)) => return Err(e),
        }
    }
}

/// Why a group's transaction failed as a whole.
enum Fail {
    /// The database failed.
    Pg(tokio_postgres::Error),
    /// The database holds something unreadable.
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

/// A metric as one write of the group sees it.
#[derive(Clone, Copy)]
struct Known {
    /// Its id, once it exists in the database.
    id: Option<i64>,
    kind: Kind,
}

/// Every write of a group in one transaction, in a fixed number of
/// statements whatever the group's size: the users (row locks that a removal
/// waits for), the metrics, the rules checked write by write in group order
/// (as the embedded store does: a refused write changes nothing, the next
/// writes see the metrics the earlier ones created), the new metrics, their
/// rows locked in id order (two hubs writing one metric count each new sample
/// once, without deadlocks), then every sample upserted and every metric's
/// count and span updated by one statement. Statements that do not need an
/// earlier one's answer are sent together (pipelined), so a group takes four
/// round trips with its `BEGIN` and `COMMIT` (five when it creates metrics).
async fn write_all(
    txn: &deadpool_postgres::Transaction<'_>,
    writes: &[(Username, Vec<NewSample>)],
) -> Result<Vec<Result<WriteOutcome, StoreError>>, Fail> {
    let mut owners: Vec<&str> = writes.iter().map(|(o, _)| o.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    let mut wanted: HashSet<(&str, &str)> = HashSet::new();
    for (owner, samples) in writes {
        for x in samples {
            wanted.insert((owner.as_str(), x.uri.as_str()));
        }
    }
    let (w_owners, w_uris): (Vec<&str>, Vec<&str>) = wanted.iter().copied().unzip();
    // The planner settings, the users' locks and the metrics go to the
    // server together (pipelined: one round trip), and run in this order.
    // Every join below looks up a few thousand keys given in arrays: by index,
    // in a nested loop. Left to itself the planner hashes the whole samples
    // table for them (it cannot see the arrays' sizes), a cost that grows
    // with everything ever stored.
    let users_statement = txn
        .prepare_cached("SELECT name FROM users WHERE name = ANY($1) ORDER BY name FOR KEY SHARE")
        .await?;
    let metrics_statement = txn.prepare_cached(METRICS_OF).await?;
    let ((), user_rows, metric_rows) = try_join3(
        txn.batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"),
        txn.query(&users_statement, &[&owners]),
        txn.query(&metrics_statement, &[&w_owners, &w_uris]),
    )
    .await?;
    let users: HashSet<String> = user_rows.into_iter().map(|r| r.get(0)).collect();
    let mut known: HashMap<(String, String), Known> = metric_rows_of(metric_rows)?
        .into_iter()
        .map(|(key, id, kind)| (key, Known { id: Some(id), kind }))
        .collect();
    let mut results = check_writes(writes, &users, &mut known);
    // The metrics the accepted writes create.
    let fresh: Vec<(String, String, Kind)> = known
        .iter()
        .filter(|(_, k)| k.id.is_none())
        .map(|((o, u), k)| (o.clone(), u.clone(), k.kind))
        .collect();
    if !fresh.is_empty() {
        let f_owners: Vec<&str> = fresh.iter().map(|(o, _, _)| o.as_str()).collect();
        let f_uris: Vec<&str> = fresh.iter().map(|(_, u, _)| u.as_str()).collect();
        let f_kinds: Vec<&str> = fresh.iter().map(|(_, _, k)| k.letter()).collect();
        // The insert, then the metrics as they are now (another hub may
        // have created some meanwhile), in one round trip.
        let insert_statement = txn
            .prepare_cached(
                "INSERT INTO metrics (owner, uri, kind) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (owner, uri) DO NOTHING RETURNING owner, uri",
            )
            .await?;
        let (inserted_rows, metric_rows) = try_join(
            txn.query(&insert_statement, &[&f_owners, &f_uris, &f_kinds]),
            txn.query(&metrics_statement, &[&f_owners, &f_uris]),
        )
        .await?;
        let inserted: HashSet<(String, String)> = inserted_rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Another hub may have created one meanwhile: its kind rules, and the
        // rules are checked again against it.
        let mut raced = false;
        for (key, id, kind) in metric_rows_of(metric_rows)? {
            if let Some(k) = known.get_mut(&key) {
                raced |= k.kind != kind;
                *k = Known { id: Some(id), kind };
            }
        }
        if raced {
            let first = std::mem::replace(&mut results, check_writes(writes, &users, &mut known));
            for (now, before) in results.iter_mut().zip(first) {
                if let (Ok(now), Ok(before)) = (now, before) {
                    now.created = before.created;
                }
            }
        }
        // A write created only the metrics this transaction inserted.
        for (result, (owner, _)) in results.iter_mut().zip(writes) {
            if let Ok(outcome) = result {
                outcome
                    .created
                    .retain(|uri| inserted.contains(&(owner.as_str().to_owned(), uri.clone())));
            }
        }
    }
    // Every sample of the accepted writes; the same metric and TimeUUID again
    // (in one write or a later one of the group): the later sample wins.
    let mut last_of: HashMap<(i64, [u8; 16]), (usize, usize)> = HashMap::new();
    let mut order: Vec<(i64, [u8; 16])> = Vec::new();
    for (w, ((owner, samples), result)) in writes.iter().zip(&results).enumerate() {
        if result.is_err() {
            continue;
        }
        for (i, x) in samples.iter().enumerate() {
            let key = (owner.as_str().to_owned(), x.uri.clone());
            let Some(id) = known.get(&key).and_then(|k| k.id) else {
                continue;
            };
            let sample_key = (id, x.t.sort_key());
            if last_of.insert(sample_key, (w, i)).is_none() {
                order.push(sample_key);
            }
        }
    }
    if order.is_empty() {
        return Ok(results);
    }
    let mut ids: Vec<i64> = order.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    // Per metric, the smallest and largest key written, given on each of its
    // rows (PostgreSQL has no min or max of bytea).
    let mut span: HashMap<i64, ([u8; 16], [u8; 16])> = HashMap::new();
    for (m, k) in &order {
        let e = span.entry(*m).or_insert((*k, *k));
        e.0 = e.0.min(*k);
        e.1 = e.1.max(*k);
    }
    let mut metric = Vec::with_capacity(order.len());
    let mut t_us = Vec::with_capacity(order.len());
    let mut keys: Vec<&[u8]> = Vec::with_capacity(order.len());
    let mut contents: Vec<&str> = Vec::with_capacity(order.len());
    let mut nums: Vec<Option<f64>> = Vec::with_capacity(order.len());
    let mut firsts: Vec<&[u8]> = Vec::with_capacity(order.len());
    let mut lasts: Vec<&[u8]> = Vec::with_capacity(order.len());
    for key in &order {
        let (w, i) = last_of[key];
        let x = &writes[w].1[i];
        let (first, last) = &span[&key.0];
        metric.push(key.0);
        t_us.push(x.t.micros());
        keys.push(&key.1);
        contents.push(&x.content);
        nums.push(match x.kind {
            Kind::Datapoint => datapoint_value(&x.content),
            Kind::Datasource => None,
        });
        firsts.push(first);
        lasts.push(last);
    }
    // The metrics' rows locked (no other writer adds their samples
    // meanwhile), then one statement: every sample upserted, and each
    // metric's count raised by its samples that were not stored before (a
    // rewrite does not count again; every part of the statement sees the
    // table as it was before it) and its span widened. Both in one round
    // trip.
    let lock_statement = txn
        .prepare_cached("SELECT id FROM metrics WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .await?;
    let write_statement = txn.prepare_cached(WRITE_SAMPLES).await?;
    try_join(
        txn.query(&lock_statement, &[&ids]),
        txn.execute(
            &write_statement,
            &[&metric, &t_us, &keys, &contents, &nums, &firsts, &lasts],
        ),
    )
    .await?;
    Ok(results)
}

/// The metrics of the given (owner, uri) pairs that exist: owner, uri, id, kind.
const METRICS_OF: &str = "SELECT m.owner, m.uri, m.id, m.kind FROM metrics m \
     JOIN unnest($1::text[], $2::text[]) AS w(o, u) ON m.owner = w.o AND m.uri = w.u";

/// A group's samples upserted, and each metric's count and span updated, in
/// one statement: metric, t_us, key, content, value, and the metric's first
/// and last key written, one row per sample (no key twice). `fresh` counts a
/// metric's samples that the table did not hold before the statement (its
/// parts share one snapshot, so the insert does not change what they read).
const WRITE_SAMPLES: &str = "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], \
     $3::bytea[], $4::text[], $5::float8[], $6::bytea[], $7::bytea[]) AS u(m, t, k, c, v, f, l)), \
     fresh AS (SELECT u.m, u.f, u.l, count(*) FILTER (WHERE s.metric IS NULL) AS n FROM u \
     LEFT JOIN samples s ON s.metric = u.m AND s.t_us = u.t AND s.k = u.k GROUP BY u.m, u.f, u.l), \
     upsert AS (INSERT INTO samples (metric, t_us, k, content, value) SELECT m, t, k, c, v FROM u \
     ON CONFLICT (metric, t_us, k) DO UPDATE SET content = EXCLUDED.content, value = EXCLUDED.value) \
     UPDATE metrics AS m SET count = m.count + fresh.n, first_k = LEAST(m.first_k, fresh.f), \
     last_k = GREATEST(m.last_k, fresh.l) FROM fresh WHERE m.id = fresh.m";

/// A metric found by [`METRICS_OF`]: (owner, uri), id, kind.
type FoundMetric = ((String, String), i64, Kind);

/// The rows of [`METRICS_OF`].
fn metric_rows_of(rows: Vec<tokio_postgres::Row>) -> Result<Vec<FoundMetric>, Fail> {
    rows.into_iter()
        .map(|row| {
            let kind = kind_of("writing samples", row.get(3)).map_err(Fail::Store)?;
            Ok(((row.get(0), row.get(1)), row.get(2), kind))
        })
        .collect()
}

/// The rules, write by write in group order: the user exists, each sample's
/// kind is its metric's (existing, or created by an earlier sample of this or
/// an earlier accepted write), a datapoint is a finite number. An accepted
/// write's new metrics are added to `known` (without an id) and listed in its
/// outcome; a refused write adds nothing.
fn check_writes(
    writes: &[(Username, Vec<NewSample>)],
    users: &HashSet<String>,
    known: &mut HashMap<(String, String), Known>,
) -> Vec<Result<WriteOutcome, StoreError>> {
    writes
        .iter()
        .map(|(owner, samples)| {
            if !users.contains(owner.as_str()) {
                return Err(StoreError::NoSuchUser(owner.clone()));
            }
            let mut fresh: Vec<(String, Kind)> = Vec::new();
            for x in samples {
                let key = (owner.as_str().to_owned(), x.uri.clone());
                let existing = known
                    .get(&key)
                    .map(|k| k.kind)
                    .or_else(|| fresh.iter().find(|(u, _)| *u == x.uri).map(|(_, k)| *k));
                match existing {
                    Some(kind) if kind != x.kind => {
                        return Err(StoreError::KindMismatch {
                            uri: x.uri.clone(),
                            existing: kind,
                            written: x.kind,
                        });
                    }
                    Some(_) => {}
                    None => fresh.push((x.uri.clone(), x.kind)),
                }
                if x.kind == Kind::Datapoint && datapoint_value(&x.content).is_none() {
                    return Err(StoreError::Unsupported(
                        "store a datapoint that is not a finite number",
                    ));
                }
            }
            let mut outcome = WriteOutcome::default();
            for (uri, kind) in fresh {
                known.insert(
                    (owner.as_str().to_owned(), uri.clone()),
                    Known { id: None, kind },
                );
                outcome.created.push(uri);
            }
            Ok(outcome)
        })
        .collect()
}

use crate::store::NewSample;

/// The id and kind of a metric.
async fn metric_row(
    c: &tokio_postgres::Client,
    op: &'static str,
    id: &MetricId,
) -> Result<Option<(i64, Kind)>, StoreError> {
    let row = c
        .query_opt(
            "SELECT id, kind FROM metrics WHERE owner = $1 AND uri = $2",
            &[&id.owner.as_str(), &id.local],
        )
        .await
        .map_err(pg_err(op))?;
    row.map(|r| Ok((r.get(0), kind_of(op, r.get(1))?)))
        .transpose()
}

pub(super) async fn read_rows(
    s: &Shared,
    id: MetricId,
    start: TimeUuid,
    end: TimeUuid,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<(TimeUuid, String)>, StoreError> {
    let op = "reading samples";
    let c = s.client(op).await?;
    let Some((mid, _)) = metric_row(&c, op, &id).await? else {
        return Ok(Vec::new());
    };
    let sql = if newest_first {
        "SELECT k, content FROM samples WHERE metric = $1 AND t_us BETWEEN $2 AND $3 \
         AND k BETWEEN $4 AND $5 ORDER BY t_us DESC, k DESC LIMIT $6"
    } else {
        "SELECT k, content FROM samples WHERE metric = $1 AND t_us BETWEEN $2 AND $3 \
         AND k BETWEEN $4 AND $5 ORDER BY t_us, k LIMIT $6"
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            sql,
            &[
                &mid,
                &start.micros(),
                &end.micros(),
                &&start.sort_key()[..],
                &&end.sort_key()[..],
                &limit,
            ],
        )
        .await
        .map_err(pg_err(op))?;
    rows.iter()
        .map(|r| Ok((time_of(op, r.get(0))?, r.get(1))))
        .collect()
}

/// The exact reduction, computed by the database: one row per non-empty column.
pub(super) async fn reduce(
    s: &Shared,
    id: MetricId,
    start: TimeUuid,
    end: TimeUuid,
    columns: u32,
) -> Result<Reduced, StoreError> {
    if start > end {
        return Ok(Reduced::default());
    }
    let columns = columns.max(1);
    let op = "reducing a range";
    let c = s.client(op).await?;
    let Some((mid, kind)) = metric_row(&c, op, &id).await? else {
        return Ok(Reduced::default());
    };
    let (start_us, end_us) = (start.micros(), end.micros());
    let total = i128::from(end_us) - i128::from(start_us) + 1;
    let span = (total + i128::from(columns) - 1) / i128::from(columns);
    // A TimeUUID's µs span well under 2^63.
    let span = i64::try_from(span).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT (t_us - $2) / $3 AS col, count(*), \
               komlog_first(k ORDER BY t_us, k), komlog_first(k ORDER BY t_us DESC, k DESC), \
               komlog_first(value ORDER BY t_us, k), komlog_first(value ORDER BY t_us DESC, k DESC), \
               komlog_first(k ORDER BY value, t_us, k), komlog_first(value ORDER BY value, t_us, k), \
               komlog_first(k ORDER BY value DESC, t_us, k), \
               komlog_first(value ORDER BY value DESC, t_us, k) \
             FROM samples WHERE metric = $1 AND t_us BETWEEN $4 AND $5 AND k BETWEEN $6 AND $7 \
             GROUP BY col ORDER BY col",
            &[
                &mid,
                &start_us,
                &span,
                &start_us,
                &end_us,
                &&start.sort_key()[..],
                &&end.sort_key()[..],
            ],
        )
        .await
        .map_err(pg_err(op))?;
    let mut out = Reduced {
        columns: Vec::with_capacity(rows.len()),
        rows: 0,
    };
    for r in &rows {
        let index = r.get::<_, i64>(0).clamp(0, i64::from(columns - 1)) as u32;
        let count = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
        let first = time_of(op, r.get(2))?;
        let last = time_of(op, r.get(3))?;
        let values = match kind {
            Kind::Datasource => None,
            Kind::Datapoint => {
                let v = |i: usize| -> Result<f64, StoreError> {
                    r.get::<_, Option<f64>>(i).ok_or_else(|| {
                        super::corrupt(op, format!("a datapoint sample of {id} without a value"))
                    })
                };
                Some(ColumnValues {
                    first: Point { t: first, v: v(4)? },
                    last: Point { t: last, v: v(5)? },
                    min: Point {
                        t: time_of(op, r.get(6))?,
                        v: v(7)?,
                    },
                    max: Point {
                        t: time_of(op, r.get(8))?,
                        v: v(9)?,
                    },
                })
            }
        };
        out.rows += count;
        out.columns.push(Column {
            index,
            count,
            first,
            last,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_bounds_agree() {
        for us in [
            TimeUuid::MIN_MICROS,
            -1,
            0,
            1,
            951_782_400_000_000, // 2000-02-29
            1_700_000_000_123_456,
            TimeUuid::MAX_MICROS,
        ] {
            let (y, m) = month_of(us);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            assert!(
                month_start_us(y, m) <= us && us < month_start_us(ny, nm),
                "{us}"
            );
            assert_eq!(parse_partition_name(&partition_name((y, m))), Some((y, m)));
        }
        assert_eq!(month_of(0), (1970, 1));
        assert_eq!(month_of(-1), (1969, 12));
        assert_eq!(month_of(951_782_400_000_000), (2000, 2));
        assert_eq!(month_of(TimeUuid::MIN_MICROS), (1582, 10));
    }
}
