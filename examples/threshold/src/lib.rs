//! `threshold`: flag values above (or below) a threshold.
//!
//! Parameters (from the `- impulses:` block):
//!
//! * `threshold` — required, a finite number. Missing or not a number: the
//!   fire fails with `Err` naming the parameter.
//! * `direction` — `above` (default) or `below`; anything else is an `Err`.
//!
//! For each uri in `ctx.updated` that is a datapoint series, it writes the
//! datapoint `<uri>._anomaly` at `ctx.ts`: `1.0` if the uri's latest value
//! (the one at `ctx.ts`, else the last one in the window) is strictly above
//! (`below`: strictly below) the threshold, else `0.0`. Datasource uris are
//! skipped. `describe()` returns `None`: the uris come from the
//! configuration.

use komlog_guest::prelude::*;

/// Which side of the threshold is anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Values strictly greater than the threshold.
    Above,
    /// Values strictly smaller than the threshold.
    Below,
}

impl Direction {
    /// Parse the `direction` parameter (absent = `Above`).
    pub fn from_param(raw: Option<&str>) -> Result<Direction, String> {
        match raw.map(str::trim) {
            None | Some("above") => Ok(Direction::Above),
            Some("below") => Ok(Direction::Below),
            Some(other) => Err(format!(
                "param `direction` must be `above` or `below`, got `{other}`"
            )),
        }
    }

    /// Whether `value` is on the anomalous side of `threshold`.
    pub fn is_anomalous(self, value: f64, threshold: f64) -> bool {
        match self {
            Direction::Above => value > threshold,
            Direction::Below => value < threshold,
        }
    }
}

/// Flags values beyond a threshold.
pub struct Threshold;

impl Impulse for Threshold {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let threshold = ctx
            .param_f64("threshold")?
            .ok_or("param `threshold` is required (a number)")?;
        let direction = Direction::from_param(ctx.param("direction"))?;
        let window = ctx.window()?;
        let mut out = Vec::new();
        for uri in &ctx.updated {
            let Some(series) = window.series(uri) else {
                log::warn(&format!("threshold: no samples of {uri} in the window"));
                continue;
            };
            let latest = series.at(ctx.ts).or_else(|| series.last().map(|(_, v)| v));
            let Some(value) = latest.and_then(|v| v.as_datapoint()) else {
                log::debug(&format!(
                    "threshold: {uri} is not a datapoint series, skipped"
                ));
                continue;
            };
            let flag = if direction.is_anomalous(value, threshold) {
                1.0
            } else {
                0.0
            };
            out.push(Sample::datapoint(format!("{uri}._anomaly"), ctx.ts, flag));
        }
        Ok(out)
    }
}

komlog_guest::export_impulse!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;
    use komlog_guest::window::encode;

    fn ctx(params: &[(&str, &str)], updated: &[&str], series: &[Series]) -> Context {
        Context::new(
            100,
            updated.iter().map(|s| s.to_string()).collect(),
            vec![],
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            encode(series).expect("encode"),
        )
    }

    fn window() -> Vec<Series> {
        vec![
            Series::datapoint("hot", vec![50, 100], vec![1.0, 95.0]),
            Series::datapoint("cold", vec![50, 100], vec![99.0, 10.0]),
            Series::datapoint("equal", vec![100], vec![90.0]),
            // Not updated at ts: its last value counts.
            Series::datapoint("stale", vec![40, 60], vec![10.0, 91.0]),
            Series::datasource("text", vec![100], ["95"]),
        ]
    }

    fn flags(out: &[Sample]) -> Vec<(&str, f64)> {
        out.iter()
            .map(|s| (s.uri.as_str(), s.value.as_datapoint().unwrap()))
            .collect()
    }

    #[test]
    fn above_by_default() {
        let out = Threshold::on_update(ctx(
            &[("threshold", "90")],
            &["hot", "cold", "equal", "stale", "text", "absent"],
            &window(),
        ))
        .unwrap();
        assert_eq!(
            flags(&out),
            vec![
                ("hot._anomaly", 1.0),
                ("cold._anomaly", 0.0),
                ("equal._anomaly", 0.0),
                ("stale._anomaly", 1.0),
            ]
        );
        assert!(out.iter().all(|s| s.ts == 100));
    }

    #[test]
    fn below() {
        let out = Threshold::on_update(ctx(
            &[("threshold", "90"), ("direction", "below")],
            &["hot", "cold", "equal"],
            &window(),
        ))
        .unwrap();
        assert_eq!(
            flags(&out),
            vec![
                ("hot._anomaly", 0.0),
                ("cold._anomaly", 1.0),
                ("equal._anomaly", 0.0)
            ]
        );
    }

    #[test]
    fn parameter_errors_name_the_parameter() {
        let err = Threshold::on_update(ctx(&[], &["hot"], &window())).unwrap_err();
        assert_eq!(err, "param `threshold` is required (a number)");
        let err =
            Threshold::on_update(ctx(&[("threshold", "high")], &["hot"], &window())).unwrap_err();
        assert_eq!(err, "param `threshold` is not a number: `high`");
        let err = Threshold::on_update(ctx(
            &[("threshold", "1"), ("direction", "sideways")],
            &["hot"],
            &window(),
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "param `direction` must be `above` or `below`, got `sideways`"
        );
    }

    #[test]
    fn describe_is_none() {
        assert_eq!(Threshold::describe(), None);
    }
}
