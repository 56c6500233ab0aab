//! The SQLite implementation of [`Store`]: one file, shareable by several
//! processes on one machine.
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
//! # Schema (version 1; see [`MIGRATIONS`])
//! Times are UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional
//! digits), so text order is time order and every time is kept to the
//! microsecond: what is stored is truncated to the microsecond, and that is
//! what reads (and [`Completed`]) return. Ids are UUIDs as lower-case
//! hyphenated text, so UUIDv7 ids sort by time.
//!
//! Reads decode each column on its own and show a value that cannot be
//! decoded (a time with a five-digit or signed year, as an older version
//! wrote one; JSON that does not parse; text that is not UTF-8) as its
//! fallback, by the rule of the crate documentation ("Stored data that
//! cannot be read"): one row never fails a listing, a game, progress, the
//! feed or the relay.
//!
//! | table | columns | notes |
//! |---|---|---|
//! | `users` | `user_id` PK, `username`, `username_key` UNIQUE, `password_hash`, `created_at` | `username_key` is the lower-cased username |
//! | `logins` | `login_id` PK, `user_id` → users, `created_at`, `revoked_at` NULL | one chain of refresh tokens |
//! | `refresh_tokens` | `token_hash` BLOB PK, `login_id` → logins, `created_at`, `expires_at`, `spent_at` NULL | SHA-256 only, never the token |
//! | `games` | `game_id` PK, `user_id`, `status`, `game`, `score`, `started_at`, `submitted_at`, `processed_at`, `device` JSON, `sample_rate_hz`, `samples`, `channels` JSON array of names, `metrics` JSON, `error`, `event_id` UNIQUE | `user_id` is not a foreign key: a store without foreign keys (MongoDB) could not promise it either |
//! | `game_columns` | (`game_id` → games, `name`) PK, `data` BLOB | [`m2m_domain::encode_column`]: ~4 bytes a sample |
//! | `outbox` | `event_id` PK, `game_id` → games, `user_id`, `trace_id`, `created_at`, `lease_until` NULL, `published_at` NULL | `created_at` = the game's `submitted_at` |
//! | `idempotency` | (`user_id`, `key`) PK, `request_hash` BLOB, `status`, `body` BLOB, `created_at` | kept 24 h, then swept (`purge_idempotency_keys`) |
//! | `changes` | `seq` INTEGER PK AUTOINCREMENT, `user_id`, `game_id` → games, `event_id` UNIQUE, `reconciliation_event_id`, `status`, `processed_at`, `metrics` JSON, `error` | the change feed; a cursor is `seq` as 16 lower-case hex digits |

use crate::format::{
    corrupt, id, parse_time, plus, required, started_at, submitted_at, ts, unreadable, Field,
    StoredChange, StoredGame,
};
use crate::{
    Completed, Completion, Digest, IdempotencyRecord, NewGame, NewLogin, NewUser, OutboxEntry,
    ProcessedGame, RefreshOutcome, Result, Store, StoreError, SubmitOutcome, UserRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use m2m_analysis::Metrics;
use m2m_domain::{
    decode_column, encode_column, Change, Channels, Device, EventGame, Game, GameSamples,
    ProcessingEvent, Username, PROCESSING_EVENT_VERSION,
};
use rusqlite::types::ValueRef;
use rusqlite::{
    ffi, params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use uuid::Uuid;

/// The schema, one script per version, applied in order. The database's
/// `PRAGMA user_version` is the number of scripts applied; each script runs
/// in its own `BEGIN IMMEDIATE` transaction together with the version bump,
/// so a crash or a second process opening the file at the same time never
/// leaves a half-applied version. Append new versions; never edit old ones.
const MIGRATIONS: &[&str] = &[
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
];

/// How long a statement waits for another connection's (or process's)
/// lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Idle reader connections kept for reuse; more are opened when needed and
/// closed when they come back to a full pool.
const MAX_IDLE_READERS: usize = 8;

/// The columns of `games` that make a [`Game`], in [`game_from_row`]'s order.
const GAME_FIELDS: &str = "game_id, status, game, score, started_at, submitted_at, processed_at, \
     device, sample_rate_hz, samples, channels, metrics, error";

/// The embedded store: a SQLite file in WAL mode.
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
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = open_connection(path)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
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
        let refuse =
            |why: &str| StoreError::Unavailable(format!("invalid SQLite URL {url:?}: {why}"));
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
            Err(e) => Err(StoreError::Unavailable(format!(
                "store task cancelled: {e}"
            ))),
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

/// Applies the [`MIGRATIONS`] the database has not seen yet.
fn migrate(conn: &mut Connection) -> Result<()> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db)?;
        let applied = usize::try_from(version).unwrap_or(usize::MAX);
        if applied > MIGRATIONS.len() {
            return Err(StoreError::Unavailable(format!(
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

// ---------------------------------------------------------------------------
// Errors and conversions

/// Maps a rusqlite error: constraint → Conflict, unreadable values or a
/// damaged file → Corrupt, everything else (busy, I/O, full disk…) →
/// Unavailable.
fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict("constraint violated"),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Unavailable(e.to_string()),
        },
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Like [`db`], naming the uniqueness rule an insert broke and turning a
/// missing parent row (foreign key) into NotFound.
fn db_insert(e: rusqlite::Error, what: &'static str) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return StoreError::Conflict(what)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::NotFound,
            _ => {}
        }
    }
    db(e)
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize) -> Result<T> {
    row.get(i).map_err(db)
}

fn get_uuid(row: &Row<'_>, i: usize) -> Result<Uuid> {
    let s: String = get(row, i)?;
    Uuid::parse_str(&s).map_err(|e| corrupt("stored id", e))
}

/// A column as text, however it is stored: `Ok(None)` for NULL; bytes that
/// are not UTF-8 read with U+FFFD in their place.
fn text(row: &Row<'_>, i: usize) -> Result<Field<String>> {
    Ok(Ok(match row.get_ref(i).map_err(db)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
    }))
}

/// A JSON column, decoded.
fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, i: usize) -> Result<Field<T>> {
    Ok(text(row, i)?.and_then(|s| {
        s.map(|s| serde_json::from_str(&s).map_err(|e| format!("stored JSON: {e}")))
            .transpose()
    }))
}

/// A number column.
fn real(row: &Row<'_>, i: usize) -> Result<Field<f64>> {
    Ok(match row.get_ref(i).map_err(db)? {
        ValueRef::Null => Ok(None),
        ValueRef::Real(x) => Ok(Some(x)),
        ValueRef::Integer(n) => Ok(Some(n as f64)),
        other => Err(format!("not a number: {:?}", other.data_type())),
    })
}

/// An integer column.
fn integer(row: &Row<'_>, i: usize) -> Result<Field<i64>> {
    Ok(match row.get_ref(i).map_err(db)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        other => Err(format!("not an integer: {:?}", other.data_type())),
    })
}

/// The id in a column, or `None` (logged) when it cannot be read: a row
/// without a readable id cannot be shown or addressed, so it is skipped.
fn row_id(row: &Row<'_>, i: usize, what: &str) -> Result<Option<Uuid>> {
    let raw = text(row, i)?;
    match raw
        .as_ref()
        .ok()
        .and_then(Option::as_deref)
        .map(Uuid::parse_str)
    {
        Some(Ok(u)) => Ok(Some(u)),
        _ => {
            unreadable(&format!("{what} {raw:?}"), "id", "not a UUID", "skipped");
            Ok(None)
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| corrupt("unserialisable value", e))
}

fn to_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The opaque cursor of a change: its `seq` as 16 lower-case hex digits, so
/// cursors also sort as text.
fn encode_cursor(seq: i64) -> String {
    format!("{seq:016x}")
}

/// The `seq` of a cursor, if it is one this store could have made.
fn decode_cursor(cursor: &str) -> Option<i64> {
    let well_formed = cursor.len() == 16
        && cursor
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return None;
    }
    let seq = u64::from_str_radix(cursor, 16).ok()?;
    i64::try_from(seq).ok().filter(|&s| s > 0)
}

/// A [`Game`] from a row selected with [`GAME_FIELDS`], rendered by the
/// rule of [`StoredGame`]; `None` (logged) if its id cannot be read.
fn game_from_row(row: &Row<'_>, with_metrics: bool) -> Result<Option<Game>> {
    let Some(game_id) = row_id(row, 0, "game")? else {
        return Ok(None);
    };
    Ok(Some(
        StoredGame {
            game_id,
            status: text(row, 1)?,
            game: text(row, 2)?,
            score: real(row, 3)?,
            started_at: text(row, 4)?,
            submitted_at: text(row, 5)?,
            processed_at: text(row, 6)?,
            device: json::<Device>(row, 7)?,
            sample_rate_hz: real(row, 8)?,
            samples: integer(row, 9)?,
            channels: json(row, 10)?,
            metrics: if with_metrics {
                json::<Metrics>(row, 11)?
            } else {
                Ok(None)
            },
            error: text(row, 12)?,
        }
        .render(with_metrics),
    ))
}

/// A [`Change`] from a row `seq, game_id, status, processed_at, metrics`,
/// rendered by the rule of [`StoredChange`]; `None` (logged) if its game id
/// cannot be read.
fn change_from_row(row: &Row<'_>) -> Result<Option<Change>> {
    let cursor = encode_cursor(get(row, 0)?);
    let Some(game_id) = row_id(row, 1, &format!("change {cursor} of game"))? else {
        return Ok(None);
    };
    Ok(Some(
        StoredChange {
            cursor,
            game_id,
            status: text(row, 2)?,
            processed_at: text(row, 3)?,
            metrics: json(row, 4)?,
        }
        .render(),
    ))
}

/// An outbox entry as read inside the claiming transaction; its columns
/// are decoded after the write lock is released.
struct ClaimedRow {
    event_id: Uuid,
    game_id: Uuid,
    user_id: Uuid,
    trace_id: String,
    created_at: DateTime<Utc>,
    game: EventGame,
    sample_rate_hz: f64,
}

impl ClaimedRow {
    fn into_entry(self) -> OutboxEntry {
        OutboxEntry {
            event: ProcessingEvent {
                version: PROCESSING_EVENT_VERSION,
                event_id: self.event_id,
                game_id: self.game_id,
                user_id: self.user_id,
                created_at: self.created_at,
                game: self.game,
                sample_rate_hz: self.sample_rate_hz,
            },
            trace_id: self.trace_id,
        }
    }
}

/// The outbox row `event_id, game_id, user_id, trace_id, created_at, game,
/// score, started_at, device, sample_rate_hz` read for its event, with
/// fallbacks for what the event can do without; `Err` if it cannot be
/// made into an event at all.
fn claimed_row(row: &Row<'_>) -> std::result::Result<ClaimedRow, String> {
    let uuid = |i: usize| -> std::result::Result<Uuid, String> {
        let s: String = get(row, i).map_err(|e| e.to_string())?;
        Uuid::parse_str(&s).map_err(|e| format!("stored id {s:?}: {e}"))
    };
    let game_id = uuid(1)?;
    let must = |r: Result<Field<String>>| r.map_err(|e| e.to_string());
    let created_at = must(text(row, 4))?;
    let required = |what: &str, v: Field<String>| match v {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(format!("{what} is missing")),
        Err(why) => Err(format!("{what}: {why}")),
    };
    Ok(ClaimedRow {
        event_id: uuid(0)?,
        game_id,
        user_id: uuid(2)?,
        trace_id: required("trace_id", must(text(row, 3))?)?,
        created_at: submitted_at(game_id, created_at.clone()),
        game: EventGame {
            game: required("game", must(text(row, 5))?)?,
            score: match real(row, 6).map_err(|e| e.to_string())? {
                Ok(Some(x)) => x,
                _ => return Err("score cannot be read".into()),
            },
            started_at: started_at(game_id, must(text(row, 7))?, created_at),
            device: json::<Device>(row, 8)
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|why| {
                    unreadable(&game_id, "device", &why, "absent");
                    None
                }),
        },
        sample_rate_hz: match real(row, 9).map_err(|e| e.to_string())? {
            Ok(Some(x)) => x,
            _ => return Err("sample_rate_hz cannot be read".into()),
        },
    })
}

/// Logs an outbox entry that cannot be made into its event. It stays in the
/// outbox, leased: the relay tries it again when the lease ends, and the
/// entries behind it go on meanwhile.
fn unpublishable(event_id: &dyn fmt::Display, why: &str) {
    tracing::warn!(
        %event_id,
        reason = why,
        "stored event cannot be read; left in the outbox and retried after its lease"
    );
}

/// The stored change of a processing event, if it was completed before.
fn stored_change(tx: &Transaction<'_>, event_id: Uuid) -> Result<Option<Completed>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, game_id, status, processed_at, metrics, reconciliation_event_id, error
             FROM changes WHERE event_id = ?1",
        )
        .map_err(db)?;
    let mut rows = stmt.query([id(event_id)]).map_err(db)?;
    let Some(row) = rows.next().map_err(db)? else {
        return Ok(None);
    };
    let change = change_from_row(row)?
        .ok_or_else(|| corrupt("stored change", format!("of event {event_id}")))?;
    Ok(Some(Completed {
        change,
        reconciliation_event_id: get_uuid(row, 5)?,
        error: text(row, 6)?.unwrap_or_else(|why| {
            unreadable(&event_id, "error", &why, "absent");
            None
        }),
        first: false,
    }))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<()> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                tx.execute(
                    "INSERT INTO users (user_id, username, username_key, password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        id(user.user_id),
                        user.username.as_str(),
                        user.username.key(),
                        user.password_hash,
                        ts(user.created_at),
                    ],
                )
                .map_err(|e| {
                    let taken = e.to_string().contains("users.username_key");
                    db_insert(
                        e,
                        if taken {
                            "username is taken"
                        } else {
                            "user id exists"
                        },
                    )
                })?;
                Ok(())
            })
        })
        .await
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<UserRecord>> {
        let key = username.key().to_owned();
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT user_id, username, password_hash FROM users WHERE username_key = ?1",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([key]).map_err(db)?;
                let Some(row) = rows.next().map_err(db)? else {
                    return Ok(None);
                };
                Ok(Some(UserRecord {
                    user_id: get_uuid(row, 0)?,
                    username: get(row, 1)?,
                    password_hash: get(row, 2)?,
                }))
            })
        })
        .await
    }

    async fn create_login(&self, login: NewLogin) -> Result<()> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                tx.execute(
                    "INSERT INTO logins (login_id, user_id, created_at) VALUES (?1, ?2, ?3)",
                    params![id(login.login_id), id(login.user_id), ts(login.created_at)],
                )
                .map_err(|e| db_insert(e, "login id exists"))?;
                tx.execute(
                    "INSERT INTO refresh_tokens (token_hash, login_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        login.token_hash,
                        id(login.login_id),
                        ts(login.created_at),
                        ts(login.expires_at),
                    ],
                )
                .map_err(|e| db_insert(e, "refresh token exists"))?;
                Ok(())
            })
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        presented: Digest,
        next: Digest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<RefreshOutcome> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                let found = tx
                    .query_row(
                        "SELECT t.login_id, t.expires_at, t.spent_at IS NOT NULL,
                                l.revoked_at IS NOT NULL, l.user_id
                         FROM refresh_tokens t JOIN logins l ON l.login_id = t.login_id
                         WHERE t.token_hash = ?1",
                        [presented],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, bool>(2)?,
                                row.get::<_, bool>(3)?,
                                row.get::<_, String>(4)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(db)?;
                let Some((login_id, token_expires, spent, revoked, user_id)) = found else {
                    return Ok(RefreshOutcome::Invalid);
                };
                if revoked || parse_time(&token_expires)? <= now {
                    return Ok(RefreshOutcome::Invalid);
                }
                if spent {
                    tx.execute(
                        "UPDATE logins SET revoked_at = ?2 WHERE login_id = ?1",
                        params![login_id, ts(now)],
                    )
                    .map_err(db)?;
                    tracing::warn!(%login_id, "spent refresh token presented again: login revoked");
                    return Ok(RefreshOutcome::Reused);
                }
                tx.execute(
                    "UPDATE refresh_tokens SET spent_at = ?2 WHERE token_hash = ?1",
                    params![presented, ts(now)],
                )
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO refresh_tokens (token_hash, login_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![next, login_id, ts(now), ts(expires_at)],
                )
                .map_err(|e| db_insert(e, "refresh token exists"))?;
                Ok(RefreshOutcome::Rotated {
                    user_id: Uuid::parse_str(&user_id).map_err(|e| corrupt("stored id", e))?,
                    login_id: Uuid::parse_str(&login_id).map_err(|e| corrupt("stored id", e))?,
                })
            })
        })
        .await
    }

    async fn revoke_login(&self, presented: Digest, now: DateTime<Utc>) -> Result<bool> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                let changed = tx
                    .execute(
                        "UPDATE logins SET revoked_at = COALESCE(revoked_at, ?2)
                         WHERE login_id = (SELECT login_id FROM refresh_tokens WHERE token_hash = ?1)",
                        params![presented, ts(now)],
                    )
                    .map_err(db)?;
                Ok(changed > 0)
            })
        })
        .await
    }

    async fn submit_game(
        &self,
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<SubmitOutcome> {
        self.blocking(move |inner| {
            let NewGame {
                game_id,
                event_id,
                user_id,
                submission,
                submitted_at,
                trace_id,
            } = game;
            // Encode before taking the write lock: it is the costly part.
            let columns: Vec<(&str, Vec<u8>)> = submission
                .channels()
                .iter()
                .map(|(name, col)| (name, encode_column(col)))
                .collect();
            let names: Vec<&str> = submission.channels().names().collect();
            let channels = to_json(&names)?;
            let device = submission.device().map(to_json).transpose()?;
            let started_at = submission.started_at().unwrap_or(submitted_at);
            let (game_id, event_id, user_id) = (id(game_id), id(event_id), id(user_id));
            let submitted = ts(submitted_at);

            inner.write(|tx| {
                if let Some(record) = &idempotency {
                    let seen = tx
                        .query_row(
                            "SELECT request_hash, status, body FROM idempotency
                             WHERE user_id = ?1 AND key = ?2",
                            params![user_id, record.key],
                            |row| {
                                Ok((
                                    row.get::<_, Vec<u8>>(0)?,
                                    row.get::<_, i64>(1)?,
                                    row.get::<_, Vec<u8>>(2)?,
                                ))
                            },
                        )
                        .optional()
                        .map_err(db)?;
                    if let Some((hash, status, body)) = seen {
                        if hash != record.request_hash {
                            return Ok(SubmitOutcome::KeyReused);
                        }
                        let status = u16::try_from(status)
                            .map_err(|e| corrupt("stored idempotent status", e))?;
                        return Ok(SubmitOutcome::Replayed { status, body });
                    }
                }
                tx.execute(
                    "INSERT INTO games (game_id, user_id, status, game, score, started_at,
                         submitted_at, device, sample_rate_hz, samples, channels, event_id)
                     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        game_id,
                        user_id,
                        submission.game(),
                        submission.score(),
                        ts(started_at),
                        submitted,
                        device,
                        submission.sample_rate_hz(),
                        to_i64(submission.channels().samples()),
                        channels,
                        event_id,
                    ],
                )
                .map_err(|e| db_insert(e, "game or event id exists"))?;
                let mut insert_column = tx
                    .prepare_cached(
                        "INSERT INTO game_columns (game_id, name, data) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db)?;
                for (name, data) in &columns {
                    insert_column
                        .execute(params![game_id, name, data])
                        .map_err(db)?;
                }
                tx.execute(
                    "INSERT INTO outbox (event_id, game_id, user_id, trace_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![event_id, game_id, user_id, trace_id, submitted],
                )
                .map_err(|e| db_insert(e, "event id exists"))?;
                if let Some(record) = &idempotency {
                    tx.execute(
                        "INSERT INTO idempotency (user_id, key, request_hash, status, body, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            user_id,
                            record.key,
                            record.request_hash,
                            record.status,
                            record.body,
                            submitted,
                        ],
                    )
                    .map_err(|e| db_insert(e, "idempotency key exists"))?;
                }
                Ok(SubmitOutcome::Created)
            })
        })
        .await
    }

    async fn game(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<Game>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {GAME_FIELDS} FROM games WHERE game_id = ?1 AND user_id = ?2"
                    ))
                    .map_err(db)?;
                let mut rows = stmt.query([id(game_id), id(user_id)]).map_err(db)?;
                match rows.next().map_err(db)? {
                    Some(row) => game_from_row(row, true),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    async fn list_games(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Game>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                // No LIMIT: a row skipped for an unreadable id must not
                // shorten the page (rows are read lazily, so no more than
                // needed are).
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {GAME_FIELDS} FROM games
                         WHERE user_id = ?1 AND (?2 IS NULL OR game_id < ?2)
                         ORDER BY game_id DESC"
                    ))
                    .map_err(db)?;
                let mut rows = stmt
                    .query(params![id(user_id), before.map(id)])
                    .map_err(db)?;
                let mut games = Vec::new();
                while games.len() < limit as usize {
                    let Some(row) = rows.next().map_err(db)? else {
                        break;
                    };
                    games.extend(game_from_row(row, false)?);
                }
                Ok(games)
            })
        })
        .await
    }

    async fn game_samples(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<GameSamples>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let game = tx
                    .query_row(
                        "SELECT sample_rate_hz, score FROM games
                         WHERE game_id = ?1 AND user_id = ?2",
                        params![id(game_id), id(user_id)],
                        |row| Ok((row.get::<_, f64>(0), row.get::<_, f64>(1))),
                    )
                    .optional()
                    .map_err(db)?;
                let Some((rate, score)) = game else {
                    return Ok(None);
                };
                let rate = rate.map_err(|e| corrupt("sample_rate_hz", e))?;
                let score = score.map_err(|e| corrupt("score", e))?;
                let mut stmt = tx
                    .prepare_cached("SELECT name, data FROM game_columns WHERE game_id = ?1")
                    .map_err(db)?;
                let mut rows = stmt.query([id(game_id)]).map_err(db)?;
                let mut columns = BTreeMap::new();
                while let Some(row) = rows.next().map_err(db)? {
                    let name: String = row.get(0).map_err(|e| corrupt("column name", e))?;
                    let data: Vec<u8> = row.get(1).map_err(|e| corrupt("column data", e))?;
                    let column =
                        decode_column(&data).map_err(|e| corrupt(&format!("column {name}"), e))?;
                    columns.insert(name, column);
                }
                let channels = Channels::from_stored(columns).map_err(|e| corrupt("columns", e))?;
                Ok(Some(GameSamples {
                    sample_rate_hz: rate,
                    score,
                    channels,
                }))
            })
        })
        .await
    }

    async fn processed_games(&self, user_id: Uuid) -> Result<Vec<ProcessedGame>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT game_id, started_at, submitted_at, metrics FROM games
                         WHERE user_id = ?1 AND status = 'processed'",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([id(user_id)]).map_err(db)?;
                let mut games = Vec::new();
                while let Some(row) = rows.next().map_err(db)? {
                    let Some(game_id) = row_id(row, 0, "game")? else {
                        continue;
                    };
                    let Some(metrics) = required(
                        &game_id,
                        "metrics",
                        json::<Metrics>(row, 3)?,
                        "left out of progress",
                    ) else {
                        continue;
                    };
                    games.push(ProcessedGame {
                        game_id,
                        started_at: started_at(game_id, text(row, 1)?, text(row, 2)?),
                        metrics,
                    });
                }
                Ok(games)
            })
        })
        .await
    }

    async fn advance_outbox(
        &self,
        published: &[Uuid],
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>> {
        if published.is_empty() && limit == 0 {
            return Ok(Vec::new());
        }
        let published: Vec<String> = published.iter().map(|e| id(*e)).collect();
        self.blocking(move |inner| {
            inner.write(|tx| {
                let mut mark = tx
                    .prepare_cached(
                        "UPDATE outbox SET published_at = ?2, lease_until = NULL
                         WHERE event_id = ?1 AND published_at IS NULL",
                    )
                    .map_err(db)?;
                for event_id in &published {
                    mark.execute(params![event_id, ts(now)]).map_err(db)?;
                }
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT o.event_id, o.game_id, o.user_id, o.trace_id, o.created_at,
                                g.game, g.score, g.started_at, g.device, g.sample_rate_hz
                         FROM outbox o JOIN games g ON g.game_id = o.game_id
                         WHERE o.published_at IS NULL
                           AND (o.lease_until IS NULL OR o.lease_until <= ?1)
                         ORDER BY o.created_at, o.event_id
                         LIMIT ?2",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query(params![ts(now), limit]).map_err(db)?;
                let mut claimed = Vec::new();
                let mut leased = Vec::new();
                while let Some(row) = rows.next().map_err(db)? {
                    // Leased even if it cannot be published, so that the
                    // entries behind it are not held up by it.
                    let key: rusqlite::types::Value = get(row, 0)?;
                    match claimed_row(row) {
                        Ok(entry) => claimed.push(entry.into_entry()),
                        Err(why) => unpublishable(&format!("{key:?}"), &why),
                    }
                    leased.push(key);
                }
                let lease_until = ts(plus(now, lease));
                let mut set_lease = tx
                    .prepare_cached("UPDATE outbox SET lease_until = ?2 WHERE event_id = ?1")
                    .map_err(db)?;
                for event_id in &leased {
                    set_lease
                        .execute(params![event_id, lease_until])
                        .map_err(db)?;
                }
                Ok(claimed)
            })
        })
        .await
    }

    async fn republish_unfinished(&self) -> Result<u64> {
        self.blocking(|inner| {
            inner.write(|tx| {
                let reset = tx
                    .execute(
                        "UPDATE outbox SET published_at = NULL, lease_until = NULL
                         WHERE game_id IN (SELECT game_id FROM games WHERE status = 'queued')",
                        [],
                    )
                    .map_err(db)?;
                Ok(reset as u64)
            })
        })
        .await
    }

    async fn unpublished_count(&self) -> Result<u64> {
        self.blocking(|inner| {
            inner.read(|tx| {
                let n: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(db)?;
                u64::try_from(n).map_err(|e| corrupt("count", e))
            })
        })
        .await
    }

    async fn complete_game(&self, completion: Completion) -> Result<Completed> {
        self.blocking(move |inner| {
            let Completion {
                event_id,
                reconciliation_event_id,
                game_id,
                user_id,
                status,
                processed_at,
                metrics,
                error,
            } = completion;
            // What is stored is what every caller gets back, this one included.
            let processed_at = processed_at.trunc_subsecs(6);
            let metrics_json = metrics.as_ref().map(to_json).transpose()?;
            // The metrics as they will read back: serde_json's default float
            // parsing may differ from the original in the last bit, and a
            // redelivery must get exactly what the first caller got.
            let metrics: Option<Metrics> = metrics_json
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("metrics", e))?;
            inner.write(|tx| {
                if let Some(done) = stored_change(tx, event_id)? {
                    return Ok(done);
                }
                let updated = tx
                    .execute(
                        "UPDATE games SET status = ?3, processed_at = ?4, metrics = ?5, error = ?6
                         WHERE game_id = ?1 AND user_id = ?2 AND event_id = ?7",
                        params![
                            id(game_id),
                            id(user_id),
                            status.as_str(),
                            ts(processed_at),
                            metrics_json,
                            error,
                            id(event_id),
                        ],
                    )
                    .map_err(db)?;
                if updated == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.execute(
                    "INSERT INTO changes (user_id, game_id, event_id, reconciliation_event_id,
                         status, processed_at, metrics, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        id(user_id),
                        id(game_id),
                        id(event_id),
                        id(reconciliation_event_id),
                        status.as_str(),
                        ts(processed_at),
                        metrics_json,
                        error,
                    ],
                )
                .map_err(|e| db_insert(e, "change of this event exists"))?;
                Ok(Completed {
                    change: Change {
                        cursor: encode_cursor(tx.last_insert_rowid()),
                        game_id,
                        status,
                        processed_at: Some(processed_at),
                        metrics,
                    },
                    reconciliation_event_id,
                    error,
                    first: true,
                })
            })
        })
        .await
    }

    async fn changes_since(
        &self,
        user_id: Uuid,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Change>> {
        let after = match since {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or(StoreError::UnknownCursor)?),
        };
        self.blocking(move |inner| {
            inner.read(|tx| {
                let user = id(user_id);
                if let Some(seq) = after {
                    let owner: Option<String> = tx
                        .query_row("SELECT user_id FROM changes WHERE seq = ?1", [seq], |row| {
                            row.get(0)
                        })
                        .optional()
                        .map_err(db)?;
                    if owner.as_deref() != Some(user.as_str()) {
                        return Err(StoreError::UnknownCursor);
                    }
                }
                // No LIMIT: a change skipped for an unreadable game id must
                // not shorten the page, or a page of them would look like
                // the end of the feed.
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT seq, game_id, status, processed_at, metrics FROM changes
                         WHERE user_id = ?1 AND seq > ?2 ORDER BY seq",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query(params![user, after.unwrap_or(0)]).map_err(db)?;
                let mut changes = Vec::new();
                while changes.len() < limit as usize {
                    let Some(row) = rows.next().map_err(db)? else {
                        break;
                    };
                    changes.extend(change_from_row(row)?);
                }
                Ok(changes)
            })
        })
        .await
    }

    async fn latest_cursor(&self, user_id: Uuid) -> Result<Option<String>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let seq: Option<i64> = tx
                    .query_row(
                        "SELECT MAX(seq) FROM changes WHERE user_id = ?1",
                        [id(user_id)],
                        |row| row.get(0),
                    )
                    .map_err(db)?;
                Ok(seq.map(encode_cursor))
            })
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.blocking(|inner| inner.read(|tx| tx.query_row("SELECT 1", [], |_| Ok(())).map_err(db)))
            .await
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        // A scan, hourly, of a table that holds about a day of keys: no
        // index is worth its cost on every upload.
        self.blocking(move |inner| {
            inner.write(|tx| {
                let deleted = tx
                    .execute(
                        "DELETE FROM idempotency WHERE created_at < ?1",
                        params![ts(before)],
                    )
                    .map_err(db)?;
                Ok(deleted as u64)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::latest_time;

    #[test]
    fn cursors_round_trip_and_reject_strangers() {
        for seq in [1, 2, 255, 1 << 40, i64::MAX] {
            let c = encode_cursor(seq);
            assert_eq!(c.len(), 16);
            assert_eq!(decode_cursor(&c), Some(seq));
        }
        assert!(encode_cursor(9) < encode_cursor(10));
        for bad in [
            "",
            "1",
            "000000000000000A",
            "0000000000000000",
            "8000000000000000",
            "000000000000000g",
            "00000000000000001",
            "-000000000000001",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }

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
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Unavailable(_))
        ));
    }
}
