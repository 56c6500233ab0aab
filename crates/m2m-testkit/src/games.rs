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
