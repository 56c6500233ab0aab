//! Encoding and decoding the stored columns of the standard game (60 s at
//! 100 Hz, 16 channels, values with three decimals as parsed from its JSON
//! text). Decoding runs for every analysis and every samples read; the
//! format-1 f32 decoding of the same game is measured beside it.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use m2m_domain::{decode_column, encode_column, GameSubmission};
use m2m_synth::GameSpec;

fn columns() -> Vec<Vec<f64>> {
    let json = GameSpec::standard().submission_json("pinch-garden", 1234.0);
    let game = GameSubmission::from_json(json.as_bytes()).expect("valid game");
    game.channels().iter().map(|(_, c)| c.to_vec()).collect()
}

/// What format 1 stored for a column of these values: tag 1 and f32.
fn f32_form(col: &[f64]) -> Vec<u8> {
    let mut out = vec![1];
    for &v in col {
        out.extend_from_slice(&(v as f32).to_le_bytes());
    }
    out
}

fn standard_game_columns(c: &mut Criterion) {
    let columns = columns();
    let samples: usize = columns.iter().map(Vec::len).sum();
    let encoded: Vec<Vec<u8>> = columns.iter().map(|c| encode_column(c)).collect();
    let legacy: Vec<Vec<u8>> = columns.iter().map(|c| f32_form(c)).collect();

    let mut group = c.benchmark_group("column");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("encode_standard_game", |b| {
        b.iter(|| {
            black_box(&columns)
                .iter()
                .map(|c| encode_column(c).len())
                .sum::<usize>()
        })
    });
    group.bench_function("decode_standard_game", |b| {
        b.iter(|| {
            black_box(&encoded)
                .iter()
                .map(|e| decode_column(e).expect("decodes").len())
                .sum::<usize>()
        })
    });
    group.bench_function("decode_standard_game_format_1_f32", |b| {
        b.iter(|| {
            black_box(&legacy)
                .iter()
                .map(|e| decode_column(e).expect("decodes").len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, standard_game_columns);
criterion_main!(benches);
