//! The MQTT sink (`type: mqtt`): each sample published at QoS 1 to a topic of its
//! own, `<topic>/<uri with each `.` a `/`>` (`komlog/host/cpu/user` for
//! `host.cpu.user`; a remote uri keeps its `user:` in the first level,
//! `komlog/alice:host/cpu`), not retained. The payload is the sample as JSON,
//! `{"uri", "ts" (µs), "kind", "value"}`, as the file and webhook sinks write it.
//!
//! **Owns:** the MQTT 3.1.1 connection (rumqttc, clean session, the client id
//! `komlogd-<sink name>-<pid>`, user and password from the URL) and the write: a
//! batch is delivered when the broker has acknowledged (PUBACK) every message of
//! it. MQTT cannot dedupe, so after a crash or a cut connection a batch is
//! published again whole and subscribers may see a message twice (counted in
//! `resent` after a restart). Every failure — no connection, a refused CONNECT, a
//! connection the broker closes (as Mosquitto does with a message over its
//! `message_size_limit`), no PUBACK within 30 s — is retried on a new connection.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use super::net_url::NetUrl;
use super::{BoxFuture, Sink, SinkError};
use crate::model::Sample;

/// How long connecting, or one batch and its acknowledgements, may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Messages published and not yet acknowledged at once.
const INFLIGHT: u16 = 1000;
/// The largest message sent (MQTT's own limit).
const MAX_PACKET: usize = 268_435_455;
/// The default port of `mqtt://`.
pub const DEFAULT_PORT: u16 = 1883;

/// Publishes batches to an MQTT broker.
pub struct MqttSink {
    url: Result<NetUrl, String>,
    prefix: String,
    client_id: String,
    conn: Option<(AsyncClient, EventLoop)>,
}

impl MqttSink {
    /// A sink publishing under `topic` at the broker of `url` (`mqtt://…`).
    pub fn new(url: &str, topic: &str, name: &str) -> MqttSink {
        MqttSink {
            url: NetUrl::parse(url, "mqtt", DEFAULT_PORT),
            prefix: topic.trim_end_matches('/').to_owned(),
            client_id: format!("komlogd-{name}-{}", std::process::id()),
            conn: None,
        }
    }

    /// The topic of `uri`.
    pub fn topic(&self, uri: &str) -> String {
        topic(&self.prefix, uri)
    }

    /// The open connection, connecting (and waiting for CONNACK) when there is none.
    async fn conn(&mut self) -> Result<&mut (AsyncClient, EventLoop), SinkError> {
        if self.conn.is_none() {
            let url = self.url.clone().map_err(SinkError::Permanent)?;
            let mut options = MqttOptions::new(&self.client_id, url.host.clone(), url.port);
            options
                .set_keep_alive(Duration::from_secs(30))
                .set_clean_session(true)
                .set_max_packet_size(1 << 20, MAX_PACKET)
                .set_inflight(INFLIGHT)
                .set_request_channel_capacity(usize::from(INFLIGHT));
            if let Some(user) = &url.user {
                options.set_credentials(user, url.password.clone().unwrap_or_default());
            }
            let (client, mut events) = AsyncClient::new(options, usize::from(INFLIGHT));
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(SinkError::Retryable(format!(
                            "mqtt: connecting to {}: {e}",
                            url.authority()
                        )));
                    }
                }
            }
            self.conn = Some((client, events));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SinkError::Retryable("mqtt: no connection".into()))
    }

    async fn write(&mut self, batch: &[Sample]) -> Result<(), SinkError> {
        let messages: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|s| {
                (
                    self.topic(&s.uri),
                    super::sample_json(s).to_string().into_bytes(),
                )
            })
            .collect();
        let (client, events) = self.conn().await?;
        let publish = async {
            for (topic, payload) in messages {
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .map_err(|e| SinkError::Retryable(format!("mqtt: publishing: {e}")))?;
            }
            Ok::<(), SinkError>(())
        };
        let acknowledged = async {
            let mut acks = 0;
            while acks < batch.len() {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(SinkError::Retryable(format!(
                            "mqtt: {acks} of {} messages acknowledged, then: {e}",
                            batch.len()
                        )));
                    }
                }
            }
            Ok(())
        };
        tokio::try_join!(publish, acknowledged).map(|_| ())
    }
}

/// `prefix/uri` with the uri's levels as topic levels.
pub fn topic(prefix: &str, uri: &str) -> String {
    let levels = uri.replace('.', "/");
    if prefix.is_empty() {
        levels
    } else {
        format!("{prefix}/{levels}")
    }
}

impl Sink for MqttSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let result = self.conn().await.map(|_| ());
            if result.is_err() {
                self.conn = None;
            }
            result
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let what = "mqtt: not every message acknowledged";
            let result = super::within(TIMEOUT, what, self.write(batch)).await;
            if result.is_err() {
                // Queued requests and the session's state are unknown: start afresh.
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
    fn topics_follow_the_uri_levels() {
        assert_eq!(topic("komlog", "host.cpu.user"), "komlog/host/cpu/user");
        assert_eq!(topic("a/b", "alice:host.cpu"), "a/b/alice:host/cpu");
        assert_eq!(topic("", "x"), "x");
        let sink = MqttSink::new("mqtt://h", "komlog/", "m");
        assert_eq!(sink.topic("x.y"), "komlog/x/y");
    }
}
