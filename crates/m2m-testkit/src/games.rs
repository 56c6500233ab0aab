//! Generated uploads.

use m2m_synth::GameSpec;
use minicbor::Encoder;
use serde_json::Value;

/// A 5-second generated game as JSON text (the API tests' upload); the
/// seed makes each one different.
pub fn small_game(seed: u64) -> String {
    game(5.0, seed)
}

/// A 10 s game at 100 Hz (16 channels, about 130 kB of JSON), the upload
/// of the tests of the binary, which check `metrics.duration_s == 10`.
pub fn ten_second_game(seed: u64) -> String {
    game(10.0, seed)
}

fn game(duration_s: f64, seed: u64) -> String {
    GameSpec {
        duration_s,
        seed,
        ..GameSpec::standard()
    }
    .submission_json("pinch-garden", 100.0 + seed as f64)
}

/// [`small_game`]`(seed)` played at `started_at` (RFC 3339).
pub fn small_game_at(seed: u64, started_at: &str) -> String {
    let mut game: serde_json::Value =
        serde_json::from_str(&small_game(seed)).expect("a generated game is JSON");
    game["started_at"] = started_at.into();
    game.to_string()
}

/// How [`json_to_cbor`] writes the columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CborColumns {
    /// Arrays of float64 values: exactly the numbers of the JSON text.
    Float64Arrays,
    /// RFC 8746 typed arrays of little-endian float32 (tag 85).
    Float32Typed,
}

/// A JSON game as the same document in CBOR, as a phone would send it:
/// integers as integers, other numbers as float64, and the `channels`
/// columns as `columns` says. Any JSON converts, valid game or not.
pub fn json_to_cbor(json: &str, columns: CborColumns) -> Vec<u8> {
    let value: Value = serde_json::from_str(json).expect("JSON text");
    let mut e = minicbor::Encoder::new(Vec::new());
    match &value {
        Value::Object(fields) => {
            e.map(fields.len() as u64).expect(CANNOT_FAIL);
            for (k, v) in fields {
                e.str(k).expect(CANNOT_FAIL);
                match v {
                    Value::Object(channels) if k == "channels" => {
                        e.map(channels.len() as u64).expect(CANNOT_FAIL);
                        for (name, column) in channels {
                            e.str(name).expect(CANNOT_FAIL);
                            write_column(&mut e, column, columns);
                        }
                    }
                    _ => write_value(&mut e, v),
                }
            }
        }
        _ => write_value(&mut e, &value),
    }
    e.into_writer()
}

const CANNOT_FAIL: &str = "writing to a Vec cannot fail";

/// A column of numbers as `columns` says; anything else as it is.
fn write_column(e: &mut Encoder<Vec<u8>>, v: &Value, columns: CborColumns) {
    let numbers: Option<Vec<f64>> = v
        .as_array()
        .and_then(|items| items.iter().map(Value::as_f64).collect());
    match (numbers, columns) {
        (Some(numbers), CborColumns::Float32Typed) => {
            let bytes: Vec<u8> = numbers
                .iter()
                .flat_map(|v| (*v as f32).to_le_bytes())
                .collect();
            e.tag(minicbor::data::Tag::new(85))
                .and_then(|e| e.bytes(&bytes))
                .expect(CANNOT_FAIL);
        }
        (Some(numbers), CborColumns::Float64Arrays) => {
            e.array(numbers.len() as u64).expect(CANNOT_FAIL);
            for v in numbers {
                e.f64(v).expect(CANNOT_FAIL);
            }
        }
        (None, _) => write_value(e, v),
    }
}

fn write_value(e: &mut Encoder<Vec<u8>>, v: &Value) {
    match v {
        Value::Null => {
            e.null().expect(CANNOT_FAIL);
        }
        Value::Bool(b) => {
            e.bool(*b).expect(CANNOT_FAIL);
        }
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => {
                e.u64(u).expect(CANNOT_FAIL);
            }
            (_, Some(i), _) => {
                e.i64(i).expect(CANNOT_FAIL);
            }
            (_, _, f) => {
                e.f64(f.expect("a JSON number")).expect(CANNOT_FAIL);
            }
        },
        Value::String(s) => {
            e.str(s).expect(CANNOT_FAIL);
        }
        Value::Array(items) => {
            e.array(items.len() as u64).expect(CANNOT_FAIL);
            for item in items {
                write_value(e, item);
            }
        }
        Value::Object(map) => {
            e.map(map.len() as u64).expect(CANNOT_FAIL);
            for (k, item) in map {
                e.str(k).expect(CANNOT_FAIL);
                write_value(e, item);
            }
        }
    }
}
