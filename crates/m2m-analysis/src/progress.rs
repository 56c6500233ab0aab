//! A user's progress over their processed games (docs/metrics.md, "Progress
//! over games").

use crate::metrics::Metrics;
use crate::stats;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The headline metrics that progress follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    RomMean,
    PeakForceMean,
    Repetitions,
    Sparc,
    TremorIndex,
    Score,
}

/// Whether a larger value of a metric is an improvement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

impl Headline {
    /// Every headline metric.
    pub const ALL: [Headline; 6] = [
        Headline::RomMean,
        Headline::PeakForceMean,
        Headline::Repetitions,
        Headline::Sparc,
        Headline::TremorIndex,
        Headline::Score,
    ];

    /// The dotted key used in the API.
    pub fn key(self) -> &'static str {
        match self {
            Headline::RomMean => "rom_deg.mean",
            Headline::PeakForceMean => "peak_force_n.mean",
            Headline::Repetitions => "repetitions",
            Headline::Sparc => "smoothness.sparc",
            Headline::TremorIndex => "tremor.index",
            Headline::Score => "score",
        }
    }

    /// The unit shown next to the value.
    pub fn unit(self) -> &'static str {
        match self {
            Headline::RomMean => "deg",
            Headline::PeakForceMean => "N",
            Headline::Repetitions => "count",
            Headline::Sparc => "dimensionless",
            Headline::TremorIndex => "ratio",
            Headline::Score => "points",
        }
    }

    /// Which way is better.
    pub fn direction(self) -> Direction {
        match self {
            Headline::TremorIndex => Direction::LowerIsBetter,
            _ => Direction::HigherIsBetter,
        }
    }
}

/// One processed game as progress needs it.
#[derive(Debug, Clone, Copy)]
pub struct ProgressGame<'a> {
    pub game_id: Uuid,
    /// When the game was played (`started_at`).
    pub at: DateTime<Utc>,
    pub metrics: &'a Metrics,
}

/// Progress of every headline metric that at least one game has.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub metrics: BTreeMap<String, MetricProgress>,
    /// The algorithm version of the games compared: progress compares
    /// games of one version only, the newest among the user's processed
    /// games (games analysed only under an older version are left out until
    /// they are reprocessed). Absent without processed games. Set by the
    /// caller, which knows the versions ([`progress`] leaves it `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_version: Option<u32>,
}

/// Progress of one headline metric.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricProgress {
    pub unit: String,
    pub direction: Direction,
    /// Median of the first three games that have the metric.
    pub baseline: f64,
    /// The most recent game's value.
    pub latest: f64,
    /// Change from baseline in percent, positive when better; absent when
    /// the baseline is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub improvement_pct: Option<f64>,
    /// Theil–Sen slope per 7 days over the last ten games; absent with
    /// fewer than three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend_per_week: Option<f64>,
    pub series: Vec<SeriesPoint>,
}

/// One game's value of a metric.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub game_id: Uuid,
    pub at: DateTime<Utc>,
    pub value: f64,
}

const BASELINE_GAMES: usize = 3;
const TREND_GAMES: usize = 10;
const MIN_TREND_GAMES: usize = 3;
const SECONDS_PER_WEEK: f64 = 7.0 * 86_400.0;

/// Computes a user's progress from their processed games, in any order.
pub fn progress(games: &[ProgressGame<'_>]) -> Progress {
    let mut ordered: Vec<&ProgressGame<'_>> = games.iter().collect();
    ordered.sort_by_key(|g| (g.at, g.game_id));
    let metrics = Headline::ALL
        .iter()
        .filter_map(|&h| {
            let series: Vec<SeriesPoint> = ordered
                .iter()
                .filter_map(|g| {
                    g.metrics
                        .headline(h)
                        .filter(|v| v.is_finite())
                        .map(|value| SeriesPoint {
                            game_id: g.game_id,
                            at: g.at,
                            value,
                        })
                })
                .collect();
            metric_progress(h, series).map(|p| (h.key().to_owned(), p))
        })
        .collect();
    Progress {
        metrics,
        algorithm_version: None,
    }
}

fn metric_progress(h: Headline, series: Vec<SeriesPoint>) -> Option<MetricProgress> {
    let latest = series.last()?.value;
    let first: Vec<f64> = series
        .iter()
        .take(BASELINE_GAMES)
        .map(|p| p.value)
        .collect();
    let baseline = stats::median(&first)?;
    let improvement_pct = (baseline != 0.0)
        .then(|| {
            let pct = (latest - baseline) / baseline.abs() * 100.0;
            match h.direction() {
                Direction::HigherIsBetter => pct,
                Direction::LowerIsBetter => -pct,
            }
        })
        .filter(|v| v.is_finite())
        .map(positive_zero);
    let recent = &series[series.len().saturating_sub(TREND_GAMES)..];
    let trend_per_week = (recent.len() >= MIN_TREND_GAMES)
        .then(|| theil_sen_per_week(recent))
        .flatten()
        .map(positive_zero);
    Some(MetricProgress {
        unit: h.unit().to_owned(),
        direction: h.direction(),
        baseline,
        latest,
        improvement_pct,
        trend_per_week,
        series,
    })
}

/// `-0.0` as `0.0`, every other value unchanged: "no change" is sent as
/// `0.0`, never `-0.0` (negating a zero change for a lower-is-better
/// metric gives `-0.0`, which JSON would carry as `-0.0`).
fn positive_zero(v: f64) -> f64 {
    v + 0.0
}

/// Theil–Sen slope of the series in value per week (see
/// [`stats::theil_sen_slope`]).
fn theil_sen_per_week(points: &[SeriesPoint]) -> Option<f64> {
    let t0 = points[0].at;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| {
            let weeks = (p.at - t0).num_milliseconds() as f64 / 1000.0 / SECONDS_PER_WEEK;
            (weeks, p.value)
        })
        .collect();
    stats::theil_sen_slope(&xy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn metrics(tremor_index: f64, score: f64) -> Metrics {
        serde_json::from_value(serde_json::json!({
            "duration_s": 60.0,
            "tremor": {"index": tremor_index},
            "score": score,
        }))
        .unwrap()
    }

    #[test]
    fn no_change_is_positive_zero_in_both_directions() {
        // Same values in every game: no change, for a lower-is-better
        // metric (tremor index) as for a higher-is-better one (score).
        let played = [
            metrics(0.25, 100.0),
            metrics(0.25, 100.0),
            metrics(0.25, 100.0),
        ];
        let games: Vec<ProgressGame<'_>> = played
            .iter()
            .enumerate()
            .map(|(i, m)| ProgressGame {
                game_id: Uuid::from_u128(i as u128 + 1),
                at: Utc
                    .with_ymd_and_hms(2026, 1, 1 + i as u32, 10, 0, 0)
                    .unwrap(),
                metrics: m,
            })
            .collect();
        let p = progress(&games);
        for key in ["tremor.index", "score"] {
            let m = &p.metrics[key];
            for (what, v) in [
                ("improvement_pct", m.improvement_pct),
                ("trend_per_week", m.trend_per_week),
            ] {
                let v = v.unwrap_or_else(|| panic!("{key} {what} is absent"));
                assert_eq!(v.to_bits(), 0.0f64.to_bits(), "{key} {what} is {v:?}");
            }
        }
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("-0.0"), "{json}");
    }
}
