//! The file writer and the line format, without a global subscriber (except one
//! test of [`init`] itself).

use std::fs;
use std::io::Write;
use std::path::Path;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

fn config(dir: &Path, rotation: bool, max_bytes: u64, backup_count: u32) -> LoggingConfig {
    LoggingConfig {
        rotation,
        max_bytes,
        backup_count,
        ..LoggingConfig::defaults(dir)
    }
}

use crate::test_util::names;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn rotates_into_exactly_backup_count_files_within_max_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), true, 1000, 3);
    let mut w = rotating_writer(&cfg).expect("writer");
    for i in 0..400 {
        writeln!(w, "line {i:04} {}", "x".repeat(30)).expect("write");
    }
    w.flush().expect("flush");
    let log_dir = tmp.path().join("log");
    assert_eq!(
        names(&log_dir),
        [
            "komlogd.log",
            "komlogd.log.1",
            "komlogd.log.2",
            "komlogd.log.3"
        ]
    );
    let mut all = String::new();
    for name in [
        "komlogd.log.3",
        "komlogd.log.2",
        "komlogd.log.1",
        "komlogd.log",
    ] {
        let text = read(&log_dir.join(name));
        assert!(text.len() <= 1000, "{name} has {} bytes", text.len());
        assert!(text.ends_with('\n'), "{name} ends mid-line");
        all.push_str(&text);
    }
    // Oldest to newest, with no gap: the newest lines are in komlogd.log.
    let numbers: Vec<u32> = all
        .lines()
        .map(|l| l[5..9].parse().expect("number"))
        .collect();
    assert_eq!(numbers.last(), Some(&399));
    assert!(numbers.windows(2).all(|p| p[1] == p[0] + 1));
    assert!(read(&cfg.file()).ends_with(&format!("line 0399 {}\n", "x".repeat(30))));
}

#[test]
fn a_line_longer_than_max_bytes_is_written_whole_to_a_fresh_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), true, 100, 3);
    let mut w = rotating_writer(&cfg).expect("writer");
    let long = format!("{}\n", "y".repeat(250));
    w.write_all(b"short\n").expect("write");
    w.write_all(long.as_bytes()).expect("write");
    w.write_all(b"after\n").expect("write");
    assert_eq!(read(&cfg.dir.join("komlogd.log.2")), "short\n");
    assert_eq!(read(&cfg.dir.join("komlogd.log.1")), long);
    assert_eq!(read(&cfg.file()), "after\n");
}

#[test]
fn rotation_off_never_rotates_and_appends() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), false, 100, 3);
    fs::create_dir_all(&cfg.dir).expect("mkdir");
    fs::write(cfg.file(), "before\n").expect("seed");
    let mut w = rotating_writer(&cfg).expect("writer");
    for _ in 0..100 {
        w.write_all(b"0123456789\n").expect("write");
    }
    assert_eq!(names(&cfg.dir), ["komlogd.log"]);
    let text = read(&cfg.file());
    assert!(text.starts_with("before\n"));
    assert_eq!(text.len(), 7 + 1100);
}

#[test]
fn creates_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path(), true, 1000, 3);
    cfg.dir = tmp.path().join("a/b/c");
    let mut w = rotating_writer(&cfg).expect("writer");
    w.write_all(b"hello\n").expect("write");
    assert_eq!(w.path(), tmp.path().join("a/b/c/komlogd.log"));
    assert_eq!(read(&cfg.file()), "hello\n");
}

#[test]
fn unusable_locations_give_errors_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The directory would have to be created inside a regular file (this fails
    // for root too, unlike a read-only directory).
    let blocker = tmp.path().join("not-a-dir");
    fs::write(&blocker, "").expect("file");
    let mut cfg = config(tmp.path(), true, 1000, 3);
    cfg.dir = blocker.join("log");
    let err = rotating_writer(&cfg).expect_err("must fail");
    assert!(matches!(err, LoggingError::CreateDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&cfg.dir.display().to_string()),
        "{err}"
    );

    // The log file's name is taken by a directory.
    let mut cfg = config(tmp.path(), false, 1000, 3);
    fs::create_dir_all(cfg.file()).expect("mkdir");
    let err = rotating_writer(&cfg).expect_err("must fail");
    assert!(matches!(err, LoggingError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&cfg.file().display().to_string()),
        "{err}"
    );
    cfg.rotation = true;
    let err = rotating_writer(&cfg).expect_err("must fail");
    assert!(
        err.to_string().starts_with("cannot open the log file "),
        "{err}"
    );
}

#[test]
fn level_names() {
    assert_eq!(parse_level("INFO"), Some(LevelFilter::INFO));
    assert_eq!(parse_level("warning"), Some(LevelFilter::WARN));
    assert_eq!(parse_level("critical"), Some(LevelFilter::ERROR));
    assert_eq!(parse_level(" debug "), Some(LevelFilter::DEBUG));
    assert_eq!(parse_level("off"), Some(LevelFilter::OFF));
    assert_eq!(parse_level("verbose"), None);
}

#[test]
fn invalid_levels_are_refused_before_anything_is_installed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path(), true, 1000, 3);
    let err = init(&cfg, "loud").expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "invalid stderr log level \"loud\": expected one of off, error, warn, info, debug, trace"
    );
    cfg.level = "chatty".to_owned();
    assert!(matches!(
        init(&cfg, "warn"),
        Err(LoggingError::Level { what: "file", .. })
    ));
    assert!(!cfg.dir.exists(), "nothing is created for a bad level");
}

#[test]
fn line_format_and_file_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), true, 1_000_000, 3);
    let shared = SharedWriter(Arc::new(Mutex::new(rotating_writer(&cfg).expect("writer"))));
    let layer = tracing_subscriber::fmt::layer()
        .event_format(LineFormat)
        .fmt_fields(KeyValueFields)
        .with_ansi(false)
        .with_writer(shared.clone())
        .with_filter(LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("impulse", impulse = "df");
        let _entered = span.enter();
        tracing::info!(target: "komlogd::engine", samples = 3, "ran in {} ms", 12);
        tracing::debug!("not written");
        tracing::warn!(path = "/a b", "two\nlines");
    });
    drop(shared);
    let text = read(&cfg.file());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let (ts, rest) = lines[0].split_once(' ').expect("timestamp");
    // 2026-11-23T16:05:48.123456Z
    assert_eq!(ts.len(), 27, "{ts}");
    assert_eq!(&ts[4..5], "-");
    assert_eq!(&ts[10..11], "T");
    assert_eq!(&ts[19..20], ".");
    assert!(ts.ends_with('Z'));
    assert!(ts[20..26].bytes().all(|b| b.is_ascii_digit()), "{ts}");
    assert_eq!(
        rest,
        "INFO impulse=df samples=3 module=komlogd::engine: ran in 12 ms"
    );
    let (_, warn) = lines[1].split_once(' ').expect("timestamp");
    assert_eq!(
        warn,
        format!(
            "WARN impulse=df path=\"/a b\" module={}: two",
            module_path!()
        )
    );
    assert_eq!(lines[2], "lines");
}

/// The only test that installs the global subscriber (once per test binary).
#[test]
fn init_writes_to_the_file_and_refuses_a_second_init() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(&tmp.path().join("conf"), true, 1000, 3);
    let guard = init(&cfg, "error").expect("init");
    assert_eq!(guard.log_file(), cfg.file());
    tracing::info!(target: "komlogd::test_init", "logged through init");
    assert!(matches!(
        init(&cfg, "warn"),
        Err(LoggingError::AlreadyInitialized)
    ));
    drop(guard);
    let text = read(&cfg.file());
    assert!(
        text.lines()
            .any(|l| l.ends_with(" INFO module=komlogd::test_init: logged through init")),
        "{text}"
    );
}

#[test]
fn an_output_at_a_quieter_level_still_shows_the_span_context() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), false, 0, 0);
    let shared = SharedWriter(Arc::new(Mutex::new(rotating_writer(&cfg).expect("writer"))));
    let layer = tracing_subscriber::fmt::layer()
        .event_format(LineFormat)
        .fmt_fields(KeyValueFields)
        .with_writer(shared.clone())
        .with_filter(level_filter(LevelFilter::WARN, LevelFilter::INFO));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("impulse", impulse = "df");
        let _entered = span.enter();
        tracing::info!("not written");
        tracing::warn!(target: "komlogd::engine", "slow");
        let _debug = tracing::debug_span!("inner", hidden = 1).entered();
        tracing::error!(target: "komlogd::engine", "failed");
    });
    let text = read(&cfg.file());
    let rests: Vec<&str> = text
        .lines()
        .map(|l| l.split_once(' ').expect("timestamp").1)
        .collect();
    assert_eq!(
        rests,
        [
            "WARN impulse=df module=komlogd::engine: slow",
            "ERROR impulse=df module=komlogd::engine: failed"
        ]
    );
}
