//! How every store writes ids and times, so that the stores agree and their
//! orderings hold: ids are UUIDs as lower-case hyphenated text (UUIDv7 text
//! sorts by time), times are fixed-width UTC text (text order is time order)
//! at microsecond precision.

use crate::StoreError;
use chrono::{DateTime, TimeDelta, Utc};
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
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
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

/// Data that cannot be read back.
pub(crate) fn corrupt(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}
