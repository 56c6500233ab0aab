//! GameSubmission validation: every rule of the contract, with the field
//! each error must name.

use chrono::Utc;
use m2m_domain::{FieldError, GameSubmission, Hand, ProcessingEvent, SubmissionError};
use serde_json::{json, Value};
use uuid::Uuid;

fn valid() -> Value {
    json!({
        "game": "pinch-garden",
        "score": 1234,
        "started_at": "2026-11-27T11:00:00+01:00",
        "device": {"glove_id": "G-0042", "firmware": "1.4.2", "hand": "right"},
        "sample_rate_hz": 100,
        "channels": {"flex_thumb": [12.5, 13.0, 14.0], "gyro_x": [0.1, -0.3, 0.2]}
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = valid();
    let mut cur = &mut v;
    for key in &path[..path.len() - 1] {
        cur = &mut cur[*key];
    }
    cur[path[path.len() - 1]] = value;
    v
}

fn without(key: &str) -> Value {
    let mut v = valid();
    v.as_object_mut().unwrap().remove(key);
    v
}

fn parse(v: &Value) -> Result<GameSubmission, SubmissionError> {
    GameSubmission::from_json(v.to_string().as_bytes())
}

#[test]
fn a_valid_submission_parses() {
    let g = parse(&valid()).unwrap();
    assert_eq!(g.game(), "pinch-garden");
    assert_eq!(g.score(), 1234.0);
    assert_eq!(g.sample_rate_hz(), 100.0);
    assert_eq!(g.channels().samples(), 3);
    assert_eq!(
        g.channels().names().collect::<Vec<_>>(),
        ["flex_thumb", "gyro_x"]
    );
    assert_eq!(
        g.started_at().unwrap().to_rfc3339(),
        "2026-11-27T10:00:00+00:00"
    );
    assert_eq!(g.device().unwrap().hand, Some(Hand::Right));
}

#[test]
fn optional_fields_may_be_absent_and_unknown_fields_are_ignored() {
    let mut v = valid();
    let o = v.as_object_mut().unwrap();
    o.remove("started_at");
    o.remove("device");
    o.insert("future_field".into(), json!({"anything": [1, 2]}));
    let g = parse(&v).unwrap();
    assert_eq!(g.started_at(), None);
    assert_eq!(g.device(), None);
}

#[test]
fn invalid_values_name_their_field() {
    let long = "x".repeat(65);
    let cases: Vec<(Value, &str)> = vec![
        (without("game"), "game"),
        (with(&["game"], json!("")), "game"),
        (with(&["game"], json!(long)), "game"),
        (with(&["game"], json!(5)), "game"),
        (without("score"), "score"),
        (with(&["score"], json!(null)), "score"),
        (with(&["score"], json!("12")), "score"),
        (without("sample_rate_hz"), "sample_rate_hz"),
        (with(&["sample_rate_hz"], json!(9.99)), "sample_rate_hz"),
        (with(&["sample_rate_hz"], json!(1000.5)), "sample_rate_hz"),
        (with(&["started_at"], json!("yesterday")), "started_at"),
        (with(&["device", "hand"], json!("both")), "device.hand"),
        (
            with(&["device", "glove_id"], json!(long)),
            "device.glove_id",
        ),
        (
            with(&["device", "firmware"], json!(long)),
            "device.firmware",
        ),
        (without("channels"), "channels"),
        (with(&["channels"], json!({})), "channels"),
        (with(&["channels"], json!([1, 2])), "channels"),
        (
            with(&["channels", "Flex"], json!([1, 2, 3])),
            "channels.Flex",
        ),
        (
            with(&["channels", "flex-x"], json!([1, 2, 3])),
            "channels.flex-x",
        ),
        (
            with(&["channels", &"a".repeat(65)], json!([1, 2, 3])),
            &*Box::leak(format!("channels.{}", "a".repeat(65)).into_boxed_str()),
        ),
        (with(&["channels", "gyro_y"], json!([])), "channels.gyro_y"),
        (
            with(&["channels", "gyro_y"], json!([1, 2])),
            "channels.gyro_y",
        ),
        (
            with(&["channels", "gyro_x"], json!([1, null, 3])),
            "channels.gyro_x[1]",
        ),
        (
            with(&["channels", "gyro_x"], json!([1, 2, "3"])),
            "channels.gyro_x[2]",
        ),
        (
            with(&["channels", "gyro_x"], json!([1, 2, [3]])),
            "channels.gyro_x[2]",
        ),
        (with(&["channels", "gyro_x"], json!(7)), "channels.gyro_x"),
    ];
    for (input, field) in cases {
        match parse(&input) {
            Err(SubmissionError::Invalid(errors)) => assert!(
                errors.iter().any(|e| e.field == field),
                "expected an error on {field}, got {errors:?}"
            ),
            other => panic!("expected an error on {field}, got {other:?}"),
        }
    }
}

#[test]
fn numbers_that_overflow_are_invalid_not_malformed() {
    let text = r#"{"game":"g","score":1,"sample_rate_hz":100,"channels":{"gyro_x":[0.1,2,-1e999],"gyro_y":[1,2,3]}}"#;
    let err = GameSubmission::from_json(text.as_bytes()).unwrap_err();
    assert_eq!(err.field_errors()[0].field, "channels.gyro_x[2]");
    assert!(
        err.to_string()
            .starts_with("channels.gyro_x[2]: not a finite number"),
        "{err}"
    );
    let text = r#"{"game":"g","score":1e400,"sample_rate_hz":100,"channels":{"a":[1]}}"#;
    let err = GameSubmission::from_json(text.as_bytes()).unwrap_err();
    assert_eq!(err.field_errors()[0].field, "score");
}

#[test]
fn the_odd_column_out_is_named_with_both_lengths() {
    let v = json!({"game": "g", "score": 1, "sample_rate_hz": 100, "channels": {
        "a": [1, 2, 3], "b": [1, 2], "c": [1, 2, 3]}});
    let err = parse(&v).unwrap_err();
    assert_eq!(err.to_string(), "channels.b: has 2 samples, expected 3");
}

#[test]
fn channel_limits() {
    let mut channels = serde_json::Map::new();
    for i in 0..65 {
        channels.insert(format!("c{i}"), json!([1.0]));
    }
    let v = with(&["channels"], Value::Object(channels.clone()));
    assert_eq!(parse(&v).unwrap_err().field_errors()[0].field, "channels");
    channels.remove("c64");
    assert!(parse(&with(&["channels"], Value::Object(channels))).is_ok());

    let at_limit = format!(
        r#"{{"game":"g","score":1,"sample_rate_hz":100,"channels":{{"a":[{}]}}}}"#,
        vec!["0"; 600_000].join(",")
    );
    assert!(GameSubmission::from_json(at_limit.as_bytes()).is_ok());
    let over = format!(
        r#"{{"game":"g","score":1,"sample_rate_hz":100,"channels":{{"a":[{}]}}}}"#,
        vec!["0"; 600_001].join(",")
    );
    let err = GameSubmission::from_json(over.as_bytes()).unwrap_err();
    assert!(
        err.field_errors()[0].field.starts_with("channels.a"),
        "{err:?}"
    );
}

#[test]
fn duplicate_channels_are_refused() {
    let text = r#"{"game":"g","score":1,"sample_rate_hz":100,"channels":{"a":[1],"a":[2]}}"#;
    let err = GameSubmission::from_json(text.as_bytes()).unwrap_err();
    assert_eq!(err.field_errors()[0].field, "channels.a");
}

#[test]
fn a_repeated_key_is_named() {
    for (text, field) in [
        (r#"{"game":"a","game":"b"}"#, "game"),
        (r#"{"game":"tap","game":0e99}"#, "game"),
        (
            r#"{"game":"g","score":1,"sample_rate_hz":100,"device":{"hand":"left","hand":"left"},"channels":{"a":[1]}}"#,
            "device.hand",
        ),
    ] {
        let err = GameSubmission::from_json(text.as_bytes()).unwrap_err();
        let errors = err.field_errors();
        assert_eq!(errors[0].field, field, "{text}: {errors:?}");
        assert_eq!(errors[0].message, "appears more than once", "{text}");
    }
}

#[test]
fn text_that_is_not_json_is_malformed() {
    for text in [
        "",
        "{",
        r#"{"game": "g",}"#,
        "[1, 2",
        "nul",
        r#"{"channels": {"a": [1 2]}}"#,
    ] {
        assert!(
            matches!(
                GameSubmission::from_json(text.as_bytes()),
                Err(SubmissionError::Malformed(_))
            ),
            "{text:?} should be malformed"
        );
    }
}

#[test]
fn a_body_that_is_not_an_object_is_invalid() {
    for text in [
        "[1, 2]",
        "[]",
        r#""x""#,
        "1",
        "null",
        "true",
        " \n[\"g\", 1]",
    ] {
        let err = GameSubmission::from_json(text.as_bytes()).unwrap_err();
        assert_eq!(
            err.field_errors(),
            [FieldError::new("body", "expected an object")],
            "{text:?}"
        );
    }
}

#[test]
fn nested_objects_refuse_arrays_and_other_shapes() {
    // Serde's derived structs would take `[glove_id, firmware, hand]`;
    // the contract has objects only.
    for (path, value) in [
        (&["channels"][..], json!([])),
        (&["channels"][..], json!([[1, 2, 3]])),
        (&["channels"][..], json!("flex")),
        (&["channels"][..], json!(null)),
        (&["device"][..], json!([])),
        (&["device"][..], json!(["G-0042", "1.4.2", "right"])),
        (&["device"][..], json!("G-0042")),
        (&["device"][..], json!(7)),
    ] {
        let err = parse(&with(path, value.clone())).unwrap_err();
        assert_eq!(
            err.field_errors(),
            [FieldError::new(path[0], "expected an object")],
            "{path:?} = {value}"
        );
    }
    // `device` stays optional: absent or null is no device.
    assert_eq!(
        parse(&with(&["device"], json!(null))).unwrap().device(),
        None
    );
}

#[test]
fn started_at_must_be_within_years_0000_to_9999_in_utc() {
    for refused in [
        "0000-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-00:01",
        "9999-12-31T23:59:60Z",
        "0000-01-01T00:59:59.999999+01:00",
    ] {
        let err = parse(&with(&["started_at"], json!(refused))).unwrap_err();
        let errors = err.field_errors();
        assert_eq!(errors.len(), 1, "{refused}: {errors:?}");
        assert_eq!(errors[0].field, "started_at", "{refused}");
        assert!(
            errors[0].message.contains("years 0000–9999"),
            "{refused}: {}",
            errors[0].message
        );
    }
    for (accepted, utc) in [
        ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00+00:00"),
        ("0000-01-01T00:00:00-01:00", "0000-01-01T01:00:00+00:00"),
        (
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:59:59.999999+00:00",
        ),
        // Kept to the microsecond, as the stores keep it.
        (
            "9999-12-31T23:59:59.9999999Z",
            "9999-12-31T23:59:59.999999+00:00",
        ),
        ("9999-12-31T23:59:59+00:01", "9999-12-31T23:58:59+00:00"),
        (
            "2026-11-27T11:00:00.123456789+01:00",
            "2026-11-27T10:00:00.123456+00:00",
        ),
    ] {
        let g = parse(&with(&["started_at"], json!(accepted)))
            .unwrap_or_else(|e| panic!("{accepted}: {e}"));
        assert_eq!(g.started_at().unwrap().to_rfc3339(), utc, "{accepted}");
    }
}

#[test]
fn an_accepted_game_round_trips_through_its_processing_event() {
    // Whatever is accepted must survive the event's JSON and the
    // processor's parsing of it unchanged.
    for started_at in [
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-11-27T11:00:00.5+01:00",
    ] {
        let mut v = with(&["started_at"], json!(started_at));
        v["score"] = json!(f64::MAX);
        v["game"] = json!("\u{0}🧤 game\u{7f}");
        v["device"]["glove_id"] = json!("\u{0}".repeat(64));
        let g = parse(&v).unwrap();
        let event = ProcessingEvent::new(
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Utc::now(),
            &g,
        );
        let back = ProcessingEvent::from_json(&serde_json::to_vec(&event).unwrap())
            .unwrap_or_else(|e| panic!("{started_at}: {e}"));
        assert_eq!(back, event, "{started_at}");
        assert_eq!(Some(back.game.started_at), g.started_at(), "{started_at}");
        assert_eq!(back.game.score, f64::MAX);
        assert_eq!(back.game.game, g.game());
        assert_eq!(back.game.device.as_ref(), g.device());
        assert_eq!(back.sample_rate_hz, g.sample_rate_hz());
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let v = json!({"game": "", "score": 1, "sample_rate_hz": 5, "channels": {"a": [1]}});
    let err = parse(&v).unwrap_err();
    let fields: Vec<&str> = err
        .field_errors()
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(fields, ["game", "sample_rate_hz"]);
}
