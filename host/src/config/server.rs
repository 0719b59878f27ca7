//! The `- server:` entry: the Komlog-compatible server (or servers) to talk
//! to. Without one the agent runs alone on its local store.
//!
//! **Owns:** reading `url` (one server, also written `- server: URL`) or `urls`
//! (several, tried in turn: the session's failover), refusing both at once,
//! and checking every url exactly as the server link reads it
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
    /// `http://`, `https://`, `ws://` or `wss://` URLs with a host, at least
    /// one, in the order the link tries them: `url`, or the list `urls`.
    pub urls: Vec<String>,
    /// For `https`/`wss`: a PEM file of CA certificates trusted besides the
    /// Mozilla roots (for a server with a private CA or a self-signed certificate).
    pub ca_file: Option<PathBuf>,
}

impl ServerConfig {
    /// One server at `url`, with no CA file.
    pub fn one(url: impl Into<String>) -> ServerConfig {
        ServerConfig {
            urls: vec![url.into()],
            ca_file: None,
        }
    }

    /// The first url: the one tried first.
    pub fn url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }

    /// The urls as messages name them: `a` or `a, b`.
    pub fn describe(&self) -> String {
        self.urls.join(", ")
    }

    /// True when some url is `https://` or `wss://` (read as the server link
    /// reads it).
    pub fn is_tls(&self) -> bool {
        self.urls
            .iter()
            .any(|u| komlog_session::Endpoint::parse(u).is_ok_and(|e| e.tls))
    }
}

/// Read the `server` entry: a map `{url: …, ca_file: …}` or `{urls: […], …}`
/// (a bare URL string is accepted too).
pub(super) fn parse_server(
    ctx: &mut Ctx<'_>,
    key_line: usize,
    node: &Node,
) -> Option<ServerConfig> {
    let mut ca_node = None;
    let urls = match view(node) {
        View::Scalar(Scalar::Str(_)) => one_url(ctx, "server.url", node).map(|u| vec![u]),
        _ => {
            let block = ctx.block("server", node, SERVER_KEYS)?;
            ca_node = block.get("ca_file");
            match (block.raw("url"), block.raw("urls")) {
                (Some(url), Some(urls)) => {
                    ctx.error(
                        line(urls).max(line(url)),
                        "server: `url` and `urls` are both given; give one of them \
                         (`urls` lists several servers)",
                    );
                    None
                }
                (Some(url), None) => one_url(ctx, "server.url", url).map(|u| vec![u]),
                (None, Some(urls)) => url_list(ctx, urls),
                (None, None) => {
                    ctx.error(
                        key_line,
                        "server: missing required key `url` (e.g. wss://hub.example.org/), \
                         or `urls` for several servers",
                    );
                    None
                }
            }
        }
    };
    let ca_file = match ca_node {
        Some(n) => Some(ctx.path("server.ca_file", n)?),
        None => None,
    };
    let urls = urls?;
    let server = ServerConfig { urls, ca_file };
    if let (Some(n), Some(path), false) = (ca_node, &server.ca_file, server.is_tls()) {
        let urls: Vec<String> = server.urls.iter().map(|u| format!("{u:?}")).collect();
        ctx.warn(
            line(n),
            format!(
                "server.ca_file ({}) is used only with an https:// or wss:// url, not {}",
                path.display(),
                urls.join(", ")
            ),
        );
    }
    Some(server)
}

/// One url (`what` names it in messages), checked as the link reads it.
fn one_url(ctx: &mut Ctx<'_>, what: &str, node: &Node) -> Option<String> {
    if let View::Seq(_) = view(node) {
        ctx.error(
            line(node),
            format!("{what}: expected one URL, found a list; several servers go in `urls`"),
        );
        return None;
    }
    let url = ctx.string(what, node)?;
    if let Err(why) = check_url(&url) {
        ctx.error(line(node), format!("{what}: {why}"));
        return None;
    }
    Some(url)
}

/// The `urls` list: at least one url, each checked (a bad one is named by its
/// index, from 0), a repeat warned about and dropped.
fn url_list(ctx: &mut Ctx<'_>, node: &Node) -> Option<Vec<String>> {
    let items = match view(node) {
        View::Seq(items) => items,
        View::Scalar(Scalar::Null) => &[],
        _ => {
            ctx.expected("server.urls", "a list of URLs", node);
            return None;
        }
    };
    if items.is_empty() {
        ctx.error(
            line(node),
            "server.urls: the list is empty; give at least one URL",
        );
        return None;
    }
    let mut urls: Vec<String> = Vec::with_capacity(items.len());
    let mut bad = false;
    for (i, item) in items.iter().enumerate() {
        match one_url(ctx, &format!("server.urls[{i}]"), item) {
            Some(url) if urls.contains(&url) => ctx.warn(
                line(item),
                format!("server.urls[{i}]: {url:?} is listed twice; the repeat is ignored"),
            ),
            Some(url) => urls.push(url),
            None => bad = true,
        }
    }
    (!bad).then_some(urls)
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
