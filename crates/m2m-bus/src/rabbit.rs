//! The RabbitMQ bus: the topology of docs/api.md, declared idempotently on every
//! (re)connection.
//!
//! | name | kind | role |
//! |---|---|---|
//! | `m2m.processing` | direct exchange, durable | gateways publish ProcessingEvents with routing key `game.submitted` |
//! | `m2m.processing` | quorum queue, durable, dead-letters to `m2m.processing.dlx` | processors compete for events |
//! | `m2m.processing.dlx` | fanout exchange, durable | receives what processors reject |
//! | `m2m.processing.dead` | queue, durable | the dead letters, for inspection |
//! | `m2m.reconciliation` | fanout exchange, durable | processors publish ReconciliationEvents |
//! | `m2m.reconciliation.<instance>` | queue, durable, expires 5 min after its gateway goes away | one per gateway instance |
//!
//! Messages are persistent JSON with `message_id` = the event id,
//! `content_type` `application/json`, the AMQP `type` property and a `type`
//! header naming the event, and a `trace_id` header. Publishes wait for the
//! broker's confirm (mandatory, so an unroutable event is an error, not a
//! silent loss).
//!
//! Connection loss is routine: the bus keeps one connection, and whoever
//! finds it broken (a publish, a consumer, the readiness check) drops it; a
//! supervisor task reconnects with exponential backoff and jitter. While it
//! is away, publishes fail fast (the outbox keeps the events) and consumers
//! wait for it to come back.

use crate::{
    Acker, Bus, BusError, Delivery, Notice, ProcessingConsumer, ReconciliationSubscription, Settle,
    Undecodable,
};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use m2m_domain::{ProcessingEvent, ReconciliationEvent};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tracing::{info, warn};

/// Names of the topology (docs/api.md).
pub const PROCESSING_EXCHANGE: &str = "m2m.processing";
pub const PROCESSING_QUEUE: &str = "m2m.processing";
pub const PROCESSING_ROUTING_KEY: &str = "game.submitted";
pub const DEAD_LETTER_EXCHANGE: &str = "m2m.processing.dlx";
pub const DEAD_LETTER_QUEUE: &str = "m2m.processing.dead";
pub const RECONCILIATION_EXCHANGE: &str = "m2m.reconciliation";
/// How long the broker keeps a gateway's reconciliation queue after the
/// gateway went away (long enough to ride out a reconnect).
const RECONCILIATION_QUEUE_EXPIRES_MS: i64 = 5 * 60 * 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A live connection and its confirming publish channel.
struct Live {
    conn: Connection,
    publish: Channel,
}

struct Inner {
    url: String,
    /// `Some` while connected. A tokio Mutex: connecting awaits under it.
    live: Mutex<Option<Arc<Live>>>,
    /// Bumped on every new connection; consumers wait on it.
    generation: watch::Sender<u64>,
    /// Asks the supervisor to reconnect now (or to notice `closed`).
    broken: tokio::sync::Notify,
    /// Set by [`RabbitBus::close`]: no connection any more.
    closed: AtomicBool,
}

/// The RabbitMQ bus. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RabbitBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.write_str("RabbitBus")
    }
}

/// [`BusError::Unavailable`] for a reason of our own (no client error).
fn unavailable(why: impl Into<String>) -> BusError {
    BusError::Unavailable {
        what: why.into(),
        source: None,
    }
}

/// [`BusError::Unavailable`] caused by the client's (or encoder's) error.
fn failed(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Unavailable {
        what: what.to_owned(),
        source: Some(Box::new(e)),
    }
}

impl RabbitBus {
    /// Checks the URL and starts the supervisor, which connects (and keeps
    /// reconnecting) in the background. Does not wait for the broker: a
    /// gateway keeps accepting games while it is away.
    pub fn start(url: &str) -> Result<Self, BusError> {
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|e| unavailable(format!("invalid AMQP URL: {e}")))?;
        let bus = RabbitBus {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                live: Mutex::new(None),
                generation: watch::channel(0).0,
                broken: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
            }),
        };
        tokio::spawn(supervise(Arc::downgrade(&bus.inner)));
        Ok(bus)
    }

    /// Waits until connected (for startup checks and tests).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), BusError> {
        let mut rx = self.inner.generation.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if self.live().await.is_some() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .map_err(|_| unavailable("the broker is not reachable"))
    }

    /// The current connection, if it is up; a broken one is dropped.
    async fn live(&self) -> Option<Arc<Live>> {
        self.inner.live().await
    }

    /// Closes the connection for good, at the end of a process, once its
    /// deliveries are settled and its consumers closed: the broker is told,
    /// rather than finding the connection gone, and there is no reconnection
    /// after. Publishes then fail and consumers return `None`.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.broken.notify_one();
        let live = self.inner.live.lock().await.take();
        // Wakes the consumers waiting for a connection.
        self.inner.generation.send_modify(|g| *g += 1);
        if let Some(live) = live {
            if let Err(e) = live.conn.close(200, "closing".into()).await {
                warn!(error = %e, "could not close the broker connection cleanly");
            }
        }
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        kind: &str,
        message_id: String,
        trace_id: &str,
        payload: &[u8],
    ) -> Result<(), BusError> {
        let live = self
            .live()
            .await
            .ok_or_else(|| unavailable("not connected to the broker"))?;
        let result = async {
            send(
                &live,
                exchange,
                routing_key,
                kind,
                message_id,
                trace_id,
                payload,
            )
            .await?
            .await
        }
        .await;
        self.confirmed(&live, result).await
    }

    /// What the broker's answer to one publish means.
    async fn confirmed(
        &self,
        live: &Arc<Live>,
        result: Result<Confirmation, lapin::Error>,
    ) -> Result<(), BusError> {
        match result {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_))) => {
                Err(unavailable("the broker could not route the event"))
            }
            Ok(Confirmation::Nack(_)) => Err(unavailable("the broker refused the event")),
            Ok(Confirmation::NotRequested) => Err(unavailable("publisher confirms are off")),
            Err(e) => {
                self.inner.mark_broken(live).await;
                Err(failed("publishing to the broker", e))
            }
        }
    }
}

/// Sends one persistent, mandatory message on the publishing channel and
/// returns the broker's confirm still to come.
async fn send(
    live: &Live,
    exchange: &str,
    routing_key: &str,
    kind: &str,
    message_id: String,
    trace_id: &str,
    payload: &[u8],
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    let mut headers = FieldTable::default();
    headers.insert("type".into(), AMQPValue::LongString(kind.into()));
    headers.insert("trace_id".into(), AMQPValue::LongString(trace_id.into()));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_type(kind.into())
        .with_headers(headers);
    live.publish
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            payload,
            properties,
        )
        .await
}

impl Inner {
    async fn live(&self) -> Option<Arc<Live>> {
        let mut guard = self.live.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        match guard.as_ref() {
            Some(l) if l.conn.status().connected() && l.publish.status().connected() => {
                Some(l.clone())
            }
            Some(_) => {
                *guard = None;
                self.broken.notify_one();
                None
            }
            None => None,
        }
    }

    /// Drops `live` if it is still the current connection.
    async fn mark_broken(&self, live: &Arc<Live>) {
        let mut guard = self.live.lock().await;
        if guard.as_ref().is_some_and(|l| Arc::ptr_eq(l, live)) {
            *guard = None;
        }
        self.broken.notify_one();
    }
}

/// Keeps the bus connected for as long as the bus exists.
async fn supervise(inner: std::sync::Weak<Inner>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if strong.closed.load(Ordering::SeqCst) {
            return;
        }
        if strong.live().await.is_some() {
            // Connected: sleep until someone finds it broken (or re-check
            // now and then, for a connection that died quietly).
            let _ = tokio::time::timeout(Duration::from_secs(1), strong.broken.notified()).await;
            continue;
        }
        match connect(&strong.url).await {
            Ok(live) => {
                let mut guard = strong.live.lock().await;
                if strong.closed.load(Ordering::SeqCst) {
                    // Closed while connecting.
                    drop(guard);
                    let _ = live.conn.close(200, "closing".into()).await;
                    return;
                }
                *guard = Some(Arc::new(live));
                drop(guard);
                strong.generation.send_modify(|g| *g += 1);
                info!("connected to the broker");
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the broker");
                drop(strong);
                // Jitter spreads the reconnects of many processes.
                let jitter = rand::rng().random_range(0.5..1.5);
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Connects and declares the topology.
async fn connect(url: &str) -> Result<Live, lapin::Error> {
    let conn = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))
    })??;
    let channel = conn.create_channel().await?;
    declare_topology(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Live {
        conn,
        publish: channel,
    })
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Declares every exchange and queue of the topology in docs/api.md (idempotent).
pub async fn declare_topology(channel: &Channel) -> Result<(), lapin::Error> {
    let none = FieldTable::default;
    channel
        .exchange_declare(
            PROCESSING_EXCHANGE.into(),
            ExchangeKind::Direct,
            durable(),
            none(),
        )
        .await?;
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Fanout,
            durable(),
            none(),
        )
        .await?;
    channel
        .exchange_declare(
            RECONCILIATION_EXCHANGE.into(),
            ExchangeKind::Fanout,
            durable(),
            none(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(PROCESSING_QUEUE.into(), durable_queue, args)
        .await?;
    channel
        .queue_bind(
            PROCESSING_QUEUE.into(),
            PROCESSING_EXCHANGE.into(),
            PROCESSING_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;
    channel
        .queue_declare(DEAD_LETTER_QUEUE.into(), durable_queue, none())
        .await?;
    channel
        .queue_bind(
            DEAD_LETTER_QUEUE.into(),
            DEAD_LETTER_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;
    Ok(())
}

/// The header value as text.
fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Earlier failed deliveries, from the quorum queue's `x-delivery-count`.
fn delivery_count(props: &BasicProperties) -> u32 {
    let Some(headers) = props.headers().as_ref() else {
        return 0;
    };
    let n: i64 = match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(v)) => *v,
        Some(AMQPValue::LongInt(v)) => i64::from(*v),
        Some(AMQPValue::LongUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortUInt(v)) => i64::from(*v),
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish_processing(
        &self,
        event: Arc<ProcessingEvent>,
        trace_id: &str,
    ) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&*event).map_err(|e| failed("encoding", e))?;
        self.publish(
            PROCESSING_EXCHANGE,
            PROCESSING_ROUTING_KEY,
            "ProcessingEvent",
            event.event_id.to_string(),
            trace_id,
            &payload,
        )
        .await
    }

    /// Sends the whole batch in order on one channel, then waits for the
    /// broker's confirms, so a batch costs one round trip (and one quorum
    /// write on the broker) rather than one per event.
    async fn publish_processing_all(
        &self,
        events: &[(Arc<ProcessingEvent>, String)],
    ) -> (usize, Option<BusError>) {
        let Some(live) = self.live().await else {
            return (0, Some(unavailable("not connected to the broker")));
        };
        let mut confirms = Vec::with_capacity(events.len());
        let mut stopped = None;
        for (event, trace_id) in events {
            let payload = match serde_json::to_vec(&**event) {
                Ok(p) => p,
                Err(e) => {
                    stopped = Some(failed("encoding", e));
                    break;
                }
            };
            let sent = send(
                &live,
                PROCESSING_EXCHANGE,
                PROCESSING_ROUTING_KEY,
                "ProcessingEvent",
                event.event_id.to_string(),
                trace_id,
                &payload,
            )
            .await;
            match sent {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    stopped = Some(self.confirmed(&live, Err(e)).await.unwrap_err());
                    break;
                }
            }
        }
        // Confirms are counted in order: the events after the first that
        // failed are published again, with it, in the next round.
        let mut done = 0;
        for confirm in confirms {
            if stopped.is_some() {
                // Settle the rest without counting them.
                let _ = confirm.await;
                continue;
            }
            match self.confirmed(&live, confirm.await).await {
                Ok(()) => done += 1,
                Err(e) => stopped = Some(e),
            }
        }
        (done, stopped)
    }

    async fn publish_reconciliation(
        &self,
        event: &ReconciliationEvent,
        trace_id: &str,
    ) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event).map_err(|e| failed("encoding", e))?;
        self.publish(
            RECONCILIATION_EXCHANGE,
            "",
            "ReconciliationEvent",
            event.event_id.to_string(),
            trace_id,
            &payload,
        )
        .await
    }

    async fn consume_processing(
        &self,
        prefetch: usize,
    ) -> Result<Box<dyn ProcessingConsumer>, BusError> {
        Ok(Box::new(RabbitConsumer {
            bus: self.clone(),
            prefetch: u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX),
            current: None,
            stopped: false,
        }))
    }

    async fn subscribe_reconciliation(
        &self,
    ) -> Result<Box<dyn ReconciliationSubscription>, BusError> {
        let mut sub = RabbitSubscription {
            bus: self.clone(),
            queue: format!(
                "{RECONCILIATION_EXCHANGE}.{}",
                uuid::Uuid::now_v7().simple()
            ),
            current: None,
            reconnected: false,
        };
        // Bind the queue now when connected, so that events published right
        // after subscribing are not missed (the caller catches up on what
        // came before).
        if let Some(live) = self.live().await {
            if let Ok((channel, consumer)) = sub.open(&live).await {
                sub.current = Some((live, channel, consumer));
            }
        }
        Ok(Box::new(sub))
    }

    fn survives_restart(&self) -> bool {
        true
    }

    async fn ready(&self) -> bool {
        self.live().await.is_some()
    }

    async fn backlog(&self) -> Option<u64> {
        let live = self.live().await?;
        let channel = live.conn.create_channel().await.ok()?;
        let q = channel
            .queue_declare(
                PROCESSING_QUEUE.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = channel.close(200, "done".into()).await;
        Some(u64::from(q.message_count()))
    }
}

/// Waits for the next connection generation (bounded, so a quiet broken
/// connection is noticed by the periodic check); `None` once the bus is
/// closed.
async fn wait_for_connection(bus: &RabbitBus) -> Option<Arc<Live>> {
    let mut rx = bus.inner.generation.subscribe();
    loop {
        if let Some(live) = bus.live().await {
            return Some(live);
        }
        if bus.inner.closed.load(Ordering::SeqCst) {
            return None;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
    }
}

struct RabbitConsumer {
    bus: RabbitBus,
    prefetch: u16,
    current: Option<(Arc<Live>, Channel, lapin::Consumer)>,
    /// Cancelled: returns what it had received, then `None`.
    stopped: bool,
}

impl std::fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConsumer")
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl RabbitConsumer {
    async fn open(&self, live: &Arc<Live>) -> Result<(Channel, lapin::Consumer), lapin::Error> {
        let channel = live.conn.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let tag: ShortString = format!("m2m-processor-{}", uuid::Uuid::now_v7().simple()).into();
        let consumer = channel
            .basic_consume(
                PROCESSING_QUEUE.into(),
                tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

/// A delivery of the processing queue as the bus hands it out.
fn delivery(d: lapin::message::Delivery) -> Delivery {
    let trace_id = header_str(&d.properties, "trace_id").unwrap_or_default();
    let attempt = delivery_count(&d.properties).saturating_add(1);
    let event = ProcessingEvent::from_json(&d.data)
        .map(Arc::new)
        .map_err(|reason| Undecodable {
            raw: d.data.clone(),
            reason,
        });
    let acker = RabbitAcker {
        acker: Some(d.acker),
    };
    Delivery::new(event, trace_id, attempt, Box::new(acker))
}

#[async_trait]
impl ProcessingConsumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        if self.stopped {
            // What came before the cancel-ok, then the end of the stream.
            let (_, _, consumer) = self.current.as_mut()?;
            return match consumer.next().await {
                Some(Ok(d)) => Some(delivery(d)),
                _ => None,
            };
        }
        loop {
            if self.current.is_none() {
                let live = wait_for_connection(&self.bus).await?;
                match self.open(&live).await {
                    Ok((channel, consumer)) => self.current = Some((live, channel, consumer)),
                    Err(e) => {
                        warn!(error = %e, "cannot consume; will retry");
                        self.bus.inner.mark_broken(&live).await;
                        tokio::time::sleep(BACKOFF_MIN).await;
                        continue;
                    }
                }
            }
            let (live, _, consumer) = self.current.as_mut().expect("opened above");
            match consumer.next().await {
                Some(Ok(d)) => return Some(delivery(d)),
                other => {
                    if let Some(Err(e)) = other {
                        warn!(error = %e, "the consumer lost its channel; reconnecting");
                    }
                    let live = live.clone();
                    self.current = None;
                    self.bus.inner.mark_broken(&live).await;
                }
            }
        }
    }

    /// Cancels the consumer at the broker (basic.cancel, waiting for its
    /// cancel-ok) and keeps the channel open, for the deliveries received
    /// before the cancel-ok and the settlements of all of them.
    async fn stop(&mut self) {
        self.stopped = true;
        let Some((_, channel, consumer)) = self.current.as_ref() else {
            return;
        };
        if let Err(e) = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
        {
            // The channel is gone, and with it what was unsettled: the
            // broker delivers that again.
            warn!(error = %e, "could not cancel the consumer");
            self.current = None;
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some((_, channel, _)) = self.current.take() {
            if let Err(e) = channel.close(200, "consumer closed".into()).await {
                warn!(error = %e, "could not close the consumer's channel cleanly");
            }
        }
    }
}

struct RabbitAcker {
    /// `None` once settled.
    acker: Option<lapin::Acker>,
}

impl std::fmt::Debug for RabbitAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RabbitAcker")
    }
}

async fn settle_with(acker: &lapin::Acker, how: Settle) -> Result<(), BusError> {
    let r = match how {
        Settle::Ack => acker.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Settle::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
    };
    // A failed settle means the channel is gone: the broker redelivers.
    // So does `Ok(false)`: lapin refused it, the channel being closed.
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(unavailable(
            "the channel of the delivery is closed; the broker will deliver it again",
        )),
        Err(e) => Err(failed("settling the delivery", e)),
    }
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn settle(mut self: Box<Self>, how: Settle) -> Result<(), BusError> {
        let acker = self.acker.take().expect("settled once");
        settle_with(&acker, how).await
    }
}

impl Drop for RabbitAcker {
    /// Dropped unsettled (its handler crashed or was cancelled): hand it
    /// back now rather than holding a prefetch slot until the channel closes.
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = settle_with(&acker, Settle::Requeue).await;
                });
            }
        }
    }
}

struct RabbitSubscription {
    bus: RabbitBus,
    /// This gateway instance's queue.
    queue: String,
    current: Option<(Arc<Live>, Channel, lapin::Consumer)>,
    /// Set after a reconnection: the next notice is `Missed`.
    reconnected: bool,
}

impl std::fmt::Debug for RabbitSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSubscription")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl RabbitSubscription {
    async fn open(&self, live: &Arc<Live>) -> Result<(Channel, lapin::Consumer), lapin::Error> {
        let channel = live.conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(RECONCILIATION_QUEUE_EXPIRES_MS),
        );
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                RECONCILIATION_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // Notifications are wake-ups: losing one delays a read, nothing
        // more, so they are not acknowledged one by one.
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                format!("m2m-gateway-{}", uuid::Uuid::now_v7().simple()).into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

#[async_trait]
impl ReconciliationSubscription for RabbitSubscription {
    async fn next(&mut self) -> Option<Notice> {
        loop {
            if self.current.is_none() {
                let live = wait_for_connection(&self.bus).await?;
                match self.open(&live).await {
                    Ok((channel, consumer)) => {
                        self.current = Some((live, channel, consumer));
                        if std::mem::take(&mut self.reconnected) {
                            return Some(Notice::Missed);
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot subscribe to reconciliations; will retry");
                        self.bus.inner.mark_broken(&live).await;
                        tokio::time::sleep(BACKOFF_MIN).await;
                        continue;
                    }
                }
            }
            let (live, _, consumer) = self.current.as_mut().expect("opened above");
            match consumer.next().await {
                Some(Ok(d)) => match serde_json::from_slice::<ReconciliationEvent>(&d.data) {
                    Ok(e) => return Some(Notice::Event(Arc::new(e))),
                    // Something we cannot read: catch everyone up instead.
                    Err(_) => return Some(Notice::Missed),
                },
                other => {
                    if let Some(Err(e)) = other {
                        warn!(error = %e, "the reconciliation subscription lost its channel");
                    }
                    let live = live.clone();
                    self.current = None;
                    self.reconnected = true;
                    self.bus.inner.mark_broken(&live).await;
                }
            }
        }
    }
}
