//! Parsing and validating the standard game (60 s at 100 Hz, 16 channels)
//! from its JSON text (target: ≥ 1 GB/s) and from CBOR, with the columns as
//! float32 typed arrays (what `m2m simulate --format cbor` sends) and as
//! arrays of float64 values. Each throughput is in bytes of its own body,
//! so compare the formats by the time per game.
//!
//! `standard_game` is `GameSubmission::from_json` as uploads use it (the
//! column fast path). The `parsers` group runs every candidate JSON parser
//! over the same text in one run, each validating into the same submission:
//! serde_json through the crate's serde visitors, sonic-rs and simd-json
//! through the same visitors, and the column fast path.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use m2m_domain::{parsers, GameSubmission};
use m2m_synth::{CborColumns, GameSpec};

fn parse_standard_game(c: &mut Criterion) {
    let spec = GameSpec::standard();
    let json = spec.submission_json("pinch-garden", 1234.0);
    let cbor_f32 = spec.submission_cbor("pinch-garden", 1234.0, CborColumns::Float32);
    let cbor_f64 = spec.submission_cbor("pinch-garden", 1234.0, CborColumns::Float64);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("standard_game", |b| {
        b.iter(|| GameSubmission::from_json(black_box(json.as_bytes())).expect("valid game"))
    });
    group.throughput(Throughput::Bytes(cbor_f32.len() as u64));
    group.bench_function("standard_game_cbor_float32_typed", |b| {
        b.iter(|| GameSubmission::from_cbor(black_box(&cbor_f32)).expect("valid game"))
    });
    group.throughput(Throughput::Bytes(cbor_f64.len() as u64));
    group.bench_function("standard_game_cbor_float64_arrays", |b| {
        b.iter(|| GameSubmission::from_cbor(black_box(&cbor_f64)).expect("valid game"))
    });
    group.finish();
}

fn compare_parsers(c: &mut Criterion) {
    let json = GameSpec::standard().submission_json("pinch-garden", 1234.0);
    let bytes = json.as_bytes();
    let mut group = c.benchmark_group("parsers");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("serde_json_visitor", |b| {
        b.iter(|| parsers::serde(black_box(bytes)).expect("valid game"))
    });
    group.bench_function("sonic_rs", |b| {
        b.iter(|| {
            let mut de = sonic_rs::Deserializer::from_slice(black_box(bytes));
            let game = parsers::with_deserializer(&mut de).expect("JSON");
            de.end().expect("nothing after the object");
            game.expect("valid game")
        })
    });
    group.bench_function("simd_json", |b| {
        b.iter(|| {
            // simd-json parses in place: an upload's body must be copied
            // into a mutable buffer first, so the copy is measured too.
            let mut text = black_box(bytes).to_vec();
            let mut de = simd_json::Deserializer::from_slice(&mut text).expect("JSON");
            parsers::with_deserializer(&mut de)
                .expect("JSON")
                .expect("valid game")
        })
    });
    group.bench_function("column_fast_path", |b| {
        b.iter(|| {
            parsers::fast(black_box(bytes))
                .expect("taken by the fast path")
                .expect("valid game")
        })
    });
    group.finish();
}

criterion_group!(benches, parse_standard_game, compare_parsers);
criterion_main!(benches);
