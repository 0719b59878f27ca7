//! Uris and usernames as Komlog validates them (spec §6.1), and metric identity
//! (spec §6.2).
//!
//! A *level* is `[A-Za-z0-9_-]+`; a *local uri* is levels joined by `.`; a
//! *global uri* is `username:local.uri` with exactly one `:`. A username has the
//! syntax of a local uri and at most [`MAX_USERNAME_LEN`] characters, and compares
//! case-insensitively (the server lowercases it); the local part of a uri is
//! case-sensitive. Neither side limits the length of a uri.
//!
//! The agent stores its own metrics under their local part and other users'
//! metrics as `owner:local` ([`Uri::store_key`]).

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

/// True when `s` is a local uri: `^([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+$` and nothing
/// else (no trailing newline, whitespace or `:`).
pub fn is_local_uri(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|level| !level.is_empty() && level.bytes().all(is_level_byte))
}

/// True when `s` is a valid username.
pub fn is_username(s: &str) -> bool {
    s.len() <= MAX_USERNAME_LEN && is_local_uri(s)
}

/// A validated username, stored lowercased as the server does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Validate a username and lowercase it.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        if is_username(s) {
            Ok(Username(s.to_ascii_lowercase()))
        } else {
            Err(UriError::InvalidUsername(s.to_owned()))
        }
    }

    /// The lowercased username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Username {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Username::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A validated uri as written on the wire: local, or global with an owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `host.cpu.system`: a uri of the session's own user.
    Local(String),
    /// `owner:host.cpu.system`: a uri named with its owner (possibly oneself).
    Global {
        /// The owner, lowercased.
        owner: Username,
        /// The local part, case-sensitive.
        local: String,
    },
}

impl Uri {
    /// Parse and validate a uri.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        match s.split_once(':') {
            None if is_local_uri(s) => Ok(Uri::Local(s.to_owned())),
            Some((owner, local)) if is_username(owner) && is_local_uri(local) => Ok(Uri::Global {
                owner: Username(owner.to_ascii_lowercase()),
                local: local.to_owned(),
            }),
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

    /// The owner this uri names when read by `me`: the explicit owner of a global
    /// uri, `me` for a local one.
    pub fn owner<'a>(&'a self, me: &'a Username) -> &'a Username {
        match self {
            Uri::Local(_) => me,
            Uri::Global { owner, .. } => owner,
        }
    }

    /// True when the uri belongs to another user than `me`. With no `me` (an agent
    /// with no username configured), every `owner:uri` names someone else.
    pub fn is_remote_for(&self, me: Option<&Username>) -> bool {
        match (self, me) {
            (Uri::Local(_), _) => false,
            (Uri::Global { owner, .. }, Some(me)) => owner != me,
            (Uri::Global { .. }, None) => true,
        }
    }

    /// The key under which an agent stores this uri: the local part for its own
    /// uris, `owner:local` (owner lowercased) for other users' uris.
    pub fn store_key(&self, me: Option<&Username>) -> String {
        match self {
            Uri::Global { owner, local } if self.is_remote_for(me) => format!("{owner}:{local}"),
            _ => self.local().to_owned(),
        }
    }

    /// The metric this uri names for the session user `me` (spec §6.2).
    pub fn metric_id(&self, me: &Username) -> MetricId {
        MetricId {
            owner: self.owner(me).clone(),
            local: self.local().to_owned(),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Local(l) => f.write_str(l),
            Uri::Global { owner, local } => write!(f, "{owner}:{local}"),
        }
    }
}

/// The repeats in a list of uris: `(repeat, first)` index pairs, in order, where
/// `uris[repeat]` names the same uri as the earlier `uris[first]` (the same
/// [`Uri::store_key`] under `me`: `alice:x` is `x` for user `alice`, owners compare
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

/// A metric's normalised global name: the owner (lowercased) and the
/// case-sensitive local uri. `USER:my_uri` and `user:my_uri` are one metric;
/// `my_uri` and `MY_uri` are two. (The kind is the other half of a metric's
/// identity; a uri holds one kind for life.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId {
    /// The owner.
    pub owner: Username,
    /// The local uri.
    pub local: String,
}

impl MetricId {
    /// How the metric is written for a session of user `viewer`: the local uri for
    /// the owner, `owner:local` for anyone else (as notifications and data
    /// intervals carry it).
    pub fn uri_for(&self, viewer: &Username) -> String {
        if &self.owner == viewer {
            self.local.clone()
        } else {
            format!("{}:{}", self.owner, self.local)
        }
    }

    /// True when this metric is `prefix` or below it (`a.b` covers `a.b` and
    /// `a.b.c`, not `a.bc`), for the same owner.
    pub fn is_under(&self, owner: &Username, prefix: &str) -> bool {
        &self.owner == owner
            && (self.local == prefix
                || (self.local.starts_with(prefix)
                    && self.local.as_bytes().get(prefix.len()) == Some(&b'.')))
    }
}

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.owner, self.local)
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
        let long_owner = format!("{}:x", "a".repeat(257));
        assert!(Uri::parse(&long_owner).is_err());
    }

    #[test]
    fn metric_identity_lowercases_only_the_owner() {
        let me = Username::parse("Alice").unwrap();
        assert_eq!(me.as_str(), "alice");
        let a = Uri::parse("ALICE:cpu.System").unwrap().metric_id(&me);
        let b = Uri::parse("cpu.System").unwrap().metric_id(&me);
        let c = Uri::parse("cpu.system").unwrap().metric_id(&me);
        assert_eq!(a, b);
        assert_ne!(b, c);
        let bob = Username::parse("bob").unwrap();
        assert_eq!(a.uri_for(&me), "cpu.System");
        assert_eq!(a.uri_for(&bob), "alice:cpu.System");
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
        assert!(!Uri::parse("y").unwrap().is_remote_for(None));
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
    fn is_under_respects_level_boundaries() {
        let me = Username::parse("alice").unwrap();
        let other = Username::parse("bob").unwrap();
        let m = Uri::parse("a.b.c").unwrap().metric_id(&me);
        assert!(m.is_under(&me, "a.b"));
        assert!(m.is_under(&me, "a.b.c"));
        assert!(m.is_under(&me, "a"));
        assert!(!m.is_under(&me, "a.b.c.d"));
        assert!(!m.is_under(&me, "a.bc"));
        assert!(
            !Uri::parse("a.bc")
                .unwrap()
                .metric_id(&me)
                .is_under(&me, "a.b")
        );
        assert!(!m.is_under(&other, "a.b"));
    }

    #[test]
    fn usernames() {
        assert!(Username::parse("my.user-1").is_ok());
        assert!(Username::parse("a:b").is_err());
        assert!(Username::parse(&"a".repeat(257)).is_err());
        assert!(Username::parse(&"a".repeat(256)).is_ok());
    }
}
