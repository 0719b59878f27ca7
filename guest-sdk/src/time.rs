//! Durations and timestamp arithmetic in the contract's unit, microseconds.
//!
//! WIT `duration`s are `u64` microseconds and `timestamp`s are `i64`
//! microseconds since the Unix epoch (UTC). The constants and functions here
//! saturate instead of overflowing.

/// One microsecond.
pub const MICROSECOND: u64 = 1;
/// One millisecond in microseconds.
pub const MILLISECOND: u64 = 1_000;
/// One second in microseconds.
pub const SECOND: u64 = 1_000_000;
/// One minute in microseconds.
pub const MINUTE: u64 = 60 * SECOND;
/// One hour in microseconds.
pub const HOUR: u64 = 60 * MINUTE;
/// One day (24 hours) in microseconds.
pub const DAY: u64 = 24 * HOUR;

/// `n` milliseconds in microseconds (saturating).
pub const fn millis(n: u64) -> u64 {
    n.saturating_mul(MILLISECOND)
}

/// `n` seconds in microseconds (saturating).
pub const fn seconds(n: u64) -> u64 {
    n.saturating_mul(SECOND)
}

/// `n` minutes in microseconds (saturating).
pub const fn minutes(n: u64) -> u64 {
    n.saturating_mul(MINUTE)
}

/// `n` hours in microseconds (saturating).
pub const fn hours(n: u64) -> u64 {
    n.saturating_mul(HOUR)
}

/// `n` days in microseconds (saturating).
pub const fn days(n: u64) -> u64 {
    n.saturating_mul(DAY)
}

/// The timestamp `delta` before `ts`, saturating at `i64::MIN`.
///
/// `before(ctx.ts, HOUR)` is the exclusive lower bound of a one-hour window
/// ending at the fire: the window holds samples with `before(ts, HOUR) < t <= ts`.
pub const fn before(ts: i64, delta: u64) -> i64 {
    let v = ts as i128 - delta as i128;
    if v < i64::MIN as i128 {
        i64::MIN
    } else {
        v as i64
    }
}

/// The timestamp `delta` after `ts`, saturating at `i64::MAX`.
pub const fn after(ts: i64, delta: u64) -> i64 {
    let v = ts as i128 + delta as i128;
    if v > i64::MAX as i128 {
        i64::MAX
    } else {
        v as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(SECOND, 1_000_000);
        assert_eq!(MINUTE, 60_000_000);
        assert_eq!(HOUR, 3_600_000_000);
        assert_eq!(DAY, 86_400_000_000);
        assert_eq!(minutes(90), hours(1) + minutes(30));
        assert_eq!(days(2), hours(48));
        assert_eq!(seconds(3), millis(3000));
        assert_eq!(hours(u64::MAX), u64::MAX);
    }

    #[test]
    fn before_and_after_saturate() {
        assert_eq!(before(10 * HOUR as i64, HOUR), 9 * HOUR as i64);
        assert_eq!(before(-5, 10), -15);
        assert_eq!(before(i64::MIN + 1, 5), i64::MIN);
        assert_eq!(before(i64::MAX, u64::MAX), i64::MIN);
        assert_eq!(before(i64::MAX, i64::MAX as u64 + 1), -1);
        assert_eq!(before(0, u64::MAX), i64::MIN);
        assert_eq!(after(1, HOUR), 1 + HOUR as i64);
        assert_eq!(after(i64::MAX - 1, 5), i64::MAX);
        assert_eq!(after(i64::MIN, u64::MAX), i64::MAX);
    }
}
