//! What is refused at the edge because it could never be read back, and
//! reads that stay whole when the data directory already holds a row
//! they cannot decode.

use futures::StreamExt;
use m2m_testkit::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
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

/// What an older version left in a data directory: times whose UTC year is
/// outside 0000–9999 as it wrote them (chrono puts a sign before such a
/// year), which no RFC 3339 parser reads.
const YEAR_MINUS_1: &str = "-0001-12-31T23:00:00.000000Z";
const YEAR_10000: &str = "+10000-01-01T00:00:59.000000Z";

/// Runs SQL on the database file as an older version or a hand edit would.
fn sql(db: &PathBuf, statement: &str, game_id: Uuid, value: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let n = conn
        .execute(statement, [game_id.hyphenated().to_string(), value.into()])
        .unwrap();
    assert_eq!(n, 1, "{statement}");
}

#[tokio::test]
async fn a_data_directory_with_unreadable_times_reads_whole_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m2m.db");

    // An older server accepted four games and stopped before analysing
    // them; one of them had a started_at in the year 10000.
    let on_db = |processor| Options {
        processor,
        db: Some(db.clone()),
        ..Options::default()
    };
    let old = spawn_app_with(on_db(false)).await;
    let token = old.user("ada").await;
    let mut games = Vec::new();
    for seed in 0..4 {
        games.push(old.submit(&token, seed).await);
    }
    old.stop().await;
    let queued_with_bad_time = games[3];
    sql(
        &db,
        "UPDATE games SET started_at = ?2 WHERE game_id = ?1",
        queued_with_bad_time,
        YEAR_10000,
    );

    // The upgraded server analyses all of them: the unreadable time holds
    // up neither its own game nor the others.
    let new = spawn_app_with(on_db(true)).await;
    let token = new.login("ada").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for &id in &games {
        new.wait_for(&token, id, "processed").await;
    }
    let changes = new.read(&token, "/v1/sync").await;
    let first_cursor = changes["changes"][0]["cursor"].as_str().unwrap().to_owned();

    // Then rows as the older server left them: a game accepted with a time
    // in the year -1 whose processing failed, a processed game with a time
    // in the year 10000, and a change whose time cannot be read.
    let (failed, processed, odd_change) = (games[0], games[1], games[2]);
    sql(
        &db,
        "UPDATE games SET started_at = ?2, status = 'failed', metrics = NULL,
             error = 'the game could not be processed: invalid game data: started_at: must be an RFC 3339 date-time'
         WHERE game_id = ?1",
        failed,
        YEAR_MINUS_1,
    );
    sql(
        &db,
        "UPDATE changes SET status = 'failed', metrics = NULL, processed_at = ?2 WHERE game_id = ?1",
        failed,
        "2026-11-27T10:00:00.000000Z",
    );
    sql(
        &db,
        "UPDATE games SET started_at = ?2 WHERE game_id = ?1",
        processed,
        YEAR_10000,
    );
    sql(
        &db,
        "UPDATE changes SET processed_at = ?2 WHERE game_id = ?1",
        odd_change,
        YEAR_MINUS_1,
    );

    // Listing, single games, progress and the feed all answer.
    let listed = new.read(&token, "/v1/games").await;
    let listed = listed["games"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    for g in listed {
        assert!(g["started_at"].is_string(), "{g}");
    }
    let got = new.read(&token, &format!("/v1/games/{failed}")).await;
    assert_eq!(got["status"], "failed");
    assert_eq!(
        got["started_at"], got["submitted_at"],
        "an unreadable started_at reads as the submission time"
    );
    let got = new.read(&token, &format!("/v1/games/{processed}")).await;
    assert_eq!(got["status"], "processed");
    assert_eq!(got["started_at"], got["submitted_at"]);
    assert!(got["metrics"].is_object());
    let progress = new.read(&token, "/v1/progress").await;
    assert!(progress.is_object(), "{progress}");
    let feed = new.read(&token, "/v1/sync").await;
    let feed = feed["changes"].as_array().unwrap();
    assert_eq!(feed.len(), 4);
    let odd = feed
        .iter()
        .find(|c| c["game_id"] == odd_change.to_string())
        .unwrap();
    assert!(odd.get("processed_at").is_none(), "{odd}");

    // The event stream replays the changes after the first one.
    let r = new
        .client
        .get(new.url("/v1/events"))
        .bearer_auth(&token)
        .header("last-event-id", &first_cursor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while text.matches("\nid:").count() + usize::from(text.starts_with("id:")) < 3 {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the three later changes are streamed")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);

    // And nothing is wedged: a new game is analysed as usual.
    let fresh = new.submit(&token, 9).await;
    new.wait_for(&token, fresh, "processed").await;
    new.stop().await;
}
