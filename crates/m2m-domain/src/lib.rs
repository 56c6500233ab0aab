//! Domain types of m2m: what a game submission is, how it is validated, and
//! the errors that name the field at fault.
//!
//! Input becomes these types once, where it arrives (HTTP body, CLI file,
//! queue message), and nothing downstream checks it again.

mod account;
mod column;
mod error;
mod event;
mod fast_json;
mod game;
mod samples;
mod submission;
mod submission_cbor;

pub use account::{Password, Role, Username, PASSWORD_CHARS, USERNAME_CHARS};
pub use column::{decode_column, encode_column, ColumnError};
pub use event::{
    reprocessing_event_id, EventGame, ProcessingEvent, ReconciliationEvent,
    PROCESSING_EVENT_VERSION, RECONCILIATION_EVENT_VERSION,
};
pub use game::{Change, ChangeType, Game, GameStatus};
pub use samples::GameSamples;

pub use error::{FieldError, SubmissionError};
pub use submission::{
    Channels, Device, GameSubmission, Hand, EARLIEST_STARTED_AT, LATEST_STARTED_AT, MAX_CHANNELS,
    MAX_SAMPLES, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ,
};
pub use submission_cbor::{TAG_FLOAT32_BE, TAG_FLOAT32_LE, TAG_FLOAT64_BE, TAG_FLOAT64_LE};

/// The parsers behind [`GameSubmission::from_json`], one by one, for the
/// benchmark, the tests and the fuzz target that compare them. Not part of
/// the crate's API.
#[doc(hidden)]
pub mod parsers {
    use crate::{GameSubmission, SubmissionError};

    /// The serde path alone (the whole text through serde_json's
    /// deserializer, the field at fault named on failure).
    pub fn serde(bytes: &[u8]) -> Result<GameSubmission, SubmissionError> {
        GameSubmission::from_json_serde(bytes)
    }

    /// The column fast path alone: `None` where it gives up and
    /// [`GameSubmission::from_json`] would take the serde path.
    pub fn fast(bytes: &[u8]) -> Option<Result<GameSubmission, SubmissionError>> {
        crate::fast_json::parse(bytes).map(|raw| raw.validate())
    }

    /// Parses and validates through another serde deserializer (the SIMD
    /// parsers of the benchmark).
    pub fn with_deserializer<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Result<GameSubmission, SubmissionError>, D::Error> {
        GameSubmission::from_deserializer(d)
    }

    /// The JSON number at the start of `text` as the fast path parses it,
    /// and its length; `None` where it gives up (no JSON number there, or
    /// one f64 cannot hold).
    pub fn number(text: &[u8]) -> Option<(f64, usize)> {
        crate::fast_json::number(text, 0)
    }
}
