//! What an installed `komlog-hub` offers an operator, with the real binary:
//! `completions SHELL` and `manpage` generated from the command-line definition
//! (and needing no data directory), and `dist/systemd/komlog-hub.service`: its
//! hardening, its ExecStart serving and stopping cleanly on SIGTERM, and
//! `systemd-analyze verify` accepting it with this build's binary.

#[path = "../../tests/support/child.rs"]
mod child;
#[path = "../../tests/support/units.rs"]
mod units;
use units::{assert_hardened, last, settings, verify};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const HUB: &str = env!("CARGO_BIN_EXE_komlog-hub");
const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("hub/ lives in the repository root")
        .to_owned()
}

/// Run komlog-hub with `args` and no data directory.
fn hub(args: &[&str]) -> Output {
    Command::new(HUB)
        .args(args)
        .env_remove("KOMLOG_HUB_DATA")
        .stdin(Stdio::null())
        .output()
        .expect("run komlog-hub")
}

fn stdout_of(args: &[&str]) -> String {
    let out = hub(args);
    assert!(
        out.status.success(),
        "komlog-hub {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands `komlog-hub --help` lists under `Commands:`.
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

#[test]
fn completions_and_manpage_need_no_data_directory() {
    let bash = stdout_of(&["completions", "bash"]);
    assert!(
        bash.contains("complete -F"),
        "not a bash completion:\n{bash}"
    );
    for name in subcommands_from_help() {
        assert!(
            bash.contains(&format!("komlog__hub,{name})")),
            "bash completion has no `{name}`"
        );
    }
    assert!(bash.contains("--data"));
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef komlog-hub"), "{zsh}");

    let page = stdout_of(&["manpage"]);
    let first_macro = page
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or_default();
    assert!(
        first_macro.starts_with(".TH komlog-hub 1"),
        "not a section 1 page: {first_macro:?}"
    );
    let text = page.replace("\\-", "-");
    assert!(text.contains("--data"), "manual page has no --data");
    for name in subcommands_from_help() {
        assert!(text.contains(&format!("komlog-hub-{name}")), "no {name}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    stdout_of(&["manpage", "--dir", dir.path().to_str().expect("UTF-8 path")]);
    for page in [
        "komlog-hub.1",
        "komlog-hub-serve.1",
        "komlog-hub-user-add.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(
            text.contains(&format!(".TH {}", &page[..page.len() - 2])),
            "{page}"
        );
    }
    // Other commands still need one.
    let out = hub(&["user", "list"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_systemd_unit_is_hardened_serves_and_verifies() {
    let path = repo_root().join("dist/systemd/komlog-hub.service");
    let unit = std::fs::read_to_string(&path).expect("read komlog-hub.service");
    let settings = settings(&unit);
    assert_hardened(&settings, "komlog-hub");
    let get = |key: &str| last(&settings, key);

    // ExecStart as written serves (on a temporary data directory and a free
    // port), and systemd's stop signal stops it cleanly.
    let exec = get("ExecStart").expect("ExecStart");
    let data = tempfile::tempdir().expect("tempdir");
    let data_arg = data.path().to_str().expect("UTF-8 path");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/komlog-hub"));
    let args: Vec<&str> = words
        .map(|a| match a {
            "/var/lib/komlog-hub" => data_arg,
            "127.0.0.1:8080" => "127.0.0.1:0",
            a => a,
        })
        .collect();
    assert!(
        args.contains(&data_arg),
        "ExecStart names /var/lib/komlog-hub"
    );
    let mut served = Command::new(HUB)
        .args(&args)
        .env_remove("KOMLOG_HUB_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start komlog-hub");
    child::wait_for_path(&mut served, &data.path().join("hub.json"), TIMEOUT);
    let status = child::terminate(&mut served, TIMEOUT).unwrap_or_else(|| {
        let _ = served.kill();
        let _ = served.wait();
        panic!("komlog-hub did not stop on SIGTERM");
    });
    assert_eq!(status.code(), Some(0), "clean stop on SIGTERM");

    verify(
        &unit,
        "komlog-hub.service",
        "/usr/local/bin/komlog-hub",
        HUB,
    );
}
