//! The on-disk cache of compiled modules: a second engine (a restart) loads the
//! artifact instead of compiling, and a damaged artifact is rebuilt, not fatal.

use std::time::Instant;

use komlogd::engine::{Engine, EngineConfig};
use komlogd_tests::guest;

fn engine(cache: &std::path::Path) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(cache.to_owned()),
        ..EngineConfig::default()
    })
    .expect("engine")
}

#[test]
fn a_restart_loads_the_compiled_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let summary = guest("summary");

    let t = Instant::now();
    let first = engine(cache.path()).load(&summary).expect("first load");
    let compile = t.elapsed();
    assert!(!first.from_cache(), "the first load compiles");
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].starts_with(first.hash()) && artifacts[0].ends_with(".cwasm"));

    let t = Instant::now();
    let second = engine(cache.path()).load(&summary).expect("second load");
    let cached = t.elapsed();
    assert!(second.from_cache(), "a new engine finds the artifact");
    assert_eq!(first.hash(), second.hash());
    assert!(
        cached * 5 < compile,
        "loading from the cache ({cached:?}) should be far faster than compiling ({compile:?})"
    );
}

#[test]
fn a_damaged_artifact_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let trivial = guest("trivial");
    let module = engine(cache.path()).load(&trivial).expect("load");
    let artifact = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .next()
        .expect("an artifact")
        .path();
    std::fs::write(&artifact, b"garbage").unwrap();
    let again = engine(cache.path())
        .load(&trivial)
        .expect("load after damage");
    assert!(!again.from_cache(), "the damaged artifact is not used");
    assert_eq!(again.hash(), module.hash());
    assert!(
        std::fs::read(&artifact).unwrap().len() > 1000,
        "and it is rewritten"
    );
    let third = engine(cache.path()).load(&trivial).expect("third load");
    assert!(third.from_cache());
}
