//! The in-process bus of `m2m serve`: the same semantics as the RabbitMQ
//! topology, in memory.
//!
//! Nothing here survives the process, which is why
//! [`Bus::survives_restart`] is false and the store, not the bus, is what
//! makes an accepted game durable: at startup every game still queued is
//! published again.

use crate::{
    Acker, Bus, BusError, Delivery, Notice, ProcessingConsumer, ReconciliationSubscription, Settle,
};
use async_trait::async_trait;
use m2m_domain::{ProcessingEvent, ReconciliationEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};

/// How many ProcessingEvents the queue holds by default, waiting or in
/// flight. The bound keeps a backlog in the store, where it survives a
/// restart, rather than in memory (an event names its game and is at most
/// 2,048 bytes); it only needs to be large enough that the processor never
/// waits for the publisher.
pub const DEFAULT_CAPACITY: usize = 32;

/// How many ReconciliationEvents a slow subscriber may fall behind before it
/// is told it missed some (it then catches up from the store).
const FANOUT_CAPACITY: usize = 4096;

#[derive(Debug)]
struct Message {
    event: Arc<ProcessingEvent>,
    trace_id: String,
    /// Deliveries so far.
    deliveries: u32,
}

#[derive(Debug, Default)]
struct Queue {
    ready: VecDeque<Message>,
    unacked: usize,
    dead: Vec<Message>,
    closed: bool,
}

#[derive(Debug)]
struct Inner {
    /// Most ProcessingEvents held, waiting or in flight.
    capacity: usize,
    /// A std Mutex: it is held only for a few pointer moves, never across
    /// an await.
    queue: Mutex<Queue>,
    /// Wakes consumers when a message is ready or a prefetch slot frees,
    /// and publishers waiting for room when a message is settled.
    changed: Notify,
    fanout: broadcast::Sender<Arc<ReconciliationEvent>>,
}

/// The in-process bus. Cheap to clone; clones share the queues.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    /// A bus holding at most [`DEFAULT_CAPACITY`] ProcessingEvents.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A bus holding at most `capacity` ProcessingEvents (waiting or in
    /// flight); a publish beyond that fails with [`BusError::Full`].
    pub fn with_capacity(capacity: usize) -> Self {
        InProcessBus {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                queue: Mutex::new(Queue::default()),
                changed: Notify::new(),
                fanout: broadcast::channel(FANOUT_CAPACITY).0,
            }),
        }
    }

    /// Stops delivering: consumers get `None` once the queue is closed.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.changed.notify_waiters();
    }

    /// The events dead-lettered so far (the dead-letter queue).
    pub fn dead_letters(&self) -> Vec<Arc<ProcessingEvent>> {
        self.inner
            .lock()
            .dead
            .iter()
            .map(|m| m.event.clone())
            .collect()
    }
}

impl Queue {
    fn held(&self) -> usize {
        self.ready.len() + self.unacked
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves the queue consistent (every
        // critical section is a single push/pop), so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish_processing(
        &self,
        event: Arc<ProcessingEvent>,
        trace_id: &str,
    ) -> Result<(), BusError> {
        {
            let mut q = self.inner.lock();
            if q.closed {
                return Err(BusError::Closed);
            }
            if q.held() >= self.inner.capacity {
                return Err(BusError::Full);
            }
            q.ready.push_back(Message {
                event,
                trace_id: trace_id.to_owned(),
                deliveries: 0,
            });
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn publish_reconciliation(
        &self,
        event: &ReconciliationEvent,
        _trace_id: &str,
    ) -> Result<(), BusError> {
        // No subscriber (no gateway running) is not an error: the change
        // is in the store and phones catch up from there.
        let _ = self.inner.fanout.send(Arc::new(event.clone()));
        Ok(())
    }

    async fn consume_processing(
        &self,
        prefetch: usize,
    ) -> Result<Box<dyn ProcessingConsumer>, BusError> {
        Ok(Box::new(Consumer {
            inner: self.inner.clone(),
            prefetch: prefetch.max(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
            stopped: false,
        }))
    }

    async fn subscribe_reconciliation(
        &self,
    ) -> Result<Box<dyn ReconciliationSubscription>, BusError> {
        Ok(Box::new(Subscription(self.inner.fanout.subscribe())))
    }

    /// Waits until the bus is at most half full, so that a publisher feeding it
    /// from the outbox moves events in batches (one claim and one mark per
    /// batch, not per event) while the processor still has plenty queued.
    async fn wait_for_room(&self) -> Option<usize> {
        let low_water = self.inner.capacity / 2;
        loop {
            let notified = self.inner.changed.notified();
            {
                let q = self.inner.lock();
                let held = q.held();
                if q.closed || held <= low_water {
                    // A closed bus has room: the publish then says why not.
                    return Some(self.inner.capacity.saturating_sub(held).max(1));
                }
            }
            notified.await;
        }
    }

    fn survives_restart(&self) -> bool {
        false
    }

    async fn ready(&self) -> bool {
        !self.inner.lock().closed
    }

    async fn backlog(&self) -> Option<u64> {
        Some(self.inner.lock().held() as u64)
    }
}

#[derive(Debug)]
struct Consumer {
    inner: Arc<Inner>,
    prefetch: usize,
    /// This consumer's unacknowledged deliveries (prefetch is per consumer).
    in_flight: Arc<AtomicUsize>,
    /// Takes nothing more. (Nothing is on its way to an in-process
    /// consumer: a message is taken only by `next`.)
    stopped: bool,
}

#[async_trait]
impl ProcessingConsumer for Consumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            // Register interest before checking, so a wake-up between the
            // check and the await is not lost.
            let notified = self.inner.changed.notified();
            {
                let mut q = self.inner.lock();
                if q.closed || self.stopped {
                    return None;
                }
                if self.in_flight.load(Ordering::SeqCst) < self.prefetch {
                    if let Some(mut msg) = q.ready.pop_front() {
                        q.unacked += 1;
                        msg.deliveries += 1;
                        self.in_flight.fetch_add(1, Ordering::SeqCst);
                        let event = msg.event.clone();
                        let trace_id = msg.trace_id.clone();
                        let attempt = msg.deliveries;
                        let acker = InProcessAcker {
                            inner: self.inner.clone(),
                            in_flight: self.in_flight.clone(),
                            message: Some(msg),
                        };
                        return Some(Delivery::new(Ok(event), trace_id, attempt, Box::new(acker)));
                    }
                }
            }
            notified.await;
        }
    }

    async fn stop(&mut self) {
        self.stopped = true;
    }

    async fn close(self: Box<Self>) {}
}

#[derive(Debug)]
struct InProcessAcker {
    inner: Arc<Inner>,
    in_flight: Arc<AtomicUsize>,
    /// `None` once settled.
    message: Option<Message>,
}

impl InProcessAcker {
    fn settle_now(&mut self, how: Settle) {
        let Some(msg) = self.message.take() else {
            return;
        };
        {
            let mut q = self.inner.lock();
            q.unacked -= 1;
            match how {
                Settle::Ack => {}
                Settle::Requeue => q.ready.push_back(msg),
                Settle::DeadLetter => q.dead.push(msg),
            }
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.inner.changed.notify_waiters();
    }
}

#[async_trait]
impl Acker for InProcessAcker {
    async fn settle(mut self: Box<Self>, how: Settle) -> Result<(), BusError> {
        self.settle_now(how);
        Ok(())
    }
}

impl Drop for InProcessAcker {
    /// A delivery dropped unsettled (its handler panicked or was cancelled)
    /// goes back to the queue, as with a broker whose consumer went away.
    fn drop(&mut self) {
        self.settle_now(Settle::Requeue);
    }
}

struct Subscription(broadcast::Receiver<Arc<ReconciliationEvent>>);

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

#[async_trait]
impl ReconciliationSubscription for Subscription {
    async fn next(&mut self) -> Option<Notice> {
        match self.0.recv().await {
            Ok(e) => Some(Notice::Event(e)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Notice::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
