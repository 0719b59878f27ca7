//! The log line format:
//!
//! ```text
//! 2026-11-23T16:05:48.123456Z INFO impulse=df module=komlogd::engine: message
//! ```
//!
//! UTC time with microseconds, the level, the fields of the enclosing spans
//! (outermost first) and of the event as `key=value`, the event's target as
//! `module=`, then `: ` and the message. Values with spaces, `=` or quotes, and
//! empty values, are written quoted and escaped.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats whole events as one line (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct LineFormat;

/// Formats span fields as `key=value` pairs separated by spaces.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValueFields;

impl<'w> FormatFields<'w> for KeyValueFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Collect::default();
        fields.record(&mut visitor);
        if let Some(message) = visitor.message {
            push_pair(&mut visitor.pairs, "message", &message);
        }
        writer.write_str(&visitor.pairs)
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let meta = event.metadata();
        write!(writer, " {}", level_name(*meta.level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, " {}", fields.fields)?;
                }
            }
        }
        let mut visitor = Collect::default();
        event.record(&mut visitor);
        if !visitor.pairs.is_empty() {
            write!(writer, " {}", visitor.pairs)?;
        }
        write!(writer, " module={}:", meta.target())?;
        if let Some(message) = visitor.message.filter(|m| !m.is_empty()) {
            write!(writer, " {message}")?;
        }
        writeln!(writer)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Collects the message and the other fields of an event or span.
#[derive(Default)]
struct Collect {
    message: Option<String>,
    pairs: String,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            push_pair(&mut self.pairs, field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            push_pair(&mut self.pairs, field.name(), &text);
        }
    }
}

/// Append ` key=value` (no leading space for the first pair).
fn push_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    // `tracing` names raw identifiers `r#type`; the prefix is noise in a log line.
    out.push_str(key.strip_prefix("r#").unwrap_or(key));
    out.push('=');
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        out.push_str(value);
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        let mut s = String::new();
        push_pair(&mut s, "impulse", "df");
        push_pair(&mut s, "r#type", "a b");
        push_pair(&mut s, "empty", "");
        push_pair(&mut s, "eq", "x=y");
        push_pair(&mut s, "nl", "a\nb");
        assert_eq!(s, r#"impulse=df type="a b" empty="" eq="x=y" nl="a\nb""#);
    }
}
