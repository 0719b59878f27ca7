//! `komlogd new impulse --lang rust|python|js|c NAME` and `komlogd new
//! package --lang rust NAME`: write a buildable starting project for an
//! impulse in one language, or for a package (Rust only), with its `build.sh`
//! and a README giving the build command and the komlogd.yaml lines.
//!
//! The templates live in `host/templates/<lang>/` (impulses) and
//! `host/templates/package/` and are embedded in the binary; the Python and
//! JavaScript SDK modules and the WIT contract are embedded from the source
//! tree and copied into the project.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::Failure;

/// `komlogd new …`
#[derive(Debug, Args)]
pub struct NewArgs {
    /// What to create.
    #[command(subcommand)]
    pub what: NewCommand,
}

/// What `komlogd new` can create.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A starting project for an impulse, in directory NAME.
    Impulse {
        /// The language of the impulse.
        #[arg(long, value_enum)]
        lang: Language,
        /// The impulse's name: the directory, the .wasm and the output uri suffix.
        name: String,
        /// Where to create the project directory (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Rust only: the path of the komlog-guest SDK crate (default: the
        /// guest-sdk directory of the source tree komlogd was built from).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// A starting project for a package (a collector with scheduled jobs), in
    /// directory NAME. Packages are written in Rust (the komlog-package SDK).
    Package {
        /// The language of the package: only `rust` has a package SDK.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Language,
        /// The package's name: the directory, the .wasm and the uri prefix of
        /// its samples.
        name: String,
        /// Where to create the project directory (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The path of the komlog-guest SDK crate, whose `package/` directory
        /// holds komlog-package (default: the guest-sdk directory of the
        /// source tree komlogd was built from).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
}

/// What a project builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An impulse (the `impulse` world).
    Impulse,
    /// A package (the `package` world).
    Package,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Impulse => "impulse",
            Kind::Package => "package",
        }
    }
}

/// A language with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    /// Rust, with the komlog-guest SDK (cargo, wasm32-wasip2).
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
    /// C, with clang, wasi-libc and komlog-c.
    C,
}

impl Language {
    fn display_name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::C => "C",
        }
    }

    fn requires(self) -> &'static str {
        match self {
            Language::Rust => "needs the Rust toolchain",
            Language::Python => {
                "needs python3 with venv; installs componentize-py 0.25.1 into .venv on first use"
            }
            Language::Js => "needs node and npm; installs componentize-js on first use (npm ci)",
            Language::C => {
                "needs clang, lld, wasi-libc and komlog-c (cargo install --locked --path <komlogd source>/guest-sdk/c --profile tool)"
            }
        }
    }
}

impl Language {
    /// What the template's README says about building, after the build
    /// command (Markdown, ending with a blank line when not empty).
    fn setup(self) -> &'static str {
        match self {
            Language::Rust => {
                "\n`cargo test` runs the impulse's unit tests (`src/lib.rs`) natively.\n"
            }
            Language::Python => concat!(
                "\n`build.sh` uses componentize-py from the project's own virtual environment,\n",
                "`.venv`, and creates it on first use:\n\n",
                "```sh\n",
                "python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1\n",
                "```\n\n",
                "A virtual environment, because the Python of Debian and Ubuntu refuses a bare\n",
                "`pip install` (PEP 668, \"externally managed\"); there `python3 -m venv`\n",
                "needs `apt-get install python3-venv`.\n",
            ),
            Language::Js => concat!(
                "\n`build.sh` installs componentize-js on first use with `npm ci`, from\n",
                "`package-lock.json`: the exact versions komlogd is tested with.\n",
            ),
            Language::C => "",
        }
    }
}

const IMPULSE_WIT: &str = include_str!("../../../wit/impulse.wit");
const README: &str = include_str!("../../templates/README.md");
/// Recorded samples to replay the new impulse on (`komlogd impulse test`).
const TEST_DATA: &str = include_str!("../../templates/testdata/cpu.csv");
/// What the template's impulse writes from them: its first golden file.
const TEST_GOLDEN: &str = include_str!("../../templates/testdata/expected.jsonl");

/// The files of a language's template: (path in the project, contents, executable).
fn template_files(lang: Language) -> Vec<(&'static str, &'static str, bool)> {
    match lang {
        Language::Rust => vec![
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml"),
                false,
            ),
            (
                "src/lib.rs",
                include_str!("../../templates/rust/lib.rs"),
                false,
            ),
            (
                "build.sh",
                include_str!("../../templates/rust/build.sh"),
                true,
            ),
        ],
        Language::Python => vec![
            (
                "app.py",
                include_str!("../../templates/python/app.py"),
                false,
            ),
            (
                "komlog_impulse.py",
                include_str!("../../../guest-sdk/python/komlog_impulse.py"),
                false,
            ),
            ("wit/impulse.wit", IMPULSE_WIT, false),
            (
                "build.sh",
                include_str!("../../templates/python/build.sh"),
                true,
            ),
        ],
        Language::Js => vec![
            ("app.js", include_str!("../../templates/js/app.js"), false),
            (
                "komlog_impulse.js",
                include_str!("../../../guest-sdk/js/komlog_impulse.js"),
                false,
            ),
            (
                "package.json",
                include_str!("../../templates/js/package.json"),
                false,
            ),
            (
                "package-lock.json",
                include_str!("../../templates/js/package-lock.json"),
                false,
            ),
            ("wit/impulse.wit", IMPULSE_WIT, false),
            (
                "build.sh",
                include_str!("../../templates/js/build.sh"),
                true,
            ),
        ],
        Language::C => vec![
            (
                "impulse.c",
                include_str!("../../templates/c/impulse.c"),
                false,
            ),
            ("build.sh", include_str!("../../templates/c/build.sh"), true),
        ],
    }
}

/// The files of the package template: (path in the project, contents, executable).
fn package_files() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        (
            "Cargo.toml",
            include_str!("../../templates/package/Cargo.toml"),
            false,
        ),
        (
            "src/lib.rs",
            include_str!("../../templates/package/lib.rs"),
            false,
        ),
        (
            "build.sh",
            include_str!("../../templates/package/build.sh"),
            true,
        ),
        (
            "README.md",
            include_str!("../../templates/package/README.md"),
            false,
        ),
    ]
}

/// Run `komlogd new`.
pub fn run(args: &NewArgs) -> Result<(), Failure> {
    match &args.what {
        NewCommand::Impulse {
            lang,
            name,
            dir,
            sdk,
        } => {
            let project = dir.join(name);
            let written = write_impulse(*lang, name, &project, sdk.as_deref())?;
            println!(
                "created {} ({} impulse, {} files)",
                project.display(),
                lang.display_name(),
                written.len()
            );
            println!("build it with: {}/build.sh", project.display());
            Ok(())
        }
        NewCommand::Package {
            lang,
            name,
            dir,
            sdk,
        } => {
            let project = dir.join(name);
            let written = write_package(*lang, name, &project, sdk.as_deref())?;
            println!(
                "created {} ({} package, {} files)",
                project.display(),
                lang.display_name(),
                written.len()
            );
            println!("build it with: {}/build.sh", project.display());
            Ok(())
        }
    }
}

/// Check an impulse's or package's name: it names a directory, a crate, a file
/// and a uri level.
pub fn check_name(kind: Kind, name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if starts_well && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "{} name `{name}`: use 1 to 64 characters a-z, 0-9, `_` or `-`, starting with a letter",
            kind.noun()
        )))
    }
}

/// Write the template of `lang` for impulse `name` into the new directory
/// `project` (which must not exist). Returns the files written.
pub fn write_impulse(
    lang: Language,
    name: &str,
    project: &Path,
    sdk: Option<&Path>,
) -> Result<Vec<PathBuf>, Failure> {
    let files = template_files(lang)
        .into_iter()
        .chain([
            ("README.md", README, false),
            ("testdata/cpu.csv", TEST_DATA, false),
            ("testdata/expected.jsonl", TEST_GOLDEN, false),
        ])
        .collect();
    write_project(Kind::Impulse, lang, name, project, sdk, files)
}

/// Write the package template for package `name` into the new directory
/// `project` (which must not exist). Packages have a Rust SDK only: any other
/// `lang` is refused before anything is written. Returns the files written.
pub fn write_package(
    lang: Language,
    name: &str,
    project: &Path,
    sdk: Option<&Path>,
) -> Result<Vec<PathBuf>, Failure> {
    if lang != Language::Rust {
        return Err(Failure::usage(format!(
            "packages are written in Rust only: the package world (wit/package.wit) has a \
             Rust SDK (komlog-package) and none for {}; use --lang rust",
            lang.display_name()
        )));
    }
    write_project(Kind::Package, lang, name, project, sdk, package_files())
}

/// Write `files` (filled in for `name`) into the new directory `project`.
fn write_project(
    kind: Kind,
    lang: Language,
    name: &str,
    project: &Path,
    sdk: Option<&Path>,
    files: Vec<(&'static str, &'static str, bool)>,
) -> Result<Vec<PathBuf>, Failure> {
    check_name(kind, name)?;
    if project.exists() {
        return Err(Failure::usage(format!(
            "{} already exists; choose another name or remove it",
            project.display()
        )));
    }
    let sdk_path = match sdk {
        Some(p) => p.to_owned(),
        None => default_sdk_path(),
    };
    let sdk_crate = match kind {
        Kind::Impulse => sdk_path.join("Cargo.toml"),
        Kind::Package => sdk_path.join("package/Cargo.toml"),
    };
    if lang == Language::Rust && !sdk_crate.is_file() {
        return Err(Failure::usage(format!(
            "the Rust SDK is not at {}: pass --sdk <komlogd source>/guest-sdk",
            sdk_path.display()
        )));
    }
    let failed = |path: &Path, e: std::io::Error| {
        Failure::runtime(format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(project).map_err(|e| failed(project, e))?;
    // The README shows the absolute path to put in komlogd.yaml.
    let shown_dir = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_owned())
        .display()
        .to_string();
    let sdk_text = sdk_path.display().to_string();
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("@NAME@", name)
            .replace("@CRATE@", &crate_name)
            .replace("@SDK@", &sdk_text)
            .replace("@LANGUAGE@", lang.display_name())
            .replace("@REQUIRES@", lang.requires())
            .replace("@SETUP@", lang.setup())
            .replace("@DIR@", &shown_dir)
    };
    let mut written = Vec::new();
    for (relative, contents, executable) in files {
        let path = project.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
        }
        std::fs::write(&path, fill(contents)).map_err(|e| failed(&path, e))?;
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| failed(&path, e))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// The guest-sdk directory of the source tree this binary was built from.
fn default_sdk_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    path.canonicalize().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[PathBuf], root: &Path) -> Vec<String> {
        files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn each_language_gets_its_files_with_the_name_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, expected) in [
            (
                Language::Rust,
                vec![
                    "Cargo.toml",
                    "src/lib.rs",
                    "build.sh",
                    "README.md",
                    "testdata/cpu.csv",
                    "testdata/expected.jsonl",
                ],
            ),
            (
                Language::Python,
                vec![
                    "app.py",
                    "komlog_impulse.py",
                    "wit/impulse.wit",
                    "build.sh",
                    "README.md",
                    "testdata/cpu.csv",
                    "testdata/expected.jsonl",
                ],
            ),
            (
                Language::Js,
                vec![
                    "app.js",
                    "komlog_impulse.js",
                    "package.json",
                    "package-lock.json",
                    "wit/impulse.wit",
                    "build.sh",
                    "README.md",
                    "testdata/cpu.csv",
                    "testdata/expected.jsonl",
                ],
            ),
            (
                Language::C,
                vec![
                    "impulse.c",
                    "build.sh",
                    "README.md",
                    "testdata/cpu.csv",
                    "testdata/expected.jsonl",
                ],
            ),
        ] {
            let project = dir.path().join(format!("p-{lang:?}"));
            let files = write_impulse(lang, "disk-mean", &project, None).unwrap();
            assert_eq!(names(&files, &project), expected, "{lang:?}");
            for file in &files {
                let text = std::fs::read_to_string(file).unwrap();
                assert!(
                    !text.contains('@') || !text.contains("@NAME@"),
                    "{}",
                    file.display()
                );
                for placeholder in [
                    "@NAME@",
                    "@CRATE@",
                    "@SDK@",
                    "@LANGUAGE@",
                    "@REQUIRES@",
                    "@SETUP@",
                    "@DIR@",
                ] {
                    assert!(
                        !text.contains(placeholder),
                        "{placeholder} left in {}",
                        file.display()
                    );
                }
            }
            let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
            assert!(build.contains("disk-mean.wasm"), "{lang:?}: {build}");
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(project.join("build.sh"))
                    .unwrap()
                    .permissions(),
            );
            assert_eq!(mode & 0o111, 0o111, "{lang:?}: build.sh is executable");
            let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
            assert!(
                readme.contains(&format!("{}/disk-mean.wasm", project.display())),
                "{readme}"
            );
        }
        let cargo = std::fs::read_to_string(dir.path().join("p-Rust/Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"disk-mean\""), "{cargo}");
        let sdk = default_sdk_path();
        assert!(
            cargo.contains(&format!("path = \"{}\"", sdk.display())),
            "{cargo}"
        );
        let build = std::fs::read_to_string(dir.path().join("p-Rust/build.sh")).unwrap();
        assert!(build.contains("release/disk_mean.wasm"), "{build}");
        let lib = std::fs::read_to_string(dir.path().join("p-Rust/src/lib.rs")).unwrap();
        assert!(lib.contains("#[cfg(test)]"), "{lib}");
        // Python: a venv of the project's own, never a bare `pip install`.
        let readme = std::fs::read_to_string(dir.path().join("p-Python/README.md")).unwrap();
        assert!(
            readme
                .contains("python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1"),
            "{readme}"
        );
        let build = std::fs::read_to_string(dir.path().join("p-Python/build.sh")).unwrap();
        assert!(build.contains(".venv/bin/componentize-py"), "{build}");
        assert!(!build.contains("\npip install"), "{build}");
        // JavaScript: `npm ci` from a lock naming the project.
        let build = std::fs::read_to_string(dir.path().join("p-Js/build.sh")).unwrap();
        assert!(build.contains("npm ci "), "{build}");
        let lock = std::fs::read_to_string(dir.path().join("p-Js/package-lock.json")).unwrap();
        assert!(
            lock.starts_with("{\n  \"name\": \"disk-mean\",\n  \"lockfileVersion\": 3,"),
            "{}",
            &lock[..200]
        );
        assert!(
            lock.contains("\"node_modules/@bytecodealliance/componentize-js\": {\n      \"version\": \"0.23.0\","),
            "the lock pins the componentize-js of package.json"
        );
    }

    #[test]
    fn a_package_gets_its_rust_files_with_the_name_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("load-watch");
        let files = write_package(Language::Rust, "load-watch", &project, None).unwrap();
        assert_eq!(
            names(&files, &project),
            vec!["Cargo.toml", "src/lib.rs", "build.sh", "README.md"]
        );
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                !text.contains("@NAME@")
                    && !text.contains("@SDK@")
                    && !text.contains("@DIR@")
                    && !text.contains("@CRATE@"),
                "placeholder left in {}",
                file.display()
            );
        }
        let cargo = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"load-watch\""), "{cargo}");
        let sdk = default_sdk_path().join("package");
        assert!(
            cargo.contains(&format!(
                "komlog-package = {{ path = \"{}\" }}",
                sdk.display()
            )),
            "{cargo}"
        );
        assert!(sdk.join("Cargo.toml").is_file(), "{}", sdk.display());
        let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_package!(Collector)"), "{lib}");
        assert!(lib.contains("\"load-watch.{name}\""), "{lib}");
        let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
        assert!(build.contains("release/load_watch.wasm"), "{build}");
        assert!(build.contains(" load-watch.wasm"), "{build}");
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        assert!(
            readme.contains(&format!(
                "- package:\n    install: {}/load-watch.wasm\n",
                project.canonicalize().unwrap().display()
            )),
            "{readme}"
        );
        assert!(readme.contains("grants: {dirs: [/proc]}"), "{readme}");
    }

    #[test]
    fn packages_in_other_languages_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, shown) in [
            (Language::Python, "Python"),
            (Language::Js, "JavaScript"),
            (Language::C, "C"),
        ] {
            let project = dir.path().join("p");
            let err = write_package(lang, "p", &project, None).unwrap_err();
            assert_eq!(err.status, 2);
            assert_eq!(
                err.message,
                format!(
                    "packages are written in Rust only: the package world (wit/package.wit) \
                     has a Rust SDK (komlog-package) and none for {shown}; use --lang rust"
                )
            );
            assert!(!project.exists(), "{lang:?}");
        }
        let err = write_package(Language::Rust, "Bad", &dir.path().join("Bad"), None).unwrap_err();
        assert!(
            err.message.starts_with("package name `Bad`"),
            "{}",
            err.message
        );
        let err = write_package(
            Language::Rust,
            "p",
            &dir.path().join("p"),
            Some(Path::new("/nonexistent/sdk")),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "the Rust SDK is not at /nonexistent/sdk: pass --sdk <komlogd source>/guest-sdk"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_existing_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("taken");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(project.join("keep.txt"), "mine").unwrap();
        let err = write_impulse(Language::Python, "taken", &project, None).unwrap_err();
        assert_eq!(err.status, 2);
        assert_eq!(
            err.message,
            format!(
                "{} already exists; choose another name or remove it",
                project.display()
            )
        );
        assert_eq!(std::fs::read_dir(&project).unwrap().count(), 1);
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "Upper",
            "9lives",
            "has space",
            "dot.ted",
            "../escape",
            &"x".repeat(65),
        ] {
            let err = write_impulse(Language::C, bad, &dir.path().join("p"), None).unwrap_err();
            assert_eq!(err.status, 2, "{bad}");
            assert!(
                err.message.starts_with(&format!("impulse name `{bad}`")),
                "{}",
                err.message
            );
        }
        assert!(!dir.path().join("p").exists());
    }

    #[test]
    fn a_missing_rust_sdk_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_impulse(
            Language::Rust,
            "r",
            &dir.path().join("r"),
            Some(Path::new("/nonexistent/sdk")),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "the Rust SDK is not at /nonexistent/sdk: pass --sdk <komlogd source>/guest-sdk"
        );
        assert!(!dir.path().join("r").exists());
    }
}
