//! `GameSubmission::from_json` on arbitrary bytes: it never panics; what it
//! accepts keeps every rule of the contract; what it refuses is either
//! malformed JSON with a message, or invalid JSON with at least one error,
//! each naming a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_domain::{
    GameSubmission, SubmissionError, MAX_CHANNELS, MAX_SAMPLES, MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
};

fuzz_target!(|data: &[u8]| {
    match GameSubmission::from_json(data) {
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
