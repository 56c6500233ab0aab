//! Driver errors as [`StoreError`]s.

use crate::StoreError;
use mongodb::error::{ErrorKind, WriteFailure};

/// MongoDB's error code for a broken unique index.
const DUPLICATE_KEY: i32 = 11000;
/// Maps a driver error: a broken unique index → Conflict, a stored document
/// that does not read back → Corrupt, anything else (no server, network,
/// authentication, timeouts…) → Unavailable.
pub(super) fn db(e: mongodb::error::Error) -> StoreError {
    if is_duplicate_key(&e) {
        return StoreError::Conflict("duplicate key");
    }
    match e.kind.as_ref() {
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt {
            what: "stored document".to_owned(),
            source: Some(Box::new(e)),
        },
        _ => StoreError::unavailable("MongoDB", e),
    }
}

/// Like [`db`], naming the uniqueness rule an insert broke.
pub(super) fn db_insert(e: mongodb::error::Error, what: &'static str) -> StoreError {
    if is_duplicate_key(&e) {
        StoreError::Conflict(what)
    } else {
        db(e)
    }
}

pub(super) fn unavailable(context: &str, e: mongodb::error::Error) -> StoreError {
    StoreError::unavailable(context, e)
}

pub(super) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// The message of a duplicate-key error (it names the index).
pub(super) fn duplicate_key_message(e: &mongodb::error::Error) -> &str {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => &w.message,
        ErrorKind::Command(c) => &c.message,
        _ => "",
    }
}
