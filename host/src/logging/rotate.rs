//! A log file rotated by size, in the scheme of Python's `RotatingFileHandler`:
//! `komlogd.log` → `komlogd.log.1` → … → `komlogd.log.<backup_count>`, the oldest
//! dropped.
//!
//! Whole lines are the unit: bytes are held back until a newline arrives (so
//! `writeln!`, which writes in pieces, is not split), and everything up to the last
//! newline of a write is written at once (so one multi-line log event stays in one
//! file). When the file is not empty and the unit would take it over `max_bytes`,
//! the file is rotated first, so every file stays within `max_bytes` except one
//! holding a single unit larger than that, which is written whole to a fresh file.
//! An unterminated tail is written by `flush` and on drop. As in Python,
//! `max_bytes == 0` or `backup_count == 0` means the file never rotates.
//!
//! (The crates `file-rotate` and `rolling-file` were considered: the first cuts
//! lines at the byte limit or rotates only after exceeding it, the second checks the
//! size before a write without its length, so files exceed the limit; both pull in
//! chrono.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A size-rotated, append-only log file. Complete lines are written at once: each
/// unit is one `write(2)` on a file opened with `O_APPEND`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    backup_count: u32,
    file: File,
    /// Bytes after the last newline written so far, waiting for the end of the line.
    pending: Vec<u8>,
    /// A rotation failed and was reported; do not report again until one succeeds.
    rotation_failing: bool,
}

impl RotatingFile {
    /// Open (or create) `path` for appending. The directory must exist.
    pub fn open(path: &Path, max_bytes: u64, backup_count: u32) -> io::Result<Self> {
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes,
            backup_count,
            file: open_append(path)?,
            pending: Vec::new(),
            rotation_failing: false,
        })
    }

    /// The path of the current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of backup `n` (`n >= 1`): the current path with `.n` appended.
    pub fn backup_path(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotates(&self) -> bool {
        self.max_bytes > 0 && self.backup_count > 0
    }

    /// Shift the backups up by one and move the current file to `.1`, then open a
    /// fresh file. On error the current file stays open and in use.
    pub fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.backup_count).rev() {
            match fs::rename(self.backup_path(n), self.backup_path(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, self.backup_path(1))?;
        self.file = open_append(&self.path)?;
        Ok(())
    }

    /// Rotate if `incoming` more bytes would take a non-empty file over the limit.
    fn rotate_if_needed(&mut self, incoming: usize) {
        if !self.rotates() {
            return;
        }
        // The size is asked of the file each time, so other writers, truncation
        // by hand or a failed write cannot make it drift.
        let size = match self.file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return,
        };
        if size == 0 || size.saturating_add(incoming as u64) <= self.max_bytes {
            return;
        }
        match self.rotate() {
            Ok(()) => self.rotation_failing = false,
            Err(e) => {
                if !self.rotation_failing {
                    // The logger cannot log about itself; stderr is all there is.
                    eprintln!(
                        "komlogd: cannot rotate the log file {}: {e}; still appending to it",
                        self.path.display()
                    );
                    self.rotation_failing = true;
                }
            }
        }
    }

    /// Write one unit, rotating first if needed.
    fn write_unit(&mut self, unit: &[u8]) -> io::Result<()> {
        self.rotate_if_needed(unit.len());
        self.file.write_all(unit)
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(last_newline) = buf.iter().rposition(|&b| b == b'\n') else {
            self.pending.extend_from_slice(buf);
            return Ok(buf.len());
        };
        let (lines, tail) = buf.split_at(last_newline + 1);
        if self.pending.is_empty() {
            self.write_unit(lines)?;
        } else {
            let mut unit = std::mem::take(&mut self.pending);
            unit.extend_from_slice(lines);
            let written = self.write_unit(&unit);
            unit.clear();
            self.pending = unit;
            written?;
        }
        self.pending.extend_from_slice(tail);
        Ok(buf.len())
    }

    /// Writes an unterminated tail too, as its own unit.
    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let unit = std::mem::take(&mut self.pending);
            self.write_unit(&unit)?;
        }
        self.file.flush()
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        // Nowhere to report a failure to; the tail is normally empty.
        let _ = self.flush();
    }
}

/// Open `path` for appending, creating it.
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    use crate::test_util::names;

    #[test]
    fn shifts_backups_and_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = RotatingFile::open(&path, 4, 2).expect("open");
        for unit in ["AAA\n", "BBB\n", "CCC\n", "DDD\n"] {
            f.write_all(unit.as_bytes()).expect("write");
        }
        assert_eq!(names(dir.path()), ["a.log", "a.log.1", "a.log.2"]);
        assert_eq!(read(&path), "DDD\n");
        assert_eq!(read(&f.backup_path(1)), "CCC\n");
        assert_eq!(read(&f.backup_path(2)), "BBB\n");
    }

    #[test]
    fn fills_up_to_the_limit_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = RotatingFile::open(&path, 8, 1).expect("open");
        f.write_all(b"123\n").expect("write");
        f.write_all(b"567\n").expect("write");
        assert_eq!(read(&path), "123\n567\n");
        f.write_all(b"9\n").expect("write");
        assert_eq!(read(&path), "9\n");
        assert_eq!(read(&f.backup_path(1)), "123\n567\n");
    }

    #[test]
    fn oversized_unit_goes_whole_to_a_fresh_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = RotatingFile::open(&path, 5, 3).expect("open");
        f.write_all(b"ab\n").expect("write");
        f.write_all(b"0123456789\n").expect("write");
        f.write_all(b"cd\n").expect("write");
        assert_eq!(read(&f.backup_path(2)), "ab\n");
        assert_eq!(read(&f.backup_path(1)), "0123456789\n");
        assert_eq!(read(&path), "cd\n");
        // An empty file is never rotated, even for an oversized unit.
        let other = dir.path().join("b.log");
        let mut g = RotatingFile::open(&other, 5, 3).expect("open");
        g.write_all(b"0123456789\n").expect("write");
        assert!(!g.backup_path(1).exists());
    }

    #[test]
    fn existing_content_counts_towards_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        fs::write(&path, "old\n").expect("seed");
        let mut f = RotatingFile::open(&path, 6, 1).expect("open");
        f.write_all(b"new\n").expect("write");
        assert_eq!(read(&f.backup_path(1)), "old\n");
        assert_eq!(read(&path), "new\n");
    }

    #[test]
    fn zero_backups_or_zero_size_never_rotate() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, max, backups) in [("a.log", 4, 0), ("b.log", 0, 3)] {
            let path = dir.path().join(name);
            let mut f = RotatingFile::open(&path, max, backups).expect("open");
            for _ in 0..10 {
                f.write_all(b"xxxx\n").expect("write");
            }
            assert_eq!(read(&path).len(), 50);
        }
        assert_eq!(names(dir.path()), ["a.log", "b.log"]);
    }

    #[test]
    fn lines_written_in_pieces_are_not_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = RotatingFile::open(&path, 10, 2).expect("open");
        for i in 0..3 {
            write!(f, "line").expect("write");
            write!(f, " {i}").expect("write");
            writeln!(f).expect("write");
        }
        // A multi-line unit stays together.
        f.write_all(b"x\ny\n").expect("write");
        write!(f, "tail").expect("write");
        assert_eq!(read(&f.backup_path(2)), "line 1\n");
        assert_eq!(read(&f.backup_path(1)), "line 2\n");
        assert_eq!(read(&path), "x\ny\n");
        drop(f);
        assert_eq!(read(&path), "x\ny\ntail");
    }

    #[test]
    fn failed_rotation_keeps_appending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = RotatingFile::open(&path, 4, 1).expect("open");
        // A non-empty directory where `.1` should go makes the rename fail.
        fs::create_dir(f.backup_path(1)).expect("mkdir");
        fs::write(f.backup_path(1).join("x"), "x").expect("fill");
        f.write_all(b"AAA\n").expect("write");
        f.write_all(b"BBB\n").expect("write");
        f.write_all(b"CCC\n").expect("write");
        assert_eq!(read(&path), "AAA\nBBB\nCCC\n");
        // Once the obstacle is gone, rotation resumes.
        fs::remove_dir_all(f.backup_path(1)).expect("rm");
        f.write_all(b"DDD\n").expect("write");
        assert_eq!(read(&f.backup_path(1)), "AAA\nBBB\nCCC\n");
        assert_eq!(read(&path), "DDD\n");
    }
}
