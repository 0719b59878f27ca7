//! The in-memory recent series of one uri: a sorted suffix of what is on disk, plus the
//! trimming that keeps it as small as the subscribed impulses allow.

use super::DataReqs;
use super::window::Need;
use crate::model::Value;

/// One cached sample of a uri: what a window is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Microseconds since the Unix epoch, UTC.
    pub ts: i64,
    /// The value stored at `ts`.
    pub value: Value,
}

/// A uri's cached samples.
///
/// Invariants: `entries` is sorted by strictly increasing `ts`; it holds *every* stored
/// sample with `ts >= complete_from` (all stored samples when `complete_from` is None) and
/// nothing older than `complete_from`.
#[derive(Debug, Default)]
pub(super) struct Series {
    pub entries: Vec<Entry>,
    pub complete_from: Option<i64>,
}

impl Series {
    /// Insert a sample just committed to disk. The newest-at-the-end case is O(1)
    /// amortised; an older one is placed by binary search; one older than `complete_from`
    /// is left on disk only (caching it would break the invariant).
    pub fn insert(&mut self, ts: i64, value: &Value) {
        if self.complete_from.is_some_and(|cf| ts < cf) {
            return;
        }
        match self.entries.last_mut() {
            Some(last) if last.ts == ts => last.value = value.clone(),
            Some(last) if last.ts > ts => match self.entries.binary_search_by_key(&ts, |e| e.ts) {
                Ok(i) => self.entries[i].value = value.clone(),
                Err(i) => self.entries.insert(
                    i,
                    Entry {
                        ts,
                        value: value.clone(),
                    },
                ),
            },
            _ => self.entries.push(Entry {
                ts,
                value: value.clone(),
            }),
        }
    }

    /// Drop the entries no window at the newest timestamp can need under `retention`
    /// (None: keep only the newest), but only once the series has grown past twice what
    /// is needed, so the O(n) removal is paid once per n appends.
    pub fn trim(&mut self, retention: Option<DataReqs>) {
        let need = retention
            .map(Need::from)
            .unwrap_or(Need { delta: 0, count: 1 });
        let keep_count = need.count.max(1);
        let len = self.entries.len();
        // The window needs at least keep_count entries, so this is the cheap common exit.
        if len <= keep_count.saturating_mul(2) {
            return;
        }
        let Some(newest) = self.entries.last().map(|e| e.ts) else {
            return;
        };
        let from_count = len - keep_count;
        let from_delta = if need.delta == 0 {
            len
        } else {
            match newest.checked_sub_unsigned(need.delta) {
                Some(bound) => self.entries.partition_point(|e| e.ts <= bound),
                None => 0,
            }
        };
        let keep_from = from_count.min(from_delta);
        let needed = len - keep_from;
        if len > needed.saturating_mul(2) && keep_from > 0 {
            // No stored sample lies between the last dropped entry and the first kept one
            // (the series was complete there), so completeness starts just after it.
            self.complete_from = Some(self.entries[keep_from - 1].ts + 1);
            self.entries.drain(..keep_from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(ts: &[i64]) -> Series {
        let mut s = Series::default();
        for &t in ts {
            s.insert(t, &Value::Datapoint(t as f64));
        }
        s
    }

    fn stamps(s: &Series) -> Vec<i64> {
        s.entries.iter().map(|e| e.ts).collect()
    }

    #[test]
    fn insert_keeps_order_and_overwrites() {
        let mut s = series(&[1, 5, 3, 9, 5]);
        assert_eq!(stamps(&s), [1, 3, 5, 9]);
        s.insert(5, &Value::Datapoint(50.0));
        assert_eq!(s.entries[2].value, Value::Datapoint(50.0));
        s.complete_from = Some(3);
        s.insert(2, &Value::Datapoint(2.0));
        assert_eq!(
            stamps(&s),
            [1, 3, 5, 9],
            "older than complete_from stays on disk"
        );
    }

    #[test]
    fn trim_without_retention_keeps_the_newest() {
        let mut s = series(&[1, 2]);
        s.trim(None);
        assert_eq!(stamps(&s), [1, 2], "lazy: not past twice the need yet");
        s.insert(3, &Value::Datapoint(3.0));
        s.trim(None);
        assert_eq!(stamps(&s), [3]);
        assert_eq!(s.complete_from, Some(3));
    }

    #[test]
    fn trim_by_count_and_delta() {
        let ts: Vec<i64> = (0..100).map(|i| i * 10).collect();
        let mut s = series(&ts);
        s.trim(Some(DataReqs {
            past_delta_us: None,
            past_count: Some(10),
        }));
        assert_eq!(stamps(&s), (90..100).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(s.complete_from, Some(891));

        let mut s = series(&ts);
        // Newest 990; keep ts > 990 - 200 = 790: 80..=99 → 20 entries.
        s.trim(Some(DataReqs {
            past_delta_us: Some(200),
            past_count: Some(3),
        }));
        assert_eq!(s.entries.len(), 20);
        assert_eq!(s.entries[0].ts, 800);
        assert_eq!(s.complete_from, Some(791));

        // The union: count wins when it reaches further back.
        let mut s = series(&ts);
        s.trim(Some(DataReqs {
            past_delta_us: Some(20),
            past_count: Some(30),
        }));
        assert_eq!(s.entries.len(), 30);
    }
}
