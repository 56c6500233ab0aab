//! Parsing and validating the standard game (60 s at 100 Hz, 16 channels)
//! from its JSON text (target: ≥ 300 MB/s) and from CBOR, with the columns
//! as float32 typed arrays (what `m2m simulate --format cbor` sends) and as
//! arrays of float64 values. Each throughput is in bytes of its own body,
//! so compare the formats by the time per game.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use m2m_domain::GameSubmission;
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

criterion_group!(benches, parse_standard_game);
criterion_main!(benches);
