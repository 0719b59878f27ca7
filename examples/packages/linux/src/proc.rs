//! Readings of `/proc` (and, when granted, `/sys/class/net/*/speed`) and the
//! figures computed from two readings: pure functions over file texts, so
//! they are tested natively on fixed inputs.

use std::collections::BTreeMap;

/// CPU time counters of the `cpu` line of `/proc/stat`, in jiffies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

/// What `/proc/stat` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stat {
    pub cpu: CpuTimes,
    pub cpu_count: u32,
    pub procs_blocked: u64,
}

/// Parse `/proc/stat`.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let mut stat = Stat::default();
    let mut seen_cpu = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
                if v.len() < 4 {
                    return Err("/proc/stat: short cpu line".into());
                }
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                stat.cpu = CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                };
                seen_cpu = true;
            }
            Some(name)
                if name.starts_with("cpu") && name[3..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                stat.cpu_count += 1;
            }
            Some("procs_blocked") => {
                stat.procs_blocked = f.next().and_then(|x| x.parse().ok()).unwrap_or(0)
            }
            _ => {}
        }
    }
    if !seen_cpu {
        return Err("/proc/stat: no cpu line".into());
    }
    stat.cpu_count = stat.cpu_count.max(1);
    Ok(stat)
}

/// CPU shares between two readings, percent: (user, nice, system, iowait, steal, idle).
pub fn cpu_percent(before: &CpuTimes, after: &CpuTimes) -> [f64; 6] {
    let total = after.total().saturating_sub(before.total());
    if total == 0 {
        return [0.0, 0.0, 0.0, 0.0, 0.0, 100.0];
    }
    let pct = |a: u64, b: u64| (a.saturating_sub(b)) as f64 * 100.0 / total as f64;
    [
        pct(after.user, before.user),
        pct(after.nice, before.nice),
        pct(
            after.system + after.irq + after.softirq,
            before.system + before.irq + before.softirq,
        ),
        pct(after.iowait, before.iowait),
        pct(after.steal, before.steal),
        pct(after.idle, before.idle),
    ]
}

/// `/proc/loadavg`: load averages, runnable and total tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
    pub runnable: f64,
    pub total: f64,
}

/// Parse `/proc/loadavg` (`0.10 0.20 0.30 2/345 12345`).
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, String> {
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| -> Result<f64, String> {
        f.get(i)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("/proc/loadavg: field {} unreadable", i + 1))
    };
    let (runnable, total) = f
        .get(3)
        .and_then(|x| x.split_once('/'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or("/proc/loadavg: no tasks field")?;
    Ok(LoadAvg {
        one: num(0)?,
        five: num(1)?,
        fifteen: num(2)?,
        runnable,
        total,
    })
}

/// `/proc/meminfo` in kB, by field name.
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_owned(), v))
        })
        .collect()
}

/// `/proc/vmstat` counters by name.
pub fn parse_vmstat(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// One block device of `/proc/diskstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Disk {
    pub reads: u64,
    pub sectors_read: u64,
    pub ms_reading: u64,
    pub writes: u64,
    pub sectors_written: u64,
    pub ms_writing: u64,
    pub ms_io: u64,
}

/// Whole devices of `/proc/diskstats` (no partitions, no `loop`/`ram`), by name.
pub fn parse_diskstats(text: &str) -> BTreeMap<String, Disk> {
    let mut all = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        all.insert(
            f[2].to_owned(),
            Disk {
                reads: n(3),
                sectors_read: n(5),
                ms_reading: n(6),
                writes: n(7),
                sectors_written: n(9),
                ms_writing: n(10),
                ms_io: n(12),
            },
        );
    }
    let names: Vec<String> = all.keys().cloned().collect();
    all.retain(|name, _| {
        !(name.starts_with("loop") || name.starts_with("ram") || is_partition(name, &names))
    });
    all
}

/// `sda1` of `sda`, `nvme0n1p1` of `nvme0n1`.
fn is_partition(name: &str, all: &[String]) -> bool {
    all.iter().any(|parent| {
        parent != name
            && name.strip_prefix(parent.as_str()).is_some_and(|rest| {
                let digits = rest.strip_prefix('p').unwrap_or(rest);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            })
    })
}

/// Per-second figures of a device between two readings `secs` apart:
/// (tps, rd_kB/s, wr_kB/s, await ms, util %).
pub fn disk_rates(before: &Disk, after: &Disk, secs: f64) -> [f64; 5] {
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
    let ios = d(after.reads, before.reads) + d(after.writes, before.writes);
    let wait = d(after.ms_reading, before.ms_reading) + d(after.ms_writing, before.ms_writing);
    [
        ios / secs,
        d(after.sectors_read, before.sectors_read) * 512.0 / 1024.0 / secs,
        d(after.sectors_written, before.sectors_written) * 512.0 / 1024.0 / secs,
        if ios > 0.0 { wait / ios } else { 0.0 },
        (d(after.ms_io, before.ms_io) / (secs * 1000.0) * 100.0).min(100.0),
    ]
}

/// Counters of one interface of `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Iface {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// Parse `/proc/net/dev`, by interface name.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, Iface> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some((
                name.trim().to_owned(),
                Iface {
                    rx_bytes: f[0],
                    rx_packets: f[1],
                    rx_errs: f[2],
                    rx_drop: f[3],
                    tx_bytes: f[8],
                    tx_packets: f[9],
                    tx_errs: f[10],
                    tx_drop: f[11],
                },
            ))
        })
        .collect()
}

/// Per-second figures of an interface: (rxpck, txpck, rxkB, txkB, rxerr,
/// txerr, rxdrop, txdrop), and utilisation % when the link speed (Mb/s) is
/// known: the larger direction over the speed, as sar computes it for a
/// full-duplex link.
pub fn net_rates(
    before: &Iface,
    after: &Iface,
    secs: f64,
    speed_mbps: Option<f64>,
) -> ([f64; 8], Option<f64>) {
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    let rx = d(after.rx_bytes, before.rx_bytes);
    let tx = d(after.tx_bytes, before.tx_bytes);
    let util = speed_mbps
        .filter(|s| *s > 0.0)
        .map(|s| (rx.max(tx) * 8.0 / (s * 1e6) * 100.0).min(100.0));
    (
        [
            d(after.rx_packets, before.rx_packets),
            d(after.tx_packets, before.tx_packets),
            rx / 1024.0,
            tx / 1024.0,
            d(after.rx_errs, before.rx_errs),
            d(after.tx_errs, before.tx_errs),
            d(after.rx_drop, before.rx_drop),
            d(after.tx_drop, before.tx_drop),
        ],
        util,
    )
}

/// A name made one uri level, the way kpack_linux sanitised device names:
/// valid characters (`[A-Za-z0-9_-]`) are kept, an invalid first character is
/// dropped, any other invalid character (a `.` included) becomes `_`.
pub fn sanitize_level(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else if i > 0 {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_cpu_shares() {
        let a = parse_stat(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nprocs_blocked 3\n",
        )
        .unwrap();
        assert_eq!(a.cpu_count, 2);
        assert_eq!(a.procs_blocked, 3);
        let b = parse_stat("cpu  150 10 70 900 60 5 5 0 0 0\n").unwrap();
        let p = cpu_percent(&a.cpu, &b.cpu);
        // 200 jiffies: user 50, nice 10, system 20+5+5, iowait 10, steal 0, idle 100.
        assert_eq!(p, [25.0, 5.0, 15.0, 5.0, 0.0, 50.0]);
        assert!(parse_stat("intr 1\n").is_err());
    }

    #[test]
    fn loadavg_meminfo_vmstat() {
        let l = parse_loadavg("0.50 1.25 2.00 3/456 789\n").unwrap();
        assert_eq!(
            (l.one, l.five, l.fifteen, l.runnable, l.total),
            (0.5, 1.25, 2.0, 3.0, 456.0)
        );
        let m = parse_meminfo(
            "MemTotal:       16000 kB\nMemAvailable:    4000 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(m["MemTotal"], 16000);
        assert_eq!(m["MemAvailable"], 4000);
        assert_eq!(m["HugePages_Total"], 0);
        let v = parse_vmstat("pgmajfault 12\npgfault 34\n");
        assert_eq!(v["pgmajfault"], 12);
    }

    #[test]
    fn disks_without_partitions_and_their_rates() {
        let text = "   8       0 sda 100 0 2000 50 200 0 4000 150 0 300 400 0 0 0 0\n   8       1 sda1 1 0 2 3 4 0 6 7 0 8 9 0 0 0 0\n 259 0 nvme0n1 1 0 1 1 1 0 1 1 0 1 1\n 259 1 nvme0n1p1 1 0 1 1 1 0 1 1 0 1 1\n   7 0 loop0 1 0 1 1 1 0 1 1 0 1 1\n";
        let d = parse_diskstats(text);
        assert_eq!(d.keys().collect::<Vec<_>>(), vec!["nvme0n1", "sda"]);
        let before = d["sda"];
        let after = Disk {
            reads: 110,
            sectors_read: 2200,
            ms_reading: 70,
            writes: 210,
            sectors_written: 4400,
            ms_writing: 170,
            ms_io: 800,
        };
        let r = disk_rates(&before, &after, 1.0);
        assert_eq!(r, [20.0, 100.0, 200.0, 2.0, 50.0]);
    }

    #[test]
    fn interfaces_and_utilisation() {
        let text = "Inter-|   Receive  |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n";
        let n = parse_net_dev(text);
        let before = n["eth0"];
        let after = Iface {
            rx_bytes: 1000 + 1_250_000,
            rx_packets: 20,
            tx_bytes: 2000 + 1024,
            tx_packets: 30,
            ..before
        };
        let (r, util) = net_rates(&before, &after, 1.0, Some(100.0));
        assert_eq!(r[0], 10.0);
        assert_eq!(r[3], 1.0);
        assert_eq!(util, Some(10.0));
        assert_eq!(net_rates(&before, &after, 1.0, None).1, None);
    }

    #[test]
    fn names_become_one_level() {
        assert_eq!(sanitize_level("web.example.com"), "web_example_com");
        assert_eq!(sanitize_level(".hidden"), "hidden");
        assert_eq!(sanitize_level("dm-0"), "dm-0");
        assert_eq!(sanitize_level("ñandú"), "and_");
    }
}
