//! The data model: uris, metric kinds, values, samples, timestamps and the
//! rules every sample must pass before it is stored or forwarded.
//!
//! Nothing here does I/O; every other module passes these types along.

pub mod quantity;
pub mod sample;

/// Uris and usernames: the protocol crate's rules, shared with the hub.
pub use komlog_protocol::uri;
pub use quantity::{QuantityError, parse_bytes, parse_duration_us};
pub use sample::{
    Kind, MAX_DATASOURCE_BYTES, MAX_TS, MIN_TS, Sample, SampleError, TIME_RANGE, Timestamp, Value,
    check_ts, format_ts, now_us,
};
pub use uri::{Uri, UriError, Username, repeated_uris};
