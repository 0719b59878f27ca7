//! `summary`: hourly statistics of CPU metrics (the komlogd documentation's
//! example impulse).
//!
//! * `describe()` subscribes to `cpu.system` and `cpu.user` with a window of
//!   one hour (`past_delta` = 1 h).
//! * On each fire, for every uri in `ctx.updated` that is a datapoint series,
//!   it writes the datasource `<uri>.last_60min_stats` at `ctx.ts` with the
//!   statistics of the samples whose timestamp is in `(ctx.ts - 1h, ctx.ts]`
//!   (older samples the window may hold, e.g. because the configuration also
//!   asks for a `past_count`, are ignored). The text is exactly five lines
//!   joined by `\n`, with no trailing newline:
//!
//!   ```text
//!   count: N
//!   mean: X
//!   std: X
//!   min: X
//!   max: X
//!   ```
//!
//!   `N` is an integer; each `X` is an `f64` printed with `{}` (so `2`, `2.5`);
//!   `std` is the sample standard deviation (divisor n − 1), 0 when n = 1.
//! * Datasource uris, and updated uris with no sample in the last hour, are
//!   skipped (the latter with a warning in the agent's log).

use komlog_guest::prelude::*;
use komlog_guest::time;

/// The uris `describe` subscribes to.
pub const URIS: [&str; 2] = ["cpu.system", "cpu.user"];

/// The statistics window, and the suffix of the uri they are written to.
pub const SPAN: u64 = HOUR;
/// Appended to a uri to name its statistics datasource.
pub const SUFFIX: &str = ".last_60min_stats";

/// Count, mean, sample standard deviation, minimum and maximum of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Number of values.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`, or `None` if there are none.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let count = values.len();
        if count == 0 {
            return None;
        }
        let n = count as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if count > 1 {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stats {
            count,
            mean,
            std,
            min,
            max,
        })
    }

    /// The datasource text: five `name: value` lines, no trailing newline.
    pub fn to_text(&self) -> String {
        format!(
            "count: {}\nmean: {}\nstd: {}\nmin: {}\nmax: {}",
            self.count, self.mean, self.std, self.min, self.max
        )
    }
}

/// Hourly statistics of CPU metrics.
pub struct Summary;

impl Impulse for Summary {
    fn describe() -> Option<Subscription> {
        Some(Subscription::new(URIS).with_past_delta(SPAN))
    }

    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let window = ctx.window()?;
        let after = time::before(ctx.ts, SPAN);
        let mut out = Vec::new();
        for uri in &ctx.updated {
            let Some(series) = window.series(uri) else {
                log::warn(&format!("summary: no samples of {uri} in the window"));
                continue;
            };
            let Some(values) = series.datapoints() else {
                log::debug(&format!("summary: {uri} is a datasource, skipped"));
                continue;
            };
            let recent = values.get(series.range(after, ctx.ts)).unwrap_or(&[]);
            let Some(stats) = Stats::of(recent) else {
                log::warn(&format!("summary: no samples of {uri} in the last hour"));
                continue;
            };
            out.push(Sample::datasource(
                format!("{uri}{SUFFIX}"),
                ctx.ts,
                stats.to_text(),
            ));
        }
        Ok(out)
    }
}

komlog_guest::export_impulse!(Summary);

#[cfg(test)]
mod tests {
    use super::*;
    use komlog_guest::window::encode;

    const T: i64 = 10 * HOUR as i64;

    fn ctx(updated: &[&str], series: &[Series]) -> Context {
        Context::new(
            T,
            updated.iter().map(|s| s.to_string()).collect(),
            vec![],
            vec![],
            encode(series).expect("encode"),
        )
    }

    #[test]
    fn describe_subscribes_to_cpu_for_an_hour() {
        let s = Summary::describe().expect("a default subscription");
        assert_eq!(
            s.uris,
            vec!["cpu.system".to_string(), "cpu.user".to_string()]
        );
        assert_eq!(s.data_reqs.past_delta, Some(3_600_000_000));
        assert_eq!(s.data_reqs.past_count, None);
        assert_eq!(s.min_exec_delta, None);
    }

    #[test]
    fn stats_text_is_exact() {
        let s = Stats::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        // mean 5, sum of squares 32, sample variance 32/7.
        assert_eq!(s.count, 8);
        assert_eq!(s.mean, 5.0);
        assert_eq!(s.std, (32.0f64 / 7.0).sqrt());
        assert_eq!(
            s.to_text(),
            format!(
                "count: 8\nmean: 5\nstd: {}\nmin: 2\nmax: 9",
                (32.0f64 / 7.0).sqrt()
            )
        );
        assert_eq!(
            Stats::of(&[1.5]).unwrap().to_text(),
            "count: 1\nmean: 1.5\nstd: 0\nmin: 1.5\nmax: 1.5"
        );
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn only_the_last_hour_counts() {
        let h = HOUR as i64;
        let window = [Series::datapoint(
            "cpu.user",
            // exactly one hour old (excluded), older (excluded), then in range
            vec![T - 2 * h, T - h, T - h + 1, T - 60, T],
            vec![1000.0, 500.0, 1.0, 2.0, 3.0],
        )];
        let out = Summary::on_update(ctx(&["cpu.user"], &window)).unwrap();
        assert_eq!(
            out,
            vec![Sample::datasource(
                "cpu.user.last_60min_stats",
                T,
                "count: 3\nmean: 2\nstd: 1\nmin: 1\nmax: 3"
            )]
        );
    }

    #[test]
    fn only_updated_datapoint_uris_get_stats() {
        let window = [
            Series::datapoint("cpu.system", vec![T], vec![4.0]),
            Series::datapoint("cpu.user", vec![T - 5, T], vec![1.0, 3.0]),
            Series::datasource("notes", vec![T], ["text"]),
        ];
        let out = Summary::on_update(ctx(&["cpu.user", "notes", "missing"], &window)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].uri, "cpu.user.last_60min_stats");
        assert_eq!(out[0].ts, T);
        assert_eq!(
            out[0].value.as_datasource(),
            Some(format!("count: 2\nmean: 2\nstd: {}\nmin: 1\nmax: 3", 2.0f64.sqrt()).as_str())
        );
    }

    #[test]
    fn stale_only_series_writes_nothing() {
        let window = [Series::datapoint(
            "cpu.user",
            vec![T - 2 * HOUR as i64],
            vec![1.0],
        )];
        assert_eq!(Summary::on_update(ctx(&["cpu.user"], &window)), Ok(vec![]));
    }

    #[test]
    fn a_bad_window_is_an_error() {
        let c = Context::new(T, vec!["cpu.user".into()], vec![], vec![], b"junk".to_vec());
        let err = Summary::on_update(c).unwrap_err();
        assert!(
            err.starts_with("window is not a valid Arrow IPC stream"),
            "{err}"
        );
    }
}
