//! The `- statsd:` and `- line_protocol:` entries: the agent's listeners for
//! application metrics (StatsD over UDP, InfluxDB line protocol over HTTP).
//! Both are off unless the entry is present; `- statsd:` alone (or with an
//! address, `- statsd: 127.0.0.1:9125`) takes the defaults.

use std::net::SocketAddr;
use std::time::Duration;

use super::schema::{LINE_PROTOCOL_KEYS, STATSD_KEYS};
use super::yaml::{Block, Ctx, Node, Scalar, View, line, view};

/// The default address of the StatsD listener.
pub const DEFAULT_STATSD_LISTEN: &str = "127.0.0.1:8125";
/// The default address of the line protocol listener.
pub const DEFAULT_LINE_PROTOCOL_LISTEN: &str = "127.0.0.1:8186";
/// The default StatsD flush interval.
pub const DEFAULT_STATSD_FLUSH: Duration = Duration::from_secs(1);

/// The StatsD listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdConfig {
    /// UDP address and port, e.g. `127.0.0.1:8125`.
    pub listen: SocketAddr,
    /// How often the aggregated metrics are written (10 ms to 1 h).
    pub flush: Duration,
    /// A uri prefix put before every metric (`prefix.name`), already a valid uri.
    pub prefix: Option<String>,
}

/// The InfluxDB line protocol listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProtocolConfig {
    /// TCP address and port of the HTTP endpoint, e.g. `127.0.0.1:8186`.
    pub listen: SocketAddr,
    /// A uri prefix put before every measurement (`prefix.measurement.field`).
    pub prefix: Option<String>,
}

/// A default address, known to parse.
fn default_addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// The block (a bare address is short for `{listen: ADDR}`), or `None` after
/// an error. `Ok(None)` means the block is the bare address `node` itself.
fn block_or_address<'n>(
    ctx: &mut Ctx<'_>,
    path: &str,
    node: &'n Node,
    keys: &'static [&'static str],
) -> Option<(Option<Block<'n>>, Option<&'n Node>)> {
    match view(node) {
        View::Scalar(Scalar::Str(_)) => Some((None, Some(node))),
        _ => {
            let block = ctx.block(path, node, keys)?;
            let listen = block.get("listen");
            Some((Some(block), listen))
        }
    }
}

fn parse_listen(
    ctx: &mut Ctx<'_>,
    path: &str,
    node: Option<&Node>,
    default: &str,
) -> Option<SocketAddr> {
    let Some(node) = node else {
        return Some(default_addr(default));
    };
    let what = format!("{path}.listen");
    let text = ctx.string(&what, node)?;
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                line(node),
                format!("{what}: {text:?} is not an address and port (e.g. {default})"),
            );
            None
        }
    }
}

fn parse_prefix(
    ctx: &mut Ctx<'_>,
    path: &str,
    block: Option<&Block<'_>>,
) -> Option<Option<String>> {
    let Some(node) = block.and_then(|b| b.get("prefix")) else {
        return Some(None);
    };
    let what = format!("{path}.prefix");
    let text = ctx.string(&what, node)?;
    if komlog_protocol::uri::is_local_uri(&text) {
        Some(Some(text))
    } else {
        ctx.error(
            line(node),
            format!(
                "{what}: {text:?} is not a uri (levels of letters, digits, `_` and `-` joined by `.`)"
            ),
        );
        None
    }
}

/// Read the `statsd` entry.
pub(super) fn parse_statsd(ctx: &mut Ctx<'_>, node: &Node) -> Option<StatsdConfig> {
    let (block, listen) = block_or_address(ctx, "statsd", node, STATSD_KEYS)?;
    let listen = parse_listen(ctx, "statsd", listen, DEFAULT_STATSD_LISTEN);
    let flush = match block.as_ref().and_then(|b| b.get("flush")) {
        None => Some(DEFAULT_STATSD_FLUSH),
        Some(n) => ctx.duration_us("statsd.flush", n).and_then(|us| {
            if (10_000..=3_600_000_000).contains(&us) {
                Some(Duration::from_micros(us))
            } else {
                ctx.error(line(n), "statsd.flush: out of range: expected 10ms to 1h");
                None
            }
        }),
    };
    let prefix = parse_prefix(ctx, "statsd", block.as_ref());
    Some(StatsdConfig {
        listen: listen?,
        flush: flush?,
        prefix: prefix?,
    })
}

/// Read the `line_protocol` entry.
pub(super) fn parse_line_protocol(ctx: &mut Ctx<'_>, node: &Node) -> Option<LineProtocolConfig> {
    let (block, listen) = block_or_address(ctx, "line_protocol", node, LINE_PROTOCOL_KEYS)?;
    let listen = parse_listen(ctx, "line_protocol", listen, DEFAULT_LINE_PROTOCOL_LISTEN);
    let prefix = parse_prefix(ctx, "line_protocol", block.as_ref());
    Some(LineProtocolConfig {
        listen: listen?,
        prefix: prefix?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("komlogd.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_short_forms() {
        let cfg = parse("- statsd:\n- line_protocol:\n").unwrap();
        let statsd = cfg.statsd.unwrap();
        assert_eq!(statsd.listen.to_string(), DEFAULT_STATSD_LISTEN);
        assert_eq!((statsd.flush, statsd.prefix), (DEFAULT_STATSD_FLUSH, None));
        let lp = cfg.line_protocol.unwrap();
        assert_eq!(lp.listen.to_string(), DEFAULT_LINE_PROTOCOL_LISTEN);
        let cfg = parse("- statsd: 0.0.0.0:9125\n- line_protocol: '[::1]:8087'\n").unwrap();
        assert_eq!(cfg.statsd.unwrap().listen.to_string(), "0.0.0.0:9125");
        assert_eq!(cfg.line_protocol.unwrap().listen.to_string(), "[::1]:8087");
        let cfg = parse("- statsd:\n    flush: 250ms\n    prefix: app.web\n").unwrap();
        let statsd = cfg.statsd.unwrap();
        assert_eq!(statsd.flush, Duration::from_millis(250));
        assert_eq!(statsd.prefix.as_deref(), Some("app.web"));
        assert!(parse("").unwrap().statsd.is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("- username: bob\n- statsd:\n    listen: nowhere\n").unwrap_err();
        assert!(
            e.contains("komlogd.yaml:3: statsd.listen: \"nowhere\" is not an address"),
            "{e}"
        );
        let e = parse("- statsd:\n    flush: 1ms\n").unwrap_err();
        assert!(
            e.contains("komlogd.yaml:2: statsd.flush: out of range"),
            "{e}"
        );
        let e = parse("- line_protocol:\n    prefix: 'a b'\n").unwrap_err();
        assert!(
            e.contains("komlogd.yaml:2: line_protocol.prefix: \"a b\" is not a uri"),
            "{e}"
        );
        let e = parse("- statsd:\n    flsuh: 1s\n").unwrap_err();
        assert!(e.contains("did you mean `flush`?"), "{e}");
        let e = parse("- statsd:\n- statsd:\n").unwrap_err();
        assert!(e.contains("More than one statsd block"), "{e}");
    }
}
