//! Calendar periods for budgets: where the current day, week (reset weekday +
//! hour) and month begin and end in a key's IANA time zone, as UTC instants.
//! Pure functions of (zone, instant); DST gaps and overlaps are resolved here
//! and nowhere else.

use super::policy::WeeklyReset;
use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc,
};
use chrono_tz::Tz;

/// A key's calendar: its zone and where its week begins. `Copy`, so an
/// admission carries it to settlement without touching the policy again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calendar {
    pub tz: Tz,
    pub week: WeeklyReset,
}

/// A period's bounds: `start <= now < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Calendar {
    pub fn day(&self, now: DateTime<Utc>) -> Bounds {
        let date = self.local_date(now);
        Bounds {
            start: self.at(date, 0),
            end: self.at(shift(date, 1), 0),
        }
    }

    /// The week that began at the latest reset weekday + hour not after `now`.
    pub fn week(&self, now: DateTime<Utc>) -> Bounds {
        let local = self.local_date(now);
        let hour = u32::from(self.week.hour.min(23));
        let back = (7 + local.weekday().num_days_from_monday()
            - self.week.weekday.num_days_from_monday())
            % 7;
        let mut date = shift(local, -i64::from(back));
        // On the reset weekday before the reset hour, the week began 7 days ago.
        if self.at(date, hour) > now {
            date = shift(date, -7);
        }
        Bounds {
            start: self.at(date, hour),
            end: self.at(shift(date, 7), hour),
        }
    }

    pub fn month(&self, now: DateTime<Utc>) -> Bounds {
        let local = self.local_date(now);
        let first = local.with_day(1).unwrap_or(local);
        let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
        Bounds {
            start: self.at(first, 0),
            end: self.at(next, 0),
        }
    }

    fn local_date(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// `date` at `hour`:00 local time, as an instant.
    fn at(&self, date: NaiveDate, hour: u32) -> DateTime<Utc> {
        let time = NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN);
        local_to_utc(self.tz, date.and_time(time))
    }
}

/// `date` moved by `days`; at the ends of chrono's range (never reached by a
/// real clock) it stays put instead of panicking.
fn shift(date: NaiveDate, days: i64) -> NaiveDate {
    let n = Days::new(days.unsigned_abs());
    if days >= 0 {
        date.checked_add_days(n)
    } else {
        date.checked_sub_days(n)
    }
    .unwrap_or(date)
}

/// A local wall-clock time as an instant. In a DST overlap the first
/// occurrence counts (a period starts as early as it can); in a DST gap the
/// instant the clocks jump (the first local time that exists after it).
pub fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => gap_end(tz, naive),
    }
}

/// The transition instant of the gap containing `naive`. Read with the
/// offset after the jump, `naive` lands before the gap; with the offset
/// before, after it. The first instant in between whose local time is not
/// earlier than `naive` is the jump: found by bisection over seconds.
fn gap_end(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let as_utc = Utc.from_utc_datetime(&naive);
    // Offsets in force well before and after the gap (no zone has two
    // transitions within a day of each other).
    let offset_at = |t: DateTime<Utc>| {
        i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    };
    let day = chrono::TimeDelta::days(1);
    let before = offset_at(as_utc.checked_sub_signed(day).unwrap_or(as_utc));
    let after = offset_at(as_utc.checked_add_signed(day).unwrap_or(as_utc));
    let mut lo = as_utc.timestamp() - after; // local time < naive
    let mut hi = as_utc.timestamp() - before; // local time >= naive
    if lo > hi {
        std::mem::swap(&mut lo, &mut hi);
    }
    let target = naive.and_utc().timestamp();
    let local_secs = |ts: i64| ts + offset_at(DateTime::from_timestamp(ts, 0).unwrap_or(as_utc));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if local_secs(mid) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or(as_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cal(tz: Tz, weekday: Weekday, hour: u8) -> Calendar {
        Calendar {
            tz,
            week: WeeklyReset { weekday, hour },
        }
    }

    #[test]
    fn days_follow_the_zone() {
        let c = cal(chrono_tz::Asia::Shanghai, Weekday::Mon, 0);
        // 2026-03-10 17:30 UTC is 01:30 on the 11th in Shanghai.
        let b = c.day(utc("2026-03-10T17:30:00Z"));
        assert_eq!(b.start, utc("2026-03-10T16:00:00Z"));
        assert_eq!(b.end, utc("2026-03-11T16:00:00Z"));
    }

    #[test]
    fn weekly_reset_weekday_and_hour_in_a_non_utc_zone() {
        // Weeks start Wednesday 09:00 in New York (EST, UTC-5, in February).
        let c = cal(chrono_tz::America::New_York, Weekday::Wed, 9);
        // Wednesday 2026-02-11 08:59 local: still the previous week.
        let b = c.week(utc("2026-02-11T13:59:00Z"));
        assert_eq!(b.start, utc("2026-02-04T14:00:00Z"));
        assert_eq!(b.end, utc("2026-02-11T14:00:00Z"));
        // 09:00 local exactly: the new week.
        let b = c.week(utc("2026-02-11T14:00:00Z"));
        assert_eq!(b.start, utc("2026-02-11T14:00:00Z"));
        assert_eq!(b.end, utc("2026-02-18T14:00:00Z"));
        // Sunday of that week.
        assert_eq!(c.week(utc("2026-02-15T23:00:00Z")).start, b.start);
    }

    #[test]
    fn weekly_period_across_dst_is_167_hours_and_resets_at_local_time() {
        // Europe/Berlin springs forward on Sunday 2026-03-29 02:00 → 03:00.
        let c = cal(chrono_tz::Europe::Berlin, Weekday::Mon, 0);
        let b = c.week(utc("2026-03-28T12:00:00Z"));
        assert_eq!(b.start, utc("2026-03-22T23:00:00Z")); // Mon 00:00 CET
        assert_eq!(b.end, utc("2026-03-29T22:00:00Z")); // Mon 00:00 CEST
        assert_eq!((b.end - b.start).num_hours(), 167);
        // Falls back on Sunday 2026-10-25 03:00 → 02:00: a 169-hour week.
        let b = c.week(utc("2026-10-24T12:00:00Z"));
        assert_eq!((b.end - b.start).num_hours(), 169);
        assert_eq!(b.end, utc("2026-10-25T23:00:00Z"));
    }

    #[test]
    fn reset_hour_inside_a_dst_gap_or_overlap() {
        // Sunday 02:00 does not exist in Berlin on 2026-03-29: the week
        // starts when the clocks jump (01:00 UTC, 03:00 CEST).
        let c = cal(chrono_tz::Europe::Berlin, Weekday::Sun, 2);
        let b = c.week(utc("2026-03-29T05:00:00Z"));
        assert_eq!(b.start, utc("2026-03-29T01:00:00Z"));
        assert_eq!(b.end, utc("2026-04-05T00:00:00Z"));
        // Sunday 02:00 happens twice on 2026-10-25: the first one counts.
        let b = c.week(utc("2026-10-25T05:00:00Z"));
        assert_eq!(b.start, utc("2026-10-25T00:00:00Z"));
        // Just before the first 02:00: still the previous week.
        assert_eq!(
            c.week(utc("2026-10-24T23:59:59Z")).end,
            utc("2026-10-25T00:00:00Z")
        );
    }

    #[test]
    fn midnight_in_a_dst_gap_starts_the_day_at_the_jump() {
        // Santiago springs forward at 24:00 on 2026-09-05 → 01:00 on the 6th.
        let c = cal(chrono_tz::America::Santiago, Weekday::Mon, 0);
        let b = c.day(utc("2026-09-06T12:00:00Z"));
        assert_eq!(b.start, utc("2026-09-06T04:00:00Z"));
        assert_eq!(b.end, utc("2026-09-07T03:00:00Z"));
    }

    #[test]
    fn months_in_a_zone() {
        let c = cal(chrono_tz::Europe::Berlin, Weekday::Mon, 0);
        let b = c.month(utc("2026-03-31T22:30:00Z")); // 00:30 on April 1st, CEST
        assert_eq!(b.start, utc("2026-03-31T22:00:00Z"));
        assert_eq!(b.end, utc("2026-04-30T22:00:00Z"));
        let b = c.month(utc("2026-12-15T00:00:00Z"));
        assert_eq!(b.start, utc("2026-11-30T23:00:00Z"));
        assert_eq!(b.end, utc("2026-12-31T23:00:00Z"));
        let utc_cal = cal(chrono_tz::UTC, Weekday::Mon, 0);
        let b = utc_cal.month(utc("2028-02-29T12:00:00Z"));
        assert_eq!(b.start, utc("2028-02-01T00:00:00Z"));
        assert_eq!(b.end, utc("2028-03-01T00:00:00Z"));
    }
}
