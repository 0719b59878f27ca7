//! Whether a job's program can be run, before it runs: the file `exec` would
//! start for it, found as the runner finds it (a path as the configuration
//! resolved it; a bare name in `PATH`), and whether that file is executable.
//! `komlogd check` and the agent's start use it to name a job that cannot run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::JobConfig;

/// The search path used when `PATH` is not set (as `execvp` does).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The file that runs for `job`, or why none would: a path that does not
/// exist, is not a regular file, or has no executable bit; a bare name not
/// found as an executable file in any directory of `PATH`. The message names
/// the job's file and line, its uri and its command.
pub fn find_program(job: &JobConfig) -> Result<PathBuf, String> {
    find_in(job, std::env::var_os("PATH").as_deref())
}

fn find_in(job: &JobConfig, search: Option<&std::ffi::OsStr>) -> Result<PathBuf, String> {
    let fail = |why: String| {
        format!(
            "{}:{}: job {}: cannot run {:?}: {why}",
            job.file.display(),
            job.line,
            job.uri,
            job.command
        )
    };
    let Some(program) = job.argv.first() else {
        return Err(fail("it has no program to run".into()));
    };
    if program.contains('/') {
        let path = Path::new(program);
        return match executable(path) {
            Ok(()) => Ok(path.to_path_buf()),
            Err(why) => Err(fail(format!("{}: {why}", path.display()))),
        };
    }
    let search = search.unwrap_or(DEFAULT_PATH.as_ref());
    let mut not_executable = None;
    for dir in std::env::split_paths(search) {
        // An empty entry is the working directory, as for `execvp`.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(why) if candidate.exists() => {
                not_executable.get_or_insert(format!("{}: {why}", candidate.display()));
            }
            Err(_) => {}
        }
    }
    let search = search.to_string_lossy();
    Err(fail(match not_executable {
        Some(found) => format!("`{program}` was found in PATH ({search}) only as {found}"),
        None => format!("`{program}` is not found in PATH ({search})"),
    }))
}

/// Whether `path` is a regular file with an executable bit.
fn executable(path: &Path) -> Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no such file".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "not executable (mode {:o}): add the executable bit (chmod +x)",
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(command: &str, argv: &[&str]) -> JobConfig {
        JobConfig {
            line: 4,
            file: PathBuf::from("komlogd.yaml"),
            uri: "host.x".into(),
            command: command.into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            enabled: true,
            schedules: vec!["* * * * *".into()],
            timeout_us: None,
            supplies: Vec::new(),
        }
    }

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn bare_names_are_looked_up_in_path() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        file(a.path(), "tool", 0o644);
        let found = file(b.path(), "tool", 0o755);
        let search = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(
            find_in(&job("tool -x", &["tool", "-x"]), Some(&search)),
            Ok(found)
        );
        let only_a = a.path().as_os_str();
        assert_eq!(
            find_in(&job("tool", &["tool"]), Some(only_a)),
            Err(format!(
                "komlogd.yaml:4: job host.x: cannot run \"tool\": `tool` was found in PATH ({}) only as {}: not executable (mode 644): add the executable bit (chmod +x)",
                a.path().display(),
                a.path().join("tool").display()
            ))
        );
        assert_eq!(
            find_in(&job("nosuch", &["nosuch"]), Some(only_a)),
            Err(format!(
                "komlogd.yaml:4: job host.x: cannot run \"nosuch\": `nosuch` is not found in PATH ({})",
                a.path().display()
            ))
        );
    }

    #[test]
    fn paths_must_be_executable_files() {
        let dir = tempfile::tempdir().unwrap();
        let script = file(dir.path(), "run.sh", 0o700);
        let plain = file(dir.path(), "plain.sh", 0o600);
        let s = script.display().to_string();
        assert_eq!(find_in(&job("./run.sh", &[&s]), None), Ok(script.clone()));
        let p = plain.display().to_string();
        assert_eq!(
            find_in(&job("./plain.sh", &[&p]), None),
            Err(format!(
                "komlogd.yaml:4: job host.x: cannot run \"./plain.sh\": {p}: not executable (mode 600): add the executable bit (chmod +x)"
            ))
        );
        let gone = dir.path().join("gone.sh").display().to_string();
        assert_eq!(
            find_in(&job("./gone.sh", &[&gone]), None),
            Err(format!(
                "komlogd.yaml:4: job host.x: cannot run \"./gone.sh\": {gone}: no such file"
            ))
        );
        let d = dir.path().display().to_string();
        assert!(
            find_in(&job("x", &[&d]), None)
                .unwrap_err()
                .ends_with(": not a regular file")
        );
    }
}
