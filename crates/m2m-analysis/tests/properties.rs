//! Properties of the analysis over arbitrary finite input.

use m2m_analysis::{analyze, Metrics, Recording};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KNOWN: [&str; 8] = [
    "flex_thumb",
    "flex_index",
    "flex_ring",
    "force_index",
    "force_pinky",
    "gyro_x",
    "gyro_z",
    "accel_y",
];

fn run(fs: f64, map: &BTreeMap<String, Vec<f64>>) -> Metrics {
    analyze(&Recording {
        sample_rate_hz: fs,
        samples: map.values().next().map_or(0, Vec::len),
        score: 1.0,
        channels: map,
    })
}

fn all_finite(m: &Metrics) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Null => false,
            serde_json::Value::Number(n) => n.as_f64().unwrap().is_finite(),
            serde_json::Value::Object(o) => o.values().all(walk),
            _ => true,
        }
    }
    walk(&serde_json::to_value(m).unwrap())
}

/// Any finite value, with the extremes well represented.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -200.0..200.0f64,
        1 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        1 => Just(f64::MAX),
        1 => Just(-f64::MAX),
        1 => Just(f64::from(f32::MAX)),
    ]
}

fn game() -> impl Strategy<Value = (f64, BTreeMap<String, Vec<f64>>)> {
    (
        10.0..=1000.0f64,
        1usize..600,
        prop::sample::subsequence(KNOWN.to_vec(), 1..KNOWN.len()),
    )
        .prop_flat_map(|(fs, n, names)| {
            let cols = prop::collection::vec(prop::collection::vec(value(), n), names.len());
            (Just(fs), Just(names), cols)
        })
        .prop_map(|(fs, names, cols)| {
            (fs, names.into_iter().map(str::to_owned).zip(cols).collect())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn output_is_always_finite((fs, map) in game()) {
        prop_assert!(all_finite(&run(fs, &map)));
    }

    #[test]
    fn unknown_channels_change_nothing((fs, map) in game(), extra in prop::collection::vec(value(), 1..4)) {
        let before = run(fs, &map);
        let n = map.values().next().unwrap().len();
        let mut with_extra = map.clone();
        for (i, _) in extra.iter().enumerate() {
            with_extra.insert(format!("emg_{i}"), extra.iter().cycle().take(n).copied().collect());
        }
        prop_assert_eq!(before, run(fs, &with_extra));
    }

    /// The same movement sampled at twice the rate keeps its range of motion
    /// and its repetitions.
    #[test]
    fn doubling_the_sample_rate_keeps_rom_and_repetitions(
        fs in 20.0..200.0f64,
        cycles in 1u32..12,
        seconds in 4.0..30.0f64,
        amp in 20.0..90.0f64,
    ) {
        let flex = |rate: f64| -> BTreeMap<String, Vec<f64>> {
            let n = (seconds * rate).round() as usize;
            let f = f64::from(cycles) / seconds;
            let col: Vec<f64> = (0..n)
                .map(|i| {
                    let t = i as f64 / rate;
                    5.0 + amp * 0.5 * (1.0 - (2.0 * std::f64::consts::PI * f * t).cos())
                })
                .collect();
            BTreeMap::from([("flex_index".to_owned(), col.clone()), ("flex_ring".to_owned(), col)])
        };
        let slow = run(fs, &flex(fs));
        let fast = run(2.0 * fs, &flex(2.0 * fs));
        prop_assert_eq!(slow.repetitions, fast.repetitions);
        let (a, b) = (slow.rom_deg.unwrap().mean.unwrap(), fast.rom_deg.unwrap().mean.unwrap());
        prop_assert!((a - b).abs() <= 0.01 * a, "rom {} vs {}", a, b);
    }
}
