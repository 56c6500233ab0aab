//! Therapists: invites and links (`/v1/invites`, `/v1/therapists`) and the
//! caller's own settings (`/v1/me`), as docs/therapists.md states them.

use chrono::{DateTime, TimeDelta, Utc};
use m2m_store::NewInvite;
use m2m_testkit::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn problem_type(r: reqwest::Response, status: u16) -> String {
    let p = assert_problem(r, status, None).await;
    p["type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_invite_is_eight_crockford_symbols_valid_72_hours() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr-kim").await;
    let before = Utc::now();
    let r = app
        .send(Method::POST, &therapist, "/v1/invites", None)
        .await;
    assert_eq!(r.status(), 201);
    let invite: Value = r.json().await.unwrap();
    let code = invite["code"].as_str().unwrap();
    assert_eq!(code.len(), 8, "{code}");
    assert!(
        code.bytes()
            .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)),
        "{code}"
    );
    let expires: DateTime<Utc> = invite["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - before;
    assert!(
        ttl >= TimeDelta::hours(72) && ttl < TimeDelta::hours(72) + TimeDelta::minutes(1),
        "{ttl}"
    );
}

#[tokio::test]
async fn only_therapists_make_invites_and_only_patients_redeem_them() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr-kim").await;
    let patient = app.user("ada").await;
    let r = app.send(Method::POST, &patient, "/v1/invites", None).await;
    assert_eq!(problem_type(r, 403).await, "urn:m2m:problem:forbidden");
    let code = app.invite(&therapist).await;
    let r = app
        .send(
            Method::POST,
            &therapist,
            "/v1/therapists",
            Some(&json!({ "code": code })),
        )
        .await;
    assert_eq!(problem_type(r, 403).await, "urn:m2m:problem:forbidden");
    for path in ["/v1/therapists"] {
        let r = app.get(&therapist, path).await;
        assert_eq!(problem_type(r, 403).await, "urn:m2m:problem:forbidden");
    }
    let r = app
        .send(Method::POST, "not-a-token", "/v1/invites", None)
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_therapist_has_at_most_twenty_open_invites() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr-kim").await;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(app.invite(&therapist).await);
    }
    let r = app
        .send(Method::POST, &therapist, "/v1/invites", None)
        .await;
    let p = assert_problem(r, 409, None).await;
    assert_eq!(p["type"], "urn:m2m:problem:too-many-invites");
    // A used code is no longer open: room for one more.
    let patient = app.user("ada").await;
    app.redeem(&patient, &codes[0]).await;
    app.invite(&therapist).await;
}

#[tokio::test]
async fn redeeming_links_the_patient_to_the_therapist() {
    let app = spawn_app().await;
    let (therapist_id, therapist) = app.therapist("Dr-Kim").await;
    let patient = app.user("ada").await;
    let code = app.invite(&therapist).await;
    // As a person may type it: lower case, a hyphen, O for 0, L for 1.
    let typed = format!("{}-{}", &code[..4], &code[4..])
        .to_lowercase()
        .replace('0', "o")
        .replace('1', "l");
    let link = app.redeem(&patient, &typed).await;
    assert_eq!(link["therapist_id"], therapist_id.to_string());
    assert_eq!(link["username"], "Dr-Kim");
    let linked_at: DateTime<Utc> = link["linked_at"].as_str().unwrap().parse().unwrap();
    assert!(Utc::now() - linked_at < TimeDelta::minutes(1));

    let listed = app.read(&patient, "/v1/therapists").await;
    assert_eq!(listed, json!({ "therapists": [link.clone()] }));

    // Linking twice is idempotent: the same code, or another code of the
    // same therapist, answers the first link.
    assert_eq!(app.redeem(&patient, &code).await, link);
    let another = app.invite(&therapist).await;
    assert_eq!(app.redeem(&patient, &another).await, link);
    let listed = app.read(&patient, "/v1/therapists").await;
    assert_eq!(listed["therapists"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_used_and_expired_codes_each_have_their_problem() {
    let app = spawn_app().await;
    let (therapist_id, therapist) = app.therapist("dr-kim").await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let redeem = |token: String, code: String| {
        let app = &app;
        async move {
            app.send(
                Method::POST,
                &token,
                "/v1/therapists",
                Some(&json!({ "code": code })),
            )
            .await
        }
    };

    for unknown in ["ZZZZZZZZ", "short", "UUUUUUUU", ""] {
        let r = redeem(ada.clone(), unknown.to_owned()).await;
        let p = assert_problem(r, 422, Some("code")).await;
        assert_eq!(p["type"], "urn:m2m:problem:invite-unknown", "{unknown:?}");
    }

    let code = app.invite(&therapist).await;
    app.redeem(&ada, &code).await;
    let r = redeem(bob.clone(), code).await;
    let p = assert_problem(r, 422, Some("code")).await;
    assert_eq!(p["type"], "urn:m2m:problem:invite-used");

    // A code made 73 hours ago.
    let made = Utc::now() - TimeDelta::hours(73);
    app.store
        .create_invite(
            NewInvite {
                code: "EXP1RED0".to_owned(),
                therapist_id,
                created_at: made,
                expires_at: made + TimeDelta::hours(72),
            },
            20,
        )
        .await
        .unwrap();
    let r = redeem(bob.clone(), "EXP1RED0".to_owned()).await;
    let p = assert_problem(r, 422, Some("code")).await;
    assert_eq!(p["type"], "urn:m2m:problem:invite-expired");
    assert!(app.read(&bob, "/v1/therapists").await["therapists"]
        .as_array()
        .unwrap()
        .is_empty());

    let r = app
        .send(Method::POST, &bob, "/v1/therapists", Some(&json!({})))
        .await;
    assert_problem(r, 422, Some("code")).await;
}

#[tokio::test]
async fn removing_a_link_takes_effect_at_once() {
    let app = spawn_app().await;
    let (therapist_id, therapist) = app.therapist("dr-kim").await;
    let patient_id = app.register("ada").await;
    let patient = app.access_token("ada").await;
    app.link(&therapist, &patient).await;
    let progress = format!("/v1/patients/{patient_id}/progress");
    assert_eq!(app.get(&therapist, &progress).await.status(), 200);

    let path = format!("/v1/therapists/{therapist_id}");
    let r = app.send(Method::DELETE, &patient, &path, None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.text().await.unwrap(), "");
    assert_problem(app.get(&therapist, &progress).await, 404, None).await;
    let listed = app.read(&therapist, "/v1/patients").await;
    assert_eq!(listed, json!({ "patients": [] }));
    assert!(app.read(&patient, "/v1/therapists").await["therapists"]
        .as_array()
        .unwrap()
        .is_empty());

    // Gone already, never linked, or not an id: 404.
    for gone in [
        path.clone(),
        format!("/v1/therapists/{}", uuid::Uuid::now_v7()),
        "/v1/therapists/nope".to_owned(),
    ] {
        let r = app.send(Method::DELETE, &patient, &gone, None).await;
        assert_problem(r, 404, None).await;
    }
}

#[tokio::test]
async fn me_shows_the_account_and_sets_its_time_zone() {
    let app = spawn_app().await;
    let user_id = app.register("ada").await;
    let token = app.access_token("ada").await;
    let me = app.read(&token, "/v1/me").await;
    assert_eq!(
        me,
        json!({"user_id": user_id, "username": "ada", "role": "patient", "tz": "UTC"})
    );
    let r = app
        .send(
            Method::PATCH,
            &token,
            "/v1/me",
            Some(&json!({"tz": "Europe/Zurich"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["tz"], "Europe/Zurich");
    assert_eq!(app.read(&token, "/v1/me").await["tz"], "Europe/Zurich");

    for bad in [
        json!({"tz": "Mars/Olympus"}),
        json!({"tz": ""}),
        json!({"tz": 2}),
    ] {
        let r = app.send(Method::PATCH, &token, "/v1/me", Some(&bad)).await;
        assert_problem(r, 422, Some("tz")).await;
    }
    let r = app
        .send(
            Method::PATCH,
            &token,
            "/v1/me",
            Some(&json!({"role": "therapist"})),
        )
        .await;
    assert_problem(r, 422, Some("role")).await;
    assert_eq!(app.read(&token, "/v1/me").await["role"], "patient");

    let (_, therapist) = app.therapist("dr-kim").await;
    assert_eq!(app.read(&therapist, "/v1/me").await["role"], "therapist");
}

#[tokio::test]
async fn an_upload_refused_before_its_body_is_read_closes_the_connection_cleanly() {
    // The 403 is sent before the body is read, and the server then closes
    // the connection: the answer says so, so the client's next request
    // takes a new connection instead of failing on the closed one.
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr-kim").await;
    for round in 0..10 {
        let r = app.post_game(&therapist, ten_second_game(round)).await;
        assert_eq!(
            r.headers().get("connection").map(|v| v.to_str().unwrap()),
            Some("close")
        );
        assert_problem(r, 403, None).await;
        let r = app.post_game("not-a-token", ten_second_game(round)).await;
        assert_problem(r, 401, None).await;
        // The same client, at once: a request that must not fail.
        assert_eq!(app.read(&therapist, "/v1/me").await["role"], "therapist");
    }
}
