//! Per-metric statistics and rollup tiers in the embedded store, for metric
//! listings ([`HubStore::summaries_of`](crate::store::HubStore::summaries_of))
//! and plots ([`HubStore::reduce`](crate::store::HubStore::reduce)).
//!
//! **Owns:** the `metric_stats` and `rollups` tables, keeping them in step with
//! `samples` inside the write transaction ([`Changes`]), building them at open
//! for a store written before they existed, and the range reduction.
//!
//! | table | key | value |
//! |---|---|---|
//! | `metric_stats` | metric id | (count, first sort key, last sort key) |
//! | `rollups` | (metric id, tier, bucket) | an encoded [`Agg`]: 40 bytes (count, first, last) for a datasource, 104 with first, last, min and max values for a datapoint |
//!
//! **Tiers.** Tier `i` (0 ..= 5) cuts time into buckets of 10^(i+1) seconds:
//! 10 s, 100 s, 1000 s, 10⁴ s, 10⁵ s, 10⁶ s; bucket `b` covers the
//! microseconds `[b·w, (b+1)·w)` (`b` may be negative before 1970). Only
//! non-empty buckets are stored, so an idle stretch costs nothing. A write
//! aggregates its new samples per bucket in memory and merges each touched
//! bucket once; a rewrite of a stored TimeUUID adds nothing to the counts, and
//! when its value changes the buckets holding it are recomputed (tier 0 from
//! the raw rows, each coarser tier from the ten buckets below it), since the
//! old value may have been a minimum or maximum.
//!
//! **Reduction.** Columns are `ceil((end_µs − start_µs + 1) / columns)` µs wide,
//! column `i` covering `[start_µs + i·span, start_µs + (i+1)·span)`. The range
//! is read from the coarsest tier whose buckets are no wider than a column,
//! using only buckets that lie wholly inside it; the pieces left at its two ends
//! are read from finer tiers in turn and finally from raw rows (segment-tree
//! style), so at most about ten buckets per column plus two partial buckets
//! per tier are read, whatever the number of rows. A bucket goes to the column
//! holding its first sample: a bucket straddling a column boundary puts its
//! later samples in the column before the one they belong to (at most one
//! bucket per boundary, no wider than a column). Totals, the range's first and
//! last samples and its minimum and maximum are exact. When the range holds
//! at most `4 × columns` rows, or columns are narrower than 10 s, it is
//! reduced from raw rows and every column is exact. Bounded work assumes
//! metrics of about a sample a second or sparser; a denser metric is still
//! answered right but reads more raw rows for short columns.
//!
//! **Older stores.** The tables are additive: the format stays version 1, and
//! a store without them (written by an older hub) gets them at open, built by
//! one scan of `samples` in one transaction.
//!
//! Datapoint contents are read as `f64`; a write of a datapoint that does not
//! parse as a finite number is refused (the session layer never sends one),
//! and a stored one that does not parse is reported as
//! [`StoreError::Corrupt`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle};

use super::{METRICS, RedbStore, SAMPLES};
use crate::store::{Column, ColumnValues, MetricSummary, Point, Reduced, StoreError};

/// Per metric: samples stored, first and last sort key.
const STATS: TableDefinition<u64, (u64, [u8; 16], [u8; 16])> = TableDefinition::new("metric_stats");
/// Per (metric, tier, bucket): an encoded [`Agg`].
const ROLLUPS: TableDefinition<(u64, u8, i64), &[u8]> = TableDefinition::new("rollups");

/// Bucket widths of the tiers, µs, finest first; each divides the next.
const TIER_WIDTHS_US: [i64; 6] = [
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
];

/// 100-ns intervals from the UUID epoch (1582-10-15) to the Unix epoch.
const UUID_EPOCH_OFFSET: i128 = 122_192_928_000_000_000;

/// A range holding at most this many rows per column is reduced from raw rows.
const RAW_ROWS_PER_COLUMN: u64 = 4;

/// The µs (since the Unix epoch, rounded down) of a sample's sort key.
fn key_micros(key: &[u8; 16]) -> i64 {
    let mut ticks = [0u8; 8];
    ticks.copy_from_slice(&key[..8]);
    let since_unix = i128::from(u64::from_be_bytes(ticks)) - UUID_EPOCH_OFFSET;
    // 2^64 ticks / 10 fits an i64.
    since_unix.div_euclid(10) as i64
}

/// A sort key no greater than that of any TimeUUID at or after `micros`, and
/// greater than that of every TimeUUID before it.
fn key_at(micros: i64) -> [u8; 16] {
    let ticks = (i128::from(micros) * 10 + UUID_EPOCH_OFFSET).clamp(0, i128::from(u64::MAX));
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(ticks as u64).to_be_bytes());
    k
}

/// A sample's value for the rollups: its number for a datapoint.
pub(super) fn datapoint_value(content: &str) -> Option<f64> {
    content.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A value with its sample's sort key.
#[derive(Debug, Clone, Copy, PartialEq)]
struct KeyedValue {
    key: [u8; 16],
    v: f64,
}

/// First, last, min and max of a datapoint aggregate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Values {
    first: f64,
    last: f64,
    min: KeyedValue,
    max: KeyedValue,
}

/// An aggregate of samples: a rollup bucket, a column being built, or one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Agg {
    count: u64,
    first: [u8; 16],
    last: [u8; 16],
    values: Option<Values>,
}

const AGG_BYTES: usize = 40;
const AGG_VALUES_BYTES: usize = 104;

impl Agg {
    fn point(key: [u8; 16], v: Option<f64>) -> Agg {
        Agg {
            count: 1,
            first: key,
            last: key,
            values: v.map(|v| Values {
                first: v,
                last: v,
                min: KeyedValue { key, v },
                max: KeyedValue { key, v },
            }),
        }
    }

    /// Fold in another aggregate of other samples (in any time order). The
    /// minimum and maximum keep the oldest of equal values.
    fn merge(&mut self, o: &Agg) {
        self.count += o.count;
        let older = o.first < self.first;
        let newer = o.last > self.last;
        self.values = match (self.values, o.values) {
            (Some(mut a), Some(b)) => {
                if older {
                    a.first = b.first;
                }
                if newer {
                    a.last = b.last;
                }
                if b.min.v < a.min.v || (b.min.v == a.min.v && b.min.key < a.min.key) {
                    a.min = b.min;
                }
                if b.max.v > a.max.v || (b.max.v == a.max.v && b.max.key < a.max.key) {
                    a.max = b.max;
                }
                Some(a)
            }
            (a, b) => a.or(b),
        };
        if older {
            self.first = o.first;
        }
        if newer {
            self.last = o.last;
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(AGG_VALUES_BYTES);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.first);
        out.extend_from_slice(&self.last);
        if let Some(v) = &self.values {
            out.extend_from_slice(&v.first.to_le_bytes());
            out.extend_from_slice(&v.last.to_le_bytes());
            out.extend_from_slice(&v.min.key);
            out.extend_from_slice(&v.min.v.to_le_bytes());
            out.extend_from_slice(&v.max.key);
            out.extend_from_slice(&v.max.v.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Agg> {
        if bytes.len() != AGG_BYTES && bytes.len() != AGG_VALUES_BYTES {
            return None;
        }
        let mut at = 0;
        let mut take = |n: usize| {
            let s = bytes.get(at..at + n);
            at += n;
            s
        };
        let u64_of = |s: Option<&[u8]>| Some(u64::from_le_bytes(s?.try_into().ok()?));
        let f64_of = |s: Option<&[u8]>| Some(f64::from_le_bytes(s?.try_into().ok()?));
        let key_of = |s: Option<&[u8]>| -> Option<[u8; 16]> { s?.try_into().ok() };
        let count = u64_of(take(8))?;
        let first = key_of(take(16))?;
        let last = key_of(take(16))?;
        let values = if bytes.len() == AGG_VALUES_BYTES {
            Some(Values {
                first: f64_of(take(8))?,
                last: f64_of(take(8))?,
                min: KeyedValue {
                    key: key_of(take(16))?,
                    v: f64_of(take(8))?,
                },
                max: KeyedValue {
                    key: key_of(take(16))?,
                    v: f64_of(take(8))?,
                },
            })
        } else {
            None
        };
        (count > 0 && first <= last).then_some(Agg {
            count,
            first,
            last,
            values,
        })
    }
}

/// How a sample write found its TimeUUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prior {
    /// Not stored before.
    New,
    /// Stored with the same content.
    Same,
    /// Stored with another content.
    Changed,
}

/// What one write transaction did to the samples, to be merged into the stats
/// and rollups before it commits ([`Changes::flush`]).
#[derive(Default)]
pub(super) struct Changes {
    /// New samples per metric.
    stats: HashMap<u64, Agg>,
    /// New samples per (tier, metric, bucket).
    buckets: HashMap<(u8, u64, i64), Agg>,
    /// Buckets holding a sample whose value changed: to recompute.
    dirty: HashSet<(u8, u64, i64)>,
}

impl Changes {
    /// Note a sample written to metric `mid` (`value` is its number for a
    /// datapoint, none for a datasource).
    pub(super) fn note(&mut self, mid: u64, t: TimeUuid, value: Option<f64>, prior: Prior) {
        let micros = t.micros();
        match prior {
            Prior::Same => {}
            Prior::Changed => {
                // A datasource's buckets hold no values.
                if value.is_some() {
                    for (tier, w) in TIER_WIDTHS_US.iter().enumerate() {
                        self.dirty.insert((tier as u8, mid, micros.div_euclid(*w)));
                    }
                }
            }
            Prior::New => {
                let point = Agg::point(t.sort_key(), value);
                self.stats
                    .entry(mid)
                    .and_modify(|a| a.merge(&point))
                    .or_insert(point);
                for (tier, w) in TIER_WIDTHS_US.iter().enumerate() {
                    self.buckets
                        .entry((tier as u8, mid, micros.div_euclid(*w)))
                        .and_modify(|a| a.merge(&point))
                        .or_insert(point);
                }
            }
        }
    }

    /// Merge the changes into the tables, inside the write transaction whose
    /// samples table is `rows` (already holding the new samples).
    pub(super) fn flush(
        self,
        store: &RedbStore,
        txn: &redb::WriteTransaction,
        rows: &impl ReadableTable<(u64, [u8; 16]), &'static str>,
    ) -> Result<(), StoreError> {
        let err = store.err("updating the rollups");
        let mut stats = txn.open_table(STATS).map_err(|e| err(e.into()))?;
        for (mid, new) in &self.stats {
            let mut total = *new;
            if let Some(old) = stats.get(*mid).map_err(|e| err(e.into()))? {
                let (count, first, last) = old.value();
                total.count += count;
                total.first = total.first.min(first);
                total.last = total.last.max(last);
            }
            stats
                .insert(*mid, (total.count, total.first, total.last))
                .map_err(|e| err(e.into()))?;
        }
        let mut rollups = txn.open_table(ROLLUPS).map_err(|e| err(e.into()))?;
        let mut keys: Vec<(u8, u64, i64)> = self.buckets.keys().copied().collect();
        keys.extend(self.dirty.iter().filter(|k| !self.buckets.contains_key(k)));
        // Finest tier first: a coarser bucket is recomputed from finer ones
        // already brought up to date.
        keys.sort_unstable();
        for (tier, mid, bucket) in keys {
            let key = (mid, tier, bucket);
            let agg = if self.dirty.contains(&(tier, mid, bucket)) {
                let w = TIER_WIDTHS_US[usize::from(tier)];
                let (lo, hi) = (bucket * w, bucket * w + w - 1);
                if tier == 0 {
                    let mut agg: Option<Agg> = None;
                    let range = (mid, key_at(lo))..(mid, key_at(hi + 1));
                    for row in rows.range(range).map_err(|e| err(e.into()))? {
                        let (k, v) = row.map_err(|e| err(e.into()))?;
                        let point = Agg::point(k.value().1, Some(store.stored_value(v.value())?));
                        fold(&mut agg, &point);
                    }
                    agg
                } else {
                    let finer = TIER_WIDTHS_US[usize::from(tier) - 1];
                    let range = (mid, tier - 1, lo.div_euclid(finer))
                        ..=(mid, tier - 1, hi.div_euclid(finer));
                    let mut agg: Option<Agg> = None;
                    for row in rollups.range(range).map_err(|e| err(e.into()))? {
                        let (_, v) = row.map_err(|e| err(e.into()))?;
                        fold(&mut agg, &store.decode_agg(v.value())?);
                    }
                    agg
                }
            } else {
                let Some(new) = self.buckets.get(&(tier, mid, bucket)) else {
                    continue;
                };
                let mut agg = *new;
                if let Some(old) = rollups.get(key).map_err(|e| err(e.into()))? {
                    agg.merge(&store.decode_agg(old.value())?);
                }
                Some(agg)
            };
            match agg {
                Some(agg) => {
                    rollups
                        .insert(key, agg.encode().as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                None => {
                    rollups.remove(key).map_err(|e| err(e.into()))?;
                }
            }
        }
        Ok(())
    }
}

/// Write a metric's stats and its open buckets, at the end of its samples.
fn close_metric(
    stats: &mut Table<u64, (u64, [u8; 16], [u8; 16])>,
    rollups: &mut Table<(u64, u8, i64), &'static [u8]>,
    mid: u64,
    total: Agg,
    open: &mut [Option<(i64, Agg)>; TIER_WIDTHS_US.len()],
) -> Result<(), redb::StorageError> {
    stats.insert(mid, (total.count, total.first, total.last))?;
    for (tier, slot) in open.iter_mut().enumerate() {
        if let Some((bucket, agg)) = slot.take() {
            rollups.insert((mid, tier as u8, bucket), agg.encode().as_slice())?;
        }
    }
    Ok(())
}

fn fold(into: &mut Option<Agg>, other: &Agg) {
    match into {
        Some(a) => a.merge(other),
        None => *into = Some(*other),
    }
}

/// A stretch of the range being reduced, in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Raw rows with µs in `lo ..= hi` (clipped to the range's TimeUUIDs).
    Raw(i64, i64),
    /// Buckets `lo ..= hi` of a tier.
    Tier(u8, i64, i64),
}

/// Cover the µs `lo ..= hi` with whole buckets of `tier` and below, raw rows
/// for what no bucket fits, in time order.
fn cover(tier: Option<usize>, lo: i64, hi: i64, out: &mut Vec<Piece>) {
    if lo > hi {
        return;
    }
    let Some(l) = tier else {
        match out.last_mut() {
            Some(Piece::Raw(_, end)) if *end + 1 == lo => *end = hi,
            _ => out.push(Piece::Raw(lo, hi)),
        }
        return;
    };
    let w = TIER_WIDTHS_US[l];
    let first = lo.div_euclid(w) + i64::from(lo.rem_euclid(w) != 0);
    let last = (hi + 1).div_euclid(w) - 1;
    if first > last {
        cover(l.checked_sub(1), lo, hi, out);
        return;
    }
    cover(l.checked_sub(1), lo, first * w - 1, out);
    out.push(Piece::Tier(l as u8, first, last));
    cover(l.checked_sub(1), (last + 1) * w, hi, out);
}

/// Columns being filled, in time order.
struct Columns {
    start_us: i64,
    span: i128,
    count: u32,
    filled: Vec<(u32, Agg)>,
    rows: u64,
}

impl Columns {
    fn add(&mut self, agg: &Agg) {
        let offset = i128::from(key_micros(&agg.first)) - i128::from(self.start_us);
        let index = (offset.max(0) / self.span).min(i128::from(self.count - 1)) as u32;
        self.rows += agg.count;
        match self.filled.last_mut() {
            Some((i, col)) if *i == index => col.merge(agg),
            _ => self.filled.push((index, *agg)),
        }
    }
}

impl RedbStore {
    /// Create the stats and rollup tables when missing, filling them from the
    /// samples (a store written before they existed).
    pub(super) fn rollup_init(&self) -> Result<(), StoreError> {
        let err = self.err("building the rollups");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let mut found = 0;
        for table in rtxn.list_tables().map_err(|e| err(e.into()))? {
            if [STATS.name(), ROLLUPS.name()].contains(&table.name()) {
                found += 1;
            }
        }
        drop(rtxn);
        if found == 2 {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.delete_table(STATS).map_err(|e| err(e.into()))?;
        txn.delete_table(ROLLUPS).map_err(|e| err(e.into()))?;
        {
            let metrics = txn.open_table(METRICS).map_err(|e| err(e.into()))?;
            let mut kinds = HashMap::new();
            for row in metrics.iter().map_err(|e| err(e.into()))? {
                let (_, v) = row.map_err(|e| err(e.into()))?;
                let (mid, letter) = v.value();
                kinds.insert(mid, self.kind_of(letter)?);
            }
            let samples = txn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
            let mut stats = txn.open_table(STATS).map_err(|e| err(e.into()))?;
            let mut rollups = txn.open_table(ROLLUPS).map_err(|e| err(e.into()))?;
            // Samples come by metric, then time: each tier has one open bucket.
            let mut current: Option<(u64, Agg)> = None;
            let mut open: [Option<(i64, Agg)>; TIER_WIDTHS_US.len()] = [None; TIER_WIDTHS_US.len()];
            for row in samples.iter().map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                let (mid, key) = k.value();
                // A sample of no metric is unreachable; it gets no stats.
                let Some(kind) = kinds.get(&mid) else {
                    continue;
                };
                let value = match kind {
                    Kind::Datapoint => Some(self.stored_value(v.value())?),
                    Kind::Datasource => None,
                };
                let point = Agg::point(key, value);
                match &mut current {
                    Some((m, total)) if *m == mid => total.merge(&point),
                    _ => {
                        if let Some((m, total)) = current.take() {
                            close_metric(&mut stats, &mut rollups, m, total, &mut open)
                                .map_err(|e| err(e.into()))?;
                        }
                        current = Some((mid, point));
                    }
                }
                let micros = key_micros(&key);
                for (tier, w) in TIER_WIDTHS_US.iter().enumerate() {
                    let bucket = micros.div_euclid(*w);
                    match &mut open[tier] {
                        Some((b, agg)) if *b == bucket => agg.merge(&point),
                        slot => {
                            if let Some((b, agg)) = slot.take() {
                                rollups
                                    .insert((mid, tier as u8, b), agg.encode().as_slice())
                                    .map_err(|e| err(e.into()))?;
                            }
                            *slot = Some((bucket, point));
                        }
                    }
                }
            }
            if let Some((m, total)) = current.take() {
                close_metric(&mut stats, &mut rollups, m, total, &mut open)
                    .map_err(|e| err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    /// Delete the stats and rollups of metrics `ids`, inside the caller's
    /// transaction.
    pub(super) fn rollup_remove(
        &self,
        txn: &redb::WriteTransaction,
        ids: &[u64],
    ) -> Result<(), StoreError> {
        let err = self.err("removing rollups");
        let mut stats = txn.open_table(STATS).map_err(|e| err(e.into()))?;
        let mut rollups = txn.open_table(ROLLUPS).map_err(|e| err(e.into()))?;
        for &mid in ids {
            stats.remove(mid).map_err(|e| err(e.into()))?;
            rollups
                .retain_in((mid, 0, i64::MIN)..=(mid, u8::MAX, i64::MAX), |_, _| false)
                .map_err(|e| err(e.into()))?;
        }
        Ok(())
    }

    pub(super) fn rollup_summaries(
        &self,
        owner: &Username,
    ) -> Result<Vec<MetricSummary>, StoreError> {
        let err = self.err("summarising metrics");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let metrics = rtxn.open_table(METRICS).map_err(|e| err(e.into()))?;
        let stats = rtxn.open_table(STATS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in metrics
            .range((owner.as_str(), "")..)
            .map_err(|e| err(e.into()))?
        {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let (o, uri) = k.value();
            if o != owner.as_str() {
                break;
            }
            let (mid, letter) = v.value();
            let mut summary = MetricSummary {
                uri: uri.to_owned(),
                kind: self.kind_of(letter)?,
                count: 0,
                first: None,
                last: None,
            };
            if let Some(s) = stats.get(mid).map_err(|e| err(e.into()))? {
                let (count, first, last) = s.value();
                summary.count = count;
                summary.first = Some(self.time_of(first)?);
                summary.last = Some(self.time_of(last)?);
            }
            out.push(summary);
        }
        Ok(out)
    }

    pub(super) fn rollup_reduce(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        columns: u32,
    ) -> Result<Reduced, StoreError> {
        if start > end {
            return Ok(Reduced::default());
        }
        let columns = columns.max(1);
        let err = self.err("reducing a range");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let metrics = rtxn.open_table(METRICS).map_err(|e| err(e.into()))?;
        let Some((mid, kind)) = metrics
            .get((id.owner.as_str(), id.local.as_str()))
            .map_err(|e| err(e.into()))?
            .map(|v| {
                let (mid, letter) = v.value();
                self.kind_of(letter).map(|k| (mid, k))
            })
            .transpose()?
        else {
            return Ok(Reduced::default());
        };
        let samples = rtxn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
        let rollups = rtxn.open_table(ROLLUPS).map_err(|e| err(e.into()))?;
        let (start_us, end_us) = (start.micros(), end.micros());
        let (start_key, end_key) = (start.sort_key(), end.sort_key());
        let total = i128::from(end_us) - i128::from(start_us) + 1;
        let span = (total + i128::from(columns) - 1) / i128::from(columns);
        let tier = TIER_WIDTHS_US.iter().rposition(|w| i128::from(*w) <= span);
        let raw = vec![Piece::Raw(start_us, end_us)];
        let mut pieces = Vec::new();
        if tier.is_some() && end_us - start_us >= 2 {
            // Buckets only where every TimeUUID of their µs is in the range.
            pieces.push(Piece::Raw(start_us, start_us));
            cover(tier, start_us + 1, end_us - 1, &mut pieces);
            cover(None, end_us, end_us, &mut pieces);
        } else {
            pieces.clone_from(&raw);
        }
        let datapoint = kind == Kind::Datapoint;
        let run = |pieces: &[Piece]| -> Result<Columns, StoreError> {
            let mut cols = Columns {
                start_us,
                span,
                count: columns,
                filled: Vec::new(),
                rows: 0,
            };
            for piece in pieces {
                match *piece {
                    Piece::Raw(lo, hi) => {
                        let from = key_at(lo).max(start_key);
                        let range = (mid, from)..(mid, key_at(hi.saturating_add(1)));
                        for row in samples.range(range).map_err(|e| err(e.into()))? {
                            let (k, v) = row.map_err(|e| err(e.into()))?;
                            let key = k.value().1;
                            if key > end_key {
                                break;
                            }
                            let value = if datapoint {
                                Some(self.stored_value(v.value())?)
                            } else {
                                None
                            };
                            cols.add(&Agg::point(key, value));
                        }
                    }
                    Piece::Tier(tier, lo, hi) => {
                        let range = (mid, tier, lo)..=(mid, tier, hi);
                        for row in rollups.range(range).map_err(|e| err(e.into()))? {
                            let (_, v) = row.map_err(|e| err(e.into()))?;
                            cols.add(&self.decode_agg(v.value())?);
                        }
                    }
                }
            }
            Ok(cols)
        };
        let mut cols = run(&pieces)?;
        if pieces != raw && cols.rows <= RAW_ROWS_PER_COLUMN * u64::from(columns) {
            cols = run(&raw)?;
        }
        let mut out = Reduced {
            columns: Vec::with_capacity(cols.filled.len()),
            rows: cols.rows,
        };
        for (index, agg) in cols.filled {
            let values = match (datapoint, agg.values) {
                (false, _) => None,
                (true, Some(v)) => Some(ColumnValues {
                    first: Point {
                        t: self.time_of(agg.first)?,
                        v: v.first,
                    },
                    last: Point {
                        t: self.time_of(agg.last)?,
                        v: v.last,
                    },
                    min: Point {
                        t: self.time_of(v.min.key)?,
                        v: v.min.v,
                    },
                    max: Point {
                        t: self.time_of(v.max.key)?,
                        v: v.max.v,
                    },
                }),
                (true, None) => {
                    return Err(self.corrupt(format!("a rollup of datapoint {id} has no values")));
                }
            };
            out.columns.push(Column {
                index,
                count: agg.count,
                first: self.time_of(agg.first)?,
                last: self.time_of(agg.last)?,
                values,
            });
        }
        Ok(out)
    }

    /// Rows in the stats and rollup tables (for tests of their upkeep).
    #[cfg(test)]
    pub(crate) fn rollup_table_sizes(&self) -> Result<(u64, u64), StoreError> {
        use redb::ReadableTableMetadata;
        let err = self.err("counting rollups");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let stats = rtxn.open_table(STATS).map_err(|e| err(e.into()))?;
        let rollups = rtxn.open_table(ROLLUPS).map_err(|e| err(e.into()))?;
        Ok((
            stats.len().map_err(|e| err(e.into()))?,
            rollups.len().map_err(|e| err(e.into()))?,
        ))
    }

    fn corrupt(&self, reason: String) -> StoreError {
        corrupt(self.path(), reason)
    }

    fn time_of(&self, key: [u8; 16]) -> Result<TimeUuid, StoreError> {
        TimeUuid::from_sort_key(key)
            .ok_or_else(|| self.corrupt("a rollup holds a key that is not a TimeUUID".into()))
    }

    fn stored_value(&self, content: &str) -> Result<f64, StoreError> {
        datapoint_value(content)
            .ok_or_else(|| self.corrupt(format!("a stored datapoint {content:?} is not a number")))
    }

    fn decode_agg(&self, bytes: &[u8]) -> Result<Agg, StoreError> {
        Agg::decode(bytes).ok_or_else(|| self.corrupt("a rollup bucket is malformed".into()))
    }
}

fn corrupt(path: &Path, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_key_micros_and_bounds_agree_with_timeuuid() {
        for us in [
            TimeUuid::MIN_MICROS,
            -1_234_567,
            -1,
            0,
            1,
            1_700_000_000_123_456,
            TimeUuid::MAX_MICROS,
        ] {
            let t = TimeUuid::random_at(us).expect("in range");
            assert_eq!(key_micros(&t.sort_key()), us);
            assert!(key_at(us) <= TimeUuid::lowest_at(us).expect("in range").sort_key());
            let before = TimeUuid::highest_at(us - 1);
            assert!(before.is_none_or(|t| key_at(us) > t.sort_key()));
        }
    }

    #[test]
    fn cover_tiles_the_range_in_order() {
        let mut pieces = Vec::new();
        let lo = 1_700_000_003_000_001;
        let hi = lo + 5_000_000_000;
        cover(Some(2), lo, hi, &mut pieces);
        let mut next = lo;
        for p in &pieces {
            let (a, b) = match *p {
                Piece::Raw(a, b) => (a, b),
                Piece::Tier(t, a, b) => {
                    let w = TIER_WIDTHS_US[usize::from(t)];
                    (a * w, b * w + w - 1)
                }
            };
            assert_eq!(a, next, "{pieces:?}");
            next = b + 1;
        }
        assert_eq!(next, hi + 1);
        assert!(pieces.len() <= 2 * 3 * 2 + 1, "{pieces:?}");
    }

    #[test]
    fn buckets_round_trip() {
        let k = TimeUuid::random_at(5).expect("in range").sort_key();
        let mut a = Agg::point(k, Some(1.5));
        a.merge(&Agg::point(
            TimeUuid::random_at(9).expect("in range").sort_key(),
            Some(-2.0),
        ));
        assert_eq!(Agg::decode(&a.encode()), Some(a));
        let d = Agg::point(k, None);
        assert_eq!(Agg::decode(&d.encode()), Some(d));
        assert_eq!(Agg::decode(&[0; 41]), None);
    }
}
