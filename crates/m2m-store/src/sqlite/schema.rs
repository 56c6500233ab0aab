//! The SQLite schema: its migrations, applied when a store opens the file
//! (the tables are described in the module documentation of `sqlite`).

use super::error::db;
use crate::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};

/// The schema, one script per version, applied in order. The database's
/// `PRAGMA user_version` is the number of scripts applied; each script runs
/// in its own `BEGIN IMMEDIATE` transaction together with the version bump,
/// so a crash or a second process opening the file at the same time never
/// leaves a half-applied version. Append new versions; never edit old ones.
pub(super) const MIGRATIONS: &[&str] = &[
    // Version 1: the whole schema of the module documentation.
    "
    CREATE TABLE users (
        user_id       TEXT PRIMARY KEY,
        username      TEXT NOT NULL,
        username_key  TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL
    ) STRICT;

    CREATE TABLE logins (
        login_id   TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES users (user_id),
        created_at TEXT NOT NULL,
        revoked_at TEXT
    ) STRICT;

    CREATE TABLE refresh_tokens (
        token_hash BLOB PRIMARY KEY,
        login_id   TEXT NOT NULL REFERENCES logins (login_id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        spent_at   TEXT
    ) STRICT;
    CREATE INDEX refresh_tokens_by_login ON refresh_tokens (login_id);

    CREATE TABLE games (
        game_id        TEXT PRIMARY KEY,
        user_id        TEXT NOT NULL,
        status         TEXT NOT NULL CHECK (status IN ('queued', 'processed', 'failed')),
        game           TEXT NOT NULL,
        score          REAL NOT NULL,
        started_at     TEXT NOT NULL,
        submitted_at   TEXT NOT NULL,
        processed_at   TEXT,
        device         TEXT,
        sample_rate_hz REAL NOT NULL,
        samples        INTEGER NOT NULL,
        channels       TEXT NOT NULL,
        metrics        TEXT,
        error          TEXT,
        event_id       TEXT NOT NULL UNIQUE
    ) STRICT;
    CREATE INDEX games_by_user ON games (user_id, game_id);
    CREATE INDEX games_queued ON games (game_id) WHERE status = 'queued';

    CREATE TABLE game_columns (
        game_id TEXT NOT NULL REFERENCES games (game_id),
        name    TEXT NOT NULL,
        data    BLOB NOT NULL,
        PRIMARY KEY (game_id, name)
    ) STRICT;

    CREATE TABLE outbox (
        event_id     TEXT PRIMARY KEY,
        game_id      TEXT NOT NULL REFERENCES games (game_id),
        user_id      TEXT NOT NULL,
        trace_id     TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        lease_until  TEXT,
        published_at TEXT
    ) STRICT;
    CREATE INDEX outbox_by_game ON outbox (game_id);
    CREATE INDEX outbox_pending ON outbox (created_at, event_id) WHERE published_at IS NULL;

    CREATE TABLE idempotency (
        user_id      TEXT NOT NULL,
        key          TEXT NOT NULL,
        request_hash BLOB NOT NULL,
        status       INTEGER NOT NULL,
        body         BLOB NOT NULL,
        created_at   TEXT NOT NULL,
        PRIMARY KEY (user_id, key)
    ) STRICT;

    CREATE TABLE changes (
        seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id                 TEXT NOT NULL,
        game_id                 TEXT NOT NULL REFERENCES games (game_id),
        event_id                TEXT NOT NULL UNIQUE,
        reconciliation_event_id TEXT NOT NULL,
        status                  TEXT NOT NULL,
        processed_at            TEXT NOT NULL,
        metrics                 TEXT,
        error                   TEXT
    ) STRICT;
    CREATE INDEX changes_by_user ON changes (user_id, seq);
    ",
    // Version 2: accounts have a role; those stored before are patients.
    "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'patient';",
];

/// Applies the [`MIGRATIONS`] the database has not seen yet.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db)?;
        let applied = usize::try_from(version).unwrap_or(usize::MAX);
        if applied > MIGRATIONS.len() {
            return Err(StoreError::unavailable_because(format!(
                "database schema version {version} is newer than this program's {}",
                MIGRATIONS.len()
            )));
        }
        let Some(script) = MIGRATIONS.get(applied) else {
            return Ok(());
        };
        tx.execute_batch(script).map_err(db)?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = version + 1, "migrated SQLite schema");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Unavailable { .. })
        ));
    }
}
