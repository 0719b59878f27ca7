//! `- package:` blocks: WebAssembly collectors, the instance pool each runs in
//! (`venv`, kept from the pip era), their parameters, limits and sandbox grants.
//!
//! Packages used to be pip requirements; an `install` value that still looks like
//! one is refused with an explanation rather than treated as a file name.

use std::path::PathBuf;

use super::limits::{Limits, parse_limits};
use super::params::parse_params;
use super::schema::{GRANT_KEYS, PACKAGE_KEYS};
use super::yaml::{Ctx, Node, line};

/// One `- package:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageConfig {
    /// Line of the `package` key.
    pub line: usize,
    /// The component (`install`), resolved against the config file's directory.
    pub install: PathBuf,
    /// `enabled` (default true).
    pub enabled: bool,
    /// The instance pool the package runs in.
    pub venv: Venv,
    /// `params` in file order, values rendered as text (lists and maps as JSON).
    pub params: Vec<(String, String)>,
    /// `limits` of this package (unset ones fall back to the agent-wide `- limits:`).
    pub limits: Limits,
    /// What the sandbox may see (nothing by default).
    pub grants: Grants,
    /// `refresh` in microseconds: how often to reload the package, if at all.
    pub refresh_us: Option<u64>,
}

/// Where a package runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Venv {
    /// The shared default pool (`default`, empty or absent).
    Default,
    /// An instance of its own (`isolated`, or `unique` as the original docs said).
    Isolated,
    /// A pool shared by every package naming it.
    Named(String),
}

/// Capabilities granted to a package's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Directories opened read-only inside the sandbox, resolved.
    pub dirs: Vec<PathBuf>,
    /// Names of environment variables passed in.
    pub env: Vec<String>,
}

/// Read one `package` block whose key is on `key_line`.
pub(super) fn parse_package(
    ctx: &mut Ctx<'_>,
    key_line: usize,
    node: &Node,
) -> Option<PackageConfig> {
    let block = ctx.block("package", node, PACKAGE_KEYS)?;
    let errors_before = ctx.errors.len();

    let install = match block.raw("install") {
        None => {
            ctx.error(
                key_line,
                "package: missing required key `install` (the .wasm component of the package)",
            );
            None
        }
        Some(n) => ctx.string("package.install", n).and_then(|text| {
            match pip_like(&text) {
                Some(why) => {
                    ctx.error(
                        line(n),
                        format!(
                            "package.install: {text:?} looks like a pip requirement ({why}); packages are WebAssembly components now: give the path of the package's .wasm file, relative to the config file's directory"
                        ),
                    );
                    None
                }
                None => Some(ctx.resolve(std::path::Path::new(&text))),
            }
        }),
    };
    let enabled = match block.get("enabled") {
        Some(n) => ctx.boolean("package.enabled", n).unwrap_or(true),
        None => true,
    };
    let venv = match block.get("venv") {
        None => Venv::Default,
        Some(n) => match ctx.scalar_text(n) {
            None => {
                ctx.expected(
                    "package.venv",
                    "a pool name (default, isolated or a name of your own)",
                    n,
                );
                Venv::Default
            }
            Some(name) => match name.trim() {
                "" | "default" => Venv::Default,
                "isolated" | "unique" => Venv::Isolated,
                other if is_pool_name(other) => Venv::Named(other.to_owned()),
                other => {
                    ctx.error(
                        line(n),
                        format!("package.venv: {other:?} is not a valid pool name: use letters, digits, `_`, `.` and `-` only"),
                    );
                    Venv::Default
                }
            },
        },
    };
    let params = block
        .get("params")
        .map(|n| parse_params(ctx, "package.params", n))
        .unwrap_or_default();
    let limits = block
        .get("limits")
        .map(|n| parse_limits(ctx, "package.limits", n))
        .unwrap_or_default();
    let grants = block
        .get("grants")
        .map(|n| parse_grants(ctx, n))
        .unwrap_or_default();
    let refresh_us = block
        .get("refresh")
        .and_then(|n| ctx.duration_us("package.refresh", n));

    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(PackageConfig {
        line: key_line,
        install: install?,
        enabled,
        venv,
        params,
        limits,
        grants,
        refresh_us,
    })
}

/// Why `install` looks like a pip requirement rather than a `.wasm` path, if it does.
fn pip_like(text: &str) -> Option<&'static str> {
    if text.contains("--") {
        Some("it has a `--` option")
    } else if text.contains("==") {
        Some("it pins a version with `==`")
    } else if text.chars().any(char::is_whitespace) {
        Some("it has spaces; if it really is a file name, rename the file without spaces")
    } else if !text.to_ascii_lowercase().ends_with(".wasm") {
        Some("it does not end in .wasm")
    } else {
        None
    }
}

/// True for `[A-Za-z0-9_.-]+`.
fn is_pool_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_grants(ctx: &mut Ctx<'_>, node: &Node) -> Grants {
    let mut grants = Grants::default();
    let Some(block) = ctx.block("package.grants", node, GRANT_KEYS) else {
        return grants;
    };
    if let Some(n) = block.get("dirs") {
        for item in ctx.list("package.grants.dirs", n) {
            if let Some(dir) = ctx.path("package.grants.dirs", item) {
                grants.dirs.push(dir);
            }
        }
    }
    if let Some(n) = block.get("env") {
        for item in ctx.list("package.grants.env", n) {
            let Some(name) = ctx.string("package.grants.env", item) else {
                continue;
            };
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if valid {
                grants.env.push(name);
            } else {
                ctx.error(
                    line(item),
                    format!("package.grants.env: {name:?} is not an environment variable name (letters, digits and `_`, not starting with a digit)"),
                );
            }
        }
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_requirements_are_recognised() {
        assert!(pip_like("--upgrade SomePackage").is_some());
        assert!(pip_like("SomePackage==1.0").is_some());
        assert!(pip_like("kpack_linux").is_some());
        assert!(pip_like("git+ssh://git@github.com/komlog-io/kpack_linux.git").is_some());
        assert!(pip_like("my pkg.wasm").is_some());
        assert!(pip_like("packages/linux.wasm").is_none());
        assert!(pip_like("/opt/Linux.WASM").is_none());
    }
}
