//! The stored documents, and reading them field by field so that one value
//! that cannot be decoded is shown as its fallback and spoils neither its
//! document nor the others (crate documentation, "Stored data that cannot
//! be read").

use super::feed::encode_cursor;
use crate::format::{corrupt, corrupt_detail, id, unreadable, Field, StoredChange, StoredGame};
use crate::Result;
use m2m_analysis::Metrics;
use m2m_domain::{Change, Device, Game, GameStatus};
use mongodb::bson::{self, spec::BinarySubtype, Binary, Bson, Document};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct UserDoc {
    #[serde(rename = "_id")]
    pub(super) user_id: String,
    pub(super) username: String,
    /// The lower-cased username: the unique key.
    pub(super) username_key: String,
    pub(super) password_hash: String,
    /// The account's role; absent in accounts stored before roles. Kept as
    /// a raw value so that one that cannot be read spoils nothing else
    /// (read by `stored_role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<Bson>,
    pub(super) created_at: String,
    /// The IANA time zone the user set; absent until set (UTC). Raw, as
    /// `role`, for the same reason (read by `stored_tz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tz: Option<Bson>,
}

impl UserDoc {
    /// The stored role as text, as `stored_role` reads it.
    pub(super) fn role_field(&self) -> Field<String> {
        match &self.role {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("not a string: {:?}", other.element_type())),
        }
    }
}

/// A therapist's invite code.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct InviteDoc {
    /// The code itself: one invite per code, by the `_id` index.
    #[serde(rename = "_id")]
    pub(super) code: String,
    pub(super) therapist_id: String,
    pub(super) created_at: String,
    pub(super) expires_at: String,
    /// The patient who redeemed it; absent until then (open codes are
    /// those without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) used_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) used_at: Option<String>,
}

/// A link of a therapist and a patient.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LinkDoc {
    /// [`link_id`]: one link per pair, by the `_id` index.
    #[serde(rename = "_id")]
    pub(super) link_id: String,
    pub(super) therapist_id: String,
    pub(super) patient_id: String,
    pub(super) linked_at: String,
}

/// The `_id` of the link of a therapist and a patient: both ids, therapist
/// first, so that a pair has one link whoever writes it.
pub(super) fn link_id(therapist_id: Uuid, patient_id: Uuid) -> String {
    format!("{}:{}", id(therapist_id), id(patient_id))
}

/// A regular expression matching a time exactly as
/// [`ts`](crate::format::ts) writes it, for a real date and time, whose
/// string order is therefore its time order. A range query takes such
/// strings by their order and every other value whatever it holds, and
/// reads them all with their fallbacks (`format::text_range`). It leaves
/// 29 February to be read (a leap year's or not), so it never calls a
/// value well-formed that is not.
pub(super) const WELL_FORMED_TIME: &str = "^[0-9]{4}-\
    (?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)\
    T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\\.[0-9]{6}Z$";

/// [`WELL_FORMED_TIME`] as a BSON value, for `$regex` and `$not`.
pub(super) fn well_formed_time() -> Bson {
    Bson::RegularExpression(bson::Regex {
        pattern: WELL_FORMED_TIME.to_owned(),
        options: String::new(),
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LoginDoc {
    #[serde(rename = "_id")]
    pub(super) login_id: String,
    pub(super) user_id: String,
    pub(super) created_at: String,
    /// Absent (not null) until revoked, so that `$min` sets it the first
    /// time and keeps the first time after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) revoked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TokenDoc {
    /// SHA-256 of the token; the token itself is never stored.
    #[serde(rename = "_id")]
    pub(super) token_hash: Binary,
    pub(super) login_id: String,
    pub(super) created_at: String,
    pub(super) expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) spent_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct GameDoc {
    #[serde(rename = "_id")]
    pub(super) game_id: String,
    pub(super) user_id: String,
    pub(super) event_id: String,
    pub(super) status: String,
    pub(super) game: String,
    pub(super) score: f64,
    pub(super) started_at: String,
    pub(super) submitted_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) processed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) device: Option<Device>,
    pub(super) sample_rate_hz: f64,
    pub(super) samples: i64,
    /// The channel names, so that reading a game needs no columns.
    pub(super) channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// The game's outbox entry, in the game's own document so that storing
    /// a game and its event is one atomic write. Projected away where
    /// unused (then `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) outbox: Option<OutboxDoc>,
    /// The algorithm version of the game's newest result; absent while
    /// queued and in games processed before versions (version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) algorithm_version: Option<i64>,
}

/// A reprocessing event waiting in the outbox (collection `reprocessing`),
/// stored by `enqueue_reprocessing`. A document of its own, not a field of
/// the game: a game may be reprocessed under several versions, and the
/// game document keeps its first event's outbox state.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ReprocessDoc {
    /// `reprocessing_event_id(game, version)`: one entry per game and
    /// version, by the `_id` index.
    #[serde(rename = "_id")]
    pub(super) event_id: String,
    pub(super) game_id: String,
    pub(super) user_id: String,
    pub(super) algorithm_version: i64,
    pub(super) trace_id: String,
    pub(super) created_at: String,
    /// True until the bus confirms the event.
    pub(super) pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lease_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) published_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OutboxDoc {
    /// The game's `submitted_at`: the publisher publishes oldest first.
    pub(super) created_at: String,
    pub(super) trace_id: String,
    /// True until the bus confirms the event (the partial index holds only
    /// these).
    pub(super) pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lease_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) published_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct ColumnsDoc<'a> {
    #[serde(rename = "_id")]
    pub(super) game_id: &'a str,
    pub(super) user_id: &'a str,
    pub(super) columns: BTreeMap<&'a str, Binary>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IdempotencyDoc {
    pub(super) user_id: String,
    pub(super) key: String,
    pub(super) request_hash: Binary,
    pub(super) status: i32,
    pub(super) body: Binary,
    /// The ids and time of the game the stored answer announces: a retry
    /// that finds the game missing (its first attempt crashed between the
    /// key and the game) stores it under these, so the answer comes true.
    pub(super) game_id: String,
    pub(super) event_id: String,
    pub(super) submitted_at: String,
    pub(super) created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChangeDoc {
    /// The processing event's id: one change per event, by the `_id` index.
    #[serde(rename = "_id")]
    pub(super) event_id: String,
    pub(super) user_id: String,
    /// The position in the user's feed (see "Cursors").
    pub(super) seq: i64,
    pub(super) game_id: String,
    pub(super) reconciliation_event_id: String,
    pub(super) status: String,
    pub(super) processed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// The version of the metric definitions that made this result; absent
    /// in changes stored before versions (version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) algorithm_version: Option<i64>,
    /// True for a reprocessing's result (`game.reprocessed`); absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) reprocessed: bool,
}

impl ChangeDoc {
    /// Its algorithm version, absent being 1.
    pub(super) fn version(&self) -> i64 {
        self.algorithm_version.unwrap_or(1)
    }
}

/// A `games` document rendered as a [`Game`] by the rule of
/// [`StoredGame`]; `None` (logged) if its id cannot be read.
pub(super) fn game_from_doc(d: &Document, with_metrics: bool) -> Option<Game> {
    let game_id = doc_id(d, "_id", "game")?;
    Some(
        StoredGame {
            game_id,
            status: doc_text(d, "status"),
            game: doc_text(d, "game"),
            score: doc_f64(d, "score"),
            started_at: doc_text(d, "started_at"),
            submitted_at: doc_text(d, "submitted_at"),
            processed_at: doc_text(d, "processed_at"),
            device: doc_value::<Device>(d, "device"),
            sample_rate_hz: doc_f64(d, "sample_rate_hz"),
            samples: doc_i64(d, "samples"),
            channels: doc_value(d, "channels"),
            metrics: if with_metrics {
                doc_value::<Metrics>(d, "metrics")
            } else {
                Ok(None)
            },
            error: doc_text(d, "error"),
            algorithm_version: doc_i64(d, "algorithm_version"),
        }
        .render(with_metrics),
    )
}

/// A `changes` document rendered as a [`Change`] by the rule of
/// [`StoredChange`]; `None` (logged) if its position or game id cannot be
/// read.
pub(super) fn change_from_doc(d: &Document, user_id: Uuid) -> Option<Change> {
    let seq = match doc_i64(d, "seq") {
        Ok(Some(seq)) if seq > 0 => seq,
        other => {
            let row = format!("change {:?}", d.get("_id"));
            unreadable(&row, "seq", &format!("{other:?}"), "skipped");
            return None;
        }
    };
    let cursor = encode_cursor(user_id, seq);
    let game_id = doc_id(d, "game_id", &format!("change {cursor} of game"))?;
    Some(
        StoredChange {
            cursor,
            game_id,
            status: doc_text(d, "status"),
            processed_at: doc_text(d, "processed_at"),
            metrics: doc_value(d, "metrics"),
            algorithm_version: doc_i64(d, "algorithm_version"),
            reprocessed: doc_value(d, "reprocessed"),
        }
        .render(),
    )
}

// Fields of a stored document, read one by one so that one bad value
// spoils neither its document nor the others (see [`StoredGame`]).

pub(super) fn doc_text(d: &Document, key: &str) -> Field<String> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("not a string: {:?}", other.element_type())),
    }
}

pub(super) fn doc_f64(d: &Document, key: &str) -> Field<f64> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Double(x)) => Ok(Some(*x)),
        Some(Bson::Int32(n)) => Ok(Some(f64::from(*n))),
        Some(Bson::Int64(n)) => Ok(Some(*n as f64)),
        Some(other) => Err(format!("not a number: {:?}", other.element_type())),
    }
}

pub(super) fn doc_i64(d: &Document, key: &str) -> Field<i64> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Int32(n)) => Ok(Some(i64::from(*n))),
        Some(Bson::Int64(n)) => Ok(Some(*n)),
        Some(other) => Err(format!("not an integer: {:?}", other.element_type())),
    }
}

pub(super) fn doc_value<T: serde::de::DeserializeOwned>(d: &Document, key: &str) -> Field<T> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => bson::from_bson(v.clone())
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// The id in a field, or `None` (logged) when it cannot be read: a document
/// without a readable id cannot be shown or addressed, so it is skipped.
pub(super) fn doc_id(d: &Document, key: &str, what: &str) -> Option<Uuid> {
    let raw = d.get(key);
    match raw {
        Some(Bson::String(s)) => Uuid::parse_str(s).ok(),
        _ => None,
    }
    .or_else(|| {
        unreadable(&format!("{what} {raw:?}"), key, "not a UUID", "skipped");
        None
    })
}

pub(super) fn to_bson<T: Serialize>(value: &T) -> Result<bson::Bson> {
    bson::to_bson(value).map_err(|e| corrupt("unserialisable value", e))
}

/// `value` as it will read back from the store, so that what a write
/// returns is exactly what later reads return.
pub(super) fn as_stored<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<T> {
    bson::from_bson(to_bson(value)?).map_err(|e| corrupt("value does not read back", e))
}

pub(super) fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| corrupt("stored id", e))
}

pub(super) fn parse_status(s: &str) -> Result<GameStatus> {
    GameStatus::parse(s).ok_or_else(|| corrupt_detail("stored status", s))
}

pub(super) fn binary(bytes: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    }
}

pub(super) fn to_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
