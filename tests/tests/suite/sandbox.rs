//! Misbehaving guests are contained: a panic, an endless loop, a call blocked in
//! a host wait, a hoard of host handles and a memory bomb each end in a recorded
//! failure, and a healthy impulse beside them keeps working. An impulse slower
//! than its input sheds fires at its queue limit, and logs it. A fuel limit
//! stops a loop; clocks and randomness work.
//! Modules that are not impulses are refused with an error naming the file.

use std::time::{Duration, Instant};

use komlogd::agent::Agent;
use komlogd::impulses::ImpulseStats;
use komlogd_tests::{AgentDir, capture_log, dp, impulse_stats};

fn with_neighbour(mode: &str, limits: &str) -> (AgentDir, Agent) {
    let dir = AgentDir::new(&format!(
        "- impulses:\n    name: bad\n    filename: {{guest:misbehave}}\n    uris: [x]\n    params: {{mode: {mode}}}\n{limits}\
         - impulses:\n    name: good\n    filename: {{guest:probe}}\n    uris: [x]\n"
    ));
    let agent = dir.open();
    (dir, agent)
}

/// Two fires; the healthy neighbour must have answered both.
fn fire_twice(agent: &mut Agent) {
    for ts in [1, 2] {
        agent.dispatcher.ingest(vec![dp("x", ts, 0.0)]).unwrap();
        let out = agent.dispatcher.store().latest("probe.out", 1).unwrap();
        assert_eq!(
            out.first().map(|s| s.ts),
            Some(ts),
            "the healthy impulse fired at {ts}"
        );
    }
    assert_eq!(impulse_stats(agent, "good").fires, 2);
}

/// The first event failed, was retried once on a fresh instance and failed again;
/// the second event (within the 1 s backoff) was skipped.
fn assert_failed_once_then_backed_off(s: &ImpulseStats) {
    assert_eq!(
        (s.retries, s.failed_events, s.backoff_skips),
        (1, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.state, komlogd::impulses::ImpulseState::Backoff, "{s:?}");
    assert_eq!(s.fires, 0, "{s:?}");
    assert_eq!(s.recent_failed_events.len(), 1);
    assert_eq!(s.recent_failed_events[0].ts, 1);
}

#[test]
fn a_panic_is_a_trap_with_its_message() {
    let (_d, mut agent) = with_neighbour("panic", "");
    fire_twice(&mut agent);
    let s = impulse_stats(&agent, "bad");
    assert_failed_once_then_backed_off(&s);
    assert_eq!(s.failures.get("trap"), Some(&2), "{s:?}");
    let err = s.last_error.unwrap();
    assert!(err.contains("misbehave: asked to panic"), "{err}");
}

#[test]
fn an_endless_loop_is_stopped_by_the_deadline() {
    let (_d, mut agent) = with_neighbour("spin", "    limits: {timeout: 200ms}\n");
    let started = Instant::now();
    fire_twice(&mut agent);
    let elapsed = started.elapsed();
    let s = impulse_stats(&agent, "bad");
    assert_failed_once_then_backed_off(&s);
    assert_eq!(s.failures.get("deadline"), Some(&2), "{s:?}");
    // The call and its retry each ran to the 200 ms deadline; the second event was skipped.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn a_guest_blocked_in_a_host_call_is_stopped_by_the_deadline() {
    // `sleep` waits an hour in one `wasi:io/poll` call, where no WebAssembly
    // runs to see the epoch: the host cuts the wait at the call's deadline.
    let (_d, agent) = with_neighbour("sleep", "    limits: {timeout: 200ms}\n");
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let mut agent = agent;
        fire_twice(&mut agent);
        let _ = tx.send(agent);
    });
    let agent = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the two fires ended within 20 s: the sleeping call was stopped");
    let elapsed = started.elapsed();
    let s = impulse_stats(&agent, "bad");
    assert_failed_once_then_backed_off(&s);
    assert_eq!(s.failures.get("deadline"), Some(&2), "{s:?}");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn an_impulse_slower_than_its_input_sheds_fires_at_its_queue_limit_and_its_neighbour_gets_all() {
    // 200 fires at once for an impulse that takes 20 ms each: its queue limit
    // (16 KiB) holds a few dozen; the rest are dropped and counted, the
    // healthy neighbour answers every one, and firing resumes once there is room.
    let (_d, mut agent) = with_neighbour("slow, ms: 20", "    limits: {queue: 16KiB}\n");
    let burst: Vec<_> = (1..=200).map(|ts| dp("x", ts, 0.0)).collect();
    let ((), overload_log) = capture_log(|| {
        agent.dispatcher.ingest(burst).unwrap();
    });
    let s = impulse_stats(&agent, "bad");
    assert_eq!(s.fires + s.queue_full_skips, 200, "{s:?}");
    assert!(s.queue_full_skips > 0 && s.fires > 0, "{s:?}");
    let err = s.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("fires dropped") && err.contains("queue limit is 16384"),
        "{err}"
    );
    assert_eq!(impulse_stats(&agent, "good").fires, 200);
    let good_out = agent.dispatcher.store().latest("probe.out", 1_000).unwrap();
    assert_eq!(good_out.len(), 200);
    // One warning for the whole overload, with the reason.
    let warnings: Vec<_> = overload_log
        .lines()
        .filter(|l| l.contains("fires dropped"))
        .collect();
    assert_eq!(warnings.len(), 1, "{overload_log}");
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains("bad")
            && warnings[0].contains("queue limit is 16384"),
        "{}",
        warnings[0]
    );
    // The queue drained: the next fire runs, and the end of the overload is
    // logged with the count of fires dropped.
    let ((), resume_log) = capture_log(|| {
        agent.dispatcher.ingest(vec![dp("x", 1_000, 0.0)]).unwrap();
    });
    let resumed: Vec<_> = resume_log
        .lines()
        .filter(|l| l.contains("queue has room again"))
        .collect();
    assert_eq!(resumed.len(), 1, "{resume_log}");
    assert!(
        resumed[0].contains(&format!("dropped={}", s.queue_full_skips))
            && resumed[0].contains("bad"),
        "{}",
        resumed[0]
    );
    assert!(!resume_log.contains("fires dropped"), "{resume_log}");
    let after = impulse_stats(&agent, "bad");
    assert_eq!(after.fires, s.fires + 1, "{after:?}");
    assert_eq!(after.queue_full_skips, s.queue_full_skips, "{after:?}");
    let slow_out = agent
        .dispatcher
        .store()
        .latest("misbehave.slow", 1)
        .unwrap();
    assert_eq!(slow_out[0].ts, 1_000);
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    // The deadline is far away: the fuel limit is what stops the loop.
    let (_d, mut agent) = with_neighbour("spin", "    limits: {fuel: 1000000, timeout: 30s}\n");
    let started = Instant::now();
    fire_twice(&mut agent);
    let s = impulse_stats(&agent, "bad");
    assert_failed_once_then_backed_off(&s);
    assert_eq!(s.failures.get("fuel"), Some(&2), "{s:?}");
    assert_eq!(s.failures.get("deadline"), None, "{s:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_impulse_within_its_fuel_runs() {
    let (_d, mut agent) = with_neighbour("ok", "    limits: {fuel: 100000000}\n");
    fire_twice(&mut agent);
    let s = impulse_stats(&agent, "bad");
    assert_eq!((s.fires, s.failed_events), (2, 0), "{s:?}");
}

#[test]
fn guests_read_the_clocks_and_get_random_bytes() {
    let dir = AgentDir::new(
        "- impulses:\n    name: a\n    filename: {guest:misbehave}\n    uris: [x]\n    params: {mode: clock}\n",
    );
    let mut agent = dir.open();
    let now_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    };
    let mut seen = Vec::new();
    for ts in [1, 2] {
        let before = now_us();
        agent.dispatcher.ingest(vec![dp("x", ts, 0.0)]).unwrap();
        let after = now_us();
        let out = agent
            .dispatcher
            .store()
            .latest("misbehave.clock", 1)
            .unwrap();
        assert_eq!(out[0].ts, ts);
        let text = out[0].value.to_string();
        let field = |name: &str| -> String {
            text.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_owned()
        };
        let wall: u128 = field("wall_us").parse().unwrap();
        assert!(
            before <= wall && wall <= after,
            "{before} <= {wall} <= {after}: {text}"
        );
        let monotonic: u64 = field("monotonic_ns").parse().unwrap();
        let random = field("random");
        assert_eq!(random.len(), 32, "{text}");
        seen.push((monotonic, random));
    }
    assert!(
        seen[1].0 > seen[0].0,
        "the monotonic clock advances: {seen:?}"
    );
    assert_ne!(seen[0].1, seen[1].1, "two draws differ: {seen:?}");
    assert_ne!(seen[0].1, "0".repeat(32), "{seen:?}");
}

#[test]
fn a_memory_bomb_hits_its_cap() {
    let (_d, mut agent) = with_neighbour("hog", "    limits: {memory: 32MiB}\n");
    fire_twice(&mut agent);
    let s = impulse_stats(&agent, "bad");
    assert_failed_once_then_backed_off(&s);
    assert_eq!(s.failures.get("memory"), Some(&2), "{s:?}");
    assert!(
        s.last_error
            .unwrap()
            .contains("memory cap of 33554432 bytes")
    );
    assert!(s.memory_high_water <= 32 << 20);
}

#[test]
fn a_guest_hoarding_host_handles_hits_the_handle_limit() {
    // Each clock subscription is an entry in the host's tables, outside the
    // guest's memory cap: wasmtime's per-store handle limit ends the hoard.
    // Filling the table takes most of a second alone, so on a busy machine
    // the default 1 s deadline could end the call first: the deadline is
    // raised so that the limit, not the clock, is what this test sees.
    let (_d, mut agent) = with_neighbour("handles", "    limits: {timeout: 20s}\n");
    fire_twice(&mut agent);
    let s = impulse_stats(&agent, "bad");
    assert_failed_once_then_backed_off(&s);
    assert_eq!(s.failures.get("trap"), Some(&2), "{s:?}");
    let err = s.last_error.unwrap();
    assert!(err.contains("handle limit exceeded"), "{err}");
}

#[test]
fn a_guest_error_keeps_the_instance() {
    let (_d, mut agent) = with_neighbour("err", "");
    fire_twice(&mut agent);
    let s = impulse_stats(&agent, "bad");
    assert_eq!((s.fires, s.guest_errors), (2, 2));
    assert!(s.failures.is_empty());
    assert!(s.last_error.unwrap().contains("misbehave: asked to fail"));
}

#[test]
fn bad_modules_are_refused_by_name_and_the_others_load() {
    let dir = AgentDir::new("");
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\x00\x01\x00 this is not a component").unwrap();
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, b"hello").unwrap();
    dir.write_config(
        "- impulses:\n    filename: {guest:wrong-world}\n    uris: [x]\n\
         - impulses:\n    filename: corrupt.wasm\n    uris: [x]\n\
         - impulses:\n    filename: text.wasm\n    uris: [x]\n\
         - impulses:\n    filename: missing.wasm\n    uris: [x]\n\
         - impulses:\n    filename: {guest:probe}\n    uris: [x]\n",
    );
    let mut agent = dir.open();
    let errors: Vec<String> = agent.load_errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].contains("wrong_world.wasm") && errors[0].contains("does not implement"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("corrupt.wasm")
            && errors[1].contains("not a valid WebAssembly component"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("text.wasm") && errors[2].contains("magic"),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].contains("missing.wasm") && errors[3].contains("cannot read"),
        "{}",
        errors[3]
    );
    let r = agent.dispatcher.ingest(vec![dp("x", 1, 0.0)]).unwrap();
    assert_eq!(r.fires, 1, "the good impulse still runs");
}

#[test]
fn guests_get_no_filesystem_environment_or_network() {
    let dir = AgentDir::new(
        "- impulses:\n    name: fs\n    filename: {guest:misbehave}\n    uris: [x]\n    params: {mode: fs}\n\
         - impulses:\n    name: env\n    filename: {guest:misbehave}\n    uris: [x]\n    params: {mode: env}\n\
         - impulses:\n    name: net\n    filename: {guest:misbehave}\n    uris: [x]\n    params: {mode: net}\n",
    );
    let mut agent = dir.open();
    agent.dispatcher.ingest(vec![dp("x", 1, 0.0)]).unwrap();
    for mode in ["fs", "env", "net"] {
        let out = agent
            .dispatcher
            .store()
            .latest(&format!("misbehave.{mode}"), 1)
            .unwrap();
        let text = out[0].value.to_string();
        assert!(text.starts_with("denied"), "{mode}: {text}");
    }
}
