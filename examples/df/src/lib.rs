//! `df`: disk usage per mount point from the text of `df -k`.
//!
//! For each uri in `ctx.updated` that is a datasource series, it takes the
//! text at `ctx.ts` (else the last one in the window), parses it as the
//! output of `df -k` (see [`parse`] for the accepted formats) and writes, for
//! each filesystem line, the datapoint `<uri>.<mount>.used_pct` at `ctx.ts`
//! = used / (used + available) × 100 (0 when both are 0).
//!
//! `<mount>` is the mount point as one uri level: leading `/` stripped,
//! every character outside `[A-Za-z0-9_-]` replaced by `_`, and `/` alone
//! becomes `root` (`/boot/efi` → `boot_efi`, `/media/My Disk` →
//! `media_My_Disk`). Mount points may contain spaces.
//!
//! Lines that don't parse are skipped with a warning in the agent's log; so
//! are later mount points that map to a level already written. A text
//! without a `df -k` header is skipped with a warning too (it is data, not a
//! failure of the impulse). Datapoint uris are skipped. `describe()` returns
//! `None`: the uris come from the configuration.

pub mod parse;

use komlog_guest::prelude::*;

use parse::{mount_level, parse_df};

/// Disk usage from `df -k` texts.
pub struct Df;

/// The samples for one `df -k` text of `uri` at `ts`, and the warnings to log.
pub fn samples_for(uri: &str, ts: i64, text: &str) -> (Vec<Sample>, Vec<String>) {
    let mut warnings = Vec::new();
    let report = match parse_df(text) {
        Ok(r) => r,
        Err(e) => {
            warnings.push(format!("df: {uri}: {e}"));
            return (Vec::new(), warnings);
        }
    };
    for s in &report.skipped {
        warnings.push(format!("df: {uri}: line {} skipped: {}", s.line, s.reason));
    }
    let mut samples: Vec<Sample> = Vec::with_capacity(report.filesystems.len());
    for fs in &report.filesystems {
        let out = format!("{uri}.{}.used_pct", mount_level(&fs.mount));
        if samples.iter().any(|s| s.uri == out) {
            warnings.push(format!(
                "df: {uri}: mount point `{}` maps to {out} again, skipped",
                fs.mount
            ));
            continue;
        }
        samples.push(Sample::datapoint(out, ts, fs.used_pct()));
    }
    (samples, warnings)
}

impl Impulse for Df {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let window = ctx.window()?;
        let mut out = Vec::new();
        for uri in &ctx.updated {
            let Some(series) = window.series(uri) else {
                log::warn(&format!("df: no samples of {uri} in the window"));
                continue;
            };
            let latest = series.at(ctx.ts).or_else(|| series.last().map(|(_, v)| v));
            let Some(text) = latest.and_then(|v| v.as_datasource()) else {
                log::debug(&format!("df: {uri} is not a datasource series, skipped"));
                continue;
            };
            let (samples, warnings) = samples_for(uri, ctx.ts, text);
            for w in &warnings {
                log::warn(w);
            }
            out.extend(samples);
        }
        Ok(out)
    }
}

komlog_guest::export_impulse!(Df);

#[cfg(test)]
mod tests {
    use super::*;
    use komlog_guest::window::encode;

    const TEXT: &str = "\
Filesystem     1K-blocks     Used Available Use% Mounted on
/dev/sda2            100       25        75  25% /
/dev/sda1             10        0         0   0% /boot/efi
/dev/sdb1            300      100       200  34% /media/My Disk
/dev/sdc1            300      oops      200  34% /broken
bind                 300      150       150  50% /boot/efi
";

    #[test]
    fn samples_per_mount_point() {
        let (samples, warnings) = samples_for("host.df", 7, TEXT);
        assert_eq!(
            samples,
            vec![
                Sample::datapoint("host.df.root.used_pct", 7, 25.0),
                Sample::datapoint("host.df.boot_efi.used_pct", 7, 0.0),
                Sample::datapoint("host.df.media_My_Disk.used_pct", 7, 100.0 / 300.0 * 100.0),
            ]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("df: host.df: line 5 skipped: "),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("maps to host.df.boot_efi.used_pct again"));
    }

    #[test]
    fn not_df_text_gives_a_warning_and_nothing_else() {
        let (samples, warnings) = samples_for("x", 1, "hello");
        assert!(samples.is_empty());
        assert_eq!(
            warnings,
            vec!["df: x: not the output of `df -k`: unexpected header `hello`".to_string()]
        );
    }

    #[test]
    fn on_update_uses_the_text_at_ts_of_updated_datasources() {
        let window = encode(&[
            Series::datasource(
                "a.df",
                vec![1, 5],
                [
                    "Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/x 4 4 0 100% /\n",
                    TEXT,
                ],
            ),
            Series::datapoint("num", vec![5], vec![1.0]),
            Series::datasource(
                "other.df",
                vec![5],
                ["Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/x 4 1 3 25% /x\n"],
            ),
        ])
        .unwrap();
        let ctx = Context::new(
            5,
            vec!["a.df".into(), "num".into()],
            vec!["other.df".into()],
            vec![],
            window,
        );
        let out = Df::on_update(ctx).unwrap();
        let uris: Vec<&str> = out.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            vec![
                "a.df.root.used_pct",
                "a.df.boot_efi.used_pct",
                "a.df.media_My_Disk.used_pct"
            ]
        );
        assert!(out.iter().all(|s| s.ts == 5));
    }
}
