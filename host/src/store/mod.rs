//! The embedded store: every sample the agent keeps locally, on disk in one crash-safe
//! [redb] database in the config directory, and in memory the recent samples of each uri
//! that the impulses' windows need.
//!
//! It owns: the database file and its format; the rule that a uri's kind is fixed by its
//! first write; upserts on `(uri, ts)`; the per-uri statistics the CLI lists; the
//! in-memory cache; and window selection ([`Store::window`]). It does not validate
//! ownership (remote uris) or route samples: callers hand it [`Sample`]s to keep.
//!
//! # Durability contract
//!
//! * [`Store::append`] writes every accepted sample of the call in **one** redb write
//!   transaction committed with [`redb::Durability::Immediate`]: when it returns `Ok`, the
//!   samples are on stable storage (the commit has been fsynced). This call is the group
//!   commit unit: pass everything that is pending at once.
//! * A commit is atomic. A crash (power loss, SIGKILL, panic) at any point leaves the
//!   database as of the last commit that returned, plus possibly the one in progress if
//!   it had reached the disk: each call's samples and the matching `uris` statistics are
//!   either all present or all absent, never torn. redb writes a
//!   checksummed commit slot and falls back to the previous one if the newest is
//!   incomplete; after an unclean shutdown the next open runs redb's repair, which walks
//!   the whole file (seconds for gigabytes).
//! * When `append` returns a [`StoreError`], nothing of that call was committed and the
//!   in-memory state (kinds, statistics, cache) is unchanged.
//! * Dropping a [`Store`] without [`Store::close`] loses nothing that was committed;
//!   `close` only reports errors a drop would ignore.
//! * A scratch store ([`Store::hold_back_writes`], for replays) bends this: its
//!   appends reach the cache at once and the file in groups, without fsync, so a
//!   crash or a drop without [`Store::close`] loses what was held back.
//! * Tested: a child process appending batch after batch and SIGKILLed mid-way leaves
//!   whole batches only, and every acknowledged batch. SIGKILL keeps the OS page cache, so
//!   power loss itself is covered by redb's fsync-then-checksum design, not by a test.
//! * Damage from outside redb (bit rot, stray writes) is not repaired. With
//!   [`StoreOptions::check_integrity`] the open verifies every page and refuses a damaged
//!   file; without it (the default, for a fast start) redb trusts the file and may panic on
//!   a damaged page when it reads it: the store catches that and returns
//!   [`StoreError::Corrupt`] (requires the default `panic = "unwind"`).
//! * One process at a time: redb locks the file. A second open, by another process or by
//!   this one, fails with [`StoreError::Locked`] or [`StoreError::AlreadyOpen`].
//!
//! # Disk layout (format version 1)
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&[u8]`: `b"format_version"` | `&[u8]`: u32 little-endian, [`FORMAT_VERSION`] |
//! | `meta` | `&[u8]`: `b"last_run:"` + impulse name | `&[u8]`: i64 LE, the impulse's last run (`min_exec_delta`) |
//! | `samples` | `(&[u8], i64)`: (uri as UTF-8 bytes, ts in µs UTC) | `&[u8]`: tag `0` + f64 LE (datapoint), or tag `1` + UTF-8 text (datasource) |
//! | `uris` | `&[u8]`: uri as UTF-8 bytes | `&[u8]`, 25 bytes: kind tag u8 (`0` datapoint, `1` datasource), count u64 LE, first ts i64 LE, last ts i64 LE |
//! | `outbox` | `(i64, &[u8])`: (ts, uri) | `&[u8]`: generation u64 LE, then the value as in `samples` |
//! | `sample_log`, `sink_cursors` | see [`SampleLog`] | the accepted samples in commit order, for the sinks |
//!
//! `outbox` holds the samples bound for the server and not yet acknowledged (see
//! [`Outbox`]); [`Store::append_queued`] writes them in the same commit as the samples.
//! A store written before the table existed gets it, empty, at open; `meta` then also
//! holds `outbox_node`, the 8 random bytes of the store's TimeUUIDs.
//!
//! Keys order by uri bytes, then numerically by ts, so one uri's samples are a contiguous,
//! time-ordered key range. The uri is stored as bytes rather than `&str` so that a damaged
//! key is reported as [`StoreError::Corrupt`] instead of panicking in redb's `&str`
//! decoder. `open` refuses a `meta` version other than [`FORMAT_VERSION`]
//! ([`StoreError::UnsupportedVersion`]), a redb file without `meta`, and a non-redb file
//! ([`StoreError::Corrupt`]). An empty or missing file becomes a new store.
//!
//! # The cache
//!
//! Per uri, a sorted `Vec<Entry>` that is a *suffix* of what is stored: it holds every
//! stored sample with `ts >= complete_from` (all of them when `complete_from` is None).
//! Appends at the end are O(1) amortised, older ones are placed by binary search, and one
//! older than `complete_from` goes to disk only. After each append the series is trimmed
//! to what a window at its newest sample can need under the retention set with
//! [`Store::set_retention`] (lazily: only once it has grown past twice that). A uri with no
//! retention keeps only its newest sample in memory. Nothing is loaded at open but the
//! `uris` table; a uri's samples are loaded by the first window that needs them. A window
//! far behind the cached suffix (more than 4096 stored samples between them) is read from
//! disk into a scratch buffer instead, so a replay of old data into a large store does not
//! pull everything after it into memory.
//!
//! # Windows
//!
//! See [`Store::window`] and [`DataReqs`]. A window is relative to the firing sample's
//! `ts`, never to the wall clock, so a replay gives the same windows.

mod cache;
mod disk;
mod error;
mod last_run;
mod outbox;
pub mod read;
mod sample_log;
mod window;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use cache::Entry;
pub use disk::FORMAT_VERSION;
pub use error::StoreError;
pub use outbox::{Cursor, Outbox, Outgoing, Queued};
pub use sample_log::{LogEntry, SampleLog};

use crate::model::{Kind, Sample, SampleError, Uri, Value};
use cache::Series;
use disk::{Disk, UriStats};
use window::{Loaded, Need};

/// How to open a store; [`Store::open`] uses the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Verify the checksum of every page at open (redb's `check_integrity_on_open`), so a
    /// file damaged outside redb (bit rot, a stray write) is refused as
    /// [`StoreError::Corrupt`] instead of being trusted. It reads the whole file: about
    /// 0.4 s for 2 million samples (150 MB) here. Off by default; after an unclean shutdown
    /// redb verifies and repairs anyway.
    pub check_integrity: bool,
    /// The size of redb's page cache (reads go through it; the window cache is separate).
    pub page_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            check_integrity: false,
            page_cache_bytes: 64 << 20,
        }
    }
}

/// What an impulse asks of a uri's history when it fires at `ts`: every sample in
/// `(ts - past_delta_us, ts]`, united with the last `past_count` samples at or before
/// `ts`. With neither set, the latest sample at or before `ts`. `past_delta_us = Some(0)`
/// contributes nothing. Samples after `ts` are never part of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataReqs {
    /// How far back in time, in microseconds.
    pub past_delta_us: Option<u64>,
    /// How many of the latest samples.
    pub past_count: Option<u32>,
}

impl DataReqs {
    /// The smallest requirement that covers both `self` and `other` (the maximum of each
    /// part): what [`Store::set_retention`] needs for a uri with several subscribers.
    pub fn union(self, other: DataReqs) -> DataReqs {
        DataReqs {
            past_delta_us: self.past_delta_us.max(other.past_delta_us),
            past_count: self.past_count.max(other.past_count),
        }
    }
}

/// A stored uri and its statistics, as [`Store::uris`] lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UriInfo {
    /// The store key: a local uri, or `owner:uri`.
    pub uri: String,
    /// Fixed by its first write.
    pub kind: Kind,
    /// How many samples (distinct timestamps) are stored.
    pub count: u64,
    /// The oldest stored timestamp (µs UTC).
    pub first_ts: i64,
    /// The newest stored timestamp (µs UTC).
    pub last_ts: i64,
}

/// What the store knows about one uri in memory.
#[derive(Debug, Default)]
struct UriState {
    /// Mirror of the `uris` row; None while nothing is stored (only a retention is set).
    stats: Option<UriStats>,
    /// Set by [`Store::set_retention`].
    retention: Option<DataReqs>,
    /// The cached suffix; None when nothing is loaded yet (after open).
    series: Option<Series>,
}

/// The embedded store. See the [module documentation](self) for the contract.
pub struct Store {
    disk: Disk,
    uris: HashMap<String, UriState>,
    /// Windows too far behind the cache are read here (see `window::MAX_GAP`).
    scratch: Vec<Entry>,
    path: PathBuf,
    /// The generation of the next commit (outbox rows carry it).
    generation: u64,
    /// Lowered to the earliest time each commit queues (see [`Outbox::take_low_water`]).
    low_water: outbox::LowWater,
    /// Appends not yet written to the file ([`Store::hold_back_writes`]).
    held: Option<Box<HeldWrites>>,
    _registration: Registration,
}

/// Appends kept in memory until they are written to the file together.
struct HeldWrites {
    /// Write them once this many are held.
    limit: usize,
    samples: Vec<Sample>,
    /// The statistics on file of every uri a held sample touches, taken when the
    /// first one was held (None: nothing of it on file yet).
    on_file: HashMap<String, Option<UriStats>>,
}

impl Store {
    /// Open the store at `path` (a file; its parent directories are created), creating
    /// an empty store if the file is missing or empty.
    ///
    /// Fails with [`StoreError::Locked`] when another process has it open,
    /// [`StoreError::AlreadyOpen`] when this process has, [`StoreError::Corrupt`] for a
    /// file that is not a komlogd store or is damaged, and
    /// [`StoreError::UnsupportedVersion`] for another format version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let io_err = |op: &'static str, source: io::Error| StoreError::Io {
            path: path.to_path_buf(),
            op,
            source,
        };
        let file_name = path.file_name().ok_or_else(|| {
            io_err(
                "opening the store",
                io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"),
            )
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| io_err("creating its directory", e))?;
        let canonical = match path.canonicalize() {
            Ok(p) => p,
            Err(_) => parent
                .canonicalize()
                .map_err(|e| io_err("resolving its directory", e))?
                .join(file_name),
        };
        let registration =
            Registration::register(canonical).ok_or_else(|| StoreError::AlreadyOpen {
                path: path.to_path_buf(),
            })?;
        let (disk, stats) = Disk::open(path, options)?;
        let uris = stats
            .into_iter()
            .map(|(uri, st)| {
                let state = UriState {
                    stats: Some(st),
                    ..UriState::default()
                };
                (uri, state)
            })
            .collect();
        Ok(Store {
            disk,
            uris,
            scratch: Vec::new(),
            path: path.to_path_buf(),
            // Distinct across runs: the open time in ns, then one per commit.
            generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            low_water: outbox::LowWater::default(),
            held: None,
            _registration: registration,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close the store, reporting errors that dropping it would ignore. Committed data is
    /// durable either way.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.write_held()?;
        self.disk.close()
    }

    /// Make this a scratch store (a replay's): from now on an append that is not
    /// durable and queues nothing reaches the cache at once and the file only
    /// when `limit` samples are held, at a read that needs the file, or at
    /// [`Store::close`], in one commit. A replay appends a few samples at a
    /// time, and a commit for each cost more than its fires.
    ///
    /// Held samples are checked as at any append (a refusal is immediate); their
    /// uris' sample counts are exact again once they are written. A crash, a
    /// failed write (the error comes from the call that writes them) or a drop
    /// without `close` loses them. [`Store::holds`] and [`Store::window`] write
    /// them first; the other reads refuse to run while samples are held.
    pub fn hold_back_writes(&mut self, limit: usize) {
        self.held = Some(Box::new(HeldWrites {
            limit: limit.max(1),
            samples: Vec::new(),
            on_file: HashMap::new(),
        }));
    }

    /// Write the held samples, if any, in one commit (not fsynced), and take their
    /// uris' statistics from it.
    pub fn write_held(&mut self) -> Result<(), StoreError> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        if held.samples.is_empty() {
            return Ok(());
        }
        let samples = std::mem::take(&mut held.samples);
        let on_file = std::mem::take(&mut held.on_file);
        let accepted: Vec<(&Sample, Option<Outgoing>)> =
            samples.iter().map(|s| (s, None)).collect();
        self.generation += 1;
        let touched = self.disk.commit(&accepted, self.generation, false, |u| {
            on_file.get(u).copied().flatten()
        })?;
        for (uri, st) in touched {
            if let Some(state) = self.uris.get_mut(uri) {
                state.stats = Some(st);
            }
        }
        Ok(())
    }

    /// True while samples are held back, not yet written to the file.
    fn holding(&self) -> bool {
        self.held.as_ref().is_some_and(|h| !h.samples.is_empty())
    }

    /// Refuse a read of the file while samples are held back (it would miss them).
    fn nothing_held(&self, op: &'static str) -> Result<(), StoreError> {
        if !self.holding() {
            return Ok(());
        }
        Err(StoreError::Database {
            path: self.path.clone(),
            op,
            reason: "samples are held back in memory: write them first (Store::write_held)".into(),
        })
    }

    /// [`Store::append_queued`] for a scratch store: hold `accepted` in memory.
    fn hold(&mut self, accepted: &[(&Sample, Option<Outgoing>)]) -> Result<(), StoreError> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        let mut touched: HashSet<&str> = HashSet::new();
        for &(s, _) in accepted {
            if !held.on_file.contains_key(&s.uri) {
                let on_file = self.uris.get(&s.uri).and_then(|st| st.stats);
                held.on_file.insert(s.uri.clone(), on_file);
            }
            // Kind, first and last are exact; the count may also count a time
            // already stored until the write takes the file's.
            update_written(&mut self.uris, &s.uri, |state| {
                state
                    .stats
                    .get_or_insert_with(|| UriStats::empty(s.value.kind()))
                    .add(s.ts);
            });
            held.samples.push(s.clone());
            touched.insert(&s.uri);
        }
        self.update_cache(accepted, touched.into_iter());
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.samples.len() >= h.limit)
        {
            self.write_held()?;
        }
        Ok(())
    }

    /// Keep `samples`: check each (uri syntax, value rules, kind fixed by the uri's first
    /// write, including earlier samples of this call), write all accepted ones in one
    /// durable transaction (same `(uri, ts)` overwrites; the last one in the call wins),
    /// then update the cache.
    ///
    /// Returns one outcome per input sample, in order; a refused sample does not stop the
    /// others. A [`StoreError`] means nothing of the call was committed and the in-memory
    /// state is unchanged.
    pub fn append(
        &mut self,
        samples: &[Sample],
    ) -> Result<Vec<Result<(), SampleError>>, StoreError> {
        self.append_queued(samples, |_| None, true)
    }

    /// [`Store::append`], also putting every accepted sample `i` for which `queued(i)`
    /// gives an [`Outgoing`] in the outbox ([`Outbox`]) in the same commit. With `durable` false the commit is
    /// not fsynced: it is for copies of what the server holds (notifications and
    /// history), which a crash may lose and the next connection fetches again; it
    /// becomes durable with the next durable commit.
    pub fn append_queued(
        &mut self,
        samples: &[Sample],
        queued: impl Fn(usize) -> Option<Outgoing>,
        durable: bool,
    ) -> Result<Vec<Result<(), SampleError>>, StoreError> {
        let mut outcomes = Vec::with_capacity(samples.len());
        let mut accepted: Vec<(&Sample, Option<Outgoing>)> = Vec::with_capacity(samples.len());
        let mut new_kinds: HashMap<&str, Kind> = HashMap::new();
        for (i, s) in samples.iter().enumerate() {
            let outcome = check(&self.uris, &mut new_kinds, s);
            if outcome.is_ok() {
                accepted.push((s, queued(i)));
            }
            outcomes.push(outcome);
        }
        if accepted.is_empty() {
            return Ok(outcomes);
        }
        if self.held.is_some() && !durable && accepted.iter().all(|(_, q)| q.is_none()) {
            self.hold(&accepted)?;
            return Ok(outcomes);
        }
        // Held samples go first: the file keeps the order of the appends.
        self.write_held()?;
        let uris = &self.uris;
        self.generation += 1;
        let earliest_queued = accepted
            .iter()
            .filter(|(_, q)| q.is_some())
            .map(|(s, _)| s.ts)
            .min();
        let durable = durable || earliest_queued.is_some();
        let touched = self.disk.commit(&accepted, self.generation, durable, |u| {
            uris.get(u).and_then(|st| st.stats)
        })?;
        if let Some(ts) = earliest_queued {
            self.low_water.lower(ts);
        }

        // Committed: bring the memory up to date.
        for (&uri, &st) in &touched {
            update_written(&mut self.uris, uri, |state| state.stats = Some(st));
        }
        self.update_cache(&accepted, touched.keys().copied());
        Ok(outcomes)
    }

    /// Put committed (or held) samples in their uris' cached series, then trim the
    /// series of `uris` (the distinct uris of `samples`).
    fn update_cache<'s>(
        &mut self,
        samples: &[(&Sample, Option<Outgoing>)],
        uris: impl Iterator<Item = &'s str>,
    ) {
        for (s, _) in samples {
            // A uri whose series is not loaded stays on disk only; its next window loads it.
            if let Some(series) = self.uris.get_mut(&s.uri).and_then(|st| st.series.as_mut()) {
                series.insert(s.ts, &s.value);
            }
        }
        for uri in uris {
            if let Some(state) = self.uris.get_mut(uri)
                && let Some(series) = state.series.as_mut()
            {
                series.trim(state.retention);
            }
        }
    }

    /// The window of `uri` for an impulse firing at `ts` with requirements `reqs` (see
    /// [`DataReqs`]), ascending by timestamp, borrowed from the cache without copying.
    ///
    /// When the cache does not hold the whole window (it reaches before the cached
    /// samples, or nothing is loaded since open), the missing range is loaded from disk
    /// into the cache first. A window far behind the cached samples (more than 4096 stored
    /// samples newer than it and not cached) is read from disk into a scratch buffer
    /// instead of the cache. An unknown uri has an empty window.
    ///
    /// For windows at the newest sample to stay in memory, set the uri's retention to at
    /// least `reqs` with [`Store::set_retention`]; otherwise the next append trims what
    /// this call loaded.
    pub fn window(&mut self, uri: &str, ts: i64, reqs: DataReqs) -> Result<&[Entry], StoreError> {
        let need = Need::from(reqs);
        if self.holding()
            && self
                .uris
                .get(uri)
                .is_some_and(|st| st.stats.is_some() && cached_window(st, ts, need).is_none())
        {
            // The window needs the file: write what is held back first.
            self.write_held()?;
        }
        let Some(state) = self.uris.get_mut(uri) else {
            return Ok(&[]);
        };
        if state.stats.is_none() {
            return Ok(&[]);
        }
        let hit = cached_window(state, ts, need);
        let loaded = match hit {
            Some(range) => Loaded::Cache(range),
            None => window::load(
                &self.disk,
                uri,
                &mut state.series,
                &mut self.scratch,
                ts,
                need,
            )?,
        };
        Ok(match loaded {
            Loaded::Cache(range) => state.series.as_ref().map_or(&[][..], |s| &s.entries[range]),
            Loaded::Scratch => &self.scratch,
        })
    }

    /// Declare the largest requirement of the impulses subscribed to `uri` (the
    /// [`DataReqs::union`] over them): the cache keeps what a window with `reqs` at the
    /// newest sample needs, and trims the rest.
    pub fn set_retention(&mut self, uri: &str, reqs: DataReqs) {
        let state = match self.uris.get_mut(uri) {
            Some(state) => state,
            None => self.uris.entry(uri.to_owned()).or_default(),
        };
        state.retention = Some(reqs);
        if let Some(series) = state.series.as_mut() {
            series.trim(Some(reqs));
        }
    }

    /// Forget the retention of `uri` (no impulse subscribes to it any more): the cache
    /// keeps only its newest sample.
    pub fn clear_retention(&mut self, uri: &str) {
        if let Some(state) = self.uris.get_mut(uri) {
            state.retention = None;
            if let Some(series) = state.series.as_mut() {
                series.trim(None);
            }
        }
    }

    /// A handle on the outbox, for the thread that sends it to the server.
    pub fn outbox(&self) -> Result<Outbox, StoreError> {
        Outbox::open(
            self.disk.database(),
            self.path.clone(),
            self.low_water.clone(),
        )
    }

    /// A handle on the sample log and the sink cursors, for the sinks' threads.
    pub fn sample_log(&self) -> Result<SampleLog, StoreError> {
        Ok(SampleLog::new(
            self.disk.database(),
            self.path.clone(),
            self.disk.log_shared()?,
        ))
    }

    /// True when `uri` already holds exactly `value` at `ts` (a notification of a
    /// sample the agent has is then not stored or fired again).
    pub fn holds(&mut self, uri: &str, ts: i64, value: &Value) -> Result<bool, StoreError> {
        self.write_held()?;
        // Nothing of that kind stored there, or nothing at that time (outside
        // the stored span, as for an import of new data): no read.
        match self.uris.get(uri).and_then(|st| st.stats) {
            Some(st) if st.kind == value.kind() && (st.first_ts..=st.last_ts).contains(&ts) => {}
            _ => return Ok(false),
        }
        let mut found = false;
        self.disk.scan(
            uri,
            Bound::Included(ts),
            Bound::Included(ts),
            false,
            |t, bytes| {
                found = self.disk.decode(uri, t, bytes)? == *value;
                Ok(false)
            },
        )?;
        Ok(found)
    }

    /// The kind of `uri`, if anything was ever stored to it.
    pub fn kind_of(&self, uri: &str) -> Option<Kind> {
        self.uris.get(uri).and_then(|st| st.stats).map(|st| st.kind)
    }

    /// Up to `limit` of the newest samples of `uri`, newest first, read from disk.
    pub fn latest(&self, uri: &str, limit: usize) -> Result<Vec<Sample>, StoreError> {
        self.read(uri, Bound::Unbounded, Bound::Unbounded, true, limit)
    }

    /// Up to `limit` of the newest samples of `uri` with `from_ts <= ts <= to_ts` (a
    /// missing bound is open), newest first, read from disk. The read stops once the
    /// samples returned hold `max_bytes` of text (at least one is returned), so one
    /// read of large texts stays bounded.
    pub fn latest_in(
        &self,
        uri: &str,
        from_ts: Option<i64>,
        to_ts: Option<i64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Sample>, StoreError> {
        self.bounded(uri, from_ts, to_ts, true, limit, max_bytes)
    }

    /// [`Store::latest_in`] from the other end: up to `limit` of the *oldest*
    /// samples of `uri` with `from_ts <= ts <= to_ts`, oldest first, stopping
    /// once they hold `max_bytes` of text (at least one is returned). Reading
    /// page after page (the next `from_ts` one past the last `ts`) walks a
    /// uri forwards in bounded memory (`komlogd query --format`).
    pub fn earliest_in(
        &self,
        uri: &str,
        from_ts: Option<i64>,
        to_ts: Option<i64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Sample>, StoreError> {
        self.bounded(uri, from_ts, to_ts, false, limit, max_bytes)
    }

    fn bounded(
        &self,
        uri: &str,
        from_ts: Option<i64>,
        to_ts: Option<i64>,
        rev: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Sample>, StoreError> {
        self.nothing_held("reading samples")?;
        let bound = |b: Option<i64>| b.map_or(Bound::Unbounded, Bound::Included);
        let mut out = Vec::new();
        if limit == 0 || matches!((from_ts, to_ts), (Some(f), Some(t)) if f > t) {
            return Ok(out);
        }
        let mut bytes = 0usize;
        self.disk
            .scan(uri, bound(from_ts), bound(to_ts), rev, |ts, raw| {
                bytes = bytes.saturating_add(raw.len());
                out.push(Sample {
                    uri: uri.to_owned(),
                    ts,
                    value: self.disk.decode(uri, ts, raw)?,
                });
                Ok(out.len() < limit && bytes < max_bytes)
            })?;
        Ok(out)
    }

    /// Up to `limit` samples of `uri` with `from_ts <= ts <= to_ts`, oldest first, read
    /// from disk. Empty when `from_ts > to_ts`.
    pub fn range(
        &self,
        uri: &str,
        from_ts: i64,
        to_ts: i64,
        limit: usize,
    ) -> Result<Vec<Sample>, StoreError> {
        self.read(
            uri,
            Bound::Included(from_ts),
            Bound::Included(to_ts),
            false,
            limit,
        )
    }

    fn read(
        &self,
        uri: &str,
        lower: Bound<i64>,
        upper: Bound<i64>,
        rev: bool,
        limit: usize,
    ) -> Result<Vec<Sample>, StoreError> {
        self.nothing_held("reading samples")?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.disk.scan(uri, lower, upper, rev, |ts, bytes| {
            out.push(Sample {
                uri: uri.to_owned(),
                ts,
                value: self.disk.decode(uri, ts, bytes)?,
            });
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Every stored uri with its kind, sample count and first and last timestamps, sorted
    /// by uri. Kept up to date on every commit, so this does not scan the samples.
    pub fn uris(&self) -> Result<Vec<UriInfo>, StoreError> {
        self.nothing_held("listing the uris")?;
        let mut out: Vec<UriInfo> = self
            .uris
            .iter()
            .filter_map(|(uri, st)| {
                st.stats.map(|s| UriInfo {
                    uri: uri.clone(),
                    kind: s.kind,
                    count: s.count,
                    first_ts: s.first_ts,
                    last_ts: s.last_ts,
                })
            })
            .collect();
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        Ok(out)
    }
}

/// Apply `f` to the state of `uri`, which is taking a written (or held) sample.
/// A uri with nothing stored has nothing else on disk, so its series starts
/// complete.
fn update_written(uris: &mut HashMap<String, UriState>, uri: &str, f: impl FnOnce(&mut UriState)) {
    let state = match uris.get_mut(uri) {
        Some(state) => state,
        None => uris.entry(uri.to_owned()).or_default(),
    };
    if state.stats.is_none() {
        state.series = Some(Series::default());
    }
    f(state);
}

/// The range of `state`'s cached series holding the whole window at `ts`, if the
/// cache holds all of it.
fn cached_window(state: &UriState, ts: i64, need: Need) -> Option<Range<usize>> {
    state.series.as_ref().and_then(|s| {
        let range = window::select(&s.entries, ts, need);
        window::covered(s, ts, need, &range).then_some(range)
    })
}

/// Check one sample of an `append` call; `new_kinds` records the kinds that earlier
/// samples of the call fixed for uris new to the store.
fn check<'a>(
    uris: &HashMap<String, UriState>,
    new_kinds: &mut HashMap<&'a str, Kind>,
    s: &'a Sample,
) -> Result<(), SampleError> {
    Uri::parse(&s.uri)?;
    s.value.validate()?;
    let written = s.value.kind();
    let existing = uris
        .get(&s.uri)
        .and_then(|st| st.stats)
        .map(|st| st.kind)
        .or_else(|| new_kinds.get(s.uri.as_str()).copied());
    match existing {
        Some(existing) if existing != written => Err(SampleError::KindChange {
            uri: s.uri.clone(),
            existing,
            written,
        }),
        Some(_) => Ok(()),
        None => {
            new_kinds.insert(&s.uri, written);
            Ok(())
        }
    }
}

/// The stores open in this process, by canonical path, so that a second open names the
/// real cause (redb reports the same lock error as for another process).
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A path's entry in [`OPEN`], removed on drop.
struct Registration(PathBuf);

impl Registration {
    fn register(path: PathBuf) -> Option<Registration> {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        if open.contains(&path) {
            return None;
        }
        open.push(path.clone());
        Some(Registration(path))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|p| p != &self.0);
    }
}
