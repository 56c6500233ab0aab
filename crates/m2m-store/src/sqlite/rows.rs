//! Reading rows: each column on its own, so that one value that cannot be
//! decoded is shown as its fallback and spoils neither its row nor the
//! others (crate documentation, "Stored data that cannot be read").

use super::error::db;
use super::feed::encode_cursor;
use crate::format::{corrupt, unreadable, Field, StoredChange, StoredGame};
use crate::Result;
use m2m_analysis::Metrics;
use m2m_domain::{Change, Device, Game};
use rusqlite::types::ValueRef;
use rusqlite::Row;
use uuid::Uuid;

/// The columns of `games` that make a [`Game`], in [`game_from_row`]'s order.
pub(super) const GAME_FIELDS: &str =
    "game_id, status, game, score, started_at, submitted_at, processed_at, \
     device, sample_rate_hz, samples, channels, metrics, error, algorithm_version";

pub(super) fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize) -> Result<T> {
    row.get(i).map_err(db)
}

pub(super) fn get_uuid(row: &Row<'_>, i: usize) -> Result<Uuid> {
    let s: String = get(row, i)?;
    Uuid::parse_str(&s).map_err(|e| corrupt("stored id", e))
}

/// A column as text, however it is stored: `Ok(None)` for NULL; bytes that
/// are not UTF-8 read with U+FFFD in their place.
pub(super) fn text(row: &Row<'_>, i: usize) -> Result<Field<String>> {
    Ok(Ok(match row.get_ref(i).map_err(db)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
    }))
}

/// A JSON column, decoded.
pub(super) fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, i: usize) -> Result<Field<T>> {
    Ok(text(row, i)?.and_then(|s| {
        s.map(|s| serde_json::from_str(&s).map_err(|e| format!("stored JSON: {e}")))
            .transpose()
    }))
}

/// A number column.
pub(super) fn real(row: &Row<'_>, i: usize) -> Result<Field<f64>> {
    Ok(match row.get_ref(i).map_err(db)? {
        ValueRef::Null => Ok(None),
        ValueRef::Real(x) => Ok(Some(x)),
        ValueRef::Integer(n) => Ok(Some(n as f64)),
        other => Err(format!("not a number: {:?}", other.data_type())),
    })
}

/// An integer column.
pub(super) fn integer(row: &Row<'_>, i: usize) -> Result<Field<i64>> {
    Ok(match row.get_ref(i).map_err(db)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        other => Err(format!("not an integer: {:?}", other.data_type())),
    })
}

/// The id in a column, or `None` (logged) when it cannot be read: a row
/// without a readable id cannot be shown or addressed, so it is skipped.
pub(super) fn row_id(row: &Row<'_>, i: usize, what: &str) -> Result<Option<Uuid>> {
    let raw = text(row, i)?;
    match raw
        .as_ref()
        .ok()
        .and_then(Option::as_deref)
        .map(Uuid::parse_str)
    {
        Some(Ok(u)) => Ok(Some(u)),
        _ => {
            unreadable(&format!("{what} {raw:?}"), "id", "not a UUID", "skipped");
            Ok(None)
        }
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| corrupt("unserialisable value", e))
}

pub(super) fn to_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The opaque cursor of a change: its `seq` as 16 lower-case hex digits, so
/// A [`Game`] from a row selected with [`GAME_FIELDS`], rendered by the
/// rule of [`StoredGame`]; `None` (logged) if its id cannot be read.
pub(super) fn game_from_row(row: &Row<'_>, with_metrics: bool) -> Result<Option<Game>> {
    let Some(game_id) = row_id(row, 0, "game")? else {
        return Ok(None);
    };
    Ok(Some(
        StoredGame {
            game_id,
            status: text(row, 1)?,
            game: text(row, 2)?,
            score: real(row, 3)?,
            started_at: text(row, 4)?,
            submitted_at: text(row, 5)?,
            processed_at: text(row, 6)?,
            device: json::<Device>(row, 7)?,
            sample_rate_hz: real(row, 8)?,
            samples: integer(row, 9)?,
            channels: json(row, 10)?,
            metrics: if with_metrics {
                json::<Metrics>(row, 11)?
            } else {
                Ok(None)
            },
            error: text(row, 12)?,
            algorithm_version: integer(row, 13)?,
        }
        .render(with_metrics),
    ))
}

/// The columns of `changes` that make a [`Change`], in [`change_from_row`]'s
/// order.
pub(super) const CHANGE_FIELDS: &str =
    "seq, game_id, status, processed_at, metrics, algorithm_version, reprocessed";

/// A [`Change`] from a row selected with [`CHANGE_FIELDS`],
/// rendered by the rule of [`StoredChange`]; `None` (logged) if its game id
/// cannot be read.
pub(super) fn change_from_row(row: &Row<'_>) -> Result<Option<Change>> {
    let cursor = encode_cursor(get(row, 0)?);
    let Some(game_id) = row_id(row, 1, &format!("change {cursor} of game"))? else {
        return Ok(None);
    };
    Ok(Some(
        StoredChange {
            cursor,
            game_id,
            status: text(row, 2)?,
            processed_at: text(row, 3)?,
            metrics: json(row, 4)?,
            algorithm_version: integer(row, 5)?,
            reprocessed: integer(row, 6)?.map(|v| v.map(|n| n != 0)),
        }
        .render(),
    ))
}

/// An SQL condition that holds when `column` is a time exactly as
/// [`ts`](crate::format::ts) writes it (fixed width, a real date and time),
/// whose text order is therefore its time order. A range query takes such
/// rows by their text and every other row whatever it holds, and reads
/// them all with their fallbacks (`format::text_range`). It may call a few
/// well-formed texts irregular (a second of 59.9995 or more, which SQLite
/// rounds up), never the reverse. (SQLite's own check of a date and time
/// finds days past the month's end, by their round trip, but lets hour 24
/// through.)
pub(super) fn well_formed_time(column: &str) -> String {
    format!(
        "({column} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T\
         [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z' \
         AND substr({column}, 12, 2) < '24' \
         AND strftime('%Y-%m-%dT%H:%M:%S', {column}) IS substr({column}, 1, 19))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{parse_time, ts};

    fn well_formed(conn: &rusqlite::Connection, text: &str) -> bool {
        conn.query_row(
            &format!("SELECT {} FROM (SELECT ?1 AS t)", well_formed_time("t")),
            [text],
            |row| row.get(0),
        )
        .unwrap()
    }

    #[test]
    fn only_times_as_stored_are_well_formed() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for text in [
            "2026-11-27T10:00:00.123456Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999000Z",
            "2028-02-29T12:00:00.000000Z",
        ] {
            assert_eq!(ts(parse_time(text).unwrap()), text);
            assert!(well_formed(&conn, text), "{text}");
        }
        for text in [
            "-0001-12-31T23:00:00.000000Z",
            "+10000-01-01T00:00:59.000000Z",
            "2026-11-27T10:00:00Z",
            "2026-11-27T10:00:00.123456+01:00",
            "2026-11-27 10:00:00.123456Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-02-30T00:00:00.000000Z",
            "2026-11-31T00:00:00.000000Z",
            "2026-11-27T24:00:00.000000Z",
            "2026-11-27T10:60:00.000000Z",
            "2026-11-27T10:00:60.000000Z",
            "yesterday",
            "",
        ] {
            assert!(!well_formed(&conn, text), "{text}");
        }
    }
}
