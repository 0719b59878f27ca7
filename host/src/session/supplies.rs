//! What each datasource supplies: the datapoints (local uris) that a job's or
//! a package's datasource text carries, as its producer declared them. The
//! server link sends a datasource's list (`send_ds_info`) after the server
//! acknowledges a write to it, when the list differs from the one last sent on
//! that connection.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::model::Uri;

/// Most datapoints one datasource may declare.
pub const MAX_SUPPLIES: usize = 1000;

/// The declared supplies of every datasource, by local uri. Cheap to clone
/// (shared); readable and writable from any thread.
#[derive(Debug, Clone, Default)]
pub struct Supplies {
    inner: Arc<RwLock<HashMap<String, Vec<String>>>>,
}

impl Supplies {
    /// No datasource declares anything.
    pub fn new() -> Supplies {
        Supplies::default()
    }

    /// Declare (or replace) what the datasource `uri` supplies. The list is
    /// kept sorted and without repeats; an empty one is kept too (the server
    /// is then told the datasource supplies nothing).
    pub fn declare(&self, uri: &str, mut supplies: Vec<String>) {
        supplies.sort();
        supplies.dedup();
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.insert(uri.to_owned(), supplies);
    }

    /// Check and declare a list from a guest: `uri` and every entry must be
    /// local uris, at most [`MAX_SUPPLIES`] distinct entries. On error, nothing
    /// is declared and the message says which uri is wrong.
    pub fn declare_checked(&self, uri: &str, mut supplies: Vec<String>) -> Result<(), String> {
        let local = |what: &str, text: &str| match Uri::parse(text) {
            Ok(Uri::Local(_)) => Ok(()),
            Ok(Uri::Global { .. }) => Err(format!(
                "{what}: {text:?} names an owner; a datasource and what it supplies are the agent's own uris"
            )),
            Err(e) => Err(format!("{what}: {e}")),
        };
        local("datasource", uri)?;
        for s in &supplies {
            local(&format!("supplies of {uri}"), s)?;
        }
        supplies.sort();
        supplies.dedup();
        if supplies.len() > MAX_SUPPLIES {
            return Err(format!(
                "{uri} declares {} datapoints; at most {MAX_SUPPLIES}",
                supplies.len()
            ));
        }
        self.declare(uri, supplies);
        Ok(())
    }

    /// What the datasource `uri` supplies, if declared.
    pub fn of(&self, uri: &str) -> Option<Vec<String>> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.get(uri).cloned()
    }

    /// Whether the datasource `uri` declares what it supplies (a lookup
    /// without copying the list, for the send path).
    pub fn declares(&self, uri: &str) -> bool {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.contains_key(uri)
    }

    /// Whether any datasource declares anything (a quick test before lookups
    /// on the send path).
    pub fn is_empty(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_sorted_deduplicated_and_replaced() {
        let s = Supplies::new();
        assert!(s.is_empty());
        assert_eq!(s.of("host.disk"), None);
        assert!(!s.declares("host.disk"));
        s.declare("host.disk", vec!["b".into(), "a".into(), "b".into()]);
        assert!(!s.is_empty());
        assert!(s.declares("host.disk"));
        assert_eq!(s.of("host.disk"), Some(vec!["a".into(), "b".into()]));
        let shared = s.clone();
        shared.declare("host.disk", vec![]);
        assert_eq!(s.of("host.disk"), Some(vec![]));
    }

    #[test]
    fn guest_declarations_are_checked() {
        let s = Supplies::new();
        s.declare_checked(
            "host.cpu",
            vec!["host.cpu.user".into(), "host.cpu.user".into()],
        )
        .unwrap();
        assert_eq!(s.of("host.cpu"), Some(vec!["host.cpu.user".into()]));
        let err = s.declare_checked("bob:host.cpu", vec![]).unwrap_err();
        assert!(
            err.starts_with("datasource: \"bob:host.cpu\" names an owner"),
            "{err}"
        );
        let err = s
            .declare_checked("host.cpu", vec!["ok".into(), "not ok".into()])
            .unwrap_err();
        assert!(
            err.starts_with("supplies of host.cpu: invalid uri \"not ok\""),
            "{err}"
        );
        let many = (0..=MAX_SUPPLIES).map(|i| format!("p{i}")).collect();
        let err = s.declare_checked("host.cpu", many).unwrap_err();
        assert_eq!(err, "host.cpu declares 1001 datapoints; at most 1000");
        // Refused declarations change nothing.
        assert_eq!(s.of("host.cpu"), Some(vec!["host.cpu.user".into()]));
    }
}
