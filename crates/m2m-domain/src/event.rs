//! The events on the bus, exactly as docs/api.md defines them.

use crate::game::GameStatus;
use crate::submission::{Device, GameSubmission};
use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version of the ProcessingEvent this code publishes. Version 2
/// carries the game's description and a reference to the stored game, not
/// its samples (docs/api.md, "Events on the bus").
pub const PROCESSING_EVENT_VERSION: u32 = 2;
/// The version of the ReconciliationEvent's JSON shape.
pub const RECONCILIATION_EVENT_VERSION: u32 = 1;

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
///
/// The event refers to the game; the processor reads the samples from the
/// store, where the game is durable before the event exists (the
/// claim-check pattern). Its size is therefore bounded whatever the game's
/// length.
///
/// Parsing accepts both versions of the wire shape: version 2, which this
/// code publishes, and version 1, which also carried every column as
/// `channels`. A version-1 message left in the queue by an earlier
/// gateway is handled like a version-2 one: its columns are skipped
/// unread, since the same game is in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename = "ProcessingEvent",
    try_from = "WireProcessingEvent"
)]
pub struct ProcessingEvent {
    /// The wire version the event arrived in (published: always
    /// [`PROCESSING_EVENT_VERSION`]).
    pub version: u32,
    pub event_id: Uuid,
    pub game_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub game: EventGame,
    pub sample_rate_hz: f64,
}

impl ProcessingEvent {
    /// The event of a freshly stored game.
    pub fn new(
        event_id: Uuid,
        game_id: Uuid,
        user_id: Uuid,
        created_at: DateTime<Utc>,
        submission: &GameSubmission,
    ) -> Self {
        ProcessingEvent {
            version: PROCESSING_EVENT_VERSION,
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
        }
    }
}

impl ProcessingEvent {
    /// Parses a message from the queue (either version). The error names
    /// the field at fault, e.g. `game.score: invalid type: ...`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let event = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })?;
        de.end().map_err(|e| e.to_string())?;
        Ok(event)
    }
}

/// A ProcessingEvent as it may arrive, in either version.
#[derive(Deserialize)]
struct WireProcessingEvent {
    /// Checked, not kept: serde writes a struct's `tag` but ignores it when
    /// reading, so a message without it or of another type would pass.
    #[serde(rename = "type")]
    _type: ProcessingEventType,
    version: u32,
    event_id: Uuid,
    game_id: Uuid,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    game: EventGame,
    sample_rate_hz: f64,
    /// Version 1's columns: checked to be there, never kept.
    #[serde(default)]
    channels: Option<serde::de::IgnoredAny>,
}

/// The only `type` a ProcessingEvent may have.
#[derive(Deserialize)]
enum ProcessingEventType {
    ProcessingEvent,
}

impl TryFrom<WireProcessingEvent> for ProcessingEvent {
    type Error = String;

    fn try_from(w: WireProcessingEvent) -> Result<Self, Self::Error> {
        match (w.version, w.channels.is_some()) {
            (1, true) | (PROCESSING_EVENT_VERSION, false) => {}
            (1, false) => return Err("a version-1 ProcessingEvent carries `channels`".into()),
            (PROCESSING_EVENT_VERSION, true) => {
                return Err("a version-2 ProcessingEvent carries no `channels`".into())
            }
            (v, _) => return Err(format!("unknown ProcessingEvent version {v}")),
        }
        Ok(ProcessingEvent {
            version: w.version,
            event_id: w.event_id,
            game_id: w.game_id,
            user_id: w.user_id,
            created_at: w.created_at,
            game: w.game,
            sample_rate_hz: w.sample_rate_hz,
        })
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
