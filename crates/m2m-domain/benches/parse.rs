//! Parsing and validating the standard game (60 s at 100 Hz, 16 channels)
//! from its JSON text. Target: ≥ 300 MB/s.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use m2m_domain::GameSubmission;
use m2m_synth::GameSpec;

fn parse_standard_game(c: &mut Criterion) {
    let json = GameSpec::standard().submission_json("pinch-garden", 1234.0);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("standard_game", |b| {
        b.iter(|| GameSubmission::from_json(black_box(json.as_bytes())).expect("valid game"))
    });
    group.finish();
}

criterion_group!(benches, parse_standard_game);
criterion_main!(benches);
