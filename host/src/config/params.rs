//! `params:` maps: the free-form settings handed to an impulse or package as
//! `(name, text)` pairs in file order.
//!
//! A scalar becomes its text (strings as they are, numbers as written, `true`/`false`,
//! `null`); a list or map becomes compact JSON, with map keys in file order.

use super::yaml::{Ctx, Node, Scalar, View, format_float, line, view};

/// Read a `params` map; `path` names it in messages (`impulses.params`).
pub(super) fn parse_params(ctx: &mut Ctx<'_>, path: &str, node: &Node) -> Vec<(String, String)> {
    let pairs = match view(node) {
        View::Map(pairs) => pairs,
        View::Scalar(Scalar::Null) => return Vec::new(),
        _ => {
            ctx.expected(path, "a map of names to values", node);
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let Some(name) = ctx.key_name(key) else {
            continue;
        };
        match render(ctx, value) {
            Some(text) => out.push((name, text)),
            None => ctx.error(
                line(value),
                format!("{path}.{name}: cannot read this value (an alias to an unknown anchor?)"),
            ),
        }
    }
    out
}

/// The text of one parameter value.
fn render(ctx: &Ctx<'_>, node: &Node) -> Option<String> {
    match view(node) {
        View::Scalar(Scalar::Null) => Some("null".to_owned()),
        View::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
        View::Scalar(_) => ctx.scalar_text(node),
        View::Seq(_) | View::Map(_) => {
            let mut out = String::new();
            json(ctx, node, &mut out).then_some(out)
        }
        View::Bad => None,
    }
}

/// Append `node` as compact JSON; false if some part cannot be read.
fn json(ctx: &Ctx<'_>, node: &Node, out: &mut String) -> bool {
    match view(node) {
        View::Scalar(Scalar::Null) => out.push_str("null"),
        View::Scalar(Scalar::Bool(b)) => out.push_str(if b { "true" } else { "false" }),
        View::Scalar(Scalar::Int(i)) => out.push_str(&i.to_string()),
        View::Scalar(Scalar::Float(f)) => match serde_json::Number::from_f64(f) {
            Some(n) => out.push_str(&n.to_string()),
            // JSON has no NaN or infinity: keep YAML's spelling as a string.
            None => push_string(out, &format_float(f)),
        },
        View::Scalar(Scalar::Str(s)) => push_string(out, s),
        View::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !json(ctx, item, out) {
                    return false;
                }
            }
            out.push(']');
        }
        View::Map(pairs) => {
            out.push('{');
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let Some(name) = ctx.scalar_text(key) else {
                    return false;
                };
                push_string(out, &name);
                out.push(':');
                if !json(ctx, value, out) {
                    return false;
                }
            }
            out.push('}');
        }
        View::Bad => return false,
    }
    true
}

fn push_string(out: &mut String, s: &str) {
    // Serialising a &str cannot fail; fall back to Debug quoting just in case.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(src: &str) -> (Vec<(String, String)>, Vec<String>) {
        let mut ctx = Ctx::new("k.yaml".into(), "/".into(), src);
        let doc = ctx.load();
        let entries = ctx.entries(doc.as_ref());
        let out = parse_params(&mut ctx, "impulses.params", entries[0].value);
        (out, ctx.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn scalars_lists_and_maps_in_file_order() {
        let (p, errors) = params(
            "- params:\n    zeta: hello\n    n: 90\n    x: 0.5\n    y: 0.50\n    on: true\n    off: False\n    yes: yes\n    nothing: ~\n    empty:\n    quoted: '90'\n    list: [1, 'two', 3.5, null, {b: 1, a: [true]}]\n    map: {z: 1, a: \"q\\\"uote\"}\n    nan: .nan\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let expected = [
            ("zeta", "hello"),
            ("n", "90"),
            ("x", "0.5"),
            ("y", "0.50"),
            ("on", "true"),
            ("off", "false"),
            ("yes", "yes"),
            ("nothing", "null"),
            ("empty", "null"),
            ("quoted", "90"),
            ("list", r#"[1,"two",3.5,null,{"b":1,"a":[true]}]"#),
            ("map", r#"{"z":1,"a":"q\"uote"}"#),
            ("nan", ".nan"),
        ];
        let got: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn not_a_map() {
        let (p, errors) = params("- params: [a, b]\n");
        assert!(p.is_empty());
        assert_eq!(
            errors,
            ["k.yaml:1: impulses.params: expected a map of names to values, found a list"]
        );
    }
}
