//! The InfluxDB line protocol listener: an HTTP endpoint taking the writes of
//! InfluxDB 1.x and 2.x clients (Telegraf, the client libraries) as samples.
//!
//! - `POST /write?db=…&precision=n|ns|u|us|ms|s|m|h` (1.x) and
//!   `POST /api/v2/write?bucket=…&precision=ns|us|ms|s` (2.x): the body is
//!   line protocol, `measurement[,tag=v…] field=value[,field2=…] [timestamp]`,
//!   one point a line (blank lines and `#` comments skipped). `db`, `bucket`
//!   and `org` are accepted and ignored.
//! - `GET`/`HEAD /ping`: 204.
//!
//! Each field of a point is one sample at the uri of `measurement.field` with
//! the point's tags, by the naming rule of the application metrics clients
//! ([`komlog_metrics::uri`]), under the configured `prefix`: a float, integer
//! (`3i`) or unsigned (`3u`) field is a datapoint, a boolean a datapoint of 1
//! or 0, a string field a datasource sample. A point without a timestamp
//! takes the request's time; the timestamp is cut to microseconds.
//!
//! Like InfluxDB, a batch with bad lines stores its good points and answers
//! 400 with `{"error": "partial write: unable to parse '<line>': <why>"}`
//! (`unable to parse …` alone when no line was good); a body over 16 MiB is
//! refused whole with 413. Success is 204 once the samples are committed.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::listen::{BadKind, BadLine, ListenerStats, MAX_URI_BYTES, prefixed};
use crate::impulses::Inbox;
use crate::model::{Sample, Value, now_us};

/// The largest request body taken.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// The longest line taken.
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Microseconds per unit of a `precision`, or `None` for nanoseconds (divided).
fn precision_us(p: Option<&str>) -> Result<Option<i64>, String> {
    Ok(match p.unwrap_or("ns") {
        "" | "n" | "ns" => None,
        "u" | "us" | "µ" => Some(1),
        "ms" => Some(1_000),
        "s" => Some(1_000_000),
        "m" => Some(60_000_000),
        "h" => Some(3_600_000_000),
        other => return Err(format!("invalid precision {other:?}")),
    })
}

/// Split `text` at the first byte of `stops` not escaped by `\` (nor inside
/// double quotes when `quotes`): the part before and the stop found.
fn take_until<'a>(text: &'a str, stops: &[u8], quotes: bool) -> (&'a str, Option<u8>, &'a str) {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            i += 2;
            continue;
        }
        if quotes && b == b'"' {
            quoted = !quoted;
        } else if !quoted && stops.contains(&b) {
            return (&text[..i], Some(b), &text[i + 1..]);
        }
        i += 1;
    }
    (text, None, "")
}

/// `text` with the line protocol's backslash escapes removed.
fn unescape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\\') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | ' ' | '=' | '"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn syntax(reason: impl Into<String>) -> BadLine {
    BadLine::new(BadKind::Syntax, reason)
}

/// A field's value as a sample value.
fn field_value(text: &str) -> Result<Value, BadLine> {
    let bad = |what: &str| BadLine::new(BadKind::Value, format!("invalid {what} {text:?}"));
    if let Some(s) = text.strip_prefix('"') {
        let Some(s) = s.strip_suffix('"') else {
            return Err(syntax(format!("unterminated string {text:?}")));
        };
        return Ok(Value::Datasource(unescape(s).into_owned()));
    }
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Datapoint(1.0)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Datapoint(0.0)),
        "" => return Err(syntax("missing field value")),
        _ => {}
    }
    if let Some(i) = text.strip_suffix('i') {
        return i
            .parse::<i64>()
            .map(|v| Value::Datapoint(v as f64))
            .map_err(|_| bad("integer"));
    }
    if let Some(u) = text.strip_suffix('u') {
        return u
            .parse::<u64>()
            .map(|v| Value::Datapoint(v as f64))
            .map_err(|_| bad("unsigned"));
    }
    match text.parse::<f64>() {
        Ok(v)
            if v.is_finite()
                && !text
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            Ok(Value::Datapoint(v))
        }
        _ => Err(bad("number")),
    }
}

/// Parse one line into its samples, `now` (µs) standing for a missing
/// timestamp and `unit` the precision ([`precision_us`]).
pub fn parse_line(
    line: &str,
    prefix: Option<&str>,
    unit: Option<i64>,
    now: i64,
) -> Result<Vec<Sample>, BadLine> {
    if line.len() > MAX_LINE_BYTES {
        return Err(BadLine::new(
            BadKind::TooLong,
            format!("line of {} bytes, over {MAX_LINE_BYTES}", line.len()),
        ));
    }
    let (key, stop, rest) = take_until(line, b" ", false);
    if stop.is_none() {
        return Err(syntax("missing fields"));
    }
    let (measurement, stop, tag_text) = take_until(key, b",", false);
    if measurement.is_empty() {
        return Err(syntax("missing measurement"));
    }
    let mut tags: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> = Vec::new();
    if stop.is_some() {
        let mut left = tag_text;
        while !left.is_empty() {
            let (pair, _, next) = take_until(left, b",", false);
            left = next;
            let (k, eq, v) = take_until(pair, b"=", false);
            if eq.is_none() || k.is_empty() || v.is_empty() {
                return Err(syntax(format!("missing tag key or value in {pair:?}")));
            }
            tags.push((unescape(k), unescape(v)));
        }
    }
    let (fields_text, _, ts_text) = take_until(rest.trim_start_matches(' '), b" ", true);
    let ts = match ts_text.trim() {
        "" => now,
        t => {
            let raw: i64 = t
                .parse()
                .map_err(|_| BadLine::new(BadKind::Value, format!("invalid timestamp {t:?}")))?;
            match unit {
                None => raw.div_euclid(1_000),
                Some(k) => raw.checked_mul(k).ok_or_else(|| {
                    BadLine::new(BadKind::Value, format!("timestamp {t} out of range"))
                })?,
            }
        }
    };
    let measurement = unescape(measurement);
    let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (&**k, &**v)).collect();
    let mut samples = Vec::new();
    let mut left = fields_text;
    if left.is_empty() {
        return Err(syntax("missing fields"));
    }
    while !left.is_empty() {
        let (pair, _, next) = take_until(left, b",", true);
        left = next;
        let (k, eq, v) = take_until(pair, b"=", true);
        if eq.is_none() || k.is_empty() {
            return Err(syntax(format!("invalid field {pair:?}")));
        }
        let value = field_value(v)?;
        let name = format!("{measurement}.{}", unescape(k));
        let uri = prefixed(prefix, komlog_metrics::uri(&name, &tag_refs));
        if uri.len() > MAX_URI_BYTES {
            return Err(BadLine::new(
                BadKind::Uri,
                format!("uri of {} bytes, over {MAX_URI_BYTES}", uri.len()),
            ));
        }
        samples.push(Sample { uri, ts, value });
    }
    Ok(samples)
}

/// What a write did: its samples, and the first bad line with the number of
/// bad ones.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every sample of the good lines.
    pub samples: Vec<Sample>,
    /// Lines parsed (good and bad).
    pub lines: u64,
    /// The InfluxDB-style message for the first bad line.
    pub error: Option<String>,
}

/// Parse a body, counting bad lines on `stats`.
pub fn parse_body(
    body: &[u8],
    prefix: Option<&str>,
    unit: Option<i64>,
    now: i64,
    stats: &ListenerStats,
) -> Parsed {
    let mut parsed = Parsed::default();
    for raw in body.split(|b| *b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let trimmed = raw.trim_ascii_start();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        parsed.lines += 1;
        let result = std::str::from_utf8(trimmed)
            .map_err(|_| syntax("not UTF-8"))
            .and_then(|line| parse_line(line, prefix, unit, now));
        match result {
            Ok(mut s) => parsed.samples.append(&mut s),
            Err(bad) => {
                stats.bad(&bad, trimmed);
                if parsed.error.is_none() {
                    let shown = String::from_utf8_lossy(&trimmed[..trimmed.len().min(256)]);
                    parsed.error = Some(format!("unable to parse '{shown}': {}", bad.reason));
                }
            }
        }
    }
    stats.add_lines(parsed.lines);
    parsed
}

/// Serve the endpoint on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prefix: Option<String>,
    inbox: Inbox,
    stats: Arc<ListenerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let prefix: Arc<Option<String>> = Arc::new(prefix);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (prefix, inbox, stats) = (prefix.clone(), inbox.clone(), stats.clone());
                let service = hyper::service::service_fn(move |request| {
                    answer(request, prefix.clone(), inbox.clone(), stats.clone())
                });
                tokio::spawn(async move {
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!("line protocol connection: {e}");
                    }
                });
            }
        }
    }
}

fn reply(status: StatusCode, error: Option<String>) -> Response<Full<Bytes>> {
    let body = match &error {
        Some(e) => Bytes::from(serde_json::json!({ "error": e }).to_string()),
        None => Bytes::new(),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "X-Influxdb-Version",
        header::HeaderValue::from_static("1.8.10"),
    );
    if error.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
    }
    response
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn answer(
    request: Request<Incoming>,
    prefix: Arc<Option<String>>,
    inbox: Inbox,
    stats: Arc<ListenerStats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let method = request.method().clone();
    if path == "/ping" && (method == Method::GET || method == Method::HEAD) {
        return Ok(reply(StatusCode::NO_CONTENT, None));
    }
    if path != "/write" && path != "/api/v2/write" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            Some(format!(
                "komlogd serves POST /write, POST /api/v2/write and GET /ping, not {path}"
            )),
        ));
    }
    if method != Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            Some(format!("{path} takes POST")),
        ));
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let unit = match precision_us(query_param(&query, "precision")) {
        Ok(u) => u,
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, Some(e))),
    };
    if request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e.as_bytes() != b"identity")
    {
        return Ok(reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("compressed bodies are not supported: send plain line protocol".into()),
        ));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                let bad = BadLine::new(
                    BadKind::TooLong,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                );
                stats.bad(&bad, b"");
                return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, Some(bad.reason)));
            }
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                Some(format!("cannot read the body: {e}")),
            ));
        }
    };
    let parse_stats = stats.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let parsed = parse_body(&body, prefix.as_deref(), unit, now_us(), &parse_stats);
        let stored = if parsed.samples.is_empty() {
            Ok(0)
        } else {
            parse_stats.ingest(&inbox, parsed.samples)
        };
        (stored, parsed.error, parsed.lines)
    })
    .await;
    Ok(match stored {
        Ok((Ok(_), None, _)) => reply(StatusCode::NO_CONTENT, None),
        Ok((Ok(n), Some(e), lines)) => {
            let partial = if n > 0 || lines > 1 {
                "partial write: "
            } else {
                ""
            };
            reply(StatusCode::BAD_REQUEST, Some(format!("{partial}{e}")))
        }
        Ok((Err(_), _, _)) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("the agent is stopping".into()),
        ),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, Some(format!("{e}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::dp;

    fn one(line: &str) -> Result<Vec<Sample>, BadLine> {
        parse_line(line, None, None, 42)
    }

    #[test]
    fn fields_become_samples() {
        assert_eq!(
            one("cpu,host=web-1,region=eu\\ west usage=1.5,n=3i,up=t 1700000000123456789").unwrap(),
            vec![
                dp(
                    "cpu.usage.host_web-1.region_eu_west",
                    1_700_000_000_123_456,
                    1.5
                ),
                dp(
                    "cpu.n.host_web-1.region_eu_west",
                    1_700_000_000_123_456,
                    3.0
                ),
                dp(
                    "cpu.up.host_web-1.region_eu_west",
                    1_700_000_000_123_456,
                    1.0
                ),
            ]
        );
        assert_eq!(one("mem free=7u").unwrap(), vec![dp("mem.free", 42, 7.0)]);
        let text = one(r#"log msg="a, b=\"c\" d" 5"#).unwrap();
        assert_eq!(text[0].value, Value::Datasource("a, b=\"c\" d".into()));
        assert_eq!(text[0].ts, 0);
        assert_eq!(
            parse_line("m v=1 5", Some("influx"), Some(1_000_000), 0).unwrap(),
            vec![dp("influx.m.v", 5_000_000, 1.0)]
        );
    }

    #[test]
    fn bad_lines_by_kind() {
        let kind = |l: &str| one(l).unwrap_err().kind;
        assert_eq!(kind("garbage"), BadKind::Syntax);
        assert_eq!(kind("m"), BadKind::Syntax);
        assert_eq!(kind(",t=1 v=1"), BadKind::Syntax);
        assert_eq!(kind("m,t v=1"), BadKind::Syntax);
        assert_eq!(kind("m v"), BadKind::Syntax);
        assert_eq!(kind("m v=\"open"), BadKind::Syntax);
        assert_eq!(kind("m v=abc"), BadKind::Value);
        assert_eq!(kind("m v=nan"), BadKind::Value);
        assert_eq!(kind("m v=1x"), BadKind::Value);
        assert_eq!(kind("m v=1.5i"), BadKind::Value);
        assert_eq!(kind("m v=1 notatime"), BadKind::Value);
        assert_eq!(kind(&format!("{} v=1", "m".repeat(600))), BadKind::Uri);
        assert_eq!(
            kind(&format!("m v=\"{}\"", "x".repeat(70_000))),
            BadKind::TooLong
        );
        assert_eq!(
            parse_line("m v=1 9223372036854775807", None, Some(1_000), 0)
                .unwrap_err()
                .kind,
            BadKind::Value
        );
    }

    #[test]
    fn a_body_keeps_its_good_lines() {
        let stats = ListenerStats::new("line_protocol");
        let parsed = parse_body(
            b"# comment\na v=1 1000\n\nbad line\nb v=2 2000\r\n",
            None,
            None,
            0,
            &stats,
        );
        assert_eq!(parsed.samples, vec![dp("a.v", 1, 1.0), dp("b.v", 2, 2.0)]);
        assert_eq!(parsed.lines, 3);
        assert_eq!(
            parsed.error.as_deref(),
            Some("unable to parse 'bad line': invalid field \"line\"")
        );
        let r = stats.report();
        assert_eq!((r.lines, r.bad_syntax), (3, 1));
        assert_eq!(precision_us(Some("ms")), Ok(Some(1_000)));
        assert!(precision_us(Some("weeks")).is_err());
    }
}
