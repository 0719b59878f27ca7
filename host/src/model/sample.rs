//! Samples and their values, and the rules a sample must pass (spec §6.3):
//! datasource text at most 131072 UTF-8 bytes, datapoints finite, and a time
//! within [`MIN_TS`] ..= [`MAX_TS`] (what a Komlog TimeUUID carries).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::uri::{Uri, UriError};

/// Microseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// The largest datasource text, in UTF-8 bytes (2^17).
pub const MAX_DATASOURCE_BYTES: usize = 131_072;

/// The earliest valid sample time: 1582-10-15T00:00:00Z, the first instant a
/// TimeUUID (the wire's timestamps) carries.
pub const MIN_TS: Timestamp = komlog_protocol::TimeUuid::MIN_MICROS;

/// The latest valid sample time: 5236-03-31T21:21:00.684697Z, the last instant
/// a TimeUUID carries.
pub const MAX_TS: Timestamp = komlog_protocol::TimeUuid::MAX_MICROS;

/// [`MIN_TS`] ..= [`MAX_TS`] as messages show it.
pub const TIME_RANGE: &str = "1582-10-15T00:00:00Z ..= 5236-03-31T21:21:00.684697Z";

/// Check that `ts` is within [`MIN_TS`] ..= [`MAX_TS`]: every sample that is
/// stored or sent passes this (uploads, jobs, packages, impulse outputs, and
/// what the server sends).
pub fn check_ts(ts: Timestamp) -> Result<(), SampleError> {
    if (MIN_TS..=MAX_TS).contains(&ts) {
        Ok(())
    } else {
        Err(SampleError::TimeOutOfRange(ts))
    }
}

/// A time for people: RFC 3339 UTC with microseconds
/// (`2023-11-14T22:13:20.000000Z`) within the valid range, the raw number with
/// `us` outside it (what an older store may hold). Never fails.
pub fn format_ts(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp_micros(ts) {
        Some(t) if check_ts(ts).is_ok() => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        _ => format!("{ts}us"),
    }
}

/// The current wall-clock time in microseconds since the epoch.
pub fn now_us() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as Timestamp)
        .unwrap_or(0)
}

/// The kind of a metric; fixed by the first write to its uri.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Text samples.
    Datasource,
    /// Numeric samples.
    Datapoint,
}

impl Kind {
    /// `datasource` or `datapoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Datasource => "datasource",
            Kind::Datapoint => "datapoint",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A finite number.
    Datapoint(f64),
    /// A text of at most [`MAX_DATASOURCE_BYTES`].
    Datasource(String),
}

impl Value {
    /// The metric kind this value writes.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Datapoint(_) => Kind::Datapoint,
            Value::Datasource(_) => Kind::Datasource,
        }
    }

    /// Check the value rules.
    pub fn validate(&self) -> Result<(), SampleError> {
        match self {
            Value::Datapoint(v) if !v.is_finite() => Err(SampleError::NotFinite(*v)),
            Value::Datasource(s) if s.len() > MAX_DATASOURCE_BYTES => {
                Err(SampleError::TooLong(s.len()))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Datapoint(v) => write!(f, "{v}"),
            Value::Datasource(s) => f.write_str(s),
        }
    }
}

/// Why a sample was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// The uri is malformed.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A datapoint that is NaN or infinite.
    #[error("datapoint value {0} is not finite (NaN and infinities are not allowed)")]
    NotFinite(f64),
    /// A datasource text over the size limit.
    #[error("datasource text is {0} bytes, over the limit of 131072 bytes")]
    TooLong(usize),
    /// The uri already holds the other kind.
    #[error("uri {uri} is a {existing}; a {written} cannot be written to it")]
    KindChange {
        /// The uri.
        uri: String,
        /// Its kind, fixed by its first write.
        existing: Kind,
        /// The kind of the refused sample.
        written: Kind,
    },
    /// A write to another user's uri.
    #[error("uri {0} belongs to another user: remote uris are read-only")]
    RemoteWrite(String),
    /// A time outside [`MIN_TS`] ..= [`MAX_TS`].
    #[error(
        "timestamp {0} is outside the valid time range {TIME_RANGE} ({MIN_TS} ..= {MAX_TS} µs since the Unix epoch, what a TimeUUID carries)"
    )]
    TimeOutOfRange(Timestamp),
}

/// One sample: `uri` is a store key (a local uri, or `owner:uri` for another user's).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Where it goes.
    pub uri: String,
    /// When it was taken.
    pub ts: Timestamp,
    /// What it holds.
    pub value: Value,
}

impl Sample {
    /// Build a sample after validating it ([`Sample::validate`]).
    pub fn new(uri: &str, ts: Timestamp, value: Value) -> Result<Self, SampleError> {
        let sample = Sample {
            uri: uri.to_owned(),
            ts,
            value,
        };
        sample.validate()?;
        Ok(sample)
    }

    /// The rules every sample passes before it is stored or sent: the uri's
    /// syntax, the time range ([`check_ts`]) and the value rules. Returns the
    /// parsed uri. (Who may write a uri, and its kind, are checked apart.)
    pub fn validate(&self) -> Result<Uri, SampleError> {
        let uri = Uri::parse(&self.uri)?;
        check_ts(self.ts)?;
        self.value.validate()?;
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rules() {
        assert!(Value::Datapoint(1.5).validate().is_ok());
        assert_eq!(
            Value::Datapoint(f64::NAN)
                .validate()
                .unwrap_err()
                .to_string(),
            "datapoint value NaN is not finite (NaN and infinities are not allowed)"
        );
        assert!(Value::Datapoint(f64::INFINITY).validate().is_err());
        assert!(Value::Datapoint(f64::NEG_INFINITY).validate().is_err());
        assert!(Value::Datasource(String::new()).validate().is_ok());
        assert!(
            Value::Datasource("x".repeat(MAX_DATASOURCE_BYTES))
                .validate()
                .is_ok()
        );
        assert_eq!(
            Value::Datasource("x".repeat(MAX_DATASOURCE_BYTES + 1)).validate(),
            Err(SampleError::TooLong(MAX_DATASOURCE_BYTES + 1))
        );
        // The limit counts UTF-8 bytes, not characters.
        assert!(Value::Datasource("ñ".repeat(65_537)).validate().is_err());
    }

    #[test]
    fn the_time_range_is_what_a_timeuuid_carries() {
        for ts in [MIN_TS, -1, 0, 1_700_000_000_000_000, MAX_TS] {
            assert_eq!(check_ts(ts), Ok(()), "{ts}");
            assert!(Sample::new("a", ts, Value::Datapoint(1.0)).is_ok(), "{ts}");
        }
        // 10000-01-01T00:00:00Z, the original report, and the extremes.
        for ts in [
            MIN_TS - 1,
            MAX_TS + 1,
            253_402_300_800_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(check_ts(ts), Err(SampleError::TimeOutOfRange(ts)), "{ts}");
            assert_eq!(
                Sample::new("a", ts, Value::Datapoint(1.0)),
                Err(SampleError::TimeOutOfRange(ts))
            );
        }
        assert_eq!(
            SampleError::TimeOutOfRange(i64::MAX).to_string(),
            "timestamp 9223372036854775807 is outside the valid time range \
             1582-10-15T00:00:00Z ..= 5236-03-31T21:21:00.684697Z \
             (-12219292800000000 ..= 103072857660684697 µs since the Unix epoch, what a TimeUUID carries)"
        );
        // TIME_RANGE names the bounds exactly.
        assert_eq!(
            TIME_RANGE,
            format!(
                "{} ..= {}",
                format_ts(MIN_TS).replace(".000000", ""),
                format_ts(MAX_TS)
            )
        );
    }

    #[test]
    fn any_timestamp_formats_without_panicking() {
        assert_eq!(format_ts(1_000_000), "1970-01-01T00:00:01.000000Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_ts(MIN_TS), "1582-10-15T00:00:00.000000Z");
        assert_eq!(format_ts(MAX_TS), "5236-03-31T21:21:00.684697Z");
        for ts in [MAX_TS + 1, 253_402_300_800_000_000, i64::MAX, i64::MIN] {
            assert_eq!(format_ts(ts), format!("{ts}us"));
        }
    }

    #[test]
    fn sample_new_checks_uri() {
        assert!(Sample::new("a.b", 1, Value::Datapoint(1.0)).is_ok());
        assert!(matches!(
            Sample::new("a..b", 1, Value::Datapoint(1.0)),
            Err(SampleError::Uri(_))
        ));
    }
}
