//! Versioned results as the API shows them (docs/data-lifecycle.md): a
//! game's algorithm version, the newest result served, the history in the
//! feed, `game.reprocessed` on the event stream, progress of one version,
//! and the open metrics schema. The later version's result is saved
//! through the store as a processor of that version saves it.

use m2m_bus::Bus;
use m2m_domain::{
    reprocessing_event_id, GameStatus, ReconciliationEvent, RECONCILIATION_EVENT_VERSION,
};
use m2m_store::Completion;
use m2m_testkit::*;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// Saves the result of reprocessing a user's game under `version` and
/// publishes its ReconciliationEvent, as a processor of that version does.
async fn reprocess(app: &TestApp, user_id: Uuid, game_id: Uuid, version: u32, seed: u64) {
    let metrics = m2m_domain::GameSubmission::from_json(small_game(seed).as_bytes())
        .unwrap()
        .analyze();
    let done = app
        .store
        .complete_game(Completion {
            event_id: reprocessing_event_id(game_id, version),
            reconciliation_event_id: Uuid::now_v7(),
            game_id,
            user_id,
            status: GameStatus::Processed,
            processed_at: chrono::Utc::now(),
            metrics: Some(metrics),
            error: None,
            algorithm_version: version,
        })
        .await
        .unwrap();
    assert!(done.first);
    let change = done.change;
    let event = ReconciliationEvent {
        version: RECONCILIATION_EVENT_VERSION,
        event_id: done.reconciliation_event_id,
        processing_event_id: reprocessing_event_id(game_id, version),
        game_id,
        user_id,
        status: change.status,
        processed_at: change.processed_at.unwrap(),
        metrics: change.metrics,
        error: None,
        algorithm_version: change.algorithm_version,
        reprocessed: true,
    };
    app.bus
        .publish_reconciliation(&event, "trace")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reprocessed_game_shows_its_newest_version_and_keeps_its_history() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let me = app.read(&token, "/v1/me").await;
    let user_id: Uuid = me["user_id"].as_str().unwrap().parse().unwrap();
    let (one, two) = (app.submit(&token, 1).await, app.submit(&token, 2).await);
    for id in [one, two] {
        let game = app.wait_for(&token, id, "processed").await;
        assert_eq!(game["algorithm_version"], 1, "{game}");
    }
    let progress = app.read(&token, "/v1/progress").await;
    assert_eq!(progress["algorithm_version"], 1, "{progress}");
    assert_eq!(
        progress["metrics"]["score"]["series"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let feed = app.feed(&token).await;
    let last = feed.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    for change in &feed {
        assert_eq!(change["type"], "game.processed", "{change}");
        assert_eq!(change["algorithm_version"], 1, "{change}");
    }

    let mut events = app.events(&token, Some(&last)).await;
    reprocess(&app, user_id, one, 2, 7).await;

    let event = events
        .next_event(Duration::from_secs(10))
        .await
        .expect("an event for the reprocessed game");
    assert_eq!(
        event.event.as_deref(),
        Some("game.reprocessed"),
        "{event:?}"
    );
    let change: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(change["game_id"], one.to_string());
    assert_eq!(change["type"], "game.reprocessed");
    assert_eq!(change["algorithm_version"], 2);

    let game = app.game(&token, &one.to_string()).await;
    assert_eq!(game["algorithm_version"], 2, "{game}");
    assert_eq!(change["metrics"], game["metrics"]);
    let listed = app.read(&token, "/v1/games").await;
    let versions: Vec<&Value> = listed["games"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["algorithm_version"])
        .collect();
    assert_eq!(versions, [&Value::from(1), &Value::from(2)], "{listed}");

    // History: both results of the game, in order.
    let feed = app.feed(&token).await;
    let of_one: Vec<&Value> = feed
        .iter()
        .filter(|c| c["game_id"] == one.to_string())
        .collect();
    assert_eq!(of_one.len(), 2, "{feed:#?}");
    assert_eq!(of_one[0]["algorithm_version"], 1);
    assert_eq!(of_one[1]["algorithm_version"], 2);

    // Progress compares the newest version's games only: the game still
    // of version 1 is left out until it is reprocessed too.
    let progress = app.read(&token, "/v1/progress").await;
    assert_eq!(progress["algorithm_version"], 2, "{progress}");
    let series = progress["metrics"]["score"]["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{progress}");
    assert_eq!(series[0]["game_id"], one.to_string());
    reprocess(&app, user_id, two, 2, 8).await;
    let progress = app.read(&token, "/v1/progress").await;
    assert_eq!(
        progress["metrics"]["score"]["series"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_openapi_document_describes_versions_and_an_open_metrics_object() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let schemas = &doc["components"]["schemas"];
    for name in ["Metrics", "Fingers", "Smoothness", "Tremor"] {
        assert_eq!(
            schemas[name]["additionalProperties"], true,
            "{name}: {}",
            schemas[name]
        );
    }
    let said = schemas["Metrics"]["description"].as_str().unwrap();
    assert!(
        said.contains("Metrics schema version 2") && said.contains("must ignore"),
        "{said}"
    );
    assert!(schemas["Game"]["properties"]["algorithm_version"].is_object());
    assert!(schemas["Progress"]["properties"]["algorithm_version"].is_object());
    let change = &schemas["Change"];
    for field in ["type", "algorithm_version"] {
        assert!(
            change["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == field),
            "{change}"
        );
    }
    let types = doc.to_string();
    for name in ["game.processed", "game.failed", "game.reprocessed"] {
        assert!(types.contains(name), "{name} not in the document");
    }
}
