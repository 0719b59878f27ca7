//! The message-broker sinks against the machine's brokers: Mosquitto
//! (127.0.0.1:1883) and NATS with JetStream (127.0.0.1:4222), each reached
//! through a TCP relay the test starts and stops. A subscriber of the test's own
//! (or the JetStream stream itself) is read back: exactly the matching samples
//! arrive, with their values and times, through an outage and a kill -9.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::sinks::{
    Agent, Relay, S, Val, distinct, feed_through_an_outage_and_a_kill,
    feed_through_an_outage_and_a_kill_of, mixed, now_us, skip, until_count,
};

/// A sample as the broker sinks' JSON payload carries it.
fn from_json(payload: &[u8]) -> S {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(payload)));
    let val = match v["kind"].as_str() {
        Some("datapoint") => Val::D(v["value"].as_f64().expect("a number")),
        Some("datasource") => Val::T(v["value"].as_str().expect("a text").to_owned()),
        other => panic!("kind {other:?} in {v}"),
    };
    (
        v["uri"].as_str().expect("uri").to_owned(),
        v["ts"].as_i64().expect("ts"),
        val,
    )
}

fn up(addr: &str) -> bool {
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

/// A QoS 1 subscriber to `filter` on 127.0.0.1:1883, collecting (topic, sample).
struct MqttSubscriber {
    got: Arc<Mutex<Vec<(String, S)>>>,
    _rt: tokio::runtime::Runtime,
}

impl MqttSubscriber {
    fn start(filter: &str) -> MqttSubscriber {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut options = MqttOptions::new(
            format!("komlogd-test-{}", std::process::id()),
            "127.0.0.1",
            1883,
        );
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut events) = AsyncClient::new(options, 100);
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let sink = got.clone();
        let filter = filter.to_owned();
        rt.spawn(async move {
            client
                .subscribe(filter, QoS::AtLeastOnce)
                .await
                .expect("subscribe");
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let sample = from_json(&p.payload);
                        sink.lock().unwrap().push((p.topic.clone(), sample));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        subscribed_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the subscription is acknowledged");
        MqttSubscriber { got, _rt: rt }
    }

    fn samples(&self) -> Vec<S> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }
}

#[test]
fn mqtt_gets_the_matching_samples_through_an_outage_and_a_kill() {
    if !up("127.0.0.1:1883") {
        return skip("no MQTT broker at 127.0.0.1:1883");
    }
    let prefix = format!("komlog_test_{}", std::process::id());
    let subscriber = MqttSubscriber::start(&format!("{prefix}/#"));
    // Nothing listens at the relay's port yet: the sink starts by retrying.
    let mut relay = Relay::new("127.0.0.1:1883");
    let base = now_us();
    let mut agent = Agent::start(&format!(
        "- sink:\n    name: mqtt\n    type: mqtt\n    url: mqtt://127.0.0.1:{}\n    topic: {prefix}\n    uris: [\"host.*\"]\n    batch: {{size: 50, age: 50ms}}\n",
        relay.port
    ));
    let (all, _) = mixed(base);
    agent.feed(&all);
    agent.sink_until("mqtt", "retrying", |s| s["retried"].as_u64() > Some(0));
    relay.start();
    // host.*, both kinds.
    let want: Vec<_> = all
        .iter()
        .filter(|(u, _, _)| u.starts_with("host.") && u != "host.cpu.user")
        .cloned()
        .collect();
    until_count("messages", want.len(), || subscriber.samples());
    let topics: Vec<String> = subscriber
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(
        topics,
        want.iter()
            .map(|(u, _, _)| format!("{prefix}/{}", u.replace('.', "/")))
            .collect::<Vec<_>>(),
        "one topic per uri, in the order stored"
    );
    assert_eq!(subscriber.samples(), want);

    // The broker goes away mid-stream and comes back; then a kill -9 mid-stream.
    let mut sent = want.clone();
    let (fed, retried_before_kill) = feed_through_an_outage_and_a_kill_of(
        &mut agent,
        Some(&mut relay),
        "host.net",
        base,
        Some("mqtt"),
    );
    sent.extend(fed);
    sent.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let got = until_count(
        "every sample after the outage and the kill",
        sent.len(),
        || distinct(&subscriber.samples()).0,
    );
    assert_eq!(got, sent, "every matching sample, nothing else");
    // MQTT cannot dedupe: a batch published again arrives twice. After the
    // restart those are counted in `resent`; a batch cut mid-way by the outage is
    // published again whole (its try counted in `retried`, by the agent before
    // the kill or the one after it).
    let status = agent.sink_until("mqtt", "caught up", |s| s["lag_samples"] == 0);
    let (_, doubled) = distinct(&subscriber.samples());
    let retried = retried_before_kill + status["retried"].as_u64().unwrap_or(0);
    let bound = status["resent"].as_u64().unwrap_or(0) + 50 * retried;
    assert!(
        doubled as u64 <= bound,
        "{doubled} doubled, at most {bound} ({retried_before_kill} retried before the kill): {status}"
    );
    agent.stop();
}

/// A blocking view of a JetStream stream on 127.0.0.1:4222.
struct Stream {
    rt: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
    name: String,
}

impl Stream {
    fn connect(name: &str) -> Stream {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The context starts a task of its own: make it inside the runtime.
        let js = rt.block_on(async {
            let client = async_nats::connect("127.0.0.1:4222")
                .await
                .expect("connect to NATS");
            async_nats::jetstream::new(client)
        });
        let stream = Stream {
            rt,
            js,
            name: name.to_owned(),
        };
        stream.delete();
        stream
    }

    fn delete(&self) {
        let _ = self.rt.block_on(self.js.delete_stream(&self.name));
    }

    /// Every message of the stream, in stream order, as (subject, sample).
    fn messages(&self) -> Vec<(String, S)> {
        self.rt.block_on(async {
            let Ok(mut stream) = self.js.get_stream(&self.name).await else {
                return Vec::new();
            };
            let Ok(info) = stream.info().await else {
                return Vec::new();
            };
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            let mut out = Vec::new();
            if info.state.messages == 0 {
                return out;
            }
            for seq in first..=last {
                if let Ok(m) = stream.get_raw_message(seq).await {
                    out.push((m.subject.to_string(), from_json(&m.payload)));
                }
            }
            out
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A core NATS subscriber to `subject`, collecting samples.
struct NatsSubscriber {
    got: Arc<Mutex<Vec<S>>>,
    _rt: tokio::runtime::Runtime,
}

impl NatsSubscriber {
    fn start(subject: &str) -> NatsSubscriber {
        use futures_util::StreamExt;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let subject = subject.to_owned();
        rt.block_on(async {
            let client = async_nats::connect("127.0.0.1:4222")
                .await
                .expect("connect");
            let mut sub = client.subscribe(subject).await.expect("subscribe");
            client.flush().await.expect("flush");
            tokio::spawn(async move {
                let _client = client;
                while let Some(m) = sub.next().await {
                    sink.lock().unwrap().push(from_json(&m.payload));
                }
            });
        });
        NatsSubscriber { got, _rt: rt }
    }
}

#[test]
fn nats_jetstream_gets_each_matching_sample_once_through_an_outage_and_a_kill() {
    if !up("127.0.0.1:4222") {
        return skip("no NATS server at 127.0.0.1:4222");
    }
    let pid = std::process::id();
    let (subject, core_subject) = (format!("komlog_js_{pid}"), format!("komlog_core_{pid}"));
    let stream = Stream::connect(&format!("KOMLOG_TEST_{pid}"));
    let core = NatsSubscriber::start(&format!("{core_subject}.>"));
    let mut relay = Relay::new("127.0.0.1:4222");
    let base = now_us();
    let mut agent = Agent::start(&format!(
        "- sink:\n    name: js\n    type: nats\n    url: nats://127.0.0.1:{port}\n    subject: {subject}\n    jetstream: {stream}\n    uris: [\"host.*\"]\n    batch: {{size: 50, age: 50ms}}\n\
         - sink:\n    name: core\n    type: nats\n    url: nats://127.0.0.1:4222\n    subject: {core_subject}\n    uris: [\"app.**\"]\n    kinds: [datapoint]\n    batch: {{size: 50, age: 50ms}}\n",
        port = relay.port,
        stream = stream.name,
    ));
    let (all, _) = mixed(base);
    agent.feed(&all);
    agent.sink_until("js", "retrying", |s| s["retried"].as_u64() > Some(0));
    relay.start();
    let want: Vec<_> = all
        .iter()
        .filter(|(u, _, _)| u.starts_with("host.") && u != "host.cpu.user")
        .cloned()
        .collect();
    let got = until_count("stream messages", want.len(), || stream.messages());
    assert_eq!(
        got.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        want.iter()
            .map(|(u, _, _)| format!("{subject}.{u}"))
            .collect::<Vec<_>>(),
        "a subject per uri"
    );
    assert_eq!(got.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), want);
    // The core NATS sink: app.** datapoints only, to a live subscriber.
    let core_want: Vec<_> = all
        .iter()
        .filter(|(u, _, v)| u.starts_with("app.") && matches!(v, Val::D(_)))
        .cloned()
        .collect();
    assert_eq!(
        until_count("core messages", core_want.len(), || core
            .got
            .lock()
            .unwrap()
            .clone()),
        core_want
    );

    // The server goes away mid-stream and comes back; then a kill -9 mid-stream.
    // Every message carries a Nats-Msg-Id: what is published again is dropped
    // by the stream as a duplicate, so each sample is there exactly once.
    let mut sent = want.clone();
    sent.extend(feed_through_an_outage_and_a_kill(
        &mut agent,
        Some(&mut relay),
        "host.net",
        base,
    ));
    until_count(
        "stream messages after the outage and the kill",
        sent.len(),
        || stream.messages(),
    );
    agent.sink_until("js", "caught up", |s| s["lag_samples"] == 0);
    let got: Vec<S> = stream.messages().into_iter().map(|(_, s)| s).collect();
    let (unique, doubled) = distinct(&got);
    sent.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert_eq!(unique, sent, "every matching sample");
    assert_eq!(doubled, 0, "nothing twice: the stream dedupes resends");
    agent.stop();
}
