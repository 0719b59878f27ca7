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
//!
//! Removals take effect at once on a running hub, since they run in it:
//! removing an agent key kicks the sessions that key opened (4403; its next
//! login is refused), removing a user kicks all of theirs, and both removing a
//! user and withdrawing a share drop the hooks other users' sessions can no
//! longer read. On a stopped hub there is nothing live to end, and the next
//! login meets the changed store.

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
use crate::store::{AgentRecord, HubStore, Share, StoreError};

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
    /// Remove a user with their agent keys, the shares they granted and
    /// received, and all their metrics and samples, in one transaction.
    RemoveUser {
        /// The user.
        name: Username,
    },
    /// Unregister one agent key of a user.
    RemoveAgent {
        /// The user the agent logs in as.
        owner: Username,
        /// Which key.
        key: AgentKey,
    },
    /// Withdraw a share granted with [`AdminRequest::Share`].
    Unshare {
        /// The user sharing.
        owner: Username,
        /// The local uri shared.
        prefix: String,
        /// The user reading.
        with: Username,
    },
    /// List the shares `owner` granted, or every share.
    ListShares {
        /// Only this user's.
        owner: Option<Username>,
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
    /// Set a user's web password (an argon2id PHC string, hashed by the
    /// command line), or clear it with `None`: either ends the user's browser
    /// sessions.
    SetPassword {
        /// The user.
        name: Username,
        /// The hash, or none to clear it.
        phc: Option<String>,
    },
    /// Keep a new web API token of `owner` (only its SHA-256, hex).
    AddToken {
        /// The user it acts as.
        owner: Username,
        /// Its name, unique per user.
        name: String,
        /// The token's SHA-256, 64 hex digits.
        digest: String,
    },
    /// List a user's web API tokens (names and creation times).
    ListTokens {
        /// The user.
        owner: Username,
    },
    /// Revoke a web API token.
    RemoveToken {
        /// The user.
        owner: Username,
        /// The token's name.
        name: String,
    },
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

/// How [`AdminRequest::RemoveAgent`] names the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKey {
    /// An OpenSSH public key line (a comment is dropped).
    PublicLine(String),
    /// Its [`fingerprint`], with or without the `SHA256:` prefix.
    Fingerprint(String),
    /// The agent id given at registration.
    Id(String),
}

/// The SHA-256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l`
/// prints it: `SHA256:` and the unpadded base64 of the hash of the key blob.
/// `None` when the line has no base64 blob.
pub fn fingerprint(public_line: &str) -> Option<String> {
    use sha2::Digest;
    let blob = public_line.split_whitespace().nth(1)?;
    let bytes = komlog_protocol::login::decode_base64("k", blob).ok()?;
    let hash = sha2::Sha256::digest(&bytes);
    let text = komlog_protocol::login::encode_base64(&hash);
    Some(format!("SHA256:{}", text.trim_end_matches('=')))
}

fn agent_json(agent: &AgentRecord) -> Value {
    json!({
        "id": agent.id,
        "owner": agent.owner,
        "public_line": agent.public_line,
        "fingerprint": fingerprint(&agent.public_line),
    })
}

fn check_local_uri(uri: &str) -> Result<(), AdminError> {
    if komlog_protocol::uri::is_local_uri(uri) {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "{uri:?} is not a local uri (levels of [A-Za-z0-9_-] joined by '.')"
        )))
    }
}

fn check_user(store: &dyn HubStore, user: &Username) -> Result<(), AdminError> {
    if store.user_exists(user)? {
        Ok(())
    } else {
        Err(StoreError::NoSuchUser(user.clone()).into())
    }
}

/// Remove the agent `key` names; kick its sessions when the hub runs.
fn remove_agent(
    store: &dyn HubStore,
    sessions: Option<&Registry>,
    owner: &Username,
    key: &AgentKey,
) -> Result<Value, AdminError> {
    check_user(store, owner)?;
    let (wanted, described) = match key {
        AgentKey::PublicLine(line) => {
            let parsed =
                parse_openssh_public(line).map_err(|e| AdminError::Invalid(e.to_string()))?;
            let line = openssh_public_line(&parsed);
            let fp = fingerprint(&line).unwrap_or_default();
            (line, format!("with key {fp}"))
        }
        AgentKey::Fingerprint(fp) => {
            let fp = fp.trim();
            let fp = match fp.strip_prefix("SHA256:") {
                Some(_) => fp.to_owned(),
                None => format!("SHA256:{fp}"),
            };
            (fp.clone(), format!("with key {fp}"))
        }
        AgentKey::Id(id) => {
            let id = id.trim().to_ascii_lowercase();
            (id.clone(), format!("with id {id}"))
        }
    };
    let found = store.agents_of(owner)?.into_iter().find(|a| match key {
        AgentKey::PublicLine(_) => a.public_line == wanted,
        AgentKey::Fingerprint(_) => fingerprint(&a.public_line).as_deref() == Some(&wanted),
        AgentKey::Id(_) => a.id == wanted,
    });
    let not_found = || StoreError::NoSuchAgent {
        owner: owner.clone(),
        key: described.clone(),
    };
    let agent = found.ok_or_else(not_found)?;
    let removed = match store.remove_agent(owner, &agent.public_line) {
        Err(StoreError::NoSuchAgent { .. }) => return Err(not_found().into()),
        other => other?,
    };
    let kicked = sessions.map(|s| s.kick_agent(owner, &removed.id));
    tracing::info!(user = %owner, agent = %removed.id, "agent key removed");
    Ok(json!({"agent": agent_json(&removed), "kicked": kicked.unwrap_or_default()}))
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

/// A token name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
fn check_token_name(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "token name {name:?}: 1 to 64 characters of letters, digits, '_', '.' and '-'"
        )))
    }
}

fn decode_digest(hex: &str) -> Result<[u8; 32], AdminError> {
    let bad = || AdminError::Invalid("a token digest is 64 hex digits".into());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
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
            check_user(store, owner)?;
            let agents: Vec<Value> = store.agents_of(owner)?.iter().map(agent_json).collect();
            Ok(json!({"agents": agents}))
        }
        AdminRequest::RemoveUser { name } => {
            let removed = store.remove_user(name)?;
            tracing::info!(user = %name, ?removed, "user removed");
            let (kicked, hooks_dropped) = match sessions {
                Some(s) => (s.kick(name, None), s.drop_hooks(name, |_, _| false)),
                None => (Vec::new(), 0),
            };
            Ok(json!({
                "user": name,
                "removed": removed,
                "kicked": kicked,
                "hooks_dropped": hooks_dropped,
            }))
        }
        AdminRequest::RemoveAgent { owner, key } => remove_agent(store, sessions, owner, key),
        AdminRequest::Unshare {
            owner,
            prefix,
            with,
        } => {
            check_local_uri(prefix)?;
            check_user(store, owner)?;
            check_user(store, with)?;
            let share = Share {
                owner: owner.clone(),
                prefix: prefix.clone(),
                with: with.clone(),
            };
            store.remove_share(&share)?;
            tracing::info!(?share, "share withdrawn");
            let hooks_dropped = match sessions {
                Some(s) => {
                    let remaining = store.shares_of(owner)?;
                    s.drop_hooks(owner, |reader, id| {
                        remaining.iter().any(|sh| sh.lets_read(reader, id))
                    })
                }
                None => 0,
            };
            Ok(json!({"unshared": share, "hooks_dropped": hooks_dropped}))
        }
        AdminRequest::ListShares { owner } => {
            let shares = match owner {
                Some(owner) => {
                    check_user(store, owner)?;
                    store.shares_of(owner)?
                }
                None => store.all_shares()?,
            };
            let shares: Vec<Value> = shares
                .iter()
                .map(|s| json!({"owner": s.owner, "uri": s.prefix, "with": s.with}))
                .collect();
            Ok(json!({"shares": shares}))
        }
        AdminRequest::Share {
            owner,
            prefix,
            with,
        } => {
            check_local_uri(prefix)?;
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
        AdminRequest::SetPassword { name, phc } => {
            if let Some(phc) = phc
                && !phc.starts_with("$argon2")
            {
                return Err(AdminError::Invalid(
                    "a web password is stored as an argon2 PHC string".into(),
                ));
            }
            store.set_password(name, phc.as_deref())?;
            tracing::info!(user = %name, set = phc.is_some(), "web password changed");
            Ok(json!({"user": name, "password": phc.is_some()}))
        }
        AdminRequest::AddToken {
            owner,
            name,
            digest,
        } => {
            check_token_name(name)?;
            let bytes = decode_digest(digest)?;
            let record = store.add_token(owner, name, bytes)?;
            Ok(json!({"token": record}))
        }
        AdminRequest::ListTokens { owner } => {
            check_user(store, owner)?;
            Ok(json!({"tokens": store.tokens_of(owner)?}))
        }
        AdminRequest::RemoveToken { owner, name } => {
            check_user(store, owner)?;
            if store.remove_token(owner, name)? {
                Ok(json!({"removed": {"owner": owner, "name": name}}))
            } else {
                Err(AdminError::Invalid(format!(
                    "user {owner} has no token named {name:?}"
                )))
            }
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

/// The run file of a hub that is running: its process is alive.
fn live_run_file(data_dir: &Path) -> Option<RunFile> {
    let text = std::fs::read_to_string(run_file_path(data_dir)).ok()?;
    let info: RunFile = serde_json::from_str(&text).ok()?;
    Path::new(&format!("/proc/{}", info.pid))
        .exists()
        .then_some(info)
}

/// Run a request on a data directory: through the hub running on it (which
/// holds the store, and whose sessions see the change), or else directly on
/// its store: the cluster's store at `store_url` when given (a PostgreSQL url),
/// the embedded store in the data directory otherwise.
pub async fn run(
    data_dir: &Path,
    store_url: Option<&str>,
    req: AdminRequest,
) -> Result<Value, AdminError> {
    if !req.needs_running_hub() && live_run_file(data_dir).is_none() {
        if let Some(url) = store_url {
            let url = url.to_owned();
            return tokio::task::spawn_blocking(move || {
                let store = crate::store::postgres::PgStore::connect(&url, None)?;
                execute(&store, None, &req)
            })
            .await
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        }
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
    // Store work waits on disk, and in a cluster kicks wait on the shared
    // store: off the async threads. Removals reach the live sessions too.
    let result = {
        let hub = Arc::clone(&hub);
        tokio::task::spawn_blocking(move || execute(hub.store.as_ref(), Some(&hub.sessions), &req))
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
