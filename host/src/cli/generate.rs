//! `komlogd completions SHELL` and `komlogd manpage`: shell completion scripts and
//! the roff manual page, generated from the command-line definition, so an
//! installed binary can produce its own.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Failure};

/// Print the completion script for `shell` on stdout.
pub(super) fn completions(shell: Shell) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "komlogd", &mut out);
    print(&out)
}

/// Print the manual page (roff, section 1) on stdout; with `dir`, write it and
/// one page per subcommand (`komlogd-query.1`, ...) there and list them.
pub(super) fn manpage(dir: Option<&Path>) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::runtime(format!("cannot write the manual page: {e}"));
    let Some(dir) = dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .map_err(failed)?;
        return print(&out);
    };
    let failed = |e: std::io::Error| {
        Failure::runtime(format!(
            "cannot write the manual pages to {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)?;
    let mut pages = Vec::new();
    page_names(&Cli::command(), "", &mut pages);
    pages.sort();
    let list: String = pages.iter().map(|p| format!("{p}\n")).collect();
    print(list.as_bytes())
}

/// The file names `clap_mangen::generate_to` gives `cmd` and its subcommands.
fn page_names(cmd: &clap::Command, parent: &str, out: &mut Vec<String>) {
    let name = if parent.is_empty() {
        cmd.get_name().to_owned()
    } else {
        format!("{parent}-{}", cmd.get_name())
    };
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        page_names(sub, &name, out);
    }
    out.push(format!("{name}.1"));
}

fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::runtime(format!("cannot write to stdout: {e}")))
}
