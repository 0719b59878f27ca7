//! `- impulses:` blocks: which WebAssembly component runs, on which uris, with what
//! window of past data, parameters and limits; and the naming rule that keeps the
//! names of enabled impulses unique.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::limits::{Limits, parse_limits};
use super::params::parse_params;
use super::schema::{DATA_REQS_KEYS, IMPULSE_KEYS};
use super::yaml::{Ctx, Node, line};
use crate::model::{Uri, Username, repeated_uris};

/// One `- impulses:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpulseConfig {
    /// Unique among enabled impulses: `name`, else the file stem; repeats get `#2`, `#3`… in file order.
    pub name: String,
    /// Line of the `impulses` key.
    pub line: usize,
    /// `enabled` (default true); disabled blocks are kept but never run.
    pub enabled: bool,
    /// The component, resolved against the config file's directory.
    pub filename: PathBuf,
    /// `uris` (own `a.b` or another user's `user:a.b`); `None` lets the module's defaults apply.
    pub uris: Option<Vec<Uri>>,
    /// `data_reqs`: the window of past data each call receives.
    pub data_reqs: Option<DataReqs>,
    /// `min_exec_delta` in microseconds: runs closer together than this are skipped.
    pub min_exec_delta_us: Option<u64>,
    /// `params` in file order, each value rendered as text (lists and maps as JSON).
    pub params: Vec<(String, String)>,
    /// `limits` of this impulse (unset ones fall back to the agent-wide `- limits:`).
    pub limits: Limits,
}

/// How much past data an impulse wants with each call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataReqs {
    /// `past_delta`: samples newer than the firing sample's time minus this, in microseconds.
    pub past_delta_us: Option<u64>,
    /// `past_count`: at least this many of the latest samples of each uri.
    pub past_count: Option<u32>,
}

/// A parsed block, and whether its name was written (not derived from the file).
pub(super) struct ParsedImpulse {
    pub(super) config: ImpulseConfig,
    pub(super) explicit_name: bool,
    /// The line of each of `config.uris`.
    pub(super) uri_lines: Vec<usize>,
}

/// Read one `impulses` block whose key is on `key_line`.
pub(super) fn parse_impulse(
    ctx: &mut Ctx<'_>,
    key_line: usize,
    node: &Node,
) -> Option<ParsedImpulse> {
    let block = ctx.block("impulses", node, IMPULSE_KEYS)?;
    let errors_before = ctx.errors.len();

    let enabled = match block.get("enabled") {
        Some(n) => ctx.boolean("impulses.enabled", n).unwrap_or(true),
        None => true,
    };
    let filename = match block.raw("filename") {
        None => {
            ctx.error(
                key_line,
                "impulses: missing required key `filename` (the .wasm component to run)",
            );
            None
        }
        Some(n) => ctx.string("impulses.filename", n).and_then(|text| {
            let path = Path::new(&text);
            if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("py")) {
                ctx.error(
                    line(n),
                    format!(
                        "impulses.filename: {text:?} is a Python file; impulses are WebAssembly components now: build the impulse as a .wasm component and name that file"
                    ),
                );
                None
            } else {
                Some(ctx.resolve(path))
            }
        }),
    };
    let explicit = block.get("name").and_then(|n| {
        let name = ctx.string("impulses.name", n)?;
        if is_name(&name) {
            Some(name)
        } else {
            ctx.error(
                line(n),
                format!("impulses.name: {name:?} is not a valid name: use letters, digits, `_`, `.` and `-` only"),
            );
            None
        }
    });
    let mut uri_lines = Vec::new();
    let uris = block.get("uris").map(|n| {
        let mut uris = Vec::new();
        for item in ctx.list("impulses.uris", n) {
            let Some(text) = ctx.string("impulses.uris", item) else {
                continue;
            };
            match Uri::parse(&text) {
                Ok(uri) => {
                    uris.push(uri);
                    uri_lines.push(line(item));
                }
                Err(e) => ctx.error(line(item), format!("impulses.uris: {e}")),
            }
        }
        uris
    });
    let data_reqs = block.get("data_reqs").and_then(|n| parse_data_reqs(ctx, n));
    let min_exec_delta_us = block
        .get("min_exec_delta")
        .and_then(|n| ctx.duration_us("impulses.min_exec_delta", n));
    let params = block
        .get("params")
        .map(|n| parse_params(ctx, "impulses.params", n))
        .unwrap_or_default();
    let limits = block
        .get("limits")
        .map(|n| parse_limits(ctx, "impulses.limits", n))
        .unwrap_or_default();

    if ctx.errors.len() > errors_before {
        return None;
    }
    let filename = filename?;
    let explicit_name = explicit.is_some();
    let name = explicit.unwrap_or_else(|| default_name(&filename));
    Some(ParsedImpulse {
        config: ImpulseConfig {
            name,
            line: key_line,
            enabled,
            filename,
            uris,
            data_reqs,
            min_exec_delta_us,
            params,
            limits,
        },
        explicit_name,
        uri_lines,
    })
}

fn parse_data_reqs(ctx: &mut Ctx<'_>, node: &Node) -> Option<DataReqs> {
    let block = ctx.block("impulses.data_reqs", node, DATA_REQS_KEYS)?;
    Some(DataReqs {
        past_delta_us: block
            .get("past_delta")
            .and_then(|n| ctx.duration_us("impulses.data_reqs.past_delta", n)),
        past_count: block
            .get("past_count")
            .and_then(|n| ctx.uint32("impulses.data_reqs.past_count", n)),
    })
}

/// True for `[A-Za-z0-9_.-]+`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The file stem, with characters a name may not hold replaced by `_`.
fn default_name(filename: &Path) -> String {
    let stem = filename
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "impulse".to_owned()
    } else {
        name
    }
}

/// Drop the repeats of a uri in each block's `uris` (the same uri written twice,
/// or `user:x` beside `x` for the agent's own user), keeping the first, with a
/// warning at the repeat's line: an impulse subscribes to each uri once.
pub(super) fn drop_repeated_uris(
    ctx: &mut Ctx<'_>,
    parsed: &mut [ParsedImpulse],
    me: Option<&Username>,
) {
    for p in parsed {
        let Some(uris) = p.config.uris.as_mut() else {
            continue;
        };
        let repeats = repeated_uris(uris, me);
        for &(repeat, first) in &repeats {
            let (a, b) = (&uris[repeat], &uris[first]);
            let what = if a == b {
                format!("`{a}` is listed more than once")
            } else {
                format!(
                    "`{a}` is the same uri as `{b}` (line {})",
                    p.uri_lines[first]
                )
            };
            ctx.warn(
                p.uri_lines[repeat],
                format!("impulses.uris: {what}; the repeat is ignored (an impulse subscribes to each uri once)"),
            );
        }
        for &(repeat, _) in repeats.iter().rev() {
            uris.remove(repeat);
            p.uri_lines.remove(repeat);
        }
    }
}

/// Make the names of enabled impulses unique: the second `x` becomes `x#2`, the third
/// `x#3`, in file order. Disabled blocks keep their name. A written name that had to
/// be changed is warned about.
pub(super) fn assign_unique_names(
    ctx: &mut Ctx<'_>,
    parsed: Vec<ParsedImpulse>,
) -> Vec<ImpulseConfig> {
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut out = Vec::with_capacity(parsed.len());
    for ParsedImpulse {
        mut config,
        explicit_name,
        ..
    } in parsed
    {
        if config.enabled {
            let entry = seen.entry(config.name.clone()).or_insert((0, config.line));
            entry.0 += 1;
            let (count, first_line) = *entry;
            if count > 1 {
                let unique = format!("{}#{count}", config.name);
                if explicit_name {
                    ctx.warn(
                        config.line,
                        format!(
                            "impulses.name: `{}` is already used by the impulses block at line {first_line}; this one is called `{unique}`",
                            config.name
                        ),
                    );
                }
                config.name = unique;
            }
        }
        out.push(config);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("cpu_alarm-2.v1"));
        assert!(!is_name("cpu alarm"));
        assert!(!is_name("a#2"));
        assert!(!is_name(""));
        assert_eq!(default_name(Path::new("/x/cpu alarm.wasm")), "cpu_alarm");
        assert_eq!(default_name(Path::new("/x/stats.v2.wasm")), "stats.v2");
    }
}
