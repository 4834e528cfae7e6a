//! When a step may go out: delays (hours or business days) and send windows in the
//! contact's local time.
//!
//! Everything here is a pure function of its arguments; "now" is always passed in.

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

use crate::model::{SendWindow, StepDelay};

fn is_business_day(day: Weekday) -> bool {
    !matches!(day, Weekday::Sat | Weekday::Sun)
}

/// Maps a local wall-clock time to an instant. In a DST gap (the time does not exist)
/// the first instant after the gap is used; in an overlap, the earlier one.
fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => first_instant_after_gap(tz, local),
    }
}

/// The first instant after the DST gap that swallows `local`: the instant the clocks
/// jump, whose local time is the gap's end (01:00 in Cairo's 00:00-01:00 gap, 02:30 in
/// Lord Howe's 02:00-02:30 one), whatever minute and second of the gap `local` names.
///
/// Real-world gaps are at most two hours and start and end on whole minutes, so probing
/// whole minutes from the start of `local`'s minute finds the gap's end exactly.
fn first_instant_after_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    for _ in 0..240 {
        probe += Duration::minutes(1);
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    Utc.from_utc_datetime(&local)
}

/// Whether `at` lies inside `window` in `tz`: an allowed weekday, at or after the
/// opening minute and before the closing one (seconds do not count: 17:14:59 is inside
/// a window closing at 17:15).
#[must_use]
pub fn within_window(window: &SendWindow, tz: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&tz).naive_local();
    let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(u16::MAX);
    window.weekdays.contains(&local.weekday())
        && minute >= window.opens_at_minute()
        && minute < window.closes_at_minute()
}

/// A delay that lands outside the calendar's range (only a delay past its maximum, or
/// a start near the end of time, can).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a delay of {delay:?} from {from} is outside the calendar")]
pub struct DelayOutOfRange {
    /// The delay.
    pub delay: StepDelay,
    /// The instant it was applied to.
    pub from: DateTime<Utc>,
}

/// The instant `delay` after `from`. Business days skip Saturday and Sunday in `tz` and
/// keep the local time of day. Takes time proportional to the number of weeks, never
/// panics, and answers [`DelayOutOfRange`] where the result would not be a date.
pub fn apply_delay(
    delay: StepDelay,
    tz: Tz,
    from: DateTime<Utc>,
) -> Result<DateTime<Utc>, DelayOutOfRange> {
    let out_of_range = DelayOutOfRange { delay, from };
    match delay {
        StepDelay::Hours(hours) => Duration::try_hours(i64::from(hours))
            .and_then(|d| from.checked_add_signed(d))
            .ok_or(out_of_range),
        StepDelay::BusinessDays(days) => {
            let local = from.with_timezone(&tz).naive_local();
            let date = add_business_days(local.date(), days).ok_or(out_of_range)?;
            Ok(local_to_utc(tz, date.and_time(local.time())))
        }
    }
}

/// The `days`-th business day after `date`. Any seven consecutive days hold exactly
/// five business days, so whole weeks are jumped and at most five days walked.
fn add_business_days(date: NaiveDate, days: u32) -> Option<NaiveDate> {
    if days == 0 {
        return Some(date);
    }
    let weeks = (days - 1) / 5;
    let mut date = date.checked_add_days(Days::new(u64::from(weeks) * 7))?;
    let mut left = days - weeks * 5;
    while left > 0 {
        date = date.checked_add_days(Days::new(1))?;
        if is_business_day(date.weekday()) {
            left -= 1;
        }
    }
    Some(date)
}

/// The earliest instant at or after `at` that lies inside `window` in `tz`; `at` itself
/// when there is no window. A window always has at least one weekday (checked by
/// [`Sequence::validate`](crate::model::Sequence::validate)), so an answer exists within a week.
///
/// The answer is `at` when `at` is inside, else the next opening (`start_hour:start_minute`
/// local) that is inside: an opening in a DST gap moves to the first instant after the
/// gap (the same day, when the window is still open then), an opening in an overlap is
/// the earlier of the two instants.
#[must_use]
pub fn next_allowed(window: Option<&SendWindow>, tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
    let Some(window) = window else { return at };
    if within_window(window, tz, at) {
        return at;
    }
    let local = at.with_timezone(&tz).naive_local();
    let start = NaiveTime::from_hms_opt(
        u32::from(window.start_hour.min(23)),
        u32::from(window.start_minute.min(59)),
        0,
    )
    .unwrap_or(NaiveTime::MIN);
    // The opening of each of the next eight local days, skipping openings already past
    // and those a DST gap pushes out of the window.
    // An opening in an overlap happens twice: the later one counts when the earlier one
    // is already past.
    (0..=8u64)
        .filter_map(|offset| local.date().checked_add_days(Days::new(offset)))
        .flat_map(|date| {
            let opening = date.and_time(start);
            let later = match tz.from_local_datetime(&opening) {
                LocalResult::Ambiguous(_, later) => Some(later.with_timezone(&Utc)),
                _ => None,
            };
            std::iter::once(local_to_utc(tz, opening)).chain(later)
        })
        .find(|&candidate| candidate > at && within_window(window, tz, candidate))
        .unwrap_or(at)
}

/// The local calendar day of `at` in `tz`, the period of daily quotas and touch limits.
#[must_use]
pub fn local_day(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The instant the local day after `day` begins in `tz`.
#[must_use]
pub fn start_of_next_day(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    local_to_utc(tz, next.and_time(NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin};
    use proptest::prelude::*;

    const ZONES: [&str; 8] = [
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Australia/Lord_Howe",
        "Africa/Cairo",
        "Asia/Kathmandu",
    ];

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn office_hours() -> SendWindow {
        SendWindow::hours(
            9,
            17,
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
        )
    }

    #[test]
    fn inside_the_window_sends_now() {
        // Tuesday 2026-01-06 10:30 in Berlin is 09:30 UTC.
        let at = utc(2026, 1, 6, 9, 30);
        assert_eq!(next_allowed(Some(&office_hours()), Berlin, at), at);
        assert_eq!(next_allowed(None, Berlin, at), at);
    }

    #[test]
    fn before_and_after_the_window_moves_to_the_next_opening() {
        // 06:00 Berlin → 09:00 Berlin the same day (08:00 UTC).
        assert_eq!(
            next_allowed(Some(&office_hours()), Berlin, utc(2026, 1, 6, 5, 0)),
            utc(2026, 1, 6, 8, 0)
        );
        // 18:00 Berlin on Friday → Monday 09:00 Berlin.
        assert_eq!(
            next_allowed(Some(&office_hours()), Berlin, utc(2026, 1, 9, 17, 0)),
            utc(2026, 1, 12, 8, 0)
        );
        // The same instant is still Friday afternoon in New York: inside the window.
        let at = utc(2026, 1, 9, 17, 0);
        assert_eq!(next_allowed(Some(&office_hours()), New_York, at), at);
    }

    #[test]
    fn business_days_skip_weekends_and_keep_the_local_time() {
        // Friday 10:00 Berlin + 1 business day = Monday 10:00 Berlin.
        assert_eq!(
            apply_delay(StepDelay::BusinessDays(1), Berlin, utc(2026, 1, 9, 9, 0)).unwrap(),
            utc(2026, 1, 12, 9, 0)
        );
        assert_eq!(
            apply_delay(StepDelay::BusinessDays(5), Berlin, utc(2026, 1, 5, 9, 0)).unwrap(),
            utc(2026, 1, 12, 9, 0)
        );
        assert_eq!(
            apply_delay(StepDelay::Hours(36), Berlin, utc(2026, 1, 5, 9, 0)).unwrap(),
            utc(2026, 1, 6, 21, 0)
        );
    }

    #[test]
    fn dst_gaps_resolve_to_the_first_real_instant() {
        // 2026-03-29 02:30 does not exist in Berlin (clocks jump 02:00 → 03:00).
        let window = SendWindow::hours(2, 5, vec![Weekday::Sun]);
        let at = utc(2026, 3, 28, 23, 0); // Sunday 00:00 Berlin (CET)
        let next = next_allowed(Some(&window), Berlin, at);
        assert_eq!(next, utc(2026, 3, 29, 1, 0)); // 03:00 CEST
    }

    #[test]
    fn a_half_hour_dst_gap_opens_the_window_the_same_day() {
        // Lord Howe Island moves from +10:30 to +11:00 at 02:00 on 2026-10-04: 02:00 to
        // 02:30 does not exist, and a window opening at 02:00 opens at 02:30.
        let lord_howe: Tz = "Australia/Lord_Howe".parse().unwrap();
        let window = SendWindow::hours(2, 3, vec![Weekday::Sun]);
        let at = utc(2026, 10, 3, 12, 0); // Saturday 22:30 local
        let next = next_allowed(Some(&window), lord_howe, at);
        assert_eq!(next, utc(2026, 10, 3, 15, 30)); // Sunday 02:30 +11:00
    }

    #[test]
    fn a_window_lost_to_a_dst_gap_moves_to_the_next_week() {
        // The only allowed hour, Sunday 02:00-03:00, does not exist on 2026-03-29.
        let window = SendWindow::hours(2, 3, vec![Weekday::Sun]);
        let next = next_allowed(Some(&window), Berlin, utc(2026, 3, 28, 23, 0));
        assert_eq!(next, utc(2026, 4, 5, 0, 0)); // 02:00 CEST a week later
    }

    #[test]
    fn daily_periods_follow_the_local_calendar() {
        let late = utc(2026, 1, 6, 23, 30); // 00:30 on Wednesday in Berlin
        assert_eq!(
            local_day(Berlin, late),
            NaiveDate::from_ymd_opt(2026, 1, 7).unwrap()
        );
        assert_eq!(
            start_of_next_day(Berlin, NaiveDate::from_ymd_opt(2026, 1, 7).unwrap()),
            utc(2026, 1, 7, 23, 0)
        );
    }

    #[test]
    fn windows_open_and_close_on_the_minute() {
        // 09:30-17:15 Monday to Friday, Berlin (UTC+1 in January).
        let window = office_hours().with_minutes(30, 15);
        let tuesday = |h, m| utc(2026, 1, 6, h, m);
        // 09:29 local: waits a minute; 09:30 local: goes.
        assert_eq!(
            next_allowed(Some(&window), Berlin, tuesday(8, 29)),
            tuesday(8, 30)
        );
        assert_eq!(
            next_allowed(Some(&window), Berlin, tuesday(8, 30)),
            tuesday(8, 30)
        );
        // 17:14:59 local is inside, 17:15 is not: the next opening is Wednesday 09:30.
        let last = tuesday(16, 14) + Duration::seconds(59);
        assert_eq!(next_allowed(Some(&window), Berlin, last), last);
        assert_eq!(
            next_allowed(Some(&window), Berlin, tuesday(16, 15)),
            utc(2026, 1, 7, 8, 30)
        );
        // 02:00-03:30, which whole hours could not say.
        let night = SendWindow::hours(2, 3, vec![Weekday::Tue]).with_minutes(0, 30);
        assert!(within_window(&night, Berlin, tuesday(2, 29)));
        assert!(!within_window(&night, Berlin, tuesday(2, 30)));
    }

    #[test]
    fn a_half_hour_dst_gap_opens_a_minute_window_the_same_day() {
        // Lord Howe skips 02:00-02:30 on Sunday 2026-10-04. A window opening at 02:15
        // opens at 02:30 (+11:00) that day, not a week later and not a day late.
        let lord_howe: Tz = "Australia/Lord_Howe".parse().unwrap();
        let window = SendWindow::hours(2, 4, vec![Weekday::Sun]).with_minutes(15, 0);
        let saturday_evening = utc(2026, 10, 3, 12, 0); // Saturday 22:30 +10:30
        assert_eq!(
            next_allowed(Some(&window), lord_howe, saturday_evening),
            utc(2026, 10, 3, 15, 30)
        );
        // A window opening at 01:45 the same night opens at 01:45 (+10:30).
        let early = SendWindow::hours(1, 3, vec![Weekday::Sun]).with_minutes(45, 0);
        assert_eq!(
            next_allowed(Some(&early), lord_howe, saturday_evening),
            utc(2026, 10, 3, 15, 15)
        );
        // A window that closes inside the gap does not exist that day: a week later.
        let lost = SendWindow::hours(2, 2, vec![Weekday::Sun]).with_minutes(0, 20);
        assert_eq!(
            next_allowed(Some(&lost), lord_howe, saturday_evening),
            utc(2026, 10, 10, 15, 0) // Sunday 2026-10-11 02:00 +11:00
        );
        // Lord Howe's half-hour fall back (02:00 -> 01:30 on 2026-04-05): a window
        // opening at 01:30 opens at the earlier 01:30 (+11:00) ...
        let back = SendWindow::hours(1, 1, vec![Weekday::Sun]).with_minutes(30, 45);
        assert_eq!(
            next_allowed(Some(&back), lord_howe, utc(2026, 4, 4, 12, 0)),
            utc(2026, 4, 4, 14, 30)
        );
        // ... and, once that one is past, at the second 01:30 (+10:30) the same night.
        assert_eq!(
            next_allowed(Some(&back), lord_howe, utc(2026, 4, 4, 14, 50)),
            utc(2026, 4, 4, 15, 0)
        );
    }

    #[test]
    fn a_business_day_delay_into_cairos_gap_lands_at_the_gaps_end() {
        // Cairo skips 00:00-01:00 on Friday 2026-04-24 (EET +2 -> EEST +3). Thursday
        // 00:30:45 plus one business day names Friday 00:30:45, which does not exist:
        // the first instant after the gap is 01:00:00 EEST (22:00 UTC), not 01:30.
        let cairo: Tz = "Africa/Cairo".parse().unwrap();
        let thursday = utc(2026, 4, 22, 22, 30) + Duration::seconds(45);
        assert_eq!(
            apply_delay(StepDelay::BusinessDays(1), cairo, thursday).unwrap(),
            utc(2026, 4, 23, 22, 0)
        );
        // Wednesday 00:00 plus two business days: the gap's start, the same answer.
        assert_eq!(
            apply_delay(StepDelay::BusinessDays(2), cairo, utc(2026, 4, 21, 22, 0)).unwrap(),
            utc(2026, 4, 23, 22, 0)
        );
        // The next local day after Thursday also begins at 01:00.
        let thursday_date = NaiveDate::from_ymd_opt(2026, 4, 23).unwrap();
        assert_eq!(
            start_of_next_day(cairo, thursday_date),
            utc(2026, 4, 23, 22, 0)
        );
    }

    proptest! {
        #[test]
        fn next_allowed_is_never_earlier_and_always_inside(secs in 0i64..(5 * 365 * 86_400), start in 0u16..(23 * 60), len in 1u16..(12 * 60), days in 1u8..128, zone in 0usize..ZONES.len()) {
            let end = (start + len).min(24 * 60);
            let weekdays: Vec<Weekday> = (0..7).filter(|i| days & (1 << i) != 0).map(|i| Weekday::try_from(i as u8).unwrap()).collect();
            prop_assume!(!weekdays.is_empty());
            let hm = |m: u16| (u8::try_from(m / 60).unwrap(), u8::try_from(m % 60).unwrap());
            let ((sh, sm), (eh, em)) = (hm(start), hm(end));
            let window = SendWindow::hours(sh, eh, weekdays).with_minutes(sm, em);
            prop_assert!(window.validate().is_ok());
            let tz: Tz = ZONES[zone].parse().unwrap();
            let at = utc(2026, 1, 1, 0, 0) + Duration::seconds(secs);
            let next = next_allowed(Some(&window), tz, at);
            prop_assert!(next >= at);
            prop_assert!(within_window(&window, tz, next), "{next} outside {window:?} in {tz}");
            // A window whose every opening falls into a DST gap may wait a week more.
            prop_assert!(next - at <= Duration::days(8));
            // Nothing inside the window is skipped: the minute before `next` (if after
            // `at`) is outside it.
            let before = next - Duration::minutes(1);
            if before >= at && next.second() == 0 {
                prop_assert!(!within_window(&window, tz, before), "{before} was inside already");
            }
        }

        #[test]
        fn business_day_delays_land_on_business_days(secs in 0i64..(2 * 365 * 86_400), n in 1u32..30) {
            let from = utc(2026, 1, 5, 9, 0) + Duration::seconds(secs);
            let to = apply_delay(StepDelay::BusinessDays(n), Berlin, from).unwrap();
            prop_assert!(to > from);
            prop_assert!(is_business_day(to.with_timezone(&Berlin).weekday()));
        }

        #[test]
        fn week_jumps_agree_with_walking_day_by_day(start in 0u64..3_000, n in 0u32..400) {
            let date = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + Days::new(start);
            let mut walked = date;
            let mut left = n;
            while left > 0 {
                walked = walked + Days::new(1);
                if is_business_day(walked.weekday()) {
                    left -= 1;
                }
            }
            prop_assert_eq!(add_business_days(date, n), Some(walked));
        }
    }

    #[test]
    fn extreme_delays_are_errors_not_panics() {
        let from = utc(2026, 1, 5, 9, 0);
        for delay in [
            StepDelay::Hours(u32::MAX),
            StepDelay::BusinessDays(u32::MAX),
        ] {
            // u32::MAX hours is 490,000 years: inside chrono's range, so it is a date;
            // u32::MAX business days is not, and is answered at once either way.
            let _ = apply_delay(delay, Berlin, from);
        }
        assert_eq!(
            apply_delay(StepDelay::BusinessDays(u32::MAX), Berlin, from),
            Err(DelayOutOfRange {
                delay: StepDelay::BusinessDays(u32::MAX),
                from
            })
        );
        let end = DateTime::<Utc>::MAX_UTC;
        assert!(apply_delay(StepDelay::Hours(1), Berlin, end).is_err());
    }

    #[test]
    fn the_maximum_delays_stay_inside_the_calendar() {
        let from = utc(2026, 1, 5, 9, 0);
        let hours = apply_delay(StepDelay::Hours(StepDelay::MAX_HOURS), Berlin, from).unwrap();
        assert_eq!(hours - from, Duration::hours(87_660));
        let days = StepDelay::BusinessDays(StepDelay::MAX_BUSINESS_DAYS);
        assert!(apply_delay(days, Berlin, from).unwrap() > from + Duration::days(3_600));
    }
}
