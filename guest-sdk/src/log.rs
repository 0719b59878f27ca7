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
    eprintln!("[komlog-guest {}] {message}", level_name(level));
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
    fn logging_off_wasm_does_not_panic() {
        debug("d");
        info("i");
        warn("w");
        error("e");
        log(Level::Info, "");
    }

    #[test]
    fn level_names_match_the_wit() {
        assert_eq!(level_name(Level::Debug), "debug");
        assert_eq!(level_name(Level::Info), "info");
        assert_eq!(level_name(Level::Warn), "warn");
        assert_eq!(level_name(Level::Error), "error");
    }
}
