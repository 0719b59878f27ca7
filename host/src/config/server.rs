//! The `- server:` entry: the Komlog-compatible server to talk to. Without one the
//! agent runs alone on its local store.
//!
//! The url is read here exactly as the server link reads it
//! (`komlog_session::Endpoint`: scheme, host, port, IPv6 in brackets), so a url
//! the file accepts is one the link can use; connecting is the session's
//! business. `ca_file` is resolved against the configuration's
//! directory; its contents are checked by `komlogd check` and at each login.

use std::path::PathBuf;

use super::schema::SERVER_KEYS;
use super::yaml::{Ctx, Node, Scalar, View, line, view};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// An `http://`, `https://`, `ws://` or `wss://` URL with a host.
    pub url: String,
    /// For `https`/`wss`: a PEM file of CA certificates trusted besides the
    /// Mozilla roots (for a server with a private CA or a self-signed certificate).
    pub ca_file: Option<PathBuf>,
}

impl ServerConfig {
    /// True for an `https://` or `wss://` URL (read as the server link reads it).
    pub fn is_tls(&self) -> bool {
        komlog_session::Endpoint::parse(&self.url).is_ok_and(|e| e.tls)
    }
}

/// Read the `server` entry: a map `{url: …, ca_file: …}` (a bare URL string is
/// accepted too).
pub(super) fn parse_server(
    ctx: &mut Ctx<'_>,
    key_line: usize,
    node: &Node,
) -> Option<ServerConfig> {
    let mut ca_node = None;
    let url_node = match view(node) {
        View::Scalar(Scalar::Str(_)) => node,
        _ => {
            let block = ctx.block("server", node, SERVER_KEYS)?;
            ca_node = block.get("ca_file");
            match block.raw("url") {
                Some(n) => n,
                None => {
                    ctx.error(
                        key_line,
                        "server: missing required key `url` (e.g. wss://hub.example.org/)",
                    );
                    return None;
                }
            }
        }
    };
    let url = ctx.string("server.url", url_node)?;
    let ca_file = match ca_node {
        Some(n) => Some(ctx.path("server.ca_file", n)?),
        None => None,
    };
    if let Err(why) = check_url(&url) {
        ctx.error(line(url_node), format!("server.url: {why}"));
        return None;
    }
    let server = ServerConfig { url, ca_file };
    if let (Some(n), Some(path), false) = (ca_node, &server.ca_file, server.is_tls()) {
        ctx.warn(
            line(n),
            format!(
                "server.ca_file ({}) is used only with an https:// or wss:// url, not {:?}",
                path.display(),
                server.url
            ),
        );
    }
    Some(server)
}

/// Check the url exactly as the server link will read it.
fn check_url(url: &str) -> Result<(), String> {
    match komlog_session::Endpoint::parse(url) {
        Ok(_) => Ok(()),
        Err(komlog_session::SessionError::BadEndpoint(why)) => Err(why),
        Err(other) => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "wss://agents.komlog.io/",
            "ws://127.0.0.1:8080",
            "http://[::1]:80/x",
            "https://host?x=1",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_url("ftp://x").unwrap_err(),
            "\"ftp://x\": expected the scheme http, https, ws or wss"
        );
        assert_eq!(
            check_url("wss:///path").unwrap_err(),
            "\"wss:///path\": no host"
        );
        assert_eq!(
            check_url("wss://h:99999").unwrap_err(),
            "\"wss://h:99999\": invalid port"
        );
        assert!(check_url("agents.komlog.io").is_err());
        assert!(check_url("http://[::1").is_err());
        assert!(check_url("HTTPS://user@host").is_err());
    }
}
