//! What is refused at the edge because it could never be read back.

use crate::helpers::*;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn a_game_body_that_is_not_an_object_is_refused_as_such() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    for body in ["[]", r#""x""#, "1", "null", r#"["pinch-garden", 1]"#] {
        let v = assert_problem(app.post_game(&token, body).await, 422, Some("body")).await;
        assert_eq!(v["detail"], "body: expected an object", "{body}");
    }
    let mut game: Value = serde_json::from_str(&small_game(1)).unwrap();
    game["device"] = json!(["G-0042", "1.4.2", "right"]);
    let v = assert_problem(
        app.post_game(&token, game.to_string()).await,
        422,
        Some("device"),
    )
    .await;
    assert_eq!(v["detail"], "device: expected an object");
    let games: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert_eq!(games["games"], json!([]), "nothing stored");
}

#[tokio::test]
async fn a_started_at_outside_years_0000_to_9999_in_utc_is_refused() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    for started_at in ["0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-00:01"] {
        let mut game: Value = serde_json::from_str(&small_game(1)).unwrap();
        game["started_at"] = json!(started_at);
        assert_problem(
            app.post_game(&token, game.to_string()).await,
            422,
            Some("started_at"),
        )
        .await;
    }
    let games: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert_eq!(games["games"], json!([]), "nothing stored");
}

#[tokio::test]
async fn games_at_the_edges_of_every_range_are_stored_processed_and_read() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let mut ids = Vec::new();
    for (started_at, score, glove) in [
        ("0000-01-01T00:00:00-01:00", f64::MAX, "\u{0}".repeat(64)),
        ("9999-12-31T23:59:59.999999Z", -f64::MAX, "🧤".repeat(64)),
    ] {
        let mut game: Value = serde_json::from_str(&small_game(1)).unwrap();
        game["started_at"] = json!(started_at);
        game["score"] = json!(score);
        game["game"] = json!("\u{0}\u{7f}\u{2028}");
        game["device"] = json!({"glove_id": glove, "firmware": "", "hand": "left"});
        let r = app.post_game(&token, game.to_string()).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        let id: Uuid = v["game_id"].as_str().unwrap().parse().unwrap();
        let got = app.wait_for(&token, id, "processed").await;
        assert_eq!(got["score"], json!(score));
        assert_eq!(got["game"], "\u{0}\u{7f}\u{2028}");
        assert_eq!(got["device"]["glove_id"], json!(glove));
        ids.push((id, got["started_at"].clone()));
    }
    assert_eq!(ids[0].1, "0000-01-01T01:00:00Z");
    assert_eq!(ids[1].1, "9999-12-31T23:59:59.999999Z");
    for path in ["/v1/games", "/v1/progress", "/v1/sync"] {
        let r = app.get(&token, path).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
}
