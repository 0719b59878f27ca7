//! Package pools (`venv`): `default` packages share one thread, packages naming
//! one pool share its thread, and each `isolated` (or `unique`) package has a
//! thread of its own. The pool threads are named `pkg-<pool>`; this binary
//! holds one test, so every such thread in the process is this agent's.

use std::collections::BTreeMap;
use std::time::Duration;

use komlogd_tests::{AgentDir, RunningAgent, wait_until};

/// The names of this process's threads that start with `pkg-`.
fn pool_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("pkg-"))
        .collect();
    names.sort();
    names
}

#[test]
fn default_packages_share_a_thread_a_named_pool_shares_one_and_isolated_ones_get_their_own() {
    let venvs = ["default", "default", "mine", "mine", "isolated", "unique"];
    let yaml: String = venvs
        .iter()
        .map(|venv| {
            format!(
                "- package:\n    install: {{guest:probe-package}}\n    venv: {venv}\n    params: {{jobs: \"a every:1000\"}}\n"
            )
        })
        .collect();
    let dir = AgentDir::new(&yaml);
    {
        // Compile the package on this thread first, so that the agent's pool
        // threads find it in the compiled cache: a compile starts wasmtime's
        // compile threads, which take the name of the thread that started
        // them (a cold cache showed `pkg-mine` three times).
        let warm = dir.open();
        warm.engine
            .load(&komlogd_tests::guest("probe-package"))
            .expect("the probe package compiles");
    }
    let agent = RunningAgent::start(&dir);
    wait_until("every package ran its job", Duration::from_secs(60), || {
        let all = agent.packages.snapshot();
        all.len() == venvs.len()
            && all
                .values()
                .all(|s| s.jobs.get("a").is_some_and(|j| j.runs >= 1))
    });
    let pools: BTreeMap<String, usize> =
        agent
            .packages
            .snapshot()
            .values()
            .fold(BTreeMap::new(), |mut m, s| {
                *m.entry(s.pool.clone()).or_default() += 1;
                m
            });
    let shared: Vec<_> = pools
        .iter()
        .filter(|(p, _)| !p.starts_with("isolated:"))
        .collect();
    assert_eq!(
        shared,
        [(&"default".to_owned(), &2), (&"mine".to_owned(), &2)],
        "{pools:?}"
    );
    let isolated: Vec<_> = pools
        .iter()
        .filter(|(p, _)| p.starts_with("isolated:"))
        .collect();
    assert_eq!(isolated.len(), 2, "{pools:?}");
    assert!(isolated.iter().all(|(_, n)| **n == 1), "{pools:?}");
    // One thread per pool: default, mine, and one for each isolated package.
    let threads = pool_threads();
    assert_eq!(threads.len(), 4, "{threads:?}");
    assert_eq!(
        threads.iter().filter(|n| *n == "pkg-default").count(),
        1,
        "{threads:?}"
    );
    assert_eq!(
        threads.iter().filter(|n| *n == "pkg-mine").count(),
        1,
        "{threads:?}"
    );
    agent.stop();
}
