//! [`Export`] on MongoDB: every user's games in `_id` (game id) order, a
//! page at a time.

use super::documents::{doc_id, game_from_doc, well_formed_time, WELL_FORMED_TIME};
use super::error::db;
use super::MongoStore;
use crate::format::id;
use crate::{Export, ExportFilter, ExportedGame, Result};
use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use uuid::Uuid;

#[async_trait]
impl Export for MongoStore {
    async fn export_games(
        &self,
        filter: &ExportFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ExportedGame>> {
        let Some(range) = filter.text_range() else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut query = Document::new();
        if let Some(after) = after {
            query.insert("_id", doc! { "$gt": id(after) });
        }
        if !filter.users.is_empty() {
            let users: Vec<Bson> = filter.users.iter().map(|u| Bson::String(id(*u))).collect();
            query.insert("user_id", doc! { "$in": users });
        }
        if let Some((lower, upper)) = range {
            // The range by string where the string is a time as stored;
            // every other start is read and placed where it reads (below),
            // as `activity` does.
            query.insert(
                "$or",
                vec![
                    doc! { "$and": [
                        { "started_at": { "$gte": lower, "$lt": upper } },
                        { "started_at": { "$regex": WELL_FORMED_TIME } },
                    ] },
                    doc! { "started_at": { "$not": well_formed_time() } },
                ],
            );
        }
        // No limit on the query: a document left out must not shorten the
        // page (the cursor fetches batches lazily).
        let mut cursor = self
            .games
            .clone_with_type::<Document>()
            .find(query)
            .sort(doc! { "_id": 1 })
            .batch_size(limit.saturating_add(1))
            .projection(doc! { "outbox": 0 })
            .await
            .map_err(db)?;
        let mut games = Vec::new();
        while games.len() < limit as usize {
            let Some(d) = cursor.try_next().await.map_err(db)? else {
                break;
            };
            let Some(game) = game_from_doc(&d, true) else {
                continue;
            };
            let Some(user_id) = doc_id(&d, "user_id", &format!("user of game {}", game.game_id))
            else {
                continue;
            };
            if filter.contains(game.started_at) {
                games.push(ExportedGame { user_id, game });
            }
        }
        Ok(games)
    }
}
