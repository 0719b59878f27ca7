//! The naming rule: how a metric name and its tags become a komlog uri.
//!
//! A komlog uri is levels of `[A-Za-z0-9_-]+` joined by `.` (the agent's
//! `protocol::uri::is_local_uri`). The rule, the same in the Python package:
//!
//! 1. The name is split at `.`; in each level every character outside
//!    `[A-Za-z0-9_-]` becomes `_` (one `_` per character, so `é` is one `_`),
//!    and an empty level becomes `_`.
//! 2. The tags are sorted by key (then value); each becomes one more level,
//!    `<key>_<value>`, where every character of key and value outside
//!    `[A-Za-z0-9_-]` (`.` included) becomes `_`.
//!
//! So `gauge("http.latency", …, &[("route", "/a"), ("host", "web-1")])` writes
//! to `http.latency.host_web-1.route__a`, and `custom("db", "pool size", …)`
//! (Kaneda's `name` and `metric`) to `db.pool_size`.

/// Whether `b` may appear in a uri level.
fn is_level_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Append the name `text`, levels kept: every character outside the level
/// rule becomes `_`, and an empty level becomes `_`.
fn push_name(out: &mut String, text: &str) {
    if text.bytes().all(|b| is_level_byte(b) || b == b'.') && !has_empty_level(text) {
        out.push_str(text);
        return;
    }
    let mut level_empty = true;
    for c in text.chars() {
        if c == '.' {
            if level_empty {
                out.push('_');
            }
            out.push('.');
            level_empty = true;
            continue;
        }
        if c.is_ascii() && is_level_byte(c as u8) {
            out.push(c);
        } else {
            out.push('_');
        }
        level_empty = false;
    }
    if level_empty {
        out.push('_');
    }
}

fn has_empty_level(text: &str) -> bool {
    text.is_empty() || text.starts_with('.') || text.ends_with('.') || text.contains("..")
}

/// The uri of metric `name` with `tags` (see the module documentation).
///
/// ```
/// use komlog_metrics::uri;
/// assert_eq!(uri("requests", &[]), "requests");
/// assert_eq!(uri("http.latency", &[("route", "/a"), ("host", "web-1")]),
///            "http.latency.host_web-1.route__a");
/// assert_eq!(uri("disk usage.%", &[]), "disk_usage._");
/// ```
pub fn uri(name: &str, tags: &[(&str, &str)]) -> String {
    let extra: usize = tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(name.len() + extra + 1);
    push_name(&mut out, name);
    match tags {
        [] => {}
        [one] => push_tag(&mut out, one),
        _ => {
            let mut sorted: Vec<&(&str, &str)> = tags.iter().collect();
            sorted.sort_unstable();
            for tag in sorted {
                push_tag(&mut out, tag);
            }
        }
    }
    out
}

fn push_tag(out: &mut String, (key, value): &(&str, &str)) {
    out.push('.');
    push_sanitized_level(out, key);
    out.push('_');
    push_sanitized_level(out, value);
}

/// Append `text` as part of one level (no `.`), possibly empty.
fn push_sanitized_level(out: &mut String, text: &str) {
    if text.bytes().all(is_level_byte) {
        out.push_str(text);
    } else {
        for c in text.chars() {
            out.push(if c.is_ascii() && is_level_byte(c as u8) {
                c
            } else {
                '_'
            });
        }
    }
}

/// The uri of Kaneda's `custom(name, metric, …)`: `name.metric`, each
/// sanitized as a name, with the tags appended.
pub fn custom_uri(name: &str, metric: &str, tags: &[(&str, &str)]) -> String {
    let mut joined = String::with_capacity(name.len() + metric.len() + 1);
    joined.push_str(name);
    joined.push('.');
    joined.push_str(metric);
    uri(&joined, tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's rule, restated: levels of `[A-Za-z0-9_-]+` joined by `.`.
    fn is_local_uri(s: &str) -> bool {
        !s.is_empty()
            && s.split('.')
                .all(|l| !l.is_empty() && l.bytes().all(is_level_byte))
    }

    #[test]
    fn valid_names_are_kept() {
        for name in ["a", "a.b", "cpu-0.user_time", "A1.b2.C3"] {
            assert_eq!(uri(name, &[]), name);
        }
    }

    #[test]
    fn invalid_characters_become_underscores() {
        assert_eq!(uri("disk usage", &[]), "disk_usage");
        assert_eq!(uri("héllo", &[]), "h_llo");
        assert_eq!(uri("a/b:c", &[]), "a_b_c");
        assert_eq!(uri("", &[]), "_");
        assert_eq!(uri(".a..b.", &[]), "_.a._.b._");
        assert_eq!(uri("x.é", &[]), "x._");
    }

    #[test]
    fn tags_are_sorted_levels() {
        assert_eq!(
            uri("req", &[("status", "200"), ("method", "GET")]),
            "req.method_GET.status_200"
        );
        // A tag is one level: its dots become underscores.
        assert_eq!(uri("req", &[("host", "a.example")]), "req.host_a_example");
        assert_eq!(uri("req", &[("", "")]), "req._");
        // Duplicate keys: both, sorted by value.
        assert_eq!(uri("r", &[("k", "b"), ("k", "a")]), "r.k_a.k_b");
    }

    #[test]
    fn custom_joins_name_and_metric() {
        assert_eq!(custom_uri("db", "pool size", &[]), "db.pool_size");
        assert_eq!(custom_uri("db", "", &[("a", "1")]), "db._.a_1");
    }

    #[test]
    fn every_result_is_a_valid_uri() {
        let names = ["", ".", "..", "a.", ".b", "a b", "ü", "x.y.z", "-_-", "\n"];
        let tags = ["", ".", "a.b", "ü", "v 1", "ok"];
        for name in names {
            assert!(is_local_uri(&uri(name, &[])), "{name:?}");
            for k in tags {
                for v in tags {
                    let u = uri(name, &[(k, v), ("z", v)]);
                    assert!(is_local_uri(&u), "{name:?} {k:?} {v:?} -> {u:?}");
                }
            }
        }
    }
}
