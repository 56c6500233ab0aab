//! rusqlite errors as [`StoreError`]s.

use crate::{Cause, StoreError};
use rusqlite::{ffi, ErrorCode};
use std::fmt;
use std::sync::Arc;

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

/// `n` copies of `e`, one for each upload of a batch that `e` failed: the
/// same variant and text, the cause shared.
pub(super) fn each_of(e: StoreError, n: usize) -> Vec<StoreError> {
    let causes = |source: Option<Cause>| {
        let shared: Option<Arc<dyn std::error::Error + Send + Sync>> = source.map(Arc::from);
        (0..n).map(move |_| shared.clone().map(|s| Box::new(SharedCause(s)) as Cause))
    };
    match e {
        StoreError::Corrupt { what, source } => causes(source)
            .map(|source| StoreError::Corrupt {
                what: what.clone(),
                source,
            })
            .collect(),
        StoreError::Unavailable { what, source } => causes(source)
            .map(|source| StoreError::Unavailable {
                what: what.clone(),
                source,
            })
            .collect(),
        StoreError::Conflict(what) => (0..n).map(|_| StoreError::Conflict(what)).collect(),
        StoreError::NotFound => (0..n).map(|_| StoreError::NotFound).collect(),
        StoreError::UnknownCursor => (0..n).map(|_| StoreError::UnknownCursor).collect(),
        StoreError::TooLarge(what) => (0..n).map(|_| StoreError::TooLarge(what.clone())).collect(),
    }
}

/// One cause shared by the errors of every upload it failed.
#[derive(Debug)]
struct SharedCause(Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
