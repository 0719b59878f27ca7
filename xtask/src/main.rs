//! `cargo xtask test`: the README's test command. It checks what the test
//! suite needs, installs what it can (the wasm32-wasip2 target, clang and
//! wasi-libc from Debian when running as root, cargo-nextest from crates.io),
//! starts the local services the sink tests write to when they are down
//! (PostgreSQL, Redis, Mosquitto, NATS), names what it cannot, then runs the whole suite with cargo-nextest and
//! prints the ten slowest tests. Each step prints its name and how long it
//! took. Arguments after `test` go to `cargo nextest run`.
//!
//! `cargo xtask check-tools` does the checks and installs alone.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The Python 3.6 venv with komlogd 0.12.0, shared with the hub's
/// compatibility test.
#[path = "../../tests/support/py36.rs"]
mod py36;
#[path = "../../tests/support/pyarrow.rs"]
mod pyarrow;
/// Building the Rust example guests, shared with `tests/build.rs`.
#[path = "../../tests/support/rust_guests.rs"]
mod rust_guests;

/// The pyenv Python that the original agent (komlogd 0.12.0) needs.
const PYTHON36: &str = py36::PYTHON_VERSION;

/// Debian packages for the C guests: clang for wasm32-wasi, its linker and
/// builtins, and wasi-libc.
const C_PACKAGES: &[&str] = &["clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("", &[][..]),
    };
    let root = repo_root();
    let result = match task {
        "test" => check_tools(&root).and_then(|()| test(&root, rest)),
        "check-tools" => check_tools(&root),
        _ => Err(format!(
            "usage: cargo xtask test [NEXTEST ARGS…] | cargo xtask check-tools (got {:?})",
            args
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Run `f` as a named step, printing its time.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let t0 = Instant::now();
    println!("::: {name}");
    let result = f();
    let took = t0.elapsed().as_secs_f64();
    match &result {
        Ok(_) => println!("::: {name}: {took:.0}s"),
        Err(_) => println!("::: {name}: failed after {took:.0}s"),
    }
    result.map_err(|e| format!("{name}: {e}"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn check_tools(root: &Path) -> Result<(), String> {
    step("wasm32-wasip2 target", || {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
    })?;
    step("clang, lld, wasi-libc", c_toolchain)?;
    step("ssh-keygen (openssh-client)", || {
        // The key tests compare the agent's public key line with OpenSSH's.
        if which("ssh-keygen") {
            return Ok(());
        }
        apt_install(&["openssh-client"])
    })?;
    step("chromium, chromium-driver and firefox-esr", || {
        // The web page's browser tests drive Debian's Chromium and Firefox ESR
        // headless.
        let mut missing = Vec::new();
        if !(Path::new("/usr/bin/chromium").exists() && which("chromedriver")) {
            missing.extend(["chromium", "chromium-driver"]);
        }
        if !Path::new("/usr/bin/firefox-esr").exists() {
            missing.push("firefox-esr");
        }
        if missing.is_empty() {
            return Ok(());
        }
        apt_install(&missing)
    })?;
    step("influxd (influxdb) and prometheus", || {
        // The InfluxDB and Prometheus sinks' tests start their own influxd
        // (Debian's 1.x package) and prometheus.
        let mut missing = Vec::new();
        if !which("influxd") {
            missing.push("influxdb");
        }
        if !which("prometheus") {
            missing.push("prometheus");
        }
        if missing.is_empty() {
            return Ok(());
        }
        apt_install(&missing)
    })?;
    step("python3 with venv", || {
        if succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"])) {
            Ok(())
        } else {
            Err(
                "python3 with the venv module is needed for the Python guests and the \
                 pyarrow check (Debian: apt-get install python3-venv)"
                    .into(),
            )
        }
    })?;
    step("node and npm", || {
        if succeeds(Command::new("node").arg("--version"))
            && succeeds(Command::new("npm").arg("--version"))
        {
            Ok(())
        } else {
            Err("node and npm are needed for the JavaScript guests (Debian: apt-get install nodejs npm)".into())
        }
    })?;
    step(
        "local services (PostgreSQL, Redis, Mosquitto, NATS)",
        services,
    )?;
    step(&format!("pyenv Python {PYTHON36}"), || python36(root))?;
    step("cargo-nextest", || {
        if succeeds(Command::new("cargo").args(["nextest", "--version"])) {
            return Ok(());
        }
        run(Command::new("cargo").args(["install", "--locked", "cargo-nextest"]))
    })
}

/// The services the sink tests write to, on their standard loopback ports, with
/// the command that starts each one when it is installed but down.
const SERVICES: &[(&str, u16, &str, &str)] = &[
    (
        "PostgreSQL",
        5432,
        "pg_ctlcluster",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    (
        "Redis",
        6379,
        "redis-server",
        "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
    (
        "Mosquitto",
        1883,
        "mosquitto",
        "mosquitto -d -c /etc/mosquitto/mosquitto.conf",
    ),
    (
        "NATS",
        4222,
        "nats-server",
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    ),
];

/// Start each of [`SERVICES`] that is installed and not listening; one that is
/// not installed is left to its tests (they say SKIPPED, or fail in CI).
fn services() -> Result<(), String> {
    let listening = |port: u16| {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            std::time::Duration::from_secs(1),
        )
        .is_ok()
    };
    for &(name, port, program, start) in SERVICES {
        if listening(port) {
            println!("{name}: listening on 127.0.0.1:{port}");
            continue;
        }
        if !which(program) && !Path::new("/usr/sbin").join(program).exists() {
            println!("{name}: not installed ({program}); its tests cannot run here");
            continue;
        }
        println!("{name}: not listening on 127.0.0.1:{port}; starting it: {start}");
        run(Command::new("sh").args(["-c", start]))?;
        let t0 = Instant::now();
        while !listening(port) {
            if t0.elapsed() > std::time::Duration::from_secs(30) {
                return Err(format!(
                    "{name} started but does not listen on 127.0.0.1:{port} after 30 s"
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    Ok(())
}

fn c_toolchain() -> Result<(), String> {
    let have = succeeds(Command::new("clang").arg("--version"))
        && succeeds(Command::new("wasm-ld").arg("--version"))
        && Path::new("/usr/include/wasm32-wasi/stdlib.h").exists()
        && has_wasm_builtins();
    if have {
        return Ok(());
    }
    apt_install(C_PACKAGES)
}

/// Install Debian packages (as root: `apt-get update` first), or say how.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !is_root() {
        return Err(format!(
            "missing; install with: sudo apt-get update && sudo apt-get install -y {}",
            packages.join(" ")
        ));
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(packages))
}

/// True when `name` is an executable file in a `PATH` directory.
fn which(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// clang's builtins for wasm32-wasi (`libclang_rt.builtins-wasm32.a`).
fn has_wasm_builtins() -> bool {
    let Ok(llvms) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    llvms
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
        .any(|llvm| {
            let clang = llvm.path().join("lib/clang");
            std::fs::read_dir(clang).is_ok_and(|versions| {
                versions.flatten().any(|v| {
                    v.path()
                        .join("lib/wasi/libclang_rt.builtins-wasm32.a")
                        .exists()
                })
            })
        })
}

/// The hub's compatibility test runs the real komlogd 0.12.0 on pyenv's
/// Python 3.6 (the newest it supports); pyenv builds it from python.org's
/// sources, which a machine without that access cannot fetch.
fn python36(_root: &Path) -> Result<(), String> {
    let python = py36::python36().map_err(|e| format!("{e}; run `pyenv install {PYTHON36}`"))?;
    if succeeds(Command::new(&python).args(["-c", "import venv, ensurepip"])) {
        Ok(())
    } else {
        Err(format!(
            "{} has no venv module: run `pyenv install {PYTHON36}` again",
            python.display()
        ))
    }
}

fn test(root: &Path, nextest_args: &[String]) -> Result<(), String> {
    let junit = target_dir(root).join("nextest/default/junit.xml");
    let _ = std::fs::remove_file(&junit);
    // Building and running are separate steps, so each prints its own time:
    // on a fresh machine the build (wasmtime, the guests) is most of it.
    step(
        "build the tests (cargo nextest run --workspace --no-run)",
        || {
            // The Rust example guests (examples/, a workspace and target
            // directory of their own) build at the same time: tests/build.rs
            // needs them, and only starts once its own build dependencies are
            // built, late; it then finds them current.
            let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            // Then, in the same thread, the guests' own unit tests are built
            // natively (what the test `the_example_guests_unit_tests_pass_natively`
            // runs), filling the cores the main build leaves idle in its
            // longer single-crate stretches, instead of compiling in the test run.
            let guests = std::thread::spawn({
                let root = root.to_owned();
                move || {
                    let out = rust_guests::build(&cargo, &root)?;
                    let host = host_triple()?;
                    let built = rust_guests::native_tests(&cargo, &root, &host)
                        .arg("--no-run")
                        .arg("--quiet")
                        .status()
                        .map_err(|e| format!("cannot run cargo: {e}"))?;
                    if !built.success() {
                        return Err(format!(
                            "building the example guests' unit tests natively failed ({built})"
                        ));
                    }
                    Ok(out)
                }
            });
            // The compatibility test's venv (pip downloads and unpacks, little
            // CPU) is built at the same time too, where the test would wait for it.
            let venv = std::thread::spawn({
                let tmp = target_dir(root).join("tmp");
                move || py36::komlogd_venv(&tmp)
            });
            // So is the Arrow interoperability tests' pyarrow and pandas.
            let pyarrow = std::thread::spawn({
                let target = root.join("target");
                move || pyarrow::python_with_pyarrow(&target)
            });
            let host = run(Command::new("cargo").current_dir(root).args([
                "nextest",
                "run",
                "--workspace",
                "--no-run",
            ]));
            let guests = guests
                .join()
                .unwrap_or_else(|_| Err("the guest build thread panicked".into()));
            let venv = venv
                .join()
                .unwrap_or_else(|_| Err("the venv build thread panicked".into()));
            let pyarrow = pyarrow
                .join()
                .unwrap_or_else(|_| Err("the pyarrow venv thread panicked".into()));
            host.and(guests.map(drop))
                .and(venv.map(drop))
                .and(pyarrow.map(drop))
        },
    )?;
    let ran = step("run the tests (cargo nextest run --workspace)", || {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        // Three times as many tests as cores: much of the suite waits on
        // child processes, a cron minute, a hub or pip; with one test per core
        // the machine sat half idle, and with two per core the waiting tests
        // held slots the rest could use (a cold run: 165 s at four, 150 s at
        // six on 2 cores, the cores 88-89 % busy in both).
        if !nextest_args
            .iter()
            .any(|a| a.starts_with("--test-threads") || a == "-j")
        {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            cmd.arg(format!("--test-threads={}", 3 * cores));
        }
        run(cmd.args(nextest_args))
    });
    match std::fs::read_to_string(&junit) {
        Ok(xml) => print_slowest(&xml, 10),
        Err(e) => eprintln!("xtask: no test timings ({}: {e})", junit.display()),
    }
    ran
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` of the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .ok_or_else(|| "rustc -vV names no host".to_owned())
}

/// Print the `n` slowest test cases of a JUnit report.
fn print_slowest(xml: &str, n: usize) {
    let mut cases = testcases(xml);
    cases.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("::: the {n} slowest tests");
    for (class, name, secs) in cases.iter().take(n) {
        println!("{secs:>8.1}s  {class} {name}");
    }
}

/// `(classname, name, time)` of every `<testcase>` in a JUnit report.
fn testcases(xml: &str) -> Vec<(String, String, f64)> {
    xml.split("<testcase")
        .skip(1)
        .filter_map(|case| {
            let head = case.split('>').next()?;
            let time = attribute(head, "time")?.parse::<f64>().ok()?;
            Some((
                attribute(head, "classname").unwrap_or_default(),
                attribute(head, "name").unwrap_or_default(),
                time,
            ))
        })
        .collect()
}

/// The value of `name="…"` in a tag's attributes (XML entities left as they are).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_test_cases_from_a_junit_report() {
        let xml = r#"<?xml version="1.0"?><testsuites><testsuite name="a">
<testcase name="slow_one" classname="komlogd::cli" timestamp="x" time="12.5"></testcase>
<testcase name="fast" classname="komlogd::cli" time="0.010"/>
<testcase name="no_time" classname="x"/></testsuite></testsuites>"#;
        assert_eq!(
            testcases(xml),
            vec![
                ("komlogd::cli".into(), "slow_one".into(), 12.5),
                ("komlogd::cli".into(), "fast".into(), 0.01),
            ]
        );
    }
}
