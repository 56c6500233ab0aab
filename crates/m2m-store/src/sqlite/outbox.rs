//! [`Outbox`] on SQLite: the publisher's claims, leases and confirmations, and
//! the event rebuilt from a claimed row.

use super::error::db;
use super::rows::{get, json, real, text};
use super::SqliteStore;
use crate::format::{corrupt, id, plus, started_at, submitted_at, ts, unreadable, Field};
use crate::{Outbox, OutboxEntry, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_domain::{Device, EventGame, ProcessingEvent, PROCESSING_EVENT_VERSION};
use rusqlite::{params, Row};
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The outbox row `event_id, game_id, user_id, trace_id, created_at, game,
/// score, started_at, device, sample_rate_hz` read for its event, with
/// fallbacks for what the event can do without; `Err` if it cannot be
/// made into an event at all.
fn claimed_row(row: &Row<'_>) -> std::result::Result<OutboxEntry, String> {
    let uuid = |i: usize| -> std::result::Result<Uuid, String> {
        let s: String = get(row, i).map_err(|e| e.to_string())?;
        Uuid::parse_str(&s).map_err(|e| format!("stored id {s:?}: {e}"))
    };
    let game_id = uuid(1)?;
    let must = |r: Result<Field<String>>| r.map_err(|e| e.to_string());
    let created_at = must(text(row, 4))?;
    let required = |what: &str, v: Field<String>| match v {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(format!("{what} is missing")),
        Err(why) => Err(format!("{what}: {why}")),
    };
    let trace_id = required("trace_id", must(text(row, 3))?)?;
    let event = ProcessingEvent {
        version: PROCESSING_EVENT_VERSION,
        event_id: uuid(0)?,
        game_id,
        user_id: uuid(2)?,
        created_at: submitted_at(game_id, created_at.clone()),
        game: EventGame {
            game: required("game", must(text(row, 5))?)?,
            score: match real(row, 6).map_err(|e| e.to_string())? {
                Ok(Some(x)) => x,
                _ => return Err("score cannot be read".into()),
            },
            started_at: started_at(game_id, must(text(row, 7))?, created_at),
            device: json::<Device>(row, 8)
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|why| {
                    unreadable(&game_id, "device", &why, "absent");
                    None
                }),
        },
        sample_rate_hz: match real(row, 9).map_err(|e| e.to_string())? {
            Ok(Some(x)) => x,
            _ => return Err("sample_rate_hz cannot be read".into()),
        },
    };
    Ok(OutboxEntry { event, trace_id })
}

/// Logs an outbox entry that cannot be made into its event. It stays in the
/// outbox, leased: a publisher tries it again when the lease ends, and the
/// entries behind it go on meanwhile.
fn unpublishable(event_id: &dyn fmt::Display, why: &str) {
    tracing::warn!(
        %event_id,
        reason = why,
        "stored event cannot be read; left in the outbox and retried after its lease"
    );
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn advance_outbox(
        &self,
        published: &[Uuid],
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>> {
        if published.is_empty() && limit == 0 {
            return Ok(Vec::new());
        }
        let published: Vec<String> = published.iter().map(|e| id(*e)).collect();
        self.grouped(0, move |tx| {
            let mut mark = tx
                .prepare_cached(
                    "UPDATE outbox SET published_at = ?2, lease_until = NULL
                     WHERE event_id = ?1 AND published_at IS NULL",
                )
                .map_err(db)?;
            for event_id in &published {
                mark.execute(params![event_id, ts(now)]).map_err(db)?;
            }
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT o.event_id, o.game_id, o.user_id, o.trace_id, o.created_at,
                            g.game, g.score, g.started_at, g.device, g.sample_rate_hz
                     FROM outbox o JOIN games g ON g.game_id = o.game_id
                     WHERE o.published_at IS NULL
                       AND (o.lease_until IS NULL OR o.lease_until <= ?1)
                     ORDER BY o.created_at, o.event_id
                     LIMIT ?2",
                )
                .map_err(db)?;
            let mut rows = stmt.query(params![ts(now), limit]).map_err(db)?;
            let mut claimed = Vec::new();
            let mut leased = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                // Leased even if it cannot be published, so that the
                // entries behind it are not held up by it.
                let key: rusqlite::types::Value = get(row, 0)?;
                match claimed_row(row) {
                    Ok(entry) => claimed.push(entry),
                    Err(why) => unpublishable(&format!("{key:?}"), &why),
                }
                leased.push(key);
            }
            let lease_until = ts(plus(now, lease));
            let mut set_lease = tx
                .prepare_cached("UPDATE outbox SET lease_until = ?2 WHERE event_id = ?1")
                .map_err(db)?;
            for event_id in &leased {
                set_lease
                    .execute(params![event_id, lease_until])
                    .map_err(db)?;
            }
            Ok(claimed)
        })
        .await
    }

    async fn republish_unfinished(&self) -> Result<u64> {
        self.blocking(|inner| {
            inner.write(|tx| {
                let reset = tx
                    .execute(
                        "UPDATE outbox SET published_at = NULL, lease_until = NULL
                         WHERE game_id IN (SELECT game_id FROM games WHERE status = 'queued')",
                        [],
                    )
                    .map_err(db)?;
                Ok(reset as u64)
            })
        })
        .await
    }

    async fn unpublished_count(&self) -> Result<u64> {
        self.blocking(|inner| {
            inner.read(|tx| {
                let n: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(db)?;
                u64::try_from(n).map_err(|e| corrupt("count", e))
            })
        })
        .await
    }
}
