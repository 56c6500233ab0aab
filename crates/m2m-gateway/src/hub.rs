//! Wakes the open event streams of a user when their feed changes, and
//! bounds how many a user keeps open.
//!
//! A notification carries no data: a woken stream reads what is new from
//! the store, after the cursor it last sent. So a missed or duplicated
//! notification can only delay or repeat a read, never lose or repeat a
//! change, and a gateway that restarts loses nothing a phone cannot resume.
//!
//! A user has at most [`MAX_STREAMS_PER_USER`] open streams on a gateway.
//! Opening one more ends the oldest rather than refusing the new one: a
//! phone whose connection died without a word (as mobile connections do)
//! reconnects at once, while the server may take minutes to notice the
//! dead one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Open event streams a user may have on one gateway.
pub(crate) const MAX_STREAMS_PER_USER: usize = 8;

/// Per-user wake-up signals and open streams.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    /// A std Mutex: held for a map lookup, never across an await.
    users: Mutex<HashMap<Uuid, UserStreams>>,
}

#[derive(Debug)]
struct UserStreams {
    wake: watch::Sender<u64>,
    /// The open streams, oldest first: a stream is open while its `alive`
    /// marker is; its token ends it.
    open: VecDeque<(Weak<()>, CancellationToken)>,
}

/// What an event stream holds while it is open.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// Changes whenever the user's feed may have changed.
    pub(crate) wake: watch::Receiver<u64>,
    /// Cancelled when the stream must end to make room for a newer one.
    pub(crate) evicted: CancellationToken,
    /// Marks the stream open for as long as it is held.
    _alive: Arc<()>,
}

impl Hub {
    /// Opens a stream for `user_id`, ending their oldest one if they have
    /// [`MAX_STREAMS_PER_USER`] already. Subscribe before reading the
    /// store, so no change falls in between.
    pub(crate) fn subscribe(&self, user_id: Uuid) -> Subscription {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let streams = users.entry(user_id).or_insert_with(|| UserStreams {
            wake: watch::channel(0).0,
            open: VecDeque::new(),
        });
        streams.open.retain(|(alive, _)| alive.strong_count() > 0);
        while streams.open.len() >= MAX_STREAMS_PER_USER {
            if let Some((_, oldest)) = streams.open.pop_front() {
                oldest.cancel();
            }
        }
        let alive = Arc::new(());
        let evicted = CancellationToken::new();
        streams
            .open
            .push_back((Arc::downgrade(&alive), evicted.clone()));
        Subscription {
            wake: streams.wake.subscribe(),
            evicted,
            _alive: alive,
        }
    }

    /// A wake-up signal of `user_id`'s feed for someone else's stream (a
    /// therapist's, following a linked patient): it does not count as one
    /// of the user's open streams.
    pub(crate) fn watch(&self, user_id: Uuid) -> watch::Receiver<u64> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(user_id)
            .or_insert_with(|| UserStreams {
                wake: watch::channel(0).0,
                open: VecDeque::new(),
            })
            .wake
            .subscribe()
    }

    /// Wakes the streams of one user.
    pub(crate) fn notify(&self, user_id: Uuid) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(streams) = users.get(&user_id) {
            if streams.wake.receiver_count() == 0 {
                users.remove(&user_id);
            } else {
                streams.wake.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Ends every open stream of `user_id` on this gateway (their account
    /// was deleted: nothing more will come, and the token no longer
    /// authenticates a new one).
    pub(crate) fn end_streams(&self, user_id: Uuid) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        // The entry itself stays: a therapist's stream may still watch it.
        if let Some(streams) = users.get_mut(&user_id) {
            for (_, token) in streams.open.drain(..) {
                token.cancel();
            }
        }
    }

    /// Wakes every stream (after missed notifications).
    pub(crate) fn notify_all(&self) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, s| s.wake.receiver_count() > 0);
        for s in users.values() {
            s.wake.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_one_stream_too_many_ends_the_oldest() {
        let hub = Hub::default();
        let user = Uuid::now_v7();
        let subs: Vec<Subscription> = (0..MAX_STREAMS_PER_USER)
            .map(|_| hub.subscribe(user))
            .collect();
        assert!(subs.iter().all(|s| !s.evicted.is_cancelled()));
        let newest = hub.subscribe(user);
        assert!(subs[0].evicted.is_cancelled());
        assert!(subs[1..].iter().all(|s| !s.evicted.is_cancelled()));
        assert!(!newest.evicted.is_cancelled());
    }

    #[test]
    fn ending_a_users_streams_ends_theirs_only() {
        let hub = Hub::default();
        let (ada, grace) = (Uuid::now_v7(), Uuid::now_v7());
        let ada_streams = [hub.subscribe(ada), hub.subscribe(ada)];
        let grace_stream = hub.subscribe(grace);
        hub.end_streams(ada);
        assert!(ada_streams.iter().all(|s| s.evicted.is_cancelled()));
        assert!(!grace_stream.evicted.is_cancelled());
    }

    #[test]
    fn a_watch_is_woken_but_is_not_an_open_stream() {
        let hub = Hub::default();
        let user = Uuid::now_v7();
        let mut watch = hub.watch(user);
        let subs: Vec<Subscription> = (0..MAX_STREAMS_PER_USER)
            .map(|_| hub.subscribe(user))
            .collect();
        assert!(subs.iter().all(|s| !s.evicted.is_cancelled()));
        hub.notify(user);
        assert!(watch.has_changed().unwrap());
        watch.borrow_and_update();
        drop(subs);
        hub.notify(user);
        assert!(
            watch.has_changed().unwrap(),
            "the watch keeps the user's signal alive"
        );
    }

    #[test]
    fn closed_streams_make_room() {
        let hub = Hub::default();
        let user = Uuid::now_v7();
        let first = hub.subscribe(user);
        for _ in 0..3 * MAX_STREAMS_PER_USER {
            drop(hub.subscribe(user));
        }
        assert!(!first.evicted.is_cancelled());
    }
}
