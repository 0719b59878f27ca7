//! Memory across module swaps stays bounded: old versions are freed, so 50 more
//! swaps do not grow the resident size by half. Alone in its test binary, so no
//! other test's allocations move the figure. The bound is loose on purpose (a
//! busy machine moves RSS); how flat memory really stays over 1,000 swaps is
//! measured by `cargo bench -p komlogd-tests --bench reload -- memory`.

use std::path::PathBuf;
use std::time::Duration;

use komlogd_tests::{AgentDir, RunningAgent, dp, guest, replace_file, rss_bytes};

const WAIT: Duration = Duration::from_secs(20);

/// An agent whose impulse `tag` runs a module file of its own (a copy of tagged_a).
fn tagged_agent(extra: &str) -> (AgentDir, PathBuf) {
    let dir = AgentDir::new("");
    let module = dir.path().join("tag.wasm");
    std::fs::copy(guest("tagged_a"), &module).expect("copy tagged_a");
    dir.write_config(&format!(
        "- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in]\n{extra}"
    ));
    (dir, module)
}

fn module_hash(path: &std::path::Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read module");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn memory_stays_flat_across_swaps() {
    let (dir, module) = tagged_agent("");
    let versions = [guest("tagged_a"), guest("tagged_b")];
    let hashes: Vec<String> = versions.iter().map(|p| module_hash(p)).collect();
    let agent = RunningAgent::start(&dir);
    let tap = &agent.tap;
    let mut ts = 0;
    let mut swap_and_fire = |n: usize| {
        let next = n % 2;
        replace_file(&versions[next], &module);
        agent.wait_for("tag", WAIT, |s| s.version == hashes[next]);
        ts += 1;
        agent.inbox.samples(vec![dp("in", ts, 0.0)]).unwrap();
        agent.wait_for("tag", WAIT, |s| s.fires == ts as u64);
        while tap.try_recv().is_ok() {}
    };
    for n in 1..=10 {
        swap_and_fire(n);
    }
    let after_first = rss_bytes();
    for n in 11..=60 {
        swap_and_fire(n);
    }
    let after_many = rss_bytes();
    let growth = after_many as f64 / after_first as f64 - 1.0;
    assert!(
        growth < 0.5,
        "RSS grew {:.1} % from {after_first} to {after_many} bytes over 50 swaps",
        growth * 100.0
    );
    drop(agent);
}
