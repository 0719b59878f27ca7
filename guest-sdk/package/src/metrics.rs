//! A Kaneda-style metrics API: `gauge`, `increment`/`decrement`, `event`,
//! `timing`/`timed` and `custom`, each with optional tags. Every call adds
//! ordinary samples to a [`Metrics`] buffer, stamped with its timestamp;
//! return [`Metrics::into_samples`] from a job (or an impulse) and komlogd
//! validates and stores them like any other sample.
//!
//! | call | sample at `uri` | sample at each tag uri |
//! |---|---|---|
//! | `gauge(uri, v)` | datapoint `v` | datapoint `v` |
//! | `increment(uri)` / `increment_by(uri, n)` | datapoint: the counter's new total | datapoint: the tag's own counter total |
//! | `decrement(uri)` / `decrement_by(uri, n)` | datapoint: the counter's new total | datapoint: the tag's own counter total |
//! | `event(uri, text)` | datasource `text` | datapoint `1` (one occurrence) |
//! | `timing(uri, ms)` | datapoint `ms` (milliseconds) | datapoint `ms` |
//! | `timed(uri, f)` | datapoint: how long `f` took, ms | datapoint: the same |
//! | `custom(uri, value)` | `value` as given (datapoint or datasource) | datapoint `value`, or `1` for a text |
//!
//! **Tags** follow the original Komlog rule: tag `(key, value)` of `uri` is
//! the datapoint uri `<uri>._tags.<key>.<value>`, and `key` and `value` must
//! each be one uri level (`[A-Za-z0-9_-]+`). A tag that is not is skipped and
//! logged; the untagged sample is still written.
//!
//! **Counters** are kept by komlogd (`komlog:impulse/counters`), per package,
//! across calls and across instances: `increment` returns and writes the
//! running total, which survives the instance being replaced. Off wasm
//! (native tests) they are kept per thread.

use komlog_guest::{Sample, Value, log};

/// The datapoint uri of tag `(key, value)` of `uri`: `<uri>._tags.<key>.<value>`,
/// or `None` when `key` or `value` is not one uri level.
pub fn tag_uri(uri: &str, key: &str, value: &str) -> Option<String> {
    (is_level(key) && is_level(value)).then(|| format!("{uri}._tags.{key}.{value}"))
}

fn is_level(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Add `delta` to the host-kept counter `name` and return its new total.
pub fn counter_add(name: &str, delta: f64) -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::komlog::impulse::counters::add(name, delta)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::add(name, delta)
    }
}

/// The host-kept counter `name` (0 if never added to).
pub fn counter_get(name: &str) -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::komlog::impulse::counters::get(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::get(name)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        static COUNTERS: RefCell<HashMap<String, f64>> = RefCell::new(HashMap::new());
    }

    pub fn add(name: &str, delta: f64) -> f64 {
        COUNTERS.with(|c| {
            let mut c = c.borrow_mut();
            let v = c.entry(name.to_owned()).or_insert(0.0);
            *v += delta;
            *v
        })
    }

    pub fn get(name: &str) -> f64 {
        COUNTERS.with(|c| c.borrow().get(name).copied().unwrap_or(0.0))
    }
}

/// A buffer of metric samples stamped with one timestamp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    ts: i64,
    samples: Vec<Sample>,
}

/// Tags: `(key, value)` pairs, each one uri level.
pub type Tags<'a> = &'a [(&'a str, &'a str)];

impl Metrics {
    /// An empty buffer whose samples are stamped `ts` (µs since the epoch, UTC).
    pub fn new(ts: i64) -> Metrics {
        Metrics {
            ts,
            samples: Vec::new(),
        }
    }

    /// The timestamp of the samples.
    pub fn ts(&self) -> i64 {
        self.ts
    }

    /// The samples so far, in call order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The samples, to return from a job or impulse.
    pub fn into_samples(self) -> Vec<Sample> {
        self.samples
    }

    fn tagged(&mut self, uri: &str, tags: Tags<'_>, mut value: impl FnMut(&str) -> f64) {
        for (k, v) in tags {
            match tag_uri(uri, k, v) {
                Some(t) => {
                    let x = value(&t);
                    self.samples.push(Sample::datapoint(t, self.ts, x));
                }
                None => log::warn(&format!(
                    "metrics: tag ({k:?}, {v:?}) of {uri} skipped: key and value must each be one uri level"
                )),
            }
        }
    }

    /// The current value of something: datapoint `value` at `uri` and at each tag uri.
    pub fn gauge(&mut self, uri: &str, value: f64, tags: Tags<'_>) {
        self.samples.push(Sample::datapoint(uri, self.ts, value));
        self.tagged(uri, tags, |_| value);
    }

    /// Add 1 to the counter `uri` and write its total (and each tag's total).
    pub fn increment(&mut self, uri: &str, tags: Tags<'_>) {
        self.increment_by(uri, 1.0, tags);
    }

    /// Add `n` to the counter `uri` and write its total (and each tag's total).
    pub fn increment_by(&mut self, uri: &str, n: f64, tags: Tags<'_>) {
        let total = counter_add(uri, n);
        self.samples.push(Sample::datapoint(uri, self.ts, total));
        self.tagged(uri, tags, |t| counter_add(t, n));
    }

    /// Subtract 1 from the counter `uri` and write its total (and each tag's total).
    pub fn decrement(&mut self, uri: &str, tags: Tags<'_>) {
        self.increment_by(uri, -1.0, tags);
    }

    /// Subtract `n` from the counter `uri` and write its total (and each tag's total).
    pub fn decrement_by(&mut self, uri: &str, n: f64, tags: Tags<'_>) {
        self.increment_by(uri, -n, tags);
    }

    /// Something that happened: datasource `text` at `uri`, datapoint 1 at each tag uri.
    pub fn event(&mut self, uri: &str, text: &str, tags: Tags<'_>) {
        self.samples.push(Sample::datasource(uri, self.ts, text));
        self.tagged(uri, tags, |_| 1.0);
    }

    /// How long something took, in milliseconds.
    pub fn timing(&mut self, uri: &str, ms: f64, tags: Tags<'_>) {
        self.samples.push(Sample::datapoint(uri, self.ts, ms));
        self.tagged(uri, tags, |_| ms);
    }

    /// Run `f`, write how long it took (ms) as [`Metrics::timing`] does, and
    /// return its result.
    pub fn timed<R>(&mut self, uri: &str, tags: Tags<'_>, f: impl FnOnce() -> R) -> R {
        let started = std::time::Instant::now();
        let result = f();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.timing(uri, ms, tags);
        result
    }

    /// Any value: `value` at `uri`; at each tag uri the number, or 1 for a text.
    pub fn custom(&mut self, uri: &str, value: Value, tags: Tags<'_>) {
        let tag_value = match &value {
            Value::Datapoint(v) => *v,
            Value::Datasource(_) => 1.0,
        };
        self.samples.push(Sample {
            uri: uri.to_owned(),
            ts: self.ts,
            value,
        });
        self.tagged(uri, tags, |_| tag_value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_uris_follow_the_original_rule() {
        assert_eq!(
            tag_uri("a.b", "host", "web-1").as_deref(),
            Some("a.b._tags.host.web-1")
        );
        assert_eq!(tag_uri("a.b", "two.levels", "x"), None);
        assert_eq!(tag_uri("a.b", "k", ""), None);
        assert_eq!(tag_uri("a.b", "k", "sp ace"), None);
    }

    #[test]
    fn every_call_writes_its_samples_and_tags() {
        let mut m = Metrics::new(42);
        m.gauge("g", 2.5, &[("host", "a")]);
        m.increment("native.c", &[("k", "v")]);
        m.increment_by("native.c", 2.0, &[]);
        m.decrement("native.c", &[("k", "v")]);
        m.decrement_by("native.c", 0.5, &[]);
        m.event("e", "hello", &[("sev", "info"), ("bad key", "x")]);
        m.timing("t", 12.5, &[("op", "read")]);
        let out = m.timed("td", &[], || 7);
        assert_eq!(out, 7);
        m.custom("cd", Value::Datapoint(3.0), &[("k", "v")]);
        m.custom("cs", Value::Datasource("x".into()), &[("k", "v")]);
        let s = m.samples();
        let dp = |uri: &str, v: f64| Sample::datapoint(uri, 42, v);
        assert_eq!(s[0], dp("g", 2.5));
        assert_eq!(s[1], dp("g._tags.host.a", 2.5));
        assert_eq!(s[2], dp("native.c", 1.0));
        assert_eq!(s[3], dp("native.c._tags.k.v", 1.0));
        assert_eq!(s[4], dp("native.c", 3.0));
        assert_eq!(s[5], dp("native.c", 2.0));
        assert_eq!(s[6], dp("native.c._tags.k.v", 0.0));
        assert_eq!(s[7], dp("native.c", 1.5));
        assert_eq!(s[8], Sample::datasource("e", 42, "hello"));
        assert_eq!(s[9], dp("e._tags.sev.info", 1.0));
        assert_eq!(s[10], dp("t", 12.5));
        assert_eq!(s[11], dp("t._tags.op.read", 12.5));
        assert_eq!(s[12].uri, "td");
        assert!(matches!(s[12].value, Value::Datapoint(ms) if (0.0..1000.0).contains(&ms)));
        assert_eq!(s[13], dp("cd", 3.0));
        assert_eq!(s[14], dp("cd._tags.k.v", 3.0));
        assert_eq!(s[15], Sample::datasource("cs", 42, "x"));
        assert_eq!(s[16], dp("cs._tags.k.v", 1.0));
        assert_eq!(s.len(), 17, "the bad tag is skipped");
        assert_eq!(counter_get("native.c"), 1.5);
    }
}
