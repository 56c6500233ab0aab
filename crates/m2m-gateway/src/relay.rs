//! The outbox relay and the reconciliation listener: the gateway's two
//! background tasks.

use crate::state::AppState;
use chrono::Utc;
use m2m_bus::{BusError, Notice};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How often the relay looks for unpublished events when nothing wakes it.
const RELAY_POLL: Duration = Duration::from_secs(1);
const RELAY_BATCH: u32 = 100;

/// Publishes every stored event that is not yet published: at startup,
/// after a failed publish, when a bounded bus was full, and periodically
/// (events of another gateway that died mid-publish come back once their
/// lease ends). Marks an event published only after the bus confirmed it.
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
    let shutdown = state.0.shutdown.clone();
    let mut failures = 0u32;
    loop {
        // A bounded bus (the in-process one) takes only so many events; the
        // rest wait in the outbox, in order, rather than in memory.
        let room = tokio::select! {
            _ = shutdown.cancelled() => return,
            room = bus.wait_for_room() => room,
        };
        let limit = room.map_or(RELAY_BATCH, |r| r.min(RELAY_BATCH as usize) as u32);
        let pass = relay_pass(&state, limit).await;
        if pass.published > 0 {
            debug!(events = pass.published, "relay published stored events");
        }
        failures = if pass.failed { failures + 1 } else { 0 };
        if pass.full || (pass.claimed == limit && !pass.failed) {
            // More may be waiting: go on as soon as the bus has room.
            continue;
        }
        // The outbox is drained: requests may publish directly again.
        state.0.outbox_backlog.store(false, Ordering::Relaxed);
        let pause = if pass.failed {
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

/// What one pass of the relay did.
#[derive(Debug, Default)]
struct Pass {
    claimed: u32,
    published: u32,
    /// The bus was full: the rest waits for room.
    full: bool,
    /// The store or the bus failed: back off.
    failed: bool,
}

/// Claims up to `limit` unpublished events and publishes them in order.
/// Events it claimed but could not publish are released at once, so the
/// next pass takes them without waiting for their lease.
async fn relay_pass(state: &AppState, limit: u32) -> Pass {
    let store = state.store();
    let bus = state.bus();
    let mut pass = Pass::default();
    let entries = match store
        .claim_unpublished(Utc::now(), state.config().publish_lease, limit)
        .await
    {
        Ok(entries) => entries,
        Err(e) => {
            warn!(error = %e, "relay cannot read the outbox; will retry");
            pass.failed = true;
            return pass;
        }
    };
    pass.claimed = entries.len() as u32;
    let mut published = Vec::with_capacity(entries.len());
    let mut entries = entries.into_iter();
    while let Some(entry) = entries.next() {
        let event_id = entry.event.event_id;
        match bus
            .publish_processing(Arc::new(entry.event), &entry.trace_id)
            .await
        {
            Ok(()) => published.push(event_id),
            Err(e) => {
                if matches!(e, BusError::Full) {
                    pass.full = true;
                } else {
                    warn!(%event_id, error = %e, "relay cannot publish; will retry");
                    pass.failed = true;
                }
                for id in std::iter::once(event_id).chain(entries.map(|e| e.event.event_id)) {
                    if let Err(e) = store.release_lease(id).await {
                        warn!(event_id = %id, error = %e, "cannot release the lease");
                    }
                }
                break;
            }
        }
    }
    pass.published = published.len() as u32;
    // One write for the whole batch. Published but not marked (the store
    // failed here) means published again later, which is harmless.
    if let Err(e) = store.mark_published_all(published, Utc::now()).await {
        warn!(error = %e, "cannot mark the published events");
    }
    pass
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
