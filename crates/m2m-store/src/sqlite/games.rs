//! [`Games`] on SQLite: storing an upload in one transaction, reading games.

use super::error::{db, db_insert};
use super::rows::{
    game_from_row, integer, json, real, row_id, text, to_i64, to_json, well_formed_time,
    GAME_FIELDS,
};
use super::SqliteStore;
use crate::format::{activity, corrupt, id, required, started_at, stored_samples, text_range, ts};
use crate::{Activity, Games, IdempotencyRecord, NewGame, ProcessedGame, Result, SubmitOutcome};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use m2m_domain::{encode_column, Game, GameSamples};
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

#[async_trait]
impl Games for SqliteStore {
    async fn submit_game(
        &self,
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<SubmitOutcome> {
        self.blocking(move |inner| {
            let NewGame {
                game_id,
                event_id,
                user_id,
                submission,
                submitted_at,
                trace_id,
            } = game;
            // Encode before taking the write lock: it is the costly part.
            let columns: Vec<(&str, Vec<u8>)> = submission
                .channels()
                .iter()
                .map(|(name, col)| (name, encode_column(col)))
                .collect();
            let names: Vec<&str> = submission.channels().names().collect();
            let channels = to_json(&names)?;
            let device = submission.device().map(to_json).transpose()?;
            let started_at = submission.started_at().unwrap_or(submitted_at);
            let (game_id, event_id, user_id) = (id(game_id), id(event_id), id(user_id));
            let submitted = ts(submitted_at);

            inner.write(|tx| {
                if let Some(record) = &idempotency {
                    let seen = tx
                        .query_row(
                            "SELECT request_hash, status, body FROM idempotency
                             WHERE user_id = ?1 AND key = ?2",
                            params![user_id, record.key],
                            |row| {
                                Ok((
                                    row.get::<_, Vec<u8>>(0)?,
                                    row.get::<_, i64>(1)?,
                                    row.get::<_, Vec<u8>>(2)?,
                                ))
                            },
                        )
                        .optional()
                        .map_err(db)?;
                    if let Some((hash, status, body)) = seen {
                        if hash != record.request_hash {
                            return Ok(SubmitOutcome::KeyReused);
                        }
                        let status = u16::try_from(status)
                            .map_err(|e| corrupt("stored idempotent status", e))?;
                        return Ok(SubmitOutcome::Replayed { status, body });
                    }
                }
                tx.execute(
                    "INSERT INTO games (game_id, user_id, status, game, score, started_at,
                         submitted_at, device, sample_rate_hz, samples, channels, event_id)
                     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        game_id,
                        user_id,
                        submission.game(),
                        submission.score(),
                        ts(started_at),
                        submitted,
                        device,
                        submission.sample_rate_hz(),
                        to_i64(submission.channels().samples()),
                        channels,
                        event_id,
                    ],
                )
                .map_err(|e| db_insert(e, "game or event id exists"))?;
                let mut insert_column = tx
                    .prepare_cached(
                        "INSERT INTO game_columns (game_id, name, data) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db)?;
                for (name, data) in &columns {
                    insert_column
                        .execute(params![game_id, name, data])
                        .map_err(db)?;
                }
                tx.execute(
                    "INSERT INTO outbox (event_id, game_id, user_id, trace_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![event_id, game_id, user_id, trace_id, submitted],
                )
                .map_err(|e| db_insert(e, "event id exists"))?;
                if let Some(record) = &idempotency {
                    tx.execute(
                        "INSERT INTO idempotency (user_id, key, request_hash, status, body, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            user_id,
                            record.key,
                            record.request_hash,
                            record.status,
                            record.body,
                            submitted,
                        ],
                    )
                    .map_err(|e| db_insert(e, "idempotency key exists"))?;
                }
                Ok(SubmitOutcome::Created)
            })
        })
        .await
    }

    async fn game(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<Game>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {GAME_FIELDS} FROM games WHERE game_id = ?1 AND user_id = ?2"
                    ))
                    .map_err(db)?;
                let mut rows = stmt.query([id(game_id), id(user_id)]).map_err(db)?;
                match rows.next().map_err(db)? {
                    Some(row) => game_from_row(row, true),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    async fn list_games(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Game>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                // No LIMIT: a row skipped for an unreadable id must not
                // shorten the page (rows are read lazily, so no more than
                // needed are).
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {GAME_FIELDS} FROM games
                         WHERE user_id = ?1 AND (?2 IS NULL OR game_id < ?2)
                         ORDER BY game_id DESC"
                    ))
                    .map_err(db)?;
                let mut rows = stmt
                    .query(params![id(user_id), before.map(id)])
                    .map_err(db)?;
                let mut games = Vec::new();
                while games.len() < limit as usize {
                    let Some(row) = rows.next().map_err(db)? else {
                        break;
                    };
                    games.extend(game_from_row(row, false)?);
                }
                Ok(games)
            })
        })
        .await
    }

    async fn game_samples(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<GameSamples>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let game = tx
                    .query_row(
                        "SELECT sample_rate_hz, score FROM games
                         WHERE game_id = ?1 AND user_id = ?2",
                        params![id(game_id), id(user_id)],
                        |row| Ok((row.get::<_, f64>(0), row.get::<_, f64>(1))),
                    )
                    .optional()
                    .map_err(db)?;
                let Some((rate, score)) = game else {
                    return Ok(None);
                };
                let rate = rate.map_err(|e| corrupt("sample_rate_hz", e))?;
                let score = score.map_err(|e| corrupt("score", e))?;
                let mut stmt = tx
                    .prepare_cached("SELECT name, data FROM game_columns WHERE game_id = ?1")
                    .map_err(db)?;
                let mut rows = stmt.query([id(game_id)]).map_err(db)?;
                let mut columns = Vec::new();
                while let Some(row) = rows.next().map_err(db)? {
                    let name: String = row.get(0).map_err(|e| corrupt("column name", e))?;
                    let data: Vec<u8> = row.get(1).map_err(|e| corrupt("column data", e))?;
                    columns.push((name, data));
                }
                let columns = columns.iter().map(|(n, d)| (n.clone(), d.as_slice()));
                stored_samples(rate, score, columns).map(Some)
            })
        })
        .await
    }

    async fn processed_games(&self, user_id: Uuid) -> Result<Vec<ProcessedGame>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT game_id, started_at, submitted_at, metrics FROM games
                         WHERE user_id = ?1 AND status = 'processed'",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([id(user_id)]).map_err(db)?;
                let mut games = Vec::new();
                while let Some(row) = rows.next().map_err(db)? {
                    let Some(game_id) = row_id(row, 0, "game")? else {
                        continue;
                    };
                    let Some(metrics) = required(
                        &game_id,
                        "metrics",
                        json::<Metrics>(row, 3)?,
                        "left out of progress",
                    ) else {
                        continue;
                    };
                    games.push(ProcessedGame {
                        game_id,
                        started_at: started_at(game_id, text(row, 1)?, text(row, 2)?),
                        metrics,
                    });
                }
                Ok(games)
            })
        })
        .await
    }

    async fn activity(
        &self,
        user_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Activity>> {
        let Some((lower, upper)) = text_range(from, to) else {
            return Ok(Vec::new());
        };
        self.blocking(move |inner| {
            inner.read(|tx| {
                // The games whose start is in the range by its text (through
                // `games_by_start`), then those whose start is not a time in
                // the stored format: they count where they read.
                let fields = "game_id, started_at, submitted_at, samples, sample_rate_hz";
                let well_formed = well_formed_time("started_at");
                let in_range = format!(
                    "SELECT {fields} FROM games
                     WHERE user_id = ?1 AND started_at >= ?2 AND started_at < ?3 AND {well_formed}"
                );
                let irregular =
                    format!("SELECT {fields} FROM games WHERE user_id = ?1 AND NOT {well_formed}");
                let user = id(user_id);
                let mut games = Vec::new();
                for (sql, bounded) in [(in_range, true), (irregular, false)] {
                    let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
                    let mut rows = if bounded {
                        stmt.query(params![user, lower, upper])
                    } else {
                        stmt.query(params![user])
                    }
                    .map_err(db)?;
                    while let Some(row) = rows.next().map_err(db)? {
                        let Some(game_id) = row_id(row, 0, "game")? else {
                            continue;
                        };
                        let game = activity(
                            game_id,
                            text(row, 1)?,
                            text(row, 2)?,
                            integer(row, 3)?,
                            real(row, 4)?,
                        );
                        if (from..to).contains(&game.started_at) {
                            games.push(game);
                        }
                    }
                }
                games.sort_by_key(|g| (g.started_at, g.game_id));
                Ok(games)
            })
        })
        .await
    }

    async fn last_started_at(&self, user_id: Uuid) -> Result<Option<DateTime<Utc>>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let user = id(user_id);
                let well_formed = well_formed_time("started_at");
                // The latest well-formed start, by `games_by_start` (read
                // lazily: the first game whose id reads)…
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT game_id, started_at FROM games
                         WHERE user_id = ?1 AND {well_formed}
                         ORDER BY started_at DESC"
                    ))
                    .map_err(db)?;
                let mut rows = stmt.query([&user]).map_err(db)?;
                let mut latest = None;
                while let Some(row) = rows.next().map_err(db)? {
                    if let Some(game_id) = row_id(row, 0, "game")? {
                        latest = Some(started_at(game_id, text(row, 1)?, Ok(None)));
                        break;
                    }
                }
                // …or a later one among the starts that are not.
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT game_id, started_at, submitted_at FROM games
                         WHERE user_id = ?1 AND NOT {well_formed}"
                    ))
                    .map_err(db)?;
                let mut rows = stmt.query([&user]).map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    if let Some(game_id) = row_id(row, 0, "game")? {
                        let t = started_at(game_id, text(row, 1)?, text(row, 2)?);
                        latest = latest.max(Some(t));
                    }
                }
                Ok(latest)
            })
        })
        .await
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        // A scan, hourly, of a table that holds about a day of keys: no
        // index is worth its cost on every upload.
        self.blocking(move |inner| {
            inner.write(|tx| {
                let deleted = tx
                    .execute(
                        "DELETE FROM idempotency WHERE created_at < ?1",
                        params![ts(before)],
                    )
                    .map_err(db)?;
                Ok(deleted as u64)
            })
        })
        .await
    }
}
