//! Uris and usernames, validated exactly as Komlog does (spec §6.1), and the
//! resolution of a uri against the agent's own username.
//!
//! A *level* is `[A-Za-z0-9_-]+`; a *local uri* is levels joined by `.`; a
//! *global uri* is `username:local.uri` with exactly one `:`. Usernames have the
//! syntax of a local uri, at most 256 characters, and compare case-insensitively;
//! the local part of a uri is case-sensitive.
//!
//! The same syntax rules live in the protocol crate (`protocol/src/uri.rs`,
//! `komlog-protocol`), which the hub uses; this copy stays until the agent
//! depends on that crate.

use std::fmt;

/// The longest username the server accepts.
pub const MAX_USERNAME_LEN: usize = 256;

/// Why a uri or username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The text is not a local or global uri.
    #[error(
        "invalid uri {0:?}: expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'"
    )]
    Invalid(String),
    /// The text is not a valid username.
    #[error(
        "invalid username {0:?}: expected levels of [A-Za-z0-9_-] joined by '.', at most 256 characters"
    )]
    InvalidUsername(String),
}

fn is_level_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// True when `s` is a local uri: `^([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+$`, nothing else
/// (no trailing newline, no whitespace, no `:`).
pub fn is_local_uri(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|level| !level.is_empty() && level.bytes().all(is_level_byte))
}

/// A validated username, kept as written; compare with [`Username::matches`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Validate a username.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        if s.len() <= MAX_USERNAME_LEN && is_local_uri(s) {
            Ok(Username(s.to_owned()))
        } else {
            Err(UriError::InvalidUsername(s.to_owned()))
        }
    }

    /// The username as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive comparison, as the server does.
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated uri: local, or global with an owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `host.cpu.system`: a uri of the agent's own user.
    Local(String),
    /// `owner:host.cpu.system`: a uri named with its owner (who may be the agent's own user).
    Global {
        /// The owner's username, as written.
        owner: String,
        /// The local part, case-sensitive.
        local: String,
    },
}

impl Uri {
    /// Parse and validate a uri.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        match s.split_once(':') {
            None if is_local_uri(s) => Ok(Uri::Local(s.to_owned())),
            Some((owner, local))
                if owner.len() <= MAX_USERNAME_LEN
                    && is_local_uri(owner)
                    && is_local_uri(local) =>
            {
                Ok(Uri::Global {
                    owner: owner.to_owned(),
                    local: local.to_owned(),
                })
            }
            _ => Err(UriError::Invalid(s.to_owned())),
        }
    }

    /// The local part.
    pub fn local(&self) -> &str {
        match self {
            Uri::Local(l) => l,
            Uri::Global { local, .. } => local,
        }
    }

    /// True when the uri belongs to another user than `me`.
    pub fn is_remote_for(&self, me: Option<&Username>) -> bool {
        match (self, me) {
            (Uri::Local(_), _) => false,
            (Uri::Global { owner, .. }, Some(me)) => !me.matches(owner),
            // With no username configured, every `user:uri` names someone else.
            (Uri::Global { .. }, None) => true,
        }
    }

    /// The key under which the agent stores this uri: the local part for the agent's
    /// own uris, `owner:local` (owner lowercased) for other users' uris.
    pub fn store_key(&self, me: Option<&Username>) -> String {
        match self {
            Uri::Global { owner, local } if self.is_remote_for(me) => {
                format!("{}:{}", owner.to_ascii_lowercase(), local)
            }
            _ => self.local().to_owned(),
        }
    }
}

/// The repeats in a list of uris: `(repeat, first)` index pairs, in order, where
/// `uris[repeat]` names the same uri as the earlier `uris[first]` (the same store
/// key under `me`: `alice:x` is `x` for user `alice`, owners compare
/// case-insensitively). An impulse subscribes to each uri once, so callers drop
/// the repeats.
pub fn repeated_uris(uris: &[Uri], me: Option<&Username>) -> Vec<(usize, usize)> {
    let mut firsts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut repeats = Vec::new();
    for (i, uri) in uris.iter().enumerate() {
        match firsts.entry(uri.store_key(me)) {
            std::collections::hash_map::Entry::Occupied(first) => {
                repeats.push((i, *first.get()));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    repeats
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Local(l) => f.write_str(l),
            Uri::Global { owner, local } => write!(f, "{owner}:{local}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_uris_from_the_original_tests() {
        for u in [
            "valid.uri",
            "valid.uri.-dash",
            "valid.uri._underscore",
            "valid",
            "user:local.uri",
            "_Username_:valid.uri.-dash",
            "User1:valid",
            "0.1.2",
        ] {
            assert!(Uri::parse(u).is_ok(), "{u} should be valid");
        }
    }

    #[test]
    fn invalid_uris_from_the_original_tests() {
        for u in [
            "  not valid ",
            "..not_valid",
            "not..valid",
            "ññ",
            "uri\n",
            "uri\t",
            "uri\r",
            "",
            ".a",
            "a.",
            "a:b:c",
            ":a",
            "a:",
            "a b",
        ] {
            assert_eq!(Uri::parse(u), Err(UriError::Invalid(u.to_owned())), "{u:?}");
        }
    }

    #[test]
    fn own_global_uri_is_local_and_owner_is_case_insensitive() {
        let me = Username::parse("Alice").unwrap();
        let own = Uri::parse("alice:cpu.system").unwrap();
        assert!(!own.is_remote_for(Some(&me)));
        assert_eq!(own.store_key(Some(&me)), "cpu.system");
        let other = Uri::parse("Bob:cpu.System").unwrap();
        assert!(other.is_remote_for(Some(&me)));
        assert_eq!(other.store_key(Some(&me)), "bob:cpu.System");
        assert!(Uri::parse("x:y").unwrap().is_remote_for(None));
    }

    #[test]
    fn repeats_are_the_same_store_key() {
        let uris =
            |list: &[&str]| -> Vec<Uri> { list.iter().map(|u| Uri::parse(u).unwrap()).collect() };
        let me = Username::parse("Alice").unwrap();
        let list = uris(&["e.a", "e.a", "e.b", "alice:e.a", "Bob:x", "bob:x", "bob:X"]);
        assert_eq!(repeated_uris(&list, Some(&me)), [(1, 0), (3, 0), (5, 4)]);
        // Without a username `alice:e.a` is another user's uri.
        assert_eq!(repeated_uris(&list, None), [(1, 0), (5, 4)]);
        assert!(repeated_uris(&uris(&["a", "b"]), None).is_empty());
    }

    #[test]
    fn usernames() {
        assert!(Username::parse("my.user-1").is_ok());
        assert!(Username::parse("a:b").is_err());
        assert!(Username::parse(&"a".repeat(257)).is_err());
        assert!(Username::parse(&"a".repeat(256)).is_ok());
    }
}
