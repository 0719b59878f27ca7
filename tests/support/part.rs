//! Long scenario tests in named parts: a failure names the part it happened
//! in before its message, so a red test says which step broke.

/// Run one part of a scenario: a panic inside is re-raised as
/// ``part `NAME` failed: MESSAGE``.
pub fn part<T>(name: &str, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let message = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("part `{name}` failed: {message}");
        }
    }
}
