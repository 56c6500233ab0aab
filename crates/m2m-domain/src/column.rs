//! The compact binary form of a sensor column, shared by every store.
//!
//! A column is kept as little-endian f32 (4 bytes a sample instead of ~8
//! characters of JSON text), which holds about seven significant digits —
//! far more than any glove sensor resolves. A column that f32 cannot hold to
//! within one part in a million (values beyond f32's range, or so small they
//! would underflow) is kept as f64 instead, so nothing meaningful is lost.
//!
//! Layout: one tag byte (`1` = f32, `2` = f64) followed by the samples.

use std::borrow::Cow;

const TAG_F32: u8 = 1;
const TAG_F64: u8 = 2;
/// Largest relative change that storing as f32 may make to a value.
const F32_TOLERANCE: f64 = 1e-6;

/// A stored column that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt sensor column: {0}")]
pub struct ColumnError(Cow<'static, str>);

impl ColumnError {
    pub(crate) fn new(why: impl Into<Cow<'static, str>>) -> Self {
        ColumnError(why.into())
    }
}

fn fits_f32(v: f64) -> bool {
    let back = f64::from(v as f32);
    back.is_finite() && (back - v).abs() <= F32_TOLERANCE * v.abs()
}

/// Encodes a column in its stored form.
pub fn encode_column(col: &[f64]) -> Vec<u8> {
    if col.iter().all(|&v| fits_f32(v)) {
        let mut out = Vec::with_capacity(1 + 4 * col.len());
        out.push(TAG_F32);
        for &v in col {
            out.extend_from_slice(&(v as f32).to_le_bytes());
        }
        out
    } else {
        let mut out = Vec::with_capacity(1 + 8 * col.len());
        out.push(TAG_F64);
        for &v in col {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// Decodes a stored column.
pub fn decode_column(bytes: &[u8]) -> Result<Vec<f64>, ColumnError> {
    match bytes.split_first() {
        Some((&TAG_F32, data)) if data.len() % 4 == 0 => Ok(data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()),
        Some((&TAG_F64, data)) if data.len() % 8 == 0 => Ok(data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")))
            .collect()),
        Some((&TAG_F32 | &TAG_F64, _)) => {
            Err(ColumnError::new("length is not a whole number of samples"))
        }
        Some(_) => Err(ColumnError::new("unknown encoding tag")),
        None => Err(ColumnError::new("empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_values_round_trip_as_f32() {
        let col = vec![12.5, -0.001, 179.999, 0.0, 1e-3, 3.4e38];
        let enc = encode_column(&col);
        assert_eq!(enc.len(), 1 + 4 * col.len());
        let dec = decode_column(&enc).unwrap();
        for (a, b) in col.iter().zip(&dec) {
            assert!((a - b).abs() <= 1e-6 * a.abs());
        }
    }

    #[test]
    fn values_f32_cannot_hold_keep_f64() {
        for col in [
            vec![1.0, 1e300],
            vec![1.0, 1e-50],
            vec![f64::MAX, -f64::MAX],
        ] {
            let enc = encode_column(&col);
            assert_eq!(enc[0], TAG_F64);
            assert_eq!(decode_column(&enc).unwrap(), col);
        }
    }

    #[test]
    fn corrupt_columns_are_errors() {
        assert!(decode_column(&[]).is_err());
        assert!(decode_column(&[9, 0, 0, 0, 0]).is_err());
        assert!(decode_column(&[TAG_F32, 0, 0, 0]).is_err());
    }
}
