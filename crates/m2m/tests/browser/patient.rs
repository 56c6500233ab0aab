//! A patient's own dashboard.

use crate::harness::with_browser;
use crate::{days_ago, game_at};
use m2m_testkit::*;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_sees_only_their_own_data() {
    let app = spawn_app().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let mut ada_games = Vec::new();
    for (seed, days) in [(1, 3), (2, 1)] {
        let body = game_at(5.0, seed, 100.0 + seed as f64, days_ago(days));
        let id: Uuid = app.submit_game(&ada, body).await.game_id.parse().unwrap();
        app.wait_for(&ada, id, "processed").await;
        ada_games.push(id.to_string());
    }
    let bob_game: Uuid = app
        .submit_game(&bob, game_at(5.0, 3, 300.0, days_ago(0)))
        .await
        .game_id
        .parse()
        .unwrap();
    app.wait_for(&bob, bob_game, "processed").await;
    with_browser(|page| async move {
        page.log_in(&app.base, "ada").await;
        let rows = page
            .wait_for(
                "ada's two games",
                "const ids = [...document.querySelectorAll('#games tr[data-game-id]')].map(r => r.dataset.gameId);
                 return ids.length === 2 && ids",
            )
            .await;
        let mut rows: Vec<String> = serde_json::from_value(rows).unwrap();
        rows.sort();
        let mut expected = ada_games.clone();
        expected.sort();
        assert_eq!(rows, expected);
        assert_eq!(page.points(".chart[data-metric='score']").await, 2);
        // No patient list for a patient.
        assert_eq!(page.eval("return document.getElementById('patients') === null").await, true);

        // Her own game's page plots its signals (5 s at 100 Hz: 500 points).
        page.click(&format!("#games tr[data-game-id='{}'] a", ada_games[0])).await;
        assert_eq!(page.points(".chart[data-group='force']").await, 500);

        // Bob's game, by its address: not found.
        page.goto(&format!("{}/app/#/games/{bob_game}", app.base)).await;
        page.wait_for(
            "bob's game is not found",
            "return document.querySelector('main .error')?.textContent.includes('Not found')",
        )
        .await;
        assert_eq!(page.eval("return document.querySelectorAll('.chart').length").await, 0);
    })
    .await;
}
