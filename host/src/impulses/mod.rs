//! Impulses: from a configured `- impulses:` block to fires.
//!
//! - [`spec`]: resolve a block and its module's `describe()` defaults into an
//!   [`ImpulseSpec`] (uris, data requirements, min_exec_delta, params, limits);
//! - [`window`]: the Arrow IPC encoding of a fire's window;
//! - [`output`]: validation of what a guest returns (uri rules, value rules,
//!   remote writes dropped);
//! - [`dispatch`]: the [`Dispatcher`], which takes batches of samples, stores them,
//!   fires every subscribed impulse once per batch timestamp, and feeds the valid
//!   outputs back in, under the chain-depth rule that stops loops;
//! - [`stats`]: per-impulse counters.

pub mod dispatch;
pub mod output;
pub mod spec;
pub mod stats;
pub mod window;
pub mod worker;

pub use dispatch::{Closed, Control, Inbox, SpecsWatcher, Tapped, UploadReceipt};
pub use dispatch::{Dispatcher, DispatcherConfig, IngestReport, Rejected};
pub use spec::{ImpulseSpec, SpecError};
pub use stats::{FailedEvent, FailedImpulse, ImpulseState, ImpulseStats, StatsBoard};
pub use worker::Version;

/// Receive from `rx`, spinning briefly before sleeping: a message that follows
/// within a few microseconds (the usual case while events flow) is taken without
/// the cost of waking a sleeping thread on both sides. Idle threads sleep.
pub(crate) fn recv_spinning<T>(rx: &std::sync::mpsc::Receiver<T>) -> Option<T> {
    /// How long to poll before sleeping. Bounded by time, not by rounds: the
    /// cost of a spin-loop hint varies tenfold between processors. No yielding
    /// either: on a loaded machine a yield gives the core away for a time slice.
    const SPIN: std::time::Duration = std::time::Duration::from_micros(50);
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(msg) => return Some(msg),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                if started.elapsed() >= SPIN {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    rx.recv().ok()
}
