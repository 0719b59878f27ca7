//! The example impulses (`examples/{summary,threshold,df}`) behave exactly as their
//! documentation says, run as the real WebAssembly components on real data:
//!
//! * `summary`: the one-hour statistics text (count, mean, sample std, min, max)
//!   with a stale sample left out, and only the updated uri gets statistics;
//! * `threshold`: above / below flags, and a missing or non-numeric `threshold`
//!   param is a counted guest error that writes nothing;
//! * `df`: the test machine's own `df -k` output checked line by line against a
//!   parse done here, and a recorded GNU `df -k` text with awkward mount points;
//! * the demo's chain `df` → `threshold` on `host.disk.root.used_pct`.

use std::collections::BTreeMap;
use std::process::Command;

use komlogd::agent::Agent;
use komlogd::model::{Kind, Value};
use komlogd_tests::{AgentDir, dp, ds};

const S: i64 = 1_000_000; // one second in µs
const MINUTE: i64 = 60 * S;
const HOUR: i64 = 60 * MINUTE;
/// An arbitrary firing time: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000 * S;

/// The value stored at exactly `uri` @ `ts`, if any.
fn value_at(agent: &Agent, uri: &str, ts: i64) -> Option<Value> {
    agent
        .dispatcher
        .store()
        .range(uri, ts, ts, 1)
        .expect("store read")
        .into_iter()
        .next()
        .map(|s| s.value)
}

fn text_at(agent: &Agent, uri: &str, ts: i64) -> String {
    match value_at(agent, uri, ts) {
        Some(Value::Datasource(t)) => t,
        other => panic!("expected a text at {uri} @ {ts}, found {other:?}"),
    }
}

fn number_at(agent: &Agent, uri: &str, ts: i64) -> f64 {
    match value_at(agent, uri, ts) {
        Some(Value::Datapoint(v)) => v,
        other => panic!("expected a number at {uri} @ {ts}, found {other:?}"),
    }
}

/// Every stored uri, sorted.
fn stored_uris(agent: &Agent) -> Vec<String> {
    let mut uris: Vec<String> = agent
        .dispatcher
        .store()
        .uris()
        .expect("store read")
        .into_iter()
        .map(|u| u.uri)
        .collect();
    uris.sort();
    uris
}

// ------------------------------------------------------------------ summary

/// The statistics text as `summary` documents it, computed here.
fn expected_stats(values: &[f64]) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "count: {}\nmean: {mean}\nstd: {std}\nmin: {min}\nmax: {max}",
        values.len()
    )
}

#[test]
fn summary_writes_the_last_hour_statistics_of_cpu_system() {
    let dir = AgentDir::new("- impulses:\n    filename: {guest:summary}\n");
    let mut agent = dir.open();
    let spec = agent.dispatcher.specs().next().expect("summary loaded");
    let subscribed: Vec<String> = spec.uris.iter().map(ToString::to_string).collect();
    assert_eq!(subscribed, ["cpu.system", "cpu.user"]);

    // Two hours before the first reading: inside no window that matters.
    let stale_ts = T0 - 2 * HOUR;
    agent
        .dispatcher
        .ingest(vec![dp("cpu.system", stale_ts, 1000.0)])
        .unwrap();
    assert_eq!(
        text_at(&agent, "cpu.system.last_60min_stats", stale_ts),
        "count: 1\nmean: 1000\nstd: 0\nmin: 1000\nmax: 1000"
    );

    let values = [12.5, 40.0, 33.3, 8.0, 75.25, 20.0];
    for (i, v) in values.iter().enumerate() {
        let ts = T0 + i as i64 * MINUTE;
        let report = agent
            .dispatcher
            .ingest(vec![dp("cpu.system", ts, *v)])
            .unwrap();
        assert_eq!((report.fires, report.outputs), (1, 1), "at reading {i}");
        assert_eq!(
            text_at(&agent, "cpu.system.last_60min_stats", ts),
            expected_stats(&values[..=i]),
            "after reading {i}"
        );
    }
    let last = T0 + 5 * MINUTE;
    let text = text_at(&agent, "cpu.system.last_60min_stats", last);
    assert_eq!(text, expected_stats(&values));
    // The same, spelled out: the stale 1000 would change count, mean and max.
    assert!(
        text.starts_with("count: 6\nmean: 31.508333333333"),
        "{text}"
    );
    assert!(text.ends_with("\nmin: 8\nmax: 75.25"), "{text}");
    assert!(!text.ends_with('\n'));
    assert!(value_at(&agent, "cpu.user.last_60min_stats", last).is_none());
    assert_eq!(
        agent
            .dispatcher
            .store()
            .kind_of("cpu.system.last_60min_stats"),
        Some(Kind::Datasource)
    );
    let stats = &agent.dispatcher.stats()[0].1;
    assert_eq!((stats.fires, stats.outputs, stats.guest_errors), (7, 7, 0));
}

#[test]
fn summary_of_cpu_user_alone_writes_only_its_statistics() {
    let dir = AgentDir::new("- impulses:\n    filename: {guest:summary}\n");
    let mut agent = dir.open();
    agent
        .dispatcher
        .ingest(vec![dp("cpu.system", T0 - MINUTE, 10.0)])
        .unwrap();
    let report = agent
        .dispatcher
        .ingest(vec![dp("cpu.user", T0, 3.5), dp("cpu.user", T0 + S, 4.5)])
        .unwrap();
    // Two timestamps: two fires, each with cpu.user alone in `updated`.
    assert_eq!((report.fires, report.outputs), (2, 2));
    assert_eq!(
        text_at(&agent, "cpu.user.last_60min_stats", T0 + S),
        expected_stats(&[3.5, 4.5])
    );
    assert_eq!(
        text_at(&agent, "cpu.user.last_60min_stats", T0 + S),
        format!(
            "count: 2\nmean: 4\nstd: {}\nmin: 3.5\nmax: 4.5",
            0.5f64.sqrt()
        )
    );
    for ts in [T0, T0 + S] {
        assert!(
            value_at(&agent, "cpu.system.last_60min_stats", ts).is_none(),
            "cpu.system was not updated at {ts}"
        );
    }
    assert_eq!(
        stored_uris(&agent),
        [
            "cpu.system",
            "cpu.system.last_60min_stats",
            "cpu.user",
            "cpu.user.last_60min_stats"
        ]
    );
    let latest_system_stats = agent
        .dispatcher
        .store()
        .latest("cpu.system.last_60min_stats", 10)
        .unwrap();
    assert_eq!(latest_system_stats.len(), 1);
    assert_eq!(latest_system_stats[0].ts, T0 - MINUTE);
}

// ---------------------------------------------------------------- threshold

fn threshold_agent(params: &str) -> (AgentDir, Agent) {
    let dir = AgentDir::new(&format!(
        "- impulses:\n    name: th\n    filename: {{guest:threshold}}\n    uris: [x]\n{params}"
    ));
    let agent = dir.open();
    (dir, agent)
}

/// The `x._anomaly` flag written for each (ts, value) of `x`.
fn flags_for(agent: &mut Agent, values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ts = T0 + i as i64 * S;
            agent.dispatcher.ingest(vec![dp("x", ts, *v)]).unwrap();
            number_at(agent, "x._anomaly", ts)
        })
        .collect()
}

#[test]
fn threshold_flags_values_above() {
    let (_d, mut agent) = threshold_agent("    params:\n      threshold: 80\n");
    assert_eq!(
        flags_for(&mut agent, &[85.0, 50.0, 80.0, 80.5]),
        [1.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(stored_uris(&agent), ["x", "x._anomaly"]);
    let stats = &agent.dispatcher.stats()[0].1;
    assert_eq!((stats.fires, stats.outputs, stats.guest_errors), (4, 4, 0));
}

#[test]
fn threshold_direction_below_inverts() {
    let (_d, mut agent) =
        threshold_agent("    params:\n      threshold: 80\n      direction: below\n");
    assert_eq!(
        flags_for(&mut agent, &[85.0, 50.0, 80.0, 79.5]),
        [0.0, 1.0, 0.0, 1.0]
    );
}

#[test]
fn threshold_param_errors_are_counted_and_write_nothing() {
    for (params, message) in [
        ("", "param `threshold` is required (a number)"),
        (
            "    params:\n      direction: above\n",
            "param `threshold` is required (a number)",
        ),
        (
            "    params:\n      threshold: high\n",
            "param `threshold` is not a number: `high`",
        ),
        (
            "    params:\n      threshold: 80\n      direction: sideways\n",
            "param `direction` must be `above` or `below`, got `sideways`",
        ),
    ] {
        let (_d, mut agent) = threshold_agent(params);
        let report = agent
            .dispatcher
            .ingest(vec![dp("x", T0, 85.0), dp("x", T0 + S, 50.0)])
            .unwrap();
        assert_eq!(report.accepted, 2);
        assert_eq!((report.fires, report.outputs), (2, 0), "{params}");
        let stats = &agent.dispatcher.stats()[0].1;
        assert_eq!(stats.guest_errors, 2, "{params}");
        assert_eq!(stats.fires, 2);
        assert_eq!(stats.outputs, 0);
        assert!(stats.failures.is_empty(), "{:?}", stats.failures);
        assert_eq!(
            stats.last_error.as_deref(),
            Some(format!("error at ts {}: {message}", T0 + S).as_str()),
            "{params}"
        );
        assert_eq!(stored_uris(&agent), ["x"], "{params}");
        assert_eq!(agent.dispatcher.store().kind_of("x._anomaly"), None);
    }
}

// ----------------------------------------------------------------------- df

/// One filesystem line of a `df -k` text, parsed here independently of the guest.
#[derive(Debug)]
struct DfLine {
    used: u64,
    available: u64,
    mount: String,
}

impl DfLine {
    fn used_pct(&self) -> f64 {
        let (u, a) = (self.used as f64, self.available as f64);
        if u + a == 0.0 {
            0.0
        } else {
            u / (u + a) * 100.0
        }
    }
}

/// The filesystem lines of a `df -k` text: after the header, each line's Use%
/// column (`NN%` or `-`, preceded by three integers) is located; Used and
/// Available are the two integers before it and the mount point is everything
/// after it. A line holding only a (long) filesystem name continues on the next.
fn parse_df_here(text: &str) -> Vec<DfLine> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(header[0], "Filesystem", "not df -k output: {text}");
    assert_eq!(header[1], "1K-blocks", "not df -k output: {text}");
    let mut out = Vec::new();
    let mut carry = String::new();
    for line in lines {
        let line = format!("{carry} {line}");
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() == 1 {
            carry = line;
            continue;
        }
        carry.clear();
        let is_int = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
        let is_pct = |w: &str| {
            w == "-"
                || w.strip_suffix('%')
                    .is_some_and(|n| is_int(n) && n.len() <= 3)
        };
        let pct = (3..words.len())
            .find(|&i| {
                is_pct(words[i]) && is_int(words[i - 1]) && is_int(words[i - 2]) && {
                    is_int(words[i - 3])
                }
            })
            .unwrap_or_else(|| panic!("cannot find the Use% column in {line:?}"));
        // The mount point: the rest of the line after the Use% word.
        let mut rest = line.as_str();
        for w in &words[..=pct] {
            let at = rest.find(w).expect("word in line");
            rest = &rest[at + w.len()..];
        }
        out.push(DfLine {
            used: words[pct - 2].parse().unwrap(),
            available: words[pct - 1].parse().unwrap(),
            mount: rest.trim().to_owned(),
        });
    }
    out
}

/// The uri level of a mount point, by the rule `df` documents: leading `/`
/// stripped, characters outside `[A-Za-z0-9_-]` replaced by `_`, `/` → `root`.
fn mount_level(mount: &str) -> String {
    let stripped = mount.trim_start_matches('/');
    if stripped.is_empty() {
        return "root".to_owned();
    }
    stripped
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// uri → used percentage expected from `text` uploaded at `base`; the first
/// mount point that maps to a level wins.
fn expected_df(base: &str, text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for fs in parse_df_here(text) {
        out.entry(format!("{base}.{}.used_pct", mount_level(&fs.mount)))
            .or_insert_with(|| fs.used_pct());
    }
    out
}

fn real_df_k() -> String {
    let output = Command::new("df")
        .arg("-k")
        .env("LC_ALL", "C")
        .output()
        .expect("run df -k");
    // df exits 1 when some filesystem could not be read but still prints the rest.
    let text = String::from_utf8(output.stdout).expect("df -k prints UTF-8");
    assert!(
        text.starts_with("Filesystem"),
        "df -k printed no table (status {}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn df_agent(extra: &str) -> (AgentDir, Agent) {
    let dir = AgentDir::new(&format!(
        "- impulses:\n    name: df\n    filename: {{guest:df}}\n    uris: [host.disk]\n{extra}"
    ));
    let agent = dir.open();
    (dir, agent)
}

/// Check every `used_pct` the df impulse wrote at `ts` against `expected`.
fn assert_df_outputs(agent: &Agent, ts: i64, expected: &BTreeMap<String, f64>) {
    let written: Vec<String> = stored_uris(agent)
        .into_iter()
        .filter(|u| u.ends_with(".used_pct"))
        .collect();
    let wanted: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(written, wanted);
    for (uri, want) in expected {
        let got = number_at(agent, uri, ts);
        assert!(
            (got - want).abs() <= 1e-9,
            "{uri}: the impulse wrote {got}, the df line gives {want}"
        );
        assert!((0.0..=100.0).contains(&got), "{uri} = {got}");
    }
}

#[test]
fn df_parses_the_real_df_k_of_this_machine() {
    let text = real_df_k();
    let expected = expected_df("host.disk", &text);
    assert!(
        expected.contains_key("host.disk.root.used_pct"),
        "no `/` line in df -k:\n{text}"
    );
    let (_d, mut agent) = df_agent("");
    let report = agent
        .dispatcher
        .ingest(vec![ds("host.disk", T0, &text)])
        .unwrap();
    assert_eq!(report.fires, 1);
    assert_eq!(report.outputs, expected.len() as u64);
    assert_df_outputs(&agent, T0, &expected);
    assert_eq!(
        agent.dispatcher.store().kind_of("host.disk.root.used_pct"),
        Some(Kind::Datapoint)
    );
    let stats = &agent.dispatcher.stats()[0].1;
    assert_eq!((stats.guest_errors, stats.invalid_outputs), (0, 0));
}

/// GNU coreutils `df -k`, recorded, with a mount point holding a space, one
/// holding dots, a `-` Use% (size 0) and a long device name wrapped onto its own line.
const RECORDED_GNU_DF: &str = "\
Filesystem                 1K-blocks      Used Available Use% Mounted on
udev                         8123456         0   8123456   0% /dev
tmpfs                        1628000      2100   1625900   1% /run
/dev/nvme0n1p2             490617784  98765432 366863264  22% /
/dev/nvme0n1p1                523248      6220    517028   2% /boot/efi
/dev/sdb1                  976284628 488142314 488142314  50% /media/user/My Disk
/dev/sdc1                     102400     76800     25600  75% /srv/backup.v1.2
/dev/mapper/vg--data-lv--very--long--name
                           209612800 104806400 104806400  50% /data
none                               0         0         0    - /sys/fs/bpf
";

#[test]
fn df_recorded_gnu_text_gives_the_exact_uris_and_values() {
    let (_d, mut agent) = df_agent("");
    let report = agent
        .dispatcher
        .ingest(vec![ds("host.disk", T0, RECORDED_GNU_DF)])
        .unwrap();
    assert_eq!((report.fires, report.outputs), (1, 8));
    let expected: BTreeMap<String, f64> = [
        ("host.disk.dev.used_pct", 0.0),
        (
            "host.disk.run.used_pct",
            2100.0 / (2100.0 + 1625900.0) * 100.0,
        ),
        (
            "host.disk.root.used_pct",
            98765432.0 / (98765432.0 + 366863264.0) * 100.0,
        ),
        (
            "host.disk.boot_efi.used_pct",
            6220.0 / (6220.0 + 517028.0) * 100.0,
        ),
        ("host.disk.media_user_My_Disk.used_pct", 50.0),
        ("host.disk.srv_backup_v1_2.used_pct", 75.0),
        ("host.disk.data.used_pct", 50.0),
        ("host.disk.sys_fs_bpf.used_pct", 0.0),
    ]
    .into_iter()
    .map(|(u, v)| (u.to_owned(), v))
    .collect();
    // The parse done here agrees with the hand-written expectation…
    let here = expected_df("host.disk", RECORDED_GNU_DF);
    assert_eq!(
        here.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    // …and the guest wrote exactly these uris with these values.
    let mut all = vec!["host.disk".to_owned()];
    all.extend(expected.keys().cloned());
    all.sort();
    assert_eq!(stored_uris(&agent), all);
    for (uri, want) in &expected {
        assert_eq!(number_at(&agent, uri, T0), *want, "{uri}");
        assert_eq!(here[uri], *want, "{uri}");
    }
}

#[test]
fn df_skips_a_text_that_is_not_df_output() {
    let (_d, mut agent) = df_agent("");
    let report = agent
        .dispatcher
        .ingest(vec![ds("host.disk", T0, "hello, not a table")])
        .unwrap();
    assert_eq!((report.fires, report.outputs), (1, 0));
    let stats = &agent.dispatcher.stats()[0].1;
    assert_eq!((stats.fires, stats.guest_errors), (1, 0));
    assert_eq!(stored_uris(&agent), ["host.disk"]);
}

// -------------------------------------------------------------------- chain

/// The demo's chain (examples/demo/komlogd.yaml) over the real `df -k`, with
/// the alarm's threshold set from the root filesystem's actual usage.
fn df_then_threshold(threshold_from_root: impl Fn(f64) -> f64, expected_flag: f64) {
    let text = real_df_k();
    let expected = expected_df("host.disk", &text);
    let root = *expected
        .get("host.disk.root.used_pct")
        .unwrap_or_else(|| panic!("no `/` line in df -k:\n{text}"));
    let threshold = threshold_from_root(root);
    let (_d, mut agent) = df_agent(&format!(
        "- impulses:\n    name: disk_alarm\n    filename: {{guest:threshold}}\n    uris: [host.disk.root.used_pct]\n    params:\n      threshold: {threshold}\n"
    ));
    let report = agent
        .dispatcher
        .ingest(vec![ds("host.disk", T0, &text)])
        .unwrap();
    assert_eq!(report.fires, 2, "df, then disk_alarm");
    assert_eq!(report.outputs, expected.len() as u64 + 1);
    assert_df_outputs(&agent, T0, &expected);
    assert_eq!(
        number_at(&agent, "host.disk.root.used_pct._anomaly", T0),
        expected_flag,
        "root at {root}%, threshold {threshold}"
    );
    let stats: BTreeMap<String, _> = agent
        .dispatcher
        .stats()
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    assert_eq!(stats["df"].outputs, expected.len() as u64);
    assert_eq!(stats["disk_alarm"].fires, 1);
    assert_eq!(stats["disk_alarm"].outputs, 1);
    assert_eq!(stats["disk_alarm"].guest_errors, 0);
    // Only the root filesystem is watched.
    let anomalies: Vec<String> = stored_uris(&agent)
        .into_iter()
        .filter(|u| u.ends_with("._anomaly"))
        .collect();
    assert_eq!(anomalies, ["host.disk.root.used_pct._anomaly"]);
}

#[test]
fn chain_df_to_threshold_flags_root_above_its_threshold() {
    df_then_threshold(|root| root - 1.0, 1.0);
}

#[test]
fn chain_df_to_threshold_leaves_root_below_its_threshold_unflagged() {
    df_then_threshold(|root| root + 1.0, 0.0);
}
