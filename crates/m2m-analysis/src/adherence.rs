//! Adherence: how many games a patient played, and for how long, on each
//! calendar day of their time zone (docs/therapists.md, "Adherence").
//!
//! The exact rules:
//!
//! - A game counts on the local date, in the patient's zone, of its
//!   `started_at`. Days from `from` to `to` (both included) each get an
//!   entry, zeros included; games on other days are ignored.
//! - A day starts at local midnight ([`day_start`]); where midnight does not
//!   exist (clocks jump from 00:00 to 01:00), at the first instant after
//!   it; where it exists twice (clocks go back from 01:00 to 00:00), at the
//!   first of the two. Days around a daylight-saving change so last 23 or
//!   25 hours. A game's local date and the day whose start-to-next-start
//!   span holds its `started_at` agree, except inside a fold that crosses
//!   midnight (clocks back from 00:30 to 23:30, which no zone does today),
//!   where the local date decides.
//! - A game's active seconds are added as given; a value that is not finite
//!   (which a game's duration never is) is left out of the sum, so that the
//!   result stays finite, but the game is still counted.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// One calendar day of a patient's activity.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdherenceDay {
    /// The day in the patient's time zone, `YYYY-MM-DD`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub date: NaiveDate,
    /// Games started that day, whatever their status.
    pub games: u32,
    /// The sum of those games' durations, in seconds.
    pub active_seconds: f64,
}

/// The instant `date` starts in `tz`: local midnight; where midnight does
/// not exist locally, the first instant after it; where it exists twice,
/// the earlier.
pub fn day_start(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight).earliest() {
        Some(start) => start.with_timezone(&Utc),
        None => first_instant_from(midnight, tz),
    }
}

/// The first instant whose local time in `tz` is `local` or later, for a
/// `local` inside a gap (a spring-forward transition).
///
/// Local time is `t + offset(t)`; over the two days around a gap it only
/// goes back inside a fold, and no fold holds a time that a gap skips, so
/// "local time ≥ `local`" is false then true over that window and a binary
/// search on whole seconds finds the first instant (every transition of
/// the IANA database is at a whole second).
fn first_instant_from(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let at = |seconds: i64| DateTime::from_timestamp(seconds, 0);
    let is_at_or_after =
        |seconds: i64| at(seconds).is_some_and(|t| t.with_timezone(&tz).naive_local() >= local);
    // UTC offsets are within ±1 day, so the instant is within a day of
    // `local` read as UTC.
    let guess = local.and_utc().timestamp();
    let (mut before, mut after) = (guess - 86_400, guess + 86_400);
    while after - before > 1 {
        let mid = before + (after - before) / 2;
        if is_at_or_after(mid) {
            after = mid;
        } else {
            before = mid;
        }
    }
    // Only out of chrono's range (hundreds of millennia away) can `after`
    // not be an instant; `local` read as UTC is then as good as any.
    at(after).unwrap_or_else(|| local.and_utc())
}

/// Games and active seconds per local day of `tz` from `from` to `to`, both
/// included (none when `from > to`), from the games' `(started_at,
/// active_seconds)`, in any order.
pub fn adherence(
    from: NaiveDate,
    to: NaiveDate,
    tz: Tz,
    games: &[(DateTime<Utc>, f64)],
) -> Vec<AdherenceDay> {
    let mut days: Vec<AdherenceDay> = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|date| AdherenceDay {
            date,
            games: 0,
            active_seconds: 0.0,
        })
        .collect();
    for &(started_at, active_seconds) in games {
        let date = started_at.with_timezone(&tz).date_naive();
        let Some(day) = usize::try_from((date - from).num_days())
            .ok()
            .and_then(|i| days.get_mut(i))
        else {
            continue;
        };
        day.games += 1;
        if active_seconds.is_finite() {
            day.active_seconds += active_seconds;
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use chrono_tz::America::{Havana, Santiago};
    use chrono_tz::Europe::Zurich;
    use chrono_tz::UTC;

    /// The length of local day `date` in `tz`.
    fn day_length(date: NaiveDate, tz: Tz) -> TimeDelta {
        day_start(date.succ_opt().unwrap(), tz) - day_start(date, tz)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn zurich_days_around_daylight_saving_last_23_and_25_hours() {
        // 2026-03-29: 02:00 CET → 03:00 CEST; 2026-10-25: 03:00 CEST →
        // 02:00 CET. Midnight exists once on both days.
        assert_eq!(
            day_start(date(2026, 3, 29), Zurich),
            utc(2026, 3, 28, 23, 0)
        );
        assert_eq!(
            day_start(date(2026, 3, 30), Zurich),
            utc(2026, 3, 29, 22, 0)
        );
        assert_eq!(day_length(date(2026, 3, 29), Zurich), TimeDelta::hours(23));
        assert_eq!(
            day_start(date(2026, 10, 25), Zurich),
            utc(2026, 10, 24, 22, 0)
        );
        assert_eq!(
            day_start(date(2026, 10, 26), Zurich),
            utc(2026, 10, 25, 23, 0)
        );
        assert_eq!(day_length(date(2026, 10, 25), Zurich), TimeDelta::hours(25));
        assert_eq!(day_length(date(2026, 10, 24), Zurich), TimeDelta::hours(24));
    }

    #[test]
    fn where_midnight_is_skipped_the_day_starts_at_one() {
        // Santiago, 2026-09-06: Saturday 24:00 (−04) → Sunday 01:00 (−03),
        // at 04:00 UTC. No instant has local time 00:00–00:59 that day.
        assert!(Santiago
            .from_local_datetime(&date(2026, 9, 6).and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .is_none());
        let start = day_start(date(2026, 9, 6), Santiago);
        assert_eq!(start, utc(2026, 9, 6, 4, 0));
        assert_eq!(
            start.with_timezone(&Santiago).naive_local(),
            date(2026, 9, 6).and_hms_opt(1, 0, 0).unwrap()
        );
        // The second before is still Saturday.
        let before = (start - TimeDelta::seconds(1)).with_timezone(&Santiago);
        assert_eq!(before.date_naive(), date(2026, 9, 5));
        assert_eq!(day_length(date(2026, 9, 6), Santiago), TimeDelta::hours(23));
        assert_eq!(day_length(date(2026, 9, 5), Santiago), TimeDelta::hours(24));

        // Havana, 2026-03-08: 00:00 (−05) → 01:00 (−04), at 05:00 UTC.
        assert_eq!(day_start(date(2026, 3, 8), Havana), utc(2026, 3, 8, 5, 0));
    }

    #[test]
    fn where_midnight_happens_twice_the_day_starts_at_the_first() {
        // Havana, 2026-11-01: 01:00 (−04) → 00:00 (−05), so 00:00–00:59
        // happens twice: first at 04:00 UTC, again at 05:00 UTC.
        let midnight = date(2026, 11, 1).and_hms_opt(0, 0, 0).unwrap();
        assert!(Havana.from_local_datetime(&midnight).single().is_none());
        assert_eq!(day_start(date(2026, 11, 1), Havana), utc(2026, 11, 1, 4, 0));
        assert_eq!(day_length(date(2026, 11, 1), Havana), TimeDelta::hours(25));
    }

    #[test]
    fn a_game_late_in_the_evening_counts_on_the_local_day() {
        // 23:30 in Zurich (CET, +01) is 22:30 UTC the same day; 00:30 in
        // Zurich is 23:30 UTC the day before.
        let games = [
            (utc(2026, 1, 14, 22, 30), 60.0),
            (utc(2026, 1, 14, 23, 30), 30.0),
        ];
        let days = adherence(date(2026, 1, 14), date(2026, 1, 15), Zurich, &games);
        assert_eq!(
            days,
            vec![
                AdherenceDay {
                    date: date(2026, 1, 14),
                    games: 1,
                    active_seconds: 60.0
                },
                AdherenceDay {
                    date: date(2026, 1, 15),
                    games: 1,
                    active_seconds: 30.0
                },
            ]
        );
        // In UTC both are on the 14th.
        let days = adherence(date(2026, 1, 14), date(2026, 1, 15), UTC, &games);
        assert_eq!((days[0].games, days[0].active_seconds), (2, 90.0));
        assert_eq!(days[1].games, 0);
    }

    #[test]
    fn every_day_has_an_entry_and_games_outside_are_ignored() {
        let games = [
            (utc(2026, 2, 28, 23, 59), 10.0), // 1 March, 00:59 in Zurich
            (utc(2026, 3, 3, 9, 0), 20.0),
            (utc(2026, 3, 3, 18, 0), 25.5),
            (utc(2026, 3, 5, 23, 0), 99.0), // 6 March in Zurich: after `to`
            (utc(2026, 2, 28, 22, 59), 99.0), // 28 February: before `from`
            (utc(2026, 3, 2, 12, 0), f64::NAN),
        ];
        let days = adherence(date(2026, 3, 1), date(2026, 3, 5), Zurich, &games);
        let got: Vec<(u32, u32, f64)> = days
            .iter()
            .map(|d| (chrono::Datelike::day(&d.date), d.games, d.active_seconds))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, 10.0),
                (2, 1, 0.0),
                (3, 2, 45.5),
                (4, 0, 0.0),
                (5, 0, 0.0)
            ]
        );
        assert!(adherence(date(2026, 3, 5), date(2026, 3, 4), Zurich, &games).is_empty());
        assert_eq!(
            adherence(date(2026, 3, 3), date(2026, 3, 3), Zurich, &games)[0].games,
            2
        );
    }

    #[test]
    fn a_game_counts_on_the_day_whose_span_holds_it() {
        // Around each change above, the day's start and the next day's
        // start bound exactly the games counted on it.
        for (day, tz) in [
            (date(2026, 3, 29), Zurich),
            (date(2026, 10, 25), Zurich),
            (date(2026, 9, 6), Santiago),
            (date(2026, 4, 5), Santiago),
            (date(2026, 3, 8), Havana),
            (date(2026, 11, 1), Havana),
        ] {
            let start = day_start(day, tz);
            let next = day_start(day.succ_opt().unwrap(), tz);
            let second = TimeDelta::seconds(1);
            let games = [
                (start - second, 1.0),
                (start, 2.0),
                (next - second, 4.0),
                (next, 8.0),
            ];
            let days = adherence(day.pred_opt().unwrap(), day.succ_opt().unwrap(), tz, &games);
            let sums: Vec<f64> = days.iter().map(|d| d.active_seconds).collect();
            assert_eq!(sums, vec![1.0, 6.0, 8.0], "{day} in {tz}");
        }
    }

    #[test]
    fn every_zone_starts_each_day_at_the_first_instant_from_midnight() {
        // Every zone of the database, every day of 2020–2027: the start is
        // at or after local midnight, and the second before it is not.
        let from = date(2020, 1, 1);
        let to = date(2027, 12, 31);
        for tz in chrono_tz::TZ_VARIANTS {
            for day in from.iter_days().take_while(|d| *d <= to) {
                let midnight = day.and_time(NaiveTime::MIN);
                let start = day_start(day, tz);
                let before = start - TimeDelta::seconds(1);
                assert!(
                    start.with_timezone(&tz).naive_local() >= midnight
                        && before.with_timezone(&tz).naive_local() < midnight,
                    "{day} in {tz} starts at {start}"
                );
            }
        }
    }

    #[test]
    fn a_day_serialises_its_date_as_year_month_day() {
        let day = AdherenceDay {
            date: date(2026, 3, 9),
            games: 2,
            active_seconds: 75.5,
        };
        let json = serde_json::to_value(&day).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"date": "2026-03-09", "games": 2, "active_seconds": 75.5})
        );
        assert_eq!(serde_json::from_value::<AdherenceDay>(json).unwrap(), day);
    }
}
