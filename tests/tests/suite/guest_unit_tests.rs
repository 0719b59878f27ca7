//! The example guests' own unit tests (the df parser, the `/proc` parser,
//! summary, threshold, probe, misbehave, …). `examples/` is a cargo workspace of
//! its own, outside the root one, so `cargo test --workspace` does not reach
//! them: this test runs them natively, `cargo test --workspace --target <this
//! platform>` on `examples/Cargo.toml`, in a target directory of their own
//! (`target/examples-native`, so it never waits for the lock of the build that
//! runs this test), and fails if any of them fails or a crate runs none. Each
//! crate's counts are printed to stderr, past the test harness's capture.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use komlogd_tests::repo_root;

/// The guest crates whose tests must run, with at least this many tests each
/// (the counts when this list was written; a crate may gain tests, not lose them
/// unnoticed).
const EXPECTED: [(&str, usize); 12] = [
    ("counter", 0),
    ("df", 11),
    ("linux", 6),
    ("misbehave", 3),
    ("probe", 7),
    ("probe_package", 1),
    ("summary", 6),
    ("tagged_a", 0),
    ("tagged_b", 0),
    ("threshold", 4),
    ("trivial", 1),
    ("wrong_world", 1),
];

/// Passed, failed and ignored tests of one test binary.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    passed: usize,
    failed: usize,
    ignored: usize,
}

/// The counts of every `Running … (…/deps/<crate>-<hash>)` test binary in
/// cargo's output, by crate name.
fn counts_by_crate(output: &str) -> BTreeMap<String, Counts> {
    let mut by_crate: BTreeMap<String, Counts> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            // `Running unittests src/lib.rs (target/…/deps/df-0123abcd)`
            current = rest
                .rsplit_once('/')
                .and_then(|(_, file)| file.trim_end_matches(')').rsplit_once('-'))
                .map(|(name, _hash)| name.to_owned());
        } else if let Some(result) = line.strip_prefix("test result: ") {
            let name = current.take().unwrap_or_else(|| "?".to_owned());
            let number = |what: &str| {
                result
                    .split(['.', ';'])
                    .map(str::trim)
                    .find_map(|part| part.strip_suffix(what)?.trim().parse::<usize>().ok())
                    .unwrap_or(0)
            };
            let c = by_crate.entry(name).or_default();
            c.passed += number(" passed");
            c.failed += number(" failed");
            c.ignored += number(" ignored");
        }
    }
    by_crate
}

#[test]
fn cargo_output_is_read_per_crate() {
    let output = "   Compiling df v0.1.0\n\
         \x20    Running unittests src/lib.rs (target/examples-native/x86_64-unknown-linux-gnu/debug/deps/df-0123abcd)\n\
         running 2 tests\n\
         test result: ok. 11 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
         \x20    Running unittests src/lib.rs (target/examples-native/x86_64-unknown-linux-gnu/debug/deps/probe_package-99)\n\
         test result: FAILED. 0 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
    let counts = counts_by_crate(output);
    assert_eq!(
        counts["df"],
        Counts {
            passed: 11,
            failed: 0,
            ignored: 1
        }
    );
    assert_eq!(
        counts["probe_package"],
        Counts {
            passed: 0,
            failed: 2,
            ignored: 0
        }
    );
    assert_eq!(counts.len(), 2);
}

#[test]
fn the_example_guests_unit_tests_pass_natively() {
    let root = repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    let mut cmd = komlogd_tests::rust_guests::native_tests(
        std::path::Path::new(&cargo),
        &root,
        env!("KOMLOG_HOST_TARGET"),
    );
    cmd.arg("--no-fail-fast")
        .env("CARGO_TERM_COLOR", "never")
        .stdout(writer.try_clone().expect("clone the pipe"))
        .stderr(writer);
    let mut child = cmd.spawn().expect("run cargo test on examples/");
    // The pipe's write ends must all close for the read below to end.
    drop(cmd);
    let mut output = String::new();
    reader
        .read_to_string(&mut output)
        .expect("read cargo's output");
    let status = child.wait().expect("wait for cargo");

    let counts = counts_by_crate(&output);
    let mut report = String::from("example guests' unit tests (native):\n");
    let mut total = Counts::default();
    for (name, c) in &counts {
        report.push_str(&format!(
            "  {name}: {} passed, {} failed, {} ignored\n",
            c.passed, c.failed, c.ignored
        ));
        total.passed += c.passed;
        total.failed += c.failed;
        total.ignored += c.ignored;
    }
    report.push_str(&format!(
        "  all: {} passed, {} failed, {} ignored\n",
        total.passed, total.failed, total.ignored
    ));
    // Straight to stderr: the harness captures `eprintln!` of passing tests.
    let _ = std::io::stderr().write_all(report.as_bytes());

    assert!(
        status.success() && total.failed == 0,
        "the example guests' unit tests failed ({status}):\n{output}\n{report}"
    );
    for (name, at_least) in EXPECTED {
        let ran = counts.get(name).map(|c| c.passed);
        assert!(
            ran.is_some_and(|n| n >= at_least),
            "{name}: expected at least {at_least} passing tests, found {ran:?}\n{report}"
        );
    }
}
