//! The failure policy on a running agent: a failing impulse backs off, is
//! disabled after `disable_after` failed events in a row, and runs again when its
//! module file changes; a runaway impulse is demoted and stopped by its deadline
//! while its healthy neighbour keeps answering. Fires skipped by the policy are
//! skipped before their window is cut, and never those sent after a swap.

use std::time::{Duration, Instant};

use komlogd::agent::load_impulse;
use komlogd::impulses::{Control, ImpulseState};
use komlogd_tests::{AgentDir, RunningAgent, dp, guest, replace_file, skip, wait_until};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn backoff_then_disable_then_reenable_on_module_change() {
    let dir = AgentDir::new("");
    let module = dir.path().join("flaky.wasm");
    std::fs::copy(guest("misbehave"), &module).unwrap();
    dir.write_config(
        "- impulses:\n    name: flaky\n    filename: flaky.wasm\n    uris: [in]\n    params: {mode: panic}\n    limits: {disable_after: 2}\n",
    );
    let agent = RunningAgent::start(&dir);

    // Event 1 fails (and its retry): backoff of 1 s.
    agent.inbox.samples(vec![dp("in", 1, 0.0)]).unwrap();
    let s = agent.wait_for("flaky", WAIT, |s| s.failed_events == 1);
    assert_eq!(s.state, ImpulseState::Backoff);
    assert_eq!((s.retries, s.failures.get("trap").copied()), (1, Some(2)));
    let failed_at = Instant::now();

    // Event 2 inside the backoff: skipped, not run.
    agent.inbox.samples(vec![dp("in", 2, 0.0)]).unwrap();
    let s = agent.wait_for("flaky", WAIT, |s| s.backoff_skips == 1);
    assert_eq!(
        s.failures.get("trap"),
        Some(&2),
        "nothing ran during the backoff"
    );

    // Event 3 after the backoff runs, fails again: second failed event in a row → disabled.
    let wait = Duration::from_millis(1100).saturating_sub(failed_at.elapsed());
    std::thread::sleep(wait);
    agent.inbox.samples(vec![dp("in", 3, 0.0)]).unwrap();
    let s = agent.wait_for("flaky", WAIT, |s| s.failed_events == 2);
    assert_eq!(s.state, ImpulseState::Disabled);
    assert_eq!(s.consecutive_failures, 2);
    let ts: Vec<i64> = s.recent_failed_events.iter().map(|e| e.ts).collect();
    assert_eq!(ts, [1, 3]);
    assert!(s.recent_failed_events[1].reason.contains("asked to panic"));

    // Disabled: events are skipped however long we wait.
    agent.inbox.samples(vec![dp("in", 4, 0.0)]).unwrap();
    agent.wait_for("flaky", WAIT, |s| s.disabled_skips == 1);

    // A new module version re-enables it.
    replace_file(&guest("tagged_a"), &module);
    let s = agent.wait_for("flaky", WAIT, |s| s.swaps == 1);
    assert_eq!(s.state, ImpulseState::Running);
    agent.inbox.samples(vec![dp("in", 5, 0.0)]).unwrap();
    // The worker counts the fire when the call returns and the dispatcher
    // counts the output once it is stored: wait for the later of the two.
    let s = agent.wait_for("flaky", WAIT, |s| s.outputs == 1);
    assert_eq!(s.fires, 1);
    assert_eq!(s.consecutive_failures, 0);
}

#[test]
fn a_runaway_is_stopped_by_its_deadline_while_its_neighbour_answers() {
    // How long the healthy neighbour takes beside a runaway, and how far past
    // its deadline a runaway call runs, are measured by the reload bench
    // (`cargo bench -p komlogd-tests --bench reload -- runaway`); this test
    // checks what happens, not how fast.
    let dir = AgentDir::new(
        "- impulses:\n    name: runaway\n    filename: {guest:misbehave}\n    uris: [in]\n    params: {mode: spin}\n    limits: {timeout: 300ms}\n\
         - impulses:\n    name: healthy\n    filename: {guest:tagged_a}\n    uris: [in]\n",
    );
    let agent = RunningAgent::start(&dir);
    agent.inbox.samples(vec![dp("in", 1, 0.0)]).unwrap();
    // The healthy neighbour answers while the runaway spins.
    let out = agent
        .tap
        .recv_timeout(WAIT)
        .expect("the healthy impulse answered");
    assert_eq!(&*out.impulse, "healthy");
    // Past its first ticks the runaway's call runs at the lowest CPU priority;
    // the healthy impulse's worker keeps the normal one.
    wait_until("the runaway's worker demoted to nice 19", WAIT, || {
        thread_nice("imp-runaway") == Some(19)
    });
    assert_eq!(thread_nice("imp-healthy"), Some(0));
    // The runaway's call and its retry are each stopped by the deadline, and
    // not before it.
    let s = agent.wait_for("runaway", WAIT, |s| s.failed_events == 1);
    assert_eq!(s.failures.get("deadline"), Some(&2), "{s:?}");
    let took = Duration::from_secs_f64(s.duration_p50_us / 1e6);
    assert!(
        took >= Duration::from_millis(300),
        "a runaway call stopped after {took:?}, before its 300 ms deadline"
    );
    // Where the process may raise priorities again (root), the call's end
    // restores it.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(thread_nice("imp-runaway"), Some(0), "priority restored");
    } else {
        skip(
            "a_runaway_is_stopped_by_its_deadline_while_its_neighbour_answers: not root, so \
             the restored priority is not checked",
        );
    }
}

/// The nice value of this process's thread named `name` (from /proc), if any;
/// an impulse's worker thread is named `imp-<impulse>`.
fn thread_nice(name: &str) -> Option<i64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised name start at field 3 (state); nice is field 19.
        let after_name = stat.rsplit_once(") ")?.1;
        return after_name.split_whitespace().nth(16)?.parse().ok();
    }
    None
}

#[test]
fn fires_sent_after_swaps_of_a_disabled_impulse_run_on_the_new_version() {
    // The dispatcher skips a disabled impulse's fires itself: each swap must
    // reopen that gate for the fires sent after it. (Whether the worker has
    // taken the swap by then is a race this test does not control; the gate
    // is tied to the version that closed it, so either order is right.)
    let yaml = "- impulses:\n    name: flaky\n    filename: {guest:misbehave}\n    uris: [in]\n    params: {mode: panic}\n    limits: {disable_after: 1}\n";
    let dir = AgentDir::new(yaml);
    let config = dir.config();
    let mut agent = dir.open();
    agent.dispatcher.ingest(vec![dp("in", 1, 0.0)]).unwrap();
    agent.dispatcher.ingest(vec![dp("in", 2, 0.0)]).unwrap();
    let stats = |agent: &komlogd::agent::Agent| agent.dispatcher.stats()[0].1.clone();
    let s = stats(&agent);
    assert_eq!(s.state, ImpulseState::Disabled, "{s:?}");
    assert_eq!((s.failed_events, s.disabled_skips), (1, 1), "{s:?}");
    for round in 1..=20 {
        let mut block = config.impulses[0].clone();
        block.filename = guest(if round % 2 == 1 {
            "tagged_a"
        } else {
            "misbehave"
        });
        let version = load_impulse(&agent.engine, &block, &config.limits).expect("load");
        agent.dispatcher.apply(Control::Swap(Box::new(version)));
        let ts = 2 + round;
        agent.dispatcher.ingest(vec![dp("in", ts, 0.0)]).unwrap();
        let s = stats(&agent);
        if round % 2 == 1 {
            // tagged_a answers: the fire reached the new version.
            assert_eq!(s.fires, (round as u64).div_ceil(2), "round {round}: {s:?}");
        } else {
            // misbehave (panic) again: the fire ran and failed, disabling it.
            assert_eq!(s.state, ImpulseState::Disabled, "round {round}: {s:?}");
            assert_eq!(
                s.failed_events,
                1 + round as u64 / 2,
                "round {round}: {s:?}"
            );
        }
    }
    assert_eq!(stats(&agent).disabled_skips, 1);
}
