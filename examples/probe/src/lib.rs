//! `probe`: a test guest that reports exactly what it received and returns
//! whatever samples the test asks for.
//!
//! Parameters:
//!
//! * `out` — uri of the report (default `probe.out`).
//! * `fail` — if `err`, the fire returns `Err("probe asked to fail")` and
//!   nothing else happens.
//! * `emit` — a JSON array of extra samples to return after the report. Each
//!   element is an object with `uri` (string), optional `ts` (integer,
//!   default `ctx.ts`) and exactly one of:
//!   * `"datapoint"`: a number, or one of the strings `"nan"`, `"inf"`,
//!     `"-inf"` (to test the host's validation);
//!   * `"datasource"`: a string;
//!   * `"datasource_len"`: an integer n — a text of n `x` bytes (to test
//!     size limits).
//!
//!   A malformed `emit` fails the fire with an `Err` saying what is wrong.
//! * `log` — if set, this text is written to the agent's log first, at level
//!   `log_level` (`debug`, `info` (default), `warn` or `error`).
//!
//! The report is one datasource sample at `out`, timestamp `ctx.ts`, whose
//! text is a JSON object (keys in this order, no whitespace):
//!
//! ```json
//! {"ts":123,"updated":["a"],"others":["b"],"params":[["k","v"]],
//!  "window":[{"uri":"a","ts":120,"datapoint":1.5,"datasource":null}]}
//! ```
//!
//! `window` lists every sample of the decoded window in stream order. If the
//! window does not decode, the fire fails with the decoder's error.
//! `describe()` returns `None`.

use komlog_guest::log::Level;
use komlog_guest::prelude::*;
use serde_json::{Value as Json, json};

/// Reports what it received.
pub struct Probe;

/// The JSON report of a context and its decoded window (keys in a fixed
/// order, so the text is byte-for-byte predictable).
pub fn report(ctx: &Context, window: &Window) -> String {
    let rows: Vec<String> = window
        .iter()
        .flat_map(|s| {
            s.iter().map(move |(ts, v)| {
                format!(
                    r#"{{"uri":{},"ts":{ts},"datapoint":{},"datasource":{}}}"#,
                    Json::from(s.uri.as_str()),
                    json!(v.as_datapoint()),
                    json!(v.as_datasource()),
                )
            })
        })
        .collect();
    format!(
        r#"{{"ts":{},"updated":{},"others":{},"params":{},"window":[{}]}}"#,
        ctx.ts,
        json!(ctx.updated),
        json!(ctx.others),
        json!(ctx.params),
        rows.join(",")
    )
}

/// Parse the `emit` parameter into samples; `ts` is the default timestamp.
pub fn parse_emit(raw: &str, ts: i64) -> Result<Vec<Sample>, String> {
    let value: Json =
        serde_json::from_str(raw).map_err(|e| format!("param `emit` is not JSON: {e}"))?;
    let Json::Array(items) = value else {
        return Err("param `emit` must be a JSON array".to_string());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_one(item, ts).map_err(|e| format!("param `emit`[{i}]: {e}")))
        .collect()
}

fn parse_one(item: &Json, default_ts: i64) -> Result<Sample, String> {
    let Json::Object(obj) = item else {
        return Err("must be an object".to_string());
    };
    let uri = obj
        .get("uri")
        .and_then(Json::as_str)
        .ok_or("needs a string `uri`")?;
    let ts = match obj.get("ts") {
        None => default_ts,
        Some(t) => t.as_i64().ok_or("`ts` must be an integer")?,
    };
    let kinds: Vec<&str> = ["datapoint", "datasource", "datasource_len"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    match kinds.as_slice() {
        ["datapoint"] => {
            let v = match &obj["datapoint"] {
                Json::Number(n) => n.as_f64().ok_or("`datapoint` is out of range")?,
                Json::String(s) if s == "nan" => f64::NAN,
                Json::String(s) if s == "inf" => f64::INFINITY,
                Json::String(s) if s == "-inf" => f64::NEG_INFINITY,
                _ => {
                    return Err("`datapoint` must be a number, \"nan\", \"inf\" or \"-inf\"".into());
                }
            };
            Ok(Sample::datapoint(uri, ts, v))
        }
        ["datasource"] => {
            let text = obj["datasource"]
                .as_str()
                .ok_or("`datasource` must be a string")?;
            Ok(Sample::datasource(uri, ts, text))
        }
        ["datasource_len"] => {
            let n = obj["datasource_len"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("`datasource_len` must be a non-negative integer")?;
            Ok(Sample::datasource(uri, ts, "x".repeat(n)))
        }
        _ => Err("needs exactly one of `datapoint`, `datasource`, `datasource_len`".to_string()),
    }
}

fn level(raw: Option<&str>) -> Result<Level, String> {
    match raw {
        None | Some("info") => Ok(Level::Info),
        Some("debug") => Ok(Level::Debug),
        Some("warn") => Ok(Level::Warn),
        Some("error") => Ok(Level::Error),
        Some(other) => Err(format!(
            "param `log_level` must be debug, info, warn or error, got `{other}`"
        )),
    }
}

impl Impulse for Probe {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        if ctx.param("fail") == Some("err") {
            return Err("probe asked to fail".to_string());
        }
        if let Some(message) = ctx.param("log") {
            log::log(level(ctx.param("log_level"))?, message);
        }
        let emitted = match ctx.param("emit") {
            Some(raw) => parse_emit(raw, ctx.ts)?,
            None => Vec::new(),
        };
        let window = ctx.window()?;
        let out = ctx.param("out").unwrap_or("probe.out");
        let mut samples = Vec::with_capacity(1 + emitted.len());
        samples.push(Sample::datasource(out, ctx.ts, report(&ctx, window)));
        samples.extend(emitted);
        Ok(samples)
    }
}

komlog_guest::export_impulse!(Probe);

#[cfg(test)]
mod tests {
    use super::*;
    use komlog_guest::window::encode;

    fn ctx(params: &[(&str, &str)]) -> Context {
        Context::new(
            100,
            vec!["a".into()],
            vec!["b".into(), "c".into()],
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            encode(&[
                Series::datapoint("a", vec![90, 100], vec![1.5, -2.0]),
                Series::datasource("b", vec![50], ["say \"hi\"\n"]),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn report_is_exact_json() {
        let out = Probe::on_update(ctx(&[("k", "v")])).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].uri, "probe.out");
        assert_eq!(out[0].ts, 100);
        assert_eq!(
            out[0].value.as_datasource().unwrap(),
            r#"{"ts":100,"updated":["a"],"others":["b","c"],"params":[["k","v"]],"window":[{"uri":"a","ts":90,"datapoint":1.5,"datasource":null},{"uri":"a","ts":100,"datapoint":-2.0,"datasource":null},{"uri":"b","ts":50,"datapoint":null,"datasource":"say \"hi\"\n"}]}"#
        );
    }

    #[test]
    fn out_param_and_empty_window() {
        let c = Context::new(
            7,
            vec![],
            vec![],
            vec![("out".into(), "x.y".into())],
            vec![],
        );
        let out = Probe::on_update(c).unwrap();
        assert_eq!(out[0].uri, "x.y");
        assert_eq!(
            out[0].value.as_datasource().unwrap(),
            r#"{"ts":7,"updated":[],"others":[],"params":[["out","x.y"]],"window":[]}"#
        );
    }

    #[test]
    fn fail_err() {
        assert_eq!(
            Probe::on_update(ctx(&[("fail", "err")])),
            Err("probe asked to fail".to_string())
        );
    }

    #[test]
    fn emit_every_form() {
        let emit = r#"[
            {"uri":"n","datapoint":2.5},
            {"uri":"n2","ts":5,"datapoint":"nan"},
            {"uri":"n3","datapoint":"inf"},
            {"uri":"n4","datapoint":"-inf"},
            {"uri":"t","datasource":"hello"},
            {"uri":"big","ts":-1,"datasource_len":5}
        ]"#;
        let out = Probe::on_update(ctx(&[("emit", emit)])).unwrap();
        assert_eq!(out.len(), 7);
        assert_eq!(out[0].uri, "probe.out");
        assert_eq!(out[1], Sample::datapoint("n", 100, 2.5));
        assert_eq!(out[2].uri, "n2");
        assert_eq!(out[2].ts, 5);
        assert!(out[2].value.as_datapoint().unwrap().is_nan());
        assert_eq!(out[3].value.as_datapoint(), Some(f64::INFINITY));
        assert_eq!(out[4].value.as_datapoint(), Some(f64::NEG_INFINITY));
        assert_eq!(out[5], Sample::datasource("t", 100, "hello"));
        assert_eq!(out[6], Sample::datasource("big", -1, "xxxxx"));
    }

    #[test]
    fn bad_emit_is_an_error_that_says_where() {
        let cases = [
            ("nope", "param `emit` is not JSON"),
            ("{}", "param `emit` must be a JSON array"),
            ("[1]", "param `emit`[0]: must be an object"),
            (
                r#"[{"datapoint":1}]"#,
                "param `emit`[0]: needs a string `uri`",
            ),
            (r#"[{"uri":"a"}]"#, "param `emit`[0]: needs exactly one of"),
            (
                r#"[{"uri":"a","datapoint":1},{"uri":"a","datapoint":1,"datasource":"x"}]"#,
                "param `emit`[1]: needs exactly one of",
            ),
            (
                r#"[{"uri":"a","ts":1.5,"datapoint":1}]"#,
                "`ts` must be an integer",
            ),
            (
                r#"[{"uri":"a","datapoint":"NaN"}]"#,
                "`datapoint` must be a number",
            ),
            (
                r#"[{"uri":"a","datasource":3}]"#,
                "`datasource` must be a string",
            ),
            (
                r#"[{"uri":"a","datasource_len":-1}]"#,
                "`datasource_len` must be",
            ),
        ];
        for (emit, expected) in cases {
            let err = Probe::on_update(ctx(&[("emit", emit)])).unwrap_err();
            assert!(
                err.starts_with(expected) || err.contains(expected),
                "{emit}: {err}"
            );
        }
    }

    #[test]
    fn log_param() {
        assert!(Probe::on_update(ctx(&[("log", "hello"), ("log_level", "warn")])).is_ok());
        assert_eq!(
            Probe::on_update(ctx(&[("log", "x"), ("log_level", "loud")])).unwrap_err(),
            "param `log_level` must be debug, info, warn or error, got `loud`"
        );
    }

    #[test]
    fn undecodable_window_fails_the_fire() {
        let c = Context::new(1, vec![], vec![], vec![], b"junk".to_vec());
        let err = Probe::on_update(c).unwrap_err();
        assert!(
            err.starts_with("window is not a valid Arrow IPC stream"),
            "{err}"
        );
    }
}
