//! [`Games`] on SQLite: storing an upload in one transaction, reading games.

use super::error::{db, db_insert};
use super::rows::{
    game_from_row, integer, json, real, row_id, text, to_i64, to_json, well_formed_time,
    GAME_FIELDS,
};
use super::SqliteStore;
use crate::format::{
    activity, algorithm_version, corrupt, id, required, started_at, stored_samples, text_range, ts,
};
use crate::{
    Activity, Games, IdempotencyRecord, NewGame, ProcessedGame, ReprocessSelection,
    ReprocessTarget, Result, SubmitOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use m2m_domain::{encode_column, Game, GameSamples};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

/// An upload ready to be written: its columns encoded and every value in
/// the form its column takes. Built by the caller (off the write path: the
/// encode is the costly part), then owned by the queue of
/// [`group`](super::group) until its batch commits. It keeps no `f64`
/// samples, so a queued upload holds about 4 bytes a sample.
#[cfg_attr(test, derive(Clone))]
pub(super) struct EncodedGame {
    game_id: String,
    event_id: String,
    user_id: String,
    game: String,
    score: f64,
    started_at: String,
    submitted_at: String,
    device: Option<String>,
    sample_rate_hz: f64,
    samples: i64,
    channels: String,
    columns: Vec<(String, Vec<u8>)>,
    trace_id: String,
    idempotency: Option<IdempotencyRecord>,
}

impl EncodedGame {
    /// The upload ready to be written, and its samples as parsed.
    pub(super) fn with_samples(
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<(Self, GameSamples)> {
        let NewGame {
            game_id,
            event_id,
            user_id,
            submission,
            submitted_at,
            trace_id,
        } = game;
        let columns = submission
            .channels()
            .iter()
            .map(|(name, col)| (name.to_owned(), encode_column(col)))
            .collect();
        let names: Vec<&str> = submission.channels().names().collect();
        let encoded = EncodedGame {
            game_id: id(game_id),
            event_id: id(event_id),
            user_id: id(user_id),
            game: submission.game().to_owned(),
            score: submission.score(),
            started_at: ts(submission.started_at().unwrap_or(submitted_at)),
            submitted_at: ts(submitted_at),
            device: submission.device().map(to_json).transpose()?,
            sample_rate_hz: submission.sample_rate_hz(),
            samples: to_i64(submission.channels().samples()),
            channels: to_json(&names)?,
            columns,
            trace_id,
            idempotency,
        };
        Ok((encoded, submission.into_samples()))
    }

    /// The bytes of its columns: what bounds a batch's size.
    pub(super) fn bytes(&self) -> usize {
        self.columns.iter().map(|(_, data)| data.len()).sum()
    }
}

/// Writes one upload (the game, its columns, its outbox entry and its
/// idempotency key) on `conn`, inside the caller's transaction or
/// savepoint, or finds the earlier answer its key calls for. On an error
/// the caller must roll back what this wrote.
pub(super) fn insert_game(conn: &Connection, game: &EncodedGame) -> Result<SubmitOutcome> {
    let EncodedGame {
        game_id,
        event_id,
        user_id,
        submitted_at,
        ..
    } = game;
    if let Some(record) = &game.idempotency {
        let seen = conn
            .prepare_cached(
                "SELECT request_hash, status, body FROM idempotency
                 WHERE user_id = ?1 AND key = ?2",
            )
            .map_err(db)?
            .query_row(params![user_id, record.key], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()
            .map_err(db)?;
        if let Some((hash, status, body)) = seen {
            if hash != record.request_hash {
                return Ok(SubmitOutcome::KeyReused);
            }
            let status =
                u16::try_from(status).map_err(|e| corrupt("stored idempotent status", e))?;
            return Ok(SubmitOutcome::Replayed { status, body });
        }
    }
    conn.prepare_cached(
        "INSERT INTO games (game_id, user_id, status, game, score, started_at,
             submitted_at, device, sample_rate_hz, samples, channels, event_id)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(db)?
    .execute(params![
        game_id,
        user_id,
        game.game,
        game.score,
        game.started_at,
        submitted_at,
        game.device,
        game.sample_rate_hz,
        game.samples,
        game.channels,
        event_id,
    ])
    .map_err(|e| db_insert(e, "game or event id exists"))?;
    let mut insert_column = conn
        .prepare_cached("INSERT INTO game_columns (game_id, name, data) VALUES (?1, ?2, ?3)")
        .map_err(db)?;
    for (name, data) in &game.columns {
        insert_column
            .execute(params![game_id, name, data])
            .map_err(db)?;
    }
    conn.prepare_cached(
        "INSERT INTO outbox (event_id, game_id, user_id, trace_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db)?
    .execute(params![
        event_id,
        game_id,
        user_id,
        game.trace_id,
        submitted_at
    ])
    .map_err(|e| db_insert(e, "event id exists"))?;
    if let Some(record) = &game.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency (user_id, key, request_hash, status, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db)?
        .execute(params![
            user_id,
            record.key,
            record.request_hash,
            record.status,
            record.body,
            submitted_at,
        ])
        .map_err(|e| db_insert(e, "idempotency key exists"))?;
    }
    Ok(SubmitOutcome::Created)
}

#[async_trait]
impl Games for SqliteStore {
    /// Encodes the columns on the blocking pool, then hands the upload to
    /// the group commit ([`group`](super::group)) and waits, without
    /// holding a thread, for the commit of its batch.
    async fn submit_game(
        &self,
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<SubmitOutcome> {
        let (game_id, user_id) = (game.game_id, game.user_id);
        // The samples are kept only for a processor of this process; else
        // they are freed at once, not held while the commit is awaited.
        let (game, samples) = self
            .blocking(move |inner| {
                let (game, samples) = EncodedGame::with_samples(game, idempotency)?;
                Ok((game, inner.recent.enabled().then_some(samples)))
            })
            .await?;
        let outcome = self.group_commit(game).await?;
        if let (SubmitOutcome::Created, Some(samples)) = (&outcome, samples) {
            self.inner.recent.put(game_id, user_id, samples);
        }
        Ok(outcome)
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
        if let Some(samples) = self.inner.recent.take(user_id, game_id) {
            return Ok(Some(samples));
        }
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
                        "SELECT game_id, started_at, submitted_at, metrics, algorithm_version
                         FROM games WHERE user_id = ?1 AND status = 'processed'",
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
                        algorithm_version: algorithm_version(&game_id, integer(row, 4)?),
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

    async fn games_to_reprocess(
        &self,
        selection: &ReprocessSelection,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ReprocessTarget>> {
        let (below, users) = (selection.below, users_json(&selection.users)?);
        self.blocking(move |inner| {
            inner.read(|tx| {
                // By the primary key, read lazily: a row skipped for an
                // unreadable id does not shorten the page.
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT game_id, user_id FROM games
                         WHERE {REPROCESS_WHERE} AND (?3 IS NULL OR game_id > ?3)
                         ORDER BY game_id"
                    ))
                    .map_err(db)?;
                let mut rows = stmt
                    .query(params![below, users, after.map(id)])
                    .map_err(db)?;
                let mut games = Vec::new();
                while games.len() < limit as usize {
                    let Some(row) = rows.next().map_err(db)? else {
                        break;
                    };
                    let (Some(game_id), Some(user_id)) =
                        (row_id(row, 0, "game")?, row_id(row, 1, "game's user")?)
                    else {
                        continue;
                    };
                    games.push(ReprocessTarget { game_id, user_id });
                }
                Ok(games)
            })
        })
        .await
    }

    async fn count_to_reprocess(&self, selection: &ReprocessSelection) -> Result<u64> {
        let (below, users) = (selection.below, users_json(&selection.users)?);
        self.blocking(move |inner| {
            inner.read(|tx| {
                let n: i64 = tx
                    .query_row(
                        &format!("SELECT COUNT(*) FROM games WHERE {REPROCESS_WHERE}"),
                        params![below, users],
                        |row| row.get(0),
                    )
                    .map_err(db)?;
                u64::try_from(n).map_err(|e| corrupt("count", e))
            })
        })
        .await
    }
}

/// The games of a [`ReprocessSelection`] (`?1`: below this version, `?2`:
/// the users as a JSON array, `[]` for all). A version that cannot be read
/// as a positive integer counts as 1, as reads show it.
const REPROCESS_WHERE: &str = "status <> 'queued'
    AND (CASE WHEN typeof(algorithm_version) = 'integer' AND algorithm_version >= 1
              THEN algorithm_version ELSE 1 END) < ?1
    AND (?2 = '[]' OR user_id IN (SELECT value FROM json_each(?2)))";

/// User ids as the JSON array [`REPROCESS_WHERE`] reads.
fn users_json(users: &[Uuid]) -> Result<String> {
    to_json(&users.iter().map(|u| id(*u)).collect::<Vec<_>>())
}
