//! What happens between the 202 and the notification: poison events,
//! retries, redelivery.

use m2m_bus::Bus;
use m2m_testkit::*;
use std::time::Duration;

#[tokio::test]
async fn a_poison_event_ends_failed_without_blocking_the_games_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m2m.db");
    let app = spawn_app_with(Options {
        processor: false,
        db: Some(db.clone()),
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let poison_game = app.submit(&token, 1).await;
    let healthy: Vec<_> = futures::future::join_all((2..5).map(|s| app.submit(&token, s))).await;

    // Take the four published events off the queue.
    let mut consumer = app.bus.consume_processing(16).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 4 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("all four events are published")
            .unwrap();
        events.push(d.event.as_ref().unwrap().clone());
        d.ack().await.unwrap();
    }
    drop(consumer);
    // The event names its game, whose samples the processor reads from
    // the store: corrupt the first game there (its column's last bytes cut),
    // and put the events back, poison first so the others queue behind it.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE game_columns SET data = substr(data, 1, length(data) - 4)
             WHERE game_id = ?1 AND name = 'flex_index'",
            [poison_game.to_string()],
        )
        .unwrap();
    events.sort_by_key(|e| e.game_id != poison_game);
    let poison = events[0].clone();
    app.bus
        .publish_processing(poison, "poison-trace")
        .await
        .unwrap();
    for e in &events[1..] {
        app.bus
            .publish_processing(e.clone(), "trace")
            .await
            .unwrap();
    }

    app.start_processor(3);
    let failed = app.wait_for(&token, poison_game, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("corrupt sensor column") && error.contains("flex_index"),
        "the reason names the column: {error}"
    );
    assert!(failed.get("metrics").is_none());
    for g in healthy {
        app.wait_for(&token, g, "processed").await;
    }
    assert_eq!(
        app.bus.dead_letters().len(),
        1,
        "dead-lettered once, after 3 attempts"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("m2m_processing_retries_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("m2m_games_failed_total 1"), "{metrics}");

    // The failure is in the feed once, as game.failed.
    let sync: serde_json::Value = app.get(&token, "/v1/sync").await.json().await.unwrap();
    let failed_changes: Vec<_> = sync["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["game_id"] == poison_game.to_string())
        .collect();
    assert_eq!(failed_changes.len(), 1);
    assert_eq!(failed_changes[0]["status"], "failed");
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing() {
    let app = spawn_app_with(Options {
        processor: false,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let game = app.submit(&token, 1).await;
    let mut consumer = app.bus.consume_processing(1).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap();
    let event = d.event.as_ref().unwrap().clone();
    d.ack().await.unwrap();
    drop(consumer);
    // The same event three times, as a broker may deliver it after lost acks.
    for _ in 0..3 {
        app.bus
            .publish_processing(event.clone(), "trace")
            .await
            .unwrap();
    }
    app.start_processor(5);
    let first = app.wait_for(&token, game, "processed").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.bus.backlog().await != Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "the queue drains");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sync: serde_json::Value = app.get(&token, "/v1/sync").await.json().await.unwrap();
    assert_eq!(
        sync["changes"].as_array().unwrap().len(),
        1,
        "one change for one game"
    );
    let again = app
        .get(&token, &format!("/v1/games/{game}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(first, again, "later deliveries changed nothing");
}

#[tokio::test]
async fn a_backlog_waits_in_the_store_not_in_memory() {
    let app = spawn_app_with(Options {
        processor: false,
        bus_capacity: 2,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let mut games = Vec::new();
    for seed in 0..10 {
        games.push(app.submit(&token, seed).await);
    }
    // Every game is accepted; the bus holds two, the outbox the rest.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.store.unpublished_count().await.unwrap() != 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox keeps what the bus cannot hold: {} unpublished",
            app.store.unpublished_count().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.bus.backlog().await, Some(2));

    app.start_processor(3);
    for g in &games {
        app.wait_for(&token, *g, "processed").await;
    }
    assert_eq!(app.store.unpublished_count().await.unwrap(), 0);
    let sync: serde_json::Value = app.get(&token, "/v1/sync").await.json().await.unwrap();
    let changes = sync["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 10, "each game once in the feed: {sync}");

    // A game uploaded once the backlog is gone is processed too.
    let g = app.submit(&token, 99).await;
    app.wait_for(&token, g, "processed").await;
}
