//! Storage of m2m behind the [`Store`] trait.
//!
//! # Traits by responsibility
//! [`Store`] is the sum of seven small traits, each owning one part of the
//! data; every type that implements all seven is a `Store` (a blanket impl),
//! so the gateway and the processor keep holding one `Arc<dyn Store>`:
//! - [`Accounts`]: users, logins and their refresh tokens; deleting an
//!   account with everything that names it (`delete_account`).
//! - [`Games`]: storing an upload (`submit_game`, with its outbox entry and
//!   idempotency key), reading games back (`game`, `list_games`,
//!   `processed_games`, and `game_samples` for the analysis) and sweeping old
//!   idempotency keys.
//! - [`Outbox`]: the publisher's side of the outbox (claiming, leasing and
//!   marking events published; `republish_unfinished`, `unpublished_count`).
//! - [`ChangeFeed`]: a game's result and its change (`complete_game`), and
//!   reading the per-user feed by cursor.
//! - [`Care`]: therapists' invite codes and their links to patients
//!   (docs/therapists.md).
//! - [`Health`]: `ping`, for readiness.
//! - [`Export`]: every user's games, page by page, for `m2m export` (the
//!   research tables; docs/data-lifecycle.md).
//!
//! Each backend is one folder split the same way (`sqlite/` and `mongo/`:
//! `accounts.rs`, `games.rs`, `outbox.rs`, `feed.rs`, `care.rs`, plus its
//! schema, mapping of rows or documents, and errors).
//!
//! Every method is one atomic step: where the contract needs several writes
//! to happen together (a game, its columns, its outbox entry and its
//! idempotency key; a game's result and its change-feed entry), one method
//! does them in one transaction. Callers never hold a transaction open.
//!
//! Implementations: [`SqliteStore`] (embedded default; a file several
//! processes on one machine can share) and `MongoStore` (production; any
//! number of processes on any number of machines; built with the `mongodb`
//! cargo feature, on by default). MongoDB has no
//! multi-document transactions on a standalone server, so `MongoStore`
//! keeps the same promises another way: each of its multi-step writes has
//! one document as its commit point and is safe to repeat (its module
//! documentation says how, method by method). The same contract tests run
//! against every implementation (`tests/contract.rs`).
//!
//! # Stored data that cannot be read
//! A read never fails because of what one row holds. Both stores decode a
//! game or a change field by field; a value that cannot be decoded is shown
//! as its fallback (`started_at` → the game's `submitted_at`;
//! `submitted_at` → the time in the game's UUIDv7 id; `processed_at`,
//! `device`, `metrics`, `error` → absent; `channels` → none, `samples` →
//! 0; `game` → `""`, `score` and `sample_rate_hz` → 0; `status` →
//! `failed` with an `error` saying so), a warning names the row and the
//! field, and the stored value is left as it is. A row whose own id (or a
//! change whose game id) cannot be read is left out with a warning, and
//! pages are filled from the rows after it. An account's `role` that cannot
//! be read (or, in MongoDB, is absent: accounts stored before roles) is
//! `patient`, the role with the fewest rights, with a warning when it is
//! present but unreadable.
//!
//! The therapist side reads the same way. [`Games::activity`] and
//! [`Games::last_started_at`] take a game whose `started_at` cannot be read
//! at its `submitted_at`, and one whose `samples` or `sample_rate_hz`
//! cannot be read (or whose rate is not positive) as 0 active seconds. An
//! account's `tz` is kept as stored when it is text, absent when not. A
//! link whose `linked_at` cannot be read is shown linked at the Unix epoch
//! (so it still shows, and can be removed), one whose other party's id
//! cannot be read is left out, and a missing username is `""`. An invite
//! is read the way that grants least: an unreadable `expires_at` is
//! expired (and not open), an unreadable `used_by` is another patient's,
//! an unreadable `therapist_id` makes the code unknown. See
//! docs/design.md.

mod format;
#[cfg(feature = "mongodb")]
mod mongo;
mod sqlite;

#[cfg(feature = "mongodb")]
pub use mongo::{MongoStore, MAX_DOCUMENT_BYTES};
pub use sqlite::{BatchLimits, SqliteSettings, SqliteStore};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_analysis::Metrics;
use m2m_domain::{
    Change, Game, GameSamples, GameStatus, GameSubmission, ProcessingEvent, Role, Username,
};
use std::time::Duration;
use uuid::Uuid;

/// SHA-256 of a secret or a request body.
pub type Digest = [u8; 32];

/// An error from below the store (the database driver, the file system,
/// a decoder), kept as the cause of a [`StoreError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
///
/// Where a lower-level error caused it, that error is kept as the
/// [`source`](std::error::Error::source) (to inspect or downcast it), and
/// its text ends the message too, so that a log line showing the error
/// alone says why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. the username is taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The row does not exist (or belongs to another user).
    #[error("not found")]
    NotFound,
    /// A change-feed cursor that is malformed, unknown, or another user's.
    #[error("unknown cursor")]
    UnknownCursor,
    /// Stored data that cannot be read back (a bug or tampering).
    #[error("corrupt data: {what}{}", because(.source))]
    Corrupt {
        /// What cannot be read, and how, when there is no `source` to say.
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// The database cannot be reached or failed; retrying may help.
    #[error("database unavailable: {what}{}", because(.source))]
    Unavailable {
        /// What failed (the step, or the whole reason when there is no
        /// `source`).
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// The data is too large for the store to keep (a game whose sensor
    /// columns exceed one MongoDB document, `MAX_DOCUMENT_BYTES`);
    /// nothing was stored and retrying will not help.
    #[error("too large: {0}")]
    TooLarge(String),
}

impl StoreError {
    /// [`StoreError::Unavailable`] caused by `source`.
    pub(crate) fn unavailable(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Unavailable {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// [`StoreError::Unavailable`] with no lower-level error (the reason is
    /// the store's own: a refused URL, a schema too new…).
    pub(crate) fn unavailable_because(why: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            what: why.into(),
            source: None,
        }
    }
}

/// `": <cause>"`, or nothing without a cause.
fn because(source: &Option<Cause>) -> String {
    source
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A new account. The password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user_id: Uuid,
    pub username: Username,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// An account as login needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: Uuid,
    /// As the user spelled it at registration.
    pub username: String,
    pub password_hash: String,
    /// `Patient` when the stored role cannot be read (least privilege).
    pub role: Role,
}

/// A new login (one chain of refresh tokens, from one password check).
#[derive(Debug, Clone)]
pub struct NewLogin {
    pub login_id: Uuid,
    pub user_id: Uuid,
    /// SHA-256 of the first refresh token; the token itself is never stored.
    pub token_hash: Digest,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is now spent and `next` replaces it.
    /// `role` is the account's role now (for the new access token).
    Rotated {
        user_id: Uuid,
        login_id: Uuid,
        role: Role,
    },
    /// The token had already been rotated out: the whole login is revoked
    /// now (a stolen token was probably used).
    Reused,
    /// Unknown, expired, or its login was revoked.
    Invalid,
}

/// A validated game ready to be stored, with the ids the gateway chose.
#[derive(Debug, Clone)]
pub struct NewGame {
    pub game_id: Uuid,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub submission: GameSubmission,
    pub submitted_at: DateTime<Utc>,
    /// Carried into the event's headers and the processor's logs.
    pub trace_id: String,
}

/// The first answer to a request made with an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 of the request body, to tell a replay from a different request.
    pub request_hash: Digest,
    pub status: u16,
    pub body: Vec<u8>,
}

/// What [`Games::submit_game`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Stored: the game, its columns, its outbox entry and the key.
    Created,
    /// The key was used before with the same body: that first answer.
    Replayed { status: u16, body: Vec<u8> },
    /// The key was used before with a different body; nothing stored.
    KeyReused,
}

/// An event the publisher must publish, with its trace id.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub event: ProcessingEvent,
    pub trace_id: String,
}

/// A processed game as progress needs it.
#[derive(Debug, Clone)]
pub struct ProcessedGame {
    pub game_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub metrics: Metrics,
    /// The version of the metric definitions of `metrics`: progress
    /// compares games of one version only.
    pub algorithm_version: u32,
}

/// A game `m2m reprocess` is to analyse again ([`Games::games_to_reprocess`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReprocessTarget {
    pub game_id: Uuid,
    pub user_id: Uuid,
}

/// Which stored games are to be analysed again: those with a result (not
/// `queued`) whose newest result is of an algorithm version below `below`,
/// of the users in `users` (everyone's when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReprocessSelection {
    pub below: u32,
    pub users: Vec<Uuid>,
}

/// The result of processing one ProcessingEvent.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The ProcessingEvent's id: the key that makes completion idempotent.
    pub event_id: Uuid,
    /// The id the ReconciliationEvent will carry (kept with the change, so
    /// a redelivery republishes the same id).
    pub reconciliation_event_id: Uuid,
    pub game_id: Uuid,
    pub user_id: Uuid,
    /// `Processed` or `Failed`.
    pub status: GameStatus,
    pub processed_at: DateTime<Utc>,
    pub metrics: Option<Metrics>,
    pub error: Option<String>,
    /// The version of the metric definitions that made this result
    /// (`m2m_analysis::ALGORITHM_VERSION` of the processor). With the
    /// event id, it says whether the event is the game's first or a
    /// reprocessing: a reprocessing event's id must be
    /// `m2m_domain::reprocessing_event_id(game_id, algorithm_version)`.
    pub algorithm_version: u32,
}

/// What [`ChangeFeed::complete_game`] stored (or had stored before).
#[derive(Debug, Clone)]
pub struct Completed {
    pub change: Change,
    pub reconciliation_event_id: Uuid,
    pub error: Option<String>,
    /// False when this event had been completed before (a redelivery):
    /// nothing changed and the stored result is returned.
    pub first: bool,
}

/// The storage of m2m: every responsibility in one object, as the gateway
/// and the processor hold it (`Arc<dyn Store>`).
///
/// Implemented for every type that implements the seven traits it is made
/// of, so a store implements those and never `Store` itself. Calling a
/// method through `dyn Store` needs its trait in scope (`use
/// m2m_store::{Accounts, Games, …}`).
pub trait Store:
    Accounts + Games + Outbox + ChangeFeed + Care + Health + Export + Send + Sync + 'static
{
}

impl<T> Store for T where
    T: Accounts + Games + Outbox + ChangeFeed + Care + Health + Export + Send + Sync + 'static
{
}

/// Accounts: users, the logins they open with a password, and the chains of
/// refresh tokens of those logins.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates an account. [`StoreError::Conflict`] if the username is taken
    /// (compared case-insensitively).
    async fn create_user(&self, user: NewUser) -> Result<()>;

    /// The account of a username (case-insensitive), if any.
    async fn user_by_username(&self, username: &Username) -> Result<Option<UserRecord>>;

    /// Starts a login with its first refresh token.
    async fn create_login(&self, login: NewLogin) -> Result<()>;

    /// Spends the refresh token hashed `presented` and stores `next` (valid
    /// until `expires_at`) in its place, in one step. Presenting a token that
    /// was already spent revokes its whole login.
    async fn rotate_refresh_token(
        &self,
        presented: Digest,
        next: Digest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<RefreshOutcome>;

    /// Revokes the login that the refresh token hashed `presented` belongs
    /// to (current or spent). Returns whether such a login existed.
    async fn revoke_login(&self, presented: Digest, now: DateTime<Utc>) -> Result<bool>;

    /// An account's profile: who it is and its settings. `None` if there
    /// is no such account. A stored `tz` that is not a time zone name is
    /// kept as it is (the gateway falls back to UTC).
    async fn profile(&self, user_id: Uuid) -> Result<Option<Profile>>;

    /// Sets an account's time zone (an IANA name the caller has checked);
    /// `false` if there is no such account.
    async fn set_time_zone(&self, user_id: Uuid, tz: &str) -> Result<bool>;

    // -- Erasure (docs/data-lifecycle.md, "A patient's copy and erasure")

    /// Deletes an account and everything stored that names it: its logins
    /// and refresh tokens, games, sensor columns, outbox entries, change
    /// feed, idempotency keys, the invites it made as a therapist or
    /// redeemed as a patient, and its therapist links on either side.
    /// Afterwards its username is free. Returns whether there was such an
    /// account (or one being deleted); whatever still names the id is
    /// removed either way, so deleting twice is harmless and deleting again
    /// sweeps up a write that raced the first deletion.
    ///
    /// SQLite does it in one transaction. MongoDB first marks the account
    /// as being deleted (from then on [`Accounts::account_exists`] is false
    /// and its username no longer logs in), then removes every other
    /// document naming it, the account document last; a crash in between
    /// leaves the mark, and [`Accounts::finish_deletions`] completes it.
    async fn delete_account(&self, user_id: Uuid) -> Result<bool>;

    /// Whether the account exists and is not being deleted: the gateway
    /// asks on every authenticated request, so a point read by id.
    async fn account_exists(&self, user_id: Uuid) -> Result<bool>;

    /// Completes the deletions a crash interrupted (MongoDB: the accounts
    /// still marked as being deleted); returns how many. Nothing to do on
    /// SQLite, which deletes in one transaction. The gateway's sweep calls
    /// it at start and at each interval.
    async fn finish_deletions(&self) -> Result<u64>;
}

/// Games: storing an upload (with its event and idempotency key) and reading
/// a user's games back.
#[async_trait]
pub trait Games: Send + Sync {
    /// Stores a game, its columns, its outbox entry and (with `idempotency`)
    /// the first answer under its key, all in one transaction, so that an
    /// accepted game always has its event. With a key seen before for this
    /// user, stores nothing and says what to answer.
    async fn submit_game(
        &self,
        game: NewGame,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<SubmitOutcome>;

    /// A user's game, with its metrics when processed. `None` if it does not
    /// exist or belongs to someone else. Stored values that cannot be read
    /// are shown as their fallbacks (crate documentation).
    async fn game(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<Game>>;

    /// A user's games, newest submission first, without metrics; at most
    /// `limit`, only those submitted before `before` (a game id) if given.
    /// A game whose id cannot be read is left out and the page filled from
    /// the games after it; other unreadable values show their fallbacks.
    async fn list_games(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Game>>;

    /// The samples of a user's game, exactly as stored, for its analysis.
    /// `None` if the game does not exist for that user;
    /// [`StoreError::Corrupt`] if its columns cannot be read back.
    async fn game_samples(&self, user_id: Uuid, game_id: Uuid) -> Result<Option<GameSamples>>;

    /// Every processed game of a user with its metrics (any order). A game
    /// whose metrics cannot be read is left out; one whose `started_at`
    /// cannot be read has its `submitted_at`.
    async fn processed_games(&self, user_id: Uuid) -> Result<Vec<ProcessedGame>>;

    /// Deletes the idempotency keys stored before `before`; returns how
    /// many. The gateway keeps keys for 24 h (`GatewayConfig::idempotency_ttl`), so a
    /// repeat within a day gets the first answer and the table stays
    /// bounded by a day of uploads.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64>;

    /// The games of a user started in `[from, to)`, any status, oldest
    /// first (for adherence). A game whose `started_at` cannot be read
    /// counts at its `submitted_at`.
    async fn activity(
        &self,
        user_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Activity>>;

    /// When the user's most recently started game started; `None` without
    /// games.
    async fn last_started_at(&self, user_id: Uuid) -> Result<Option<DateTime<Utc>>>;

    /// The games of `selection`, by game id, after `after` (a game id; from
    /// the first if `None`), at most `limit`: the keyset pages `m2m
    /// reprocess` walks. A game's version is its newest result's (1 when
    /// stored before versions, or unreadable); a `queued` game is never
    /// selected (its first event is still to come).
    async fn games_to_reprocess(
        &self,
        selection: &ReprocessSelection,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ReprocessTarget>>;

    /// How many games [`Games::games_to_reprocess`] would select in all:
    /// what `m2m reprocess` still waits for.
    async fn count_to_reprocess(&self, selection: &ReprocessSelection) -> Result<u64>;
}

/// Therapists and their patients: invite codes and the links they make
/// (docs/therapists.md).
#[async_trait]
pub trait Care: Send + Sync {
    /// Stores a therapist's invite if they have fewer than `max_open` open
    /// ones (unused, expiring after `invite.created_at`); otherwise stores
    /// nothing and says so. [`StoreError::Conflict`] if the code exists
    /// (the caller draws another).
    async fn create_invite(&self, invite: NewInvite, max_open: u32) -> Result<InviteOutcome>;

    /// Redeems `code` (canonical: 8 upper-case Crockford symbols) for
    /// `patient_id` at `now`, in one step:
    /// - an open code is marked used by the patient, and links them to its
    ///   therapist unless they are linked already (the existing link is
    ///   kept, with its first `linked_at`);
    /// - a code this patient redeemed before, while unexpired, links them
    ///   again if the link is gone, else returns it (idempotent);
    /// - otherwise [`RedeemOutcome::Used`], `Expired` or `Unknown`.
    async fn redeem_invite(
        &self,
        code: &str,
        patient_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<RedeemOutcome>;

    /// A patient's therapists, oldest link first.
    async fn therapists_of(&self, patient_id: Uuid) -> Result<Vec<TherapistLink>>;

    /// A therapist's patients, oldest link first.
    async fn patients_of(&self, therapist_id: Uuid) -> Result<Vec<PatientLink>>;

    /// When the therapist and the patient were linked; `None` if they are
    /// not.
    async fn linked_at(
        &self,
        therapist_id: Uuid,
        patient_id: Uuid,
    ) -> Result<Option<DateTime<Utc>>>;

    /// Removes a link; `false` if there was none.
    async fn unlink(&self, patient_id: Uuid, therapist_id: Uuid) -> Result<bool>;
}

/// An account as `/v1/me` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    /// The IANA time zone the user set, if any (UTC otherwise).
    pub tz: Option<String>,
}

/// One game as adherence counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub game_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// The game's duration: samples ÷ sample rate (0 if unreadable).
    pub active_seconds: f64,
}

/// A new invite code of a therapist.
#[derive(Debug, Clone)]
pub struct NewInvite {
    /// 8 upper-case Crockford base32 symbols.
    pub code: String,
    pub therapist_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What [`Care::create_invite`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteOutcome {
    Created,
    /// The therapist has `max_open` open codes already; nothing stored.
    TooManyOpen,
}

/// What [`Care::redeem_invite`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// The patient is linked (now or before) to the code's therapist.
    Linked(TherapistLink),
    Unknown,
    Used,
    Expired,
}

/// A patient's link to a therapist, as the patient sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TherapistLink {
    pub therapist_id: Uuid,
    pub username: String,
    pub linked_at: DateTime<Utc>,
}

/// A therapist's link to a patient, as the therapist sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientLink {
    pub patient_id: Uuid,
    pub username: String,
    pub linked_at: DateTime<Utc>,
}

/// The processing outbox: the events of stored games, until the bus has
/// confirmed them (the publisher's side of [`Games::submit_game`]).
#[async_trait]
pub trait Outbox: Send + Sync {
    /// One step of the gateway's publisher, in one transaction: records
    /// that the bus confirmed the events `published` (ids that are unknown
    /// or already marked are ignored), then claims up to `limit` events not
    /// yet published and not leased, oldest first, leasing them until
    /// `now + lease` so that other publishers skip them.
    ///
    /// An event whose stored `started_at` cannot be read carries the game's
    /// submission time. One that cannot be rebuilt at all is leased but not
    /// returned (a warning names it): it stays in the outbox, is tried again
    /// after its lease, and holds up no other.
    async fn advance_outbox(
        &self,
        published: &[Uuid],
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>>;

    /// Marks the events of games still `queued`, and the reprocessing
    /// events of games whose newest result is still below the event's
    /// version, as unpublished again. Used at startup with a bus that keeps
    /// nothing across restarts (the in-process one), so those games are
    /// processed after a crash. Returns how many were reset.
    async fn republish_unfinished(&self) -> Result<u64>;

    /// Number of events stored but not yet published.
    async fn unpublished_count(&self) -> Result<u64>;

    /// Stores the reprocessing events of `games` under algorithm version
    /// `version` in the outbox, for the publisher to publish like any
    /// other. Each is keyed by `m2m_domain::reprocessing_event_id(game,
    /// version)`: one there already and not yet published is left as it
    /// is; one already published is marked unpublished again, since the
    /// caller asks only for games still to do (its message was lost, or
    /// is still queued and will find its game done). A game that no longer
    /// exists is skipped. Returns how many were stored or marked.
    async fn enqueue_reprocessing(
        &self,
        games: &[ReprocessTarget],
        version: u32,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64>;
}

/// The per-user change feed: the results of processing, in the order they
/// were stored, read by cursor.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Saves a game's result and appends its change to the user's feed in
    /// one transaction, keyed by `event_id`: completing the same event again
    /// changes nothing and returns what was stored the first time.
    /// [`StoreError::NotFound`] if the game does not exist for that user or
    /// `event_id` is neither its event nor its reprocessing event of
    /// `algorithm_version` (a forged or stray event changes nothing).
    ///
    /// Results are versioned: every result stays in the feed (the game's
    /// history), and the game shows the newest version's. A game has one
    /// result per version: completing a second event of a version the game
    /// has a result of changes nothing and returns that result. A result of
    /// an older version than the game's newest is kept as history without
    /// replacing it. A reprocessing's change is `game.reprocessed`.
    async fn complete_game(&self, completion: Completion) -> Result<Completed>;

    /// The user's changes strictly after `since` (all if `None`), in cursor
    /// order, at most `limit`. [`StoreError::UnknownCursor`] if `since` is
    /// not a cursor of this user's feed. A change whose game id cannot be
    /// read is left out and the page filled from the changes after it.
    async fn changes_since(
        &self,
        user_id: Uuid,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Change>>;

    /// The cursor of the user's latest change, if any.
    async fn latest_cursor(&self, user_id: Uuid) -> Result<Option<String>>;
}

/// Whether the database can be used at all (for `/readyz`). Not part of any
/// one responsibility above: it asks about the connection they all share.
#[async_trait]
pub trait Health: Send + Sync {
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;
}

/// Which games an export takes ([`Export::export_games`]).
///
/// The range is on `started_at` (when the game was played, the same time
/// adherence counts), read by the rule of the crate documentation: a game
/// whose `started_at` cannot be read is placed at its `submitted_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Games started at or after this time (inclusive); all if `None`.
    pub started_from: Option<DateTime<Utc>>,
    /// Games started before this time (exclusive); all if `None`.
    pub started_before: Option<DateTime<Utc>>,
    /// Only the games of these users; every user's if empty.
    pub users: Vec<Uuid>,
}

impl ExportFilter {
    /// Whether a game started at `t` is in the range.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.started_from.is_none_or(|from| t >= from)
            && self.started_before.is_none_or(|before| t < before)
    }

    /// The text bounds of the range for a query over stored times:
    /// `Some(None)` for no range at all, `None` when the range is empty.
    pub(crate) fn text_range(&self) -> Option<Option<(String, String)>> {
        if self.started_from.is_none() && self.started_before.is_none() {
            return Some(None);
        }
        let from = self.started_from.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let to = self.started_before.unwrap_or(DateTime::<Utc>::MAX_UTC);
        format::text_range(from, to).map(Some)
    }
}

/// One game as the export reads it: the game with its metrics, and whose
/// it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedGame {
    pub user_id: Uuid,
    /// Every field by the rule of the crate documentation (fallbacks for
    /// what cannot be read), `metrics` included when stored.
    pub game: Game,
}

/// Reading every user's games for research (`m2m export`): a page at a
/// time, so an export of any size holds one page of metadata at once. The
/// samples of each game are read with [`Games::game_samples`].
#[async_trait]
pub trait Export: Send + Sync {
    /// The games the filter takes, in game id order (UUIDv7: about the
    /// order of submission), only those whose id is greater than `after`
    /// if given, at most `limit`. A game whose id or user id cannot be read
    /// is left out (logged) and the page filled from the games after it;
    /// other unreadable values show their fallbacks.
    async fn export_games(
        &self,
        filter: &ExportFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ExportedGame>>;
}
