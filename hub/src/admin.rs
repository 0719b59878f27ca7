//! Administration: users, agent keys, shares, kicks, and looking at sessions and
//! data.
//!
//! **Owns:** the [`AdminRequest`]s and how they run. A request runs directly on
//! the data directory when no hub holds it, or through the running hub
//! otherwise: the store is a single-writer database, so while `komlog-hub serve`
//! runs, the command line sends the request to the hub's `POST /admin` with the
//! bearer token the hub wrote to `DATA/hub.json` (mode 0600). `/admin` only
//! answers connections from a loopback address.
//!
//! `kick` and `sessions` concern live sessions, so they need a running hub. A
//! kick forgets the user's sessions (their `kid` cookies stop working) and closes
//! their websockets with 4403, which makes an agent log in again: this is how
//! tests and operators force a re-login.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use komlog_protocol::openssh::{openssh_public_line, parse_openssh_public};
use komlog_protocol::{Kind, MetricId, TimeUuid, Uri, Username};
use serde_json::{Value, json};

use crate::server::{Hub, RunFile, run_file_path};
use crate::sessions::Registry;
use crate::store::{HubStore, Share, StoreError};

/// One administrative request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Create a user.
    AddUser {
        /// The username (stored lowercased).
        name: Username,
    },
    /// List users.
    ListUsers,
    /// Register an agent key for a user.
    AddAgent {
        /// The owning user.
        owner: Username,
        /// An OpenSSH RSA public key line (a comment is dropped).
        public_line: String,
    },
    /// List a user's agents.
    ListAgents {
        /// The user.
        owner: Username,
    },
    /// Share `owner`'s metrics at `prefix` and below with `with`, read-only.
    Share {
        /// The user sharing.
        owner: Username,
        /// A local uri.
        prefix: String,
        /// The user reading.
        with: Username,
    },
    /// Close a user's sessions with 4403 and invalidate their cookies.
    Kick {
        /// The user.
        user: Username,
        /// Only this session, if given.
        sid: Option<String>,
    },
    /// List live sessions.
    Sessions,
    /// The newest samples of a metric.
    Query {
        /// The owner.
        owner: Username,
        /// The local uri.
        uri: String,
        /// At most this many rows, newest first.
        count: usize,
    },
}

impl AdminRequest {
    fn needs_running_hub(&self) -> bool {
        matches!(self, AdminRequest::Kick { .. } | AdminRequest::Sessions)
    }
}

/// Why an administrative request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request needs a running hub and none runs on the data directory.
    #[error("`{command}` needs a running komlog-hub, and none is serving {}", dir.display())]
    NotRunning {
        /// The command.
        command: &'static str,
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The running hub could not be reached or refused the request.
    #[error("the running komlog-hub ({}): {reason}", run_file.display())]
    Remote {
        /// The run file used.
        run_file: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
}

/// A fresh bearer token for `/admin`.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness the admin interface stays closed: no token matches "".
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Run a request against a store, and against live sessions when given.
pub fn execute(
    store: &dyn HubStore,
    sessions: Option<&Registry>,
    req: &AdminRequest,
) -> Result<Value, AdminError> {
    match req {
        AdminRequest::AddUser { name } => {
            store.add_user(name)?;
            Ok(json!({"user": name}))
        }
        AdminRequest::ListUsers => Ok(json!({"users": store.users()?})),
        AdminRequest::AddAgent { owner, public_line } => {
            let key = parse_openssh_public(public_line)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            let agent = store.add_agent(owner, &openssh_public_line(&key))?;
            Ok(json!({"agent": agent}))
        }
        AdminRequest::ListAgents { owner } => {
            if !store.user_exists(owner)? {
                return Err(StoreError::NoSuchUser(owner.clone()).into());
            }
            Ok(json!({"agents": store.agents_of(owner)?}))
        }
        AdminRequest::Share {
            owner,
            prefix,
            with,
        } => {
            if !komlog_protocol::uri::is_local_uri(prefix) {
                return Err(AdminError::Invalid(format!(
                    "{prefix:?} is not a local uri (levels of [A-Za-z0-9_-] joined by '.')"
                )));
            }
            if owner == with {
                return Err(AdminError::Invalid(format!(
                    "{owner} cannot share with themselves"
                )));
            }
            let share = Share {
                owner: owner.clone(),
                prefix: prefix.clone(),
                with: with.clone(),
            };
            store.add_share(&share)?;
            Ok(json!({"share": share}))
        }
        AdminRequest::Query { owner, uri, count } => {
            let local = match Uri::parse(uri) {
                Ok(Uri::Local(l)) => l,
                _ => {
                    return Err(AdminError::Invalid(format!(
                        "{uri:?} is not a local uri (levels of [A-Za-z0-9_-] joined by '.')"
                    )));
                }
            };
            let id = MetricId {
                owner: owner.clone(),
                local,
            };
            let Some(kind) = store.metric_kind(&id)? else {
                return Ok(json!({"uri": id.to_string(), "kind": null, "rows": []}));
            };
            let rows = store.read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, *count)?;
            let rows: Vec<Value> = rows
                .iter()
                .map(|(t, v)| json!({"t": t.hex(), "ts_us": t.micros(), "value": v}))
                .collect();
            let supplies = match kind {
                Kind::Datasource => store.supplies(&id)?,
                Kind::Datapoint => None,
            };
            Ok(
                json!({"uri": id.to_string(), "kind": kind.name(), "supplies": supplies, "rows": rows}),
            )
        }
        AdminRequest::Kick { user, sid } => {
            let sessions =
                sessions.ok_or_else(|| AdminError::Invalid("no live sessions".into()))?;
            Ok(json!({"kicked": sessions.kick(user, sid.as_deref())}))
        }
        AdminRequest::Sessions => {
            let sessions =
                sessions.ok_or_else(|| AdminError::Invalid("no live sessions".into()))?;
            Ok(json!({"sessions": sessions.list()}))
        }
    }
}

/// Run a request on a data directory: directly when no hub holds it, through the
/// running hub otherwise.
pub async fn run(data_dir: &Path, req: AdminRequest) -> Result<Value, AdminError> {
    if !req.needs_running_hub() {
        match crate::store::redb::RedbStore::open(data_dir) {
            Ok(store) => {
                return tokio::task::spawn_blocking(move || execute(&store, None, &req))
                    .await
                    .map_err(|e| AdminError::Invalid(e.to_string()))?;
            }
            Err(StoreError::Locked { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let run_file = run_file_path(data_dir);
    let text = match std::fs::read_to_string(&run_file) {
        Ok(t) => t,
        Err(_) if req.needs_running_hub() => {
            let command = match req {
                AdminRequest::Kick { .. } => "kick",
                _ => "sessions",
            };
            return Err(AdminError::NotRunning {
                command,
                dir: data_dir.to_owned(),
            });
        }
        Err(e) => {
            return Err(AdminError::Remote {
                run_file,
                reason: format!(
                    "the data directory is in use but the run file cannot be read: {e}"
                ),
            });
        }
    };
    let remote = |reason: String| AdminError::Remote {
        run_file: run_file.clone(),
        reason,
    };
    let info: RunFile =
        serde_json::from_str(&text).map_err(|e| remote(format!("bad run file: {e}")))?;
    let body = serde_json::to_vec(&req).map_err(|e| remote(e.to_string()))?;
    let tls = match &info.tls_certificate {
        Some(hex) => {
            Some(crate::tls::pinned_client_config(hex).map_err(|e| remote(e.to_string()))?)
        }
        None => None,
    };
    let resp = crate::http_client::post_tls(
        info.listen,
        tls,
        &info.listen.to_string(),
        "/admin",
        "application/json",
        &[("authorization", format!("Bearer {}", info.admin_token))],
        body,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| remote(e.to_string()))?;
    let value = resp.json().map_err(|e| remote(e.to_string()))?;
    if resp.status == 200 {
        Ok(value)
    } else {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error text")
            .to_owned();
        Err(remote(msg))
    }
}

/// `POST /admin` on a running hub.
pub async fn endpoint(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let refuse = |status: StatusCode, msg: String| {
        (status, axum::Json(json!({"error": msg}))).into_response()
    };
    if !peer.ip().is_loopback() {
        return refuse(
            StatusCode::FORBIDDEN,
            "admin requests are only accepted from loopback".into(),
        );
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if hub.admin_token.is_empty() || !same_bytes(presented.as_bytes(), hub.admin_token.as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "bad or missing admin token".into(),
        );
    }
    let req: AdminRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad admin request: {e}")),
    };
    tracing::info!(?req, "admin request");
    let result = if req.needs_running_hub() {
        execute(hub.store.as_ref(), Some(&hub.sessions), &req)
    } else {
        let store = Arc::clone(&hub.store);
        tokio::task::spawn_blocking(move || execute(store.as_ref(), None, &req))
            .await
            .unwrap_or_else(|e| Err(AdminError::Invalid(e.to_string())))
    };
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// Compare without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
