//! The idempotency sweeper: a gateway's third background task. Keys are
//! kept for `GatewayConfig::idempotency_ttl` (24 h), so that a phone
//! retrying an upload within a day gets the first answer, and then deleted,
//! so that the table holds about a day of uploads however long the service
//! runs. Every gateway sweeps; the deletes are idempotent.
//!
//! The same task finishes account deletions a crash interrupted
//! (`Accounts::finish_deletions`: on MongoDB, accounts still marked as
//! being deleted), at start and at each interval.

use crate::state::AppState;
use chrono::{TimeDelta, Utc};
use tracing::{debug, info, warn};

/// Sweeps at startup and then every `sweep_interval` until shutdown.
pub(crate) async fn run_idempotency_sweeper(state: AppState) {
    let shutdown = state.0.shutdown.clone();
    let ttl = TimeDelta::from_std(state.config().idempotency_ttl).unwrap_or(TimeDelta::MAX);
    loop {
        if let Some(before) = Utc::now().checked_sub_signed(ttl) {
            match state.store().purge_idempotency_keys(before).await {
                Ok(0) => {}
                Ok(n) => debug!(keys = n, "swept expired idempotency keys"),
                Err(e) => warn!(error = %e, "cannot sweep idempotency keys; will retry"),
            }
        }
        match state.store().finish_deletions().await {
            Ok(0) => {}
            Ok(n) => info!(accounts = n, "finished interrupted account deletions"),
            Err(e) => warn!(error = %e, "cannot finish interrupted account deletions; will retry"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(state.config().sweep_interval) => {}
        }
    }
}
