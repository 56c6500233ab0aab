//! The stored form of a game's columns, as the stores keep them: lossless,
//! so that a game analysed after a round trip through the store gives the
//! metrics of the uploaded game, bit for bit, and compact.

use std::collections::BTreeMap;

use m2m_domain::{decode_column, encode_column, Channels, GameSamples, GameSubmission};
use m2m_synth::GameSpec;

fn stored_and_read_back(game: &GameSubmission) -> GameSamples {
    let columns: BTreeMap<String, Vec<f64>> = game
        .channels()
        .iter()
        .map(|(name, col)| {
            let back = decode_column(&encode_column(col)).expect("a stored column decodes");
            (name.to_owned(), back)
        })
        .collect();
    GameSamples {
        sample_rate_hz: game.sample_rate_hz(),
        score: game.score(),
        channels: Channels::from_stored(columns).expect("the columns of a valid game"),
    }
}

fn games() -> Vec<GameSubmission> {
    let short = GameSpec {
        duration_s: 20.0,
        ..GameSpec::standard()
    };
    [
        short.clone(),
        GameSpec {
            accel: false,
            seed: 2,
            ..short.clone()
        },
        GameSpec {
            tremor_hz: None,
            noise: 0.01,
            seed: 3,
            ..short
        },
    ]
    .iter()
    .map(|spec| {
        GameSubmission::from_json(spec.submission_json("pinch-garden", 812.5).as_bytes())
            .expect("a valid game")
    })
    .collect()
}

#[test]
fn a_stored_game_is_analysed_to_the_metrics_of_the_uploaded_one() {
    for game in games() {
        let stored = stored_and_read_back(&game);
        assert_eq!(stored.channels, *game.channels());
        let direct = game.analyze();
        let after_store = stored.analyze();
        assert_eq!(after_store, direct);
        // Bit for bit, as the JSON of the metrics shows every digit.
        assert_eq!(
            serde_json::to_string(&after_store).unwrap(),
            serde_json::to_string(&direct).unwrap()
        );
    }
}

#[test]
fn a_glove_game_takes_under_half_the_bytes_of_f32() {
    for game in games() {
        let samples: usize = game.channels().iter().map(|(_, c)| c.len()).sum();
        let stored: usize = game
            .channels()
            .iter()
            .map(|(_, c)| encode_column(c).len())
            .sum();
        assert!(
            stored * 2 < 4 * samples,
            "{stored} bytes for {samples} samples"
        );
    }
}
