//! The configuration reference of the manual (`docs/src/config-reference.md`),
//! generated from the key table in `schema.rs`, and the YAML examples of each
//! block that it shows and the tests parse.

use std::fmt::Write as _;

use super::schema::{Key, Repeat, SECTIONS, Section, TOP, Unset};

/// The configuration reference in Markdown: one section per block, each with a
/// table of its keys (type, default, meaning) and an example.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str(
        "<!-- Generated from the key table in host/src/config/schema.rs; do not edit. \
         Regenerate with `KOMLOGD_UPDATE_DOCS=1 cargo test -p komlogd --lib config_reference`. -->\n\n",
    );
    out.push_str(
        "Every key komlogd.yaml accepts, block by block, with its default. \
         [Configuration](configuration.md) describes the file and the rules jobs and impulses follow. \
         Booleans are `yes`/`no`, `true`/`false` or `on`/`off`; durations look like `30s`, `5min`, \
         `1h 30min` or `250ms`; sizes look like `64MiB`, `512KiB`, `10MB` or `1048576`. \
         Relative paths are relative to the file's directory. A key not listed here is an error.\n",
    );
    for section in SECTIONS {
        out.push('\n');
        if section.path.is_empty() {
            out.push_str("## Top level\n\n");
        } else {
            let _ = writeln!(out, "## `{}`\n", section.path);
        }
        let _ = writeln!(out, "{}\n", section.about);
        let top = section.path.is_empty();
        if top {
            out.push_str("| key | repeats | type | default | meaning |\n|---|---|---|---|---|\n");
        } else {
            out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        }
        for key in section.keys {
            let _ = write!(out, "| `{}` ", key.name);
            if top {
                let repeats = match key.repeat {
                    Repeat::Once => "once",
                    Repeat::Many => "many",
                };
                let _ = write!(out, "| {repeats} ");
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(key.kind),
                cell(&default_text(key)),
                cell(key.about)
            );
        }
        if let Some(example) = example(section) {
            let _ = write!(out, "\n```yaml\n{example}```\n");
        }
    }
    out
}

/// The default column.
fn default_text(key: &Key) -> String {
    match key.unset {
        Unset::Required => "required".to_owned(),
        Unset::Is(value) | Unset::Builtin(value) => format!("`{value}`"),
        Unset::Means(text) => text.to_owned(),
    }
}

/// Text fit for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The section's example: every key with its example value, inside the block
/// that holds it (with that block's required keys). `None` for a section with no
/// example value.
pub(super) fn example(section: &Section) -> Option<String> {
    let pairs: Vec<(&str, &str)> = section
        .keys
        .iter()
        .filter(|k| !k.example.is_empty())
        .map(|k| (k.name, k.example))
        .collect();
    if pairs.is_empty() {
        None
    } else {
        Some(render(section, &pairs))
    }
}

/// A file holding `pairs` (key, YAML value) in `section`: top-level entries, a
/// `- block:`, or a nested map inside its block beside the block's required keys.
pub(super) fn render(section: &Section, pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    if section.path.is_empty() {
        for (name, value) in pairs {
            let _ = writeln!(out, "- {name}: {value}");
        }
    } else if let Some((parent, child)) = section.path.split_once('.') {
        let _ = writeln!(out, "- {parent}:");
        for key in required(parent) {
            let _ = writeln!(out, "    {}: {}", key.name, key.example);
        }
        let _ = writeln!(out, "    {child}:");
        for (name, value) in pairs {
            let _ = writeln!(out, "      {name}: {value}");
        }
    } else {
        let _ = writeln!(out, "- {}:", section.path);
        for (name, value) in pairs {
            let _ = writeln!(out, "    {name}: {value}");
        }
    }
    out
}

/// The required keys of the block at `path`.
pub(super) fn required(path: &str) -> impl Iterator<Item = &'static Key> {
    SECTIONS
        .iter()
        .filter(move |s| s.path == path && s.path != TOP.path)
        .flat_map(|s| s.keys.iter())
        .filter(|k| k.unset == Unset::Required)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed reference.
    const REFERENCE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/src/config-reference.md"
    );

    /// The drift guard: the committed reference is what the key table generates.
    #[test]
    fn config_reference_is_current() {
        let generated = reference_markdown();
        if std::env::var_os("KOMLOGD_UPDATE_DOCS").is_some_and(|v| v == "1") {
            std::fs::write(REFERENCE, &generated).expect("write docs/src/config-reference.md");
            return;
        }
        let committed = std::fs::read_to_string(REFERENCE).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/src/config-reference.md is not what the key table in host/src/config/schema.rs \
             generates: run `KOMLOGD_UPDATE_DOCS=1 cargo test -p komlogd --lib config_reference` to update it"
        );
    }

    #[test]
    fn every_key_has_a_row_and_every_block_a_heading() {
        let text = reference_markdown();
        for section in SECTIONS {
            if !section.path.is_empty() {
                assert!(text.contains(&format!("\n## `{}`\n", section.path)));
            }
            for key in section.keys {
                assert!(
                    text.contains(&format!("\n| `{}` |", key.name)),
                    "{}.{}",
                    section.path,
                    key.name
                );
            }
        }
        assert!(text.contains("| `max_chain_depth` | once | integer, 1 to 64 | `8` |"));
        assert!(
            text.contains(
                "| `url` | an `http://`, `https://`, `ws://` or `wss://` URL | required, unless `urls` is given |"
            )
        );
    }

    #[test]
    fn nested_examples_sit_in_their_block() {
        let data_reqs = SECTIONS
            .iter()
            .find(|s| s.path == "impulses.data_reqs")
            .expect("a data_reqs section");
        assert_eq!(
            example(data_reqs).as_deref(),
            Some(
                "- impulses:\n    filename: impulses/cpu_alarm.wasm\n    data_reqs:\n      past_delta: 1h\n      past_count: 10\n"
            )
        );
        assert_eq!(
            render(&TOP, &[("max_chain_depth", "8")]),
            "- max_chain_depth: 8\n"
        );
    }
}
