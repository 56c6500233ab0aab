//! Named edge cases of the analysis.

use m2m_analysis::{analyze, Metrics, Recording};
use std::collections::BTreeMap;

fn run(fs: f64, channels: &[(&str, Vec<f64>)]) -> Metrics {
    let map: BTreeMap<String, Vec<f64>> = channels
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let samples = map.values().next().map_or(0, Vec::len);
    analyze(&Recording {
        sample_rate_hz: fs,
        samples,
        score: 7.0,
        channels: &map,
    })
}

fn all_fingers(kind: &str, col: &[f64]) -> Vec<(String, Vec<f64>)> {
    ["thumb", "index", "middle", "ring", "pinky"]
        .iter()
        .map(|f| (format!("{kind}_{f}"), col.to_vec()))
        .collect()
}

fn as_refs(v: &[(String, Vec<f64>)]) -> Vec<(&str, Vec<f64>)> {
    v.iter().map(|(k, c)| (k.as_str(), c.clone())).collect()
}

/// Every number in the serialised metrics is finite (serde_json would
/// write NaN/inf as null, so a null anywhere is a failure too).
fn assert_all_finite(m: &Metrics) {
    fn walk(v: &serde_json::Value) {
        match v {
            serde_json::Value::Null => panic!("null in metrics"),
            serde_json::Value::Number(n) => assert!(n.as_f64().unwrap().is_finite()),
            serde_json::Value::Object(o) => o.values().for_each(walk),
            serde_json::Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    walk(&serde_json::to_value(m).unwrap());
}

#[test]
fn one_sample_game() {
    let mut chans = all_fingers("flex", &[20.0]);
    chans.extend(all_fingers("force", &[3.0]));
    chans.push(("gyro_x".into(), vec![1.0]));
    let m = run(100.0, &as_refs(&chans));
    assert_eq!(m.duration_s, 0.01);
    assert_eq!(m.rom_deg.as_ref().unwrap().mean, Some(0.0));
    assert_eq!(m.peak_force_n.as_ref().unwrap().mean, Some(3.0));
    assert_eq!(m.repetitions, Some(0));
    let s = m.smoothness.as_ref().unwrap();
    assert_eq!((s.movements, s.sparc, s.ldlj), (0, None, None));
    assert_eq!(m.active_time_s, Some(0.0));
    assert_eq!(m.tremor, None, "one sample has no spectrum");
    assert_all_finite(&m);
}

#[test]
fn constant_flexion() {
    let chans = all_fingers("flex", &[35.0; 3000]);
    let m = run(100.0, &as_refs(&chans));
    let rom = m.rom_deg.as_ref().unwrap();
    assert_eq!(rom.mean, Some(0.0));
    assert_eq!(rom.index, Some(0.0));
    assert_eq!(m.repetitions, Some(0));
    let s = m.smoothness.as_ref().unwrap();
    assert_eq!(s.movements, 0);
    assert_eq!(s.sparc, None);
    assert_eq!(s.ldlj, None);
    assert_eq!(m.active_time_s, Some(0.0));
    let text = serde_json::to_string(&m).unwrap();
    assert!(!text.contains("sparc") && !text.contains("ldlj"), "{text}");
}

#[test]
fn game_shorter_than_one_welch_segment() {
    // 100 Hz wants 256-sample segments; 150 samples form one whole-signal segment.
    let fs = 100.0;
    let gyro: Vec<f64> = (0..150)
        .map(|i| (2.0 * std::f64::consts::PI * 6.0 * i as f64 / fs).sin())
        .collect();
    let m = run(fs, &[("gyro_x", gyro)]);
    let t = m.tremor.expect("tremor from a short signal");
    // Bins are fs/150 = 0.667 Hz apart; 6 Hz is bin 9 exactly.
    assert!((t.frequency_hz.unwrap() - 6.0).abs() < 1e-9);
    assert!(t.index.unwrap() > 0.9);
}

#[test]
fn all_zero_gyro() {
    let m = run(
        100.0,
        &[("gyro_x", vec![0.0; 1000]), ("gyro_y", vec![0.0; 1000])],
    );
    assert_eq!(m.tremor, None);
    assert_all_finite(&m);
}

#[test]
fn values_near_the_float_limits() {
    let n = 400;
    for big in [f64::from(f32::MAX), f64::MAX / 3.0, f64::MAX] {
        let col: Vec<f64> = (0..n)
            .map(|i| if (i / 50) % 2 == 0 { big } else { -big })
            .collect();
        let tiny: Vec<f64> = (0..n).map(|i| f64::MIN_POSITIVE * (i % 7) as f64).collect();
        let mut chans = all_fingers("flex", &col);
        chans.extend(all_fingers("force", &col));
        chans.push(("gyro_x".into(), col.clone()));
        chans.push(("gyro_y".into(), tiny));
        let m = run(100.0, &as_refs(&chans));
        assert_all_finite(&m);
        if big < f64::MAX / 2.0 {
            // The range itself is representable, so it is reported.
            let rom = m.rom_deg.as_ref().unwrap().mean.unwrap();
            assert!((rom - 2.0 * big).abs() <= 1e-9 * 2.0 * big, "rom {rom}");
        }
    }
}

#[test]
fn missing_channels_mean_missing_metrics() {
    let m = run(50.0, &[("accel_x", vec![1.0; 100])]);
    assert_eq!(m.rom_deg, None);
    assert_eq!(m.peak_force_n, None);
    assert_eq!(m.repetitions, None);
    assert_eq!(m.smoothness, None);
    assert_eq!(m.active_time_s, None);
    assert_eq!(m.tremor, None);
    assert_eq!(m.duration_s, 2.0);
    assert_eq!(m.score, 7.0);
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"{"duration_s":2.0,"score":7.0}"#
    );
}
