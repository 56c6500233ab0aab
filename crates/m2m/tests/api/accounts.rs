//! /v1/users, /v1/login, /v1/token/refresh, /v1/logout.

use m2m_testkit::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn register_then_login() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/v1/users",
            &json!({"username": "Ada.L", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["username"], "Ada.L");
    assert!(v["user_id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());

    // Usernames compare case-insensitively.
    let t = app.login("ada.l").await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert!(t["access_token"].as_str().unwrap().len() > 20);
    assert!(
        t["refresh_token"].as_str().unwrap().len() >= 43,
        "≥ 256 bits"
    );
}

/// Registration creates patients, and the access token says so, from login
/// and from a refresh alike.
#[tokio::test]
async fn a_registered_users_token_says_patient() {
    let app = spawn_app().await;
    let user_id = app.register("ada").await;
    let t = app.login("ada").await;
    let claims = token_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["role"], "patient", "{claims}");
    assert_eq!(claims["sub"], user_id.to_string());

    let r = app.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = token_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["role"], "patient", "{claims}");
}

#[tokio::test]
async fn registration_errors() {
    let app = spawn_app().await;
    app.register("grace").await;
    let r = app
        .post_json(
            "/v1/users",
            &json!({"username": "GRACE", "password": PASSWORD}),
        )
        .await;
    assert_problem(r, 409, None).await;

    for (body, field) in [
        (json!({"username": "ab", "password": PASSWORD}), "username"),
        (
            json!({"username": "no spaces", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "valid_name", "password": "short"}),
            "password",
        ),
        (json!({"password": PASSWORD}), "username"),
        (json!({"username": "valid_name"}), "password"),
        (json!({"username": 5, "password": PASSWORD}), "username"),
    ] {
        let r = app.post_json("/v1/users", &body).await;
        assert_problem(r, 422, Some(field)).await;
    }

    let r = app
        .client
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, None).await;
    let r = app
        .client
        .post(app.url("/v1/users"))
        .header("content-type", "text/plain")
        .body("username=x")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, None).await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_alike() {
    let app = spawn_app().await;
    app.register("linus").await;
    let wrong = app
        .post_json(
            "/v1/login",
            &json!({"username": "linus", "password": "wrong password!"}),
        )
        .await;
    assert!(wrong.headers().contains_key("www-authenticate"));
    let wrong = assert_problem(wrong, 401, None).await;
    let unknown = app
        .post_json(
            "/v1/login",
            &json!({"username": "nobody", "password": "wrong password!"}),
        )
        .await;
    let unknown = assert_problem(unknown, 401, None).await;
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn failed_logins_are_limited_per_username() {
    let app = spawn_app().await;
    app.register("mallory").await;
    let bad = json!({"username": "mallory", "password": "not the password"});
    for _ in 0..10 {
        assert_eq!(app.post_json("/v1/login", &bad).await.status(), 401);
    }
    let r = app.post_json("/v1/login", &bad).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_problem(r, 429, None).await;
    // Even the right password waits: the limit is on the name.
    let good = json!({"username": "MALLORY", "password": PASSWORD});
    assert_eq!(app.post_json("/v1/login", &good).await.status(), 429);
    // Another user is not affected.
    app.register("trent").await;
    app.login("trent").await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_address() {
    let app = spawn_app_with(Options {
        login_limits: m2m_gateway::LoginLimits {
            per_username: 100,
            per_address: 3,
            window: Duration::from_secs(60),
        },
        ..Options::default()
    })
    .await;
    for i in 0..3 {
        let r = app
            .post_json(
                "/v1/login",
                &json!({"username": format!("user{i}"), "password": "whatever123"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post_json(
            "/v1/login",
            &json!({"username": "user9", "password": "whatever123"}),
        )
        .await;
    assert_problem(r, 429, None).await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_login() {
    let app = spawn_app().await;
    app.register("alan").await;
    let first = app.login("alan").await;
    let r1 = first["refresh_token"].as_str().unwrap();

    let r = app
        .post_json("/v1/token/refresh", &json!({"refresh_token": r1}))
        .await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    // The new access token works.
    let at = second["access_token"].as_str().unwrap();
    assert_eq!(app.get(at, "/v1/games").await.status(), 200);

    // The rotated-out token is refused, and that revokes the whole login.
    let r = app
        .post_json("/v1/token/refresh", &json!({"refresh_token": r1}))
        .await;
    assert_problem(r, 401, None).await;
    let r = app
        .post_json("/v1/token/refresh", &json!({"refresh_token": r2}))
        .await;
    assert_problem(r, 401, None).await;

    // Another login of the same user is unaffected.
    let other = app.login("alan").await;
    let r = app
        .post_json(
            "/v1/token/refresh",
            &json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let r = app
        .post_json("/v1/token/refresh", &json!({"refresh_token": "made-up"}))
        .await;
    assert_problem(r, 401, None).await;
    let r = app.post_json("/v1/token/refresh", &json!({})).await;
    assert_problem(r, 422, Some("refresh_token")).await;
}

#[tokio::test]
async fn logout_revokes_the_login() {
    let app = spawn_app().await;
    app.register("barbara").await;
    let t = app.login("barbara").await;
    let r = app
        .post_json("/v1/logout", &json!({"refresh_token": t["refresh_token"]}))
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .post_json(
            "/v1/token/refresh",
            &json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_problem(r, 401, None).await;
    // The access token stays valid until it expires.
    assert_eq!(
        app.get(t["access_token"].as_str().unwrap(), "/v1/games")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn protected_routes_need_a_valid_token() {
    let app = spawn_app().await;
    for path in [
        "/v1/games",
        "/v1/progress",
        "/v1/sync",
        "/v1/events",
        "/v1/games/0192f1d2-0000-7000-8000-000000000000",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_problem(r, 401, None).await;
        let r = app.get("not.a.jwt", path).await;
        assert_problem(r, 401, None).await;
    }
    // A token signed with another secret.
    let forged = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMWEyMWZlMC1mMjllLTc0ZDAtYjlkNC1iYzgwNjkyYWRmNWYiLCJpYXQiOjE3OTU4MzExNjYsImV4cCI6NDc5NTgzMjA2Nn0.o5MxffEZn73AftSLQlu0oAwQs2xLQLFdIEHnIIV878E";
    assert_problem(app.get(forged, "/v1/games").await, 401, None).await;
    let r = app.post_game(forged, small_game(1)).await;
    assert_problem(r, 401, None).await;
}
