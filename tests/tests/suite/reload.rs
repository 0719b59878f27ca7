//! Hot reload on a running agent: module files replaced under a steady stream of
//! samples (every input answered exactly once, by one version, in order), a
//! broken module refused while the old one keeps serving, configuration reloads
//! (valid and invalid), and a module that failed to load picked up once fixed.
//! A `stateful-impulse` carries its state across a swap (also between Rust,
//! Python, JavaScript and C), or starts fresh when the state cannot be carried. (Memory across swaps is measured alone, in
//! `reload_memory.rs`.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use komlogd::impulses::Tapped;
use komlogd_tests::{
    AgentDir, RunningAgent, dp, guest, lang_guest, replace_file, wait_until, with_custom_section,
};

const WAIT: Duration = Duration::from_secs(20);
/// A swap to a version never seen compiles it first: a Python or JavaScript
/// guest takes 6–8 s alone and far longer while other tests compile theirs.
/// The tests assert that the swap happens, so they wait generously.
const COMPILE_WAIT: Duration = Duration::from_secs(180);

/// An agent whose impulse `tag` runs a module file of its own (a copy of tagged_a).
fn tagged_agent(extra: &str) -> (AgentDir, PathBuf) {
    let dir = AgentDir::new("");
    let module = dir.path().join("tag.wasm");
    std::fs::copy(guest("tagged_a"), &module).expect("copy tagged_a");
    dir.write_config(&format!(
        "- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in]\n{extra}"
    ));
    (dir, module)
}

fn module_hash(path: &std::path::Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read module");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Outputs of `impulse` received so far (waits until `n` arrived).
fn collect(agent: &RunningAgent, impulse: &str, n: usize) -> Vec<Tapped> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match agent.tap.recv_timeout(left) {
            Ok(t) if &*t.impulse == impulse => out.push(t),
            Ok(_) => {}
            Err(_) => panic!("only {} of {n} outputs of {impulse} arrived", out.len()),
        }
    }
    out
}

#[test]
fn swaps_under_a_steady_stream_lose_and_double_nothing() {
    let (dir, module) = tagged_agent("");
    let versions = [guest("tagged_a"), guest("tagged_b")];
    let hashes: Vec<String> = versions.iter().map(|p| module_hash(p)).collect();
    let tag_of: HashMap<&str, f64> = [(hashes[0].as_str(), 1.0), (hashes[1].as_str(), 2.0)].into();
    let agent = RunningAgent::start(&dir);

    const SWAPS: usize = 12;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = {
        let inbox = agent.inbox.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            // A steady stream: one sample every 500 µs until told to stop (bounded).
            let mut sent = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 200_000 {
                sent += 1;
                inbox
                    .samples(vec![dp("in", sent, sent as f64)])
                    .expect("agent running");
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        })
    };
    let mut broken_checked = false;
    for swap in 1..=SWAPS {
        let next = swap % 2;
        replace_file(&versions[next], &module);
        let s = agent.wait_for("tag", WAIT, |s| s.version == hashes[next]);
        assert_eq!(s.swaps as usize, swap, "one swap per replacement");
        if swap == SWAPS / 2 {
            // A broken module is refused; the version in place keeps serving.
            std::fs::write(&module, b"\0asm this is not a component").unwrap();
            let s = agent.wait_for("tag", WAIT, |s| s.rejected_versions == 1);
            assert_eq!(s.version, hashes[next], "the old version still serves");
            let before = s.fires;
            agent.wait_for("tag", WAIT, |s| s.fires > before + 20);
            broken_checked = true;
            // Put the same version back: unchanged bytes are not a new
            // version. Once the reloader has found them unchanged, nothing
            // was swapped.
            let unchanged = agent.reload.modules_unchanged();
            replace_file(&versions[next], &module);
            wait_until("the same bytes found unchanged", WAIT, || {
                agent.reload.modules_unchanged() > unchanged
            });
            let s = agent.stats("tag");
            assert_eq!((s.swaps as usize, s.rejected_versions), (swap, 1));
        }
    }
    assert!(broken_checked);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = driver.join().expect("driver") as usize;
    let outputs = collect(&agent, "tag", sent);
    let summary = agent.stop();
    assert_eq!(summary.stored as usize, sent);

    // Exactly one output per input, in input order, each from one known version
    // whose tag it carries.
    let mut seen_tags = [0usize; 2];
    for (i, t) in outputs.iter().enumerate() {
        assert_eq!(
            t.sample.ts,
            i as i64 + 1,
            "output {i} answers input {}",
            i + 1
        );
        let tag = tag_of
            .get(&*t.version)
            .unwrap_or_else(|| panic!("unknown version {}", t.version));
        assert_eq!(t.sample.value, komlogd::model::Value::Datapoint(*tag));
        seen_tags[(*tag as usize) - 1] += 1;
    }
    assert!(seen_tags[0] > 0 && seen_tags[1] > 0, "{seen_tags:?}");
    // Versions alternate in runs: a -> b -> a ... exactly SWAPS changes.
    let changes = outputs
        .windows(2)
        .filter(|w| w[0].version != w[1].version)
        .count();
    assert!(
        changes <= SWAPS,
        "{changes} version changes for {SWAPS} swaps"
    );
}

#[test]
fn configuration_reloads_add_change_remove_and_refuse_bad_files() {
    let (dir, _module) = tagged_agent("    params: {out: first}\n");
    let agent = RunningAgent::start(&dir);
    agent.inbox.samples(vec![dp("in", 1, 0.0)]).unwrap();
    let first = collect(&agent, "tag", 1);
    assert_eq!(first[0].sample.uri, "first");

    // Params change in place: same impulse, same counters, new params.
    dir.write_config(
        "- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in]\n    params: {out: second}\n\
         - impulses:\n    name: extra\n    filename: {guest:tagged_b}\n    uris: [other]\n",
    );
    agent.wait_for("extra", WAIT, |_| true);
    agent.wait_for("tag", WAIT, |s| s.swaps == 1);
    agent.inbox.samples(vec![dp("in", 2, 0.0)]).unwrap();
    let second = collect(&agent, "tag", 1);
    assert_eq!(second[0].sample.uri, "second");
    assert_eq!(agent.stats("tag").fires, 2, "counters survive the change");
    agent.inbox.samples(vec![dp("other", 3, 0.0)]).unwrap();
    let extra = collect(&agent, "extra", 1);
    assert_eq!(extra[0].sample.value, komlogd::model::Value::Datapoint(2.0));

    // An invalid file changes nothing, once it has been read and refused.
    let refused = agent.reload.configs_refused();
    std::fs::write(
        dir.config_path(),
        "- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in\n",
    )
    .unwrap();
    wait_until("the invalid configuration refused", WAIT, || {
        agent.reload.configs_refused() > refused
    });
    agent.inbox.samples(vec![dp("in", 4, 0.0)]).unwrap();
    let fourth = collect(&agent, "tag", 1);
    assert_eq!(fourth[0].sample.uri, "second");
    assert!(agent.board.snapshot().iter().any(|(n, _)| &**n == "extra"));

    // So does a file with an unknown key: a misspelled block would drop `extra`
    // and a misspelled key would reset tag's params.
    let refused = agent.reload.configs_refused();
    dir.write_config(
        "- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in]\n    param: {out: third}\n\
         - impulse:\n    name: extra\n    filename: {guest:tagged_b}\n    uris: [other]\n",
    );
    wait_until("the configuration with unknown keys refused", WAIT, || {
        agent.reload.configs_refused() > refused
    });
    agent.inbox.samples(vec![dp("in", 5, 0.0)]).unwrap();
    let again = collect(&agent, "tag", 1);
    assert_eq!(again[0].sample.uri, "second");
    assert!(agent.board.snapshot().iter().any(|(n, _)| &**n == "extra"));

    // Removing a block stops its impulse.
    dir.write_config("- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in]\n");
    let deadline = Instant::now() + WAIT;
    while agent.board.snapshot().iter().any(|(n, _)| &**n == "extra") {
        assert!(Instant::now() < deadline, "extra still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and the same reload gives tag its default params back: a second
    // swap, which may land after extra is gone.
    agent.wait_for("tag", WAIT, |s| s.swaps == 2);
    agent.inbox.samples(vec![dp("other", 6, 0.0)]).unwrap();
    agent.inbox.samples(vec![dp("in", 6, 0.0)]).unwrap();
    let sixth = collect(&agent, "tag", 1);
    assert_eq!(sixth[0].sample.uri, "tagged", "params back to the default");
    let summary = agent.stop();
    assert_eq!(summary.fires, 6, "extra did not fire after its removal");
}

#[test]
fn a_module_that_failed_to_load_is_loaded_once_fixed() {
    let dir = AgentDir::new("");
    let module = dir.path().join("late.wasm");
    std::fs::write(&module, b"not yet").unwrap();
    dir.write_config(
        "- impulses:\n    name: late\n    filename: late.wasm\n    uris: [in]\n\
         - impulses:\n    name: tag\n    filename: {guest:tagged_a}\n    uris: [in]\n",
    );
    let agent = RunningAgent::start_allowing_load_errors(&dir);
    replace_file(&guest("tagged_b"), &module);
    agent.wait_for("late", WAIT, |_| true);
    agent.inbox.samples(vec![dp("in", 1, 0.0)]).unwrap();
    let out = collect(&agent, "late", 1);
    assert_eq!(out[0].sample.value, komlogd::model::Value::Datapoint(2.0));
}

/// An agent whose impulse `count` runs a module file of its own (a copy of counter).
fn counter_agent(extra: &str) -> (AgentDir, PathBuf) {
    counter_agent_from(&guest("counter"), extra)
}

/// An agent running `counter` (the component at `counter`) as `count`.
fn counter_agent_from(counter: &std::path::Path, extra: &str) -> (AgentDir, PathBuf) {
    let dir = AgentDir::new("");
    let module = dir.path().join("count.wasm");
    std::fs::copy(counter, &module).expect("copy counter");
    dir.write_config(&format!(
        "- impulses:\n    name: count\n    filename: count.wasm\n    uris: [in]\n{extra}"
    ));
    (dir, module)
}

/// Install `bytes` as `module` the way an editor does and wait for the swap
/// numbered `swaps`.
fn swap_in(
    agent: &RunningAgent,
    dir: &AgentDir,
    module: &std::path::Path,
    bytes: &[u8],
    swaps: u64,
) {
    let staged = dir.path().join("next.wasm.staged");
    std::fs::write(&staged, bytes).expect("write the new version");
    replace_file(&staged, module);
    agent.wait_for("count", COMPILE_WAIT, |s| s.swaps == swaps);
}

/// Send samples at `ts` and return the values of the `n` outputs they give.
fn fire(agent: &RunningAgent, ts: std::ops::RangeInclusive<i64>) -> Vec<(i64, f64)> {
    let n = ts.clone().count();
    for t in ts {
        agent
            .inbox
            .samples(vec![dp("in", t, 0.0)])
            .expect("agent running");
    }
    collect(agent, "count", n)
        .into_iter()
        .map(|t| match t.sample.value {
            komlogd::model::Value::Datapoint(v) => (t.sample.ts, v),
            other => panic!("unexpected output {other:?}"),
        })
        .collect()
}

#[test]
fn a_stateful_impulse_carries_its_state_across_a_swap() {
    let (dir, module) = counter_agent("");
    let agent = RunningAgent::start(&dir);
    let expected = |from: i64| (from..from + 5).map(|t| (t, t as f64)).collect::<Vec<_>>();
    assert_eq!(fire(&agent, 1..=5), expected(1));

    let original = std::fs::read(&module).expect("read counter");
    let next = with_custom_section(&original, "komlogd-test", b"version 2");
    swap_in(&agent, &dir, &module, &next, 1);
    assert_eq!(fire(&agent, 6..=10), expected(6), "the count carries on");
    let s = agent.stats("count");
    assert_eq!((s.state_carried, s.state_dropped), (1, 0));
    assert_eq!(s.fires, 10);

    // And again, back to the first bytes.
    swap_in(&agent, &dir, &module, &original, 2);
    assert_eq!(fire(&agent, 11..=15), expected(11));
    let s = agent.stats("count");
    assert_eq!((s.state_carried, s.state_dropped), (2, 0));
}

#[test]
fn counters_in_python_javascript_c_and_rust_hand_their_count_to_each_other() {
    // The four counters write their state in the same format (8 bytes, LE).
    let python = lang_guest("python", "counter");
    let (dir, module) = counter_agent_from(&python, "");
    let agent = RunningAgent::start(&dir);
    let expected = |from: i64, n: i64| (from..from + n).map(|t| (t, t as f64)).collect::<Vec<_>>();
    assert_eq!(fire(&agent, 1..=3), expected(1, 3));

    let read = |path: &std::path::Path| std::fs::read(path).expect("read a counter");
    let python_v2 = with_custom_section(&read(&python), "komlogd-test", b"version 2");
    let steps: [(&str, Vec<u8>); 5] = [
        ("a new Python version", python_v2),
        ("JavaScript", read(&lang_guest("js", "counter"))),
        ("C", read(&lang_guest("c", "counter"))),
        ("Rust", read(&guest("counter"))),
        ("Python again", read(&python)),
    ];
    let mut ts = 4;
    for (swaps, (what, bytes)) in (1..).zip(steps) {
        swap_in(&agent, &dir, &module, &bytes, swaps);
        assert_eq!(
            fire(&agent, ts..=ts + 1),
            expected(ts, 2),
            "{what} counts on"
        );
        ts += 2;
    }
    let s = agent.stats("count");
    assert_eq!((s.state_carried, s.state_dropped), (5, 0), "{s:?}");
    assert_eq!(s.fires, 13);
}

#[test]
fn python_javascript_and_c_counters_refuse_a_state_they_cannot_read() {
    // With `snapshot: refused` the Rust counter hands over 3 bytes.
    let (dir, module) = counter_agent("    params: {snapshot: refused}\n");
    let agent = RunningAgent::start(&dir);
    let counts = |v: Vec<(i64, f64)>| v.into_iter().map(|(_, c)| c).collect::<Vec<_>>();
    assert_eq!(counts(fire(&agent, 1..=2)), [1.0, 2.0]);
    let read = |path: &std::path::Path| std::fs::read(path).expect("read a counter");
    // (language, its counter, the counts it gives, (state_carried, state_dropped)).
    type Step<'a> = (&'a str, Vec<u8>, [f64; 2], (u64, u64));
    let steps: [Step; 5] = [
        (
            "JavaScript",
            read(&lang_guest("js", "counter")),
            [1.0, 2.0],
            (0, 1),
        ),
        // The JavaScript counter's own snapshot is good.
        ("Rust", read(&guest("counter")), [3.0, 4.0], (1, 1)),
        (
            "Python",
            read(&lang_guest("python", "counter")),
            [1.0, 2.0],
            (1, 2),
        ),
        ("Rust", read(&guest("counter")), [3.0, 4.0], (2, 2)),
        ("C", read(&lang_guest("c", "counter")), [1.0, 2.0], (2, 3)),
    ];
    let mut ts = 3;
    for (swaps, (what, bytes, want, (carried, dropped))) in (1..).zip(steps) {
        swap_in(&agent, &dir, &module, &bytes, swaps);
        assert_eq!(counts(fire(&agent, ts..=ts + 1)), want, "{what}");
        ts += 2;
        let s = agent.stats("count");
        assert_eq!(
            (s.state_carried, s.state_dropped),
            (carried, dropped),
            "{what}: {s:?}"
        );
        if what != "Rust" {
            let last = s.last_error.unwrap_or_default();
            assert!(
                last.contains("restore returned an error: expected 8 bytes of state, got 3"),
                "{what}: {last}"
            );
        }
    }
}

#[test]
fn state_that_cannot_be_carried_starts_fresh_and_loses_no_event() {
    // Every fire asks for a snapshot that the next version's restore refuses.
    let (dir, module) = counter_agent("    params: {snapshot: refused}\n");
    let agent = RunningAgent::start(&dir);
    let counts = |v: Vec<(i64, f64)>| v.into_iter().map(|(_, c)| c).collect::<Vec<_>>();
    assert_eq!(counts(fire(&agent, 1..=3)), [1.0, 2.0, 3.0]);

    let original = std::fs::read(&module).expect("read counter");
    let next = with_custom_section(&original, "komlogd-test", b"version 2");
    swap_in(&agent, &dir, &module, &next, 1);
    assert_eq!(
        counts(fire(&agent, 4..=6)),
        [1.0, 2.0, 3.0],
        "a fresh instance, and every event answered"
    );
    let s = agent.stats("count");
    assert_eq!((s.state_carried, s.state_dropped), (0, 1));
    assert_eq!(s.fires, 6);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let last = s.last_error.unwrap_or_default();
    assert!(
        last.contains("state not carried over") && last.contains("restore returned an error"),
        "{last}"
    );

    // A version that is not stateful: swapped as ever, nothing carried or dropped.
    swap_in(
        &agent,
        &dir,
        &module,
        &std::fs::read(guest("tagged_a")).expect("read tagged_a"),
        2,
    );
    assert_eq!(
        fire(&agent, 7..=9),
        [(7, 1.0), (8, 1.0), (9, 1.0)],
        "tagged_a serves every event"
    );
    let s = agent.stats("count");
    assert_eq!((s.state_carried, s.state_dropped, s.fires), (0, 1, 9));
    let summary = agent.stop();
    assert_eq!(summary.stored, 9);
}

/// Swap a counter whose snapshot goes wrong in `mode` (see examples/counter):
/// the next version must start fresh, answer every event, and show `reason`
/// in the impulse's last error. Returns how long the swap took.
fn swap_with_a_failing_snapshot(mode: &str, limits: &str, reason: &str) -> Duration {
    let (dir, module) = counter_agent(&format!("    params: {{snapshot: {mode}}}\n{limits}"));
    let agent = RunningAgent::start(&dir);
    let counts = |v: Vec<(i64, f64)>| v.into_iter().map(|(_, c)| c).collect::<Vec<_>>();
    assert_eq!(counts(fire(&agent, 1..=3)), [1.0, 2.0, 3.0], "{mode}");

    let original = std::fs::read(&module).expect("read counter");
    let next = with_custom_section(&original, "komlogd-test", b"version 2");
    let began = Instant::now();
    swap_in(&agent, &dir, &module, &next, 1);
    let took = began.elapsed();
    assert_eq!(
        counts(fire(&agent, 4..=6)),
        [1.0, 2.0, 3.0],
        "{mode}: a fresh instance, and every event answered"
    );
    let s = agent.stats("count");
    assert_eq!(
        (s.state_carried, s.state_dropped, s.fires),
        (0, 1, 6),
        "{mode}"
    );
    assert!(s.failures.is_empty(), "{mode}: {:?}", s.failures);
    let last = s.last_error.unwrap_or_default();
    assert!(
        last.contains("state not carried over") && last.contains(reason),
        "{mode}: the last error should say {reason:?}: {last}"
    );
    assert_eq!(agent.stop().stored, 6, "{mode}");
    took
}

#[test]
fn a_snapshot_that_traps_runs_on_or_is_too_big_costs_the_state_not_an_event() {
    swap_with_a_failing_snapshot("trap", "", "snapshot failed: trap");
    // Building a snapshot over 16 MiB takes a good part of the default 1 s
    // deadline alone; the deadline is raised so that the size cap, not a
    // busy machine's clock, is what this case sees.
    swap_with_a_failing_snapshot(
        "huge",
        "    limits: {timeout: 20s}\n",
        "over the 16777216-byte cap",
    );
    // The call deadline stops a snapshot that never returns: the swap waits
    // for it (200 ms), not for ever (the swap happened: swap_in waited for it).
    let took = swap_with_a_failing_snapshot(
        "loop",
        "    limits: {timeout: 200ms}\n",
        "snapshot failed: deadline",
    );
    assert!(
        took >= Duration::from_millis(200),
        "the swap took {took:?}, less than the snapshot's deadline"
    );
}

#[test]
fn a_module_folder_missing_at_start_is_watched_once_it_appears_and_reload_goes_on() {
    let dir = AgentDir::new("");
    dir.write_config(
        "- impulses:\n    name: tag\n    filename: {guest:tagged_a}\n    uris: [in]\n\
         - impulses:\n    name: late\n    filename: late/x.wasm\n    uris: [late.in]\n\
         - impulses:\n    name: deep\n    filename: deep/er/y.wasm\n    uris: [deep.in]\n",
    );
    let agent = RunningAgent::start_allowing_load_errors(&dir);
    let failed: Vec<String> = agent.board.failed().into_iter().map(|f| f.name).collect();
    assert_eq!(failed, ["late", "deep"]);

    // komlogd.yaml is still watched: an edit is applied.
    let applied = agent.reload.configs_applied();
    dir.write_config(
        "- impulses:\n    name: tag\n    filename: {guest:tagged_a}\n    uris: [in]\n    params: {out: edited}\n\
         - impulses:\n    name: late\n    filename: late/x.wasm\n    uris: [late.in]\n\
         - impulses:\n    name: deep\n    filename: deep/er/y.wasm\n    uris: [deep.in]\n",
    );
    wait_until("the edited configuration applied", WAIT, || {
        agent.reload.configs_applied() > applied
    });
    agent.inbox.samples(vec![dp("in", 1, 0.0)]).unwrap();
    assert_eq!(collect(&agent, "tag", 1)[0].sample.uri, "edited");

    // The folder appears with the module in it: the module loads.
    std::fs::create_dir(dir.path().join("late")).unwrap();
    std::fs::copy(guest("tagged_b"), dir.path().join("late/x.wasm")).unwrap();
    agent.wait_for("late", WAIT, |_| true);
    agent.inbox.samples(vec![dp("late.in", 2, 0.0)]).unwrap();
    let out = collect(&agent, "late", 1);
    assert_eq!(out[0].sample.value, komlogd::model::Value::Datapoint(2.0));

    // Two levels missing: each one is watched as it appears.
    std::fs::create_dir(dir.path().join("deep")).unwrap();
    let deep = dir.path().join("deep/er");
    std::fs::create_dir(&deep).unwrap();
    replace_file(&guest("tagged_a"), &deep.join("y.wasm"));
    agent.wait_for("deep", WAIT, |_| true);
    agent.inbox.samples(vec![dp("deep.in", 3, 0.0)]).unwrap();
    let out = collect(&agent, "deep", 1);
    assert_eq!(out[0].sample.value, komlogd::model::Value::Datapoint(1.0));
    assert!(agent.board.failed().is_empty());

    // The folder removed and made again: watched again, its new module swapped in.
    std::fs::remove_dir_all(dir.path().join("late")).unwrap();
    std::fs::create_dir(dir.path().join("late")).unwrap();
    std::fs::copy(guest("tagged_a"), dir.path().join("late/x.wasm")).unwrap();
    agent.wait_for("late", WAIT, |s| s.swaps == 1);
    agent.inbox.samples(vec![dp("late.in", 4, 0.0)]).unwrap();
    let out = collect(&agent, "late", 1);
    assert_eq!(out[0].sample.value, komlogd::model::Value::Datapoint(1.0));
    // Later changes in the new folder are seen too.
    replace_file(&guest("tagged_b"), &dir.path().join("late/x.wasm"));
    agent.wait_for("late", WAIT, |s| s.swaps == 2);

    // And the configuration is still watched afterwards.
    let applied = agent.reload.configs_applied();
    dir.write_config(
        "- impulses:\n    name: tag\n    filename: {guest:tagged_a}\n    uris: [in]\n",
    );
    wait_until("the last configuration applied", WAIT, || {
        agent.reload.configs_applied() > applied
    });
    wait_until("late and deep removed", WAIT, || {
        agent
            .board
            .snapshot()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>()
            == ["tag"]
    });
}
