//! `GameSubmission::from_json` on arbitrary bytes: it never panics; what it
//! accepts keeps every rule of the contract; what it refuses is either
//! malformed JSON with a message, or invalid JSON with at least one error,
//! each naming a field. And its column fast path changes nothing: the
//! result is the serde path's, the same submission bit for bit or the same
//! errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_domain::{
    parsers, GameSubmission, SubmissionError, MAX_CHANNELS, MAX_SAMPLES, MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
};

/// A result with the numbers as bits, so that -0 and 0 differ.
fn outcome(result: &Result<GameSubmission, SubmissionError>) -> String {
    match result {
        Ok(game) => {
            let columns: Vec<(&str, Vec<u64>)> = game
                .channels()
                .iter()
                .map(|(name, col)| (name, col.iter().map(|v| v.to_bits()).collect()))
                .collect();
            format!(
                "{:?} {} {:?} {:?} {} {columns:?}",
                game.game(),
                game.score().to_bits(),
                game.started_at(),
                game.device(),
                game.sample_rate_hz().to_bits()
            )
        }
        Err(e) => format!("{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let result = GameSubmission::from_json(data);
    assert_eq!(
        outcome(&result),
        outcome(&parsers::serde(data)),
        "the fast path and the serde path differ"
    );
    match result {
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
        }
        Err(SubmissionError::Malformed(message)) => {
            assert!(!message.is_empty(), "malformed JSON without a message");
        }
        Err(SubmissionError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "invalid without any field error");
            for e in &errors {
                // A path that starts with '.' is serde's name for "the
                // whole document": it names no field.
                assert!(
                    !e.field.is_empty() && !e.field.starts_with('.'),
                    "field error without a field: {e:?}"
                );
                assert!(
                    !e.message.is_empty(),
                    "field error without a message: {e:?}"
                );
            }
        }
    }
});
