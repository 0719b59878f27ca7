//! What guests write to the agent's log (`komlog:impulse/host.log`): each line
//! cut at [`MAX_LINE_BYTES`], and at most [`MAX_LINES_PER_CALL`] lines a call;
//! the rest of a call's lines are counted and reported in one line when the
//! call ends, so a chatty or looping guest cannot flood the log.

use tracing::Level;

use super::bindings::Level as GuestLevel;

/// Longest log line accepted from a guest; longer lines are cut (marked `…`).
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines one call may write; the rest are counted, not written.
pub const MAX_LINES_PER_CALL: u32 = 100;

impl From<GuestLevel> for Level {
    fn from(level: GuestLevel) -> Level {
        match level {
            GuestLevel::Debug => Level::DEBUG,
            GuestLevel::Info => Level::INFO,
            GuestLevel::Warn => Level::WARN,
            GuestLevel::Error => Level::ERROR,
        }
    }
}

/// Who is writing: an impulse or a package (the field the line is tagged with).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer {
    /// `impulse = <name>`.
    Impulse,
    /// `package = <name>`.
    Package,
}

/// The log lines of one guest instance's call in progress.
#[derive(Debug)]
pub(crate) struct GuestLog {
    writer: Writer,
    written: u32,
    suppressed: u64,
}

impl GuestLog {
    /// The log of one instance.
    pub(crate) fn new(writer: Writer) -> Self {
        GuestLog {
            writer,
            written: 0,
            suppressed: 0,
        }
    }

    /// Write one of the guest's lines, unless its level is off or the call has
    /// written its share.
    pub(crate) fn write(&mut self, name: &str, level: Level, mut message: String) {
        if !enabled(level) {
            return;
        }
        if self.written >= MAX_LINES_PER_CALL {
            self.suppressed += 1;
            return;
        }
        self.written += 1;
        truncate(&mut message);
        emit(self.writer, name, level, &message);
    }

    /// The call ended: report what was held back, and start counting afresh.
    pub(crate) fn end_call(&mut self, name: &str) {
        if self.suppressed > 0 {
            let message = format!(
                "{} more log lines of this call not written (at most {MAX_LINES_PER_CALL} a call)",
                self.suppressed
            );
            emit(self.writer, name, Level::WARN, &message);
        }
        self.written = 0;
        self.suppressed = 0;
    }
}

fn enabled(level: Level) -> bool {
    match level {
        Level::TRACE => tracing::enabled!(Level::TRACE),
        Level::DEBUG => tracing::enabled!(Level::DEBUG),
        Level::INFO => tracing::enabled!(Level::INFO),
        Level::WARN => tracing::enabled!(Level::WARN),
        Level::ERROR => tracing::enabled!(Level::ERROR),
    }
}

fn emit(writer: Writer, name: &str, level: Level, message: &str) {
    match (writer, level) {
        (Writer::Impulse, Level::ERROR) => tracing::error!(impulse = name, "{message}"),
        (Writer::Impulse, Level::WARN) => tracing::warn!(impulse = name, "{message}"),
        (Writer::Impulse, Level::INFO) => tracing::info!(impulse = name, "{message}"),
        (Writer::Impulse, _) => tracing::debug!(impulse = name, "{message}"),
        (Writer::Package, Level::ERROR) => tracing::error!(package = name, "{message}"),
        (Writer::Package, Level::WARN) => tracing::warn!(package = name, "{message}"),
        (Writer::Package, Level::INFO) => tracing::info!(package = name, "{message}"),
        (Writer::Package, _) => tracing::debug!(package = name, "{message}"),
    }
}

/// Cut a line to [`MAX_LINE_BYTES`] at a character boundary, marking the cut with `…`.
pub(crate) fn truncate(message: &mut String) {
    if message.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary_and_marked() {
        let mut short = "é".repeat(10);
        truncate(&mut short);
        assert_eq!(short, "é".repeat(10));
        // 'é' is two bytes: the limit falls inside one, so the cut goes before it.
        let mut long = format!("a{}", "é".repeat(MAX_LINE_BYTES));
        truncate(&mut long);
        assert!(long.ends_with('…'));
        assert_eq!(long.len(), MAX_LINE_BYTES - 1 + '…'.len_utf8());
    }
}
