//! The two tables' columns, and a stored game as a row of `games`.
//!
//! Both formats write the same columns in the same order (docs/export.md
//! is the reference):
//! - `games`: the fixed columns of [`GAME_COLUMNS`] (with `username` after
//!   `user_pseudonym` when asked for), then one column per metric;
//! - `samples`: `game_id`, `t`, then one column per channel, named after
//!   it (a channel called `t` or `game_id` is `channel_t`, `channel_game_id`).
//!
//! Metric columns are named after the metrics' JSON (`GET
//! /v1/games/{id}`), nested names joined by `_` (`rom_deg.thumb` →
//! `rom_deg_thumb`, `tremor.frequency_hz` → `tremor_frequency_hz`), so a
//! metric added to the analysis appears as a column without a change here.
//! A metric whose name is that of a fixed column gets `metric_` before it
//! (`score`, the game's score repeated in the metrics, is `metric_score`).
//! Every metric column is a nullable double (counts too).

use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use m2m_domain::Hand;
use m2m_store::ExportedGame;
use std::collections::BTreeMap;

use super::pseudonym::PseudonymKey;

/// The type of a column, as both formats write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// UTF-8 text (Parquet `BYTE_ARRAY` `STRING`).
    Text,
    /// IEEE 754 double.
    Double,
    /// 64-bit signed integer.
    Int,
    /// An instant in UTC, to the microsecond (Parquet `INT64`
    /// `TIMESTAMP(MICROS, true)`; CSV RFC 3339 with six decimals and `Z`).
    Time,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) nullable: bool,
}

impl Column {
    fn new(name: &str, kind: Kind, nullable: bool) -> Column {
        Column {
            name: name.to_owned(),
            kind,
            nullable,
        }
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Text(String),
    Double(f64),
    Int(i64),
    Time(DateTime<Utc>),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Double(x)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(t: DateTime<Utc>) -> Value {
        Value::Time(t)
    }
}

/// The fixed columns of `games`, in order (`username` is inserted after
/// `user_pseudonym` with `--with-usernames`).
pub(crate) const GAME_COLUMNS: &[(&str, Kind, bool)] = &[
    ("game_id", Kind::Text, false),
    ("user_pseudonym", Kind::Text, false),
    ("game", Kind::Text, false),
    ("status", Kind::Text, false),
    ("score", Kind::Double, false),
    ("started_at", Kind::Time, false),
    ("submitted_at", Kind::Time, false),
    ("processed_at", Kind::Time, true),
    ("sample_rate_hz", Kind::Double, false),
    ("samples", Kind::Int, false),
    ("channels", Kind::Text, false),
    ("device_glove_pseudonym", Kind::Text, true),
    ("device_firmware", Kind::Text, true),
    ("device_hand", Kind::Text, true),
    ("error", Kind::Text, true),
    ("algorithm_version", Kind::Int, true),
];

/// The column of usernames, only with `--with-usernames`.
const USERNAME: &str = "username";

/// The version of the metric definitions that made a stored result (the
/// newest one: what every read shows), or `None` for a game without a
/// result yet (queued).
pub(crate) fn algorithm_version(game: &ExportedGame) -> Option<i64> {
    game.game.algorithm_version.map(i64::from)
}

/// The columns of both tables for the games to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schema {
    pub(crate) with_usernames: bool,
    /// Metric column names, sorted.
    pub(crate) metrics: Vec<String>,
    /// Channel names, sorted: the union of the exported games' channels.
    pub(crate) channels: Vec<String>,
}

impl Schema {
    /// The columns of `games`.
    pub(crate) fn game_columns(&self) -> Vec<Column> {
        let mut columns = Vec::new();
        for &(name, kind, nullable) in GAME_COLUMNS {
            columns.push(Column::new(name, kind, nullable));
            if name == "user_pseudonym" && self.with_usernames {
                columns.push(Column::new(USERNAME, Kind::Text, true));
            }
        }
        columns.extend(
            self.metrics
                .iter()
                .map(|name| Column::new(name, Kind::Double, true)),
        );
        columns
    }

    /// The columns of `samples`.
    pub(crate) fn sample_columns(&self) -> Vec<Column> {
        let mut columns = vec![
            Column::new("game_id", Kind::Text, false),
            Column::new("t", Kind::Double, false),
        ];
        for channel in &self.channels {
            // A channel may be called `t` or `game_id`: its column is then
            // `channel_t` (`channel_` again while the name is taken).
            let mut name = channel.clone();
            while columns.iter().any(|c| c.name == name) || self.is_other_channel(channel, &name) {
                name = format!("channel_{name}");
            }
            columns.push(Column::new(&name, Kind::Double, true));
        }
        columns
    }

    /// Whether `name` is the name of a channel other than `channel`.
    fn is_other_channel(&self, channel: &str, name: &str) -> bool {
        name != channel && self.channels.iter().any(|c| c == name)
    }

    /// `game` as a row of `games` (values in [`Schema::game_columns`]
    /// order), or `None` when it has a metric this schema has no column
    /// for (it changed after the schema was made).
    pub(crate) fn game_row(
        &self,
        game: &ExportedGame,
        key: &PseudonymKey,
        username: Option<String>,
    ) -> Option<Vec<Value>> {
        let g = &game.game;
        let device = g.device.as_ref();
        let mut row: Vec<Value> = vec![
            g.game_id.hyphenated().to_string().into(),
            key.user(game.user_id).into(),
            g.game.as_str().into(),
            g.status.as_str().into(),
            g.score.into(),
            g.started_at.into(),
            g.submitted_at.into(),
            g.processed_at.into(),
            g.sample_rate_hz.into(),
            i64::try_from(g.samples).unwrap_or(i64::MAX).into(),
            g.channels.join(",").into(),
            device
                .and_then(|d| d.glove_id.as_deref())
                .map(|id| key.glove(id))
                .into(),
            device.and_then(|d| d.firmware.clone()).into(),
            device
                .and_then(|d| d.hand)
                .map(|h| match h {
                    Hand::Left => "left",
                    Hand::Right => "right",
                })
                .into(),
            g.error.clone().into(),
            algorithm_version(game).into(),
        ];
        debug_assert_eq!(row.len(), GAME_COLUMNS.len());
        if self.with_usernames {
            row.insert(2, username.into());
        }
        let mut metrics: BTreeMap<String, f64> =
            g.metrics.as_ref().map(metric_values).unwrap_or_default();
        for name in &self.metrics {
            row.push(metrics.remove(name).into());
        }
        metrics.is_empty().then_some(row)
    }
}

/// Builds a [`Schema`] from the games to export, one at a time.
#[derive(Debug, Default)]
pub(crate) struct SchemaBuilder {
    metrics: std::collections::BTreeSet<String>,
    channels: std::collections::BTreeSet<String>,
}

impl SchemaBuilder {
    pub(crate) fn add(&mut self, game: &ExportedGame) {
        for name in &game.game.channels {
            if !self.channels.contains(name) {
                self.channels.insert(name.clone());
            }
        }
        if let Some(metrics) = &game.game.metrics {
            for name in metric_values(metrics).into_keys() {
                self.metrics.insert(name);
            }
        }
    }

    pub(crate) fn build(self, with_usernames: bool) -> Schema {
        Schema {
            with_usernames,
            metrics: self.metrics.into_iter().collect(),
            channels: self.channels.into_iter().collect(),
        }
    }
}

/// Every metric of `metrics` with its column name (module documentation):
/// the numbers of its JSON, nested names joined by `_`. A value that is
/// not a number (none is today; `metric_leaves_are_numbers` checks) is
/// left out with a warning.
pub(crate) fn metric_values(metrics: &Metrics) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, v) in fields {
                    let name = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}_{name}")
                    };
                    walk(&name, v, out);
                }
            }
            serde_json::Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(column_name(prefix), x);
                }
            }
            serde_json::Value::Null => {}
            other => tracing::warn!(metric = prefix, value = %other, "not a number: not exported"),
        }
    }
    let mut out = BTreeMap::new();
    match serde_json::to_value(metrics) {
        Ok(json) => walk("", &json, &mut out),
        Err(e) => tracing::warn!(error = %e, "metrics cannot be written as JSON: not exported"),
    }
    out
}

/// A metric's column name: its flattened name, with `metric_` before it
/// when a fixed column has that name.
fn column_name(flat: &str) -> String {
    if flat == USERNAME || GAME_COLUMNS.iter().any(|(name, ..)| *name == flat) {
        format!("metric_{flat}")
    } else {
        flat.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m2m_analysis::{Fingers, Smoothness, Tremor};

    /// Metrics with every field set.
    fn full() -> Metrics {
        let fingers = |base: f64| Fingers {
            thumb: Some(base + 1.0),
            index: Some(base + 2.0),
            middle: Some(base + 3.0),
            ring: Some(base + 4.0),
            pinky: Some(base + 5.0),
            mean: Some(base + 3.0),
        };
        Metrics {
            duration_s: 60.0,
            rom_deg: Some(fingers(10.0)),
            peak_force_n: Some(fingers(20.0)),
            repetitions: Some(24),
            smoothness: Some(Smoothness {
                sparc: Some(-1.5),
                ldlj: Some(-6.25),
                movements: 12,
            }),
            active_time_s: Some(41.5),
            tremor: Some(Tremor {
                frequency_hz: Some(6.0),
                index: Some(0.25),
            }),
            score: 1234.0,
        }
    }

    #[test]
    fn metrics_are_flattened_by_their_json_names() {
        let values = metric_values(&full());
        let names: Vec<&str> = values.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "active_time_s",
                "duration_s",
                "metric_score",
                "peak_force_n_index",
                "peak_force_n_mean",
                "peak_force_n_middle",
                "peak_force_n_pinky",
                "peak_force_n_ring",
                "peak_force_n_thumb",
                "repetitions",
                "rom_deg_index",
                "rom_deg_mean",
                "rom_deg_middle",
                "rom_deg_pinky",
                "rom_deg_ring",
                "rom_deg_thumb",
                "smoothness_ldlj",
                "smoothness_movements",
                "smoothness_sparc",
                "tremor_frequency_hz",
                "tremor_index",
            ]
        );
        assert_eq!(values["rom_deg_thumb"], 11.0);
        assert_eq!(values["repetitions"], 24.0);
        assert_eq!(values["smoothness_ldlj"], -6.25);
        assert_eq!(values["metric_score"], 1234.0);
        // Absent metrics have no value, not a zero.
        let sparse = Metrics {
            rom_deg: None,
            tremor: None,
            ..full()
        };
        let values = metric_values(&sparse);
        assert!(!values.contains_key("rom_deg_thumb"));
        assert!(!values.contains_key("tremor_index"));
        assert!(values.contains_key("peak_force_n_thumb"));
    }

    #[test]
    fn metric_leaves_are_numbers() {
        // A metric that is not a number would not be exported: this fails
        // first, so that its column type is decided on purpose.
        fn leaves(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
            match v {
                serde_json::Value::Object(m) => m.values().for_each(|v| leaves(v, out)),
                other => out.push(other.clone()),
            }
        }
        let mut all = Vec::new();
        leaves(&serde_json::to_value(full()).unwrap(), &mut all);
        assert_eq!(all.len(), metric_values(&full()).len());
        assert!(all.iter().all(serde_json::Value::is_number), "{all:?}");
    }

    #[test]
    fn no_two_columns_share_a_name() {
        let schema = Schema {
            with_usernames: true,
            metrics: metric_values(&full()).into_keys().collect(),
            channels: vec!["flex_index".into(), "t".into()],
        };
        for columns in [schema.game_columns(), schema.sample_columns()] {
            let mut names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "{columns:?}");
        }
    }
}
