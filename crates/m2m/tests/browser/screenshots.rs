//! Screenshots of each page with realistic data, for the README and
//! docs/screenshots/. Ignored by default: `scripts/screenshots.sh` runs it
//! with `M2M_SCREENSHOTS` naming the directory to write into.

use crate::harness::{with_browser, Page};
use crate::{days_ago, game_at};
use m2m_synth::GameSpec;
use m2m_testkit::*;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// A patient's history: (days ago, cycles per minute, tremor, score) per
/// game, so that the charts show a course rather than noise.
fn history(
    weeks: i64,
    per_week: &[i64],
    start_cycles: f64,
    gain: f64,
    seed: u64,
) -> Vec<(i64, String)> {
    let mut games = Vec::new();
    let mut n = 0u64;
    for week in (0..weeks).rev() {
        for day in per_week.iter().rev() {
            let days = week * 7 + day;
            let progress = (weeks * 7 - days) as f64 / (weeks * 7) as f64;
            let spec = GameSpec {
                // Sessions of 3 to 10 minutes at 50 Hz: long enough to fill
                // the calendar, small enough to upload quickly.
                duration_s: 180.0 + 60.0 * ((n * 5) % 8) as f64,
                sample_rate_hz: 50.0,
                cycles_per_minute: start_cycles + gain * progress * 10.0,
                // Fewer and fewer games with a tremor.
                tremor_hz: (((n * 7) % 10) as f64 / 10.0 >= progress).then_some(6.0),
                noise: 0.6 - 0.4 * progress,
                seed: seed * 1000 + n,
                ..GameSpec::standard()
            };
            let score =
                (400.0 + gain * 500.0 * progress + 8.0 * ((n * 7919 % 13) as f64 - 6.0)).round();
            let mut body: serde_json::Value =
                serde_json::from_str(&spec.submission_json("pinch-garden", score)).unwrap();
            let at = days_ago(days) - chrono::Duration::minutes(((n * 37) % 300) as i64);
            body["started_at"] = at.to_rfc3339().into();
            games.push((days, body.to_string()));
            n += 1;
        }
    }
    games
}

async fn upload(app: &TestApp, token: &str, games: Vec<(i64, String)>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for (_, body) in games {
        ids.push(app.submit_game(token, body).await.game_id.parse().unwrap());
    }
    for id in &ids {
        app.wait_for(token, *id, "processed").await;
    }
    ids
}

async fn save(page: &Page, dir: &Path, name: &str) {
    // Charts are drawn; the page is idle.
    page.wait_for(
        "the page is drawn",
        "return !document.querySelector('main[aria-busy]') && document.fonts.status === 'loaded'",
    )
    .await;
    let png = page.screenshot().await;
    std::fs::write(dir.join(name), png).expect("the screenshot is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/: run by scripts/screenshots.sh"]
async fn screenshots_of_every_page() {
    let dir =
        PathBuf::from(std::env::var("M2M_SCREENSHOTS").expect("M2M_SCREENSHOTS names a directory"));
    std::fs::create_dir_all(&dir).unwrap();
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr.grace").await;
    let patients = [
        ("ada.lovelace", 8, &[0, 2, 4][..], 16.0, 1.0),
        ("ben.okafor", 6, &[1, 4][..], 20.0, 0.6),
        ("carla.mendes", 5, &[0, 3][..], 18.0, -0.4),
    ];
    for (i, (name, weeks, per_week, cycles, gain)) in patients.into_iter().enumerate() {
        let token = app.user(name).await;
        app.link(&therapist, &token).await;
        // Carla stopped playing four days ago.
        let games: Vec<_> = history(weeks, per_week, cycles, gain, i as u64 + 1)
            .into_iter()
            .filter(|(days, _)| i != 2 || *days >= 4)
            .collect();
        upload(&app, &token, games).await;
    }
    // A patient linked this week, with one short game: its signals can be
    // read on the game page.
    let token = app.user("dmitri.sokolov").await;
    app.link(&therapist, &token).await;
    let game = upload(
        &app,
        &token,
        vec![(0, game_at(40.0, 99, 380.0, days_ago(0)))],
    )
    .await[0];
    let id_of = |patients: &serde_json::Value, name: &str| {
        patients["patients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["username"] == name)
            .unwrap()["patient_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let patients = app.read(&therapist, "/v1/patients").await;
    let ada_id = id_of(&patients, "ada.lovelace");
    let dmitri_id = id_of(&patients, "dmitri.sokolov");

    with_browser(|page| async move {
        page.goto(&format!("{}/app/", app.base)).await;
        page.wait_for("the login form", "return document.getElementById('login')")
            .await;
        page.fill("#username", "dr.grace").await;
        save(&page, &dir, "login.png").await;
        page.log_in(&app.base, "dr.grace").await;
        page.wait_for(
            "the patients",
            "return document.querySelectorAll('#patients tr[data-patient-id]').length === 4",
        )
        .await;
        page.wait_for("live", "return document.body.dataset.live === 'on'")
            .await;
        save(&page, &dir, "patients.png").await;

        page.click(&format!("#patients a[href='#/patients/{ada_id}']"))
            .await;
        page.points(".chart[data-metric='score']").await;
        page.wait_for("the calendar", "return document.getElementById('calendar')")
            .await;
        save(&page, &dir, "patient.png").await;
        page.eval("document.getElementById('adherence-h').scrollIntoView(); return true")
            .await;
        save(&page, &dir, "patient-adherence.png").await;

        page.goto(&format!(
            "{}/app/#/patients/{dmitri_id}/games/{game}",
            app.base
        ))
        .await;
        page.points(".chart[data-group='gyro']").await;
        save(&page, &dir, "game.png").await;

        page.click("#logout").await;
        page.log_in(&app.base, "ada.lovelace").await;
        page.points(".chart[data-metric='score']").await;
        save(&page, &dir, "own.png").await;
    })
    .await;
}
