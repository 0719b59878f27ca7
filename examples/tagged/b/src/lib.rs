//! `tagged-b`: a test guest that writes the datapoint 2.0 (its tag) at each
//! firing timestamp. With `tagged-a` it makes two versions of one
//! impulse for the hot-reload tests and benchmark.

/// The value every output of this version carries.
const TAG: f64 = 2.0;

include!("../../respond.rs");
