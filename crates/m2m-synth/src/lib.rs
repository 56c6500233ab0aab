//! Synthetic glove data. A [`GameSpec`] and its seed determine every sample,
//! so tests, benchmarks and the load simulator can produce the same games
//! again.
//!
//! The signals imitate a patient playing: the hand closes and opens in
//! smooth cycles (all fingers roughly together, each with its own range),
//! fingertip forces rise while the hand is closed, the hand rotates slowly,
//! and an optional tremor adds a fixed-frequency oscillation to the gyro.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt::Write;

const FINGERS: [&str; 5] = ["thumb", "index", "middle", "ring", "pinky"];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GameSpec {
    pub duration_s: f64,
    pub sample_rate_hz: f64,
    /// Include the five `flex_*` channels.
    pub flex: bool,
    /// Include the five `force_*` channels.
    pub force: bool,
    /// Include `gyro_x`, `gyro_y`, `gyro_z`.
    pub gyro: bool,
    /// Include `accel_x`, `accel_y`, `accel_z`.
    pub accel: bool,
    /// Hand close/open cycles per minute.
    pub cycles_per_minute: f64,
    /// Tremor frequency added to the gyro, if any.
    pub tremor_hz: Option<f64>,
    /// Standard deviation of the sensor noise, in each channel's unit.
    pub noise: f64,
    pub seed: u64,
}

impl GameSpec {
    /// The standard game of the benchmarks: 60 s at 100 Hz with 5 flex,
    /// 5 force, 3 gyro and 3 accel channels, 24 cycles and a 6 Hz tremor.
    pub fn standard() -> Self {
        GameSpec {
            duration_s: 60.0,
            sample_rate_hz: 100.0,
            flex: true,
            force: true,
            gyro: true,
            accel: true,
            cycles_per_minute: 24.0,
            tremor_hz: Some(6.0),
            noise: 0.3,
            seed: 1,
        }
    }

    /// Number of samples per column.
    pub fn samples(&self) -> usize {
        ((self.duration_s * self.sample_rate_hz).round() as usize).max(1)
    }

    /// Generates every column.
    pub fn channels(&self) -> BTreeMap<String, Vec<f64>> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let noise = Normal::new(0.0, self.noise.max(0.0)).expect("non-negative deviation");
        let n = self.samples();
        let fs = self.sample_rate_hz;
        let f_cycle = self.cycles_per_minute / 60.0;
        // Closure of the hand in [0, 1]: smooth cycles starting open.
        let closure: Vec<f64> = (0..n)
            .map(|i| 0.5 * (1.0 - (2.0 * PI * f_cycle * i as f64 / fs).cos()))
            .collect();
        let mut out = BTreeMap::new();
        let noisy = |rng: &mut StdRng, v: f64| v + noise.sample(rng);
        if self.flex {
            for (k, finger) in FINGERS.iter().enumerate() {
                let range = 40.0 + 8.0 * k as f64 + rng.random_range(-3.0..3.0);
                let rest = rng.random_range(2.0..8.0);
                let col = closure
                    .iter()
                    .map(|c| noisy(&mut rng, rest + range * c))
                    .collect();
                out.insert(format!("flex_{finger}"), col);
            }
        }
        if self.force {
            for finger in FINGERS {
                let peak = rng.random_range(4.0..12.0);
                let col = closure
                    .iter()
                    .map(|c| noisy(&mut rng, peak * c.powi(3)).max(0.0))
                    .collect();
                out.insert(format!("force_{finger}"), col);
            }
        }
        if self.gyro {
            for (k, axis) in ["x", "y", "z"].iter().enumerate() {
                let amp = 20.0 + 10.0 * k as f64;
                let phase = rng.random_range(0.0..2.0 * PI);
                let col = (0..n)
                    .map(|i| {
                        let t = i as f64 / fs;
                        let slow = amp * (2.0 * PI * 0.2 * t + phase).sin();
                        let tremor = self
                            .tremor_hz
                            .map_or(0.0, |f| 6.0 * (2.0 * PI * f * t + phase).sin());
                        noisy(&mut rng, slow + tremor)
                    })
                    .collect();
                out.insert(format!("gyro_{axis}"), col);
            }
        }
        if self.accel {
            for (k, axis) in ["x", "y", "z"].iter().enumerate() {
                let g = if k == 2 { 9.81 } else { 0.0 };
                let col = closure
                    .iter()
                    .map(|c| noisy(&mut rng, g + 0.5 * (c - 0.5)))
                    .collect();
                out.insert(format!("accel_{axis}"), col);
            }
        }
        out
    }

    /// The game as the JSON body a phone would post (values with 3
    /// decimals, as a glove's firmware reports them).
    pub fn submission_json(&self, game: &str, score: f64) -> String {
        let channels = self.channels();
        let mut s = String::with_capacity(channels.len() * self.samples() * 8 + 256);
        write!(
            s,
            r#"{{"game":{},"score":{score},"sample_rate_hz":{},"device":{{"glove_id":"G-SIM","firmware":"1.0.0","hand":"right"}},"channels":{{"#,
            serde_json::to_string(game).expect("a string serialises"),
            self.sample_rate_hz
        )
        .expect("writing to a String cannot fail");
        for (i, (name, col)) in channels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            write!(s, "\"{name}\":[").expect("writing to a String cannot fail");
            for (j, v) in col.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                write!(s, "{v:.3}").expect("writing to a String cannot fail");
            }
            s.push(']');
        }
        s.push_str("}}");
        s
    }

    /// The same submission as [`GameSpec::submission_json`], as CBOR
    /// (`application/cbor`): the same fields, and every sample the value of
    /// its three-decimal JSON text, written as `columns` says.
    pub fn submission_cbor(&self, game: &str, score: f64, columns: CborColumns) -> Vec<u8> {
        const CANNOT_FAIL: &str = "writing to a Vec cannot fail";
        let channels = self.channels();
        let samples = self.samples();
        let per_sample = match columns {
            CborColumns::Float32 => 4,
            CborColumns::Float64 => 9,
        };
        let mut e = minicbor::Encoder::new(Vec::with_capacity(
            channels.len() * (samples * per_sample + 32) + 256,
        ));
        e.map(5)
            .and_then(|e| e.str("game")?.str(game))
            .and_then(|e| e.str("score")?.f64(score))
            .and_then(|e| e.str("sample_rate_hz")?.f64(self.sample_rate_hz))
            .and_then(|e| {
                e.str("device")?
                    .map(3)?
                    .str("glove_id")?
                    .str("G-SIM")?
                    .str("firmware")?
                    .str("1.0.0")?
                    .str("hand")?
                    .str("right")
            })
            .and_then(|e| e.str("channels")?.map(channels.len() as u64))
            .expect(CANNOT_FAIL);
        let mut typed = Vec::with_capacity(samples * 4);
        for (name, col) in &channels {
            e.str(name).expect(CANNOT_FAIL);
            let values = col.iter().map(|v| three_decimals(*v));
            match columns {
                CborColumns::Float32 => {
                    typed.clear();
                    for v in values {
                        typed.extend_from_slice(&(v as f32).to_le_bytes());
                    }
                    e.tag(minicbor::data::Tag::new(TAG_FLOAT32_LE))
                        .and_then(|e| e.bytes(&typed))
                        .expect(CANNOT_FAIL);
                }
                CborColumns::Float64 => {
                    e.array(col.len() as u64).expect(CANNOT_FAIL);
                    for v in values {
                        e.f64(v).expect(CANNOT_FAIL);
                    }
                }
            }
        }
        e.into_writer()
    }
}

/// RFC 8746 tag of a typed array of little-endian float32 values.
const TAG_FLOAT32_LE: u64 = 85;

/// How [`GameSpec::submission_cbor`] writes a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CborColumns {
    /// An RFC 8746 typed array of little-endian float32 values (tag 85):
    /// 4 bytes a sample, the values rounded to float32 (about seven
    /// significant digits, which the server stores anyway).
    Float32,
    /// An array of float64 values: 9 bytes a sample, the values exactly
    /// as in the JSON text.
    Float64,
}

/// The value of `v`'s three-decimal text, as the JSON text carries it.
fn three_decimals(v: f64) -> f64 {
    let text = format!("{v:.3}");
    text.parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_game_and_json_parses() {
        let spec = GameSpec {
            duration_s: 2.0,
            ..GameSpec::standard()
        };
        assert_eq!(spec.channels(), spec.channels());
        let v: serde_json::Value = serde_json::from_str(&spec.submission_json("g", 3.0)).unwrap();
        assert_eq!(v["channels"].as_object().unwrap().len(), 16);
        assert_eq!(v["channels"]["flex_thumb"].as_array().unwrap().len(), 200);
        let other = GameSpec {
            seed: 2,
            ..spec.clone()
        };
        assert_ne!(spec.channels(), other.channels());
    }
}
