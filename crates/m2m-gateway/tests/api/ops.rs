//! /healthz, /readyz, /metrics, /openapi.json, unknown routes.

use crate::helpers::*;
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // With the bus gone, the gateway is not ready.
    app.bus.close();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(r, 503, None).await;
}

#[tokio::test]
async fn metrics_count_requests_and_games() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let game = app.submit(&token, 1).await;
    app.wait_for(&token, game, "processed").await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        r#"m2m_http_requests_total{route="/v1/games",method="POST",status="202"} 1"#,
        r#"m2m_http_request_duration_seconds_bucket{le="#,
        "m2m_games_accepted_total 1",
        "m2m_games_processed_total 1",
        "m2m_processing_seconds_count 1",
        "m2m_bus_backlog 0",
        "m2m_games_failed_total 0",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/users", "post"),
        ("/v1/login", "post"),
        ("/v1/token/refresh", "post"),
        ("/v1/logout", "post"),
        ("/v1/games", "post"),
        ("/v1/games", "get"),
        ("/v1/games/{game_id}", "get"),
        ("/v1/progress", "get"),
        ("/v1/sync", "get"),
        ("/v1/events", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    for schema in ["Game", "Change", "Metrics", "Progress", "Problem", "Tokens"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "schema {schema} missing"
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_problem_404s() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/v2/nothing")).send().await.unwrap();
    assert_problem(r, 404, None).await;
}
