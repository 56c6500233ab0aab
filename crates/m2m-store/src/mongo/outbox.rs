//! [`Outbox`] on MongoDB: the relay's claims, leases and confirmations on
//! the outbox state inside each game document, and the event rebuilt from a
//! claimed game and its columns.

use super::documents::{doc_f64, doc_text, doc_value, parse_id};
use super::error::db;
use super::MongoStore;
use crate::format::{corrupt, corrupt_detail, id, plus, started_at, submitted_at, ts, unreadable};
use crate::{Outbox, OutboxEntry, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_domain::{decode_column, Device, EventGame, GameStatus, ProcessingEvent, EVENT_VERSION};
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

#[async_trait]
impl Outbox for MongoStore {
    async fn claim_unpublished(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>> {
        // One atomic find-and-update per entry, each taking the oldest
        // entry free at that moment: two relays never lease the same entry,
        // and a crash after a claim only delays that entry by one lease.
        let lease_until = ts(plus(now, lease));
        let mut claimed = Vec::new();
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
            match game {
                Some(game) => claimed.push(game),
                None => break,
            }
        }
        let mut entries = Vec::with_capacity(claimed.len());
        for game in claimed {
            // One that cannot be made into its event stays leased in the
            // outbox and is tried again after its lease; the others go on.
            match self.outbox_entry(&game).await {
                Ok(entry) => entries.push(entry),
                Err(e @ StoreError::Corrupt { .. }) => tracing::warn!(
                    event_id = ?game.get("event_id"),
                    reason = %e,
                    "stored event cannot be read; left in the outbox and retried after its lease"
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(entries)
    }

    async fn mark_published(&self, event_id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let event_id = id(event_id);
        let updated = self
            .games
            .update_one(
                doc! { "event_id": &event_id, "outbox.pending": true },
                doc! {
                    "$set": { "outbox.pending": false, "outbox.published_at": ts(now) },
                    "$unset": { "outbox.lease_until": "" },
                },
            )
            .await
            .map_err(db)?;
        if updated.matched_count > 0 {
            return Ok(());
        }
        // Already published (a repeated confirm) is fine; unknown is not.
        let exists = self
            .games
            .count_documents(doc! { "event_id": &event_id })
            .limit(1)
            .await
            .map_err(db)?;
        if exists > 0 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn release_lease(&self, event_id: Uuid) -> Result<()> {
        // One document, one atomic update; a published event is untouched.
        self.games
            .update_one(
                doc! { "event_id": id(event_id), "outbox.pending": true },
                doc! { "$unset": { "outbox.lease_until": "" } },
            )
            .await
            .map_err(db)?;
        Ok(())
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

impl MongoStore {
    /// The event of a claimed game, with its columns. A stored time or
    /// device that cannot be read is replaced as [`StoredGame`] says;
    /// anything else the event needs and cannot have is
    /// [`StoreError::Corrupt`].
    async fn outbox_entry(&self, game: &Document) -> Result<OutboxEntry> {
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
        let game_id_text = must("_id")?;
        let game_id = parse_id(&game_id_text)?;
        let outbox = game
            .get_document("outbox")
            .map_err(|_| corrupt_detail("claimed game without outbox", game_id))?;
        let created_at = doc_text(outbox, "created_at");
        let trace_id = match doc_text(outbox, "trace_id") {
            Ok(Some(t)) => t,
            other => return Err(corrupt_detail("stored trace_id", format!("{other:?}"))),
        };
        let names: Vec<String> = match doc_value(game, "channels") {
            Ok(Some(names)) => names,
            other => return Err(corrupt_detail("stored channels", format!("{other:?}"))),
        };
        let columns = self
            .columns
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": &game_id_text })
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt_detail("game without columns", game_id))?;
        let columns = columns
            .get_document("columns")
            .map_err(|e| corrupt("stored columns", e))?;
        let mut channels = BTreeMap::new();
        for name in names {
            let data = columns
                .get_binary_generic(&name)
                .map_err(|e| corrupt(&format!("column {name}"), e))?;
            let col = decode_column(data).map_err(|e| corrupt(&format!("column {name}"), e))?;
            channels.insert(name, col);
        }
        Ok(OutboxEntry {
            event: ProcessingEvent {
                version: EVENT_VERSION,
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
                channels,
            },
            trace_id,
        })
    }
}
