//! Golden files of a replay: what its fires wrote, as JSON lines, and the
//! comparison of a replay with a file kept from an earlier one.
//!
//! A golden file holds one line per outcome worth keeping, in fire order:
//!
//! - an output written: `{"impulse","fire_ts","uri","ts","kind","value"}`;
//! - an output dropped: `{"impulse","fire_ts","dropped","ts","reason"}`
//!   (`dropped` is its uri);
//! - a call that returned `err`: `{"impulse","fire_ts","error"}`;
//! - a call that failed twice: `{"impulse","fire_ts","failed"}` (the kind:
//!   `trap`, `deadline`, `memory`, `fuel`, `instantiate`).
//!
//! Fires that write nothing and skipped fires leave no line; call times are
//! never written, so a golden file is byte-identical across runs. Lines
//! compare exactly, or with a tolerance on `value` numbers
//! ([`compare`]).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::impulses::dispatch::{FireOutcome, FireRecord};
use crate::model::{Sample, Value};

/// One line of a golden file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    impulse: String,
    fire_ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

impl Line {
    fn of(record: &FireRecord) -> Line {
        Line {
            impulse: record.impulse.to_string(),
            fire_ts: record.ts,
            uri: None,
            dropped: None,
            ts: None,
            kind: None,
            value: None,
            reason: None,
            error: None,
            failed: None,
        }
    }
}

/// A sample's kind and value as JSON: `("datapoint", number)` or
/// `("datasource", text)`.
pub fn kind_and_value(value: &Value) -> (&'static str, serde_json::Value) {
    match value {
        Value::Datapoint(v) => ("datapoint", serde_json::json!(v)),
        Value::Datasource(t) => ("datasource", serde_json::json!(t)),
    }
}

fn output_line(record: &FireRecord, sample: &Sample) -> Line {
    let (kind, value) = kind_and_value(&sample.value);
    Line {
        uri: Some(sample.uri.clone()),
        ts: Some(sample.ts),
        kind: Some(kind.to_owned()),
        value: Some(value),
        ..Line::of(record)
    }
}

/// The golden lines of one fire (none for a skipped fire or one that wrote nothing).
pub fn lines(record: &FireRecord) -> Vec<String> {
    let mut lines = Vec::new();
    match &record.outcome {
        FireOutcome::GuestError(message) => lines.push(Line {
            error: Some(message.clone()),
            ..Line::of(record)
        }),
        FireOutcome::Failed { kind, .. } => lines.push(Line {
            failed: Some(kind.clone()),
            ..Line::of(record)
        }),
        FireOutcome::Returned | FireOutcome::Skipped(_) => {}
    }
    lines.extend(record.outputs.iter().map(|s| output_line(record, s)));
    lines.extend(record.dropped.iter().map(|d| Line {
        dropped: Some(d.uri.clone()),
        ts: Some(d.ts),
        reason: Some(d.reason.clone()),
        ..Line::of(record)
    }));
    lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap_or_default())
        .collect()
}

/// A replay that does not match its golden file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Lines expected and not produced, and the other way round.
    pub missing: usize,
    /// Lines produced and not expected.
    pub unexpected: usize,
    /// A unified diff, expected → actual.
    pub diff: String,
}

/// Compare the lines of a replay with a golden file's text. Lines are equal
/// when they are the same text, or, with a `tolerance`, the same JSON with
/// every `value` number within `tolerance` of the expected one (absolutely,
/// or relatively to it when it is larger than 1). `expected_name` names the
/// file in the diff.
pub fn compare(
    expected: &str,
    actual: &[String],
    tolerance: Option<f64>,
    expected_name: &str,
) -> Result<(), Mismatch> {
    let expected_lines: Vec<&str> = expected.lines().collect();
    // A line equal within the tolerance is shown as the expected one, so the
    // diff shows only real differences.
    let shown: Vec<&str> = actual
        .iter()
        .enumerate()
        .map(|(i, line)| match expected_lines.get(i) {
            Some(want) if lines_match(want, line, tolerance) => *want,
            _ => line.as_str(),
        })
        .collect();
    if shown == expected_lines {
        return Ok(());
    }
    let as_text = |lines: &[&str]| -> String { lines.iter().map(|l| format!("{l}\n")).collect() };
    let expected_text = as_text(&expected_lines);
    let actual_text = as_text(&shown);
    let diff = similar::TextDiff::from_lines(&expected_text, &actual_text);
    let (mut missing, mut unexpected) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Delete => missing += 1,
            similar::ChangeTag::Insert => unexpected += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let mut text = String::new();
    let _ = write!(
        text,
        "{}",
        diff.unified_diff()
            .context_radius(2)
            .header(expected_name, "this replay")
    );
    Err(Mismatch {
        missing,
        unexpected,
        diff: text,
    })
}

/// Whether `actual` equals `expected`, exactly or within `tolerance` on `value`.
fn lines_match(expected: &str, actual: &str, tolerance: Option<f64>) -> bool {
    if expected == actual {
        return true;
    }
    let Some(tolerance) = tolerance else {
        return false;
    };
    let (Ok(mut want), Ok(mut got)) = (
        serde_json::from_str::<Line>(expected),
        serde_json::from_str::<Line>(actual),
    ) else {
        return false;
    };
    let (Some(a), Some(b)) = (
        want.value.as_ref().and_then(serde_json::Value::as_f64),
        got.value.as_ref().and_then(serde_json::Value::as_f64),
    ) else {
        return false;
    };
    if (a - b).abs() > tolerance * a.abs().max(1.0) {
        return false;
    }
    want.value = None;
    got.value = None;
    want == got
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impulses::dispatch::DroppedOutput;
    use std::sync::Arc;
    use std::time::Duration;

    fn record(outcome: FireOutcome, outputs: Vec<Sample>) -> FireRecord {
        FireRecord {
            impulse: Arc::from("summary"),
            ts: 10,
            depth: 0,
            updated: vec!["a.b".into()],
            others: Vec::new(),
            window_rows: 3,
            outcome,
            outputs,
            dropped: Vec::new(),
            call: Duration::from_micros(17),
        }
    }

    fn dp(uri: &str, ts: i64, v: f64) -> Sample {
        Sample {
            uri: uri.into(),
            ts,
            value: Value::Datapoint(v),
        }
    }

    #[test]
    fn lines_carry_outputs_errors_failures_and_drops_but_no_time() {
        let mut r = record(
            FireOutcome::Returned,
            vec![dp("a.mean", 10, 2.5), dp("a.max", 10, 4.0)],
        );
        r.dropped.push(DroppedOutput {
            uri: "bob:x".into(),
            ts: 10,
            reason: "remote uris are read-only".into(),
        });
        assert_eq!(
            lines(&r),
            [
                r#"{"impulse":"summary","fire_ts":10,"uri":"a.mean","ts":10,"kind":"datapoint","value":2.5}"#,
                r#"{"impulse":"summary","fire_ts":10,"uri":"a.max","ts":10,"kind":"datapoint","value":4.0}"#,
                r#"{"impulse":"summary","fire_ts":10,"dropped":"bob:x","ts":10,"reason":"remote uris are read-only"}"#,
            ]
        );
        let error = record(FireOutcome::GuestError("no threshold".into()), Vec::new());
        assert_eq!(
            lines(&error),
            [r#"{"impulse":"summary","fire_ts":10,"error":"no threshold"}"#]
        );
        let failed = record(
            FireOutcome::Failed {
                kind: "trap".into(),
                reason: "unreachable".into(),
            },
            Vec::new(),
        );
        assert_eq!(
            lines(&failed),
            [r#"{"impulse":"summary","fire_ts":10,"failed":"trap"}"#]
        );
        assert!(lines(&record(FireOutcome::Skipped("disabled"), Vec::new())).is_empty());
    }

    #[test]
    fn a_difference_is_shown_as_a_diff_and_a_tolerance_forgives_only_values() {
        let r = record(FireOutcome::Returned, vec![dp("a.mean", 10, 2.5)]);
        let actual = lines(&r);
        let golden = format!("{}\n", actual[0]);
        assert_eq!(compare(&golden, &actual, None, "g.jsonl"), Ok(()));

        let near = lines(&record(
            FireOutcome::Returned,
            vec![dp("a.mean", 10, 2.500_000_1)],
        ));
        let exact = compare(&golden, &near, None, "g.jsonl").expect_err("exact");
        assert_eq!((exact.missing, exact.unexpected), (1, 1));
        assert!(exact.diff.contains("--- g.jsonl"), "{}", exact.diff);
        assert!(exact.diff.contains("-{\"impulse\""), "{}", exact.diff);
        assert!(exact.diff.contains("+{\"impulse\""), "{}", exact.diff);
        assert_eq!(compare(&golden, &near, Some(1e-6), "g.jsonl"), Ok(()));
        assert!(compare(&golden, &near, Some(1e-9), "g.jsonl").is_err());

        // The tolerance is on values only: another uri is a difference.
        let other = lines(&record(FireOutcome::Returned, vec![dp("a.other", 10, 2.5)]));
        assert!(compare(&golden, &other, Some(1.0), "g.jsonl").is_err());
        // A missing line.
        let missing = compare(&golden, &[], None, "g.jsonl").expect_err("missing");
        assert_eq!((missing.missing, missing.unexpected), (1, 0));
    }
}
