//! Checks of the systemd units in `dist/systemd`, shared by the agent's and
//! the hub's installation tests.

use std::path::Path;
use std::process::Command;

/// The unit's `Key=value` settings.
pub fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The last value of `key` in `settings` (a later line overrides an earlier one).
pub fn last<'s>(settings: &'s [(String, String)], key: &str) -> Option<&'s str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .next_back()
}

/// The hardening both units share, for a service run as `user` with its state
/// in `/var/lib/<user>`.
pub fn assert_hardened(settings: &[(String, String)], user: &str) {
    let state = format!("/var/lib/{user}");
    for (key, value) in [
        ("User", user),
        ("StateDirectory", user),
        ("ReadWritePaths", state.as_str()),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("LockPersonality", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(last(settings, key), Some(value), "{key}");
    }
    assert_eq!(last(settings, "DynamicUser"), None);
}

/// `systemd-analyze verify` on `unit` with ExecStart's binary `installed`
/// replaced by `built` (verify checks that the binary exists), and `built
/// manpage` installed where `man` finds it (verify looks up the unit's
/// `Documentation=man:...` pages).
pub fn verify(unit: &str, name: &str, installed: &str, built: &str) {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
            "systemd-analyze not found, and KOMLOGD_TESTS_NO_SKIP is set"
        );
        eprintln!("SKIPPED: systemd-analyze not found");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join(name);
    std::fs::write(&copy, unit.replace(installed, built)).expect("write the unit");
    let man1 = dir.path().join("man/man1");
    std::fs::create_dir_all(&man1).expect("create man/man1");
    let page = Command::new(built)
        .arg("manpage")
        .output()
        .expect("run manpage");
    assert!(page.status.success(), "{built} manpage");
    let program = Path::new(installed)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a program name");
    std::fs::write(man1.join(format!("{program}.1")), &page.stdout).expect("write the page");
    let mut verify = Command::new(analyze);
    verify.arg("verify");
    if !["/usr/bin/man", "/bin/man"]
        .iter()
        .any(|m| Path::new(m).exists())
    {
        // Without man(1), verify cannot look the Documentation= pages up.
        eprintln!("man not found: the unit's Documentation= pages are not checked");
        verify.arg("--man=no");
    }
    let out = verify
        .arg(&copy)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains(name),
        "systemd-analyze verify complains about {name}:\n{stderr}"
    );
}
