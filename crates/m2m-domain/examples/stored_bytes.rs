//! Prints the bytes a stored game takes: the sum of its encoded columns, for
//! the 16-channel standard game and the 13-channel game (no accelerometer),
//! both 60 s at 100 Hz with values of three decimals, as parsed from their
//! JSON text, and for the 16-channel game as parsed from CBOR float32 typed
//! arrays. "format 1" is what the f32 encoding stored (tag byte and
//! 4 bytes a sample); "format 2" is today's `encode_column`.
//!
//! `cargo run --release -p m2m-domain --example stored_bytes`

use m2m_domain::{decode_column, encode_column, GameSubmission};
use m2m_synth::{CborColumns, GameSpec};

fn main() {
    let games = [
        ("16-channel game", GameSpec::standard()),
        (
            "13-channel game",
            GameSpec {
                accel: false,
                ..GameSpec::standard()
            },
        ),
    ];
    println!("| game | samples | format 1 (f32) | format 2 | bytes a sample | of format 1 |");
    println!("|---|---|---|---|---|---|");
    let uploads = games.iter().map(|(name, spec)| {
        let json = spec.submission_json("pinch-garden", 1234.0);
        (
            name.to_string(),
            GameSubmission::from_json(json.as_bytes()).expect("a valid game"),
        )
    });
    let float32 = {
        let cbor =
            GameSpec::standard().submission_cbor("pinch-garden", 1234.0, CborColumns::Float32);
        let game = GameSubmission::from_cbor(&cbor).expect("a valid game");
        ("16-channel game, CBOR float32".to_string(), game)
    };
    for (name, game) in uploads.chain([float32]) {
        let (mut samples, mut before, mut after) = (0, 0, 0);
        for (channel, col) in game.channels().iter() {
            let encoded = encode_column(col);
            let decoded = decode_column(&encoded).expect("an encoded column decodes");
            assert!(
                decoded
                    .iter()
                    .zip(col)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{channel} did not round-trip"
            );
            samples += col.len();
            before += 1 + 4 * col.len();
            after += encoded.len();
        }
        println!(
            "| {name} | {samples} | {before} | {after} | {:.3} | {:.1} % |",
            after as f64 / samples as f64,
            100.0 * after as f64 / before as f64
        );
    }
}
