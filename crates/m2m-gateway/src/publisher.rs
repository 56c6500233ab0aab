//! The publisher: the one owner of putting ProcessingEvents on the bus.
//!
//! An upload commits its game together with an outbox entry (the store's
//! [`Outbox`](m2m_store::Outbox)) and then only [`wakes`](Publisher::wake)
//! the publisher; nothing else publishes. The publisher runs one loop:
//!
//! 1. waits until the bus has room (a bounded bus: the in-process one),
//!    recording first what the bus confirmed if it must wait;
//! 2. in one store step, records the events the bus confirmed in the last
//!    round and claims the oldest unpublished events, leasing them so that
//!    the publishers of other gateways skip them;
//! 3. publishes them in order as one batch (a broker confirms the whole
//!    batch at once);
//! 4. sleeps until woken, or for [`POLL`] when there was nothing to do.
//!
//! What this gives, and why:
//! - **Nothing accepted is lost.** An event exists in the store before the
//!   upload is answered, and is marked published only after the bus
//!   confirmed it. A crash anywhere leaves it unpublished (or leased: the
//!   lease ends and any publisher claims it again).
//! - **No effect is applied twice.** An event may be published twice (a
//!   crash between the bus's confirm and the mark, or a lease that ended
//!   during a long outage); the processor completes each event once.
//! - **Oldest first.** Claims are in the order the events were stored, and
//!   a batch is published in that order; events whose publish failed are
//!   retried before anything newer is claimed.
//! - **Backpressure.** A bounded bus takes only what it has room for; the
//!   rest waits in the store, not in memory.
//! - **Retries.** A failed publish is retried with a growing pause (0.4 s
//!   doubling to 12.8 s), while uploads go on being accepted and stored.
//!
//! With a bus that keeps nothing across restarts (the in-process one), the
//! events of games still queued are marked unpublished at startup, so the
//! games a crash interrupted are processed.

use crate::state::AppState;
use chrono::Utc;
use futures::FutureExt;
use m2m_bus::BusError;
use m2m_domain::ProcessingEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// How often the publisher looks at the outbox when nothing wakes it (for
/// events whose lease ended: another gateway died while publishing them).
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// Most events claimed and published in one round.
const BATCH: usize = 256;
/// How long a claim keeps other gateways' publishers off an event.
const LEASE: Duration = Duration::from_secs(30);

/// The handle uploads use to tell the publisher about a new event.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    wakeup: Notify,
}

impl Publisher {
    /// Tells the publisher that an event was stored. A wake-up that comes
    /// while it is busy is kept, so none is lost.
    pub(crate) fn wake(&self) {
        self.wakeup.notify_one();
    }
}

/// Runs the publisher until the gateway shuts down.
pub(crate) async fn run(state: AppState) {
    let store = state.store().clone();
    let bus = state.bus().clone();
    let shutdown = state.0.shutdown.clone();
    if !bus.survives_restart() {
        match store.republish_unfinished().await {
            Ok(0) => {}
            Ok(n) => info!(events = n, "republishing the events of games still queued"),
            Err(e) => warn!(error = %e, "cannot reset unfinished events"),
        }
    }
    // Claimed and not yet confirmed by the bus, oldest first.
    let mut pending: VecDeque<(Arc<ProcessingEvent>, String)> = VecDeque::new();
    // Confirmed by the bus, to be recorded with the next store step.
    let mut confirmed: Vec<Uuid> = Vec::new();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let room = match bus.wait_for_room().now_or_never() {
            Some(room) => room,
            None => {
                // The bus is full: record what it confirmed before waiting,
                // not when it next has room.
                if !confirmed.is_empty() {
                    match store.advance_outbox(&confirmed, Utc::now(), LEASE, 0).await {
                        Ok(_) => confirmed.clear(),
                        Err(e) => warn!(error = %e, "cannot record published events; will retry"),
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    room = bus.wait_for_room() => room,
                }
            }
        };
        let room = room.unwrap_or(BATCH).min(BATCH);
        if pending.is_empty() || !confirmed.is_empty() {
            let want = room.saturating_sub(pending.len());
            match store
                .advance_outbox(&confirmed, Utc::now(), LEASE, want as u32)
                .await
            {
                Ok(claimed) => {
                    confirmed.clear();
                    // An event held through a long outage may have been
                    // claimed again once its lease ended: hold it once.
                    let new: Vec<_> = claimed
                        .into_iter()
                        .filter(|e| !pending.iter().any(|(p, _)| p.event_id == e.event.event_id))
                        .map(|e| (Arc::new(e.event), e.trace_id))
                        .collect();
                    pending.extend(new);
                }
                Err(e) => {
                    warn!(error = %e, "the publisher cannot reach the outbox; will retry");
                    failures += 1;
                    if pause(&state, failures).await {
                        break;
                    }
                    continue;
                }
            }
        }
        if pending.is_empty() {
            failures = 0;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = state.0.publisher.wakeup.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let batch: Vec<_> = pending.iter().take(room).cloned().collect();
        let (done, error) = bus.publish_processing_all(&batch).await;
        confirmed.extend(pending.drain(..done).map(|(event, _)| event.event_id));
        debug!(events = done, "published");
        match error {
            None => failures = 0,
            // Not a fault: the rest waits until the bus has room.
            Some(BusError::Full) => {}
            Some(e) => {
                let event_id = pending.front().map(|(event, _)| event.event_id);
                warn!(?event_id, error = %e, "cannot publish; will retry");
                failures += 1;
                if pause(&state, failures).await {
                    break;
                }
            }
        }
    }
    // Record what the bus confirmed; what was claimed but not published
    // is claimed again once its lease ends.
    if !confirmed.is_empty() {
        if let Err(e) = store.advance_outbox(&confirmed, Utc::now(), LEASE, 0).await {
            warn!(error = %e, "cannot record the last published events; they will be published again");
        }
    }
}

/// Waits before retrying after a failure; true if the gateway is shutting
/// down instead.
async fn pause(state: &AppState, failures: u32) -> bool {
    let pause = Duration::from_millis(200 * (1 << failures.min(6)));
    tokio::select! {
        _ = state.0.shutdown.cancelled() => true,
        _ = tokio::time::sleep(pause) => false,
    }
}
