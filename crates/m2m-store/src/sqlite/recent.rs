//! The samples of games just uploaded, kept for the processor of the same
//! process.
//!
//! In `m2m serve` the processor analyses each game moments after its
//! upload was committed, and would read its columns back from the file and
//! decode them: taking them from here instead saved about 7 % of the
//! server's CPU a game at a rate it keeps up with (docs/performance.md,
//! "CPU a game"). When
//! [`SqliteSettings::recent_samples`](super::SqliteSettings::recent_samples)
//! is above zero, an upload that was stored leaves its parsed samples here,
//! and [`Games::game_samples`](crate::Games::game_samples) takes them out
//! instead of reading them. They are the very values the store holds: the
//! columns are encoded losslessly, so decoding them gives these values bit
//! for bit.
//!
//! Bounded in both ways: at most `capacity` games (an upload finds no room
//! and is simply read from the file later), and none older than [`TTL`]
//! (a game whose processing never asks for it, such as one whose account
//! was deleted, gives its place up). Deleting an account forgets its games
//! at once. Nothing here is needed for correctness: an empty cache reads
//! everything from the file.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use m2m_domain::GameSamples;
use uuid::Uuid;

/// How long a game's samples wait for its processing.
pub(super) const TTL: Duration = Duration::from_secs(60);

pub(super) struct RecentSamples {
    capacity: usize,
    /// Oldest first: entries are added in time order.
    entries: parking_lot::Mutex<VecDeque<Entry>>,
}

struct Entry {
    game_id: Uuid,
    user_id: Uuid,
    added: Instant,
    samples: GameSamples,
}

impl RecentSamples {
    pub(super) fn new(capacity: usize) -> Self {
        RecentSamples {
            capacity,
            entries: parking_lot::Mutex::new(VecDeque::new()),
        }
    }

    /// Whether uploads should keep their samples at all.
    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Keeps a stored game's samples, if there is room once the expired
    /// ones are gone.
    pub(super) fn put(&self, game_id: Uuid, user_id: Uuid, samples: GameSamples) {
        self.put_at(game_id, user_id, samples, Instant::now());
    }

    fn put_at(&self, game_id: Uuid, user_id: Uuid, samples: GameSamples, now: Instant) {
        let mut entries = self.entries.lock();
        while entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.added) >= TTL)
        {
            entries.pop_front();
        }
        if entries.len() < self.capacity {
            entries.push_back(Entry {
                game_id,
                user_id,
                added: now,
                samples,
            });
        }
    }

    /// Takes out the samples of `user_id`'s game, if they are here.
    pub(super) fn take(&self, user_id: Uuid, game_id: Uuid) -> Option<GameSamples> {
        let mut entries = self.entries.lock();
        let at = entries
            .iter()
            .position(|e| e.game_id == game_id && e.user_id == user_id)?;
        entries.remove(at).map(|e| e.samples)
    }

    /// Forgets every game of `user_id` (their account is being deleted).
    pub(super) fn forget_user(&self, user_id: Uuid) {
        self.entries.lock().retain(|e| e.user_id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m2m_domain::Channels;
    use std::collections::BTreeMap;

    fn samples(score: f64) -> GameSamples {
        GameSamples {
            sample_rate_hz: 100.0,
            score,
            channels: Channels::from_stored(BTreeMap::from([(
                "flex_thumb".to_owned(),
                vec![1.0, 2.0],
            )]))
            .unwrap(),
        }
    }

    #[test]
    fn a_game_is_taken_once_and_only_by_its_user() {
        let recent = RecentSamples::new(4);
        let (user, other, game) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        recent.put(game, user, samples(1.0));
        assert!(recent.take(other, game).is_none());
        assert_eq!(recent.take(user, game).unwrap().score, 1.0);
        assert!(recent.take(user, game).is_none());
    }

    #[test]
    fn a_full_cache_keeps_what_it_has_until_it_expires() {
        let recent = RecentSamples::new(2);
        let user = Uuid::now_v7();
        let games: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let start = Instant::now();
        recent.put_at(games[0], user, samples(0.0), start);
        recent.put_at(games[1], user, samples(1.0), start);
        // No room: the oldest are the next to be processed, so they stay.
        recent.put_at(games[2], user, samples(2.0), start);
        assert!(recent.take(user, games[2]).is_none());
        // Once the first two expired, a new game finds room.
        recent.put_at(games[2], user, samples(2.0), start + TTL);
        assert!(recent.take(user, games[0]).is_none());
        assert!(recent.take(user, games[1]).is_none());
        assert_eq!(recent.take(user, games[2]).unwrap().score, 2.0);
    }

    #[test]
    fn a_deleted_users_games_are_forgotten() {
        let recent = RecentSamples::new(4);
        let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (game, kept) = (Uuid::now_v7(), Uuid::now_v7());
        recent.put(game, user, samples(1.0));
        recent.put(kept, other, samples(2.0));
        recent.forget_user(user);
        assert!(recent.take(user, game).is_none());
        assert!(recent.take(other, kept).is_some());
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let recent = RecentSamples::new(0);
        assert!(!recent.enabled());
        let (user, game) = (Uuid::now_v7(), Uuid::now_v7());
        recent.put(game, user, samples(1.0));
        assert!(recent.take(user, game).is_none());
    }

    mod in_the_store {
        use crate::sqlite::group::tests::new_game;
        use crate::{Accounts, Games, SqliteSettings, SqliteStore, SubmitOutcome};
        use m2m_domain::GameSamples;
        use std::path::Path;
        use uuid::Uuid;

        fn bits(samples: &GameSamples) -> Vec<(String, Vec<u64>)> {
            samples
                .channels
                .iter()
                .map(|(name, col)| (name.to_owned(), col.iter().map(|v| v.to_bits()).collect()))
                .collect()
        }

        fn store(path: &Path, recent_samples: usize) -> SqliteStore {
            let settings = SqliteSettings {
                recent_samples,
                ..SqliteSettings::default()
            };
            SqliteStore::open_with(path, settings).unwrap()
        }

        /// Removes every stored column behind the store's back, so that only
        /// memory can still answer for them.
        fn drop_columns(path: &Path) {
            rusqlite::Connection::open(path)
                .unwrap()
                .execute("DELETE FROM game_columns", [])
                .unwrap();
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn an_upload_hands_its_samples_to_the_first_read_of_them() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m2m.db");
            let store = store(&path, 4);
            let user = Uuid::now_v7();
            let game = new_game(user, 1);
            let (game_id, want) = (game.game_id, game.submission.clone().into_samples());
            let outcome = store.submit_game(game, None).await.unwrap();
            assert!(matches!(outcome, SubmitOutcome::Created));
            drop_columns(&path);
            let got = store.game_samples(user, game_id).await.unwrap().unwrap();
            assert_eq!(bits(&got), bits(&want));
            assert_eq!(
                (got.sample_rate_hz, got.score),
                (want.sample_rate_hz, want.score)
            );
            // Taken out: the next read is the file's, which has no columns now.
            let again = store.game_samples(user, game_id).await;
            assert!(!matches!(again, Ok(Some(_))), "{again:?}");
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn by_default_every_read_is_the_files() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m2m.db");
            let store = store(&path, 0);
            let user = Uuid::now_v7();
            let game = new_game(user, 1);
            let game_id = game.game_id;
            store.submit_game(game, None).await.unwrap();
            drop_columns(&path);
            let read = store.game_samples(user, game_id).await;
            assert!(!matches!(read, Ok(Some(_))), "{read:?}");
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn deleting_the_account_forgets_its_games_samples() {
            let dir = tempfile::tempdir().unwrap();
            let store = store(&dir.path().join("m2m.db"), 4);
            let user = Uuid::now_v7();
            let game = new_game(user, 1);
            let game_id = game.game_id;
            store.submit_game(game, None).await.unwrap();
            store.delete_account(user).await.unwrap();
            assert!(store.game_samples(user, game_id).await.unwrap().is_none());
        }
    }
}
