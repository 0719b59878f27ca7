//! A call's deadline: how many epoch ticks it gets, what happens at each
//! epoch check (demote, go on, interrupt), and the monotonic clock guests see,
//! whose waits end at the deadline.
//!
//! Epoch interruption makes WebAssembly code check the engine's epoch at
//! function entries and loop back-edges. A call gets [`deadline_ticks`] ticks;
//! impulse calls spend the first [`DEMOTE_AFTER_TICKS`] at normal priority and
//! the rest at the lowest (nice 19), so a slow or runaway guest yields the CPU
//! to quick ones until its deadline stops it.
//!
//! A guest blocked in a host call runs no WebAssembly, so it sees no epoch. The
//! only host calls that can block in this sandbox are waits on pollables, and
//! the only pollables a guest can make are the monotonic clock's (no sockets;
//! stdin is closed; stdout and stderr never block). So `wasi:clocks/monotonic-clock`
//! is wasmtime-wasi's own with one change: a subscription made during a call
//! ends no later than the call's deadline. The wait returns, the guest's next
//! epoch check finds the deadline passed on the wall clock, and the call fails
//! as `deadline` like a looping one. Without this, `sleep` in Rust or
//! `time.sleep` in Python would hold its worker past any timeout, and its swaps
//! and the agent's shutdown behind it.

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Instant as WasiInstant};

/// Epoch ticks (10 ms each by default) after which a running impulse call is
/// demoted to the lowest CPU priority.
pub const DEMOTE_AFTER_TICKS: u64 = 2;

/// Epoch ticks of `tick` that make a call deadline of `timeout`: rounded up,
/// plus one, since the tick in progress when the call starts is partly gone.
pub(crate) fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick_us = tick.as_micros().max(1);
    (timeout.as_micros().div_ceil(tick_us) as u64).max(1) + 1
}

/// The deadline of one store's calls, and the state of the call in progress.
#[derive(Debug)]
pub(crate) struct CallDeadline {
    tick: Duration,
    ticks: u64,
    /// Demote a call's thread after [`DEMOTE_AFTER_TICKS`].
    demote: bool,
    /// Ticks still granted after the current epoch deadline.
    remaining: u64,
    /// Whether the call in progress lowered its thread's priority.
    demoted: bool,
    /// When the call in progress must have ended; None between calls.
    ends: Option<Instant>,
}

impl CallDeadline {
    /// Calls of `timeout` on an engine ticking every `tick`; `demote` moves a
    /// long call's thread to nice 19.
    pub(crate) fn new(timeout: Duration, tick: Duration, demote: bool) -> Self {
        CallDeadline {
            tick,
            ticks: deadline_ticks(timeout, tick),
            demote,
            remaining: 0,
            demoted: false,
            ends: None,
        }
    }

    /// Start a call; returns the epoch ticks until its first check.
    fn start(&mut self) -> u64 {
        let span = self
            .tick
            .saturating_mul(u32::try_from(self.ticks).unwrap_or(u32::MAX));
        self.ends = Instant::now().checked_add(span);
        // The first check comes early even when there is no demotion: there,
        // the wall clock is compared, which catches a call that was blocked in
        // a host wait while the epoch (whose ticks can run late) lags behind.
        let first = self.ticks.min(DEMOTE_AFTER_TICKS);
        self.remaining = self.ticks - first;
        self.demoted = false;
        first
    }

    /// The epoch reached the call's deadline: interrupt it, or grant the rest
    /// of its ticks (demoted) while its wall-clock deadline is ahead. The wall
    /// clock decides too because a call that was blocked in a host wait sees
    /// its first check late, and the ticks it still holds must not carry it
    /// past its deadline.
    fn on_epoch(&mut self) -> UpdateDeadline {
        let left = self.ends.map_or(Duration::ZERO, |ends| {
            ends.saturating_duration_since(Instant::now())
        });
        if self.remaining == 0 || left.is_zero() {
            return UpdateDeadline::Interrupt;
        }
        if self.demote && !self.demoted {
            self.demoted = set_thread_nice(19);
        }
        let left_ticks = left.as_nanos().div_ceil(self.tick.as_nanos().max(1));
        let left_ticks = u64::try_from(left_ticks).unwrap_or(u64::MAX).max(1);
        UpdateDeadline::Continue(std::mem::take(&mut self.remaining).min(left_ticks))
    }

    /// End the call; gives a demoted thread its normal priority back where
    /// allowed (false when it was demoted and cannot be).
    fn end(&mut self) -> bool {
        self.ends = None;
        !std::mem::take(&mut self.demoted) || set_thread_nice(0)
    }
}

/// A store state with a [`CallDeadline`].
pub(crate) trait HasCallDeadline {
    /// The store's call deadline.
    fn call_deadline(&mut self) -> &mut CallDeadline;
}

/// Let `store`'s epoch checks follow its [`CallDeadline`].
pub(crate) fn watch<T: HasCallDeadline>(store: &mut Store<T>) {
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().call_deadline().on_epoch()));
}

/// Before a call (or an instantiation, which runs start functions).
pub(crate) fn arm<T: HasCallDeadline>(store: &mut Store<T>) {
    let first = store.data_mut().call_deadline().start();
    store.set_epoch_deadline(first);
}

/// After a call. `name` is the guest's, for the one log line when a demoted
/// thread cannot be given its priority back.
pub(crate) fn disarm<T: HasCallDeadline>(store: &mut Store<T>, name: impl FnOnce(&T) -> &str) {
    if !store.data_mut().call_deadline().end() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::debug!(
                guest = name(store.data()),
                "a slow call was demoted to nice 19 and its priority cannot be raised back without CAP_SYS_NICE or RLIMIT_NICE: its worker stays at low priority"
            );
        });
    }
}

/// The calling thread's nice value (Linux: per thread).
fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) == 0
    }
}

/// Shadow the monotonic clock of a linker that already has WASI with the one
/// whose waits end at the call's deadline.
pub(crate) fn add_to_linker<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: WasiView + HasCallDeadline + 'static,
{
    linker.allow_shadowing(true);
    let added = monotonic_clock::add_to_linker::<T, DeadlineClock>(linker, clock_view::<T>);
    linker.allow_shadowing(false);
    added
}

fn clock_view<T: WasiView + HasCallDeadline>(state: &mut T) -> DeadlineClockView<'_> {
    let ends = state.call_deadline().ends;
    DeadlineClockView {
        clocks: state.clocks(),
        ends,
    }
}

struct DeadlineClock;

impl HasData for DeadlineClock {
    type Data<'a> = DeadlineClockView<'a>;
}

/// wasmtime-wasi's clock plus the deadline of the call in progress.
struct DeadlineClockView<'a> {
    clocks: WasiClocksCtxView<'a>,
    ends: Option<Instant>,
}

impl DeadlineClockView<'_> {
    /// Nanoseconds left before the deadline (0 once it has passed); None
    /// outside a call.
    fn left_ns(&self) -> Option<u64> {
        let left = self.ends?.saturating_duration_since(Instant::now());
        Some(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl monotonic_clock::Host for DeadlineClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<WasiInstant> {
        monotonic_clock::Host::now(&mut self.clocks)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        monotonic_clock::Host::resolution(&mut self.clocks)
    }

    fn subscribe_instant(&mut self, when: WasiInstant) -> wasmtime::Result<Resource<DynPollable>> {
        let when = match self.left_ns() {
            Some(left) => {
                when.min(monotonic_clock::Host::now(&mut self.clocks)?.saturating_add(left))
            }
            None => when,
        };
        monotonic_clock::Host::subscribe_instant(&mut self.clocks, when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let duration = self.left_ns().map_or(duration, |left| duration.min(left));
        monotonic_clock::Host::subscribe_duration(&mut self.clocks, duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    #[test]
    fn a_call_gets_its_timeout_in_ticks_plus_the_one_in_progress() {
        assert_eq!(deadline_ticks(Duration::from_millis(200), TICK), 21);
        assert_eq!(deadline_ticks(Duration::from_millis(1), TICK), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(15), TICK), 3);
    }

    #[test]
    fn the_first_check_comes_after_the_demotion_ticks_then_the_rest_is_granted() {
        let mut d = CallDeadline::new(Duration::from_millis(200), TICK, true);
        assert_eq!(d.start(), DEMOTE_AFTER_TICKS);
        match d.on_epoch() {
            UpdateDeadline::Continue(n) => assert_eq!(n, 21 - DEMOTE_AFTER_TICKS),
            _ => panic!("the rest of the ticks are granted"),
        }
        assert!(matches!(d.on_epoch(), UpdateDeadline::Interrupt));
        d.end();
        assert_eq!(d.ends, None);
    }

    #[test]
    fn without_demotion_the_checks_are_the_same_and_the_thread_keeps_its_priority() {
        let mut d = CallDeadline::new(Duration::from_millis(200), TICK, false);
        assert_eq!(d.start(), DEMOTE_AFTER_TICKS);
        assert!(matches!(d.on_epoch(), UpdateDeadline::Continue(19)));
        assert!(!d.demoted);
        assert!(matches!(d.on_epoch(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn a_check_after_the_wall_clock_deadline_interrupts_whatever_ticks_are_left() {
        // A call blocked in a host wait sees its first check late.
        let mut d = CallDeadline::new(Duration::from_millis(200), TICK, true);
        d.start();
        d.ends = Some(Instant::now() - Duration::from_millis(1));
        assert!(matches!(d.on_epoch(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn the_ticks_granted_never_outlast_the_wall_clock_deadline() {
        let mut d = CallDeadline::new(Duration::from_secs(10), TICK, true);
        d.start();
        // 50 ms of wall clock left although ~1,000 ticks remain.
        d.ends = Some(Instant::now() + Duration::from_millis(50));
        match d.on_epoch() {
            UpdateDeadline::Continue(n) => assert!((1..=5).contains(&n), "{n}"),
            _ => panic!("the call may go on until its wall-clock deadline"),
        }
        d.end();
    }
}
