//! `scheme://[user[:password]@]host[:port]` URLs of the message-broker sinks
//! (MQTT, NATS): parsed once when the configuration is read, so a bad URL is a
//! configuration error naming its line, not a retry loop.

/// A broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetUrl {
    /// The host (a name, an IPv4 address, or an IPv6 address without brackets).
    pub host: String,
    /// The port (the scheme's default when absent).
    pub port: u16,
    /// The user name, if any.
    pub user: Option<String>,
    /// The password, if any.
    pub password: Option<String>,
}

impl NetUrl {
    /// Parse `text`, which must start with `scheme://`; `default_port` when it
    /// names none. A path other than `/` is refused.
    pub fn parse(text: &str, scheme: &str, default_port: u16) -> Result<NetUrl, String> {
        let rest = text
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| format!("{text:?} is not a {scheme}:// URL"))?;
        let (hostpart, path) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        if !path.is_empty() {
            return Err(format!(
                "{text:?}: a {scheme} URL has no path (found /{path})"
            ));
        }
        let (user, password, host) = match hostpart.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p.to_owned())),
                    None => (userinfo, None),
                };
                ((!user.is_empty()).then(|| user.to_owned()), password, host)
            }
            None => (None, None, hostpart),
        };
        let (host, port) = if let Some(v6) = host.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: an IPv6 address needs its closing `]`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(text, p)?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{text:?}: unexpected {after:?} after the host")),
            };
            (addr.to_owned(), port)
        } else {
            match host.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), parse_port(text, p)?),
                None => (host.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        Ok(NetUrl {
            host,
            port,
            user,
            password,
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without its password, for status and logs.
    pub fn redacted(&self, scheme: &str) -> String {
        match &self.user {
            Some(u) => format!("{scheme}://{u}@{}", self.authority()),
            None => format!("{scheme}://{}", self.authority()),
        }
    }
}

fn parse_port(text: &str, p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("{text:?}: the port {p:?} is not a number from 0 to 65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_credentials_ports_and_ipv6() {
        let u = NetUrl::parse("mqtt://127.0.0.1", "mqtt", 1883).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, &u.user),
            ("127.0.0.1", 1883, &None)
        );
        let u = NetUrl::parse("nats://me:pw@h:4333", "nats", 4222).unwrap();
        assert_eq!(u.authority(), "h:4333");
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("me"), Some("pw"))
        );
        assert_eq!(u.redacted("nats"), "nats://me@h:4333");
        let u = NetUrl::parse("mqtt://[::1]:1884/", "mqtt", 1883).unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:1884".to_owned())
        );
        let u = NetUrl::parse("mqtt://only@h", "mqtt", 1883).unwrap();
        assert_eq!((u.user.as_deref(), u.password), (Some("only"), None));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let e = |t: &str| NetUrl::parse(t, "mqtt", 1883).unwrap_err();
        assert!(e("http://h").contains("not a mqtt:// URL"));
        assert!(e("mqtt://h:x").contains("the port \"x\""));
        assert!(e("mqtt://h:70000").contains("the port"));
        assert!(e("mqtt://").contains("no host"));
        assert!(e("mqtt://h/topic").contains("has no path"));
        assert!(e("mqtt://[::1").contains("closing `]`"));
    }
}
