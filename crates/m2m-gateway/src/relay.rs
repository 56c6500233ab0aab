//! The outbox relay and the reconciliation listener: the gateway's two
//! background tasks.

use crate::state::AppState;
use chrono::Utc;
use m2m_bus::Notice;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How often the relay looks for unpublished events when nothing wakes it.
const RELAY_POLL: Duration = Duration::from_secs(1);
const RELAY_BATCH: u32 = 100;

/// Publishes every stored event that is not yet published: at startup,
/// after a failed publish, and periodically (events of another gateway that
/// died mid-publish come back once their lease ends). Marks an event
/// published only after the bus confirmed it.
pub(crate) async fn run_relay(state: AppState) {
    let store = state.store().clone();
    let bus = state.bus().clone();
    if !bus.survives_restart() {
        match store.republish_unfinished().await {
            Ok(0) => {}
            Ok(n) => info!(events = n, "republishing the events of games still queued"),
            Err(e) => warn!(error = %e, "cannot reset unfinished events"),
        }
    }
    let lease = state.config().publish_lease;
    let shutdown = state.0.shutdown.clone();
    let mut failures = 0u32;
    loop {
        let mut published = 0;
        let mut failed = false;
        match store
            .claim_unpublished(Utc::now(), lease, RELAY_BATCH)
            .await
        {
            Ok(entries) => {
                let mut entries = entries.into_iter();
                while let Some(entry) = entries.next() {
                    let event_id = entry.event.event_id;
                    match bus
                        .publish_processing(Arc::new(entry.event), &entry.trace_id)
                        .await
                    {
                        Ok(()) => {
                            if let Err(e) = store.mark_published(event_id, Utc::now()).await {
                                // Published but not marked: it will be
                                // published again, which is harmless.
                                warn!(%event_id, error = %e, "cannot mark an event published");
                            }
                            published += 1;
                        }
                        Err(e) => {
                            warn!(%event_id, error = %e, "relay cannot publish; will retry");
                            failed = true;
                            // This event and the rest of the batch are
                            // retried at the next pass, not after their lease.
                            for id in
                                std::iter::once(event_id).chain(entries.map(|e| e.event.event_id))
                            {
                                if let Err(e) = store.release_lease(id).await {
                                    warn!(event_id = %id, error = %e, "cannot release the lease");
                                }
                            }
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "relay cannot read the outbox; will retry");
                failed = true;
            }
        }
        if published > 0 {
            info!(events = published, "relay published stored events");
        }
        failures = if failed { failures + 1 } else { 0 };
        if published as u32 == RELAY_BATCH && !failed {
            continue;
        }
        let pause = if failed {
            Duration::from_millis(200 * (1 << failures.min(5)))
        } else {
            RELAY_POLL
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.0.relay_wakeup.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Wakes the event streams of the users whose games finished.
pub(crate) async fn run_reconciliation_listener(state: AppState) {
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
