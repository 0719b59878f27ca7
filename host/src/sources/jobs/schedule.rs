//! When a job runs next: the earliest minute, strictly after a given instant, that
//! one of its cron schedules matches, read in a given time zone.
//!
//! The scheduler calls [`next_fire`] with [`LocalZone`], the machine's local time
//! zone, so schedules follow local wall-clock time. Across daylight saving time
//! changes it does what `croner` 4 does (the rules of Vixie cron):
//!
//! * **Clocks go forward** (a wall-clock hour does not exist): a *fixed-time*
//!   schedule (a single minute and a single hour, such as `30 2 * * *`) whose time
//!   falls in the gap runs once, at the first instant after the gap (03:00); an
//!   *interval* schedule (a `*`, a step, a range or a list in the minute or hour,
//!   such as `*/30 * * * *`) skips the minutes that do not exist.
//! * **Clocks go back** (a wall-clock hour happens twice): a fixed-time schedule
//!   runs once, in the first pass; an interval schedule runs in both passes.
//!
//! [`LocalZone`] exists because `chrono::Local` (0.4.45) resolves wall-clock times
//! wrongly at these changes: it gives the two instants of a repeated time in the
//! wrong order (chrono issue #1625) and treats the first missing minute as existing,
//! which made the same instant fire twice at the spring change.

use chrono::{
    DateTime, FixedOffset, Local, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta,
    TimeZone, Timelike,
};
use croner::Cron;

/// The first instant strictly after `after` at which any of `schedules` matches,
/// with the wall clock read in `after`'s time zone; `None` if none ever matches
/// again (such as `0 0 30 2 *`, or when `schedules` is empty).
///
/// The answer is always on a whole minute (seconds and sub-seconds zero). For the
/// machine's local time, pass a `DateTime<`[`LocalZone`]`>`, not a `DateTime<Local>`
/// (see the module documentation).
pub fn next_fire<Tz: TimeZone>(schedules: &[Cron], after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    // Search from the whole second: croner keeps sub-seconds, and a match must
    // fall exactly on a minute boundary. Dropping them cannot let an earlier
    // match through: matches are whole seconds, and the search excludes its start.
    let start = after.with_nanosecond(0).unwrap_or_else(|| after.clone());
    schedules
        .iter()
        .filter_map(|cron| next_after(cron, &start, after))
        .min()
}

/// `cron`'s first match after `start` that is also strictly after `after`, with
/// the offset that is really in force then. (With a correct time zone the first
/// match already is; the bounded retry guards against one that is not.)
fn next_after<Tz: TimeZone>(
    cron: &Cron,
    start: &DateTime<Tz>,
    after: &DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    let mut from = start.clone();
    for _ in 0..3 {
        let found = cron.find_next_occurrence(&from, false).ok()?;
        if found > *after {
            return Some(after.timezone().from_utc_datetime(&found.naive_utc()));
        }
        from = found;
    }
    None
}

/// The machine's local time zone (the `TZ` variable, else `/etc/localtime`), read
/// through `chrono::Local`'s UTC-to-local conversion, which is right, while wall-clock
/// times are resolved here: a time that does not exist gives
/// [`MappedLocalTime::None`], and one that happens twice gives
/// [`MappedLocalTime::Ambiguous`] with the earlier instant first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalZone;

impl TimeZone for LocalZone {
    type Offset = FixedOffset;

    fn from_offset(_offset: &FixedOffset) -> Self {
        LocalZone
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<FixedOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<FixedOffset> {
        // The offsets in force a day before and a day after (reading `local` as if
        // it were UTC) are the candidates; a candidate is right when the instant it
        // gives has that very offset.
        let day = TimeDelta::days(1);
        let mut found: Vec<(NaiveDateTime, FixedOffset)> = Vec::with_capacity(2);
        for probe in [local.checked_sub_signed(day), local.checked_add_signed(day)]
            .into_iter()
            .flatten()
        {
            let offset = Local.offset_from_utc_datetime(&probe);
            if found.iter().any(|(_, o)| *o == offset) {
                continue;
            }
            let shift = TimeDelta::seconds(i64::from(offset.local_minus_utc()));
            let Some(utc) = local.checked_sub_signed(shift) else {
                continue;
            };
            if Local.offset_from_utc_datetime(&utc) == offset {
                found.push((utc, offset));
            }
        }
        found.sort_by_key(|(utc, _)| *utc);
        match found[..] {
            [] => MappedLocalTime::None,
            [(_, offset)] => MappedLocalTime::Single(offset),
            [(_, earlier), (_, later), ..] => MappedLocalTime::Ambiguous(earlier, later),
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
        Local.offset_from_utc_datetime(utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cron;
    use chrono::{Datelike, FixedOffset};
    use chrono::{Utc, Weekday};

    fn crons(exprs: &[&str]) -> Vec<Cron> {
        exprs.iter().map(|e| parse_cron(e).unwrap()).collect()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// The next `n` fire times from `start`, each as RFC 3339.
    fn fires(exprs: &[&str], start: &str, n: usize) -> Vec<String> {
        let crons = crons(exprs);
        let mut at = utc(start);
        let mut out = Vec::new();
        for _ in 0..n {
            at = next_fire(&crons, &at).expect("a next fire time");
            out.push(at.to_rfc3339());
        }
        out
    }

    #[test]
    fn next_fire_table() {
        // 2026-01-01 is a Thursday. Times are UTC; the zone is tested below.
        let cases: &[(&[&str], &str, &[&str])] = &[
            (
                &["*/10 * * * *"],
                "2026-01-01T00:00:30Z",
                &[
                    "2026-01-01T00:10:00+00:00",
                    "2026-01-01T00:20:00+00:00",
                    "2026-01-01T00:30:00+00:00",
                ],
            ),
            // Strictly after: a start on a matching minute is not returned.
            (
                &["*/10 * * * *"],
                "2026-01-01T00:10:00Z",
                &["2026-01-01T00:20:00+00:00"],
            ),
            (
                &["1-10/2 * * * *"],
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-01T00:01:00+00:00",
                    "2026-01-01T00:03:00+00:00",
                    "2026-01-01T00:05:00+00:00",
                    "2026-01-01T00:07:00+00:00",
                    "2026-01-01T00:09:00+00:00",
                    "2026-01-01T01:01:00+00:00",
                ],
            ),
            (
                &["0,30 * * * *"],
                "2026-01-01T23:15:00Z",
                &[
                    "2026-01-01T23:30:00+00:00",
                    "2026-01-02T00:00:00+00:00",
                    "2026-01-02T00:30:00+00:00",
                ],
            ),
            // Sunday is 0 and 7: 2026-01-04 and 2026-01-11 are Sundays.
            (
                &["0 0 * * 0"],
                "2026-01-01T00:00:30Z",
                &["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
            ),
            (
                &["0 0 * * 7"],
                "2026-01-01T00:00:30Z",
                &["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
            ),
            // Monday to Friday: Thu 1, Fri 2, then Mon 5.
            (
                &["0 9 * * 1-5"],
                "2026-01-01T00:00:30Z",
                &[
                    "2026-01-01T09:00:00+00:00",
                    "2026-01-02T09:00:00+00:00",
                    "2026-01-05T09:00:00+00:00",
                ],
            ),
            // POSIX: day 1 or 15 OR a Wednesday (7, 14 are Wednesdays; 15 a Thursday).
            (
                &["0 0 1,15 * 3"],
                "2026-01-01T00:00:30Z",
                &[
                    "2026-01-07T00:00:00+00:00",
                    "2026-01-14T00:00:00+00:00",
                    "2026-01-15T00:00:00+00:00",
                    "2026-01-21T00:00:00+00:00",
                ],
            ),
            // The 31st skips February, April and June.
            (
                &["0 0 31 * *"],
                "2026-01-31T00:00:00Z",
                &[
                    "2026-03-31T00:00:00+00:00",
                    "2026-05-31T00:00:00+00:00",
                    "2026-07-31T00:00:00+00:00",
                ],
            ),
            // 29 February: only in leap years.
            (
                &["0 0 29 2 *"],
                "2026-01-01T00:00:00Z",
                &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
            ),
            // Several schedules: the earliest of them, each time.
            (
                &["0 12 * * *", "*/20 * * * *", "5 0 * * *"],
                "2026-01-01T00:00:30Z",
                &[
                    "2026-01-01T00:05:00+00:00",
                    "2026-01-01T00:20:00+00:00",
                    "2026-01-01T00:40:00+00:00",
                ],
            ),
            (
                &["0 12 * * *", "0 6 * * *"],
                "2026-01-01T07:00:00Z",
                &["2026-01-01T12:00:00+00:00", "2026-01-02T06:00:00+00:00"],
            ),
            // Macros.
            (
                &["@hourly"],
                "2026-01-01T00:59:59Z",
                &["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"],
            ),
            (
                &["@daily"],
                "2026-01-01T00:00:00Z",
                &["2026-01-02T00:00:00+00:00"],
            ),
        ];
        for (exprs, start, expected) in cases {
            assert_eq!(
                fires(exprs, start, expected.len()),
                *expected,
                "{exprs:?} after {start}"
            );
        }
    }

    #[test]
    fn sub_seconds_and_never() {
        // A start with sub-seconds still gives whole minutes.
        let after = utc("2026-01-01T00:00:59.999999Z");
        let next = next_fire(&crons(&["* * * * *"]), &after).unwrap();
        assert_eq!(next, utc("2026-01-01T00:01:00Z"));
        assert_eq!(next.timestamp_subsec_nanos(), 0);
        // No match ever, or no schedule at all.
        assert_eq!(next_fire(&crons(&["0 0 30 2 *"]), &after), None);
        assert_eq!(next_fire(&[], &after), None);
        // One impossible schedule does not hide a possible one.
        assert_eq!(
            next_fire(&crons(&["0 0 30 2 *", "0 1 * * *"]), &after),
            Some(utc("2026-01-01T01:00:00Z"))
        );
    }

    #[test]
    fn the_wall_clock_is_read_in_the_given_zone() {
        // 09:00 on weekdays at UTC+2 is 07:00 UTC.
        let zone = FixedOffset::east_opt(2 * 3600).unwrap();
        let after = utc("2026-01-01T00:00:00Z").with_timezone(&zone);
        let next = next_fire(&crons(&["0 9 * * 1-5"]), &after).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-01-01T09:00:00+02:00");
        assert_eq!(next.to_utc(), utc("2026-01-01T07:00:00Z"));
        // The day of week is the zone's too: 23:30 UTC on Saturday 3 Jan is Sunday at UTC+2.
        let after = utc("2026-01-03T21:00:00Z").with_timezone(&zone);
        let next = next_fire(&crons(&["30 1 * * 0"]), &after).unwrap();
        assert_eq!(next.weekday(), Weekday::Sun);
        assert_eq!(next.to_utc(), utc("2026-01-03T23:30:00Z"));
    }

    /// Set in the child process that runs the local-zone checks.
    const TZ_CHILD: &str = "KOMLOGD_JOBS_TZ_CHILD";
    /// US Eastern as a POSIX TZ rule (needs no tz database): UTC-5, daylight saving
    /// (UTC-4) from the second Sunday of March to the first Sunday of November.
    const EASTERN: &str = "EST5EDT,M3.2.0,M11.1.0";

    /// `chrono::Local` reads `TZ` once per thread, and changing the environment of
    /// the running test process is unsound, so the checks run in a child process:
    /// this test binary, running only this test, with `TZ` set.
    #[test]
    fn schedules_follow_the_local_zone_and_its_dst() {
        if std::env::var_os(TZ_CHILD).is_some() {
            local_zone_checks();
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let name = "sources::jobs::schedule::tests::schedules_follow_the_local_zone_and_its_dst";
        let out = std::process::Command::new(exe)
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env("TZ", EASTERN)
            .env(TZ_CHILD, "1")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{stderr}"
        );
    }

    fn local_zone_checks() {
        let local = |y, mo, d, h, mi| {
            NaiveDate::from_ymd_opt(y, mo, d)
                .and_then(|day| day.and_hms_opt(h, mi, 0))
                .map(|t| LocalZone.from_local_datetime(&t).map(|t| t.to_rfc3339()))
                .unwrap()
        };
        // Wall-clock times around the changes (where chrono::Local 0.4.45 is wrong).
        assert_eq!(
            local(2026, 3, 8, 1, 59),
            MappedLocalTime::Single("2026-03-08T01:59:00-05:00".into())
        );
        assert_eq!(local(2026, 3, 8, 2, 0), MappedLocalTime::None);
        assert_eq!(local(2026, 3, 8, 2, 30), MappedLocalTime::None);
        assert_eq!(
            local(2026, 3, 8, 3, 0),
            MappedLocalTime::Single("2026-03-08T03:00:00-04:00".into())
        );
        assert_eq!(
            local(2026, 11, 1, 1, 0),
            MappedLocalTime::Ambiguous(
                "2026-11-01T01:00:00-04:00".into(),
                "2026-11-01T01:00:00-05:00".into()
            )
        );
        assert_eq!(
            local(2026, 11, 1, 2, 0),
            MappedLocalTime::Single("2026-11-01T02:00:00-05:00".into())
        );
        assert_eq!(
            local(2026, 1, 1, 9, 0),
            MappedLocalTime::Single("2026-01-01T09:00:00-05:00".into())
        );

        let next = |exprs: &[&str], after_utc: &str| -> String {
            let after = utc(after_utc).with_timezone(&LocalZone);
            let next = next_fire(&crons(exprs), &after).expect("a next fire time");
            next.to_utc().to_rfc3339()
        };
        // Winter (UTC-5): 09:00 local is 14:00 UTC; summer (UTC-4): 13:00 UTC.
        assert_eq!(
            next(&["0 9 * * *"], "2026-01-01T00:00:00Z"),
            "2026-01-01T14:00:00+00:00"
        );
        assert_eq!(
            next(&["0 9 * * *"], "2026-07-01T00:00:00Z"),
            "2026-07-01T13:00:00+00:00"
        );
        // The local day, not the UTC day: 02:00 UTC Friday 2 Jan is 21:00 Thursday locally.
        assert_eq!(
            next(&["0 22 * * 4"], "2026-01-02T02:00:00Z"),
            "2026-01-02T03:00:00+00:00"
        );

        // Spring forward, Sunday 8 March 2026: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        // A fixed time in the gap runs once, at 03:00 EDT.
        assert_eq!(
            next(&["30 2 * * *"], "2026-03-08T06:00:00Z"),
            "2026-03-08T07:00:00+00:00"
        );
        // An interval schedule skips the missing minutes: 01:30 EST, then 03:00 EDT.
        let mut seen = Vec::new();
        let mut at = utc("2026-03-08T06:00:00Z").with_timezone(&LocalZone);
        for _ in 0..3 {
            at = next_fire(&crons(&["*/30 * * * *"]), &at).unwrap();
            seen.push(at.to_rfc3339());
        }
        assert_eq!(
            seen,
            [
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00"
            ]
        );

        // Fall back, Sunday 1 November 2026: 02:00 EDT goes back to 01:00 EST,
        // so 01:00-01:59 happens twice (05:00-05:59 and 06:00-06:59 UTC).
        // A fixed time in the repeated hour runs once, in the first pass.
        assert_eq!(
            next(&["30 1 * * *"], "2026-11-01T04:00:00Z"),
            "2026-11-01T05:30:00+00:00"
        );
        assert_eq!(
            next(&["30 1 * * *"], "2026-11-01T05:30:00Z"),
            "2026-11-02T06:30:00+00:00"
        );
        // An interval schedule runs in both passes.
        let mut seen = Vec::new();
        let mut at = utc("2026-11-01T04:50:00Z").with_timezone(&LocalZone);
        for _ in 0..5 {
            at = next_fire(&crons(&["*/30 * * * *"]), &at).unwrap();
            seen.push(at.to_rfc3339());
        }
        assert_eq!(
            seen,
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00"
            ]
        );
    }
}
