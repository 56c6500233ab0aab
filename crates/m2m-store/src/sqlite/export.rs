//! [`Export`] on SQLite: every user's games in game id order, a page at a
//! time.

use super::error::db;
use super::rows::{game_from_row, row_id, well_formed_time, GAME_FIELDS};
use super::SqliteStore;
use crate::format::id;
use crate::{Export, ExportFilter, ExportedGame, Result};
use async_trait::async_trait;
use rusqlite::types::Value;
use uuid::Uuid;

#[async_trait]
impl Export for SqliteStore {
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
        let filter = filter.clone();
        self.blocking(move |inner| {
            inner.read(|tx| {
                // By the primary key's order. The range is taken by its
                // text where the text is a time as stored, and every game
                // whose `started_at` is anything else is read and placed
                // where it reads (below), as `activity` does.
                // (`game_id > ?` only when paging on, so that the primary
                // key's index seeks to the page's start.)
                let mut sql = format!("SELECT {GAME_FIELDS}, user_id FROM games WHERE 1");
                let mut params: Vec<Value> = Vec::new();
                if let Some(after) = after {
                    params.push(Value::Text(id(after)));
                    sql.push_str(&format!(" AND game_id > ?{}", params.len()));
                }
                if let Some((lower, upper)) = range {
                    params.push(Value::Text(lower));
                    params.push(Value::Text(upper));
                    let (l, u) = (params.len() - 1, params.len());
                    let well_formed = well_formed_time("started_at");
                    sql.push_str(&format!(
                        " AND ((started_at >= ?{l} AND started_at < ?{u} AND {well_formed}) \
                         OR NOT {well_formed})"
                    ));
                }
                if !filter.users.is_empty() {
                    let first = params.len() + 1;
                    let marks: Vec<String> = (first..first + filter.users.len())
                        .map(|i| format!("?{i}"))
                        .collect();
                    sql.push_str(&format!(" AND user_id IN ({})", marks.join(", ")));
                    params.extend(filter.users.iter().map(|u| Value::Text(id(*u))));
                }
                // No LIMIT: a row left out must not shorten the page (rows
                // are read lazily, so no more than needed are).
                sql.push_str(" ORDER BY game_id");
                let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(db)?;
                let mut games = Vec::new();
                while games.len() < limit as usize {
                    let Some(row) = rows.next().map_err(db)? else {
                        break;
                    };
                    let Some(game) = game_from_row(row, true)? else {
                        continue;
                    };
                    let what = format!("user of game {}", game.game_id);
                    // The column after the game's fields.
                    let user_column = GAME_FIELDS.split(',').count();
                    let Some(user_id) = row_id(row, user_column, &what)? else {
                        continue;
                    };
                    if filter.contains(game.started_at) {
                        games.push(ExportedGame { user_id, game });
                    }
                }
                Ok(games)
            })
        })
        .await
    }
}
