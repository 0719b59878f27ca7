//! `komlogd new impulse --lang rust|python|js|c NAME`: writes a buildable
//! starting project for an impulse in one language, with its `build.sh` and a
//! README giving the build command and the komlogd.yaml lines.
//!
//! The templates live in `host/templates/<lang>/` and are embedded in the
//! binary; the Python and JavaScript SDK modules and the WIT contract are
//! embedded from the source tree and copied into the project.

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
                "needs componentize-py 0.25.1 (pip install componentize-py==0.25.1)"
            }
            Language::Js => "needs node and npm; installs componentize-js on first use",
            Language::C => {
                "needs clang, lld, wasi-libc and komlog-c (cargo install --path <komlogd source>/guest-sdk/c)"
            }
        }
    }
}

const IMPULSE_WIT: &str = include_str!("../../../wit/impulse.wit");
const README: &str = include_str!("../../templates/README.md");

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
    }
}

/// Check an impulse name: it names a directory, a crate, a file and a uri level.
pub fn check_name(name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if starts_well && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "impulse name `{name}`: use 1 to 64 characters a-z, 0-9, `_` or `-`, starting with a letter"
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
    check_name(name)?;
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
    if lang == Language::Rust && !sdk_path.join("Cargo.toml").is_file() {
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
            .replace("@DIR@", &shown_dir)
    };
    let mut written = Vec::new();
    let files =
        template_files(lang)
            .into_iter()
            .chain(std::iter::once(("README.md", README, false)));
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
                vec!["Cargo.toml", "src/lib.rs", "build.sh", "README.md"],
            ),
            (
                Language::Python,
                vec![
                    "app.py",
                    "komlog_impulse.py",
                    "wit/impulse.wit",
                    "build.sh",
                    "README.md",
                ],
            ),
            (
                Language::Js,
                vec![
                    "app.js",
                    "komlog_impulse.js",
                    "package.json",
                    "wit/impulse.wit",
                    "build.sh",
                    "README.md",
                ],
            ),
            (Language::C, vec!["impulse.c", "build.sh", "README.md"]),
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
