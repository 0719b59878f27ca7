//! `tagged-a`: a test guest that writes the datapoint 1.0 (its tag) at each
//! firing timestamp. With `tagged-b` it makes two versions of one
//! impulse for the hot-reload tests and benchmark.

/// The value every output of this version carries.
const TAG: f64 = 1.0;

include!("../../respond.rs");
