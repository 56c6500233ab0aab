//! GET /v1/sync and GET /v1/events.

use m2m_testkit::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn sync_pages_through_the_changes_in_order() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let mut ids = Vec::new();
    for seed in 0..4 {
        let id = app.submit(&token, seed).await;
        app.wait_for(&token, id, "processed").await;
        ids.push(id.to_string());
    }
    let all: Value = app.get(&token, "/v1/sync").await.json().await.unwrap();
    let changes = all["changes"].as_array().unwrap();
    let got: Vec<&str> = changes
        .iter()
        .map(|c| c["game_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
    assert_eq!(changes[0]["status"], "processed");
    assert!(changes[0]["metrics"]["duration_s"].is_number());
    assert_eq!(all["cursor"], changes[3]["cursor"]);

    let page: Value = app
        .get(&token, "/v1/sync?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    let cursor = page["cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&token, &format!("/v1/sync?since={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = rest["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["game_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[2..]);
    let end = rest["cursor"].as_str().unwrap();
    let empty: Value = app
        .get(&token, &format!("/v1/sync?since={end}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(empty["changes"].as_array().unwrap().is_empty());
    assert_eq!(
        empty["cursor"], end,
        "cursor stays at since when nothing is new"
    );

    assert_problem(
        app.get(&token, "/v1/sync?since=garbage").await,
        400,
        Some("since"),
    )
    .await;
    assert_problem(
        app.get(&token, "/v1/sync?since=00000000000000ff").await,
        400,
        Some("since"),
    )
    .await;
    assert_problem(
        app.get(&token, "/v1/sync?limit=1001").await,
        400,
        Some("limit"),
    )
    .await;
    // Another user's cursor is unknown here.
    let other = app.user("grace").await;
    assert_problem(
        app.get(&other, &format!("/v1/sync?since={end}")).await,
        400,
        Some("since"),
    )
    .await;
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_open_stream_of_the_user_gets_the_event() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let other = app.user("grace").await;
    let mut s1 = app.events(&token, None).await;
    let mut s2 = app.events(&token, None).await;
    let mut theirs = app.events(&other, None).await;
    let game = app.submit(&token, 1).await;
    for s in [&mut s1, &mut s2] {
        let e = s.next_event(WAIT).await.expect("an event");
        assert_eq!(e.event.as_deref(), Some("game.processed"));
        let change: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(change["game_id"], game.to_string());
        assert_eq!(change["status"], "processed");
        assert_eq!(e.id.as_deref(), change["cursor"].as_str());
    }
    assert!(
        theirs
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "not another user's"
    );
}

#[tokio::test]
async fn a_new_stream_sends_only_new_changes_and_resumes_from_last_event_id() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let old = app.submit(&token, 1).await;
    app.wait_for(&token, old, "processed").await;

    let mut s = app.events(&token, None).await;
    let g2 = app.submit(&token, 2).await;
    let e2 = s.next_event(WAIT).await.unwrap();
    assert!(
        e2.data.contains(&g2.to_string()),
        "only the new change: {e2:?}"
    );
    drop(s);

    // Offline: two more games finish, one after the other (the feed is in
    // the order games finish, and two processed at once may finish in
    // either order).
    let g3 = app.submit(&token, 3).await;
    app.wait_for(&token, g3, "processed").await;
    let g4 = app.submit(&token, 4).await;
    app.wait_for(&token, g4, "processed").await;

    let mut resumed = app.events(&token, e2.id.as_deref()).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = resumed.next_event(WAIT).await.unwrap();
        got.push(
            serde_json::from_str::<Value>(&e.data).unwrap()["game_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(got, [g3.to_string(), g4.to_string()]);
    // Then live ones.
    let g5 = app.submit(&token, 5).await;
    let e5 = resumed.next_event(WAIT).await.unwrap();
    assert!(e5.data.contains(&g5.to_string()));

    let r = app
        .client
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .header("last-event-id", "not-a-cursor")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, Some("Last-Event-ID")).await;
}

#[tokio::test]
async fn streams_send_keep_alive_comments() {
    let app = spawn_app_with(Options {
        keep_alive: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let mut s = app.events(&token, None).await;
    let e = s.next(Duration::from_secs(5)).await.expect("a keep-alive");
    assert!(e.comment, "{e:?}");
}
