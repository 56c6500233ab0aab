//! [`ChangeFeed`] on MongoDB: completing a game with its feed entry as the
//! commit point, and the feed read by cursor (module documentation of
//! `mongo`, "Cursors").

use super::documents::{
    as_stored, change_from_doc, doc_id, doc_text, parse_id, parse_status, to_bson, ChangeDoc,
};
use super::error::{db, is_duplicate_key};
use super::MongoStore;
use crate::format::{corrupt, corrupt_detail, id, parse_time, ts, unreadable};
use crate::{ChangeFeed, Completed, Completion, Result, StoreError};
use async_trait::async_trait;
use chrono::SubsecRound;
use futures::TryStreamExt;
use m2m_domain::{reprocessing_event_id, Change, ChangeType};
use mongodb::bson::{self, doc, Document};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// How many times `complete_game` tries the next feed position when other
/// completions of the same user keep taking it first.
const MAX_SEQ_ATTEMPTS: usize = 64;
impl MongoStore {
    /// Sets a game's result from its feed entry, unless the game shows a
    /// newer version's already (then the entry is history only).
    /// Idempotent: the entry never changes, so applying it again writes the
    /// same values.
    async fn apply_change(&self, change: &ChangeDoc) -> Result<()> {
        let version = change.version();
        let mut set = doc! {
            "status": &change.status,
            "processed_at": &change.processed_at,
            "algorithm_version": version,
        };
        // A result replaces the whole of the one before (a version's error
        // must not stand next to another version's metrics).
        let mut unset = Document::new();
        match &change.metrics {
            Some(metrics) => set.insert("metrics", to_bson(metrics)?),
            None => unset.insert("metrics", ""),
        };
        match &change.error {
            Some(error) => set.insert("error", error),
            None => unset.insert("error", ""),
        };
        let mut update = doc! { "$set": set };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.games
            .update_one(
                doc! {
                    "_id": &change.game_id,
                    "$or": [
                        { "algorithm_version": null },
                        { "algorithm_version": { "$lte": version } },
                    ],
                },
                update,
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    /// The stored change of another event with this game's result of
    /// `version`, if any (one result per game and version). A change
    /// stored before versions is version 1.
    async fn result_of_version(&self, game: &str, version: u32) -> Result<Option<Document>> {
        let version = i64::from(version);
        let filter = if version == 1 {
            doc! { "game_id": game, "$or": [
                { "algorithm_version": 1_i64 },
                { "algorithm_version": null },
            ] }
        } else {
            doc! { "game_id": game, "algorithm_version": version }
        };
        self.changes
            .clone_with_type::<Document>()
            .find_one(filter)
            .await
            .map_err(db)
    }

    /// The latest position in a user's feed (0 if it is empty).
    async fn latest_seq(&self, user_id: &str) -> Result<i64> {
        let latest = self
            .changes
            .clone_with_type::<Document>()
            .find_one(doc! { "user_id": user_id })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "seq": 1 })
            .await
            .map_err(db)?;
        match latest {
            None => Ok(0),
            Some(d) => d.get_i64("seq").map_err(|e| corrupt("stored seq", e)),
        }
    }
}

impl ChangeDoc {
    fn completed(&self, user_id: Uuid, first: bool) -> Result<Completed> {
        Ok(Completed {
            change: Change {
                cursor: encode_cursor(user_id, self.seq),
                game_id: parse_id(&self.game_id)?,
                status: parse_status(&self.status)?,
                processed_at: Some(parse_time(&self.processed_at)?),
                metrics: self.metrics.clone(),
                kind: ChangeType::of(parse_status(&self.status)?, self.reprocessed),
                algorithm_version: u32::try_from(self.version())
                    .map_err(|e| corrupt("stored algorithm_version", e))?,
            },
            reconciliation_event_id: parse_id(&self.reconciliation_event_id)?,
            error: self.error.clone(),
            first,
        })
    }
}

/// What [`ChangeFeed::complete_game`] returns for a change stored before, read
/// by the rule of [`StoredChange`].
fn stored_completed(d: &Document, user_id: Uuid) -> Result<Completed> {
    let unreadable_change = || corrupt_detail("stored change", format!("{:?}", d.get("_id")));
    let change = change_from_doc(d, user_id).ok_or_else(unreadable_change)?;
    let reconciliation_event_id =
        doc_id(d, "reconciliation_event_id", "change").ok_or_else(unreadable_change)?;
    let error = doc_text(d, "error").unwrap_or_else(|why| {
        unreadable(&change.cursor, "error", &why, "absent");
        None
    });
    Ok(Completed {
        change,
        reconciliation_event_id,
        error,
        first: false,
    })
}

/// 8 hex digits naming a user inside a cursor.
fn user_tag(user_id: Uuid) -> String {
    let hash = Sha256::digest(user_id.as_bytes());
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cursor of a user's change `seq` (see "Cursors").
pub(super) fn encode_cursor(user_id: Uuid, seq: i64) -> String {
    format!("{seq:016x}{}", user_tag(user_id))
}

/// The `seq` of a cursor, if it is one this store could have made for
/// this user.
fn decode_cursor(cursor: &str, user_id: Uuid) -> Option<i64> {
    let well_formed = cursor.len() == 24
        && cursor
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return None;
    }
    let (seq, tag) = cursor.split_at(16);
    if tag != user_tag(user_id) {
        return None;
    }
    let seq = u64::from_str_radix(seq, 16).ok()?;
    i64::try_from(seq).ok().filter(|&s| s > 0)
}

#[async_trait]
impl ChangeFeed for MongoStore {
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
        let (event, game, user) = (id(event_id), id(game_id), id(user_id));
        // Only the game's own event, or its reprocessing event of this
        // version, for its own user, completes it.
        let own = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": &game, "user_id": &user })
            .projection(doc! { "event_id": 1 })
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        let reprocessed = doc_text(&own, "event_id") != Ok(Some(event.clone()));
        if reprocessed && event_id != reprocessing_event_id(game_id, algorithm_version) {
            return Err(StoreError::NotFound);
        }
        // What is stored is what every caller gets back, this one included.
        let mut change = ChangeDoc {
            event_id: event.clone(),
            user_id: user.clone(),
            seq: 0,
            game_id: game.clone(),
            reconciliation_event_id: id(reconciliation_event_id),
            status: status.as_str().to_owned(),
            processed_at: ts(processed_at.trunc_subsecs(6)),
            metrics: metrics.as_ref().map(as_stored).transpose()?,
            error,
            algorithm_version: Some(i64::from(algorithm_version)),
            reprocessed,
        };
        // Crash safety: the feed entry is the commit point, keyed by the
        // event id; the game is then updated *from the entry*. A crash
        // between the two leaves the game `queued` with its change stored;
        // the event was not acked, so it is redelivered (or republished at
        // startup, the game being `queued`), and that redelivery finds the
        // entry and re-applies it to the game. Two processors finishing the
        // same event at once both try to insert the entry: the `_id` index
        // lets one in, the other reads it and returns it (`first: false`),
        // and both apply the same, stored result to the game.
        for _ in 0..MAX_SEQ_ATTEMPTS {
            if let Some(stored) = self
                .changes
                .clone_with_type::<Document>()
                .find_one(doc! { "_id": &event })
                .await
                .map_err(db)?
            {
                match bson::from_document::<ChangeDoc>(stored.clone()) {
                    Ok(typed) => self.apply_change(&typed).await?,
                    Err(e) => unreadable(
                        &format!("change of event {event}"),
                        "document",
                        &e.to_string(),
                        "not applied to its game again",
                    ),
                }
                return stored_completed(&stored, user_id);
            }
            // One result per game and version (`game_version_unique`):
            // another event's result of this version stands.
            if let Some(twin) = self.result_of_version(&game, algorithm_version).await? {
                if let Ok(typed) = bson::from_document::<ChangeDoc>(twin.clone()) {
                    self.apply_change(&typed).await?;
                }
                return stored_completed(&twin, user_id);
            }
            change.seq = self.latest_seq(&user).await? + 1;
            match self.changes.insert_one(&change).await {
                Ok(_) => {
                    self.apply_change(&change).await?;
                    return change.completed(user_id, true);
                }
                // This event's entry or this version's result (found at
                // the top of the loop) or this position (taken by another
                // change of the user: try the next one).
                Err(e) if is_duplicate_key(&e) => continue,
                Err(e) => return Err(db(e)),
            }
        }
        Err(StoreError::unavailable_because(
            "too many concurrent changes to this user's feed; retry",
        ))
    }

    async fn changes_since(
        &self,
        user_id: Uuid,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Change>> {
        let user = id(user_id);
        let after = match since {
            None => 0,
            Some(cursor) => {
                let seq = decode_cursor(cursor, user_id).ok_or(StoreError::UnknownCursor)?;
                let known = self
                    .changes
                    .count_documents(doc! { "user_id": &user, "seq": seq })
                    .limit(1)
                    .await
                    .map_err(db)?;
                if known == 0 {
                    return Err(StoreError::UnknownCursor);
                }
                seq
            }
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // No limit on the query: a change skipped for an unreadable game id
        // must not shorten the page, or a page of them would look like the
        // end of the feed.
        let mut cursor = self
            .changes
            .clone_with_type::<Document>()
            .find(doc! { "user_id": &user, "seq": { "$gt": after } })
            .sort(doc! { "seq": 1 })
            .batch_size(limit.saturating_add(1))
            .await
            .map_err(db)?;
        let mut changes = Vec::new();
        while changes.len() < limit as usize {
            let Some(c) = cursor.try_next().await.map_err(db)? else {
                break;
            };
            changes.extend(change_from_doc(&c, user_id));
        }
        Ok(changes)
    }

    async fn latest_cursor(&self, user_id: Uuid) -> Result<Option<String>> {
        let seq = self.latest_seq(&id(user_id)).await?;
        Ok((seq > 0).then(|| encode_cursor(user_id, seq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_order_and_name_their_user() {
        let (ada, grace) = (Uuid::now_v7(), Uuid::now_v7());
        for seq in [1, 2, 255, 1 << 40, i64::MAX] {
            let c = encode_cursor(ada, seq);
            assert_eq!(c.len(), 24);
            assert_eq!(decode_cursor(&c, ada), Some(seq));
            assert_eq!(decode_cursor(&c, grace), None, "another user's");
        }
        assert!(encode_cursor(ada, 9) < encode_cursor(ada, 10));
        let tag = user_tag(ada);
        for bad in [
            String::new(),
            "1".into(),
            format!("000000000000000A{tag}"),
            format!("0000000000000000{tag}"),
            format!("8000000000000000{tag}"),
            format!("000000000000000g{tag}"),
            format!("0000000000000001{tag}0"),
        ] {
            assert_eq!(decode_cursor(&bad, ada), None, "{bad:?}");
        }
        // Upper case is refused too; a fixed tag with letters, since a
        // random user's tag is all digits one time in forty (and would not
        // change when upper-cased).
        assert_eq!(
            decode_cursor("000000000000000100000000".to_uppercase().as_str(), ada),
            None
        );
        let cursor = encode_cursor(ada, 10);
        if cursor != cursor.to_uppercase() {
            assert_eq!(decode_cursor(&cursor.to_uppercase(), ada), None);
        }
        assert_eq!(decode_cursor("000000000000000A", ada), None);
    }
}
