//! /healthz, /readyz, /metrics, /openapi.json, unknown routes.

use m2m_testkit::*;

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
    let doc = app.openapi().await;
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
        ("/v1/games/{game_id}/samples", "get"),
        ("/v1/progress", "get"),
        ("/v1/me", "get"),
        ("/v1/me", "patch"),
        ("/v1/me", "delete"),
        ("/v1/me/export", "get"),
        ("/v1/invites", "post"),
        ("/v1/therapists", "post"),
        ("/v1/therapists", "get"),
        ("/v1/therapists/{therapist_id}", "delete"),
        ("/v1/patients", "get"),
        ("/v1/patients/{patient_id}/games", "get"),
        ("/v1/patients/{patient_id}/games/{game_id}", "get"),
        ("/v1/patients/{patient_id}/games/{game_id}/samples", "get"),
        ("/v1/patients/{patient_id}/progress", "get"),
        ("/v1/patients/{patient_id}/adherence", "get"),
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

#[tokio::test]
async fn the_openapi_document_states_every_answer_and_limit() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["400", "500", "503"];
            if op.get("security").is_some() {
                expected.push("401");
            }
            if op.get("requestBody").is_some() {
                expected.extend(["413", "415", "422"]);
            }
            for status in expected {
                let r = responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path}: no {status}"));
                assert!(
                    r["content"].get("application/problem+json").is_some(),
                    "{method} {path} {status}: {r}"
                );
            }
            for (status, r) in responses {
                if status.starts_with('2') && status != "204" {
                    assert!(
                        r.get("content").is_some(),
                        "{method} {path} {status} declares no content type"
                    );
                }
            }
        }
    }
    for name in ["NotFound", "MethodNotAllowed"] {
        assert!(doc["components"]["responses"].get(name).is_some(), "{name}");
    }
    // Limits are in the schema, not only in prose.
    let params = doc["paths"]["/v1/games"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 100, "{limit}");
    let credentials = &doc["components"]["schemas"]["Credentials"]["properties"];
    assert_eq!(credentials["username"]["maxLength"], 64);
    assert_eq!(credentials["password"]["maxLength"], 256);
    let game = &doc["components"]["schemas"]["GameSubmissionDoc"]["properties"];
    assert_eq!(game["game"]["maxLength"], 64);
    assert_eq!(game["sample_rate_hz"]["maximum"], 1000);
    assert_eq!(game["channels"]["maxProperties"], 64);
    // Links, with their keys as OpenAPI spells them.
    let link = &doc["paths"]["/v1/games"]["post"]["responses"]["202"]["links"]["GetGame"];
    assert_eq!(link["operationId"], "get_game", "{link}");
    assert_eq!(link["parameters"]["game_id"], "$response.body#/game_id");
}
