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
    // Version 4: results that can be recomputed (docs/data-lifecycle.md).
    // A game's newest result carries the algorithm version that made it;
    // those stored before are version 1. Every result stays in `changes`
    // with its version (the game's history), one per game and version:
    // `complete_game` checks it in its write transaction (SQLite runs one
    // writer at a time), so the index is not UNIQUE and a hand-edited
    // file whose changes share a game id still opens.
    // The outbox also holds reprocessing events (`algorithm_version` set:
    // the version they ask for; NULL: a game's first event).
    "
    ALTER TABLE games ADD COLUMN algorithm_version INTEGER;
    UPDATE games SET algorithm_version = 1 WHERE status <> 'queued';

    ALTER TABLE changes ADD COLUMN algorithm_version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE changes ADD COLUMN reprocessed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX changes_by_game_version ON changes (game_id, algorithm_version);

    ALTER TABLE outbox ADD COLUMN algorithm_version INTEGER;
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
        assert_eq!(version as usize, MIGRATIONS.len());
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

    /// A database made by version 3 (its own scripts), with a processed
    /// game and its change, a failed one and a queued one with its event,
    /// opens after version 4: the results are algorithm version 1, the
    /// queued game has none, and its event is still a first event.
    #[tokio::test]
    async fn a_version_3_database_opens_with_its_results_as_version_1() {
        use crate::{ChangeFeed, Games, Outbox, ReprocessSelection};
        use m2m_domain::{ChangeType, GameStatus};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        let ada = "0190c6a4-0000-7000-8000-000000000001";
        let (done, failed, queued) = (
            "0190c6a4-0000-7000-8000-000000000003",
            "0190c6a4-0000-7000-8000-000000000005",
            "0190c6a4-0000-7000-8000-000000000007",
        );
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for script in &MIGRATIONS[..3] {
                tx.execute_batch(script).unwrap();
            }
            tx.pragma_update(None, "user_version", 3).unwrap();
            let game = |id: &str, status: &str, event: &str, metrics: &str, error: &str| {
                format!(
                    "INSERT INTO games (game_id, user_id, status, game, score, started_at,
                         submitted_at, processed_at, sample_rate_hz, samples, channels,
                         metrics, error, event_id)
                     VALUES ('{id}', '{ada}', '{status}', 'pinch-garden', 12.5,
                         '2024-07-02T10:00:00.000000Z', '2024-07-02T10:05:00.000000Z',
                         {processed}, 100.0, 3000, '[\"flex_index\"]', {metrics}, {error},
                         '{event}');",
                    processed = if status == "queued" {
                        "NULL"
                    } else {
                        "'2024-07-02T10:06:00.000000Z'"
                    },
                )
            };
            tx.execute_batch(&format!(
                "INSERT INTO users (user_id, username, username_key, password_hash, role, created_at)
                 VALUES ('{ada}', 'Ada', 'ada', 'hash-a', 'patient', '2024-07-01T00:00:00.000000Z');
                 {}{}{}
                 INSERT INTO changes (user_id, game_id, event_id, reconciliation_event_id, status,
                                      processed_at, metrics, error)
                 VALUES ('{ada}', '{done}', '0190c6a4-0000-7000-8000-000000000004',
                         '0190c6a4-0000-7000-8000-000000000009', 'processed',
                         '2024-07-02T10:06:00.000000Z',
                         '{{\"duration_s\":30.0,\"score\":12.5}}', NULL);
                 INSERT INTO outbox (event_id, game_id, user_id, trace_id, created_at)
                 VALUES ('0190c6a4-0000-7000-8000-000000000008', '{queued}', '{ada}', 'trace',
                         '2024-07-02T10:05:00.000000Z');",
                game(done, "processed", "0190c6a4-0000-7000-8000-000000000004",
                     "'{\"duration_s\":30.0,\"score\":12.5}'", "NULL"),
                game(failed, "failed", "0190c6a4-0000-7000-8000-000000000006",
                     "NULL", "'bad glove'"),
                game(queued, "queued", "0190c6a4-0000-7000-8000-000000000008", "NULL", "NULL"),
            ))
            .unwrap();
            tx.commit().unwrap();
        }

        let store = SqliteStore::open(&path).unwrap();
        let (ada, done, failed, queued) = (
            Uuid::parse_str(ada).unwrap(),
            Uuid::parse_str(done).unwrap(),
            Uuid::parse_str(failed).unwrap(),
            Uuid::parse_str(queued).unwrap(),
        );
        let version = |g: Option<m2m_domain::Game>| g.unwrap().algorithm_version;
        assert_eq!(version(store.game(ada, done).await.unwrap()), Some(1));
        assert_eq!(version(store.game(ada, failed).await.unwrap()), Some(1));
        assert_eq!(version(store.game(ada, queued).await.unwrap()), None);
        let processed = store.processed_games(ada).await.unwrap();
        assert_eq!(processed.len(), 1);
        assert_eq!(processed[0].algorithm_version, 1);
        let feed = store.changes_since(ada, None, 10).await.unwrap();
        assert_eq!(feed.len(), 1);
        assert_eq!(
            (feed[0].algorithm_version, feed[0].kind, feed[0].status),
            (1, ChangeType::GameProcessed, GameStatus::Processed)
        );
        let now = parse_time("2024-07-03T00:00:00.000000Z").unwrap();
        let claimed = store
            .advance_outbox(&[], now, std::time::Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].event.reprocess, None);
        let below_2 = ReprocessSelection {
            below: 2,
            users: Vec::new(),
        };
        assert_eq!(store.count_to_reprocess(&below_2).await.unwrap(), 2);
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
