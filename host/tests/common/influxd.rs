//! An `influxd` (InfluxDB 1.x, Debian's `influxdb` package) of a test's or a
//! bench's own: free ports, its data in a temporary directory, killed when
//! dropped. Shared by the InfluxDB sink's test and the sinks bench.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `influxd`.
pub struct Influxd {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Influxd {
    /// Start one and wait (at most 60 s) until it answers `/ping`; `None` when
    /// `influxd` is not on the `PATH`.
    pub fn start() -> Option<Influxd> {
        let path = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("influxd"))
            .find(|p| p.is_file())?;
        let dir = tempfile::tempdir().expect("tempdir");
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        let (port, rpc) = (free(), free());
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n"
        );
        let conf_path = dir.path().join("influxdb.conf");
        std::fs::write(&conf_path, conf).expect("write influxdb.conf");
        let child = Command::new(path)
            .arg("-config")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start influxd");
        let influx = Influxd {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while influx.http("GET", "/ping", "").0 != 204 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "influxd did not answer /ping"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(influx)
    }

    /// Create the database `name`.
    pub fn create_database(&self, name: &str) {
        let (code, body) = self.http("POST", &format!("/query?q=CREATE%20DATABASE%20{name}"), "");
        assert_eq!(code, 200, "CREATE DATABASE {name}: {body}");
    }

    /// One request on a connection of its own: (status, body); status 0 when it
    /// cannot connect.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        let req = format!(
            "{method} {path} HTTP/1.0\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }

    /// The JSON of a query's answer: what lies between the first `{` and the
    /// last `}` of its body (1.x may answer in chunks); `Null` when there is none.
    pub fn query(&self, db: &str, query: &str) -> serde_json::Value {
        let (_, body) = self.http("GET", &format!("/query?db={db}&epoch=u&q={query}"), "");
        match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
