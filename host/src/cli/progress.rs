//! What the command line says while it works: while a module compiles (a
//! large guest, a Python or JavaScript impulse, takes seconds to a minute to
//! compile the first time, after which it is loaded from the compiled cache),
//! and the progress bar of long exports and imports ([`bar`]).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use crate::agent::AgentOptions;
use crate::engine::{CompileNotice, CompileProgress};

/// Agent options whose compile notice prints to stderr: on a terminal one line
/// that counts the seconds, elsewhere a line at the start, one every five
/// seconds and one at the end.
pub fn agent_options() -> AgentOptions {
    AgentOptions {
        compile_notice: Some(stderr_notice(std::io::stderr().is_terminal())),
        ..AgentOptions::default()
    }
}

/// A progress bar on stderr counting samples, out of `len` when known (a
/// spinner otherwise); hidden when stderr is not a terminal. `what` leads it.
pub fn bar(len: Option<u64>, what: &'static str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let template = match len {
        Some(_) => {
            "komlogd: {msg} [{bar:30}] {human_pos}/{human_len} samples, {elapsed}, {eta} left"
        }
        None => "komlogd: {msg} {spinner} {human_pos} samples, {elapsed}",
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what)
}

fn stderr_notice(terminal: bool) -> CompileNotice {
    CompileNotice(Arc::new(move |path: &Path, progress: CompileProgress| {
        let line = notice_text(path, progress, terminal);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }))
}

/// The text printed for one notice (terminal: rewritten in place with `\r`).
fn notice_text(path: &Path, progress: CompileProgress, terminal: bool) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let head = format!("komlogd: compiling {name} (first time, cached afterwards)…");
    match (progress, terminal) {
        (CompileProgress::Started, true) => format!("{head}\r"),
        (CompileProgress::Started, false) => format!("{head}\n"),
        (CompileProgress::Running(t), true) => format!("{head} {} s\r", t.as_secs()),
        (CompileProgress::Running(t), false) => {
            format!("komlogd: still compiling {name}: {} s\n", t.as_secs())
        }
        (CompileProgress::Finished(t), true) => {
            format!("{head} done in {:.1} s\n", t.as_secs_f64())
        }
        (CompileProgress::Finished(t), false) => {
            format!("komlogd: compiled {name} in {:.1} s\n", t.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_the_file_and_the_elapsed_time() {
        let path = Path::new("/x/impulses/summary.wasm");
        assert_eq!(
            notice_text(path, CompileProgress::Started, false),
            "komlogd: compiling summary.wasm (first time, cached afterwards)…\n"
        );
        assert_eq!(
            notice_text(
                path,
                CompileProgress::Running(Duration::from_secs(10)),
                false
            ),
            "komlogd: still compiling summary.wasm: 10 s\n"
        );
        assert_eq!(
            notice_text(
                path,
                CompileProgress::Finished(Duration::from_millis(12_340)),
                false
            ),
            "komlogd: compiled summary.wasm in 12.3 s\n"
        );
        // On a terminal the line is rewritten until it ends.
        assert!(
            notice_text(path, CompileProgress::Running(Duration::from_secs(5)), true)
                .ends_with(" 5 s\r")
        );
    }
}
