//! The control socket: the agent's side (serve `status`, `upload`, `samples`
//! and `query` requests on `komlogd.sock`) and the client's ([`query`],
//! [`upload`], [`read`]).
//!
//! A request is one line, its answer one JSON line:
//!
//! - `status`: the agent's [`StatusReport`];
//! - `upload <json>`: one [`UploadRequest`], stored through the inbox like a
//!   `komlogd -u` upload, answered with an [`UploadAnswer`];
//! - `samples <json>`: a JSON array of [`UploadRequest`]s (the application
//!   metrics clients' batches), ingested as one batch through the same path as
//!   `upload` and answered with one [`UploadAnswer`]: a sample with neither or
//!   both of `datapoint` and `datasource` is one of its `rejected`, and a batch of
//!   more than [`MAX_BATCH_SAMPLES`] samples or longer than
//!   [`MAX_SAMPLES_BYTES`] is refused whole (its `error`);
//! - `query <json>`: a [`ReadRequest`], answered with a [`ReadAnswer`].
//!
//! The agent closes the connection after answering `status`, `upload` and
//! `query`, as it always did. After a `samples` answer it keeps the connection
//! open and reads the next request line (waiting up to [`KEEP_ALIVE_IDLE`] for
//! it, or until the agent stops), so a metrics client sends batch after batch
//! on one connection.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::{Boards, REQUEST_TIMEOUT, StatusReport};
use crate::impulses::Inbox;
use crate::model::{Sample, Value};
use crate::store::read::{ReadAnswer, ReadRequest};

/// Longest control request: an upload of the largest datasource sample, JSON-escaped.
const MAX_CONTROL_BYTES: u64 = 8 * crate::model::MAX_DATASOURCE_BYTES as u64 + 4096;

/// The most samples one `samples` request carries.
pub const MAX_BATCH_SAMPLES: usize = 10_000;

/// Longest `samples` request: 16 MiB, room for [`MAX_BATCH_SAMPLES`] ordinary
/// samples or sixteen of the largest datasource samples, JSON-escaped.
pub const MAX_SAMPLES_BYTES: u64 = 16 * MAX_CONTROL_BYTES;

/// How long the agent waits for the next request on a connection kept open
/// after a `samples` answer.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

/// The sample of an `upload` request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UploadRequest {
    /// The uri.
    pub uri: String,
    /// Its timestamp, µs since the Unix epoch.
    pub ts: i64,
    /// A number, for a datapoint sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoint: Option<f64>,
    /// A text, for a datasource sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
}

/// A refused sample in an `upload` answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefusedSample {
    /// Its uri.
    pub uri: String,
    /// Its timestamp.
    pub ts: i64,
    /// Why.
    pub reason: String,
}

/// The answer to an `upload` request.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UploadAnswer {
    /// Samples committed, held ones included.
    #[serde(default)]
    pub accepted: usize,
    /// Of those, samples the store already held (the same value at the same
    /// time): not stored, fired or queued again.
    #[serde(default)]
    pub held: usize,
    /// Samples refused.
    #[serde(default)]
    pub rejected: Vec<RefusedSample>,
    /// A failure of the request itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The control socket of the configuration in `config_dir`.
pub fn control_socket_path(config_dir: &Path) -> PathBuf {
    config_dir.join("komlogd.sock")
}

/// Why a status request failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing listens on the socket.
    #[error("no komlogd agent is running for this configuration (nothing answers on {0})")]
    NotRunning(PathBuf),
    /// The exchange failed.
    #[error("{path}: {reason}")]
    Exchange {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The request was sent whole but no answer came (the agent stopped or
    /// died while handling it, or took longer than [`ANSWER_TIMEOUT`]): what
    /// was asked may or may not have been done.
    #[error("{path}: the request was sent, but no answer came: {reason}")]
    Unanswered {
        /// The socket.
        path: PathBuf,
        /// What happened instead of an answer.
        reason: String,
    },
}

/// Ask the agent listening on `socket` for its status.
pub fn query(socket: &Path) -> Result<StatusReport, StatusError> {
    let line = request(socket, "status\n")?;
    serde_json::from_str(&line).map_err(|e| StatusError::Exchange {
        path: socket.to_owned(),
        reason: format!("unreadable answer: {e}"),
    })
}

/// Hand a sample to the agent listening on `socket`; returns once it is stored.
pub fn upload(socket: &Path, sample: &UploadRequest) -> Result<UploadAnswer, StatusError> {
    let exchange = |reason: String| StatusError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    let body = serde_json::to_string(sample).map_err(|e| exchange(e.to_string()))?;
    let line = request(socket, &format!("upload {body}\n"))?;
    let answer: UploadAnswer =
        serde_json::from_str(&line).map_err(|e| exchange(format!("unreadable answer: {e}")))?;
    match answer.error {
        Some(e) => Err(exchange(e)),
        None => Ok(answer),
    }
}

/// Read the store of the agent listening on `socket` (see [`crate::store::read`]).
pub fn read(socket: &Path, request: &ReadRequest) -> Result<ReadAnswer, StatusError> {
    let exchange = |reason: String| StatusError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    let body = serde_json::to_string(request).map_err(|e| exchange(e.to_string()))?;
    let line = self::request(socket, &format!("query {body}\n"))?;
    let answer: ReadAnswer =
        serde_json::from_str(&line).map_err(|e| exchange(format!("unreadable answer: {e}")))?;
    match answer.error {
        Some(e) => Err(exchange(e)),
        None => Ok(answer),
    }
}

/// How long a client waits for the answer to a request it sent.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Send one request line and read the answer line. A failure after the whole
/// request was sent (a reset, an end of stream without an answer, the timeout)
/// is [`StatusError::Unanswered`]: the agent may have acted on it.
fn request(socket: &Path, text: &str) -> Result<String, StatusError> {
    let exchange = |reason: String| StatusError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    let unanswered = |reason: String| StatusError::Unanswered {
        path: socket.to_owned(),
        reason,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(StatusError::NotRunning(socket.to_owned()));
        }
        Err(e) => return Err(exchange(format!("cannot connect: {e}"))),
    };
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    stream
        .write_all(text.as_bytes())
        .map_err(|e| exchange(format!("cannot send the request: {e}")))?;
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(_) if line.ends_with('\n') => Ok(line),
        Ok(0) => Err(unanswered("the agent closed the connection".into())),
        Ok(_) => Err(unanswered(format!(
            "the agent closed the connection after {} bytes of its answer",
            line.len()
        ))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(unanswered(format!(
                "none within {} s",
                ANSWER_TIMEOUT.as_secs()
            )))
        }
        Err(e) => Err(unanswered(e.to_string())),
    }
}

/// A listening socket at `path` that appears there only once it listens and
/// is the owner's alone: bound at a temporary name beside it, restricted to
/// mode 0600, then renamed into place. A client that finds the path (a test or
/// script waiting for the agent) is never refused, and no one else can connect
/// in between.
fn bind_in_place(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    // No longer than `komlogd.sock`: a socket path has a length limit.
    let temporary = path.with_file_name(format!(".{}.s", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = tokio::net::UnixListener::bind(&temporary)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(listener)
}

/// Serve the control socket until `shutdown` turns true, then remove it.
/// A stale socket left by a killed agent is replaced.
pub async fn serve_control(
    path: PathBuf,
    boards: Boards,
    inbox: Inbox,
    started: std::time::Instant,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another agent answers on it", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = bind_in_place(&path)?;
    // Each connection's copy: a kept-open one ends when the agent stops.
    let stopping = shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let boards = boards.clone();
                let inbox = inbox.clone();
                let shutdown = stopping.clone();
                tokio::spawn(async move {
                    let _ = answer_control(stream, boards, inbox, started, shutdown).await;
                });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn answer_control(
    stream: tokio::net::UnixStream,
    boards: Boards,
    inbox: Inbox,
    started: std::time::Instant,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_SAMPLES_BYTES));
    let mut first = true;
    loop {
        // A kept-open connection may idle between requests (until the agent
        // stops); once a request starts, its line must arrive within
        // REQUEST_TIMEOUT.
        reader.get_mut().set_limit(MAX_SAMPLES_BYTES);
        if !first {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                next = tokio::time::timeout(KEEP_ALIVE_IDLE, reader.fill_buf()) => match next {
                    Ok(Ok([])) | Err(_) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                },
            }
        }
        first = false;
        let mut line = String::new();
        tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out")
            })??;
        let whole = line.ends_with('\n');
        let request = line.trim_end_matches(['\n', '\r']);
        let (answer, keep_open) =
            answer_request(request, whole, &boards, &inbox, started.elapsed()).await?;
        write.write_all(answer.as_bytes()).await?;
        write.write_all(b"\n").await?;
        // A line cut short (too long, or the end of the stream) leaves the
        // stream without a request boundary: close it.
        if !(keep_open && whole) {
            break;
        }
    }
    write.shutdown().await
}

/// The answer line to one request, and whether the connection stays open.
async fn answer_request(
    request: &str,
    whole: bool,
    boards: &Boards,
    inbox: &Inbox,
    uptime: Duration,
) -> std::io::Result<(String, bool)> {
    if !request.starts_with("samples ") && request.len() as u64 > MAX_CONTROL_BYTES {
        let shown: String = request.chars().take(40).collect();
        let error = format!("request {shown:?}… is longer than {MAX_CONTROL_BYTES} bytes");
        return Ok((serde_json::json!({ "error": error }).to_string(), false));
    }
    let answer = if request == "status" {
        // Counting the outbox reads the store.
        let boards = boards.clone();
        let report = tokio::task::spawn_blocking(move || boards.report(uptime))
            .await
            .map_err(std::io::Error::other)?;
        serde_json::to_string(&report).map_err(std::io::Error::other)?
    } else if let Some(body) = request.strip_prefix("upload ") {
        let answer = match serde_json::from_str::<UploadRequest>(body) {
            Ok(req) => {
                let inbox = inbox.clone();
                tokio::task::spawn_blocking(move || store_upload(&inbox, req))
                    .await
                    .unwrap_or_else(|e| UploadAnswer {
                        error: Some(format!("upload failed: {e}")),
                        ..UploadAnswer::default()
                    })
            }
            Err(e) => UploadAnswer {
                error: Some(format!("malformed upload request: {e}")),
                ..UploadAnswer::default()
            },
        };
        serde_json::to_string(&answer).map_err(std::io::Error::other)?
    } else if let Some(body) = request.strip_prefix("samples ") {
        let answer = if !whole && body.len() as u64 + 8 >= MAX_SAMPLES_BYTES {
            UploadAnswer {
                error: Some(format!(
                    "samples request longer than {MAX_SAMPLES_BYTES} bytes: send smaller batches"
                )),
                ..UploadAnswer::default()
            }
        } else {
            match serde_json::from_str::<Vec<UploadRequest>>(body) {
                Ok(batch) if batch.len() > MAX_BATCH_SAMPLES => UploadAnswer {
                    error: Some(format!(
                        "a samples request carries at most {MAX_BATCH_SAMPLES} samples, this one {}: send smaller batches",
                        batch.len()
                    )),
                    ..UploadAnswer::default()
                },
                Ok(batch) => {
                    let inbox = inbox.clone();
                    tokio::task::spawn_blocking(move || store_samples(&inbox, batch))
                        .await
                        .unwrap_or_else(|e| UploadAnswer {
                            error: Some(format!("upload failed: {e}")),
                            ..UploadAnswer::default()
                        })
                }
                Err(e) => UploadAnswer {
                    error: Some(format!(
                        "malformed samples request (a JSON array of {{uri, ts, datapoint | datasource}} expected): {e}"
                    )),
                    ..UploadAnswer::default()
                },
            }
        };
        let line = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
        return Ok((line, true));
    } else if let Some(body) = request.strip_prefix("query ") {
        let answer = match serde_json::from_str::<ReadRequest>(body) {
            Ok(req) => {
                let inbox = inbox.clone();
                tokio::task::spawn_blocking(move || inbox.read(req))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .unwrap_or_else(|e| ReadAnswer {
                        error: Some(format!("the agent could not read its store: {e}")),
                        ..ReadAnswer::default()
                    })
            }
            Err(e) => ReadAnswer {
                error: Some(format!("malformed query request: {e}")),
                ..ReadAnswer::default()
            },
        };
        serde_json::to_string(&answer).map_err(std::io::Error::other)?
    } else {
        let shown: String = request.chars().take(40).collect();
        serde_json::json!({ "error": format!("unknown request {shown:?}; known: status, upload, samples, query") })
            .to_string()
    };
    Ok((answer, false))
}

/// Turn an upload's JSON into a sample: exactly one of the two values.
fn to_sample(req: UploadRequest) -> Result<Sample, (String, i64)> {
    let value = match (req.datapoint, req.datasource) {
        (Some(v), None) => Value::Datapoint(v),
        (None, Some(t)) => Value::Datasource(t),
        _ => return Err((req.uri, req.ts)),
    };
    Ok(Sample {
        uri: req.uri,
        ts: req.ts,
        value,
    })
}

/// Why a sample with neither or both values is refused.
const ONE_VALUE: &str = "an upload needs exactly one of `datapoint` and `datasource`";

/// Ingest a `samples` batch as one upload; malformed samples are rejected,
/// the others go through the inbox together.
fn store_samples(inbox: &Inbox, batch: Vec<UploadRequest>) -> UploadAnswer {
    let mut refused = Vec::new();
    let mut samples = Vec::with_capacity(batch.len());
    for req in batch {
        match to_sample(req) {
            Ok(s) => samples.push(s),
            Err((uri, ts)) => refused.push(RefusedSample {
                uri,
                ts,
                reason: ONE_VALUE.into(),
            }),
        }
    }
    if samples.is_empty() {
        return UploadAnswer {
            rejected: refused,
            ..UploadAnswer::default()
        };
    }
    let mut answer = ingest(inbox, samples);
    refused.append(&mut answer.rejected);
    answer.rejected = refused;
    answer
}

fn store_upload(inbox: &Inbox, req: UploadRequest) -> UploadAnswer {
    match to_sample(req) {
        Ok(sample) => ingest(inbox, vec![sample]),
        Err(_) => UploadAnswer {
            error: Some(ONE_VALUE.into()),
            ..UploadAnswer::default()
        },
    }
}

fn ingest(inbox: &Inbox, samples: Vec<Sample>) -> UploadAnswer {
    match inbox.upload(samples) {
        Ok(receipt) => UploadAnswer {
            accepted: receipt.accepted,
            held: receipt.held,
            rejected: receipt
                .rejected
                .into_iter()
                .map(|r| RefusedSample {
                    uri: r.uri,
                    ts: r.ts,
                    reason: r.reason.to_string(),
                })
                .collect(),
            error: None,
        },
        Err(_) => UploadAnswer {
            error: Some("the agent could not store the sample (its log says why)".into()),
            ..UploadAnswer::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    /// A client polling for the socket's path without pause connects the
    /// moment it appears: it is never refused (the path appears only once the
    /// socket listens), and the socket is already the owner's alone.
    #[tokio::test]
    async fn the_socket_appears_listening_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        for round in 0..100 {
            let path = dir.path().join(format!("k{round}.sock"));
            let client = std::thread::spawn({
                let path = path.clone();
                move || {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        if let Ok(meta) = std::fs::symlink_metadata(&path) {
                            let mode = meta.permissions().mode() & 0o777;
                            let connected = std::os::unix::net::UnixStream::connect(&path);
                            return Some((mode, connected.map(drop).map_err(|e| e.to_string())));
                        }
                    }
                    None
                }
            });
            let listener = bind_in_place(&path).expect("bind");
            let (mode, connected) = client
                .join()
                .expect("client thread")
                .expect("the client saw the path within 5 s");
            assert_eq!(connected, Ok(()), "round {round}: the client was refused");
            assert_eq!(
                mode, 0o600,
                "round {round}: the path appeared with mode {mode:o}"
            );
            drop(listener);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary names left: {left:?}");
    }
}
