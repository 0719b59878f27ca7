//! The connection to the agent's control socket: `samples <json array>` lines
//! on one kept-open connection, one JSON answer line each.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// One sample as the agent's `samples` request reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct WireSample {
    pub uri: String,
    pub ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapoint: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
}

/// The agent's answer to a `samples` request.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Answer {
    #[serde(default)]
    pub accepted: usize,
    #[serde(default)]
    pub rejected: Vec<Refused>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A sample the agent refused.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Refused {
    pub uri: String,
    pub reason: String,
}

/// Why a batch did not reach the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Nothing listens on the socket (no agent, or a stopped one).
    #[error("no komlogd agent answers on {0}")]
    NotRunning(PathBuf),
    /// The exchange failed.
    #[error("{path}: {reason}")]
    Exchange {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The agent answered with an error for the whole batch.
    #[error("the agent refused the batch: {0}")]
    Refused(String),
}

/// A kept-open connection, reopened on demand.
pub(crate) struct Connection {
    path: PathBuf,
    io_timeout: Duration,
    stream: Option<(BufReader<UnixStream>, UnixStream)>,
}

impl Connection {
    pub fn new(path: PathBuf, io_timeout: Duration) -> Self {
        Connection {
            path,
            io_timeout,
            stream: None,
        }
    }

    fn connect(&self) -> Result<(BufReader<UnixStream>, UnixStream), SendError> {
        let stream = UnixStream::connect(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                SendError::NotRunning(self.path.clone())
            }
            _ => self.exchange(format!("cannot connect: {e}")),
        })?;
        let timeouts = stream
            .set_read_timeout(Some(self.io_timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.io_timeout)));
        let writer = timeouts
            .and_then(|()| stream.try_clone())
            .map_err(|e| self.exchange(e.to_string()))?;
        Ok((BufReader::new(stream), writer))
    }

    fn exchange(&self, reason: String) -> SendError {
        SendError::Exchange {
            path: self.path.clone(),
            reason,
        }
    }

    /// Open the connection unless it is open: a batch is not encoded for an
    /// agent that is not there.
    pub fn ready(&mut self) -> Result<(), SendError> {
        if self.stream.is_none() {
            self.stream = Some(self.connect()?);
        }
        Ok(())
    }

    /// Send one `samples` request line (`line` holds `samples […]\n`) and read
    /// its answer. A kept-open connection the agent closed meanwhile is
    /// reopened and the batch sent once more: a batch stored twice is held the
    /// second time (the same values at the same times), not counted twice.
    pub fn send(&mut self, line: &str) -> Result<Answer, SendError> {
        for _ in 0..2 {
            let reused = self.stream.is_some();
            let (reader, writer) = match self.stream.as_mut() {
                Some(s) => s,
                None => self.stream.insert(self.connect()?),
            };
            match exchange(reader, writer, line) {
                Ok(answer) => {
                    return match answer.error {
                        Some(e) => {
                            self.stream = None;
                            Err(SendError::Refused(e))
                        }
                        None => Ok(answer),
                    };
                }
                Err(reason) => {
                    self.stream = None;
                    if !reused {
                        return Err(self.exchange(reason));
                    }
                }
            }
        }
        Err(self.exchange("the agent closed the connection twice".into()))
    }
}

fn exchange(
    reader: &mut BufReader<UnixStream>,
    writer: &mut UnixStream,
    line: &str,
) -> Result<Answer, String> {
    writer
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut answer = String::new();
    match reader.read_line(&mut answer) {
        Ok(_) if answer.ends_with('\n') => {
            serde_json::from_str(&answer).map_err(|e| format!("unreadable answer: {e}"))
        }
        Ok(_) => Err("the agent closed the connection".into()),
        Err(e) => Err(format!("no answer: {e}")),
    }
}
