//! The reconciliation listener: wakes the event streams of the users whose
//! games finished, whichever processor finished them.

use crate::state::AppState;
use m2m_bus::Notice;
use std::time::Duration;
use tracing::warn;

/// Wakes the event streams of the users whose games finished.
pub(crate) async fn run(state: AppState) {
    let shutdown = state.0.shutdown.clone();
    loop {
        let mut sub = match state.bus().subscribe_reconciliation().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to reconciliation events; will retry");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // Anything that happened while not subscribed is caught up from
        // the store.
        state.0.hub.notify_all();
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = sub.next() => n,
            };
            match notice {
                Some(Notice::Event(e)) => state.0.hub.notify(e.user_id),
                Some(Notice::Missed) => state.0.hub.notify_all(),
                None => break,
            }
        }
    }
}
