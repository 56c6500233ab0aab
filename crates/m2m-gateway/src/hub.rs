//! Wakes the open event streams of a user when their feed changes.
//!
//! A notification carries no data: a woken stream reads what is new from
//! the store, after the cursor it last sent. So a missed or duplicated
//! notification can only delay or repeat a read, never lose or repeat a
//! change, and a gateway that restarts loses nothing a phone cannot resume.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

/// Per-user wake-up signals.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    /// A std Mutex: held for a map lookup, never across an await.
    users: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
}

impl Hub {
    /// A receiver that changes whenever `user_id`'s feed may have changed.
    /// Subscribe before reading the store, so no change falls in between.
    pub(crate) fn subscribe(&self, user_id: Uuid) -> watch::Receiver<u64> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(user_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the streams of one user.
    pub(crate) fn notify(&self, user_id: Uuid) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = users.get(&user_id) {
            if tx.receiver_count() == 0 {
                users.remove(&user_id);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Wakes every stream (after missed notifications).
    pub(crate) fn notify_all(&self) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, tx| tx.receiver_count() > 0);
        for tx in users.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}
