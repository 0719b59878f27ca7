//! Building the default subscription returned by `Impulse::describe`.
//!
//! [`Subscription`] and [`DataRequirements`] are the WIT records; this module
//! adds a small builder. Durations are microseconds (see [`crate::time`]).

use crate::{DataRequirements, Duration, Subscription};

impl Default for DataRequirements {
    /// Neither past-delta nor past-count: the window holds the latest sample
    /// at or before the fire of each uri.
    fn default() -> Self {
        DataRequirements {
            past_delta: None,
            past_count: None,
        }
    }
}

impl DataRequirements {
    /// Every sample younger than `delta` (µs): timestamps in `(ts - delta, ts]`.
    pub fn delta(delta: Duration) -> Self {
        DataRequirements {
            past_delta: Some(delta),
            past_count: None,
        }
    }

    /// At least the last `count` samples at or before the fire.
    pub fn count(count: u32) -> Self {
        DataRequirements {
            past_delta: None,
            past_count: Some(count),
        }
    }
}

impl Subscription {
    /// A subscription to `uris` with default data requirements (latest sample
    /// only) and no minimum delay between runs.
    pub fn new<I, S>(uris: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscription {
            uris: uris.into_iter().map(Into::into).collect(),
            data_reqs: DataRequirements::default(),
            min_exec_delta: None,
        }
    }

    /// Replace the data requirements.
    pub fn with_data_reqs(mut self, data_reqs: DataRequirements) -> Self {
        self.data_reqs = data_reqs;
        self
    }

    /// Ask for every sample younger than `delta` (µs) in the window.
    pub fn with_past_delta(mut self, delta: Duration) -> Self {
        self.data_reqs.past_delta = Some(delta);
        self
    }

    /// Ask for at least the last `count` samples of each uri in the window.
    pub fn with_past_count(mut self, count: u32) -> Self {
        self.data_reqs.past_count = Some(count);
        self
    }

    /// Skip fires that come less than `delta` (µs) after the previous run.
    pub fn with_min_exec_delta(mut self, delta: Duration) -> Self {
        self.min_exec_delta = Some(delta);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{HOUR, MINUTE};

    #[test]
    fn builder_sets_each_field() {
        let s = Subscription::new(["a", "b"])
            .with_past_delta(HOUR)
            .with_past_count(5)
            .with_min_exec_delta(MINUTE);
        assert_eq!(s.uris, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(s.data_reqs.past_delta, Some(3_600_000_000));
        assert_eq!(s.data_reqs.past_count, Some(5));
        assert_eq!(s.min_exec_delta, Some(60_000_000));
    }

    #[test]
    fn defaults_are_empty() {
        let s = Subscription::new(Vec::<String>::new());
        assert!(s.uris.is_empty());
        assert_eq!(s.data_reqs, DataRequirements::default());
        assert_eq!(s.data_reqs.past_delta, None);
        assert_eq!(s.data_reqs.past_count, None);
        assert_eq!(s.min_exec_delta, None);
        assert_eq!(DataRequirements::delta(7).past_delta, Some(7));
        assert_eq!(DataRequirements::count(3).past_count, Some(3));
        let replaced = s.with_data_reqs(DataRequirements::count(2));
        assert_eq!(replaced.data_reqs, DataRequirements::count(2));
    }
}
