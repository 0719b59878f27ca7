//! Running packages: one thread per pool, each running its packages' jobs on
//! time, calling `load` again at every refresh, handing the packages' own
//! impulses to the dispatcher, and picking up a changed `.wasm`.
//!
//! **Pools** (`venv`, kept from the pip era): every `default` package runs on
//! the agent's shared pool thread with the agent-wide `- limits:`; packages
//! naming one pool share its thread; an `isolated` (or `unique`) package gets a
//! thread of its own and its block's `limits`. On a shared thread a slow job
//! delays the next job of that pool, never an impulse or another pool.
//!
//! **Failures.** A package that cannot load (file, world, grant, a `load` that
//! returns `err`, an invalid manifest) is logged with its name and reason, shown
//! as failed on the [`PackageBoard`], and left out; the agent and the other
//! packages go on, and a new version of its file is tried. A `run-job` that
//! returns `err` is logged and counted. A trap, deadline or memory cap
//! discards the instance; the next run makes a fresh one and calls `load` on
//! it first (a refresh: unchanged jobs keep their timing).
//!
//! **Hot reload.** The install file is checked at least once a second; a new
//! version is loaded and its `load` called; once valid it replaces the old one
//! (jobs by the refresh rule, every impulse swapped to the new module). A
//! version that fails is refused and the running one stays.
//!
//! **Configuration reload.** [`Packages::reload`] brings the running set in
//! line with a new komlogd.yaml: packages no longer enabled stop, new ones
//! start, a package whose block (install, params, grants, venv, limits,
//! refresh) or the agent-wide limits changed restarts with the new settings,
//! and an unchanged one keeps running with its job timing.
//!
//! **Check.** [`check`] loads each enabled package as the agent would, without
//! running a job: what `komlogd check` reports.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use wasmtime::component::Linker;

use super::counters::CounterSet;
use super::instance::{self, PackageInstance, PackageModule, PackageState};
use super::manifest::{self, ImpulseDecl, Manifest, Schedule};
use super::schedule::JobTable;
use crate::config::{self, Config, PackageConfig, Venv};
use crate::engine::{self, Engine};
use crate::impulses::{Control, Inbox, spec};
use crate::model::{Sample, Value, now_us};
use crate::session::Supplies;

/// Longest sleep of a pool thread: the period of the check for a new `.wasm`.
const POLL: Duration = Duration::from_secs(1);

/// Where a package is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackagePhase {
    /// Not loaded yet.
    #[default]
    Loading,
    /// Loaded; its jobs run.
    Running,
    /// It could not be loaded (see `last_error`); waiting for a new file.
    Failed,
    /// Its block says `enabled: false`: it does not run.
    Disabled,
}

impl PackagePhase {
    /// The name shown by `komlogd status` and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PackagePhase::Loading => "loading",
            PackagePhase::Running => "running",
            PackagePhase::Failed => "failed",
            PackagePhase::Disabled => "disabled",
        }
    }
}

/// The counters of one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStats {
    /// Runs made (including failed ones).
    pub runs: u64,
    /// Runs that failed (an `err`, a trap, a limit).
    pub failures: u64,
    /// Samples returned by successful runs.
    pub samples: u64,
    /// The timestamp of the last run.
    pub last_ts: Option<i64>,
    /// The schedules that fired for the last run.
    pub last_fired: Vec<Schedule>,
}

/// The state of one package.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackageStatus {
    /// The `.wasm`.
    pub install: PathBuf,
    /// The pool it runs in.
    pub pool: String,
    /// Where it is.
    pub phase: PackagePhase,
    /// SHA-256 of the running version.
    pub version: Option<String>,
    /// Successful `load` calls (start, refreshes, reloads).
    pub loads: u64,
    /// The latest problem, as logged.
    pub last_error: Option<String>,
    /// Its scheduled jobs, by id (a job that leaves the manifest leaves this map).
    pub jobs: BTreeMap<String, JobStats>,
    /// Job runs since the package started, failed ones included: every job's,
    /// those that a refresh or a new version removed too.
    pub runs: u64,
    /// Job runs that failed, of [`PackageStatus::runs`].
    pub failures: u64,
    /// Samples returned by successful runs, of [`PackageStatus::runs`].
    pub samples: u64,
    /// The timestamp of the latest run of any job.
    pub last_run_ts: Option<i64>,
    /// Its impulses as the agent runs them (`<package>/<name>`).
    pub impulses: Vec<String>,
}

/// The state of every package, readable from any thread. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PackageBoard {
    inner: Arc<Mutex<BTreeMap<String, PackageStatus>>>,
}

impl PackageBoard {
    /// Every package by name.
    pub fn snapshot(&self) -> BTreeMap<String, PackageStatus> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// One package.
    pub fn get(&self, name: &str) -> Option<PackageStatus> {
        self.inner.lock().ok()?.get(name).cloned()
    }

    /// Show exactly these packages (name, install) as disabled.
    fn set_disabled(&self, disabled: &[(String, PathBuf)]) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|_, s| s.phase != PackagePhase::Disabled);
            for (name, install) in disabled {
                m.entry(name.clone()).or_insert_with(|| PackageStatus {
                    install: install.clone(),
                    phase: PackagePhase::Disabled,
                    ..PackageStatus::default()
                });
            }
        }
    }

    /// Forget the packages that are neither running nor disabled (ones an
    /// earlier reload refused to start).
    fn retain_listed(&self, running: &BTreeMap<String, Setup>) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|name, s| s.phase == PackagePhase::Disabled || running.contains_key(name));
        }
    }

    fn remove(&self, name: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(name);
        }
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut PackageStatus)) {
        if let Ok(mut m) = self.inner.lock() {
            f(m.entry(name.to_owned()).or_default());
        }
    }
}

/// A message to a pool thread.
enum Msg {
    /// Stop after the run in progress.
    Stop,
    /// Run this package too.
    Add(Box<Package>),
    /// Stop running this package (its impulses are removed); answer when done.
    Remove(Arc<str>, Sender<()>),
}

/// What a package was started with: a change to any of it restarts the package.
#[derive(Debug, Clone, PartialEq)]
struct Setup {
    pool: String,
    /// The block, its position cleared (moving it in the file is no change).
    block: PackageConfig,
    agent_limits: config::Limits,
}

/// The pool threads and what each package runs with.
#[derive(Default)]
struct Pools {
    threads: BTreeMap<String, (Sender<Msg>, JoinHandle<()>)>,
    running: BTreeMap<String, Setup>,
}

/// The running package pools: changed with [`Packages::reload`], stopped with
/// [`Packages::stop`]. Shared between threads.
pub struct Packages {
    engine: Engine,
    inbox: Inbox,
    board: PackageBoard,
    supplies: Supplies,
    pools: Mutex<Pools>,
}

/// Longest wait for a pool thread to let go of a removed package (a job in
/// progress finishes first).
const REMOVE_WAIT: Duration = Duration::from_secs(30);

impl Packages {
    /// Bring the running packages in line with `config`: packages no longer
    /// enabled stop (their impulses are removed), new ones start, and one whose
    /// block (or the agent-wide limits) changed restarts with the new settings.
    /// An unchanged package keeps running, with its job timing. Limits the
    /// engine cannot give ([`Engine::admits`]) are refused with an error log
    /// until komlogd restarts.
    pub fn reload(&self, config: &Config) {
        let Ok(mut guard) = self.pools.lock() else {
            return;
        };
        let pools = &mut *guard;
        // What an earlier reload refused and never started is decided again.
        self.board.retain_listed(&pools.running);
        let mut wanted = plan(config);
        // Limits the engine cannot give (fuel metering, a larger memory cap)
        // need a restart: such a package is not started, and a running one
        // keeps its current settings.
        let mut kept = Vec::new();
        wanted.retain(|name, (_, limits_block, block)| {
            let limits = spec::limits(limits_block, &config.limits);
            match self.engine.admits(&limits) {
                Ok(()) => true,
                Err(reason) => {
                    tracing::error!(
                        package = name.as_str(),
                        install = %block.install.display(),
                        "package not (re)started: {reason}"
                    );
                    let message = format!("configuration change refused: {reason}");
                    if pools.running.contains_key(name) {
                        // It runs on with its current settings.
                        self.board.update(name, |s| s.last_error = Some(message));
                    } else {
                        self.board.update(name, |s| {
                            *s = PackageStatus {
                                install: block.install.clone(),
                                phase: PackagePhase::Failed,
                                last_error: Some(message),
                                ..PackageStatus::default()
                            };
                        });
                    }
                    kept.push(name.clone());
                    false
                }
            }
        });
        let stale: Vec<String> = pools
            .running
            .iter()
            .filter(|(name, _)| !kept.contains(*name))
            .filter(|(name, setup)| wanted.get(*name).is_none_or(|(s, _, _)| s != *setup))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &stale {
            let Some(setup) = pools.running.remove(name) else {
                continue;
            };
            if let Some((tx, _)) = pools.threads.get(&setup.pool) {
                let (done, wait) = mpsc::channel();
                if tx.send(Msg::Remove(Arc::from(name.as_str()), done)).is_ok()
                    && wait.recv_timeout(REMOVE_WAIT).is_err()
                {
                    tracing::warn!(
                        package = name.as_str(),
                        "the package's pool did not let it go within {REMOVE_WAIT:?}"
                    );
                }
            }
            self.board.remove(name);
            if wanted.contains_key(name) {
                tracing::info!(
                    package = name.as_str(),
                    "package block changed: restarting it"
                );
            } else {
                tracing::info!(
                    package = name.as_str(),
                    "package no longer in the configuration: stopped"
                );
            }
        }
        let idle: Vec<String> = pools
            .threads
            .keys()
            .filter(|pool| !pools.running.values().any(|s| &s.pool == *pool))
            .cloned()
            .collect();
        for pool in idle {
            if let Some((tx, thread)) = pools.threads.remove(&pool) {
                let _ = tx.send(Msg::Stop);
                let _ = thread.join();
            }
        }
        for (name, (setup, limits_block, block)) in wanted {
            if pools.running.contains_key(&name) {
                continue;
            }
            let package = self.package(&name, &setup, &block, &limits_block, config);
            if !pools.threads.contains_key(&setup.pool) {
                let (tx, rx) = mpsc::channel();
                let engine = self.engine.clone();
                let thread_name: String = format!("pkg-{}", setup.pool).chars().take(15).collect();
                let spawned = std::thread::Builder::new()
                    .name(thread_name)
                    .spawn(move || run_pool(&engine, &rx));
                match spawned {
                    Ok(thread) => {
                        pools.threads.insert(setup.pool.clone(), (tx, thread));
                    }
                    Err(e) => {
                        tracing::error!(
                            pool = setup.pool.as_str(),
                            "cannot start the package pool's thread: {e}"
                        );
                        continue;
                    }
                }
            }
            if let Some((tx, _)) = pools.threads.get(&setup.pool)
                && tx.send(Msg::Add(Box::new(package))).is_ok()
            {
                pools.running.insert(name, setup);
            }
        }
        self.board.set_disabled(&disabled(config));
    }

    fn package(
        &self,
        name: &str,
        setup: &Setup,
        block: &PackageConfig,
        limits_block: &config::Limits,
        config: &Config,
    ) -> Package {
        self.board.update(name, |s| {
            *s = PackageStatus {
                install: block.install.clone(),
                pool: setup.pool.clone(),
                ..PackageStatus::default()
            };
        });
        Package {
            name: Arc::from(name),
            config: block.clone(),
            limits: spec::limits(limits_block, &config.limits),
            impulse_limits: limits_block.or(&config.limits),
            agent_limits: config.limits.clone(),
            counters: CounterSet::default(),
            supplies: self.supplies.clone(),
            module: None,
            instance: None,
            stamp: None,
            tried: false,
            table: JobTable::new(),
            refresh_us: None,
            next_refresh: None,
            impulses: BTreeMap::new(),
            board: self.board.clone(),
            inbox: self.inbox.clone(),
            engine: self.engine.clone(),
        }
    }

    /// Stop every pool after the run in progress, and wait for them.
    pub fn stop(&self) {
        let Ok(mut pools) = self.pools.lock() else {
            return;
        };
        let threads = std::mem::take(&mut pools.threads);
        for (tx, _) in threads.values() {
            let _ = tx.send(Msg::Stop);
        }
        for (_, thread) in threads.into_values() {
            let _ = thread.join();
        }
    }
}

/// The name a package's block gives it before clashes: its `.wasm` file stem.
fn stem(block: &PackageConfig) -> String {
    block
        .install
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "package".into())
}

/// The enabled package blocks of `config`, in file order.
fn enabled(config: &Config) -> Vec<PackageConfig> {
    config
        .packages
        .iter()
        .filter(|p| p.enabled)
        .cloned()
        .collect()
}

/// The name of each enabled package: its file stem, `#2`, `#3`… on clashes.
fn names(packages: &[PackageConfig]) -> Vec<String> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    packages
        .iter()
        .map(|p| {
            let stem = stem(p);
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { stem } else { format!("{stem}#{n}") }
        })
        .collect()
}

/// The disabled packages of `config`: a name (the file stem, numbered past
/// the names of enabled packages on clashes) and the install path.
fn disabled(config: &Config) -> Vec<(String, PathBuf)> {
    let enabled = enabled(config);
    let mut taken: std::collections::BTreeSet<String> = names(&enabled).into_iter().collect();
    let mut out = Vec::new();
    for block in config.packages.iter().filter(|p| !p.enabled) {
        let stem = stem(block);
        let mut name = stem.clone();
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{stem}#{n}");
        }
        taken.insert(name.clone());
        out.push((name, block.install.clone()));
    }
    out
}

/// Each enabled package of `config` by name: what it runs with, the `limits`
/// block that applies to it, and its block as written (with its line).
fn plan(config: &Config) -> BTreeMap<String, (Setup, config::Limits, PackageConfig)> {
    let enabled = enabled(config);
    let mut out = BTreeMap::new();
    for (block, name) in enabled.iter().zip(names(&enabled)) {
        let (pool, limits_block) = match &block.venv {
            Venv::Default => ("default".to_owned(), config::Limits::default()),
            Venv::Named(pool) => (pool.clone(), config::Limits::default()),
            Venv::Isolated => (format!("isolated:{name}"), block.limits.clone()),
        };
        if block.venv != Venv::Isolated && block.limits != config::Limits::default() {
            tracing::warn!(
                package = name.as_str(),
                "`limits` applies to isolated packages only (venv: isolated); this one runs with the agent-wide limits"
            );
        }
        let setup = Setup {
            pool,
            block: PackageConfig {
                line: 0,
                ..block.clone()
            },
            agent_limits: config.limits.clone(),
        };
        out.insert(name, (setup, limits_block, block.clone()));
    }
    out
}

/// What `komlogd check` found for one enabled package.
#[derive(Debug)]
pub struct PackageCheck {
    /// Its name (the `.wasm` file stem).
    pub name: String,
    /// The `.wasm`.
    pub install: PathBuf,
    /// What its `load` declared, or why it could not be loaded.
    pub result: Result<Manifest, String>,
}

/// Load every enabled package of `config` as the agent would — compile,
/// instantiate with its grants and limits, call `load`, check the manifest and
/// load each impulse it declares — without running a job.
pub fn check(engine: &Engine, config: &Config) -> Vec<PackageCheck> {
    let linker =
        instance::linker(engine).map_err(|e| format!("cannot link the package world: {e:#}"));
    plan(config)
        .into_iter()
        .map(|(name, (_, limits_block, block))| {
            let result = match &linker {
                Ok(linker) => check_one(engine, linker, &name, &block, &limits_block, config),
                Err(e) => Err(e.clone()),
            };
            PackageCheck {
                install: block.install.clone(),
                name,
                result,
            }
        })
        .collect()
}

fn check_one(
    engine: &Engine,
    linker: &Linker<PackageState>,
    name: &str,
    block: &PackageConfig,
    limits_block: &config::Limits,
    config: &Config,
) -> Result<Manifest, String> {
    let module = PackageModule::load(engine, linker, &block.install).map_err(|e| e.to_string())?;
    let mut instance = module
        .instantiate(
            Arc::from(name),
            spec::limits(limits_block, &config.limits),
            &block.grants,
            CounterSet::default(),
            Supplies::new(),
        )
        .map_err(|e| e.to_string())?;
    let manifest =
        call_load(&mut instance, &block.params).map_err(|e| match e.strip_prefix("call: ") {
            Some(reason) => format!("load() failed: {reason}"),
            None => e,
        })?;
    let impulse_limits = limits_block.or(&config.limits);
    for decl in &manifest.impulses {
        let full = format!("{name}/{}", decl.name);
        let impulse = impulse_block(&full, block, decl, &impulse_limits);
        crate::agent::load_impulse(engine, &impulse, &config.limits)
            .map_err(|e| format!("impulse {full}: {e}"))?;
    }
    Ok(manifest)
}

/// The `- impulses:` block a package's impulse runs as.
fn impulse_block(
    full: &str,
    package: &PackageConfig,
    decl: &ImpulseDecl,
    limits: &config::Limits,
) -> config::ImpulseConfig {
    let mut params = vec![("impulse".to_owned(), decl.name.clone())];
    params.extend(decl.params.iter().cloned());
    config::ImpulseConfig {
        name: full.to_owned(),
        line: package.line,
        enabled: true,
        filename: package.install.clone(),
        uris: Some(decl.uris.clone()),
        data_reqs: Some(decl.data_reqs.clone()),
        min_exec_delta_us: decl.min_exec_delta_us,
        params,
        limits: limits.clone(),
    }
}

/// Start the enabled packages of `config` on their pool threads. Loading
/// happens on those threads, so this returns at once.
/// Their datasources declare what they supply in `supplies`.
pub fn start(
    engine: &Engine,
    config: &Config,
    inbox: Inbox,
    board: PackageBoard,
    supplies: Supplies,
) -> Packages {
    let packages = Packages {
        engine: engine.clone(),
        inbox,
        board,
        supplies,
        pools: Mutex::new(Pools::default()),
    };
    packages.reload(config);
    packages
}

fn run_pool(engine: &Engine, rx: &mpsc::Receiver<Msg>) {
    let mut packages: Vec<Package> = Vec::new();
    let linker = match instance::linker(engine) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot link the package world: {e:#}");
            return;
        }
    };
    loop {
        let mut i = 0;
        while i < packages.len() {
            packages[i].tick(&linker);
            i += 1;
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        if !handle(&mut packages, msg) {
                            return;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
        }
        let now = now_us();
        let next = packages.iter().filter_map(Package::next_wake).min();
        let wait = match next {
            Some(at) => Duration::from_micros(u64::try_from(at.saturating_sub(now)).unwrap_or(0)),
            None => POLL,
        }
        .min(POLL);
        match rx.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(msg) => {
                if !handle(&mut packages, msg) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Apply one message to a pool's packages; false when the pool must stop.
fn handle(packages: &mut Vec<Package>, msg: Msg) -> bool {
    match msg {
        Msg::Stop => false,
        Msg::Add(p) => {
            packages.push(*p);
            true
        }
        Msg::Remove(name, done) => {
            if let Some(pos) = packages.iter().position(|p| p.name == name) {
                packages.remove(pos).retire();
            }
            let _ = done.send(());
            true
        }
    }
}

/// One package and everything it runs.
struct Package {
    name: Arc<str>,
    config: PackageConfig,
    limits: engine::Limits,
    /// The limits its impulses run with (as a block's `limits`).
    impulse_limits: config::Limits,
    agent_limits: config::Limits,
    counters: CounterSet,
    supplies: Supplies,
    module: Option<PackageModule>,
    instance: Option<PackageInstance>,
    /// The install file's (mtime, length) when last tried.
    stamp: Option<(SystemTime, u64)>,
    /// Whether the file was tried at all.
    tried: bool,
    table: JobTable,
    refresh_us: Option<u64>,
    next_refresh: Option<i64>,
    /// The impulses handed to the dispatcher, by name within the package.
    impulses: BTreeMap<String, ImpulseDecl>,
    board: PackageBoard,
    inbox: Inbox,
    engine: Engine,
}

impl Package {
    fn next_wake(&self) -> Option<i64> {
        self.module.as_ref()?;
        [self.table.next_due(), self.next_refresh]
            .into_iter()
            .flatten()
            .min()
    }

    /// Remove the package's impulses from the dispatcher: it stops running.
    fn retire(self) {
        for name in self.impulses.keys() {
            let _ = self
                .inbox
                .control(Control::Remove(Arc::from(format!("{}/{name}", self.name))));
        }
    }

    fn fail(&self, message: String) {
        tracing::error!(package = &*self.name, wasm = %self.config.install.display(), "{message}");
        self.board
            .update(&self.name, |s| s.last_error = Some(message));
    }

    /// One round: a new file, a refresh, due runs.
    fn tick(&mut self, linker: &Linker<PackageState>) {
        let stamp = std::fs::metadata(&self.config.install)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp != self.stamp || !self.tried {
            self.stamp = stamp;
            self.tried = true;
            self.load_version(linker);
        }
        if self.module.is_none() {
            return;
        }
        let now = now_us();
        if self.next_refresh.is_some_and(|at| at <= now) {
            self.refresh();
        }
        let now = now_us();
        for run in self.table.take_due(now) {
            self.run(run);
        }
    }

    /// Load the install file as a new version; keep the running one if it fails.
    fn load_version(&mut self, linker: &Linker<PackageState>) {
        let replacing = self.module.is_some();
        let module = match PackageModule::load(&self.engine, linker, &self.config.install) {
            Ok(m) => m,
            Err(e) => return self.refused(replacing, e.to_string()),
        };
        if self
            .module
            .as_ref()
            .is_some_and(|m| m.hash() == module.hash())
        {
            return;
        }
        let mut instance = match module.instantiate(
            self.name.clone(),
            self.limits,
            &self.config.grants,
            self.counters.clone(),
            self.supplies.clone(),
        ) {
            Ok(i) => i,
            Err(e) => return self.refused(replacing, e.to_string()),
        };
        let manifest = match call_load(&mut instance, &self.config.params) {
            Ok(m) => m,
            Err(e) => return self.refused(replacing, e),
        };
        tracing::info!(
            package = &*self.name,
            wasm = %self.config.install.display(),
            version = &module.hash()[..12],
            jobs = manifest.jobs.len(),
            impulses = manifest.impulses.len(),
            "{}",
            if replacing { "package reloaded" } else { "package loaded" }
        );
        let hash = module.hash().to_owned();
        self.module = Some(module);
        self.instance = Some(instance);
        self.apply(manifest, replacing);
        self.board.update(&self.name, |s| {
            s.phase = PackagePhase::Running;
            s.version = Some(hash);
        });
    }

    fn refused(&mut self, replacing: bool, reason: String) {
        if replacing {
            self.fail(format!(
                "new version refused, the running one stays: {reason}"
            ));
        } else {
            self.fail(format!("package not loaded: {reason}"));
            self.board
                .update(&self.name, |s| s.phase = PackagePhase::Failed);
        }
    }

    /// Call `load` again on the running instance (or a fresh one) and apply it.
    fn refresh(&mut self) {
        let now = now_us();
        self.next_refresh = self
            .refresh_us
            .map(|r| now.saturating_add(i64::try_from(r).unwrap_or(i64::MAX)));
        if let Err(e) = self.ensure_instance(false) {
            return self.fail(format!("refresh: {e}"));
        }
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        match call_load(instance, &self.config.params) {
            Ok(manifest) => self.apply(manifest, false),
            Err(e) => {
                if e.starts_with("call:") {
                    self.instance = None;
                }
                self.fail(format!("refresh: {e}; the previous jobs stay"));
            }
        }
    }

    /// A fresh instance if there is none, with `load` called on it and applied.
    fn ensure_instance(&mut self, apply: bool) -> Result<(), String> {
        if self.instance.is_some() {
            return Ok(());
        }
        let Some(module) = &self.module else {
            return Err("not loaded".into());
        };
        let mut instance = module
            .instantiate(
                self.name.clone(),
                self.limits,
                &self.config.grants,
                self.counters.clone(),
                self.supplies.clone(),
            )
            .map_err(|e| e.to_string())?;
        if apply {
            let manifest = call_load(&mut instance, &self.config.params)?;
            self.instance = Some(instance);
            self.apply(manifest, false);
        } else {
            self.instance = Some(instance);
        }
        Ok(())
    }

    /// Apply a manifest: jobs by the refresh rule, impulses added, swapped or
    /// removed (all swapped when `new_module`), refresh period.
    fn apply(&mut self, manifest: Manifest, new_module: bool) {
        let now = now_us();
        let changes = self.table.apply(manifest.jobs, now);
        if !(changes.added.is_empty() && changes.removed.is_empty() && changes.changed.is_empty()) {
            tracing::info!(
                package = &*self.name,
                added = ?changes.added,
                removed = ?changes.removed,
                changed = ?changes.changed,
                kept = changes.kept.len(),
                "jobs scheduled"
            );
        }
        self.refresh_us = self.config.refresh_us.or(manifest.refresh_us);
        self.next_refresh = self
            .refresh_us
            .map(|r| now.saturating_add(i64::try_from(r).unwrap_or(i64::MAX)));
        let ids = self.table.ids();
        self.board.update(&self.name, |s| {
            s.loads += 1;
            s.jobs.retain(|id, _| ids.contains(id));
            for id in &ids {
                s.jobs.entry(id.clone()).or_default();
            }
        });
        self.apply_impulses(manifest.impulses, new_module);
    }

    fn apply_impulses(&mut self, decls: Vec<ImpulseDecl>, new_module: bool) {
        let mut old = std::mem::take(&mut self.impulses);
        for decl in decls {
            let full = format!("{}/{}", self.name, decl.name);
            let control: fn(Box<crate::impulses::Version>) -> Control = match old.remove(&decl.name)
            {
                Some(prev) if prev == decl && !new_module => {
                    self.impulses.insert(decl.name.clone(), decl);
                    continue;
                }
                Some(_) => Control::Swap,
                None => Control::Add,
            };
            match self.impulse_version(&full, &decl) {
                Ok(version) => {
                    let _ = self.inbox.control(control(Box::new(version)));
                    tracing::info!(
                        package = &*self.name,
                        impulse = full.as_str(),
                        "package impulse started"
                    );
                    self.impulses.insert(decl.name.clone(), decl);
                }
                Err(e) => self.fail(format!("impulse {full}: {e}")),
            }
        }
        for name in old.into_keys() {
            let _ = self
                .inbox
                .control(Control::Remove(Arc::from(format!("{}/{name}", self.name))));
        }
        let names: Vec<String> = self
            .impulses
            .keys()
            .map(|n| format!("{}/{n}", self.name))
            .collect();
        self.board.update(&self.name, |s| s.impulses = names);
    }

    fn impulse_version(
        &self,
        full: &str,
        decl: &ImpulseDecl,
    ) -> Result<crate::impulses::Version, crate::impulses::SpecError> {
        let block = impulse_block(full, &self.config, decl, &self.impulse_limits);
        crate::agent::load_impulse(&self.engine, &block, &self.agent_limits)
    }

    /// Run one job; its samples go to the dispatcher as source samples.
    fn run(&mut self, run: super::schedule::DueRun) {
        if let Err(e) = self.ensure_instance(true) {
            self.count(&run, true, 0);
            return self.fail(format!("job {}: cannot make an instance: {e}", run.id));
        }
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        let fired: Vec<_> = run.fired.iter().map(Into::into).collect();
        match instance.run_job(&run.id, run.ts, &fired, &run.params) {
            Ok(Ok(samples)) if samples.len() > self.max_outputs() => {
                self.count(&run, true, 0);
                let text = format!(
                    "job {} returned {} samples, more than its limit of {} a run (limits.outputs): none written",
                    run.id,
                    samples.len(),
                    self.max_outputs()
                );
                tracing::warn!(package = &*self.name, "{text}");
                self.board.update(&self.name, |s| s.last_error = Some(text));
            }
            Ok(Ok(samples)) => {
                let n = samples.len();
                let batch: Vec<Sample> = samples
                    .into_iter()
                    .map(|s| Sample {
                        uri: s.uri,
                        ts: s.ts,
                        value: match s.value {
                            crate::engine::bindings::Value::Datapoint(v) => Value::Datapoint(v),
                            crate::engine::bindings::Value::Datasource(t) => Value::Datasource(t),
                        },
                    })
                    .collect();
                self.count(&run, false, n as u64);
                if !batch.is_empty() && self.inbox.samples(batch).is_err() {
                    tracing::debug!(package = &*self.name, "the dispatcher has stopped");
                }
            }
            Ok(Err(message)) => {
                self.count(&run, true, 0);
                let text = format!("job {} returned an error: {message}", run.id);
                tracing::warn!(package = &*self.name, "{text}");
                self.board.update(&self.name, |s| s.last_error = Some(text));
            }
            Err(e) => {
                self.instance = None;
                self.count(&run, true, 0);
                self.fail(format!("job {}: {e}; the instance is replaced", run.id));
            }
        }
    }

    /// Samples one run may return: the package's `outputs` limit.
    fn max_outputs(&self) -> usize {
        spec::max_outputs(&self.impulse_limits)
    }

    fn count(&self, run: &super::schedule::DueRun, failed: bool, samples: u64) {
        self.board.update(&self.name, |s| {
            s.runs += 1;
            s.failures += u64::from(failed);
            s.samples += samples;
            s.last_run_ts = s.last_run_ts.max(Some(run.ts));
            let j = s.jobs.entry(run.id.clone()).or_default();
            j.runs += 1;
            j.failures += u64::from(failed);
            j.samples += samples;
            j.last_ts = Some(run.ts);
            j.last_fired = run.fired.clone();
        });
    }
}

/// Call `load` and check the manifest. Errors are texts ready to log; a failed
/// call (the instance must go) starts with `call:`.
fn call_load(
    instance: &mut PackageInstance,
    params: &[(String, String)],
) -> Result<Manifest, String> {
    match instance.load(params) {
        Ok(Ok(raw)) => manifest::check(raw).map_err(|e| e.to_string()),
        Ok(Err(message)) => Err(format!("load() returned an error: {message}")),
        Err(e) => Err(format!("call: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_stems_numbered_on_clashes() {
        let block = |p: &str| PackageConfig {
            line: 1,
            install: PathBuf::from(p),
            enabled: true,
            venv: Venv::Default,
            params: vec![],
            limits: config::Limits::default(),
            grants: config::Grants::default(),
            refresh_us: None,
        };
        assert_eq!(
            names(&[
                block("/a/linux.wasm"),
                block("/b/linux.wasm"),
                block("x.wasm")
            ]),
            vec!["linux", "linux#2", "x"]
        );
    }
}
