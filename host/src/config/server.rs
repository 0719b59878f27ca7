//! The `- server:` entry: the Komlog-compatible server to talk to. Without one the
//! agent runs alone on its local store.
//!
//! Only the scheme and the presence of a host are checked here; connecting is the
//! session's business.

use super::yaml::{Ctx, Node, Scalar, View, line, view};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// An `http://`, `https://`, `ws://` or `wss://` URL with a host.
    pub url: String,
}

const SERVER_KEYS: &[&str] = &["url"];

/// Read the `server` entry: a map `{url: …}` (a bare URL string is accepted too).
pub(super) fn parse_server(
    ctx: &mut Ctx<'_>,
    key_line: usize,
    node: &Node,
) -> Option<ServerConfig> {
    let url_node = match view(node) {
        View::Scalar(Scalar::Str(_)) => node,
        _ => {
            let block = ctx.block("server", node, SERVER_KEYS)?;
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
    match check_url(&url) {
        Ok(()) => Some(ServerConfig { url }),
        Err(why) => {
            ctx.error(line(url_node), format!("server.url: {url:?} {why}"));
            None
        }
    }
}

/// Check the scheme, that a host is present, and that a port, if any, is a number.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(
            "is not a URL: expected http://, https://, ws:// or wss:// followed by a host"
                .to_owned(),
        );
    };
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ws" | "wss"
    ) {
        return Err(format!(
            "has scheme `{scheme}`: expected http, https, ws or wss"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err("has an unclosed `[` in its host".to_owned()),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("has no host".to_owned());
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("has an invalid port `{port}`"));
    }
    Ok(())
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
            "HTTPS://user@host",
            "https://host?x=1",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_url("ftp://x").unwrap_err(),
            "has scheme `ftp`: expected http, https, ws or wss"
        );
        assert_eq!(check_url("wss:///path").unwrap_err(), "has no host");
        assert_eq!(
            check_url("wss://h:99999").unwrap_err(),
            "has an invalid port `99999`"
        );
        assert!(check_url("agents.komlog.io").is_err());
        assert!(check_url("http://[::1").is_err());
    }
}
