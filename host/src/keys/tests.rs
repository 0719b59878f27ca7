//! Key files: creation, modes, formats, loading, refusals and clean-up on failure.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use super::*;

/// One 4096-bit key for the tests that do not test generation itself.
fn shared_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let started = Instant::now();
        let key = PrivateKey::new(&mut getrandom::SysRng, 4096).expect("keygen");
        eprintln!("shared 4096-bit key generated in {:?}", started.elapsed());
        key
    })
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

use crate::test_util::{names, skip};

fn pkcs8_pem(key: &PrivateKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string()
}

fn err_of(r: Result<AgentKey, KeyError>) -> KeyError {
    match r {
        Ok(k) => panic!("accepted: {k:?}"),
        Err(e) => e,
    }
}

#[test]
fn creates_a_key_pair_then_loads_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    let pub_path = tmp.path().join("key.pub");

    let started = Instant::now();
    let key = load_or_create(&priv_path).expect("create");
    eprintln!(
        "load_or_create generated a 4096-bit key in {:?}",
        started.elapsed()
    );
    assert!(key.created);
    assert_eq!(key.bits(), 4096);
    assert_eq!(key.private.as_public_key().e_bytes().as_ref(), [1, 0, 1]);
    assert_eq!(names(tmp.path()), ["key.priv", "key.pub"]);
    assert_eq!(mode(&priv_path), 0o600);
    assert_eq!(mode(&pub_path), 0o644);

    let pem = fs::read_to_string(&priv_path).expect("read priv");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));

    let line = fs::read_to_string(&pub_path).expect("read pub");
    assert_eq!(line, key.public_line);
    assert!(
        line.starts_with("ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"),
        "{line}"
    );
    assert!(!line.ends_with('\n') && !line.ends_with(' '));
    assert_eq!(line.split(' ').count(), 2, "no comment: {line}");
    let public = parse_openssh_public(&line).expect("parse key.pub");
    assert_eq!(&public, key.private.as_public_key());

    let again = load_or_create(&priv_path).expect("load");
    assert!(!again.created);
    assert_eq!(again.private, key.private);
    assert_eq!(again.public_line, key.public_line);
    assert_eq!(fs::read_to_string(&pub_path).expect("read pub"), line);
    assert_eq!(names(tmp.path()), ["key.priv", "key.pub"]);
}

#[test]
fn public_line_matches_ssh_keygen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    fs::write(&priv_path, pkcs8_pem(shared_key())).expect("write");
    fs::set_permissions(&priv_path, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = match std::process::Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&priv_path)
        .output()
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!(
            "ssh-keygen -y failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            skip(&format!(
                "public_line_matches_ssh_keygen: cannot run ssh-keygen ({e}); install openssh-client"
            ));
            return;
        }
    };
    let theirs = String::from_utf8(out.stdout).expect("utf-8");
    let theirs: Vec<&str> = theirs.split_whitespace().take(2).collect();
    assert_eq!(
        openssh_public_line(shared_key().as_public_key()),
        theirs.join(" ")
    );
}

#[test]
fn loads_pkcs1_and_recreates_a_missing_public_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    let pem = shared_key().to_pkcs1_pem(LineEnding::LF).expect("pkcs1");
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    fs::write(&priv_path, pem.as_bytes()).expect("write");
    fs::set_permissions(&priv_path, fs::Permissions::from_mode(0o600)).expect("chmod");

    let key = load_or_create(&priv_path).expect("load pkcs1");
    assert!(!key.created);
    assert_eq!(&key.private, shared_key());
    let pub_path = tmp.path().join("key.pub");
    assert_eq!(
        fs::read_to_string(&pub_path).expect("key.pub"),
        key.public_line
    );
    assert_eq!(mode(&pub_path), 0o644);
    // The private key file is left exactly as it was.
    assert_eq!(fs::read_to_string(&priv_path).expect("read"), pem.as_str());
    assert_eq!(names(tmp.path()), ["key.priv", "key.pub"]);
}

#[test]
fn rewrites_a_public_key_that_does_not_match() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    let pub_path = tmp.path().join("key.pub");
    fs::write(&priv_path, pkcs8_pem(shared_key())).expect("write");
    for stale in ["ssh-rsa AAAA", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", ""] {
        fs::write(&pub_path, stale).expect("write stale");
        let key = load_or_create(&priv_path).expect("load");
        assert_eq!(
            fs::read_to_string(&pub_path).expect("key.pub"),
            key.public_line
        );
    }
    assert_eq!(names(tmp.path()), ["key.priv", "key.pub"]);
}

#[test]
fn rewrites_a_public_key_with_a_comment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    let pub_path = tmp.path().join("key.pub");
    fs::write(&priv_path, pkcs8_pem(shared_key())).expect("write");
    let line = openssh_public_line(shared_key().as_public_key());
    fs::write(&pub_path, format!("{line} user@host\n")).expect("write commented");
    let key = load_or_create(&priv_path).expect("load");
    assert_eq!(key.public_line, line);
    assert_eq!(fs::read_to_string(&pub_path).expect("key.pub"), line);
    // The canonical line with a final newline is left alone.
    fs::write(&pub_path, format!("{line}\n")).expect("write canonical");
    load_or_create(&priv_path).expect("load");
    assert_eq!(
        fs::read_to_string(&pub_path).expect("key.pub"),
        format!("{line}\n")
    );
}

#[test]
fn a_public_key_that_cannot_be_written_does_not_stop_loading() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    fs::write(&priv_path, pkcs8_pem(shared_key())).expect("write");
    fs::create_dir(tmp.path().join("key.pub")).expect("mkdir");
    fs::write(tmp.path().join("key.pub/x"), "x").expect("fill");
    let key = load_or_create(&priv_path).expect("load");
    assert_eq!(&key.private, shared_key());
    assert_eq!(names(tmp.path()), ["key.priv", "key.pub"]);
}

#[test]
fn refuses_keys_under_4096_bits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = PrivateKey::new(&mut getrandom::SysRng, 2048).expect("keygen");
    let priv_path = tmp.path().join("key.priv");
    for pem in [
        pkcs8_pem(&small),
        small
            .to_pkcs1_pem(LineEnding::LF)
            .expect("pkcs1")
            .to_string(),
    ] {
        fs::write(&priv_path, pem).expect("write");
        let err = err_of(load_or_create(&priv_path));
        assert!(
            matches!(err, KeyError::TooSmall { bits: 2048, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} is a 2048-bit RSA key; komlogd needs at least 4096 bits",
                priv_path.display()
            )
        );
    }
    assert_eq!(
        names(tmp.path()),
        ["key.priv"],
        "no key.pub for a refused key"
    );
}

/// RFC 8410 §10.3: an Ed25519 private key in PKCS#8.
const ED25519_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----
";

#[test]
fn refuses_non_rsa_encrypted_and_garbage_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("key.priv");
    let shown = path.display().to_string();
    let cases: [(&[u8], &str); 9] = [
        (
            ED25519_PKCS8.as_bytes(),
            "is not an RSA key (an Ed25519 key)",
        ),
        (
            b"-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n",
            "is not an RSA key (an EC key)",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "is encrypted",
        ),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nMAA=\n-----END OPENSSH PRIVATE KEY-----\n",
            "is an OpenSSH-format private key",
        ),
        (
            b"hello world\n",
            "is not a PEM private key (no -----BEGIN line)",
        ),
        (
            &[0xff, 0xfe, 0x00, 0x80],
            "is not a PEM private key (it is not text)",
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            "is not a PEM private key (bad PEM block",
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
            "is not a valid RSA private key",
        ),
        (
            b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
            "is not a PEM private key (it holds a PUBLIC KEY",
        ),
    ];
    for (contents, expected) in cases {
        fs::write(&path, contents).expect("write");
        let msg = err_of(load_or_create(&path)).to_string();
        assert!(
            msg.starts_with(&format!("{shown} {expected}")),
            "{msg:?} should start with {shown} {expected}"
        );
        assert_eq!(names(tmp.path()), ["key.priv"], "after {expected}");
    }
    // An unreadable "file" (a directory) is a read error, not a reason to create one.
    let dir_path = tmp.path().join("dir.priv");
    fs::create_dir(&dir_path).expect("mkdir");
    let msg = err_of(load_or_create(&dir_path)).to_string();
    assert!(msg.starts_with(&format!(
        "cannot read the private key {}",
        dir_path.display()
    )));
}

#[test]
fn failed_public_key_write_leaves_no_private_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("key.priv");
    // A non-empty directory where key.pub goes: the rename onto it fails (also as root).
    fs::create_dir(tmp.path().join("key.pub")).expect("mkdir");
    fs::write(tmp.path().join("key.pub/x"), "x").expect("fill");
    let err = err_of(create_with(&priv_path, shared_key().clone()));
    assert!(matches!(err, KeyError::Write { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot write {}: ",
            tmp.path().join("key.pub").display()
        )),
        "{err}"
    );
    assert_eq!(
        names(tmp.path()),
        ["key.pub"],
        "no key.priv, no temporary files"
    );
    assert!(tmp.path().join("key.pub").is_dir());
}

#[test]
fn failed_private_key_rename_removes_the_new_public_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The private key's name is taken by a non-empty directory: key.pub is renamed
    // first, then renaming the private key fails, and key.pub must go again.
    let priv_path = tmp.path().join("key.priv");
    fs::create_dir(&priv_path).expect("mkdir");
    fs::write(priv_path.join("x"), "x").expect("fill");
    let err = err_of(create_with(&priv_path, shared_key().clone()));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write {}: ", priv_path.display())),
        "{err}"
    );
    assert_eq!(names(tmp.path()), ["key.priv"]);
    assert!(priv_path.is_dir());
}

/// Set in the child process of `unwritable_directory_gives_an_error_and_no_files`.
const NO_DAC_CHILD: &str = "KOMLOGD_KEYS_TEST_NO_DAC";

#[test]
fn unwritable_directory_gives_an_error_and_no_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ro");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).expect("chmod");
    // Root ignores directory permissions (CAP_DAC_OVERRIDE): then the test
    // runs again in a child process of this test binary whose capability
    // bounding set lacks the two capabilities that bypass them, so that the
    // check runs as root too (CI runs as root).
    if fs::write(dir.join("probe"), "").is_ok() {
        fs::remove_file(dir.join("probe")).expect("remove the probe");
        assert!(
            std::env::var_os(NO_DAC_CHILD).is_none(),
            "the child still writes into a 0500 directory"
        );
        if !without_dac_override("keys::tests::unwritable_directory_gives_an_error_and_no_files") {
            skip(
                "unwritable_directory_gives_an_error_and_no_files: root, and cannot drop \
                 CAP_DAC_OVERRIDE for a child process",
            );
        }
        return;
    }
    let err = err_of(create_with(&dir.join("key.priv"), shared_key().clone()));
    assert!(matches!(err, KeyError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains(&dir.display().to_string()));
    assert!(names(&dir).is_empty());
}

#[test]
fn missing_directory_is_not_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let priv_path = tmp.path().join("nope/key.priv");
    let err = err_of(create_with(&priv_path, shared_key().clone()));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write {}: ", priv_path.display())),
        "{err}"
    );
    assert!(!tmp.path().join("nope").exists());
}

#[test]
fn openssh_round_trip_and_public_key_path() {
    let line = openssh_public_line(shared_key().as_public_key());
    assert_eq!(
        &parse_openssh_public(&line).expect("parse"),
        shared_key().as_public_key()
    );
    assert_eq!(
        &parse_openssh_public(&format!("  {line}\n")).expect("parse"),
        shared_key().as_public_key()
    );
    assert_eq!(
        public_key_path(Path::new("/etc/komlogd/custom.pem")),
        Path::new("/etc/komlogd/key.pub")
    );
    assert_eq!(
        public_key_path(Path::new("key.priv")),
        Path::new("./key.pub")
    );
}

/// Run the test `name` of this binary in a child process whose capability
/// bounding set lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that file
/// permissions apply even to root. Panics if the child's test fails; false if
/// the capabilities cannot be dropped here.
fn without_dac_override(name: &str) -> bool {
    use std::os::unix::process::CommandExt;
    const CAP_DAC_OVERRIDE: libc::c_ulong = 1;
    const CAP_DAC_READ_SEARCH: libc::c_ulong = 2;
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(NO_DAC_CHILD, "1");
    // SAFETY: prctl(2) is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            for cap in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(out) => out,
        // pre_exec's error: no CAP_SETPCAP to change the bounding set.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => return false,
        Err(e) => panic!("cannot run the child test: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
