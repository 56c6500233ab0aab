//! Full analysis of the standard game (60 s at 100 Hz; 5 flex, 5 force,
//! 3 gyro, 3 accel channels). Target: ≤ 1 ms on one core.
//!
//! LTTB of a game of the longest accepted length (600 000 samples) and 16
//! channels down to 1000 points, as a chart asks for it.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use m2m_analysis::{analyze, lttb_indices, Recording};
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

fn lttb_long_game(c: &mut Criterion) {
    let n = 600_000;
    let columns: Vec<Vec<f64>> = (0..16)
        .map(|ch| {
            (0..n)
                .map(|i| (i as f64 * (0.001 + 0.0003 * ch as f64)).sin() * (ch + 1) as f64)
                .collect()
        })
        .collect();
    let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
    c.bench_function("lttb/600k_samples_16_channels_to_1000", |b| {
        b.iter(|| lttb_indices(black_box(&refs), 1000))
    });
}

criterion_group!(benches, standard_game, lttb_long_game);
criterion_main!(benches);
