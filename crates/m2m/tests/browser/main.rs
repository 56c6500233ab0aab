//! Browser tests of the web dashboard: Debian's chromium, headless, driven
//! through chromedriver (fantoccini), against the whole app as m2m-testkit
//! spawns it, with data made through the API as a phone and a therapist
//! would. They wait for what the page shows, never for a fixed time.
//!
//! Without chromium and chromedriver they are skipped with a printed
//! reason, except in CI (`CI=true`), where they fail.

mod harness;
mod patient;
mod screenshots;
mod therapist;

use chrono::{DateTime, Duration, Utc};
use m2m_synth::GameSpec;

/// A game of `duration_s` seconds played at `started_at`, as a phone posts
/// it; `seed` varies its signals and `score`.
pub(crate) fn game_at(duration_s: f64, seed: u64, score: f64, started_at: DateTime<Utc>) -> String {
    let body = GameSpec {
        duration_s,
        seed,
        ..GameSpec::standard()
    }
    .submission_json("pinch-garden", score);
    let mut game: serde_json::Value =
        serde_json::from_str(&body).expect("a generated game is JSON");
    game["started_at"] = started_at.to_rfc3339().into();
    game.to_string()
}

/// `days` days before now.
pub(crate) fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}
