//! Writing the key files: temporary file in the same directory, exact mode set
//! before any content is written, `fsync`, then rename into place.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{KeyError, dir_of, public_key_path};

/// Mode of `key.priv`.
pub(super) const PRIVATE_MODE: u32 = 0o600;
/// Mode of `key.pub`.
pub(super) const PUBLIC_MODE: u32 = 0o644;

/// Write a new key pair: `private_path` and `key.pub` beside it.
///
/// Both go to temporary files first; then `key.pub` is renamed into place, then
/// the private key. On any failure the temporary files, and a `key.pub` already
/// renamed, are removed, so there is never a private key without its public key.
pub(super) fn write_pair(
    private_path: &Path,
    private_pem: &[u8],
    public_line: &[u8],
) -> Result<(), KeyError> {
    let public_path = public_key_path(private_path);
    let private_tmp = TempFile::write(private_path, PRIVATE_MODE, private_pem)?;
    let public_tmp = TempFile::write(&public_path, PUBLIC_MODE, public_line)?;
    public_tmp.persist()?;
    if let Err(e) = private_tmp.persist() {
        // Best effort: the error being reported is the rename's.
        let _ = fs::remove_file(&public_path);
        return Err(e);
    }
    sync_dir(dir_of(private_path));
    Ok(())
}

/// Replace (or create) `key.pub` alone, atomically.
pub(super) fn write_public(public_path: &Path, public_line: &[u8]) -> Result<(), KeyError> {
    TempFile::write(public_path, PUBLIC_MODE, public_line)?.persist()?;
    sync_dir(dir_of(public_path));
    Ok(())
}

/// Warn when the private key can be read by others (it is still used).
pub(super) fn warn_if_loose_permissions(private_path: &Path) {
    if let Ok(meta) = fs::metadata(private_path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the private key {} has mode {mode:04o}: other users may read it (chmod 600 it)",
                private_path.display()
            );
        }
    }
}

/// Make the renames durable. Some file systems cannot sync a directory; the files
/// themselves were synced already, so a failure here is ignored.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A fully written temporary file beside its target, removed on drop unless
/// [`TempFile::persist`] renamed it.
struct TempFile {
    tmp: PathBuf,
    target: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Create a temporary file next to `target` with exactly `mode`, write
    /// `contents` and sync it.
    fn write(target: &Path, mode: u32, contents: &[u8]) -> Result<Self, KeyError> {
        let err = |source: io::Error| KeyError::Write {
            path: target.to_owned(),
            source,
        };
        let (file, tmp) = create_unique(target, mode).map_err(err)?;
        let temp = TempFile {
            tmp,
            target: target.to_owned(),
            persisted: false,
        };
        // On error `temp` is dropped, which removes the partial file.
        fill(file, mode, contents).map_err(err)?;
        Ok(temp)
    }

    /// Rename into place.
    fn persist(mut self) -> Result<(), KeyError> {
        fs::rename(&self.tmp, &self.target).map_err(|source| KeyError::Write {
            path: self.target.clone(),
            source,
        })?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort clean-up of our own temporary file.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Set the exact mode (the umask may have narrowed it) before writing anything,
/// then write and sync.
fn fill(mut file: File, mode: u32, contents: &[u8]) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Create `.<name>.tmp-<pid>-<n>` beside `target` with `O_EXCL` and `mode`.
fn create_unique(target: &Path, mode: u32) -> io::Result<(File, PathBuf)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".to_owned());
    let dir = dir_of(target);
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}
