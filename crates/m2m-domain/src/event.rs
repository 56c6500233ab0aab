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
    try_from = "WireProcessingEvent",
    into = "WireOut"
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
    /// Set on a reprocessing event (`m2m reprocess`): the game has a result
    /// already and is to be analysed again under this algorithm version.
    /// Its `event_id` is [`reprocessing_event_id`] of the game and the
    /// version. `None` on a game's first event.
    pub reprocess: Option<u32>,
}

/// The id of the event that reprocesses `game_id` under algorithm version
/// `version`: a UUIDv5 (name-based) in the game id's namespace, so that the
/// same request made twice (by two runs of `m2m reprocess`, or one
/// interrupted and run again) is one event, which the store completes once.
pub fn reprocessing_event_id(game_id: Uuid, version: u32) -> Uuid {
    Uuid::new_v5(&game_id, format!("m2m reprocess {version}").as_bytes())
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
            reprocess: None,
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

/// A ProcessingEvent as it is published: a reprocessing event carries
/// `"reprocess": true` and its `algorithm_version`, a first event neither.
#[derive(Serialize)]
#[serde(tag = "type", rename = "ProcessingEvent")]
struct WireOut {
    version: u32,
    event_id: Uuid,
    game_id: Uuid,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    game: EventGame,
    sample_rate_hz: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reprocess: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    algorithm_version: Option<u32>,
}

impl From<ProcessingEvent> for WireOut {
    fn from(e: ProcessingEvent) -> Self {
        WireOut {
            version: e.version,
            event_id: e.event_id,
            game_id: e.game_id,
            user_id: e.user_id,
            created_at: e.created_at,
            game: e.game,
            sample_rate_hz: e.sample_rate_hz,
            reprocess: e.reprocess.is_some(),
            algorithm_version: e.reprocess,
        }
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
    /// `true` on a reprocessing event (absent or `false` otherwise).
    #[serde(default)]
    reprocess: bool,
    /// The algorithm version a reprocessing event asks for.
    #[serde(default)]
    algorithm_version: Option<u32>,
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
        let reprocess = match (w.reprocess, w.algorithm_version) {
            (false, None) => None,
            (true, Some(v)) if v >= 1 => Some(v),
            (true, _) => {
                return Err("a reprocessing event carries `algorithm_version` (1 or more)".into())
            }
            (false, Some(_)) => {
                return Err("`algorithm_version` is only carried by a reprocessing event".into())
            }
        };
        if let Some(v) = reprocess {
            if w.event_id != reprocessing_event_id(w.game_id, v) {
                return Err(
                    "event_id: a reprocessing event's id is derived from its game and version"
                        .into(),
                );
            }
        }
        Ok(ProcessingEvent {
            version: w.version,
            event_id: w.event_id,
            game_id: w.game_id,
            user_id: w.user_id,
            created_at: w.created_at,
            game: w.game,
            sample_rate_hz: w.sample_rate_hz,
            reprocess,
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
    /// The version of the metric definitions that made this result
    /// (absent in events of earlier code: version 1).
    #[serde(default = "version_one")]
    pub algorithm_version: u32,
    /// Whether this result replaces an earlier version's (a reprocessing,
    /// announced to clients as `game.reprocessed`).
    #[serde(default)]
    pub reprocessed: bool,
}

fn version_one() -> u32 {
    1
}
