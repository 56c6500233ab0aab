//! rusqlite errors as [`StoreError`]s.

use crate::StoreError;
use rusqlite::{ffi, ErrorCode};

/// Maps a rusqlite error: constraint → Conflict, unreadable values or a
/// damaged file → Corrupt, everything else (busy, I/O, full disk…) →
/// Unavailable.
pub(super) fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict("constraint violated"),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt {
                what: "the SQLite file".to_owned(),
                source: Some(Box::new(e)),
            },
            _ => StoreError::unavailable("SQLite", e),
        },
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => StoreError::Corrupt {
            what: "stored value".to_owned(),
            source: Some(Box::new(e)),
        },
        _ => StoreError::unavailable("SQLite", e),
    }
}

/// Like [`db`], naming the uniqueness rule an insert broke and turning a
/// missing parent row (foreign key) into NotFound.
pub(super) fn db_insert(e: rusqlite::Error, what: &'static str) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return StoreError::Conflict(what)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::NotFound,
            _ => {}
        }
    }
    db(e)
}
