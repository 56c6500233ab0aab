//! A stored game and the changes of a user's sync feed, as the API shows them.

use crate::submission::Device;
use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a game is in its processing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GameStatus {
    /// Stored and waiting for the analysis.
    Queued,
    /// Analysed; its metrics are stored.
    Processed,
    /// Could not be analysed; `error` says why.
    Failed,
}

impl GameStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GameStatus::Queued => "queued",
            GameStatus::Processed => "processed",
            GameStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(GameStatus::Queued),
            "processed" => Some(GameStatus::Processed),
            "failed" => Some(GameStatus::Failed),
            _ => None,
        }
    }
}

/// A game as `GET /v1/games/{id}` returns it. Optional fields are omitted
/// when they have no value.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Game {
    pub game_id: Uuid,
    pub status: GameStatus,
    pub game: String,
    pub score: f64,
    /// When it was played (the submission's, or the submission time).
    pub started_at: DateTime<Utc>,
    pub submitted_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    pub sample_rate_hz: f64,
    /// Samples per channel.
    pub samples: u64,
    /// Channel names.
    pub channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The version of the metric definitions that made this result
    /// (`m2m_analysis::ALGORITHM_VERSION`); absent while queued. Results
    /// stored before versions existed are version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_version: Option<u32>,
}

/// What a change of the feed announces: the name of its server-sent event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeType {
    /// A game's first analysis succeeded.
    #[serde(rename = "game.processed")]
    GameProcessed,
    /// A game's first analysis failed.
    #[serde(rename = "game.failed")]
    GameFailed,
    /// A game was analysed again under a newer algorithm version (`m2m
    /// reprocess`); `status` says whether it succeeded.
    #[serde(rename = "game.reprocessed")]
    GameReprocessed,
}

impl ChangeType {
    /// The type of a change with this status, made by a reprocessing or by
    /// a game's first analysis.
    pub fn of(status: GameStatus, reprocessed: bool) -> Self {
        match (reprocessed, status) {
            (true, _) => ChangeType::GameReprocessed,
            (false, GameStatus::Failed) => ChangeType::GameFailed,
            (false, _) => ChangeType::GameProcessed,
        }
    }

    /// `game.processed`, `game.failed` or `game.reprocessed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::GameProcessed => "game.processed",
            ChangeType::GameFailed => "game.failed",
            ChangeType::GameReprocessed => "game.reprocessed",
        }
    }
}

/// One entry of a user's change feed (`/v1/sync`, `/v1/events`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Opaque, ordered position of this change in the user's feed.
    pub cursor: String,
    pub game_id: Uuid,
    pub status: GameStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// `game.processed`, `game.failed` or `game.reprocessed` (a newer
    /// algorithm version's result of a game that had one).
    #[serde(rename = "type")]
    pub kind: ChangeType,
    /// The version of the metric definitions that made this result.
    pub algorithm_version: u32,
}
