//! Packages in a running agent, with the real components built from
//! `examples/packages/`: the `linux` collector against this machine's real
//! `/proc`, grants (and their absence), the job-set refresh rule, several
//! schedules on one job, and every call of the metrics API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use komlogd::model::{Sample, Value};
use komlogd::packages::{PackagePhase, PackageStatus};
use komlogd::store::Store;
use komlogd_tests::{AgentDir, RunningAgent, dp, wait_until};

const S: i64 = 1_000_000;

/// Wait up to `limit` until `check` holds for package `name`'s status.
fn wait_package(
    agent: &RunningAgent,
    name: &str,
    limit: Duration,
    check: impl Fn(&PackageStatus) -> bool,
) -> PackageStatus {
    let deadline = Instant::now() + limit;
    loop {
        let status = agent.packages.get(name);
        if let Some(s) = &status
            && check(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "package {name}: condition not met within {limit:?}; last status: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runs(s: &PackageStatus, job: &str) -> u64 {
    s.jobs.get(job).map_or(0, |j| j.runs)
}

/// Stop the agent and open its store.
fn stopped_store(agent: RunningAgent, dir: &AgentDir) -> Store {
    agent.stop();
    Store::open(&komlogd::agent::store_path(dir.path())).expect("open the store")
}

fn latest(store: &Store, uri: &str) -> Sample {
    store
        .latest(uri, 1)
        .expect("read")
        .pop()
        .unwrap_or_else(|| panic!("no sample at {uri}"))
}

fn number(store: &Store, uri: &str) -> f64 {
    match latest(store, uri).value {
        Value::Datapoint(v) => v,
        other => panic!("{uri} holds {other:?}, not a datapoint"),
    }
}

fn text(store: &Store, uri: &str) -> String {
    match latest(store, uri).value {
        Value::Datasource(t) => t,
        other => panic!("{uri} holds {other:?}, not a datasource"),
    }
}

/// Every sample of `uri`, oldest first.
fn all(store: &Store, uri: &str) -> Vec<Sample> {
    store.range(uri, i64::MIN, i64::MAX, 10_000).expect("read")
}

fn probe_package_config(params: &str, grants: &str) -> String {
    format!(
        "- package:\n    install: {{guest:probe-package}}\n    params: {params}\n    grants: {grants}\n"
    )
}

/// The uri level kpack_linux's rule makes of a name (the test's own copy).
fn level(name: &str) -> String {
    name.chars()
        .enumerate()
        .filter_map(|(i, c)| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if i > 0 {
                Some('_')
            } else {
                None
            }
        })
        .collect()
}

fn meminfo() -> BTreeMap<String, f64> {
    std::fs::read_to_string("/proc/meminfo")
        .expect("read /proc/meminfo")
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_linux_package_reads_the_real_proc() {
    let dir = AgentDir::new(
        "- package:\n    install: {guest:linux}\n    params: {interval: 1}\n    grants: {dirs: [/proc]}\n",
    );
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "linux", Duration::from_secs(60), |s| {
        runs(s, "resources") >= 2
    });
    assert_eq!(status.phase, PackagePhase::Running);
    assert_eq!(status.jobs["resources"].failures, 0, "{status:?}");
    assert!(status.impulses.contains(&"linux/cpu_anomaly".to_string()));
    assert!(
        status
            .impulses
            .contains(&"linux/memory_anomaly".to_string())
    );
    agent.wait_for("linux/cpu_anomaly", Duration::from_secs(30), |s| {
        s.fires >= 2
    });
    agent.wait_for("linux/memory_anomaly", Duration::from_secs(30), |s| {
        s.fires >= 2
    });
    let store = stopped_store(agent, &dir);

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let root = format!("pkg.linux.{}.system.resources", level(host.trim()));
    let cpu_use = number(&store, &format!("{root}.cpu.use"));
    assert!((0.0..=100.0).contains(&cpu_use), "cpu use {cpu_use}");
    let shares: f64 = ["user", "nice", "system", "iowait", "steal", "idle"]
        .iter()
        .map(|k| number(&store, &format!("{root}.cpu.{k}")))
        .sum();
    assert!(
        (shares - 100.0).abs() < 0.5,
        "cpu shares add up to {shares}"
    );
    let cpus = std::fs::read_to_string("/proc/stat")
        .expect("read /proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    assert_eq!(number(&store, &format!("{root}.cpu.count")), cpus as f64);
    for k in ["1min", "5min", "15min"] {
        assert!(number(&store, &format!("{root}.cpu.ldavg.{k}")) >= 0.0);
    }
    assert!(number(&store, &format!("{root}.cpu.tasks.total")) >= 1.0);

    let mem = meminfo();
    assert_eq!(
        number(&store, &format!("{root}.memory.total_kb")),
        mem["MemTotal"]
    );
    assert_eq!(
        number(&store, &format!("{root}.swap.total_kb")),
        mem["SwapTotal"]
    );
    let used = number(&store, &format!("{root}.memory.memused"));
    assert!((0.0..=100.0).contains(&used), "memused {used}");
    assert!(number(&store, &format!("{root}.memory.majflt")) >= 0.0);

    // The anomaly flags judge the values written at the same timestamp.
    let flag = latest(&store, &format!("{root}.cpu._anomaly"));
    let at = |uri: String| match store.range(&uri, flag.ts, flag.ts, 1).expect("read").pop() {
        Some(Sample {
            value: Value::Datapoint(v),
            ..
        }) => v,
        other => panic!("{uri} at {}: {other:?}", flag.ts),
    };
    let expect_cpu = at(format!("{root}.cpu.use")) > 90.0
        || at(format!("{root}.cpu.ldavg.1min")) / at(format!("{root}.cpu.count")) > 1.0;
    assert_eq!(
        flag.value,
        Value::Datapoint(if expect_cpu { 1.0 } else { 0.0 })
    );
    let mflag = latest(&store, &format!("{root}.memory._anomaly"));
    let mat = |uri: String| match store
        .range(&uri, mflag.ts, mflag.ts, 1)
        .expect("read")
        .pop()
    {
        Some(Sample {
            value: Value::Datapoint(v),
            ..
        }) => v,
        other => panic!("{uri} at {}: {other:?}", mflag.ts),
    };
    let expect_mem = mat(format!("{root}.memory.memused")) > 85.0
        || mat(format!("{root}.memory.majflt")) > 100.0;
    assert_eq!(
        mflag.value,
        Value::Datapoint(if expect_mem { 1.0 } else { 0.0 })
    );

    // Every interface of /proc/net/dev has its rates.
    let net = std::fs::read_to_string("/proc/net/dev").expect("read /proc/net/dev");
    let ifaces: Vec<String> = net
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
        .collect();
    assert!(!ifaces.is_empty(), "no interface in /proc/net/dev");
    for iface in &ifaces {
        for k in ["rxkB", "txkB", "rxpck", "txpck"] {
            assert!(number(&store, &format!("{root}.network.{}.{k}", level(iface))) >= 0.0);
        }
    }
    // Every device's utilisation is a percentage.
    let uris = store.uris().expect("uris");
    for info in uris
        .iter()
        .filter(|u| u.uri.ends_with(".util") || u.uri.ends_with(".ifutil"))
    {
        let v = number(&store, &info.uri);
        assert!((0.0..=100.0).contains(&v), "{} = {v}", info.uri);
    }
    assert!(
        uris.iter().all(|u| u.uri.starts_with(&root)),
        "only the package's uris"
    );
}

#[test]
fn without_its_grant_the_linux_package_fails_clearly_and_the_agent_runs_on() {
    let dir = AgentDir::new(
        "- package:\n    install: {guest:linux}\n    params: {interval: 1}\n- impulses:\n    filename: {guest:probe}\n    uris: [x]\n",
    );
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "linux", Duration::from_secs(60), |s| {
        s.phase == PackagePhase::Failed
    });
    let error = status.last_error.expect("an error");
    assert!(error.contains("/proc"), "{error}");
    assert!(error.contains("grants: {dirs: [/proc]}"), "{error}");
    assert!(status.jobs.is_empty() && status.impulses.is_empty());
    // The agent still stores and fires.
    let receipt = agent.inbox.upload(vec![dp("x", 5, 1.0)]).expect("upload");
    assert_eq!(receipt.accepted, 1);
    let tapped = agent
        .tap
        .recv_timeout(Duration::from_secs(20))
        .expect("the probe impulse fired");
    assert_eq!(tapped.sample.uri, "probe.out");
    agent.stop();
}

#[test]
fn a_refresh_adds_removes_and_reschedules_jobs_and_keeps_the_timing_of_unchanged_ones() {
    let grant = tempfile::tempdir().expect("temp dir");
    let jobs = grant.path().join("jobs.txt");
    std::fs::write(
        &jobs,
        "keep every:1000 | change every:1000 | gone every:1000",
    )
    .expect("write");
    let dir = AgentDir::new(&probe_package_config(
        &format!("{{jobs_file: {}, refresh: 1000}}", jobs.display()),
        &format!("{{dirs: [{}]}}", grant.path().display()),
    ));
    let agent = RunningAgent::start(&dir);
    wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "keep") >= 2 && runs(s, "gone") >= 1
    });
    // Replace the file whole: a refresh must never read it half-written.
    let tmp = grant.path().join("jobs.tmp");
    std::fs::write(&tmp, "keep every:1000 | change every:2000 | new every:1000").expect("write");
    std::fs::rename(&tmp, &jobs).expect("rename");
    let status = wait_package(&agent, "probe_package", Duration::from_secs(30), |s| {
        runs(s, "new") >= 1
    });
    assert!(!status.jobs.contains_key("gone"), "{status:?}");
    let keep_before = runs(&status, "keep");
    wait_package(&agent, "probe_package", Duration::from_secs(30), |s| {
        runs(s, "keep") >= keep_before + 2 && runs(s, "change") > runs(&status, "change")
    });
    let store = stopped_store(agent, &dir);

    // Unchanged: one phase throughout, whole seconds apart (a run that came
    // late on a busy machine skips whole periods, never shifts the phase).
    let keep = all(&store, "probe.keep.runs");
    assert!(keep.len() >= 4, "{keep:?}");
    for pair in keep.windows(2) {
        let gap = pair[1].ts - pair[0].ts;
        assert!(gap > 0 && gap % S == 0, "keep kept its timing: {keep:?}");
    }
    // Counted by the host: 1, 2, 3, …
    for (i, s) in keep.iter().enumerate() {
        assert_eq!(s.value, Value::Datapoint((i + 1) as f64));
    }
    // Gone: nothing after the new job's first run.
    let new_first = all(&store, "probe.new.runs")[0].ts;
    let gone = all(&store, "probe.gone.runs");
    assert!(
        gone.iter().all(|s| s.ts < new_first),
        "gone ran after the refresh"
    );
    // Changed: rescheduled with its new interval.
    let fired = all(&store, "probe.change.fired");
    let after: Vec<_> = fired
        .iter()
        .filter(|s| s.value == Value::Datasource("every:2000000".into()))
        .collect();
    assert!(!after.is_empty(), "{fired:?}");
    assert!(after[0].ts >= new_first - S, "rescheduled at the refresh");
    for pair in after.windows(2) {
        let gap = pair[1].ts - pair[0].ts;
        assert!(gap > 0 && gap % (2 * S) == 0, "{after:?}");
    }
}

#[test]
fn a_load_that_fails_at_a_refresh_keeps_the_previous_jobs() {
    let grant = tempfile::tempdir().expect("temp dir");
    let jobs = grant.path().join("jobs.txt");
    std::fs::write(&jobs, "a every:1000").expect("write");
    let dir = AgentDir::new(&probe_package_config(
        &format!("{{jobs_file: {}, refresh: 1000}}", jobs.display()),
        &format!("{{dirs: [{}]}}", grant.path().display()),
    ));
    let agent = RunningAgent::start(&dir);
    wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "a") >= 1
    });
    // The next refresh's load fails on the malformed list.
    let tmp = grant.path().join("jobs.tmp");
    std::fs::write(&tmp, "a every:oops").expect("write");
    std::fs::rename(&tmp, &jobs).expect("rename");
    let failed = wait_package(&agent, "probe_package", Duration::from_secs(30), |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("bad interval oops"))
    });
    assert_eq!(failed.phase, PackagePhase::Running, "{failed:?}");
    assert_eq!(failed.jobs.keys().collect::<Vec<_>>(), ["a"], "{failed:?}");
    // Job `a` keeps running on its previous schedule.
    let before = runs(&failed, "a");
    let later = wait_package(&agent, "probe_package", Duration::from_secs(30), |s| {
        runs(s, "a") >= before + 2
    });
    assert_eq!(later.phase, PackagePhase::Running, "{later:?}");
    // A later refresh that loads applies its list.
    std::fs::write(&tmp, "b every:1000").expect("write");
    std::fs::rename(&tmp, &jobs).expect("rename");
    wait_package(&agent, "probe_package", Duration::from_secs(30), |s| {
        runs(s, "b") >= 1 && !s.jobs.contains_key("a")
    });
    agent.stop();
}

#[test]
fn a_grant_that_cannot_be_opened_stops_the_package_naming_the_directory() {
    let parent = tempfile::tempdir().expect("temp dir");
    let missing = parent.path().join("no-such-dir");
    let dir = AgentDir::new(&format!(
        "{}- impulses:\n    filename: {{guest:probe}}\n    uris: [x]\n",
        probe_package_config(
            "{jobs: \"a every:1000\"}",
            &format!("{{dirs: [{}]}}", missing.display()),
        )
    ));
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        s.phase == PackagePhase::Failed
    });
    let error = status.last_error.clone().expect("an error");
    assert!(
        error.contains("cannot open") && error.contains(&missing.display().to_string()),
        "{error}"
    );
    assert!(status.jobs.is_empty(), "{status:?}");
    // The agent goes on.
    let receipt = agent.inbox.upload(vec![dp("x", 5, 1.0)]).expect("upload");
    assert_eq!(receipt.accepted, 1);
    let tapped = agent
        .tap
        .recv_timeout(Duration::from_secs(20))
        .expect("the probe impulse fired");
    assert_eq!(tapped.sample.uri, "probe.out");
    agent.stop();
}

#[test]
fn packages_read_the_wall_clock_and_get_random_bytes() {
    let now_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    };
    let started = now_us();
    let dir = AgentDir::new(&probe_package_config(
        "{jobs: \"c every:1000 kind=clock\"}",
        "{}",
    ));
    let agent = RunningAgent::start(&dir);
    wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "c") >= 2
    });
    let store = stopped_store(agent, &dir);
    let ended = now_us();
    let samples = all(&store, "probe.clock");
    assert!(samples.len() >= 2, "{samples:?}");
    let mut randoms = Vec::new();
    for s in &samples {
        let text = s.value.to_string();
        let field = |name: &str| -> String {
            text.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_owned()
        };
        let wall: u128 = field("wall_us").parse().unwrap();
        assert!(
            started <= wall && wall <= ended,
            "{started} <= {wall} <= {ended}"
        );
        let random = field("random");
        assert_eq!(random.len(), 32, "{text}");
        randoms.push(random);
    }
    randoms.dedup();
    assert_eq!(
        randoms.len(),
        samples.len(),
        "every draw differs: {randoms:?}"
    );
}

#[test]
fn one_job_with_several_schedules_is_told_which_fired() {
    let dir = AgentDir::new(&probe_package_config(
        "{jobs: \"multi every:1000,every:2000\"}",
        "{}",
    ));
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "multi") >= 4
    });
    assert_eq!(status.jobs["multi"].failures, 0);
    let store = stopped_store(agent, &dir);
    let fired = all(&store, "probe.multi.fired");
    assert!(fired.len() >= 4, "{fired:?}");
    let first = fired[0].ts;
    for s in &fired {
        let expected = if (s.ts - first) % (2 * S) == 0 {
            "every:1000000,every:2000000"
        } else {
            "every:1000000"
        };
        assert_eq!(
            s.value,
            Value::Datasource(expected.into()),
            "at {}",
            s.ts - first
        );
        assert_eq!((s.ts - first) % S, 0, "one run per second");
    }
}

#[test]
fn a_job_blocked_in_a_host_wait_is_stopped_by_its_deadline_and_the_others_run() {
    // `nap` sleeps an hour in one host call, where no WebAssembly runs to see
    // the epoch: the host ends the wait at the call's deadline.
    let dir = AgentDir::new(&format!(
        "{}    venv: isolated\n    limits: {{timeout: 300ms}}\n",
        probe_package_config(
            "{jobs: \"nap every:1000 kind=sleep | tick every:1000\"}",
            "{}"
        )
    ));
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "nap") >= 2 && runs(s, "tick") >= 2
    });
    assert_eq!(
        status.jobs["nap"].failures, status.jobs["nap"].runs,
        "{status:?}"
    );
    assert_eq!(status.jobs["tick"].failures, 0, "{status:?}");
    let err = status.last_error.clone().unwrap_or_default();
    assert!(err.contains("deadline of 300ms exceeded"), "{err}");
    agent.stop();
}

#[test]
fn a_run_returning_more_samples_than_its_limit_has_none_written() {
    // A `count` run returns two samples; the limit is one.
    let dir = AgentDir::new(&format!(
        "{}    venv: isolated\n    limits: {{outputs: 1}}\n",
        probe_package_config("{jobs: \"c every:1000\"}", "{}")
    ));
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "c") >= 1
    });
    assert_eq!(
        status.jobs["c"].failures, status.jobs["c"].runs,
        "{status:?}"
    );
    assert_eq!(status.jobs["c"].samples, 0, "{status:?}");
    let err = status.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("job c returned 2 samples, more than its limit of 1 a run"),
        "{err}"
    );
    let store = stopped_store(agent, &dir);
    assert!(all(&store, "probe.c.runs").is_empty());
}

#[test]
fn every_metrics_call_writes_its_samples_and_tag_uris_and_counters_survive_traps() {
    // `boom` traps every second, so `m` often runs on a fresh instance: its
    // counter still counts on, kept by the host.
    let dir = AgentDir::new(&probe_package_config(
        "{jobs: \"boom every:1000 kind=trap | m every:1000 kind=metrics\"}",
        "{}",
    ));
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "m") >= 3 && runs(s, "boom") >= 2
    });
    assert!(status.jobs["boom"].failures >= 2);
    let store = stopped_store(agent, &dir);
    let runs_stored = all(&store, "probe.m.count").len();
    assert!(runs_stored >= 3);
    assert_eq!(number(&store, "probe.m.gauge"), 2.5);
    assert_eq!(number(&store, "probe.m.gauge._tags.host.a"), 2.5);
    // Each run: +1, +2, -1, -0.5; the last write of a run is its total.
    assert_eq!(number(&store, "probe.m.count"), 1.5 * runs_stored as f64);
    assert_eq!(number(&store, "probe.m.count._tags.k.v"), 0.0);
    assert_eq!(text(&store, "probe.m.event"), "hello");
    assert_eq!(number(&store, "probe.m.event._tags.sev.info"), 1.0);
    assert_eq!(number(&store, "probe.m.timing"), 12.5);
    assert_eq!(number(&store, "probe.m.timing._tags.op.read"), 12.5);
    let timed = number(&store, "probe.m.timed");
    assert!((0.0..1000.0).contains(&timed), "{timed}");
    assert_eq!(text(&store, "probe.m.custom"), "x");
    assert_eq!(number(&store, "probe.m.custom._tags.k.v"), 1.0);
    let uris: Vec<String> = store
        .uris()
        .expect("uris")
        .into_iter()
        .map(|u| u.uri)
        .collect();
    assert_eq!(
        uris,
        [
            "probe.m.count",
            "probe.m.count._tags.k.v",
            "probe.m.custom",
            "probe.m.custom._tags.k.v",
            "probe.m.event",
            "probe.m.event._tags.sev.info",
            "probe.m.gauge",
            "probe.m.gauge._tags.host.a",
            "probe.m.timed",
            "probe.m.timing",
            "probe.m.timing._tags.op.read",
        ],
        "exactly these uris; the invalid tag wrote nothing"
    );
}

#[test]
fn grants_are_read_only_and_pass_only_the_named_variables() {
    let grant = tempfile::tempdir().expect("temp dir");
    let target = grant.path().join("written");
    let dir = AgentDir::new(&probe_package_config(
        &format!(
            "{{jobs: \"w every:1000 kind=write path={} | e every:1000 kind=env vars=HOME,PATH\"}}",
            target.display()
        ),
        &format!("{{dirs: [{}], env: [HOME]}}", grant.path().display()),
    ));
    let agent = RunningAgent::start(&dir);
    wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        runs(s, "w") >= 1 && runs(s, "e") >= 1
    });
    let store = stopped_store(agent, &dir);
    let write = text(&store, "probe.write");
    assert!(write.starts_with("error:"), "{write}");
    assert!(
        !target.exists(),
        "the package wrote through a read-only grant"
    );
    assert_eq!(
        text(&store, "probe.env.HOME"),
        std::env::var("HOME").unwrap_or_else(|_| "<unset>".into())
    );
    assert_eq!(
        text(&store, "probe.env.PATH"),
        "<unset>",
        "PATH was not granted"
    );
}

#[test]
fn a_changed_package_file_is_reloaded_and_a_broken_one_refused() {
    let dir = AgentDir::new("");
    let wasm = dir.path().join("pkg.wasm");
    std::fs::copy(komlogd_tests::guest("probe-package"), &wasm).expect("copy");
    dir.write_config(&format!(
        "- package:\n    install: {}\n    params: {{jobs: \"a every:1000\", interval: 1}}\n    grants: {{dirs: [/proc]}}\n",
        wasm.display()
    ));
    let agent = RunningAgent::start(&dir);
    let first = wait_package(&agent, "pkg", Duration::from_secs(60), |s| {
        runs(s, "a") >= 1
    });
    // The linux package takes over the same block: its job and impulses replace the probe's.
    komlogd_tests::replace_file(&komlogd_tests::guest("linux"), &wasm);
    let second = wait_package(&agent, "pkg", Duration::from_secs(60), |s| {
        runs(s, "resources") >= 1 && s.version != first.version
    });
    assert!(!second.jobs.contains_key("a"), "{second:?}");
    assert!(
        second.impulses.contains(&"pkg/cpu_anomaly".to_string()),
        "{second:?}"
    );
    // A broken file is refused; the running version goes on.
    let tmp = dir.path().join("broken.wasm");
    std::fs::write(&tmp, b"not a component").expect("write");
    std::fs::rename(&tmp, &wasm).expect("rename");
    let before = runs(&second, "resources");
    let third = wait_package(&agent, "pkg", Duration::from_secs(30), |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused"))
            && runs(s, "resources") > before
    });
    assert_eq!(third.version, second.version);
    assert_eq!(third.phase, PackagePhase::Running);
    agent.stop();
}

#[test]
fn a_configuration_reload_adds_removes_and_restarts_packages_and_keeps_unchanged_ones() {
    let dir = AgentDir::new("");
    for name in ["keep", "edit", "added"] {
        std::fs::copy(
            komlogd_tests::guest("probe-package"),
            dir.path().join(format!("{name}.wasm")),
        )
        .expect("copy");
    }
    let block = |name: &str, jobs: &str| {
        format!("- package:\n    install: {name}.wasm\n    params: {{jobs: \"{jobs}\"}}\n")
    };
    dir.write_config(&format!(
        "{}{}",
        block("keep", "k every:1000"),
        block("edit", "a every:1000")
    ));
    let agent = RunningAgent::start(&dir);
    wait_package(&agent, "keep", Duration::from_secs(60), |s| {
        runs(s, "k") >= 2
    });
    let edit = wait_package(&agent, "edit", Duration::from_secs(60), |s| {
        runs(s, "a") >= 1
    });

    // `keep` moves in the file but is unchanged; `edit` gets new params;
    // `added` is new.
    dir.write_config(&format!(
        "{}{}{}",
        block("edit", "b every:1000"),
        block("added", "n every:1000"),
        block("keep", "k every:1000")
    ));
    let edited = wait_package(&agent, "edit", Duration::from_secs(60), |s| {
        runs(s, "b") >= 1
    });
    assert!(!edited.jobs.contains_key("a"), "{edited:?}");
    assert_eq!(edited.version, edit.version, "same file, restarted");
    assert_eq!(edited.loads, 1, "a fresh start: {edited:?}");
    wait_package(&agent, "added", Duration::from_secs(60), |s| {
        runs(s, "n") >= 1
    });
    let keep = agent.packages.get("keep").expect("keep");
    assert_eq!(keep.loads, 1, "keep was not restarted: {keep:?}");

    // An invalid file changes nothing, once it has been read and refused.
    let refused = agent.reload.configs_refused();
    std::fs::write(dir.config_path(), "- package:\n    install: [edit\n").expect("write");
    wait_until(
        "the invalid configuration refused",
        Duration::from_secs(30),
        || agent.reload.configs_refused() > refused,
    );
    let board = agent.packages.snapshot();
    assert_eq!(
        board.keys().map(String::as_str).collect::<Vec<_>>(),
        ["added", "edit", "keep"]
    );
    assert!(board["edit"].jobs.contains_key("b"), "{board:?}");

    // Removing a block stops the package; the others run on.
    dir.write_config(&block("keep", "k every:1000"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.packages.get("edit").is_some() || agent.packages.get("added").is_some() {
        assert!(
            Instant::now() < deadline,
            "removed packages still on the board"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Four more runs of keep (one a second): time for a removed package's
    // job to show up had it not stopped.
    let keep_runs = runs(&agent.packages.get("keep").expect("keep"), "k");
    wait_package(&agent, "keep", Duration::from_secs(30), |s| {
        runs(s, "k") >= keep_runs + 4
    });
    let store = stopped_store(agent, &dir);

    // `keep` ran throughout on one phase, its host-kept counter never reset.
    let keep = all(&store, "probe.k.runs");
    assert!(keep.len() >= 4, "{keep:?}");
    for pair in keep.windows(2) {
        let gap = pair[1].ts - pair[0].ts;
        assert!(gap > 0 && gap % S == 0, "keep kept its timing: {keep:?}");
    }
    for (i, s) in keep.iter().enumerate() {
        assert_eq!(s.value, Value::Datapoint((i + 1) as f64), "{keep:?}");
    }
    // The removed packages' jobs stopped: nothing after keep's last runs.
    let last_keep = keep.last().expect("keep ran").ts;
    for uri in ["probe.b.runs", "probe.n.runs"] {
        let samples = all(&store, uri);
        assert!(!samples.is_empty(), "{uri} ran before its removal");
        assert!(
            samples.iter().all(|s| s.ts < last_keep - S),
            "{uri} ran after its removal: {samples:?}"
        );
    }
}

#[test]
fn a_configuration_reload_refuses_package_limits_that_need_a_restart() {
    let dir = AgentDir::new("");
    for name in ["metered", "big"] {
        std::fs::copy(
            komlogd_tests::guest("probe-package"),
            dir.path().join(format!("{name}.wasm")),
        )
        .expect("copy");
    }
    let block = |name: &str, jobs: &str, limits: &str| {
        format!(
            "- package:\n    install: {name}.wasm\n    venv: isolated\n    params: {{jobs: \"{jobs}\"}}\n{limits}"
        )
    };
    // Started without fuel metering and with the default memory ceiling.
    dir.write_config(&block("metered", "a every:1000", ""));
    let agent = RunningAgent::start(&dir);
    let before = wait_package(&agent, "metered", Duration::from_secs(60), |s| {
        runs(s, "a") >= 1
    });

    // Fuel for the running package and a 4 GiB cap for a new one: both need
    // an engine this run was not started with.
    dir.write_config(&format!(
        "{}{}",
        block("metered", "b every:1000", "    limits: {fuel: 100000000}\n"),
        block("big", "n every:1000", "    limits: {memory: 4GiB}\n"),
    ));
    // The running package keeps its settings and runs on; the new one never starts.
    let runs_then = runs(&before, "a");
    let after = wait_package(&agent, "metered", Duration::from_secs(30), |s| {
        runs(s, "a") >= runs_then + 3
    });
    assert_eq!(after.loads, before.loads, "not restarted: {after:?}");
    assert!(
        !after.jobs.contains_key("b"),
        "old settings kept: {after:?}"
    );
    // The status board says why: the new package as failed, the running one
    // with the refusal as its last error.
    let big = agent
        .packages
        .get("big")
        .expect("the refused package is listed");
    assert_eq!(big.phase, PackagePhase::Failed, "{big:?}");
    assert!(
        big.jobs.is_empty() && big.version.is_none(),
        "never started: {big:?}"
    );
    let reason = big.last_error.unwrap_or_default();
    assert!(
        reason.starts_with("configuration change refused: ") && reason.contains("restart komlogd"),
        "{reason}"
    );
    let error = after.last_error.unwrap_or_default();
    assert!(
        error.starts_with("configuration change refused: ") && error.contains("fuel"),
        "{error}"
    );

    // Once the block is gone, so is its line.
    dir.write_config(&block("metered", "a every:1000", ""));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while agent.packages.get("big").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the refused package is still listed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        agent.packages.get("metered").map(|s| s.phase),
        Some(PackagePhase::Running)
    );
    agent.stop();
}

#[test]
fn a_refused_supplies_declaration_reaches_the_package_as_an_error() {
    let dir = AgentDir::new(&probe_package_config(
        "{jobs: 'a every:1000', supplies: 'probe.a.fired=probe.a.runs,bob:secret'}",
        "{}",
    ));
    let agent = RunningAgent::start(&dir);
    let status = wait_package(&agent, "probe_package", Duration::from_secs(60), |s| {
        s.phase == PackagePhase::Failed
    });
    let error = status.last_error.expect("an error");
    assert!(
        error.contains(
            "supplies of probe.a.fired: \"bob:secret\" names an owner; a datasource and what it supplies are the agent's own uris"
        ),
        "{error}"
    );
    assert!(status.jobs.is_empty());
    agent.stop();
}

#[test]
fn a_package_impulses_counters_belong_to_its_agent_and_start_at_0() {
    // Two agents in this process run the same package, so their impulses have
    // the same name (`probe_package/count`): each counts its own fires, from 0.
    let config = probe_package_config("{impulse_on: in}", "{}");
    let fires = |agent: &RunningAgent, ts: i64| -> f64 {
        agent.wait_for("probe_package/count", Duration::from_secs(60), |_| true);
        agent
            .inbox
            .samples(vec![dp("in", ts, 0.0)])
            .expect("agent running");
        loop {
            let out = agent
                .tap
                .recv_timeout(Duration::from_secs(30))
                .expect("the impulse answered");
            if &*out.impulse == "probe_package/count" && out.sample.uri == "in.fires" {
                match out.sample.value {
                    Value::Datapoint(v) => return v,
                    other => panic!("in.fires holds {other:?}"),
                }
            }
        }
    };
    let first_dir = AgentDir::new(&config);
    let first = RunningAgent::start(&first_dir);
    assert_eq!(
        [fires(&first, 1), fires(&first, 2), fires(&first, 3)],
        [1.0, 2.0, 3.0]
    );
    let second_dir = AgentDir::new(&config);
    let second = RunningAgent::start(&second_dir);
    assert_eq!(fires(&second, 1), 1.0, "a new agent's counters start at 0");
    assert_eq!(fires(&first, 4), 4.0, "the first agent's counters go on");
    assert_eq!(fires(&second, 2), 2.0);
    second.stop();
    first.stop();
}

/// Package `name` as `komlogd status` reports it.
fn report(agent: &RunningAgent, name: &str) -> komlogd::agent::status::PackageReport {
    komlogd::agent::status::package_reports(&agent.packages)
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("package {name} not in the status report"))
}

/// The value of `komlogd_package_runs_total` for `name` in /metrics.
fn runs_metric(agent: &RunningAgent, name: &str) -> u64 {
    let text = komlogd::agent::status::packages_prometheus_text(&agent.packages);
    let prefix = format!("komlogd_package_runs_total{{package=\"{name}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no runs_total for {name} in:\n{text}"))
        .parse()
        .expect("a count")
}

#[test]
fn package_counters_survive_refreshes_and_new_versions() {
    let grant = tempfile::tempdir().expect("temp dir");
    let jobs = grant.path().join("jobs.txt");
    std::fs::write(&jobs, "a every:1000").expect("write");
    let dir = AgentDir::new("");
    let wasm = dir.path().join("pkg.wasm");
    std::fs::copy(komlogd_tests::guest("probe-package"), &wasm).expect("copy");
    dir.write_config(&format!(
        "- package:\n    install: {}\n    params: {{jobs_file: {}, refresh: 1000, interval: 1}}\n    grants: {{dirs: [{}, /proc]}}\n",
        wasm.display(),
        jobs.display(),
        grant.path().display()
    ));
    let agent = RunningAgent::start(&dir);
    let first = wait_package(&agent, "pkg", Duration::from_secs(60), |s| {
        runs(s, "a") >= 3
    });
    let before = report(&agent, "pkg");
    assert!(
        before.runs >= 3 && before.last_run_ts.is_some(),
        "{before:?}"
    );

    // A refresh replaces job `a` by `b`, which runs once at once and then not
    // for an hour: `a`'s runs stay counted.
    let tmp = grant.path().join("jobs.tmp");
    std::fs::write(&tmp, "b every:3600000").expect("write");
    std::fs::rename(&tmp, &jobs).expect("rename");
    let refreshed = wait_package(&agent, "pkg", Duration::from_secs(30), |s| {
        !s.jobs.contains_key("a") && runs(s, "b") >= 1
    });
    assert_eq!(refreshed.version, first.version);
    let after_refresh = report(&agent, "pkg");
    assert!(
        after_refresh.runs > before.runs,
        "runs kept across the refresh: {before:?} then {after_refresh:?}"
    );
    assert!(
        after_refresh.last_run_ts >= before.last_run_ts,
        "{after_refresh:?}"
    );
    assert!(runs_metric(&agent, "pkg") >= after_refresh.runs);

    // A new version (the linux package) replaces the jobs again.
    komlogd_tests::replace_file(&komlogd_tests::guest("linux"), &wasm);
    let swapped = wait_package(&agent, "pkg", Duration::from_secs(60), |s| {
        runs(s, "resources") >= 1 && s.version != first.version
    });
    assert!(!swapped.jobs.contains_key("b"), "{swapped:?}");
    let after_swap = report(&agent, "pkg");
    assert!(
        after_swap.runs > after_refresh.runs,
        "runs kept across the new version: {after_refresh:?} then {after_swap:?}"
    );
    assert!(after_swap.last_run_ts >= after_refresh.last_run_ts);
    assert!(runs_metric(&agent, "pkg") >= after_swap.runs);
    agent.stop();

    // A new agent starts its counters at 0.
    let again = RunningAgent::start(&dir);
    let fresh = wait_package(&again, "pkg", Duration::from_secs(60), |s| {
        runs(s, "resources") >= 1
    });
    assert_eq!(
        fresh.runs,
        fresh.jobs.values().map(|j| j.runs).sum::<u64>(),
        "{fresh:?}"
    );
    assert!(fresh.runs < after_swap.runs, "{fresh:?}");
    again.stop();
}
