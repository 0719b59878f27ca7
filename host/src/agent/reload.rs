//! Hot reload: watches komlogd.yaml and every module file it references, and
//! turns changes into [`Control`] messages for the dispatcher.
//!
//! The directories holding those files are watched (not the files themselves), so
//! an editor's write-then-rename and a `cp` over the file are both seen. A
//! directory that does not exist yet is stood in for by its nearest existing
//! parent; once it appears it is watched itself, and the modules in it are
//! handled as changed (so a file written before the watch began is not
//! missed). A directory that cannot be watched is logged and tried again at
//! the next change; the others are watched all the same. Events are
//! gathered until 100 ms pass without one (at most 500 ms), then handled on this
//! thread, off the event path:
//!
//! - **a module file changed:** every enabled impulse using it is loaded again (from
//!   the compiled cache when the bytes were seen before) and checked — right world,
//!   instantiates, `describe()` gives valid subscriptions, limits fit the engine.
//!   A module that passes is swapped in at the impulse's next call boundary; one
//!   that fails is refused with a log line naming the file and the reason, and the
//!   running version keeps serving. Unchanged bytes (a `touch`) change nothing.
//! - **komlogd.yaml changed:** an invalid file is refused whole (every error
//!   logged, the running set untouched); a valid one removes the impulses no longer
//!   enabled, adds new ones, and swaps those whose block, module or agent-wide
//!   limits changed; packages are added, removed and restarted the same way
//!   ([`Packages::reload`]: an unchanged package keeps running and its job
//!   timing); the sinks follow their `- sink:` blocks and the statsd and
//!   line_protocol listeners theirs ([`Reloader::follow`]). Settings other than
//!   impulses, packages, sinks, listeners and limits (jobs, logging, server,
//!   username, max_chain_depth) take effect at the next start; a change to them
//!   is logged as such.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

use crate::config::{self, Config, ImpulseConfig};
use crate::engine::Engine;
use crate::impulses::{Control, Inbox, StatsBoard};
use crate::packages::Packages;

use super::{load_impulse, log_loaded};

/// Quiet time that ends a burst of file events.
const QUIET: Duration = Duration::from_millis(100);
/// Longest a burst is gathered before it is handled anyway.
const MAX_GATHER: Duration = Duration::from_millis(500);
/// Poll period when the system's file notification is not available.
const POLL_PERIOD: Duration = Duration::from_millis(250);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path} for changes: {reason}")]
pub struct WatchError {
    /// The directory.
    pub path: PathBuf,
    /// The reason.
    pub reason: String,
}

enum Event {
    Changed(PathBuf),
    Stop,
}

/// What the reloader has done so far: how many versions of komlogd.yaml it
/// applied and refused, and how many changed module files held the running
/// version's bytes. Each count goes up once the change is fully handled, so a
/// test can tell that a change was seen and handled before it checks that the
/// change did nothing. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ReloadStats {
    counts: Arc<ReloadCounts>,
}

#[derive(Debug, Default)]
struct ReloadCounts {
    configs_applied: AtomicU64,
    configs_refused: AtomicU64,
    modules_unchanged: AtomicU64,
}

impl ReloadStats {
    /// Valid versions of komlogd.yaml applied.
    pub fn configs_applied(&self) -> u64 {
        self.counts.configs_applied.load(Ordering::SeqCst)
    }

    /// Versions of komlogd.yaml refused for their errors.
    pub fn configs_refused(&self) -> u64 {
        self.counts.configs_refused.load(Ordering::SeqCst)
    }

    /// Changed module files found to hold the running version (a `touch`, or
    /// the same bytes written again): nothing to swap.
    pub fn modules_unchanged(&self) -> u64 {
        self.counts.modules_unchanged.load(Ordering::SeqCst)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// What is told of each configuration applied (see [`Reloader::follow`]).
type Followers = Arc<std::sync::Mutex<Vec<Box<dyn Fn(&Config) + Send>>>>;

/// The running reloader; dropping it (or [`Reloader::stop`]) stops watching.
pub struct Reloader {
    events: Sender<Event>,
    thread: Option<JoinHandle<()>>,
    followers: Followers,
}

impl Reloader {
    /// Start watching `config` and its modules. `board` holds every impulse
    /// now loaded; enabled blocks that are missing from it (they failed to
    /// load) are retried when their file changes, and listed on it as failed
    /// while they still do not load. `packages`, when given, follows the
    /// `- package:` blocks of each valid reload. `stats` counts what was
    /// handled.
    pub fn start(
        engine: Engine,
        config: Config,
        board: StatsBoard,
        inbox: Inbox,
        packages: Option<Arc<Packages>>,
        stats: ReloadStats,
    ) -> Result<Reloader, WatchError> {
        let (events, rx) = mpsc::channel();
        let sender = events.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                let _ = sender.send(Event::Changed(path));
            }
        };
        let watcher: Box<dyn Watcher + Send> = match notify::recommended_watcher(handler.clone()) {
            Ok(w) => Box::new(w),
            Err(e) => {
                tracing::warn!("file notification unavailable ({e}); polling for changes instead");
                let poll = notify::Config::default().with_poll_interval(POLL_PERIOD);
                Box::new(
                    notify::PollWatcher::new(handler, poll).map_err(|e| WatchError {
                        path: config.dir.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
        };
        let running: HashMap<String, String> = board
            .snapshot()
            .into_iter()
            .map(|(name, stats)| (name.to_string(), stats.version))
            .collect();
        let running = config
            .impulses
            .iter()
            .filter_map(|b| {
                let hash = running.get(&b.name)?;
                Some((
                    b.name.clone(),
                    Running {
                        block: comparable(b),
                        limits: config.limits.clone(),
                        hash: hash.clone(),
                    },
                ))
            })
            .collect();
        let followers = Followers::default();
        let mut state = State {
            followers: Arc::clone(&followers),
            engine,
            config,
            running,
            board,
            inbox,
            packages,
            watcher,
            watched: BTreeSet::new(),
            missing: BTreeSet::new(),
            unwatchable: BTreeSet::new(),
            stats,
        };
        state.rewatch(&BTreeSet::new());
        let thread = std::thread::Builder::new()
            .name("komlogd-reload".into())
            .spawn(move || state.run(rx))
            .map_err(|e| WatchError {
                path: PathBuf::new(),
                reason: format!("cannot start the reload thread: {e}"),
            })?;
        Ok(Reloader {
            events,
            thread: Some(thread),
            followers,
        })
    }

    /// Call `f` with every valid configuration applied from now on (the sinks
    /// follow their `- sink:` blocks this way).
    pub fn follow(&self, f: impl Fn(&Config) + Send + 'static) {
        self.followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Stop watching and wait for a reload in progress to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.events.send(Event::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What is running under one name.
struct Running {
    block: ImpulseConfig,
    limits: config::Limits,
    hash: String,
}

struct State {
    /// Told of each configuration applied.
    followers: Followers,
    engine: Engine,
    config: Config,
    running: HashMap<String, Running>,
    /// Where impulses that fail to load are listed.
    board: StatsBoard,
    inbox: Inbox,
    packages: Option<Arc<Packages>>,
    watcher: Box<dyn Watcher + Send>,
    /// The directories watched now.
    watched: BTreeSet<PathBuf>,
    /// Directories of the configuration or of modules that do not exist (yet):
    /// their nearest existing parent is watched instead.
    missing: BTreeSet<PathBuf>,
    /// Directories whose watch failed (logged once until it works).
    unwatchable: BTreeSet<PathBuf>,
    stats: ReloadStats,
}

/// A block with its position cleared, so that moving it in the file is no change.
fn comparable(block: &ImpulseConfig) -> ImpulseConfig {
    ImpulseConfig {
        line: 0,
        ..block.clone()
    }
}

impl State {
    fn run(mut self, rx: Receiver<Event>) {
        loop {
            let mut changed = BTreeSet::new();
            match rx.recv() {
                Ok(Event::Changed(p)) => changed.insert(p),
                Ok(Event::Stop) | Err(_) => return,
            };
            let started = Instant::now();
            while started.elapsed() < MAX_GATHER {
                match rx.recv_timeout(QUIET) {
                    Ok(Event::Changed(p)) => {
                        changed.insert(p);
                    }
                    Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
            self.handle(&changed);
        }
    }

    fn handle(&mut self, changed: &BTreeSet<PathBuf>) {
        // Directories that appeared (or were replaced) are watched from now on;
        // what they hold may have been written unseen, so it counts as changed.
        let appeared = self.rewatch(changed);
        let mut changed = changed.clone();
        let files = std::iter::once(&self.config.path)
            .chain(self.config.impulses.iter().map(|b| &b.filename));
        for file in files {
            if file.parent().is_some_and(|dir| appeared.contains(dir)) {
                changed.insert(file.clone());
            }
        }
        if changed.contains(&self.config.path) {
            self.reload_config();
            return;
        }
        let blocks: Vec<ImpulseConfig> = self
            .config
            .impulses
            .iter()
            .filter(|b| b.enabled && changed.contains(&b.filename))
            .cloned()
            .collect();
        for block in blocks {
            match self.prepare(&block) {
                Some(control) => {
                    let _ = self.inbox.control(control);
                }
                // A running impulse gets a control unless its version is current.
                None if self.running.contains_key(&block.name) => {
                    ReloadStats::count(&self.stats.counts.modules_unchanged);
                }
                None => {}
            }
        }
    }

    fn reload_config(&mut self) {
        let new = match Config::load(&self.config.path) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    config = %self.config.path.display(),
                    "configuration not reloaded: it has errors; the running impulses and packages are unchanged"
                );
                ReloadStats::count(&self.stats.counts.configs_refused);
                return;
            }
        };
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        let old = std::mem::replace(&mut self.config, new);
        let restart_only = [
            ("jobs", old.jobs != self.config.jobs),
            ("logging", old.logging != self.config.logging),
            ("server", old.server != self.config.server),
            ("username", old.username != self.config.username),
            (
                "max_chain_depth",
                old.max_chain_depth != self.config.max_chain_depth,
            ),
            (
                "external jobs",
                old.allow_external_jobs != self.config.allow_external_jobs
                    || old.external_job_files != self.config.external_job_files,
            ),
        ];
        for (what, differs) in restart_only {
            if differs {
                tracing::warn!(
                    "configuration: the change to {what} takes effect when komlogd restarts"
                );
            }
        }
        let enabled: Vec<ImpulseConfig> = self
            .config
            .impulses
            .iter()
            .filter(|b| b.enabled)
            .cloned()
            .collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !enabled.iter().any(|b| &b.name == *name))
            .cloned()
            .collect();
        for failed in self.board.failed() {
            if !enabled.iter().any(|b| b.name == failed.name) {
                self.board.clear_failed(&failed.name);
            }
        }
        // Every new version is checked first and the changes are sent together,
        // so no event falls between a removal and a swap of the same reload.
        let mut controls = Vec::new();
        for name in gone {
            self.running.remove(&name);
            tracing::info!(
                impulse = name,
                "impulse no longer in the configuration: removing it"
            );
            controls.push(Control::Remove(Arc::from(name.as_str())));
        }
        for block in &enabled {
            controls.extend(self.prepare(block));
        }
        for control in controls {
            let _ = self.inbox.control(control);
        }
        if let Some(packages) = &self.packages {
            packages.reload(&self.config);
        }
        for follow in self
            .followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            follow(&self.config);
        }
        // Every enabled block was just looked at: what appeared needs no more.
        self.rewatch(&BTreeSet::new());
        tracing::info!(config = %self.config.path.display(), "configuration reloaded");
        ReloadStats::count(&self.stats.counts.configs_applied);
    }

    /// What brings one enabled block's impulse up to date: an add, a swap, a
    /// rejection, or nothing when it is current (or failed to load and never ran).
    fn prepare(&mut self, block: &ImpulseConfig) -> Option<Control> {
        let wanted = comparable(block);
        if let Some(current) = self.running.get(&block.name)
            && current.block == wanted
            && current.limits == self.config.limits
            && self
                .engine
                .load(&block.filename)
                .is_ok_and(|m| m.hash() == current.hash)
        {
            return None;
        }
        match load_impulse(&self.engine, block, &self.config.limits) {
            Ok(version) => {
                let hash = version.module.hash().to_owned();
                let control = if self.running.contains_key(&block.name) {
                    log_loaded(&version, "new version checked; swapping it in");
                    Control::Swap(Box::new(version))
                } else {
                    log_loaded(&version, "impulse loaded");
                    Control::Add(Box::new(version))
                };
                self.running.insert(
                    block.name.clone(),
                    Running {
                        block: wanted,
                        limits: self.config.limits.clone(),
                        hash,
                    },
                );
                Some(control)
            }
            Err(e) => {
                if self.running.contains_key(&block.name) {
                    tracing::error!(
                        impulse = block.name,
                        wasm = %block.filename.display(),
                        "new version refused, the running version keeps serving: {e}"
                    );
                    Some(Control::Rejected {
                        name: Arc::from(block.name.as_str()),
                        reason: format!("new version refused: {e}"),
                    })
                } else {
                    tracing::error!(
                        impulse = block.name,
                        wasm = %block.filename.display(),
                        "impulse not loaded: {e}"
                    );
                    self.board
                        .set_failed(&block.name, block.filename.clone(), e.to_string());
                    None
                }
            }
        }
    }

    /// Watch the directories of the configuration file and of every module: each
    /// one that exists, and for each one that does not, its nearest existing
    /// parent (to see it appear). A watched directory that `changed` names (it
    /// was removed or replaced) is watched again. Returns the directories whose
    /// files may have changed unseen: those that did not exist at the previous
    /// call, and those watched again.
    fn rewatch(&mut self, changed: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
        let files = std::iter::once(&self.config.path)
            .chain(self.config.impulses.iter().map(|b| &b.filename));
        let dirs: BTreeSet<PathBuf> = files
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        let mut targets = BTreeSet::new();
        let mut missing = BTreeSet::new();
        for dir in &dirs {
            match nearest_existing(dir) {
                Some(found) if found == *dir => {
                    targets.insert(found);
                }
                Some(parent) => {
                    if !self.missing.contains(dir) {
                        tracing::warn!(
                            dir = %dir.display(),
                            "directory does not exist (yet): watching {} until it appears",
                            parent.display()
                        );
                    }
                    missing.insert(dir.clone());
                    targets.insert(parent);
                }
                None => {
                    missing.insert(dir.clone());
                }
            }
        }
        let mut appeared: BTreeSet<PathBuf> = self
            .missing
            .iter()
            .filter(|d| targets.contains(*d))
            .cloned()
            .collect();
        for dir in &appeared {
            tracing::info!(dir = %dir.display(), "directory appeared: watching it");
        }
        self.missing = missing;
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|d| !targets.contains(*d) || changed.contains(*d))
            .cloned()
            .collect();
        for dir in stale {
            let _ = self.watcher.unwatch(&dir);
            self.watched.remove(&dir);
            if targets.contains(&dir) && dirs.contains(&dir) {
                appeared.insert(dir);
            }
        }
        // A directory that left the configuration is not retried.
        self.unwatchable.retain(|d| targets.contains(d));
        for dir in targets {
            if self.watched.contains(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.unwatchable.remove(&dir);
                    self.watched.insert(dir);
                }
                Err(e) => {
                    if self.unwatchable.insert(dir.clone()) {
                        tracing::error!(
                            "cannot watch {} for changes: {e}; changes to the files in it are not picked up until it can be watched (tried again at the next change); the other files are watched",
                            dir.display()
                        );
                    }
                }
            }
        }
        appeared
    }
}

/// `dir` if it is a directory, else its nearest parent that is one.
fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|d| d.is_dir()).map(Path::to_path_buf)
}
