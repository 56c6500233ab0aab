//! [`Outbox`] on SQLite: the publisher's claims, leases and confirmations, and
//! the event rebuilt from a claimed row.

use super::error::db;
use super::rows::{get, integer, json, real, text};
use super::SqliteStore;
use crate::format::{corrupt, id, plus, started_at, submitted_at, ts, unreadable, Field};
use crate::{Outbox, OutboxEntry, ReprocessTarget, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_domain::{
    reprocessing_event_id, Device, EventGame, ProcessingEvent, PROCESSING_EVENT_VERSION,
};
use rusqlite::{params, Row};
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The outbox row `event_id, game_id, user_id, trace_id, created_at, game,
/// score, started_at, device, sample_rate_hz, algorithm_version` read for
/// its event (a reprocessing event when `algorithm_version` is set), with
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
        reprocess: match integer(row, 10).map_err(|e| e.to_string())? {
            Ok(None) => None,
            Ok(Some(v)) => Some(u32::try_from(v).map_err(|_| format!("version {v}"))?),
            Err(why) => return Err(format!("algorithm_version: {why}")),
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
                            g.game, g.score, g.started_at, g.device, g.sample_rate_hz,
                            o.algorithm_version
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
                         WHERE (algorithm_version IS NULL
                                AND game_id IN (SELECT game_id FROM games WHERE status = 'queued'))
                            OR (algorithm_version IS NOT NULL AND published_at IS NOT NULL
                                AND algorithm_version > (
                                    SELECT COALESCE(g.algorithm_version, 0) FROM games g
                                    WHERE g.game_id = outbox.game_id))",
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

    async fn enqueue_reprocessing(
        &self,
        games: &[ReprocessTarget],
        version: u32,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        if games.is_empty() {
            return Ok(0);
        }
        let games = games.to_vec();
        let trace_id = trace_id.to_owned();
        self.blocking(move |inner| {
            inner.write(|tx| {
                // Keyed by the event id, only for a game that (still)
                // exists, of its own user. An entry there already is
                // published again if it was published: its game is still
                // to do, so its message was lost (a bus that keeps
                // nothing, a dead letter) or is still queued (then the
                // second delivery finds the game done and does nothing).
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO outbox (event_id, game_id, user_id, trace_id, created_at,
                             algorithm_version)
                         SELECT ?1, game_id, user_id, ?4, ?5, ?6 FROM games
                         WHERE game_id = ?2 AND user_id = ?3
                         ON CONFLICT (event_id) DO UPDATE
                         SET published_at = NULL, lease_until = NULL, trace_id = excluded.trace_id
                         WHERE published_at IS NOT NULL",
                    )
                    .map_err(db)?;
                let mut added = 0;
                for game in &games {
                    added += insert
                        .execute(params![
                            id(reprocessing_event_id(game.game_id, version)),
                            id(game.game_id),
                            id(game.user_id),
                            trace_id,
                            ts(now),
                            version,
                        ])
                        .map_err(db)?;
                }
                Ok(added as u64)
            })
        })
        .await
    }
}
