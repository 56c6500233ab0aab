//! The events the domain code builds match the committed JSON Schemas of
//! the bus (`schemas/*.schema.json`, referenced by `docs/asyncapi.yaml`),
//! and those schemas reject what the contract forbids, so a schema that
//! accepts anything fails here.
//!
//! The ProcessingEvent published is version 2, which refers to the stored
//! game instead of carrying its samples; version 1, which carried every
//! column, is still parsed (`schemas/processing-event-v1.schema.json`).
//!
//! `docs/asyncapi.yaml` is not parsed here: no YAML crate is in the
//! dependency tree, and one is not worth adding for this check alone.

use chrono::{DateTime, TimeZone, Utc};
use jsonschema::Validator;
use m2m_analysis::{Fingers, Metrics, Smoothness, Tremor};
use m2m_domain::{
    GameStatus, GameSubmission, ProcessingEvent, ReconciliationEvent, MAX_CHANNELS, MAX_SAMPLES,
    PROCESSING_EVENT_VERSION, RECONCILIATION_EVENT_VERSION,
};
use m2m_synth::GameSpec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

const PROCESSING_SCHEMA: &str = include_str!("../../../schemas/processing-event.schema.json");
const PROCESSING_V1_SCHEMA: &str = include_str!("../../../schemas/processing-event-v1.schema.json");
const RECONCILIATION_SCHEMA: &str =
    include_str!("../../../schemas/reconciliation-event.schema.json");

/// Parses a committed schema, checks it against the draft 2020-12
/// meta-schema and builds a validator that also checks `format`s.
fn validator(text: &str, id: &str) -> Validator {
    let schema: Value = serde_json::from_str(text).expect("the schema file is JSON");
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{id}"
    );
    assert_eq!(schema["$id"], id);
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("{id} is not a valid draft 2020-12 schema: {e}");
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{id} does not compile: {e}"))
}

fn processing_validator() -> Validator {
    validator(PROCESSING_SCHEMA, "urn:m2m:schema:processing-event:2")
}

fn processing_v1_validator() -> Validator {
    validator(PROCESSING_V1_SCHEMA, "urn:m2m:schema:processing-event:1")
}

fn reconciliation_validator() -> Validator {
    validator(
        RECONCILIATION_SCHEMA,
        "urn:m2m:schema:reconciliation-event:1",
    )
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(v: &Validator, instance: &Value, what: &str) {
    let errors = errors(v, instance);
    assert!(errors.is_empty(), "{what} should be valid: {errors:#?}");
}

#[track_caller]
fn assert_invalid(v: &Validator, instance: &Value, what: &str) {
    assert!(!v.is_valid(instance), "{what} should be rejected");
}

/// Every case is rejected; the failure lists all the cases accepted.
#[track_caller]
fn assert_all_invalid(v: &Validator, cases: &[(&str, Value)]) {
    let accepted: Vec<&str> = cases
        .iter()
        .filter(|(_, instance)| v.is_valid(instance))
        .map(|(what, _)| *what)
        .collect();
    assert!(accepted.is_empty(), "should be rejected: {accepted:#?}");
}

/// `base` without its top-level field `key`.
fn without(base: &Value, key: &str) -> Value {
    with(base, |e| {
        e.as_object_mut().expect("an object").remove(key);
    })
}

/// `base` with `edit` applied: the negative cases change one thing each.
fn with(base: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base.clone();
    edit(&mut v);
    v
}

fn created_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 1, 5).unwrap()
}

fn standard_submission() -> GameSubmission {
    let json = GameSpec::standard().submission_json("pinch-garden", 1234.0);
    GameSubmission::from_json(json.as_bytes()).expect("the standard game is valid")
}

/// One channel, no `device`, no `started_at`.
fn minimal_submission() -> GameSubmission {
    let json = br#"{"game":"g","score":-3.5,"sample_rate_hz":10,"channels":{"flex_index":[12.5]}}"#;
    GameSubmission::from_json(json).expect("the minimal game is valid")
}

fn processing_event(submission: &GameSubmission) -> ProcessingEvent {
    ProcessingEvent::new(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        created_at(),
        submission,
    )
}

fn reconciliation(
    status: GameStatus,
    metrics: Option<Metrics>,
    error: Option<&str>,
) -> ReconciliationEvent {
    ReconciliationEvent {
        version: RECONCILIATION_EVENT_VERSION,
        event_id: Uuid::now_v7(),
        processing_event_id: Uuid::now_v7(),
        game_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        status,
        processed_at: Utc.with_ymd_and_hms(2026, 11, 27, 10, 1, 6).unwrap(),
        metrics,
        error: error.map(str::to_owned),
        algorithm_version: 1,
        reprocessed: false,
    }
}

fn to_json(event: &impl serde::Serialize) -> Value {
    serde_json::to_value(event).expect("an event serialises")
}

fn minimal_processing_json() -> Value {
    to_json(&processing_event(&minimal_submission()))
}

/// The version-1 message of `submission` as a gateway of that version
/// published it: the version-2 shape with `version: 1` and every column in
/// `channels`.
fn v1_json(event: &ProcessingEvent, submission: &GameSubmission) -> Value {
    let channels: BTreeMap<&str, &[f64]> = submission.channels().iter().collect();
    with(&to_json(event), |e| {
        e["version"] = json!(1);
        e["channels"] = json!(channels);
    })
}

/// Parses a message as the processor does; the error says which case broke.
fn parse(message: &Value, what: &str) -> Result<ProcessingEvent, String> {
    ProcessingEvent::from_json(&serde_json::to_vec(message).expect("JSON serialises"))
        .map_err(|e| format!("{what}: {e}"))
}

/// The base of the ProcessingEvent's negative cases: one with every
/// optional part present.
fn processing_base() -> (ProcessingEvent, GameSubmission) {
    let submission = GameSubmission::from_json(
        br#"{"game":"pinch-garden","score":1,"sample_rate_hz":100,
        "device":{"glove_id":"G-0042","firmware":"1.4.2","hand":"left"},
        "channels":{"flex_index":[1.0,2.0],"gyro_x":[0.5,-0.5]}}"#,
    )
    .unwrap();
    (processing_event(&submission), submission)
}

/// The cases both versions' schemas reject: everything but the version and
/// the columns.
fn cases_of_both_versions(base: &Value) -> Vec<(&'static str, Value)> {
    vec![
        ("missing event_id", without(base, "event_id")),
        ("missing type", without(base, "type")),
        ("missing version", without(base, "version")),
        ("missing game", without(base, "game")),
        ("missing sample_rate_hz", without(base, "sample_rate_hz")),
        (
            "missing game.started_at",
            with(base, |e| {
                e["game"].as_object_mut().unwrap().remove("started_at");
            }),
        ),
        (
            "another event's type",
            with(base, |e| e["type"] = json!("ReconciliationEvent")),
        ),
        ("version 3", with(base, |e| e["version"] = json!(3))),
        (
            "an event_id that is not a UUID",
            with(base, |e| e["event_id"] = json!("event-1")),
        ),
        (
            "a game_id that is a number",
            with(base, |e| e["game_id"] = json!(42)),
        ),
        (
            "a created_at that is not a date-time",
            with(base, |e| e["created_at"] = json!("2026-11-27")),
        ),
        (
            "a started_at that is not a date-time",
            with(base, |e| e["game"]["started_at"] = json!("yesterday")),
        ),
        (
            "an empty game name",
            with(base, |e| e["game"]["game"] = json!("")),
        ),
        (
            "a 65-character game name",
            with(base, |e| e["game"]["game"] = json!("g".repeat(65))),
        ),
        (
            "a score that is a string",
            with(base, |e| e["game"]["score"] = json!("1234")),
        ),
        (
            "a null score",
            with(base, |e| e["game"]["score"] = Value::Null),
        ),
        (
            "a null device",
            with(base, |e| e["game"]["device"] = Value::Null),
        ),
        (
            "a hand that is neither left nor right",
            with(base, |e| e["game"]["device"]["hand"] = json!("both")),
        ),
        (
            "a 65-character glove_id",
            with(base, |e| {
                e["game"]["device"]["glove_id"] = json!("G".repeat(65))
            }),
        ),
        (
            "a 65-character firmware",
            with(base, |e| {
                e["game"]["device"]["firmware"] = json!("1".repeat(65))
            }),
        ),
        (
            "a sample rate below 10 Hz",
            with(base, |e| e["sample_rate_hz"] = json!(9.99)),
        ),
        (
            "a sample rate above 1000 Hz",
            with(base, |e| e["sample_rate_hz"] = json!(1000.5)),
        ),
    ]
}

fn processed_json() -> Value {
    to_json(&reconciliation(
        GameStatus::Processed,
        Some(standard_submission().analyze()),
        None,
    ))
}

fn failed_json() -> Value {
    to_json(&reconciliation(
        GameStatus::Failed,
        None,
        Some("the game could not be processed: channels.flex_index[3] not a finite number"),
    ))
}

#[test]
fn the_standard_game_s_processing_event_matches_its_schema() {
    let v = processing_validator();
    let event = to_json(&processing_event(&standard_submission()));
    // The schema's optional parts are exercised, not skipped.
    assert_eq!(event["type"], "ProcessingEvent");
    assert_eq!(event["version"], 2);
    assert_eq!(event["game"]["device"]["hand"], "right");
    // The samples stay in the store.
    assert!(event.get("channels").is_none(), "{event}");
    assert_valid(&v, &event, "the standard game's ProcessingEvent");
}

#[test]
fn a_minimal_game_s_processing_event_matches_its_schema() {
    let v = processing_validator();
    let event = minimal_processing_json();
    let game = event["game"].as_object().unwrap();
    assert!(
        !game.contains_key("device"),
        "no device is omitted, not null"
    );
    // Without a `started_at` the game was played when it was submitted.
    assert_eq!(game["started_at"], event["created_at"]);
    assert_valid(&v, &event, "a one-channel game's ProcessingEvent");
    // Consumers tolerate fields added later.
    let newer = with(&event, |e| {
        e["priority"] = json!("high");
        e["game"]["level"] = json!(3);
    });
    assert_valid(&v, &newer, "an event with fields added later");
}

#[test]
fn the_processing_schema_rejects_what_the_contract_forbids() {
    let v = processing_validator();
    let (event, submission) = processing_base();
    let base = to_json(&event);
    assert_valid(&v, &base, "the base of the negative cases");

    let mut cases = cases_of_both_versions(&base);
    cases.extend([
        // A version-1 message is not a version-2 one, with its columns or
        // without them.
        ("version 1", with(&base, |e| e["version"] = json!(1))),
        ("a version-1 message", v1_json(&event, &submission)),
        (
            "version 2 with columns",
            with(&base, |e| e["channels"] = json!({"flex_index": [1.0, 2.0]})),
        ),
        (
            "version 2 with empty channels",
            with(&base, |e| e["channels"] = json!({})),
        ),
    ]);
    assert_all_invalid(&v, &cases);

    // The limits themselves are accepted.
    let at_limits = with(&base, |e| {
        e["sample_rate_hz"] = json!(1000);
        e["game"]["game"] = json!("g".repeat(64));
        e["game"]["device"]["glove_id"] = json!("\u{1}".repeat(64));
        e["game"]["device"]["firmware"] = json!("𝄞".repeat(64));
    });
    assert_valid(&v, &at_limits, "an event at the contract's limits");
}

#[test]
fn a_version_1_message_matches_the_earlier_schema() {
    let v = processing_v1_validator();
    let submission = standard_submission();
    let message = v1_json(&processing_event(&submission), &submission);
    assert_eq!(message["channels"].as_object().unwrap().len(), 16);
    assert_valid(&v, &message, "the standard game's version-1 message");
    let minimal = minimal_submission();
    let message = v1_json(&processing_event(&minimal), &minimal);
    assert_valid(&v, &message, "a one-channel game's version-1 message");
}

#[test]
fn the_version_1_schema_rejects_what_the_contract_forbade() {
    let v = processing_v1_validator();
    let (event, submission) = processing_base();
    let base = v1_json(&event, &submission);
    assert_valid(&v, &base, "the base of the negative cases");

    let mut cases = cases_of_both_versions(&base);
    cases.extend([
        ("version 2", with(&base, |e| e["version"] = json!(2))),
        ("missing channels", without(&base, "channels")),
        ("no channels", with(&base, |e| e["channels"] = json!({}))),
        (
            "a channel name with a capital letter",
            with(&base, |e| e["channels"]["Flex_middle"] = json!([1.0, 2.0])),
        ),
        (
            "a channel name with a dash",
            with(&base, |e| e["channels"]["flex-middle"] = json!([1.0, 2.0])),
        ),
        (
            "a 65-character channel name",
            with(&base, |e| e["channels"]["c".repeat(65)] = json!([1.0, 2.0])),
        ),
        (
            "an empty column",
            with(&base, |e| e["channels"]["flex_index"] = json!([])),
        ),
        (
            "a null sample (NaN as serde_json writes it)",
            with(&base, |e| e["channels"]["gyro_x"][1] = Value::Null),
        ),
        (
            "a sample that is a string",
            with(&base, |e| e["channels"]["gyro_x"][0] = json!("0.5")),
        ),
        (
            "a column that is not an array",
            with(&base, |e| e["channels"]["gyro_x"] = json!(0.5)),
        ),
        (
            "65 channels",
            with(&base, |e| {
                let channels = e["channels"].as_object_mut().unwrap();
                for i in 0..63 {
                    channels.insert(format!("extra_{i}"), json!([1.0, 2.0]));
                }
            }),
        ),
        (
            "more than 600000 samples",
            with(&base, |e| {
                e["channels"]["gyro_x"] = json!(vec![0.0; 600_001])
            }),
        ),
    ]);
    assert_all_invalid(&v, &cases);

    let at_limits = with(&base, |e| {
        e["sample_rate_hz"] = json!(1000);
        e["game"]["game"] = json!("g".repeat(64));
        let channels = e["channels"].as_object_mut().unwrap();
        for i in 0..62 {
            channels.insert(format!("{i}_{}", "c".repeat(60)), json!([1.0, 2.0]));
        }
    });
    assert_eq!(at_limits["channels"].as_object().unwrap().len(), 64);
    assert_valid(&v, &at_limits, "a version-1 message at the limits");
}

#[test]
fn a_processor_parses_both_versions() {
    let submission = standard_submission();
    let event = processing_event(&submission);
    assert_eq!(event.version, PROCESSING_EVENT_VERSION);
    assert_eq!(PROCESSING_EVENT_VERSION, 2);

    let v2 = to_json(&event);
    assert_eq!(parse(&v2, "version 2"), Ok(event.clone()));
    // Fields added later are ignored, at every level.
    let newer = with(&v2, |e| {
        e["priority"] = json!("high");
        e["game"]["level"] = json!(3);
        e["game"]["device"]["battery"] = json!(0.5);
    });
    assert_eq!(parse(&newer, "newer fields"), Ok(event.clone()));

    // A message an earlier gateway left in the queue: the same event, its
    // columns skipped.
    let v1 = v1_json(&event, &submission);
    let as_v1 = ProcessingEvent {
        version: 1,
        ..event.clone()
    };
    assert_eq!(parse(&v1, "version 1"), Ok(as_v1.clone()));
    // serde's own entry point agrees with from_json.
    let via_serde: ProcessingEvent = serde_json::from_value(v1).expect("version 1 via serde");
    assert_eq!(via_serde, as_v1);
    let via_serde: ProcessingEvent = serde_json::from_value(v2).expect("version 2 via serde");
    assert_eq!(via_serde, event);
}

#[test]
fn a_processor_refuses_a_message_of_neither_version() {
    let (event, submission) = processing_base();
    let v2 = to_json(&event);
    let v1 = v1_json(&event, &submission);
    for (what, message, said) in [
        (
            "version 1 without channels",
            without(&v1, "channels"),
            "channels",
        ),
        (
            "version 1 with null channels",
            with(&v1, |e| e["channels"] = Value::Null),
            "channels",
        ),
        (
            "version 2 with channels",
            with(&v2, |e| e["channels"] = v1["channels"].clone()),
            "channels",
        ),
        ("version 3", with(&v2, |e| e["version"] = json!(3)), "3"),
        (
            "version 3 with channels",
            with(&v1, |e| e["version"] = json!(3)),
            "3",
        ),
        ("version 0", with(&v2, |e| e["version"] = json!(0)), "0"),
        ("missing type", without(&v2, "type"), "type"),
        (
            "another event's type",
            with(&v2, |e| e["type"] = json!("ReconciliationEvent")),
            "type",
        ),
        (
            "a version-1 message of another type",
            with(&v1, |e| e["type"] = json!("ReconciliationEvent")),
            "type",
        ),
    ] {
        let err = parse(&message, what).expect_err(what);
        assert!(err.contains(said), "{err}");
        let via_serde = serde_json::from_value::<ProcessingEvent>(message);
        assert!(via_serde.is_err(), "{what} accepted by serde");
    }
}

#[test]
fn a_refused_message_names_the_field_at_fault() {
    let (event, submission) = processing_base();
    let v2 = to_json(&event);
    for (what, message, field) in [
        (
            "a score that is a string",
            with(&v2, |e| e["game"]["score"] = json!("1234")),
            "game.score",
        ),
        (
            "an event_id that is not a UUID",
            with(&v2, |e| e["event_id"] = json!("event-1")),
            "event_id",
        ),
        (
            "a started_at that is not a date-time",
            with(&v2, |e| e["game"]["started_at"] = json!("yesterday")),
            "game.started_at",
        ),
        (
            "a hand that is neither left nor right",
            with(&v2, |e| e["game"]["device"]["hand"] = json!("both")),
            "game.device.hand",
        ),
        (
            "a version-1 score that is a string",
            with(&v1_json(&event, &submission), |e| {
                e["game"]["score"] = json!("1234")
            }),
            "game.score",
        ),
    ] {
        let err =
            ProcessingEvent::from_json(&serde_json::to_vec(&message).unwrap()).expect_err(what);
        assert!(
            err.starts_with(&format!("{field}: ")),
            "{what}: {err:?} should start with `{field}: `"
        );
    }
    // Not JSON at all, or something after the event.
    assert!(ProcessingEvent::from_json(b"{\"type\":").is_err());
    let mut trailing = serde_json::to_vec(&v2).unwrap();
    trailing.extend_from_slice(b" {}");
    assert!(ProcessingEvent::from_json(&trailing).is_err());
}

/// The largest a published ProcessingEvent can be, in bytes of JSON.
const MAX_PROCESSING_EVENT_BYTES: usize = 2048;

/// A character serde_json writes as `\u0001`: 6 bytes, the most any
/// character takes in JSON (others take at most 4 bytes of UTF-8 or a
/// 2-byte escape).
const WIDEST_CHAR: char = '\u{1}';

/// The event of a game whose every part is as long as the contract allows
/// (strings of the widest character, the longest numbers and times), with
/// `columns` columns of `samples` samples each.
fn largest_event(columns: usize, samples: usize) -> Vec<u8> {
    let widest = WIDEST_CHAR.to_string().repeat(64);
    // 17 significant digits and an exponent of three digits: the longest
    // a finite f64 is written.
    let score = -f64::MIN_POSITIVE;
    let rate = f64::from_bits(100.0_f64.to_bits() + 1);
    let channels: BTreeMap<String, Vec<f64>> = (0..columns)
        .map(|i| (format!("{i:0>64}"), vec![score; samples]))
        .collect();
    let submission = GameSubmission::validate(
        Some(widest.clone()),
        Some(score),
        Some("2026-11-27T10:00:00.123456Z".to_owned()),
        Some(m2m_domain::Device {
            glove_id: Some(widest.clone()),
            firmware: Some(widest),
            hand: Some(m2m_domain::Hand::Right),
        }),
        Some(rate),
        Some(channels),
    )
    .expect("the contract accepts the longest parts");
    let created_at = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999999Z")
        .unwrap()
        .with_timezone(&Utc);
    let event = ProcessingEvent::new(
        Uuid::max(),
        Uuid::max(),
        Uuid::max(),
        created_at,
        &submission,
    );
    serde_json::to_vec(&event).expect("an event serialises")
}

#[test]
fn a_processing_event_is_small_whatever_the_game_s_length() {
    let one_sample = largest_event(1, 1);
    let text = String::from_utf8(one_sample.clone()).unwrap();
    // The worst case is really built: each string is 64 six-byte escapes.
    let escaped = format!("\"{}\"", "\\u0001".repeat(64));
    assert_eq!(text.matches(&escaped).count(), 3, "{text}");
    assert!(text.contains("-2.2250738585072014e-308"), "{text}");
    assert!(text.contains("100.00000000000001"), "{text}");
    assert!(text.contains("9999-12-31T23:59:59.999999999Z"), "{text}");
    assert!(
        one_sample.len() <= MAX_PROCESSING_EVENT_BYTES,
        "the largest event is {} bytes, more than {MAX_PROCESSING_EVENT_BYTES}: {text}",
        one_sample.len()
    );
    assert_valid(
        &processing_validator(),
        &serde_json::from_slice(&one_sample).unwrap(),
        "the largest event",
    );

    // The samples are not in the event: the longest game and the game with
    // the most columns give an event of the same size.
    let longest = largest_event(1, MAX_SAMPLES);
    assert_eq!(longest.len(), one_sample.len(), "a 600,000-sample game");
    let widest = largest_event(MAX_CHANNELS, 1);
    assert_eq!(widest.len(), one_sample.len(), "a 64-column game");
}

#[test]
fn processed_reconciliation_events_match_their_schema() {
    let v = reconciliation_validator();

    let standard = standard_submission().analyze();
    let event = to_json(&reconciliation(GameStatus::Processed, Some(standard), None));
    assert_eq!(event["type"], "ReconciliationEvent");
    assert_eq!(event["error"], Value::Null, "error is null, not omitted");
    // Every part of the metrics object is exercised, not skipped.
    let m = &event["metrics"];
    for key in [
        "duration_s",
        "rom_deg",
        "peak_force_n",
        "repetitions",
        "smoothness",
        "active_time_s",
        "tremor",
        "score",
    ] {
        assert!(m.get(key).is_some(), "the standard game has `{key}`: {m}");
    }
    for key in ["sparc", "ldlj", "movements"] {
        assert!(m["smoothness"].get(key).is_some(), "smoothness.{key}: {m}");
    }
    for key in ["frequency_hz", "index"] {
        assert!(m["tremor"].get(key).is_some(), "tremor.{key}: {m}");
    }
    assert_valid(&v, &event, "the standard game's processed event");

    // Sparser metrics: a one-sample game, flexion only, gyro only.
    let flex_only = GameSpec {
        force: false,
        gyro: false,
        accel: false,
        tremor_hz: None,
        ..GameSpec::standard()
    };
    let gyro_only = GameSpec {
        flex: false,
        force: false,
        accel: false,
        duration_s: 5.0,
        ..GameSpec::standard()
    };
    let others = [
        ("the minimal game", minimal_submission()),
        ("a flexion-only game", submission_of(&flex_only)),
        ("a gyro-only game", submission_of(&gyro_only)),
    ];
    for (what, submission) in others {
        let event = to_json(&reconciliation(
            GameStatus::Processed,
            Some(submission.analyze()),
            None,
        ));
        assert_valid(&v, &event, &format!("{what}'s processed event"));
    }
}

fn submission_of(spec: &GameSpec) -> GameSubmission {
    GameSubmission::from_json(spec.submission_json("pinch-garden", 10.0).as_bytes())
        .expect("a synthetic game is valid")
}

#[test]
fn failed_reconciliation_events_match_their_schema() {
    let v = reconciliation_validator();
    let event = failed_json();
    assert_eq!(
        event["metrics"],
        Value::Null,
        "metrics is null, not omitted"
    );
    assert_valid(&v, &event, "a failed event");
    let newer = with(&event, |e| e["retryable"] = json!(false));
    assert_valid(&v, &newer, "an event with a field added later");
}

#[test]
fn the_reconciliation_schema_rejects_what_the_contract_forbids() {
    let v = reconciliation_validator();
    let processed = processed_json();
    let failed = failed_json();

    let cases: Vec<(&str, Value)> = vec![
        ("missing event_id", without(&processed, "event_id")),
        (
            "missing processing_event_id",
            without(&processed, "processing_event_id"),
        ),
        ("missing processed_at", without(&processed, "processed_at")),
        ("missing metrics", without(&processed, "metrics")),
        ("missing error", without(&failed, "error")),
        (
            "another event's type",
            with(&processed, |e| e["type"] = json!("ProcessingEvent")),
        ),
        ("version 2", with(&processed, |e| e["version"] = json!(2))),
        (
            "a user_id that is not a UUID",
            with(&processed, |e| e["user_id"] = json!("alice")),
        ),
        (
            "a processed_at that is not a date-time",
            with(&processed, |e| e["processed_at"] = json!("now")),
        ),
        (
            "status queued",
            with(&processed, |e| e["status"] = json!("queued")),
        ),
        (
            "a processed event with null metrics",
            with(&processed, |e| e["metrics"] = Value::Null),
        ),
        (
            "a processed event with an error",
            with(&processed, |e| e["error"] = json!("oops")),
        ),
        (
            "a failed event with metrics",
            with(&failed, |e| e["metrics"] = processed["metrics"].clone()),
        ),
        (
            "a failed event with a null error",
            with(&failed, |e| e["error"] = Value::Null),
        ),
        ("an empty error", with(&failed, |e| e["error"] = json!(""))),
        (
            "a null metric",
            with(&processed, |e| e["metrics"]["active_time_s"] = Value::Null),
        ),
        (
            "a null inside tremor",
            with(&processed, |e| {
                e["metrics"]["tremor"]["index"] = Value::Null
            }),
        ),
        (
            "a null finger",
            with(&processed, |e| {
                e["metrics"]["rom_deg"]["thumb"] = Value::Null
            }),
        ),
        (
            "a null repetitions",
            with(&processed, |e| e["metrics"]["repetitions"] = Value::Null),
        ),
        (
            "an unknown metric",
            with(&processed, |e| e["metrics"]["grip"] = json!(1.0)),
        ),
        (
            "an unknown finger",
            with(&processed, |e| {
                e["metrics"]["peak_force_n"]["toe"] = json!(1.0)
            }),
        ),
        (
            "an unknown smoothness key",
            with(&processed, |e| {
                e["metrics"]["smoothness"]["jerk"] = json!(1.0)
            }),
        ),
        (
            "metrics without duration_s",
            with(&processed, |e| {
                e["metrics"].as_object_mut().unwrap().remove("duration_s");
            }),
        ),
        (
            "metrics without score",
            with(&processed, |e| {
                e["metrics"].as_object_mut().unwrap().remove("score");
            }),
        ),
        (
            "smoothness without movements",
            with(&processed, |e| {
                e["metrics"]["smoothness"]
                    .as_object_mut()
                    .unwrap()
                    .remove("movements");
            }),
        ),
        (
            "a fractional repetitions count",
            with(&processed, |e| e["metrics"]["repetitions"] = json!(2.5)),
        ),
        (
            "a negative movements count",
            with(&processed, |e| {
                e["metrics"]["smoothness"]["movements"] = json!(-1)
            }),
        ),
        (
            "a metric that is a string",
            with(&processed, |e| e["metrics"]["duration_s"] = json!("60")),
        ),
        (
            "rom_deg that is a number",
            with(&processed, |e| e["metrics"]["rom_deg"] = json!(40.0)),
        ),
        (
            "an empty fingers object",
            with(&processed, |e| e["metrics"]["rom_deg"] = json!({})),
        ),
        (
            "an empty tremor object",
            with(&processed, |e| e["metrics"]["tremor"] = json!({})),
        ),
        (
            "a tremor index above 1",
            with(&processed, |e| e["metrics"]["tremor"]["index"] = json!(1.5)),
        ),
        (
            "a negative range of motion",
            with(&processed, |e| {
                e["metrics"]["rom_deg"]["mean"] = json!(-1.0)
            }),
        ),
        (
            "a positive SPARC",
            with(&processed, |e| {
                e["metrics"]["smoothness"]["sparc"] = json!(0.5)
            }),
        ),
    ];
    assert_all_invalid(&v, &cases);
}

/// What the Rust types allow but the contract does not is caught by the
/// schema when such an event is built through the domain types.
#[test]
fn events_the_types_allow_but_the_contract_forbids_are_rejected() {
    let v = reconciliation_validator();
    let metrics = standard_submission().analyze();

    // GameStatus has `queued`; a ReconciliationEvent never carries it.
    let queued = to_json(&reconciliation(GameStatus::Queued, None, None));
    assert_invalid(&v, &queued, "a queued ReconciliationEvent");

    // Nothing in the type ties status to metrics/error.
    let processed_without_metrics = to_json(&reconciliation(GameStatus::Processed, None, None));
    assert_invalid(
        &v,
        &processed_without_metrics,
        "processed with null metrics",
    );
    let failed_with_metrics = to_json(&reconciliation(
        GameStatus::Failed,
        Some(metrics.clone()),
        Some("no"),
    ));
    assert_invalid(&v, &failed_with_metrics, "failed with metrics");

    // A non-finite metric that skipped the analysis' last guard is written
    // by serde_json as null, which the schema refuses.
    let nan = Metrics {
        duration_s: 60.0,
        rom_deg: Some(Fingers {
            thumb: Some(f64::NAN),
            ..Fingers::default()
        }),
        peak_force_n: None,
        repetitions: None,
        smoothness: Some(Smoothness {
            sparc: None,
            ldlj: None,
            movements: 0,
        }),
        active_time_s: None,
        tremor: Some(Tremor {
            frequency_hz: None,
            index: None,
        }),
        score: 1.0,
    };
    let event = to_json(&reconciliation(GameStatus::Processed, Some(nan), None));
    assert_eq!(event["metrics"]["rom_deg"]["thumb"], Value::Null);
    assert_invalid(&v, &event, "a NaN inside metrics");

    // The version is a constant of the contract, not of the type.
    let mut other_version = reconciliation(GameStatus::Processed, Some(metrics), None);
    other_version.version = RECONCILIATION_EVENT_VERSION + 1;
    assert_invalid(
        &v,
        &to_json(&other_version),
        "a ReconciliationEvent of version 2",
    );
}

// ---------------------------------------------------------------------------
// Reprocessing (docs/data-lifecycle.md)

/// A reprocessing event of a game under version 2.
fn reprocessing_event() -> ProcessingEvent {
    let mut event = processing_event(&standard_submission());
    event.event_id = m2m_domain::reprocessing_event_id(event.game_id, 2);
    event.reprocess = Some(2);
    event
}

#[test]
fn a_reprocessing_event_matches_its_schema_and_reads_back() {
    let v = processing_validator();
    let event = reprocessing_event();
    let json = to_json(&event);
    assert_eq!(json["reprocess"], true, "{json}");
    assert_eq!(json["algorithm_version"], 2, "{json}");
    assert_valid(&v, &json, "a reprocessing event");
    assert_eq!(parse(&json, "a reprocessing event"), Ok(event));
    // A first event says neither.
    let first = to_json(&processing_event(&standard_submission()));
    assert!(first.get("reprocess").is_none() && first.get("algorithm_version").is_none());
    assert_eq!(
        parse(&first, "a first event").unwrap().reprocess,
        None,
        "{first}"
    );
    // The id is the game's and the version's, nothing else's.
    let game = Uuid::now_v7();
    let id = m2m_domain::reprocessing_event_id(game, 2);
    assert_eq!(id, m2m_domain::reprocessing_event_id(game, 2));
    assert_ne!(id, m2m_domain::reprocessing_event_id(game, 3));
    assert_ne!(id, m2m_domain::reprocessing_event_id(Uuid::now_v7(), 2));
    assert_eq!(id.get_version_num(), 5);
}

#[test]
fn a_reprocessing_event_without_its_version_or_id_is_refused() {
    let v = processing_validator();
    let json = to_json(&reprocessing_event());
    let cases = [
        (
            "reprocess without algorithm_version",
            without(&json, "algorithm_version"),
        ),
        (
            "algorithm_version without reprocess",
            without(&json, "reprocess"),
        ),
        (
            "reprocess false",
            with(&json, |e| e["reprocess"] = json!(false)),
        ),
        (
            "algorithm_version 0",
            with(&json, |e| e["algorithm_version"] = json!(0)),
        ),
    ];
    assert_all_invalid(&v, &cases);
    for (what, message) in &cases {
        if *what == "reprocess false" {
            continue; // the schema's `const`; the parser reads it as a first event's field
        }
        assert!(parse(message, what).is_err(), "{what} should not parse");
    }
    // A random id with `reprocess`: the schema cannot tell, the parser can.
    let forged = with(&json, |e| e["event_id"] = json!(Uuid::now_v7()));
    let why = parse(&forged, "a forged id").unwrap_err();
    assert!(why.contains("event_id"), "{why}");
}

#[test]
fn a_reconciliation_event_says_its_version_and_whether_it_reprocessed() {
    let v = reconciliation_validator();
    let mut event = reconciliation(
        GameStatus::Processed,
        Some(standard_submission().analyze()),
        None,
    );
    event.algorithm_version = 2;
    event.reprocessed = true;
    let json = to_json(&event);
    assert_valid(&v, &json, "a reprocessed result");
    assert_eq!(json["algorithm_version"], 2);
    assert_eq!(json["reprocessed"], true);
    // An earlier producer's event has neither: version 1, not reprocessed.
    let earlier = without(&without(&json, "algorithm_version"), "reprocessed");
    assert_valid(&v, &earlier, "an earlier producer's event");
    let read: ReconciliationEvent = serde_json::from_value(earlier).unwrap();
    assert_eq!((read.algorithm_version, read.reprocessed), (1, false));
    assert_all_invalid(
        &v,
        &[
            (
                "version 0",
                with(&json, |e| e["algorithm_version"] = json!(0)),
            ),
            (
                "reprocessed as text",
                with(&json, |e| e["reprocessed"] = json!("yes")),
            ),
        ],
    );
}
