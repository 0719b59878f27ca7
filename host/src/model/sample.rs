//! Samples and their values, and the rules a value must pass (spec §6.3):
//! datasource text at most 131072 UTF-8 bytes, datapoints finite.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::uri::{Uri, UriError};

/// Microseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// The largest datasource text, in UTF-8 bytes (2^17).
pub const MAX_DATASOURCE_BYTES: usize = 131_072;

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
    /// Build a sample after validating the uri syntax and the value rules.
    pub fn new(uri: &str, ts: Timestamp, value: Value) -> Result<Self, SampleError> {
        Uri::parse(uri)?;
        value.validate()?;
        Ok(Sample {
            uri: uri.to_owned(),
            ts,
            value,
        })
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
    fn sample_new_checks_uri() {
        assert!(Sample::new("a.b", 1, Value::Datapoint(1.0)).is_ok());
        assert!(matches!(
            Sample::new("a..b", 1, Value::Datapoint(1.0)),
            Err(SampleError::Uri(_))
        ));
    }
}
