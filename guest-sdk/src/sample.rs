//! Building the samples an impulse returns: [`Sample`] and [`Value`] helpers.
//!
//! The types themselves are the WIT records generated from
//! `komlog:impulse/types`; this module adds constructors and accessors.
//! komlogd validates every returned sample (uri syntax, finite datapoints,
//! datasource texts of at most [`MAX_DATASOURCE_BYTES`]) and drops the ones
//! that fail; nothing here checks that for you.

use crate::{Kind, Sample, Value};

/// The largest datasource text komlogd accepts, in UTF-8 bytes.
pub const MAX_DATASOURCE_BYTES: usize = 131_072;

impl Sample {
    /// A numeric sample: `value` of `uri` at `ts` (µs since the epoch, UTC).
    /// `value` must be finite for komlogd to accept it.
    pub fn datapoint(uri: impl Into<String>, ts: i64, value: f64) -> Sample {
        Sample {
            uri: uri.into(),
            ts,
            value: Value::Datapoint(value),
        }
    }

    /// A text sample: `text` of `uri` at `ts` (µs since the epoch, UTC).
    /// At most [`MAX_DATASOURCE_BYTES`] bytes are accepted.
    pub fn datasource(uri: impl Into<String>, ts: i64, text: impl Into<String>) -> Sample {
        Sample {
            uri: uri.into(),
            ts,
            value: Value::Datasource(text.into()),
        }
    }

    /// The metric kind this sample writes.
    pub fn kind(&self) -> Kind {
        self.value.kind()
    }
}

impl Value {
    /// The metric kind of this value.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Datapoint(_) => Kind::Datapoint,
            Value::Datasource(_) => Kind::Datasource,
        }
    }

    /// The number, if this is a datapoint.
    pub fn as_datapoint(&self) -> Option<f64> {
        match self {
            Value::Datapoint(v) => Some(*v),
            Value::Datasource(_) => None,
        }
    }

    /// The text, if this is a datasource.
    pub fn as_datasource(&self) -> Option<&str> {
        match self {
            Value::Datapoint(_) => None,
            Value::Datasource(s) => Some(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_field() {
        let s = Sample::datapoint("cpu.user", 7, 1.5);
        assert_eq!(s.uri, "cpu.user");
        assert_eq!(s.ts, 7);
        assert_eq!(s.value, Value::Datapoint(1.5));
        assert_eq!(s.kind(), Kind::Datapoint);
        assert_eq!(s.value.as_datapoint(), Some(1.5));
        assert_eq!(s.value.as_datasource(), None);

        let t = Sample::datasource(String::from("df"), -3, "text");
        assert_eq!(t.uri, "df");
        assert_eq!(t.ts, -3);
        assert_eq!(t.value, Value::Datasource("text".into()));
        assert_eq!(t.kind(), Kind::Datasource);
        assert_eq!(t.value.as_datasource(), Some("text"));
        assert_eq!(t.value.as_datapoint(), None);
    }
}
