//! `linux`: the kpack_linux analogue. Every minute it reads `/proc` (through
//! the package's `dirs: [/proc]` grant; `/sys` too, if granted, for link
//! speeds) and writes datapoints under
//! `pkg.linux.<hostname>.system.resources`, plus the anomaly impulses of
//! kpack_linux, which judge the new value (the original judged the older one).
//!
//! Params (all optional): `interval` — time between runs instead of the
//! cron schedule `* * * * *` (seconds, or with `s`, `min`, `h`: `5min`); `hostname` — instead of
//! `/proc/sys/kernel/hostname`. The hostname is made one uri level (invalid
//! characters, dots included, become `_`; an invalid first one is dropped).
//!
//! The uris under the root, the units and the anomaly rules are listed in
//! the manual's Packages page (docs/src/packages.md).

mod proc;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use komlog_package::prelude::*;

use proc::{CpuTimes, Disk, Iface};

/// Pause between the two readings of a first run, which has no previous one.
const FIRST_GAP_MS: u64 = 200;
/// How often the device and interface lists are read again.
const REFRESH: u64 = 10 * MINUTE;

struct Linux;

/// The counters of one reading, kept for the rates of the next run.
#[derive(Clone)]
struct Reading {
    at: Instant,
    cpu: CpuTimes,
    vm: BTreeMap<String, u64>,
    disks: BTreeMap<String, Disk>,
    ifaces: BTreeMap<String, Iface>,
}

static PREVIOUS: Mutex<Option<Reading>> = Mutex::new(None);

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read {path}: {e}; grant the package read access to /proc (`grants: {{dirs: [/proc]}}`)")
    })
}

fn root(params: &Params) -> Result<String, String> {
    let host = match params.get("hostname") {
        Some(h) => h.to_owned(),
        None => read("/proc/sys/kernel/hostname")?.trim().to_owned(),
    };
    let mut level = proc::sanitize_level(&host);
    if level.is_empty() {
        level = "localhost".into();
    }
    Ok(format!("pkg.linux.{level}.system.resources"))
}

fn take_reading() -> Result<Reading, String> {
    Ok(Reading {
        at: Instant::now(),
        cpu: proc::parse_stat(&read("/proc/stat")?)?.cpu,
        vm: proc::parse_vmstat(&read("/proc/vmstat")?),
        disks: proc::parse_diskstats(&read("/proc/diskstats").unwrap_or_default()),
        ifaces: proc::parse_net_dev(&read("/proc/net/dev").unwrap_or_default()),
    })
}

/// Link speed in Mb/s, if `/sys` is granted and the interface reports one.
fn speed(iface: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/speed")).ok()?;
    text.trim().parse::<f64>().ok().filter(|s| *s > 0.0)
}

/// `interval`: seconds (`60`), or a number with `s`, `min` or `h`; at least 1 s.
fn interval_us(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1e6,
        "min" => 60e6,
        "h" => 3600e6,
        _ => {
            return Err(format!(
                "param `interval`: unknown unit in {text:?} (use s, min or h)"
            ));
        }
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n * scale >= 1e6 => Ok((n * scale) as u64),
        _ => Err(format!(
            "param `interval` must be at least 1 s, got {text:?}"
        )),
    }
}

impl Package for Linux {
    fn load(params: Params) -> Result<Manifest, String> {
        // Fail now, with the grant to add, rather than at every run.
        read("/proc/stat")?;
        let root = root(&params)?;
        let mut job = Job::new("resources").param("root", root.clone());
        job = match params.get("interval").map(interval_us).transpose()? {
            Some(us) => job.every(us),
            None => job.cron("* * * * *"),
        };
        let cpu = |k: &str| format!("{root}.cpu.{k}");
        let mem = |k: &str| format!("{root}.memory.{k}");
        let mut util_uris: Vec<String> =
            proc::parse_diskstats(&read("/proc/diskstats").unwrap_or_default())
                .keys()
                .map(|d| format!("{root}.storage.{}.util", proc::sanitize_level(d)))
                .collect();
        util_uris.extend(
            proc::parse_net_dev(&read("/proc/net/dev").unwrap_or_default())
                .keys()
                .filter(|i| speed(i).is_some())
                .map(|i| format!("{root}.network.{}.ifutil", proc::sanitize_level(i))),
        );
        let mut manifest = Manifest::new()
            .job(job)
            .refresh(REFRESH)
            .impulse(PackageImpulse::new(
                "cpu_anomaly",
                Subscription::new([cpu("use"), cpu("count"), cpu("ldavg.1min")]),
            ))
            .impulse(PackageImpulse::new(
                "memory_anomaly",
                Subscription::new([mem("memused"), mem("majflt")]),
            ));
        if !util_uris.is_empty() {
            manifest = manifest.impulse(PackageImpulse::new(
                "util_anomaly",
                Subscription::new(util_uris),
            ));
        }
        Ok(manifest)
    }

    fn run_job(call: JobCall) -> Result<Vec<Sample>, String> {
        let root = call
            .params
            .get("root")
            .ok_or("job `resources` without its `root` param")?
            .to_owned();
        let previous = PREVIOUS.lock().map_err(|_| "state poisoned")?.clone();
        let before = match previous {
            Some(r) => r,
            None => {
                let first = take_reading()?;
                std::thread::sleep(std::time::Duration::from_millis(FIRST_GAP_MS));
                first
            }
        };
        let now = take_reading()?;
        let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let mut m = Metrics::new(call.ts);

        let stat = proc::parse_stat(&read("/proc/stat")?)?;
        let load = proc::parse_loadavg(&read("/proc/loadavg")?)?;
        let [user, nice, system, iowait, steal, idle] = proc::cpu_percent(&before.cpu, &now.cpu);
        let cpu = |k: &str| format!("{root}.cpu.{k}");
        m.gauge(&cpu("use"), (user + nice + system + steal).min(100.0), &[]);
        for (k, v) in [
            ("user", user),
            ("nice", nice),
            ("system", system),
            ("iowait", iowait),
            ("steal", steal),
            ("idle", idle),
        ] {
            m.gauge(&cpu(k), v, &[]);
        }
        m.gauge(&cpu("count"), f64::from(stat.cpu_count), &[]);
        m.gauge(&cpu("ldavg.1min"), load.one, &[]);
        m.gauge(&cpu("ldavg.5min"), load.five, &[]);
        m.gauge(&cpu("ldavg.15min"), load.fifteen, &[]);
        m.gauge(&cpu("tasks.runnable"), load.runnable, &[]);
        m.gauge(&cpu("tasks.total"), load.total, &[]);
        m.gauge(&cpu("tasks.blocked"), stat.procs_blocked as f64, &[]);

        let info = proc::parse_meminfo(&read("/proc/meminfo")?);
        let kb = |k: &str| info.get(k).copied().unwrap_or(0) as f64;
        let mem = |k: &str| format!("{root}.memory.{k}");
        let total = kb("MemTotal");
        let available = info
            .get("MemAvailable")
            .map(|v| *v as f64)
            .unwrap_or(kb("MemFree") + kb("Buffers") + kb("Cached"));
        m.gauge(&mem("total_kb"), total, &[]);
        m.gauge(&mem("free_kb"), kb("MemFree"), &[]);
        m.gauge(&mem("available_kb"), available, &[]);
        m.gauge(&mem("used_kb"), total - available, &[]);
        m.gauge(&mem("buffers_kb"), kb("Buffers"), &[]);
        m.gauge(&mem("cached_kb"), kb("Cached"), &[]);
        m.gauge(&mem("dirty_kb"), kb("Dirty"), &[]);
        m.gauge(
            &mem("memused"),
            if total > 0.0 {
                (total - available) / total * 100.0
            } else {
                0.0
            },
            &[],
        );
        let rate = |k: &str| {
            now.vm
                .get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(before.vm.get(k).copied().unwrap_or(0)) as f64
                / secs
        };
        m.gauge(&mem("fault"), rate("pgfault"), &[]);
        m.gauge(&mem("majflt"), rate("pgmajfault"), &[]);
        m.gauge(&mem("pgpgin"), rate("pgpgin"), &[]);
        m.gauge(&mem("pgpgout"), rate("pgpgout"), &[]);
        m.gauge(&mem("pswpin"), rate("pswpin"), &[]);
        m.gauge(&mem("pswpout"), rate("pswpout"), &[]);

        let swap = |k: &str| format!("{root}.swap.{k}");
        let (st, sf) = (kb("SwapTotal"), kb("SwapFree"));
        m.gauge(&swap("total_kb"), st, &[]);
        m.gauge(&swap("free_kb"), sf, &[]);
        m.gauge(&swap("used_kb"), st - sf, &[]);
        m.gauge(
            &swap("used_pct"),
            if st > 0.0 {
                (st - sf) / st * 100.0
            } else {
                0.0
            },
            &[],
        );

        for (name, after) in &now.disks {
            let Some(prev) = before.disks.get(name) else {
                continue;
            };
            let dev = |k: &str| format!("{root}.storage.{}.{k}", proc::sanitize_level(name));
            let [tps, rd, wr, wait, util] = proc::disk_rates(prev, after, secs);
            for (k, v) in [
                ("tps", tps),
                ("rd_kB", rd),
                ("wr_kB", wr),
                ("await", wait),
                ("util", util),
            ] {
                m.gauge(&dev(k), v, &[]);
            }
        }
        for (name, after) in &now.ifaces {
            let Some(prev) = before.ifaces.get(name) else {
                continue;
            };
            let net = |k: &str| format!("{root}.network.{}.{k}", proc::sanitize_level(name));
            let (r, util) = proc::net_rates(prev, after, secs, speed(name));
            let keys = [
                "rxpck", "txpck", "rxkB", "txkB", "rxerr", "txerr", "rxdrop", "txdrop",
            ];
            for (k, v) in keys.iter().zip(r) {
                m.gauge(&net(k), v, &[]);
            }
            if let Some(u) = util {
                m.gauge(&net("ifutil"), u, &[]);
            }
        }
        if let Ok(mut p) = PREVIOUS.lock() {
            *p = Some(now);
        }
        Ok(m.into_samples())
    }

    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let which = ctx.param("impulse").unwrap_or_default().to_owned();
        let window = ctx.window().map_err(|e| e.to_string())?;
        // The new value: the uri's sample at the firing timestamp.
        let new = |uri: &str| -> Option<f64> {
            let (ts, v) = window.series(uri)?.last()?;
            if ts != ctx.ts {
                return None;
            }
            v.as_datapoint()
        };
        let base = |uri: &str, leaf: &str| uri.strip_suffix(leaf).map(str::to_owned);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut out = Vec::new();
        match which.as_str() {
            "cpu_anomaly" => {
                let all = ctx.updated.iter().chain(&ctx.others);
                let find = |leaf: &str| all.clone().find(|u| u.ends_with(leaf)).cloned();
                let (Some(use_uri), Some(count_uri), Some(ld_uri)) = (
                    find(".cpu.use"),
                    find(".cpu.count"),
                    find(".cpu.ldavg.1min"),
                ) else {
                    return Err("cpu_anomaly: subscription incomplete".into());
                };
                let (Some(cpu_use), Some(count), Some(ld)) =
                    (new(&use_uri), new(&count_uri), new(&ld_uri))
                else {
                    return Ok(out);
                };
                let anomaly = cpu_use > 90.0 || (count > 0.0 && ld / count > 1.0);
                let cpu_root = base(&use_uri, ".use").unwrap_or_default();
                out.push(Sample::datapoint(
                    format!("{cpu_root}._anomaly"),
                    ctx.ts,
                    flag(anomaly),
                ));
            }
            "memory_anomaly" => {
                let all = ctx.updated.iter().chain(&ctx.others);
                let find = |leaf: &str| all.clone().find(|u| u.ends_with(leaf)).cloned();
                let (Some(used_uri), Some(flt_uri)) =
                    (find(".memory.memused"), find(".memory.majflt"))
                else {
                    return Err("memory_anomaly: subscription incomplete".into());
                };
                let (Some(used), Some(flt)) = (new(&used_uri), new(&flt_uri)) else {
                    return Ok(out);
                };
                let mem_root = base(&used_uri, ".memused").unwrap_or_default();
                out.push(Sample::datapoint(
                    format!("{mem_root}._anomaly"),
                    ctx.ts,
                    flag(used > 85.0 || flt > 100.0),
                ));
            }
            "util_anomaly" => {
                for uri in &ctx.updated {
                    if let Some(v) = new(uri) {
                        out.push(Sample::datapoint(
                            format!("{uri}._anomaly"),
                            ctx.ts,
                            flag(v > 80.0),
                        ));
                    }
                }
            }
            other => return Err(format!("unknown impulse {other:?}")),
        }
        Ok(out)
    }
}

komlog_package::export_package!(Linux);

#[cfg(test)]
mod tests {
    use super::interval_us;

    #[test]
    fn intervals() {
        assert_eq!(interval_us("60"), Ok(60_000_000));
        assert_eq!(interval_us("5min"), Ok(300_000_000));
        assert_eq!(interval_us("1.5s"), Ok(1_500_000));
        assert_eq!(interval_us("1h"), Ok(3_600_000_000));
        assert!(interval_us("0.5").is_err());
        assert!(interval_us("3 days").is_err());
    }
}
