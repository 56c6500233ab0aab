//! The stored column codec of m2m-domain (format 2, lossless).
//!
//! * `decode_column` on arbitrary bytes never panics, never returns more
//!   samples than a column may have (or, for the f32/f64 tags, one sample
//!   per 4 or 8 bytes after the tag), and what it decodes encodes and
//!   decodes again bit for bit.
//! * The bytes as an f64 column (any bits, NaN included) round-trip through
//!   `encode_column`/`decode_column` bit for bit, in at most 8 bytes a
//!   sample after the tag.
//! * The bytes as a decimal column (i32 integers at the scale the first
//!   byte gives, with `-0.0` where the integer is `i32::MIN`) round-trip bit
//!   for bit; from 16 samples on they are stored as decimals, and prefixes
//!   of the encoding (cut in the header, the middle or the last bytes) are
//!   errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_domain::{decode_column, encode_column, MAX_SAMPLES};

const TAG_F32: u8 = 1;
const TAG_F64: u8 = 2;
const TAG_DECIMAL: u8 = 3;

fn bits(col: &[f64]) -> Vec<u64> {
    col.iter().map(|v| v.to_bits()).collect()
}

fn round_trip(col: &[f64]) -> Vec<u8> {
    let encoded = encode_column(col);
    let decoded = decode_column(&encoded).expect("an encoded column decodes");
    assert_eq!(bits(&decoded), bits(col));
    assert!(encoded.len() <= 1 + 8 * col.len());
    encoded
}

fuzz_target!(|data: &[u8]| {
    // 1. Arbitrary bytes as a stored column.
    if let Ok(col) = decode_column(data) {
        match data[0] {
            TAG_F32 => assert_eq!(col.len() * 4, data.len() - 1),
            TAG_F64 => assert_eq!(col.len() * 8, data.len() - 1),
            _ => assert!(col.len() <= MAX_SAMPLES),
        }
        round_trip(&col);
    }

    // 2. The bytes as an f64 column.
    let col: Vec<f64> = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    round_trip(&col);

    // 3. The bytes as a decimal column.
    if let Some((&scale, rest)) = data.split_first() {
        let p = 10f64.powi(i32::from(scale % 10));
        let col: Vec<f64> = rest
            .chunks_exact(4)
            .map(|c| match i32::from_le_bytes(c.try_into().unwrap()) {
                i32::MIN => -0.0,
                m => f64::from(m) / p,
            })
            .collect();
        let encoded = round_trip(&col);
        if col.len() >= 16 {
            assert_eq!(encoded[0], TAG_DECIMAL);
            let n = encoded.len();
            for len in [0, 1, 2, 3, 4, 5, n / 2, n - 2, n - 1] {
                assert!(decode_column(&encoded[..len]).is_err(), "{len} of {n} bytes");
            }
        }
    }
});
