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
}
