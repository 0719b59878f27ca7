//! The on-disk cache of single compiled functions (Cranelift's incremental
//! compilation cache), beside the cache of whole compiled modules.
//!
//! A module that is not in the artifact cache is compiled function by function;
//! each function's machine code is kept here under a hash of its code and of
//! the compiler's version and settings (computed by Cranelift). A module that
//! shares most of its functions with one compiled before then compiles in a
//! fraction of the time: a new version of a Python or JavaScript impulse
//! carries the same interpreter as the last (tens of thousands of functions),
//! and so do two impulses of one language.
//!
//! The functions one compile adds are written when it ends, as one pack file
//! (`<dir>/*.pack`, written to a temporary name and renamed into place, so a
//! reader sees a whole pack or none). A compile reads the packs when it starts
//! and lets go of them when it ends, so an agent holds none between compiles.
//! Agents sharing a cache directory share the packs; two compiling the same
//! new functions at once both write them, which costs space, not correctness.
//! Some functions (a few per cent of a Python component) are given a new key
//! by every compile, so packs would pile up with each new version: once the
//! directory holds [`MAX_PACKS`] packs, a compile writes every function it
//! used into its pack and removes the packs it read. A module not compiled
//! since then compiles in full once more. An entry Cranelift cannot read is
//! compiled again. Like the module artifacts, entries are machine code the
//! agent runs: the directory must be writable by the agent's user only.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// First bytes of a pack file; then entries of (32-byte key, u32 LE length,
/// that many bytes).
const PACK_MAGIC: &[u8; 8] = b"KFNPACK1";
const KEY_LEN: usize = 32;
/// Packs a directory holds before a compile's pack replaces them.
pub const MAX_PACKS: usize = 16;

/// A directory of packs of compiled functions, shared by the threads of a
/// compile, by the agent's later compiles and by other agents using the same
/// cache directory.
#[derive(Debug)]
pub struct FunctionCache {
    dir: PathBuf,
    state: Mutex<State>,
    /// Suffix of pack file names, unique within this process.
    next_pack: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Compiles under way (their [`Compiling`] guards alive).
    compiling: usize,
    /// The entries of the packs read, and those compiled since.
    entries: HashMap<[u8; KEY_LEN], Vec<u8>>,
    /// The pack files read into `entries` (all of them when the first
    /// compile under way started, and those written by others since).
    packs_read: HashSet<OsString>,
    /// Keys compiled since the last pack was written.
    new: Vec<[u8; KEY_LEN]>,
    /// Keys found or compiled since the last pack was written.
    used: HashSet<[u8; KEY_LEN]>,
    /// Functions found, and functions compiled, since the first compile
    /// under way started.
    reused: usize,
    compiled: usize,
}

/// What a compile did with the cache. With compiles overlapping in one
/// engine, the counts are of them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileReport {
    /// Functions found in the packs when the compile started.
    pub known: usize,
    /// Functions taken from the cache instead of compiled.
    pub reused: usize,
    /// Functions compiled.
    pub compiled: usize,
    /// Functions this compile (and any beside it) added.
    pub added: usize,
    /// Whether its pack replaced the packs it read.
    pub replaced: bool,
}

impl FunctionCache {
    /// The cache in `dir` (created on the first write).
    pub fn new(dir: PathBuf) -> Self {
        FunctionCache {
            dir,
            state: Mutex::new(State::default()),
            next_pack: AtomicU64::new(0),
        }
    }

    /// The directory the packs are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mark a compile: the packs on disk are read (those not read yet), and
    /// when the last compile under way ends the functions added are written
    /// as one pack and the entries dropped from memory.
    pub fn compiling(&self) -> Compiling<'_> {
        let mut state = self.lock();
        state.compiling += 1;
        self.read_new_packs(&mut state);
        Compiling {
            cache: self,
            known: state.entries.len(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_new_packs(&self, state: &mut State) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in listing.flatten() {
            let name = entry.file_name();
            let is_pack = Path::new(&name).extension().is_some_and(|e| e == "pack");
            if !is_pack || state.packs_read.contains(&name) {
                continue;
            }
            match fs::read(entry.path()) {
                Ok(bytes) => {
                    if let Err(e) = read_pack(&bytes, &mut state.entries) {
                        tracing::debug!(pack = %entry.path().display(), "a compiled-function pack is cut short: {e}");
                    }
                    state.packs_read.insert(name);
                }
                Err(e) => {
                    tracing::debug!(pack = %entry.path().display(), "cannot read a compiled-function pack: {e}")
                }
            }
        }
    }

    /// Write the functions `keys` as a new pack.
    fn write_pack<'k>(
        &self,
        entries: &HashMap<[u8; KEY_LEN], Vec<u8>>,
        keys: impl Iterator<Item = &'k [u8; KEY_LEN]> + Clone,
    ) -> std::io::Result<()> {
        let mut pack = Vec::with_capacity(
            PACK_MAGIC.len()
                + keys
                    .clone()
                    .filter_map(|k| entries.get(k))
                    .map(|v| KEY_LEN + 4 + v.len())
                    .sum::<usize>(),
        );
        pack.extend_from_slice(PACK_MAGIC);
        for key in keys {
            let Some(value) = entries.get(key) else {
                continue;
            };
            let Ok(len) = u32::try_from(value.len()) else {
                continue;
            };
            pack.extend_from_slice(key);
            pack.extend_from_slice(&len.to_le_bytes());
            pack.extend_from_slice(value);
        }
        fs::create_dir_all(&self.dir)?;
        // Under a name that is not a pack's until it is whole (removed if the
        // write fails).
        let mut tmp = tempfile::NamedTempFile::with_prefix_in(".", &self.dir)?;
        tmp.write_all(&pack)?;
        let path = self.dir.join(format!(
            "{}-{}-{}.pack",
            std::process::id(),
            crate::model::now_us(),
            self.next_pack.fetch_add(1, Ordering::Relaxed)
        ));
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// At the end of the last compile under way: the functions it added, as
    /// a pack, or every function it used, replacing the packs read, when
    /// there are [`MAX_PACKS`] of them. Returns (functions added, replaced).
    fn keep(&self, state: &State) -> std::io::Result<(usize, bool)> {
        let added = state.new.len();
        if added == 0 {
            return Ok((0, false));
        }
        if state.packs_read.len() + 1 < MAX_PACKS {
            self.write_pack(&state.entries, state.new.iter())?;
            return Ok((added, false));
        }
        self.write_pack(&state.entries, state.used.iter())?;
        for old in &state.packs_read {
            if let Err(e) = fs::remove_file(self.dir.join(old)) {
                tracing::debug!(pack = ?old, "cannot remove a replaced compiled-function pack: {e}");
            }
        }
        Ok((added, true))
    }
}

/// Reads the entries of a pack into `entries`; stops at the first that is cut
/// short.
fn read_pack(bytes: &[u8], entries: &mut HashMap<[u8; KEY_LEN], Vec<u8>>) -> Result<(), String> {
    let mut rest = bytes
        .strip_prefix(PACK_MAGIC.as_slice())
        .ok_or("it does not start with the pack header")?;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_first_chunk::<KEY_LEN>()
            .ok_or("a key is cut short")?;
        let (len, after) = after
            .split_first_chunk::<4>()
            .ok_or("a length is cut short")?;
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err("an entry is cut short".into());
        }
        let (value, after) = after.split_at(len);
        entries.entry(*key).or_insert_with(|| value.to_vec());
        rest = after;
    }
    Ok(())
}

/// A compile under way; see [`FunctionCache::compiling`].
#[derive(Debug)]
pub struct Compiling<'a> {
    cache: &'a FunctionCache,
    known: usize,
}

impl Compiling<'_> {
    /// Ends the compile (as dropping it does), and says how the cache served it.
    pub fn finish(self) -> CompileReport {
        let report = self.end();
        std::mem::forget(self);
        report
    }

    fn end(&self) -> CompileReport {
        let mut state = self.cache.lock();
        state.compiling = state.compiling.saturating_sub(1);
        let mut report = CompileReport {
            known: self.known,
            reused: state.reused,
            compiled: state.compiled,
            ..CompileReport::default()
        };
        if state.compiling > 0 {
            return report;
        }
        match self.cache.keep(&state) {
            Ok((added, replaced)) => (report.added, report.replaced) = (added, replaced),
            Err(e) => {
                tracing::warn!(dir = %self.cache.dir.display(), "cannot keep the compiled functions: {e}")
            }
        }
        state.new.clear();
        state.used = HashSet::new();
        state.entries = HashMap::new();
        state.packs_read.clear();
        (state.reused, state.compiled) = (0, 0);
        report
    }
}

impl Drop for Compiling<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let key: &[u8; KEY_LEN] = key.try_into().ok()?;
        let mut state = self.lock();
        let value = state.entries.get(key).cloned()?;
        state.used.insert(*key);
        state.reused += 1;
        Some(Cow::Owned(value))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(key) = <[u8; KEY_LEN]>::try_from(key) else {
            return false;
        };
        let mut state = self.lock();
        if state.compiling == 0 {
            // Outside a marked compile nothing would write it.
            return false;
        }
        if state.entries.insert(key, value).is_none() {
            state.new.push(key);
        }
        state.used.insert(key);
        state.compiled += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    fn packs(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |l| {
            l.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
    }

    #[test]
    fn a_compile_writes_one_pack_that_the_next_compile_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::new(dir.path().join("functions"));
        let compile = cache.compiling();
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.insert(&[1; 32], b"one".to_vec()));
        assert!(cache.insert(&[2; 32], b"two".to_vec()));
        assert_eq!(cache.get(&[1; 32]).as_deref(), Some(&b"one"[..]));
        assert_eq!(
            compile.finish(),
            CompileReport {
                known: 0,
                reused: 1,
                compiled: 2,
                added: 2,
                replaced: false
            }
        );
        assert_eq!(packs(cache.dir()), 1);
        assert!(
            cache.get(&[1; 32]).is_none(),
            "nothing is held between compiles"
        );

        // Another cache on the same directory (another agent) reads it.
        let other = FunctionCache::new(dir.path().join("functions"));
        let compile = other.compiling();
        assert_eq!(other.get(&[2; 32]).as_deref(), Some(&b"two"[..]));
        assert!(other.insert(&[3; 32], b"three".to_vec()));
        assert_eq!(
            compile.finish(),
            CompileReport {
                known: 2,
                reused: 1,
                compiled: 1,
                added: 1,
                replaced: false
            }
        );
        assert_eq!(packs(cache.dir()), 2);

        // The first reads only the pack it has not read.
        let compile = cache.compiling();
        assert_eq!(cache.get(&[3; 32]).as_deref(), Some(&b"three"[..]));
        assert_eq!(cache.get(&[1; 32]).as_deref(), Some(&b"one"[..]));
        assert_eq!(
            compile.finish(),
            CompileReport {
                known: 3,
                reused: 2,
                compiled: 0,
                added: 0,
                replaced: false
            }
        );
        assert_eq!(
            packs(cache.dir()),
            2,
            "no pack for a compile that added nothing"
        );
    }

    #[test]
    fn at_the_pack_limit_a_compile_keeps_what_it_used_and_removes_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::new(dir.path().to_owned());
        for i in 0..MAX_PACKS - 1 {
            let compile = cache.compiling();
            assert!(cache.insert(&[i as u8; 32], vec![i as u8]));
            assert!(!compile.finish().replaced);
        }
        assert_eq!(packs(dir.path()), MAX_PACKS - 1);
        // This compile uses functions 0 and 1 and adds 200: the limit is reached.
        let compile = cache.compiling();
        assert!(cache.get(&[0; 32]).is_some() && cache.get(&[1; 32]).is_some());
        assert!(cache.insert(&[200; 32], vec![200]));
        assert_eq!(
            compile.finish(),
            CompileReport {
                known: MAX_PACKS - 1,
                reused: 2,
                compiled: 1,
                added: 1,
                replaced: true
            }
        );
        assert_eq!(packs(dir.path()), 1);
        let fresh = FunctionCache::new(dir.path().to_owned());
        let compile = fresh.compiling();
        for (key, kept) in [(0u8, true), (1, true), (200, true), (2, false), (14, false)] {
            assert_eq!(fresh.get(&[key; 32]).is_some(), kept, "function {key}");
        }
        drop(compile);
    }

    #[test]
    fn overlapping_compiles_write_when_the_last_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::new(dir.path().join("functions"));
        let first = cache.compiling();
        let second = cache.compiling();
        assert!(cache.insert(&[1; 32], b"one".to_vec()));
        drop(first);
        assert_eq!(packs(cache.dir()), 0);
        assert_eq!(cache.get(&[1; 32]).as_deref(), Some(&b"one"[..]));
        assert!(cache.insert(&[2; 32], b"two".to_vec()));
        assert_eq!(second.finish().added, 2);
        assert_eq!(packs(cache.dir()), 1);
    }

    #[test]
    fn a_pack_cut_short_gives_its_whole_entries_and_a_foreign_file_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::new(dir.path().to_owned());
        let compile = cache.compiling();
        cache.insert(&[1; 32], vec![7; 100]);
        cache.insert(&[2; 32], vec![8; 100]);
        compile.finish();
        let pack = fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "pack"))
            .expect("a pack");
        let bytes = fs::read(&pack).expect("read the pack");
        fs::write(&pack, &bytes[..bytes.len() - 1]).expect("cut it");
        fs::write(dir.path().join("foreign.pack"), b"not a pack").expect("write");

        let fresh = FunctionCache::new(dir.path().to_owned());
        let compile = fresh.compiling();
        assert_eq!(fresh.get(&[1; 32]).as_deref(), Some(&[7; 100][..]));
        assert!(
            fresh.get(&[2; 32]).is_none(),
            "the entry cut short is not used"
        );
        drop(compile);
    }

    #[test]
    fn outside_a_compile_or_with_a_bad_key_nothing_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::new(dir.path().join("functions"));
        assert!(!cache.insert(&[1; 32], b"x".to_vec()));
        let compile = cache.compiling();
        assert!(
            !cache.insert(&[1; 5], b"x".to_vec()),
            "a key of the wrong length"
        );
        assert!(cache.get(&[1; 5]).is_none());
        assert_eq!(compile.finish().added, 0);
    }

    #[test]
    fn an_unwritable_directory_loses_the_pack_without_failing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").expect("write");
        let cache = FunctionCache::new(blocker.join("functions"));
        let compile = cache.compiling();
        assert!(cache.insert(&[1; 32], b"x".to_vec()));
        assert_eq!(compile.finish().added, 0);
    }
}
