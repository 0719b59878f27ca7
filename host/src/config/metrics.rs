//! The `- metrics:` entry: where the agent serves its counters in the Prometheus
//! text format. Absent by default (no port is opened).

use std::net::SocketAddr;

use super::schema::METRICS_KEYS;
use super::yaml::{Ctx, Node, Scalar, View, line, view};

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address and port to listen on, e.g. `127.0.0.1:9108`.
    pub listen: SocketAddr,
}

/// Read the `metrics` entry: a map `{listen: ADDR:PORT}` (a bare address is accepted too).
pub(super) fn parse_metrics(
    ctx: &mut Ctx<'_>,
    key_line: usize,
    node: &Node,
) -> Option<MetricsConfig> {
    let listen_node = match view(node) {
        View::Scalar(Scalar::Str(_)) => node,
        _ => {
            let block = ctx.block("metrics", node, METRICS_KEYS)?;
            match block.raw("listen") {
                Some(n) => n,
                None => {
                    ctx.error(
                        key_line,
                        "metrics: missing required key `listen` (e.g. 127.0.0.1:9108)",
                    );
                    return None;
                }
            }
        }
    };
    let text = ctx.string("metrics.listen", listen_node)?;
    match text.parse::<SocketAddr>() {
        Ok(listen) => Some(MetricsConfig { listen }),
        Err(_) => {
            ctx.error(
                line(listen_node),
                format!(
                    "metrics.listen: {text:?} is not an address and port (e.g. 127.0.0.1:9108)"
                ),
            );
            None
        }
    }
}
