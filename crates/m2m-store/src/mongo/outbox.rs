//! [`Outbox`] on MongoDB: the publisher's claims, leases and confirmations
//! on the outbox state inside each game document, and the event rebuilt
//! from a claimed game.

use super::documents::{doc_f64, doc_text, doc_value, parse_id};
use super::error::db;
use super::MongoStore;
use crate::format::{corrupt_detail, id, plus, started_at, submitted_at, ts, unreadable};
use crate::{Outbox, OutboxEntry, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_domain::{Device, EventGame, GameStatus, ProcessingEvent, PROCESSING_EVENT_VERSION};
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
                    doc! { "event_id": { "$in": ids }, "outbox.pending": true },
                    doc! {
                        "$set": { "outbox.pending": false, "outbox.published_at": ts(now) },
                        "$unset": { "outbox.lease_until": "" },
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
        for _ in 0..limit {
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
        Ok(reset.matched_count)
    }

    async fn unpublished_count(&self) -> Result<u64> {
        self.games
            .count_documents(doc! { "outbox.pending": true })
            .await
            .map_err(db)
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
        },
        trace_id,
    })
}
