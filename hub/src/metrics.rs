//! What a running hub counts, served as Prometheus text at `GET /metrics`.
//!
//! **Owns:** the counters (logins, refusals, writes, samples, notifications,
//! errors), the latency histograms of the store's commits and the bus's
//! publishes, and their text exposition format (version 0.0.4). Counting is a
//! relaxed atomic add: nothing on the write path waits for it.
//!
//! Gauges that are read rather than counted (connected sessions) are filled in
//! by the caller of [`HubMetrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Add one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything a hub counts.
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Logins that got a session.
    pub logins: Counter,
    /// Logins refused (unknown user or key, bad or reused challenge, bad signature).
    pub logins_refused: Counter,
    /// Write messages accepted (answered 4200).
    pub writes: Counter,
    /// Samples in those messages.
    pub samples: Counter,
    /// Write messages refused or failed.
    pub write_errors: Counter,
    /// Notifications queued for hooked sessions.
    pub notifications: Counter,
    /// Group commits that failed as a whole.
    pub store_errors: Counter,
    /// Events that could not be published on the cluster bus.
    pub bus_errors: Counter,
    /// Events received from the cluster bus.
    pub bus_received: Counter,
    /// Time of each group commit.
    pub store_commit: Histogram,
    /// Time from publishing an event on the bus to its acknowledgement.
    pub bus_publish: Histogram,
}

impl HubMetrics {
    /// The Prometheus text exposition, with the gauges read by the caller.
    pub fn render(&self, connected_sessions: usize, sessions: usize, draining: bool) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, c: &Counter| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", c.get());
        };
        gauge(
            &mut out,
            "komlog_hub_sessions_connected",
            "Agent sessions with a live websocket on this hub.",
            connected_sessions as u64,
        );
        gauge(
            &mut out,
            "komlog_hub_sessions",
            "Agent sessions known to this hub, connected or not.",
            sessions as u64,
        );
        gauge(
            &mut out,
            "komlog_hub_draining",
            "1 while the hub is stopping and refuses new work.",
            u64::from(draining),
        );
        for (name, help, c) in [
            (
                "komlog_hub_logins_total",
                "Logins that got a session.",
                &self.logins,
            ),
            (
                "komlog_hub_logins_refused_total",
                "Logins refused.",
                &self.logins_refused,
            ),
            (
                "komlog_hub_writes_total",
                "Write messages accepted.",
                &self.writes,
            ),
            (
                "komlog_hub_samples_total",
                "Samples in accepted write messages.",
                &self.samples,
            ),
            (
                "komlog_hub_write_errors_total",
                "Write messages refused or failed.",
                &self.write_errors,
            ),
            (
                "komlog_hub_notifications_total",
                "Notifications queued for hooked sessions.",
                &self.notifications,
            ),
            (
                "komlog_hub_store_errors_total",
                "Group commits that failed.",
                &self.store_errors,
            ),
            (
                "komlog_hub_bus_errors_total",
                "Events not published on the cluster bus.",
                &self.bus_errors,
            ),
            (
                "komlog_hub_bus_received_total",
                "Events received from the cluster bus.",
                &self.bus_received,
            ),
        ] {
            counter(&mut out, name, help, c);
        }
        self.store_commit.render(
            &mut out,
            "komlog_hub_store_commit_seconds",
            "Time of one group commit of writes.",
        );
        self.bus_publish.render(
            &mut out,
            "komlog_hub_bus_publish_seconds",
            "Time from publishing an event on the cluster bus to its acknowledgement.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_show() {
        let m = HubMetrics::default();
        m.store_commit.observe(Duration::from_micros(300));
        m.store_commit.observe(Duration::from_millis(3));
        m.store_commit.observe(Duration::from_secs(9));
        m.writes.add(5);
        let text = m.render(2, 3, false);
        assert!(text.contains("komlog_hub_store_commit_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("komlog_hub_store_commit_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("komlog_hub_store_commit_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("komlog_hub_store_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("komlog_hub_store_commit_seconds_count 3\n"));
        assert!(text.contains("komlog_hub_writes_total 5\n"));
        assert!(text.contains("komlog_hub_sessions_connected 2\n"));
        assert!(text.contains("komlog_hub_draining 0\n"));
    }
}
