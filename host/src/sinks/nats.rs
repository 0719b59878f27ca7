//! The NATS sink (`type: nats`): each sample published to the subject
//! `<subject>.<uri>` (`komlog.host.cpu.user`; NATS subjects and uris share `.` as
//! the level separator, and a remote uri keeps its `user:`,
//! `komlog.alice:host.cpu`). The payload is the sample as JSON, `{"uri", "ts"
//! (µs), "kind", "value"}`, as the file and webhook sinks write it.
//!
//! **Owns:** the connection (async-nats; user and password from the URL) and two
//! ways of writing, by the block's `jetstream` key:
//!
//! * **core NATS** (no `jetstream`): a batch is published, then flushed (the server
//!   answers a PING after it read every message). Core NATS keeps nothing: a
//!   subscriber that is not connected misses the messages, and after a crash a
//!   batch is published again (counted in `resent`).
//! * **JetStream** (`jetstream: STREAM`): the stream is created when missing, with
//!   the subjects `<subject>.>`; every message is acknowledged by the stream before
//!   the batch counts as delivered. Each carries `Nats-Msg-Id: <uri>@<ts>#<value
//!   hash>`, so a batch published again after a crash or a cut connection is
//!   deduplicated by the server within the stream's duplicate window (2 minutes
//!   by default).
//!
//! Every failure (no connection, a flush or an acknowledgement not answered within
//! 30 s, a stream that cannot be created) is retried on a new connection.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};

use super::net_url::NetUrl;
use super::{BoxFuture, Sink, SinkError};
use crate::model::{Sample, Value};

/// How long connecting, or one batch and its acknowledgements, may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The default port of `nats://`.
pub const DEFAULT_PORT: u16 = 4222;

/// A live connection, with its JetStream context when the sink uses one.
struct Conn {
    client: async_nats::Client,
    jetstream: Option<jetstream::Context>,
}

/// Publishes batches to NATS, or to a JetStream stream.
pub struct NatsSink {
    url: Result<NetUrl, String>,
    prefix: String,
    stream: Option<String>,
    name: String,
    conn: Option<Conn>,
}

impl NatsSink {
    /// A sink publishing under `subject` at the server of `url` (`nats://…`),
    /// into the JetStream stream `stream` when given.
    pub fn new(url: &str, subject: &str, stream: Option<&str>, name: &str) -> NatsSink {
        NatsSink {
            url: NetUrl::parse(url, "nats", DEFAULT_PORT),
            prefix: subject.trim_end_matches('.').to_owned(),
            stream: stream.map(str::to_owned),
            name: name.to_owned(),
            conn: None,
        }
    }

    async fn conn(&mut self) -> Result<&mut Conn, SinkError> {
        if self.conn.is_none() {
            let url = self.url.clone().map_err(SinkError::Permanent)?;
            let mut options = async_nats::ConnectOptions::new()
                .name(format!("komlogd sink {}", self.name))
                .connection_timeout(TIMEOUT)
                .request_timeout(Some(TIMEOUT));
            if let Some(user) = &url.user {
                options = options
                    .user_and_password(user.clone(), url.password.clone().unwrap_or_default());
            }
            let client = options.connect(url.authority()).await.map_err(|e| {
                SinkError::Retryable(format!("nats: connecting to {}: {e}", url.authority()))
            })?;
            let jetstream = match &self.stream {
                None => None,
                Some(stream) => {
                    let js = jetstream::new(client.clone());
                    js.get_or_create_stream(jetstream::stream::Config {
                        name: stream.clone(),
                        subjects: vec![format!("{}.>", self.prefix)],
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| {
                        SinkError::Retryable(format!("nats: the JetStream stream {stream}: {e}"))
                    })?;
                    Some(js)
                }
            };
            self.conn = Some(Conn { client, jetstream });
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SinkError::Retryable("nats: no connection".into()))
    }

    async fn write(&mut self, batch: &[Sample]) -> Result<(), SinkError> {
        let prefix = self.prefix.clone();
        let conn = self.conn().await?;
        let message = |s: &Sample| {
            (
                subject(&prefix, &s.uri),
                bytes::Bytes::from(super::sample_json(s).to_string()),
            )
        };
        match &conn.jetstream {
            None => {
                for s in batch {
                    let (subject, payload) = message(s);
                    conn.client
                        .publish(subject, payload)
                        .await
                        .map_err(|e| SinkError::Retryable(format!("nats: publishing: {e}")))?;
                }
                conn.client
                    .flush()
                    .await
                    .map_err(|e| SinkError::Retryable(format!("nats: flushing: {e}")))
            }
            Some(js) => {
                let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(batch.len());
                for s in batch {
                    let (subject, payload) = message(s);
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(payload)
                        .message_id(message_id(s));
                    acks.push(js.send_publish(subject, publish).await.map_err(|e| {
                        SinkError::Retryable(format!("nats: publishing to JetStream: {e}"))
                    })?);
                }
                let total = acks.len();
                for (i, ack) in acks.into_iter().enumerate() {
                    ack.await.map_err(|e| {
                        SinkError::Retryable(format!(
                            "nats: {i} of {total} messages acknowledged by JetStream, then: {e}"
                        ))
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// `prefix.uri`.
pub fn subject(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        uri.to_owned()
    } else {
        format!("{prefix}.{uri}")
    }
}

/// `uri@ts#hash`: the same sample gives the same id, a new value at the same time another.
pub fn message_id(s: &Sample) -> String {
    // FNV-1a: stable across builds and runs, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match &s.value {
        Value::Datapoint(v) => {
            feed(b"d");
            feed(&v.to_bits().to_le_bytes());
        }
        Value::Datasource(t) => {
            feed(b"t");
            feed(t.as_bytes());
        }
    }
    format!("{}@{}#{hash:016x}", s.uri, s.ts)
}

impl Sink for NatsSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let result = match self.conn().await {
                Ok(conn) => conn
                    .client
                    .flush()
                    .await
                    .map_err(|e| SinkError::Retryable(format!("nats: flushing: {e}"))),
                Err(e) => Err(e),
            };
            if result.is_err() {
                self.conn = None;
            }
            result
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let what = "nats: the batch was not acknowledged";
            let result = super::within(TIMEOUT, what, self.write(batch)).await;
            if result.is_err() {
                // Start afresh: async-nats would otherwise buffer while it reconnects.
                self.conn = None;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_message_ids() {
        assert_eq!(subject("komlog", "host.cpu"), "komlog.host.cpu");
        assert_eq!(subject("", "alice:host.cpu"), "alice:host.cpu");
        let a = Sample {
            uri: "x".into(),
            ts: 5,
            value: Value::Datapoint(1.0),
        };
        let mut b = a.clone();
        assert_eq!(message_id(&a), message_id(&b));
        assert!(message_id(&a).starts_with("x@5#"));
        b.value = Value::Datapoint(2.0);
        assert_ne!(message_id(&a), message_id(&b));
        b.value = Value::Datasource("1".into());
        assert_ne!(message_id(&a), message_id(&b));
    }
}
