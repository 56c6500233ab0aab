//! What a therapist reads of linked patients (`/v1/patients…`), the samples
//! routes, and the therapist's event stream (docs/therapists.md).

use chrono::{DateTime, TimeDelta, Utc};
use m2m_testkit::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A therapist, and a patient linked to them.
struct Linked {
    therapist: String,
    patient_id: uuid::Uuid,
    patient: String,
}

async fn linked(app: &TestApp, patient: &str) -> Linked {
    let (_, therapist) = app.therapist(&format!("dr-{patient}")).await;
    let patient_id = app.register(patient).await;
    let token = app.access_token(patient).await;
    app.link(&therapist, &token).await;
    Linked {
        therapist,
        patient_id,
        patient: token,
    }
}

#[tokio::test]
async fn a_therapist_reads_a_linked_patients_games_and_progress_as_the_patient_does() {
    let app = spawn_app().await;
    let l = linked(&app, "ada").await;
    let mut ids = Vec::new();
    for seed in 0..3 {
        let id = app.submit(&l.patient, seed).await;
        app.wait_for(&l.patient, id, "processed").await;
        ids.push(id);
    }
    let base = format!("/v1/patients/{}", l.patient_id);
    for (own, theirs) in [
        ("/v1/games".to_owned(), format!("{base}/games")),
        (
            "/v1/games?limit=2".to_owned(),
            format!("{base}/games?limit=2"),
        ),
        (
            format!("/v1/games/{}", ids[1]),
            format!("{base}/games/{}", ids[1]),
        ),
        ("/v1/progress".to_owned(), format!("{base}/progress")),
    ] {
        let expected = app.read(&l.patient, &own).await;
        assert_eq!(app.read(&l.therapist, &theirs).await, expected, "{theirs}");
    }
    let page = app
        .read(&l.therapist, &format!("{base}/games?limit=2"))
        .await;
    let next = page["next"].as_str().unwrap();
    let rest = app
        .read(&l.therapist, &format!("{base}/games?limit=2&before={next}"))
        .await;
    assert_eq!(rest["games"][0]["game_id"], ids[0].to_string());
    let r = app
        .get(&l.therapist, &format!("{base}/games?limit=0"))
        .await;
    assert_problem(r, 400, Some("limit")).await;
}

#[tokio::test]
async fn an_unlinked_patient_is_not_found_exactly_as_one_who_does_not_exist() {
    let app = spawn_app().await;
    let l = linked(&app, "ada").await;
    let game = app.submit(&l.patient, 1).await;
    let (_, stranger) = app.therapist("dr-other").await;
    let absent = uuid::Uuid::now_v7();
    for suffix in [
        "/games".to_owned(),
        format!("/games/{game}"),
        format!("/games/{game}/samples"),
        "/progress".to_owned(),
        "/adherence?from=2026-01-01&to=2026-01-31".to_owned(),
    ] {
        let unlinked = app
            .get(&stranger, &format!("/v1/patients/{}{suffix}", l.patient_id))
            .await;
        let unlinked = assert_problem(unlinked, 404, None).await;
        let missing = app
            .get(&stranger, &format!("/v1/patients/{absent}{suffix}"))
            .await;
        assert_eq!(
            assert_problem(missing, 404, None).await,
            unlinked,
            "{suffix}"
        );
        let malformed = app
            .get(&stranger, &format!("/v1/patients/not-an-id{suffix}"))
            .await;
        assert_eq!(assert_problem(malformed, 404, None).await, unlinked);
    }
    // A linked therapist asking for a game of someone else's.
    let other = app.user("bob").await;
    let bobs = app.submit(&other, 2).await;
    let r = app
        .get(
            &l.therapist,
            &format!("/v1/patients/{}/games/{bobs}", l.patient_id),
        )
        .await;
    assert_problem(r, 404, None).await;
    // Patients cannot use the therapist's routes at all.
    let r = app.get(&l.patient, "/v1/patients").await;
    assert_problem(r, 403, None).await;
    let r = app
        .get(
            &l.patient,
            &format!("/v1/patients/{}/progress", l.patient_id),
        )
        .await;
    assert_problem(r, 403, None).await;
}

#[tokio::test]
async fn the_patient_list_shows_the_last_week_and_the_flags() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr-kim").await;
    let ada_id = app.register("ada").await;
    let ada = app.access_token("ada").await;
    let bob_id = app.register("bob").await;
    let bob = app.access_token("bob").await;
    app.link(&therapist, &ada).await;
    let link = app.link(&therapist, &bob).await;

    // Ada played twice in the last week (5 s each) and once 10 days ago;
    // Bob never did.
    let now = Utc::now();
    let at = |ago: TimeDelta| (now - ago).to_rfc3339();
    for (seed, ago) in [
        (1, TimeDelta::days(10)),
        (2, TimeDelta::days(2)),
        (3, TimeDelta::hours(5)),
    ] {
        let body = small_game_at(seed, &at(ago));
        let id = app.submit_game(&ada, body).await.game_id;
        app.wait_for(&ada, id.parse().unwrap(), "processed").await;
    }
    let list = app.read(&therapist, "/v1/patients").await;
    let patients = list["patients"].as_array().unwrap();
    assert_eq!(patients.len(), 2);
    let (first, second) = (&patients[0], &patients[1]);
    assert_eq!(first["patient_id"], ada_id.to_string(), "most recent first");
    assert_eq!(first["username"], "ada");
    assert_eq!(first["games_7d"], 2);
    assert_eq!(first["active_seconds_7d"], 10.0);
    let last: DateTime<Utc> = first["last_game_at"].as_str().unwrap().parse().unwrap();
    assert!((last - (now - TimeDelta::hours(5))).num_seconds().abs() <= 1);
    assert!(
        !first["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("inactive")),
        "{first}"
    );

    assert_eq!(second["patient_id"], bob_id.to_string());
    assert_eq!(second["linked_at"], link["linked_at"]);
    assert!(second.get("last_game_at").is_none(), "{second}");
    assert_eq!(second["games_7d"], 0);
    assert_eq!(second["active_seconds_7d"], 0.0);
    assert_eq!(second["flags"], json!(["inactive"]));
}

#[tokio::test]
async fn adherence_counts_games_per_day_of_the_patients_time_zone() {
    let app = spawn_app().await;
    let l = linked(&app, "ada").await;
    let r = app
        .send(
            Method::PATCH,
            &l.patient,
            "/v1/me",
            Some(&json!({"tz": "Pacific/Auckland"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    // 2026-03-01 11:30 UTC is 2026-03-02 00:30 in Auckland (UTC+13);
    // 2026-03-02 10:00 UTC is 23:00 there, still the 2nd.
    for (seed, at) in [
        (1, "2026-03-01T11:30:00Z"),
        (2, "2026-03-02T10:00:00Z"),
        (3, "2026-03-04T01:00:00+13:00"),
        (4, "2026-02-27T10:59:59Z"),
    ] {
        app.submit_game(&l.patient, small_game_at(seed, at)).await;
    }
    let path = format!(
        "/v1/patients/{}/adherence?from=2026-02-28&to=2026-03-05",
        l.patient_id
    );
    let adherence = app.read(&l.therapist, &path).await;
    assert_eq!(adherence["tz"], "Pacific/Auckland");
    let days: Vec<(String, u64, f64)> = adherence["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["games"].as_u64().unwrap(),
                d["active_seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, f64)> = [
        ("2026-02-28", 0, 0.0),
        ("2026-03-01", 0, 0.0),
        ("2026-03-02", 2, 10.0),
        ("2026-03-03", 0, 0.0),
        ("2026-03-04", 1, 5.0),
        ("2026-03-05", 0, 0.0),
    ]
    .into_iter()
    .map(|(d, g, s)| (d.to_owned(), g, s))
    .collect();
    assert_eq!(days, expected);

    let base = format!("/v1/patients/{}/adherence", l.patient_id);
    let year = app
        .read(
            &l.therapist,
            &format!("{base}?from=2024-01-01&to=2024-12-31"),
        )
        .await;
    assert_eq!(year["days"].as_array().unwrap().len(), 366);
    for (query, field) in [
        ("", "from"),
        ("?from=2026-03-01", "to"),
        ("?from=2026-3-1&to=2026-03-05", "from"),
        ("?from=2026-03-01&to=tomorrow", "to"),
        ("?from=2026-03-05&to=2026-03-01", "to"),
        ("?from=2025-01-01&to=2026-01-01", "to"),
        ("?from=2026-03-01&from=2026-03-02&to=2026-03-05", "from"),
    ] {
        let r = app.get(&l.therapist, &format!("{base}{query}")).await;
        assert_problem(r, 400, Some(field)).await;
    }
}

fn column(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn samples_come_at_full_resolution_or_downsampled_with_their_peaks() {
    let app = spawn_app().await;
    let l = linked(&app, "ada").await;
    // A 5 s game at 100 Hz with a spike in one channel.
    let mut game: Value = serde_json::from_str(&small_game(7)).unwrap();
    let spike_at = 333;
    game["channels"]["force_index"][spike_at] = json!(99.5);
    let sent = game.clone();
    let id = app.submit_game(&l.patient, game.to_string()).await.game_id;

    let full = app
        .read(&l.patient, &format!("/v1/games/{id}/samples"))
        .await;
    assert_eq!(full["sample_rate_hz"], 100.0);
    let t = column(&full["t"]);
    assert_eq!(t.len(), 500);
    assert_eq!((t[0], t[1], t[499]), (0.0, 0.01, 4.99));
    let channels = full["channels"].as_object().unwrap();
    assert_eq!(channels.len(), sent["channels"].as_object().unwrap().len());
    for (name, values) in channels {
        assert_eq!(
            column(values),
            column(&sent["channels"][name]),
            "{name} as sent"
        );
    }
    let theirs = app
        .read(
            &l.therapist,
            &format!("/v1/patients/{}/games/{id}/samples", l.patient_id),
        )
        .await;
    assert_eq!(theirs, full);

    let small = app
        .read(&l.patient, &format!("/v1/games/{id}/samples?max_points=50"))
        .await;
    let t = column(&small["t"]);
    assert!(t.len() <= 50 && t.len() >= 40, "{} points", t.len());
    assert_eq!((t[0], *t.last().unwrap()), (0.0, 4.99));
    assert!(t.windows(2).all(|w| w[0] < w[1]));
    for (name, values) in small["channels"].as_object().unwrap() {
        let values = column(values);
        assert_eq!(values.len(), t.len(), "{name}");
        // Each kept point is the sample at its time.
        let sent = column(&sent["channels"][name]);
        for (ti, v) in t.iter().zip(&values) {
            assert_eq!(sent[(ti * 100.0).round() as usize], *v, "{name} at {ti}");
        }
    }
    assert!(
        t.contains(&(spike_at as f64 / 100.0)),
        "the spike at {spike_at} is kept"
    );
    let all = app
        .read(
            &l.patient,
            &format!("/v1/games/{id}/samples?max_points=10000"),
        )
        .await;
    assert_eq!(all, full, "a game shorter than max_points is sent whole");

    for bad in ["9", "10001", "-1", "fifty", ""] {
        let r = app
            .get(
                &l.patient,
                &format!("/v1/games/{id}/samples?max_points={bad}"),
            )
            .await;
        assert_problem(r, 400, Some("max_points")).await;
    }
    let other = app.user("bob").await;
    let r = app.get(&other, &format!("/v1/games/{id}/samples")).await;
    assert_problem(r, 404, None).await;
    let r = app.get(&l.patient, "/v1/games/nope/samples").await;
    assert_problem(r, 404, None).await;
}

/// The next event of a stream that is not a keep-alive.
async fn next_event(stream: &mut SseReader) -> Sse {
    stream
        .next_event(Duration::from_secs(30))
        .await
        .expect("an event within 30 s")
}

#[tokio::test]
async fn a_therapists_stream_carries_linked_patients_games_until_the_link_is_removed() {
    let app = spawn_app().await;
    let (therapist_id, therapist) = app.therapist("dr-kim").await;
    let ada_id = app.register("ada").await;
    let ada = app.access_token("ada").await;
    let bob_id = app.register("bob").await;
    let bob = app.access_token("bob").await;
    app.link(&therapist, &ada).await;
    let mut stream = app.events(&therapist, None).await;

    let game = app.submit(&ada, 1).await;
    let event = next_event(&mut stream).await;
    assert_eq!(event.event.as_deref(), Some("patient.game.processed"));
    assert_eq!(event.id, None);
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["patient_id"], ada_id.to_string());
    assert_eq!(data["game_id"], game.to_string());
    assert_eq!(data["status"], "processed");
    assert!(data["metrics"]["duration_s"].is_number());

    // Ada removes the link: her next game is not carried. Then Bob links
    // (the stream follows him from then on) and plays: his game is the
    // next event.
    let r = app
        .send(
            Method::DELETE,
            &ada,
            &format!("/v1/therapists/{therapist_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let hidden = app.submit(&ada, 2).await;
    app.wait_for(&ada, hidden, "processed").await;
    app.link(&therapist, &bob).await;
    let bobs = app.submit(&bob, 3).await;
    let event = next_event(&mut stream).await;
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["patient_id"], bob_id.to_string(), "{data}");
    assert_eq!(data["game_id"], bobs.to_string());

    // A patient's own stream is unchanged: their own events, with ids.
    let mut own = app.events(&bob, None).await;
    let again = app.submit(&bob, 4).await;
    let event = next_event(&mut own).await;
    assert_eq!(event.event.as_deref(), Some("game.processed"));
    assert!(event.id.is_some());
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["game_id"], again.to_string());
    assert!(data.get("patient_id").is_none());
}
