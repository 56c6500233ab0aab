//! Hostile and careless requests: every answer is a deliberate
//! problem+json, and nothing a client sends grows the server's state
//! without bound.

use futures::StreamExt;
use m2m_testkit::{assert_problem, small_game, spawn_app, spawn_app_with, Options, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_method_a_path_does_not_have_is_a_problem_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (Method::DELETE, "/v1/games", "GET,HEAD,POST"),
        (Method::GET, "/v1/login", "POST"),
        (Method::PUT, "/healthz", "GET,HEAD"),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let mut allowed: Vec<String> = r.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        allowed.sort();
        assert_eq!(allowed.join(","), allow, "{method} {path}");
        let v = assert_problem(r, 405, None).await;
        assert_eq!(v["type"], "urn:m2m:problem:method-not-allowed", "{v}");
    }
}

#[tokio::test]
async fn a_content_encoding_other_than_gzip_is_a_problem_415() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    for encoding in ["br", "deflate", "zstd", "x-unknown"] {
        let r = app
            .post_game_with(&token, &[("content-encoding", encoding)], small_game(1))
            .await;
        assert!(
            r.headers()["accept-encoding"]
                .to_str()
                .unwrap()
                .contains("gzip"),
            "{encoding}"
        );
        let v = assert_problem(r, 415, None).await;
        assert_eq!(v["type"], "urn:m2m:problem:unsupported-encoding", "{v}");
    }
}

#[tokio::test]
async fn a_repeated_query_parameter_is_a_problem_400_naming_it() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    for (path, field) in [
        ("/v1/games?limit=1&limit=2", "limit"),
        ("/v1/games?before=x&limit=3&before=y", "before"),
        ("/v1/sync?since=a&since=b", "since"),
    ] {
        let r = app.get(&token, path).await;
        assert_problem(r, 400, Some(field)).await;
    }
    // Typed parameters out of range or of the wrong type, too.
    for (path, field) in [
        ("/v1/games?limit=0", "limit"),
        ("/v1/games?limit=abc", "limit"),
        ("/v1/sync?limit=1001", "limit"),
    ] {
        let r = app.get(&token, path).await;
        assert_problem(r, 400, Some(field)).await;
    }
}

#[tokio::test]
async fn a_malformed_path_is_a_problem() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    for path in ["/v1/games/%FF%FE", "/v1/games/not-a-uuid", "/nope/%FF"] {
        let r = app.get(&token, path).await;
        let status = r.status().as_u16();
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert_problem(r, status, None).await;
    }
}

#[tokio::test]
async fn anything_but_an_object_is_refused_where_an_object_is_expected() {
    let app = spawn_app().await;
    let bodies = [
        json!(["newname", PASSWORD]),
        json!([""]),
        json!([]),
        json!("newname"),
        json!(42),
        json!(null),
    ];
    for path in ["/v1/users", "/v1/login", "/v1/token/refresh", "/v1/logout"] {
        for body in &bodies {
            let r = app.post_json(path, body).await;
            let v = assert_problem(r, 422, Some("body")).await;
            assert!(
                v["detail"].as_str().unwrap().contains("expected an object"),
                "{path} {body}: {v}"
            );
        }
    }
    // Nothing was registered through the array form.
    let r = app
        .post_json(
            "/v1/login",
            &json!({"username": "newname", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_repeated_key_is_a_problem_422_naming_it() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body(r#"{"username":"ada","username":"grace","password":"correct horse battery"}"#)
        .send()
        .await
        .unwrap();
    let v = assert_problem(r, 422, Some("username")).await;
    assert!(
        v["detail"].as_str().unwrap().contains("more than once"),
        "{v}"
    );
}

#[tokio::test]
async fn account_endpoints_take_small_bodies_only() {
    let app = spawn_app().await;
    let huge = "a".repeat(4 * 1024 * 1024);
    for path in ["/v1/users", "/v1/login", "/v1/token/refresh", "/v1/logout"] {
        let body = json!({"username": huge, "password": PASSWORD, "refresh_token": huge});
        let r = app.post_json(path, &body).await;
        let v = assert_problem(r, 413, None).await;
        assert!(v["detail"].as_str().unwrap().contains("8192"), "{v}");
    }
}

#[tokio::test]
async fn login_refuses_names_and_passwords_longer_than_an_account_can_have() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/v1/login",
            &json!({"username": "a".repeat(65), "password": PASSWORD}),
        )
        .await;
    assert_problem(r, 422, Some("username")).await;
    let r = app
        .post_json(
            "/v1/login",
            &json!({"username": "ada", "password": "p".repeat(257)}),
        )
        .await;
    assert_problem(r, 422, Some("password")).await;
    // A name of a valid length but with characters no account has is
    // just a failed login.
    let r = app
        .post_json(
            "/v1/login",
            &json!({"username": "ada lovelace", "password": PASSWORD}),
        )
        .await;
    assert_problem(r, 401, None).await;
}

#[tokio::test]
async fn invented_methods_share_one_metrics_label() {
    let app = spawn_app().await;
    for i in 0..5 {
        let method = Method::from_bytes(format!("ZZMETHOD{i}").as_bytes()).unwrap();
        let r = app
            .client
            .request(method, app.url("/nope"))
            .send()
            .await
            .unwrap();
        assert_problem(r, 404, None).await;
    }
    let text = app.metrics().await;
    assert!(!text.contains("ZZMETHOD"), "{text}");
    assert!(
        text.contains(
            r#"m2m_http_requests_total{route="unmatched",method="other",status="404"} 5"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_their_time() {
    let app = spawn_app_with(Options {
        processor: false,
        idempotency_ttl: Duration::from_secs(3),
        sweep_interval: Duration::from_millis(50),
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let upload = || async {
        let r = app.post_game_keyed(&token, "game-1", small_game(1)).await;
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()["game_id"].clone()
    };
    let first = upload().await;
    // (3 s is long enough for the repeat to come within it even on a busy
    // machine.)
    assert_eq!(upload().await, first, "a repeat within the time replays");
    // Past the time, the sweeper deletes the key: the same key is a new
    // upload. (Bounded wait, not a speed assertion.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = upload().await;
        if again != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never swept"
        );
    }
}

#[tokio::test]
async fn a_user_keeps_at_most_eight_event_streams_open() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let open = || async {
        let r = app.get(&token, "/v1/events").await;
        assert_eq!(r.status(), 200);
        r.bytes_stream()
    };
    let mut oldest = open().await;
    let mut others = Vec::new();
    for _ in 0..7 {
        others.push(open().await);
    }
    // The ninth ends the oldest: its body ends (bounded wait).
    let _newest = open().await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = oldest.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the oldest stream is still open");
}

#[tokio::test]
async fn undecodable_bodies_and_headers_are_problem_400s() {
    let app = spawn_app().await;
    // A body that is not gzip although it says so.
    let token = app.user("ada").await;
    let r = app
        .post_game_with(&token, &[("content-encoding", "gzip")], "not gzip at all")
        .await;
    assert_problem(r, 400, Some("body")).await;
    // A header that is not text.
    let r = app
        .client
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .header(
            "last-event-id",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, Some("Last-Event-ID")).await;
}
