//! The on-disk cache of compiled components.
//!
//! Compiling a 1–2 MB guest takes seconds; loading its compiled artifact takes a
//! fraction of a millisecond. Artifacts live in `<cache dir>/<sha256 of the .wasm>-<engine hash>.cwasm`,
//! where the engine hash covers wasmtime's version and every setting that changes
//! code generation, so a stale artifact is never loaded into an engine it does not
//! fit. Writes go to a temporary file renamed into place: a crash leaves either no
//! artifact or a whole one. An artifact that fails to load is deleted and rebuilt.
//! A compile holds a lock file next to the artifact it will write, so agents and
//! threads that load the same module at once into one cache directory compile
//! it once: the others wait for the lock and load the artifact.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Hex SHA-256 of a module's bytes: its identity (the "version" shown in logs).
pub fn module_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short, stable fingerprint of an engine's code-generation settings.
pub fn engine_fingerprint(engine: &wasmtime::Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Where compiled artifacts are kept.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    fingerprint: String,
}

impl ArtifactCache {
    /// A cache in `dir` for artifacts of engines with `fingerprint`.
    pub fn new(dir: PathBuf, fingerprint: String) -> Self {
        ArtifactCache { dir, fingerprint }
    }

    /// The artifact path for a module hash.
    pub fn path_for(&self, module_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{module_hash}-{}.cwasm", self.fingerprint))
    }

    /// Store an artifact atomically (temporary file, fsync, rename).
    pub fn store(&self, module_hash: &str, artifact: &[u8]) -> std::io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path_for(module_hash);
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(artifact)?;
        tmp.1.sync_all()?;
        fs::rename(&tmp.0, &path)?;
        Ok(path)
    }

    /// Take the lock for compiling `module_hash`, waiting while another thread
    /// or process holds it. Whoever gets it should look for the artifact again
    /// before compiling: the previous holder has usually just written it.
    pub fn compile_lock(&self, module_hash: &str) -> std::io::Result<CompileLock> {
        fs::create_dir_all(&self.dir)?;
        let path = self
            .dir
            .join(format!("{module_hash}-{}.lock", self.fingerprint));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(CompileLock { path, _file: file })
    }

    /// Remove an artifact that failed to load.
    pub fn evict(&self, module_hash: &str) {
        let _ = fs::remove_file(self.path_for(module_hash));
    }
}

/// The lock of one module's compile: released, and its file removed, on drop.
/// The artifact is stored before the lock is released, so a waiter that gets
/// the lock of a removed file finds the artifact, and a newcomer finds it
/// before looking for a lock.
#[derive(Debug)]
pub struct CompileLock {
    path: PathBuf,
    _file: fs::File,
}

impl Drop for CompileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    for attempt in 0..16u32 {
        let path = dir.join(format!(
            ".tmp-{}-{}-{attempt}",
            std::process::id(),
            crate::model::now_us()
        ));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("could not create a temporary file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            module_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn store_is_atomic_and_named_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path().join("c"), "f00".into());
        let p = cache.store("abc", b"xyz").unwrap();
        assert_eq!(p, dir.path().join("c/abc-f00.cwasm"));
        assert_eq!(fs::read(&p).unwrap(), b"xyz");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("c"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        cache.evict("abc");
        assert!(!p.exists());
    }
}
