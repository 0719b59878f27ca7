//! The file sink (`type: file`): samples appended to a local file, one JSON object a
//! line (`jsonl`) or CSV (`uri,ts,kind,value`, with a header line), with rotation by
//! size (`rotate: {size, keep}`: `path` becomes `path.1`, older ones shift up, the
//! oldest beyond `keep` is deleted).
//!
//! **Owns:** the line formats and the rotation. A batch is written whole and fsynced
//! before it counts as delivered; a failed write is cut back off the file, so a retry
//! leaves no torn line. Every I/O error is retryable (a full disk, a directory made
//! unwritable): nothing here is refused for good.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{BoxFuture, Sink, SinkError, sample_json};
use crate::config::FileFormat;
use crate::model::{Sample, Value};

/// The CSV header line.
pub const CSV_HEADER: &str = "uri,ts,kind,value\n";

/// Appends batches to a file.
pub struct FileSink {
    path: PathBuf,
    format: FileFormat,
    rotate_bytes: Option<u64>,
    keep: u32,
    file: Option<File>,
}

impl FileSink {
    /// A sink writing `path`.
    pub fn new(
        path: PathBuf,
        format: FileFormat,
        rotate_bytes: Option<u64>,
        keep: u32,
    ) -> FileSink {
        FileSink {
            path,
            format,
            rotate_bytes,
            keep,
            file: None,
        }
    }

    fn io(&self, what: &str, e: std::io::Error) -> SinkError {
        SinkError::Retryable(format!("{}: {what}: {e}", self.path.display()))
    }

    fn open(&mut self) -> Result<&mut File, SinkError> {
        // The file was moved or removed (by hand, or by logrotate): open the path again.
        if let Some(f) = &self.file {
            use std::os::unix::fs::MetadataExt;
            let same = match (f.metadata(), std::fs::metadata(&self.path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                self.file = None;
            }
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| self.io("creating its directory", e))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.io("opening", e))?;
            cut_torn_line(&f).map_err(|e| self.io("checking its last line", e))?;
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| SinkError::Retryable("the file is not open".into()))
    }

    /// `path.N` for rotation.
    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file = None;
        if self.keep == 0 {
            return std::fs::remove_file(&self.path)
                .map_err(|e| self.io("removing it to rotate", e));
        }
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1)).map_err(|e| self.io("rotating", e))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1)).map_err(|e| self.io("rotating", e))
    }

    fn write(&mut self, batch: &[Sample]) -> Result<(), SinkError> {
        let mut len = self
            .open()?
            .metadata()
            .map_err(|e| SinkError::Retryable(e.to_string()))?
            .len();
        let mut body = Vec::with_capacity(batch.len() * 64);
        for s in batch {
            match self.format {
                FileFormat::Jsonl => {
                    let _ = serde_json::to_writer(&mut body, &sample_json(s));
                    body.push(b'\n');
                }
                FileFormat::Csv => csv_line(s, &mut body),
            }
        }
        if let Some(max) = self.rotate_bytes
            && len > 0
            && len + body.len() as u64 > max
        {
            self.rotate()?;
            len = 0;
        }
        let header = self.format == FileFormat::Csv && len == 0;
        let path = self.path.clone();
        let file = self.open()?;
        let result = (|| {
            if header {
                file.write_all(CSV_HEADER.as_bytes())?;
            }
            file.write_all(&body)?;
            file.sync_data()
        })();
        if let Err(e) = result {
            // Cut a partial write off, so the retry leaves no torn line.
            let _ = file.set_len(len);
            self.file = None;
            return Err(SinkError::Retryable(format!(
                "{}: writing: {e}",
                path.display()
            )));
        }
        Ok(())
    }
}

/// Cut a last line without its newline (a write cut short by a crash): its samples
/// are sent again, since the cursor had not moved past them.
fn cut_torn_line(f: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut r = f;
    let mut pos = len;
    let mut buf = [0u8; 4096];
    let mut first = true;
    while pos > 0 {
        let n = (pos as usize).min(buf.len());
        pos -= n as u64;
        r.seek(SeekFrom::Start(pos))?;
        r.read_exact(&mut buf[..n])?;
        if first {
            if buf[n - 1] == b'\n' {
                return Ok(());
            }
            first = false;
        }
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return f.set_len(pos + i as u64 + 1);
        }
    }
    f.set_len(0)
}

/// One CSV line: `uri,ts,kind,value`, quoted where needed (RFC 4180).
fn csv_line(s: &Sample, out: &mut Vec<u8>) {
    let quote = |t: &str, out: &mut Vec<u8>| {
        if t.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(t.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(t.as_bytes());
        }
    };
    quote(&s.uri, out);
    out.extend_from_slice(format!(",{},", s.ts).as_bytes());
    match &s.value {
        Value::Datapoint(v) => out.extend_from_slice(format!("datapoint,{v}").as_bytes()),
        Value::Datasource(t) => {
            out.extend_from_slice(b"datasource,");
            quote(t, out);
        }
    }
    out.push(b'\n');
}

impl Sink for FileSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.open()?;
            check_writable(&self.path)
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.write(batch) })
    }
}

/// The file must be writable by this process (opening it for append says so).
fn check_writable(path: &Path) -> Result<(), SinkError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| SinkError::Retryable(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(uri: &str, ts: i64, value: Value) -> Sample {
        Sample {
            uri: uri.into(),
            ts,
            value,
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut out = Vec::new();
        csv_line(&s("a.b", 5, Value::Datapoint(1.5)), &mut out);
        csv_line(
            &s("a.c", 6, Value::Datasource("x,\"y\"\nz".into())),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a.b,5,datapoint,1.5\na.c,6,datasource,\"x,\"\"y\"\"\nz\"\n"
        );
    }

    #[tokio::test]
    async fn files_rotate_by_size_and_keep_that_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.csv");
        let mut sink = FileSink::new(path.clone(), FileFormat::Csv, Some(100), 2);
        sink.check().await.unwrap();
        for i in 0..12 {
            let batch: Vec<Sample> = (0..2)
                .map(|j| s("host.cpu", i * 10 + j, Value::Datapoint(0.5)))
                .collect();
            sink.send(&batch).await.unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let current = read(&path);
        assert!(current.starts_with(CSV_HEADER), "{current}");
        assert!(current.len() <= 100, "{}", current.len());
        assert!(read(&sink.rotated(1)).starts_with(CSV_HEADER));
        assert!(sink.rotated(2).exists());
        assert!(!sink.rotated(3).exists());
        // The newest samples are in the current file, the ones before in .1.
        assert!(current.contains("host.cpu,111,datapoint,0.5"), "{current}");
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_a_moved_file_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\"").unwrap();
        let mut sink = FileSink::new(path.clone(), FileFormat::Jsonl, None, 1);
        sink.send(&[s("x", 1, Value::Datapoint(1.0))])
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"a\":1}\n{\"kind\":\"datapoint\",\"ts\":1,\"uri\":\"x\",\"value\":1.0}\n"
        );
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        sink.send(&[s("x", 2, Value::Datapoint(2.0))])
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
