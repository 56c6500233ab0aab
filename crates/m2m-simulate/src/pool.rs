//! The pool of pre-generated, serialised game bodies.
//!
//! Generating and serialising a minute of glove data costs milliseconds of
//! CPU; doing it per request would make the simulator, not the server, the
//! bottleneck. So a few distinct games are made before the clock starts
//! and cycled through; a submission only clones a [`Bytes`] (a reference
//! count), never copies a body.

use crate::config::{splitmix64, Channel, Format, GameOptions};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use m2m_synth::{CborColumns, GameSpec};
use std::io::Write;

/// Names the phone app uses for its mini-games.
const GAMES: [&str; 4] = ["pinch-garden", "fruit-squeeze", "piano-keys", "rock-climb"];

/// Distinct serialised games, cycled by submission number.
#[derive(Debug, Clone)]
pub struct GamePool {
    bodies: Vec<Bytes>,
    /// Mean size of a body before compression.
    raw_mean: f64,
    gzip: bool,
    format: Format,
}

impl GamePool {
    /// Generates `distinct` games from `seed` (each with its own seed
    /// derived from it, so the same `seed` gives the same bodies), on all
    /// cores, encoded as `format`. With `gzip`, the bodies are stored
    /// compressed.
    pub fn generate(
        opts: &GameOptions,
        seed: u64,
        distinct: usize,
        format: Format,
        gzip: bool,
    ) -> Self {
        let distinct = distinct.max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(distinct);
        let mut made: Vec<(usize, Bytes, usize)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t..distinct)
                            .step_by(threads)
                            .map(|i| {
                                let raw = game_body(opts, seed, i, format);
                                let len = raw.len();
                                let body = if gzip {
                                    gzip_bytes(&raw)
                                } else {
                                    Bytes::from(raw)
                                };
                                (i, body, len)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("game generation does not panic"))
                .collect()
        });
        made.sort_by_key(|(i, _, _)| *i);
        let raw_mean = made.iter().map(|(_, _, n)| *n as f64).sum::<f64>() / made.len() as f64;
        GamePool {
            bodies: made.into_iter().map(|(_, b, _)| b).collect(),
            raw_mean,
            gzip,
            format,
        }
    }

    /// The body of submission number `n` (a cheap reference-counted clone).
    pub fn body(&self, n: u64) -> Bytes {
        self.bodies[(n % self.bodies.len() as u64) as usize].clone()
    }

    /// All distinct bodies, in order.
    pub fn bodies(&self) -> &[Bytes] {
        &self.bodies
    }

    /// How the bodies are encoded.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the bodies are gzip-compressed.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Mean size of a body as sent.
    pub fn wire_mean(&self) -> f64 {
        self.bodies.iter().map(|b| b.len() as f64).sum::<f64>() / self.bodies.len() as f64
    }

    /// Mean size of a body before compression.
    pub fn raw_mean(&self) -> f64 {
        self.raw_mean
    }
}

/// Game number `i` of the pool of `seed`: its own sensor seed, a playing
/// pace between 16 and 32 cycles a minute, a game name and a score;
/// encoded as `format`.
fn game_body(opts: &GameOptions, seed: u64, i: usize, format: Format) -> Vec<u8> {
    let game_seed = splitmix64(seed ^ splitmix64(i as u64));
    let spec = GameSpec {
        duration_s: opts.game_seconds,
        sample_rate_hz: opts.sample_rate_hz,
        flex: opts.channels.contains(&Channel::Flex),
        force: opts.channels.contains(&Channel::Force),
        gyro: opts.channels.contains(&Channel::Gyro),
        accel: opts.channels.contains(&Channel::Accel),
        cycles_per_minute: 16.0 + (game_seed % 17) as f64,
        tremor_hz: opts.tremor_hz,
        noise: opts.noise,
        seed: game_seed,
    };
    let name = GAMES[(game_seed >> 8) as usize % GAMES.len()];
    let score = 100 + (game_seed >> 16) % 1900;
    match format {
        Format::Json => spec.submission_json(name, score as f64).into_bytes(),
        Format::Cbor => spec.submission_cbor(name, score as f64, CborColumns::Float32),
    }
}

fn gzip_bytes(raw: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 3), Compression::default());
    enc.write_all(raw).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn opts() -> GameOptions {
        GameOptions {
            game_seconds: 2.0,
            sample_rate_hz: 50.0,
            channels: vec![Channel::Flex, Channel::Gyro],
            tremor_hz: Some(5.0),
            noise: 0.2,
        }
    }

    #[test]
    fn cycles_through_distinct_valid_games() {
        let pool = GamePool::generate(&opts(), 9, 3, Format::Json, false);
        assert_eq!(pool.bodies().len(), 3);
        assert_ne!(pool.body(0), pool.body(1));
        assert_eq!(pool.body(0), pool.body(3));
        let v: serde_json::Value = serde_json::from_slice(&pool.body(1)).unwrap();
        let channels = v["channels"].as_object().unwrap();
        assert_eq!(channels.len(), 8, "5 flex + 3 gyro");
        assert_eq!(channels["gyro_x"].as_array().unwrap().len(), 100);
        assert_eq!(v["sample_rate_hz"], 50.0);
        assert!(GAMES.contains(&v["game"].as_str().unwrap()));
        assert_eq!(pool.raw_mean(), pool.wire_mean());
    }

    #[test]
    fn gzip_bodies_decompress_to_the_same_games() {
        let plain = GamePool::generate(&opts(), 9, 2, Format::Json, false);
        let zipped = GamePool::generate(&opts(), 9, 2, Format::Json, true);
        assert!(zipped.gzip());
        for (p, z) in plain.bodies().iter().zip(zipped.bodies()) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(&out[..], &p[..]);
        }
        assert!(zipped.wire_mean() < zipped.raw_mean() / 2.0);
    }

    #[test]
    fn cbor_bodies_are_the_same_games_in_float32_typed_arrays() {
        let json = GamePool::generate(&opts(), 9, 2, Format::Json, false);
        let cbor = GamePool::generate(&opts(), 9, 2, Format::Cbor, false);
        assert_eq!(cbor.format(), Format::Cbor);
        for (j, c) in json.bodies().iter().zip(cbor.bodies()) {
            let v: serde_json::Value = serde_json::from_slice(j).unwrap();
            // The map's header (5 pairs), then the first key and value.
            assert_eq!(&c[..6], b"\xa5\x64game");
            let name = v["game"].as_str().unwrap();
            assert_eq!(&c[6..7], &[0x60 + name.len() as u8]);
            assert_eq!(&c[7..7 + name.len()], name.as_bytes());
            // 8 columns of 100 float32 samples: 400 bytes each, under two
            // thirds of the JSON text (about 7 characters a sample).
            assert!(c.len() > 8 * 400 && c.len() < 8 * 400 + 400, "{}", c.len());
            assert!(c.len() * 3 < j.len() * 2, "{} vs {}", c.len(), j.len());
        }
    }
}
