//! What the submitters and listeners record while the clock runs.
//!
//! A game's notification may be read off the event stream before its
//! submitter has read the 202 (both race on different connections), so
//! whichever of the two comes second completes the game.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// Largest latency the histograms hold (1 hour, in microseconds); longer
/// ones are recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;

/// How a game ended, from its event's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Processed,
    Failed,
}

enum Half {
    /// Accepted at this request start; notification not seen yet.
    Submitted(Instant),
    /// Notified at this instant; the 202 not read yet.
    Notified(Instant, Outcome),
}

/// Counters and histograms of a run.
pub(crate) struct Totals {
    pub(crate) attempted: u64,
    pub(crate) accepted: u64,
    pub(crate) processed: u64,
    pub(crate) failed: u64,
    /// Non-202 answers by status, and transport failures by kind.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Request body bytes sent (as on the wire, so compressed with gzip).
    pub(crate) bytes_sent: u64,
    /// Request start → 202, microseconds.
    pub(crate) submit: Histogram<u64>,
    /// Request start → the game's event, microseconds.
    pub(crate) notify: Histogram<u64>,
}

/// Shared by all tasks of a run. A std `Mutex`: each critical section is a
/// map operation and a histogram increment, with no await inside, so it is
/// far cheaper than an async lock.
pub(crate) struct Tracker {
    state: Mutex<(Totals, HashMap<Uuid, Half>)>,
    /// Wakes the drain when a notification completes a game.
    progress: Notify,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").finish_non_exhaustive()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(from: Instant, to: Instant) -> u64 {
    (to.saturating_duration_since(from).as_micros() as u64).clamp(1, MAX_MICROS)
}

impl Tracker {
    pub(crate) fn new() -> Self {
        Tracker {
            state: Mutex::new((
                Totals {
                    attempted: 0,
                    accepted: 0,
                    processed: 0,
                    failed: 0,
                    errors: BTreeMap::new(),
                    bytes_sent: 0,
                    submit: histogram(),
                    notify: histogram(),
                },
                HashMap::new(),
            )),
            progress: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Totals, HashMap<Uuid, Half>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request was answered 202 at `answered` for the request started at
    /// `start`.
    pub(crate) fn accepted(&self, game_id: Uuid, start: Instant, answered: Instant, bytes: usize) {
        let mut guard = self.lock();
        let (totals, pending) = &mut *guard;
        totals.attempted += 1;
        totals.accepted += 1;
        totals.bytes_sent += bytes as u64;
        let _ = totals.submit.record(micros(start, answered));
        match pending.remove(&game_id) {
            Some(Half::Notified(at, outcome)) => {
                complete(totals, start, at, outcome);
                drop(guard);
                self.progress.notify_one();
            }
            _ => {
                pending.insert(game_id, Half::Submitted(start));
            }
        }
    }

    /// A request failed: `kind` is `HTTP 503`, `timeout`, `connect`, ….
    pub(crate) fn errored(&self, kind: String, bytes: usize) {
        let mut guard = self.lock();
        let (totals, _) = &mut *guard;
        totals.attempted += 1;
        totals.bytes_sent += bytes as u64;
        *totals.errors.entry(kind).or_default() += 1;
    }

    /// The event stream announced the game's outcome at `at`.
    pub(crate) fn notified(&self, game_id: Uuid, outcome: Outcome, at: Instant) {
        let mut guard = self.lock();
        let (totals, pending) = &mut *guard;
        match pending.remove(&game_id) {
            Some(Half::Submitted(start)) => {
                complete(totals, start, at, outcome);
                drop(guard);
                self.progress.notify_one();
            }
            // A repeat after a reconnection: already counted.
            Some(h @ Half::Notified(..)) => {
                pending.insert(game_id, h);
            }
            None => {
                pending.insert(game_id, Half::Notified(at, outcome));
            }
        }
    }

    /// Accepted games whose notification has not arrived.
    pub(crate) fn outstanding(&self) -> u64 {
        let guard = self.lock();
        let t = &guard.0;
        t.accepted - t.processed - t.failed
    }

    /// Waits until a notification completes a game (or one did since the
    /// last call).
    pub(crate) async fn wait_progress(&self) {
        self.progress.notified().await;
    }

    /// Completed games (processed + failed) and accepted ones.
    pub(crate) fn done_of_accepted(&self) -> (u64, u64) {
        let guard = self.lock();
        let t = &guard.0;
        (t.processed + t.failed, t.accepted)
    }

    /// The totals at the end of the run.
    pub(crate) fn finish(&self) -> Totals {
        let mut guard = self.lock();
        std::mem::replace(&mut guard.0, Tracker::new().into_totals())
    }

    fn into_totals(self) -> Totals {
        self.state.into_inner().unwrap_or_else(|p| p.into_inner()).0
    }
}

fn complete(totals: &mut Totals, start: Instant, at: Instant, outcome: Outcome) {
    match outcome {
        Outcome::Processed => totals.processed += 1,
        Outcome::Failed => totals.failed += 1,
    }
    let _ = totals.notify.record(micros(start, at));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn either_order_completes_a_game_once() {
        let t = Tracker::new();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        t.accepted(a, t0, ms(5), 100);
        t.notified(a, Outcome::Processed, ms(40));
        // b's event overtakes its 202, and is then repeated.
        t.notified(b, Outcome::Failed, ms(30));
        assert_eq!(t.outstanding(), 0);
        t.accepted(b, ms(1), ms(20), 100);
        t.notified(b, Outcome::Failed, ms(50));
        t.errored("HTTP 503".into(), 100);
        assert_eq!(t.done_of_accepted(), (2, 2));
        let totals = t.finish();
        assert_eq!((totals.processed, totals.failed), (1, 1));
        assert_eq!((totals.attempted, totals.bytes_sent), (3, 300));
        assert_eq!(totals.errors["HTTP 503"], 1);
        assert_eq!(totals.notify.len(), 2);
        assert!(totals.notify.max() >= 39_000 && totals.notify.min() <= 29_100);
    }
}
