//! How every store writes ids and times, so that the stores agree and their
//! orderings hold: ids are UUIDs as lower-case hyphenated text (UUIDv7 text
//! sorts by time), times are fixed-width UTC text (text order is time order)
//! at microsecond precision.

use crate::{Activity, RedeemOutcome, StoreError};
use chrono::{DateTime, Datelike, DurationRound, TimeDelta, Utc};
use m2m_analysis::Metrics;
use m2m_domain::{
    decode_column, Change, ChangeType, Channels, Device, Game, GameSamples, GameStatus, Role,
};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// Fixed-width UTC format: text order is time order.
pub(crate) const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

/// The latest time [`TIME_FORMAT`] can write with four-digit years (past
/// it, text order would stop being time order).
pub(crate) fn latest_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(m2m_domain::LATEST_STARTED_AT)
        .expect("a valid constant")
        .with_timezone(&Utc)
}

/// `now + d`, saturating at [`latest_time`] for absurd leases.
pub(crate) fn plus(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map_or_else(latest_time, |t| t.min(latest_time()))
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("stored time", e))
}

pub(crate) fn id(u: Uuid) -> String {
    u.hyphenated().to_string()
}

/// Data that cannot be read back, because of the decoding error `e`.
pub(crate) fn corrupt(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        source: Some(Box::new(e)),
    }
}

/// A stored game's samples from its encoded columns (name, bytes), each
/// decoded exactly as stored: what the processor analyses.
pub(crate) fn stored_samples<'a>(
    sample_rate_hz: f64,
    score: f64,
    columns: impl IntoIterator<Item = (String, &'a [u8])>,
) -> Result<GameSamples, StoreError> {
    let mut decoded = BTreeMap::new();
    for (name, data) in columns {
        let column = decode_column(data).map_err(|e| corrupt(&format!("column {name}"), e))?;
        decoded.insert(name, column);
    }
    Ok(GameSamples {
        sample_rate_hz,
        score,
        channels: Channels::from_stored(decoded).map_err(|e| corrupt("columns", e))?,
    })
}

/// Data that cannot be read back, with no decoding error to keep: `detail`
/// says what is wrong.
pub(crate) fn corrupt_detail(what: &str, detail: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: format!("{what}: {detail}"),
        source: None,
    }
}

// ---------------------------------------------------------------------------
// Reading stored data that cannot be decoded
//
// The rule (crate documentation, "Stored data that cannot be read"): a read
// never fails because of what one row holds. A stored value that cannot be
// decoded is replaced by its documented fallback and a warning names the
// row and the field; the stored value itself is left as it is.

/// A stored field before its rendering: `Ok(None)` when absent, `Err` with
/// the reason when present but not decodable.
pub(crate) type Field<T> = std::result::Result<Option<T>, String>;

/// Logs a stored value that cannot be read and what is shown instead.
pub(crate) fn unreadable(row: &dyn fmt::Display, field: &str, why: &str, shown: &str) {
    tracing::warn!(
        row = %row,
        field,
        reason = why,
        shown,
        "stored value cannot be read; shown with its fallback"
    );
}

/// An account's stored role: `patient` when absent (an account stored
/// before roles); `patient`, with a warning, when it cannot be read, the
/// role with the fewest rights (crate documentation).
pub(crate) fn stored_role(user_id: &Uuid, raw: Field<String>) -> Role {
    match raw {
        Ok(None) => Role::Patient,
        Ok(Some(s)) => Role::parse(&s).unwrap_or_else(|_| {
            unreadable(
                &format!("user {user_id}"),
                "role",
                &format!("unknown role {s:?}"),
                "patient",
            );
            Role::Patient
        }),
        Err(why) => {
            unreadable(&format!("user {user_id}"), "role", &why, "patient");
            Role::Patient
        }
    }
}

/// The creation time a UUIDv7 id carries (to the millisecond), or the Unix
/// epoch for an id that carries none.
pub(crate) fn id_time(id: Uuid) -> DateTime<Utc> {
    id.get_timestamp()
        .and_then(|ts| {
            let (secs, nanos) = ts.to_unix();
            DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
        })
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// A required field's value, or `None` after logging why it is unusable.
pub(crate) fn required<T>(
    row: &dyn fmt::Display,
    field: &str,
    value: Field<T>,
    shown: &str,
) -> Option<T> {
    match value {
        Ok(Some(v)) => Some(v),
        Ok(None) => {
            unreadable(row, field, "missing", shown);
            None
        }
        Err(why) => {
            unreadable(row, field, &why, shown);
            None
        }
    }
}

/// An optional field's value, `None` when absent or (logged) unreadable.
fn optional<T>(row: &dyn fmt::Display, field: &str, value: Field<T>) -> Option<T> {
    value.unwrap_or_else(|why| {
        unreadable(row, field, &why, "absent");
        None
    })
}

/// A stored time's text, read as a time.
fn time(text: Field<String>) -> Field<DateTime<Utc>> {
    match text {
        Ok(Some(s)) => parse_time(&s).map(Some).map_err(|e| format!("{e} ({s:?})")),
        Ok(None) => Ok(None),
        Err(why) => Err(why),
    }
}

/// When a game was submitted (and its outbox entry created): its stored
/// `submitted_at`, else the time in its id.
pub(crate) fn submitted_at(game_id: Uuid, stored: Field<String>) -> DateTime<Utc> {
    required(
        &game_id,
        "submitted_at",
        time(stored),
        "the time in the game id",
    )
    .unwrap_or_else(|| id_time(game_id))
}

/// When a game was played: its stored `started_at`, else its submission
/// time (as when the phone gives none).
pub(crate) fn started_at(
    game_id: Uuid,
    started: Field<String>,
    submitted: Field<String>,
) -> DateTime<Utc> {
    match time(started) {
        Ok(Some(t)) => t,
        other => {
            let why = match other {
                Err(why) => why,
                _ => "missing".to_owned(),
            };
            unreadable(&game_id, "started_at", &why, "submitted_at");
            submitted_at(game_id, submitted)
        }
    }
}

/// A stored game, field by field, before its rendering.
pub(crate) struct StoredGame {
    pub(crate) game_id: Uuid,
    pub(crate) status: Field<String>,
    pub(crate) game: Field<String>,
    pub(crate) score: Field<f64>,
    pub(crate) started_at: Field<String>,
    pub(crate) submitted_at: Field<String>,
    pub(crate) processed_at: Field<String>,
    pub(crate) device: Field<Device>,
    pub(crate) sample_rate_hz: Field<f64>,
    pub(crate) samples: Field<i64>,
    pub(crate) channels: Field<Vec<String>>,
    pub(crate) metrics: Field<Metrics>,
    pub(crate) error: Field<String>,
    /// Absent in results stored before versions (version 1) and while
    /// queued.
    pub(crate) algorithm_version: Field<i64>,
}

/// A stored algorithm version: absent is version 1 (results stored before
/// versions existed); one that cannot be read is shown as 1, the oldest,
/// so that `m2m reprocess` picks the result up again.
pub(crate) fn algorithm_version(row: &dyn fmt::Display, stored: Field<i64>) -> u32 {
    match stored {
        Ok(None) => 1,
        Ok(Some(v)) => u32::try_from(v)
            .ok()
            .filter(|&v| v >= 1)
            .unwrap_or_else(|| {
                unreadable(
                    row,
                    "algorithm_version",
                    &format!("not a version: {v}"),
                    "1",
                );
                1
            }),
        Err(why) => {
            unreadable(row, "algorithm_version", &why, "1");
            1
        }
    }
}

/// A stored status, or why it cannot be read.
fn status(stored: Field<String>) -> std::result::Result<GameStatus, String> {
    match stored {
        Ok(Some(s)) => GameStatus::parse(&s).ok_or(format!("unknown status {s:?}")),
        Ok(None) => Err("missing".to_owned()),
        Err(why) => Err(why),
    }
}

/// The `error` of a game whose stored status cannot be read.
pub(crate) const UNREADABLE_STATUS: &str = "the stored status of this game cannot be read";

impl StoredGame {
    /// The game as the API shows it, every unreadable value replaced by its
    /// fallback.
    pub(crate) fn render(self, with_metrics: bool) -> Game {
        let id = self.game_id;
        let status = status(self.status);
        let mut error = optional(&id, "error", self.error);
        let status = status.unwrap_or_else(|why| {
            unreadable(&id, "status", &why, "failed");
            error.get_or_insert_with(|| UNREADABLE_STATUS.to_owned());
            GameStatus::Failed
        });
        let samples = match self.samples {
            Ok(Some(n)) => u64::try_from(n).map_err(|_| format!("negative count {n}")),
            Ok(None) => Err("missing".to_owned()),
            Err(why) => Err(why),
        }
        .unwrap_or_else(|why| {
            unreadable(&id, "samples", &why, "0");
            0
        });
        Game {
            game_id: id,
            status,
            game: required(&id, "game", self.game, "\"\"").unwrap_or_default(),
            score: required(&id, "score", self.score, "0").unwrap_or(0.0),
            started_at: started_at(id, self.started_at, self.submitted_at.clone()),
            submitted_at: submitted_at(id, self.submitted_at),
            processed_at: optional(&id, "processed_at", time(self.processed_at)),
            device: optional(&id, "device", self.device),
            sample_rate_hz: required(&id, "sample_rate_hz", self.sample_rate_hz, "0")
                .unwrap_or(0.0),
            samples,
            channels: required(&id, "channels", self.channels, "[]").unwrap_or_default(),
            metrics: if with_metrics {
                optional(&id, "metrics", self.metrics)
            } else {
                None
            },
            algorithm_version: (status != GameStatus::Queued)
                .then(|| algorithm_version(&id, self.algorithm_version)),
            error,
        }
    }
}

/// A stored change of the feed, field by field, before its rendering.
pub(crate) struct StoredChange {
    pub(crate) cursor: String,
    pub(crate) game_id: Uuid,
    pub(crate) status: Field<String>,
    pub(crate) processed_at: Field<String>,
    pub(crate) metrics: Field<Metrics>,
    /// Absent in changes stored before versions (version 1).
    pub(crate) algorithm_version: Field<i64>,
    /// Whether the change is a reprocessing's; absent: it is not.
    pub(crate) reprocessed: Field<bool>,
}

impl StoredChange {
    /// The change as the API shows it, every unreadable value replaced by
    /// its fallback.
    pub(crate) fn render(self) -> Change {
        let row = format!("change {} of game {}", self.cursor, self.game_id);
        let status = status(self.status).unwrap_or_else(|why| {
            unreadable(&row, "status", &why, "failed");
            GameStatus::Failed
        });
        let reprocessed = optional(&row, "reprocessed", self.reprocessed).unwrap_or(false);
        Change {
            cursor: self.cursor,
            game_id: self.game_id,
            status,
            processed_at: optional(&row, "processed_at", time(self.processed_at)),
            metrics: optional(&row, "metrics", self.metrics),
            kind: ChangeType::of(status, reprocessed),
            algorithm_version: algorithm_version(&row, self.algorithm_version),
        }
    }
}

// ---------------------------------------------------------------------------
// Ranges of stored times
//
// Stored times are text, and text order is time order only for what `ts`
// writes (four-digit years, six fractional digits, `Z`). A range query
// therefore takes the rows whose text is a well-formed time in the text
// range (by index), plus every row whose text is not well-formed, whatever
// it holds; each store's query says which texts it trusts. The rows are
// then read with their fallbacks and kept by the time they read as.

/// The text bounds `[from, to)` of a range query over stored times,
/// widened (never narrowed) to what stored text can hold: `from` is
/// truncated to the microsecond and `to` rounded up to it, and a bound past
/// years 0000–9999 becomes one below or above every stored time. `None`
/// when the range is empty.
pub(crate) fn text_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<(String, String)> {
    if from >= to {
        return None;
    }
    let lower = if from.year() < 0 {
        String::new()
    } else {
        ts(from)
    };
    let upper = to
        .duration_round_up(TimeDelta::microseconds(1))
        .ok()
        .filter(|t| *t <= latest_time())
        // `~` sorts after every digit: above any time `ts` writes.
        .map_or_else(|| "~".to_owned(), ts);
    Some((lower, upper))
}

// ---------------------------------------------------------------------------
// Accounts' settings, activity, invites and links

/// An account's stored time zone: kept as it is when it is text (the
/// gateway falls back to UTC for a name it does not know); absent, with a
/// warning, when it is not text.
pub(crate) fn stored_tz(user_id: &Uuid, raw: Field<String>) -> Option<String> {
    optional(&format!("user {user_id}"), "tz", raw)
}

/// A game as adherence counts it: at its `started_at` (by the rule of
/// [`started_at`]), for samples ÷ sample rate seconds (0, with a warning,
/// when either cannot be read or the rate is not positive).
pub(crate) fn activity(
    game_id: Uuid,
    started: Field<String>,
    submitted: Field<String>,
    samples: Field<i64>,
    sample_rate_hz: Field<f64>,
) -> Activity {
    let samples = required(&game_id, "samples", samples, "0 active seconds");
    let rate = match sample_rate_hz {
        Ok(Some(r)) if !(r.is_finite() && r > 0.0) => Err(format!("not a positive rate: {r}")),
        other => other,
    };
    let rate = required(&game_id, "sample_rate_hz", rate, "0 active seconds");
    let active_seconds = match (samples, rate) {
        (Some(n), Some(rate)) if n >= 0 => n as f64 / rate,
        (Some(n), Some(_)) => {
            unreadable(
                &game_id,
                "samples",
                &format!("negative count {n}"),
                "0 active seconds",
            );
            0.0
        }
        _ => 0.0,
    };
    Activity {
        game_id,
        started_at: started_at(game_id, started, submitted),
        active_seconds,
    }
}

/// When a link was made: its stored `linked_at`, else (with a warning) the
/// Unix epoch, so that the link still shows (as the oldest) and can be
/// removed.
pub(crate) fn linked_at(row: &dyn fmt::Display, stored: Field<String>) -> DateTime<Utc> {
    required(row, "linked_at", time(stored), "1970-01-01T00:00:00Z").unwrap_or(DateTime::UNIX_EPOCH)
}

/// A link's other party's username: as stored, else (with a warning) `""`.
pub(crate) fn link_username(row: &dyn fmt::Display, stored: Field<String>) -> String {
    required(row, "username", stored, "\"\"").unwrap_or_default()
}

/// The row name of a link, for warnings.
pub(crate) fn link_row(therapist_id: &dyn fmt::Display, patient_id: &dyn fmt::Display) -> String {
    format!("link of therapist {therapist_id} and patient {patient_id}")
}

/// A stored invite, field by field, before [`StoredInvite::redeem`] reads
/// it.
pub(crate) struct StoredInvite<'a> {
    pub(crate) code: &'a str,
    pub(crate) therapist_id: Field<String>,
    pub(crate) expires_at: Field<String>,
    pub(crate) used_by: Field<String>,
}

/// What redeeming an invite must do, decided from the stored invite alone
/// (the rules of [`Care::redeem_invite`](crate::Care::redeem_invite)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redeem {
    /// Unused and unexpired: mark it used by the patient, and link them to
    /// this therapist unless they are linked already.
    Open { therapist_id: Uuid },
    /// Redeemed by this patient before: their link to this therapist if it
    /// exists; else, if `relink`, a new one; else [`RedeemOutcome::Used`].
    Mine { therapist_id: Uuid, relink: bool },
    /// Nothing to write: this is the answer.
    Refused(RedeemOutcome),
}

impl StoredInvite<'_> {
    /// What redeeming this invite for `patient_id` at `now` must do. A
    /// value that cannot be read is logged and read the way that grants
    /// least: no therapist → unknown code; no expiry → expired; no reader
    /// of `used_by` → used by another patient.
    pub(crate) fn redeem(self, patient_id: Uuid, now: DateTime<Utc>) -> Redeem {
        let row = format!("invite {}", self.code);
        let therapist_id = match self.therapist_id {
            Ok(Some(s)) => Uuid::parse_str(&s).map_err(|_| format!("not a UUID: {s:?}")),
            Ok(None) => Err("missing".to_owned()),
            Err(why) => Err(why),
        };
        let therapist_id = match therapist_id {
            Ok(id) => id,
            Err(why) => {
                unreadable(&row, "therapist_id", &why, "unknown code");
                return Redeem::Refused(RedeemOutcome::Unknown);
            }
        };
        let expired = required(&row, "expires_at", time(self.expires_at), "expired")
            .is_none_or(|expires_at| expires_at <= now);
        match self.used_by {
            Ok(None) if expired => Redeem::Refused(RedeemOutcome::Expired),
            Ok(None) => Redeem::Open { therapist_id },
            Ok(Some(s)) if Uuid::parse_str(&s).ok() == Some(patient_id) => Redeem::Mine {
                therapist_id,
                relink: !expired,
            },
            Ok(Some(s)) => {
                if Uuid::parse_str(&s).is_err() {
                    unreadable(&row, "used_by", &format!("not a UUID: {s:?}"), "used");
                }
                Redeem::Refused(RedeemOutcome::Used)
            }
            Err(why) => {
                unreadable(&row, "used_by", &why, "used");
                Redeem::Refused(RedeemOutcome::Used)
            }
        }
    }
}
