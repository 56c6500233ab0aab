//! A therapist's dashboard: the patient list, a patient's page, a game's
//! page, a revoked link, live updates.

use crate::harness::{with_browser, Page};
use crate::{days_ago, game_at};
use m2m_testkit::*;
use serde_json::Value;
use uuid::Uuid;

/// Uploads a game of `duration_s` played `days` ago and waits until it is
/// processed; its id.
async fn played(app: &TestApp, token: &str, duration_s: f64, seed: u64, days: i64) -> Uuid {
    let body = game_at(duration_s, seed, 100.0 + seed as f64, days_ago(days));
    let id: Uuid = app.submit_game(token, body).await.game_id.parse().unwrap();
    app.wait_for(token, id, "processed").await;
    id
}

/// The game ids of the rows of the games table, once it has `n`.
async fn game_rows(page: &Page, n: usize) -> Vec<String> {
    let v = page
        .wait_for(
            &format!("{n} rows in the games table"),
            &format!(
                "const ids = [...document.querySelectorAll('#games tr[data-game-id]')].map(r => r.dataset.gameId);
                 return ids.length === {n} && ids"
            ),
        )
        .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_therapist_logs_in_and_sees_a_linked_patient() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr.grace").await;
    let ada = app.user("ada").await;
    app.user("bob").await; // not linked
    app.link(&therapist, &ada).await;
    played(&app, &ada, 5.0, 1, 0).await;
    with_browser(|page| async move {
        page.log_in(&app.base, "dr.grace").await;
        let names = page
            .wait_for(
                "the patient list",
                "const rows = [...document.querySelectorAll('#patients tbody tr[data-patient-id] a')];
                 return rows.length && rows.map(a => a.textContent)",
            )
            .await;
        assert_eq!(names, serde_json::json!(["ada"]));
        // The refresh token is out of JavaScript's reach...
        assert_eq!(page.eval("return document.cookie").await, "");
        // ... yet a reload keeps the session, through the cookie.
        page.0.refresh().await.unwrap();
        page.wait_for(
            "the patient list after a reload",
            "return document.querySelector('#patients a')?.textContent === 'ada'",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_patient_shows_a_chart_with_the_right_number_of_points() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr.grace").await;
    let ada = app.user("ada").await;
    app.link(&therapist, &ada).await;
    for (seed, days) in [(1, 20), (2, 13), (3, 6), (4, 1)] {
        played(&app, &ada, 5.0, seed, days).await;
    }
    let patients = app.read(&therapist, "/v1/patients").await;
    let ada_id = patients["patients"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let progress = app
        .read(&therapist, &format!("/v1/patients/{ada_id}/progress"))
        .await;
    let series = progress["metrics"]["score"]["series"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(series, 4);
    with_browser(|page| async move {
        page.log_in(&app.base, "dr.grace").await;
        page.click(&format!("#patients a[href='#/patients/{ada_id}']")).await;
        assert_eq!(
            page.points(".chart[data-metric='score']").await,
            series as u64
        );
        page.wait_for(
            "the patient's name as the title",
            "return document.querySelector('main h1')?.textContent === 'ada'",
        )
        .await;
        // Every headline metric the API has, a chart.
        let metrics: Vec<String> = progress["metrics"].as_object().unwrap().keys().cloned().collect();
        let charts = page
            .eval("return [...document.querySelectorAll('.chart[data-metric]')].map(c => c.dataset.metric)")
            .await;
        let mut charts: Vec<String> = serde_json::from_value(charts).unwrap();
        charts.sort();
        let mut metrics = metrics;
        metrics.sort();
        assert_eq!(charts, metrics);
        // The calendar counts the four games, each on its day.
        let days = page
            .wait_for(
                "the adherence calendar",
                "const d = [...document.querySelectorAll('#calendar [data-games]')];
                 return d.length && d.filter(c => c.dataset.games !== '0').map(c => [c.dataset.date, +c.dataset.games])",
            )
            .await;
        let days: Vec<(String, u64)> = serde_json::from_value(days).unwrap();
        let expected: Vec<(String, u64)> = [20, 13, 6, 1]
            .iter()
            .map(|d| (days_ago(*d).date_naive().to_string(), 1))
            .collect();
        assert_eq!(days, expected);
        game_rows(&page, 4).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_page_plots_its_signals() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr.grace").await;
    let ada = app.user("ada").await;
    app.link(&therapist, &ada).await;
    // 30 s at 100 Hz: 3000 samples, downsampled to 1000 points.
    let game = played(&app, &ada, 30.0, 7, 0).await;
    let ada_id = app.read(&therapist, "/v1/patients").await["patients"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let samples = app
        .read(
            &therapist,
            &format!("/v1/patients/{ada_id}/games/{game}/samples?max_points=1000"),
        )
        .await;
    assert_eq!(samples["t"].as_array().unwrap().len(), 1000);
    with_browser(|page| async move {
        page.log_in(&app.base, "dr.grace").await;
        page.click(&format!("#patients a[href='#/patients/{ada_id}']")).await;
        page.click(&format!("#games tr[data-game-id='{game}'] a")).await;
        for group in ["flex", "force", "gyro"] {
            assert_eq!(
                page.points(&format!(".chart[data-group='{group}']")).await,
                1000,
                "{group}"
            );
        }
        // One line per channel of the group, each named in the legend.
        let legend = page
            .eval(
                "return [...document.querySelectorAll(\".chart[data-group='flex'] .u-legend .u-series .u-label\")].map(l => l.textContent)",
            )
            .await;
        assert_eq!(
            legend,
            serde_json::json!(["index", "middle", "pinky", "ring", "thumb"])
        );
        let duration = page
            .wait_for(
                "the game's metrics",
                "return [...document.querySelectorAll('#metrics div')].find(d => d.querySelector('dt').textContent === 'duration_s')?.querySelector('dd').textContent",
            )
            .await;
        assert_eq!(duration, "30");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_link_disappears() {
    let app = spawn_app().await;
    let (therapist_id, therapist) = app.therapist("dr.grace").await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.link(&therapist, &ada).await;
    app.link(&therapist, &bob).await;
    let patients = app.read(&therapist, "/v1/patients").await;
    let id_of = |name: &str| -> String {
        patients["patients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["username"] == name)
            .map(|p| p["patient_id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let ada_id = id_of("ada");
    with_browser(|page| async move {
        page.log_in(&app.base, "dr.grace").await;
        page.wait_for(
            "both patients",
            "return document.querySelectorAll('#patients tr[data-patient-id]').length === 2",
        )
        .await;
        let r = app
            .send(
                reqwest::Method::DELETE,
                &ada,
                &format!("/v1/therapists/{therapist_id}"),
                None,
            )
            .await;
        assert_eq!(r.status(), 204);
        // Ada's page, opened from the list still on screen, is gone...
        page.click(&format!("#patients a[href='#/patients/{ada_id}']")).await;
        page.wait_for(
            "the patient is not found",
            "return document.querySelector('main .error')?.textContent.includes('Not found')",
        )
        .await;
        // ... and so is she from the list.
        page.click("a.back").await;
        let names: Value = page
            .wait_for(
                "the list without ada",
                "const rows = [...document.querySelectorAll('#patients tr[data-patient-id] a')].map(a => a.textContent);
                 return rows.length === 1 && rows",
            )
            .await;
        assert_eq!(names, serde_json::json!(["bob"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_processed_while_the_page_is_open_appears_without_a_reload() {
    let app = spawn_app().await;
    let (_, therapist) = app.therapist("dr.grace").await;
    let ada = app.user("ada").await;
    app.link(&therapist, &ada).await;
    let first = played(&app, &ada, 5.0, 1, 2).await;
    let ada_id = app.read(&therapist, "/v1/patients").await["patients"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_owned();
    with_browser(|page| async move {
        page.log_in(&app.base, "dr.grace").await;
        page.click(&format!("#patients a[href='#/patients/{ada_id}']")).await;
        assert_eq!(game_rows(&page, 1).await, vec![first.to_string()]);
        assert_eq!(page.points(".chart[data-metric='score']").await, 1);
        page.wait_for(
            "the live stream is open",
            "return document.body.dataset.live === 'on'",
        )
        .await;
        // A mark that a reload would erase.
        page.eval("window.stillThisPage = true; return true").await;

        let second = played(&app, &ada, 5.0, 2, 0).await;
        let rows = game_rows(&page, 2).await;
        assert_eq!(rows, vec![second.to_string(), first.to_string()]);
        page.wait_for(
            "the score chart has both games",
            "return document.querySelector(\".chart[data-metric='score']\")?.dataset.points === '2'",
        )
        .await;
        assert_eq!(page.eval("return window.stillThisPage === true").await, true);
    })
    .await;
}
