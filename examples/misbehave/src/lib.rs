//! `misbehave`: a test guest that breaks the rules on request, to check the
//! sandbox and the host's handling of failures.
//!
//! The parameter `mode` selects what it does on each fire:
//!
//! | mode    | behaviour                                                                 |
//! |---------|---------------------------------------------------------------------------|
//! | `panic` | `panic!("misbehave: asked to panic")` — a trap                            |
//! | `spin`  | loops forever (the optimizer cannot remove the loop) — hits the deadline  |
//! | `sleep` | `std::thread::sleep` for an hour, in one blocking host call — hits the deadline |
//! | `handles` | creates clock pollables (WASI resources held by the host) forever, never dropping one — hits the host's handle cap |
//! | `flood` | returns param `count` (default 20,000) datapoints `misbehave.flood.<i>` = i at `ctx.ts` |
//! | `chatty`| writes 1,000 info log lines (`misbehave chatty <i>`), then returns datapoint `misbehave.chatty` = 1.0 |
//! | `slow`  | sleeps `ms` milliseconds (param, default 10), then returns datapoint `misbehave.slow` = 1.0 |
//! | `hog`   | allocates and fills 1 MiB chunks forever — hits the memory cap            |
//! | `err`   | returns `Err("misbehave: asked to fail")`                                 |
//! | `ok`    | returns datapoint `misbehave.ok` = 1.0 at `ctx.ts`                         |
//! | `fs`    | tries `std::fs::read("/etc/passwd")`                                      |
//! | `env`   | tries `std::env::var("HOME")` and `std::env::vars().count()`              |
//! | `net`   | tries `std::net::TcpStream::connect("127.0.0.1:9")`                       |
//! | `clock` | reads the wall clock, the monotonic clock and 16 random bytes             |
//!
//! `fs`, `env` and `net` return one datasource sample `misbehave.<mode>` at
//! `ctx.ts` whose text starts with `denied: ` (followed by the error) or
//! `allowed: ` (followed by what it got: `read N bytes`, `HOME=…; N
//! variables visible`, `connected to …`). For `env`, `allowed` means a
//! variable was actually visible (an empty environment is `denied`).
//! `clock` returns one datasource sample `misbehave.clock` at `ctx.ts`:
//! `wall_us=<µs since the epoch> monotonic_ns=<ns> random=<32 hex digits>`.
//! A missing or unknown `mode` is an `Err` listing the modes.
//! `describe()` returns `None`.

use std::hint::black_box;

use komlog_guest::prelude::*;

/// Misbehaves as asked.
pub struct Misbehave;

/// Every mode, for the error message.
pub const MODES: &str =
    "panic, spin, sleep, slow, chatty, flood, handles, hog, err, ok, fs, env, net, clock";

/// The outcome of the `fs` probe.
pub fn try_fs() -> String {
    match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("allowed: read {} bytes of /etc/passwd", bytes.len()),
        Err(e) => format!("denied: {e}"),
    }
}

/// The outcome of the `env` probe.
pub fn try_env() -> String {
    let home = std::env::var("HOME");
    let count = std::env::vars_os().count();
    match home {
        Ok(home) => format!("allowed: HOME={home}; {count} variables visible"),
        Err(_) if count > 0 => {
            let names: Vec<String> = std::env::vars_os()
                .take(5)
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            format!(
                "allowed: HOME not set; {count} variables visible ({}...)",
                names.join(", ")
            )
        }
        Err(e) => format!("denied: HOME: {e}; {count} variables visible"),
    }
}

/// The outcome of the `net` probe.
pub fn try_net() -> String {
    match std::net::TcpStream::connect("127.0.0.1:9") {
        Ok(s) => format!(
            "allowed: connected to {}",
            s.peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| format!("127.0.0.1:9 (peer unknown: {e})"))
        ),
        Err(e) => format!("denied: {e}"),
    }
}

/// The outcome of the `clock` probe: what the host's clocks and random
/// source give (WASI calls, so only inside a component).
fn clock() -> String {
    let wall_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let monotonic_ns = wasip2::clocks::monotonic_clock::now();
    let random: String = wasip2::random::random::get_random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("wall_us={wall_us} monotonic_ns={monotonic_ns} random={random}")
}

/// Loop forever; `black_box` keeps the optimizer from proving the loop has
/// no effect.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Make WASI resources until the host refuses one (which traps): each clock
/// subscription is an entry in the host's table, outside the guest's memory.
fn handles() -> ! {
    loop {
        let pollable = wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000);
        std::mem::forget(pollable);
    }
}

/// Allocate and fill 1 MiB chunks until the allocation fails (which aborts
/// the instance).
fn hog() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // `vec![1; n]` writes every byte, so the pages are really used.
        let chunk = black_box(vec![1u8; 1 << 20]);
        chunks.push(chunk);
        black_box(&chunks);
    }
}

impl Impulse for Misbehave {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let mode = ctx.param("mode").unwrap_or("");
        let text = match mode {
            "panic" => panic!("misbehave: asked to panic"),
            "spin" => spin(),
            "handles" => handles(),
            "flood" => {
                let count: u32 = match ctx.param("count") {
                    Some(n) => n
                        .parse()
                        .map_err(|_| format!("misbehave: param `count` is not a number: {n}"))?,
                    None => 20_000,
                };
                return Ok((0..count)
                    .map(|i| {
                        Sample::datapoint(format!("misbehave.flood.{i}"), ctx.ts, f64::from(i))
                    })
                    .collect());
            }
            "chatty" => {
                for i in 0..1_000 {
                    log::info(&format!("misbehave chatty {i}"));
                }
                return Ok(vec![Sample::datapoint("misbehave.chatty", ctx.ts, 1.0)]);
            }
            "slow" => {
                let ms = match ctx.param("ms") {
                    Some(ms) => ms
                        .parse()
                        .map_err(|_| format!("misbehave: param `ms` is not a number: {ms}"))?,
                    None => 10,
                };
                std::thread::sleep(std::time::Duration::from_millis(ms));
                return Ok(vec![Sample::datapoint("misbehave.slow", ctx.ts, 1.0)]);
            }
            "sleep" => {
                // One `wasi:io/poll` wait on a monotonic-clock pollable: no
                // WebAssembly runs while it blocks, so no epoch check either.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                "slept an hour".to_string()
            }
            "hog" => hog(),
            "err" => return Err("misbehave: asked to fail".to_string()),
            "ok" => return Ok(vec![Sample::datapoint("misbehave.ok", ctx.ts, 1.0)]),
            "fs" => try_fs(),
            "env" => try_env(),
            "net" => try_net(),
            "clock" => clock(),
            other => {
                return Err(format!(
                    "misbehave: unknown mode `{other}` (param `mode`: one of {MODES})"
                ));
            }
        };
        log::info(&format!("misbehave {mode}: {text}"));
        Ok(vec![Sample::datasource(
            format!("misbehave.{mode}"),
            ctx.ts,
            text,
        )])
    }
}

komlog_guest::export_impulse!(Misbehave);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &str) -> Result<Vec<Sample>, String> {
        Misbehave::on_update(Context::new(
            42,
            vec![],
            vec![],
            vec![("mode".into(), mode.into())],
            vec![],
        ))
    }

    #[test]
    fn ok_and_err() {
        assert_eq!(
            run("ok"),
            Ok(vec![Sample::datapoint("misbehave.ok", 42, 1.0)])
        );
        assert_eq!(run("err"), Err("misbehave: asked to fail".to_string()));
        let e = run("dance").unwrap_err();
        assert!(
            e.contains("unknown mode `dance`") && e.contains(MODES),
            "{e}"
        );
    }

    #[test]
    #[should_panic(expected = "misbehave: asked to panic")]
    fn panic_panics() {
        let _ = run("panic");
    }

    #[test]
    fn capability_probes_report_allowed_or_denied() {
        // Natively everything is allowed or fails for ordinary reasons; the
        // point is the shape of the answer.
        for mode in ["fs", "env", "net"] {
            let out = run(mode).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].uri, format!("misbehave.{mode}"));
            assert_eq!(out[0].ts, 42);
            let text = out[0].value.as_datasource().unwrap();
            assert!(
                text.starts_with("allowed: ") || text.starts_with("denied: "),
                "{mode}: {text}"
            );
        }
    }
}
