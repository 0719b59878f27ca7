//! Window selection: which samples a window at `ts` holds, whether the cache holds all of
//! them, and loading the missing ones from disk.

use std::ops::{Bound, Range};

use super::cache::{Entry, Series};
use super::disk::Disk;
use super::{DataReqs, StoreError};

/// How many stored samples newer than a window (and older than the cache) the store will
/// load into the cache to keep it contiguous. Past that, the window is far behind the
/// cached data (a replay into an existing store): it is read from disk into a scratch
/// buffer instead, so one old window cannot pull years of data into memory.
pub(super) const MAX_GAP: usize = 4096;

/// A [`DataReqs`] resolved to the two parts of a window: every sample in
/// `(ts - delta, ts]` (none when `delta == 0`), united with the last `count` at or before
/// `ts`. Neither requirement set means the latest sample (`count = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Need {
    pub delta: u64,
    pub count: usize,
}

impl From<DataReqs> for Need {
    fn from(r: DataReqs) -> Self {
        match (r.past_delta_us, r.past_count) {
            (None, None) => Need { delta: 0, count: 1 },
            (d, c) => Need {
                delta: d.unwrap_or(0),
                count: c.map_or(0, |c| c as usize),
            },
        }
    }
}

impl Need {
    /// True when a sample at `t` lies in the delta part `(ts - delta, ts]`, ignoring the
    /// upper bound (callers only look at samples at or before `ts`).
    fn in_delta(&self, ts: i64, t: i64) -> bool {
        self.delta != 0 && ts.checked_sub_unsigned(self.delta).is_none_or(|b| t > b)
    }
}

/// The window at `ts` within sorted `entries`, as an index range.
pub(super) fn select(entries: &[Entry], ts: i64, need: Need) -> Range<usize> {
    let hi = entries.partition_point(|e| e.ts <= ts);
    let from_count = hi.saturating_sub(need.count);
    let from_delta = if need.delta == 0 {
        hi
    } else {
        match ts.checked_sub_unsigned(need.delta) {
            Some(bound) => entries[..hi].partition_point(|e| e.ts <= bound),
            None => 0,
        }
    };
    from_count.min(from_delta)..hi
}

/// True when `series` holds the whole window at `ts`; `range` is [`select`]'s answer.
pub(super) fn covered(series: &Series, ts: i64, need: Need, range: &Range<usize>) -> bool {
    let Some(cf) = series.complete_from else {
        return true;
    };
    // Every cached entry is >= cf and every stored sample >= cf is cached, so the cached
    // entries at or before ts are the newest stored ones there.
    let count_ok = range.end >= need.count;
    // The delta part (bound, ts] is cached when bound + 1 >= cf.
    let delta_ok = need.delta == 0
        || ts
            .checked_sub_unsigned(need.delta)
            .is_some_and(|bound| i128::from(bound) + 1 >= i128::from(cf));
    count_ok && delta_ok
}

/// Where a window ended up.
pub(super) enum Loaded {
    /// In the series' entries, at this range.
    Cache(Range<usize>),
    /// In the scratch buffer (whole buffer).
    Scratch,
}

/// Make the window at `ts` available: extend `series` downwards from its `complete_from`
/// (or from the newest stored sample when `series` is None, i.e. nothing cached yet) until
/// the window is inside it, or, when that would mean loading more than [`MAX_GAP`] samples
/// newer than the window, read the window alone into `scratch`.
///
/// On error the series is unchanged.
pub(super) fn load(
    disk: &Disk,
    uri: &str,
    series: &mut Option<Series>,
    scratch: &mut Vec<Entry>,
    ts: i64,
    need: Need,
) -> Result<Loaded, StoreError> {
    let (upper, mut have) = match series {
        Some(s) => match s.complete_from {
            Some(cf) => (
                Bound::Excluded(cf),
                s.entries.partition_point(|e| e.ts <= ts),
            ),
            // Complete series: nothing more on disk (callers check `covered` first).
            None => return Ok(Loaded::Cache(select(&s.entries, ts, need))),
        },
        None => (Bound::Unbounded, 0),
    };
    let mut loaded: Vec<Entry> = Vec::new();
    let mut gap = 0usize;
    let mut new_cf: Option<i64> = None;
    let mut too_far = false;
    disk.scan(uri, Bound::Unbounded, upper, true, |t, bytes| {
        // Stop before t once both parts are satisfied: the count part has enough samples
        // at or before ts, and t is outside the delta part. Then t < ts, so t + 1 is safe.
        if have >= need.count && t <= ts && !need.in_delta(ts, t) {
            new_cf = Some(t + 1);
            return Ok(false);
        }
        if t > ts {
            gap += 1;
            if gap > MAX_GAP {
                too_far = true;
                return Ok(false);
            }
        } else {
            have += 1;
        }
        loaded.push(Entry {
            ts: t,
            value: disk.decode(uri, t, bytes)?,
        });
        Ok(true)
    })?;
    if too_far {
        read_direct(disk, uri, scratch, ts, need)?;
        return Ok(Loaded::Scratch);
    }
    let s = series.get_or_insert_with(Series::default);
    loaded.reverse();
    loaded.append(&mut s.entries);
    s.entries = loaded;
    s.complete_from = new_cf;
    Ok(Loaded::Cache(select(&s.entries, ts, need)))
}

/// Read the window at `ts` straight from disk into `scratch` (ascending), bypassing the
/// cache.
pub(super) fn read_direct(
    disk: &Disk,
    uri: &str,
    scratch: &mut Vec<Entry>,
    ts: i64,
    need: Need,
) -> Result<(), StoreError> {
    scratch.clear();
    let mut have = 0usize;
    let result = disk.scan(
        uri,
        Bound::Unbounded,
        Bound::Included(ts),
        true,
        |t, bytes| {
            if have >= need.count && !need.in_delta(ts, t) {
                return Ok(false);
            }
            have += 1;
            scratch.push(Entry {
                ts: t,
                value: disk.decode(uri, t, bytes)?,
            });
            Ok(true)
        },
    );
    scratch.reverse();
    if result.is_err() {
        scratch.clear();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn entries(ts: &[i64]) -> Vec<Entry> {
        ts.iter()
            .map(|&t| Entry {
                ts: t,
                value: Value::Datapoint(t as f64),
            })
            .collect()
    }

    fn need(delta: Option<u64>, count: Option<u32>) -> Need {
        Need::from(DataReqs {
            past_delta_us: delta,
            past_count: count,
        })
    }

    #[test]
    fn selection() {
        let e = entries(&[10, 20, 30, 40, 50]);
        // Neither: the latest at or before ts.
        assert_eq!(select(&e, 35, need(None, None)), 2..3);
        assert_eq!(select(&e, 5, need(None, None)), 0..0);
        // Delta: (ts - delta, ts]; ts - delta excluded, ts included.
        assert_eq!(select(&e, 40, need(Some(20), None)), 2..4);
        assert_eq!(select(&e, 40, need(Some(0), None)), 4..4);
        // Count.
        assert_eq!(select(&e, 40, need(None, Some(3))), 1..4);
        assert_eq!(select(&e, 40, need(None, Some(30))), 0..4);
        // Union.
        assert_eq!(select(&e, 50, need(Some(15), Some(3))), 2..5);
        assert_eq!(select(&e, 50, need(Some(35), Some(1))), 1..5);
        // A delta reaching before i64::MIN takes everything.
        assert_eq!(select(&e, 50, need(Some(u64::MAX), None)), 0..5);
    }

    #[test]
    fn coverage() {
        let s = Series {
            entries: entries(&[30, 40, 50]),
            complete_from: Some(21),
        };
        let n = need(Some(30), None);
        // (20, 50]: stored samples >= 21 are all cached: covered.
        assert!(covered(&s, 50, n, &select(&s.entries, 50, n)));
        // (19, 49]: a sample at 20 could exist.
        assert!(!covered(&s, 49, n, &select(&s.entries, 49, n)));
        let c = need(None, Some(3));
        assert!(covered(&s, 50, c, &select(&s.entries, 50, c)));
        assert!(!covered(&s, 45, c, &select(&s.entries, 45, c)));
        let complete = Series {
            entries: entries(&[30]),
            complete_from: None,
        };
        assert!(covered(&complete, 10, c, &select(&complete.entries, 10, c)));
    }
}
