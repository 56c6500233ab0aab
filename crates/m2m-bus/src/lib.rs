//! The event bus of m2m behind the [`Bus`] trait.
//!
//! Semantics every implementation keeps (they are RabbitMQ's, see docs/api.md):
//! - ProcessingEvents go to one shared queue; any number of consumers
//!   compete for them, each with at most `prefetch` unacknowledged.
//! - Delivery is at least once: a delivery that is not acknowledged (nacked,
//!   or dropped because its handler crashed) is delivered again, with its
//!   attempt count increased. A consumer acks only after its effects are
//!   saved, and dead-letters a message it has given up on.
//! - ReconciliationEvents fan out to every subscriber (one per gateway).
//!
//! Implementations: [`InProcessBus`] (embedded default) and `RabbitBus`
//! (scaled out; built with the `rabbitmq` cargo feature, on by default).

mod in_process;
#[cfg(feature = "rabbitmq")]
pub mod rabbit;

pub use in_process::{InProcessBus, DEFAULT_CAPACITY};
#[cfg(feature = "rabbitmq")]
pub use rabbit::RabbitBus;

use async_trait::async_trait;
use m2m_domain::{ProcessingEvent, ReconciliationEvent};
use std::sync::Arc;

/// An error from the broker's client (or an encoder), kept as the cause of
/// a [`BusError`]. Boxed, not shared: nothing clones a `BusError`, and a
/// box lets [`source`](std::error::Error::source) hand out the client's
/// error itself (an `Arc` would hand out the `Arc`, which cannot be
/// downcast to it).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a bus operation failed.
///
/// Where a lower-level error caused it, that error is kept as the
/// [`source`](std::error::Error::source), and its text ends the message
/// too, so that a log line showing the error alone says why.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached; retrying later may help.
    #[error("bus unavailable: {what}{}", because(.source))]
    Unavailable {
        /// What failed (the step, or the whole reason when there is no
        /// `source`).
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// The bus was shut down.
    #[error("bus closed")]
    Closed,
    /// The bus holds as many ProcessingEvents as it is allowed to; the
    /// outbox keeps the event until [`Bus::wait_for_room`] says there is
    /// room. Only the in-process bus is bounded.
    #[error("bus full")]
    Full,
}

/// `": <cause>"`, or nothing without a cause.
fn because(source: &Option<Cause>) -> String {
    source
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// The event bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes a ProcessingEvent. Returns once the bus holds it (for a
    /// broker: once the publish is confirmed); only then may the outbox
    /// entry be marked published.
    async fn publish_processing(
        &self,
        event: Arc<ProcessingEvent>,
        trace_id: &str,
    ) -> Result<(), BusError>;

    /// Publishes `events` (each with its trace id) in order. Returns how
    /// many of them, from the first, the bus holds, and the error that
    /// stopped the rest. A broker implementation sends the whole batch
    /// before waiting for its confirms; the default publishes one by one.
    async fn publish_processing_all(
        &self,
        events: &[(Arc<ProcessingEvent>, String)],
    ) -> (usize, Option<BusError>) {
        for (done, (event, trace_id)) in events.iter().enumerate() {
            if let Err(e) = self.publish_processing(event.clone(), trace_id).await {
                return (done, Some(e));
            }
        }
        (events.len(), None)
    }

    /// Publishes a ReconciliationEvent to every gateway, with the trace id
    /// of the upload it concludes.
    async fn publish_reconciliation(
        &self,
        event: &ReconciliationEvent,
        trace_id: &str,
    ) -> Result<(), BusError>;

    /// Starts consuming ProcessingEvents with at most `prefetch` deliveries
    /// unacknowledged at a time.
    async fn consume_processing(
        &self,
        prefetch: usize,
    ) -> Result<Box<dyn ProcessingConsumer>, BusError>;

    /// Subscribes this gateway instance to ReconciliationEvents.
    async fn subscribe_reconciliation(
        &self,
    ) -> Result<Box<dyn ReconciliationSubscription>, BusError>;

    /// Waits until the bus has room for a batch of ProcessingEvents (the
    /// in-process bus: until it is at most half full) and returns how many
    /// it will take, or `None` when it is unbounded (a broker, whose queue
    /// lives on its own disk). The publisher claims no more
    /// events from the outbox than this, so a backlog stays in the store,
    /// not in memory.
    async fn wait_for_room(&self) -> Option<usize> {
        None
    }

    /// Whether a published event survives a restart of this process. The
    /// in-process bus does not, so at startup the games still queued are
    /// published again (see `Store::republish_unfinished`).
    fn survives_restart(&self) -> bool;

    /// Whether the bus is reachable now (for `/readyz`).
    async fn ready(&self) -> bool;

    /// ProcessingEvents waiting or in flight, if the bus can tell cheaply.
    async fn backlog(&self) -> Option<u64>;
}

/// A consumer of the processing queue.
///
/// Stopping is in three steps, so that nothing taken is handed back:
/// [`stop`](Self::stop) (no more deliveries), [`next`](Self::next) until
/// `None` (the deliveries already on their way, to be handled like any
/// other), then, once every delivery is settled, [`close`](Self::close).
#[async_trait]
pub trait ProcessingConsumer: Send {
    /// The next delivery; `None` once the bus is closed, or once the
    /// consumer is stopped and has returned what it had received.
    async fn next(&mut self) -> Option<Delivery>;

    /// Stops taking deliveries: the bus sends this consumer no more (a
    /// broker consumer is cancelled). Those received before are still
    /// returned by [`next`](Self::next), then `None`.
    async fn stop(&mut self);

    /// Closes the consumer, once every delivery it returned is settled: a
    /// broker's channel is closed and the close confirmed, so every
    /// settlement sent before it has reached the broker. (Dropping the
    /// consumer instead closes the channel without waiting, and a
    /// settlement still under way is lost: the broker delivers the message
    /// again.)
    async fn close(self: Box<Self>);
}

/// A subscription to ReconciliationEvents.
#[async_trait]
pub trait ReconciliationSubscription: Send {
    /// The next notice; `None` once the bus is closed.
    async fn next(&mut self) -> Option<Notice>;
}

/// What a gateway hears from the reconciliation fanout.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A game's processing finished.
    Event(Arc<ReconciliationEvent>),
    /// Some events were missed (the subscriber fell behind or reconnected):
    /// every open stream should catch up from the store.
    Missed,
}

/// A message from the processing queue that did not parse as a
/// ProcessingEvent (a poison message). The raw text is kept so the game it
/// names, if any, can be marked failed.
#[derive(Debug, Clone)]
pub struct Undecodable {
    pub raw: Vec<u8>,
    pub reason: String,
}

/// One delivery of a ProcessingEvent, to be settled exactly once.
/// Dropping it unsettled hands it back to the queue (as a broker does when
/// a consumer's channel closes).
#[derive(Debug)]
pub struct Delivery {
    pub event: Result<Arc<ProcessingEvent>, Undecodable>,
    /// The trace id that came with the event.
    pub trace_id: String,
    /// 1 for the first delivery, then 2, 3, …
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl Delivery {
    /// Builds a delivery (for bus implementations).
    pub fn new(
        event: Result<Arc<ProcessingEvent>, Undecodable>,
        trace_id: String,
        attempt: u32,
        acker: Box<dyn Acker>,
    ) -> Self {
        Delivery {
            event,
            trace_id,
            attempt,
            acker,
        }
    }

    /// Done: the effects are saved.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.settle(Settle::Ack).await
    }

    /// Not done: deliver it again.
    pub async fn retry(self) -> Result<(), BusError> {
        self.acker.settle(Settle::Requeue).await
    }

    /// Given up: move it to the dead-letter queue.
    pub async fn dead_letter(self) -> Result<(), BusError> {
        self.acker.settle(Settle::DeadLetter).await
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

/// Settles one delivery with its bus (for bus implementations).
#[async_trait]
pub trait Acker: Send + Sync + std::fmt::Debug {
    async fn settle(self: Box<Self>, how: Settle) -> Result<(), BusError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_unavailable_bus_keeps_and_shows_its_cause() {
        let e = BusError::Unavailable {
            what: "publishing to the broker".into(),
            source: Some(Box::new(std::io::Error::other("connection reset"))),
        };
        assert_eq!(
            e.to_string(),
            "bus unavailable: publishing to the broker: connection reset"
        );
        assert!(e.source().expect("the cause").is::<std::io::Error>());
        let plain = BusError::Unavailable {
            what: "not connected to the broker".into(),
            source: None,
        };
        assert_eq!(
            plain.to_string(),
            "bus unavailable: not connected to the broker"
        );
        assert!(plain.source().is_none());
    }
}
