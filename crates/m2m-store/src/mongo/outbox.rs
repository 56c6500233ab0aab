//! [`Outbox`] on MongoDB: the publisher's claims, leases and confirmations
//! on the outbox state inside each game document, and the event rebuilt
//! from a claimed game.

use super::documents::{doc_f64, doc_i64, doc_text, doc_value, parse_id, ReprocessDoc};
use super::error::db;
use super::MongoStore;
use crate::format::{corrupt_detail, id, plus, started_at, submitted_at, ts, unreadable};
use crate::{Outbox, OutboxEntry, ReprocessTarget, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use m2m_domain::{
    reprocessing_event_id, Device, EventGame, GameStatus, ProcessingEvent, PROCESSING_EVENT_VERSION,
};
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use std::time::Duration;
use uuid::Uuid;

#[async_trait]
impl Outbox for MongoStore {
    async fn advance_outbox(
        &self,
        published: &[Uuid],
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>> {
        if !published.is_empty() {
            // One atomic update per document; a repeated confirm matches
            // nothing.
            let ids: Vec<String> = published.iter().map(|e| id(*e)).collect();
            self.games
                .update_many(
                    doc! { "event_id": { "$in": &ids }, "outbox.pending": true },
                    doc! {
                        "$set": { "outbox.pending": false, "outbox.published_at": ts(now) },
                        "$unset": { "outbox.lease_until": "" },
                    },
                )
                .await
                .map_err(db)?;
            self.reprocessing
                .update_many(
                    doc! { "_id": { "$in": &ids }, "pending": true },
                    doc! {
                        "$set": { "pending": false, "published_at": ts(now) },
                        "$unset": { "lease_until": "" },
                    },
                )
                .await
                .map_err(db)?;
        }
        // One atomic find-and-update per entry, each taking the oldest
        // entry free at that moment: two publishers never lease the same
        // entry, and a crash after a claim only delays that entry by one
        // lease.
        let lease_until = ts(plus(now, lease));
        let mut entries = Vec::new();
        let mut claimed = 0;
        while claimed < limit {
            let game = self
                .games
                .clone_with_type::<Document>()
                .find_one_and_update(
                    doc! {
                        "outbox.pending": true,
                        "$or": [
                            { "outbox.lease_until": null },
                            { "outbox.lease_until": { "$lte": ts(now) } },
                        ],
                    },
                    doc! { "$set": { "outbox.lease_until": &lease_until } },
                )
                .sort(doc! { "outbox.pending": 1, "outbox.created_at": 1, "event_id": 1 })
                .projection(doc! { "metrics": 0 })
                .return_document(ReturnDocument::After)
                .await
                .map_err(db)?;
            let Some(game) = game else { break };
            claimed += 1;
            // One that cannot be made into its event stays leased in the
            // outbox and is tried again after its lease; the others go on.
            match outbox_entry(&game) {
                Ok(entry) => entries.push(entry),
                Err(why) => tracing::warn!(
                    event_id = ?game.get("event_id"),
                    reason = %why,
                    "stored event cannot be read; left in the outbox and retried after its lease"
                ),
            }
        }
        // Then the reprocessing events, the same way; uploads go first.
        while claimed < limit {
            let entry = self
                .reprocessing
                .clone_with_type::<Document>()
                .find_one_and_update(
                    doc! {
                        "pending": true,
                        "$or": [
                            { "lease_until": null },
                            { "lease_until": { "$lte": ts(now) } },
                        ],
                    },
                    doc! { "$set": { "lease_until": &lease_until } },
                )
                .sort(doc! { "pending": 1, "created_at": 1, "_id": 1 })
                .return_document(ReturnDocument::After)
                .await
                .map_err(db)?;
            let Some(entry) = entry else { break };
            claimed += 1;
            match self.reprocessing_entry(&entry).await? {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {
                    // Its game is gone (erased): nothing to reprocess.
                    self.reprocessing
                        .delete_one(doc! { "_id": entry.get("_id") })
                        .await
                        .map_err(db)?;
                }
                Err(why) => tracing::warn!(
                    event_id = ?entry.get("_id"),
                    reason = %why,
                    "stored event cannot be read; left in the outbox and retried after its lease"
                ),
            }
        }
        Ok(entries)
    }

    async fn republish_unfinished(&self) -> Result<u64> {
        let reset = self
            .games
            .update_many(
                doc! { "status": GameStatus::Queued.as_str() },
                doc! {
                    "$set": { "outbox.pending": true },
                    "$unset": { "outbox.published_at": "", "outbox.lease_until": "" },
                },
            )
            .await
            .map_err(db)?;
        // Published reprocessing events whose game is still below their
        // version: one look-up per entry (this runs at startup, with the
        // in-process bus, over the entries of unfinished `m2m reprocess`
        // runs).
        let mut published = self
            .reprocessing
            .clone_with_type::<Document>()
            .find(doc! { "pending": false })
            .projection(doc! { "game_id": 1, "algorithm_version": 1 })
            .await
            .map_err(db)?;
        let mut unfinished = Vec::new();
        while let Some(entry) = published.try_next().await.map_err(db)? {
            let (Ok(Some(game)), Ok(Some(version))) = (
                doc_text(&entry, "game_id"),
                doc_i64(&entry, "algorithm_version"),
            ) else {
                continue;
            };
            let behind = self
                .games
                .count_documents(doc! {
                    "_id": &game,
                    "$or": [
                        { "algorithm_version": null },
                        { "algorithm_version": { "$lt": version } },
                    ],
                })
                .await
                .map_err(db)?;
            if behind > 0 {
                unfinished.extend(entry.get("_id").cloned());
            }
        }
        let mut again = 0;
        if !unfinished.is_empty() {
            again = self
                .reprocessing
                .update_many(
                    doc! { "_id": { "$in": unfinished } },
                    doc! {
                        "$set": { "pending": true },
                        "$unset": { "published_at": "", "lease_until": "" },
                    },
                )
                .await
                .map_err(db)?
                .matched_count;
        }
        Ok(reset.matched_count + again)
    }

    async fn unpublished_count(&self) -> Result<u64> {
        let uploads = self
            .games
            .count_documents(doc! { "outbox.pending": true })
            .await
            .map_err(db)?;
        let reprocessing = self
            .reprocessing
            .count_documents(doc! { "pending": true })
            .await
            .map_err(db)?;
        Ok(uploads + reprocessing)
    }

    async fn enqueue_reprocessing(
        &self,
        games: &[ReprocessTarget],
        version: u32,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut added = 0;
        for target in games {
            let (game, user) = (id(target.game_id), id(target.user_id));
            let exists = self
                .games
                .count_documents(doc! { "_id": &game, "user_id": &user })
                .limit(1)
                .await
                .map_err(db)?;
            if exists == 0 {
                continue;
            }
            let event_id = id(reprocessing_event_id(target.game_id, version));
            let entry = ReprocessDoc {
                event_id: event_id.clone(),
                game_id: game,
                user_id: user,
                algorithm_version: i64::from(version),
                trace_id: trace_id.to_owned(),
                created_at: ts(now),
                pending: true,
                lease_until: None,
                published_at: None,
            };
            let mut fields = mongodb::bson::to_document(&entry)
                .map_err(|e| crate::format::corrupt("unserialisable value", e))?;
            fields.remove("_id");
            let done = self
                .reprocessing
                .update_one(doc! { "_id": &event_id }, doc! { "$setOnInsert": fields })
                .upsert(true)
                .await
                .map_err(db)?;
            if done.upserted_id.is_some() {
                added += 1;
                continue;
            }
            // There already: published again if it was published (see
            // `Outbox::enqueue_reprocessing`).
            let again = self
                .reprocessing
                .update_one(
                    doc! { "_id": &event_id, "pending": false },
                    doc! {
                        "$set": { "pending": true, "trace_id": trace_id },
                        "$unset": { "published_at": "", "lease_until": "" },
                    },
                )
                .await
                .map_err(db)?;
            added += again.modified_count;
        }
        Ok(added)
    }
}

impl MongoStore {
    /// The event of a claimed reprocessing entry: its game's description
    /// under the entry's id and version. `Ok(None)` when the game is gone;
    /// the inner `Err` says why the entry cannot be made into an event.
    async fn reprocessing_entry(
        &self,
        entry: &Document,
    ) -> Result<std::result::Result<Option<OutboxEntry>, String>> {
        let (Ok(Some(game_id)), Ok(Some(version)), Ok(Some(event_id)), Ok(Some(trace_id))) = (
            doc_text(entry, "game_id"),
            doc_i64(entry, "algorithm_version"),
            doc_text(entry, "_id"),
            doc_text(entry, "trace_id"),
        ) else {
            return Ok(Err("a field of the entry cannot be read".into()));
        };
        let (Ok(version), Ok(event_id)) = (u32::try_from(version), Uuid::parse_str(&event_id))
        else {
            return Ok(Err(format!("event {event_id:?} of version {version}")));
        };
        let game = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": &game_id })
            .projection(doc! { "metrics": 0 })
            .await
            .map_err(db)?;
        let Some(game) = game else {
            return Ok(Ok(None));
        };
        let mut claimed = match outbox_entry(&game) {
            Ok(claimed) => claimed,
            Err(e) => return Ok(Err(e.to_string())),
        };
        claimed.event.event_id = event_id;
        claimed.event.reprocess = Some(version);
        if let Ok(Some(created_at)) = doc_text(entry, "created_at") {
            if let Ok(t) = crate::format::parse_time(&created_at) {
                claimed.event.created_at = t;
            }
        }
        claimed.trace_id = trace_id;
        Ok(Ok(Some(claimed)))
    }
}

/// The event of a claimed game. A stored time or device that cannot be
/// read is replaced as [`StoredGame`] says; anything else the event needs
/// and cannot have is [`StoreError::Corrupt`].
fn outbox_entry(game: &Document) -> Result<OutboxEntry> {
    let must = |key: &str| -> Result<String> {
        match doc_text(game, key) {
            Ok(Some(s)) => Ok(s),
            other => Err(corrupt_detail(
                &format!("stored {key}"),
                format!("{other:?}"),
            )),
        }
    };
    let number = |key: &str| -> Result<f64> {
        match doc_f64(game, key) {
            Ok(Some(x)) => Ok(x),
            other => Err(corrupt_detail(
                &format!("stored {key}"),
                format!("{other:?}"),
            )),
        }
    };
    let game_id = parse_id(&must("_id")?)?;
    let outbox = game
        .get_document("outbox")
        .map_err(|_| corrupt_detail("claimed game without outbox", game_id))?;
    let created_at = doc_text(outbox, "created_at");
    let trace_id = match doc_text(outbox, "trace_id") {
        Ok(Some(t)) => t,
        other => return Err(corrupt_detail("stored trace_id", format!("{other:?}"))),
    };
    Ok(OutboxEntry {
        event: ProcessingEvent {
            version: PROCESSING_EVENT_VERSION,
            event_id: parse_id(&must("event_id")?)?,
            game_id,
            user_id: parse_id(&must("user_id")?)?,
            created_at: submitted_at(game_id, created_at.clone()),
            game: EventGame {
                game: must("game")?,
                score: number("score")?,
                started_at: started_at(game_id, doc_text(game, "started_at"), created_at),
                device: doc_value::<Device>(game, "device").unwrap_or_else(|why| {
                    unreadable(&game_id, "device", &why, "absent");
                    None
                }),
            },
            sample_rate_hz: number("sample_rate_hz")?,
            reprocess: None,
        },
        trace_id,
    })
}
