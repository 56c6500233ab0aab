//! Generated uploads.

use m2m_synth::GameSpec;

/// A 5-second generated game as JSON text (the API tests' upload); the
/// seed makes each one different.
pub fn small_game(seed: u64) -> String {
    game(5.0, seed)
}

/// A 10 s game at 100 Hz (16 channels, about 130 kB of JSON), the upload
/// of the tests of the binary, which check `metrics.duration_s == 10`.
pub fn ten_second_game(seed: u64) -> String {
    game(10.0, seed)
}

fn game(duration_s: f64, seed: u64) -> String {
    GameSpec {
        duration_s,
        seed,
        ..GameSpec::standard()
    }
    .submission_json("pinch-garden", 100.0 + seed as f64)
}

/// [`small_game`]`(seed)` played at `started_at` (RFC 3339).
pub fn small_game_at(seed: u64, started_at: &str) -> String {
    let mut game: serde_json::Value =
        serde_json::from_str(&small_game(seed)).expect("a generated game is JSON");
    game["started_at"] = started_at.into();
    game.to_string()
}
