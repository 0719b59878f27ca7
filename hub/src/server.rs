//! The hub's configuration, shared state and HTTP server.
//!
//! **Owns:** binding the listener, the routes (`POST /login`, the websocket at
//! `GET /`, `POST /admin`, and the web's `/api/v1/…` from [`crate::web`]), the run file `hub.json` in the data directory that
//! tells the command line where a running hub listens and its admin token, and
//! a clean stop (every connection closed with 4503, the run file removed).
//! With [`HubConfig::tls`] every connection is TLS ([`crate::tls::TlsListener`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use std::sync::atomic::{AtomicBool, Ordering};

use komlog_protocol::{MetricId, TimeUuid};

use crate::auth::Challenges;
use crate::cluster::{Bus, BusConfig, BusError, ClusterSessions, WriteEvent, write_events};
use crate::metrics::HubMetrics;
use crate::sessions::{CloseReason, Registry, Written};
use crate::store::group::{AfterCommit, GroupWriter};
use crate::store::{HubStore, SharedLogins, StoreError};
use crate::tls::{HubTls, TlsListener};

/// The run file's name in the data directory.
pub const RUN_FILE: &str = "hub.json";

/// How a hub runs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The data directory (the store and the run file).
    pub data_dir: PathBuf,
    /// How long a login challenge may be answered (spec: 60 s).
    pub challenge_validity: Duration,
    /// Messages queued per connection before it is closed as not reading.
    pub outbox_capacity: usize,
    /// The largest websocket message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Serve TLS with this certificate and key (default none: plain HTTP).
    pub tls: Option<HubTls>,
    /// How long a TLS handshake may take before the connection is dropped
    /// (default [`crate::tls::HANDSHAKE_TIMEOUT`], 10 s).
    pub tls_handshake_timeout: Duration,
    /// How long a session may stay without a connection before it is
    /// forgotten (default [`crate::sessions::SESSION_IDLE_EXPIRY`], 15 min).
    pub session_idle_expiry: Duration,
}

impl HubConfig {
    /// The defaults for a data directory and a listen address.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> HubConfig {
        HubConfig {
            listen,
            data_dir,
            challenge_validity: Duration::from_secs(
                komlog_protocol::login::CHALLENGE_VALIDITY_SECS,
            ),
            outbox_capacity: 4096,
            max_frame_bytes: 16 << 20,
            tls: None,
            tls_handshake_timeout: crate::tls::HANDSHAKE_TIMEOUT,
            session_idle_expiry: crate::sessions::SESSION_IDLE_EXPIRY,
        }
    }
}

/// What the run file holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunFile {
    /// The address the hub listens on.
    pub listen: SocketAddr,
    /// The bearer token of `POST /admin`.
    pub admin_token: String,
    /// The hub's process id.
    pub pid: u32,
    /// With TLS: the served certificate (DER, hex), which the admin client
    /// accepts and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<String>,
}

/// The state shared by every request and connection.
pub struct Hub {
    /// The storage.
    pub store: Arc<dyn HubStore>,
    /// Issued login challenges.
    pub challenges: Challenges,
    /// Sessions and connections.
    pub sessions: Registry,
    /// The configuration.
    pub config: HubConfig,
    /// The bearer token of `POST /admin`.
    pub admin_token: String,
    /// Sample writes, committed in groups.
    pub writer: GroupWriter,
    /// The web side's sessions, login limits and live feed.
    pub web: crate::web::WebState,
    /// What the hub counts (`GET /metrics`).
    pub metrics: Arc<HubMetrics>,
    /// The cluster bus, when the hub is one of several.
    pub bus: Option<Arc<Bus>>,
    /// Set while the hub stops: logins and websockets are refused, `/health`
    /// answers 503.
    pub draining: AtomicBool,
}

impl Hub {
    /// Notify this hub's hooked sessions and live pages of a write.
    pub fn notify_here(&self, t: TimeUuid, written: &[Written], created: &[MetricId]) {
        let queued = self.sessions.notify(t, written, created);
        self.metrics.notifications.add(queued as u64);
        self.web.live.publish(t, written);
    }

    /// True while the hub stops.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Run a store call on the blocking pool (store calls may wait on disk).
    pub async fn store_call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn HubStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Database {
                    path: PathBuf::new(),
                    op: "a store call",
                    reason: format!("the call failed: {e}"),
                })
            })
    }
}

/// Why the hub could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The run file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    RunFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    /// The cluster bus could not be joined.
    #[error("{0}")]
    Bus(BusError),
}

/// A started hub.
pub struct RunningHub {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its shared state.
    pub hub: Arc<Hub>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningHub {
    /// Stop: refuse new logins and websockets, close every connection with
    /// 4503 (agents reconnect at once, to another hub of a cluster), stop
    /// accepting, let the writes already queued commit, remove the run file.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.hub.draining.store(true, Ordering::Relaxed);
        self.hub
            .sessions
            .close_all(CloseReason::unavailable("The hub is stopping"));
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match tokio::time::timeout(Duration::from_secs(10), &mut self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(ServeError::Serve(std::io::Error::other(e.to_string()))),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        };
        // Writes read before the close are committed (or refused) before the
        // process goes; their agents send them again if unanswered.
        let writer = self.hub.writer.clone();
        let _ = tokio::time::timeout(Duration::from_secs(10), writer.flush()).await;
        remove_run_file(&self.hub.config.data_dir);
        result
    }

    /// Wait until the server task ends by itself (it only does on an error).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// The routes.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(komlog_protocol::login::LOGIN_PATH, post(crate::auth::login))
        .route(
            komlog_protocol::login::WEBSOCKET_PATH,
            get(crate::connection::upgrade),
        )
        .route("/admin", post(crate::admin::endpoint))
        .route("/metrics", get(crate::ops::metrics))
        .route("/health", get(crate::ops::health))
        .merge(crate::web::routes())
        .with_state(hub)
}

/// Bind, write the run file and serve in the background.
pub async fn start(config: HubConfig, store: Arc<dyn HubStore>) -> Result<RunningHub, ServeError> {
    start_with(config, store, None).await
}

/// What makes a hub one of several: the cluster's store for logins and the bus.
pub struct ClusterParts {
    /// Login challenges and sessions (the cluster's store).
    pub logins: Arc<dyn SharedLogins>,
    /// The bus.
    pub bus: BusConfig,
}

/// [`start`], as one hub of a cluster when `cluster` is given: the bus is
/// connected before the hub listens.
pub async fn start_with(
    config: HubConfig,
    store: Arc<dyn HubStore>,
    cluster: Option<ClusterParts>,
) -> Result<RunningHub, ServeError> {
    let metrics = Arc::new(HubMetrics::default());
    let bus = match &cluster {
        Some(parts) => Some(Arc::new(
            Bus::connect(&parts.bus, Arc::clone(&metrics))
                .await
                .map_err(ServeError::Bus)?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let after = bus
        .as_ref()
        .map(|bus| publish_after_commit(Arc::clone(bus)));
    let writer = GroupWriter::start_counted(Arc::clone(&store), Arc::clone(&metrics), after)
        .map_err(ServeError::Serve)?;
    let hub = Arc::new(Hub {
        writer,
        store,
        challenges: Challenges::default(),
        sessions: Registry::new(config.outbox_capacity, config.session_idle_expiry),
        admin_token: crate::admin::new_token(),
        web: crate::web::WebState::default(),
        config,
        metrics,
        bus: bus.clone(),
        draining: AtomicBool::new(false),
    });
    if let (Some(parts), Some(bus)) = (cluster, bus) {
        hub.challenges.share_with(Arc::clone(&parts.logins));
        hub.sessions.share_with(Arc::new(ClusterSessions {
            logins: parts.logins,
            bus: Arc::clone(&bus),
            runtime: tokio::runtime::Handle::current(),
        }));
        bus.listen(Arc::downgrade(&hub));
    }
    // A hub on PostgreSQL keeps only its run file in the data directory.
    std::fs::create_dir_all(&hub.config.data_dir).map_err(|source| ServeError::RunFile {
        path: run_file_path(&hub.config.data_dir),
        source,
    })?;
    write_run_file(
        &hub.config.data_dir,
        &RunFile {
            listen: addr,
            admin_token: hub.admin_token.clone(),
            pid: std::process::id(),
            tls_certificate: hub.config.tls.as_ref().map(HubTls::certificate_hex),
        },
    )?;
    let (tx, rx) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = rx.await;
    };
    let task = match &hub.config.tls {
        Some(tls) => {
            let listener = TlsListener::new(
                listener,
                Arc::clone(&tls.config),
                hub.config.tls_handshake_timeout,
            )
            .map_err(ServeError::Serve)?
            // A no-op tap: axum gives `ConnectInfo<SocketAddr>` to tapped listeners.
            .tap_io(|_| {});
            tokio::spawn(serve(listener, Arc::clone(&hub), stopped))
        }
        None => {
            // Replies and notifications are small frames: without TCP_NODELAY, Nagle
            // holds one back until the agent's delayed ACK (tens of milliseconds).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
            });
            tokio::spawn(serve(listener, Arc::clone(&hub), stopped))
        }
    };
    tracing::info!(
        %addr,
        data = %hub.config.data_dir.display(),
        "komlog-hub listening ({})",
        if hub.config.tls.is_some() {
            "HTTPS and secure websockets"
        } else {
            "plain HTTP and websockets, no TLS"
        }
    );
    Ok(RunningHub {
        addr,
        hub,
        shutdown: Some(tx),
        task,
    })
}

/// In a cluster, each group commit's writes are published on the bus (in as
/// few events as their size allows) before any of them is answered: a write
/// is answered only once its notifications cannot be lost, and the writes of
/// one hub are in the stream in commit order.
fn publish_after_commit(bus: Arc<Bus>) -> AfterCommit {
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |writes, results| {
        let events: Vec<WriteEvent> = writes
            .iter()
            .zip(results)
            .filter_map(|((owner, samples), result)| {
                let outcome = result.as_ref().ok()?;
                WriteEvent::of(owner, samples, &outcome.created)
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        // The writer is a thread of its own, outside the runtime.
        runtime
            .block_on(bus.publish_all(&write_events(events)))
            .map_err(|e| StoreError::Unpublished {
                reason: e.to_string(),
            })
    })
}

/// Serve the routes on `listener` until `stopped`.
async fn serve<L, F>(
    listener: axum::serve::TapIo<L, F>,
    hub: Arc<Hub>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    F: FnMut(&mut L::Io) + Send + 'static,
{
    let app = router(hub).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
        .map_err(ServeError::Serve)
}

/// The run file's path in a data directory.
pub fn run_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(RUN_FILE)
}

fn write_run_file(data_dir: &Path, run: &RunFile) -> Result<(), ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = run_file_path(data_dir);
    let tmp = data_dir.join(format!(".{RUN_FILE}.tmp"));
    let err = |source| ServeError::RunFile {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(run).map_err(|e| err(std::io::Error::other(e)))?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

fn remove_run_file(data_dir: &Path) {
    let path = run_file_path(data_dir);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}
