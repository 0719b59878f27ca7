//! A Komlog protocol v1 client session: the Rust counterpart of the Python
//! agent's `KomlogSession`, as a library with no dependency on the agent.
//!
//! ```no_run
//! # async fn demo(key: komlog_protocol::login::PrivateKey) -> Result<(), komlog_session::SessionError> {
//! use komlog_session::{Endpoint, Sample, Session, SessionConfig};
//! let endpoint = Endpoint::parse("http://localhost:8080/")?;
//! let mut session = Session::login(SessionConfig::new(endpoint, "alice", key)?).await?;
//! let mut updates = session.take_notifications().expect("first call");
//! session.hook("cpu.user").await?;
//! session.send_samples(&[Sample::datapoint("cpu.user", komlog_protocol::TimeUuid::now(), 12.5)?]).await?;
//! let newest = session.request_data("cpu.user", None, None, Some(10)).await?;
//! # let _ = (updates.recv().await, newest);
//! session.close().await;
//! # Ok(()) }
//! ```
//!
//! * [`Session::login`]: the challenge login ([`http::login`]), then the websocket
//!   with the `kid` cookie.
//! * Requests and replies are matched by `irt`. **Every wait has a timeout**
//!   ([`SessionConfig::reply_timeout`]), and every pending wait fails with
//!   [`SessionError::Disconnected`] when the connection drops (the close code is
//!   kept: 4403 means the session must log in again).
//! * [`Session::send_samples`] groups samples by time: several at one time go
//!   in one `send_multi_data`, a single one in `send_ds_data`/`send_dp_data`;
//!   messages go in ascending time, each after the previous reply.
//!   [`Session::submit_samples`] sends one time's samples without waiting, so a
//!   caller can keep a bounded window of messages in flight
//!   ([`PendingReply::wait`] reads each reply).
//! * [`Session::request_data`] collects the `send_data_interval` chunks and stops
//!   when the requested start is reached, `count` rows have arrived, or a chunk
//!   is short — so it never waits for a chunk that will not come.
//! * Notifications (`send_multi_data` from the server) arrive on the channel
//!   from [`Session::take_notifications`].
//!
//! `http://` and `ws://` endpoints are plain TCP; `https://` and `wss://` use
//! TLS ([`tls`]): the server's certificate must chain to a Mozilla root or to a
//! CA of [`SessionConfig::ca_file`], and name the URL's host.

pub mod http;
mod session;
pub mod tls;

pub use session::{HookOutcome, Notification, PendingReply, Sample, Session, SessionConfig, Value};
pub use tls::TlsError;

use komlog_protocol::{GenericResponse, Status};

/// Where a server is: host, port, and the login and websocket paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host as written in the url, sent in `Host`: a name, an IPv4
    /// address, or an IPv6 address in brackets (`[::1]`).
    pub host: String,
    /// The port.
    pub port: u16,
    /// TLS (`https`/`wss`) or plain (`http`/`ws`).
    pub tls: bool,
}

impl Endpoint {
    /// Read `http://host[:port][/...]` or `ws://host[:port][/...]`, and with
    /// TLS `https://` or `wss://` (the path is ignored: the protocol fixes
    /// `/login` and `/`). The default port is 80, or 443 with TLS.
    pub fn parse(url: &str) -> Result<Endpoint, SessionError> {
        let bad = |why: &str| SessionError::BadEndpoint(format!("{url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://host:port/"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(bad("expected the scheme http, https, ws or wss")),
        };
        let default_port = if tls { 443 } else { 80 };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(bad(
                "a user or password in the url is not used: the agent logs in with its username and key",
            ));
        }
        let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad("invalid port"));
        let (host, port) = if authority.starts_with('[') {
            let end = authority
                .find(']')
                .ok_or_else(|| bad("an IPv6 address opened with `[` is not closed with `]`"))?;
            let (host, after) = authority.split_at(end + 1);
            match after {
                "" => (host, default_port),
                _ => match after.strip_prefix(':') {
                    Some(p) => (host, port_of(p)?),
                    None => return Err(bad("expected `:port` after the IPv6 address")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad(
                        "write an IPv6 address in brackets, e.g. http://[::1]:8080/",
                    ));
                }
                Some((h, p)) => (h, port_of(p)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("no host"));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl Endpoint {
    /// The host to resolve and connect to: [`Endpoint::host`] without the
    /// brackets of an IPv6 address.
    pub fn connect_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The server address is not usable.
    #[error("bad server address {0}")]
    BadEndpoint(String),
    /// A sample, uri or username is invalid; nothing was sent.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The TLS settings are not usable (a bad CA file, for example).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP login failed.
    #[error(transparent)]
    Login(#[from] http::LoginError),
    /// The websocket could not be opened.
    #[error("cannot open the websocket to {endpoint}: {reason}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// No reply within the timeout.
    #[error("no reply to {action} within {timeout:?}")]
    Timeout {
        /// The action sent.
        action: &'static str,
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// The connection is gone; pending waits fail with this. Code 4403 means the
    /// session was refused or kicked and must log in again.
    #[error("disconnected from the server (close code {code:?})")]
    Disconnected {
        /// The websocket close code, if the server sent one.
        code: Option<u16>,
    },
    /// The server refused the request.
    #[error("the server answered {action} with {}: {} (error {})", response.status, response.reason.as_deref().unwrap_or("no reason"), response.error)]
    Refused {
        /// The action sent.
        action: &'static str,
        /// The server's answer.
        response: GenericResponse,
    },
    /// The server answered with something else than the protocol allows.
    #[error("unexpected answer to {action}: {what}")]
    Unexpected {
        /// The action sent.
        action: &'static str,
        /// What came.
        what: String,
    },
}

impl SessionError {
    /// True when the server closed the session with 4403 (log in again).
    pub fn is_access_denied(&self) -> bool {
        matches!(self, SessionError::Disconnected { code: Some(c) } if *c == Status::ACCESS_DENIED.code())
    }

    /// True when the connection is gone or stopped answering (disconnected, or
    /// no reply in time): the session cannot go on and must log in again. Any
    /// other error concerns one request only.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            SessionError::Disconnected { .. } | SessionError::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("http://localhost:8080/").unwrap(),
            Endpoint {
                host: "localhost".into(),
                port: 8080,
                tls: false
            }
        );
        assert_eq!(Endpoint::parse("ws://hub").unwrap().port, 80);
        assert_eq!(
            Endpoint::parse("wss://hub/").unwrap(),
            Endpoint {
                host: "hub".into(),
                port: 443,
                tls: true
            }
        );
        assert_eq!(
            Endpoint::parse("HTTPS://localhost:8443/x").unwrap(),
            Endpoint {
                host: "localhost".into(),
                port: 8443,
                tls: true
            }
        );
        assert!(Endpoint::parse("hub:80").is_err());
        assert!(Endpoint::parse("http://:80").is_err());
        assert!(Endpoint::parse("http://h:99999").is_err());
        assert!(Endpoint::parse("ftp://h").is_err());
    }

    #[test]
    fn ipv6_endpoints_keep_their_brackets_for_the_host_header_only() {
        let e = Endpoint::parse("http://[::1]:8080/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.connect_host()),
            ("[::1]", 8080, "::1")
        );
        assert_eq!(Endpoint::parse("wss://[fe80::1]").unwrap().port, 443);
        assert_eq!(
            Endpoint::parse("http://localhost:1/")
                .unwrap()
                .connect_host(),
            "localhost"
        );
        for (url, why) in [
            ("http://::1:8080/", "brackets"),
            ("http://[::1:8080/", "not closed"),
            ("http://[::1]8080/", "`:port`"),
            ("http://[]:80/", "no host"),
            ("http://[::1]:x/", "invalid port"),
            ("https://user@hub/", "a user or password"),
        ] {
            let err = Endpoint::parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
