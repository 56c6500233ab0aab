//! POST /v1/games, GET /v1/games/{id}, GET /v1/games, GET /v1/progress.

use m2m_testkit::*;
use serde_json::{json, Value};
use std::io::Write;

#[tokio::test]
async fn an_upload_is_accepted_analysed_and_readable() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let body = small_game(7);
    let r = app.post_game(&token, body.clone()).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("x-trace-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    let game_id: uuid::Uuid = v["game_id"].as_str().unwrap().parse().unwrap();
    assert!(v["event_id"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .is_ok());
    assert_eq!(location, format!("/v1/games/{game_id}"));

    let game = app.wait_for(&token, game_id, "processed").await;
    assert_eq!(game["game"], "pinch-garden");
    assert_eq!(game["score"], 107.0);
    assert_eq!(game["sample_rate_hz"], 100.0);
    assert_eq!(game["samples"], 500);
    assert_eq!(game["channels"].as_array().unwrap().len(), 16);
    assert_eq!(game["device"]["hand"], "right");
    assert!(
        game["processed_at"].is_string()
            && game["submitted_at"].is_string()
            && game["started_at"].is_string()
    );
    assert!(game.get("error").is_none(), "no null fields: {game}");
    // The stored metrics are what `m2m analyze` computes from the stored
    // columns (f32), within float noise of the analysis of the upload.
    let direct = m2m_domain::GameSubmission::from_json(body.as_bytes())
        .unwrap()
        .analyze();
    let stored: m2m_analysis::Metrics = serde_json::from_value(game["metrics"].clone()).unwrap();
    assert_eq!(stored.repetitions, direct.repetitions);
    let (a, b) = (
        stored.rom_deg.unwrap().mean.unwrap(),
        direct.rom_deg.unwrap().mean.unwrap(),
    );
    assert!((a - b).abs() < 1e-4 * b.abs(), "{a} vs {b}");
}

#[tokio::test]
async fn invalid_uploads_name_the_field() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"game":"g","score":1,"sample_rate_hz":100,"channels":{"gyro_x":[1,2,1e999]}}"#
                .into(),
            "channels.gyro_x[2]",
        ),
        (
            r#"{"game":"g","score":1,"sample_rate_hz":100,"channels":{"gyro_x":[1,null]}}"#.into(),
            "channels.gyro_x[1]",
        ),
        (
            r#"{"game":"g","score":"1","sample_rate_hz":100,"channels":{"a":[1]}}"#.into(),
            "score",
        ),
        (
            r#"{"game":"g","score":1,"sample_rate_hz":5,"channels":{"a":[1]}}"#.into(),
            "sample_rate_hz",
        ),
        (
            r#"{"game":"g","score":1,"sample_rate_hz":100,"channels":{"a":[1,2],"b":[1]}}"#.into(),
            "channels.b",
        ),
        (
            r#"{"score":1,"sample_rate_hz":100,"channels":{"a":[1]}}"#.into(),
            "game",
        ),
        (
            r#"{"game":"g","score":1,"sample_rate_hz":100}"#.into(),
            "channels",
        ),
    ];
    for (body, field) in cases {
        let r = app.post_game(&token, body).await;
        assert_problem(r, 422, Some(field)).await;
    }
    let r = app.post_game(&token, "{\"game\": \"g\", ").await;
    assert_problem(r, 400, None).await;
    let r = app
        .client
        .post(app.url("/v1/games"))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body("1,2,3")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, None).await;
    // Nothing was stored.
    let list: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert!(list["games"].as_array().unwrap().is_empty());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let r = app
        .post_game_with(
            &token,
            &[("content-encoding", "gzip")],
            gzip(small_game(3).as_bytes()),
        )
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn the_body_limit_applies_after_decompression() {
    let body = small_game(1);
    let app = spawn_app_with(Options {
        body_limit: body.len() - 1,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let r = app.post_game(&token, body.clone()).await;
    assert_problem(r, 413, None).await;
    // Compressed it is far below the limit, but decompressed it is not.
    let packed = gzip(body.as_bytes());
    assert!(packed.len() < body.len() / 2);
    let r = app
        .client
        .post(app.url("/v1/games"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(packed)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, None).await;
    // A body sent without a length (chunked) is cut off too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = app
        .client
        .post(app.url("/v1/games"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, None).await;
}

#[tokio::test]
async fn idempotent_replay_returns_the_first_answer() {
    let app = spawn_app_with(Options {
        processor: false,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let send = |key: &'static str, body: String| app.post_game_keyed(&token, key, body);
    let first = send("game-42", small_game(1)).await;
    assert_eq!(first.status(), 202);
    let first_location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();
    let again = send("game-42", small_game(1)).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["location"], first_location);
    assert_eq!(again.text().await.unwrap(), first_body);
    let list: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert_eq!(
        list["games"].as_array().unwrap().len(),
        1,
        "nothing new created"
    );

    let different = send("game-42", small_game(2)).await;
    assert_problem(different, 422, Some("Idempotency-Key")).await;

    // Keys are per user.
    let other = app.user("grace").await;
    let r = app.post_game_keyed(&other, "game-42", small_game(1)).await;
    assert_eq!(r.status(), 202);
    assert_ne!(r.text().await.unwrap(), first_body);

    let bad = send("has space", small_game(1)).await;
    assert_problem(bad, 400, Some("Idempotency-Key")).await;
}

#[tokio::test]
async fn users_cannot_see_each_others_games() {
    let app = spawn_app().await;
    let ada = app.user("ada").await;
    let grace = app.user("grace").await;
    let game = app.submit(&ada, 1).await;
    app.wait_for(&ada, game, "processed").await;
    assert_problem(
        app.get(&grace, &format!("/v1/games/{game}")).await,
        404,
        None,
    )
    .await;
    assert_problem(app.get(&ada, "/v1/games/not-a-uuid").await, 404, None).await;
    assert_problem(
        app.get(&ada, &format!("/v1/games/{}", uuid::Uuid::now_v7()))
            .await,
        404,
        None,
    )
    .await;
    let list: Value = app.get(&grace, "/v1/games").await.json().await.unwrap();
    assert!(list["games"].as_array().unwrap().is_empty());
    let sync: Value = app.get(&grace, "/v1/sync").await.json().await.unwrap();
    assert!(sync["changes"].as_array().unwrap().is_empty());
    let progress: Value = app.get(&grace, "/v1/progress").await.json().await.unwrap();
    assert_eq!(progress, json!({"metrics": {}}));
}

#[tokio::test]
async fn games_list_newest_first_in_pages() {
    let app = spawn_app_with(Options {
        processor: false,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let mut ids = Vec::new();
    for seed in 0..5 {
        ids.push(app.submit(&token, seed).await.to_string());
    }
    ids.reverse();
    let page: Value = app
        .get(&token, "/v1/games?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = page["games"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["game_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..2]);
    assert!(page["games"][0].get("metrics").is_none());
    assert_eq!(page["games"][0]["status"], "queued");
    let next = page["next"].as_str().unwrap();
    assert_eq!(next, ids[1]);
    let page2: Value = app
        .get(&token, &format!("/v1/games?limit=2&before={next}"))
        .await
        .json()
        .await
        .unwrap();
    let got2: Vec<&str> = page2["games"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["game_id"].as_str().unwrap())
        .collect();
    assert_eq!(got2, ids[2..4]);
    let last: Value = app
        .get(
            &token,
            &format!(
                "/v1/games?limit=2&before={}",
                page2["next"].as_str().unwrap()
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["games"].as_array().unwrap().len(), 1);
    assert!(
        last.get("next").is_none(),
        "no next on the last page: {last}"
    );
    let default: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert_eq!(default["games"].as_array().unwrap().len(), 5);

    for q in ["limit=0", "limit=101", "limit=x", "before=nope"] {
        let field = q.split('=').next().unwrap();
        assert_problem(
            app.get(&token, &format!("/v1/games?{q}")).await,
            400,
            Some(field),
        )
        .await;
    }
}

#[tokio::test]
async fn progress_follows_the_headline_metrics() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    for (seed, started) in [
        (1u64, "2026-11-01T10:00:00Z"),
        (2, "2026-11-08T10:00:00Z"),
        (3, "2026-11-15T10:00:00+02:00"),
    ] {
        let mut body: Value = serde_json::from_str(&small_game(seed)).unwrap();
        body["started_at"] = json!(started);
        let r = app.post_game(&token, body.to_string()).await;
        let id: uuid::Uuid = r.json::<Value>().await.unwrap()["game_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        app.wait_for(&token, id, "processed").await;
    }
    let p: Value = app.get(&token, "/v1/progress").await.json().await.unwrap();
    let score = &p["metrics"]["score"];
    assert_eq!(score["unit"], "points");
    assert_eq!(score["direction"], "higher_is_better");
    assert_eq!(score["baseline"], 102.0);
    assert_eq!(score["latest"], 103.0);
    let pct = score["improvement_pct"].as_f64().unwrap();
    assert!((pct - 100.0 / 102.0).abs() < 1e-9, "{pct}");
    // One point a week, measured Theil–Sen over started_at (the third game
    // started two hours earlier in UTC than its local time says).
    let trend = score["trend_per_week"].as_f64().unwrap();
    assert!((trend - 1.0).abs() < 0.02, "{trend}");
    assert_eq!(score["series"].as_array().unwrap().len(), 3);
    assert_eq!(score["series"][2]["at"], "2026-11-15T08:00:00Z");
    for key in [
        "rom_deg.mean",
        "peak_force_n.mean",
        "repetitions",
        "smoothness.sparc",
        "tremor.index",
    ] {
        assert!(p["metrics"].get(key).is_some(), "{key} in {p}");
    }
    assert_eq!(p["metrics"]["tremor.index"]["direction"], "lower_is_better");
}

#[tokio::test]
async fn an_expired_access_token_is_refused() {
    let app = spawn_app().await;
    let user_id = app.register("ada").await;
    #[derive(serde::Serialize)]
    struct Claims {
        sub: uuid::Uuid,
        iat: i64,
        exp: i64,
    }
    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: user_id,
            iat: now - 1000,
            exp: now - 10,
        },
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-test-secret-test-secret"),
    )
    .unwrap();
    assert_problem(app.get(&expired, "/v1/games").await, 401, None).await;
    let fresh = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: user_id,
            iat: now,
            exp: now + 60,
        },
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-test-secret-test-secret"),
    )
    .unwrap();
    assert_eq!(app.get(&fresh, "/v1/games").await.status(), 200);
}
