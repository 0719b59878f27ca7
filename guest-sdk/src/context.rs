//! What one fire of an impulse receives: [`Context`], with parameter helpers
//! and the window decoded on first use.

use std::cell::OnceCell;

use crate::bindings;
use crate::window::{Window, WindowError};

/// What one fire of an impulse receives.
///
/// Wraps the WIT `context` record: the public fields are copied from it, the
/// window bytes are kept as they came and decoded by [`Context::window`] the
/// first time it is called (impulses that don't look at the window pay
/// nothing for it).
#[derive(Debug, Clone)]
pub struct Context {
    /// The timestamp of the batch of samples that fired the impulse, µs since
    /// the Unix epoch (UTC). The window is cut relative to it.
    pub ts: i64,
    /// The impulse's uris that received a sample at `ts`, in subscription order.
    pub updated: Vec<String>,
    /// The impulse's other uris, in subscription order.
    pub others: Vec<String>,
    /// The `params` of the impulse's `- impulses:` block, in file order.
    /// Scalars are their YAML text (`90`, `true`); lists and maps are JSON.
    pub params: Vec<(String, String)>,
    window_bytes: Vec<u8>,
    window: OnceCell<Result<Window, WindowError>>,
}

impl Context {
    /// A context built by hand, for native tests of an impulse. `window` is
    /// an Arrow IPC stream (see [`crate::window::encode`]) or empty.
    pub fn new(
        ts: i64,
        updated: Vec<String>,
        others: Vec<String>,
        params: Vec<(String, String)>,
        window: Vec<u8>,
    ) -> Context {
        Context {
            ts,
            updated,
            others,
            params,
            window_bytes: window,
            window: OnceCell::new(),
        }
    }

    /// Add a parameter (builder style, for tests).
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Context {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The raw value of parameter `name` (the first one if repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parameter `name` as a finite number: `Ok(None)` if it is absent, `Err`
    /// naming the parameter if it is not a finite number. Surrounding
    /// whitespace is ignored.
    pub fn param_f64(&self, name: &str) -> Result<Option<f64>, String> {
        let Some(raw) = self.param(name) else {
            return Ok(None);
        };
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            Ok(_) => Err(format!(
                "param `{name}` must be a finite number, got `{raw}`"
            )),
            Err(_) => Err(format!("param `{name}` is not a number: `{raw}`")),
        }
    }

    /// Whether `uri` is among the updated uris of this fire.
    pub fn is_updated(&self, uri: &str) -> bool {
        self.updated.iter().any(|u| u == uri)
    }

    /// Every uri of the subscription: `updated` then `others`.
    pub fn uris(&self) -> impl Iterator<Item = &str> + '_ {
        self.updated
            .iter()
            .chain(self.others.iter())
            .map(String::as_str)
    }

    /// The decoded window. Decoded on the first call, then cached (errors
    /// too). `?` turns a [`WindowError`] into the `String` error of
    /// `on_update`.
    pub fn window(&self) -> Result<&Window, WindowError> {
        self.window
            .get_or_init(|| Window::decode(&self.window_bytes))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The window as komlogd sent it: an Arrow IPC stream, or empty.
    pub fn window_bytes(&self) -> &[u8] {
        &self.window_bytes
    }
}

impl From<bindings::Context> for Context {
    fn from(raw: bindings::Context) -> Context {
        Context::new(raw.ts, raw.updated, raw.others, raw.params, raw.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Series, encode};

    fn ctx() -> Context {
        Context::new(
            100,
            vec!["a".into()],
            vec!["b".into(), "c".into()],
            vec![
                ("n".into(), " 42.5 ".into()),
                ("word".into(), "abc".into()),
                ("n".into(), "7".into()),
                ("inf".into(), "inf".into()),
                ("nan".into(), "NaN".into()),
            ],
            Vec::new(),
        )
    }

    #[test]
    fn params() {
        let c = ctx();
        assert_eq!(c.param("word"), Some("abc"));
        assert_eq!(
            c.param("n"),
            Some(" 42.5 "),
            "first of a repeated name wins"
        );
        assert_eq!(c.param("missing"), None);
        assert_eq!(c.param_f64("n"), Ok(Some(42.5)));
        assert_eq!(c.param_f64("missing"), Ok(None));
        assert_eq!(
            c.param_f64("word"),
            Err("param `word` is not a number: `abc`".to_string())
        );
        assert_eq!(
            c.param_f64("inf"),
            Err("param `inf` must be a finite number, got `inf`".to_string())
        );
        assert!(c.param_f64("nan").unwrap_err().contains("`nan`"));
        let c = c.with_param("x", "-1e3");
        assert_eq!(c.param_f64("x"), Ok(Some(-1000.0)));
    }

    #[test]
    fn uris() {
        let c = ctx();
        assert!(c.is_updated("a"));
        assert!(!c.is_updated("b"));
        assert_eq!(c.uris().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }

    #[test]
    fn empty_window_bytes_decode_to_empty_window() {
        let c = ctx();
        assert!(c.window_bytes().is_empty());
        let w = c.window().expect("empty window");
        assert!(w.is_empty());
    }

    #[test]
    fn window_is_decoded_once_and_cached() {
        let bytes = encode(&[Series::datapoint("a", vec![1, 2], vec![1.0, 2.0])]).unwrap();
        let c = Context::new(2, vec!["a".into()], vec![], vec![], bytes.clone());
        assert_eq!(c.window_bytes(), &bytes[..]);
        let first: *const Window = c.window().unwrap();
        let second: *const Window = c.window().unwrap();
        assert_eq!(first, second);
        assert_eq!(
            c.window().unwrap().series("a").unwrap().datapoints(),
            Some(&[1.0, 2.0][..])
        );
    }

    #[test]
    fn window_errors_are_cached_and_convert_to_string() {
        let c = Context::new(0, vec![], vec![], vec![], b"garbage!".to_vec());
        let e1 = c.window().unwrap_err();
        let e2 = c.window().unwrap_err();
        assert_eq!(e1, e2);
        let s: String = e1.into();
        assert!(
            s.starts_with("window is not a valid Arrow IPC stream"),
            "{s}"
        );
    }

    #[test]
    fn from_raw_context_keeps_every_field() {
        let raw = bindings::Context {
            ts: 5,
            updated: vec!["u".into()],
            others: vec!["o".into()],
            params: vec![("k".into(), "v".into())],
            window: vec![1, 2, 3],
        };
        let c = Context::from(raw);
        assert_eq!(c.ts, 5);
        assert_eq!(c.updated, vec!["u".to_string()]);
        assert_eq!(c.others, vec!["o".to_string()]);
        assert_eq!(c.params, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(c.window_bytes(), &[1, 2, 3]);
    }
}
