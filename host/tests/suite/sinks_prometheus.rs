//! The Prometheus sinks against a real Prometheus (Debian's `prometheus`, which
//! `cargo xtask check-tools` installs), started by the test on a free port with
//! `--web.enable-remote-write-receiver` and a scrape job on the agent's
//! `/metrics`: the exporter's latest datapoints are scraped, and remote-written
//! datapoints are in Prometheus exactly once, with their times, through an outage
//! and a kill -9.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::sinks::{Agent, Relay, Val, feed_through_an_outage_and_a_kill, mixed, now_us, skip};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus of the test's own, scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Option<Prometheus> {
        let path = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: komlogd\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let child = Command::new(path)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while !prometheus.get("/-/ready").starts_with("HTTP/1.1 200") {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus did not get ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(prometheus)
    }

    fn get(&self, path: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The result of an instant query (`query` URL-encoded by the caller).
    fn query(&self, query: &str) -> serde_json::Value {
        let out = self.get(&format!("/api/v1/query?query={query}"));
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) => &body[a..=b],
            _ => return serde_json::Value::Null,
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        v["data"]["result"].clone()
    }

    /// The raw samples of `metric` over the last hour: (uri label, ms, value), by time.
    fn samples(&self, metric: &str) -> Vec<(String, i64, f64)> {
        let result = self.query(&format!("{metric}%5B1h%5D"));
        let mut out = Vec::new();
        for series in result.as_array().into_iter().flatten() {
            let uri = series["metric"]["uri"].as_str().unwrap_or("").to_owned();
            for pair in series["values"].as_array().into_iter().flatten() {
                let secs = pair[0].as_f64().unwrap_or(0.0);
                let value: f64 = pair[1]
                    .as_str()
                    .unwrap_or("nan")
                    .parse()
                    .unwrap_or(f64::NAN);
                out.push((uri.clone(), (secs * 1000.0).round() as i64, value));
            }
        }
        out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_the_exporter_and_takes_remote_writes_once_through_an_outage_and_a_kill() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let Some(prometheus) = Prometheus::start(&metrics) else {
        return skip(
            "prometheus is not installed (apt-get install prometheus; cargo xtask check-tools)",
        );
    };
    let mut relay = Relay::new(&format!("127.0.0.1:{}", prometheus.port));
    relay.start();
    let base = now_us();
    let mut agent = Agent::start(&format!(
        "- metrics:\n    listen: {metrics}\n\
         - sink:\n    name: exporter\n    type: prometheus_exporter\n    uris: [\"host.*\"]\n    batch: {{size: 50, age: 20ms}}\n\
         - sink:\n    name: rw\n    type: prometheus_remote_write\n    url: http://127.0.0.1:{}/api/v1/write\n    uris: [\"app.**\"]\n    batch: {{size: 50, age: 50ms}}\n",
        relay.port
    ));
    let (all, _) = mixed(base);
    agent.feed(&all);

    // The exporter: the newest datapoint of each host.* uri (not the datasource,
    // not host.cpu.user), on the agent's /metrics and then in Prometheus.
    let page = until("the exporter's gauges on /metrics", || {
        let page = http_get(&metrics, "/metrics");
        page.contains("host_mem{").then_some(page)
    });
    assert!(
        page.contains("# TYPE host_cpu gauge\nhost_cpu{uri=\"host.cpu\"} -1.5\n"),
        "{page}"
    );
    assert!(
        page.contains("host_mem{uri=\"host.mem\"} 1000000000.0\n"),
        "{page}"
    );
    assert!(
        !page.contains("host_log") && !page.contains("host_cpu_user"),
        "{page}"
    );
    let scraped = until("Prometheus scraped host_cpu", || {
        let r = prometheus.query("host_cpu");
        r[0]["value"][1].as_str().map(str::to_owned)
    });
    assert_eq!(scraped, "-1.5");
    let series = prometheus.query("host_cpu");
    assert_eq!(series[0]["metric"]["uri"], "host.cpu");
    assert_eq!(series[0]["metric"]["job"], "komlogd");

    // Remote write: app.requests, its time in ms.
    let want_first = vec![("app.requests".to_owned(), (base + 5) / 1000, 7.0)];
    let got = until("the remote-written app.requests", || {
        let s = prometheus.samples("app_requests");
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(got, want_first);

    // Prometheus goes away mid-stream and comes back; then a kill -9. One
    // datapoint per millisecond, since Prometheus keeps one a millisecond.
    let sent: Vec<_> =
        feed_through_an_outage_and_a_kill(&mut agent, Some(&mut relay), "app.net", base)
            .into_iter()
            .map(|(uri, ts, v)| match v {
                Val::D(x) => (uri, ts / 1000, x),
                Val::T(t) => panic!("a datasource {t:?}"),
            })
            .collect();
    let got = until("every remote-written app.net sample", || {
        let s = prometheus.samples("app_net");
        (s.len() >= sent.len()).then_some(s)
    });
    assert_eq!(got, sent, "each sample once, with its time and value");
    agent.stop();
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
