//! The MongoDB implementation of [`Store`]: the production store, shared by
//! any number of gateways and processors.
//!
//! # No multi-document transactions
//! It runs on a standalone server (4.4 or newer) as well as on a replica
//! set, so it never uses a transaction. Every write that must be atomic is
//! one document; where a method writes several documents, they are written
//! in an order that makes the *last* write the commit point, with unique
//! keys and idempotent re-writes so that a crash (or a concurrent twin)
//! between two steps loses or duplicates nothing. Each such method says why
//! next to its steps; in short:
//! - `submit_game`: idempotency key → columns → game-with-outbox. The game
//!   document is the commit point: it holds the outbox state, so an accepted
//!   game always has its event and the relay publishes it.
//! - `complete_game`: the feed entry (keyed by `event_id`) is the commit
//!   point; the game's status is then set *from* that entry, which a
//!   redelivery of the event re-applies.
//! - Refresh tokens: the next token is stored before the presented one is
//!   spent, by a conditional update that only one rotation can win.
//!
//! # Formats
//! Ids are UUIDs as lower-case hyphenated strings (UUIDv7 strings sort by
//! time), so `_id` order is submission order. Times are UTC strings
//! `YYYY-MM-DDTHH:MM:SS.ffffffZ`, exactly as in the SQLite store: a BSON
//! date keeps milliseconds only and the contract keeps microseconds; the
//! fixed width keeps string order equal to time order for range queries.
//! Metrics and devices are BSON sub-documents (doubles keep every bit, so a
//! result reads back exactly as it was returned).
//!
//! Games and changes are read as plain documents and decoded field by
//! field, so a field of the wrong type or a time that does not parse is
//! shown as its fallback, by the rule of the crate documentation ("Stored
//! data that cannot be read"), instead of failing the whole query.
//!
//! # Collections
//! | collection | `_id` | other fields |
//! |---|---|---|
//! | `users` | user id | `username` (as spelled), `username_key` (lower-cased), `password_hash`, `created_at` |
//! | `logins` | login id | `user_id`, `created_at`, `revoked_at` (absent until revoked) |
//! | `refresh_tokens` | SHA-256 of the token (binary) | `login_id`, `created_at`, `expires_at`, `spent_at` (absent until spent) |
//! | `games` | game id | `user_id`, `event_id`, `status`, `game`, `score`, `started_at`, `submitted_at`, `processed_at`?, `device`?, `sample_rate_hz`, `samples`, `channels` (names), `metrics`?, `error`?, `outbox: {created_at, trace_id, pending, lease_until?, published_at?}` |
//! | `game_columns` | game id | `user_id`, `columns: {name: binary}` ([`m2m_domain::encode_column`]: f32 little-endian, ~4 bytes a sample) |
//! | `idempotency_keys` | (generated) | `user_id`, `key`, `request_hash`, `status`, `body`, `game_id`, `event_id`, `submitted_at`, `created_at` |
//! | `changes` | event id | `user_id`, `seq`, `game_id`, `reconciliation_event_id`, `status`, `processed_at`, `metrics`?, `error`? |
//!
//! The sensor columns are one document per game in `game_columns`, not
//! embedded in the game: every read of a game (a page of the list, the
//! progress of a user, a claim by the relay) would otherwise load megabytes
//! of columns from disk just to project them away. A 10-minute game at
//! 100 Hz with 16 channels is ~3.8 MB there; a game whose columns would not
//! fit one document ([`MAX_DOCUMENT_BYTES`]) is refused before anything is
//! written ([`StoreError::TooLarge`]).
//!
//! # Indexes
//! Created at [`MongoStore::connect`], idempotently (creating an index that
//! exists with the same definition does nothing; one that exists with
//! another definition fails the startup with the server's reason).
//!
//! | collection | name | keys | options | serves |
//! |---|---|---|---|---|
//! | `users` | `username_key_unique` | `username_key` | unique | `create_user` (a taken name, in any case, is a duplicate key), `user_by_username` |
//! | `games` | `event_id_unique` | `event_id` | unique | `mark_published`; one event belongs to one game |
//! | `games` | `user_games` | `user_id`, `_id` descending | | `list_games` (newest first, `before` a game id), `processed_games` |
//! | `games` | `outbox_pending` | `outbox.pending`, `outbox.created_at`, `event_id` | partial: `outbox.pending: true` | `claim_unpublished` (oldest first), `unpublished_count`; only unpublished games are in it |
//! | `games` | `queued_games` | `status` | partial: `status: "queued"` | `republish_unfinished` |
//! | `idempotency_keys` | `user_key_unique` | `user_id`, `key` | unique | `submit_game`: one first answer per (user, key) |
//! | `changes` | `user_seq_unique` | `user_id`, `seq` | unique | `changes_since`, `latest_cursor`, cursor checks; no two changes of a user share a position |
//!
//! The `_id` indexes serve the lookups by id: a login, a refresh token (by
//! its hash), a game (`game`, `complete_game`), its columns (the relay) and
//! a change by its event id (`complete_game`'s idempotency: one change per
//! event, enforced by the server).
//!
//! # Cursors
//! A change's position in its user's feed is `seq`, 1, 2, 3… allocated as
//! one more than the user's latest `seq` and made unique by
//! `user_seq_unique`: two completions racing for the same position both
//! insert, one wins, the other reads the new latest and tries the next one.
//! An entry is only ever inserted after the one before it is stored, so a
//! reader never sees a later change before an earlier one, and a crash
//! leaves no gap (nothing is reserved before the insert that claims it).
//!
//! The cursor is 24 lower-case hex digits: `seq` (16 digits, so cursors of
//! one user sort as text in feed order) followed by 8 digits naming the
//! user (the first 4 bytes of the SHA-256 of the user id), so a cursor of
//! another user's feed is refused rather than read as a position in this
//! one.

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
use futures::TryStreamExt;
use m2m_analysis::Metrics;
use m2m_domain::{
    decode_column, encode_column, Change, Channels, Device, EventGame, Game, GameSamples,
    GameStatus, ProcessingEvent, Username, PROCESSING_EVENT_VERSION,
};
use mongodb::bson::{self, doc, spec::BinarySubtype, Binary, Bson, Document, RawDocumentBuf};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The largest document MongoDB stores (its `maxBsonObjectSize`, 16 MiB).
/// A game whose sensor columns would make a larger document is refused
/// with [`StoreError::TooLarge`] before anything is written.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The oldest server this store is written and tested for.
const MIN_SERVER_VERSION: (u64, u64) = (4, 4);

/// The database used when the URL names none.
const DEFAULT_DATABASE: &str = "m2m";

/// How long an operation waits for a usable server when the URL sets no
/// `serverSelectionTimeoutMS` (the driver's own default is 30 s, far too
/// long to tell an operator at startup that the server is missing).
const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The same for opening a TCP connection (`connectTimeoutMS`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times `complete_game` tries the next feed position when other
/// completions of the same user keep taking it first.
const MAX_SEQ_ATTEMPTS: usize = 64;

/// MongoDB's error code for a broken unique index.
const DUPLICATE_KEY: i32 = 11000;

/// The production store: a MongoDB database.
///
/// Cloning is cheap and shares the driver's connection pool.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    users: Collection<UserDoc>,
    logins: Collection<LoginDoc>,
    tokens: Collection<TokenDoc>,
    games: Collection<GameDoc>,
    columns: Collection<RawDocumentBuf>,
    idempotency: Collection<IdempotencyDoc>,
    changes: Collection<ChangeDoc>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to the MongoDB a `--database-url` names
    /// (`mongodb://…` or `mongodb+srv://…`) and prepares its database.
    ///
    /// Every option of the URL is honoured (replica set, TLS, `authSource`,
    /// timeouts, write concern…); the database is the one in the URL's path
    /// (`m2m` if none). Where the URL does not say, operations wait at most
    /// 5 s for a server and writes are acknowledged by a majority and
    /// journaled, so an accepted game survives a crash of the server.
    ///
    /// Fails with [`StoreError::Unavailable`] and a sentence an operator can
    /// act on when the URL is invalid, the server cannot be reached, it is
    /// older than 4.4, or the indexes cannot be created.
    pub async fn connect(url: &str) -> Result<MongoStore> {
        MongoStore::open(url, None).await
    }

    /// Like [`MongoStore::connect`], in the database `database` whatever
    /// the URL's path says (the tests use a fresh database each).
    pub async fn connect_database(url: &str, database: &str) -> Result<MongoStore> {
        MongoStore::open(url, Some(database)).await
    }

    async fn open(url: &str, database: Option<&str>) -> Result<MongoStore> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("invalid MongoDB URL: {}", e.kind)))?;
        options
            .server_selection_timeout
            .get_or_insert(DEFAULT_SERVER_SELECTION_TIMEOUT);
        options
            .connect_timeout
            .get_or_insert(DEFAULT_CONNECT_TIMEOUT);
        options.app_name.get_or_insert_with(|| "m2m".to_owned());
        options.write_concern.get_or_insert_with(|| {
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build()
        });
        let name = database
            .map(str::to_owned)
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let hosts = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::with_options(options)
            .map_err(|e| StoreError::Unavailable(format!("invalid MongoDB URL: {}", e.kind)))?;
        let db = client.database(&name);

        db.run_command(doc! { "ping": 1 }).await.map_err(|e| {
            StoreError::Unavailable(format!("MongoDB at {hosts} is not reachable: {}", e.kind))
        })?;
        let info = db
            .run_command(doc! { "buildInfo": 1 })
            .await
            .map_err(|e| unavailable("cannot read the MongoDB server's version", e))?;
        let version = info.get_str("version").unwrap_or("(none)").to_owned();
        check_version(&version)?;

        let store = MongoStore {
            users: db.collection("users"),
            logins: db.collection("logins"),
            tokens: db.collection("refresh_tokens"),
            games: db.collection("games"),
            columns: db.collection("game_columns"),
            idempotency: db.collection("idempotency_keys"),
            changes: db.collection("changes"),
            db,
        };
        store.create_indexes().await?;
        tracing::info!(database = %name, %hosts, %version, "connected to MongoDB");
        Ok(store)
    }

    /// Creates the indexes of the module documentation, if missing.
    async fn create_indexes(&self) -> Result<()> {
        let index = |keys: Document, name: &str, unique: bool, partial: Option<Document>| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .unique(unique.then_some(true))
                        .partial_filter_expression(partial)
                        .build(),
                )
                .build()
        };
        let failed = |e| unavailable("cannot create the MongoDB indexes", e);
        self.users
            .create_index(index(
                doc! { "username_key": 1 },
                "username_key_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        self.games
            .create_indexes([
                index(doc! { "event_id": 1 }, "event_id_unique", true, None),
                index(doc! { "user_id": 1, "_id": -1 }, "user_games", false, None),
                index(
                    doc! { "outbox.pending": 1, "outbox.created_at": 1, "event_id": 1 },
                    "outbox_pending",
                    false,
                    Some(doc! { "outbox.pending": true }),
                ),
                index(
                    doc! { "status": 1 },
                    "queued_games",
                    false,
                    Some(doc! { "status": "queued" }),
                ),
            ])
            .await
            .map_err(failed)?;
        self.idempotency
            .create_index(index(
                doc! { "user_id": 1, "key": 1 },
                "user_key_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        self.changes
            .create_index(index(
                doc! { "user_id": 1, "seq": 1 },
                "user_seq_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Writes a game: its columns, then the game document with its outbox
    /// state. `Err(Conflict)` if a game with this id or event id exists.
    ///
    /// Crash safety: the game document is the commit point. A crash after
    /// the columns and before the game leaves a columns document that no
    /// game refers to (never read, never published; the caller got no 202).
    /// A retry with the same ids (an idempotency takeover) overwrites it
    /// with the same bytes.
    async fn write_game(&self, game: &GameDoc, columns: RawDocumentBuf) -> Result<()> {
        let id = game.game_id.as_str();
        match self.columns.insert_one(columns.clone()).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                if self.game_exists(id).await? {
                    return Err(StoreError::Conflict("game or event id exists"));
                }
                // Left by an attempt that stopped before its game document.
                self.columns
                    .replace_one(doc! { "_id": id }, columns)
                    .upsert(true)
                    .await
                    .map_err(db)?;
            }
            Err(e) => return Err(db(e)),
        }
        self.games
            .insert_one(game)
            .await
            .map_err(|e| db_insert(e, "game or event id exists"))?;
        Ok(())
    }

    async fn game_exists(&self, game_id: &str) -> Result<bool> {
        let found = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": game_id })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    /// Sets a game's result from its feed entry. Idempotent: the entry never
    /// changes, so applying it again writes the same values.
    async fn apply_change(&self, change: &ChangeDoc) -> Result<()> {
        let mut set = doc! {
            "status": &change.status,
            "processed_at": &change.processed_at,
        };
        if let Some(metrics) = &change.metrics {
            set.insert("metrics", to_bson(metrics)?);
        }
        if let Some(error) = &change.error {
            set.insert("error", error);
        }
        self.games
            .update_one(
                doc! { "_id": &change.game_id, "event_id": &change.event_id },
                doc! { "$set": set },
            )
            .await
            .map_err(db)?;
        Ok(())
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

/// Refuses a server older than [`MIN_SERVER_VERSION`], naming the version
/// found.
fn check_version(version: &str) -> Result<()> {
    let mut parts = version.split(['.', '-']).map(str::parse::<u64>);
    let found = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => {
            return Err(StoreError::Unavailable(format!(
                "cannot tell the MongoDB server's version from {version:?}"
            )))
        }
    };
    if found < MIN_SERVER_VERSION {
        let (major, minor) = MIN_SERVER_VERSION;
        return Err(StoreError::Unavailable(format!(
            "MongoDB {version} is too old: m2m needs {major}.{minor} or newer"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Documents

#[derive(Debug, Serialize, Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    user_id: String,
    username: String,
    /// The lower-cased username: the unique key.
    username_key: String,
    password_hash: String,
    created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoginDoc {
    #[serde(rename = "_id")]
    login_id: String,
    user_id: String,
    created_at: String,
    /// Absent (not null) until revoked, so that `$min` sets it the first
    /// time and keeps the first time after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenDoc {
    /// SHA-256 of the token; the token itself is never stored.
    #[serde(rename = "_id")]
    token_hash: Binary,
    login_id: String,
    created_at: String,
    expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spent_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GameDoc {
    #[serde(rename = "_id")]
    game_id: String,
    user_id: String,
    event_id: String,
    status: String,
    game: String,
    score: f64,
    started_at: String,
    submitted_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    processed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<Device>,
    sample_rate_hz: f64,
    samples: i64,
    /// The channel names, so that reading a game needs no columns.
    channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The game's outbox entry, in the game's own document so that storing
    /// a game and its event is one atomic write. Projected away where
    /// unused (then `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outbox: Option<OutboxDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OutboxDoc {
    /// The game's `submitted_at`: the relay publishes oldest first.
    created_at: String,
    trace_id: String,
    /// True until the bus confirms the event (the partial index holds only
    /// these).
    pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    published_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct ColumnsDoc<'a> {
    #[serde(rename = "_id")]
    game_id: &'a str,
    user_id: &'a str,
    columns: BTreeMap<&'a str, Binary>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyDoc {
    user_id: String,
    key: String,
    request_hash: Binary,
    status: i32,
    body: Binary,
    /// The ids and time of the game the stored answer announces: a retry
    /// that finds the game missing (its first attempt crashed between the
    /// key and the game) stores it under these, so the answer comes true.
    game_id: String,
    event_id: String,
    submitted_at: String,
    created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChangeDoc {
    /// The processing event's id: one change per event, by the `_id` index.
    #[serde(rename = "_id")]
    event_id: String,
    user_id: String,
    /// The position in the user's feed (see "Cursors").
    seq: i64,
    game_id: String,
    reconciliation_event_id: String,
    status: String,
    processed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A `games` document rendered as a [`Game`] by the rule of
/// [`StoredGame`]; `None` (logged) if its id cannot be read.
fn game_from_doc(d: &Document, with_metrics: bool) -> Option<Game> {
    let game_id = doc_id(d, "_id", "game")?;
    Some(
        StoredGame {
            game_id,
            status: doc_text(d, "status"),
            game: doc_text(d, "game"),
            score: doc_f64(d, "score"),
            started_at: doc_text(d, "started_at"),
            submitted_at: doc_text(d, "submitted_at"),
            processed_at: doc_text(d, "processed_at"),
            device: doc_value::<Device>(d, "device"),
            sample_rate_hz: doc_f64(d, "sample_rate_hz"),
            samples: doc_i64(d, "samples"),
            channels: doc_value(d, "channels"),
            metrics: if with_metrics {
                doc_value::<Metrics>(d, "metrics")
            } else {
                Ok(None)
            },
            error: doc_text(d, "error"),
        }
        .render(with_metrics),
    )
}

/// A `changes` document rendered as a [`Change`] by the rule of
/// [`StoredChange`]; `None` (logged) if its position or game id cannot be
/// read.
fn change_from_doc(d: &Document, user_id: Uuid) -> Option<Change> {
    let seq = match doc_i64(d, "seq") {
        Ok(Some(seq)) if seq > 0 => seq,
        other => {
            let row = format!("change {:?}", d.get("_id"));
            unreadable(&row, "seq", &format!("{other:?}"), "skipped");
            return None;
        }
    };
    let cursor = encode_cursor(user_id, seq);
    let game_id = doc_id(d, "game_id", &format!("change {cursor} of game"))?;
    Some(
        StoredChange {
            cursor,
            game_id,
            status: doc_text(d, "status"),
            processed_at: doc_text(d, "processed_at"),
            metrics: doc_value(d, "metrics"),
        }
        .render(),
    )
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
            },
            reconciliation_event_id: parse_id(&self.reconciliation_event_id)?,
            error: self.error.clone(),
            first,
        })
    }
}

/// What [`Store::complete_game`] returns for a change stored before, read
/// by the rule of [`StoredChange`].
fn stored_completed(d: &Document, user_id: Uuid) -> Result<Completed> {
    let unreadable_change = || corrupt("stored change", format!("{:?}", d.get("_id")));
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

// Fields of a stored document, read one by one so that one bad value
// spoils neither its document nor the others (see [`StoredGame`]).

fn doc_text(d: &Document, key: &str) -> Field<String> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("not a string: {:?}", other.element_type())),
    }
}

fn doc_f64(d: &Document, key: &str) -> Field<f64> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Double(x)) => Ok(Some(*x)),
        Some(Bson::Int32(n)) => Ok(Some(f64::from(*n))),
        Some(Bson::Int64(n)) => Ok(Some(*n as f64)),
        Some(other) => Err(format!("not a number: {:?}", other.element_type())),
    }
}

fn doc_i64(d: &Document, key: &str) -> Field<i64> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Int32(n)) => Ok(Some(i64::from(*n))),
        Some(Bson::Int64(n)) => Ok(Some(*n)),
        Some(other) => Err(format!("not an integer: {:?}", other.element_type())),
    }
}

fn doc_value<T: serde::de::DeserializeOwned>(d: &Document, key: &str) -> Field<T> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => bson::from_bson(v.clone())
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// The id in a field, or `None` (logged) when it cannot be read: a document
/// without a readable id cannot be shown or addressed, so it is skipped.
fn doc_id(d: &Document, key: &str, what: &str) -> Option<Uuid> {
    let raw = d.get(key);
    match raw {
        Some(Bson::String(s)) => Uuid::parse_str(s).ok(),
        _ => None,
    }
    .or_else(|| {
        unreadable(&format!("{what} {raw:?}"), key, "not a UUID", "skipped");
        None
    })
}

/// The `game_columns` document of a game, refused with
/// [`StoreError::TooLarge`] if MongoDB could not store it.
fn columns_document(game_id: &str, user_id: &str, channels: &Channels) -> Result<RawDocumentBuf> {
    let columns = channels
        .iter()
        .map(|(name, col)| {
            let data = Binary {
                subtype: BinarySubtype::Generic,
                bytes: encode_column(col),
            };
            (name, data)
        })
        .collect();
    let doc = bson::to_raw_document_buf(&ColumnsDoc {
        game_id,
        user_id,
        columns,
    })
    .map_err(|e| corrupt("unserialisable columns", e))?;
    let size = doc.as_bytes().len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(StoreError::TooLarge(format!(
            "the game's sensor data takes {size} bytes stored, more than the \
             {MAX_DOCUMENT_BYTES} bytes MongoDB can keep in one document \
             ({} channels of {} samples)",
            channels.len(),
            channels.samples()
        )));
    }
    Ok(doc)
}

// ---------------------------------------------------------------------------
// Errors and conversions

/// Maps a driver error: a broken unique index → Conflict, a stored document
/// that does not read back → Corrupt, anything else (no server, network,
/// authentication, timeouts…) → Unavailable.
fn db(e: mongodb::error::Error) -> StoreError {
    if is_duplicate_key(&e) {
        return StoreError::Conflict("duplicate key");
    }
    match e.kind.as_ref() {
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt(e.kind.to_string()),
        kind => StoreError::Unavailable(kind.to_string()),
    }
}

/// Like [`db`], naming the uniqueness rule an insert broke.
fn db_insert(e: mongodb::error::Error, what: &'static str) -> StoreError {
    if is_duplicate_key(&e) {
        StoreError::Conflict(what)
    } else {
        db(e)
    }
}

fn unavailable(context: &str, e: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {}", e.kind))
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// The message of a duplicate-key error (it names the index).
fn duplicate_key_message(e: &mongodb::error::Error) -> &str {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => &w.message,
        ErrorKind::Command(c) => &c.message,
        _ => "",
    }
}

fn to_bson<T: Serialize>(value: &T) -> Result<bson::Bson> {
    bson::to_bson(value).map_err(|e| corrupt("unserialisable value", e))
}

/// `value` as it will read back from the store, so that what a write
/// returns is exactly what later reads return.
fn as_stored<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<T> {
    bson::from_bson(to_bson(value)?).map_err(|e| corrupt("value does not read back", e))
}

fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| corrupt("stored id", e))
}

fn parse_status(s: &str) -> Result<GameStatus> {
    GameStatus::parse(s).ok_or_else(|| corrupt("stored status", s))
}

fn binary(bytes: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    }
}

fn to_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// 8 hex digits naming a user inside a cursor.
fn user_tag(user_id: Uuid) -> String {
    let hash = Sha256::digest(user_id.as_bytes());
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cursor of a user's change `seq` (see "Cursors").
fn encode_cursor(user_id: Uuid, seq: i64) -> String {
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

/// Reads a whole query's results.
async fn collect<T>(cursor: mongodb::Cursor<T>) -> Result<Vec<T>>
where
    T: serde::de::DeserializeOwned + Send + Sync + Unpin,
{
    cursor.try_collect().await.map_err(db)
}

// ---------------------------------------------------------------------------
// The store

#[async_trait]
impl Store for MongoStore {
    async fn create_user(&self, user: NewUser) -> Result<()> {
        let doc = UserDoc {
            user_id: id(user.user_id),
            username: user.username.as_str().to_owned(),
            username_key: user.username.key().to_owned(),
            password_hash: user.password_hash,
            created_at: ts(user.created_at),
        };
        match self.users.insert_one(&doc).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict(
                if duplicate_key_message(&e).contains("username_key") {
                    "username is taken"
                } else {
                    "user id exists"
                },
            )),
            Err(e) => Err(db(e)),
        }
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<UserRecord>> {
        let found = self
            .users
            .find_one(doc! { "username_key": username.key() })
            .await
            .map_err(db)?;
        found
            .map(|u| {
                Ok(UserRecord {
                    user_id: parse_id(&u.user_id)?,
                    username: u.username,
                    password_hash: u.password_hash,
                })
            })
            .transpose()
    }

    async fn create_login(&self, login: NewLogin) -> Result<()> {
        // Crash safety: the login first, then its first token. A crash
        // between them leaves a login no token leads to: unusable and
        // harmless (the client got no answer and logs in again).
        let login_id = id(login.login_id);
        self.logins
            .insert_one(LoginDoc {
                login_id: login_id.clone(),
                user_id: id(login.user_id),
                created_at: ts(login.created_at),
                revoked_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "login id exists"))?;
        self.tokens
            .insert_one(TokenDoc {
                token_hash: binary(&login.token_hash),
                login_id,
                created_at: ts(login.created_at),
                expires_at: ts(login.expires_at),
                spent_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "refresh token exists"))?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented: Digest,
        next: Digest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<RefreshOutcome> {
        let Some(token) = self
            .tokens
            .find_one(doc! { "_id": binary(&presented) })
            .await
            .map_err(db)?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        let Some(login) = self
            .logins
            .find_one(doc! { "_id": &token.login_id })
            .await
            .map_err(db)?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if login.revoked_at.is_some() || parse_time(&token.expires_at)? <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        if token.spent_at.is_some() {
            self.revoke(&login.login_id, now).await?;
            tracing::warn!(login_id = %login.login_id, "spent refresh token presented again: login revoked");
            return Ok(RefreshOutcome::Reused);
        }
        // Crash safety: the next token is stored first, then the presented
        // one is spent. A crash between them leaves the presented token
        // current (the client, which got no answer, presents it again and
        // rotates normally) and an extra token whose secret nobody holds.
        // The other order would lose the client's login to a crash.
        self.tokens
            .insert_one(TokenDoc {
                token_hash: binary(&next),
                login_id: login.login_id.clone(),
                created_at: ts(now),
                expires_at: ts(expires_at),
                spent_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "refresh token exists"))?;
        // Only one rotation can spend a token: a concurrent one presenting
        // the same token finds it spent, which is a reuse, as if the two
        // had come one after the other.
        let spent = self
            .tokens
            .update_one(
                doc! { "_id": binary(&presented), "spent_at": null },
                doc! { "$set": { "spent_at": ts(now) } },
            )
            .await
            .map_err(db)?;
        if spent.matched_count == 0 {
            self.revoke(&login.login_id, now).await?;
            tracing::warn!(login_id = %login.login_id, "refresh token rotated twice at once: login revoked");
            return Ok(RefreshOutcome::Reused);
        }
        Ok(RefreshOutcome::Rotated {
            user_id: parse_id(&login.user_id)?,
            login_id: parse_id(&login.login_id)?,
        })
    }

    async fn revoke_login(&self, presented: Digest, now: DateTime<Utc>) -> Result<bool> {
        let Some(token) = self
            .tokens
            .find_one(doc! { "_id": binary(&presented) })
            .await
            .map_err(db)?
        else {
            return Ok(false);
        };
        self.revoke(&token.login_id, now).await
    }

    async fn submit_game(
        &self,
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<SubmitOutcome> {
        let NewGame {
            game_id,
            event_id,
            user_id,
            submission,
            submitted_at,
            trace_id,
        } = game;
        let user = id(user_id);
        // Refused before anything is written, and before the driver sees it.
        let columns = columns_document(&id(game_id), &user, submission.channels())?;
        let doc_for = |game_id: &str, event_id: &str, submitted_at: DateTime<Utc>| GameDoc {
            game_id: game_id.to_owned(),
            user_id: user.clone(),
            event_id: event_id.to_owned(),
            status: GameStatus::Queued.as_str().to_owned(),
            game: submission.game().to_owned(),
            score: submission.score(),
            started_at: ts(submission.started_at().unwrap_or(submitted_at)),
            submitted_at: ts(submitted_at),
            processed_at: None,
            device: submission.device().cloned(),
            sample_rate_hz: submission.sample_rate_hz(),
            samples: to_i64(submission.channels().samples()),
            channels: submission.channels().names().map(str::to_owned).collect(),
            metrics: None,
            error: None,
            outbox: Some(OutboxDoc {
                created_at: ts(submitted_at),
                trace_id: trace_id.clone(),
                pending: true,
                lease_until: None,
                published_at: None,
            }),
        };
        let doc = doc_for(&id(game_id), &id(event_id), submitted_at);

        let Some(record) = idempotency else {
            self.write_game(&doc, columns).await?;
            return Ok(SubmitOutcome::Created);
        };

        // With a key: the key's record first (it holds the whole answer and
        // the ids it announces), then the game.
        //
        // Crash safety: a crash between them leaves a record whose game is
        // missing; the client got no 202 (it comes only after both) and
        // retries with the same key. The retry finds the record and *takes
        // over*: it stores its own (identical: same request hash) game
        // under the recorded ids and answers the recorded body, which is
        // then true. Completing the first attempt this way, rather than
        // answering with the record alone, is what makes a 202 always name
        // a stored game. A takeover racing a first attempt that is merely
        // slow is safe too: both write the same game id, the unique `_id`
        // lets one game in, and the slow attempt sees its own event there.
        let inserted = self
            .idempotency
            .insert_one(IdempotencyDoc {
                user_id: user.clone(),
                key: record.key.clone(),
                request_hash: binary(&record.request_hash),
                status: i32::from(record.status),
                body: binary(&record.body),
                game_id: doc.game_id.clone(),
                event_id: doc.event_id.clone(),
                submitted_at: ts(submitted_at),
                created_at: ts(submitted_at),
            })
            .await;
        match inserted {
            Ok(_) => match self.write_game(&doc, columns).await {
                Ok(()) => Ok(SubmitOutcome::Created),
                Err(StoreError::Conflict(what)) => {
                    // Our ids were taken: by a takeover of our own request
                    // (then our game is stored), or by another game.
                    let ours = self
                        .games
                        .clone_with_type::<Document>()
                        .find_one(doc! {
                            "_id": &doc.game_id, "user_id": &user, "event_id": &doc.event_id,
                        })
                        .projection(doc! { "_id": 1 })
                        .await
                        .map_err(db)?;
                    if ours.is_some() {
                        return Ok(SubmitOutcome::Created);
                    }
                    // Nothing of ours was stored: free the key again, as a
                    // rolled-back transaction would.
                    self.idempotency
                        .delete_one(doc! {
                            "user_id": &user, "key": &record.key, "game_id": &doc.game_id,
                        })
                        .await
                        .map_err(db)?;
                    Err(StoreError::Conflict(what))
                }
                // Unavailable: the record stays, and a retry takes over.
                Err(e) => Err(e),
            },
            Err(e) if is_duplicate_key(&e) => {
                let seen = self
                    .idempotency
                    .find_one(doc! { "user_id": &user, "key": &record.key })
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::Unavailable(
                        "an idempotency key vanished while read; retry".into(),
                    ))?;
                if seen.request_hash.bytes != record.request_hash {
                    return Ok(SubmitOutcome::KeyReused);
                }
                let status = u16::try_from(seen.status)
                    .map_err(|e| corrupt("stored idempotent status", e))?;
                let replay = SubmitOutcome::Replayed {
                    status,
                    body: seen.body.bytes,
                };
                if self.game_exists(&seen.game_id).await? {
                    return Ok(replay);
                }
                // The first attempt stopped before its game: take over.
                let taken_over = doc_for(
                    &seen.game_id,
                    &seen.event_id,
                    parse_time(&seen.submitted_at)?,
                );
                let columns = columns_document(&seen.game_id, &user, submission.channels())?;
                match self.write_game(&taken_over, columns).await {
                    // Conflict: the first attempt finished meanwhile.
                    Ok(()) | Err(StoreError::Conflict(_)) => Ok(replay),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn game(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<Game>> {
        let found = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(game_id), "user_id": id(user_id) })
            .projection(doc! { "outbox": 0 })
            .await
            .map_err(db)?;
        Ok(found.and_then(|g| game_from_doc(&g, true)))
    }

    async fn list_games(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Game>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "user_id": id(user_id) };
        if let Some(before) = before {
            filter.insert("_id", doc! { "$lt": id(before) });
        }
        // No limit on the query: a document skipped for an unreadable id
        // must not shorten the page (the cursor fetches batches lazily).
        let mut cursor = self
            .games
            .clone_with_type::<Document>()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .batch_size(limit.saturating_add(1))
            .projection(doc! { "outbox": 0, "metrics": 0 })
            .await
            .map_err(db)?;
        let mut games = Vec::new();
        while games.len() < limit as usize {
            let Some(g) = cursor.try_next().await.map_err(db)? else {
                break;
            };
            games.extend(game_from_doc(&g, false));
        }
        Ok(games)
    }

    async fn game_samples(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<GameSamples>> {
        let user = id(user_id);
        let Some(game) = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(game_id), "user_id": &user })
            .projection(doc! { "sample_rate_hz": 1, "score": 1, "channels": 1 })
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let number = |key: &str| -> Result<f64> {
            match doc_f64(&game, key) {
                Ok(Some(x)) => Ok(x),
                other => Err(corrupt(&format!("stored {key}"), format!("{other:?}"))),
            }
        };
        let names: Vec<String> = match doc_value(&game, "channels") {
            Ok(Some(names)) => names,
            other => return Err(corrupt("stored channels", format!("{other:?}"))),
        };
        let columns = self
            .columns
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(game_id), "user_id": &user })
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt("game without columns", game_id))?;
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
        Ok(Some(GameSamples {
            sample_rate_hz: number("sample_rate_hz")?,
            score: number("score")?,
            channels: Channels::from_stored(channels).map_err(|e| corrupt("columns", e))?,
        }))
    }

    async fn processed_games(&self, user_id: Uuid) -> Result<Vec<ProcessedGame>> {
        let cursor = self
            .games
            .clone_with_type::<Document>()
            .find(doc! { "user_id": id(user_id), "status": GameStatus::Processed.as_str() })
            .projection(doc! { "started_at": 1, "submitted_at": 1, "metrics": 1 })
            .await
            .map_err(db)?;
        let mut games = Vec::new();
        for d in collect(cursor).await? {
            let Some(game_id) = doc_id(&d, "_id", "game") else {
                continue;
            };
            let Some(metrics) = required(
                &game_id,
                "metrics",
                doc_value::<Metrics>(&d, "metrics"),
                "left out of progress",
            ) else {
                continue;
            };
            games.push(ProcessedGame {
                game_id,
                started_at: started_at(
                    game_id,
                    doc_text(&d, "started_at"),
                    doc_text(&d, "submitted_at"),
                ),
                metrics,
            });
        }
        Ok(games)
    }

    async fn advance_outbox(
        &self,
        published: &[Uuid],
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>> {
        if !published.is_empty() {
            // One atomic update per document; a repeated confirm matches
            // nothing.
            let ids: Vec<String> = published.iter().map(|e| id(*e)).collect();
            self.games
                .update_many(
                    doc! { "event_id": { "$in": ids }, "outbox.pending": true },
                    doc! {
                        "$set": { "outbox.pending": false, "outbox.published_at": ts(now) },
                        "$unset": { "outbox.lease_until": "" },
                    },
                )
                .await
                .map_err(db)?;
        }
        // One atomic find-and-update per entry, each taking the oldest
        // entry free at that moment: two publishers never lease the same
        // entry, and a crash after a claim only delays that entry by one
        // lease.
        let lease_until = ts(plus(now, lease));
        let mut entries = Vec::new();
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
            let Some(game) = game else { break };
            // One that cannot be made into its event stays leased in the
            // outbox and is tried again after its lease; the others go on.
            match outbox_entry(&game) {
                Ok(entry) => entries.push(entry),
                Err(why) => tracing::warn!(
                    event_id = ?game.get("event_id"),
                    reason = %why,
                    "stored event cannot be read; left in the outbox and retried after its lease"
                ),
            }
        }
        Ok(entries)
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
        } = completion;
        let (event, game, user) = (id(event_id), id(game_id), id(user_id));
        // Only the game's own event, for its own user, completes it.
        let own = self
            .games
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": &game, "user_id": &user, "event_id": &event })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?;
        if own.is_none() {
            return Err(StoreError::NotFound);
        }
        // What is stored is what every caller gets back, this one included.
        let mut change = ChangeDoc {
            event_id: event.clone(),
            user_id: user.clone(),
            seq: 0,
            game_id: game,
            reconciliation_event_id: id(reconciliation_event_id),
            status: status.as_str().to_owned(),
            processed_at: ts(processed_at.trunc_subsecs(6)),
            metrics: metrics.as_ref().map(as_stored).transpose()?,
            error,
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
            change.seq = self.latest_seq(&user).await? + 1;
            match self.changes.insert_one(&change).await {
                Ok(_) => {
                    self.apply_change(&change).await?;
                    return change.completed(user_id, true);
                }
                // This event's entry (found at the top of the loop) or this
                // position (taken by another change of the user: try the
                // next one).
                Err(e) if is_duplicate_key(&e) => continue,
                Err(e) => return Err(db(e)),
            }
        }
        Err(StoreError::Unavailable(
            "too many concurrent changes to this user's feed; retry".into(),
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

    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(|e| unavailable("MongoDB does not answer", e))
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        // `created_at` is fixed-width UTC text: text order is time order.
        // Hourly, over about a day of keys: no index is worth its cost.
        let deleted = self
            .idempotency
            .delete_many(doc! { "created_at": { "$lt": ts(before) } })
            .await
            .map_err(db)?;
        Ok(deleted.deleted_count)
    }
}

impl MongoStore {
    /// Revokes a login, keeping the first revocation time. Whether the
    /// login exists.
    async fn revoke(&self, login_id: &str, now: DateTime<Utc>) -> Result<bool> {
        // `$min` sets an absent field and keeps an earlier time: one atomic
        // write whether or not the login was revoked before.
        let updated = self
            .logins
            .update_one(
                doc! { "_id": login_id },
                doc! { "$min": { "revoked_at": ts(now) } },
            )
            .await
            .map_err(db)?;
        Ok(updated.matched_count > 0)
    }
}

/// The event of a claimed game. A stored time or device that cannot be
/// read is replaced as [`StoredGame`] says; anything else the event needs
/// and cannot have is [`StoreError::Corrupt`].
fn outbox_entry(game: &Document) -> Result<OutboxEntry> {
    let must = |key: &str| -> Result<String> {
        match doc_text(game, key) {
            Ok(Some(s)) => Ok(s),
            other => Err(corrupt(&format!("stored {key}"), format!("{other:?}"))),
        }
    };
    let number = |key: &str| -> Result<f64> {
        match doc_f64(game, key) {
            Ok(Some(x)) => Ok(x),
            other => Err(corrupt(&format!("stored {key}"), format!("{other:?}"))),
        }
    };
    let game_id = parse_id(&must("_id")?)?;
    let outbox = game
        .get_document("outbox")
        .map_err(|_| corrupt("claimed game without outbox", game_id))?;
    let created_at = doc_text(outbox, "created_at");
    let trace_id = match doc_text(outbox, "trace_id") {
        Ok(Some(t)) => t,
        other => return Err(corrupt("stored trace_id", format!("{other:?}"))),
    };
    Ok(OutboxEntry {
        event: ProcessingEvent {
            version: PROCESSING_EVENT_VERSION,
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
        },
        trace_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::latest_time;
    use m2m_domain::GameSubmission;

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

    #[test]
    fn old_servers_are_refused_by_version() {
        for ok in ["4.4.0", "4.4.29", "5.0.3", "7.0.12-rc1", "8.0.0", "10.1"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for (old, says) in [
            (
                "4.2.24",
                "MongoDB 4.2.24 is too old: m2m needs 4.4 or newer",
            ),
            ("3.6.0", "MongoDB 3.6.0 is too old"),
            ("(none)", "cannot tell"),
            ("x.y", "cannot tell"),
        ] {
            let err = check_version(old).unwrap_err().to_string();
            assert!(err.contains(says), "{old}: {err}");
        }
    }

    #[test]
    fn times_keep_string_order_and_microseconds() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T10:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ts(t), "2026-11-27T10:00:00.123456Z");
        assert_eq!(parse_time(&ts(t)).unwrap(), t.trunc_subsecs(6));
        assert_eq!(plus(t, Duration::MAX), latest_time());
    }

    fn game_of(channels: usize, samples: usize, value: f64) -> GameSubmission {
        let columns = (0..channels)
            .map(|c| (format!("ch_{c}"), vec![value; samples]))
            .collect::<BTreeMap<_, _>>();
        GameSubmission::validate(
            Some("pinch-garden".into()),
            Some(1.0),
            None,
            None,
            Some(100.0),
            Some(columns),
        )
        .expect("a valid game")
    }

    #[test]
    fn a_ten_minute_game_fits_one_document() {
        let game = game_of(16, 60_000, 12.5);
        let doc = columns_document("g", "u", game.channels()).unwrap();
        let size = doc.as_bytes().len();
        assert!(size > 16 * 4 * 60_000, "{size}");
        assert!(size < 4 * 1024 * 1024, "{size} bytes");
        let back = doc.get_document("columns").unwrap();
        let col = back.get_binary("ch_3").unwrap();
        assert_eq!(
            decode_column(col.bytes).unwrap(),
            game.channels().get("ch_3").unwrap()
        );
    }

    #[test]
    fn a_game_too_large_for_one_document_is_refused() {
        // Values f32 cannot hold are kept as f64: 8 bytes a sample, so
        // 48 channels of 50 000 samples are ~19 MB.
        let game = game_of(48, 50_000, 1e300);
        match columns_document("g", "u", game.channels()) {
            Err(StoreError::TooLarge(why)) => {
                assert!(why.contains("48 channels of 50000 samples"), "{why}")
            }
            other => panic!("{:?}", other.map(|d| d.as_bytes().len())),
        }
    }
}
