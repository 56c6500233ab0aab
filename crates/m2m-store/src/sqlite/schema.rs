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
    // Version 3: the therapist side. Accounts may set a time zone (none:
    // UTC); therapists' invite codes and their links to patients; games
    // by start, for adherence and the last game of a patient.
    "
    ALTER TABLE users ADD COLUMN tz TEXT;

    CREATE TABLE invites (
        code         TEXT PRIMARY KEY,
        therapist_id TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT NOT NULL,
        used_by      TEXT,
        used_at      TEXT
    ) STRICT;
    CREATE INDEX invites_open ON invites (therapist_id, expires_at) WHERE used_by IS NULL;

    CREATE TABLE links (
        therapist_id TEXT NOT NULL,
        patient_id   TEXT NOT NULL,
        linked_at    TEXT NOT NULL,
        PRIMARY KEY (therapist_id, patient_id)
    ) STRICT;
    CREATE INDEX links_by_patient ON links (patient_id);

    CREATE INDEX games_by_start ON games (user_id, started_at);
    ",
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
    use crate::format::parse_time;
    use crate::sqlite::SqliteStore;
    use crate::{Accounts, Care, Games, InviteOutcome, NewInvite, RedeemOutcome};
    use chrono::TimeDelta;
    use m2m_domain::{Role, Username};
    use uuid::Uuid;

    /// A database made by version 2 (its own scripts, not a downgrade),
    /// with a patient, a therapist and a game in its shape, opens after
    /// version 3: everything reads, and the new parts work.
    #[tokio::test]
    async fn a_version_2_database_opens_and_reads_after_version_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        let (ada, grace, game) = (
            "0190c6a4-0000-7000-8000-000000000001",
            "0190c6a4-0000-7000-8000-000000000002",
            "0190c6a4-0000-7000-8000-000000000003",
        );
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for script in &MIGRATIONS[..2] {
                tx.execute_batch(script).unwrap();
            }
            tx.pragma_update(None, "user_version", 2).unwrap();
            tx.execute_batch(&format!(
                "INSERT INTO users (user_id, username, username_key, password_hash, role, created_at)
                 VALUES ('{ada}', 'Ada', 'ada', 'hash-a', 'patient', '2024-07-01T00:00:00.000000Z'),
                        ('{grace}', 'Dr.Grace', 'dr.grace', 'hash-g', 'therapist',
                         '2024-07-01T00:00:00.000000Z');
                 INSERT INTO games (game_id, user_id, status, game, score, started_at, submitted_at,
                                    sample_rate_hz, samples, channels, event_id)
                 VALUES ('{game}', '{ada}', 'queued', 'pinch-garden', 12.5,
                         '2024-07-02T10:00:00.000000Z', '2024-07-02T10:05:00.000000Z',
                         100.0, 3000, '[\"flex_index\"]', '0190c6a4-0000-7000-8000-000000000004');"
            ))
            .unwrap();
            tx.commit().unwrap();
        }

        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .inner
            .writer
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
        let (ada, grace, game) = (
            Uuid::parse_str(ada).unwrap(),
            Uuid::parse_str(grace).unwrap(),
            Uuid::parse_str(game).unwrap(),
        );
        let login = store
            .user_by_username(&Username::parse("dr.grace").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((login.user_id, login.role), (grace, Role::Therapist));
        let profile = store.profile(ada).await.unwrap().unwrap();
        assert_eq!((profile.username.as_str(), profile.tz), ("Ada", None));
        assert!(store.set_time_zone(ada, "Europe/Zurich").await.unwrap());

        let started = parse_time("2024-07-02T10:00:00.000000Z").unwrap();
        assert_eq!(
            store.game(ada, game).await.unwrap().unwrap().started_at,
            started
        );
        let day = store
            .activity(ada, started, started + TimeDelta::days(1))
            .await
            .unwrap();
        assert_eq!((day.len(), day[0].game_id), (1, game));
        assert_eq!(day[0].active_seconds, 30.0);
        assert_eq!(store.last_started_at(ada).await.unwrap(), Some(started));

        let now = parse_time("2024-07-03T00:00:00.000000Z").unwrap();
        let invite = NewInvite {
            code: "ABCDEFGH".into(),
            therapist_id: grace,
            created_at: now,
            expires_at: now + TimeDelta::hours(72),
        };
        assert_eq!(
            store.create_invite(invite, 20).await.unwrap(),
            InviteOutcome::Created
        );
        assert!(matches!(
            store.redeem_invite("ABCDEFGH", ada, now).await.unwrap(),
            RedeemOutcome::Linked(link) if link.therapist_id == grace
        ));
        assert_eq!(store.patients_of(grace).await.unwrap()[0].username, "Ada");
    }

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
