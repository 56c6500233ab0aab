//! [`Games`] on MongoDB: storing an upload (its columns, then the game
//! document holding its outbox entry), reading games.

use super::documents::{
    binary, doc_f64, doc_i64, doc_id, doc_text, doc_value, game_from_doc, to_i64, well_formed_time,
    ColumnsDoc, GameDoc, IdempotencyDoc, OutboxDoc, WELL_FORMED_TIME,
};
use super::error::{db, db_insert, is_duplicate_key};
use super::{collect, MongoStore, MAX_DOCUMENT_BYTES};
use crate::format::{
    activity, algorithm_version, corrupt, corrupt_detail, id, parse_time, required, started_at,
    stored_samples, text_range, ts,
};
use crate::{
    Activity, Games, IdempotencyRecord, NewGame, ProcessedGame, ReprocessSelection,
    ReprocessTarget, Result, StoreError, SubmitOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use m2m_analysis::Metrics;
use m2m_domain::{encode_column, Channels, Game, GameSamples, GameStatus};
use mongodb::bson::{self, doc, spec::BinarySubtype, Binary, Document, RawDocumentBuf};
use uuid::Uuid;

impl MongoStore {
    /// Writes a game: its columns, then the game document with its outbox
    /// state. `Err(Conflict)` if a game with this id or event id exists.
    ///
    /// Crash safety: the game document is the commit point. A crash after
    /// the columns and before the game leaves a columns document that no
    /// game refers to (never read, never published; the caller got no 202).
    /// A retry with the same ids (an idempotency takeover) overwrites it
    /// with the same bytes.
    async fn write_game(&self, game: &GameDoc, columns: RawDocumentBuf) -> Result<()> {
        let id = game.game_id.as_str();
        match self.columns.insert_one(columns.clone()).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                if self.game_exists(id).await? {
                    return Err(StoreError::Conflict("game or event id exists"));
                }
                // Left by an attempt that stopped before its game document.
                self.columns
                    .replace_one(doc! { "_id": id }, columns)
                    .upsert(true)
                    .await
                    .map_err(db)?;
            }
            Err(e) => return Err(db(e)),
        }
        self.games
            .insert_one(game)
            .await
            .map_err(|e| db_insert(e, "game or event id exists"))?;
        Ok(())
    }

    async fn game_exists(&self, game_id: &str) -> Result<bool> {
        let found = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": game_id })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }
}

/// The `game_columns` document of a game, refused with
/// [`StoreError::TooLarge`] if MongoDB could not store it.
fn columns_document(game_id: &str, user_id: &str, channels: &Channels) -> Result<RawDocumentBuf> {
    let columns = channels
        .iter()
        .map(|(name, col)| {
            let data = Binary {
                subtype: BinarySubtype::Generic,
                bytes: encode_column(col),
            };
            (name, data)
        })
        .collect();
    let doc = bson::to_raw_document_buf(&ColumnsDoc {
        game_id,
        user_id,
        columns,
    })
    .map_err(|e| corrupt("unserialisable columns", e))?;
    let size = doc.as_bytes().len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(StoreError::TooLarge(format!(
            "the game's sensor data takes {size} bytes stored, more than the \
             {MAX_DOCUMENT_BYTES} bytes MongoDB can keep in one document \
             ({} channels of {} samples)",
            channels.len(),
            channels.samples()
        )));
    }
    Ok(doc)
}

#[async_trait]
impl Games for MongoStore {
    async fn submit_game(
        &self,
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<SubmitOutcome> {
        let NewGame {
            game_id,
            event_id,
            user_id,
            submission,
            submitted_at,
            trace_id,
        } = game;
        let user = id(user_id);
        // Refused before anything is written, and before the driver sees it.
        let columns = columns_document(&id(game_id), &user, submission.channels())?;
        let doc_for = |game_id: &str, event_id: &str, submitted_at: DateTime<Utc>| GameDoc {
            game_id: game_id.to_owned(),
            user_id: user.clone(),
            event_id: event_id.to_owned(),
            status: GameStatus::Queued.as_str().to_owned(),
            game: submission.game().to_owned(),
            score: submission.score(),
            started_at: ts(submission.started_at().unwrap_or(submitted_at)),
            submitted_at: ts(submitted_at),
            processed_at: None,
            device: submission.device().cloned(),
            sample_rate_hz: submission.sample_rate_hz(),
            samples: to_i64(submission.channels().samples()),
            channels: submission.channels().names().map(str::to_owned).collect(),
            metrics: None,
            error: None,
            outbox: Some(OutboxDoc {
                created_at: ts(submitted_at),
                trace_id: trace_id.clone(),
                pending: true,
                lease_until: None,
                published_at: None,
            }),
            algorithm_version: None,
        };
        let doc = doc_for(&id(game_id), &id(event_id), submitted_at);

        let Some(record) = idempotency else {
            self.write_game(&doc, columns).await?;
            return Ok(SubmitOutcome::Created);
        };

        // With a key: the key's record first (it holds the whole answer and
        // the ids it announces), then the game.
        //
        // Crash safety: a crash between them leaves a record whose game is
        // missing; the client got no 202 (it comes only after both) and
        // retries with the same key. The retry finds the record and *takes
        // over*: it stores its own (identical: same request hash) game
        // under the recorded ids and answers the recorded body, which is
        // then true. Completing the first attempt this way, rather than
        // answering with the record alone, is what makes a 202 always name
        // a stored game. A takeover racing a first attempt that is merely
        // slow is safe too: both write the same game id, the unique `_id`
        // lets one game in, and the slow attempt sees its own event there.
        let inserted = self
            .idempotency
            .insert_one(IdempotencyDoc {
                user_id: user.clone(),
                key: record.key.clone(),
                request_hash: binary(&record.request_hash),
                status: i32::from(record.status),
                body: binary(&record.body),
                game_id: doc.game_id.clone(),
                event_id: doc.event_id.clone(),
                submitted_at: ts(submitted_at),
                created_at: ts(submitted_at),
            })
            .await;
        match inserted {
            Ok(_) => match self.write_game(&doc, columns).await {
                Ok(()) => Ok(SubmitOutcome::Created),
                Err(StoreError::Conflict(what)) => {
                    // Our ids were taken: by a takeover of our own request
                    // (then our game is stored), or by another game.
                    let ours = self
                        .games
                        .clone_with_type::<Document>()
                        .find_one(doc! {
                            "_id": &doc.game_id, "user_id": &user, "event_id": &doc.event_id,
                        })
                        .projection(doc! { "_id": 1 })
                        .await
                        .map_err(db)?;
                    if ours.is_some() {
                        return Ok(SubmitOutcome::Created);
                    }
                    // Nothing of ours was stored: free the key again, as a
                    // rolled-back transaction would.
                    self.idempotency
                        .delete_one(doc! {
                            "user_id": &user, "key": &record.key, "game_id": &doc.game_id,
                        })
                        .await
                        .map_err(db)?;
                    Err(StoreError::Conflict(what))
                }
                // Unavailable: the record stays, and a retry takes over.
                Err(e) => Err(e),
            },
            Err(e) if is_duplicate_key(&e) => {
                let seen = self
                    .idempotency
                    .find_one(doc! { "user_id": &user, "key": &record.key })
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::unavailable_because(
                        "an idempotency key vanished while read; retry",
                    ))?;
                if seen.request_hash.bytes != record.request_hash {
                    return Ok(SubmitOutcome::KeyReused);
                }
                let status = u16::try_from(seen.status)
                    .map_err(|e| corrupt("stored idempotent status", e))?;
                let replay = SubmitOutcome::Replayed {
                    status,
                    body: seen.body.bytes,
                };
                if self.game_exists(&seen.game_id).await? {
                    return Ok(replay);
                }
                // The first attempt stopped before its game: take over.
                let taken_over = doc_for(
                    &seen.game_id,
                    &seen.event_id,
                    parse_time(&seen.submitted_at)?,
                );
                let columns = columns_document(&seen.game_id, &user, submission.channels())?;
                match self.write_game(&taken_over, columns).await {
                    // Conflict: the first attempt finished meanwhile.
                    Ok(()) | Err(StoreError::Conflict(_)) => Ok(replay),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn game(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<Game>> {
        let found = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(game_id), "user_id": id(user_id) })
            .projection(doc! { "outbox": 0 })
            .await
            .map_err(db)?;
        Ok(found.and_then(|g| game_from_doc(&g, true)))
    }

    async fn list_games(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Game>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "user_id": id(user_id) };
        if let Some(before) = before {
            filter.insert("_id", doc! { "$lt": id(before) });
        }
        // No limit on the query: a document skipped for an unreadable id
        // must not shorten the page (the cursor fetches batches lazily).
        let mut cursor = self
            .games
            .clone_with_type::<Document>()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .batch_size(limit.saturating_add(1))
            .projection(doc! { "outbox": 0, "metrics": 0 })
            .await
            .map_err(db)?;
        let mut games = Vec::new();
        while games.len() < limit as usize {
            let Some(g) = cursor.try_next().await.map_err(db)? else {
                break;
            };
            games.extend(game_from_doc(&g, false));
        }
        Ok(games)
    }

    async fn game_samples(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<GameSamples>> {
        let user = id(user_id);
        let Some(game) = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(game_id), "user_id": &user })
            .projection(doc! { "sample_rate_hz": 1, "score": 1, "channels": 1 })
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let number = |key: &str| -> Result<f64> {
            match doc_f64(&game, key) {
                Ok(Some(x)) => Ok(x),
                other => Err(corrupt_detail(
                    &format!("stored {key}"),
                    format!("{other:?}"),
                )),
            }
        };
        let names: Vec<String> = match doc_value(&game, "channels") {
            Ok(Some(names)) => names,
            other => return Err(corrupt_detail("stored channels", format!("{other:?}"))),
        };
        let columns = self
            .columns
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(game_id), "user_id": &user })
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt_detail("game without columns", game_id))?;
        let columns = columns
            .get_document("columns")
            .map_err(|e| corrupt("stored columns", e))?;
        let mut encoded = Vec::with_capacity(names.len());
        for name in names {
            let data = columns
                .get_binary_generic(&name)
                .map_err(|e| corrupt(&format!("column {name}"), e))?;
            encoded.push((name, data.as_slice()));
        }
        stored_samples(number("sample_rate_hz")?, number("score")?, encoded).map(Some)
    }

    async fn processed_games(&self, user_id: Uuid) -> Result<Vec<ProcessedGame>> {
        let cursor = self
            .games
            .clone_with_type::<Document>()
            .find(doc! { "user_id": id(user_id), "status": GameStatus::Processed.as_str() })
            .projection(
                doc! { "started_at": 1, "submitted_at": 1, "metrics": 1, "algorithm_version": 1 },
            )
            .await
            .map_err(db)?;
        let mut games = Vec::new();
        for d in collect(cursor).await? {
            let Some(game_id) = doc_id(&d, "_id", "game") else {
                continue;
            };
            let Some(metrics) = required(
                &game_id,
                "metrics",
                doc_value::<Metrics>(&d, "metrics"),
                "left out of progress",
            ) else {
                continue;
            };
            games.push(ProcessedGame {
                game_id,
                started_at: started_at(
                    game_id,
                    doc_text(&d, "started_at"),
                    doc_text(&d, "submitted_at"),
                ),
                metrics,
                algorithm_version: algorithm_version(&game_id, doc_i64(&d, "algorithm_version")),
            });
        }
        Ok(games)
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
        let user = id(user_id);
        let games = self.games.clone_with_type::<Document>();
        let projection =
            doc! { "started_at": 1, "submitted_at": 1, "samples": 1, "sample_rate_hz": 1 };
        // The games whose start is in the range by its string (through
        // `user_started`), then those whose start is not a time in the
        // stored format: they count where they read.
        let in_range = games
            .find(doc! {
                "user_id": &user,
                // Apart, as in `create_invite`.
                "$and": [
                    { "started_at": { "$gte": lower, "$lt": upper } },
                    { "started_at": { "$regex": WELL_FORMED_TIME } },
                ],
            })
            .projection(projection.clone())
            .await
            .map_err(db)?;
        let irregular = games
            .find(doc! { "user_id": &user, "started_at": { "$not": well_formed_time() } })
            .projection(projection)
            .await
            .map_err(db)?;
        let mut found = collect(in_range).await?;
        found.extend(collect(irregular).await?);
        let mut games: Vec<Activity> = found
            .iter()
            .filter_map(|d| {
                let game_id = doc_id(d, "_id", "game")?;
                Some(activity(
                    game_id,
                    doc_text(d, "started_at"),
                    doc_text(d, "submitted_at"),
                    doc_i64(d, "samples"),
                    doc_f64(d, "sample_rate_hz"),
                ))
            })
            .filter(|g| (from..to).contains(&g.started_at))
            .collect();
        games.sort_by_key(|g| (g.started_at, g.game_id));
        Ok(games)
    }

    async fn last_started_at(&self, user_id: Uuid) -> Result<Option<DateTime<Utc>>> {
        let user = id(user_id);
        let games = self.games.clone_with_type::<Document>();
        // The latest well-formed start, by `user_started` (the first game
        // whose id reads)…
        let mut cursor = games
            .find(doc! { "user_id": &user, "started_at": { "$regex": WELL_FORMED_TIME } })
            .sort(doc! { "started_at": -1 })
            .projection(doc! { "started_at": 1 })
            .batch_size(8)
            .await
            .map_err(db)?;
        let mut latest = None;
        while let Some(d) = cursor.try_next().await.map_err(db)? {
            if let Some(game_id) = doc_id(&d, "_id", "game") {
                latest = Some(started_at(game_id, doc_text(&d, "started_at"), Ok(None)));
                break;
            }
        }
        // …or a later one among the starts that are not.
        let irregular = games
            .find(doc! { "user_id": &user, "started_at": { "$not": well_formed_time() } })
            .projection(doc! { "started_at": 1, "submitted_at": 1 })
            .await
            .map_err(db)?;
        for d in collect(irregular).await? {
            if let Some(game_id) = doc_id(&d, "_id", "game") {
                let t = started_at(
                    game_id,
                    doc_text(&d, "started_at"),
                    doc_text(&d, "submitted_at"),
                );
                latest = latest.max(Some(t));
            }
        }
        Ok(latest)
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        // `created_at` is fixed-width UTC text: text order is time order.
        // Hourly, over about a day of keys: no index is worth its cost.
        let deleted = self
            .idempotency
            .delete_many(doc! { "created_at": { "$lt": ts(before) } })
            .await
            .map_err(db)?;
        Ok(deleted.deleted_count)
    }

    async fn games_to_reprocess(
        &self,
        selection: &ReprocessSelection,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ReprocessTarget>> {
        let Some(mut filter) = reprocess_filter(selection) else {
            return Ok(Vec::new());
        };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": id(after) });
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        // No limit on the query: a game skipped for an unreadable id must
        // not shorten the page.
        let mut cursor = self
            .games
            .clone_with_type::<Document>()
            .find(filter)
            .sort(doc! { "_id": 1 })
            .projection(doc! { "user_id": 1 })
            .batch_size(limit.saturating_add(1))
            .await
            .map_err(db)?;
        let mut games = Vec::new();
        while games.len() < limit as usize {
            let Some(d) = cursor.try_next().await.map_err(db)? else {
                break;
            };
            if let (Some(game_id), Some(user_id)) = (
                doc_id(&d, "_id", "game"),
                doc_id(&d, "user_id", "game's user"),
            ) {
                games.push(ReprocessTarget { game_id, user_id });
            }
        }
        Ok(games)
    }

    async fn count_to_reprocess(&self, selection: &ReprocessSelection) -> Result<u64> {
        let Some(filter) = reprocess_filter(selection) else {
            return Ok(0);
        };
        self.games.count_documents(filter).await.map_err(db)
    }
}

/// The games of a [`ReprocessSelection`]: not queued, newest result below
/// the version (absent: version 1), of its users. `None` when it selects
/// nothing (no version is below 1).
fn reprocess_filter(selection: &ReprocessSelection) -> Option<Document> {
    if selection.below <= 1 {
        return None;
    }
    let mut filter = doc! {
        "status": { "$ne": GameStatus::Queued.as_str() },
        "$or": [
            { "algorithm_version": { "$lt": i64::from(selection.below) } },
            { "algorithm_version": null },
        ],
    };
    if !selection.users.is_empty() {
        let users: Vec<String> = selection.users.iter().map(|u| id(*u)).collect();
        filter.insert("user_id", doc! { "$in": users });
    }
    Some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use m2m_domain::{decode_column, GameSubmission};
    use std::collections::BTreeMap;

    /// A game whose samples, channel after channel, are `value(0)`,
    /// `value(1)`, …
    fn game_of(channels: usize, samples: usize, value: impl Fn(u64) -> f64) -> GameSubmission {
        let columns = (0..channels)
            .map(|c| {
                let col = (0..samples)
                    .map(|i| value((c * samples + i) as u64))
                    .collect();
                (format!("ch_{c}"), col)
            })
            .collect::<BTreeMap<_, _>>();
        GameSubmission::validate(
            Some("pinch-garden".into()),
            Some(1.0),
            None,
            None,
            Some(100.0),
            Some(columns),
        )
        .expect("a valid game")
    }

    /// 64 well-mixed bits of `i` (SplitMix64's finaliser).
    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn a_ten_minute_game_fits_one_document() {
        // Values with three decimals in 0–100, unrelated from one sample to
        // the next: more than a glove's smooth signals take.
        let game = game_of(16, 60_000, |i| (mix(i) % 100_000) as f64 / 1000.0);
        let doc = columns_document("g", "u", game.channels()).unwrap();
        let size = doc.as_bytes().len();
        assert!(size < 4 * 1024 * 1024, "{size} bytes");
        let back = doc.get_document("columns").unwrap();
        let col = back.get_binary("ch_3").unwrap();
        assert_eq!(
            decode_column(col.bytes).unwrap(),
            game.channels().get("ch_3").unwrap()
        );
    }

    #[test]
    fn a_game_too_large_for_one_document_is_refused() {
        // Finite values of random bits take 8 bytes a sample in the
        // stored form, so 48 channels of 50 000 samples are ~19 MB.
        let game = game_of(48, 50_000, |i| f64::from_bits(mix(i) & !(1 << 62)));
        match columns_document("g", "u", game.channels()) {
            Err(StoreError::TooLarge(why)) => {
                assert!(why.contains("48 channels of 50000 samples"), "{why}")
            }
            other => panic!("{:?}", other.map(|d| d.as_bytes().len())),
        }
    }
}
