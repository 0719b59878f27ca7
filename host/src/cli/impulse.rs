//! `komlogd impulse test`: replay recorded samples through one impulse, or
//! the impulses of a komlogd.yaml, print every fire and a summary, and keep
//! or check what they wrote as a golden file (see [`crate::replay`]).
//!
//! Standard output carries the fires (a table, or JSON lines with `--json`)
//! and is byte-identical across runs of the same modules on the same data;
//! the summary, with call times, goes to standard error. Exit status: 0, 1
//! when the replay differs from `--expect` or an impulse does not load, 2 for
//! bad usage or bad data.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Failure, format, plural, progress};
use crate::config::{self, Config, DataReqs, ImpulseConfig};
use crate::engine::Determinism;
use crate::impulses::dispatch::{FireOutcome, FireRecord};
use crate::model::{Uri, Username};
use crate::replay::{self, Replay, golden};

/// `komlogd impulse …`
#[derive(Debug, clap::Subcommand)]
pub enum ImpulseCommand {
    /// Replay recorded samples through an impulse and show, keep or check what it writes.
    ///
    /// The samples go in by their time, through the agent's own dispatcher
    /// (windows, min_exec_delta, stacking, chains, output rules, limits) over
    /// a scratch store; the real store is never touched. The impulses' clocks
    /// are frozen at --now and their randomness seeded by --seed, so the same
    /// module and data print the same thing every run.
    ///
    /// E.g. `komlogd impulse test summary.wasm --data cpu.csv --expect summary.golden.jsonl`.
    Test(TestArgs),
}

/// The arguments of `komlogd impulse test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The impulse's module (.wasm). Without it, the enabled impulses of the
    /// configuration given with -c.
    pub module: Option<PathBuf>,
    /// Recorded samples: CSV, JSON Lines, Parquet or Arrow, as `komlogd query
    /// --format` writes them (or CSV `uri,time,value`), by file extension.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// With -c: replay through these impulses only (repeat the option), e.g.
    /// the links of a chain.
    #[arg(long = "impulse", value_name = "NAME")]
    pub impulses: Vec<String>,
    /// Set a param of the impulse (repeat the option); overrides the
    /// module's and the block's.
    #[arg(long = "params", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Subscribe to these uris instead of the module's or the block's
    /// (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "URI")]
    pub uris: Vec<String>,
    /// The window instead of the module's or the block's:
    /// `past_delta=DURATION,past_count=N` (either or both).
    #[arg(long, value_name = "REQS", value_parser = parse_data_reqs)]
    pub data_reqs: Option<DataReqs>,
    /// Print each fire as a JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compare what the fires wrote with this golden file (JSON lines);
    /// print the difference and exit 1 when they differ.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// With --expect: write the golden file from this replay.
    #[arg(long, requires = "expect")]
    pub update: bool,
    /// With --expect: `value` numbers may differ by this much (relative to
    /// the expected value when it is larger than 1). Default: exactly equal.
    #[arg(long, requires = "expect", value_name = "T", value_parser = parse_tolerance)]
    pub tolerance: Option<f64>,
    /// Seed of the impulses' random numbers.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
    /// What the impulses' wall clock reads (it stands still): RFC 3339, µs
    /// since the Unix epoch, … as `query --from`. Default: the time of the
    /// first sample replayed.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, value_parser = super::parse_time)]
    pub now: Option<i64>,
    /// The user the impulses run as: its uris are local, `user:uri` of any
    /// other user is read-only. Default: the configuration's `username`.
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Print no fires, only the summary. With --expect the fires are not
    /// printed either, only the difference.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Run `komlogd impulse …`; `config_path` is the global -c.
pub fn run(command: &ImpulseCommand, config_path: Option<&Path>) -> Result<(), Failure> {
    match command {
        ImpulseCommand::Test(args) => test(args, config_path),
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{text:?}: expected a number ≥ 0")),
    }
}

fn parse_data_reqs(text: &str) -> Result<DataReqs, String> {
    let mut reqs = DataReqs::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("past_delta", v)) => {
                reqs.past_delta_us = Some(
                    crate::model::parse_duration_us(v)
                        .map_err(|e| format!("past_delta {v:?}: {e}"))?,
                );
            }
            Some(("past_count", v)) => {
                reqs.past_count = Some(
                    v.parse()
                        .map_err(|_| format!("past_count {v:?}: expected a whole number ≥ 0"))?,
                );
            }
            _ => {
                return Err(format!(
                    "{part:?}: expected past_delta=DURATION or past_count=N"
                ));
            }
        }
    }
    if reqs == DataReqs::default() {
        return Err("expected past_delta=DURATION, past_count=N or both".into());
    }
    Ok(reqs)
}

/// Where compiled modules are cached for a module given alone: the user's
/// cache directory (`$XDG_CACHE_HOME/komlogd/compiled`, else
/// `~/.cache/komlogd/compiled`).
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("komlogd").join("compiled"))
}

/// The configuration to replay through: the file's (its impulses, narrowed
/// by --impulse), or, with a module, that module alone under the file's
/// username and limits when -c is given too; then the overrides.
fn replay_config(args: &TestArgs, config_path: Option<&Path>) -> Result<Config, Failure> {
    let mut config = match config_path {
        Some(path) => Config::load(path).map_err(|e| Failure::usage(e.to_string()))?,
        None if args.module.is_some() => {
            let here = std::env::current_dir()
                .map_err(|e| Failure::runtime(format!("cannot read the working directory: {e}")))?;
            Config::parse("", &here.join("komlogd.yaml"))
                .map_err(|e| Failure::usage(e.to_string()))?
        }
        None => {
            return Err(Failure::usage(
                "nothing to replay through: give the impulse's MODULE.wasm, or -c komlogd.yaml for its impulses",
            ));
        }
    };
    if let Some(module) = &args.module {
        if !args.impulses.is_empty() {
            return Err(Failure::usage(
                "--impulse picks impulses of the configuration; it cannot be combined with a MODULE",
            ));
        }
        let filename = std::path::absolute(module).unwrap_or_else(|_| module.clone());
        let name = module
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "impulse".into());
        config.impulses = vec![ImpulseConfig {
            name,
            line: 0,
            enabled: true,
            filename,
            uris: None,
            data_reqs: None,
            min_exec_delta_us: None,
            params: Vec::new(),
            limits: config::Limits::default(),
        }];
    } else if !args.impulses.is_empty() {
        let known: Vec<&str> = config.impulses.iter().map(|b| b.name.as_str()).collect();
        if let Some(unknown) = args.impulses.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(Failure::usage(format!(
                "--impulse {unknown}: no impulse of that name in {} (it has: {})",
                config.path.display(),
                known.join(", ")
            )));
        }
        config.impulses.retain(|b| args.impulses.contains(&b.name));
        for block in &mut config.impulses {
            block.enabled = true;
        }
    }
    if let Some(user) = &args.username {
        config.username =
            Some(Username::parse(user).map_err(|e| Failure::usage(format!("--username: {e}")))?);
    }
    let overrides = !args.params.is_empty() || !args.uris.is_empty() || args.data_reqs.is_some();
    let enabled = config.impulses.iter().filter(|b| b.enabled).count();
    if overrides && enabled != 1 {
        return Err(Failure::usage(format!(
            "--params, --uris and --data-reqs set one impulse's settings, and {enabled} impulses would run: pick one with --impulse NAME"
        )));
    }
    if let Some(block) = config.impulses.iter_mut().find(|b| b.enabled) {
        for (key, value) in &args.params {
            match block.params.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1.clone_from(value),
                None => block.params.push((key.clone(), value.clone())),
            }
        }
        if !args.uris.is_empty() {
            let uris = args
                .uris
                .iter()
                .map(|u| Uri::parse(u).map_err(|e| Failure::usage(format!("--uris {u}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            block.uris = Some(uris);
        }
        if let Some(reqs) = &args.data_reqs {
            block.data_reqs = Some(reqs.clone());
        }
    }
    Ok(config)
}

fn test(args: &TestArgs, config_path: Option<&Path>) -> Result<(), Failure> {
    let config = replay_config(args, config_path)?;
    // The golden file is read first: a missing one fails before the replay.
    let expected = match &args.expect {
        Some(expect) if !args.update => Some(read_golden(expect)?),
        _ => None,
    };
    let samples = super::import::read_recording(&args.data, config.username.as_ref())?;
    let determinism = Determinism {
        now_us: args
            .now
            .or_else(|| samples.iter().map(|s| s.ts).min())
            .unwrap_or(0),
        seed: args.seed,
    };
    let mut options = progress::agent_options();
    options.cache_dir = match config_path {
        Some(_) => None,
        None => user_cache_dir(),
    };
    let mut replay = Replay::open(&config, &options, determinism)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let count = samples.len();
    let mut out = std::io::stdout().lock();
    let show = !args.quiet && args.expect.is_none();
    let mut records = Vec::new();
    let mut golden_lines = Vec::new();
    let mut write_failed = None;
    let report = replay
        .run(samples, |record| {
            golden_lines.extend(golden::lines(&record));
            if show && write_failed.is_none() {
                let text = if args.json {
                    fire_json(&record)
                } else {
                    fire_table(&record)
                };
                if let Err(e) = out.write_all(text.as_bytes()) {
                    write_failed = Some(e);
                }
            }
            records.push(record);
        })
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let _ = out.flush();
    drop(out);
    let stats = replay.stats();
    let _ = replay.close();
    if let Some(e) = write_failed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(Failure::runtime(format!("cannot write the fires: {e}")));
    }
    eprint!(
        "{}",
        summary_text(count, &report, &replay::summarize(&records, &stats))
    );
    let Some(expect) = &args.expect else {
        return Ok(());
    };
    if args.update {
        let mut text = golden_lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_atomically(expect, text.as_bytes())
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", expect.display())))?;
        eprintln!(
            "komlogd: wrote {} line{} to {}",
            golden_lines.len(),
            plural(golden_lines.len()),
            expect.display()
        );
        return Ok(());
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    let name = expect.display().to_string();
    match golden::compare(&expected, &golden_lines, args.tolerance, &name) {
        Ok(()) => {
            eprintln!(
                "komlogd: ok: {} line{} as in {}",
                golden_lines.len(),
                plural(golden_lines.len()),
                expect.display()
            );
            Ok(())
        }
        Err(mismatch) => {
            print!("{}", mismatch.diff);
            Err(Failure::runtime(format!(
                "the replay differs from {}: {} line{} expected and not written, {} line{} written and not expected (the diff above; --update accepts this replay)",
                expect.display(),
                mismatch.missing,
                plural(mismatch.missing),
                mismatch.unexpected,
                plural(mismatch.unexpected)
            )))
        }
    }
}

/// The text of the golden file `path`.
fn read_golden(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::usage(format!(
            "{}: no such golden file; run once with --update to write it from this replay",
            path.display()
        )),
        _ => Failure::usage(format!("cannot read {}: {e}", path.display())),
    })
}

/// Write `bytes` to `path` through a temporary file beside it, so that an
/// interrupted write leaves the old file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One fire as a JSON line (no call time: the line is the same every run).
fn fire_json(record: &FireRecord) -> String {
    let sample = |s: &crate::model::Sample| {
        let (kind, value) = golden::kind_and_value(&s.value);
        serde_json::json!({"uri": s.uri, "ts": s.ts, "kind": kind, "value": value})
    };
    let (outcome, detail) = match &record.outcome {
        FireOutcome::Returned => ("ok", None),
        FireOutcome::GuestError(message) => ("error", Some(message.clone())),
        FireOutcome::Failed { kind, reason } => ("failed", Some(format!("{kind}: {reason}"))),
        FireOutcome::Skipped(why) => ("skipped", Some((*why).to_owned())),
    };
    let mut line = serde_json::json!({
        "impulse": &*record.impulse,
        "ts": record.ts,
        "depth": record.depth,
        "updated": record.updated,
        "others": record.others,
        "window_rows": record.window_rows,
        "outcome": outcome,
        "outputs": record.outputs.iter().map(sample).collect::<Vec<_>>(),
        "dropped": record.dropped.iter().map(|d| serde_json::json!({
            "uri": d.uri, "ts": d.ts, "reason": d.reason
        })).collect::<Vec<_>>(),
    });
    if let (Some(detail), Some(map)) = (detail, line.as_object_mut()) {
        map.insert("detail".into(), serde_json::Value::String(detail));
    }
    format!("{line}\n")
}

/// One fire as a few lines of text: the fire, then what it wrote.
fn fire_table(record: &FireRecord) -> String {
    let mut out = String::new();
    let cause = if record.updated.is_empty() {
        String::new()
    } else {
        format!(" ← {}", record.updated.join(", "))
    };
    let hop = if record.depth > 0 {
        format!(", hop {}", record.depth)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "{}  {}{cause}",
        format::time(record.ts),
        record.impulse
    );
    match &record.outcome {
        FireOutcome::Returned => {
            let _ = writeln!(
                out,
                "  (window {} row{}{hop})",
                record.window_rows,
                plural(record.window_rows)
            );
        }
        FireOutcome::GuestError(message) => {
            let _ = writeln!(out, "  error: {}", crate::engine::one_line(message));
        }
        FireOutcome::Failed { kind, reason } => {
            let _ = writeln!(
                out,
                "  FAILED ({kind}): {}",
                crate::engine::one_line(reason)
            );
        }
        FireOutcome::Skipped(why) => {
            let _ = writeln!(out, "  skipped: {why}");
        }
    }
    // Multi-line texts come indented below their sample's line.
    for line in format::samples(&record.outputs, false).lines() {
        let lead = if line.starts_with(' ') {
            "      "
        } else {
            "    → "
        };
        let _ = writeln!(out, "{lead}{line}");
    }
    for d in &record.dropped {
        let _ = writeln!(
            out,
            "    ✗ {} @ {}: {}",
            d.uri,
            format::time(d.ts),
            d.reason
        );
    }
    out
}

/// The summary printed on stderr.
fn summary_text(
    samples: usize,
    report: &replay::ReplayReport,
    impulses: &[(std::sync::Arc<str>, replay::ImpulseSummary)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "komlogd: replayed {samples} sample{} through {} impulse{}",
        plural(samples),
        impulses.len(),
        plural(impulses.len())
    );
    for r in report.rejected.iter().take(10) {
        let _ = writeln!(
            out,
            "  refused: {} @ {}: {}",
            r.uri,
            format::time(r.ts),
            r.reason
        );
    }
    if report.rejected.len() > 10 {
        let _ = writeln!(out, "  … and {} more refused", report.rejected.len() - 10);
    }
    for (name, s) in impulses {
        let skips: u64 = s.skips.values().sum();
        let failed: u64 = s.failures.values().sum();
        let dropped: u64 = s.dropped.values().sum();
        let _ = writeln!(
            out,
            "  {name}: {} fire{}, {skips} skipped, {} error{}, {failed} failed, {} output{}, {dropped} dropped; call p50 {}, p99 {}; memory {}",
            s.fires,
            plural(s.fires as usize),
            s.guest_errors,
            plural(s.guest_errors as usize),
            s.outputs,
            plural(s.outputs as usize),
            format::micros(s.call_p50.as_secs_f64() * 1e6),
            format::micros(s.call_p99.as_secs_f64() * 1e6),
            format::bytes(s.memory_high_water as f64),
        );
        for (why, n) in &s.skips {
            let _ = writeln!(out, "    skipped {n}: {why}");
        }
        for (kind, n) in &s.failures {
            let _ = writeln!(out, "    failed {n}: {kind}");
        }
        for (why, n) in &s.dropped {
            let _ = writeln!(out, "    dropped {n}: {why}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_reqs_take_either_or_both_and_refuse_the_rest() {
        assert_eq!(
            parse_data_reqs("past_delta=1h,past_count=100"),
            Ok(DataReqs {
                past_delta_us: Some(3_600_000_000),
                past_count: Some(100),
            })
        );
        assert_eq!(
            parse_data_reqs("past_count=5"),
            Ok(DataReqs {
                past_delta_us: None,
                past_count: Some(5),
            })
        );
        assert!(parse_data_reqs("").is_err());
        assert!(
            parse_data_reqs("past_cont=5")
                .expect_err("typo")
                .contains("past_cont")
        );
        assert!(parse_data_reqs("past_count=-1").is_err());
    }

    #[test]
    fn params_need_a_key() {
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_param("a="), Ok(("a".into(), String::new())));
        assert!(parse_param("=b").is_err());
        assert!(parse_param("ab").is_err());
    }
}
