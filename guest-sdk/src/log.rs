//! Lines in the agent's log, through the `komlog:impulse/host.log` import.
//!
//! komlogd tags each line with the impulse's name and truncates lines longer
//! than 4096 bytes. Off wasm (native unit tests) there is no host: lines go
//! to stderr as `[komlog-guest <level>] <message>` instead.

/// Severity of a log line.
pub use crate::bindings::komlog::impulse::host::Level;

/// Write `message` to the agent's log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::komlog::impulse::host::log(level, message);

    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{}", native_line(level, message));
}

/// Off wasm, the stderr line for `message` at `level`.
#[cfg(not(target_arch = "wasm32"))]
fn native_line(level: Level, message: &str) -> String {
    format!("[komlog-guest {}] {message}", level_name(level))
}

/// The lowercase WIT name of `level` (`debug`, `info`, `warn`, `error`).
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Log `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Log `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Log `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Log `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_a_line_names_its_level() {
        assert_eq!(native_line(Level::Debug, "d"), "[komlog-guest debug] d");
        assert_eq!(native_line(Level::Info, "i"), "[komlog-guest info] i");
        assert_eq!(
            native_line(Level::Warn, "two words"),
            "[komlog-guest warn] two words"
        );
        assert_eq!(native_line(Level::Error, "e"), "[komlog-guest error] e");
        assert_eq!(native_line(Level::Info, ""), "[komlog-guest info] ");
    }

    #[test]
    fn level_names_match_the_wit() {
        assert_eq!(level_name(Level::Debug), "debug");
        assert_eq!(level_name(Level::Info), "info");
        assert_eq!(level_name(Level::Warn), "warn");
        assert_eq!(level_name(Level::Error), "error");
    }
}
