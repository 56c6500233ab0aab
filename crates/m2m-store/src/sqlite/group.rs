//! Group commit: the uploads, completions and publisher steps that arrive
//! together are written in one transaction and made durable by one fsync
//! (the design and its measurements are in the [module doc](super)).

use super::error::{db, each_of};
use super::games::{insert_game, EncodedGame};
use super::{Inner, SqliteStore};
use crate::{Result, StoreError, SubmitOutcome};
use parking_lot::MutexGuard;
use rusqlite::{Connection, TransactionBehavior};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// How large one group commit may grow. The first write in the queue is
/// always taken, whatever its size; the others join while both bounds hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Writes (uploads, completions, publisher steps) in one transaction.
    /// Bounds the wait of the first one: it is answered after the whole
    /// batch is written.
    pub writes: usize,
    /// Encoded column bytes in one transaction. Bounds the WAL that one
    /// commit adds before a checkpoint can run.
    pub bytes: usize,
}

impl BatchLimits {
    /// No grouping: one write per transaction.
    pub const ONE_BY_ONE: BatchLimits = BatchLimits {
        writes: 1,
        bytes: 0,
    };
}

/// One write waiting for its group commit. It runs in its own savepoint of
/// the batch's transaction and is answered only after that transaction's
/// commit (or its failure).
pub(super) struct Job {
    /// The encoded column bytes it adds (0 for anything but an upload).
    bytes: usize,
    /// Runs the write on the connection given, or, given none (its batch
    /// failed before its turn), does nothing; either way, says how to
    /// answer.
    run: Run,
}

type Run = Box<dyn FnOnce(Option<&Connection>) -> Settle + Send>;

/// A job once run: whether its savepoint is kept, and how to answer its
/// caller once the batch's commit is known (`None`: committed).
struct Settle {
    kept: bool,
    answer: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

impl Job {
    /// A job running `write`, and where its outcome will come: `write`'s
    /// own result once committed, the commit's error if the batch failed.
    /// An `Err` from `write` rolls back its savepoint only.
    pub(super) fn new<T: Send + 'static>(
        bytes: usize,
        write: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> (Job, oneshot::Receiver<Result<T>>) {
        let (answer, outcome) = oneshot::channel();
        let run = move |conn: Option<&Connection>| {
            let result = conn.map(write);
            Settle {
                kept: matches!(result, Some(Ok(_))),
                answer: Box::new(move |failed: Option<StoreError>| {
                    let outcome = match (failed, result) {
                        (Some(e), _) => Err(e),
                        (None, Some(result)) => result,
                        (None, None) => Err(StoreError::unavailable_because(
                            "a write of a committed batch was not run",
                        )),
                    };
                    // A caller that went away needs no answer.
                    let _ = answer.send(outcome);
                }),
            }
        };
        (
            Job {
                bytes,
                run: Box::new(run),
            },
            outcome,
        )
    }
}

/// The writes waiting for their commit, oldest first, and whether a
/// drainer is running to commit them.
///
/// A `std::sync::Mutex`: held only to push or pop, never across an
/// `.await` or a write.
#[derive(Default)]
pub(super) struct WriteQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Job>,
    /// A drainer is running and will take what is pending. Set by the push
    /// that finds it unset (that caller starts one), cleared by the drainer
    /// under the same lock when it finds the queue empty: so every write
    /// pushed is taken by a drainer, and at most one runs at a time.
    draining: bool,
}

impl WriteQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Pushes and pops leave the queue whole even when interrupted.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`. Returns whether the caller must start a drainer (none
    /// was running).
    fn push(&self, job: Job) -> bool {
        let mut state = self.lock();
        state.pending.push_back(job);
        let start = !state.draining;
        state.draining = true;
        start
    }

    /// Takes the next batch, oldest first, within `limits`; `None` (and the
    /// drainer stops) when nothing is pending.
    fn next_batch(&self, limits: BatchLimits) -> Option<Vec<Job>> {
        let mut state = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(job) = state.pending.front() {
            let size = job.bytes;
            if !batch.is_empty() && (batch.len() >= limits.writes || bytes + size > limits.bytes) {
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
/// waits for a commit that nobody will make, and lets the next write start
/// a new drainer.
struct Draining<'a>(&'a WriteQueue);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.lock();
            let dropped = state.pending.len();
            state.pending.clear();
            state.draining = false;
            tracing::error!(dropped, "the SQLite group-commit writer panicked");
        }
    }
}

impl SqliteStore {
    /// Queues an encoded upload for the next group commit and waits for
    /// its outcome, which comes only after the commit is durable.
    pub(super) async fn group_commit(&self, game: EncodedGame) -> Result<SubmitOutcome> {
        self.grouped(game.bytes(), move |conn| insert_game(conn, &game))
            .await
    }

    /// Runs `write` in the next group commit (its own savepoint of one
    /// shared transaction) and waits, without holding a thread, for its
    /// outcome, which comes only after the commit is durable.
    ///
    /// If the caller goes away while waiting, the write is still made (as
    /// a `spawn_blocking` task runs to its end): an upload's idempotency
    /// key, if any, then answers a retry.
    pub(super) async fn grouped<T: Send + 'static>(
        &self,
        bytes: usize,
        write: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (job, outcome) = Job::new(bytes, write);
        if self.inner.writes.push(job) {
            let inner = Arc::clone(&self.inner);
            // Detached: it ends when the queue is empty.
            drop(tokio::task::spawn_blocking(move || {
                inner.drain_writes();
            }));
        }
        outcome.await.map_err(|_| {
            StoreError::unavailable_because("the SQLite writer stopped before the commit")
        })?
    }
}

impl Inner {
    /// Commits queued writes, batch after batch, until none is left.
    fn drain_writes(&self) {
        let _draining = Draining(&self.writes);
        while let Some(batch) = self.writes.next_batch(self.settings.batch) {
            let writes = batch.len();
            let mut conn = self.writer.lock();
            let settled = commit_batch(&mut conn, batch);
            // Straight to a waiting `write` (accounts, invites…), if any: a
            // plain unlock would let this loop take the lock again first.
            MutexGuard::unlock_fair(conn);
            tracing::debug!(writes, "group commit");
            match settled {
                Ok(settled) => {
                    for settle in settled {
                        (settle.answer)(None);
                    }
                }
                Err((e, settled)) => {
                    for (settle, e) in settled.into_iter().zip(each_of(e, writes)) {
                        (settle.answer)(Some(e));
                    }
                }
            }
        }
    }
}

/// Runs each job of `batch` in its own savepoint of one `BEGIN IMMEDIATE`
/// transaction and commits once. A job whose write failed is rolled back
/// to its savepoint, leaving the others. `Err` when the transaction itself
/// failed (begin, a savepoint, the commit): then nothing was written, and
/// every job (those not run too) is to be answered with that error.
fn commit_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
) -> std::result::Result<Vec<Settle>, (StoreError, Vec<Settle>)> {
    let mut settled = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    let result = (|| {
        let mut tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for job in jobs.by_ref() {
            let savepoint = tx.savepoint().map_err(db)?;
            let settle = (job.run)(Some(&*savepoint));
            let kept = settle.kept;
            settled.push(settle);
            if kept {
                savepoint.commit()
            } else {
                // Rolls back to the savepoint, then releases it.
                savepoint.finish()
            }
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    })();
    match result {
        Ok(()) => Ok(settled),
        Err(e) => {
            // The jobs not run yet are answered with the error too.
            settled.extend(jobs.map(|job| (job.run)(None)));
            Err((e, settled))
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{ChangeFeed, Completion, Games, IdempotencyRecord, NewGame, Outbox};
    use chrono::{DateTime, Utc};
    use m2m_domain::GameStatus;
    use m2m_domain::GameSubmission;
    use m2m_synth::GameSpec;
    use std::time::Duration;
    use uuid::Uuid;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A short standard game of `user_id`'s (the seed varies its samples).
    pub(in crate::sqlite) fn new_game(user_id: Uuid, seed: u64) -> NewGame {
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
        EncodedGame::with_samples(game.clone(), idempotency)
            .unwrap()
            .0
    }

    /// One batch of uploads, as the writer takes it when these arrive
    /// together: each one's outcome, or the transaction's error.
    async fn commit(
        store: &SqliteStore,
        games: &[EncodedGame],
    ) -> std::result::Result<Vec<Result<SubmitOutcome>>, StoreError> {
        let (jobs, outcomes): (Vec<_>, Vec<_>) = games
            .iter()
            .map(|game| {
                let game = game.clone();
                Job::new(game.bytes(), move |conn| insert_game(conn, &game))
            })
            .unzip();
        let settled = {
            let mut conn = store.inner.writer.lock();
            commit_batch(&mut conn, jobs)
        };
        let failed = match settled {
            Ok(settled) => {
                for settle in settled {
                    (settle.answer)(None);
                }
                None
            }
            Err((e, settled)) => {
                let errors = each_of(e, settled.len());
                let shown = errors[0].to_string();
                for (settle, e) in settled.into_iter().zip(errors) {
                    (settle.answer)(Some(e));
                }
                Some(shown)
            }
        };
        let mut results = Vec::new();
        for outcome in outcomes {
            results.push(outcome.await.expect("every job is answered"));
        }
        match failed {
            None => Ok(results),
            Some(shown) => {
                // Every job got the transaction's error.
                assert!(results
                    .iter()
                    .all(|r| matches!(r, Err(e) if e.to_string() == shown)));
                Err(StoreError::unavailable_because(shown))
            }
        }
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
            commit(&store, &[encoded(&earlier, key("k1", 1, "earlier"))])
                .await
                .unwrap()[0]
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
        .await
        .unwrap();
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
            // Another transaction is open on the connection: BEGIN fails.
            store.inner.writer.lock().execute_batch("BEGIN").unwrap();
            let batch = [encoded(&games[0], None), encoded(&games[1], None)];
            let err = commit(&store, &batch).await.unwrap_err();
            store.inner.writer.lock().execute_batch("ROLLBACK").unwrap();
            err
        };
        assert!(
            err.to_string().contains("SQLite:"),
            "the transaction's own error: {err}"
        );
        for game in &games {
            assert!(store.game(ada, game.game_id).await.unwrap().is_none());
        }
    }

    fn completion(game: &NewGame) -> Completion {
        Completion {
            event_id: game.event_id,
            reconciliation_event_id: Uuid::now_v7(),
            game_id: game.game_id,
            user_id: game.user_id,
            status: GameStatus::Failed,
            processed_at: t0(),
            metrics: None,
            error: Some("test".into()),
            algorithm_version: 1,
        }
    }

    /// Uploads, publisher steps and completions queued together share
    /// batches, and each keeps its own outcome: a completion that finds no
    /// game fails alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_claims_and_completions_share_a_batch_with_their_own_outcomes() {
        let (_dir, store) = store();
        let ada = Uuid::now_v7();
        let stored = new_game(ada, 1);
        store.submit_game(stored.clone(), None).await.unwrap();
        let stray = new_game(ada, 2);
        let fresh = new_game(ada, 3);

        // The drainer of that upload may still be running after its answer:
        // wait until it has stopped, so the next push starts a new one.
        while store.inner.writes.lock().draining {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Hold the writer. The first completion's batch (it alone) waits
        // for it; the three writes after it queue up as the next batch.
        let held = store.inner.writer.lock();
        let pending = || store.inner.writes.lock().pending.len();
        let first = {
            let (s, stored) = (store.clone(), stored.clone());
            tokio::spawn(async move { s.complete_game(completion(&stored)).await })
        };
        let waited = std::time::Instant::now();
        let bounded = || {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the writes never queued up as expected"
            );
        };
        while !(pending() == 0 && store.inner.writes.lock().draining) {
            bounded();
            // A blocking wait: the writer is held, and tasks run on the
            // runtime's workers.
            std::thread::sleep(Duration::from_millis(5));
        }
        let rest = {
            let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
            let (stray, fresh) = (stray.clone(), fresh.clone());
            tokio::spawn(async move {
                tokio::join!(
                    s1.complete_game(completion(&stray)),
                    s2.submit_game(fresh, None),
                    s3.advance_outbox(&[], t0(), Duration::from_secs(60), 10),
                )
            })
        };
        while pending() < 3 {
            bounded();
            // A blocking wait: the writer is held, and tasks run on the
            // runtime's workers.
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        let done = first.await.unwrap();
        let (not_found, submitted, claimed) = rest.await.unwrap();

        assert!(done.unwrap().first);
        assert!(matches!(not_found, Err(StoreError::NotFound)));
        assert_eq!(submitted.unwrap(), SubmitOutcome::Created);
        // The claim saw what committed before its batch, and the uploads
        // queued before it in its batch.
        let claimed: Vec<Uuid> = claimed.unwrap().iter().map(|e| e.event.game_id).collect();
        assert!(claimed.contains(&stored.game_id), "{claimed:?}");
        assert_eq!(
            store
                .game(ada, stored.game_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            GameStatus::Failed
        );
        assert!(store.game(ada, fresh.game_id).await.unwrap().is_some());
        assert!(store.game(ada, stray.game_id).await.unwrap().is_none());
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes_and_take_at_least_one() {
        let queue = WriteQueue::default();
        let ada = Uuid::now_v7();
        let job = |seed| {
            let game = encoded(&new_game(ada, seed), None);
            Job::new(game.bytes(), move |conn| insert_game(conn, &game)).0
        };
        let size = encoded(&new_game(ada, 1), None).bytes();
        assert!(queue.push(job(1)), "the first push starts a drainer");
        for seed in 2..=5 {
            assert!(!queue.push(job(seed)), "one drainer at a time");
        }
        let sizes = |limits| queue.next_batch(limits).map(|b| b.len());
        // Three fit by count, two by bytes; one too large still goes alone.
        let by_count = BatchLimits {
            writes: 3,
            bytes: usize::MAX,
        };
        assert_eq!(sizes(by_count), Some(3));
        let by_bytes = BatchLimits {
            writes: 64,
            bytes: size,
        };
        assert_eq!(sizes(by_bytes), Some(1));
        assert_eq!(sizes(BatchLimits::ONE_BY_ONE), Some(1));
        assert_eq!(sizes(by_count), None, "empty: the drainer stops");
        assert!(queue.push(job(6)), "the next push starts another");
    }
}
