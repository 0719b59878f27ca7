//! The running agent: sources feed the dispatcher until shutdown.
//!
//! Scheduled jobs run as tokio tasks and send their samples through a bounded
//! channel to the dispatcher thread; packages run on their pool threads
//! ([`crate::packages`]) and send theirs to the dispatcher's inbox, which owns the store and hands fires to one
//! worker thread per impulse. The dispatcher commits everything that arrived
//! together (source batches and impulse outputs) in one durable commit, so bursts
//! cost one fsync. On shutdown the jobs stop first (running children are killed
//! and reaped), then the dispatcher finishes what is queued, the workers finish
//! their fires, and the store is closed: nothing is left half-written.
//!
//! With a `- server:` block the agent runs in connected mode: the dispatcher
//! also puts every local write in the store's outbox, and a server link
//! ([`crate::session`]) sends it, hooks the impulses' uris and feeds the
//! server's notifications back in. The uris to hook follow the running
//! impulses: the dispatcher, through which every change to the set passes
//! (reloads, module swaps, packages), updates them on a watch channel.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{self, Config};
use crate::impulses::ImpulseSpec;
use crate::model::Sample;
use crate::session::{Hook, Link, LinkConfig, Supplies};
use crate::sources::jobs::{self, Clock};

use super::reload::Reloader;
use super::{Agent, status};

/// How many batches may wait for the dispatcher before sources wait in turn.
const QUEUE_BATCHES: usize = 1024;

/// What a run did, for the final log line and for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Jobs scheduled (enabled ones, external files included).
    pub jobs: usize,
    /// Source samples stored.
    pub stored: u64,
    /// Source samples refused.
    pub refused: u64,
    /// Impulse fires.
    pub fires: u64,
}

/// The enabled jobs of a configuration: its own, plus external job files when
/// allowed. Problems with external files are logged; the good files still count.
pub fn jobs_of(config: &Config) -> Vec<config::JobConfig> {
    let mut jobs = all_jobs_of(config);
    jobs.retain(|j| j.enabled);
    jobs
}

/// [`jobs_of`], disabled jobs included.
fn all_jobs_of(config: &Config) -> Vec<config::JobConfig> {
    let mut jobs = config.jobs.clone();
    if config.allow_external_jobs {
        let (external, errors) = config::load_external_jobs(config);
        for e in errors {
            tracing::error!("{e}");
        }
        jobs.extend(external);
    }
    jobs
}

/// Connected mode: the server link over the dispatcher's store (its outbox) and
/// inbox, hooking the uris the running impulses subscribe to, kept current as
/// the dispatcher's set changes. None, with the reason logged, when it cannot
/// start (no username, no key, store failure).
fn start_link(
    server: &config::ServerConfig,
    config: &Config,
    dispatcher: &mut crate::impulses::Dispatcher,
    supplies: Supplies,
    shutdown: watch::Receiver<bool>,
) -> Option<Link> {
    let Some(username) = &config.username else {
        tracing::error!("connected mode needs `- username:`; running in local mode");
        return None;
    };
    let key = match crate::keys::load_or_create(&config.key_path()) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("connected mode needs the agent's key: {e}; running in local mode");
            return None;
        }
    };
    let outbox = match dispatcher.store().outbox() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("cannot open the outbox: {e}; running in local mode");
            return None;
        }
    };
    let signal = Arc::new(tokio::sync::Notify::new());
    dispatcher.set_outbox_signal(Arc::clone(&signal));
    let (hooks_tx, hooks) = watch::channel(hooks_of(dispatcher.specs(), Some(username)));
    let me = username.clone();
    dispatcher.watch_specs(Box::new(move |specs| {
        let now = hooks_of(specs.iter().copied(), Some(&me));
        hooks_tx.send_if_modified(|hooks| {
            let changed = *hooks != now;
            if changed {
                *hooks = now;
            }
            changed
        });
    }));
    let link_config = LinkConfig {
        urls: server.urls.clone(),
        ca_file: server.ca_file.clone(),
        username: username.as_str().to_owned(),
        key: key.private,
        hooks,
        supplies,
        reply_timeout: Duration::from_secs(30),
    };
    let inbox = dispatcher.inbox();
    Some(Link::start(link_config, outbox, signal, inbox, shutdown))
}

/// Every uri the impulses of `specs` subscribe to, once per store key, with the
/// union of their data requirements.
pub fn hooks_of<'a>(
    specs: impl IntoIterator<Item = &'a ImpulseSpec>,
    me: Option<&crate::model::Username>,
) -> Vec<Hook> {
    let mut hooks: Vec<(String, Hook)> = Vec::new();
    for spec in specs {
        for uri in &spec.uris {
            let key = uri.store_key(me);
            match hooks.iter_mut().find(|(k, _)| *k == key) {
                Some((_, hook)) => {
                    hook.reqs = hook.reqs.union(spec.data_reqs);
                    hook.impulses.push(spec.name.to_string());
                }
                None => hooks.push((
                    key,
                    Hook {
                        uri: uri.to_string(),
                        reqs: spec.data_reqs,
                        impulses: vec![spec.name.to_string()],
                    },
                )),
            }
        }
    }
    hooks.into_iter().map(|(_, h)| h).collect()
}

/// Run `agent` with the jobs of `config` until `shutdown` turns true, then stop
/// cleanly. Also watches the configuration and modules for changes
/// ([`super::reload`]), answers `komlogd status` on the control socket and, when
/// configured, serves Prometheus metrics ([`super::status`]). Must be called
/// inside a tokio runtime.
pub async fn run(
    agent: Agent,
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> RunSummary {
    let started = std::time::Instant::now();
    let jobs = all_jobs_of(config);
    let job_count = jobs.iter().filter(|j| j.enabled).count();
    for job in jobs.iter().filter(|j| j.enabled) {
        if let Err(e) = jobs::find_program(job) {
            tracing::error!("{e}; it stays scheduled");
        }
    }
    let Agent {
        mut dispatcher,
        engine,
        packages: package_board,
        reload: reload_stats,
        ..
    } = agent;
    let board = dispatcher.board();
    let inbox = dispatcher.inbox();
    let supplies = Supplies::new();
    for job in jobs.iter().filter(|j| j.enabled && !j.supplies.is_empty()) {
        supplies.declare(&job.uri, job.supplies.clone());
    }
    let job_board = jobs::JobBoard::new(jobs);
    let link = config.server.as_ref().and_then(|server| {
        start_link(
            server,
            config,
            &mut dispatcher,
            supplies.clone(),
            shutdown.clone(),
        )
    });
    tracing::info!(
        jobs = job_count,
        impulses = board.snapshot().len(),
        "komlogd running in {} mode",
        if link.is_some() { "connected" } else { "local" }
    );
    let packages = Arc::new(crate::packages::start(
        &engine,
        config,
        inbox.clone(),
        package_board.clone(),
        supplies,
    ));
    let reloader = match Reloader::start(
        engine,
        config.clone(),
        board.clone(),
        inbox.clone(),
        Some(packages.clone()),
        reload_stats,
    ) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("{e}; changes to the configuration and modules will not be picked up");
            None
        }
    };
    let sink_board = crate::sinks::SinkBoard::default();
    let sinks = crate::sinks::Sinks::for_store(dispatcher.store(), config, sink_board.clone())
        .map(Arc::new);
    if let (Some(r), Some(s)) = (&reloader, &sinks) {
        let s = Arc::clone(s);
        r.follow(move |c| s.apply(&c.sinks));
    }
    let listener_board = crate::sources::listen::ListenerBoard::default();
    let boards = status::Boards {
        impulses: board.clone(),
        server: link.as_ref().map(|l| l.board.clone()),
        packages: package_board.clone(),
        jobs: job_board.clone(),
        listeners: listener_board.clone(),
        sinks: sink_board.clone(),
    };
    // Bound before the control socket appears, so that `status` lists them; a
    // reload restarts the ones whose block changed.
    let mut listeners =
        crate::sources::listen::Listeners::start(config, &inbox, &listener_board, &shutdown).await;
    let (listener_configs, mut new_listener_configs) = mpsc::unbounded_channel();
    if let Some(r) = &reloader {
        r.follow(move |c| {
            let _ = listener_configs.send((c.statsd.clone(), c.line_protocol.clone()));
        });
    }
    let mut listeners_stop = shutdown.clone();
    let listeners = tokio::spawn(async move {
        let stopped = async move {
            let _ = listeners_stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some((statsd, line_protocol)) = new_listener_configs.recv() => {
                    listeners.apply(statsd.as_ref(), line_protocol.as_ref()).await;
                }
            }
        }
        listeners.join().await;
    });
    let control = tokio::spawn(status::serve_control(
        status::control_socket_path(&config.dir),
        boards.clone(),
        inbox.clone(),
        started,
        shutdown.clone(),
    ));
    let metrics = match &config.metrics {
        Some(m) => match tokio::net::TcpListener::bind(m.listen).await {
            Ok(listener) => {
                tracing::info!(listen = %m.listen, "serving Prometheus metrics at /metrics");
                Some(tokio::spawn(status::serve_metrics(
                    listener,
                    boards,
                    shutdown.clone(),
                )))
            }
            Err(e) => {
                tracing::error!(listen = %m.listen, "cannot serve metrics: {e}");
                None
            }
        },
        None => None,
    };
    let serving = thread::Builder::new()
        .name("komlogd-dispatch".into())
        .spawn(move || {
            let mut summary = RunSummary::default();
            dispatcher.serve(
                |report| {
                    if report.accepted > 0 {
                        tracing::debug!(stored = report.accepted, "batch stored");
                    }
                    if report.fires > 0 || report.outputs > 0 {
                        tracing::debug!(
                            fires = report.fires,
                            outputs = report.outputs,
                            "impulses answered"
                        );
                    }
                    summary.stored += report.accepted as u64;
                    summary.refused += report.rejected.len() as u64;
                    summary.fires += report.fires;
                    for r in report.rejected {
                        tracing::warn!(uri = %r.uri, ts = r.ts, "sample refused: {}", r.reason);
                    }
                },
                |e| tracing::error!("cannot store samples: {e}"),
            );
            if let Err(e) = dispatcher.close() {
                tracing::error!("cannot close the store cleanly: {e}");
            }
            summary
        });
    let serving = match serving {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot start the dispatcher thread: {e}");
            return RunSummary::default();
        }
    };
    let (tx, mut rx) = mpsc::channel::<Vec<Sample>>(QUEUE_BATCHES);
    let forward_inbox = inbox.clone();
    let forwarder = tokio::task::spawn_blocking(move || {
        while let Some(batch) = rx.blocking_recv() {
            if forward_inbox.samples(batch).is_err() {
                break;
            }
        }
    });
    let mut stop = shutdown.clone();
    jobs::run_job_board(job_board, clock, tx, shutdown).await;
    // With no jobs (or once they are all done) the agent still runs until told to stop.
    let _ = stop.wait_for(|stopped| *stopped).await;
    if let Some(r) = reloader {
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    let _ = tokio::task::spawn_blocking(move || packages.stop()).await;
    let _ = listeners.await;
    // The job sender is gone: the forwarder ends once the queue is handed over.
    let _ = forwarder.await;
    if let Some(link) = link {
        link.join().await;
    }
    if let Ok(Err(e)) = control.await {
        tracing::warn!("control socket: {e}");
    }
    if let Some(s) = sinks {
        let _ = tokio::task::spawn_blocking(move || s.stop()).await;
    }
    let _ = inbox.stop();
    let mut summary = tokio::task::spawn_blocking(move || serving.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    summary.jobs = job_count;
    tracing::info!("komlogd stopped: {summary}");
    summary
}

impl std::fmt::Display for RunSummary {
    /// `1 job scheduled, 12 source samples stored, 0 refused, 30 impulse fires`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} job{} scheduled, {} source sample{} stored, {} refused, {} impulse fire{}",
            self.jobs,
            s(self.jobs as u64),
            self.stored,
            s(self.stored),
            self.refused,
            self.fires,
            s(self.fires)
        )
    }
}

/// What the agent says on stderr when it starts: its mode, the impulses of
/// komlogd.yaml that loaded (a package's own start with it), the enabled
/// packages and jobs (external job files included), and its log file.
pub fn start_notice(config: &Config, impulses: usize, log: &std::path::Path) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    let mut jobs = config.jobs.iter().filter(|j| j.enabled).count();
    if config.allow_external_jobs {
        // Read quietly: the agent logs the problems of these files itself.
        let external = config::read_external_jobs(config);
        jobs += external.jobs.iter().filter(|j| j.enabled).count();
    }
    let packages = config.packages.iter().filter(|p| p.enabled).count();
    let mode = match &config.server {
        Some(server) if server.urls.len() > 1 => {
            format!("connected mode (servers {})", server.describe())
        }
        Some(server) => format!("connected mode (server {})", server.url()),
        None => "local mode".to_owned(),
    };
    format!(
        "running in {mode}: {impulses} impulse{}, {packages} package{}, {jobs} job{}; \
         logging to {} (SIGINT or SIGTERM stops it)",
        s(impulses),
        s(packages),
        s(jobs),
        log.display()
    )
}
