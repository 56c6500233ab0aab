//! [`ChangeFeed`] on SQLite: completing a game with its change, and the
//! feed read by cursor.

use super::error::{db, db_insert};
use super::rows::{change_from_row, get_uuid, text, to_json, CHANGE_FIELDS};
use super::SqliteStore;
use crate::format::{corrupt, corrupt_detail, id, ts, unreadable};
use crate::{ChangeFeed, Completed, Completion, Result, StoreError};
use async_trait::async_trait;
use chrono::SubsecRound;
use m2m_analysis::Metrics;
use m2m_domain::{reprocessing_event_id, Change, ChangeType};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

/// cursors also sort as text.
pub(super) fn encode_cursor(seq: i64) -> String {
    format!("{seq:016x}")
}

/// The `seq` of a cursor, if it is one this store could have made.
pub(super) fn decode_cursor(cursor: &str) -> Option<i64> {
    let well_formed = cursor.len() == 16
        && cursor
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return None;
    }
    let seq = u64::from_str_radix(cursor, 16).ok()?;
    i64::try_from(seq).ok().filter(|&s| s > 0)
}

/// The stored change of a processing event, if it was completed before.
fn stored_change(tx: &Connection, event_id: Uuid) -> Result<Option<Completed>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {CHANGE_FIELDS}, reconciliation_event_id, error
             FROM changes WHERE event_id = ?1"
        ))
        .map_err(db)?;
    let mut rows = stmt.query([id(event_id)]).map_err(db)?;
    let Some(row) = rows.next().map_err(db)? else {
        return Ok(None);
    };
    let change = change_from_row(row)?
        .ok_or_else(|| corrupt_detail("stored change", format!("of event {event_id}")))?;
    Ok(Some(Completed {
        change,
        reconciliation_event_id: get_uuid(row, 7)?,
        error: text(row, 8)?.unwrap_or_else(|why| {
            unreadable(&event_id, "error", &why, "absent");
            None
        }),
        first: false,
    }))
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn complete_game(&self, completion: Completion) -> Result<Completed> {
        let Completion {
            event_id,
            reconciliation_event_id,
            game_id,
            user_id,
            status,
            processed_at,
            metrics,
            error,
            algorithm_version,
        } = completion;
        // What is stored is what every caller gets back, this one included.
        let processed_at = processed_at.trunc_subsecs(6);
        let metrics_json = metrics.as_ref().map(to_json).transpose()?;
        // The metrics as they will read back: serde_json's default float
        // parsing may differ from the original in the last bit, and a
        // redelivery must get exactly what the first caller got.
        let metrics: Option<Metrics> = metrics_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("metrics", e))?;
        self.grouped(0, move |tx| {
            if let Some(done) = stored_change(tx, event_id)? {
                return Ok(done);
            }
            // Only the game's own event, or its reprocessing event of
            // this version, for its own user, completes it.
            let own: Option<String> = tx
                .query_row(
                    "SELECT event_id FROM games WHERE game_id = ?1 AND user_id = ?2",
                    params![id(game_id), id(user_id)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            let Some(own) = own else {
                return Err(StoreError::NotFound);
            };
            let reprocessed = own != id(event_id);
            if reprocessed && event_id != reprocessing_event_id(game_id, algorithm_version) {
                return Err(StoreError::NotFound);
            }
            // One result per game and version: another event's result
            // of this version stands.
            let twin: Option<String> = tx
                .query_row(
                    "SELECT event_id FROM changes WHERE game_id = ?1 AND algorithm_version = ?2",
                    params![id(game_id), algorithm_version],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(twin) = twin {
                let twin = Uuid::parse_str(&twin).map_err(|e| corrupt("stored id", e))?;
                return stored_change(tx, twin)?
                    .ok_or_else(|| corrupt_detail("stored change", format!("of event {twin}")));
            }
            // The game shows its newest version's result; an older
            // version's is kept as history only.
            tx.execute(
                "UPDATE games SET status = ?2, processed_at = ?3, metrics = ?4, error = ?5,
                     algorithm_version = ?6
                 WHERE game_id = ?1
                   AND (algorithm_version IS NULL OR algorithm_version <= ?6)",
                params![
                    id(game_id),
                    status.as_str(),
                    ts(processed_at),
                    metrics_json,
                    error,
                    algorithm_version,
                ],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO changes (user_id, game_id, event_id, reconciliation_event_id,
                     status, processed_at, metrics, error, algorithm_version, reprocessed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id(user_id),
                    id(game_id),
                    id(event_id),
                    id(reconciliation_event_id),
                    status.as_str(),
                    ts(processed_at),
                    metrics_json,
                    error,
                    algorithm_version,
                    reprocessed,
                ],
            )
            .map_err(|e| db_insert(e, "change of this event exists"))?;
            Ok(Completed {
                change: Change {
                    cursor: encode_cursor(tx.last_insert_rowid()),
                    game_id,
                    status,
                    processed_at: Some(processed_at),
                    metrics,
                    kind: ChangeType::of(status, reprocessed),
                    algorithm_version,
                },
                reconciliation_event_id,
                error,
                first: true,
            })
        })
        .await
    }

    async fn changes_since(
        &self,
        user_id: Uuid,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Change>> {
        let after = match since {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or(StoreError::UnknownCursor)?),
        };
        self.blocking(move |inner| {
            inner.read(|tx| {
                let user = id(user_id);
                if let Some(seq) = after {
                    let owner: Option<String> = tx
                        .query_row("SELECT user_id FROM changes WHERE seq = ?1", [seq], |row| {
                            row.get(0)
                        })
                        .optional()
                        .map_err(db)?;
                    if owner.as_deref() != Some(user.as_str()) {
                        return Err(StoreError::UnknownCursor);
                    }
                }
                // No LIMIT: a change skipped for an unreadable game id must
                // not shorten the page, or a page of them would look like
                // the end of the feed.
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {CHANGE_FIELDS} FROM changes
                         WHERE user_id = ?1 AND seq > ?2 ORDER BY seq"
                    ))
                    .map_err(db)?;
                let mut rows = stmt.query(params![user, after.unwrap_or(0)]).map_err(db)?;
                let mut changes = Vec::new();
                while changes.len() < limit as usize {
                    let Some(row) = rows.next().map_err(db)? else {
                        break;
                    };
                    changes.extend(change_from_row(row)?);
                }
                Ok(changes)
            })
        })
        .await
    }

    async fn latest_cursor(&self, user_id: Uuid) -> Result<Option<String>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let seq: Option<i64> = tx
                    .query_row(
                        "SELECT MAX(seq) FROM changes WHERE user_id = ?1",
                        [id(user_id)],
                        |row| row.get(0),
                    )
                    .map_err(db)?;
                Ok(seq.map(encode_cursor))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_strangers() {
        for seq in [1, 2, 255, 1 << 40, i64::MAX] {
            let c = encode_cursor(seq);
            assert_eq!(c.len(), 16);
            assert_eq!(decode_cursor(&c), Some(seq));
        }
        assert!(encode_cursor(9) < encode_cursor(10));
        for bad in [
            "",
            "1",
            "000000000000000A",
            "0000000000000000",
            "8000000000000000",
            "000000000000000g",
            "00000000000000001",
            "-000000000000001",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }
}
