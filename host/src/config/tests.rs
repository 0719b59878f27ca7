//! Whole-file tests: each key's valid and invalid forms with the exact message and
//! line, the structure rules, the seed documentation's examples and external job files.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::Uri;

const DIR: &str = "/etc/komlogd";

/// Parse as `/etc/komlogd/komlogd.yaml`; panic with the errors if it fails.
fn ok(src: &str) -> Config {
    Config::parse(src, &Path::new(DIR).join("komlogd.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

/// Parse as `komlogd.yaml` and return the errors as displayed.
fn errs(src: &str) -> Vec<String> {
    match Config::parse(src, Path::new("komlogd.yaml")) {
        Ok(cfg) => panic!("expected errors, got {cfg:#?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// Parse as `komlogd.yaml` and return the warnings as displayed.
fn warns(src: &str) -> Vec<String> {
    let cfg = Config::parse(src, Path::new("komlogd.yaml")).unwrap_or_else(|e| panic!("{e}"));
    cfg.warnings.iter().map(ToString::to_string).collect()
}

fn dir(p: &str) -> PathBuf {
    Path::new(DIR).join(p)
}

// ---------------------------------------------------------------- structure

#[test]
fn empty_and_comment_only_files_are_empty_lists() {
    for src in ["", "\n\n", "# nothing here\n# at all\n", "---\n", "~\n"] {
        let cfg = ok(src);
        assert_eq!(cfg.path, dir("komlogd.yaml"));
        assert_eq!(cfg.dir, PathBuf::from(DIR));
        assert_eq!(cfg.username, None);
        assert_eq!(cfg.keyfile, None);
        assert_eq!(cfg.key_path(), dir("key.priv"));
        assert_eq!(cfg.logging, LoggingConfig::defaults(Path::new(DIR)));
        assert!(cfg.logging.rotation, "rotation is on by default");
        assert!(cfg.impulses.is_empty() && cfg.jobs.is_empty() && cfg.packages.is_empty());
        assert!(!cfg.allow_external_jobs);
        assert_eq!(cfg.server, None);
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.max_chain_depth, 8);
        assert!(cfg.warnings.is_empty());
    }
}

#[test]
fn top_level_must_be_a_list() {
    assert_eq!(
        errs("username: bob\nkeyfile: k\n"),
        [
            "komlogd.yaml:1: the top level must be a list of one-key entries, found a map: write each top-level key as a list item (`- username: alice`)"
        ]
    );
    assert_eq!(
        errs("# c\njust text\n"),
        [
            "komlogd.yaml:2: the top level must be a list of one-key entries (`- username: alice`), found \"just text\""
        ]
    );
}

#[test]
fn entries_must_be_one_key_maps() {
    assert_eq!(
        errs("- username: bob\n- keyfile\n- 42\n- [a, b]\n- {}\n-\n"),
        [
            "komlogd.yaml:2: each entry must be a one-key map such as `- username: alice`, found \"keyfile\"",
            "komlogd.yaml:3: each entry must be a one-key map such as `- username: alice`, found 42",
            "komlogd.yaml:4: each entry must be a one-key map such as `- username: alice`, found a list",
            "komlogd.yaml:5: each entry must be a one-key map such as `- username: alice`, found an empty map",
            "komlogd.yaml:6: each entry must be a one-key map such as `- username: alice`, found null",
        ]
    );
}

#[test]
fn misindented_block_is_explained() {
    assert_eq!(
        errs("- impulses:\n  enabled: yes\n  filename: a.wasm\n"),
        [
            "komlogd.yaml:1: entry has 3 keys (`impulses`, `enabled`, `filename`) but must have exactly one; if the others are settings of `impulses`, indent them further than `impulses`"
        ]
    );
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    assert_eq!(
        errs("- username: bob\n- job: [\n- keyfile: x\n"),
        ["komlogd.yaml:3:1: YAML syntax error: invalid indentation"]
    );
    assert_eq!(
        errs("- username: bob\n- keyfile: a: b\n"),
        ["komlogd.yaml:2:13: YAML syntax error: mapping values are not allowed in this context"]
    );
    assert_eq!(
        errs("- username: bob\n- server: {url: a, url: b}\n"),
        ["komlogd.yaml:2:20: YAML syntax error: duplicated key in mapping"]
    );
    assert_eq!(
        errs("- username: \"bob\n"),
        [
            "komlogd.yaml:1:13: YAML syntax error: while scanning a quoted scalar, found unexpected end of stream"
        ]
    );
}

#[test]
fn several_documents_are_refused() {
    assert_eq!(
        errs("- username: a\n---\n- username: b\n"),
        [
            "komlogd.yaml:3: found 2 YAML documents (separated by `---`); the file must hold a single list of `- key: value` entries"
        ]
    );
}

#[test]
fn all_errors_of_a_file_are_reported_in_line_order() {
    let e = errs(
        "- username: not valid\n- job:\n    uri: a\n    command: df -k | head\n    schedule: '61 * * * *'\n- max_chain_depth: 0\n",
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].starts_with("komlogd.yaml:1: username: invalid username"));
    assert!(e[1].starts_with("komlogd.yaml:4: job.command: found `|`"));
    assert!(
        e[2].starts_with("komlogd.yaml:5: job.schedule: invalid cron expression \"61 * * * *\"")
    );
    assert_eq!(
        e[3],
        "komlogd.yaml:6: max_chain_depth: 0 is out of range: expected 1 to 64"
    );
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    assert_eq!(
        errs("- username: bob\n\n- impluses:\n    filename: a.wasm\n- colour: blue\n"),
        [
            "komlogd.yaml:3: unknown key `impluses` at the top level; known keys: username, keyfile, server, logging, job, allow_external_jobs, external_job_file, impulses, package, limits, max_chain_depth, metrics, statsd, line_protocol, sink; did you mean `impulses`?",
            "komlogd.yaml:5: unknown key `colour` at the top level; known keys: username, keyfile, server, logging, job, allow_external_jobs, external_job_file, impulses, package, limits, max_chain_depth, metrics, statsd, line_protocol, sink",
        ]
    );
    // The singular is the usual slip: it must not drop the impulse silently.
    let e = errs("- username: bob\n- impulse:\n    filename: a.wasm\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("komlogd.yaml:2: unknown key `impulse` at the top level;")
            && e[0].ends_with("did you mean `impulses`?"),
        "{e:#?}"
    );
    assert_eq!(
        errs("- impulses:\n    filename: a.wasm\n    foo: 1\n    data_reqs:\n      past_cnt: 3\n"),
        [
            "komlogd.yaml:3: unknown key `foo` in impulses block; known keys: enabled, filename, name, uris, data_reqs, min_exec_delta, params, limits",
            "komlogd.yaml:5: unknown key `past_cnt` in impulses.data_reqs block; known keys: past_delta, past_count; did you mean `past_count`?",
        ]
    );
    // Every block kind refuses a key it does not know, naming the line.
    for (src, line, key, place) in [
        (
            "- impulses:\n    filename: a.wasm\n    limits: {timeot: 1s}\n",
            3,
            "timeot",
            "in impulses.limits block",
        ),
        (
            "- package:\n    install: p.wasm\n    granst: {dirs: [/proc]}\n",
            3,
            "granst",
            "in package block",
        ),
        (
            "- package:\n    install: p.wasm\n    grants:\n      dir: [/proc]\n",
            4,
            "dir",
            "in package.grants block",
        ),
        (
            "- package:\n    install: p.wasm\n    venv: isolated\n    limits: {memroy: 1MiB}\n",
            4,
            "memroy",
            "in package.limits block",
        ),
        (
            "- job:\n    uri: a\n    command: date\n    schedule: '@daily'\n    shell: bash\n",
            5,
            "shell",
            "in job block",
        ),
        (
            "- server:\n    url: http://h/\n    ca: c.pem\n",
            3,
            "ca",
            "in server block",
        ),
        (
            "- logging:\n    levl: debug\n",
            2,
            "levl",
            "in logging block",
        ),
        (
            "- limits:\n    timeout: 1s\n    quue: 1MiB\n",
            3,
            "quue",
            "in limits block",
        ),
        (
            "- metrics:\n    listen: 127.0.0.1:9108\n    port: 9\n",
            3,
            "port",
            "in metrics block",
        ),
    ] {
        let e = errs(src);
        assert_eq!(e.len(), 1, "{src}: {e:#?}");
        assert!(
            e[0].starts_with(&format!(
                "komlogd.yaml:{line}: unknown key `{key}` {place}; known keys: "
            )),
            "{src}: {e:#?}"
        );
    }
    assert_eq!(
        warns("- transfers:\n    filename: t.py\n"),
        [
            "komlogd.yaml:1: `transfers` blocks (Python transfer methods) are not supported and are ignored: rewrite the method as a WebAssembly impulse and declare it in an `- impulses:` block"
        ]
    );
}

// ---------------------------------------------------------------- username, keyfile

#[test]
fn username() {
    // Usernames compare case-insensitively: the agent keeps them lowercased, as the server does.
    let cfg = ok("- username: Alice.Smith-1\n");
    assert_eq!(
        cfg.username.map(|u| u.as_str().to_owned()).as_deref(),
        Some("alice.smith-1")
    );
    assert_eq!(
        errs("- username: bad user\n"),
        [
            "komlogd.yaml:1: username: invalid username \"bad user\": expected levels of [A-Za-z0-9_-] joined by '.', at most 256 characters"
        ]
    );
    assert_eq!(
        errs("- username:\n"),
        ["komlogd.yaml:1: username: expected a string, found null"]
    );
    assert_eq!(
        errs("- username: [a]\n"),
        ["komlogd.yaml:1: username: expected a string, found a list"]
    );
}

#[test]
fn duplicate_username_and_keyfile() {
    assert_eq!(
        errs("- username: a\n- keyfile: k1\n- username: b\n- keyfile: k2\n"),
        [
            "komlogd.yaml:3: More than one username found in configuration file. Keep only one.",
            "komlogd.yaml:4: More than one key found in configuration file. Keep only one.",
        ]
    );
}

#[test]
fn keyfile_is_relative_to_the_config_directory() {
    assert_eq!(
        ok("- keyfile: keys/agent.priv\n").keyfile,
        Some(dir("keys/agent.priv"))
    );
    assert_eq!(
        ok("- keyfile: /srv/k.priv\n").keyfile,
        Some(PathBuf::from("/srv/k.priv"))
    );
    assert_eq!(
        ok("- keyfile: /srv/k.priv\n").key_path(),
        PathBuf::from("/srv/k.priv")
    );
    assert_eq!(
        errs("- keyfile: ''\n"),
        ["komlogd.yaml:1: keyfile: must not be empty"]
    );
    assert_eq!(
        warns("- keyfile: ~/k.priv\n"),
        [
            "komlogd.yaml:1: keyfile: `~` is not expanded in \"~/k.priv\"; write the full path, or a path relative to the config file's directory"
        ]
    );
}

#[test]
fn relative_config_path_uses_the_working_directory() {
    let cfg = Config::parse("- keyfile: k.priv\n", Path::new("conf/komlogd.yaml")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(cfg.path, cwd.join("conf/komlogd.yaml"));
    assert_eq!(cfg.dir, cwd.join("conf"));
    assert_eq!(cfg.keyfile, Some(cwd.join("conf/k.priv")));
}

// ---------------------------------------------------------------- logging

#[test]
fn logging_defaults_block_from_the_seed_docs() {
    let cfg = ok(
        "- logging:\n    level: INFO\n    rotation: yes\n    max_bytes: 10000000\n    backup_count: 3\n    dirname: log\n    filename: komlogd.log\n",
    );
    assert_eq!(cfg.logging, LoggingConfig::defaults(Path::new(DIR)));
    assert_eq!(cfg.logging.file(), dir("log/komlogd.log"));
    assert!(cfg.warnings.is_empty());
}

#[test]
fn logging_values() {
    let cfg = ok(
        "- logging:\n    level: Warning\n    rotation: no\n    max_bytes: 10MB\n    backup_count: 0\n    dirname: /var/log/komlogd\n    filename: agent.log\n",
    );
    assert_eq!(
        cfg.logging,
        LoggingConfig {
            level: "warn".into(),
            rotation: false,
            max_bytes: 10_000_000,
            backup_count: 0,
            dir: PathBuf::from("/var/log/komlogd"),
            filename: "agent.log".into(),
            format: LogFormat::Text,
        }
    );
    assert_eq!(
        ok("- logging:\n    format: json\n").logging.format,
        LogFormat::Json
    );
    assert_eq!(
        ok("- logging:\n    format: TEXT\n").logging.format,
        LogFormat::Text
    );
    assert_eq!(
        ok("- logging:\n    level: CRITICAL\n").logging.level,
        "error"
    );
    assert_eq!(ok("- logging:\n    level: trace\n").logging.level, "trace");
    assert_eq!(
        ok("- logging:\n    max_bytes: 64MiB\n").logging.max_bytes,
        64 << 20
    );
    assert_eq!(
        ok("- logging:\n    dirname: logs/k\n").logging.dir,
        dir("logs/k")
    );
    assert_eq!(
        ok("- logging:\n").logging,
        LoggingConfig::defaults(Path::new(DIR))
    );
}

#[test]
fn logging_errors() {
    assert_eq!(
        errs(
            "- logging:\n    level: loud\n    rotation: sometimes\n    max_bytes: lots\n    backup_count: -1\n    filename: logs/k.log\n"
        ),
        [
            "komlogd.yaml:2: logging.level: expected one of trace, debug, info, warn, error (or warning, critical), found \"loud\"",
            "komlogd.yaml:3: logging.rotation: expected a boolean (yes/no, true/false, on/off), found \"sometimes\"",
            "komlogd.yaml:4: logging.max_bytes: invalid size \"lots\": expected bytes or a number with KiB, MiB, GiB (or KB, MB, GB), e.g. 64MiB",
            "komlogd.yaml:5: logging.backup_count: expected a non-negative integer, found -1",
            "komlogd.yaml:6: logging.filename: \"logs/k.log\" must be a file name only; put the directory in logging.dirname",
        ]
    );
    assert_eq!(
        errs("- logging: verbose\n"),
        ["komlogd.yaml:1: logging: expected a map of settings, found \"verbose\""]
    );
    assert_eq!(
        errs("- logging:\n    level: info\n- username: a\n- logging:\n    level: debug\n"),
        ["komlogd.yaml:4: More than one logging block found (lines 1 and 4). Keep only one."]
    );
    assert_eq!(
        errs("- logging:\n    level: info\n    format: '%(message)s'\n"),
        ["komlogd.yaml:3: logging.format: expected text or json, found \"%(message)s\""]
    );
}

// ---------------------------------------------------------------- booleans

#[test]
fn yaml_1_1_booleans_are_accepted() {
    for (text, value) in [
        ("yes", true),
        ("Yes", true),
        ("ON", true),
        ("true", true),
        ("True", true),
        ("'yes'", true),
        ("no", false),
        ("No", false),
        ("off", false),
        ("FALSE", false),
    ] {
        let cfg = ok(&format!(
            "- impulses:\n    enabled: {text}\n    filename: a.wasm\n"
        ));
        assert_eq!(cfg.impulses[0].enabled, value, "{text}");
    }
    assert_eq!(
        errs("- impulses:\n    enabled: 1\n    filename: a.wasm\n"),
        [
            "komlogd.yaml:2: impulses.enabled: expected a boolean (yes/no, true/false, on/off), found 1"
        ]
    );
}

// ---------------------------------------------------------------- impulses

#[test]
fn impulses_block_from_the_seed_docs() {
    let cfg = ok("- impulses:\n    enabled: yes\n    filename: impulses.wasm\n");
    assert_eq!(
        cfg.impulses,
        [ImpulseConfig {
            name: "impulses".into(),
            line: 1,
            enabled: true,
            filename: dir("impulses.wasm"),
            uris: None,
            data_reqs: None,
            min_exec_delta_us: None,
            params: vec![],
            limits: Limits::default(),
        }]
    );
}

#[test]
fn impulses_every_key() {
    let cfg = ok(r#"
- impulses:
    enabled: no
    filename: /opt/imp/stats.wasm
    name: cpu-stats.v2
    uris: [host.cpu, 'Bob:host.load']
    data_reqs: {past_delta: 1h 30min, past_count: 10}
    min_exec_delta: 250ms
    params:
      threshold: 90
      ratio: 0.50
      label: hot
      strict: true
      extra: null
      hosts: [a, 2]
      map: {k: v, n: 1.5}
    limits: {timeout: 2s, memory: 64MiB, fuel: 1e9}
"#);
    let imp = &cfg.impulses[0];
    assert_eq!(imp.line, 2);
    assert!(!imp.enabled);
    assert_eq!(imp.filename, PathBuf::from("/opt/imp/stats.wasm"));
    assert_eq!(imp.name, "cpu-stats.v2");
    assert_eq!(
        imp.uris,
        Some(vec![
            Uri::parse("host.cpu").unwrap(),
            Uri::parse("Bob:host.load").unwrap()
        ])
    );
    assert_eq!(
        imp.data_reqs,
        Some(DataReqs {
            past_delta_us: Some(5_400_000_000),
            past_count: Some(10)
        })
    );
    assert_eq!(imp.min_exec_delta_us, Some(250_000));
    let params: Vec<(&str, &str)> = imp
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("threshold", "90"),
            ("ratio", "0.50"),
            ("label", "hot"),
            ("strict", "true"),
            ("extra", "null"),
            ("hosts", r#"["a",2]"#),
            ("map", r#"{"k":"v","n":1.5}"#),
        ]
    );
    assert_eq!(
        imp.limits,
        Limits {
            timeout_us: Some(2_000_000),
            memory_bytes: Some(64 << 20),
            fuel: Some(1_000_000_000),
            disable_after: None,
            queue_bytes: None,
            outputs: None,
        }
    );
    // A single uri may be written without a list.
    let cfg = ok("- impulses:\n    filename: a.wasm\n    uris: host.cpu\n");
    assert_eq!(
        cfg.impulses[0].uris,
        Some(vec![Uri::parse("host.cpu").unwrap()])
    );
}

#[test]
fn impulses_errors() {
    assert_eq!(
        errs(
            r#"- username: bob
- impulses:
    filename: a.wasm
    uris: [ok.uri, 'bad uri', 'a:b:c']
    data_reqs:
      past_delta: soon
      past_count: ten
    min_exec_delta: 5
    name: 'my impulse'
    limits: {timeout: 0s, memory: lots, fuel: -1, queue: 0, outputs: many}
    params: [1, 2]
"#
        ),
        [
            "komlogd.yaml:4: impulses.uris: invalid uri \"bad uri\": expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'",
            "komlogd.yaml:4: impulses.uris: invalid uri \"a:b:c\": expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'",
            "komlogd.yaml:6: impulses.data_reqs.past_delta: invalid duration \"soon\": expected a number and a unit, e.g. 30s, 5min, 1h, 2d, 250ms",
            "komlogd.yaml:7: impulses.data_reqs.past_count: expected a non-negative integer, found \"ten\"",
            "komlogd.yaml:8: impulses.min_exec_delta: invalid duration \"5\": expected a number and a unit, e.g. 30s, 5min, 1h, 2d, 250ms",
            "komlogd.yaml:9: impulses.name: \"my impulse\" is not a valid name: use letters, digits, `_`, `.` and `-` only",
            "komlogd.yaml:10: impulses.limits.timeout: must be greater than zero",
            "komlogd.yaml:10: impulses.limits.memory: invalid size \"lots\": expected bytes or a number with KiB, MiB, GiB (or KB, MB, GB), e.g. 64MiB",
            "komlogd.yaml:10: impulses.limits.fuel: expected a non-negative integer, found -1",
            "komlogd.yaml:10: impulses.limits.queue: must be greater than zero",
            "komlogd.yaml:10: impulses.limits.outputs: expected a non-negative integer, found \"many\"",
            "komlogd.yaml:11: impulses.params: expected a map of names to values, found a list",
        ]
    );
    assert_eq!(
        errs("- impulses:\n    enabled: yes\n"),
        ["komlogd.yaml:1: impulses: missing required key `filename` (the .wasm component to run)"]
    );
    assert_eq!(
        errs("- impulses:\n"),
        ["komlogd.yaml:1: impulses: missing required key `filename` (the .wasm component to run)"]
    );
    assert_eq!(
        errs("- impulses:\n    filename: /home/komlog/.komlogd/impulses/impulse_methods.py\n"),
        [
            "komlogd.yaml:2: impulses.filename: \"/home/komlog/.komlogd/impulses/impulse_methods.py\" is a Python file; impulses are WebAssembly components now: build the impulse as a .wasm component and name that file"
        ]
    );
    assert_eq!(
        errs("- impulses:\n    filename: methods.py\n"),
        [
            "komlogd.yaml:2: impulses.filename: \"methods.py\" is a Python file; impulses are WebAssembly components now: build the impulse as a .wasm component and name that file"
        ]
    );
    assert_eq!(
        errs("- impulses:\n    filename: a.wasm\n    data_reqs: {past_count: 4294967296}\n"),
        [
            "komlogd.yaml:3: impulses.data_reqs.past_count: 4294967296 is too large (at most 4294967295)"
        ]
    );
    assert_eq!(
        errs("- impulses: a.wasm\n"),
        ["komlogd.yaml:1: impulses: expected a map of settings, found \"a.wasm\""]
    );
}

#[test]
fn impulse_names_default_to_the_stem_and_are_made_unique() {
    let cfg = ok(r#"
- impulses: {filename: stats.wasm}
- impulses: {filename: other/stats.wasm, enabled: no}
- impulses: {filename: more/stats.wasm}
- impulses: {filename: alarm.wasm, name: stats}
- impulses: {filename: x.wasm, name: alarm}
- impulses: {filename: my alarm.wasm}
"#);
    let names: Vec<&str> = cfg.impulses.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["stats", "stats", "stats#2", "stats#3", "alarm", "my_alarm"]
    );
    assert_eq!(
        cfg.warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "/etc/komlogd/komlogd.yaml:5: impulses.name: `stats` is already used by the impulses block at line 2; this one is called `stats#3`"
        ]
    );
}

#[test]
fn a_uri_repeated_in_an_impulse_is_subscribed_once_with_a_warning() {
    let src = r#"
- impulses:
    filename: a.wasm
    uris: [e.a, e.a, e.b]
- impulses:
    filename: b.wasm
    uris:
      - e.a
      - ME:e.a
      - bob:x
      - Bob:x
      - e.b
      - e.a
- username: me
"#;
    let cfg = Config::parse(src, Path::new("komlogd.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let uris = |i: usize| -> Vec<String> {
        cfg.impulses[i]
            .uris
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(uris(0), ["e.a", "e.b"]);
    assert_eq!(uris(1), ["e.a", "bob:x", "e.b"]);
    let note = "the repeat is ignored (an impulse subscribes to each uri once)";
    assert_eq!(
        warns(src),
        [
            format!("komlogd.yaml:4: impulses.uris: `e.a` is listed more than once; {note}"),
            // Owners compare case-insensitively and are shown lowercased.
            format!(
                "komlogd.yaml:9: impulses.uris: `me:e.a` is the same uri as `e.a` (line 8); {note}"
            ),
            format!("komlogd.yaml:11: impulses.uris: `bob:x` is listed more than once; {note}"),
            format!("komlogd.yaml:13: impulses.uris: `e.a` is listed more than once; {note}"),
        ]
    );
}

// ---------------------------------------------------------------- jobs

#[test]
fn job_from_the_seed_docs() {
    for (schedule, expected) in [
        ("['0 * * * *']", vec!["0 * * * *"]),
        (
            "['0 * * * *', '*/5 23 * * *']",
            vec!["0 * * * *", "*/5 23 * * *"],
        ),
        ("'@hourly'", vec!["@hourly"]),
    ] {
        let cfg = ok(&format!(
            "- job:\n    uri: system.info.disk\n    command: df -k\n    enabled: yes\n    schedule: {schedule}\n"
        ));
        assert_eq!(
            cfg.jobs,
            [JobConfig {
                line: 1,
                file: PathBuf::from("/etc/komlogd/komlogd.yaml"),
                uri: "system.info.disk".into(),
                command: "df -k".into(),
                argv: vec!["df".into(), "-k".into()],
                enabled: true,
                schedules: expected.into_iter().map(String::from).collect(),
                timeout_us: None,
                supplies: Vec::new(),
            }]
        );
    }
}

#[test]
fn job_options() {
    let cfg = ok(
        "- job:\n    uri: system.memory\n    command: sh -c 'free -m | head -2'\n    enabled: no\n    schedule: '*/10 * * * *'\n    timeout: 30s\n",
    );
    let job = &cfg.jobs[0];
    assert_eq!(job.argv, ["sh", "-c", "free -m | head -2"]);
    assert!(!job.enabled);
    assert_eq!(job.schedules, ["*/10 * * * *"]);
    assert_eq!(job.timeout_us, Some(30_000_000));
    assert!(job.supplies.is_empty());
    let cfg = ok(
        "- job:\n    uri: host.disk\n    command: df -k\n    schedule: '@hourly'\n    supplies: [host.disk.used, host.disk.free, host.disk.used]\n",
    );
    assert_eq!(cfg.jobs[0].supplies, ["host.disk.free", "host.disk.used"]);
    let cfg = ok(
        "- job:\n    uri: host.disk\n    command: df -k\n    schedule: '@hourly'\n    supplies: host.disk.used\n",
    );
    assert_eq!(cfg.jobs[0].supplies, ["host.disk.used"]);
}

#[test]
fn job_cron_expressions() {
    for expr in [
        "*/10 * * * *",
        "1-10/2 * * * *",
        "0 0 * * 0",
        "0 0 * * 7",
        "0 9 * * MON-FRI",
        "@hourly",
    ] {
        let cfg = ok(&format!(
            "- job:\n    uri: a\n    command: date\n    schedule: '{expr}'\n"
        ));
        assert_eq!(cfg.jobs[0].schedules, [expr]);
    }
    for expr in ["61 * * * *", "* * *", "abc"] {
        let e = errs(&format!(
            "- job:\n    uri: a\n    command: date\n    schedule: ['0 * * * *', '{expr}']\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        let prefix = format!("komlogd.yaml:4: job.schedule: invalid cron expression {expr:?} (");
        assert!(e[0].starts_with(&prefix), "{}", e[0]);
        assert!(
            e[0].ends_with("); expected 5 fields \"minute hour day-of-month month day-of-week\" (e.g. '*/5 * * * *', Sunday is 0 or 7) or @hourly, @daily, @weekly, @monthly, @yearly"),
            "{}",
            e[0]
        );
    }
    assert_eq!(
        errs("- job:\n    uri: a\n    command: date\n    schedule: []\n"),
        ["komlogd.yaml:4: job.schedule: give at least one cron expression such as '*/5 * * * *'"]
    );
}

#[test]
fn job_commands_run_without_a_shell() {
    let no_shell = "but the command runs without a shell: pipes and redirections are not supported; put them in a script and run the script";
    assert_eq!(
        errs("- job:\n    uri: a\n    command: df -k | head\n    schedule: '@hourly'\n"),
        [format!(
            "komlogd.yaml:3: job.command: found `|` in \"df -k | head\", {no_shell}"
        )]
    );
    assert_eq!(
        errs("- job:\n    uri: a\n    command: echo a > f\n    schedule: '@hourly'\n"),
        [format!(
            "komlogd.yaml:3: job.command: found `>` in \"echo a > f\", {no_shell}"
        )]
    );
    assert_eq!(
        warns("- job:\n    uri: a\n    command: echo $HOME\n    schedule: '@hourly'\n"),
        [
            "komlogd.yaml:3: job.command: `$` in \"echo $HOME\" is passed to the program as it is: the command runs without a shell, so variables are not expanded; put the command in a script"
        ]
    );
}

#[test]
fn job_errors() {
    assert_eq!(
        errs("- job:\n    enabled: yes\n"),
        [
            "komlogd.yaml:1: job: missing required key `uri` (the uri the output is sent to)",
            "komlogd.yaml:1: job: missing required key `command` (the program to run and its arguments)",
            "komlogd.yaml:1: job: missing required key `schedule` (one or more cron expressions such as '*/5 * * * *')",
        ]
    );
    assert_eq!(
        errs("- job:\n    uri: bob:system.disk\n    command: df\n    schedule: '@daily'\n"),
        [
            "komlogd.yaml:2: job.uri: \"bob:system.disk\" names an owner; a job writes to the agent's own uris: drop the `bob:` prefix"
        ]
    );
    assert_eq!(
        errs(
            "- job:\n    uri: system..disk\n    command: df\n    schedule: '@daily'\n    timeout: forever\n    enabled: maybe\n"
        ),
        [
            "komlogd.yaml:2: job.uri: invalid uri \"system..disk\": expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'",
            "komlogd.yaml:5: job.timeout: invalid duration \"forever\": expected a number and a unit, e.g. 30s, 5min, 1h, 2d, 250ms",
            "komlogd.yaml:6: job.enabled: expected a boolean (yes/no, true/false, on/off), found \"maybe\"",
        ]
    );
    assert_eq!(
        errs(
            "- job:\n    uri: a\n    command: df\n    schedule: '@daily'\n    supplies:\n      - bob:a.x\n      - a..b\n"
        ),
        [
            "komlogd.yaml:6: job.supplies: \"bob:a.x\" names an owner; a datasource supplies the agent's own uris",
            "komlogd.yaml:7: job.supplies: invalid uri \"a..b\": expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'",
        ]
    );
    assert_eq!(
        errs("- job:\n    uri: a\n    command: \"echo 'open\"\n    schedule: '@daily'\n"),
        [
            "komlogd.yaml:3: job.command: cannot split \"echo 'open\" into arguments: missing closing quote (quote with '…' or \"…\" and close every quote)"
        ]
    );
    assert_eq!(
        errs("- job:\n    uri: a\n    command: date\n    schedule: '@daily'\n    shell: bash\n"),
        [
            "komlogd.yaml:5: unknown key `shell` in job block; known keys: uri, command, enabled, schedule, timeout, supplies"
        ]
    );
}

// ---------------------------------------------------------------- external jobs

#[test]
fn allow_external_jobs_counts_only_once() {
    let cfg = ok(
        "- allow_external_jobs: yes\n- external_job_file: jobs.yaml\n- external_job_file: /abs/more.yaml\n",
    );
    assert!(cfg.allow_external_jobs);
    assert_eq!(
        cfg.external_job_files,
        [dir("jobs.yaml"), PathBuf::from("/abs/more.yaml")]
    );
    assert!(cfg.warnings.is_empty());

    let src =
        "- allow_external_jobs: yes\n- allow_external_jobs: yes\n- external_job_file: jobs.yaml\n";
    let cfg = Config::parse(src, Path::new("komlogd.yaml")).unwrap();
    assert!(!cfg.allow_external_jobs);
    assert_eq!(
        warns(src),
        [
            "komlogd.yaml:2: allow_external_jobs option found more than once, ignoring.",
            "komlogd.yaml:3: external_job_file is ignored because allow_external_jobs is not enabled: add `- allow_external_jobs: yes` once to read it",
        ]
    );
    assert!(!ok("- allow_external_jobs: no\n").allow_external_jobs);
    assert_eq!(
        errs("- external_job_file: [a, b]\n"),
        ["komlogd.yaml:1: external_job_file: expected a string, found a list"]
    );
    assert_eq!(
        errs("- allow_external_jobs: sure\n"),
        [
            "komlogd.yaml:1: allow_external_jobs: expected a boolean (yes/no, true/false, on/off), found \"sure\""
        ]
    );
}

#[test]
fn external_job_files_load_jobs_only_and_report_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(
        root.join("good.yaml"),
        "- username: ignored\n- job:\n    uri: ext.one\n    command: uptime\n    schedule: '* * * * *'\n- job:\n    uri: ext.two\n    command: date\n    schedule: ['@daily']\n",
    )
    .unwrap();
    std::fs::write(
        root.join("bad.yaml"),
        "- job:\n    uri: ext.bad\n    command: uptime | cut -d, -f1\n    schedule: '* * * * *'\n- job:\n    uri: ext.fine\n    command: date\n    schedule: '@daily'\n",
    )
    .unwrap();
    std::fs::write(root.join("broken.yaml"), "- job: [\n").unwrap();
    let main = "- allow_external_jobs: yes\n- external_job_file: good.yaml\n- external_job_file: bad.yaml\n- external_job_file: missing.yaml\n- external_job_file: broken.yaml\n";
    std::fs::write(root.join("komlogd.yaml"), main).unwrap();
    let cfg = Config::load(&root.join("komlogd.yaml")).unwrap();

    let found = read_external_jobs(&cfg);
    let uris: Vec<&str> = found.jobs.iter().map(|j| j.uri.as_str()).collect();
    assert_eq!(uris, ["ext.one", "ext.two"]);
    assert_eq!(found.jobs[0].file, root.join("good.yaml"));
    assert_eq!(found.jobs[1].line, 6);
    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    let bad = root.join("bad.yaml");
    assert_eq!(
        errors,
        [
            format!(
                "{}:3: job.command: found `|` in \"uptime | cut -d, -f1\", but the command runs without a shell: pipes and redirections are not supported; put them in a script and run the script",
                bad.display()
            ),
            format!(
                "{}: external job file not found",
                root.join("missing.yaml").display()
            ),
            format!(
                "{}:2:1: YAML syntax error: while parsing a node, did not find expected node content",
                root.join("broken.yaml").display()
            ),
        ]
    );
    let warnings: Vec<String> = found.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "{}:1: `username` ignored: only `job` entries are read from an external job file",
            root.join("good.yaml").display()
        )]
    );
    let (jobs, errors) = load_external_jobs(&cfg);
    assert_eq!((jobs.len(), errors.len()), (2, 3));

    // An unknown entry or job key is an error too: the file contributes no job.
    std::fs::write(
        root.join("typo.yaml"),
        "- jobs:\n    uri: ext.typo\n- job:\n    uri: ext.three\n    command: date\n    schedule: '@daily'\n    timout: 5s\n",
    )
    .unwrap();
    std::fs::write(
        root.join("komlogd.yaml"),
        "- allow_external_jobs: yes\n- external_job_file: typo.yaml\n",
    )
    .unwrap();
    let cfg = Config::load(&root.join("komlogd.yaml")).unwrap();
    let found = read_external_jobs(&cfg);
    assert!(found.jobs.is_empty());
    let typo = root.join("typo.yaml");
    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            format!(
                "{}:1: unknown key `jobs` in an external job file; known keys: job; did you mean `job`?",
                typo.display()
            ),
            format!(
                "{}:7: unknown key `timout` in job block; known keys: uri, command, enabled, schedule, timeout, supplies; did you mean `timeout`?",
                typo.display()
            ),
        ]
    );

    // Not read unless allow_external_jobs is set exactly once.
    std::fs::write(
        root.join("komlogd.yaml"),
        main.replace("- allow_external_jobs: yes\n", ""),
    )
    .unwrap();
    let cfg = Config::load(&root.join("komlogd.yaml")).unwrap();
    assert_eq!(load_external_jobs(&cfg), (vec![], vec![]));
    let twice = format!("- allow_external_jobs: yes\n{main}");
    std::fs::write(root.join("komlogd.yaml"), twice).unwrap();
    let cfg = Config::load(&root.join("komlogd.yaml")).unwrap();
    assert_eq!(load_external_jobs(&cfg), (vec![], vec![]));
}

// ---------------------------------------------------------------- packages

#[test]
fn packages() {
    let cfg = ok(r#"
- package:
    install: packages/linux.wasm
    venv: isolated
    params: {interval: 5min}
    limits: {memory: 128MiB}
    grants:
      dirs: [/proc, data]
      env: [HOSTNAME, _X1]
    refresh: 1h
- package:
    install: /opt/p.wasm
    enabled: no
    venv: unique
- package:
    install: q.wasm
    venv: shared-pool
- package:
    install: r.wasm
    venv:
"#);
    let p = &cfg.packages;
    assert_eq!(
        p[0],
        PackageConfig {
            line: 2,
            install: dir("packages/linux.wasm"),
            enabled: true,
            venv: Venv::Isolated,
            params: vec![("interval".into(), "5min".into())],
            limits: Limits {
                timeout_us: None,
                memory_bytes: Some(128 << 20),
                fuel: None,
                disable_after: None,
                queue_bytes: None,
                outputs: None,
            },
            grants: Grants {
                dirs: vec![PathBuf::from("/proc"), dir("data")],
                env: vec!["HOSTNAME".into(), "_X1".into()],
            },
            refresh_us: Some(3_600_000_000),
        }
    );
    assert!(!p[1].enabled);
    assert_eq!(p[1].venv, Venv::Isolated);
    assert_eq!(p[2].venv, Venv::Named("shared-pool".into()));
    assert_eq!(p[3].venv, Venv::Default);
    assert_eq!(p[3].grants, Grants::default());
}

#[test]
fn pip_style_packages_are_refused() {
    let tail = "; packages are WebAssembly components now: give the path of the package's .wasm file, relative to the config file's directory";
    assert_eq!(
        errs(
            "- package:\n    install: --upgrade SomePackage\n    enabled: yes\n    venv: my_virtualenv\n"
        ),
        [format!(
            "komlogd.yaml:2: package.install: \"--upgrade SomePackage\" looks like a pip requirement (it has a `--` option){tail}"
        )]
    );
    assert_eq!(
        errs("- package:\n    install: kpack_linux==0.2\n"),
        [format!(
            "komlogd.yaml:2: package.install: \"kpack_linux==0.2\" looks like a pip requirement (it pins a version with `==`){tail}"
        )]
    );
    assert_eq!(
        errs("- package:\n    install: kpack_linux\n"),
        [format!(
            "komlogd.yaml:2: package.install: \"kpack_linux\" looks like a pip requirement (it does not end in .wasm){tail}"
        )]
    );
}

#[test]
fn package_errors() {
    assert_eq!(
        errs("- package:\n    enabled: yes\n"),
        [
            "komlogd.yaml:1: package: missing required key `install` (the .wasm component of the package)"
        ]
    );
    assert_eq!(
        errs(
            "- package:\n    install: p.wasm\n    venv: 'my pool'\n    grants: {env: [1BAD], dirs: {a: b}}\n    refresh: often\n"
        ),
        [
            "komlogd.yaml:3: package.venv: \"my pool\" is not a valid pool name: use letters, digits, `_`, `.` and `-` only",
            "komlogd.yaml:4: package.grants.dirs: expected a list, found a map",
            "komlogd.yaml:4: package.grants.env: \"1BAD\" is not an environment variable name (letters, digits and `_`, not starting with a digit)",
            "komlogd.yaml:5: package.refresh: invalid duration \"often\": expected a number and a unit, e.g. 30s, 5min, 1h, 2d, 250ms",
        ]
    );
}

// ---------------------------------------------------------------- server, limits, max_chain_depth

#[test]
fn server() {
    assert_eq!(
        ok("- server:\n    url: wss://hub.example.org/\n").server,
        Some(ServerConfig::one("wss://hub.example.org/"))
    );
    assert_eq!(
        ok("- server:\n    url: https://hub:8443/\n    ca_file: certs/ca.pem\n")
            .server
            .and_then(|s| s.ca_file),
        Some(dir("certs/ca.pem"))
    );
    assert_eq!(
        warns("- server:\n    url: http://hub/\n    ca_file: /ca.pem\n"),
        [
            "komlogd.yaml:3: server.ca_file (/ca.pem) is used only with an https:// or wss:// url, not \"http://hub/\""
        ]
    );
    assert_eq!(
        ok("- server: http://127.0.0.1:8080\n")
            .server
            .map(|s| s.urls),
        Some(vec!["http://127.0.0.1:8080".to_owned()])
    );
    assert_eq!(
        errs("- server:\n    url: ftp://hub\n"),
        ["komlogd.yaml:2: server.url: \"ftp://hub\": expected the scheme http, https, ws or wss"]
    );
    assert_eq!(
        errs("- server:\n    url: https:///x\n"),
        ["komlogd.yaml:2: server.url: \"https:///x\": no host"]
    );
    assert_eq!(
        errs("- server:\n    host: x\n"),
        [
            "komlogd.yaml:1: server: missing required key `url` (e.g. wss://hub.example.org/), or `urls` for several servers",
            "komlogd.yaml:2: unknown key `host` in server block; known keys: url, urls, ca_file",
        ]
    );
    assert_eq!(
        errs("- server: {url: 'ws://a'}\n- server: {url: 'ws://b'}\n"),
        ["komlogd.yaml:2: More than one server found (lines 1 and 2). Keep only one."]
    );
}

/// Several servers: `urls` lists them in the order tried; it cannot go beside
/// `url`, must not be empty, and a bad url is named by its index.
#[test]
fn server_urls() {
    let two = ok("- server:\n    urls: [wss://hub1.example.org/, 'http://[::1]:8080']\n")
        .server
        .expect("a server");
    assert_eq!(two.urls, ["wss://hub1.example.org/", "http://[::1]:8080"]);
    assert_eq!(two.url(), "wss://hub1.example.org/");
    assert!(two.is_tls());
    // A block list reads the same; one url in the list is one server.
    assert_eq!(
        ok("- server:\n    urls:\n      - ws://a\n      - ws://b:81/\n    ca_file: ca.pem\n")
            .server,
        Some(ServerConfig {
            urls: vec!["ws://a".into(), "ws://b:81/".into()],
            ca_file: Some(dir("ca.pem")),
        })
    );
    assert_eq!(
        ok("- server:\n    urls: [ws://only/]\n").server,
        Some(ServerConfig::one("ws://only/"))
    );
    assert_eq!(
        errs("- server:\n    urls: []\n"),
        ["komlogd.yaml:2: server.urls: the list is empty; give at least one URL"]
    );
    assert_eq!(
        errs("- server:\n    urls:\n"),
        ["komlogd.yaml:2: server.urls: the list is empty; give at least one URL"]
    );
    assert_eq!(
        errs("- server:\n    urls: [ws://a/, ftp://b, 'https:///x']\n"),
        [
            "komlogd.yaml:2: server.urls[1]: \"ftp://b\": expected the scheme http, https, ws or wss",
            "komlogd.yaml:2: server.urls[2]: \"https:///x\": no host",
        ]
    );
    assert_eq!(
        errs("- server:\n    urls:\n      - ws://a/\n      - ws://b:99999/\n"),
        ["komlogd.yaml:4: server.urls[1]: \"ws://b:99999/\": invalid port"]
    );
    assert_eq!(
        errs("- server:\n    urls: ws://a/\n"),
        ["komlogd.yaml:2: server.urls: expected a list of URLs, found \"ws://a/\""]
    );
    assert_eq!(
        errs("- server:\n    url: ws://a/\n    urls: [ws://b/]\n"),
        [
            "komlogd.yaml:3: server: `url` and `urls` are both given; give one of them (`urls` lists several servers)"
        ]
    );
    assert_eq!(
        errs("- server:\n    urls: [ws://b/]\n    ca_file: ca.pem\n    url: ws://a/\n"),
        [
            "komlogd.yaml:4: server: `url` and `urls` are both given; give one of them (`urls` lists several servers)"
        ]
    );
    // `url` is one server; a list there is pointed at `urls`.
    assert_eq!(
        errs("- server:\n    url: [ws://a/, ws://b/]\n"),
        [
            "komlogd.yaml:2: server.url: expected one URL, found a list; several servers go in `urls`"
        ]
    );
    // A repeat is harmless: warned about and tried once.
    let cfg = Config::parse(
        "- server:\n    urls: [ws://a/, ws://b/, ws://a/]\n",
        Path::new("komlogd.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.server.map(|s| s.urls),
        Some(vec!["ws://a/".into(), "ws://b/".into()])
    );
    assert_eq!(
        cfg.warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["komlogd.yaml:2: server.urls[2]: \"ws://a/\" is listed twice; the repeat is ignored"]
    );
    // ca_file with no TLS url names every url.
    assert_eq!(
        warns("- server:\n    urls: [http://a/, ws://b/]\n    ca_file: /ca.pem\n"),
        [
            "komlogd.yaml:3: server.ca_file (/ca.pem) is used only with an https:// or wss:// url, not \"http://a/\", \"ws://b/\""
        ]
    );
}

#[test]
fn agent_wide_limits_and_chain_depth() {
    let cfg = ok(
        "- limits:\n    timeout: 5s\n    memory: 1048576\n    fuel: 10000000000\n    disable_after: 3\n    queue: 8MiB\n    outputs: 500\n- max_chain_depth: 64\n",
    );
    assert_eq!(
        cfg.limits,
        Limits {
            timeout_us: Some(5_000_000),
            memory_bytes: Some(1 << 20),
            fuel: Some(10_000_000_000),
            disable_after: Some(3),
            queue_bytes: Some(8 << 20),
            outputs: Some(500),
        }
    );
    assert_eq!(cfg.max_chain_depth, 64);
    assert_eq!(ok("- max_chain_depth: 1\n").max_chain_depth, 1);
    assert_eq!(
        errs("- max_chain_depth: 65\n"),
        ["komlogd.yaml:1: max_chain_depth: 65 is out of range: expected 1 to 64"]
    );
    assert_eq!(
        errs("- max_chain_depth: deep\n"),
        ["komlogd.yaml:1: max_chain_depth: expected a non-negative integer, found \"deep\""]
    );
    assert_eq!(
        errs("- limits:\n    outputs: 0\n    queue: 1 banana\n"),
        [
            "komlogd.yaml:2: limits.outputs: must be greater than zero",
            "komlogd.yaml:3: limits.queue: invalid size \"1 banana\": expected bytes or a number with KiB, MiB, GiB (or KB, MB, GB), e.g. 64MiB",
        ]
    );
    assert_eq!(
        errs(
            "- limits: {timeout: 1s}\n- limits: {timeout: 2s}\n- max_chain_depth: 2\n- max_chain_depth: 3\n"
        ),
        [
            "komlogd.yaml:2: More than one limits block found (lines 1 and 2). Keep only one.",
            "komlogd.yaml:4: More than one max_chain_depth found (lines 3 and 4). Keep only one.",
        ]
    );
}

// ---------------------------------------------------------------- loading

#[test]
fn load_reads_the_file_and_reports_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.yaml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: File not found: {}",
            missing.display(),
            missing.display()
        )
    );
    let path = tmp.path().join("komlogd.yaml");
    std::fs::write(&path, "- username: bob\n- logging:\n    dirname: logs\n").unwrap();
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.dir, tmp.path());
    assert_eq!(cfg.logging.dir, tmp.path().join("logs"));
    std::fs::write(&path, b"- username: \xff\n").unwrap();
    assert!(
        Config::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not valid UTF-8")
    );
}

#[test]
fn the_original_full_example_loads() {
    // The 0.1.0-era template's examples, with its Python impulse replaced by a component.
    let cfg = ok(r#"
- username: alice
- keyfile: ./key.priv
- allow_external_jobs: no
- job:
    uri: system.disk.ocupation
    command: df -k
    enabled: yes
    schedule: ['0 * * * *', '*/5 23 * * *']
- job:
    uri: system.memory
    command: /home/komlogd/my_script.sh
    enabled: yes
    schedule: ['* * * * *']
- impulses:
    enabled: yes
    filename: impulses/impulse_methods.wasm
- logging:
    level: INFO
    rotation: yes
    max_bytes: 10000000
    backup_count: 3
    dirname: log
    filename: komlogd.log
"#);
    assert_eq!(cfg.keyfile, Some(dir("./key.priv")));
    assert_eq!(cfg.jobs.len(), 2);
    assert_eq!(cfg.jobs[1].argv, ["/home/komlogd/my_script.sh"]);
    assert_eq!(cfg.impulses[0].name, "impulse_methods");
    assert!(cfg.warnings.is_empty());
}

#[test]
fn metrics_block() {
    let cfg = ok("- metrics:\n    listen: 127.0.0.1:9108\n");
    assert_eq!(
        cfg.metrics.map(|m| m.listen.to_string()),
        Some("127.0.0.1:9108".to_owned())
    );
    let cfg = ok("- metrics: '[::1]:9000'\n");
    assert_eq!(
        cfg.metrics.map(|m| m.listen.to_string()),
        Some("[::1]:9000".to_owned())
    );
    assert_eq!(
        errs("- metrics:\n    listen: localhost\n"),
        [
            "komlogd.yaml:2: metrics.listen: \"localhost\" is not an address and port (e.g. 127.0.0.1:9108)"
        ]
    );
    assert_eq!(
        errs("- metrics: {}\n"),
        ["komlogd.yaml:1: metrics: missing required key `listen` (e.g. 127.0.0.1:9108)"]
    );
}
