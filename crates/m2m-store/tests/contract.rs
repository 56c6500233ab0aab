//! The contract of [`Store`], written once against `Arc<dyn Store>` and run
//! on every implementation.
//!
//! Each behaviour is an `async fn(Arc<dyn Store>)` (or, for the cases about
//! two processes, an `async fn(Arc<dyn Store>, Arc<dyn Store>)` given two
//! independently connected stores on the same data). The `contract!` macro
//! turns the lists of them into one `#[tokio::test]` each for a backend,
//! given a function that makes a fresh, empty store. Tests that only make
//! sense for one backend are in `mod sqlite_only` and `mod mongodb_only` at
//! the end.
//!
//! SQLite always runs. MongoDB is compiled in with the `mongodb` feature
//! (on by default) and runs when `M2M_TEST_MONGODB_URL` is set
//! (e.g. `mongodb://127.0.0.1:27017`): each test in a fresh database
//! `m2m_test_<uuid>` that it drops afterwards. Without the variable, each
//! MongoDB test prints `MongoDB contract not run: M2M_TEST_MONGODB_URL is
//! not set` and returns (libtest has no "skipped" outcome, so the line is
//! also written once straight to stderr, where `cargo test` shows it).

use chrono::{DateTime, Duration as TimeDelta, Utc};
use m2m_analysis::Metrics;
use m2m_domain::{
    decode_column, encode_column, GameStatus, GameSubmission, ProcessingEvent, Role, Username,
    PROCESSING_EVENT_VERSION,
};
#[cfg(feature = "mongodb")]
use m2m_store::{Accounts, MongoStore};
use m2m_store::{
    Activity, Completion, Digest, Games, IdempotencyRecord, InviteOutcome, NewGame, NewInvite,
    NewLogin, NewUser, Outbox, PatientLink, Profile, RedeemOutcome, RefreshOutcome, SqliteStore,
    Store, StoreError, SubmitOutcome, TherapistLink,
};
use m2m_synth::GameSpec;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Backends

/// A fresh store and whatever must outlive it (its temporary directory, or
/// the guard that drops its database).
struct Fixture {
    store: Arc<dyn Store>,
    /// A second store on the same data with its own connections, as a
    /// second process (another processor) would have.
    twin: Arc<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

async fn sqlite_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("m2m.db");
    let store = SqliteStore::open(&path).expect("open the store");
    let twin = SqliteStore::open(&path).expect("open the store again");
    Some(Fixture {
        store: Arc::new(store),
        twin: Arc::new(twin),
        _keep: Box::new(dir),
    })
}

/// Direct access to a store's data, bypassing the store: to put there what
/// an older version, a damaged file or a hand edit could have left.
enum Raw {
    Sqlite(std::path::PathBuf),
    #[cfg(feature = "mongodb")]
    Mongo(::mongodb::Database),
}

impl Raw {
    /// Sets the text field `field` of the row (document) of `table` whose
    /// `key` is `value`. SQLite's JSON columns and MongoDB's sub-documents
    /// both get the text as it is: unreadable either way.
    async fn set(&self, table: &str, key: &str, value: &str, field: &str, to: &str) {
        match self {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                // As a hand edit would, past the checks of the schema.
                conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
                let n = conn
                    .execute(
                        &format!("UPDATE {table} SET {field} = ?2 WHERE {key} = ?1"),
                        [value, to],
                    )
                    .unwrap();
                assert_eq!(n, 1, "{table}.{field} of {value}");
            }
            #[cfg(feature = "mongodb")]
            Raw::Mongo(db) => {
                let (collection, key) = match (table, key) {
                    ("games", "game_id") => ("games", "_id"),
                    ("users", "user_id") => ("users", "_id"),
                    ("game_columns", "game_id") => ("game_columns", "_id"),
                    ("game_columns", _) => panic!("by game_id"),
                    ("invites", "code") => ("invites", "_id"),
                    (other, key) => (other, key),
                };
                let n = db
                    .collection::<::mongodb::bson::Document>(collection)
                    .update_one(
                        ::mongodb::bson::doc! { key: value },
                        ::mongodb::bson::doc! { "$set": { field: to } },
                    )
                    .await
                    .unwrap();
                assert_eq!(n.matched_count, 1, "{table}.{field} of {value}");
            }
        }
    }

    /// Makes a stored game's event impossible to rebuild (an id it needs
    /// cannot be read), leaving the game itself readable.
    async fn damage_event(&self, game: &NewGame) {
        match self {
            Raw::Sqlite(_) => {
                let event = game.event_id.hyphenated().to_string();
                self.set("outbox", "event_id", &event, "user_id", "not-a-uuid")
                    .await
            }
            Raw::Mongo(_) => {
                let id = game.game_id.hyphenated().to_string();
                self.set("games", "game_id", &id, "event_id", "not-a-uuid")
                    .await
            }
        }
    }

    /// Makes the stored sensor columns of a game unreadable.
    async fn damage_columns(&self, game_id: Uuid) {
        let game = game_id.hyphenated().to_string();
        match self {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let n = conn
                    .execute(
                        "UPDATE game_columns SET data = x'ff00' WHERE game_id = ?1",
                        [&game],
                    )
                    .unwrap();
                assert!(n > 0);
            }
            #[cfg(feature = "mongodb")]
            Raw::Mongo(_) => {
                self.set("game_columns", "game_id", &game, "columns", "x")
                    .await
            }
        }
    }
}

async fn sqlite_raw_fixture() -> Option<(Fixture, Raw)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("m2m.db");
    let store = SqliteStore::open(&path).expect("open the store");
    let twin = SqliteStore::open(&path).expect("open the store again");
    let fixture = Fixture {
        store: Arc::new(store),
        twin: Arc::new(twin),
        _keep: Box::new(dir),
    };
    Some((fixture, Raw::Sqlite(path)))
}

#[cfg(feature = "mongodb")]
async fn mongodb_raw_fixture() -> Option<(Fixture, Raw)> {
    let (fixture, db) = mongodb_fixture_with_raw_access().await?;
    Some((fixture, Raw::Mongo(db)))
}

#[cfg(feature = "mongodb")]
const MONGODB_URL_VAR: &str = "M2M_TEST_MONGODB_URL";

#[cfg(feature = "mongodb")]
/// The MongoDB server to test against, if the run names one.
fn mongodb_url() -> Option<String> {
    let url = std::env::var(MONGODB_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty());
    if url.is_none() {
        let why = format!("MongoDB contract not run: {MONGODB_URL_VAR} is not set");
        println!("{why}");
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Straight to the process's stderr, past libtest's capture, so
            // a passing run shows that these tests ran nothing.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{why}");
        });
    }
    url
}

#[cfg(feature = "mongodb")]
async fn mongodb_fixture() -> Option<Fixture> {
    mongodb_fixture_with_raw_access()
        .await
        .map(|(fixture, _)| fixture)
}

#[cfg(feature = "mongodb")]
/// A MongoDB fixture and a driver handle on its database, for the tests
/// that play a crash by writing to the collections directly.
async fn mongodb_fixture_with_raw_access() -> Option<(Fixture, ::mongodb::Database)> {
    let url = mongodb_url()?;
    let database = format!("m2m_test_{}", Uuid::now_v7().simple());
    // Made first, so the database is dropped even if connecting fails half-way.
    let guard = DropDatabase {
        url: url.clone(),
        database: database.clone(),
    };
    let store = MongoStore::connect_database(&url, &database)
        .await
        .unwrap_or_else(|e| panic!("{MONGODB_URL_VAR}: {e}"));
    let twin = MongoStore::connect_database(&url, &database)
        .await
        .unwrap_or_else(|e| panic!("{MONGODB_URL_VAR}: {e}"));
    let raw = ::mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .database(&database);
    let fixture = Fixture {
        store: Arc::new(store),
        twin: Arc::new(twin),
        _keep: Box::new(guard),
    };
    Some((fixture, raw))
}

#[cfg(feature = "mongodb")]
/// Drops a test database when the test ends, passed or failed.
struct DropDatabase {
    url: String,
    database: String,
}

#[cfg(feature = "mongodb")]
impl Drop for DropDatabase {
    fn drop(&mut self) {
        // Dropping runs inside the test's runtime, which may be shutting
        // down: use a thread with a runtime and a client of its own.
        let (url, database) = (self.url.clone(), self.database.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = ::mongodb::Client::with_uri_str(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .database(&database)
                    .drop()
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.database),
            Err(_) => eprintln!("could not drop test database {}", self.database),
        }
    }
}

macro_rules! contract {
    ($backend:ident = $fixture:path, $raw_fixture:path;
     one: $($behaviour:ident),* $(,)?;
     two: $($pair:ident),* $(,)?;
     raw: $($damaged:ident),* $(,)?;
    ) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $damaged() {
                    let Some((fixture, raw)) = $raw_fixture().await else { return };
                    super::$damaged(Arc::clone(&fixture.store), raw).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    let Some(fixture) = $fixture().await else { return };
                    super::$behaviour(Arc::clone(&fixture.store)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $pair() {
                    let Some(fixture) = $fixture().await else { return };
                    super::$pair(Arc::clone(&fixture.store), Arc::clone(&fixture.twin)).await;
                }
            )*
            use std::sync::Arc;
        }
    };
}

macro_rules! contract_everywhere {
    ($($backend:ident = $fixture:path, $raw_fixture:path);* $(;)?) => {
        $(
            contract!($backend = $fixture, $raw_fixture;
                one:
                users_are_unique_ignoring_case,
                roles_read_back_and_default_to_patient,
                refresh_tokens_rotate,
                a_reused_refresh_token_revokes_its_login,
                expired_refresh_tokens_are_invalid,
                logout_revokes_the_login_from_a_current_or_spent_token,
                a_submitted_game_reads_back,
                games_list_newest_first_in_pages,
                idempotency_keys_replay_refuse_and_are_per_user,
                idempotency_keys_are_purged_by_age,
                many_uploads_at_once_are_all_stored_with_their_events,
                uploads_at_once_get_their_own_outcomes,
                outbox_entries_are_leased_until_published,
                a_stored_event_is_claimable_at_once,
                one_step_marks_the_confirmed_and_claims_the_next,
                game_samples_read_back_exactly_what_was_stored,
                outbox_claims_oldest_first_up_to_limit,
                published_events_are_marked_in_batches,
                republish_unfinished_resets_queued_games_only,
                completing_a_game_is_idempotent,
                a_failed_game_keeps_its_error,
                completing_another_users_game_is_not_found,
                processed_games_carry_their_metrics,
                the_change_feed_pages_by_cursor,
                unknown_cursors_are_refused,
                concurrent_completions_store_one_change,
                ping_answers,
                profiles_show_the_account_and_its_time_zone,
                open_invites_are_limited_per_therapist,
                redeeming_an_invite_links_once,
                a_removed_link_comes_back_only_with_its_unexpired_code,
                links_list_oldest_first_with_usernames,
                activity_counts_every_game_started_in_the_range,
                last_started_at_is_the_latest_start;
                two:
                two_processes_complete_the_same_event_once,
                two_processes_share_accounts_games_and_keys,
                invites_created_at_once_never_exceed_the_limit,
                a_code_redeemed_at_once_links_one_patient;
                raw:
                unreadable_values_read_as_their_fallbacks,
                unreadable_care_values_read_as_their_fallbacks,
                rows_without_a_readable_id_are_skipped_not_fatal,
                an_event_that_cannot_be_rebuilt_holds_up_no_other,
                unreadable_samples_are_corrupt_not_absent,
                an_unreadable_role_reads_as_patient;
            );
        )*
    };
}

contract_everywhere!(
    sqlite = super::sqlite_fixture, super::sqlite_raw_fixture;
);
#[cfg(feature = "mongodb")]
contract_everywhere!(
    mongodb = super::mongodb_fixture, super::mongodb_raw_fixture;
);

// ---------------------------------------------------------------------------
// Helpers

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("a valid time")
        .with_timezone(&Utc)
}

/// A time with a fractional part at the precision every store keeps.
fn t0() -> DateTime<Utc> {
    at("2026-11-27T10:00:00.123456Z")
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

fn digest(n: u8) -> Digest {
    [n; 32]
}

/// A short realistic game, optionally with the phone's `started_at`.
fn submission(seed: u64, started_at: Option<&str>) -> GameSubmission {
    let spec = GameSpec {
        duration_s: 3.0,
        seed,
        ..GameSpec::standard()
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&spec.submission_json("pinch-garden", 1234.0)).unwrap();
    if let Some(t) = started_at {
        json["started_at"] = serde_json::Value::String(t.to_owned());
    }
    GameSubmission::from_json(json.to_string().as_bytes()).expect("a valid game")
}

fn new_game(user_id: Uuid, submission: GameSubmission, submitted_at: DateTime<Utc>) -> NewGame {
    NewGame {
        game_id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        user_id,
        submission,
        submitted_at,
        trace_id: format!("trace-{}", Uuid::now_v7().simple()),
    }
}

async fn create_user(store: &dyn Store, name: &str) -> Uuid {
    let user_id = Uuid::now_v7();
    store
        .create_user(NewUser {
            user_id,
            username: Username::parse(name).unwrap(),
            password_hash: format!("$argon2id$hash-of-{name}"),
            role: Role::default(),
            created_at: t0(),
        })
        .await
        .unwrap();
    user_id
}

/// Stores a queued game for `user_id` and returns what was stored.
async fn submit(
    store: &dyn Store,
    user_id: Uuid,
    seed: u64,
    submitted_at: DateTime<Utc>,
) -> NewGame {
    let game = new_game(user_id, submission(seed, None), submitted_at);
    let outcome = store.submit_game(game.clone(), None).await.unwrap();
    assert_eq!(outcome, SubmitOutcome::Created);
    game
}

fn processed(game: &NewGame, processed_at: DateTime<Utc>) -> Completion {
    Completion {
        event_id: game.event_id,
        reconciliation_event_id: Uuid::now_v7(),
        game_id: game.game_id,
        user_id: game.user_id,
        status: GameStatus::Processed,
        processed_at,
        metrics: Some(game.submission.analyze()),
        error: None,
        algorithm_version: 1,
    }
}

/// Metrics equal up to the last bits of their floats (a store may keep
/// them as JSON text, whose parsing is not always bit-exact).
fn assert_same_metrics(a: &Metrics, b: &Metrics) {
    fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
            }
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            (V::Array(x), V::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(v, w)| close(v, w))
            }
            _ => a == b,
        }
    }
    let (ja, jb) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    assert!(close(&ja, &jb), "metrics differ:\n{ja}\n{jb}");
}

// ---------------------------------------------------------------------------
// Accounts

async fn users_are_unique_ignoring_case(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "Ada.Lovelace").await;
    let found = store
        .user_by_username(&Username::parse("ADA.lovelace").unwrap())
        .await
        .unwrap()
        .expect("found ignoring case");
    assert_eq!(found.user_id, ada);
    assert_eq!(found.username, "Ada.Lovelace", "spelled as registered");
    assert_eq!(found.password_hash, "$argon2id$hash-of-Ada.Lovelace");

    let again = store
        .create_user(NewUser {
            user_id: Uuid::now_v7(),
            username: Username::parse("ada.LOVELACE").unwrap(),
            password_hash: "other".into(),
            role: Role::Patient,
            created_at: t0(),
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    assert!(store
        .user_by_username(&Username::parse("grace").unwrap())
        .await
        .unwrap()
        .is_none());
    create_user(&*store, "grace").await;
}

async fn roles_read_back_and_default_to_patient(store: Arc<dyn Store>) {
    let lookup = |name: &str| {
        let store = store.clone();
        let name = Username::parse(name).unwrap();
        async move { store.user_by_username(&name).await.unwrap().unwrap() }
    };
    // `create_user` makes accounts with the default role.
    let ada = create_user(&*store, "ada").await;
    let found = lookup("ada").await;
    assert_eq!((found.user_id, found.role), (ada, Role::Patient));

    let therapist = Uuid::now_v7();
    store
        .create_user(NewUser {
            user_id: therapist,
            username: Username::parse("Dr.Grace").unwrap(),
            password_hash: "hash".into(),
            role: Role::Therapist,
            created_at: t0(),
        })
        .await
        .unwrap();
    let found = lookup("dr.grace").await;
    assert_eq!((found.user_id, found.role), (therapist, Role::Therapist));
    // A refresh says the role too, for the new access token.
    login(&*store, therapist, digest(1), t0() + secs(3600)).await;
    assert!(matches!(
        store
            .rotate_refresh_token(digest(1), digest(2), t0() + secs(60), t0() + secs(3600))
            .await
            .unwrap(),
        RefreshOutcome::Rotated { user_id, role: Role::Therapist, .. } if user_id == therapist
    ));
    // The other account is unchanged.
    assert_eq!(lookup("ada").await.role, Role::Patient);
}

async fn login(store: &dyn Store, user_id: Uuid, token: Digest, expires_at: DateTime<Utc>) -> Uuid {
    let login_id = Uuid::now_v7();
    store
        .create_login(NewLogin {
            login_id,
            user_id,
            token_hash: token,
            created_at: t0(),
            expires_at,
        })
        .await
        .unwrap();
    login_id
}

async fn refresh_tokens_rotate(store: Arc<dyn Store>) {
    let user_id = create_user(&*store, "ada").await;
    let exp = t0() + secs(3600);
    let login_id = login(&*store, user_id, digest(1), exp).await;
    let rotated = RefreshOutcome::Rotated {
        user_id,
        login_id,
        role: Role::Patient,
    };

    let now = t0() + secs(60);
    assert_eq!(
        store
            .rotate_refresh_token(digest(1), digest(2), now, exp)
            .await
            .unwrap(),
        rotated
    );
    assert_eq!(
        store
            .rotate_refresh_token(digest(2), digest(3), now, exp)
            .await
            .unwrap(),
        rotated
    );
    assert_eq!(
        store
            .rotate_refresh_token(digest(9), digest(10), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid,
        "unknown token"
    );
    // A second login of the same user is an independent chain.
    let other = login(&*store, user_id, digest(20), exp).await;
    assert_ne!(other, login_id);
    assert_eq!(
        store
            .rotate_refresh_token(digest(20), digest(21), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Rotated {
            user_id,
            login_id: other,
            role: Role::Patient,
        }
    );
    assert_eq!(
        store
            .rotate_refresh_token(digest(3), digest(4), now, exp)
            .await
            .unwrap(),
        rotated
    );
}

async fn a_reused_refresh_token_revokes_its_login(store: Arc<dyn Store>) {
    let user_id = create_user(&*store, "ada").await;
    let exp = t0() + secs(3600);
    login(&*store, user_id, digest(1), exp).await;
    let other = login(&*store, user_id, digest(50), exp).await;
    let now = t0() + secs(60);
    assert!(matches!(
        store
            .rotate_refresh_token(digest(1), digest(2), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { .. }
    ));
    // The thief (or the victim) presents the rotated-out token.
    assert_eq!(
        store
            .rotate_refresh_token(digest(1), digest(3), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Reused
    );
    // The whole login is gone: the newest token too, and the old one now.
    assert_eq!(
        store
            .rotate_refresh_token(digest(2), digest(4), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh_token(digest(1), digest(5), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // Nothing was stored for the refused rotations.
    assert_eq!(
        store
            .rotate_refresh_token(digest(3), digest(6), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // The user's other login is untouched.
    assert_eq!(
        store
            .rotate_refresh_token(digest(50), digest(51), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Rotated {
            user_id,
            login_id: other,
            role: Role::Patient,
        }
    );
}

async fn expired_refresh_tokens_are_invalid(store: Arc<dyn Store>) {
    let user_id = create_user(&*store, "ada").await;
    let exp = t0() + secs(3600);
    login(&*store, user_id, digest(1), exp).await;
    assert_eq!(
        store
            .rotate_refresh_token(digest(1), digest(2), exp, exp + secs(3600))
            .await
            .unwrap(),
        RefreshOutcome::Invalid,
        "valid until, not at, expires_at"
    );
    // The rotated token gets the expiry given at rotation.
    let now = t0() + secs(10);
    let next_exp = now + secs(60);
    assert!(matches!(
        store
            .rotate_refresh_token(digest(1), digest(2), now, next_exp)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { .. }
    ));
    assert_eq!(
        store
            .rotate_refresh_token(digest(2), digest(3), next_exp + secs(1), exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert!(matches!(
        store
            .rotate_refresh_token(digest(2), digest(3), next_exp - secs(1), exp)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { .. }
    ));
}

async fn logout_revokes_the_login_from_a_current_or_spent_token(store: Arc<dyn Store>) {
    let user_id = create_user(&*store, "ada").await;
    let exp = t0() + secs(3600);
    let now = t0() + secs(60);

    login(&*store, user_id, digest(1), exp).await;
    assert!(store.revoke_login(digest(1), now).await.unwrap());
    assert_eq!(
        store
            .rotate_refresh_token(digest(1), digest(2), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert!(
        store.revoke_login(digest(1), now).await.unwrap(),
        "logging out twice still finds the login"
    );

    login(&*store, user_id, digest(10), exp).await;
    assert!(matches!(
        store
            .rotate_refresh_token(digest(10), digest(11), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Rotated { .. }
    ));
    assert!(
        store.revoke_login(digest(10), now).await.unwrap(),
        "by a spent token"
    );
    assert_eq!(
        store
            .rotate_refresh_token(digest(11), digest(12), now, exp)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );

    assert!(!store.revoke_login(digest(99), now).await.unwrap());
}

// ---------------------------------------------------------------------------
// Games

async fn a_submitted_game_reads_back(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;

    let game = submit(&*store, ada, 1, t0()).await;
    let got = store
        .game(ada, game.game_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(got.game_id, game.game_id);
    assert_eq!(got.status, GameStatus::Queued);
    assert_eq!(got.game, "pinch-garden");
    assert_eq!(got.score, 1234.0);
    assert_eq!(got.started_at, t0(), "defaults to the submission time");
    assert_eq!(got.submitted_at, t0());
    assert_eq!(got.processed_at, None);
    assert_eq!(got.device.as_ref(), game.submission.device());
    assert!(got.device.is_some());
    assert_eq!(got.sample_rate_hz, 100.0);
    assert_eq!(got.samples, 300);
    let names: Vec<&str> = game.submission.channels().names().collect();
    assert_eq!(got.channels, names);
    assert_eq!(got.channels.len(), 16);
    assert_eq!(got.metrics, None);
    assert_eq!(got.error, None);

    // The phone's own started_at (any offset) is kept, in UTC.
    let played = new_game(
        ada,
        submission(2, Some("2026-11-27T09:00:00.5+01:00")),
        t0() + secs(1),
    );
    store.submit_game(played.clone(), None).await.unwrap();
    let got = store.game(ada, played.game_id).await.unwrap().unwrap();
    assert_eq!(got.started_at, at("2026-11-27T08:00:00.5Z"));
    assert_eq!(got.submitted_at, t0() + secs(1));

    assert!(
        store.game(grace, game.game_id).await.unwrap().is_none(),
        "not yours"
    );
    assert!(store.game(ada, Uuid::now_v7()).await.unwrap().is_none());

    // The same ids again are a conflict, not a second game.
    let dup = store.submit_game(game.clone(), None).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
}

async fn games_list_newest_first_in_pages(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&*store, ada, i, t0() + secs(i as i64)).await.game_id);
        submit(&*store, grace, 100 + i, t0()).await;
    }
    ids.sort();
    ids.reverse();

    let all = store.list_games(ada, None, 100).await.unwrap();
    assert_eq!(all.iter().map(|g| g.game_id).collect::<Vec<_>>(), ids);
    assert!(all.iter().all(|g| g.status == GameStatus::Queued));

    let page1 = store.list_games(ada, None, 2).await.unwrap();
    assert_eq!(
        page1.iter().map(|g| g.game_id).collect::<Vec<_>>(),
        ids[..2]
    );
    let page2 = store.list_games(ada, Some(ids[1]), 2).await.unwrap();
    assert_eq!(
        page2.iter().map(|g| g.game_id).collect::<Vec<_>>(),
        ids[2..4]
    );
    let page3 = store.list_games(ada, Some(ids[3]), 2).await.unwrap();
    assert_eq!(
        page3.iter().map(|g| g.game_id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(store
        .list_games(ada, Some(ids[4]), 2)
        .await
        .unwrap()
        .is_empty());

    // Processed games are listed without their metrics.
    let newest = store.game(ada, ids[0]).await.unwrap().unwrap();
    let event_id = store
        .advance_outbox(&[], t0() + secs(3600), Duration::from_secs(60), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event.game_id == newest.game_id)
        .unwrap()
        .event
        .event_id;
    store
        .complete_game(Completion {
            event_id,
            reconciliation_event_id: Uuid::now_v7(),
            game_id: newest.game_id,
            user_id: ada,
            status: GameStatus::Processed,
            processed_at: t0() + secs(100),
            metrics: Some(submission(4, None).analyze()),
            error: None,
            algorithm_version: 1,
        })
        .await
        .unwrap();
    let listed = store.list_games(ada, None, 1).await.unwrap();
    assert_eq!(listed[0].status, GameStatus::Processed);
    assert_eq!(listed[0].processed_at, Some(t0() + secs(100)));
    assert_eq!(listed[0].metrics, None);
    assert!(store
        .game(ada, ids[0])
        .await
        .unwrap()
        .unwrap()
        .metrics
        .is_some());
}

async fn idempotency_keys_replay_refuse_and_are_per_user(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let record = |hash: u8, body: &str| IdempotencyRecord {
        key: "phone-42:game-7".into(),
        request_hash: digest(hash),
        status: 202,
        body: body.as_bytes().to_vec(),
    };

    let first = new_game(ada, submission(1, None), t0());
    assert_eq!(
        store
            .submit_game(first.clone(), Some(record(1, "first")))
            .await
            .unwrap(),
        SubmitOutcome::Created
    );
    // The retry carries new ids (the gateway makes them per request).
    let retry = new_game(ada, submission(1, None), t0() + secs(5));
    assert_eq!(
        store
            .submit_game(retry.clone(), Some(record(1, "second")))
            .await
            .unwrap(),
        SubmitOutcome::Replayed {
            status: 202,
            body: b"first".to_vec()
        }
    );
    let different = new_game(ada, submission(2, None), t0() + secs(6));
    assert_eq!(
        store
            .submit_game(different.clone(), Some(record(2, "third")))
            .await
            .unwrap(),
        SubmitOutcome::KeyReused
    );
    for nothing in [&retry, &different] {
        assert!(store.game(ada, nothing.game_id).await.unwrap().is_none());
    }
    assert_eq!(store.list_games(ada, None, 100).await.unwrap().len(), 1);
    assert_eq!(store.unpublished_count().await.unwrap(), 1);

    // Keys are scoped to the user.
    let graces = new_game(grace, submission(2, None), t0());
    assert_eq!(
        store
            .submit_game(graces.clone(), Some(record(2, "grace")))
            .await
            .unwrap(),
        SubmitOutcome::Created
    );
    assert!(store.game(grace, graces.game_id).await.unwrap().is_some());
    assert_eq!(store.unpublished_count().await.unwrap(), 2);

    // Without a key, the same body is simply another game.
    let keyless = new_game(ada, submission(1, None), t0() + secs(7));
    assert_eq!(
        store.submit_game(keyless, None).await.unwrap(),
        SubmitOutcome::Created
    );
    assert_eq!(store.list_games(ada, None, 100).await.unwrap().len(), 2);
}

async fn idempotency_keys_are_purged_by_age(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let record = |key: &str| IdempotencyRecord {
        key: key.into(),
        request_hash: digest(1),
        status: 202,
        body: b"first".to_vec(),
    };
    let old = new_game(ada, submission(1, None), t0());
    store.submit_game(old, Some(record("old"))).await.unwrap();
    let recent = new_game(ada, submission(1, None), t0() + secs(25 * 3600));
    store
        .submit_game(recent, Some(record("recent")))
        .await
        .unwrap();

    let purged = store
        .purge_idempotency_keys(t0() + secs(3600))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    // The purged key is free again: the same key is a new game ...
    let again = new_game(ada, submission(1, None), t0() + secs(26 * 3600));
    assert_eq!(
        store
            .submit_game(again.clone(), Some(record("old")))
            .await
            .unwrap(),
        SubmitOutcome::Created
    );
    // ... the recent one still answers its first answer, and no game is
    // lost with the keys.
    let retry = new_game(ada, submission(1, None), t0() + secs(26 * 3600));
    assert!(matches!(
        store
            .submit_game(retry, Some(record("recent")))
            .await
            .unwrap(),
        SubmitOutcome::Replayed { .. }
    ));
    assert_eq!(store.list_games(ada, None, 100).await.unwrap().len(), 3);
    assert_eq!(
        store
            .purge_idempotency_keys(t0() + secs(3600))
            .await
            .unwrap(),
        0
    );
}

/// Submits every game at once, each from its own task, as concurrent
/// requests do; the outcomes in the order of `games`.
async fn submit_at_once(
    store: &Arc<dyn Store>,
    games: &[(NewGame, Option<IdempotencyRecord>)],
) -> Vec<Result<SubmitOutcome, StoreError>> {
    let tasks: Vec<_> = games
        .iter()
        .cloned()
        .map(|(game, key)| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.submit_game(game, key).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("the task ran"));
    }
    outcomes
}

async fn many_uploads_at_once_are_all_stored_with_their_events(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let games: Vec<(NewGame, Option<IdempotencyRecord>)> = (0..64)
        .map(|i| {
            let user = if i % 2 == 0 { ada } else { grace };
            let game = new_game(user, submission(i, None), t0() + secs(i as i64));
            (game, None)
        })
        .collect();
    for outcome in submit_at_once(&store, &games).await {
        assert_eq!(outcome.unwrap(), SubmitOutcome::Created);
    }
    for (game, _) in &games {
        let stored = store.game(game.user_id, game.game_id).await.unwrap();
        assert_eq!(stored.expect("stored").submitted_at, game.submitted_at);
        let samples = store
            .game_samples(game.user_id, game.game_id)
            .await
            .unwrap();
        let samples = samples.expect("its columns");
        assert_eq!(samples.score, game.submission.score());
        let sent = game.submission.channels();
        for (name, column) in sent.iter() {
            let stored = decode_column(&encode_column(column)).unwrap();
            assert_eq!(samples.channels.get(name).unwrap(), stored.as_slice());
        }
    }
    assert_eq!(store.list_games(ada, None, 100).await.unwrap().len(), 32);
    assert_eq!(store.list_games(grace, None, 100).await.unwrap().len(), 32);
    assert_eq!(store.unpublished_count().await.unwrap(), 64);
    let lease = Duration::from_secs(60);
    let claimed = store
        .advance_outbox(&[], t0() + secs(3600), lease, 100)
        .await
        .unwrap();
    let mut events: Vec<(Uuid, Uuid)> = claimed
        .iter()
        .map(|c| (c.event.event_id, c.event.game_id))
        .collect();
    let mut expected: Vec<(Uuid, Uuid)> =
        games.iter().map(|(g, _)| (g.event_id, g.game_id)).collect();
    events.sort();
    expected.sort();
    assert_eq!(events, expected, "one event for each game");
}

async fn uploads_at_once_get_their_own_outcomes(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let record = |key: &str, hash: u8, body: &str| {
        Some(IdempotencyRecord {
            key: key.into(),
            request_hash: digest(hash),
            status: 202,
            body: body.as_bytes().to_vec(),
        })
    };
    let stored = submit(&*store, ada, 1, t0()).await;
    let earlier = new_game(ada, submission(2, None), t0());
    store
        .submit_game(earlier, record("earlier", 2, "earlier"))
        .await
        .unwrap();

    let games = vec![
        (new_game(ada, submission(3, None), t0() + secs(1)), None),
        // An earlier key with another body.
        (
            new_game(ada, submission(4, None), t0() + secs(1)),
            record("earlier", 4, "other"),
        ),
        // The same ids as a stored game: an error for this one only.
        (stored.clone(), None),
        // One key sent three times at once with one body: one game.
        (
            new_game(ada, submission(5, None), t0() + secs(1)),
            record("retried", 5, "try 1"),
        ),
        (
            new_game(ada, submission(5, None), t0() + secs(1)),
            record("retried", 5, "try 2"),
        ),
        (
            new_game(ada, submission(5, None), t0() + secs(1)),
            record("retried", 5, "try 3"),
        ),
        (new_game(ada, submission(6, None), t0() + secs(1)), None),
    ];
    let outcomes = submit_at_once(&store, &games).await;
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().unwrap();
    assert_eq!(next().unwrap(), SubmitOutcome::Created);
    assert_eq!(next().unwrap(), SubmitOutcome::KeyReused);
    let dup = next();
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let retried: Vec<SubmitOutcome> = (0..3).map(|_| next().unwrap()).collect();
    assert_eq!(next().unwrap(), SubmitOutcome::Created);

    // The first of the three to commit is the game; the others replay its
    // answer.
    let created: Vec<usize> = (0..3)
        .filter(|&i| retried[i] == SubmitOutcome::Created)
        .collect();
    assert_eq!(created.len(), 1, "{retried:?}");
    let first = created[0];
    let body = format!("try {}", first + 1).into_bytes();
    for (i, outcome) in retried.iter().enumerate().filter(|&(i, _)| i != first) {
        assert_eq!(
            outcome,
            &SubmitOutcome::Replayed {
                status: 202,
                body: body.clone()
            },
            "try {}",
            i + 1
        );
    }
    for (i, (game, _)) in games.iter().enumerate() {
        let kept = match i {
            0 | 6 => true,
            1 => false,
            2 => continue,
            _ => i - 3 == first,
        };
        assert_eq!(
            store.game(ada, game.game_id).await.unwrap().is_some(),
            kept,
            "game {i}"
        );
    }
    // The two stored before, the two new ones and the retried one.
    assert_eq!(store.list_games(ada, None, 100).await.unwrap().len(), 5);
    assert_eq!(store.unpublished_count().await.unwrap(), 5);
}

// ---------------------------------------------------------------------------
// Outbox

async fn a_stored_event_is_claimable_at_once(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = new_game(ada, submission(3, None), t0());
    store.submit_game(game.clone(), None).await.unwrap();
    let lease = Duration::from_secs(60);
    // No lease at submission: the publisher claims it in its next step.
    let claimed = store.advance_outbox(&[], t0(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event.event_id, game.event_id);
    // A published event stays published, whenever it is claimed.
    store
        .advance_outbox(&[game.event_id], t0() + secs(2), lease, 10)
        .await
        .unwrap();
    assert!(store
        .advance_outbox(&[], t0() + secs(500), lease, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.unpublished_count().await.unwrap(), 0);
}

async fn outbox_entries_are_leased_until_published(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = new_game(ada, submission(3, Some("2026-11-27T09:59:00.25Z")), t0());
    store.submit_game(game.clone(), None).await.unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 1);
    let lease = Duration::from_secs(60);

    // The event as the gateway describes the game: ids and description,
    // no samples.
    let t1 = t0() + secs(1);
    let claimed = store.advance_outbox(&[], t1, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let expected = ProcessingEvent::new(
        game.event_id,
        game.game_id,
        game.user_id,
        game.submitted_at,
        &game.submission,
    );
    assert_eq!(claimed[0].event, expected);
    assert_eq!(claimed[0].event.version, PROCESSING_EVENT_VERSION);
    assert_eq!(
        claimed[0].event.game.started_at,
        at("2026-11-27T09:59:00.25Z")
    );
    assert_eq!(claimed[0].trace_id, game.trace_id);

    // Leased to that publisher: another one skips it until the lease ends.
    assert!(store
        .advance_outbox(&[], t1 + secs(59), lease, 10)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .advance_outbox(&[], t1 + secs(61), lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event, expected);
    assert_eq!(
        store.unpublished_count().await.unwrap(),
        1,
        "claimed is not published"
    );

    store
        .advance_outbox(&[game.event_id], t1 + secs(62), Duration::ZERO, 0)
        .await
        .unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 0);
    assert!(store
        .advance_outbox(&[], t1 + secs(100_000), lease, 10)
        .await
        .unwrap()
        .is_empty());
    // A repeated confirm, or one of an unknown event, changes nothing.
    store
        .advance_outbox(&[game.event_id, Uuid::now_v7()], t1 + secs(63), lease, 0)
        .await
        .unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 0);
    assert!(store
        .advance_outbox(&[], t1, lease, 0)
        .await
        .unwrap()
        .is_empty());
}

async fn one_step_marks_the_confirmed_and_claims_the_next(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let games = [
        submit(&*store, ada, 1, t0()).await,
        submit(&*store, ada, 2, t0() + secs(1)).await,
        submit(&*store, ada, 3, t0() + secs(2)).await,
    ];
    let lease = Duration::from_secs(60);
    let now = t0() + secs(10);
    let first = store.advance_outbox(&[], now, lease, 1).await.unwrap();
    assert_eq!(first[0].event.event_id, games[0].event_id);
    // The first confirmed, the next two claimed, in one step.
    let next = store
        .advance_outbox(&[games[0].event_id], now, lease, 5)
        .await
        .unwrap();
    let ids: Vec<Uuid> = next.iter().map(|e| e.event.event_id).collect();
    assert_eq!(ids, [games[1].event_id, games[2].event_id]);
    assert_eq!(store.unpublished_count().await.unwrap(), 2);
}

async fn game_samples_read_back_exactly_what_was_stored(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let game = submit(&*store, ada, 4, t0()).await;
    let samples = store
        .game_samples(ada, game.game_id)
        .await
        .unwrap()
        .expect("the owner's game");
    assert_eq!(samples.sample_rate_hz, game.submission.sample_rate_hz());
    assert_eq!(samples.score, game.submission.score());
    let sent = game.submission.channels();
    assert_eq!(
        samples.channels.names().collect::<Vec<_>>(),
        sent.names().collect::<Vec<_>>()
    );
    for (name, column) in sent.iter() {
        // The stored form, decoded: what the analysis of this game reads.
        let stored = decode_column(&encode_column(column)).unwrap();
        assert_eq!(
            samples.channels.get(name).unwrap(),
            stored.as_slice(),
            "{name}"
        );
    }
    // Another user's game, or none at all, has no samples to read.
    assert!(store
        .game_samples(grace, game.game_id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .game_samples(ada, Uuid::now_v7())
        .await
        .unwrap()
        .is_none());
}

/// A stored role this version does not know (a newer version's, or a hand
/// edit) reads as `patient`, the role with the fewest rights, and the
/// account still logs in.
async fn an_unreadable_role_reads_as_patient(store: Arc<dyn Store>, raw: Raw) {
    let user_id = Uuid::now_v7();
    store
        .create_user(NewUser {
            user_id,
            username: Username::parse("grace").unwrap(),
            password_hash: "hash".into(),
            role: Role::Therapist,
            created_at: t0(),
        })
        .await
        .unwrap();
    let id = user_id.hyphenated().to_string();
    raw.set("users", "user_id", &id, "role", "Admin").await;
    let found = store
        .user_by_username(&Username::parse("grace").unwrap())
        .await
        .unwrap()
        .expect("still found");
    assert_eq!((found.user_id, found.role), (user_id, Role::Patient));
    assert_eq!(found.password_hash, "hash");
}

async fn unreadable_samples_are_corrupt_not_absent(store: Arc<dyn Store>, raw: Raw) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 5, t0()).await;
    raw.damage_columns(game.game_id).await;
    assert!(matches!(
        store.game_samples(ada, game.game_id).await,
        Err(StoreError::Corrupt { .. })
    ));
    // The game itself still reads.
    assert!(store.game(ada, game.game_id).await.unwrap().is_some());
}

async fn outbox_claims_oldest_first_up_to_limit(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    // Submitted out of id order: the outbox orders by submission time.
    let second = submit(&*store, ada, 1, t0() + secs(2)).await;
    let first = submit(&*store, grace, 2, t0() + secs(1)).await;
    let third = submit(&*store, ada, 3, t0() + secs(3)).await;
    let later = t0() + secs(3600);
    let lease = Duration::from_secs(60);

    let batch = store.advance_outbox(&[], later, lease, 2).await.unwrap();
    let ids: Vec<Uuid> = batch.iter().map(|e| e.event.event_id).collect();
    assert_eq!(ids, [first.event_id, second.event_id]);
    assert_eq!(batch[0].event.user_id, grace);
    let rest = store.advance_outbox(&[], later, lease, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event.event_id, third.event_id);
    assert!(store
        .advance_outbox(&[], later, lease, 2)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.unpublished_count().await.unwrap(), 3);
}

async fn published_events_are_marked_in_batches(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let games = [
        submit(&*store, ada, 1, t0()).await,
        submit(&*store, ada, 2, t0() + secs(1)).await,
        submit(&*store, ada, 3, t0() + secs(2)).await,
    ];
    let now = t0() + secs(3600);
    store
        .advance_outbox(&[], now, Duration::ZERO, 0)
        .await
        .unwrap();
    store
        .advance_outbox(
            &[games[0].event_id, games[2].event_id],
            now,
            Duration::ZERO,
            0,
        )
        .await
        .unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 1);
    let left = store
        .advance_outbox(&[], now, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.event_id, games[1].event_id);
    // Repeats and unknown events are harmless.
    store
        .advance_outbox(
            &[games[0].event_id, games[1].event_id, Uuid::now_v7()],
            now,
            Duration::ZERO,
            0,
        )
        .await
        .unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 0);
}

async fn republish_unfinished_resets_queued_games_only(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let published = submit(&*store, ada, 1, t0()).await;
    let leased = submit(&*store, ada, 2, t0() + secs(1)).await;
    let done = submit(&*store, ada, 3, t0() + secs(2)).await;
    let lease = Duration::from_secs(600);
    let now = t0() + secs(60);
    assert_eq!(
        store
            .advance_outbox(&[], now, lease, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    store
        .advance_outbox(&[published.event_id], now, Duration::ZERO, 0)
        .await
        .unwrap();
    store
        .advance_outbox(&[done.event_id], now, Duration::ZERO, 0)
        .await
        .unwrap();
    store.complete_game(processed(&done, now)).await.unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 1);

    // A restart with a bus that kept nothing: both queued games go again,
    // at once (no lease), the processed one does not.
    assert_eq!(store.republish_unfinished().await.unwrap(), 2);
    assert_eq!(store.unpublished_count().await.unwrap(), 2);
    let again = store.advance_outbox(&[], now, lease, 10).await.unwrap();
    let ids: Vec<Uuid> = again.iter().map(|e| e.event.event_id).collect();
    assert_eq!(ids, [published.event_id, leased.event_id]);
}

// ---------------------------------------------------------------------------
// Completion and the change feed

async fn completing_a_game_is_idempotent(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    let completion = processed(&game, t0() + secs(5));
    let metrics = completion.metrics.clone().unwrap();

    let first = store.complete_game(completion.clone()).await.unwrap();
    assert!(first.first);
    assert_eq!(first.change.game_id, game.game_id);
    assert_eq!(first.change.status, GameStatus::Processed);
    assert_eq!(first.change.processed_at, Some(t0() + secs(5)));
    assert_same_metrics(first.change.metrics.as_ref().unwrap(), &metrics);
    assert_eq!(
        first.reconciliation_event_id,
        completion.reconciliation_event_id
    );
    assert_eq!(first.error, None);

    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.status, GameStatus::Processed);
    assert_eq!(stored.processed_at, Some(t0() + secs(5)));
    assert_same_metrics(stored.metrics.as_ref().unwrap(), &metrics);
    assert_eq!(stored.metrics, first.change.metrics);

    // A redelivery, processed again later with a new reconciliation id:
    // nothing changes, and the first result comes back.
    let redelivered = Completion {
        reconciliation_event_id: Uuid::now_v7(),
        processed_at: t0() + secs(500),
        status: GameStatus::Failed,
        metrics: None,
        error: Some("should not be stored".into()),
        ..completion
    };
    let second = store.complete_game(redelivered).await.unwrap();
    assert!(!second.first);
    assert_eq!(second.change, first.change);
    assert_eq!(
        second.reconciliation_event_id,
        first.reconciliation_event_id
    );
    assert_eq!(second.error, None);
    assert_eq!(
        store.game(ada, game.game_id).await.unwrap().unwrap(),
        stored
    );

    let feed = store.changes_since(ada, None, 100).await.unwrap();
    assert_eq!(feed, std::slice::from_ref(&first.change));
    assert_eq!(
        store.latest_cursor(ada).await.unwrap(),
        Some(first.change.cursor)
    );
}

async fn a_failed_game_keeps_its_error(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    let failed = Completion {
        status: GameStatus::Failed,
        metrics: None,
        error: Some("the flexion channels are constant".into()),
        ..processed(&game, t0() + secs(5))
    };
    let first = store.complete_game(failed.clone()).await.unwrap();
    assert!(first.first);
    assert_eq!(first.change.status, GameStatus::Failed);
    assert_eq!(first.change.metrics, None);
    assert_eq!(first.error, failed.error);

    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.status, GameStatus::Failed);
    assert_eq!(stored.error, failed.error);
    assert_eq!(stored.metrics, None);
    assert_eq!(stored.processed_at, Some(t0() + secs(5)));
    let listed = store.list_games(ada, None, 10).await.unwrap();
    assert_eq!(listed[0].error, failed.error);

    let again = store.complete_game(failed.clone()).await.unwrap();
    assert!(!again.first);
    assert_eq!(again.error, failed.error);
    assert!(store.processed_games(ada).await.unwrap().is_empty());
}

async fn completing_another_users_game_is_not_found(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let game = submit(&*store, ada, 1, t0()).await;

    let stolen = Completion {
        user_id: grace,
        ..processed(&game, t0() + secs(5))
    };
    assert!(matches!(
        store.complete_game(stolen).await,
        Err(StoreError::NotFound)
    ));
    let unknown = Completion {
        event_id: Uuid::now_v7(),
        game_id: Uuid::now_v7(),
        ..processed(&game, t0() + secs(5))
    };
    assert!(matches!(
        store.complete_game(unknown).await,
        Err(StoreError::NotFound)
    ));
    // The right game with an event that is not its own: refused too.
    let forged = Completion {
        event_id: Uuid::now_v7(),
        ..processed(&game, t0() + secs(5))
    };
    assert!(matches!(
        store.complete_game(forged).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.game(ada, game.game_id).await.unwrap().unwrap().status,
        GameStatus::Queued
    );
    assert!(store
        .changes_since(grace, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.changes_since(ada, None, 10).await.unwrap().is_empty());
    assert_eq!(store.latest_cursor(ada).await.unwrap(), None);

    // The refusal stored nothing: the real completion still comes first.
    assert!(
        store
            .complete_game(processed(&game, t0() + secs(6)))
            .await
            .unwrap()
            .first
    );
}

async fn processed_games_carry_their_metrics(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let one = new_game(ada, submission(1, Some("2026-11-20T08:00:00Z")), t0());
    store.submit_game(one.clone(), None).await.unwrap();
    let two = submit(&*store, ada, 2, t0() + secs(1)).await;
    let failed = submit(&*store, ada, 3, t0() + secs(2)).await;
    let queued = submit(&*store, ada, 4, t0() + secs(3)).await;
    let graces = submit(&*store, grace, 5, t0()).await;
    assert!(store.processed_games(ada).await.unwrap().is_empty());

    for game in [&one, &two, &graces] {
        store
            .complete_game(processed(game, t0() + secs(10)))
            .await
            .unwrap();
    }
    store
        .complete_game(Completion {
            status: GameStatus::Failed,
            metrics: None,
            error: Some("bad glove".into()),
            ..processed(&failed, t0() + secs(10))
        })
        .await
        .unwrap();

    let mut games = store.processed_games(ada).await.unwrap();
    games.sort_by_key(|g| g.game_id);
    let ids: Vec<Uuid> = games.iter().map(|g| g.game_id).collect();
    let mut expected = vec![one.game_id, two.game_id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&queued.game_id));
    for g in &games {
        let (source, started) = if g.game_id == one.game_id {
            (&one, at("2026-11-20T08:00:00Z"))
        } else {
            (&two, t0() + secs(1))
        };
        assert_eq!(g.started_at, started);
        assert_same_metrics(&g.metrics, &source.submission.analyze());
    }
}

async fn the_change_feed_pages_by_cursor(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    assert_eq!(store.latest_cursor(ada).await.unwrap(), None);
    assert!(store
        .changes_since(ada, None, 100)
        .await
        .unwrap()
        .is_empty());

    let mut games = Vec::new();
    for i in 0..4 {
        games.push(submit(&*store, ada, i, t0() + secs(i as i64)).await);
    }
    let graces = submit(&*store, grace, 9, t0()).await;
    // Completed in another order than submitted: the feed is in completion order.
    let mut expected = Vec::new();
    for (k, i) in [2, 0, 3, 1].into_iter().enumerate() {
        let done = store
            .complete_game(processed(&games[i], t0() + secs(100 + k as i64)))
            .await
            .unwrap();
        expected.push(done.change);
        if k == 1 {
            store
                .complete_game(processed(&graces, t0() + secs(100)))
                .await
                .unwrap();
        }
    }

    let all = store.changes_since(ada, None, 100).await.unwrap();
    assert_eq!(all, expected);
    assert_eq!(
        all.iter().map(|c| c.game_id).collect::<Vec<_>>(),
        [2, 0, 3, 1].map(|i| games[i].game_id)
    );
    assert_eq!(
        store.latest_cursor(ada).await.unwrap().as_deref(),
        Some(expected[3].cursor.as_str())
    );

    // Strictly after `since`, at most `limit`.
    let first_two = store.changes_since(ada, None, 2).await.unwrap();
    assert_eq!(first_two, expected[..2]);
    let next = store
        .changes_since(ada, Some(&first_two[1].cursor), 2)
        .await
        .unwrap();
    assert_eq!(next, expected[2..]);
    let one = store
        .changes_since(ada, Some(&expected[0].cursor), 1)
        .await
        .unwrap();
    assert_eq!(one, expected[1..2]);
    assert!(store
        .changes_since(ada, Some(&expected[3].cursor), 100)
        .await
        .unwrap()
        .is_empty());

    // Grace's feed has only her change.
    let hers = store.changes_since(grace, None, 100).await.unwrap();
    assert_eq!(hers.len(), 1);
    assert_eq!(hers[0].game_id, graces.game_id);
    assert_eq!(
        store.latest_cursor(grace).await.unwrap(),
        Some(hers[0].cursor.clone())
    );
}

// ---------------------------------------------------------------------------
// Stored data that cannot be read

/// The time a UUIDv7 id carries.
fn id_time(id: Uuid) -> DateTime<Utc> {
    let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
    DateTime::from_timestamp(secs as i64, nanos).unwrap()
}

/// What the old code stored for a `started_at` whose UTC year is outside
/// 0000–9999 (chrono writes the year with a sign there).
const YEAR_MINUS_1: &str = "-0001-12-31T23:00:00.000000Z";
const YEAR_10000: &str = "+10000-01-01T00:00:59.000000Z";

async fn unreadable_values_read_as_their_fallbacks(store: Arc<dyn Store>, raw: Raw) {
    let ada = create_user(&*store, "ada").await;
    let old = new_game(ada, submission(1, Some("2026-01-01T00:00:00Z")), t0());
    store.submit_game(old.clone(), None).await.unwrap();
    let later = submit(&*store, ada, 2, t0() + secs(1)).await;
    let queued = submit(&*store, ada, 3, t0() + secs(2)).await;
    for game in [&old, &later] {
        store
            .complete_game(processed(game, t0() + secs(10)))
            .await
            .unwrap();
    }
    store
        .advance_outbox(&[old.event_id, later.event_id], t0(), Duration::ZERO, 0)
        .await
        .unwrap();
    let ids = |g: &NewGame| g.game_id.hyphenated().to_string();
    // started_at as the old code wrote it; everything of `later` at once.
    raw.set("games", "game_id", &ids(&old), "started_at", YEAR_MINUS_1)
        .await;
    for (field, to) in [
        ("started_at", YEAR_10000),
        ("submitted_at", "yesterday"),
        ("processed_at", "0000-13-01T00:00:00.000000Z"),
        ("device", "{\"glove_id\": "),
        ("metrics", "[1, 2"),
        ("channels", "flex"),
    ] {
        raw.set("games", "game_id", &ids(&later), field, to).await;
    }
    raw.set("games", "game_id", &ids(&queued), "started_at", YEAR_10000)
        .await;
    raw.set("games", "game_id", &ids(&queued), "device", "[")
        .await;
    raw.set("changes", "game_id", &ids(&old), "processed_at", "soon")
        .await;
    raw.set("changes", "game_id", &ids(&later), "metrics", "{")
        .await;

    // The game whose started_at cannot be read: played when submitted.
    let got = store.game(ada, old.game_id).await.unwrap().unwrap();
    assert_eq!(got.started_at, t0());
    assert_eq!(got.submitted_at, t0());
    assert_eq!(got.status, GameStatus::Processed);
    assert!(got.metrics.is_some());

    // Nothing of `later` reads: every field has its fallback.
    let got = store.game(ada, later.game_id).await.unwrap().unwrap();
    assert_eq!(got.submitted_at, id_time(later.game_id), "the id's time");
    assert_eq!(got.started_at, got.submitted_at);
    assert_eq!(got.processed_at, None);
    assert_eq!(got.device, None);
    assert_eq!(got.metrics, None);
    assert!(got.channels.is_empty());
    assert_eq!(got.status, GameStatus::Processed, "what was readable stays");
    assert_eq!(got.score, 1234.0);

    // A listing shows every game, in pages as usual.
    let all = store.list_games(ada, None, 10).await.unwrap();
    let mut expected = vec![old.game_id, later.game_id, queued.game_id];
    expected.sort();
    expected.reverse();
    assert_eq!(all.iter().map(|g| g.game_id).collect::<Vec<_>>(), expected);
    let page = store.list_games(ada, Some(expected[0]), 1).await.unwrap();
    assert_eq!(page[0].game_id, expected[1]);

    // Progress: `later` has no readable metrics and is left out.
    let progress = store.processed_games(ada).await.unwrap();
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].game_id, old.game_id);
    assert_eq!(progress[0].started_at, t0());

    // The feed: both changes, without what cannot be read.
    let changes = store.changes_since(ada, None, 10).await.unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].game_id, old.game_id);
    assert_eq!(changes[0].processed_at, None);
    assert!(changes[0].metrics.is_some());
    assert_eq!(changes[1].game_id, later.game_id);
    assert_eq!(changes[1].processed_at, Some(t0() + secs(10)));
    assert_eq!(changes[1].metrics, None);
    // A redelivery of a completed event still gets its stored change.
    let again = store
        .complete_game(processed(&old, t0() + secs(20)))
        .await
        .unwrap();
    assert!(!again.first);
    assert_eq!(again.change, changes[0]);

    // The queued game's event is rebuilt with its submission time.
    let claimed = store
        .advance_outbox(&[], t0() + secs(3600), Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let event = &claimed[0].event;
    assert_eq!(event.game_id, queued.game_id);
    assert_eq!(event.game.started_at, t0() + secs(2));
    assert_eq!(event.game.device, None);
}

async fn rows_without_a_readable_id_are_skipped_not_fatal(store: Arc<dyn Store>, raw: Raw) {
    let ada = create_user(&*store, "ada").await;
    let mut games = Vec::new();
    for i in 0..3 {
        let game = submit(&*store, ada, i, t0() + secs(i as i64)).await;
        store
            .complete_game(processed(&game, t0() + secs(10)))
            .await
            .unwrap();
        games.push(game);
    }
    // The first two changes name no game that can be read (each its own
    // unreadable text: a change is unique by game and algorithm version).
    for (i, game) in games[..2].iter().enumerate() {
        let id = game.game_id.hyphenated().to_string();
        raw.set(
            "changes",
            "game_id",
            &id,
            "game_id",
            &format!("not-a-uuid-{i}"),
        )
        .await;
    }
    // A page is filled past them, so a client never takes them for the end.
    let page = store.changes_since(ada, None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].game_id, games[2].game_id);
    assert!(store
        .changes_since(ada, Some(&page[0].cursor), 10)
        .await
        .unwrap()
        .is_empty());
    let latest = store.latest_cursor(ada).await.unwrap();
    assert_eq!(latest.as_deref(), Some(page[0].cursor.as_str()));
}

async fn an_event_that_cannot_be_rebuilt_holds_up_no_other(store: Arc<dyn Store>, raw: Raw) {
    let ada = create_user(&*store, "ada").await;
    let broken = submit(&*store, ada, 1, t0()).await;
    let healthy = submit(&*store, ada, 2, t0() + secs(1)).await;
    raw.damage_event(&broken).await;
    let now = t0() + secs(3600);
    let lease = Duration::from_secs(60);

    let claimed = store.advance_outbox(&[], now, lease, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|e| e.event.game_id).collect::<Vec<_>>(),
        [healthy.game_id]
    );
    // The broken one is kept, leased like the others, and tried again
    // after its lease.
    assert_eq!(store.unpublished_count().await.unwrap(), 2);
    assert!(store
        .advance_outbox(&[], now + secs(1), lease, 10)
        .await
        .unwrap()
        .is_empty());
    let retried = store
        .advance_outbox(&[], now + secs(61), lease, 10)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1, "the healthy one, unpublished still");
    assert_eq!(retried[0].event.game_id, healthy.game_id);
    // Its game still reads.
    assert!(store.game(ada, broken.game_id).await.unwrap().is_some());
}

async fn unknown_cursors_are_refused(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let game = submit(&*store, ada, 1, t0()).await;
    let graces = submit(&*store, grace, 2, t0()).await;
    let mine = store.complete_game(processed(&game, t0())).await.unwrap();
    let hers = store.complete_game(processed(&graces, t0())).await.unwrap();

    let mut bad: Vec<String> = ["", "zzz", "not a cursor", "0", "-1", "ffffffffffffffff"]
        .map(String::from)
        .to_vec();
    bad.push(format!("{}x", mine.change.cursor));
    bad.push(mine.change.cursor.to_uppercase() + "0");
    bad.push(hers.change.cursor.clone());
    for cursor in &bad {
        let got = store.changes_since(ada, Some(cursor), 10).await;
        assert!(
            matches!(got, Err(StoreError::UnknownCursor)),
            "{cursor:?}: {got:?}"
        );
    }
    assert!(store
        .changes_since(ada, Some(&mine.change.cursor), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_completions_store_one_change(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let mut games = Vec::new();
    for i in 0..8 {
        games.push(submit(&*store, ada, i, t0()).await);
    }
    for game in &games {
        // Two workers got the same delivery; each made its own result.
        let a = processed(game, t0() + secs(10));
        let b = Completion {
            reconciliation_event_id: Uuid::now_v7(),
            processed_at: t0() + secs(11),
            ..a.clone()
        };
        let (sa, sb) = (Arc::clone(&store), Arc::clone(&store));
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.complete_game(a).await }),
            tokio::spawn(async move { sb.complete_game(b).await }),
        );
        let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert!(ra.first != rb.first, "exactly one was first");
        assert_eq!(ra.change, rb.change);
        assert_eq!(ra.reconciliation_event_id, rb.reconciliation_event_id);
    }
    let feed = store.changes_since(ada, None, 100).await.unwrap();
    assert_eq!(feed.len(), games.len(), "one change per event");
}

/// Two processors (two stores with their own connections on the same data)
/// finishing the same events at the same time: one result per event, one
/// feed entry per event, and the game holds that one result.
async fn two_processes_complete_the_same_event_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let ada = create_user(&*a, "ada").await;
    let mut games = Vec::new();
    for i in 0..8 {
        games.push(submit(&*a, ada, i, t0()).await);
    }
    let mut tasks = Vec::new();
    for game in &games {
        let ca = processed(game, t0() + secs(10));
        let cb = Completion {
            reconciliation_event_id: Uuid::now_v7(),
            processed_at: t0() + secs(11),
            ..ca.clone()
        };
        let (sa, sb) = (Arc::clone(&a), Arc::clone(&b));
        tasks.push(tokio::spawn(async move {
            let (ra, rb) = tokio::join!(sa.complete_game(ca), sb.complete_game(cb));
            (ra.unwrap(), rb.unwrap())
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        let (ra, rb) = task.await.unwrap();
        assert!(ra.first != rb.first, "exactly one was first");
        assert_eq!(ra.change, rb.change);
        assert_eq!(ra.reconciliation_event_id, rb.reconciliation_event_id);
        results.push(ra);
    }
    for store in [&a, &b] {
        let feed = store.changes_since(ada, None, 100).await.unwrap();
        assert_eq!(feed.len(), 8, "one change per event");
        let mut ids: Vec<Uuid> = feed.iter().map(|c| c.game_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 8, "no event twice");
        let mut cursors: Vec<&str> = feed.iter().map(|c| c.cursor.as_str()).collect();
        cursors.dedup();
        assert_eq!(cursors.len(), 8, "no position twice");
    }
    // What one process wrote, the other reads: the one stored result.
    for done in &results {
        let g = b.game(ada, done.change.game_id).await.unwrap().unwrap();
        assert_eq!(g.status, GameStatus::Processed);
        assert_eq!(g.processed_at, done.change.processed_at);
        assert_eq!(g.metrics, done.change.metrics);
    }
    // A later redelivery to either process changes nothing.
    let again = b
        .complete_game(processed(&games[0], t0() + secs(99)))
        .await
        .unwrap();
    assert!(!again.first);
    assert_eq!(again.change, results[0].change);
}

/// Two gateways (two stores on the same data) racing on the same account,
/// refresh token and idempotency key.
async fn two_processes_share_accounts_games_and_keys(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    // The same username registered through both at once: one account.
    let new_user = |name: &str| NewUser {
        user_id: Uuid::now_v7(),
        username: Username::parse(name).unwrap(),
        password_hash: "hash".into(),
        role: Role::Patient,
        created_at: t0(),
    };
    let (ra, rb) = tokio::join!(
        a.create_user(new_user("Ada")),
        b.create_user(new_user("ada"))
    );
    assert!(
        ra.is_ok() != rb.is_ok(),
        "exactly one account: {ra:?} {rb:?}"
    );
    assert!(matches!(
        ra.err().or(rb.err()),
        Some(StoreError::Conflict(_))
    ));
    let ada = b
        .user_by_username(&Username::parse("ADA").unwrap())
        .await
        .unwrap()
        .unwrap()
        .user_id;

    // The same refresh token presented to both at once: one rotation, and
    // the other is a reuse that revokes the login.
    let exp = t0() + secs(3600);
    let now = t0() + secs(60);
    login(&*a, ada, digest(1), exp).await;
    let (ra, rb) = tokio::join!(
        a.rotate_refresh_token(digest(1), digest(2), now, exp),
        b.rotate_refresh_token(digest(1), digest(3), now, exp),
    );
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, RefreshOutcome::Reused));
    assert!(
        matches!(
            outcomes,
            [RefreshOutcome::Rotated { .. }, RefreshOutcome::Reused]
        ),
        "{outcomes:?}"
    );
    for token in [digest(2), digest(3)] {
        assert_eq!(
            a.rotate_refresh_token(token, digest(9), now, exp)
                .await
                .unwrap(),
            RefreshOutcome::Invalid
        );
    }

    // The phone retried the same upload on another gateway at once: one
    // game, and both answers are the first one.
    let record = |body: &str| IdempotencyRecord {
        key: "phone-42:game-7".into(),
        request_hash: digest(7),
        status: 202,
        body: body.as_bytes().to_vec(),
    };
    for round in 0..4 {
        let key = |body: &str| IdempotencyRecord {
            key: format!("phone-42:game-{round}"),
            ..record(body)
        };
        let (ga, gb) = (
            new_game(ada, submission(round, None), t0()),
            new_game(ada, submission(round, None), t0()),
        );
        let (ra, rb) = tokio::join!(
            a.submit_game(ga.clone(), Some(key("from a"))),
            b.submit_game(gb.clone(), Some(key("from b"))),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let (created, first_body) = match (&ra, &rb) {
            (SubmitOutcome::Created, SubmitOutcome::Replayed { body, .. }) => (&ga, body),
            (SubmitOutcome::Replayed { body, .. }, SubmitOutcome::Created) => (&gb, body),
            other => panic!("expected one Created and one Replayed: {other:?}"),
        };
        let expected: &[u8] = if created.game_id == ga.game_id {
            b"from a"
        } else {
            b"from b"
        };
        assert_eq!(first_body.as_slice(), expected);
        assert!(a.game(ada, created.game_id).await.unwrap().is_some());
    }
    assert_eq!(a.list_games(ada, None, 100).await.unwrap().len(), 4);
    assert_eq!(b.unpublished_count().await.unwrap(), 4);
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let ada = create_user(&*store, "ada").await;
    submit(&*store, ada, 1, t0()).await;
    store.ping().await.unwrap();
}

// ---------------------------------------------------------------------------
// Therapists: profiles, invites, links and activity

/// As the gateway uses them (docs/therapists.md).
const MAX_OPEN_INVITES: u32 = 20;
const INVITE_HOURS: i64 = 72;

fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

async fn create_therapist(store: &dyn Store, name: &str) -> Uuid {
    let user_id = Uuid::now_v7();
    store
        .create_user(NewUser {
            user_id,
            username: Username::parse(name).unwrap(),
            password_hash: format!("$argon2id$hash-of-{name}"),
            role: Role::Therapist,
            created_at: t0(),
        })
        .await
        .unwrap();
    user_id
}

/// The `n`th invite code of a test: 8 symbols of Crockford's alphabet.
fn code(n: u32) -> String {
    format!("C{n:07}")
}

fn new_invite(therapist_id: Uuid, code: &str, created_at: DateTime<Utc>) -> NewInvite {
    NewInvite {
        code: code.to_owned(),
        therapist_id,
        created_at,
        expires_at: created_at + hours(INVITE_HOURS),
    }
}

/// Stores an invite of `therapist_id`, which must be created.
async fn invite(
    store: &dyn Store,
    therapist_id: Uuid,
    n: u32,
    created_at: DateTime<Utc>,
) -> String {
    let code = code(n);
    let outcome = store
        .create_invite(
            new_invite(therapist_id, &code, created_at),
            MAX_OPEN_INVITES,
        )
        .await
        .unwrap();
    assert_eq!(outcome, InviteOutcome::Created, "{code}");
    code
}

/// Redeems a code that must link, and returns the link.
async fn redeem(
    store: &dyn Store,
    code: &str,
    patient_id: Uuid,
    now: DateTime<Utc>,
) -> TherapistLink {
    match store.redeem_invite(code, patient_id, now).await.unwrap() {
        RedeemOutcome::Linked(link) => link,
        other => panic!("{code}: {other:?}"),
    }
}

/// A game of `duration_s` seconds, optionally with the phone's `started_at`.
fn game_lasting(seed: u64, started_at: Option<&str>, duration_s: f64) -> GameSubmission {
    let spec = GameSpec {
        duration_s,
        seed,
        ..GameSpec::standard()
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&spec.submission_json("pinch-garden", 10.0)).unwrap();
    if let Some(t) = started_at {
        json["started_at"] = serde_json::Value::String(t.to_owned());
    }
    GameSubmission::from_json(json.to_string().as_bytes()).expect("a valid game")
}

/// Stores a game started at `started_at` (if given) and submitted at
/// `submitted_at`.
async fn play(
    store: &dyn Store,
    user_id: Uuid,
    started_at: Option<&str>,
    duration_s: f64,
    submitted_at: DateTime<Utc>,
) -> NewGame {
    let game = new_game(
        user_id,
        game_lasting(duration_s as u64, started_at, duration_s),
        submitted_at,
    );
    let outcome = store.submit_game(game.clone(), None).await.unwrap();
    assert_eq!(outcome, SubmitOutcome::Created);
    game
}

/// What `activity` must say of a game started at `started_at`.
fn activity_of(game: &NewGame, started_at: DateTime<Utc>) -> Activity {
    let s = &game.submission;
    Activity {
        game_id: game.game_id,
        started_at,
        active_seconds: s.channels().samples() as f64 / s.sample_rate_hz(),
    }
}

async fn profiles_show_the_account_and_its_time_zone(store: Arc<dyn Store>) {
    assert_eq!(store.profile(Uuid::now_v7()).await.unwrap(), None);
    let ada = create_user(&*store, "Ada.Lovelace").await;
    let grace = create_therapist(&*store, "Dr.Grace").await;
    let profile = |user_id: Uuid| {
        let store = Arc::clone(&store);
        async move { store.profile(user_id).await.unwrap().expect("a profile") }
    };
    assert_eq!(
        profile(ada).await,
        Profile {
            user_id: ada,
            username: "Ada.Lovelace".into(),
            role: Role::Patient,
            tz: None,
        }
    );
    assert!(store.set_time_zone(ada, "Europe/Zurich").await.unwrap());
    assert_eq!(profile(ada).await.tz.as_deref(), Some("Europe/Zurich"));
    assert!(store.set_time_zone(ada, "America/New_York").await.unwrap());
    assert_eq!(profile(ada).await.tz.as_deref(), Some("America/New_York"));
    // Only that account, and nothing else of it, changed.
    assert_eq!(
        profile(grace).await,
        Profile {
            user_id: grace,
            username: "Dr.Grace".into(),
            role: Role::Therapist,
            tz: None,
        }
    );
    let login = store
        .user_by_username(&Username::parse("ada.lovelace").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.password_hash, "$argon2id$hash-of-Ada.Lovelace");
    // No such account: nothing stored.
    let nobody = Uuid::now_v7();
    assert!(!store.set_time_zone(nobody, "UTC").await.unwrap());
    assert_eq!(store.profile(nobody).await.unwrap(), None);
}

async fn open_invites_are_limited_per_therapist(store: Arc<dyn Store>) {
    let grace = create_therapist(&*store, "Dr.Grace").await;
    let alan = create_therapist(&*store, "Dr.Alan").await;
    let ada = create_user(&*store, "ada").await;
    for n in 0..MAX_OPEN_INVITES {
        invite(&*store, grace, n, t0() + secs(n.into())).await;
    }
    let create = |code: String, therapist_id: Uuid, created_at: DateTime<Utc>| {
        let store = Arc::clone(&store);
        async move {
            store
                .create_invite(
                    new_invite(therapist_id, &code, created_at),
                    MAX_OPEN_INVITES,
                )
                .await
        }
    };
    // The 21st is refused, and not stored.
    let refused = create(code(20), grace, t0() + secs(30)).await.unwrap();
    assert_eq!(refused, InviteOutcome::TooManyOpen);
    assert_eq!(
        store
            .redeem_invite(&code(20), ada, t0() + secs(60))
            .await
            .unwrap(),
        RedeemOutcome::Unknown
    );
    // Each therapist has a limit of their own.
    invite(&*store, alan, 100, t0() + secs(30)).await;
    // A used code is not open: room for one more, and one only.
    redeem(&*store, &code(0), ada, t0() + secs(60)).await;
    invite(&*store, grace, 21, t0() + secs(70)).await;
    let refused = create(code(22), grace, t0() + secs(71)).await.unwrap();
    assert_eq!(refused, InviteOutcome::TooManyOpen);
    // Nor is an expired one: code 1 expires when code 23 is made.
    let later = t0() + secs(1) + hours(INVITE_HOURS);
    invite(&*store, grace, 23, later).await;
    let refused = create(code(24), grace, later).await.unwrap();
    assert_eq!(refused, InviteOutcome::TooManyOpen);
    // A code that exists (any therapist's) is a conflict; the caller draws
    // another.
    let taken = create(code(2), alan, t0() + secs(80)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let link = redeem(&*store, &code(2), ada, t0() + secs(90)).await;
    assert_eq!(link.therapist_id, grace, "the first one stays");
}

async fn redeeming_an_invite_links_once(store: Arc<dyn Store>) {
    let grace = create_therapist(&*store, "Dr.Grace").await;
    let ada = create_user(&*store, "ada").await;
    let bob = create_user(&*store, "Bob").await;
    let first = invite(&*store, grace, 1, t0()).await;
    let second = invite(&*store, grace, 2, t0() + secs(10)).await;
    let unused = invite(&*store, grace, 3, t0()).await;
    let last_minute = invite(&*store, grace, 4, t0()).await;
    let expiry = t0() + hours(INVITE_HOURS);

    assert_eq!(
        store.redeem_invite("ZZZZZZZZ", ada, t0()).await.unwrap(),
        RedeemOutcome::Unknown
    );
    let linked = redeem(&*store, &first, ada, t0() + secs(60)).await;
    assert_eq!(
        linked,
        TherapistLink {
            therapist_id: grace,
            username: "Dr.Grace".into(),
            linked_at: t0() + secs(60),
        }
    );
    // The same code again: the same link, even once the code has expired.
    assert_eq!(
        redeem(&*store, &first, ada, t0() + secs(3600)).await,
        linked
    );
    assert_eq!(
        redeem(&*store, &first, ada, expiry + hours(1)).await,
        linked
    );
    // Another code of the same therapist: the first link, and the code is
    // spent.
    assert_eq!(
        redeem(&*store, &second, ada, t0() + secs(7200)).await,
        linked
    );
    for code in [&first, &second] {
        assert_eq!(
            store
                .redeem_invite(code, bob, t0() + secs(7300))
                .await
                .unwrap(),
            RedeemOutcome::Used,
            "{code}"
        );
    }
    // A code not redeemed within its 72 hours has expired, from its expiry
    // on; until then it links.
    for now in [expiry, expiry + hours(1)] {
        assert_eq!(
            store.redeem_invite(&unused, bob, now).await.unwrap(),
            RedeemOutcome::Expired
        );
    }
    let bobs = redeem(&*store, &last_minute, bob, expiry - secs(1)).await;
    assert_eq!(bobs.linked_at, expiry - secs(1));

    assert_eq!(
        store.therapists_of(ada).await.unwrap(),
        std::slice::from_ref(&linked)
    );
    assert_eq!(
        store.therapists_of(bob).await.unwrap(),
        std::slice::from_ref(&bobs)
    );
    assert_eq!(
        store.patients_of(grace).await.unwrap(),
        [
            PatientLink {
                patient_id: ada,
                username: "ada".into(),
                linked_at: linked.linked_at,
            },
            PatientLink {
                patient_id: bob,
                username: "Bob".into(),
                linked_at: bobs.linked_at,
            },
        ]
    );
}

async fn a_removed_link_comes_back_only_with_its_unexpired_code(store: Arc<dyn Store>) {
    let grace = create_therapist(&*store, "Dr.Grace").await;
    let ada = create_user(&*store, "ada").await;
    let bob = create_user(&*store, "bob").await;
    let code = invite(&*store, grace, 1, t0()).await;
    let expiry = t0() + hours(INVITE_HOURS);

    redeem(&*store, &code, ada, t0() + secs(60)).await;
    assert_eq!(
        store.linked_at(grace, ada).await.unwrap(),
        Some(t0() + secs(60))
    );
    assert!(store.unlink(ada, grace).await.unwrap());
    assert!(!store.unlink(ada, grace).await.unwrap(), "gone already");
    assert_eq!(store.linked_at(grace, ada).await.unwrap(), None);
    assert!(store.therapists_of(ada).await.unwrap().is_empty());
    assert!(store.patients_of(grace).await.unwrap().is_empty());

    // Within the code's 72 hours, the patient who redeemed it links again:
    // a new link. Nobody else can.
    let again = redeem(&*store, &code, ada, t0() + secs(3600)).await;
    assert_eq!(again.linked_at, t0() + secs(3600));
    assert_eq!(store.therapists_of(ada).await.unwrap(), [again]);
    assert_eq!(
        store
            .redeem_invite(&code, bob, t0() + secs(3601))
            .await
            .unwrap(),
        RedeemOutcome::Used
    );
    // After them, the code is used.
    assert!(store.unlink(ada, grace).await.unwrap());
    assert_eq!(
        store.redeem_invite(&code, ada, expiry).await.unwrap(),
        RedeemOutcome::Used
    );
    assert_eq!(store.linked_at(grace, ada).await.unwrap(), None);
}

async fn links_list_oldest_first_with_usernames(store: Arc<dyn Store>) {
    // Made in this order, so ids sort the other way from the links.
    let grace = create_therapist(&*store, "Dr.Grace").await;
    let alan = create_therapist(&*store, "Dr.Alan").await;
    let ada = create_user(&*store, "Ada").await;
    let bob = create_user(&*store, "bob").await;
    let cy = create_user(&*store, "Cyd").await;
    let mut n = 0;
    let mut link = |therapist_id: Uuid, patient_id: Uuid, at: i64| {
        n += 1;
        let store = Arc::clone(&store);
        async move {
            let code = invite(&*store, therapist_id, n, t0()).await;
            redeem(&*store, &code, patient_id, t0() + secs(at)).await
        }
    };
    link(grace, bob, 30).await;
    link(grace, ada, 20).await;
    link(alan, ada, 10).await;
    link(grace, cy, 5).await;

    let patient = |patient_id: Uuid, username: &str, at: i64| PatientLink {
        patient_id,
        username: username.into(),
        linked_at: t0() + secs(at),
    };
    let therapist = |therapist_id: Uuid, username: &str, at: i64| TherapistLink {
        therapist_id,
        username: username.into(),
        linked_at: t0() + secs(at),
    };
    assert_eq!(
        store.therapists_of(ada).await.unwrap(),
        [
            therapist(alan, "Dr.Alan", 10),
            therapist(grace, "Dr.Grace", 20)
        ]
    );
    assert_eq!(
        store.patients_of(grace).await.unwrap(),
        [
            patient(cy, "Cyd", 5),
            patient(ada, "Ada", 20),
            patient(bob, "bob", 30)
        ]
    );
    assert_eq!(
        store.patients_of(alan).await.unwrap(),
        [patient(ada, "Ada", 10)]
    );
    assert!(
        store.patients_of(ada).await.unwrap().is_empty(),
        "not a therapist"
    );
    assert_eq!(
        store.linked_at(grace, ada).await.unwrap(),
        Some(t0() + secs(20))
    );
    assert_eq!(
        store.linked_at(ada, grace).await.unwrap(),
        None,
        "the other way"
    );
    assert_eq!(store.linked_at(alan, bob).await.unwrap(), None);

    // Removing one link leaves the others.
    assert!(store.unlink(ada, grace).await.unwrap());
    assert!(!store.unlink(bob, alan).await.unwrap(), "never linked");
    assert_eq!(
        store.therapists_of(ada).await.unwrap(),
        [therapist(alan, "Dr.Alan", 10)]
    );
    assert_eq!(
        store.patients_of(grace).await.unwrap(),
        [patient(cy, "Cyd", 5), patient(bob, "bob", 30)]
    );
    assert_eq!(
        store.patients_of(alan).await.unwrap(),
        [patient(ada, "Ada", 10)]
    );
}

async fn activity_counts_every_game_started_in_the_range(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let from = at("2026-11-27T00:00:00Z");
    let to = at("2026-11-28T00:00:00Z");
    let later = at("2026-11-29T00:00:00Z");
    // Submitted in another order than they were played.
    let failed = play(&*store, ada, Some("2026-11-27T18:30:00Z"), 4.0, later).await;
    let before = play(
        &*store,
        ada,
        Some("2026-11-26T23:59:59.999999Z"),
        3.0,
        later,
    )
    .await;
    let at_from = play(&*store, ada, Some("2026-11-27T00:00:00Z"), 2.0, later).await;
    let at_to = play(&*store, ada, Some("2026-11-28T00:00:00Z"), 3.0, later).await;
    let processed_game = play(&*store, ada, Some("2026-11-27T12:00:00+01:00"), 5.0, later).await;
    // No start from the phone: played when submitted.
    let unstarted = play(&*store, ada, None, 6.0, at("2026-11-27T20:00:00Z")).await;
    play(&*store, grace, Some("2026-11-27T12:00:00Z"), 3.0, later).await;
    store
        .complete_game(processed(&processed_game, later))
        .await
        .unwrap();
    store
        .complete_game(Completion {
            status: GameStatus::Failed,
            metrics: None,
            error: Some("the flexion channels are constant".into()),
            ..processed(&failed, later)
        })
        .await
        .unwrap();

    // Any status (queued, processed, failed), oldest first, [from, to).
    let expected = [
        activity_of(&at_from, from),
        activity_of(&processed_game, at("2026-11-27T11:00:00Z")),
        activity_of(&failed, at("2026-11-27T18:30:00Z")),
        activity_of(&unstarted, at("2026-11-27T20:00:00Z")),
    ];
    assert_eq!(store.activity(ada, from, to).await.unwrap(), expected);
    // Durations are samples ÷ rate: what was played.
    for (a, seconds) in expected.iter().zip([2.0, 5.0, 4.0, 6.0]) {
        assert!((a.active_seconds - seconds).abs() < 0.02, "{a:?}");
    }
    // The bounds, to the nanosecond.
    let before_start = at("2026-11-26T23:59:59.999999Z");
    assert_eq!(
        store.activity(ada, before_start, from).await.unwrap(),
        [activity_of(&before, before_start)]
    );
    assert_eq!(
        store.activity(ada, to, to + secs(1)).await.unwrap(),
        [activity_of(&at_to, to)]
    );
    let ns = TimeDelta::nanoseconds(1);
    assert_eq!(
        store.activity(ada, from, from + ns).await.unwrap(),
        [activity_of(&at_from, from)]
    );
    assert!(store
        .activity(ada, from + ns, from + secs(1))
        .await
        .unwrap()
        .is_empty());
    assert!(store.activity(ada, from, from).await.unwrap().is_empty());
    assert!(store.activity(ada, to, from).await.unwrap().is_empty());
    // Every time there is.
    let all = store
        .activity(ada, DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC)
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].started_at <= w[1].started_at));
    assert!(store
        .activity(Uuid::now_v7(), from, to)
        .await
        .unwrap()
        .is_empty());
}

async fn last_started_at_is_the_latest_start(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    assert_eq!(store.last_started_at(ada).await.unwrap(), None);
    play(
        &*store,
        ada,
        Some("2026-11-20T10:00:00Z"),
        3.0,
        t0() + secs(3),
    )
    .await;
    // Submitted first, played last.
    let latest = play(
        &*store,
        ada,
        Some("2026-11-25T10:00:00.5Z"),
        3.0,
        t0() + secs(1),
    )
    .await;
    play(
        &*store,
        ada,
        Some("2026-11-22T10:00:00Z"),
        3.0,
        t0() + secs(2),
    )
    .await;
    assert_eq!(
        store.last_started_at(ada).await.unwrap(),
        Some(at("2026-11-25T10:00:00.5Z"))
    );
    // Whatever became of it.
    store
        .complete_game(Completion {
            status: GameStatus::Failed,
            metrics: None,
            error: Some("too short".into()),
            ..processed(&latest, t0() + secs(10))
        })
        .await
        .unwrap();
    assert_eq!(
        store.last_started_at(ada).await.unwrap(),
        Some(at("2026-11-25T10:00:00.5Z"))
    );
    assert_eq!(store.last_started_at(grace).await.unwrap(), None);
    play(&*store, grace, None, 3.0, t0() + secs(5)).await;
    assert_eq!(
        store.last_started_at(grace).await.unwrap(),
        Some(t0() + secs(5))
    );
}

/// Two gateways (two stores on the same data) making invites of one
/// therapist at once, near the limit: never more than the limit open, and
/// a refused code is not stored.
async fn invites_created_at_once_never_exceed_the_limit(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let grace = create_therapist(&*a, "Dr.Grace").await;
    let ada = create_user(&*a, "ada").await;
    for n in 0..MAX_OPEN_INVITES - 2 {
        invite(&*a, grace, n, t0()).await;
    }
    let now = t0() + secs(10);
    let mut tasks = Vec::new();
    for n in 100..106 {
        let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            let outcome = store
                .create_invite(new_invite(grace, &code(n), now), MAX_OPEN_INVITES)
                .await
                .unwrap();
            (n, outcome)
        }));
    }
    let mut created = 0;
    for task in tasks {
        let (n, outcome) = task.await.unwrap();
        if outcome == InviteOutcome::Created {
            created += 1;
        } else {
            assert_eq!(
                b.redeem_invite(&code(n), ada, now).await.unwrap(),
                RedeemOutcome::Unknown,
                "a refused code is not stored"
            );
        }
    }
    assert!(created <= 2, "{created} created");
    // What room is left, is left whole.
    for n in 0..2 - created {
        invite(&*b, grace, 200 + n, now).await;
    }
    let refused = a
        .create_invite(new_invite(grace, &code(300), now), MAX_OPEN_INVITES)
        .await
        .unwrap();
    assert_eq!(refused, InviteOutcome::TooManyOpen);
}

/// Two gateways redeeming one code at once: one patient is linked; the
/// same patient twice at once gets one link.
async fn a_code_redeemed_at_once_links_one_patient(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let grace = create_therapist(&*a, "Dr.Grace").await;
    let ada = create_user(&*a, "ada").await;
    let bob = create_user(&*a, "bob").await;
    let cy = create_user(&*a, "cyd").await;
    let now = t0() + secs(60);
    let contested = invite(&*a, grace, 1, t0()).await;
    let (ra, rb) = tokio::join!(
        a.redeem_invite(&contested, ada, now),
        b.redeem_invite(&contested, bob, now),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let (winner, loser) = match (&ra, &rb) {
        (RedeemOutcome::Linked(_), RedeemOutcome::Used) => (ada, bob),
        (RedeemOutcome::Used, RedeemOutcome::Linked(_)) => (bob, ada),
        other => panic!("expected one link and one used: {other:?}"),
    };
    assert_eq!(a.therapists_of(winner).await.unwrap().len(), 1);
    assert!(b.therapists_of(loser).await.unwrap().is_empty());

    let twice = invite(&*a, grace, 2, t0()).await;
    let (ra, rb) = tokio::join!(
        a.redeem_invite(&twice, cy, now),
        b.redeem_invite(&twice, cy, now + secs(1)),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(matches!(&ra, RedeemOutcome::Linked(_)), "{ra:?}");
    assert_eq!(ra, rb, "one link");
    let patients = b.patients_of(grace).await.unwrap();
    assert_eq!(
        patients.iter().map(|p| p.patient_id).collect::<Vec<_>>(),
        [winner, cy]
    );
}

async fn unreadable_care_values_read_as_their_fallbacks(store: Arc<dyn Store>, raw: Raw) {
    let ada = create_user(&*store, "ada").await;
    let bob = create_user(&*store, "bob").await;
    let grace = create_therapist(&*store, "Dr.Grace").await;
    let alan = create_therapist(&*store, "Dr.Alan").await;
    let id = |u: Uuid| u.hyphenated().to_string();

    // A time zone is kept as stored, known or not; a role that cannot be
    // read is a patient's.
    store.set_time_zone(ada, "Europe/Zurich").await.unwrap();
    raw.set("users", "user_id", &id(ada), "tz", "Mars/Olympus_Mons")
        .await;
    raw.set("users", "user_id", &id(alan), "role", "Admin")
        .await;
    assert_eq!(
        store.profile(ada).await.unwrap().unwrap().tz.as_deref(),
        Some("Mars/Olympus_Mons")
    );
    let profile = store.profile(alan).await.unwrap().unwrap();
    assert_eq!(
        (profile.role, profile.username.as_str()),
        (Role::Patient, "Dr.Alan")
    );

    // A link whose time cannot be read shows, as the oldest, at the epoch,
    // and can be removed.
    let graces_code = invite(&*store, grace, 1, t0()).await;
    let graces = redeem(&*store, &graces_code, ada, t0() + secs(60)).await;
    let alans_code = invite(&*store, alan, 2, t0()).await;
    redeem(&*store, &alans_code, ada, t0() + secs(120)).await;
    raw.set("links", "therapist_id", &id(alan), "linked_at", "yesterday")
        .await;
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    assert_eq!(
        store.therapists_of(ada).await.unwrap(),
        [
            TherapistLink {
                therapist_id: alan,
                username: "Dr.Alan".into(),
                linked_at: epoch,
            },
            graces,
        ]
    );
    assert_eq!(store.patients_of(alan).await.unwrap()[0].linked_at, epoch);
    assert_eq!(store.linked_at(alan, ada).await.unwrap(), Some(epoch));
    assert!(store.unlink(ada, alan).await.unwrap());

    // An invite whose expiry cannot be read has expired: it does not count
    // as open, and it links nobody.
    let damaged = invite(&*store, grace, 3, t0()).await;
    raw.set("invites", "code", &damaged, "expires_at", "soon")
        .await;
    assert_eq!(
        store
            .redeem_invite(&damaged, bob, t0() + secs(60))
            .await
            .unwrap(),
        RedeemOutcome::Expired
    );
    let one_open = |n: u32| {
        let store = Arc::clone(&store);
        async move {
            store
                .create_invite(new_invite(grace, &code(n), t0() + secs(1)), 1)
                .await
                .unwrap()
        }
    };
    assert_eq!(one_open(4).await, InviteOutcome::Created);
    assert_eq!(one_open(5).await, InviteOutcome::TooManyOpen);

    // Activity: a start that cannot be read counts at the submission; one
    // that reads but is not in the stored format counts where it reads; a
    // duration that cannot be read is 0.
    let day = at("2026-11-27T00:00:00Z");
    let unreadable = play(
        &*store,
        bob,
        Some("2026-11-27T08:00:00Z"),
        3.0,
        day + hours(20),
    )
    .await;
    let offset = play(
        &*store,
        bob,
        Some("2026-11-27T09:00:00Z"),
        3.0,
        day + hours(72),
    )
    .await;
    let not_a_day = play(
        &*store,
        bob,
        Some("2026-11-27T07:00:00Z"),
        3.0,
        day + hours(24 * 8),
    )
    .await;
    let no_rate = play(
        &*store,
        bob,
        Some("2026-11-27T12:00:00Z"),
        3.0,
        day + hours(72),
    )
    .await;
    let far = play(
        &*store,
        bob,
        Some("2026-11-27T06:00:00Z"),
        3.0,
        day + hours(24 * 9),
    )
    .await;
    let gid = |g: &NewGame| g.game_id.hyphenated().to_string();
    raw.set(
        "games",
        "game_id",
        &gid(&unreadable),
        "started_at",
        YEAR_10000,
    )
    .await;
    raw.set(
        "games",
        "game_id",
        &gid(&offset),
        "started_at",
        "2026-11-27T10:00:00+01:00",
    )
    .await;
    raw.set(
        "games",
        "game_id",
        &gid(&not_a_day),
        "started_at",
        "2026-02-30T07:00:00.000000Z",
    )
    .await;
    raw.set("games", "game_id", &gid(&far), "started_at", YEAR_MINUS_1)
        .await;
    raw.set("games", "game_id", &gid(&no_rate), "sample_rate_hz", "0")
        .await;
    assert_eq!(
        store.activity(bob, day, day + hours(24)).await.unwrap(),
        [
            activity_of(&offset, day + hours(9)),
            Activity {
                active_seconds: 0.0,
                ..activity_of(&no_rate, day + hours(12))
            },
            activity_of(&unreadable, day + hours(20)),
        ]
    );
    assert_eq!(
        store
            .activity(bob, day + hours(24 * 8), day + hours(24 * 9))
            .await
            .unwrap(),
        [activity_of(&not_a_day, day + hours(24 * 8))]
    );
    assert_eq!(
        store.last_started_at(bob).await.unwrap(),
        Some(day + hours(24 * 9)),
        "the submission of the game whose start cannot be read"
    );
}

// ---------------------------------------------------------------------------
// Export: every user's games for research (`m2m_store::Export`)
//
// Its own `contract!` invocations (modules `export_sqlite` and
// `export_mongodb`), so that this section stands alone.

mod export_contract {
    use super::*;
    use m2m_store::{ExportFilter, ExportedGame};

    /// Every page of `filter`, `limit` games at a time, as one list.
    async fn all_pages(store: &dyn Store, filter: &ExportFilter, limit: u32) -> Vec<ExportedGame> {
        let mut games: Vec<ExportedGame> = Vec::new();
        loop {
            let after = games.last().map(|g| g.game.game_id);
            let page = store.export_games(filter, after, limit).await.unwrap();
            assert!(page.len() <= limit as usize, "a page of {}", page.len());
            let done = page.len() < limit as usize;
            games.extend(page);
            if done {
                return games;
            }
        }
    }

    fn ids(games: &[ExportedGame]) -> Vec<Uuid> {
        games.iter().map(|g| g.game.game_id).collect()
    }

    /// A game of `user_id` played at `started_at` and submitted at
    /// `submitted_at`.
    async fn played(
        store: &dyn Store,
        user_id: Uuid,
        seed: u64,
        started_at: &str,
        submitted_at: DateTime<Utc>,
    ) -> NewGame {
        let game = new_game(user_id, submission(seed, Some(started_at)), submitted_at);
        let outcome = store.submit_game(game.clone(), None).await.unwrap();
        assert_eq!(outcome, SubmitOutcome::Created);
        game
    }

    pub(super) async fn export_pages_every_users_games_in_id_order(store: Arc<dyn Store>) {
        let ada = create_user(&*store, "ada").await;
        let bob = create_user(&*store, "bob").await;
        let mut stored = Vec::new();
        for (i, user) in [ada, bob, ada, bob, bob].into_iter().enumerate() {
            stored.push(submit(&*store, user, i as u64 + 1, t0() + secs(i as i64)).await);
        }
        // The second game processed, the fourth failed: both results show.
        let done = processed(&stored[1], t0() + secs(60));
        store.complete_game(done.clone()).await.unwrap();
        let mut failed = processed(&stored[3], t0() + secs(61));
        failed.status = GameStatus::Failed;
        failed.metrics = None;
        failed.error = Some("the analysis failed".into());
        store.complete_game(failed).await.unwrap();

        let all = ExportFilter::default();
        for limit in [1, 2, 5, 100] {
            let games = all_pages(&*store, &all, limit).await;
            let mut want: Vec<Uuid> = stored.iter().map(|g| g.game_id).collect();
            want.sort();
            assert_eq!(ids(&games), want, "pages of {limit}");
        }
        let games = all_pages(&*store, &all, 2).await;
        for g in &games {
            let new = stored.iter().find(|s| s.game_id == g.game.game_id).unwrap();
            assert_eq!(g.user_id, new.user_id);
            let read = store.game(new.user_id, new.game_id).await.unwrap().unwrap();
            assert_eq!(
                g.game, read,
                "the game as `game` reads it, metrics included"
            );
            assert_eq!(
                g.game.channels,
                new.submission.channels().names().collect::<Vec<_>>()
            );
        }
        let processed_game = games.iter().find(|g| g.game.game_id == stored[1].game_id);
        let processed_game = &processed_game.unwrap().game;
        assert_eq!(processed_game.status, GameStatus::Processed);
        assert_same_metrics(
            processed_game.metrics.as_ref().expect("its metrics"),
            done.metrics.as_ref().unwrap(),
        );
        let failed_game = games.iter().find(|g| g.game.game_id == stored[3].game_id);
        let failed_game = &failed_game.unwrap().game;
        assert_eq!(failed_game.status, GameStatus::Failed);
        assert_eq!(failed_game.error.as_deref(), Some("the analysis failed"));
        assert_eq!(failed_game.metrics, None);

        // After the last game, and with a limit of 0: nothing.
        let last = *ids(&games).last().unwrap();
        assert!(store
            .export_games(&all, Some(last), 10)
            .await
            .unwrap()
            .is_empty());
        assert!(store.export_games(&all, None, 0).await.unwrap().is_empty());
    }

    pub(super) async fn export_filters_by_start_and_user(store: Arc<dyn Store>) {
        let ada = create_user(&*store, "ada").await;
        let bob = create_user(&*store, "bob").await;
        let cy = create_user(&*store, "cyd").await;
        // Submitted in one order, played in another: the range is on the
        // start, never on the submission.
        let late = played(&*store, ada, 1, "2026-11-03T00:00:00Z", t0()).await;
        let first = played(&*store, bob, 2, "2026-11-01T00:00:00Z", t0() + secs(1)).await;
        let edge = played(
            &*store,
            ada,
            3,
            "2026-11-02T23:59:59.999999Z",
            t0() + secs(2),
        )
        .await;
        let offset = played(&*store, cy, 4, "2026-11-02T01:30:00+02:00", t0() + secs(3)).await;
        let day = |d: &str| Some(at(&format!("2026-11-{d}T00:00:00Z")));
        let range = |from, before, users: &[Uuid]| ExportFilter {
            started_from: from,
            started_before: before,
            users: users.to_vec(),
        };
        let sorted = |games: &[&NewGame]| {
            let mut v: Vec<Uuid> = games.iter().map(|g| g.game_id).collect();
            v.sort();
            v
        };
        let cases: Vec<(ExportFilter, Vec<Uuid>)> = vec![
            // From inclusive, before exclusive.
            (range(day("01"), day("02"), &[]), sorted(&[&first, &offset])),
            (range(day("02"), day("03"), &[]), sorted(&[&edge])),
            (range(day("03"), None, &[]), sorted(&[&late])),
            (range(None, day("01"), &[]), vec![]),
            (
                range(None, None, &[]),
                sorted(&[&late, &first, &edge, &offset]),
            ),
            (range(None, None, &[ada]), sorted(&[&late, &edge])),
            (
                range(None, None, &[ada, cy]),
                sorted(&[&late, &edge, &offset]),
            ),
            (
                range(day("01"), day("03"), &[ada, bob]),
                sorted(&[&first, &edge]),
            ),
            // A user without games, and an empty range.
            (range(None, None, &[Uuid::now_v7()]), vec![]),
            (range(day("03"), day("03"), &[]), vec![]),
            (range(day("03"), day("01"), &[]), vec![]),
        ];
        for (filter, want) in cases {
            for limit in [1, 3, 100] {
                let games = all_pages(&*store, &filter, limit).await;
                assert_eq!(ids(&games), want, "{filter:?}, pages of {limit}");
                for g in &games {
                    assert!(filter.contains(g.game.started_at), "{filter:?}: {g:?}");
                }
            }
        }
    }

    pub(super) async fn export_reads_unreadable_values_by_their_fallbacks(
        store: Arc<dyn Store>,
        raw: Raw,
    ) {
        let ada = create_user(&*store, "ada").await;
        let a = played(&*store, ada, 1, "2026-11-01T12:00:00Z", t0()).await;
        let b = played(&*store, ada, 2, "2026-11-01T12:00:00Z", t0()).await;
        let c = played(&*store, ada, 3, "2026-11-01T12:00:00Z", t0()).await;
        let d = played(&*store, ada, 4, "2026-11-01T12:00:00Z", t0()).await;
        let text = |g: &NewGame| g.game_id.hyphenated().to_string();
        // A start that cannot be read counts at the submission (t0, on
        // 2026-11-27); a game whose user cannot be read is left out and
        // the page filled from the games after it.
        raw.set("games", "game_id", &text(&b), "started_at", "yesterday")
            .await;
        raw.set("games", "game_id", &text(&c), "user_id", "not-a-uuid")
            .await;
        let all = ExportFilter::default();
        let page = store.export_games(&all, None, 3).await.unwrap();
        assert_eq!(ids(&page), vec![a.game_id, b.game_id, d.game_id]);
        assert_eq!(page[1].game.started_at, t0());

        let november_first = ExportFilter {
            started_from: Some(at("2026-11-01T00:00:00Z")),
            started_before: Some(at("2026-11-02T00:00:00Z")),
            users: vec![],
        };
        let games = all_pages(&*store, &november_first, 2).await;
        assert_eq!(ids(&games), vec![a.game_id, d.game_id]);
        let at_submission = ExportFilter {
            started_from: Some(t0()),
            started_before: Some(t0() + secs(1)),
            users: vec![ada],
        };
        let games = all_pages(&*store, &at_submission, 2).await;
        assert_eq!(ids(&games), vec![b.game_id]);
    }
}

use export_contract::{
    export_filters_by_start_and_user, export_pages_every_users_games_in_id_order,
    export_reads_unreadable_values_by_their_fallbacks,
};

contract!(export_sqlite = super::sqlite_fixture, super::sqlite_raw_fixture;
    one: export_pages_every_users_games_in_id_order, export_filters_by_start_and_user;
    two: ;
    raw: export_reads_unreadable_values_by_their_fallbacks;
);
#[cfg(feature = "mongodb")]
contract!(export_mongodb = super::mongodb_fixture, super::mongodb_raw_fixture;
    one: export_pages_every_users_games_in_id_order, export_filters_by_start_and_user;
    two: ;
    raw: export_reads_unreadable_values_by_their_fallbacks;
);

// ---------------------------------------------------------------------------
// SQLite only

mod sqlite_only {
    use super::*;
    use std::path::Path;

    fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ten_minute_game_is_compact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        let store = SqliteStore::open(&path).unwrap();
        let spec = GameSpec {
            duration_s: 600.0,
            ..GameSpec::standard()
        };
        let json = spec.submission_json("pinch-garden", 1234.0);
        let sub = GameSubmission::from_json(json.as_bytes()).unwrap();
        assert_eq!(sub.channels().len(), 16);
        assert_eq!(sub.channels().samples(), 60_000);
        let ada = create_user(&store, "ada").await;
        let game = new_game(ada, sub, t0());
        store.submit_game(game.clone(), None).await.unwrap();

        let conn = rusqlite::Connection::open(&path).unwrap();
        let blobs: i64 = conn
            .query_row("SELECT SUM(length(data)) FROM game_columns", [], |r| {
                r.get(0)
            })
            .unwrap();
        let encoded: usize = game
            .submission
            .channels()
            .iter()
            .map(|(_, col)| encode_column(col).len())
            .sum();
        assert_eq!(blobs as usize, encoded, "the columns in their stored form");
        assert!(blobs < 2 * 16 * 60_000, "{blobs} bytes of columns");
        let wal = path.with_extension("db-wal");
        let on_disk = file_size(&path) + file_size(&wal);
        assert!(
            on_disk < 12 * 1024 * 1024,
            "{on_disk} bytes on disk (JSON was {} bytes)",
            json.len()
        );

        // And it comes back whole.
        let claimed = store
            .advance_outbox(&[], t0() + secs(60), Duration::from_secs(60), 1)
            .await
            .unwrap();
        assert_eq!(
            claimed[0].event,
            ProcessingEvent::new(game.event_id, game.game_id, ada, t0(), &game.submission)
        );
    }

    /// A database written before accounts had roles (schema version 1)
    /// opens without a manual step, and its accounts are patients.
    #[tokio::test]
    async fn accounts_from_before_roles_are_patients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        drop(SqliteStore::open(&path).unwrap());
        // Back to version 1, with an account stored in its shape.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX changes_by_game_version;
             ALTER TABLE changes DROP COLUMN reprocessed;
             ALTER TABLE changes DROP COLUMN algorithm_version;
             ALTER TABLE games DROP COLUMN algorithm_version;
             ALTER TABLE outbox DROP COLUMN algorithm_version;
             DROP TABLE invites;
             DROP TABLE links;
             DROP INDEX games_by_start;
             ALTER TABLE users DROP COLUMN tz;
             ALTER TABLE users DROP COLUMN role;
             PRAGMA user_version = 1;
             INSERT INTO users (user_id, username, username_key, password_hash, created_at)
             VALUES ('0190c6a4-0000-7000-8000-000000000001', 'Ada', 'ada', 'hash',
                     '2024-07-01T00:00:00.000000Z');",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let ada = store
            .user_by_username(&Username::parse("ada").unwrap())
            .await
            .unwrap()
            .expect("the old account");
        assert_eq!(ada.role, Role::Patient);
        assert_eq!(ada.password_hash, "hash");
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m2m.db");
        let url = format!("sqlite://{}", path.display());
        let (ada, game) = {
            let store = SqliteStore::open_url(&url).unwrap();
            let ada = create_user(&store, "ada").await;
            let game = submit(&store, ada, 1, t0()).await;
            (ada, game)
        };
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.game(ada, game.game_id).await.unwrap().is_some());
        assert_eq!(store.unpublished_count().await.unwrap(), 1);
    }

    #[test]
    fn only_absolute_sqlite_urls_open() {
        for bad in [
            "postgres://localhost/m2m",
            "sqlite://relative.db",
            "sqlite:m2m.db",
            "sqlite:///tmp/m2m.db?mode=ro",
            "sqlite:///tmp/m%20m.db",
        ] {
            assert!(
                matches!(
                    SqliteStore::open_url(bad),
                    Err(StoreError::Unavailable { .. })
                ),
                "{bad}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// MongoDB only

#[cfg(feature = "mongodb")]
mod mongodb_only {
    use super::*;
    use m2m_store::MAX_DOCUMENT_BYTES;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ten_minute_game_fits_one_document() {
        let Some(fixture) = mongodb_fixture().await else {
            return;
        };
        let store = fixture.store;
        let spec = GameSpec {
            duration_s: 600.0,
            ..GameSpec::standard()
        };
        let sub =
            GameSubmission::from_json(spec.submission_json("pinch-garden", 1234.0).as_bytes())
                .unwrap();
        assert_eq!(sub.channels().len(), 16);
        assert_eq!(sub.channels().samples(), 60_000);
        const { assert!(16 * 4 * 60_000 < MAX_DOCUMENT_BYTES / 4) };
        let ada = create_user(&*store, "ada").await;
        let game = new_game(ada, sub, t0());
        store.submit_game(game.clone(), None).await.unwrap();
        let claimed = store
            .advance_outbox(&[], t0() + secs(60), Duration::from_secs(60), 1)
            .await
            .unwrap();
        assert_eq!(
            claimed[0].event,
            ProcessingEvent::new(game.event_id, game.game_id, ada, t0(), &game.submission)
        );
    }

    /// A crash after the idempotency key was stored and before the game
    /// was (played here by deleting the game): the client's retry with the
    /// same key stores the game under the ids the first answer announced,
    /// and gets that answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_completes_a_submission_cut_short_by_a_crash() {
        let Some((fixture, raw)) = mongodb_fixture_with_raw_access().await else {
            return;
        };
        let store = fixture.store;
        let ada = create_user(&*store, "ada").await;
        let record = |body: &str| IdempotencyRecord {
            key: "phone-42:game-7".into(),
            request_hash: digest(1),
            status: 202,
            body: body.as_bytes().to_vec(),
        };
        let first = new_game(ada, submission(1, None), t0());
        store
            .submit_game(first.clone(), Some(record("first")))
            .await
            .unwrap();
        let id = first.game_id.hyphenated().to_string();
        for collection in ["games", "game_columns"] {
            let deleted = raw
                .collection::<::mongodb::bson::Document>(collection)
                .delete_one(::mongodb::bson::doc! { "_id": &id })
                .await
                .unwrap();
            assert_eq!(deleted.deleted_count, 1, "{collection}");
        }
        assert!(store.game(ada, first.game_id).await.unwrap().is_none());

        let retry = new_game(ada, submission(1, None), t0() + secs(5));
        assert_eq!(
            store
                .submit_game(retry.clone(), Some(record("second")))
                .await
                .unwrap(),
            SubmitOutcome::Replayed {
                status: 202,
                body: b"first".to_vec()
            }
        );
        let stored = store.game(ada, first.game_id).await.unwrap().unwrap();
        assert_eq!(stored.submitted_at, t0(), "as first announced");
        assert!(store.game(ada, retry.game_id).await.unwrap().is_none());
        assert_eq!(store.list_games(ada, None, 10).await.unwrap().len(), 1);
        let claimed = store
            .advance_outbox(&[], t0() + secs(3600), Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            claimed[0].event,
            ProcessingEvent::new(first.event_id, first.game_id, ada, t0(), &first.submission)
        );
    }

    /// A crash after the change was stored and before the game was updated
    /// (played here by putting the game back to `queued`): the redelivered
    /// event finds the change and brings the game up to date from it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redelivery_repairs_a_completion_cut_short_by_a_crash() {
        let Some((fixture, raw)) = mongodb_fixture_with_raw_access().await else {
            return;
        };
        let store = fixture.store;
        let ada = create_user(&*store, "ada").await;
        let game = submit(&*store, ada, 1, t0()).await;
        let first = store
            .complete_game(processed(&game, t0() + secs(5)))
            .await
            .unwrap();
        raw.collection::<::mongodb::bson::Document>("games")
            .update_one(
                ::mongodb::bson::doc! { "_id": game.game_id.hyphenated().to_string() },
                ::mongodb::bson::doc! {
                    "$set": { "status": "queued" },
                    "$unset": { "processed_at": "", "metrics": "" },
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.game(ada, game.game_id).await.unwrap().unwrap().status,
            GameStatus::Queued
        );
        assert_eq!(store.republish_unfinished().await.unwrap(), 1);

        let again = store
            .complete_game(processed(&game, t0() + secs(50)))
            .await
            .unwrap();
        assert!(!again.first);
        assert_eq!(again.change, first.change);
        let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
        assert_eq!(stored.status, GameStatus::Processed);
        assert_eq!(stored.processed_at, Some(t0() + secs(5)));
        assert_eq!(stored.metrics, first.change.metrics);
        assert_eq!(store.changes_since(ada, None, 10).await.unwrap().len(), 1);
    }

    /// A missing server fails at startup, quickly and saying so. (Port 1
    /// on the loopback has no server.)
    /// An account stored before roles has no `role` field: a patient.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accounts_from_before_roles_are_patients() {
        let Some((fixture, db)) = mongodb_fixture_with_raw_access().await else {
            return;
        };
        db.collection::<::mongodb::bson::Document>("users")
            .insert_one(::mongodb::bson::doc! {
                "_id": "0190c6a4-0000-7000-8000-000000000001",
                "username": "Ada",
                "username_key": "ada",
                "password_hash": "hash",
                "created_at": "2024-07-01T00:00:00.000000Z",
            })
            .await
            .unwrap();
        let ada = fixture
            .store
            .user_by_username(&Username::parse("ada").unwrap())
            .await
            .unwrap()
            .expect("the old account");
        assert_eq!(ada.role, Role::Patient);
    }

    #[tokio::test]
    async fn a_missing_server_is_a_clear_startup_error() {
        let started = std::time::Instant::now();
        let err = MongoStore::connect("mongodb://127.0.0.1:1/m2m?serverSelectionTimeoutMS=300")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable { what, .. } if what.contains("MongoDB at 127.0.0.1:1 is not reachable")),
            "{err}"
        );
        // The driver's error is kept as the cause, and its text shown.
        let cause = std::error::Error::source(&err).expect("the driver's error");
        assert!(cause.is::<::mongodb::error::Error>(), "{cause:?}");
        assert!(err.to_string().ends_with(&cause.to_string()), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        for bad in [
            "postgres://localhost/m2m",
            "mongodb://",
            "mongodb://127.0.0.1:1/?tls=maybe",
        ] {
            let err = MongoStore::connect(bad).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Unavailable { what, .. } if what.starts_with("invalid MongoDB URL")),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_is_the_one_in_the_url() {
        let Some(url) = mongodb_url() else {
            return;
        };
        let database = format!("m2m_test_{}", Uuid::now_v7().simple());
        let _guard = DropDatabase {
            url: url.clone(),
            database: database.clone(),
        };
        // The test URL has no path of its own in CI; put one in.
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let base = match base.split_once("://") {
            Some((scheme, rest)) => {
                let hosts = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{hosts}/{database}")
            }
            None => panic!("{MONGODB_URL_VAR} is not a URL"),
        };
        let with_db = if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        };
        let store = MongoStore::connect(&with_db).await.unwrap();
        assert!(format!("{store:?}").contains(&database), "{store:?}");
        create_user(&store, "ada").await;
        let same = MongoStore::connect_database(&url, &database).await.unwrap();
        assert!(same
            .user_by_username(&Username::parse("ada").unwrap())
            .await
            .unwrap()
            .is_some());
    }
}

// ---------------------------------------------------------------------------
// Erasure: deleting an account and everything that names it
// (docs/data-lifecycle.md, "A patient's copy and erasure")

contract!(sqlite_erasure = super::sqlite_fixture, super::sqlite_raw_fixture;
    one:
    deleting_an_unknown_account_or_twice_is_harmless;
    two:
    ;
    raw:
    a_deleted_patient_leaves_no_mention_and_others_intact,
    a_deleted_therapist_leaves_no_mention_and_patients_intact;
);
#[cfg(feature = "mongodb")]
contract!(mongodb_erasure = super::mongodb_fixture, super::mongodb_raw_fixture;
    one:
    deleting_an_unknown_account_or_twice_is_harmless;
    two:
    ;
    raw:
    a_deleted_patient_leaves_no_mention_and_others_intact,
    a_deleted_therapist_leaves_no_mention_and_patients_intact;
);

impl Raw {
    /// Where the stored data mentions `id`, read past the store: every row
    /// of every SQLite table (each value as text or bytes), every document
    /// of every MongoDB collection (its BSON bytes, so a string, a
    /// substring of one such as a link's `<therapist>:<patient>` `_id`,
    /// and a binary UUID all count). The id is looked for hyphenated and
    /// as 32 hex digits, in lower and upper case, and as its 16 bytes.
    async fn mentions(&self, id: Uuid) -> Vec<String> {
        let hyphenated = id.hyphenated().to_string();
        let simple = id.simple().to_string();
        let needles: Vec<Vec<u8>> = vec![
            hyphenated.clone().into_bytes(),
            hyphenated.to_uppercase().into_bytes(),
            simple.clone().into_bytes(),
            simple.to_uppercase().into_bytes(),
            id.as_bytes().to_vec(),
        ];
        let mentions = |bytes: &[u8]| {
            needles
                .iter()
                .any(|n| bytes.windows(n.len()).any(|w| w == n))
        };
        let mut found = Vec::new();
        match self {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .unwrap()
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert!(tables.iter().any(|t| t == "games"), "{tables:?}");
                for table in tables {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
                    let names: Vec<String> =
                        stmt.column_names().iter().map(|c| c.to_string()).collect();
                    let mut rows = stmt.query([]).unwrap();
                    while let Some(row) = rows.next().unwrap() {
                        for (i, name) in names.iter().enumerate() {
                            use rusqlite::types::ValueRef;
                            let bytes = match row.get_ref(i).unwrap() {
                                ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
                                ValueRef::Integer(n) => n.to_string().into_bytes(),
                                ValueRef::Real(x) => x.to_string().into_bytes(),
                                ValueRef::Null => continue,
                            };
                            if mentions(&bytes) {
                                found.push(format!("{table}.{name}"));
                            }
                        }
                    }
                }
            }
            #[cfg(feature = "mongodb")]
            Raw::Mongo(db) => {
                use futures::TryStreamExt;
                let collections = db.list_collection_names().await.unwrap();
                assert!(collections.iter().any(|c| c == "games"), "{collections:?}");
                for collection in collections {
                    let docs: Vec<::mongodb::bson::RawDocumentBuf> = db
                        .collection::<::mongodb::bson::RawDocumentBuf>(&collection)
                        .find(::mongodb::bson::doc! {})
                        .await
                        .unwrap()
                        .try_collect()
                        .await
                        .unwrap();
                    for d in docs {
                        if mentions(d.as_bytes()) {
                            found.push(format!("{collection}: {:?}", d.get("_id")));
                        }
                    }
                }
            }
        }
        found
    }
}

/// Everything a patient can have stored: logins with rotated tokens, games
/// (keyed and not, processed and queued, published and not), their changes,
/// links to two therapists made by invite codes, a time zone. Returns the
/// games.
async fn a_full_patient(
    store: &dyn Store,
    patient: Uuid,
    therapists: [Uuid; 2],
    first_code: u32,
    token_base: u8,
) -> Vec<NewGame> {
    store.set_time_zone(patient, "Europe/Zurich").await.unwrap();
    let exp = t0() + secs(3600);
    login(store, patient, digest(token_base), exp).await;
    store
        .rotate_refresh_token(digest(token_base), digest(token_base + 1), t0(), exp)
        .await
        .unwrap();
    login(store, patient, digest(token_base + 2), exp).await;
    let mut games = Vec::new();
    for (i, seed) in [1, 2, 3].into_iter().enumerate() {
        let game = new_game(patient, submission(seed, None), t0() + secs(i as i64));
        let key = IdempotencyRecord {
            key: format!("key-{seed}"),
            request_hash: digest(seed as u8),
            status: 202,
            body: format!("{{\"game_id\":\"{}\"}}", game.game_id).into_bytes(),
        };
        let outcome = store
            .submit_game(game.clone(), (i != 2).then_some(key))
            .await
            .unwrap();
        assert_eq!(outcome, SubmitOutcome::Created);
        games.push(game);
    }
    store
        .advance_outbox(&[], t0() + secs(10), Duration::from_secs(60), 1)
        .await
        .unwrap();
    store
        .complete_game(processed(&games[0], t0() + secs(20)))
        .await
        .unwrap();
    for (n, therapist) in therapists.into_iter().enumerate() {
        let code = invite(store, therapist, first_code + n as u32, t0()).await;
        redeem(store, &code, patient, t0() + secs(30)).await;
    }
    games
}

async fn a_deleted_patient_leaves_no_mention_and_others_intact(store: Arc<dyn Store>, raw: Raw) {
    let grace = create_therapist(&*store, "dr.grace").await;
    let hopper = create_therapist(&*store, "dr.hopper").await;
    let ada = create_user(&*store, "Ada").await;
    let bob = create_user(&*store, "bob").await;
    let ada_games = a_full_patient(&*store, ada, [grace, hopper], 1, 10).await;
    let bob_games = a_full_patient(&*store, bob, [grace, hopper], 3, 20).await;
    // An open invite of grace's stays with her.
    invite(&*store, grace, 9, t0()).await;
    assert!(
        !raw.mentions(ada).await.is_empty(),
        "the scan finds the data"
    );
    let bob_before = (
        store.list_games(bob, None, 100).await.unwrap(),
        store.changes_since(bob, None, 100).await.unwrap(),
        store.profile(bob).await.unwrap(),
    );

    assert!(store.delete_account(ada).await.unwrap());

    assert_eq!(raw.mentions(ada).await, Vec::<String>::new());
    for game in &ada_games {
        for id in [game.game_id, game.event_id] {
            assert_eq!(raw.mentions(id).await, Vec::<String>::new(), "{id}");
        }
    }
    assert!(!store.account_exists(ada).await.unwrap());
    assert_eq!(store.profile(ada).await.unwrap(), None);
    assert!(store.list_games(ada, None, 100).await.unwrap().is_empty());
    assert!(store
        .game_samples(ada, ada_games[1].game_id)
        .await
        .unwrap()
        .is_none());
    for token in [10, 11, 12] {
        assert_eq!(
            store
                .rotate_refresh_token(
                    digest(token),
                    digest(99),
                    t0() + secs(60),
                    t0() + secs(3600)
                )
                .await
                .unwrap(),
            RefreshOutcome::Invalid,
            "token {token}"
        );
    }
    // Nothing of ada's is left to publish; bob's unpublished games are.
    let pending = store
        .advance_outbox(&[], t0() + secs(600), Duration::from_secs(60), 100)
        .await
        .unwrap();
    let pending: Vec<Uuid> = pending.iter().map(|e| e.event.game_id).collect();
    assert!(ada_games.iter().all(|g| !pending.contains(&g.game_id)));
    assert!(!pending.is_empty());

    // Everyone else's data is as it was.
    assert!(store.account_exists(bob).await.unwrap());
    assert_eq!(
        store.list_games(bob, None, 100).await.unwrap(),
        bob_before.0
    );
    assert_eq!(
        store.changes_since(bob, None, 100).await.unwrap(),
        bob_before.1
    );
    assert_eq!(store.profile(bob).await.unwrap(), bob_before.2);
    for game in &bob_games {
        assert_eq!(
            store
                .game_samples(bob, game.game_id)
                .await
                .unwrap()
                .unwrap()
                .channels,
            *game.submission.channels()
        );
    }
    for therapist in [grace, hopper] {
        let patients: Vec<Uuid> = store
            .patients_of(therapist)
            .await
            .unwrap()
            .iter()
            .map(|p| p.patient_id)
            .collect();
        assert_eq!(patients, [bob]);
    }
    assert_eq!(store.therapists_of(bob).await.unwrap().len(), 2);
    assert!(matches!(
        store
            .rotate_refresh_token(digest(22), digest(98), t0() + secs(60), t0() + secs(3600))
            .await
            .unwrap(),
        RefreshOutcome::Rotated { user_id, .. } if user_id == bob
    ));
    // bob's idempotency keys still replay.
    let replay = store
        .submit_game(
            new_game(bob, submission(1, None), t0() + secs(700)),
            Some(IdempotencyRecord {
                key: "key-1".into(),
                request_hash: digest(1),
                status: 202,
                body: Vec::new(),
            }),
        )
        .await
        .unwrap();
    assert!(
        matches!(replay, SubmitOutcome::Replayed { .. }),
        "{replay:?}"
    );
    // grace's open invite still links.
    let carol = create_user(&*store, "carol").await;
    redeem(&*store, &code(9), carol, t0() + secs(60)).await;

    // The username is free again, for a new account.
    let again = create_user(&*store, "ADA").await;
    assert_ne!(again, ada);
    let found = store
        .user_by_username(&Username::parse("ada").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user_id, again);
    assert!(store.list_games(again, None, 100).await.unwrap().is_empty());
    assert_eq!(store.finish_deletions().await.unwrap(), 0);
}

async fn a_deleted_therapist_leaves_no_mention_and_patients_intact(
    store: Arc<dyn Store>,
    raw: Raw,
) {
    let grace = create_therapist(&*store, "dr.grace").await;
    let hopper = create_therapist(&*store, "dr.hopper").await;
    let ada = create_user(&*store, "ada").await;
    let ada_games = a_full_patient(&*store, ada, [grace, hopper], 1, 10).await;
    // grace: a login, open codes, a used one (above).
    login(&*store, grace, digest(40), t0() + secs(3600)).await;
    invite(&*store, grace, 7, t0()).await;
    invite(&*store, grace, 8, t0()).await;

    assert!(store.delete_account(grace).await.unwrap());

    assert_eq!(raw.mentions(grace).await, Vec::<String>::new());
    assert!(!store.account_exists(grace).await.unwrap());
    let therapists: Vec<Uuid> = store
        .therapists_of(ada)
        .await
        .unwrap()
        .iter()
        .map(|t| t.therapist_id)
        .collect();
    assert_eq!(therapists, [hopper]);
    assert!(store.patients_of(grace).await.unwrap().is_empty());
    assert_eq!(
        store
            .redeem_invite(&code(7), ada, t0() + secs(60))
            .await
            .unwrap(),
        RedeemOutcome::Unknown
    );
    // The patient's own data is untouched.
    assert_eq!(store.list_games(ada, None, 100).await.unwrap().len(), 3);
    assert!(store
        .game_samples(ada, ada_games[0].game_id)
        .await
        .unwrap()
        .is_some());
    // A therapist's username is free again too.
    create_therapist(&*store, "Dr.Grace").await;
}

async fn deleting_an_unknown_account_or_twice_is_harmless(store: Arc<dyn Store>) {
    assert!(!store.delete_account(Uuid::now_v7()).await.unwrap());
    let ada = create_user(&*store, "ada").await;
    let bob = create_user(&*store, "bob").await;
    submit(&*store, ada, 1, t0()).await;
    assert!(store.account_exists(ada).await.unwrap());
    assert!(store.delete_account(ada).await.unwrap());
    assert!(!store.delete_account(ada).await.unwrap());
    assert!(!store.account_exists(ada).await.unwrap());
    assert!(store.account_exists(bob).await.unwrap());
    assert_eq!(store.finish_deletions().await.unwrap(), 0);
}

#[cfg(feature = "mongodb")]
mod mongodb_erasure_only {
    use super::*;

    /// A deletion that stopped after its mark (a crash) is finished by
    /// `finish_deletions`; until then the account does not log in or
    /// authenticate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_stopped_after_its_mark_is_finished_by_the_sweep() {
        let Some((fixture, raw)) = mongodb_raw_fixture().await else {
            return;
        };
        let store = fixture.store;
        let grace = create_therapist(&*store, "dr.grace").await;
        let hopper = create_therapist(&*store, "dr.hopper").await;
        let ada = create_user(&*store, "ada").await;
        let bob = create_user(&*store, "bob").await;
        a_full_patient(&*store, ada, [grace, hopper], 1, 10).await;
        a_full_patient(&*store, bob, [grace, hopper], 3, 20).await;
        let Raw::Mongo(db) = &raw else { unreachable!() };
        db.collection::<::mongodb::bson::Document>("users")
            .update_one(
                ::mongodb::bson::doc! { "_id": ada.hyphenated().to_string() },
                ::mongodb::bson::doc! { "$set": { "deleting_since": "2026-11-27T10:00:00.000000Z" } },
            )
            .await
            .unwrap();

        assert!(!store.account_exists(ada).await.unwrap());
        assert!(store
            .user_by_username(&Username::parse("ada").unwrap())
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store
                .rotate_refresh_token(digest(12), digest(99), t0() + secs(60), t0() + secs(3600))
                .await
                .unwrap(),
            RefreshOutcome::Invalid
        );

        assert_eq!(store.finish_deletions().await.unwrap(), 1);
        assert_eq!(raw.mentions(ada).await, Vec::<String>::new());
        assert_eq!(store.finish_deletions().await.unwrap(), 0);
        assert!(store.account_exists(bob).await.unwrap());
        assert_eq!(store.list_games(bob, None, 100).await.unwrap().len(), 3);
        create_user(&*store, "ada").await;
    }
}

// ---------------------------------------------------------------------------
// Results that can be recomputed (docs/data-lifecycle.md): versioned
// results, the games to reprocess, and their events in the outbox.

contract!(reprocessing_sqlite = super::sqlite_fixture, super::sqlite_raw_fixture;
    one:
    a_newer_version_is_read_and_the_older_kept_as_history,
    one_result_per_game_and_version,
    an_older_version_arriving_late_is_history_only,
    a_failed_reprocessing_replaces_the_whole_result,
    only_the_games_own_or_reprocessing_event_completes_it,
    games_to_reprocess_page_by_game_below_a_version,
    reprocessing_events_are_stored_once_and_published_like_uploads,
    unfinished_reprocessing_is_republished_after_a_restart;
    two:
    two_processes_reprocess_a_game_once;
    raw:
    results_stored_before_versions_are_version_1;
);
#[cfg(feature = "mongodb")]
contract!(reprocessing_mongodb = super::mongodb_fixture, super::mongodb_raw_fixture;
    one:
    a_newer_version_is_read_and_the_older_kept_as_history,
    one_result_per_game_and_version,
    an_older_version_arriving_late_is_history_only,
    a_failed_reprocessing_replaces_the_whole_result,
    only_the_games_own_or_reprocessing_event_completes_it,
    games_to_reprocess_page_by_game_below_a_version,
    reprocessing_events_are_stored_once_and_published_like_uploads,
    unfinished_reprocessing_is_republished_after_a_restart;
    two:
    two_processes_reprocess_a_game_once;
    raw:
    results_stored_before_versions_are_version_1;
);

use m2m_domain::{reprocessing_event_id, ChangeType};
use m2m_store::{ReprocessSelection, ReprocessTarget};

/// The result of reprocessing `game` under `version`, with the metrics
/// of another game (so that versions are told apart by their values).
fn reprocessed(game: &NewGame, version: u32, seed: u64) -> Completion {
    Completion {
        event_id: reprocessing_event_id(game.game_id, version),
        reconciliation_event_id: Uuid::now_v7(),
        metrics: Some(submission(seed, None).analyze()),
        processed_at: t0() + secs(1000 + i64::from(version)),
        algorithm_version: version,
        ..processed(game, t0())
    }
}

fn target(game: &NewGame) -> ReprocessTarget {
    ReprocessTarget {
        game_id: game.game_id,
        user_id: game.user_id,
    }
}

fn below(version: u32) -> ReprocessSelection {
    ReprocessSelection {
        below: version,
        users: Vec::new(),
    }
}

async fn a_newer_version_is_read_and_the_older_kept_as_history(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    let first = store
        .complete_game(processed(&game, t0() + secs(5)))
        .await
        .unwrap();
    assert_eq!(first.change.kind, ChangeType::GameProcessed);
    assert_eq!(first.change.algorithm_version, 1);
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.algorithm_version, Some(1));

    let v2 = reprocessed(&game, 2, 7);
    let second = store.complete_game(v2.clone()).await.unwrap();
    assert!(second.first);
    assert_eq!(second.change.kind, ChangeType::GameReprocessed);
    assert_eq!(second.change.algorithm_version, 2);
    assert_eq!(second.change.status, GameStatus::Processed);

    // Every read serves the newest…
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.algorithm_version, Some(2));
    assert_eq!(stored.processed_at, Some(v2.processed_at));
    assert_same_metrics(
        stored.metrics.as_ref().unwrap(),
        v2.metrics.as_ref().unwrap(),
    );
    let listed = store.list_games(ada, None, 10).await.unwrap();
    assert_eq!(listed[0].algorithm_version, Some(2));
    let progress = store.processed_games(ada).await.unwrap();
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].algorithm_version, 2);
    assert_same_metrics(&progress[0].metrics, v2.metrics.as_ref().unwrap());

    // …and the feed keeps both results, in order: the game's history.
    let feed = store.changes_since(ada, None, 10).await.unwrap();
    assert_eq!(feed, [first.change.clone(), second.change.clone()]);
    assert_eq!(
        store.latest_cursor(ada).await.unwrap(),
        Some(second.change.cursor.clone())
    );
    let since = store
        .changes_since(ada, Some(&first.change.cursor), 10)
        .await
        .unwrap();
    assert_eq!(since, [second.change]);
}

async fn one_result_per_game_and_version(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    store
        .complete_game(processed(&game, t0() + secs(5)))
        .await
        .unwrap();
    let first = store.complete_game(reprocessed(&game, 2, 7)).await.unwrap();
    // The same reprocessing delivered again, with another result: the
    // first stands.
    let again = Completion {
        reconciliation_event_id: Uuid::now_v7(),
        status: GameStatus::Failed,
        metrics: None,
        error: Some("should not be stored".into()),
        ..reprocessed(&game, 2, 8)
    };
    let second = store.complete_game(again).await.unwrap();
    assert!(!second.first);
    assert_eq!(second.change, first.change);
    assert_eq!(
        second.reconciliation_event_id,
        first.reconciliation_event_id
    );
    // The game's own event redelivered under version 2: version 1's
    // result is what that event made; nothing changes.
    let own = Completion {
        algorithm_version: 2,
        ..processed(&game, t0() + secs(50))
    };
    assert!(!store.complete_game(own).await.unwrap().first);
    assert_eq!(store.changes_since(ada, None, 10).await.unwrap().len(), 2);
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.status, GameStatus::Processed);
    assert_eq!(stored.algorithm_version, Some(2));
}

async fn an_older_version_arriving_late_is_history_only(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    store
        .complete_game(processed(&game, t0() + secs(5)))
        .await
        .unwrap();
    let v3 = reprocessed(&game, 3, 7);
    store.complete_game(v3.clone()).await.unwrap();
    let late = store.complete_game(reprocessed(&game, 2, 8)).await.unwrap();
    assert!(late.first);
    assert_eq!(late.change.algorithm_version, 2);
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.algorithm_version, Some(3));
    assert_eq!(stored.processed_at, Some(v3.processed_at));
    assert_same_metrics(
        stored.metrics.as_ref().unwrap(),
        v3.metrics.as_ref().unwrap(),
    );
    let versions: Vec<u32> = store
        .changes_since(ada, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.algorithm_version)
        .collect();
    assert_eq!(versions, [1, 3, 2]);
}

async fn a_failed_reprocessing_replaces_the_whole_result(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    store
        .complete_game(processed(&game, t0() + secs(5)))
        .await
        .unwrap();
    let failed = Completion {
        status: GameStatus::Failed,
        metrics: None,
        error: Some("the new definitions cannot read it".into()),
        ..reprocessed(&game, 2, 7)
    };
    let done = store.complete_game(failed.clone()).await.unwrap();
    assert_eq!(done.change.kind, ChangeType::GameReprocessed);
    assert_eq!(done.change.status, GameStatus::Failed);
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.status, GameStatus::Failed);
    assert_eq!(stored.metrics, None, "no metrics of version 1 beside it");
    assert_eq!(stored.error, failed.error);
    assert!(store.processed_games(ada).await.unwrap().is_empty());

    // And back: a later version that succeeds leaves no error behind.
    store.complete_game(reprocessed(&game, 3, 8)).await.unwrap();
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.status, GameStatus::Processed);
    assert_eq!(stored.error, None);
    assert!(stored.metrics.is_some());
}

async fn only_the_games_own_or_reprocessing_event_completes_it(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let game = submit(&*store, ada, 1, t0()).await;
    store
        .complete_game(processed(&game, t0() + secs(5)))
        .await
        .unwrap();
    for forged in [
        // A reprocessing id of another version than the result's.
        Completion {
            event_id: reprocessing_event_id(game.game_id, 3),
            ..reprocessed(&game, 2, 7)
        },
        // Another game's reprocessing id.
        Completion {
            event_id: reprocessing_event_id(Uuid::now_v7(), 2),
            ..reprocessed(&game, 2, 7)
        },
        // Another user's game.
        Completion {
            user_id: grace,
            ..reprocessed(&game, 2, 7)
        },
    ] {
        assert!(matches!(
            store.complete_game(forged).await,
            Err(StoreError::NotFound)
        ));
    }
    assert_eq!(
        store
            .game(ada, game.game_id)
            .await
            .unwrap()
            .unwrap()
            .algorithm_version,
        Some(1)
    );
    assert_eq!(store.changes_since(ada, None, 10).await.unwrap().len(), 1);
}

async fn games_to_reprocess_page_by_game_below_a_version(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let grace = create_user(&*store, "grace").await;
    let a1 = submit(&*store, ada, 1, t0()).await;
    let a2 = submit(&*store, ada, 2, t0() + secs(1)).await;
    let a3 = submit(&*store, ada, 3, t0() + secs(2)).await;
    let g1 = submit(&*store, grace, 4, t0() + secs(3)).await;
    let queued = submit(&*store, ada, 5, t0() + secs(4)).await;
    for game in [&a1, &a2, &a3, &g1] {
        store
            .complete_game(processed(game, t0() + secs(10)))
            .await
            .unwrap();
    }
    store
        .complete_game(Completion {
            status: GameStatus::Failed,
            metrics: None,
            error: Some("bad glove".into()),
            ..reprocessed(&a2, 2, 9)
        })
        .await
        .unwrap();

    let ids = |page: Vec<ReprocessTarget>| page.iter().map(|t| t.game_id).collect::<Vec<_>>();
    let all = store
        .games_to_reprocess(&below(2), None, 100)
        .await
        .unwrap();
    assert_eq!(all, [target(&a1), target(&a3), target(&g1)]);
    assert!(!ids(all).contains(&queued.game_id));
    assert_eq!(store.count_to_reprocess(&below(2)).await.unwrap(), 3);

    // Keyset pages, by game id.
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let page = store.games_to_reprocess(&below(2), after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.game_id);
        paged.extend(page);
    }
    assert_eq!(ids(paged), [a1.game_id, a3.game_id, g1.game_id]);

    // Of some users only; below another version.
    let graces = ReprocessSelection {
        below: 2,
        users: vec![grace],
    };
    assert_eq!(
        store.games_to_reprocess(&graces, None, 100).await.unwrap(),
        [target(&g1)]
    );
    assert_eq!(store.count_to_reprocess(&graces).await.unwrap(), 1);
    assert!(store
        .games_to_reprocess(&below(1), None, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.count_to_reprocess(&below(1)).await.unwrap(), 0);
    assert_eq!(
        ids(store
            .games_to_reprocess(&below(3), None, 100)
            .await
            .unwrap()),
        [a1.game_id, a2.game_id, a3.game_id, g1.game_id]
    );
    assert_eq!(store.count_to_reprocess(&below(3)).await.unwrap(), 4);
}

async fn reprocessing_events_are_stored_once_and_published_like_uploads(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    let lease = Duration::from_secs(600);
    let now = t0() + secs(60);
    let first = store.advance_outbox(&[], now, lease, 10).await.unwrap();
    store
        .advance_outbox(&[first[0].event.event_id], now, lease, 0)
        .await
        .unwrap();
    store
        .complete_game(processed(&game, now + secs(1)))
        .await
        .unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 0);

    let gone = ReprocessTarget {
        game_id: Uuid::now_v7(),
        user_id: ada,
    };
    let later = now + secs(100);
    assert_eq!(
        store
            .enqueue_reprocessing(&[target(&game), gone], 2, "trace-r", later)
            .await
            .unwrap(),
        1,
        "a game that does not exist is skipped"
    );
    assert_eq!(
        store
            .enqueue_reprocessing(&[target(&game)], 2, "trace-r", later)
            .await
            .unwrap(),
        0,
        "stored once"
    );
    assert_eq!(store.unpublished_count().await.unwrap(), 1);

    let claimed = store.advance_outbox(&[], later, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let event = &claimed[0].event;
    assert_eq!(event.event_id, reprocessing_event_id(game.game_id, 2));
    assert_eq!(event.reprocess, Some(2));
    assert_eq!((event.game_id, event.user_id), (game.game_id, ada));
    assert_eq!(event.game.game, game.submission.game());
    assert_eq!(event.sample_rate_hz, game.submission.sample_rate_hz());
    assert_eq!(claimed[0].trace_id, "trace-r");
    // Its wire form says it is a reprocessing, and reads back.
    let json = serde_json::to_value(event).unwrap();
    assert_eq!(json["reprocess"], true);
    assert_eq!(json["algorithm_version"], 2);
    assert_eq!(
        &ProcessingEvent::from_json(json.to_string().as_bytes()).unwrap(),
        event
    );

    store
        .advance_outbox(&[event.event_id], later, lease, 0)
        .await
        .unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 0);
    // Asked again while the game is still below the version: published
    // again (its message may be lost).
    assert_eq!(
        store
            .enqueue_reprocessing(&[target(&game)], 2, "trace-s", later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.unpublished_count().await.unwrap(), 1);
    let again = store.advance_outbox(&[], later, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.event_id, event.event_id);
    assert_eq!(again[0].trace_id, "trace-s");
}

async fn unfinished_reprocessing_is_republished_after_a_restart(store: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let todo = submit(&*store, ada, 1, t0()).await;
    let done = submit(&*store, ada, 2, t0() + secs(1)).await;
    let lease = Duration::from_secs(600);
    let now = t0() + secs(60);
    let uploads = store.advance_outbox(&[], now, lease, 10).await.unwrap();
    let ids: Vec<Uuid> = uploads.iter().map(|e| e.event.event_id).collect();
    store.advance_outbox(&ids, now, lease, 0).await.unwrap();
    for game in [&todo, &done] {
        store
            .complete_game(processed(game, now + secs(1)))
            .await
            .unwrap();
    }
    store
        .enqueue_reprocessing(&[target(&todo), target(&done)], 2, "trace-r", now)
        .await
        .unwrap();
    let claimed = store.advance_outbox(&[], now, lease, 10).await.unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|e| e.event.event_id).collect();
    store.advance_outbox(&ids, now, lease, 0).await.unwrap();
    store.complete_game(reprocessed(&done, 2, 7)).await.unwrap();
    assert_eq!(store.unpublished_count().await.unwrap(), 0);

    // A bus that kept nothing: the one still below its version goes
    // again, the one done does not.
    assert_eq!(store.republish_unfinished().await.unwrap(), 1);
    let again = store.advance_outbox(&[], now, lease, 10).await.unwrap();
    let ids: Vec<Uuid> = again.iter().map(|e| e.event.event_id).collect();
    assert_eq!(ids, [reprocessing_event_id(todo.game_id, 2)]);
}

async fn two_processes_reprocess_a_game_once(store: Arc<dyn Store>, twin: Arc<dyn Store>) {
    let ada = create_user(&*store, "ada").await;
    let mut games = Vec::new();
    for i in 0..6 {
        let game = submit(&*store, ada, i, t0()).await;
        store
            .complete_game(processed(&game, t0() + secs(5)))
            .await
            .unwrap();
        games.push(game);
    }
    for game in &games {
        let (a, b) = (reprocessed(game, 2, 7), reprocessed(game, 2, 8));
        let (sa, sb) = (Arc::clone(&store), Arc::clone(&twin));
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.complete_game(a).await }),
            tokio::spawn(async move { sb.complete_game(b).await }),
        );
        let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert!(ra.first != rb.first, "exactly one stored it");
        assert_eq!(ra.change, rb.change);
    }
    let feed = store.changes_since(ada, None, 100).await.unwrap();
    assert_eq!(feed.len(), 12);
    assert_eq!(
        feed.iter()
            .filter(|c| c.kind == ChangeType::GameReprocessed)
            .count(),
        6
    );
}

/// What the stores held before versions: a processed game and its
/// change with no version at all (MongoDB), or version 1 from the
/// migration (SQLite, checked in its schema tests): version 1, and
/// reprocessed like any other.
async fn results_stored_before_versions_are_version_1(store: Arc<dyn Store>, raw: Raw) {
    let ada = create_user(&*store, "ada").await;
    let game = submit(&*store, ada, 1, t0()).await;
    store
        .complete_game(processed(&game, t0() + secs(5)))
        .await
        .unwrap();
    raw.forget_versions(&game).await;
    let stored = store.game(ada, game.game_id).await.unwrap().unwrap();
    assert_eq!(stored.algorithm_version, Some(1));
    let feed = store.changes_since(ada, None, 10).await.unwrap();
    assert_eq!(feed[0].algorithm_version, 1);
    assert_eq!(feed[0].kind, ChangeType::GameProcessed);
    assert_eq!(
        store.processed_games(ada).await.unwrap()[0].algorithm_version,
        1
    );
    assert_eq!(
        store.games_to_reprocess(&below(2), None, 10).await.unwrap(),
        [target(&game)]
    );
    store.complete_game(reprocessed(&game, 2, 7)).await.unwrap();
    assert_eq!(
        store
            .game(ada, game.game_id)
            .await
            .unwrap()
            .unwrap()
            .algorithm_version,
        Some(2)
    );
    assert_eq!(store.count_to_reprocess(&below(2)).await.unwrap(), 0);
}
impl Raw {
    /// Removes the algorithm version of a game and of its changes, as the
    /// stores held them before versions (SQLite: as its migration would
    /// have set them, 1 for the game; the changes' column has a default).
    async fn forget_versions(&self, game: &NewGame) {
        let id = game.game_id.hyphenated().to_string();
        match self {
            Raw::Sqlite(_) => {
                self.set("games", "game_id", &id, "algorithm_version", "1")
                    .await
            }
            #[cfg(feature = "mongodb")]
            Raw::Mongo(db) => {
                use ::mongodb::bson::{doc, Document};
                db.collection::<Document>("games")
                    .update_one(
                        doc! { "_id": &id },
                        doc! { "$unset": { "algorithm_version": "" } },
                    )
                    .await
                    .unwrap();
                db.collection::<Document>("changes")
                    .update_many(
                        doc! { "game_id": &id },
                        doc! { "$unset": { "algorithm_version": "", "reprocessed": "" } },
                    )
                    .await
                    .unwrap();
            }
        }
    }
}
