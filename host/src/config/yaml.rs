//! Marked-node helpers: loading a komlogd-style YAML list with saphyr's
//! `MarkedYamlOwned` (a span per node), typed getters that record a diagnostic with
//! the node's line instead of failing, and blocks (maps of settings) that refuse
//! keys they do not know.
//!
//! Nothing here knows what a key means; the per-concern files do.

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use super::error::{ConfigError, ConfigWarning};
use crate::model::{parse_bytes, parse_duration_us};

/// A YAML node with its position in the file.
pub(super) type Node = MarkedYamlOwned;

/// 1-based line where `node` starts.
pub(super) fn line(node: &Node) -> usize {
    node.span.start.line().max(1)
}

/// A scalar as YAML 1.2 (core schema) resolved it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scalar<'n> {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false` (YAML 1.2: `yes` is a string).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (including `.inf` and `.nan`).
    Float(f64),
    /// Anything else, quoted or not.
    Str(&'n str),
}

/// The shape of a node, with tags looked through.
pub(super) enum View<'n> {
    /// A scalar.
    Scalar(Scalar<'n>),
    /// A sequence.
    Seq(&'n [Node]),
    /// A mapping, in file order.
    Map(Vec<(&'n Node, &'n Node)>),
    /// Something saphyr could not resolve (a bad alias or a tag it could not apply).
    Bad,
}

/// Look at a node's shape.
pub(super) fn view(node: &Node) -> View<'_> {
    match &node.data {
        YamlDataOwned::Value(v) => View::Scalar(match v {
            ScalarOwned::Null => Scalar::Null,
            ScalarOwned::Boolean(b) => Scalar::Bool(*b),
            ScalarOwned::Integer(i) => Scalar::Int(*i),
            ScalarOwned::FloatingPoint(f) => Scalar::Float(f.0),
            ScalarOwned::String(s) => Scalar::Str(s),
        }),
        YamlDataOwned::Representation(s, _, _) => View::Scalar(Scalar::Str(s)),
        YamlDataOwned::Sequence(items) => View::Seq(items),
        YamlDataOwned::Mapping(map) => View::Map(map.iter().collect()),
        YamlDataOwned::Tagged(_, inner) => view(inner),
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => View::Bad,
    }
}

/// True for `~`, `null` and an empty value.
pub(super) fn is_null(node: &Node) -> bool {
    matches!(view(node), View::Scalar(Scalar::Null))
}

/// A top-level entry: the one key of a `- key: value` item.
pub(super) struct Entry<'n> {
    /// The key as written.
    pub(super) key: String,
    /// The key's line.
    pub(super) line: usize,
    /// The value.
    pub(super) value: &'n Node,
}

/// Parsing state of one file: where relative paths start, the source text (to show
/// numbers as written) and the diagnostics found so far.
pub(super) struct Ctx<'s> {
    /// The file as named in diagnostics.
    pub(super) file: PathBuf,
    /// The directory relative paths are resolved against.
    pub(super) dir: PathBuf,
    src: &'s str,
    ascii: bool,
    /// Errors found so far.
    pub(super) errors: Vec<ConfigError>,
    /// Warnings found so far.
    pub(super) warnings: Vec<ConfigWarning>,
}

impl<'s> Ctx<'s> {
    /// A context for `src`, read from `file`, with relative paths under `dir`.
    pub(super) fn new(file: PathBuf, dir: PathBuf, src: &'s str) -> Self {
        Ctx {
            file,
            dir,
            src,
            ascii: src.is_ascii(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Record an error at `line`.
    pub(super) fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: Some(line),
            column: None,
            message: message.into(),
        });
    }

    /// Record a warning at `line`.
    pub(super) fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            file: self.file.clone(),
            line,
            message: message.into(),
        });
    }

    /// Parse the text as one YAML document. `None` after a syntax error (recorded)
    /// and for an empty document.
    pub(super) fn load(&mut self) -> Option<Node> {
        let mut docs = match Node::load_from_str(self.src) {
            Ok(docs) => docs,
            Err(e) => {
                let mark = e.marker();
                self.errors.push(ConfigError {
                    file: self.file.clone(),
                    line: Some(mark.line().max(1)),
                    column: Some(mark.col() + 1),
                    message: format!("YAML syntax error: {}", e.info()),
                });
                return None;
            }
        };
        if docs.len() > 1 {
            let second = line(&docs[1]);
            self.error(
                second,
                format!(
                    "found {} YAML documents (separated by `---`); the file must hold a single list of `- key: value` entries",
                    docs.len()
                ),
            );
            return None;
        }
        docs.pop()
    }

    /// The entries of the top-level list. A document that is not a list, and items
    /// that are not one-key maps, are recorded as errors and skipped.
    pub(super) fn entries<'n>(&mut self, doc: Option<&'n Node>) -> Vec<Entry<'n>> {
        let Some(doc) = doc else {
            return Vec::new();
        };
        let items = match view(doc) {
            View::Seq(items) => items,
            View::Scalar(Scalar::Null) | View::Bad => return Vec::new(),
            View::Map(_) => {
                self.error(
                    line(doc),
                    "the top level must be a list of one-key entries, found a map: write each top-level key as a list item (`- username: alice`)",
                );
                return Vec::new();
            }
            View::Scalar(_) => {
                let found = self.found(doc);
                self.error(
                    line(doc),
                    format!("the top level must be a list of one-key entries (`- username: alice`), found {found}"),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let pairs = match view(item) {
                View::Map(pairs) => pairs,
                _ => {
                    let found = self.found(item);
                    self.error(
                        line(item),
                        format!("each entry must be a one-key map such as `- username: alice`, found {found}"),
                    );
                    continue;
                }
            };
            match pairs.as_slice() {
                [] => self.error(
                    line(item),
                    "each entry must be a one-key map such as `- username: alice`, found an empty map",
                ),
                [(key, value)] => {
                    if let Some(name) = self.key_name(key) {
                        out.push(Entry {
                            key: name,
                            line: line(key),
                            value,
                        });
                    }
                }
                [(first, _), ..] => {
                    let names: Vec<String> = pairs
                        .iter()
                        .map(|(k, _)| format!("`{}`", self.scalar_text(k).unwrap_or_default()))
                        .collect();
                    let head = self.scalar_text(first).unwrap_or_default();
                    self.error(
                        line(first),
                        format!(
                            "entry has {} keys ({}) but must have exactly one; if the others are settings of `{head}`, indent them further than `{head}`",
                            pairs.len(),
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        out
    }

    /// The text of a map key; keys that are lists or maps are errors.
    pub(super) fn key_name(&mut self, key: &Node) -> Option<String> {
        match self.scalar_text(key) {
            Some(name) => Some(name),
            None => {
                let found = self.found(key);
                self.error(line(key), format!("a key must be a name, found {found}"));
                None
            }
        }
    }

    /// The source text of a plain scalar as written (`0.50`, `0x1F`), without any
    /// anchor or tag in front of it. `None` when not available (an alias).
    fn source_text(&self, node: &Node) -> Option<&'s str> {
        let (start, end) = (node.span.start.index(), node.span.end.index());
        if end <= start {
            return None;
        }
        let slice = if self.ascii {
            self.src.get(start..end)?
        } else {
            let mut offsets = self
                .src
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(self.src.len()));
            let from = offsets.nth(start)?;
            let to = offsets.nth(end - start - 1)?;
            self.src.get(from..to)?
        };
        let token = slice.split_whitespace().last()?;
        (!token.starts_with(['*', '&', '!'])).then_some(token)
    }

    /// The text of a scalar: strings as they are, numbers and booleans as written,
    /// null as `None`. Lists and maps give `None`.
    pub(super) fn scalar_text(&self, node: &Node) -> Option<String> {
        match view(node) {
            View::Scalar(Scalar::Str(s)) => Some(s.to_owned()),
            View::Scalar(Scalar::Int(i)) => Some(
                self.source_text(node)
                    .map_or_else(|| i.to_string(), str::to_owned),
            ),
            View::Scalar(Scalar::Float(f)) => Some(
                self.source_text(node)
                    .map_or_else(|| format_float(f), str::to_owned),
            ),
            View::Scalar(Scalar::Bool(b)) => Some(
                self.source_text(node)
                    .map_or_else(|| b.to_string(), str::to_owned),
            ),
            View::Scalar(Scalar::Null) | View::Seq(_) | View::Map(_) | View::Bad => None,
        }
    }

    /// How a node reads in an error message: `"ten"`, `12`, `true`, `null`, `a list`.
    pub(super) fn found(&self, node: &Node) -> String {
        match view(node) {
            View::Scalar(Scalar::Str(s)) => format!("{s:?}"),
            View::Scalar(Scalar::Null) => "null".to_owned(),
            View::Scalar(_) => self.scalar_text(node).unwrap_or_default(),
            View::Seq(_) => "a list".to_owned(),
            View::Map(_) => "a map".to_owned(),
            View::Bad => "an unresolvable value".to_owned(),
        }
    }

    /// Record `what: expected …, found …` at the node's line.
    pub(super) fn expected(&mut self, what: &str, expected: &str, node: &Node) {
        let found = self.found(node);
        self.error(
            line(node),
            format!("{what}: expected {expected}, found {found}"),
        );
    }

    /// A non-empty string (numbers and booleans as written count as text).
    pub(super) fn string(&mut self, what: &str, node: &Node) -> Option<String> {
        match self.scalar_text(node) {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.error(line(node), format!("{what}: must not be empty"));
                None
            }
            None => {
                self.expected(what, "a string", node);
                None
            }
        }
    }

    /// A boolean: `true`/`false`, `yes`/`no`, `on`/`off` in any case.
    pub(super) fn boolean(&mut self, what: &str, node: &Node) -> Option<bool> {
        match view(node) {
            View::Scalar(Scalar::Bool(b)) => Some(b),
            View::Scalar(Scalar::Str(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Some(true),
                "false" | "no" | "off" => Some(false),
                _ => {
                    self.expected(what, "a boolean (yes/no, true/false, on/off)", node);
                    None
                }
            },
            _ => {
                self.expected(what, "a boolean (yes/no, true/false, on/off)", node);
                None
            }
        }
    }

    /// A non-negative integer (an integral float such as `1e9` is accepted).
    pub(super) fn uint(&mut self, what: &str, node: &Node) -> Option<u64> {
        match view(node) {
            View::Scalar(Scalar::Int(i)) if i >= 0 => u64::try_from(i).ok(),
            View::Scalar(Scalar::Float(f))
                if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 =>
            {
                Some(f as u64)
            }
            _ => {
                self.expected(what, "a non-negative integer", node);
                None
            }
        }
    }

    /// A non-negative integer that fits in 32 bits.
    pub(super) fn uint32(&mut self, what: &str, node: &Node) -> Option<u32> {
        let n = self.uint(what, node)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    line(node),
                    format!("{what}: {n} is too large (at most {})", u32::MAX),
                );
                None
            }
        }
    }

    /// A duration such as `30s`, `5min`, `1h 30min`, in microseconds.
    pub(super) fn duration_us(&mut self, what: &str, node: &Node) -> Option<u64> {
        let Some(text) = self.scalar_text(node) else {
            self.expected(what, "a duration such as 30s, 5min or 1h", node);
            return None;
        };
        match parse_duration_us(&text) {
            Ok(us) => Some(us),
            Err(e) => {
                self.error(line(node), format!("{what}: {e}"));
                None
            }
        }
    }

    /// A byte size: an integer, or a number with a unit such as `64MiB` or `10MB`.
    pub(super) fn bytes(&mut self, what: &str, node: &Node) -> Option<u64> {
        if let View::Scalar(Scalar::Int(i)) = view(node) {
            return match u64::try_from(i) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.expected(what, "a size such as 10000000, 10MB or 64MiB", node);
                    None
                }
            };
        }
        let Some(text) = self.scalar_text(node) else {
            self.expected(what, "a size such as 10000000, 10MB or 64MiB", node);
            return None;
        };
        match parse_bytes(&text) {
            Ok(n) => Some(n),
            Err(e) => {
                self.error(line(node), format!("{what}: {e}"));
                None
            }
        }
    }

    /// A path; relative paths are resolved against the config file's directory.
    pub(super) fn path(&mut self, what: &str, node: &Node) -> Option<PathBuf> {
        let text = self.string(what, node)?;
        if text == "~" || text.starts_with("~/") {
            self.warn(
                line(node),
                format!("{what}: `~` is not expanded in {text:?}; write the full path, or a path relative to the config file's directory"),
            );
        }
        Some(self.resolve(Path::new(&text)))
    }

    /// `path` if absolute, else `dir/path`.
    pub(super) fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// One value or a list of values: the nodes to read.
    pub(super) fn one_or_many<'n>(&self, node: &'n Node) -> Vec<&'n Node> {
        match view(node) {
            View::Seq(items) => items.iter().collect(),
            _ => vec![node],
        }
    }

    /// A list of values (one scalar is taken as a list of one).
    pub(super) fn list<'n>(&mut self, what: &str, node: &'n Node) -> Vec<&'n Node> {
        match view(node) {
            View::Map(_) | View::Bad => {
                self.expected(what, "a list", node);
                Vec::new()
            }
            _ => self.one_or_many(node),
        }
    }

    /// Read a map of settings. Null reads as an empty block; anything but a map is an
    /// error. Keys not in `known` are errors (a typo must not drop a setting).
    pub(super) fn block<'n>(
        &mut self,
        path: &str,
        node: &'n Node,
        known: &'static [&'static str],
    ) -> Option<Block<'n>> {
        let pairs = match view(node) {
            View::Map(pairs) => pairs,
            View::Scalar(Scalar::Null) => Vec::new(),
            _ => {
                self.expected(path, "a map of settings", node);
                return None;
            }
        };
        let mut fields = Vec::new();
        for (key, value) in pairs {
            let Some(name) = self.key_name(key) else {
                continue;
            };
            if known.contains(&name.as_str()) {
                #[cfg(test)]
                reads::record_present(path, &name);
                fields.push((name, line(key), value));
            } else {
                self.error(
                    line(key),
                    unknown_key_message(&name, &format!("in {path} block"), known),
                );
            }
        }
        Some(Block {
            path: path.to_owned(),
            known,
            fields,
        })
    }
}

/// A map of settings whose keys were checked against a known list.
pub(super) struct Block<'n> {
    /// The block as named in messages (`impulses.limits`).
    path: String,
    /// The keys it may hold; reading any other is a bug of the parser.
    known: &'static [&'static str],
    fields: Vec<(String, usize, &'n Node)>,
}

impl<'n> Block<'n> {
    /// The value of `key`, or `None` if it is absent or null.
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.raw(key).filter(|n| !is_null(n))
    }

    /// The value of `key` even if null, or `None` if absent.
    pub(super) fn raw(&self, key: &str) -> Option<&'n Node> {
        debug_assert!(
            self.known.contains(&key),
            "the parser reads `{key}` in {}, which is not in its key table",
            self.path
        );
        #[cfg(test)]
        reads::record(&self.path, key);
        self.fields
            .iter()
            .find(|(name, _, _)| name == key)
            .map(|(_, _, node)| *node)
    }
}

/// `unknown key `foo` <place>; known keys: a, b` plus a "did you mean" hint when a
/// known key is close. `place` reads like `in impulses block` or `at the top level`.
pub(super) fn unknown_key_message(name: &str, place: &str, known: &[&str]) -> String {
    let guess = known
        .iter()
        .map(|k| (edit_distance(&name.to_ascii_lowercase(), k), *k))
        .filter(|(d, k)| *d <= 2.min(k.len() / 2).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    format!(
        "unknown key `{name}` {place}; known keys: {}{guess}",
        known.join(", ")
    )
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The keys the parser has looked up in blocks, and the keys it found, on this
/// thread, as `(block, key)`: the tests compare them with the key table.
#[cfg(test)]
pub(super) mod reads {
    use std::cell::RefCell;

    thread_local! {
        static READS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
        static PRESENT: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    }

    /// Note that `block` holds the known key `key`.
    pub(in crate::config) fn record_present(block: &str, key: &str) {
        PRESENT.with(|r| r.borrow_mut().push((block.to_owned(), key.to_owned())));
    }

    /// The known keys found in blocks on this thread since the last call, and
    /// forget them.
    pub(in crate::config) fn take_present() -> Vec<(String, String)> {
        PRESENT.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }

    /// Note that the parser looked up `key` in `block`.
    pub(in crate::config) fn record(block: &str, key: &str) {
        READS.with(|r| r.borrow_mut().push((block.to_owned(), key.to_owned())));
    }

    /// The lookups noted on this thread since the last call, and forget them.
    pub(in crate::config) fn take() -> Vec<(String, String)> {
        READS.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }
}

/// A float in YAML's spelling when its source text is not at hand.
pub(super) fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        format!("{f:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("impluses", "impulses"), 2);
        assert_eq!(edit_distance("job", "job"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn did_you_mean() {
        let known = ["enabled", "filename", "uris"];
        assert_eq!(
            unknown_key_message("enable", "in impulses block", &known),
            "unknown key `enable` in impulses block; known keys: enabled, filename, uris; did you mean `enabled`?"
        );
        assert_eq!(
            unknown_key_message("colour", "in impulses block", &known),
            "unknown key `colour` in impulses block; known keys: enabled, filename, uris"
        );
    }

    #[test]
    fn numbers_keep_their_spelling() {
        let src = "- a: [90, 0.50, 0x1F, &x 7, *x, !!float 3, 1e3, .inf]\n";
        let mut ctx = Ctx::new("f.yaml".into(), "/".into(), src);
        let doc = ctx.load();
        let entries = ctx.entries(doc.as_ref());
        let View::Seq(items) = view(entries[0].value) else {
            panic!("not a list")
        };
        let texts: Vec<String> = items.iter().filter_map(|n| ctx.scalar_text(n)).collect();
        assert_eq!(texts, ["90", "0.50", "0x1F", "7", "7", "3", "1e3", ".inf"]);
    }

    #[test]
    fn non_ascii_sources_index_by_character() {
        let src = "- ñandú: {a: 'ü', b: 0.50}\n";
        let mut ctx = Ctx::new("f.yaml".into(), "/".into(), src);
        let doc = ctx.load();
        let entries = ctx.entries(doc.as_ref());
        let View::Map(pairs) = view(entries[0].value) else {
            panic!("not a map")
        };
        assert_eq!(ctx.scalar_text(pairs[1].1).as_deref(), Some("0.50"));
    }
}
