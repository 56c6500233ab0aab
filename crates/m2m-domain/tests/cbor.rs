//! GameSubmission from CBOR: the same document, the same rules and the
//! same fields named as from JSON; columns as arrays of numbers or as
//! RFC 8746 typed arrays.

use m2m_domain::{
    GameSubmission, SubmissionError, MAX_CHANNELS, MAX_SAMPLES, TAG_FLOAT32_BE, TAG_FLOAT32_LE,
    TAG_FLOAT64_BE, TAG_FLOAT64_LE,
};
use m2m_synth::{CborColumns, GameSpec};
use serde_json::{json, Value};

/// A CBOR value, written by [`encode`]; what the tests need and no more.
#[derive(Clone, Debug)]
enum C {
    U(u64),
    I(i64),
    F(f64),
    F32(f32),
    /// A float16, by its bits.
    F16(u16),
    T(String),
    B(Vec<u8>),
    A(Vec<C>),
    M(Vec<(C, C)>),
    /// Bytes written as they are.
    Raw(Vec<u8>),
    Tag(u64, Box<C>),
    Null,
    Bool(bool),
}

fn t(s: &str) -> C {
    C::T(s.to_owned())
}

fn write(e: &mut minicbor::Encoder<Vec<u8>>, c: &C) {
    let r = match c {
        C::U(v) => e.u64(*v).map(|_| ()),
        C::I(v) => e.i64(*v).map(|_| ()),
        C::F(v) => e.f64(*v).map(|_| ()),
        C::F32(v) => e.f32(*v).map(|_| ()),
        C::F16(bits) => {
            e.writer_mut().push(0xf9);
            e.writer_mut().extend_from_slice(&bits.to_be_bytes());
            Ok(())
        }
        C::T(s) => e.str(s).map(|_| ()),
        C::B(b) => e.bytes(b).map(|_| ()),
        C::A(items) => {
            e.array(items.len() as u64).unwrap();
            items.iter().for_each(|i| write(e, i));
            Ok(())
        }
        C::M(entries) => {
            e.map(entries.len() as u64).unwrap();
            entries.iter().for_each(|(k, v)| {
                write(e, k);
                write(e, v);
            });
            Ok(())
        }
        C::Raw(bytes) => {
            e.writer_mut().extend_from_slice(bytes);
            Ok(())
        }
        C::Tag(tag, inner) => {
            e.tag(minicbor::data::Tag::new(*tag)).unwrap();
            write(e, inner);
            Ok(())
        }
        C::Null => e.null().map(|_| ()),
        C::Bool(b) => e.bool(*b).map(|_| ()),
    };
    r.unwrap();
}

fn encode(c: &C) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    write(&mut e, c);
    e.into_writer()
}

/// A JSON value as CBOR: integers as integers, other numbers as float64.
fn cbor_of(v: &Value) -> C {
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => C::U(u),
            (None, Some(i)) => C::I(i),
            _ => C::F(n.as_f64().unwrap()),
        },
        Value::String(s) => t(s),
        Value::Array(items) => C::A(items.iter().map(cbor_of).collect()),
        Value::Object(map) => C::M(map.iter().map(|(k, v)| (t(k), cbor_of(v))).collect()),
    }
}

fn valid_json() -> Value {
    json!({
        "game": "pinch-garden",
        "score": 1234,
        "started_at": "2026-11-27T11:00:00+01:00",
        "device": {"glove_id": "G-0042", "firmware": "1.4.2", "hand": "right"},
        "sample_rate_hz": 100,
        "channels": {"flex_thumb": [12.5, 13.0, 14.0], "gyro_x": [0.1, -0.3, 0.2]}
    })
}

/// The valid game as CBOR entries, with `field` set to `value` (or
/// added).
fn with(field: &str, value: C) -> Vec<u8> {
    let C::M(mut entries) = cbor_of(&valid_json()) else {
        unreachable!()
    };
    match entries
        .iter_mut()
        .find(|(k, _)| matches!(k, C::T(s) if s == field))
    {
        Some(entry) => entry.1 = value,
        None => entries.push((t(field), value)),
    }
    encode(&C::M(entries))
}

/// The valid game with `channels` set to these columns.
fn with_channels(columns: Vec<(&str, C)>) -> Vec<u8> {
    with(
        "channels",
        C::M(columns.into_iter().map(|(k, v)| (t(k), v)).collect()),
    )
}

fn fields(err: &SubmissionError) -> Vec<&str> {
    err.field_errors()
        .iter()
        .map(|e| e.field.as_str())
        .collect()
}

fn invalid(bytes: &[u8]) -> SubmissionError {
    match GameSubmission::from_cbor(bytes) {
        Ok(g) => panic!("accepted: {g:?}"),
        Err(e @ SubmissionError::Invalid(_)) => e,
        Err(e) => panic!("not invalid but {e:?}"),
    }
}

fn malformed(bytes: &[u8]) -> String {
    match GameSubmission::from_cbor(bytes) {
        Err(SubmissionError::Malformed(m)) => m,
        other => panic!("not malformed but {other:?}"),
    }
}

fn le32(values: &[f32]) -> C {
    C::Tag(
        TAG_FLOAT32_LE,
        Box::new(C::B(values.iter().flat_map(|v| v.to_le_bytes()).collect())),
    )
}

#[test]
fn the_standard_game_as_cbor_float_arrays_is_the_same_submission_as_from_json() {
    let spec = GameSpec::standard();
    let json = spec.submission_json("pinch-garden", 1234.0);
    let cbor = spec.submission_cbor("pinch-garden", 1234.0, CborColumns::Float64);
    assert_eq!(
        GameSubmission::from_cbor(&cbor).unwrap(),
        GameSubmission::from_json(json.as_bytes()).unwrap()
    );
}

#[test]
fn the_standard_game_as_float32_typed_arrays_holds_the_json_values_as_float32() {
    let spec = GameSpec::standard();
    let json = GameSubmission::from_json(spec.submission_json("g", 1.0).as_bytes()).unwrap();
    let cbor = spec.submission_cbor("g", 1.0, CborColumns::Float32);
    let typed = GameSubmission::from_cbor(&cbor).unwrap();
    assert_eq!(typed.channels().len(), 16);
    assert_eq!(typed.channels().samples(), 6000);
    for ((name, a), (name_b, b)) in json.channels().iter().zip(typed.channels().iter()) {
        assert_eq!(name, name_b);
        let as_f32: Vec<f64> = a.iter().map(|v| f64::from(*v as f32)).collect();
        assert_eq!(as_f32, b, "column {name}");
    }
    // 4 bytes a sample and a few bytes a column: under a third of the JSON.
    assert!(cbor.len() < 6000 * 16 * 4 + 1000, "{}", cbor.len());
}

#[test]
fn every_typed_array_of_floats_gives_the_same_column() {
    let values = [1.5f64, -0.25, 1e-3, 12345.678];
    let f32s: Vec<f32> = values.iter().map(|v| *v as f32).collect();
    let cases = [
        (
            TAG_FLOAT32_LE,
            f32s.iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
        (
            TAG_FLOAT32_BE,
            f32s.iter().flat_map(|v| v.to_be_bytes()).collect(),
        ),
        (
            TAG_FLOAT64_LE,
            f32s.iter()
                .flat_map(|v| f64::from(*v).to_le_bytes())
                .collect(),
        ),
        (
            TAG_FLOAT64_BE,
            f32s.iter()
                .flat_map(|v| f64::from(*v).to_be_bytes())
                .collect(),
        ),
    ];
    let want: Vec<f64> = f32s.iter().map(|v| f64::from(*v)).collect();
    for (tag, bytes) in cases {
        let g = GameSubmission::from_cbor(&with_channels(vec![(
            "a",
            C::Tag(tag, Box::new(C::B(bytes))),
        )]))
        .unwrap_or_else(|e| panic!("tag {tag}: {e:?}"));
        assert_eq!(g.channels().get("a").unwrap(), want, "tag {tag}");
    }
    // float64 keeps what float32 cannot.
    let g = GameSubmission::from_cbor(&with_channels(vec![(
        "a",
        C::Tag(
            TAG_FLOAT64_LE,
            Box::new(C::B(0.1f64.to_le_bytes().to_vec())),
        ),
    )]))
    .unwrap();
    assert_eq!(g.channels().get("a").unwrap(), [0.1]);
}

#[test]
fn integers_and_floats_of_every_width_are_read_exactly() {
    let g = GameSubmission::from_cbor(&with_channels(vec![(
        "a",
        C::A(vec![
            C::U(7),
            C::I(-3),
            C::U(u64::MAX),
            C::F16(0x3e00), // 1.5
            C::F16(0x7bff), // 65504, the largest float16
            C::F16(0x0001), // 2^-24, the smallest subnormal float16
            C::F16(0x8000), // -0.0
            C::F32(0.1),
            C::F(0.1),
        ]),
    )]))
    .unwrap();
    assert_eq!(
        g.channels().get("a").unwrap(),
        [
            7.0,
            -3.0,
            u64::MAX as f64,
            1.5,
            65504.0,
            2f64.powi(-24),
            -0.0,
            f64::from(0.1f32),
            0.1
        ]
    );
    // A negative integer beyond i64 (CBOR's major type 1 goes to -2^64).
    let min = C::Raw(vec![0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let g = GameSubmission::from_cbor(&with_channels(vec![("a", C::A(vec![min]))])).unwrap();
    assert_eq!(g.channels().get("a").unwrap(), [-(2f64.powi(64))]);
    // Scores and rates may be integers, floats or float16 too.
    let g = GameSubmission::from_cbor(&with("score", C::F16(0x3c00))).unwrap();
    assert_eq!(g.score(), 1.0);
}

#[test]
fn indefinite_lengths_tags_around_the_document_and_the_time_are_read() {
    // Indefinite-length maps, arrays, text and byte strings, as a streaming
    // encoder writes them.
    let mut doc = vec![0xd9, 0xd9, 0xf7]; // self-described CBOR
    let mut e = minicbor::Encoder::new(Vec::new());
    e.begin_map().unwrap();
    e.begin_str()
        .unwrap()
        .str("ga")
        .unwrap()
        .str("me")
        .unwrap()
        .end()
        .unwrap();
    e.str("g").unwrap();
    e.str("score").unwrap().u8(3).unwrap();
    e.str("sample_rate_hz").unwrap().u8(100).unwrap();
    e.str("started_at").unwrap();
    e.tag(minicbor::data::Tag::new(0)).unwrap();
    e.str("2026-11-27T11:00:00+01:00").unwrap();
    e.str("channels").unwrap().begin_map().unwrap();
    e.str("a").unwrap().begin_array().unwrap();
    e.f64(1.0).unwrap().f64(2.0).unwrap().end().unwrap();
    e.str("b")
        .unwrap()
        .tag(minicbor::data::Tag::new(TAG_FLOAT32_LE))
        .unwrap();
    // 3.0 and 4.0 as float32, split across chunks mid-value.
    let bytes: Vec<u8> = [3.0f32, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    e.begin_bytes().unwrap();
    e.bytes(&bytes[..3])
        .unwrap()
        .bytes(&bytes[3..])
        .unwrap()
        .end()
        .unwrap();
    e.end().unwrap(); // channels
    e.end().unwrap(); // document
    doc.extend(e.into_writer());
    let g = GameSubmission::from_cbor(&doc).unwrap();
    assert_eq!(g.game(), "g");
    assert_eq!(g.channels().get("a").unwrap(), [1.0, 2.0]);
    assert_eq!(g.channels().get("b").unwrap(), [3.0, 4.0]);
    assert_eq!(
        g.started_at().unwrap().to_rfc3339(),
        "2026-11-27T10:00:00+00:00"
    );
}

#[test]
fn unknown_fields_are_skipped_and_null_is_absent_where_json_allows_it() {
    // 100 000 arrays, each holding the next.
    let mut nested = vec![0x81; 100_000];
    nested.push(0x01);
    let nested = C::Raw(nested);
    // Deep nesting in an unknown field is skipped without recursion.
    let g = GameSubmission::from_cbor(&with("extra", nested)).unwrap();
    assert_eq!(g.game(), "pinch-garden");
    let g = GameSubmission::from_cbor(&with("device", C::Null)).unwrap();
    assert!(g.device().is_none());
    let g = GameSubmission::from_cbor(&with("started_at", C::Null)).unwrap();
    assert!(g.started_at().is_none());
}

#[test]
fn what_json_can_say_gives_the_same_answer_in_cbor() {
    let cases: Vec<Value> = vec![
        valid_json(),
        json!({"game": "g", "score": 1, "sample_rate_hz": 5, "channels": {"a": [1]}}),
        json!({"game": "", "score": 1, "sample_rate_hz": 100, "channels": {"a": [1]}}),
        json!({"score": 1, "sample_rate_hz": 100, "channels": {"a": [1]}}),
        json!({"game": "g", "sample_rate_hz": 100}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {"a": [1, 2], "b": [1]}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {"a": []}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {"Bad-Name": [1]}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "started_at": "yesterday", "channels": {"a": [1]}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "started_at": "10000-01-01T00:00:00Z", "channels": {"a": [1]}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "device": {"hand": "both", "glove_id": "x".repeat(65)}, "channels": {"a": [1]}}),
        json!({"game": "g", "score": "1", "sample_rate_hz": 100, "channels": {"a": [1]}}),
        json!({"game": 1, "score": 1, "sample_rate_hz": 100, "channels": {"a": [1]}}),
        json!({"game": "g", "score": null, "sample_rate_hz": 100, "channels": {"a": [1]}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {"a": [1, null]}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {"a": "1"}}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": [[1]]}),
        json!({"game": "g", "score": 1, "sample_rate_hz": 100, "device": "glove", "channels": {"a": [1]}}),
        json!([1, 2]),
    ];
    for case in cases {
        let from_json = GameSubmission::from_json(case.to_string().as_bytes());
        let from_cbor = GameSubmission::from_cbor(&encode(&cbor_of(&case)));
        match (&from_json, &from_cbor) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{case}"),
            (Err(a), Err(b)) => {
                assert_eq!(fields(a), fields(b), "{case}: {a:?} vs {b:?}");
                // Past the reading, the same validation says the same.
                if !a.to_string().contains("invalid type") {
                    assert_eq!(a, b, "{case}");
                }
            }
            _ => panic!("{case}: {from_json:?} vs {from_cbor:?}"),
        }
    }
}

#[test]
fn values_of_the_wrong_shape_name_their_field() {
    let nan = C::F(f64::NAN);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with_channels(vec![("gyro_x", C::A(vec![C::F(1.0), nan.clone()]))]),
            "channels.gyro_x[1]",
        ),
        (
            with_channels(vec![("gyro_x", le32(&[1.0, 2.0, f32::INFINITY]))]),
            "channels.gyro_x[2]",
        ),
        (
            with_channels(vec![("a", C::A(vec![C::U(1), C::F16(0x7e00)]))]),
            "channels.a[1]",
        ),
        (with("score", nan.clone()), "score"),
        (
            with("sample_rate_hz", C::F(f64::INFINITY)),
            "sample_rate_hz",
        ),
        (with("score", t("1")), "score"),
        (with("score", C::Bool(true)), "score"),
        (with("game", C::B(b"g".to_vec())), "game"),
        (with("started_at", C::U(0)), "started_at"),
        (
            with("started_at", C::Tag(1, Box::new(C::U(0)))),
            "started_at",
        ),
        (with("device", C::A(vec![])), "device"),
        (
            with("device", C::M(vec![(t("hand"), C::U(1))])),
            "device.hand",
        ),
        (
            with_channels(vec![
                ("a", C::A(vec![C::U(1), C::U(2)])),
                ("b", le32(&[1.0])),
            ]),
            "channels.b",
        ),
        (
            with_channels(vec![("a", C::Tag(84, Box::new(C::B(vec![0, 0]))))]),
            "channels.a",
        ),
        (
            with_channels(vec![(
                "a",
                C::Tag(TAG_FLOAT32_LE, Box::new(C::B(vec![0; 6]))),
            )]),
            "channels.a",
        ),
        (
            with_channels(vec![(
                "a",
                C::Tag(TAG_FLOAT32_LE, Box::new(C::A(vec![C::U(1)]))),
            )]),
            "channels.a",
        ),
        (with_channels(vec![("a", t("1,2,3"))]), "channels.a"),
        (
            with_channels(vec![("a", C::A(vec![C::Tag(2, Box::new(C::B(vec![1])))]))]),
            "channels.a[0]",
        ),
        (
            with("channels", C::M(vec![(C::U(1), C::A(vec![C::U(1)]))])),
            "channels",
        ),
        (
            with(
                "channels",
                C::M(
                    (0..=MAX_CHANNELS)
                        .map(|i| (t(&format!("c{i}")), C::A(vec![C::U(1)])))
                        .collect(),
                ),
            ),
            "channels",
        ),
        (
            with_channels(vec![("a", C::A(vec![C::U(1)])), ("a", C::A(vec![C::U(2)]))]),
            "channels.a",
        ),
        (encode(&C::A(vec![])), "body"),
        (encode(&C::M(vec![(C::U(1), C::U(1))])), "body"),
    ];
    for (bytes, field) in cases {
        let err = invalid(&bytes);
        assert!(fields(&err).contains(&field), "expected {field} in {err:?}");
        assert!(err.field_errors().iter().all(|e| !e.message.is_empty()));
    }
    // A repeated field, as JSON refuses it.
    let C::M(mut entries) = cbor_of(&valid_json()) else {
        unreachable!()
    };
    entries.push((t("score"), C::U(2)));
    let err = invalid(&encode(&C::M(entries)));
    assert_eq!(fields(&err), ["score"]);
    assert_eq!(err.field_errors()[0].message, "appears more than once");
}

#[test]
fn columns_longer_than_the_limit_are_refused_before_they_are_read() {
    assert_eq!(MAX_SAMPLES, 600_000);
    let header = [0x9a, 0, 0x09, 0x27, 0xc1]; // an array of 600 001 elements
    let mut over = header.to_vec();
    over.resize(header.len() + MAX_SAMPLES + 1, 0x00);
    let err = invalid(&with_channels(vec![("a", C::Raw(over))]));
    assert_eq!(fields(&err), ["channels.a"]);
    // The same header without its elements: not well-formed CBOR, so 400.
    malformed(&with_channels(vec![("a", C::Raw(header.to_vec()))]));
    // A typed array of 600 001 float32 values.
    let over = vec![0u8; (MAX_SAMPLES + 1) * 4];
    let err = invalid(&with_channels(vec![(
        "a",
        C::Tag(TAG_FLOAT32_LE, Box::new(C::B(over))),
    )]));
    assert_eq!(fields(&err), ["channels.a"]);
    assert!(err.field_errors()[0].message.contains("600000"), "{err:?}");
}

#[test]
fn bytes_that_are_not_one_cbor_item_are_malformed() {
    let valid = with("score", C::U(1));
    let truncated = &valid[..valid.len() - 1];
    let mut trailing = valid.clone();
    trailing.push(0x00);
    let mut bad_utf8 = encode(&C::M(vec![(t("game"), t("ab"))]));
    let at = bad_utf8.len() - 1;
    bad_utf8[at] = 0xff;
    // A value of the wrong shape early does not hide a truncated body.
    let wrong_then_truncated = &with("score", t("1"))[..valid.len() - 2];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", truncated.to_vec()),
        ("trailing", trailing),
        ("bad utf-8", bad_utf8),
        ("stray break", vec![0xa1, 0x61, b'a', 0xff]),
        ("reserved byte", vec![0xa1, 0x61, b'a', 0x1c]),
        (
            "length beyond the body",
            vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        ("wrong shape, then truncated", wrong_then_truncated.to_vec()),
        ("JSON", valid_json().to_string().into_bytes()),
    ];
    for (what, bytes) in cases {
        let message = std::panic::catch_unwind(|| malformed(&bytes))
            .unwrap_or_else(|_| panic!("{what}: not malformed"));
        assert!(!message.is_empty(), "{what}");
    }
}
