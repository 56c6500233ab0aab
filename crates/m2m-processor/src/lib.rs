//! The processing service: takes ProcessingEvents from the bus, reads the
//! game's samples from the store (the event only names the game), analyses
//! them, saves the result with its change-feed entry (one transaction,
//! keyed by the event id), publishes the ReconciliationEvent, and only then
//! acknowledges. A crash anywhere in between means a redelivery, which is
//! harmless: the store returns the saved result and the same
//! ReconciliationEvent is published again.
//!
//! An event whose game is gone because its account was deleted (queued
//! or in flight at the time) is acked, logged at info and counted as
//! discarded ([`Outcome::Discarded`]); one whose game never existed for a
//! still existing account is dead-lettered as before.
//!
//! [`Processor::handle`] processes one delivery and is what tests call;
//! [`Processor::run`] is the consumer loop around it.

use chrono::Utc;
use m2m_analysis::ALGORITHM_VERSION;
use m2m_bus::BusError;
use m2m_bus::{Bus, Delivery, Undecodable};
use m2m_domain::{
    reprocessing_event_id, ChangeType, GameStatus, ProcessingEvent, ReconciliationEvent,
    RECONCILIATION_EVENT_VERSION,
};
use m2m_store::{Completion, Store, StoreError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};
use uuid::Uuid;

/// How the processor works.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Games analysed at once (and the bus prefetch).
    pub concurrency: usize,
    /// Deliveries of a message that fails on its own account (bad data, a
    /// crash in the analysis) before the game is marked failed and the
    /// message dead-lettered.
    pub max_attempts: u32,
    /// The algorithm version this processor's results are stored under:
    /// [`ALGORITHM_VERSION`], the version of the metric definitions it
    /// runs. Tests set a later one to play a later release over the same
    /// definitions (results of release N, then reprocessed by N+1); a
    /// production processor keeps the default.
    pub algorithm_version: u32,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_attempts: 5,
            algorithm_version: ALGORITHM_VERSION,
        }
    }
}

/// What handling one delivery came to.
#[derive(Debug)]
pub enum Outcome {
    /// Analysed and saved (or found saved by an earlier delivery); acked.
    Processed,
    /// A reprocessing event whose game already has a result of its version
    /// or newer: acked, nothing analysed.
    AlreadyDone,
    /// Given up on: the game is marked failed with this reason and the
    /// message dead-lettered.
    Failed(ProcessError),
    /// Failed on its own account, handed back for another attempt.
    Retried(ProcessError),
    /// The store or the bus was unavailable; handed back after a pause.
    /// Does not count against the message.
    Deferred(ProcessError),
    /// Names no game that exists, or asks for a newer algorithm version
    /// than this processor's; dead-lettered, nothing to mark.
    Dropped(ProcessError),
    /// Names a game of an account that was deleted (queued or in flight
    /// when it was): acked without error, counted and logged at info.
    Discarded,
}

/// Why processing one delivery did not finish. Its text ends with its
/// cause's, as the store's and the bus's errors do, so one line tells the
/// whole chain (the failed game's `error`, the logs); the cause is also
/// kept as its `source`.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The message does not parse as a ProcessingEvent.
    #[error("the message is not a ProcessingEvent: {0}")]
    Undecodable(String),
    /// The event names no stored game of its user, or not with this
    /// event's id (a forged or stray event).
    #[error("the event names no stored game")]
    UnknownGame,
    /// The game's stored samples cannot be read back.
    #[error("the stored game cannot be read: {0}")]
    Corrupt(#[source] StoreError),
    /// A reprocessing event asks for a newer algorithm version than this
    /// processor's (an older processor during an upgrade): it cannot make
    /// that result.
    #[error("the event asks for algorithm version {0}, newer than this processor's")]
    NewerVersion(u32),
    /// The analysis panicked.
    #[error("the analysis crashed: {0}")]
    AnalysisCrashed(#[source] tokio::task::JoinError),
    /// The store failed; retrying later may help.
    #[error("the store is unavailable: {0}")]
    Store(#[source] StoreError),
    /// The bus did not take the ReconciliationEvent.
    #[error("cannot publish the ReconciliationEvent: {0}")]
    Bus(#[source] BusError),
}

impl ProcessError {
    /// The message's own fault: counts against `max_attempts`.
    fn is_poison(&self) -> bool {
        matches!(
            self,
            ProcessError::Undecodable(_)
                | ProcessError::Corrupt(_)
                | ProcessError::AnalysisCrashed(_)
        )
    }
}

impl From<StoreError> for ProcessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ProcessError::UnknownGame,
            StoreError::Corrupt { .. } => ProcessError::Corrupt(e),
            other => ProcessError::Store(other),
        }
    }
}

/// Prometheus metrics of the processor.
#[derive(Debug, Clone)]
struct Metrics {
    processed: Counter,
    failed: Counter,
    retried: Counter,
    dead_lettered: Counter,
    discarded: Counter,
    seconds: Histogram,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            processed: Counter::default(),
            failed: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Counter::default(),
            discarded: Counter::default(),
            seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        };
        registry.register(
            "m2m_games_processed",
            "Games analysed and saved",
            m.processed.clone(),
        );
        registry.register("m2m_games_failed", "Games marked failed", m.failed.clone());
        registry.register(
            "m2m_events_discarded",
            "ProcessingEvents acked unprocessed: their account was deleted",
            m.discarded.clone(),
        );
        registry.register(
            "m2m_processing_retries",
            "Deliveries handed back for another attempt",
            m.retried.clone(),
        );
        registry.register(
            "m2m_events_dead_lettered",
            "ProcessingEvents moved to the dead-letter queue",
            m.dead_lettered.clone(),
        );
        registry.register(
            "m2m_processing_seconds",
            "Time from delivery to ack of a processed game",
            m.seconds.clone(),
        );
        m
    }
}

/// What handling an event that did not fail came to.
enum Done {
    /// Analysed, and the result saved.
    Analysed,
    /// A reprocessing of a game already of that version: nothing to do.
    Already,
}

/// The result of one game's processing: metrics, or why there are none.
/// (Keeps `processed` with metrics and `failed` with an error, never a mix.)
enum GameResult {
    Processed(Box<m2m_analysis::Metrics>),
    Failed(String),
}

/// The processing service.
pub struct Processor {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    config: ProcessorConfig,
    metrics: Metrics,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Processor {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        config: ProcessorConfig,
        registry: &mut Registry,
    ) -> Self {
        Processor {
            store,
            bus,
            config,
            metrics: Metrics::register(registry),
        }
    }

    /// Consumes until `shutdown` is cancelled or the bus closes. Then it
    /// stops in an order that hands nothing back: it stops taking
    /// deliveries (a broker consumer is cancelled), handles those already
    /// received, waits until every delivery it took is settled, and only
    /// then closes the consumer (for a broker, its channel: closing it
    /// first would make the broker deliver again what was just acked).
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), m2m_bus::BusError> {
        let concurrency = self.config.concurrency.max(1);
        let mut consumer = self.bus.consume_processing(concurrency).await?;
        info!(concurrency, "processor consuming");
        let mut tasks = JoinSet::new();
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => d,
            };
            let Some(delivery) = delivery else { break };
            self.spawn_handle(&mut tasks, delivery);
        }
        consumer.stop().await;
        let mut late = 0;
        while let Some(delivery) = consumer.next().await {
            late += 1;
            self.spawn_handle(&mut tasks, delivery);
        }
        info!(
            in_flight = tasks.len(),
            received_while_stopping = late,
            "processor stopping: finishing the deliveries it holds"
        );
        while let Some(done) = tasks.join_next().await {
            report(done);
        }
        consumer.close().await;
        info!("processor stopped");
        Ok(())
    }

    fn spawn_handle(self: &Arc<Self>, tasks: &mut JoinSet<Outcome>, delivery: Delivery) {
        let me = self.clone();
        tasks.spawn(async move { me.handle(delivery).await });
        while let Some(done) = tasks.try_join_next() {
            report(done);
        }
    }

    /// Processes one delivery and settles it.
    pub async fn handle(&self, delivery: Delivery) -> Outcome {
        let (event_id, game_id) = match &delivery.event {
            Ok(e) => (e.event_id.to_string(), e.game_id.to_string()),
            Err(_) => ("?".to_owned(), "?".to_owned()),
        };
        let span = tracing::info_span!(
            "process",
            trace_id = %delivery.trace_id,
            event_id = %event_id,
            game_id = %game_id,
            attempt = delivery.attempt,
        );
        self.handle_inner(delivery).instrument(span).await
    }

    async fn handle_inner(&self, delivery: Delivery) -> Outcome {
        let started = Instant::now();
        let result = match &delivery.event {
            Ok(event) => self.process(event, &delivery.trace_id).await,
            Err(undecodable) => Err(ProcessError::Undecodable(undecodable.reason.clone())),
        };
        let error = match result {
            Ok(Done::Analysed) => {
                self.metrics
                    .seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.processed.inc();
                settle(delivery.ack().await);
                info!("game processed");
                return Outcome::Processed;
            }
            Ok(Done::Already) => {
                settle(delivery.ack().await);
                info!("game already analysed under this version; nothing to do");
                return Outcome::AlreadyDone;
            }
            Err(e) => e,
        };
        let reason = error.to_string();
        if matches!(error, ProcessError::UnknownGame) {
            let user_id = delivery.event.as_ref().ok().map(|e| e.user_id);
            if let Some(user_id) = user_id {
                // The game's account was deleted while the game was queued
                // or in flight: nothing is left to process, and nothing is
                // wrong.
                match self.store.account_exists(user_id).await {
                    Ok(false) => {
                        info!("discarding the event of a deleted account's game");
                        self.metrics.discarded.inc();
                        settle(delivery.ack().await);
                        return Outcome::Discarded;
                    }
                    Ok(true) => {}
                    Err(e) => {
                        let error = ProcessError::from(e);
                        warn!(reason = %error, "store unavailable; will retry");
                        tokio::time::sleep(backoff(delivery.attempt)).await;
                        settle(delivery.retry().await);
                        return Outcome::Deferred(error);
                    }
                }
            }
        }
        if matches!(
            error,
            ProcessError::UnknownGame | ProcessError::NewerVersion(_)
        ) {
            warn!(%reason, "dropping an event this processor cannot do");
            self.metrics.dead_lettered.inc();
            settle(delivery.dead_letter().await);
            return Outcome::Dropped(error);
        }
        if !error.is_poison() {
            warn!(%reason, "store or bus unavailable; will retry");
            // Back off so an outage does not spin; the message keeps its
            // place in the at-least-once cycle.
            tokio::time::sleep(backoff(delivery.attempt)).await;
            settle(delivery.retry().await);
            return Outcome::Deferred(error);
        }
        if delivery.attempt < self.config.max_attempts {
            warn!(%reason, "processing failed; will retry");
            self.metrics.retried.inc();
            settle(delivery.retry().await);
            return Outcome::Retried(error);
        }
        warn!(%reason, "giving up on the event");
        match self.give_up(&delivery, &reason).await {
            Ok(()) => {
                self.metrics.failed.inc();
                self.metrics.dead_lettered.inc();
                settle(delivery.dead_letter().await);
                Outcome::Failed(error)
            }
            Err(e) => {
                // Cannot even record the failure: keep the message.
                warn!(error = %e, "cannot mark the game failed; will retry");
                tokio::time::sleep(backoff(delivery.attempt)).await;
                settle(delivery.retry().await);
                Outcome::Deferred(e)
            }
        }
    }

    /// Reads the game's samples from the store, analyses them and saves
    /// the result. The event only names the game: what is analysed is
    /// exactly what the store keeps.
    ///
    /// A reprocessing event of a game whose newest result is of its version
    /// (or newer) is acked with nothing done: the game was analysed under
    /// that version already (the same request made twice, or a game
    /// uploaded after the request). One of an older version than this
    /// processor's is done under this processor's version.
    async fn process(&self, event: &ProcessingEvent, trace_id: &str) -> Result<Done, ProcessError> {
        let ours = self.config.algorithm_version;
        if let Some(version) = event.reprocess {
            if version > ours {
                return Err(ProcessError::NewerVersion(version));
            }
            let game = self
                .store
                .game(event.user_id, event.game_id)
                .await?
                .ok_or(ProcessError::UnknownGame)?;
            if game.algorithm_version.is_some_and(|v| v >= ours) {
                return Ok(Done::Already);
            }
        }
        let samples = self
            .store
            .game_samples(event.user_id, event.game_id)
            .await?
            .ok_or(ProcessError::UnknownGame)?;
        let span = tracing::Span::current();
        let metrics = tokio::task::spawn_blocking(move || span.in_scope(|| samples.analyze()))
            .await
            .map_err(ProcessError::AnalysisCrashed)?;
        let done = GameResult::Processed(Box::new(metrics));
        self.finish(event.into(), done, trace_id).await?;
        Ok(Done::Analysed)
    }

    /// Marks the game of a message given up on as failed, if the message
    /// says which game it is.
    async fn give_up(&self, delivery: &Delivery, reason: &str) -> Result<(), ProcessError> {
        let event = match &delivery.event {
            Ok(e) => Some(EventIds::from(&**e)),
            Err(u) => ids_of_undecodable(u),
        };
        let Some(event) = event else {
            return Ok(());
        };
        let error = format!("the game could not be processed: {reason}");
        match self
            .finish(event, GameResult::Failed(error), &delivery.trace_id)
            .await
        {
            Ok(()) | Err(ProcessError::UnknownGame) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Saves the result, under this processor's algorithm version, and
    /// publishes the ReconciliationEvent. A reprocessing's result is saved
    /// under the id of the reprocessing event of that version, which the
    /// store checks.
    async fn finish(
        &self,
        event: EventIds,
        result: GameResult,
        trace_id: &str,
    ) -> Result<(), ProcessError> {
        let (game_id, user_id) = (event.game_id, event.user_id);
        let version = self.config.algorithm_version;
        let event_id = match event.reprocess {
            Some(_) => reprocessing_event_id(game_id, version),
            None => event.event_id,
        };
        let (status, metrics, error) = match result {
            GameResult::Processed(m) => (GameStatus::Processed, Some(*m), None),
            GameResult::Failed(e) => (GameStatus::Failed, None, Some(e)),
        };
        let completed = self
            .store
            .complete_game(Completion {
                event_id,
                reconciliation_event_id: Uuid::now_v7(),
                game_id,
                user_id,
                status,
                processed_at: Utc::now(),
                metrics,
                error,
                algorithm_version: version,
            })
            .await?;
        // A deletion of the account that ran while the game was analysed
        // may have missed the result just stored (MongoDB stores it in
        // steps): delete again, which removes it, and discard the event.
        if !self.store.account_exists(user_id).await? {
            self.store.delete_account(user_id).await?;
            return Err(ProcessError::UnknownGame);
        }
        let change = completed.change;
        let reconciliation = ReconciliationEvent {
            version: RECONCILIATION_EVENT_VERSION,
            event_id: completed.reconciliation_event_id,
            processing_event_id: event.event_id,
            game_id,
            user_id,
            status: change.status,
            processed_at: change.processed_at.unwrap_or_else(Utc::now),
            metrics: change.metrics,
            error: completed.error,
            algorithm_version: change.algorithm_version,
            reprocessed: change.kind == ChangeType::GameReprocessed,
        };
        self.bus
            .publish_reconciliation(&reconciliation, trace_id)
            .await
            .map_err(ProcessError::Bus)
    }
}

fn report(done: Result<Outcome, tokio::task::JoinError>) {
    if let Err(e) = done {
        warn!(error = %e, "a processing task ended abnormally");
    }
}

fn settle(result: Result<(), m2m_bus::BusError>) {
    if let Err(e) = result {
        // The bus will redeliver; handling is idempotent.
        warn!(error = %e, "could not settle a delivery");
    }
}

/// Pause before handing back a delivery that met an outage: 0.2 s doubling
/// to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(
        200u64
            .saturating_mul(1 << attempt.min(5).saturating_sub(1))
            .min(5_000),
    )
}

/// The ids a message that does not parse as a ProcessingEvent may still
/// carry (taken for a game's first event: one that does not parse is not
/// trusted to be a reprocessing).
fn ids_of_undecodable(u: &Undecodable) -> Option<EventIds> {
    let v: serde_json::Value = serde_json::from_slice(&u.raw).ok()?;
    let id = |k: &str| v.get(k)?.as_str()?.parse::<Uuid>().ok();
    Some(EventIds {
        event_id: id("event_id")?,
        game_id: id("game_id")?,
        user_id: id("user_id")?,
        reprocess: None,
    })
}

/// What saving a result needs of its event.
#[derive(Debug, Clone, Copy)]
struct EventIds {
    event_id: Uuid,
    game_id: Uuid,
    user_id: Uuid,
    /// The version a reprocessing event asks for.
    reprocess: Option<u32>,
}

impl From<&ProcessingEvent> for EventIds {
    fn from(e: &ProcessingEvent) -> Self {
        EventIds {
            event_id: e.event_id,
            game_id: e.game_id,
            user_id: e.user_id,
            reprocess: e.reprocess,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_tells_each_cause_once() {
        let column = m2m_domain::decode_column(&[9]).unwrap_err();
        let store = StoreError::Corrupt {
            what: "column flex_index".into(),
            source: Some(Box::new(column.clone())),
        };
        let text = ProcessError::from(store).to_string();
        assert_eq!(text.matches(&column.to_string()).count(), 1, "{text}");
        assert!(
            text.starts_with("the stored game cannot be read: "),
            "{text}"
        );
    }
}
