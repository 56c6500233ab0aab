//! The SQLite implementation of [`Store`](crate::Store): one file, shareable
//! by several processes on one machine.
//!
//! # Layout
//! - this module: the store, its connections and their settings;
//! - [`schema`]: the migrations that make the schema below;
//! - [`rows`]: reading rows field by field (the fallbacks);
//! - [`error`]: rusqlite errors as [`StoreError`]s;
//! - [`accounts`], [`games`], [`outbox`], [`feed`], [`care`]: one trait of
//!   the crate each (`Accounts`, `Games`, `Outbox`, `ChangeFeed`, `Care`);
//! - [`group`]: the group commit of uploads, completions and publisher
//!   steps;
//! - [`export`]: `Export`, every user's games for `m2m export`;
//! - [`recent`]: the samples of games just uploaded, handed to the
//!   processor of the same process (`m2m serve`) without a read.
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
//!   Uploads, completions and the publisher's steps share theirs (next
//!   section).
//!
//! # Settings that trade speed (measured)
//! Measured by `cargo bench -p m2m-store --no-default-features --bench
//! submit` (128 standard 16-channel games, ~49 MB of columns, into a fresh
//! store; criterion medians; the shared 2-core AMD EPYC VM, load average
//! 4–7 from other builds, so indicative: the same variant moved by up to
//! 2× between the two runs). "4 clients" uploads one game after the other
//! from each of 4 callers, "at once" from 128 callers. Run A had 4 KiB
//! pages as its base, run B 16 KiB; each setting is compared with the base
//! of its run. Full table: docs/performance.md, "Group commit and SQLite
//! settings".
//! - Group commit ([`BatchLimits`] 64 uploads / 16 MiB): against one upload
//!   per transaction, A 4 clients 507 → 425 ms, at once 729 → 481 ms; B 164
//!   → 138 ms and 456 → 269 ms. Kept.
//! - `page_size=16384` (SQLite's default is 4096): A 425 → 320 ms and 481 →
//!   284 ms, B 225 → 138 ms and 464 → 269 ms. A blob of ~24 KB (one column)
//!   takes 2 overflow pages instead of 6, and the WAL holds fewer frame
//!   headers and b-tree pages. Kept. It applies to files this version
//!   creates; an existing file keeps its page size (changing it needs a
//!   `VACUUM` outside WAL mode, which this store does not do). 65536 was not
//!   better overall (A 318 / 249 ms against 320 / 284 for 16 KiB, B 296 /
//!   308 ms against 138 / 269) and would write a whole 64 KiB page into the
//!   WAL for each row a completion, an outbox step or a login touches.
//! - `wal_autocheckpoint=1000` pages (SQLite's default; 16 MB of WAL with
//!   16 KiB pages): 250 pages (4 MB) was slower (B 344 / 308 ms); 4000 pages
//!   (64 MB) was mixed (B 222 / 217 ms) and makes a larger WAL file and
//!   checkpoint pause. Kept at the default.
//! - `temp_store=MEMORY` (SQLite's default keeps temporary data in files):
//!   each upload's savepoint journal spilled into a temporary file of its
//!   own (about one file created, written and deleted per upload, counted
//!   with `strace -f -e trace=openat` over 300 uploads of `m2m serve`: 318
//!   `/var/tmp/etilqs_*` files). In memory, none is made. The bench could
//!   not tell the two apart (4 clients 498 ms against 527 ms, at once 459
//!   against 450, one run on 2026-11-29, product first); kept because it
//!   takes two system calls and a file per upload out of the writer's path
//!   and puts nothing durable at risk.
//! - Not changed, for no consistent gain: a statement cache of 64 (rusqlite
//!   keeps 16; A 492 / 495 ms, B 258 / 224 ms), `mmap_size` 256 MiB (A 468 /
//!   423, B 268 / 240 ms), `cache_size` 16 MiB (SQLite's is 2 MB; A 508 /
//!   366, B 308 / 208 ms).
//!
//! # Group commit
//! With `synchronous=FULL` every commit waits for an fsync of the WAL. The
//! writes that come in numbers are those of every game: its upload
//! (`submit_game`), the publisher's step that claims its event
//! (`advance_outbox`) and its completion (`complete_game`). So those that
//! arrive together are committed together ([`group`]); with one fsync per
//! write, the completions alone capped `m2m serve` at about one game per
//! fsync (docs/performance.md, "Group commit and SQLite settings"):
//!
//! 1. An upload's caller encodes the columns on the blocking pool, outside
//!    any lock (the costly part), into an `EncodedGame` that keeps no `f64`
//!    samples. A completion or a publisher step brings its write as it is.
//! 2. The caller pushes its write onto the store's queue with a oneshot
//!    channel for its answer. If no drainer is running, it starts one on
//!    the blocking pool; then it awaits its answer without holding a
//!    thread.
//! 3. The drainer (at most one per store; it ends when the queue is empty)
//!    takes whatever is queued, oldest first, up to [`BatchLimits`] (64
//!    writes, 16 MiB of columns, at least one), with no wait for more: a
//!    lone write commits at once, and the writes that arrive during a
//!    commit form the next batch.
//! 4. It locks the write connection, opens one `BEGIN IMMEDIATE`
//!    transaction and runs each write in its own `SAVEPOINT`: an upload
//!    whose key was used before gets `Replayed` or `KeyReused` (the uploads
//!    earlier in the same batch count, as if they had committed one by one),
//!    and one that fails (an id that exists) is rolled back to its savepoint
//!    and gets its own error, the others going on (so does a completion
//!    that finds no game, say). Then one `COMMIT`.
//! 5. Only after the commit returns does it answer every caller of the
//!    batch. If the transaction itself fails (begin, a savepoint, the
//!    commit), nothing of the batch was written and every caller gets the
//!    error.
//!
//! Durability is that of one upload per transaction: an answer is sent
//! only after `COMMIT` returned, and with `synchronous=FULL` that is after
//! the WAL, with the batch's commit frame, is fsync'd. A crash or power cut
//! before then loses the batch whole (SQLite's recovery ignores WAL frames
//! after the last commit frame), and none of its callers got an answer, so
//! each phone retries and its idempotency key makes the retry safe (a
//! completion's delivery was not acked, so it comes again). A crash
//! after it keeps the batch whole. A batch never commits half: a game, its
//! columns, its outbox entry and its key still commit together.
//!
//! A publisher step that claims events sees the uploads before it in its
//! batch; its answer, like theirs, comes only after the commit, so no event
//! is published for an upload that a failed commit lost.
//!
//! The other writes (accounts, logins, invites and links, the startup
//! republish) are rare and stay one transaction each through
//! `Inner::write`, on the same connection. They
//! and the drainer take the connection's mutex in turn: the drainer holds
//! it for one batch and gives it back with a fair unlock (parking_lot's
//! `unlock_fair`), which hands it straight to a waiting write, so a stream
//! of uploads cannot starve a login; and a write never
//! waits for the queue, so the two cannot deadlock. No lock is held across
//! an `.await`. Another process writing the same file is serialised by
//! SQLite's lock as before (`busy_timeout`).
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
//! | `games` | `game_id` PK, `user_id`, `status`, `game`, `score`, `started_at`, `submitted_at`, `processed_at`, `device` JSON, `sample_rate_hz`, `samples`, `channels` JSON array of names, `metrics` JSON, `error`, `event_id` UNIQUE, `algorithm_version` (of the newest result; NULL while queued) | `user_id` is not a foreign key: a store without foreign keys (MongoDB) could not promise it either; indexed by (`user_id`, `game_id`) for listings and by (`user_id`, `started_at`) for `activity` and `last_started_at` |
//! | `game_columns` | (`game_id` → games, `name`) PK, `data` BLOB | [`m2m_domain::encode_column`]: lossless, ~1.4 bytes a sample for glove values (at most 8) |
//! | `outbox` | `event_id` PK, `game_id` → games, `user_id`, `trace_id`, `created_at`, `lease_until` NULL, `published_at` NULL, `algorithm_version` NULL | `created_at` = the game's `submitted_at`; a reprocessing event has `algorithm_version` (the version it asks for) and `created_at` = when it was asked for |
//! | `idempotency` | (`user_id`, `key`) PK, `request_hash` BLOB, `status`, `body` BLOB, `created_at` | kept 24 h, then swept (`purge_idempotency_keys`) |
//! | `changes` | `seq` INTEGER PK AUTOINCREMENT, `user_id`, `game_id` → games, `event_id` UNIQUE, `reconciliation_event_id`, `status`, `processed_at`, `metrics` JSON, `error`, `algorithm_version` (default 1), `reprocessed` 0/1 | the change feed, and every result of a game (its history, one per version: indexed by (`game_id`, `algorithm_version`)); a cursor is `seq` as 16 lower-case hex digits |
//! | `invites` | `code` PK, `therapist_id`, `created_at`, `expires_at`, `used_by` NULL, `used_at` NULL | a therapist's invite codes; open = unused and unexpired, counted through a partial index by (`therapist_id`, `expires_at`) of the unused; kept after use or expiry (a used code tells a repeat from another patient) |
//! | `links` | (`therapist_id`, `patient_id`) PK, `linked_at` | one link per pair; indexed by `patient_id` too; deleted when the patient removes it. Like `games.user_id`, the ids are not foreign keys |
//!
//! `delete_account` deletes an account's rows from every table above in
//! one `BEGIN IMMEDIATE` transaction (`accounts::ERASE_ACCOUNT`), children
//! before their parents.

mod accounts;
mod care;
mod error;
mod export;
mod feed;
mod games;
mod group;
mod outbox;
mod recent;
mod rows;
mod schema;

use crate::{Health, Result, StoreError};
use async_trait::async_trait;
use error::db;
use group::WriteQueue;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use schema::migrate;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use group::BatchLimits;

/// lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Idle reader connections kept for reuse; more are opened when needed and
/// closed when they come back to a full pool.
const MAX_IDLE_READERS: usize = 8;

/// The settings of a SQLite store that trade speed against memory, file
/// size and latency. [`Default`] is what the product uses, each value
/// measured (module doc, "Settings"); the fields exist so that a benchmark
/// can compare them in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteSettings {
    /// How large one group commit may grow.
    pub batch: BatchLimits,
    /// `PRAGMA page_size` of a file this store creates (bytes).
    pub page_size: u32,
    /// `PRAGMA wal_autocheckpoint` (pages): the WAL size past which a
    /// commit copies it back into the database file.
    pub wal_autocheckpoint: u32,
    /// Prepared statements each connection keeps.
    pub statement_cache: usize,
    /// `PRAGMA mmap_size` (bytes) of each connection; 0: no memory map.
    pub mmap_size: u64,
    /// `PRAGMA cache_size` of each connection, in KiB.
    pub cache_kib: i64,
    /// `PRAGMA temp_store=MEMORY`: the journal of a savepoint (each write
    /// of a group commit has one) stays in memory instead of spilling,
    /// past 64 KiB, into a temporary file that is created, written and
    /// deleted for each upload. It only serves to roll back a savepoint,
    /// never to recover from a crash (the WAL does that), so nothing
    /// durable depends on it.
    pub temp_in_memory: bool,
    /// How many just-uploaded games keep their parsed samples in memory
    /// for the processor of the same process, which then does not read
    /// them back (`recent.rs`); 0, the default, keeps none. `m2m serve`
    /// keeps 32, the in-process bus's capacity: at most ~20 MB of
    /// standard games.
    pub recent_samples: usize,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        SqliteSettings {
            batch: BatchLimits {
                writes: 64,
                bytes: 16 << 20,
            },
            page_size: 16384,
            wal_autocheckpoint: 1000,
            statement_cache: 16,
            mmap_size: 0,
            cache_kib: 2000,
            temp_in_memory: true,
            recent_samples: 0,
        }
    }
}

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
    settings: SqliteSettings,
    /// The one connection that writes. SQLite lets one writer at a time
    /// through anyway, so more writer connections would only queue inside
    /// SQLite instead of here. A blocking mutex (not tokio's) is right: it
    /// is only ever locked on the blocking pool, never across an `.await`,
    /// so waiting for it blocks a blocking-pool thread, never the async
    /// runtime. parking_lot's, for its fair unlock: the upload writer hands
    /// the connection straight to a waiting write after each batch (see
    /// "Group commit" above). It does not poison: a panic inside a write
    /// unwinds through its `Transaction`, which rolls back, so the
    /// connection stays usable.
    writer: parking_lot::Mutex<Connection>,
    /// The writes waiting for the next group commit.
    writes: WriteQueue,
    /// Idle read connections, taken and given back around each read (WAL
    /// readers run in parallel with each other and with the writer). Same
    /// reasoning for the std `Mutex`, which is held only to push or pop.
    readers: Mutex<Vec<Connection>>,
    /// Samples of games just uploaded, for the processor of this process.
    recent: recent::RecentSamples,
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
        SqliteStore::open_with(path, SqliteSettings::default())
    }

    /// [`open`](SqliteStore::open) with other settings than the defaults:
    /// for benchmarks that compare them.
    pub fn open_with(path: &Path, settings: SqliteSettings) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::unavailable(format!("cannot create {}", dir.display()), e)
            })?;
        }
        let mut writer = open_connection(path, &settings)?;
        // Before WAL mode (which writes the header): a file made now gets
        // this page size; an existing file keeps its own.
        writer
            .pragma_update(None, "page_size", settings.page_size)
            .map_err(db)?;
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
        writer
            .pragma_update(None, "wal_autocheckpoint", settings.wal_autocheckpoint)
            .map_err(db)?;
        migrate(&mut writer)?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                settings,
                writer: parking_lot::Mutex::new(writer),
                writes: WriteQueue::default(),
                readers: Mutex::new(Vec::new()),
                recent: recent::RecentSamples::new(settings.recent_samples),
            }),
        })
    }

    /// Opens the database a `--database-url` names: `sqlite:///abs/path.db`
    /// (an absolute path after `sqlite://`). Query strings and
    /// percent-encoding are not supported, so a URL that has them is refused
    /// rather than misread.
    pub fn open_url(url: &str) -> Result<SqliteStore> {
        SqliteStore::open_url_with(url, SqliteSettings::default())
    }

    /// [`open_url`](Self::open_url) with settings other than the defaults.
    pub fn open_url_with(url: &str, settings: SqliteSettings) -> Result<SqliteStore> {
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
        SqliteStore::open_with(Path::new(path), settings)
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
        let mut conn = self.writer.lock();
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
            None => open_reader(&self.path, &self.settings)?,
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
fn open_connection(path: &Path, settings: &SqliteSettings) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    conn.pragma_update(None, "mmap_size", settings.mmap_size)
        .map_err(db)?;
    conn.pragma_update(None, "cache_size", -settings.cache_kib)
        .map_err(db)?;
    if settings.temp_in_memory {
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(db)?;
    }
    conn.set_prepared_statement_cache_capacity(settings.statement_cache);
    Ok(conn)
}

/// A connection that refuses to write, so a read path can never take the
/// write lock by mistake.
fn open_reader(path: &Path, settings: &SqliteSettings) -> Result<Connection> {
    let conn = open_connection(path, settings)?;
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
        let writer = store.inner.writer.lock();
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
        assert_eq!(get("page_size"), "16384");
        assert_eq!(get("wal_autocheckpoint"), "1000");
        assert_eq!(get("temp_store"), "2", "MEMORY");
        assert_eq!(get("user_version"), MIGRATIONS.len().to_string());
        drop(writer);
        // Opening again (a restart, or a second process) migrates nothing.
        let again = SqliteStore::open(&path).unwrap();
        let v: i64 = again
            .inner
            .writer
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        // Readers refuse to write.
        let reader = open_reader(&path, &SqliteSettings::default()).unwrap();
        assert!(reader.execute("DELETE FROM users", []).is_err());
        let temp: i64 = reader
            .pragma_query_value(None, "temp_store", |r| r.get(0))
            .unwrap();
        assert_eq!(temp, 2, "MEMORY");
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
