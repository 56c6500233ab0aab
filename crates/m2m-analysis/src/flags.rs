//! The flags of a therapist's patient list (docs/therapists.md, "Flags"):
//! what deserves a look, computed when asked from the patient's progress
//! and their last game.
//!
//! The exact rules, at the instant `now`:
//!
//! - `inactive` when the patient has no game, or their last game started
//!   [`INACTIVE_AFTER`] (72 h) or more before `now`. A game started after
//!   `now` (a device clock ahead) is recent.
//! - `declining:<key>` for a headline metric whose series has at least
//!   [`DECLINE_MIN_GAMES`] points with `at` in (`now` − [`DECLINE_WINDOW`],
//!   `now`] (14 days, the start excluded), whose baseline is not 0, and
//!   whose Theil–Sen slope over those points (the median of the slopes
//!   between every pair at distinct times), per 14 days, goes the wrong way
//!   for the metric's direction by strictly more than [`DECLINE_FRACTION`]
//!   (10 %) of `|baseline|`. The slope per 14 days is the slope per day
//!   times 14, computed with time in 14-day units, which rounds once less.
//!   When every point is at the same instant there is no slope and no flag.
//! - `inactive` comes first, then the `declining:` flags in the order of
//!   [`Headline::ALL`] (that of docs/metrics.md).

use crate::progress::{Direction, Headline, MetricProgress, Progress};
use crate::stats;
use chrono::{DateTime, TimeDelta, Utc};

/// A patient with no game started for this long is `inactive`: three days
/// without practice is when a therapist would call.
pub const INACTIVE_AFTER: TimeDelta = TimeDelta::hours(72);

/// The recent games that a decline is measured over: the last two weeks,
/// long enough to hold several games of a patient who plays every few days.
pub const DECLINE_WINDOW: TimeDelta = TimeDelta::days(14);

/// How far, as a fraction of `|baseline|`, the trend over
/// [`DECLINE_WINDOW`] must go the wrong way to flag a decline: less is
/// within a game's usual scatter.
pub const DECLINE_FRACTION: f64 = 0.10;

/// The fewest games in [`DECLINE_WINDOW`] that a decline is measured on:
/// two games always make a slope, and one bad day would flag.
pub const DECLINE_MIN_GAMES: usize = 3;

/// The flags of one patient at `now`, from their progress and the start of
/// their last game (`None` when they have none), by the rules of the module
/// documentation.
pub fn flags(
    progress: &Progress,
    last_game_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let inactive = last_game_at.is_none_or(|at| now.signed_duration_since(at) >= INACTIVE_AFTER);
    let declining = Headline::ALL.iter().filter_map(|&h| {
        let metric = progress.metrics.get(h.key())?;
        is_declining(h.direction(), metric, now).then(|| format!("declining:{}", h.key()))
    });
    inactive
        .then(|| "inactive".to_owned())
        .into_iter()
        .chain(declining)
        .collect()
}

fn is_declining(direction: Direction, metric: &MetricProgress, now: DateTime<Utc>) -> bool {
    if metric.baseline == 0.0 {
        return false;
    }
    let window_seconds = DECLINE_WINDOW.num_seconds() as f64;
    // Time in windows before `now`: in (−1, 0].
    let recent: Vec<(f64, f64)> = metric
        .series
        .iter()
        .filter_map(|p| {
            let age = now.signed_duration_since(p.at);
            (age >= TimeDelta::zero() && age < DECLINE_WINDOW).then(|| {
                (
                    -(age.num_milliseconds() as f64) / 1000.0 / window_seconds,
                    p.value,
                )
            })
        })
        .collect();
    if recent.len() < DECLINE_MIN_GAMES {
        return false;
    }
    let Some(change) = stats::theil_sen_slope(&recent) else {
        return false;
    };
    let worsening = match direction {
        Direction::HigherIsBetter => -change,
        Direction::LowerIsBetter => change,
    };
    worsening > DECLINE_FRACTION * metric.baseline.abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::progress::{progress, ProgressGame, SeriesPoint};
    use chrono::TimeZone;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap()
    }

    /// A metric of `h` with `baseline` whose series has `value` at
    /// `now − ago` for each `(ago, value)`.
    fn metric(h: Headline, baseline: f64, points: &[(TimeDelta, f64)]) -> MetricProgress {
        MetricProgress {
            unit: h.unit().to_owned(),
            direction: h.direction(),
            baseline,
            latest: points.last().map_or(baseline, |p| p.1),
            improvement_pct: None,
            trend_per_week: None,
            series: points
                .iter()
                .enumerate()
                .map(|(i, &(ago, value))| SeriesPoint {
                    game_id: Uuid::from_u128(i as u128 + 1),
                    at: now() - ago,
                    value,
                })
                .collect(),
        }
    }

    fn progress_of(metrics: Vec<(Headline, MetricProgress)>) -> Progress {
        Progress {
            algorithm_version: None,
            metrics: metrics
                .into_iter()
                .map(|(h, m)| (h.key().to_owned(), m))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// Flags of one metric for a patient who played just now.
    fn flags_of(h: Headline, baseline: f64, points: &[(TimeDelta, f64)]) -> Vec<String> {
        let p = progress_of(vec![(h, metric(h, baseline, points))]);
        flags(&p, Some(now()), now())
    }

    fn days(d: f64) -> TimeDelta {
        TimeDelta::milliseconds((d * 86_400_000.0) as i64)
    }

    /// Three games 3.5 days apart, the last one now: 3.5 days is a quarter
    /// of the window, so a step of `s` between games is a change of `4·s`
    /// per 14 days.
    fn three_games(first: f64, step: f64, last_extra: f64) -> [(TimeDelta, f64); 3] {
        [
            (days(7.0), first),
            (days(3.5), first + step),
            (days(0.0), first + 2.0 * step + last_extra),
        ]
    }

    #[test]
    fn a_patient_without_games_is_inactive() {
        assert_eq!(flags(&progress_of(vec![]), None, now()), vec!["inactive"]);
    }

    #[test]
    fn inactive_starts_at_exactly_72_hours() {
        let p = progress_of(vec![]);
        let at_limit = now() - TimeDelta::hours(72);
        assert_eq!(flags(&p, Some(at_limit), now()), vec!["inactive"]);
        let just_within = at_limit + TimeDelta::seconds(1);
        assert!(flags(&p, Some(just_within), now()).is_empty());
        let ahead = now() + TimeDelta::minutes(5);
        assert!(flags(&p, Some(ahead), now()).is_empty());
    }

    #[test]
    fn a_decline_of_exactly_ten_percent_is_not_flagged_and_more_is() {
        // Baseline 10: 10 % is 1.0. Steps of −0.25 are −1.0 per 14 days.
        let exact = three_games(10.0, -0.25, 0.0);
        assert!(flags_of(Headline::Score, 10.0, &exact).is_empty());
        // The last game 0.01 lower: slopes −1.0, −1.02, −1.04 per 14 days.
        let past = three_games(10.0, -0.25, -0.01);
        assert_eq!(
            flags_of(Headline::Score, 10.0, &past),
            vec!["declining:score"]
        );
        // The same change upwards is an improvement.
        let up = three_games(10.0, 0.25, 0.01);
        assert!(flags_of(Headline::Score, 10.0, &up).is_empty());
    }

    #[test]
    fn a_lower_is_better_metric_declines_when_it_rises() {
        // Baseline 0.625: 10 % is 1/16. Steps of 1/64 are 1/16 per 14 days.
        let exact = three_games(0.5, 1.0 / 64.0, 0.0);
        assert!(flags_of(Headline::TremorIndex, 0.625, &exact).is_empty());
        let past = three_games(0.5, 1.0 / 64.0, 1.0 / 1024.0);
        assert_eq!(
            flags_of(Headline::TremorIndex, 0.625, &past),
            vec!["declining:tremor.index"]
        );
        let falling = three_games(0.5, -1.0 / 64.0, -1.0 / 1024.0);
        assert!(flags_of(Headline::TremorIndex, 0.625, &falling).is_empty());
    }

    #[test]
    fn a_negative_baseline_is_measured_by_its_size() {
        // SPARC is negative, higher is better: baseline −5, 10 % is 0.5.
        // Steps of −1/8 are −0.5 per 14 days.
        let exact = three_games(-5.0, -0.125, 0.0);
        assert!(flags_of(Headline::Sparc, -5.0, &exact).is_empty());
        let past = three_games(-5.0, -0.125, -1.0 / 64.0);
        assert_eq!(
            flags_of(Headline::Sparc, -5.0, &past),
            vec!["declining:smoothness.sparc"]
        );
    }

    #[test]
    fn a_decline_needs_three_games_within_fourteen_days() {
        let steep = |oldest: TimeDelta| [(oldest, 100.0), (days(3.0), 50.0), (days(1.0), 20.0)];
        // The oldest exactly 14 days ago is outside: two games are left.
        assert!(flags_of(Headline::RomMean, 100.0, &steep(days(14.0))).is_empty());
        let just_inside = days(14.0) - TimeDelta::seconds(1);
        assert_eq!(
            flags_of(Headline::RomMean, 100.0, &steep(just_inside)),
            vec!["declining:rom_deg.mean"]
        );
        // A game after `now` does not count either.
        let with_future = [
            (days(3.0), 50.0),
            (days(1.0), 20.0),
            (-TimeDelta::hours(1), 0.0),
        ];
        assert!(flags_of(Headline::RomMean, 100.0, &with_future).is_empty());
    }

    #[test]
    fn a_zero_baseline_is_never_flagged() {
        let steep = three_games(0.0, -5.0, -5.0);
        assert!(flags_of(Headline::Score, 0.0, &steep).is_empty());
        assert!(flags_of(Headline::TremorIndex, 0.0, &three_games(0.0, 5.0, 5.0)).is_empty());
    }

    #[test]
    fn games_at_one_instant_make_no_slope() {
        let same = [(days(1.0), 100.0), (days(1.0), 10.0), (days(1.0), 1.0)];
        assert!(flags_of(Headline::Score, 100.0, &same).is_empty());
    }

    #[test]
    fn inactive_comes_first_then_the_headline_order() {
        // Games 13, 8 and 4 days ago, all getting worse: declining, and
        // inactive since the last one. The map's key order (rom, score,
        // tremor) differs from the headline order (rom, tremor, score).
        let ago = [days(13.0), days(8.0), days(4.0)];
        let series = |values: [f64; 3]| -> Vec<(TimeDelta, f64)> {
            ago.iter().copied().zip(values).collect()
        };
        let p = progress_of(vec![
            (
                Headline::Score,
                metric(Headline::Score, 1000.0, &series([1000.0, 700.0, 400.0])),
            ),
            (
                Headline::TremorIndex,
                metric(Headline::TremorIndex, 0.2, &series([0.2, 0.4, 0.6])),
            ),
            (
                Headline::RomMean,
                metric(Headline::RomMean, 60.0, &series([60.0, 40.0, 20.0])),
            ),
            (
                Headline::Repetitions,
                metric(Headline::Repetitions, 10.0, &series([10.0, 11.0, 12.0])),
            ),
        ]);
        assert_eq!(
            flags(&p, Some(now() - days(4.0)), now()),
            vec![
                "inactive",
                "declining:rom_deg.mean",
                "declining:tremor.index",
                "declining:score"
            ]
        );
    }

    #[test]
    fn flags_read_the_baseline_of_progress() {
        // Scores 100, 100, 100 long ago set the baseline at 100; the last
        // three games, within 14 days, fall 20 points per 14 days: more than
        // 10 points, so the score declines. The tremor index stays put.
        let played: Vec<(TimeDelta, f64)> = vec![
            (days(60.0), 100.0),
            (days(50.0), 100.0),
            (days(40.0), 100.0),
            (days(7.0), 95.0),
            (days(3.5), 90.0),
            (days(0.0), 85.0),
        ];
        let metrics: Vec<Metrics> = played
            .iter()
            .map(|&(_, score)| {
                serde_json::from_value(serde_json::json!({
                    "duration_s": 60.0,
                    "tremor": {"index": 0.25},
                    "score": score,
                }))
                .unwrap()
            })
            .collect();
        let games: Vec<ProgressGame<'_>> = played
            .iter()
            .zip(&metrics)
            .enumerate()
            .map(|(i, (&(ago, _), m))| ProgressGame {
                game_id: Uuid::from_u128(i as u128 + 1),
                at: now() - ago,
                metrics: m,
            })
            .collect();
        let p = progress(&games);
        assert_eq!(p.metrics["score"].baseline, 100.0);
        assert_eq!(flags(&p, Some(now()), now()), vec!["declining:score"]);
    }
}
