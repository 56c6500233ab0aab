//! The MongoDB implementation of [`Store`](crate::Store): the production
//! store, shared by any number of gateways and processors. Built with the
//! `mongodb` cargo feature (on by default).
//!
//! # Layout
//! - this module: the store, connecting and checking the server;
//! - [`indexes`]: the indexes below, created at connect;
//! - [`documents`]: the stored documents and reading them field by field;
//! - [`error`]: driver errors as [`StoreError`]s;
//! - [`accounts`], [`games`], [`outbox`], [`feed`], [`care`]: one trait of
//!   the crate each (`Accounts`, `Games`, `Outbox`, `ChangeFeed`, `Care`);
//! - [`export`]: `Export`, every user's games for `m2m export` (by the
//!   `_id` index, in its order).
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
//!   game always has its event and the publisher publishes it.
//! - `complete_game`: the feed entry (keyed by `event_id`) is the commit
//!   point; the game's status is then set *from* that entry, which a
//!   redelivery of the event re-applies. The game takes an entry's result
//!   only when its version is at least the game's (results of older
//!   versions stay as history in the feed).
//! - `enqueue_reprocessing`: one upsert per event (`$setOnInsert` on its
//!   `_id`), so a second request for the same game and version does
//!   nothing.
//! - Refresh tokens: the next token is stored before the presented one is
//!   spent, by a conditional update that only one rotation can win.
//! - `redeem_invite`: an update that only finds the code while it is unused
//!   marks it used by the patient (one redemption wins), then an upsert of
//!   the link on its `_id` with `$setOnInsert` makes the link or keeps the
//!   one there (with its first `linked_at`). A crash between the two leaves
//!   the code used by this patient and no link; the patient presenting it
//!   again within its 72 hours makes the link, which the contract allows
//!   (a code this patient redeemed, while unexpired, relinks them). Two
//!   redemptions at once by one patient make one link: the upsert that
//!   loses the race on `_id` reads the link the other stored.
//! - `create_invite`: the invite is stored, then the therapist's open
//!   invites are counted, itself included; above the limit it is removed
//!   again, unseen, and the answer is "too many". Requests at once never
//!   keep more than the limit between them (the last to count sees every
//!   invite that stays), but near the limit they may all be refused, each
//!   counting the others' invites before those are removed; the therapist
//!   asks again. A crash between the insert and the removal leaves a code
//!   nobody was given, open (and counted) until it expires.
//! - `unlink`, `set_time_zone`: one document each.
//! - `delete_account`: the account is first marked (`deleting_since`; from
//!   then on it does not exist for `account_exists`, does not log in and
//!   its refresh tokens do not rotate), then every other document naming
//!   it is removed (`delete_many` by indexed fields: refresh tokens before
//!   their logins, games before their changes), the account document
//!   last. A crash in between leaves the mark; `finish_deletions` repeats
//!   the removals for every marked account. Its username stays taken
//!   until then.
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
//! Games, changes, profiles, invites and links are read as plain documents
//! and decoded field by field, so a field of the wrong type or a time that
//! does not parse is shown as its fallback, by the rule of the crate
//! documentation ("Stored data that cannot be read"), instead of failing
//! the whole query. A range of times is compared as strings only where the
//! string is a time as this store writes it (`documents::WELL_FORMED_TIME`);
//! a game whose `started_at` is anything else is taken whatever it holds
//! and placed where it reads, and an invite whose `expires_at` is not
//! well-formed counts as expired.
//!
//! # Collections
//! | collection | `_id` | other fields |
//! |---|---|---|
//! | `users` | user id | `username` (as spelled), `username_key` (lower-cased), `password_hash`, `role`?, `created_at`, `tz`? (the IANA time zone the user set; absent: UTC), `deleting_since`? (present while the account is being deleted) |
//! | `logins` | login id | `user_id`, `created_at`, `revoked_at` (absent until revoked) |
//! | `refresh_tokens` | SHA-256 of the token (binary) | `login_id`, `created_at`, `expires_at`, `spent_at` (absent until spent) |
//! | `games` | game id | `user_id`, `event_id`, `status`, `game`, `score`, `started_at`, `submitted_at`, `processed_at`?, `device`?, `sample_rate_hz`, `samples`, `channels` (names), `metrics`?, `error`?, `outbox: {created_at, trace_id, pending, lease_until?, published_at?}`, `algorithm_version`? (of the newest result; absent while queued and in results stored before versions: 1) |
//! | `game_columns` | game id | `user_id`, `columns: {name: binary}` ([`m2m_domain::encode_column`]: lossless, ~1.4 bytes a sample for glove values, at most 8) |
//! | `idempotency_keys` | (generated) | `user_id`, `key`, `request_hash`, `status`, `body`, `game_id`, `event_id`, `submitted_at`, `created_at` |
//! | `changes` | event id | `user_id`, `seq`, `game_id`, `reconciliation_event_id`, `status`, `processed_at`, `metrics`?, `error`?, `algorithm_version`? (absent: 1), `reprocessed`? (absent: false) |
//! | `reprocessing` | reprocessing event id (`m2m_domain::reprocessing_event_id`) | `game_id`, `user_id`, `algorithm_version`, `trace_id`, `created_at`, `pending`, `lease_until`?, `published_at`? |
//! | `invites` | the code | `therapist_id`, `created_at`, `expires_at`, `used_by`? (the patient who redeemed it; absent while unused), `used_at`? |
//! | `links` | `<therapist id>:<patient id>` (one link per pair) | `therapist_id`, `patient_id`, `linked_at` |
//!
//! The sensor columns are one document per game in `game_columns`, not
//! embedded in the game: every read of a game (a page of the list, the
//! progress of a user, a claim by the publisher) would otherwise load megabytes
//! of columns from disk just to project them away. A 10-minute game at
//! 100 Hz with 16 channels is ~1.4 MB there when its values have three
//! decimals, as a glove's do, and at most ~7.7 MB; a game whose columns would not
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
//! | `games` | `event_id_unique` | `event_id` | unique | `advance_outbox` (marking confirmed events); one event belongs to one game |
//! | `games` | `user_games` | `user_id`, `_id` descending | | `list_games` (newest first, `before` a game id), `processed_games` |
//! | `games` | `outbox_pending` | `outbox.pending`, `outbox.created_at`, `event_id` | partial: `outbox.pending: true` | `advance_outbox` (claims, oldest first), `unpublished_count`; only unpublished games are in it |
//! | `games` | `queued_games` | `status` | partial: `status: "queued"` | `republish_unfinished` |
//! | `idempotency_keys` | `user_key_unique` | `user_id`, `key` | unique | `submit_game`: one first answer per (user, key) |
//! | `games` | `user_started` | `user_id`, `started_at` | | `activity` (a range of starts), `last_started_at` (the latest) |
//! | `changes` | `user_seq_unique` | `user_id`, `seq` | unique | `changes_since`, `latest_cursor`, cursor checks; no two changes of a user share a position |
//! | `changes` | `game_version_unique` | `game_id`, `algorithm_version` | unique | `complete_game`: one result per game and version (a change stored before versions has none, and is its game's only one) |
//! | `reprocessing` | `reprocessing_pending` | `pending`, `created_at`, `_id` | partial: `pending: true` | `advance_outbox`, `unpublished_count` |
//! | `invites` | `therapist_invites` | `therapist_id`, `expires_at` | | `create_invite`: counting a therapist's unexpired codes |
//! | `links` | `patient_links` | `patient_id` | | `therapists_of` |
//! | `links` | `therapist_links` | `therapist_id` | | `patients_of` |
//! | `users` | `accounts_being_deleted` | `deleting_since` | partial: `deleting_since` exists | `finish_deletions` |
//! | `logins` | `user_logins` | `user_id` | | `delete_account` |
//! | `refresh_tokens` | `login_tokens` | `login_id` | | `delete_account` (the tokens of the account's logins) |
//! | `game_columns` | `user_columns` | `user_id` | | `delete_account` |
//! | `invites` | `used_invites` | `used_by` | partial: `used_by` exists | `delete_account` (the codes a patient redeemed) |
//!
//! The `_id` indexes serve the lookups by id: a login, a refresh token (by
//! its hash), a game (`game`, `complete_game`), its columns (`game_samples`, for the processor),
//! a change by its event id (`complete_game`'s idempotency: one change per
//! event, enforced by the server), an invite by its code (a code exists
//! once) and the link of a pair (`linked_at`, `unlink`; one link per pair).
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

mod accounts;
mod care;
mod documents;
mod error;
mod export;
mod feed;
mod games;
mod indexes;
mod outbox;

use crate::{Health, Result, StoreError};
use async_trait::async_trait;
use documents::{
    ChangeDoc, GameDoc, IdempotencyDoc, InviteDoc, LinkDoc, LoginDoc, ReprocessDoc, TokenDoc,
    UserDoc,
};
use error::{db, unavailable};
use futures::TryStreamExt;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use std::fmt;
use std::time::Duration;

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
    invites: Collection<InviteDoc>,
    links: Collection<LinkDoc>,
    reprocessing: Collection<ReprocessDoc>,
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
            .map_err(|e| StoreError::unavailable("invalid MongoDB URL", e))?;
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
            .map_err(|e| StoreError::unavailable("invalid MongoDB URL", e))?;
        let db = client.database(&name);

        db.run_command(doc! { "ping": 1 }).await.map_err(|e| {
            StoreError::unavailable(format!("MongoDB at {hosts} is not reachable"), e)
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
            invites: db.collection("invites"),
            links: db.collection("links"),
            reprocessing: db.collection("reprocessing"),
            db,
        };
        store.create_indexes().await?;
        tracing::info!(database = %name, %hosts, %version, "connected to MongoDB");
        Ok(store)
    }
}

/// Refuses a server older than [`MIN_SERVER_VERSION`], naming the version
/// found.
fn check_version(version: &str) -> Result<()> {
    let mut parts = version.split(['.', '-']).map(str::parse::<u64>);
    let found = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => {
            return Err(StoreError::unavailable_because(format!(
                "cannot tell the MongoDB server's version from {version:?}"
            )))
        }
    };
    if found < MIN_SERVER_VERSION {
        let (major, minor) = MIN_SERVER_VERSION;
        return Err(StoreError::unavailable_because(format!(
            "MongoDB {version} is too old: m2m needs {major}.{minor} or newer"
        )));
    }
    Ok(())
}

/// Reads a whole query's results.
pub(super) async fn collect<T>(cursor: mongodb::Cursor<T>) -> Result<Vec<T>>
where
    T: serde::de::DeserializeOwned + Send + Sync + Unpin,
{
    cursor.try_collect().await.map_err(db)
}

#[async_trait]
impl Health for MongoStore {
    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(|e| unavailable("MongoDB does not answer", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{latest_time, parse_time, plus, ts};
    use chrono::{DateTime, SubsecRound, Utc};

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
}
