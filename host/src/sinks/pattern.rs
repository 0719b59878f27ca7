//! Uri patterns of a `- sink:` block: globs over the dot-separated levels of a uri.
//!
//! **Owns:** the pattern syntax and matching against store keys.
//!
//! * A level `*` matches exactly one level; a level `**` matches any number of levels
//!   (none included); inside a level, `*` matches any run of characters (`cpu*`).
//! * A pattern with an owner (`alice:*`, `alice:host.**`) matches only that user's
//!   uris (the owner compared case-insensitively); one without matches only local uris.
//!   The agent's own `username:` is the same as no owner (the store keeps those local).
//! * `**` alone matches every local uri, `*:**` every uri of every user.

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriPattern {
    text: String,
    /// `None`: local uris only; `Some("*")`: any owner.
    owner: Option<String>,
    levels: Vec<String>,
}

/// Why a pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("uri pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl UriPattern {
    /// Parse `text`: `[owner:]level(.level)*`, levels of letters, digits, `_`, `-`
    /// and `*`.
    pub fn parse(text: &str) -> Result<UriPattern, PatternError> {
        let bad = |reason| PatternError {
            pattern: text.to_owned(),
            reason,
        };
        let (owner, rest) = match text.split_once(':') {
            Some((o, r)) => {
                if o.is_empty() {
                    return Err(bad("the owner before `:` is empty"));
                }
                if !o
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.*".contains(c))
                {
                    return Err(bad(
                        "the owner has a character other than letters, digits, `_`, `-`, `.`",
                    ));
                }
                (Some(o.to_ascii_lowercase()), r)
            }
            None => (None, text),
        };
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut levels = Vec::new();
        for level in rest.split('.') {
            if level.is_empty() {
                return Err(bad("it has an empty level (two dots, or a dot at an end)"));
            }
            if level.contains("**") && level != "**" {
                return Err(bad("`**` must be a whole level"));
            }
            if !level
                .chars()
                .all(|c| c.is_alphanumeric() || "_-*".contains(c))
            {
                return Err(bad(
                    "a level has a character other than letters, digits, `_`, `-` and `*`",
                ));
            }
            levels.push(level.to_owned());
        }
        Ok(UriPattern {
            text: text.to_owned(),
            owner,
            levels,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the store key `key` (a local uri, or `owner:uri`) matches. `me` is
    /// the agent's username, so that `me:x` patterns match the local `x`.
    pub fn matches(&self, key: &str, me: Option<&str>) -> bool {
        let (key_owner, uri) = match key.split_once(':') {
            Some((o, u)) => (Some(o), u),
            None => (None, key),
        };
        let owner_ok = match (&self.owner, key_owner) {
            (None, None) => true,
            (Some(p), None) => me.is_some_and(|m| m.eq_ignore_ascii_case(p)),
            (Some(p), Some(k)) => p == "*" || k.eq_ignore_ascii_case(p),
            (None, Some(_)) => false,
        };
        owner_ok && {
            let parts: Vec<&str> = uri.split('.').collect();
            levels_match(&self.levels, &parts)
        }
    }
}

impl std::fmt::Display for UriPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn levels_match(pattern: &[String], uri: &[&str]) -> bool {
    match pattern.split_first() {
        None => uri.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=uri.len()).any(|skip| levels_match(rest, &uri[skip..]))
        }
        Some((p, rest)) => match uri.split_first() {
            Some((u, urest)) => {
                level_match(p.as_bytes(), u.as_bytes()) && levels_match(rest, urest)
            }
            None => false,
        },
    }
}

/// One level: `*` matches any run of characters.
fn level_match(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| level_match(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && level_match(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, key: &str) -> bool {
        UriPattern::parse(p).unwrap().matches(key, Some("Me"))
    }

    #[test]
    fn stars_match_one_level_and_double_stars_any_number() {
        assert!(m("host.*", "host.cpu"));
        assert!(!m("host.*", "host.cpu.user"));
        assert!(!m("host.*", "host"));
        assert!(m("host.**", "host.cpu.user"));
        assert!(m("host.**", "host"));
        assert!(m("**", "a.b.c"));
        assert!(m("**.user", "host.cpu.user"));
        assert!(!m("**.user", "host.cpu.sys"));
        assert!(m("a.**.z", "a.z"));
        assert!(m("a.**.z", "a.b.c.z"));
        assert!(!m("a.**.z", "a.b.c"));
        assert!(m("host.cpu*", "host.cpu2"));
        assert!(m("*.c*u", "host.cpu"));
        assert!(!m("host.cpu", "host.cpu2"));
    }

    #[test]
    fn owners_select_remote_uris_and_my_name_is_local() {
        assert!(m("alice:*", "alice:x"));
        assert!(m("ALICE:*", "Alice:x"));
        assert!(!m("alice:*", "x"));
        assert!(!m("*", "alice:x"));
        assert!(!m("bob:*", "alice:x"));
        assert!(m("*:**", "bob:a.b"));
        assert!(m("me:host.*", "host.cpu"));
        assert!(
            !UriPattern::parse("me:host.*")
                .unwrap()
                .matches("host.cpu", None)
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("", "it is empty"),
            ("a..b", "empty level"),
            (".a", "empty level"),
            ("a.b**", "`**` must be a whole level"),
            ("a b", "a level has a character"),
            (":a", "owner before `:` is empty"),
        ] {
            let e = UriPattern::parse(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
