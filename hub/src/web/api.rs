//! The endpoints of `/api/v1/`.
//!
//! **Owns:** who the caller is ([`Viewer`]: a browser session cookie or an API
//! token), what they may read ([`readable_id`]), the request checks (every
//! parameter is checked and a bad one answers 400 naming it) and the JSON
//! shapes. Times are microseconds since the Unix epoch (UTC) in answers;
//! parameters take the same, or RFC 3339 text (`2026-12-06T10:00:00Z`).
//! Datapoint values are JSON numbers with exactly the digits the store keeps.
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /login` `{user, password}` | a browser session: cookie + `{user, csrf}` |
//! | `POST /logout` | ends it (CSRF) |
//! | `GET /me` | `{user, via, csrf}` |
//! | `GET /uris?filter=` | own uris and those shared with the caller, with kind, count, first and last time |
//! | `GET /series?uri=&from=&to=&columns=` | a range reduced to columns (M4 points for datapoints, counts for both) |
//! | `GET /samples?uri=&from=&to=&limit=&order=&format=json\|csv` | raw rows, to export |
//! | `GET /text?uri=&at=&dir=at\|before\|after` | a datasource's text at a time, with its neighbours and what it supplies |
//! | `GET /live?uri=…` | new samples as server-sent events ([`super::live`]) |
//! | `GET/POST/DELETE /shares` | the caller's shares, given and received; share, unshare (CSRF) |
//! | `GET/POST /agents`, `DELETE /agents/{id}` | the caller's agent keys, last login, connected; add; revoke (CSRF; its sessions are closed with 4403) |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use komlog_protocol::{Kind, MetricId, TimeUuid, Uri, Username};
use serde_json::{Value, json};

use super::auth::{self, COOKIE_NAME, CSRF_HEADER};
use crate::admin::{self, AdminError, AdminRequest, AgentKey};
use crate::server::Hub;
use crate::store::{HubStore, MetricSummary, StoreError};

/// The most columns `series` reduces to.
pub const MAX_COLUMNS: u32 = 10_000;
/// Columns when none are asked for.
pub const DEFAULT_COLUMNS: u32 = 1_000;
/// The most rows one `samples` request returns.
pub const MAX_ROWS: usize = 100_000;
/// Rows when no limit is given.
pub const DEFAULT_ROWS: usize = 1_000;
/// The default range: the last day.
const DEFAULT_RANGE_US: i64 = 24 * 3600 * 1_000_000;
/// The most uris one `live` stream follows.
pub const MAX_LIVE_URIS: usize = 32;

/// A refused or failed request: its status and a message for people.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// 400 with a message.
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }

    fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({"error": self.1}))).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoSuchUser(u) => ApiError::not_found(format!("no user {u}")),
            e @ (StoreError::NoSuchShare(_) | StoreError::NoSuchAgent { .. }) => {
                ApiError::not_found(e.to_string())
            }
            e @ (StoreError::KeyRegistered { .. }
            | StoreError::UserExists(_)
            | StoreError::TokenExists { .. }
            | StoreError::KindMismatch { .. }) => ApiError(StatusCode::CONFLICT, e.to_string()),
            e => {
                tracing::error!("web request failed in the store: {e}");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the hub could not read its store (see its log)".into(),
                )
            }
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::Store(e) => e.into(),
            AdminError::Invalid(msg) => ApiError::bad(msg),
            e => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// Any other path under `/api/v1/`.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /api/v1/openapi.json)")
}

/// The API description.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../web/openapi.json"),
    )
        .into_response()
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session; the CSRF token it must echo, and its cookie value.
    Cookie {
        /// The session's CSRF token.
        csrf: String,
        /// The cookie value.
        session: String,
    },
    /// An API token.
    Token,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who.
    pub user: Username,
    /// How.
    pub via: Via,
    /// Whether the request carries the session's CSRF token (always true for
    /// tokens, which a browser does not send by itself).
    csrf_ok: bool,
}

impl Viewer {
    /// Refuse a changing request sent with the cookie but without the token.
    pub fn require_csrf(&self) -> Result<(), ApiError> {
        if self.csrf_ok {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("missing or wrong {CSRF_HEADER} header (read it from /api/v1/me)"),
            ))
        }
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "log in first (POST /api/v1/login) or send Authorization: Bearer <token>".into(),
    )
}

impl FromRequestParts<Arc<Hub>> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Viewer, ApiError> {
        let headers = &parts.headers;
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::UNAUTHORIZED,
                        "Authorization must be `Bearer <token>`".into(),
                    )
                })?;
            let digest = auth::token_digest(token);
            let found = hub.store_call(move |s| s.find_token(digest)).await?;
            return match found {
                Some(t) => Ok(Viewer {
                    user: t.owner,
                    via: Via::Token,
                    csrf_ok: true,
                }),
                None => Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "unknown or revoked token".into(),
                )),
            };
        }
        let id = cookie_value(headers, COOKIE_NAME).ok_or_else(unauthorized)?;
        let session = hub.web.sessions.touch(id).ok_or_else(unauthorized)?;
        // A changed or cleared password, or a removed user, ends the session.
        let user = session.user.clone();
        let current = hub.store_call(move |s| s.password(&user)).await?;
        if current.as_deref() != Some(session.phc.as_str()) {
            hub.web.sessions.end(id);
            return Err(unauthorized());
        }
        let sent = headers
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        Ok(Viewer {
            user: session.user,
            csrf_ok: auth::same_bytes(sent, session.csrf.as_bytes()),
            via: Via::Cookie {
                csrf: session.csrf,
                session: id.to_owned(),
            },
        })
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad JSON body: {e}")))
}

fn session_cookie(hub: &Hub, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if hub.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let text = format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}");
    // Hex and fixed attributes: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(serde::Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

/// `POST /login`: check the password, start a browser session.
pub async fn login(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let LoginBody { user, password } = parse_body(&body)?;
    let name = user.trim().to_ascii_lowercase();
    if let Some(wait) = hub.web.limiter.blocked_for(&name, peer.ip()) {
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed logins; try again in {} s",
                wait.as_secs() + 1
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    let username = Username::parse(&name).ok();
    let lookup = username.clone();
    let checked = hub
        .store_call(move |s| {
            let phc = match &lookup {
                Some(u) => s.password(u)?,
                None => None,
            };
            // Verify against a decoy when there is nothing to verify against,
            // so that a missing user takes as long as a wrong password.
            let ok = auth::verify_password(&password, phc.as_deref().unwrap_or(auth::decoy_hash()));
            Ok(phc.filter(|_| ok))
        })
        .await?;
    let (Some(user), Some(phc)) = (username, checked) else {
        hub.web.limiter.failed(&name, peer.ip());
        tracing::info!(user = %name, peer = %peer, "web login refused");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user or password (a user needs a web password first: komlog-hub user passwd NAME)"
                .into(),
        ));
    };
    hub.web.limiter.succeeded(&name);
    let (session, csrf) = hub.web.sessions.create(&user, &phc);
    tracing::info!(user = %user, peer = %peer, "web login");
    let mut r = axum::Json(json!({"user": user, "csrf": csrf})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&hub, &session, None));
    Ok(r)
}

/// `POST /logout`: end the browser session.
pub async fn logout(State(hub): State<Arc<Hub>>, viewer: Viewer) -> Result<Response, ApiError> {
    viewer.require_csrf()?;
    let Via::Cookie { session, .. } = &viewer.via else {
        return Err(ApiError::bad(
            "a token is not a session (revoke it with komlog-hub token remove)",
        ));
    };
    hub.web.sessions.end(session);
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&hub, "", Some(0)));
    Ok(r)
}

/// `GET /me`.
pub async fn me(viewer: Viewer) -> axum::Json<Value> {
    let (via, csrf) = match &viewer.via {
        Via::Cookie { csrf, .. } => ("cookie", Some(csrf.clone())),
        Via::Token => ("token", None),
    };
    axum::Json(json!({"user": viewer.user, "via": via, "csrf": csrf}))
}

/// The query's parameters, in order (a name may repeat).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The parameters of one request, refusing unknown and repeated names.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(raw: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
        let pairs = query_pairs(raw);
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad(format!(
                    "unknown parameter {k:?} (known: {})",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(ApiError::bad(format!("parameter {k:?} given twice")));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::bad(format!("parameter {name:?} is missing")))
    }

    fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|v| parse_time(name, v)).transpose()
    }

    fn number<T>(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad(format!(
                "parameter {name:?} must be a whole number from {} to {}, not {text:?}",
                range.start(),
                range.end()
            ))),
        }
    }
}

/// A time parameter: microseconds since the epoch, or RFC 3339 text.
pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad(format!(
            "parameter {name:?} must be microseconds since the epoch or RFC 3339 \
             (2026-12-06T10:00:00Z) within the TimeUUID range, not {text:?}"
        ))
    };
    let us = match text.parse::<i64>() {
        Ok(us) => us,
        Err(_) => {
            let t = humantime::parse_rfc3339_weak(text).map_err(|_| bad())?;
            match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_micros()).map_err(|_| bad())?,
                Err(e) => i64::try_from(e.duration().as_micros())
                    .map(|us| -us)
                    .map_err(|_| bad())?,
            }
        }
    };
    TimeUuid::lowest_at(us).ok_or_else(bad)?;
    Ok(us)
}

/// The time range of a request: `from` and `to` (defaults: the last day up to
/// now), checked.
fn range(p: &Params) -> Result<(i64, i64, TimeUuid, TimeUuid), ApiError> {
    let now = komlog_protocol::timeuuid::now_micros();
    let to = p.time("to")?.unwrap_or(now);
    let from = p
        .time("from")?
        .unwrap_or(to.saturating_sub(DEFAULT_RANGE_US));
    if from > to {
        return Err(ApiError::bad(format!(
            "from ({from}) is after to ({to}): the range is reversed"
        )));
    }
    let lo = TimeUuid::lowest_at(from).ok_or_else(|| ApiError::bad("from is out of range"))?;
    let hi = TimeUuid::highest_at(to).ok_or_else(|| ApiError::bad("to is out of range"))?;
    Ok((from, to, lo, hi))
}

/// The metric a `uri` parameter names (`local.uri` for the caller's own,
/// `owner:local.uri` for another user's), if the caller may read it and it
/// exists; otherwise 404, the same whether it is missing or not shared.
pub async fn readable_id(
    hub: &Arc<Hub>,
    viewer: &Viewer,
    text: &str,
) -> Result<(MetricId, Kind), ApiError> {
    let uri = Uri::parse(text)
        .map_err(|e| ApiError::bad(format!("parameter \"uri\": {text:?} is not a uri: {e}")))?;
    let id = uri.metric_id(&viewer.user);
    let (lookup, me) = (id.clone(), viewer.user.clone());
    let kind = hub.store_call(move |s| may_read(s, &me, &lookup)).await?;
    match kind {
        Some(kind) => Ok((id, kind)),
        None => Err(ApiError::not_found(format!(
            "no uri {text} that {} may read",
            viewer.user
        ))),
    }
}

/// The kind of `id` when `reader` may read it and it exists.
pub fn may_read(
    s: &dyn HubStore,
    reader: &Username,
    id: &MetricId,
) -> Result<Option<Kind>, StoreError> {
    if &id.owner != reader
        && !s
            .shares_of(&id.owner)?
            .iter()
            .any(|sh| sh.lets_read(reader, id))
    {
        return Ok(None);
    }
    s.metric_kind(id)
}

/// A stored value as JSON text: datapoints as numbers, digit for digit.
pub fn value_json(kind: Kind, content: &str) -> String {
    match kind {
        Kind::Datapoint if crate::cli_json::is_json_number(content) => content.to_owned(),
        _ => Value::String(content.to_owned()).to_string(),
    }
}

fn summary_json(s: &MetricSummary) -> Value {
    json!({
        "uri": s.uri,
        "kind": s.kind.name(),
        "count": s.count,
        "first": s.first.map(|t| t.micros()),
        "last": s.last.map(|t| t.micros()),
    })
}

/// `GET /uris?filter=TEXT`.
pub async fn uris(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let p = Params::new(q.as_deref(), &["filter"])?;
    let filter = p.get("filter").unwrap_or_default().to_lowercase();
    let me = viewer.user.clone();
    let (own, shared) = hub
        .store_call(move |s| {
            let keep =
                |m: &MetricSummary| filter.is_empty() || m.uri.to_lowercase().contains(&filter);
            let own: Vec<MetricSummary> = s.summaries_of(&me)?.into_iter().filter(keep).collect();
            let mut by_owner: std::collections::BTreeMap<Username, Vec<String>> =
                Default::default();
            for sh in s.all_shares()?.into_iter().filter(|sh| sh.with == me) {
                by_owner.entry(sh.owner).or_default().push(sh.prefix);
            }
            let mut shared = Vec::new();
            for (owner, prefixes) in by_owner {
                let uris: Vec<MetricSummary> = s
                    .summaries_of(&owner)?
                    .into_iter()
                    .filter(|m| {
                        let id = MetricId {
                            owner: owner.clone(),
                            local: m.uri.clone(),
                        };
                        prefixes.iter().any(|p| id.is_under(&owner, p))
                    })
                    .filter(keep)
                    .collect();
                shared.push((owner, prefixes, uris));
            }
            Ok((own, shared))
        })
        .await?;
    Ok(axum::Json(json!({
        "user": viewer.user,
        "own": own.iter().map(summary_json).collect::<Vec<_>>(),
        "shared": shared.iter().map(|(owner, prefixes, uris)| json!({
            "owner": owner,
            "prefixes": prefixes,
            "uris": uris.iter().map(summary_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })))
}

/// The longest time, in µs, between two consecutive samples of a series that
/// a plot still joins with a line: three times the series' usual spacing.
/// The usual spacing is the median, over the columns holding several samples,
/// of their mean spacing, or else the median time between consecutive
/// non-empty columns. A series sampled every minute and drawn in columns of a
/// few seconds is then a line, and only a stretch without samples three times
/// longer than usual is a gap.
pub fn gap_us(columns: &[crate::store::Column]) -> i64 {
    fn median(mut v: Vec<i64>) -> Option<i64> {
        if v.is_empty() {
            return None;
        }
        let middle = v.len() / 2;
        Some(*v.select_nth_unstable(middle).1)
    }
    let within = columns
        .iter()
        .filter(|c| c.count >= 2)
        .map(|c| {
            let count = i64::try_from(c.count - 1).unwrap_or(i64::MAX);
            (c.last.micros() - c.first.micros()) / count
        })
        .collect();
    let between = || {
        columns
            .windows(2)
            .map(|w| w[1].first.micros() - w[0].last.micros())
            .collect()
    };
    median(within)
        .or_else(|| median(between()))
        .map_or(i64::MAX, |usual| usual.max(1).saturating_mul(3))
}

/// `GET /series?uri=&from=&to=&columns=`: the range reduced to at most
/// `columns` columns. Answer: `points` `{t, v}` (datapoints: each column's
/// first, smallest, largest and last sample in time order, with a `null`
/// value where two consecutive samples lie further apart than [`gap_us`], so a
/// plot shows the gap) and `counts` `{i, n}` (each
/// non-empty column's index and sample count: the timeline).
pub async fn series(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let p = Params::new(q.as_deref(), &["uri", "from", "to", "columns"])?;
    let text = p.required("uri")?;
    let (from, to, lo, hi) = range(&p)?;
    let columns = p
        .number("columns", 1..=MAX_COLUMNS)?
        .unwrap_or(DEFAULT_COLUMNS);
    let (id, kind) = readable_id(&hub, &viewer, text).await?;
    let lookup = id.clone();
    let reduced = hub
        .store_call(move |s| s.reduce(&lookup, lo, hi, columns))
        .await?;
    let gap = gap_us(&reduced.columns);
    let mut last_sample: Option<i64> = None;
    let mut t = Vec::new();
    let mut v: Vec<Option<f64>> = Vec::new();
    let (mut ci, mut cn) = (Vec::new(), Vec::new());
    for c in &reduced.columns {
        ci.push(c.index);
        cn.push(c.count);
        let Some(values) = &c.values else {
            continue;
        };
        if let Some(before) = last_sample
            && c.first.micros() - before > gap
        {
            // A gap: a point without a value just after the last one.
            t.push(before + 1);
            v.push(None);
        }
        last_sample = Some(c.last.micros());
        let mut four = [values.first, values.min, values.max, values.last];
        four.sort_by_key(|p| p.t);
        let mut last_t = None;
        for point in four {
            if last_t == Some(point.t) {
                continue;
            }
            last_t = Some(point.t);
            t.push(point.t.micros());
            v.push(point.v.is_finite().then_some(point.v));
        }
    }
    let span = (to - from) as f64 / f64::from(columns);
    Ok(axum::Json(json!({
        "uri": id.local,
        "owner": id.owner,
        "kind": kind.name(),
        "from": from,
        "to": to,
        "columns": columns,
        "column_us": span,
        "rows": reduced.rows,
        "points": {"t": t, "v": v},
        "counts": {"i": ci, "n": cn},
    })))
}

/// `GET /samples?uri=&from=&to=&limit=&order=asc|desc&format=json|csv`.
pub async fn samples(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::new(
        q.as_deref(),
        &["uri", "from", "to", "limit", "order", "format"],
    )?;
    let text = p.required("uri")?;
    let (from, to, lo, hi) = range(&p)?;
    let limit = p.number("limit", 1..=MAX_ROWS)?.unwrap_or(DEFAULT_ROWS);
    let newest_first = match p.get("order").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        other => {
            return Err(ApiError::bad(format!(
                "parameter \"order\" must be asc or desc, not {other:?}"
            )));
        }
    };
    let csv = match p.get("format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::bad(format!(
                "parameter \"format\" must be json or csv, not {other:?}"
            )));
        }
    };
    let (id, kind) = readable_id(&hub, &viewer, text).await?;
    let lookup = id.clone();
    // One more than asked tells whether the range holds more.
    let mut rows = hub
        .store_call(move |s| {
            if newest_first {
                s.read_newest(&lookup, lo, hi, limit + 1)
            } else {
                s.read_oldest(&lookup, lo, hi, limit + 1)
            }
        })
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    if csv {
        let mut out = String::from("time_us,time,value\n");
        for (t, content) in &rows {
            out.push_str(&format!(
                "{},{},{}\n",
                t.micros(),
                rfc3339(t.micros()),
                csv_field(content)
            ));
        }
        let file = format!("{}_{}.csv", id.owner, id.local);
        let disposition = format!("attachment; filename=\"{}\"", file.replace('"', ""));
        let mut r = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        if more && let Ok(v) = HeaderValue::from_str(&limit.to_string()) {
            r.headers_mut().insert("x-komlog-truncated-at", v);
        }
        return Ok(r);
    }
    let mut body = format!(
        "{{\"uri\":{},\"owner\":{},\"kind\":{},\"from\":{from},\"to\":{to},\"more\":{more},\"rows\":[",
        Value::String(id.local.clone()),
        Value::String(id.owner.to_string()),
        Value::String(kind.name().to_owned()),
    );
    for (i, (t, content)) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"t\":{},\"id\":\"{}\",\"value\":{}}}",
            t.micros(),
            t.hex(),
            value_json(kind, content)
        ));
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A time as RFC 3339 UTC with microseconds (raw µs outside what it can show).
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    match u64::try_from(secs) {
        Ok(secs) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000);
            humantime::format_rfc3339_micros(t).to_string()
        }
        Err(_) => us.to_string(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `GET /text?uri=&at=&dir=at|before|after`: a datasource's text at `at`
/// (default now): `at`, the newest at or before; `before`, the newest
/// strictly before; `after`, the oldest strictly after.
pub async fn text(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let p = Params::new(q.as_deref(), &["uri", "at", "dir"])?;
    let text = p.required("uri")?;
    let at = p
        .time("at")?
        .unwrap_or_else(komlog_protocol::timeuuid::now_micros);
    let dir = p.get("dir").unwrap_or("at").to_owned();
    if !["at", "before", "after"].contains(&dir.as_str()) {
        return Err(ApiError::bad(format!(
            "parameter \"dir\" must be at, before or after, not {dir:?}"
        )));
    }
    let (id, kind) = readable_id(&hub, &viewer, text).await?;
    let lookup = id.clone();
    let (min, max) = (TimeUuid::MIN, TimeUuid::MAX);
    let which = dir.clone();
    let found = hub
        .store_call(move |s| {
            let before = |us: i64| {
                TimeUuid::highest_at(us)
                    .map_or(Ok(Vec::new()), |hi| s.read_newest(&lookup, min, hi, 1))
            };
            let after = |us: i64| {
                TimeUuid::lowest_at(us)
                    .map_or(Ok(Vec::new()), |lo| s.read_oldest(&lookup, lo, max, 1))
            };
            let row = match which.as_str() {
                "at" => before(at)?,
                "before" => before(at - 1)?,
                _ => after(at + 1)?,
            };
            let Some((t, content)) = row.into_iter().next() else {
                return Ok(None);
            };
            let prev = before(t.micros() - 1)?.first().map(|(t, _)| t.micros());
            let next = after(t.micros() + 1)?.first().map(|(t, _)| t.micros());
            let supplies = s.supplies(&lookup)?.unwrap_or_default();
            Ok(Some((t, content, prev, next, supplies)))
        })
        .await?;
    let Some((t, content, prev, next, supplies)) = found else {
        return Err(ApiError::not_found(format!(
            "{text} has no sample {dir} {at}"
        )));
    };
    Ok(axum::Json(json!({
        "uri": id.local,
        "owner": id.owner,
        "kind": kind.name(),
        "t": t.micros(),
        "id": t.hex(),
        "text": content,
        "prev": prev,
        "next": next,
        "supplies": supplies,
    })))
}

/// `GET /shares`: what the caller shares, and what is shared with them.
pub async fn shares(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
) -> Result<axum::Json<Value>, ApiError> {
    let me = viewer.user.clone();
    let all = hub.store_call(|s| s.all_shares()).await?;
    let given: Vec<Value> = all
        .iter()
        .filter(|s| s.owner == me)
        .map(|s| json!({"prefix": s.prefix, "with": s.with}))
        .collect();
    let received: Vec<Value> = all
        .iter()
        .filter(|s| s.with == me)
        .map(|s| json!({"owner": s.owner, "prefix": s.prefix}))
        .collect();
    Ok(axum::Json(json!({"given": given, "received": received})))
}

#[derive(serde::Deserialize)]
struct ShareBody {
    prefix: String,
    with: String,
}

fn username_param(name: &str, text: &str) -> Result<Username, ApiError> {
    Username::parse(text).map_err(|e| ApiError::bad(format!("{name}: {e}")))
}

async fn run_admin(hub: &Arc<Hub>, req: AdminRequest) -> Result<Value, ApiError> {
    let hub2 = Arc::clone(hub);
    tokio::task::spawn_blocking(move || {
        admin::execute(hub2.store.as_ref(), Some(&hub2.sessions), &req)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(ApiError::from)
}

/// `POST /shares` `{prefix, with}`: share the caller's `prefix` and below.
pub async fn add_share(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, ApiError> {
    viewer.require_csrf()?;
    let ShareBody { prefix, with } = parse_body(&body)?;
    let with = username_param("with", &with)?;
    if with == viewer.user {
        return Err(ApiError::bad("a share is with another user"));
    }
    let answer = run_admin(
        &hub,
        AdminRequest::Share {
            owner: viewer.user.clone(),
            prefix,
            with,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `DELETE /shares?prefix=&with=`: withdraw a share.
pub async fn remove_share(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    viewer.require_csrf()?;
    let p = Params::new(q.as_deref(), &["prefix", "with"])?;
    let prefix = p.required("prefix")?.to_owned();
    let with = username_param("with", p.required("with")?)?;
    let answer = run_admin(
        &hub,
        AdminRequest::Unshare {
            owner: viewer.user.clone(),
            prefix,
            with,
        },
    )
    .await?;
    Ok(axum::Json(answer))
}

/// `GET /agents`: the caller's agent keys, when each last logged in and
/// whether one of its sessions is connected now.
pub async fn agents(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
) -> Result<axum::Json<Value>, ApiError> {
    let me = viewer.user.clone();
    let (agents, logins) = hub
        .store_call(move |s| Ok((s.agents_of(&me)?, s.last_logins(&me)?)))
        .await?;
    let live = hub.sessions.list();
    let list: Vec<Value> = agents
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "fingerprint": admin::fingerprint(&a.public_line),
                "public_line": a.public_line,
                "last_login": logins.get(&a.id),
                "connected": live.iter().any(|s| s.agent_id == a.id && s.connected),
            })
        })
        .collect();
    Ok(axum::Json(json!({"agents": list})))
}

#[derive(serde::Deserialize)]
struct AgentBody {
    public_key: String,
}

/// `POST /agents` `{public_key}`: register a key (komlogd's `key.pub`).
pub async fn add_agent(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, ApiError> {
    viewer.require_csrf()?;
    let AgentBody { public_key } = parse_body(&body)?;
    let answer = run_admin(
        &hub,
        AdminRequest::AddAgent {
            owner: viewer.user.clone(),
            public_line: public_key.trim().to_owned(),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `DELETE /agents/{id}`: revoke a key; its sessions are closed with 4403.
pub async fn remove_agent(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    viewer.require_csrf()?;
    let answer = run_admin(
        &hub,
        AdminRequest::RemoveAgent {
            owner: viewer.user.clone(),
            key: AgentKey::Id(id),
        },
    )
    .await?;
    Ok(axum::Json(answer))
}
