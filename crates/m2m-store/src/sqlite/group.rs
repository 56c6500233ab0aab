//! Group commit of uploads: the uploads that arrive together are written
//! in one transaction and made durable by one fsync (the design and its
//! measurements are in the [module doc](super)).

use super::error::{db, each_of};
use super::games::{insert_game, EncodedGame};
use super::{Inner, SqliteStore};
use crate::{Result, StoreError, SubmitOutcome};
use parking_lot::MutexGuard;
use rusqlite::{Connection, TransactionBehavior};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// How large one group commit may grow. The first upload in the queue is
/// always taken, whatever its size; the others join while both bounds hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Uploads in one transaction. Bounds the wait of the first one: it is
    /// answered after the whole batch is written.
    pub games: usize,
    /// Encoded column bytes in one transaction. Bounds the WAL that one
    /// commit adds before a checkpoint can run.
    pub bytes: usize,
}

impl BatchLimits {
    /// No grouping: one upload per transaction, as every other write.
    pub const ONE_BY_ONE: BatchLimits = BatchLimits { games: 1, bytes: 0 };
}

/// The uploads waiting for their commit, oldest first, and whether a
/// drainer is running to commit them.
///
/// A `std::sync::Mutex`: held only to push or pop, never across an
/// `.await` or a write.
#[derive(Default)]
pub(super) struct SubmitQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Job>,
    /// A drainer is running and will take what is pending. Set by the push
    /// that finds it unset (that caller starts one), cleared by the drainer
    /// under the same lock when it finds the queue empty: so every upload
    /// pushed is taken by a drainer, and at most one runs at a time.
    draining: bool,
}

struct Job {
    game: EncodedGame,
    /// Where its outcome goes once its batch is committed (or failed).
    answer: oneshot::Sender<Result<SubmitOutcome>>,
}

impl SubmitQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Pushes and pops leave the queue whole even when interrupted.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `game`. Returns where its outcome will come, and whether the
    /// caller must start a drainer (none was running).
    fn push(&self, game: EncodedGame) -> (oneshot::Receiver<Result<SubmitOutcome>>, bool) {
        let (answer, outcome) = oneshot::channel();
        let mut state = self.lock();
        state.pending.push_back(Job { game, answer });
        let start = !state.draining;
        state.draining = true;
        (outcome, start)
    }

    /// Takes the next batch, oldest first, within `limits`; `None` (and the
    /// drainer stops) when nothing is pending.
    fn next_batch(&self, limits: BatchLimits) -> Option<Vec<Job>> {
        let mut state = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(job) = state.pending.front() {
            let size = job.game.bytes();
            if !batch.is_empty() && (batch.len() >= limits.games || bytes + size > limits.bytes) {
                break;
            }
            bytes += size;
            batch.extend(state.pending.pop_front());
        }
        if batch.is_empty() {
            state.draining = false;
            None
        } else {
            Some(batch)
        }
    }
}

/// Fails what is queued if a drainer dies by a panic, so that no caller
/// waits for a commit that nobody will make, and lets the next upload start
/// a new drainer.
struct Draining<'a>(&'a SubmitQueue);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.lock();
            let dropped = state.pending.len();
            state.pending.clear();
            state.draining = false;
            tracing::error!(dropped, "the SQLite upload writer panicked");
        }
    }
}

impl SqliteStore {
    /// Queues an encoded upload for the next group commit and waits for
    /// its outcome, which comes only after the commit is durable.
    ///
    /// If the caller goes away while waiting, the upload is still written
    /// (as a `spawn_blocking` task runs to its end): its idempotency key, if
    /// any, then answers a retry.
    pub(super) async fn group_commit(&self, game: EncodedGame) -> Result<SubmitOutcome> {
        let (outcome, start) = self.inner.submissions.push(game);
        if start {
            let inner = Arc::clone(&self.inner);
            // Detached: it ends when the queue is empty.
            drop(tokio::task::spawn_blocking(move || {
                inner.drain_submissions();
            }));
        }
        outcome.await.map_err(|_| {
            StoreError::unavailable_because("the SQLite upload writer stopped before the commit")
        })?
    }
}

impl Inner {
    /// Commits queued uploads, batch after batch, until none is left.
    fn drain_submissions(&self) {
        let _draining = Draining(&self.submissions);
        while let Some(batch) = self.submissions.next_batch(self.settings.batch) {
            let (games, answers): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|job| (job.game, job.answer)).unzip();
            let mut conn = self.writer.lock();
            let outcomes = match commit_batch(&mut conn, &games) {
                Ok(outcomes) => outcomes,
                Err(e) => each_of(e, games.len()).into_iter().map(Err).collect(),
            };
            // Straight to a waiting `write` (outbox, completions…), if any:
            // a plain unlock would let this loop take the lock again first.
            MutexGuard::unlock_fair(conn);
            tracing::debug!(games = games.len(), "group commit");
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                // A caller that went away needs no answer.
                let _ = answer.send(outcome);
            }
        }
    }
}

/// Writes each upload of `games` in its own savepoint of one `BEGIN
/// IMMEDIATE` transaction and commits once. Each upload gets its own
/// outcome: a failed one is rolled back to its savepoint, leaving the
/// others. `Err` when the transaction itself failed (begin, a savepoint,
/// the commit): then nothing was written and every upload failed.
pub(super) fn commit_batch(
    conn: &mut Connection,
    games: &[EncodedGame],
) -> Result<Vec<Result<SubmitOutcome>>> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let mut outcomes = Vec::with_capacity(games.len());
    for game in games {
        let savepoint = tx.savepoint().map_err(db)?;
        let outcome = insert_game(&savepoint, game);
        match outcome {
            Ok(_) => savepoint.commit(),
            // Rolls back to the savepoint, then releases it.
            Err(_) => savepoint.finish(),
        }
        .map_err(db)?;
        outcomes.push(outcome);
    }
    tx.commit().map_err(db)?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Games, IdempotencyRecord, NewGame, Outbox};
    use chrono::{DateTime, Utc};
    use m2m_domain::GameSubmission;
    use m2m_synth::GameSpec;
    use uuid::Uuid;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn new_game(user_id: Uuid, seed: u64) -> NewGame {
        let spec = GameSpec {
            duration_s: 1.0,
            seed,
            ..GameSpec::standard()
        };
        let json = spec.submission_json("pinch-garden", 1234.0);
        NewGame {
            game_id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            user_id,
            submission: GameSubmission::from_json(json.as_bytes()).unwrap(),
            submitted_at: t0(),
            trace_id: "trace".into(),
        }
    }

    fn key(key: &str, hash: u8, body: &str) -> Option<IdempotencyRecord> {
        Some(IdempotencyRecord {
            key: key.into(),
            request_hash: [hash; 32],
            status: 202,
            body: body.as_bytes().to_vec(),
        })
    }

    fn encoded(game: &NewGame, idempotency: Option<IdempotencyRecord>) -> EncodedGame {
        EncodedGame::new(game.clone(), idempotency).unwrap()
    }

    /// One batch, as the writer takes it when these arrive together.
    async fn commit(store: &SqliteStore, games: &[EncodedGame]) -> Vec<Result<SubmitOutcome>> {
        let mut conn = store.inner.writer.lock();
        commit_batch(&mut conn, games).unwrap()
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m2m.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn each_upload_of_a_batch_gets_its_own_outcome() {
        let (_dir, store) = store();
        let ada = Uuid::now_v7();
        let earlier = new_game(ada, 1);
        assert_eq!(
            commit(&store, &[encoded(&earlier, key("k1", 1, "earlier"))]).await[0]
                .as_ref()
                .unwrap(),
            &SubmitOutcome::Created
        );

        let new = new_game(ada, 2);
        let reused = new_game(ada, 3);
        let first = new_game(ada, 4);
        let replayed = new_game(ada, 4);
        let duplicate = NewGame {
            event_id: Uuid::now_v7(),
            ..new.clone()
        };
        let last = new_game(ada, 5);
        let outcomes = commit(
            &store,
            &[
                encoded(&new, None),
                // The key of an earlier batch, another body.
                encoded(&reused, key("k1", 9, "reused")),
                // A key first seen in this batch, then retried in it.
                encoded(&first, key("k2", 4, "first")),
                encoded(&replayed, key("k2", 4, "replayed")),
                // The id of a game stored earlier in the batch: an error.
                encoded(&duplicate, None),
                encoded(&last, None),
            ],
        )
        .await;
        let outcomes: Vec<_> = outcomes
            .into_iter()
            .map(|o| o.map_err(|e| e.to_string()))
            .collect();
        assert_eq!(
            outcomes,
            [
                Ok(SubmitOutcome::Created),
                Ok(SubmitOutcome::KeyReused),
                Ok(SubmitOutcome::Created),
                Ok(SubmitOutcome::Replayed {
                    status: 202,
                    body: b"first".to_vec()
                }),
                Err("conflict: game or event id exists".to_owned()),
                Ok(SubmitOutcome::Created),
            ]
        );

        // The failed and refused uploads left nothing; the others are whole.
        for (game, stored) in [
            (&earlier, true),
            (&new, true),
            (&reused, false),
            (&first, true),
            (&replayed, false),
            (&last, true),
        ] {
            assert_eq!(
                store.game(ada, game.game_id).await.unwrap().is_some(),
                stored
            );
            assert_eq!(
                store
                    .game_samples(ada, game.game_id)
                    .await
                    .unwrap()
                    .is_some(),
                stored
            );
        }
        assert_eq!(store.unpublished_count().await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_upload_of_its_batch() {
        let (_dir, store) = store();
        let ada = Uuid::now_v7();
        let games = [new_game(ada, 1), new_game(ada, 2)];
        let err = {
            let mut conn = store.inner.writer.lock();
            // Another transaction is open on the connection: BEGIN fails.
            conn.execute_batch("BEGIN").unwrap();
            let games = [encoded(&games[0], None), encoded(&games[1], None)];
            let err = commit_batch(&mut conn, &games).unwrap_err();
            conn.execute_batch("ROLLBACK").unwrap();
            err
        };
        let errors: Vec<String> = each_of(err, 2).iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2);
        assert!(errors
            .iter()
            .all(|e| e.starts_with("database unavailable: SQLite:")));
        assert_eq!(errors[0], errors[1]);
        for game in &games {
            assert!(store.game(ada, game.game_id).await.unwrap().is_none());
        }
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes_and_take_at_least_one() {
        let queue = SubmitQueue::default();
        let ada = Uuid::now_v7();
        let one = encoded(&new_game(ada, 1), None);
        let size = one.bytes();
        let (_rx, start) = queue.push(one);
        assert!(start, "the first push starts a drainer");
        for seed in 2..=5 {
            let (_rx, start) = queue.push(encoded(&new_game(ada, seed), None));
            assert!(!start, "one drainer at a time");
        }
        let sizes = |limits| queue.next_batch(limits).map(|b| b.len());
        // Three fit by count, two by bytes; one too large still goes alone.
        let by_count = BatchLimits {
            games: 3,
            bytes: usize::MAX,
        };
        assert_eq!(sizes(by_count), Some(3));
        let by_bytes = BatchLimits {
            games: 64,
            bytes: size,
        };
        assert_eq!(sizes(by_bytes), Some(1));
        assert_eq!(sizes(BatchLimits::ONE_BY_ONE), Some(1));
        assert_eq!(sizes(by_count), None, "empty: the drainer stops");
        let (_rx, start) = queue.push(encoded(&new_game(ada, 6), None));
        assert!(start, "the next push starts another");
    }
}
