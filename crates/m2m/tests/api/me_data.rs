//! A user's own data: `GET /v1/me/export` (a copy, as a zip) and
//! `DELETE /v1/me` (erasure), and what the processor does with an event
//! of a deleted account's game (docs/data-lifecycle.md, "A patient's copy
//! and erasure").

use m2m_bus::Bus;
use m2m_gateway::LoginLimits;
use m2m_testkit::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;
use uuid::Uuid;

/// `DELETE /v1/me` with `body` as JSON (or none).
async fn delete_me(app: &TestApp, token: &str, body: Option<&Value>) -> reqwest::Response {
    app.send(Method::DELETE, token, "/v1/me", body).await
}

async fn delete_me_raw(
    app: &TestApp,
    token: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> reqwest::Response {
    let mut req = app
        .client
        .delete(app.url("/v1/me"))
        .bearer_auth(token)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("DELETE /v1/me")
}

fn password() -> Value {
    json!({ "password": PASSWORD })
}

/// Deletes a patient who has a processed game, a therapist and a login,
/// through the API, and checks that every way in is closed and the
/// username is free; returns the ids the store must no longer mention
/// (the account's, its game's).
async fn delete_a_linked_patient(app: &TestApp) -> Vec<Uuid> {
    let (_, therapist) = app.therapist("dr.grace").await;
    let ada_id = app.register("ada").await;
    let tokens = app.login("ada").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    app.link(&therapist, &access).await;
    let game = app.submit(&access, 1).await;
    app.wait_for(&access, game, "processed").await;
    let patients = app.read(&therapist, "/v1/patients").await;
    assert_eq!(patients["patients"][0]["patient_id"], ada_id.to_string());

    assert_eq!(
        delete_me(app, &access, Some(&password())).await.status(),
        204
    );

    // Every way in is closed: the access token, the refresh token, the
    // password.
    assert_problem(app.get(&access, "/v1/me").await, 401, None).await;
    assert_problem(app.get(&access, "/v1/games").await, 401, None).await;
    assert_problem(app.post_game(&access, small_game(2)).await, 401, None).await;
    assert_problem(
        app.get(&access, &format!("/v1/games/{game}")).await,
        401,
        None,
    )
    .await;
    assert_problem(delete_me(app, &access, Some(&password())).await, 401, None).await;
    assert_problem(app.refresh(&refresh).await, 401, None).await;
    let login = app
        .post_json(
            "/v1/login",
            &json!({"username": "ada", "password": PASSWORD}),
        )
        .await;
    assert_problem(login, 401, None).await;
    // The patient is gone from the therapist's list.
    let patients = app.read(&therapist, "/v1/patients").await;
    assert_eq!(patients["patients"], json!([]));

    // The username registers again, as a new account with nothing in it.
    let again = app.register("ADA").await;
    assert_ne!(again, ada_id);
    let fresh = app.access_token("ada").await;
    assert_eq!(app.read(&fresh, "/v1/games").await["games"], json!([]));
    assert_eq!(app.read(&fresh, "/v1/sync").await["changes"], json!([]));
    let me = app.read(&fresh, "/v1/me").await;
    assert_eq!(me["user_id"], again.to_string());
    vec![ada_id, game]
}

/// The tables and columns of an SQLite file that mention `id` (as text).
fn sqlite_mentions(db: &std::path::Path, id: Uuid) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let id = id.to_string();
    let mut found = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, name) in names.iter().enumerate() {
                if let rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) =
                    row.get_ref(i).unwrap()
                {
                    if b.windows(id.len()).any(|w| w == id.as_bytes()) {
                        found.push(format!("{table}.{name}"));
                    }
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn deleting_an_account_ends_its_tokens_and_frees_its_username() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m2m.db");
    let app = spawn_app_with(Options {
        db: Some(db.clone()),
        ..Options::default()
    })
    .await;
    for id in delete_a_linked_patient(&app).await {
        assert_eq!(sqlite_mentions(&db, id), Vec::<String>::new(), "{id}");
    }
}

/// The app on a MongoDB store in a fresh database (the caller drops it),
/// when `M2M_TEST_MONGODB_URL` names a server; `None` (saying so) when not.
#[cfg(feature = "mongodb")]
async fn mongodb_app() -> Option<(TestApp, mongodb::Database)> {
    let Some(url) = std::env::var("M2M_TEST_MONGODB_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!("MongoDB API test not run: M2M_TEST_MONGODB_URL is not set");
        return None;
    };
    let database = format!("m2m_api_test_{}", Uuid::now_v7().simple());
    let store = m2m_store::MongoStore::connect_database(&url, &database)
        .await
        .expect("M2M_TEST_MONGODB_URL: connect");
    let app = spawn_app_on(std::sync::Arc::new(store), Options::default()).await;
    let db = mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .database(&database);
    Some((app, db))
}

/// The same on MongoDB, when `M2M_TEST_MONGODB_URL` names a server (in a
/// fresh database, dropped afterwards).
#[cfg(feature = "mongodb")]
#[tokio::test]
async fn deleting_an_account_on_mongodb_leaves_no_document_naming_it() {
    use futures::TryStreamExt;
    let Some((app, db)) = mongodb_app().await else {
        return;
    };
    let gone = delete_a_linked_patient(&app).await;
    for collection in db.list_collection_names().await.unwrap() {
        let docs: Vec<mongodb::bson::RawDocumentBuf> = db
            .collection::<mongodb::bson::RawDocumentBuf>(&collection)
            .find(mongodb::bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for d in docs {
            for id in &gone {
                let id = id.to_string();
                assert!(
                    !d.as_bytes().windows(id.len()).any(|w| w == id.as_bytes()),
                    "{collection} mentions {id}: {d:?}"
                );
            }
        }
    }
    app.stop().await;
    db.drop().await.unwrap();
}

#[tokio::test]
async fn deletion_needs_the_password_in_a_well_formed_body() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    // A wrong password: 403 (the token itself is fine), nothing deleted.
    let wrong = delete_me(&app, &token, Some(&json!({"password": "not the password"}))).await;
    let problem = assert_problem(wrong, 403, None).await;
    assert_eq!(problem["type"], "urn:m2m:problem:forbidden");
    // No body, an empty object, a wrong type, a length no password has,
    // an unknown field: 422 naming the field.
    for (body, field) in [
        (None, "password"),
        (Some(json!({})), "password"),
        (Some(json!({"password": 1234567890})), "password"),
        (Some(json!({"password": null})), "password"),
        (Some(json!({"password": "short"})), "password"),
        (Some(json!({"password": "x".repeat(257)})), "password"),
        (Some(json!({"password": PASSWORD, "also": 1})), "also"),
    ] {
        let r = delete_me(&app, &token, body.as_ref()).await;
        assert_problem(r, 422, Some(field)).await;
    }
    assert_problem(
        delete_me_raw(&app, &token, None, "").await,
        422,
        Some("password"),
    )
    .await;
    // Malformed JSON: 400 naming the body; not JSON at all: 415.
    let r = delete_me_raw(&app, &token, Some("application/json"), "{\"password\":").await;
    assert_problem(r, 400, Some("body")).await;
    let r = delete_me_raw(&app, &token, Some("text/plain"), "correct horse battery").await;
    assert_problem(r, 415, None).await;
    // No token: 401 before the body is read.
    let r = app
        .client
        .delete(app.url("/v1/me"))
        .json(&password())
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, None).await;
    // Still there, and deletable.
    assert_eq!(app.read(&token, "/v1/me").await["username"], "ada");
    assert_eq!(
        delete_me(&app, &token, Some(&password())).await.status(),
        204
    );
}

#[tokio::test]
async fn wrong_passwords_at_deletion_count_as_failed_logins() {
    let app = spawn_app_with(Options {
        login_limits: LoginLimits {
            per_username: 2,
            per_address: 100,
            window: Duration::from_secs(60),
        },
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let wrong = json!({"password": "not the password"});
    for _ in 0..2 {
        assert_problem(delete_me(&app, &token, Some(&wrong)).await, 403, None).await;
    }
    // Limited like a login of this username, the right password too.
    let r = delete_me(&app, &token, Some(&password())).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 429, None).await;
    let login = app
        .post_json(
            "/v1/login",
            &json!({"username": "ada", "password": PASSWORD}),
        )
        .await;
    assert_problem(login, 429, None).await;
}

#[tokio::test]
async fn a_therapist_can_delete_their_account_and_their_links_go() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr.grace").await;
    let patient = app.user("ada").await;
    app.link(&therapist, &patient).await;
    let open_code = app.invite(&therapist).await;
    assert_eq!(
        app.read(&patient, "/v1/therapists").await["therapists"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    assert_eq!(
        delete_me(&app, &therapist, Some(&password()))
            .await
            .status(),
        204
    );

    assert_problem(app.get(&therapist, "/v1/patients").await, 401, None).await;
    assert_eq!(
        app.read(&patient, "/v1/therapists").await["therapists"],
        json!([])
    );
    let r = app
        .send(
            Method::POST,
            &patient,
            "/v1/therapists",
            Some(&json!({ "code": open_code })),
        )
        .await;
    let problem = assert_problem(r, 422, None).await;
    assert_eq!(problem["type"], "urn:m2m:problem:invite-unknown");
    // The patient's own account is untouched.
    assert_eq!(app.read(&patient, "/v1/me").await["username"], "ada");
}

/// The events of games still queued when their account is deleted are
/// acked and counted as discarded: not dead-lettered, not failed.
#[tokio::test]
async fn the_events_of_a_deleted_accounts_games_are_discarded() {
    let app = spawn_app_with(Options {
        processor: false,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let other = app.user("bob").await;
    app.submit(&token, 1).await;
    app.submit(&token, 2).await;
    let kept = app.submit(&other, 3).await;
    // The events wait on the bus (no processor yet) while the account goes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.bus.backlog().await != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the events are published"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        delete_me(&app, &token, Some(&password())).await.status(),
        204
    );

    app.start_processor(5);
    app.wait_for(&other, kept, "processed").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = app.metrics().await;
        if metrics.contains("m2m_events_discarded_total 2") {
            break metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both events discarded: {metrics}"
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(app.bus.dead_letters().is_empty());
    assert!(
        metrics.contains("m2m_events_dead_lettered_total 0"),
        "{metrics}"
    );
    assert!(metrics.contains("m2m_games_failed_total 0"), "{metrics}");
    assert!(metrics.contains("m2m_games_processed_total 1"), "{metrics}");
    assert_eq!(app.bus.backlog().await, Some(0));
}

// ---------------------------------------------------------------------------
// The copy

/// The zip of `GET /v1/me/export`, checked for its headers; its files by
/// name.
async fn export(app: &TestApp, token: &str, username: &str) -> BTreeMap<String, Vec<u8>> {
    let r = app.get(token, "/v1/me/export").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"m2m-export-{username}.zip\"").as_str()
    );
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid zip");
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        files.insert(file.name().to_owned(), content);
    }
    files
}

/// A game whose values are written in many ways, each read as the JSON
/// parser reads it: the export must give back those very numbers.
const TRICKY: [&str; 10] = [
    "0.1",
    "-2.5",
    "1e-7",
    "12345.678",
    "0.30000000000000004",
    "3",
    "-0.0",
    "1.7976931348623157e308",
    "5e-324",
    "0.12345678901234567",
];

fn tricky_game() -> (String, BTreeMap<&'static str, Vec<&'static str>>) {
    let mut columns = BTreeMap::new();
    columns.insert(
        "flex_index",
        (0..100)
            .map(|i| TRICKY[i % TRICKY.len()])
            .collect::<Vec<_>>(),
    );
    columns.insert(
        "accel_x",
        (0..100)
            .map(|i| TRICKY[(i * 7 + 3) % TRICKY.len()])
            .collect(),
    );
    let channels: Vec<String> = columns
        .iter()
        .map(|(name, values)| format!("\"{name}\": [{}]", values.join(", ")))
        .collect();
    let body = format!(
        "{{\"game\": \"pinch-garden\", \"score\": 12.5, \"sample_rate_hz\": 50, \
         \"started_at\": \"2026-11-27T10:00:00Z\", \"channels\": {{{}}}}}",
        channels.join(", ")
    );
    (body, columns)
}

#[tokio::test]
async fn the_export_holds_the_account_every_game_and_the_exact_samples() {
    export_holds_everything(&spawn_app().await).await;
}

/// The same on MongoDB, when `M2M_TEST_MONGODB_URL` names a server (in a
/// fresh database, dropped afterwards).
#[cfg(feature = "mongodb")]
#[tokio::test]
async fn the_export_on_mongodb_holds_the_account_every_game_and_the_exact_samples() {
    let Some((app, db)) = mongodb_app().await else {
        return;
    };
    export_holds_everything(&app).await;
    app.stop().await;
    db.drop().await.unwrap();
}

async fn export_holds_everything(app: &TestApp) {
    let (grace_id, therapist) = app.therapist("dr.grace").await;
    let ada_id = app.register("Ada").await;
    let token = app.access_token("ada").await;
    app.link(&therapist, &token).await;
    let patch = json!({"tz": "Europe/Zurich"});
    assert_eq!(
        app.send(Method::PATCH, &token, "/v1/me", Some(&patch))
            .await
            .status(),
        200
    );
    let (tricky, columns) = tricky_game();
    let tricky_id: Uuid = app
        .submit_game(&token, tricky)
        .await
        .game_id
        .parse()
        .unwrap();
    let generated = app.submit(&token, 7).await;
    for id in [tricky_id, generated] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while app.game(&token, &id.to_string()).await["status"] == "queued" {
            assert!(tokio::time::Instant::now() < deadline, "{id} is analysed");
            tokio::time::sleep(POLL).await;
        }
    }
    // Another user's game is not in it.
    let bob = app.user("bob").await;
    let bobs = app.submit(&bob, 8).await;

    let files = export(app, &token, "Ada").await;
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    let mut expected = vec![
        "account.json".to_owned(),
        "games.json".to_owned(),
        format!("samples/{tricky_id}.csv"),
        format!("samples/{generated}.csv"),
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert!(!names.iter().any(|n| n.contains(&bobs.to_string())));

    let account: Value = serde_json::from_slice(&files["account.json"]).unwrap();
    assert_eq!(account["user_id"], ada_id.to_string());
    assert_eq!(account["username"], "Ada");
    assert_eq!(account["role"], "patient");
    assert_eq!(account["tz"], "Europe/Zurich");
    assert_eq!(
        account["therapists"][0]["therapist_id"],
        grace_id.to_string()
    );
    assert_eq!(account["therapists"][0]["username"], "dr.grace");
    assert!(account["exported_at"].is_string());

    // Every game as the API shows it, metrics included, newest first.
    let games: Value = serde_json::from_slice(&files["games.json"]).unwrap();
    let games = games.as_array().unwrap();
    assert_eq!(games.len(), 2);
    assert_eq!(games[0], app.game(&token, &generated.to_string()).await);
    assert_eq!(games[1], app.game(&token, &tricky_id.to_string()).await);
    assert!(games[0]["metrics"].is_object(), "{}", games[0]);

    // The samples: `t` and each channel, each value the number uploaded.
    let csv = String::from_utf8(files[&format!("samples/{tricky_id}.csv")].clone()).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t,accel_x,flex_index"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 100);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 3, "row {i}");
        let t: f64 = row[0].parse().unwrap();
        assert_eq!(t, i as f64 / 50.0, "t of row {i}");
        for (value, uploaded) in row[1..]
            .iter()
            .zip([columns["accel_x"][i], columns["flex_index"][i]])
        {
            let (got, want) = (
                value.parse::<f64>().unwrap(),
                uploaded.parse::<f64>().unwrap(),
            );
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "row {i}: {value} for {uploaded}"
            );
        }
    }
    // The shortest text of each number, as JSON answers write them.
    assert_eq!(rows[0][2], "0.1");
    assert_eq!(rows[2][2], "1e-7");
    let generated_csv =
        String::from_utf8(files[&format!("samples/{generated}.csv")].clone()).unwrap();
    let uploaded: Value = serde_json::from_str(&small_game(7)).unwrap();
    let channels = uploaded["channels"].as_object().unwrap();
    let header: Vec<&str> = generated_csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header[0], "t");
    assert_eq!(
        header[1..],
        channels.keys().map(String::as_str).collect::<Vec<_>>()
    );
    let samples = channels.values().next().unwrap().as_array().unwrap().len();
    assert_eq!(generated_csv.lines().count(), samples + 1);
}

#[tokio::test]
async fn a_user_without_games_and_a_therapist_get_a_valid_zip() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let files = export(&app, &token, "ada").await;
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["account.json", "games.json"]
    );
    let games: Value = serde_json::from_slice(&files["games.json"]).unwrap();
    assert_eq!(games, json!([]));
    let account: Value = serde_json::from_slice(&files["account.json"]).unwrap();
    assert_eq!(
        (account["tz"].as_str(), account["therapists"].clone()),
        (Some("UTC"), json!([]))
    );

    // A therapist's copy holds their account, none of their patients' data.
    let (grace_id, therapist) = app.therapist("dr.grace").await;
    app.link(&therapist, &token).await;
    let game = app.submit(&token, 1).await;
    let files = export(&app, &therapist, "dr.grace").await;
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["account.json", "games.json"]
    );
    let account: Value = serde_json::from_slice(&files["account.json"]).unwrap();
    assert_eq!(account["user_id"], grace_id.to_string());
    assert_eq!(account["role"], "therapist");
    let all = String::from_utf8(files.values().flatten().copied().collect()).unwrap();
    assert!(!all.contains(&game.to_string()));

    // No token, no copy.
    let r = app
        .client
        .get(app.url("/v1/me/export"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, None).await;
}

#[tokio::test]
async fn the_openapi_document_states_both_routes() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let delete = &doc["paths"]["/v1/me"]["delete"];
    for status in ["204", "401", "403", "422", "429"] {
        assert!(
            delete["responses"].get(status).is_some(),
            "DELETE /v1/me {status}"
        );
    }
    let body = &delete["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(body, "#/components/schemas/AccountDeletion");
    let password = &doc["components"]["schemas"]["AccountDeletion"]["properties"]["password"];
    assert_eq!(
        (password["minLength"].clone(), password["maxLength"].clone()),
        (json!(10), json!(256))
    );
    assert_eq!(
        doc["components"]["schemas"]["AccountDeletion"]["required"],
        json!(["password"])
    );

    let export = &doc["paths"]["/v1/me/export"]["get"]["responses"]["200"];
    let zip = &export["content"]["application/zip"]["schema"];
    let zip = match zip.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => zip,
    };
    assert_eq!(
        (zip["type"].as_str(), zip["format"].as_str()),
        (Some("string"), Some("binary")),
        "{zip}"
    );
    assert!(
        export["headers"].get("Content-Disposition").is_some(),
        "{export}"
    );
}
