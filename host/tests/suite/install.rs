//! What an installed `komlogd` offers an operator, with the real binary:
//!
//! * `completions SHELL` and `manpage`, generated from the command-line
//!   definition: every subcommand `--help` lists is completed, every option it
//!   lists is in the manual page;
//! * `logging.format: json`: a running agent writes one JSON object per line,
//!   and stops cleanly on SIGTERM (as systemd stops it); a bad value is refused
//!   by `check` naming the line;
//! * `dist/systemd/komlogd.service`: the hardening it promises, and
//!   `systemd-analyze verify` accepts it with this build's binary in ExecStart.

use crate::common::child;
use crate::common::units::{assert_hardened, last, settings, verify};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value as Json;

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");
const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ lives in the repository root")
        .to_owned()
}

/// Run komlogd with `args` (no stdin, `HOME` in a fresh temporary directory).
fn komlogd(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    komlogd_in(home.path(), args)
}

fn komlogd_in(home: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(KOMLOGD)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start komlogd");
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let status = child::wait_or_kill(&mut child, TIMEOUT, &format!("komlogd {args:?}"));
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Read a child's pipe to its end on a thread.
fn read_all(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Start the agent as `program args` in `dir` (its HOME), wait for its control
/// socket `dir/komlogd.sock`, stop it with SIGTERM as systemd does; its exit
/// status and stderr.
fn run_until_sigterm(program: &str, args: &[&str], dir: &Path) -> (ExitStatus, String) {
    let mut agent = Command::new(program)
        .args(args)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start komlogd");
    let stderr = read_all(agent.stderr.take());
    child::wait_for_path(&mut agent, &dir.join("komlogd.sock"), TIMEOUT);
    let status = child::terminate(&mut agent, TIMEOUT).unwrap_or_else(|| {
        let _ = agent.kill();
        let _ = agent.wait();
        panic!("komlogd did not stop on SIGTERM");
    });
    let stderr = stderr.join().expect("stderr reader");
    (status, String::from_utf8_lossy(&stderr).into_owned())
}

fn stdout_of(args: &[&str]) -> String {
    let out = komlogd(args);
    assert!(
        out.status.success(),
        "komlogd {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands `komlogd --help` lists under `Commands:`.
fn subcommands_from_help() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(names.len() >= 5, "too few subcommands in --help:\n{help}");
    names
}

/// The long options `komlogd --help` lists (`--config`, `--uri`, ...).
fn options_from_help() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    // `  -c, --config <PATH>`, `      --datapoint`: options start in column 3 or
    // 7; their descriptions are indented further.
    let options: Vec<String> = help
        .lines()
        .filter(|l| l.starts_with("  -") || l.starts_with("      --"))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(',').to_owned())
        })
        .filter(|o| o != "--help" && o != "--version")
        .collect();
    assert!(options.len() >= 4, "too few options in --help:\n{help}");
    options
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(
        script.contains("complete -F"),
        "not a bash completion:\n{script}"
    );
    for name in subcommands_from_help() {
        // The completion's state machine has one arm per subcommand.
        assert!(
            script.contains(&format!("komlogd,{name})")),
            "bash completion has no `{name}`"
        );
    }
    for option in options_from_help() {
        assert!(script.contains(&option), "bash completion has no {option}");
    }
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let zsh = stdout_of(&["completions", "zsh"]);
    let fish = stdout_of(&["completions", "fish"]);
    assert!(zsh.starts_with("#compdef komlogd"), "{zsh}");
    assert!(fish.contains("complete -c komlogd"), "{fish}");
    for name in subcommands_from_help() {
        assert!(zsh.contains(&format!("'{name}:")), "zsh: no `{name}`");
        assert!(
            fish.contains(&format!(" -a \"{name}\"")),
            "fish: no `{name}`"
        );
    }
    let out = komlogd(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
}

#[test]
fn manpage_is_roff_and_names_the_options_and_subcommands() {
    let page = stdout_of(&["manpage"]);
    // clap_mangen defines a quote string with `.ie`/`.el`, then the title.
    let first_macro = page
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or_default();
    assert!(
        first_macro.starts_with(".TH komlogd 1"),
        "not a section 1 page: {first_macro:?}"
    );
    assert!(page.lines().all(|l| !l.starts_with(' ')), "stray text");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    // roff escapes hyphens as `\-`.
    let text = page.replace("\\-", "-");
    for option in options_from_help() {
        assert!(text.contains(&option), "manual page has no {option}");
    }
    for name in subcommands_from_help() {
        assert!(text.contains(&format!("komlogd-{name}")), "no {name}");
    }
}

#[test]
fn manpage_dir_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let man1 = dir.path().join("man1");
    let listed = stdout_of(&["manpage", "--dir", man1.to_str().expect("UTF-8 path")]);
    let expected: Vec<String> = subcommands_from_help()
        .into_iter()
        .filter(|n| n != "help")
        .map(|n| format!("komlogd-{n}.1"))
        .chain(["komlogd.1".to_owned()])
        .collect();
    let mut written: Vec<String> = std::fs::read_dir(&man1)
        .expect("read man1")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    // Every top-level page, plus the nested commands' (komlogd-new-impulse.1).
    for page in &expected {
        assert!(written.contains(page), "{page} not written: {written:?}");
    }
    assert!(written.contains(&"komlogd-new-impulse.1".to_owned()));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        written,
        "the list printed"
    );
    // Each page is a page of its own command, with that command's options.
    let query = std::fs::read_to_string(man1.join("komlogd-query.1")).expect("read");
    assert!(query.contains(".TH komlogd-query 1"), "{query}");
    let query = query.replace("\\-", "-");
    for option in ["--limit", "--from", "--to", "--json"] {
        assert!(query.contains(option), "komlogd-query.1 has no {option}");
    }
}

#[test]
fn json_log_lines_parse_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("komlogd.yaml");
    std::fs::write(
        &config,
        "- username: alice\n- logging:\n    level: debug\n    format: json\n",
    )
    .expect("write komlogd.yaml");
    let path = config.to_str().expect("UTF-8 path");
    let (status, stderr) = run_until_sigterm(KOMLOGD, &["--config", path, "run"], dir.path());
    assert_eq!(status.code(), Some(0), "clean stop on SIGTERM:\n{stderr}");

    let log = std::fs::read_to_string(dir.path().join("log/komlogd.log")).expect("read log");
    let lines: Vec<Json> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "too few lines:\n{log}");
    for line in &lines {
        for field in ["timestamp", "level", "message", "target"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
        chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("timestamp not RFC 3339 ({e}): {line}"));
    }
    // The last line: the clean stop, its counters as JSON fields.
    let last = lines.last().expect("a line");
    assert_eq!(last["message"], "stopped cleanly", "{log}");
    assert_eq!(last["level"], "INFO");
    assert!(last["stored"].is_u64(), "{last}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "SIGTERM received: stopping"),
        "{log}"
    );
}

#[test]
fn check_refuses_an_unknown_log_format_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("komlogd.yaml");
    std::fs::write(
        &config,
        "- username: alice\n- logging:\n    level: info\n    format: xml\n",
    )
    .expect("write komlogd.yaml");
    let path = config.to_str().expect("UTF-8 path");
    let out = komlogd_in(dir.path(), &["--config", path, "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("komlogd.yaml:4: logging.format: expected text or json, found \"xml\""),
        "{stderr}"
    );

    std::fs::write(&config, "- username: alice\n- logging:\n    format: text\n")
        .expect("write komlogd.yaml");
    let out = komlogd_in(dir.path(), &["--config", path, "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let path = repo_root().join("dist/systemd/komlogd.service");
    let unit = std::fs::read_to_string(&path).expect("read komlogd.service");
    let settings = settings(&unit);
    assert_hardened(&settings, "komlogd");
    let get = |key: &str| last(&settings, key);
    // wasmtime's JIT needs pages that become executable after being written.
    assert_eq!(get("MemoryDenyWriteExecute"), None);
    // The path the service runs is the one the configuration lives at.
    let exec = get("ExecStart").expect("ExecStart");
    assert_eq!(
        exec,
        "/usr/local/bin/komlogd --config /var/lib/komlogd/komlogd.yaml run"
    );
    // ExecStart as written starts the agent (on a test configuration), and
    // systemd's stop signal stops it cleanly.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("komlogd.yaml");
    std::fs::write(&config, "- username: alice\n").expect("write komlogd.yaml");
    let path = config.to_str().expect("UTF-8 path");
    let args: Vec<&str> = exec
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == "/var/lib/komlogd/komlogd.yaml" {
                path
            } else {
                a
            }
        })
        .collect();
    let (status, stderr) = run_until_sigterm(KOMLOGD, &args, dir.path());
    assert_eq!(status.code(), Some(0), "clean stop on SIGTERM:\n{stderr}");
    assert!(
        dir.path().join("key.pub").exists(),
        "the agent made its key pair"
    );

    verify(&unit, "komlogd.service", "/usr/local/bin/komlogd", KOMLOGD);
}
