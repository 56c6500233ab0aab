//! Full analysis of the standard game (60 s at 100 Hz; 5 flex, 5 force,
//! 3 gyro, 3 accel channels). Target: ≤ 1 ms on one core.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use m2m_analysis::{analyze, Recording};
use m2m_synth::GameSpec;

fn standard_game(c: &mut Criterion) {
    let spec = GameSpec::standard();
    let channels = spec.channels();
    let rec = Recording {
        sample_rate_hz: spec.sample_rate_hz,
        samples: spec.samples(),
        score: 1234.0,
        channels: &channels,
    };
    c.bench_function("analyze/standard_game", |b| {
        b.iter(|| analyze(black_box(&rec)))
    });
}

criterion_group!(benches, standard_game);
criterion_main!(benches);
