//! The in-process bus keeps the semantics the RabbitMQ topology has.

use chrono::Utc;
use m2m_bus::{Bus, BusError, InProcessBus, Notice};
use m2m_domain::{
    EventGame, GameStatus, ProcessingEvent, ReconciliationEvent, PROCESSING_EVENT_VERSION,
    RECONCILIATION_EVENT_VERSION,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn event() -> Arc<ProcessingEvent> {
    Arc::new(ProcessingEvent {
        version: PROCESSING_EVENT_VERSION,
        event_id: Uuid::now_v7(),
        game_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        created_at: Utc::now(),
        game: EventGame {
            game: "g".into(),
            score: 1.0,
            started_at: Utc::now(),
            device: None,
        },
        sample_rate_hz: 100.0,
        reprocess: None,
    })
}

async fn next_soon(c: &mut Box<dyn m2m_bus::ProcessingConsumer>) -> Option<m2m_bus::Delivery> {
    tokio::time::timeout(Duration::from_millis(200), c.next())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn retried_deliveries_come_back_with_a_higher_attempt() {
    let bus = InProcessBus::new();
    let e = event();
    bus.publish_processing(e.clone(), "trace-1").await.unwrap();
    let mut c = bus.consume_processing(1).await.unwrap();
    let d = next_soon(&mut c).await.unwrap();
    assert_eq!((d.attempt, d.trace_id.as_str()), (1, "trace-1"));
    assert_eq!(d.event.as_ref().unwrap().event_id, e.event_id);
    d.retry().await.unwrap();
    let d = next_soon(&mut c).await.unwrap();
    assert_eq!(d.attempt, 2);
    d.ack().await.unwrap();
    assert!(next_soon(&mut c).await.is_none());
    assert_eq!(bus.backlog().await, Some(0));
}

#[tokio::test]
async fn a_dropped_delivery_is_redelivered() {
    let bus = InProcessBus::new();
    bus.publish_processing(event(), "t").await.unwrap();
    let mut c = bus.consume_processing(1).await.unwrap();
    drop(next_soon(&mut c).await.unwrap());
    let d = next_soon(&mut c).await.expect("redelivered");
    assert_eq!(d.attempt, 2);
}

#[tokio::test]
async fn dead_lettered_messages_leave_the_queue() {
    let bus = InProcessBus::new();
    let e = event();
    bus.publish_processing(e.clone(), "t").await.unwrap();
    let mut c = bus.consume_processing(1).await.unwrap();
    next_soon(&mut c)
        .await
        .unwrap()
        .dead_letter()
        .await
        .unwrap();
    assert!(next_soon(&mut c).await.is_none());
    assert_eq!(bus.dead_letters()[0].event_id, e.event_id);
    assert_eq!(bus.backlog().await, Some(0));
}

#[tokio::test]
async fn prefetch_bounds_unacked_deliveries_and_consumers_compete() {
    let bus = InProcessBus::new();
    for _ in 0..3 {
        bus.publish_processing(event(), "t").await.unwrap();
    }
    let mut a = bus.consume_processing(1).await.unwrap();
    let mut b = bus.consume_processing(1).await.unwrap();
    let da = next_soon(&mut a).await.unwrap();
    assert!(
        next_soon(&mut a).await.is_none(),
        "prefetch 1 holds the second back"
    );
    let db = next_soon(&mut b).await.unwrap();
    assert_ne!(
        da.event.as_ref().unwrap().event_id,
        db.event.as_ref().unwrap().event_id
    );
    da.ack().await.unwrap();
    let third = next_soon(&mut a).await.expect("a slot freed");
    third.ack().await.unwrap();
    db.ack().await.unwrap();
    assert_eq!(bus.backlog().await, Some(0));
}

#[tokio::test]
async fn a_waiting_consumer_is_woken_by_a_publish() {
    let bus = InProcessBus::new();
    let mut c = bus.consume_processing(4).await.unwrap();
    let waiter = tokio::spawn(async move { c.next().await.map(|d| d.attempt) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.publish_processing(event(), "t").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(1));
}

#[tokio::test]
async fn reconciliation_fans_out_to_every_subscriber() {
    let bus = InProcessBus::new();
    let mut s1 = bus.subscribe_reconciliation().await.unwrap();
    let mut s2 = bus.subscribe_reconciliation().await.unwrap();
    let r = ReconciliationEvent {
        version: RECONCILIATION_EVENT_VERSION,
        event_id: Uuid::now_v7(),
        processing_event_id: Uuid::now_v7(),
        game_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        status: GameStatus::Processed,
        processed_at: Utc::now(),
        metrics: None,
        error: None,
        algorithm_version: 1,
        reprocessed: false,
    };
    bus.publish_reconciliation(&r, "trace").await.unwrap();
    for s in [&mut s1, &mut s2] {
        match s.next().await {
            Some(Notice::Event(e)) => assert_eq!(e.event_id, r.event_id),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn closing_ends_consumers() {
    let bus = InProcessBus::new();
    let mut c = bus.consume_processing(1).await.unwrap();
    bus.close();
    assert!(c.next().await.is_none());
    assert!(bus.publish_processing(event(), "t").await.is_err());
}

/// `wait_for_room` in a task, to see whether it has returned.
fn spawn_wait_for_room(bus: &InProcessBus) -> tokio::task::JoinHandle<Option<usize>> {
    let bus = bus.clone();
    tokio::spawn(async move { bus.wait_for_room().await })
}

/// What a waiting `wait_for_room` returned, failing if it does not return
/// within 2 s.
async fn room_soon(waiter: tokio::task::JoinHandle<Option<usize>>) -> Option<usize> {
    tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("wait_for_room returned")
        .unwrap()
}

#[tokio::test]
async fn a_full_bus_refuses_publishes_until_a_delivery_is_settled() {
    let bus = InProcessBus::with_capacity(2);
    assert_eq!(bus.wait_for_room().await, Some(2));
    bus.publish_processing(event(), "t").await.unwrap();
    assert_eq!(bus.wait_for_room().await, Some(1));
    bus.publish_processing(event(), "t").await.unwrap();
    assert!(matches!(
        bus.publish_processing(event(), "t").await,
        Err(BusError::Full)
    ));
    // Delivered but unacknowledged still counts: the game is in memory.
    let mut c = bus.consume_processing(1).await.unwrap();
    let d = next_soon(&mut c).await.unwrap();
    assert!(matches!(
        bus.publish_processing(event(), "t").await,
        Err(BusError::Full)
    ));
    let waiter = spawn_wait_for_room(&bus);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "no room until a delivery is settled");
    d.ack().await.unwrap();
    assert_eq!(room_soon(waiter).await, Some(1), "woken by the ack");
    bus.publish_processing(event(), "t").await.unwrap();
    assert_eq!(bus.backlog().await, Some(2));
}

#[tokio::test]
async fn room_is_reported_once_the_bus_is_half_empty() {
    let bus = InProcessBus::with_capacity(4);
    for _ in 0..4 {
        bus.publish_processing(event(), "t").await.unwrap();
    }
    let mut c = bus.consume_processing(4).await.unwrap();
    let first = next_soon(&mut c).await.unwrap();
    let second = next_soon(&mut c).await.unwrap();
    let waiter = spawn_wait_for_room(&bus);
    first.ack().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "3 of 4 held: not yet a batch's room");
    second.ack().await.unwrap();
    assert_eq!(room_soon(waiter).await, Some(2), "woken once half empty");
}

#[tokio::test]
async fn a_stopped_consumer_takes_nothing_more() {
    let bus = InProcessBus::new();
    bus.publish_processing(event(), "t").await.unwrap();
    bus.publish_processing(event(), "t").await.unwrap();
    let mut c = bus.consume_processing(4).await.unwrap();
    let held = next_soon(&mut c).await.expect("a delivery");
    c.stop().await;
    assert!(
        next_soon(&mut c).await.is_none(),
        "a stopped consumer took another delivery"
    );
    // What it holds is still its to settle; the other one waits.
    held.ack().await.unwrap();
    c.close().await;
    assert_eq!(bus.backlog().await, Some(1));
    let mut other = bus.consume_processing(4).await.unwrap();
    let d = next_soon(&mut other).await.expect("the other delivery");
    assert_eq!(d.attempt, 1, "it was never delivered before");
}
