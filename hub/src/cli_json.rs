//! The JSON text the command line prints.
//!
//! **Owns:** indented JSON, written by `serde_json`'s pretty printer, in
//! which datapoint values appear as JSON numbers with exactly the digits the
//! store keeps (its canonical decimal text, e.g. `12345678901234567.5` or
//! `1.3E+3`), never rounded through an `f64`. Replies travel between the
//! command line and a running hub with those values as strings, so that no
//! JSON parser on the way rounds them; they become numbers only here.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// True when `text` is a JSON number as RFC 8259 writes one:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_json_number(text: &str) -> bool {
    fn digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(&b[i..]),
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(&b[i + 1..]);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(&b[i..]);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == b.len()
}

/// A JSON document to print: values, or numbers kept as their text.
#[derive(Debug, Clone)]
pub enum Node {
    /// A scalar value (null, boolean, number, string).
    Scalar(Value),
    /// A number written exactly as this (valid JSON) text.
    Number(Box<RawValue>),
    /// An array.
    Array(Vec<Node>),
    /// An object, its members in order.
    Object(Vec<(String, Node)>),
}

impl From<&Value> for Node {
    fn from(v: &Value) -> Node {
        match v {
            Value::Array(items) => Node::Array(items.iter().map(Node::from).collect()),
            Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Node::from(v)))
                    .collect(),
            ),
            other => Node::Scalar(other.clone()),
        }
    }
}

impl Node {
    /// The indented JSON text (two spaces a level), without a final newline.
    pub fn to_pretty(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a JSON tree with string keys and checked numbers serializes")
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Scalar(v) => v.serialize(s),
            Node::Number(raw) => raw.serialize(s),
            Node::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

/// The text of a `query` reply: as the reply, except that for a datapoint
/// each row's `value` is a JSON number with the stored digits.
pub fn query_text(reply: &Value) -> String {
    let mut node = Node::from(reply);
    let datapoint = reply.get("kind").and_then(Value::as_str) == Some("datapoint");
    if datapoint && let Node::Object(members) = &mut node {
        for (key, rows) in members.iter_mut() {
            if key != "rows" {
                continue;
            }
            let Node::Array(rows) = rows else { continue };
            for row in rows {
                let Node::Object(fields) = row else { continue };
                for (name, value) in fields.iter_mut() {
                    if let (true, Node::Scalar(Value::String(text))) = (name == "value", &*value)
                        && is_json_number(text)
                        && let Ok(raw) = RawValue::from_string(text.clone())
                    {
                        *value = Node::Number(raw);
                    }
                }
            }
        }
    }
    node.to_pretty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_are_recognised_by_the_rfc_grammar() {
        for ok in [
            "0",
            "-0",
            "12",
            "0.1",
            "12345678901234567.5",
            "1.3E+3",
            "1E-7",
            "0E+2",
            "-2.50e10",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "NaN", "Infinity", " 1", "1 ", "0x10",
            "1.2.3",
        ] {
            assert!(!is_json_number(bad), "{bad:?}");
        }
    }

    #[test]
    fn pretty_text_matches_serde_json_for_plain_values() {
        let v = json!({
            "a": [1, "two", null, {"b": true, "c": []}, {}],
            "d\"e": 2.5,
            "rows": [],
        });
        assert_eq!(
            Node::from(&v).to_pretty(),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }

    #[test]
    fn datapoint_values_become_exact_numbers_and_datasource_text_stays() {
        let reply = json!({
            "uri": "alice:x",
            "kind": "datapoint",
            "supplies": null,
            "rows": [
                {"t": "a", "ts_us": 1, "value": "12345678901234567.5"},
                {"t": "b", "ts_us": 2, "value": "0.1"},
            ],
        });
        let text = query_text(&reply);
        assert!(text.contains("\"value\": 12345678901234567.5"), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert!(back["rows"][1]["value"].is_number(), "{text}");
        let ds = json!({"kind": "datasource", "rows": [{"value": "12"}]});
        assert!(query_text(&ds).contains("\"value\": \"12\""));
    }
}
