//! Domain types of m2m: what a game submission is, how it is validated, and
//! the errors that name the field at fault.
//!
//! Input becomes these types once, where it arrives (HTTP body, CLI file,
//! queue message), and nothing downstream checks it again.

mod account;
mod column;
mod error;
mod event;
mod game;
mod samples;
mod submission;
mod submission_cbor;

pub use account::{Password, Role, Username, PASSWORD_CHARS, USERNAME_CHARS};
pub use column::{decode_column, encode_column, ColumnError};
pub use event::{
    EventGame, ProcessingEvent, ReconciliationEvent, PROCESSING_EVENT_VERSION,
    RECONCILIATION_EVENT_VERSION,
};
pub use game::{Change, Game, GameStatus};
pub use samples::GameSamples;

pub use error::{FieldError, SubmissionError};
pub use submission::{
    Channels, Device, GameSubmission, Hand, EARLIEST_STARTED_AT, LATEST_STARTED_AT, MAX_CHANNELS,
    MAX_SAMPLES, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ,
};
pub use submission_cbor::{TAG_FLOAT32_BE, TAG_FLOAT32_LE, TAG_FLOAT64_BE, TAG_FLOAT64_LE};
