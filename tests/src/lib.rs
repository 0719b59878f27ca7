//! Shared helpers for the integration tests: where the real guest components are,
//! and throwaway agent directories with a komlogd.yaml.

use std::path::{Path, PathBuf};

use komlogd::agent::{Agent, AgentOptions};
use komlogd::config::Config;
use komlogd::model::{Sample, Value};

/// The directory holding the guests built from `examples/` by this crate's build script.
pub fn guests_dir() -> PathBuf {
    PathBuf::from(env!("KOMLOG_GUESTS_DIR"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("KOMLOG_REPO_ROOT"))
}

/// Path of a guest component by crate name (`threshold`, `wrong-world`, …).
pub fn guest(name: &str) -> PathBuf {
    let path = guests_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "guest {} was not built: {}",
        name,
        path.display()
    );
    path
}

/// The languages whose examples are built besides Rust (`examples/<lang>/`).
pub const OTHER_LANGUAGES: [&str; 3] = ["python", "js", "c"];

/// Path of an example built in another language: `lang` is `python`, `js` or
/// `c`, `name` is `summary` or `threshold`.
pub fn lang_guest(lang: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("KOMLOG_LANG_GUESTS_DIR"))
        .join(lang)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "the {lang} example {name} was not built: {} (see examples/{lang}/build.sh)",
        path.display()
    );
    path
}

/// Path of the example `name` in `lang`, Rust included (`rust`).
pub fn example_in(lang: &str, name: &str) -> PathBuf {
    if lang == "rust" {
        guest(name)
    } else {
        lang_guest(lang, name)
    }
}

/// A compiled-module cache shared by every test, so each guest compiles once per run.
pub fn shared_cache() -> PathBuf {
    repo_root().join("target").join("test-compiled-cache")
}

/// A throwaway agent directory with its komlogd.yaml.
pub struct AgentDir {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl AgentDir {
    /// A new directory whose komlogd.yaml is `yaml`, where `{guest:NAME}` is
    /// replaced by the path of that guest.
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = AgentDir { dir };
        agent.write_config(yaml);
        agent
    }

    /// Replace the configuration.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), expand(yaml)).expect("write komlogd.yaml");
    }

    /// Path of komlogd.yaml.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("komlogd.yaml")
    }

    /// Parse the configuration (panics with the errors if invalid).
    pub fn config(&self) -> Config {
        Config::load(&self.config_path()).unwrap_or_else(|e| panic!("config: {e}"))
    }

    /// Open an agent on it with the shared compiled cache.
    pub fn open(&self) -> Agent {
        Agent::open_with(
            &self.config(),
            &AgentOptions {
                cache_dir: Some(shared_cache()),
            },
        )
        .unwrap_or_else(|e| panic!("agent: {e}"))
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Replace `{guest:NAME}` placeholders by guest paths.
pub fn expand(yaml: &str) -> String {
    let mut out = String::new();
    let mut rest = yaml;
    while let Some(start) = rest.find("{guest:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 7..];
        let end = after.find('}').expect("unclosed {guest:");
        out.push_str(&guest(&after[..end]).display().to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A datapoint sample.
pub fn dp(uri: &str, ts: i64, v: f64) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datapoint(v),
    }
}

/// A datasource sample.
pub fn ds(uri: &str, ts: i64, text: &str) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datasource(text.into()),
    }
}
