//! The events on the bus, exactly as docs/api.md defines them.

use crate::error::SubmissionError;
use crate::game::GameStatus;
use crate::submission::{Device, GameSubmission};
use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The version of both events' JSON shape.
pub const EVENT_VERSION: u32 = 1;

/// The game's description inside a [`ProcessingEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventGame {
    pub game: String,
    pub score: f64,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

/// Gateway → processing: a stored game waiting for its analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "ProcessingEvent")]
pub struct ProcessingEvent {
    pub version: u32,
    pub event_id: Uuid,
    pub game_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub game: EventGame,
    pub sample_rate_hz: f64,
    pub channels: BTreeMap<String, Vec<f64>>,
}

impl ProcessingEvent {
    /// Checks the event's game against the submission contract: a message
    /// from the queue is input like any other.
    pub fn to_submission(&self) -> Result<GameSubmission, SubmissionError> {
        GameSubmission::validate(
            Some(self.game.game.clone()),
            Some(self.game.score),
            Some(self.game.started_at.to_rfc3339()),
            self.game.device.clone(),
            Some(self.sample_rate_hz),
            Some(self.channels.clone()),
        )
    }
}

/// Processing → gateways: a game's processing has finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "ReconciliationEvent")]
pub struct ReconciliationEvent {
    pub version: u32,
    pub event_id: Uuid,
    pub processing_event_id: Uuid,
    pub game_id: Uuid,
    pub user_id: Uuid,
    /// `processed` or `failed`.
    pub status: GameStatus,
    pub processed_at: DateTime<Utc>,
    /// The metrics when processed, `null` when failed.
    pub metrics: Option<Metrics>,
    /// Why it failed, `null` when processed.
    pub error: Option<String>,
}

impl ProcessingEvent {
    /// The event of a freshly validated game. The columns are carried at
    /// the precision the store keeps them, so the analysis gives the same
    /// result whether it runs on this event or on one rebuilt from the store.
    pub fn from_submission(
        event_id: Uuid,
        game_id: Uuid,
        user_id: Uuid,
        created_at: DateTime<Utc>,
        submission: &GameSubmission,
    ) -> Self {
        ProcessingEvent {
            version: EVENT_VERSION,
            event_id,
            game_id,
            user_id,
            created_at,
            game: EventGame {
                game: submission.game().to_owned(),
                score: submission.score(),
                started_at: submission.started_at().unwrap_or(created_at),
                device: submission.device().cloned(),
            },
            sample_rate_hz: submission.sample_rate_hz(),
            channels: submission
                .channels()
                .iter()
                .map(|(name, col)| (name.to_owned(), crate::column::stored_precision(col)))
                .collect(),
        }
    }
}
