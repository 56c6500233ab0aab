//! The SQLite implementation of [`Store`](crate::Store): one file, shareable
//! by several processes on one machine.
//!
//! # Layout
//! - this module: the store, its connections and their settings;
//! - [`schema`]: the migrations that make the schema below;
//! - [`rows`]: reading rows field by field (the fallbacks);
//! - [`error`]: rusqlite errors as [`StoreError`]s;
//! - [`accounts`], [`games`], [`outbox`], [`feed`], [`care`]: one trait of
//!   the crate each (`Accounts`, `Games`, `Outbox`, `ChangeFeed`, `Care`).
//!
//! # Connection settings
//! - `journal_mode=WAL`: readers never block the writer and the file can be
//!   shared by several processes (a gateway and a processor, say).
//! - `synchronous=FULL`: a commit is on disk before it returns, so a 202
//!   means the game and its event survive a power cut (`NORMAL` in WAL mode
//!   may lose the last commits).
//! - `foreign_keys=ON`, `busy_timeout=5000` ms: another process holding the
//!   write lock makes us wait, not fail.
//! - Every write is one `BEGIN IMMEDIATE` transaction: the write lock is
//!   taken up front, so two processes never deadlock upgrading a read lock.
//!
//! # Schema (version 3; see [`schema::MIGRATIONS`])
//! Times are UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional
//! digits), so text order is time order and every time is kept to the
//! microsecond: what is stored is truncated to the microsecond, and that is
//! what reads (and [`Completed`]) return. Ids are UUIDs as lower-case
//! hyphenated text, so UUIDv7 ids sort by time.
//!
//! Ranges of times are compared as text in SQL only where the text is a
//! time as this store writes it ([`rows::well_formed_time`]); a row whose
//! time is anything else (an older version's signed year, a hand edit) is
//! taken whatever it holds and placed where it reads, with its fallback:
//! `activity` and `last_started_at` do so for `started_at`, and an invite
//! whose `expires_at` is not well-formed counts as expired.
//!
//! Reads decode each column on its own and show a value that cannot be
//! decoded (a time with a five-digit or signed year, as an older version
//! wrote one; JSON that does not parse; text that is not UTF-8) as its
//! fallback, by the rule of the crate documentation ("Stored data that
//! cannot be read"): one row never fails a listing, a game, progress, the
//! feed or the publisher.
//!
//! | table | columns | notes |
//! |---|---|---|
//! | `users` | `user_id` PK, `username`, `username_key` UNIQUE, `password_hash`, `role` (default `patient`), `created_at`, `tz` NULL | `username_key` is the lower-cased username; `role` is `patient` or `therapist`; `tz` is the IANA time zone the user set (NULL: UTC) |
//! | `logins` | `login_id` PK, `user_id` → users, `created_at`, `revoked_at` NULL | one chain of refresh tokens |
//! | `refresh_tokens` | `token_hash` BLOB PK, `login_id` → logins, `created_at`, `expires_at`, `spent_at` NULL | SHA-256 only, never the token |
//! | `games` | `game_id` PK, `user_id`, `status`, `game`, `score`, `started_at`, `submitted_at`, `processed_at`, `device` JSON, `sample_rate_hz`, `samples`, `channels` JSON array of names, `metrics` JSON, `error`, `event_id` UNIQUE | `user_id` is not a foreign key: a store without foreign keys (MongoDB) could not promise it either; indexed by (`user_id`, `game_id`) for listings and by (`user_id`, `started_at`) for `activity` and `last_started_at` |
//! | `game_columns` | (`game_id` → games, `name`) PK, `data` BLOB | [`m2m_domain::encode_column`]: lossless, ~1.4 bytes a sample for glove values (at most 8) |
//! | `outbox` | `event_id` PK, `game_id` → games, `user_id`, `trace_id`, `created_at`, `lease_until` NULL, `published_at` NULL | `created_at` = the game's `submitted_at` |
//! | `idempotency` | (`user_id`, `key`) PK, `request_hash` BLOB, `status`, `body` BLOB, `created_at` | kept 24 h, then swept (`purge_idempotency_keys`) |
//! | `changes` | `seq` INTEGER PK AUTOINCREMENT, `user_id`, `game_id` → games, `event_id` UNIQUE, `reconciliation_event_id`, `status`, `processed_at`, `metrics` JSON, `error` | the change feed; a cursor is `seq` as 16 lower-case hex digits |
//! | `invites` | `code` PK, `therapist_id`, `created_at`, `expires_at`, `used_by` NULL, `used_at` NULL | a therapist's invite codes; open = unused and unexpired, counted through a partial index by (`therapist_id`, `expires_at`) of the unused; kept after use or expiry (a used code tells a repeat from another patient) |
//! | `links` | (`therapist_id`, `patient_id`) PK, `linked_at` | one link per pair; indexed by `patient_id` too; deleted when the patient removes it. Like `games.user_id`, the ids are not foreign keys |

mod accounts;
mod care;
mod error;
mod feed;
mod games;
mod outbox;
mod rows;
mod schema;

use crate::{Health, Result, StoreError};
use async_trait::async_trait;
use error::db;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use schema::migrate;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Idle reader connections kept for reuse; more are opened when needed and
/// closed when they come back to a full pool.
const MAX_IDLE_READERS: usize = 8;

///
/// Cloning is cheap and shares the connections. Several `SqliteStore`s (in
/// one process or in several) may open the same file: SQLite serialises
/// their writes and every write transaction takes the lock up front.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The one connection that writes. SQLite lets one writer at a time
    /// through anyway, so more writer connections would only queue inside
    /// SQLite instead of here. A `std::sync::Mutex` (not tokio's) is right:
    /// it is only ever locked inside `spawn_blocking`, never across an
    /// `.await`, so waiting for it blocks a blocking-pool thread, never the
    /// async runtime.
    writer: Mutex<Connection>,
    /// Idle read connections, taken and given back around each read (WAL
    /// readers run in parallel with each other and with the writer). Same
    /// reasoning for the std `Mutex`, which is held only to push or pop.
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database file
    /// at `path`, sets it up for durable shared use and brings its schema
    /// up to date.
    ///
    /// This blocks for as long as that takes (normally milliseconds; up to
    /// the busy timeout if another process is migrating the same file): call
    /// it at startup, or inside `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::unavailable(format!("cannot create {}", dir.display()), e)
            })?;
        }
        let mut writer = open_connection(path)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::unavailable_because(format!(
                "{} cannot use WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        migrate(&mut writer)?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Opens the database a `--database-url` names: `sqlite:///abs/path.db`
    /// (an absolute path after `sqlite://`). Query strings and
    /// percent-encoding are not supported, so a URL that has them is refused
    /// rather than misread.
    pub fn open_url(url: &str) -> Result<SqliteStore> {
        let refuse = |why: &str| {
            StoreError::unavailable_because(format!("invalid SQLite URL {url:?}: {why}"))
        };
        let path = url
            .strip_prefix("sqlite://")
            .ok_or_else(|| refuse("expected sqlite:///absolute/path.db"))?;
        if !path.starts_with('/') {
            return Err(refuse(
                "the path must be absolute (sqlite:///absolute/path.db)",
            ));
        }
        if path.contains(['?', '#', '%']) {
            return Err(refuse(
                "query strings and percent-encoding are not supported",
            ));
        }
        SqliteStore::open(Path::new(path))
    }

    /// Runs `f` on the blocking pool (rusqlite calls block), carrying the
    /// caller's tracing span.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(&inner))).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::unavailable("store task cancelled", e)),
        }
    }
}

impl Inner {
    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer: committed
    /// when `f` succeeds, rolled back when it fails.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        // A panic while the lock was held unwound through the Transaction,
        // which rolled back: the connection is usable, so poisoning is moot.
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a pooled
    /// reader connection.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = conn.transaction().map_err(db).and_then(|tx| f(&tx));
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }
}

/// A connection with the settings every connection needs.
fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    Ok(conn)
}

/// A connection that refuses to write, so a read path can never take the
/// write lock by mistake.
fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open_connection(path)?;
    conn.pragma_update(None, "query_only", "ON").map_err(db)?;
    Ok(conn)
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.blocking(|inner| inner.read(|tx| tx.query_row("SELECT 1", [], |_| Ok(())).map_err(db)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{latest_time, parse_time, plus, ts};
    use chrono::{DateTime, SubsecRound, Utc};
    use schema::MIGRATIONS;

    #[test]
    fn times_keep_text_order_and_microseconds() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T10:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ts(t), "2026-11-27T10:00:00.123456Z");
        assert_eq!(parse_time(&ts(t)).unwrap(), t.trunc_subsecs(6));
        let whole = DateTime::parse_from_rfc3339("2026-11-27T10:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ts(whole), "2026-11-27T10:00:01.000000Z");
        assert!(ts(t) < ts(whole));
        assert_eq!(plus(t, Duration::MAX), latest_time());
        assert_eq!(ts(latest_time()), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn connections_are_durable_and_shareable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/m2m.db");
        let store = SqliteStore::open(&path).unwrap();
        let writer = store.inner.writer.lock().unwrap();
        let get = |name: &str| -> String {
            writer
                .query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(get("journal_mode"), "wal");
        assert_eq!(get("synchronous"), "2", "FULL");
        assert_eq!(get("foreign_keys"), "1");
        assert_eq!(get("busy_timeout"), "5000");
        assert_eq!(get("user_version"), MIGRATIONS.len().to_string());
        drop(writer);
        // Opening again (a restart, or a second process) migrates nothing.
        let again = SqliteStore::open(&path).unwrap();
        let v: i64 = again
            .inner
            .writer
            .lock()
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        // Readers refuse to write.
        let reader = open_reader(&path).unwrap();
        assert!(reader.execute("DELETE FROM users", []).is_err());
    }

    #[test]
    fn a_failure_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = SqliteStore::open(&file.join("m2m.db")).unwrap_err();
        let cause = std::error::Error::source(&err).expect("the I/O error");
        assert!(cause.is::<std::io::Error>(), "{cause:?}");
        let text = err.to_string();
        let expected = format!("database unavailable: cannot create {}: ", file.display());
        assert!(text.starts_with(&expected), "{text}");
        assert!(text.ends_with(&cause.to_string()), "{text}");
    }
}
