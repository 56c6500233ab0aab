//! `GameSubmission::from_cbor` on arbitrary bytes: it never panics; what it
//! accepts keeps every rule of the contract and is the same game when
//! written as JSON and read back by `from_json` (the two readers agree on
//! what is valid; numbers to 14 significant digits); what it refuses is
//! either malformed CBOR with a message, or invalid CBOR with at least one
//! error, each naming a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_domain::{
    GameSubmission, SubmissionError, MAX_CHANNELS, MAX_SAMPLES, MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
};

/// Equal to about 14 significant digits.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-14 * a.abs().max(b.abs())
}

fuzz_target!(|data: &[u8]| {
    match GameSubmission::from_cbor(data) {
        Ok(game) => {
            let name_chars = game.game().chars().count();
            assert!(
                (1..=64).contains(&name_chars),
                "game name of {name_chars} chars"
            );
            assert!(game.score().is_finite());
            let fs = game.sample_rate_hz();
            assert!(
                (MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&fs),
                "rate {fs}"
            );
            let channels = game.channels();
            assert!((1..=MAX_CHANNELS).contains(&channels.len()));
            let samples = channels.samples();
            assert!((1..=MAX_SAMPLES).contains(&samples));
            for (name, col) in channels.iter() {
                assert!((1..=64).contains(&name.len()), "channel name {name:?}");
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "channel name {name:?}"
                );
                assert_eq!(col.len(), samples, "column {name}");
                assert!(col.iter().all(|v| v.is_finite()), "column {name}");
            }
            // serde_json writes every f64 exactly but, without its
            // `float_roundtrip` feature, may read one back a few units in
            // the last place away (1.8367099231598242e-40 as
            // ...238e-40): numbers are compared to that precision.
            let json = serde_json::to_vec(&game).expect("a valid game serialises");
            let again = GameSubmission::from_json(&json).expect("from_json disagrees");
            assert_eq!(again.game(), game.game());
            assert_eq!(again.started_at(), game.started_at());
            assert_eq!(again.device(), game.device());
            assert!(close(again.score(), game.score()));
            assert!(close(again.sample_rate_hz(), game.sample_rate_hz()));
            for ((name, a), (name_b, b)) in again.channels().iter().zip(channels.iter()) {
                assert_eq!(name, name_b);
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    assert!(close(*x, *y), "column {name}: {y:e} read back as {x:e}");
                }
            }
        }
        Err(SubmissionError::Malformed(message)) => {
            assert!(!message.is_empty(), "malformed CBOR without a message");
        }
        Err(SubmissionError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "invalid without any field error");
            for e in &errors {
                assert!(!e.field.is_empty(), "field error without a field: {e:?}");
                assert!(
                    !e.message.is_empty(),
                    "field error without a message: {e:?}"
                );
            }
        }
    }
});
