//! The Redis Streams sink (`type: redis`): each sample appended to a stream with
//! `XADD <stream> * uri <uri> ts <ts> kind <kind> value <value>` (`ts` in µs since the
//! Unix epoch; `value` the number as text, or the text).
//!
//! **Owns:** a small RESP client (one connection, `AUTH` and `SELECT` from the URL)
//! and the write: a batch is one `MULTI … EXEC` transaction, so it is appended whole
//! or not at all. Stream ids are Redis's own, so a resend after a crash appends the
//! samples again (counted in `resent`). Connection errors and the replies `LOADING`,
//! `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `OOM` and `NOAUTH`
//! are retried; other error replies (such as `WRONGTYPE`) refuse the batch for good.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::{BoxFuture, Sink, SinkError};
use crate::model::{Sample, Value};

/// How long connecting, or one batch and its replies, may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Longest bulk reply read.
const MAX_BULK: usize = 64 << 20;
/// Deepest nesting of array replies read.
const MAX_DEPTH: usize = 8;

/// A `redis://[[user]:password@]host[:port][/db]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `host:port`.
    pub authority: String,
    /// The user and password for `AUTH`.
    pub auth: Option<(Option<String>, String)>,
    /// The database for `SELECT`.
    pub db: Option<u32>,
}

impl RedisUrl {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{text:?} is not a redis:// URL"))?;
        let (hostpart, db) = match rest.split_once('/') {
            Some((h, "")) => (h, None),
            Some((h, d)) => (
                h,
                Some(
                    d.parse::<u32>()
                        .map_err(|_| format!("{text:?}: the database {d:?} is not a number"))?,
                ),
            ),
            None => (rest, None),
        };
        let (auth, host) = match hostpart.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or(("", userinfo));
                let user = (!user.is_empty()).then(|| user.to_owned());
                (Some((user, pass.to_owned())), host)
            }
            None => (None, hostpart),
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        let authority = match host.rsplit_once(':') {
            Some((_, p)) if !host.ends_with(']') => {
                p.parse::<u16>()
                    .map_err(|_| format!("{text:?}: the port {p:?} is not a number"))?;
                host.to_owned()
            }
            _ => format!("{host}:6379"),
        };
        Ok(RedisUrl {
            authority,
            auth,
            db,
        })
    }
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR …`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$…`; None for a nil.
    Bulk(Option<Vec<u8>>),
    /// `*…`; None for a nil.
    Array(Option<Vec<Reply>>),
}

/// A connection speaking RESP.
pub struct Conn {
    io: BufStream<TcpStream>,
}

impl Conn {
    /// Connect to `url`, authenticate and select its database.
    pub async fn open(url: &RedisUrl) -> Result<Conn, SinkError> {
        let stream = super::connect_tcp(&url.authority, TIMEOUT).await?;
        let mut conn = Conn {
            io: BufStream::new(stream),
        };
        if let Some((user, pass)) = &url.auth {
            let mut args = vec!["AUTH"];
            if let Some(u) = user {
                args.push(u);
            }
            args.push(pass);
            conn.expect_ok(&args).await?;
        }
        if let Some(db) = url.db {
            conn.expect_ok(&["SELECT", &db.to_string()]).await?;
        }
        Ok(conn)
    }

    async fn expect_ok(&mut self, args: &[&str]) -> Result<(), SinkError> {
        match self.command(args).await? {
            Reply::Error(e) => Err(classify(&e)),
            _ => Ok(()),
        }
    }

    /// Send one command and read its reply.
    pub async fn command(&mut self, args: &[&str]) -> Result<Reply, SinkError> {
        let mut buf = Vec::new();
        encode(args, &mut buf);
        self.write(&buf).await?;
        self.read().await
    }

    async fn write(&mut self, buf: &[u8]) -> Result<(), SinkError> {
        let io = |e: std::io::Error| SinkError::Retryable(format!("redis: {e}"));
        self.io.write_all(buf).await.map_err(io)?;
        self.io.flush().await.map_err(io)
    }

    /// Read one reply.
    pub async fn read(&mut self) -> Result<Reply, SinkError> {
        self.read_at(0).await
    }

    fn read_at(&mut self, depth: usize) -> BoxFuture<'_, Result<Reply, SinkError>> {
        Box::pin(async move {
            let io = |e: std::io::Error| SinkError::Retryable(format!("redis: {e}"));
            let bad = |what: &str| SinkError::Retryable(format!("redis: malformed reply ({what})"));
            let mut line = String::new();
            let n = self.io.read_line(&mut line).await.map_err(io)?;
            if n == 0 {
                return Err(SinkError::Retryable("redis: connection closed".into()));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let (tag, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty line"))?;
            let num = || rest.parse::<i64>().map_err(|_| bad(line));
            Ok(match tag {
                "+" => Reply::Status(rest.to_owned()),
                "-" => Reply::Error(rest.to_owned()),
                ":" => Reply::Int(num()?),
                "$" => {
                    let len = num()?;
                    if len < 0 {
                        Reply::Bulk(None)
                    } else {
                        let len = usize::try_from(len).map_err(|_| bad(line))?;
                        if len > MAX_BULK {
                            return Err(bad("bulk too long"));
                        }
                        let mut data = vec![0; len + 2];
                        self.io.read_exact(&mut data).await.map_err(io)?;
                        data.truncate(len);
                        Reply::Bulk(Some(data))
                    }
                }
                "*" => {
                    let len = num()?;
                    if len < 0 {
                        Reply::Array(None)
                    } else {
                        if depth >= MAX_DEPTH || len > 1_000_000 {
                            return Err(bad("array too deep or too long"));
                        }
                        let mut items = Vec::with_capacity(len as usize);
                        for _ in 0..len {
                            items.push(self.read_at(depth + 1).await?);
                        }
                        Reply::Array(Some(items))
                    }
                }
                _ => return Err(bad(line)),
            })
        })
    }
}

/// Encode a command as a RESP array of bulk strings.
fn encode(args: &[&str], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// An error reply as a [`SinkError`].
fn classify(e: &str) -> SinkError {
    const RETRY: &[&str] = &[
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "READONLY",
        "OOM",
        "NOAUTH",
    ];
    let code = e.split_whitespace().next().unwrap_or("");
    if RETRY.contains(&code) {
        SinkError::Retryable(format!("redis: {e}"))
    } else {
        SinkError::Permanent(format!("redis: {e}"))
    }
}

/// Appends batches to a stream.
pub struct RedisSink {
    url: Result<RedisUrl, String>,
    stream: String,
    conn: Option<Conn>,
}

impl RedisSink {
    /// A sink appending to `stream` at `url`.
    pub fn new(url: &str, stream: &str) -> RedisSink {
        RedisSink {
            url: RedisUrl::parse(url),
            stream: stream.to_owned(),
            conn: None,
        }
    }

    async fn conn(&mut self) -> Result<&mut Conn, SinkError> {
        if self.conn.is_none() {
            let url = self.url.clone().map_err(SinkError::Permanent)?;
            self.conn = Some(Conn::open(&url).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SinkError::Retryable("not connected".into()))
    }

    async fn write(&mut self, batch: &[Sample]) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(batch.len() * 96);
        encode(&["MULTI"], &mut buf);
        for s in batch {
            let (kind, value) = match &s.value {
                Value::Datapoint(v) => ("datapoint", v.to_string()),
                Value::Datasource(t) => ("datasource", t.clone()),
            };
            let ts = s.ts.to_string();
            encode(
                &[
                    "XADD",
                    &self.stream,
                    "*",
                    "uri",
                    &s.uri,
                    "ts",
                    &ts,
                    "kind",
                    kind,
                    "value",
                    &value,
                ],
                &mut buf,
            );
        }
        encode(&["EXEC"], &mut buf);
        let n = batch.len();
        let conn = self.conn().await?;
        conn.write(&buf).await?;
        // MULTI's +OK, one +QUEUED each, then EXEC's array (or an error).
        let mut first_error = None;
        for _ in 0..=n {
            if let Reply::Error(e) = conn.read().await? {
                first_error.get_or_insert(e);
            }
        }
        let exec = conn.read().await?;
        match (first_error, exec) {
            (Some(e), _) => Err(classify(&e)),
            (None, Reply::Error(e)) => Err(classify(&e)),
            (None, Reply::Array(Some(items))) => match items.iter().find_map(|r| match r {
                Reply::Error(e) => Some(e.clone()),
                _ => None,
            }) {
                Some(e) => Err(classify(&e)),
                None => Ok(()),
            },
            (None, other) => Err(SinkError::Retryable(format!(
                "redis: unexpected EXEC reply {other:?}"
            ))),
        }
    }
}

impl Sink for RedisSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let conn = self.conn().await?;
            match conn.command(&["PING"]).await? {
                Reply::Error(e) => Err(classify(&e)),
                _ => Ok(()),
            }
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let result = super::within(TIMEOUT, "redis: no answer", self.write(batch)).await;
            if result.is_err() {
                // The connection's state is unknown: start afresh.
                self.conn = None;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_auth_and_database() {
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.auth, u.db),
            ("127.0.0.1:6379", None, None)
        );
        let u = RedisUrl::parse("redis://:pw@h:7000/3").unwrap();
        assert_eq!(u.authority, "h:7000");
        assert_eq!(u.auth, Some((None, "pw".into())));
        assert_eq!(u.db, Some(3));
        let u = RedisUrl::parse("redis://me:pw@h/").unwrap();
        assert_eq!(u.auth, Some((Some("me".into()), "pw".into())));
        assert!(RedisUrl::parse("http://h").is_err());
        assert!(RedisUrl::parse("redis://h/x").is_err());
        assert!(RedisUrl::parse("redis://h:p").is_err());
    }

    #[test]
    fn error_replies_split_into_retryable_and_permanent() {
        assert!(matches!(
            classify("LOADING Redis is loading"),
            SinkError::Retryable(_)
        ));
        assert!(matches!(
            classify("WRONGTYPE Operation against a key"),
            SinkError::Permanent(_)
        ));
    }
}
