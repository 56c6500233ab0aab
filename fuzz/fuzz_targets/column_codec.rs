//! The stored column codec of m2m-domain.
//!
//! * `decode_column` on arbitrary bytes never panics, and what it decodes
//!   has one sample per 4 (f32) or 8 (f64) bytes after the tag.
//! * An f64 column encodes and decodes, bit for bit (NaN included), to its
//!   values rounded to f32 when stored as f32, which is within one part in a
//!   million of the original, and to the original when stored as f64.
//! * A column of f32 values (as f64) round-trips bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_domain::{decode_column, encode_column};

const TAG_F32: u8 = 1;
const TAG_F64: u8 = 2;

fn bits(col: &[f64]) -> Vec<u64> {
    col.iter().map(|v| v.to_bits()).collect()
}

fuzz_target!(|data: &[u8]| {
    // 1. Arbitrary bytes as a stored column.
    if let Ok(col) = decode_column(data) {
        let width = match data[0] {
            TAG_F32 => 4,
            TAG_F64 => 8,
            tag => panic!("decoded a column with tag {tag}"),
        };
        assert_eq!(col.len() * width, data.len() - 1);
    }

    // 2. The bytes as an f64 column.
    let col: Vec<f64> = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let encoded = encode_column(&col);
    let decoded = decode_column(&encoded).expect("an encoded column decodes");
    match encoded[0] {
        TAG_F32 => {
            assert_eq!(encoded.len(), 1 + 4 * col.len());
            let rounded: Vec<f64> = col.iter().map(|&v| f64::from(v as f32)).collect();
            assert_eq!(bits(&decoded), bits(&rounded));
            for (a, b) in col.iter().zip(&decoded) {
                assert!((a - b).abs() <= 1e-6 * a.abs(), "{a:e} stored as {b:e}");
            }
        }
        TAG_F64 => {
            assert_eq!(encoded.len(), 1 + 8 * col.len());
            assert_eq!(bits(&decoded), bits(&col));
        }
        tag => panic!("encoded with tag {tag}"),
    }

    // 3. The bytes as f32 values: nothing is lost.
    let col: Vec<f64> = data
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    let decoded = decode_column(&encode_column(&col)).expect("an encoded column decodes");
    assert_eq!(bits(&decoded), bits(&col));
});
