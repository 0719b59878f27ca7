//! Validation of the samples a guest returns.
//!
//! Rules, in order: the uri must be a valid local or global uri; a global uri of
//! another user is a remote write and is dropped (counted apart); a global uri of
//! the agent's own user is a local write; the time must be in the valid range
//! (1582-10-15 ..= 5236-03-31, what a TimeUUID carries); the value must pass the
//! value rules (finite datapoints, datasource text ≤ 131072 bytes). The kind rule
//! (a uri's kind is fixed by its first write) is checked by the store when the
//! sample is written. An invalid sample is dropped alone: the valid rest of the
//! result goes on.

use crate::engine::bindings;
use crate::model::{Sample, SampleError, Uri, Username, Value};

/// Turn a guest sample into a store sample, or say why it is refused.
pub fn accept(sample: bindings::Sample, me: Option<&Username>) -> Result<Sample, SampleError> {
    let value = match sample.value {
        bindings::Value::Datapoint(v) => Value::Datapoint(v),
        bindings::Value::Datasource(s) => Value::Datasource(s),
    };
    check_local_write(
        Sample {
            uri: sample.uri,
            ts: sample.ts,
            value,
        },
        me,
    )
}

/// The rules every write of the agent passes (guest outputs and source samples
/// alike): a valid sample ([`Sample::validate`]: uri, time range, value), not
/// to another user's uri. Returns the sample with its uri turned into the
/// store key.
pub fn check_local_write(mut sample: Sample, me: Option<&Username>) -> Result<Sample, SampleError> {
    let uri = Uri::parse(&sample.uri)?;
    if uri.is_remote_for(me) {
        return Err(SampleError::RemoteWrite(sample.uri));
    }
    sample.validate()?;
    sample.uri = uri.store_key(me);
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(uri: &str, v: f64) -> bindings::Sample {
        bindings::Sample {
            uri: uri.into(),
            ts: 5,
            value: bindings::Value::Datapoint(v),
        }
    }

    #[test]
    fn rules() {
        let me = Username::parse("alice").unwrap();
        let me = Some(&me);
        assert_eq!(accept(dp("a.b", 1.0), me).unwrap().uri, "a.b");
        assert_eq!(accept(dp("ALICE:a.b", 1.0), me).unwrap().uri, "a.b");
        assert!(matches!(
            accept(dp("bob:a.b", 1.0), me),
            Err(SampleError::RemoteWrite(u)) if u == "bob:a.b"
        ));
        assert!(matches!(
            accept(dp("a..b", 1.0), me),
            Err(SampleError::Uri(_))
        ));
        assert!(matches!(
            accept(dp("a", f64::NAN), me),
            Err(SampleError::NotFinite(_))
        ));
        let big = bindings::Sample {
            uri: "t".into(),
            ts: 1,
            value: bindings::Value::Datasource("x".repeat(131_073)),
        };
        assert_eq!(accept(big, me), Err(SampleError::TooLong(131_073)));
        for ts in [i64::MAX, 253_402_300_800_000_000, i64::MIN] {
            let far = bindings::Sample {
                uri: "t".into(),
                ts,
                value: bindings::Value::Datapoint(1.0),
            };
            assert_eq!(accept(far, me), Err(SampleError::TimeOutOfRange(ts)));
        }
    }
}
