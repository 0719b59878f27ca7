//! Building komlogd impulses written in C, without the `wit-bindgen` or
//! `wasm-tools` command-line tools.
//!
//! What this crate owns:
//! - the C bindings of the `impulse` world of `wit/impulse.wit` (or of the
//!   `stateful-impulse` world, under the same `impulse_` names), generated
//!   with the `wit-bindgen-c` library ([`generate_bindings`]);
//! - the header-only helper `komlog_impulse.h` (window reader, sample builders,
//!   parameters, logging), shipped inside the tool ([`HELPER_HEADER`]);
//! - the compile with clang for `wasm32-wasi` as a reactor, and the wrapping of
//!   the core module into a component with the WASI preview1 reactor adapter
//!   ([`componentize`], [`build`]).
//!
//! The `komlog-c` binary is a thin command line over [`generate_bindings`] and
//! [`build`]; the integration tests call [`build`] from their build script.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

/// The WIT contract the bindings are generated from when no `--wit` is given.
pub const IMPULSE_WIT: &str = include_str!("../../../wit/impulse.wit");

/// The header-only helper, written beside the generated bindings.
pub const HELPER_HEADER: &str = include_str!("../include/komlog_impulse.h");

/// File name of the helper header.
pub const HELPER_HEADER_NAME: &str = "komlog_impulse.h";

/// The world every impulse implements.
pub const WORLD: &str = "impulse";

/// The world of an impulse whose state carries over to its next version
/// (`impulse` plus `snapshot` and `restore`).
pub const STATEFUL_WORLD: &str = "stateful-impulse";

/// How to install what the C build needs on Debian or Ubuntu.
pub const INSTALL_HINT: &str = "install clang, lld and wasi-libc (Debian/Ubuntu: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)";

/// Write the C bindings of `world` (`impulse` or `stateful-impulse`) as
/// `impulse.h`, `impulse.c` and `impulse_component_type.o`, and the helper
/// header, into `out_dir`. Either world's bindings use the `impulse_` names
/// (the stateful world's adds `exports_impulse_snapshot` and
/// `exports_impulse_restore`), so the helper header serves both.
///
/// `wit` is a WIT file or directory; `None` uses the contract built into this
/// tool. Returns the files written.
pub fn generate_bindings(wit: Option<&Path>, world: &str, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut resolve = Resolve::default();
    let package = match wit {
        Some(path) => {
            resolve
                .push_path(path)
                .with_context(|| format!("cannot read the WIT at {}", path.display()))?
                .0
        }
        None => resolve
            .push_str("impulse.wit", IMPULSE_WIT)
            .context("the built-in impulse.wit does not parse")?,
    };
    let selected = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("the WIT has no `{world}` world"))?;
    let mut files = Files::default();
    let opts = wit_bindgen_c::Opts {
        rename_world: (world != WORLD).then(|| WORLD.to_owned()),
        ..wit_bindgen_c::Opts::default()
    };
    opts.build()
        .generate(&mut resolve, selected, &mut files)
        .context("wit-bindgen-c failed")?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut written = Vec::new();
    let helper = [(HELPER_HEADER_NAME, HELPER_HEADER.as_bytes())];
    for (name, contents) in files.iter().chain(helper) {
        let path = out_dir.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Wrap a core module compiled for `wasm32-wasi` (preview1, reactor), whose
/// component-type section comes from `impulse_component_type.o`, into a
/// component, adapting its WASI preview1 imports to WASI 0.2.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .context("the core module has no usable component type (was impulse_component_type.o linked in?)")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("cannot load the WASI preview1 reactor adapter")?
        .validate(true)
        .encode()
        .context("cannot encode the component")
}

/// What [`build`] compiles.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The C sources of the impulse.
    pub sources: Vec<PathBuf>,
    /// Extra include directories (`-I`).
    pub include_dirs: Vec<PathBuf>,
    /// Extra compiler flags, after the defaults.
    pub cflags: Vec<String>,
    /// The component to write.
    pub output: PathBuf,
    /// The WIT file or directory; `None`: the built-in contract.
    pub wit: Option<PathBuf>,
    /// The compiler; `None`: `$CC` if it names a clang, else `clang`.
    pub clang: Option<PathBuf>,
    /// The world to implement; `None`: [`WORLD`].
    pub world: Option<String>,
}

/// Generate the bindings, compile the sources with clang for `wasm32-wasi` as a
/// reactor, and write the component to `options.output`. Intermediate files go
/// to `<output>.build/`.
pub fn build(options: &BuildOptions) -> Result<PathBuf> {
    if options.sources.is_empty() {
        bail!("no C source given");
    }
    for source in &options.sources {
        if !source.is_file() {
            bail!("C source {} does not exist", source.display());
        }
    }
    let output = &options.output;
    let work = work_dir(output)?;
    let bindings = work.join("bindings");
    let world = options.world.as_deref().unwrap_or(WORLD);
    generate_bindings(options.wit.as_deref(), world, &bindings)?;
    let core = work.join("core.wasm");
    let clang = options.clang.clone().unwrap_or_else(default_clang);
    let mut cmd = Command::new(&clang);
    cmd.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-g0",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
    ])
    .arg("-I")
    .arg(&bindings);
    for dir in &options.include_dirs {
        cmd.arg("-I").arg(dir);
    }
    cmd.args(&options.cflags)
        .arg("-o")
        .arg(&core)
        .args(&options.sources)
        .arg(bindings.join("impulse.c"))
        .arg(bindings.join("impulse_component_type.o"));
    let status = cmd
        .status()
        .map_err(|e| anyhow!("cannot run `{}` ({INSTALL_HINT}): {e}", clang.display()))?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}) compiling {}; if a system header such as <stdlib.h> is missing, {INSTALL_HINT}",
            clang.display(),
            options
                .sources
                .iter()
                .map(|s| s.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let core_bytes =
        std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = componentize(&core_bytes)?;
    let tmp = work.join("component.wasm");
    std::fs::write(&tmp, &component).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(output.clone())
}

/// `<output>.build/`, created.
fn work_dir(output: &Path) -> Result<PathBuf> {
    let name = output
        .file_name()
        .ok_or_else(|| anyhow!("the output {} has no file name", output.display()))?;
    let mut work_name = name.to_os_string();
    work_name.push(".build");
    let work = output.with_file_name(work_name);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    Ok(work)
}

fn default_clang() -> PathBuf {
    match std::env::var_os("CC") {
        Some(cc)
            if Path::new(&cc)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("clang")) =>
        {
            PathBuf::from(cc)
        }
        _ => PathBuf::from("clang"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_cover_the_impulse_world() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_bindings(None, WORLD, dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "impulse.h",
            "impulse.c",
            "impulse_component_type.o",
            HELPER_HEADER_NAME,
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        let header = std::fs::read_to_string(dir.path().join("impulse.h")).unwrap();
        assert!(header.contains("exports_impulse_on_update"), "{header}");
        assert!(header.contains("exports_impulse_describe"), "{header}");
    }

    #[test]
    fn stateful_bindings_keep_the_impulse_names_and_add_snapshot_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        generate_bindings(None, STATEFUL_WORLD, dir.path()).unwrap();
        let header = std::fs::read_to_string(dir.path().join("impulse.h")).unwrap();
        for export in [
            "exports_impulse_on_update",
            "exports_impulse_describe",
            "exports_impulse_snapshot",
            "exports_impulse_restore",
        ] {
            assert!(header.contains(export), "{export}");
        }
        let err = generate_bindings(None, "no-such-world", dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "the WIT has no `no-such-world` world");
    }

    #[test]
    fn bytes_that_are_not_a_core_module_are_refused() {
        let err = componentize(b"not wasm").unwrap_err();
        assert!(
            format!("{err:#}").starts_with("the core module has no usable component type"),
            "{err:#}"
        );
    }

    #[test]
    fn a_missing_source_is_named() {
        let err = build(&BuildOptions {
            sources: vec!["/nonexistent/impulse.c".into()],
            output: "/tmp/x.wasm".into(),
            ..BuildOptions::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "C source /nonexistent/impulse.c does not exist"
        );
    }
}
