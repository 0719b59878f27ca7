//! The wall clock the job scheduler reads and sleeps on: [`SystemClock`] in the
//! agent, [`ManualClock`] in tests, which only moves when the test moves it.
//!
//! A test cannot use tokio's paused time for this: paused time auto-advances to
//! the next timer whenever the runtime is idle, and a runtime waiting for a real
//! child process is idle, so the next minute would arrive while the job's command
//! is still running. (Paused time also never moves `chrono::Utc::now()`.)

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// A boxed, sendable future, as returned by [`Clock::sleep_until`].
pub type SleepFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of wall-clock time and a way to wait for a wall-clock instant.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;

    /// Wait until [`now`](Clock::now) is at or past `deadline` (at once if it already is).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> SleepFuture<'_>;
}

/// The machine's clock (`chrono::Utc::now`), slept on with tokio timers.
///
/// Sleeps are cut into steps of at most [`SystemClock::STEP`] and the wall clock is
/// read again after each one, so a clock that is set forward, or a machine that wakes
/// from suspend (tokio's monotonic timers stop during suspend), is noticed within a
/// step instead of at the end of a long sleep.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The longest single tokio sleep between two readings of the wall clock.
    pub const STEP: Duration = Duration::from_secs(10);
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> SleepFuture<'_> {
        Box::pin(async move {
            loop {
                let left = deadline - Utc::now();
                let Ok(left) = left.to_std() else {
                    return; // negative: the deadline has passed
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(Self::STEP)).await;
            }
        })
    }
}

/// A clock for tests: it stands still until [`set`](ManualClock::set) or
/// [`advance`](ManualClock::advance) moves it, and wakes every sleeper whose
/// deadline it reaches. [`sleeping_until`](ManualClock::sleeping_until) lets a test
/// wait until the scheduler has finished with a minute and sleeps for a later one.
#[derive(Debug)]
pub struct ManualClock {
    /// The time it shows.
    now: watch::Sender<DateTime<Utc>>,
    /// The deadlines of the sleeps now pending (one entry per sleep).
    sleepers: watch::Sender<Vec<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: watch::Sender::new(start),
            sleepers: watch::Sender::new(Vec::new()),
        }
    }

    /// Move the clock to `to` (forwards or backwards) and wake the sleepers it reaches.
    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        self.now.send_modify(|now| *now += by);
    }

    /// Wait until some sleep with a deadline at or after `at_least` is pending.
    pub async fn sleeping_until(&self, at_least: DateTime<Utc>) {
        let mut sleepers = self.sleepers.subscribe();
        // The sender lives in `self`, so this cannot fail while we borrow it.
        let _ = sleepers
            .wait_for(|deadlines| deadlines.iter().any(|d| *d >= at_least))
            .await;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> SleepFuture<'_> {
        Box::pin(async move {
            let mut now = self.now.subscribe();
            self.sleepers.send_modify(|d| d.push(deadline));
            let _pending = Pending {
                sleepers: &self.sleepers,
                deadline,
            };
            let _ = now.wait_for(|now| *now >= deadline).await;
        })
    }
}

/// Removes one pending deadline when a [`ManualClock`] sleep ends or is dropped.
struct Pending<'a> {
    /// The clock's pending deadlines.
    sleepers: &'a watch::Sender<Vec<DateTime<Utc>>>,
    /// This sleep's deadline.
    deadline: DateTime<Utc>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.sleepers.send_modify(|d| {
            if let Some(i) = d.iter().position(|x| *x == self.deadline) {
                d.swap_remove(i);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_it_reaches() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
        let clock = std::sync::Arc::new(ManualClock::new(t0));
        assert_eq!(clock.now(), t0);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(t1).await })
        };
        tokio::time::timeout(BOUND, clock.sleeping_until(t1))
            .await
            .expect("the sleeper registers");
        clock.advance(TimeDelta::seconds(29));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(TimeDelta::seconds(1));
        tokio::time::timeout(BOUND, sleeper)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(clock.now(), t1);
        // A deadline already passed returns at once; finished sleeps are forgotten.
        tokio::time::timeout(BOUND, clock.sleep_until(t0))
            .await
            .expect("immediate");
        assert!(clock.sleepers.borrow().is_empty());
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_a_near_deadline() {
        let clock = SystemClock;
        let deadline = clock.now() + TimeDelta::milliseconds(50);
        tokio::time::timeout(BOUND, clock.sleep_until(deadline))
            .await
            .expect("woken");
        assert!(clock.now() >= deadline);
    }
}
