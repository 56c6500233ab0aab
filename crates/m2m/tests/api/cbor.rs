//! POST /v1/games with `Content-Type: application/cbor`: the same game as
//! JSON, with the same rules, errors, idempotency, limit and gzip.

use m2m_testkit::*;
use minicbor::data::Tag;
use minicbor::Encoder;
use serde_json::Value;
use std::io::Write;
use uuid::Uuid;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn game_id(v: &Value) -> Uuid {
    v["game_id"].as_str().unwrap().parse().unwrap()
}

/// A small game in CBOR whose `channels` are written by `channels` (the
/// map's header included) and whose score is written by `score`.
fn cbor_game(
    score: impl FnOnce(&mut Encoder<Vec<u8>>),
    channels: impl FnOnce(&mut Encoder<Vec<u8>>),
) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    e.map(4).unwrap();
    e.str("game").unwrap().str("pinch-garden").unwrap();
    e.str("score").unwrap();
    score(&mut e);
    e.str("sample_rate_hz").unwrap().u8(100).unwrap();
    e.str("channels").unwrap();
    channels(&mut e);
    e.into_writer()
}

fn score_1(e: &mut Encoder<Vec<u8>>) {
    e.u8(1).unwrap();
}

/// Every number of `a` within a relative 1e-5 of the same one in `b` (and
/// the same keys).
fn assert_close(a: &Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            for (k, v) in a {
                assert_close(v, &b[k]);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} vs {y}");
        }
        _ => assert_eq!(a, b),
    }
}

#[tokio::test]
async fn a_cbor_game_has_the_metrics_of_the_same_game_sent_as_json() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let json = small_game(7);
    let mut games = Vec::new();
    for (content_type, body) in [
        ("application/json", json.clone().into_bytes()),
        (
            "application/cbor",
            json_to_cbor(&json, CborColumns::Float64Arrays),
        ),
        (
            "application/cbor",
            json_to_cbor(&json, CborColumns::Float32Typed),
        ),
    ] {
        let r = app
            .client
            .post(app.url("/v1/games"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{content_type}");
        let id = game_id(&r.json().await.unwrap());
        games.push(app.wait_for(&token, id, "processed").await);
    }
    let [from_json, plain, typed] = &games[..] else {
        unreachable!()
    };
    assert!(from_json["metrics"]["repetitions"].as_u64().unwrap() > 0);
    // Columns are stored losslessly and analysed as stored: float64
    // values give the very metrics of the JSON game; float32 typed arrays
    // carry each value rounded to float32, so their metrics are within
    // float32's precision of them.
    assert_eq!(plain["metrics"], from_json["metrics"]);
    assert_close(&typed["metrics"], &from_json["metrics"]);
    // And the samples read back are exactly the float32 values sent (each
    // written as the shortest text of its float32).
    let sent: Value = serde_json::from_str(&json).unwrap();
    let typed_id = typed["game_id"].as_str().unwrap();
    let stored = app
        .read(&token, &format!("/v1/games/{typed_id}/samples"))
        .await;
    let float32 = |v: &Value| -> Vec<f32> {
        let values = v.as_array().unwrap().iter();
        values.map(|x| x.as_f64().unwrap() as f32).collect()
    };
    let channels = sent["channels"].as_object().unwrap();
    assert_eq!(
        stored["channels"].as_object().unwrap().len(),
        channels.len()
    );
    for (name, values) in channels {
        assert_eq!(
            float32(&stored["channels"][name]),
            float32(values),
            "{name}"
        );
    }
    for game in [plain, typed] {
        for field in [
            "game",
            "score",
            "sample_rate_hz",
            "samples",
            "channels",
            "device",
        ] {
            assert_eq!(game[field], from_json[field], "{field}");
        }
    }
}

#[tokio::test]
async fn cbor_that_breaks_the_contract_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let token = app.user("ada").await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            cbor_game(score_1, |e| {
                e.map(1).unwrap().str("gyro_x").unwrap().array(3).unwrap();
                e.f64(1.0).unwrap().f64(f64::NAN).unwrap().f64(2.0).unwrap();
            }),
            422,
            "channels.gyro_x[1]",
        ),
        (
            cbor_game(
                |e| {
                    e.str("1234").unwrap();
                },
                |e| {
                    e.map(1)
                        .unwrap()
                        .str("a")
                        .unwrap()
                        .array(1)
                        .unwrap()
                        .u8(1)
                        .unwrap();
                },
            ),
            422,
            "score",
        ),
        (
            cbor_game(score_1, |e| {
                e.map(2).unwrap();
                e.str("a")
                    .unwrap()
                    .array(2)
                    .unwrap()
                    .u8(1)
                    .unwrap()
                    .u8(2)
                    .unwrap();
                e.str("b").unwrap().tag(Tag::new(85)).unwrap();
                e.bytes(&1.0f32.to_le_bytes()).unwrap();
            }),
            422,
            "channels.b",
        ),
        (
            cbor_game(score_1, |e| {
                e.map(1)
                    .unwrap()
                    .str("a")
                    .unwrap()
                    .tag(Tag::new(84))
                    .unwrap();
                e.bytes(&[0, 0x3c]).unwrap();
            }),
            422,
            "channels.a",
        ),
    ];
    for (body, status, field) in cases {
        let r = app.post_cbor_game(&token, &[], body).await;
        assert_problem(r, status, Some(field)).await;
    }
    // Bytes that are not CBOR are a 400 like malformed JSON, naming the
    // format.
    let valid = json_to_cbor(&small_game(1), CborColumns::Float32Typed);
    for body in [
        valid[..valid.len() - 1].to_vec(),
        small_game(1).into_bytes(),
        Vec::new(),
    ] {
        let r = app.post_cbor_game(&token, &[], body).await;
        let v = assert_problem(r, 400, Some("body")).await;
        assert!(
            v["detail"].as_str().unwrap().contains("malformed CBOR"),
            "{v}"
        );
    }
    // Any other media type is a 415 that names both.
    let r = app
        .client
        .post(app.url("/v1/games"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(valid)
        .send()
        .await
        .unwrap();
    let v = assert_problem(r, 415, None).await;
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("application/json") && detail.contains("application/cbor"),
        "{v}"
    );
    // Nothing was stored.
    let list: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert!(list["games"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_cbor_upload_replays_with_its_idempotency_key() {
    let app = spawn_app_with(Options {
        processor: false,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let json = small_game(1);
    let cbor = json_to_cbor(&json, CborColumns::Float32Typed);
    let key = [("idempotency-key", "game-7")];
    let first = app.post_cbor_game(&token, &key, cbor.clone()).await;
    assert_eq!(first.status(), 202);
    let first_body = first.text().await.unwrap();
    let again = app.post_cbor_game(&token, &key, cbor.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.text().await.unwrap(), first_body);
    let list: Value = app.get(&token, "/v1/games").await.json().await.unwrap();
    assert_eq!(list["games"].as_array().unwrap().len(), 1);
    // The key covers the body as sent: the same game in other bytes (as
    // JSON, or with float64 columns) is another request.
    let as_json = app.post_game_keyed(&token, "game-7", json.clone()).await;
    assert_problem(as_json, 422, Some("Idempotency-Key")).await;
    let as_f64 = json_to_cbor(&json, CborColumns::Float64Arrays);
    let r = app.post_cbor_game(&token, &key, as_f64).await;
    assert_problem(r, 422, Some("Idempotency-Key")).await;
}

#[tokio::test]
async fn gzip_cbor_bodies_are_accepted_and_the_body_limit_applies_after_decompression() {
    let json = small_game(3);
    let cbor = json_to_cbor(&json, CborColumns::Float64Arrays);
    let app = spawn_app_with(Options {
        body_limit: cbor.len() - 1,
        ..Options::default()
    })
    .await;
    let token = app.user("ada").await;
    let typed = json_to_cbor(&json, CborColumns::Float32Typed);
    assert!(typed.len() < cbor.len());
    let gzip_header = [("content-encoding", "gzip")];
    let r = app.post_cbor_game(&token, &gzip_header, gzip(&typed)).await;
    assert_eq!(r.status(), 202);
    let game = app
        .wait_for(&token, game_id(&r.json().await.unwrap()), "processed")
        .await;
    assert_eq!(game["samples"], 500);
    // Compressed it is below the limit, decompressed it is not.
    let packed = gzip(&cbor);
    assert!(packed.len() < cbor.len() - 1);
    let r = app.post_cbor_game(&token, &gzip_header, packed).await;
    assert_problem(r, 413, None).await;
}
