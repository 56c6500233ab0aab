//! The compact binary form of a sensor column, shared by every store.
//!
//! # Format 2 (lossless)
//!
//! A stored column is one tag byte followed by its encoding. The encoder
//! keeps every value bit for bit, so a game is analysed on exactly the
//! values that were uploaded, whether it is analysed at once or read back
//! later. It writes tag 3 when the column is decimal (the usual case: a
//! glove reports each value with a few decimals), tag 5 when it is decimal
//! as float32 values (the same glove's values sent in a CBOR float32 typed
//! array), else tag 4, and tag 2 when none is smaller than 8 bytes a
//! sample (incompressible values, or a column longer than [`MAX_SAMPLES`],
//! which no validated game has).
//!
//! | tag | encoding | written |
//! |---|---|---|
//! | 1 | f32 little-endian, 4 bytes a sample (within one part in a million) | by format 1 only; still read |
//! | 2 | f64 little-endian, 8 bytes a sample | by format 1, and by format 2 as the fallback |
//! | 3 | decimal: integers at a power-of-ten scale, predicted, Rice-coded | by format 2 |
//! | 4 | XOR of consecutive f64 bit patterns (Gorilla, Pelkonen et al., VLDB 2015) | by format 2 |
//! | 5 | decimal float32: as tag 3, each value the float32 nearest to the decimal | by format 2 |
//!
//! Tags are never reused: every tag ever written stays readable, so data
//! directories and MongoDB documents of any version read without migration.
//!
//! ## Tag 3, decimal
//!
//! A column is decimal at scale `k` (0–[`MAX_SCALE`]) when every value `v`
//! is `m / 10^k` for an integer `m` with `|m| ≤ 2^53`, bit for bit: f64
//! division is correctly rounded, so `m as f64 / 10^k` gives back the very
//! value the JSON parser made of the uploaded text. `-0.0` has no integer of
//! its own; its positions are listed in the header and it is stored as 0.
//!
//! ```text
//! 3 | k: u8 | order: u8 (1 or 2) | n: varint | z: varint | z position gaps: varints | bits
//! ```
//!
//! Varints are unsigned LEB128. The negative zeros' positions are given as
//! gaps (the first position, then each position minus the previous one minus
//! one). The bits (least significant first, zero-padded to a byte) hold the
//! residuals `zigzag(m[i] - prediction)`, computed with wrapping arithmetic:
//! the prediction is 0 for the first sample, the first sample for the second,
//! and then `m[i-1]` (order 1) or `2·m[i-1] - m[i-2]` (order 2, for smooth
//! signals). They come in blocks of [`BLOCK`] samples; a block starts with one
//! bit, 1 if every residual in it is 0 (nothing follows), else 0 followed by a
//! 6-bit Rice parameter `p` and each residual `x`: `x >> p` in unary (that
//! many 0 bits, then a 1) and the low `p` bits of `x`; when `x >> p` would be
//! [`ESCAPE`] or more, [`ESCAPE`] 0 bits, 6 bits holding `w - 1` and the `w`
//! significant bits of `x` instead.
//!
//! ## Tag 5, decimal float32
//!
//! The layout of tag 3, and the same integers `m` at a scale `k`, but each
//! value is `m / 10^k` in f64 rounded to float32, bit for bit: what a phone
//! that sends float32 values made of the decimal it measured. Such values
//! are seldom decimal in f64 at a scale of at most [`MAX_SCALE`] (45.123
//! as float32 is 45.12300109863281…), and when they are it is often at a
//! larger scale than here (-16368.73 as float32 is -16368.73046875: scale 8
//! as tag 3, 2 as tag 5). So a column of float32 values takes tag 5 when
//! its scale is smaller than tag 3's, and tag 3 otherwise.
//!
//! ## Tag 4, XOR
//!
//! ```text
//! 4 | n: varint | bits
//! ```
//!
//! The first value's 64 bits, then for each next value the XOR of its bits
//! with the previous value's: `0` if it is zero; `10` and the bits of the
//! previous window if its set bits fit in the window of the last `11`; else
//! `11`, 5 bits of leading zeros (at most 31), 6 bits holding the window's
//! length minus one, and the window's bits.

use std::borrow::Cow;

use crate::submission::MAX_SAMPLES;

const TAG_F32: u8 = 1;
const TAG_F64: u8 = 2;
const TAG_DECIMAL: u8 = 3;
const TAG_XOR: u8 = 4;
const TAG_DECIMAL_F32: u8 = 5;

/// Largest decimal scale tried: nanounits, far beyond any glove's
/// resolution, while `m / 10^k` stays one correctly rounded division.
const MAX_SCALE: u8 = 9;
/// Samples a Rice parameter applies to: short enough to follow a signal
/// whose noise changes, long enough that the 7-bit block header is cheap.
const BLOCK: usize = 128;
/// Quotient at which a residual is written in full instead of in unary, so
/// that a spike costs at most ~70 bits rather than a run of 0s.
const ESCAPE: u32 = 24;
/// Largest integer an f64 holds exactly, and so the largest decimal mantissa.
const MAX_MANTISSA: u64 = 1 << 53;

const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// A stored column that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt sensor column: {0}")]
pub struct ColumnError(Cow<'static, str>);

impl ColumnError {
    pub(crate) fn new(why: impl Into<Cow<'static, str>>) -> Self {
        ColumnError(why.into())
    }
}

fn truncated() -> ColumnError {
    ColumnError::new("truncated")
}

/// Encodes a column in its stored form (format 2, lossless: see the module
/// documentation). Never larger than 8 bytes a sample plus the tag.
pub fn encode_column(col: &[f64]) -> Vec<u8> {
    if col.len() <= MAX_SAMPLES {
        let encoded = encode_decimal(col).unwrap_or_else(|| encode_xor(col));
        if encoded.len() <= 1 + 8 * col.len() {
            return encoded;
        }
    }
    let mut out = Vec::with_capacity(1 + 8 * col.len());
    out.push(TAG_F64);
    for &v in col {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes a stored column of any format.
pub fn decode_column(bytes: &[u8]) -> Result<Vec<f64>, ColumnError> {
    match bytes.split_first() {
        Some((&TAG_F32, data)) if data.len() % 4 == 0 => Ok(data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()),
        Some((&TAG_F64, data)) if data.len() % 8 == 0 => Ok(data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        Some((&TAG_F32 | &TAG_F64, _)) => {
            Err(ColumnError::new("length is not a whole number of samples"))
        }
        Some((&TAG_DECIMAL, data)) => decode_decimal::<false>(data),
        Some((&TAG_DECIMAL_F32, data)) => decode_decimal::<true>(data),
        Some((&TAG_XOR, data)) => decode_xor(data),
        Some(_) => Err(ColumnError::new("unknown encoding tag")),
        None => Err(ColumnError::new("empty")),
    }
}

// ---------------------------------------------------------------- decimal

fn is_negative_zero(v: f64) -> bool {
    v.to_bits() == (-0.0f64).to_bits()
}

/// What a decimal column stores `m` at scale `k` as (`p` = 10^k): the f64
/// nearest to `m / p`, or with `NARROW` (tag 5) the float32 nearest to
/// that.
#[inline]
fn decimal_value<const NARROW: bool>(m: f64, p: f64) -> f64 {
    let v = m / p;
    if NARROW {
        f64::from(v as f32)
    } else {
        v
    }
}

/// `v` as `m` at scale `k`, if [`decimal_value`] gives `v` back bit for bit.
fn mantissa<const NARROW: bool>(v: f64, k: usize) -> Option<i64> {
    let p = POW10[k];
    let t = v * p;
    // The infinities are caught by the comparison.
    if t.is_nan() || t.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    // `t` is within a hair of `m`, so rounding it to the nearest integer
    // gives `m` nearly always, and one division checks it; the neighbours
    // are tried after. (Adding and taking away 1.5 · 2^52 rounds any
    // |t| ≤ 2^53 to an integer without a call to `round`, to within one.)
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let nearest = ((t + ROUND) - ROUND) as i64;
    let fits = |m: i64| {
        m.unsigned_abs() <= MAX_MANTISSA
            && decimal_value::<NARROW>(m as f64, p).to_bits() == v.to_bits()
    };
    if fits(nearest) {
        return Some(nearest);
    }
    [nearest - 1, nearest + 1].into_iter().find(|&m| fits(m))
}

/// The smallest scale at which the whole column is decimal, and its
/// integers (0 for `-0.0`); with `NARROW`, decimal as float32 values
/// (tag 5).
fn decimal_integers<const NARROW: bool>(col: &[f64]) -> Option<(usize, Vec<i64>)> {
    let mut k = 0;
    let mut ints: Vec<i64> = Vec::with_capacity(col.len());
    let mut chunks = col.chunks_exact(LANES);
    for chunk in &mut chunks {
        let chunk: &[f64; LANES] = chunk.try_into().expect("chunks_exact");
        if let Some(found) = small_mantissas::<NARROW>(chunk, k) {
            ints.extend_from_slice(&found);
            continue;
        }
        for &v in chunk {
            k = push_integer::<NARROW>(col, &mut ints, v, k)?;
        }
    }
    for &v in chunks.remainder() {
        k = push_integer::<NARROW>(col, &mut ints, v, k)?;
    }
    Some((k, ints))
}

/// Values converted together by [`small_mantissas`].
const LANES: usize = 4;

/// The integers of `LANES` values at scale `k`, when each is decimal there
/// with an integer below 2^51 in magnitude (`-0.0` giving 0), else `None`.
/// It finds what [`mantissa`] finds, without a branch per value, so that the
/// compiler can convert two values an instruction.
fn small_mantissas<const NARROW: bool>(vs: &[f64; LANES], k: usize) -> Option<[i64; LANES]> {
    // Adding 1.5 · 2^52 to |t| < 2^51 rounds it to the nearest integer,
    // which is then the low bits of the sum.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    const LIMIT: f64 = (1u64 << 51) as f64;
    let p = POW10[k];
    let mut ok = true;
    let mut out = [0i64; LANES];
    for (v, m) in vs.iter().zip(&mut out) {
        let t = v * p;
        let sum = t + ROUND;
        // Both comparisons are false for NaN. `==` takes 0.0 for -0.0,
        // whose integer is 0; any other value must come back bit for bit,
        // and for values other than zero `==` is exactly that.
        ok &= t.abs() < LIMIT;
        ok &= decimal_value::<NARROW>(sum - ROUND, p) == *v;
        *m = (sum.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    }
    ok.then_some(out)
}

/// Pushes the integer of `v` at scale `k`, or at the smallest larger scale
/// that holds it and every value before it (converted again); the scale it
/// used, or `None` if there is none.
fn push_integer<const NARROW: bool>(
    col: &[f64],
    ints: &mut Vec<i64>,
    v: f64,
    mut k: usize,
) -> Option<usize> {
    let m = loop {
        if is_negative_zero(v) {
            break 0;
        }
        if let Some(m) = mantissa::<NARROW>(v, k) {
            break m;
        }
        // This value needs a larger scale: the values before are
        // converted to it again (near 2^53 one may no longer fit).
        k = (k + 1..=usize::from(MAX_SCALE))
            .find(|&k| rescale::<NARROW>(&col[..ints.len()], ints, k))?;
    };
    ints.push(m);
    Some(k)
}

/// Converts `col` to integers at scale `k` into `ints`, if all are decimal
/// there.
fn rescale<const NARROW: bool>(col: &[f64], ints: &mut [i64], k: usize) -> bool {
    col.iter().zip(ints).all(|(&v, m)| {
        let at_k = if is_negative_zero(v) {
            Some(0)
        } else {
            mantissa::<NARROW>(v, k)
        };
        at_k.map(|at_k| *m = at_k).is_some()
    })
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

/// The prediction of sample `i` from the samples before it.
fn predict(ints: &[i64], i: usize, order: u8) -> i64 {
    match i {
        0 => 0,
        1 => ints[0],
        _ if order == 1 => ints[i - 1],
        _ => ints[i - 1].wrapping_mul(2).wrapping_sub(ints[i - 2]),
    }
}

/// The residuals of `ints[start..start + out.len()]` into `out`.
fn block_residuals(ints: &[i64], order: u8, start: usize, out: &mut [u64]) {
    let end = start + out.len();
    // The first two samples have their own predictions; the rest one
    // expression each, which the compiler can vectorise.
    let head = end.min(2).saturating_sub(start);
    for (j, x) in out[..head].iter_mut().enumerate() {
        let i = start + j;
        *x = zigzag(ints[i].wrapping_sub(predict(ints, i, order)));
    }
    let from = start + head;
    let out = &mut out[head..];
    if out.is_empty() {
        return;
    }
    if order == 1 {
        for ((x, &m), &prev) in out.iter_mut().zip(&ints[from..end]).zip(&ints[from - 1..]) {
            *x = zigzag(m.wrapping_sub(prev));
        }
    } else {
        let pairs = ints[from - 1..end].iter().zip(&ints[from - 2..]);
        for ((x, &m), (&prev, &before)) in out.iter_mut().zip(&ints[from..end]).zip(pairs) {
            *x = zigzag(m.wrapping_sub(prev.wrapping_mul(2).wrapping_sub(before)));
        }
    }
}

/// The prediction order whose residuals have the smaller sum of bit
/// lengths (what Rice codes take, plus about one bit a sample), order 1 on
/// a tie: both sums in one pass, without keeping either's residuals.
fn best_order(ints: &[i64]) -> u8 {
    let bits = |d: i64| u64::from(64 - zigzag(d).leading_zeros());
    // The first two samples have the same prediction under both orders.
    let start: u64 = (0..ints.len().min(2))
        .map(|i| bits(ints[i].wrapping_sub(predict(ints, i, 1))))
        .sum();
    let (mut first, mut second) = (start, start);
    for w in ints.windows(3) {
        first += bits(w[2].wrapping_sub(w[1]));
        second += bits(w[2].wrapping_sub(w[1].wrapping_mul(2).wrapping_sub(w[0])));
    }
    if second < first {
        2
    } else {
        1
    }
}

/// Bits of `x` under Rice parameter `p`, escape included.
fn rice_bits(x: u64, p: u32) -> u64 {
    let q = x >> p;
    if q < u64::from(ESCAPE) {
        q + 1 + u64::from(p)
    } else {
        u64::from(ESCAPE + 6 + (64 - x.leading_zeros()))
    }
}

/// The cheapest Rice parameter for a block, or `None` for a block of
/// zeros. The optimum of a geometric-like distribution lies 1–2 below log2
/// of the mean; a few spikes (escaped anyway) pull the mean up, so the
/// parameters from there down to the mean bit length are tried, the
/// smallest of equal cost first.
///
/// Residuals of integers within ±2^53 are below 2^56, so a block's sum
/// fits in a `u64`.
fn block_parameter(block: &[u64]) -> Option<u32> {
    let (mut sum, mut total_bits, mut max) = (0u64, 0u32, 0u64);
    for &x in block {
        sum += x;
        total_bits += 64 - x.leading_zeros();
        max = max.max(x);
    }
    if sum == 0 {
        return None;
    }
    let n = block.len() as u64;
    let by_mean = 64 - (sum / n).leading_zeros();
    let by_bits = total_bits / block.len() as u32 + 1;
    let low = by_mean.min(by_bits).saturating_sub(3);
    let high = by_mean.max(by_bits).min(63);
    (low..=high)
        .map(|p| {
            let bits = if max >> p < u64::from(ESCAPE) {
                // Nothing escapes: the quotients, then a 1 and p bits each.
                block.iter().map(|&x| x >> p).sum::<u64>() + n * u64::from(1 + p)
            } else {
                block.iter().map(|&x| rice_bits(x, p)).sum::<u64>()
            };
            (p, bits)
        })
        .min_by_key(|&(_, bits)| bits)
        .map(|(p, _)| p)
}

/// Tag 3 or tag 5, whichever holds the column at the smaller scale (tag 3
/// on a tie), if either does. Tag 5 can only hold float32 values, and
/// holds any that tag 3 holds at the same scale or a smaller one: values
/// sent as float32 often have a short decimal expansion too (-16368.73 as
/// float32 is -16368.73046875, tag 3 at scale 8), but tag 5 has them at
/// scale 2, with integers a million times smaller.
fn encode_decimal(col: &[f64]) -> Option<Vec<u8>> {
    let plain = decimal_integers::<false>(col);
    let narrow_may_be_smaller = plain.as_ref().is_none_or(|&(k, _)| k > 0)
        && col
            .iter()
            .all(|&v| f64::from(v as f32).to_bits() == v.to_bits());
    if narrow_may_be_smaller {
        if let Some((k, ints)) = decimal_integers::<true>(col) {
            if plain.as_ref().is_none_or(|&(plain_k, _)| k < plain_k) {
                return Some(encode_integers(TAG_DECIMAL_F32, col, k, &ints));
            }
        }
    }
    let (k, ints) = plain?;
    Some(encode_integers(TAG_DECIMAL, col, k, &ints))
}

/// The decimal encoding, tag 3 or 5, of `col` as `ints` at scale `k`.
fn encode_integers(tag: u8, col: &[f64], k: usize, ints: &[i64]) -> Vec<u8> {
    let order = best_order(ints);
    let mut out = Vec::with_capacity(16 + col.len() * 2);
    out.extend_from_slice(&[tag, k as u8, order]);
    write_varint(&mut out, col.len() as u64);
    write_negative_zeros(&mut out, col);
    let mut bits = BitWriter::new(out);
    let mut residuals = [0u64; BLOCK];
    for start in (0..ints.len()).step_by(BLOCK) {
        let block = &mut residuals[..BLOCK.min(ints.len() - start)];
        block_residuals(ints, order, start, block);
        let Some(p) = block_parameter(block) else {
            bits.write(1, 1);
            continue;
        };
        bits.write(u64::from(p) << 1, 7);
        bits.rice_block(block, p);
    }
    bits.finish()
}

/// The header's count of `-0.0` values and their positions as gaps.
fn write_negative_zeros(out: &mut Vec<u8>, col: &[f64]) {
    // Counted first, without a branch a value: most columns have none.
    let count = col
        .iter()
        .fold(0usize, |n, &v| n + usize::from(is_negative_zero(v)));
    write_varint(out, count as u64);
    if count == 0 {
        return;
    }
    let mut next = 0;
    for i in (0..col.len()).filter(|&i| is_negative_zero(col[i])) {
        write_varint(out, (i - next) as u64);
        next = i + 1;
    }
}

/// Reads one block's residuals with Rice parameter `p`.
fn read_rice_block(bits: &mut BitReader<'_>, p: u32, out: &mut [u64]) -> Result<(), ColumnError> {
    let mask = low_bits(p);
    for x in out {
        if bits.avail < 56 {
            bits.refill();
        }
        // The usual case, the whole code among the bits at hand: one
        // trailing-zero count and one shift.
        let zeros = bits.buf.trailing_zeros();
        let len = zeros + 1 + p;
        if zeros < ESCAPE && len < 64 && len <= bits.avail {
            *x = (u64::from(zeros) << p) | ((bits.buf >> (zeros + 1)) & mask);
            bits.consume(len);
            continue;
        }
        let q = bits.read_unary(ESCAPE)?;
        *x = if q < ESCAPE {
            (u64::from(q) << p) | bits.read_long(p)?
        } else {
            let w = bits.read(6)? as u32 + 1;
            bits.read_long(w)?
        };
    }
    Ok(())
}

fn decode_decimal<const NARROW: bool>(data: &[u8]) -> Result<Vec<f64>, ColumnError> {
    let (&k, data) = data.split_first().ok_or_else(truncated)?;
    let (&order, data) = data.split_first().ok_or_else(truncated)?;
    if k > MAX_SCALE {
        return Err(ColumnError::new("decimal scale out of range"));
    }
    if !(1..=2).contains(&order) {
        return Err(ColumnError::new("unknown prediction order"));
    }
    let (n, mut data) = read_varint(data)?;
    let n = sample_count(n)?;
    // Each block takes at least one bit: no more samples than the data can
    // describe are allocated.
    if n.div_ceil(BLOCK) > data.len().saturating_mul(8) {
        return Err(truncated());
    }
    let (zero_count, rest) = read_varint(data)?;
    data = rest;
    // Each position takes at least one byte.
    if zero_count > n as u64 || zero_count > data.len() as u64 {
        return Err(ColumnError::new("more negative zeros than samples"));
    }
    let mut zeros = Vec::with_capacity(zero_count as usize);
    let mut next = 0u64;
    for _ in 0..zero_count {
        let (gap, rest) = read_varint(data)?;
        data = rest;
        let at = next.saturating_add(gap);
        if at >= n as u64 {
            return Err(ColumnError::new("negative zero beyond the last sample"));
        }
        zeros.push(at as usize);
        next = at + 1;
    }

    let scale = POW10[usize::from(k)];
    let mut bits = BitReader::new(data);
    let mut col: Vec<f64> = Vec::with_capacity(n);
    let mut residuals = [0u64; BLOCK];
    // m[i-1] and m[i-2]; before the second sample, m[i-2] is taken as m[0]
    // so that order 2 predicts m[0] for it, as the encoder does.
    let (mut prev, mut before) = (0i64, 0i64);
    while col.len() < n {
        let block = &mut residuals[..BLOCK.min(n - col.len())];
        if bits.read(1)? == 1 {
            block.fill(0);
        } else {
            let p = bits.read(6)? as u32;
            read_rice_block(&mut bits, p, block)?;
        }
        for &x in block.iter() {
            let predicted = if order == 1 {
                prev
            } else {
                prev.wrapping_mul(2).wrapping_sub(before)
            };
            let m = predicted.wrapping_add(unzigzag(x));
            if m.unsigned_abs() > MAX_MANTISSA {
                return Err(ColumnError::new("decimal value out of range"));
            }
            before = if col.is_empty() { m } else { prev };
            prev = m;
            col.push(decimal_value::<NARROW>(m as f64, scale));
        }
    }
    bits.finish()?;

    for i in zeros {
        // Only 0 divides to 0.
        if col[i] != 0.0 {
            return Err(ColumnError::new("a negative zero that is not zero"));
        }
        col[i] = -0.0;
    }
    Ok(col)
}

// ---------------------------------------------------------------- XOR

fn encode_xor(col: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + col.len() * 4);
    out.push(TAG_XOR);
    write_varint(&mut out, col.len() as u64);
    let mut bits = BitWriter::new(out);
    let Some((first, rest)) = col.split_first() else {
        return bits.finish();
    };
    let mut prev = first.to_bits();
    bits.write(prev, 64);
    // The window of the last `11`: leading zeros and length.
    let mut window: Option<(u32, u32)> = None;
    for &v in rest {
        let cur = v.to_bits();
        let xor = cur ^ prev;
        prev = cur;
        if xor == 0 {
            bits.write(0, 1);
            continue;
        }
        let lead = xor.leading_zeros().min(31);
        let trail = xor.trailing_zeros();
        match window {
            Some((wl, wlen)) if lead >= wl && trail >= 64 - wl - wlen => {
                bits.write(0b01, 2);
                bits.write(xor >> (64 - wl - wlen), wlen);
            }
            _ => {
                let len = 64 - lead - trail;
                bits.write(0b11, 2);
                bits.write(u64::from(lead), 5);
                bits.write(u64::from(len - 1), 6);
                bits.write(xor >> trail, len);
                window = Some((lead, len));
            }
        }
    }
    bits.finish()
}

fn decode_xor(data: &[u8]) -> Result<Vec<f64>, ColumnError> {
    let (n, data) = read_varint(data)?;
    let n = sample_count(n)?;
    if n == 0 {
        return if data.is_empty() {
            Ok(Vec::new())
        } else {
            Err(ColumnError::new("trailing bytes"))
        };
    }
    // 64 bits for the first sample, at least one for each other.
    if 64 + (n - 1) > data.len().saturating_mul(8) {
        return Err(truncated());
    }
    let mut bits = BitReader::new(data);
    let mut col = Vec::with_capacity(n);
    let mut prev = bits.read_long(64)?;
    col.push(f64::from_bits(prev));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..n {
        if bits.read(1)? == 1 {
            let (lead, len) = if bits.read(1)? == 0 {
                window.ok_or_else(|| ColumnError::new("a window reused before any was set"))?
            } else {
                let lead = bits.read(5)? as u32;
                let len = bits.read(6)? as u32 + 1;
                if lead + len > 64 {
                    return Err(ColumnError::new("window beyond 64 bits"));
                }
                window = Some((lead, len));
                (lead, len)
            };
            prev ^= bits.read_long(len)? << (64 - lead - len);
        }
        col.push(f64::from_bits(prev));
    }
    bits.finish()?;
    Ok(col)
}

// ---------------------------------------------------------------- bits

fn sample_count(n: u64) -> Result<usize, ColumnError> {
    if n > MAX_SAMPLES as u64 {
        return Err(ColumnError::new(format!(
            "{n} samples, more than {MAX_SAMPLES}"
        )));
    }
    Ok(n as usize)
}

fn low_bits(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1 << n) - 1
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An unsigned LEB128 number and the bytes after it.
fn read_varint(data: &[u8]) -> Result<(u64, &[u8]), ColumnError> {
    let mut v = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return Err(ColumnError::new("number out of range"));
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, &data[i + 1..]));
        }
    }
    Err(truncated())
}

/// Appends bits to a byte vector, least significant bit first.
///
/// The vector is kept at least 8 bytes longer than what is written (zeros),
/// so that a write stores the whole 64-bit accumulator and then counts only
/// the bytes it completed, without a branch on how many that is.
struct BitWriter {
    out: Vec<u8>,
    /// Bytes written.
    pos: usize,
    /// Bits not yet counted in `pos`, fewer than 8 between writes; the bits
    /// above them are 0.
    acc: u64,
    len: u32,
}

/// Bits [`Bits::put`] takes at once.
const SHORT: u32 = 56;

/// A [`BitWriter`] with room made for a number of bytes: its state in
/// locals, which the compiler keeps in registers.
struct Bits<'a> {
    buf: &'a mut [u8],
    pos: usize,
    acc: u64,
    len: u32,
}

impl Bits<'_> {
    /// Writes the low `n` ≤ [`SHORT`] bits of `v` (the bits above must be
    /// 0).
    #[inline]
    fn put(&mut self, v: u64, n: u32) {
        // len < 8, so len + n < 64.
        self.acc |= v << self.len;
        self.len += n;
        self.buf[self.pos..self.pos + 8].copy_from_slice(&self.acc.to_le_bytes());
        let whole = self.len / 8;
        self.pos += whole as usize;
        // whole < 8: the shift is below 64.
        self.acc >>= whole * 8;
        self.len -= whole * 8;
    }

    /// Writes the low `n` ≤ 64 bits of `v` (the bits above must be 0).
    fn put_long(&mut self, v: u64, n: u32) {
        if n > 32 {
            self.put(v & low_bits(32), 32);
            self.put(v >> 32, n - 32);
        } else {
            self.put(v, n);
        }
    }
}

impl BitWriter {
    fn new(out: Vec<u8>) -> Self {
        BitWriter {
            pos: out.len(),
            out,
            acc: 0,
            len: 0,
        }
    }

    /// Runs `write` with room for `bytes` more bytes.
    fn with_room(&mut self, bytes: usize, write: impl FnOnce(&mut Bits<'_>)) {
        let needed = self.pos + bytes + 8;
        if self.out.len() < needed {
            let grown = needed.max(2 * self.out.len());
            self.out.resize(grown, 0);
        }
        let mut bits = Bits {
            buf: &mut self.out,
            pos: self.pos,
            acc: self.acc,
            len: self.len,
        };
        write(&mut bits);
        (self.pos, self.acc, self.len) = (bits.pos, bits.acc, bits.len);
    }

    /// Writes the low `n` ≤ 64 bits of `v` (the bits above must be 0).
    fn write(&mut self, v: u64, n: u32) {
        self.with_room(8, |bits| bits.put_long(v, n));
    }

    /// Writes the Rice codes of `block` with parameter `p`.
    fn rice_block(&mut self, block: &[u64], p: u32) {
        // A code takes at most ESCAPE + 6 + 64 bits: 12 bytes.
        self.with_room(block.len() * 12, |bits| {
            for &x in block {
                let q = x >> p;
                if q < u64::from(ESCAPE) && q as u32 + 1 + p <= SHORT {
                    // q zeros, a one, then the low p bits (least
                    // significant bit first), in one write.
                    let q = q as u32;
                    bits.put(((x & low_bits(p)) << (q + 1)) | (1 << q), q + 1 + p);
                } else if q < u64::from(ESCAPE) {
                    bits.put(1 << q, q as u32 + 1);
                    bits.put_long(x & low_bits(p), p);
                } else {
                    let w = 64 - x.leading_zeros();
                    bits.put(0, ESCAPE);
                    bits.put(u64::from(w - 1), 6);
                    bits.put_long(x, w);
                }
            }
        });
    }

    /// The bytes, the last one padded with 0 bits.
    fn finish(mut self) -> Vec<u8> {
        self.out.truncate(self.pos);
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Reads what [`BitWriter`] wrote; every read past the end is an error.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` not yet in `buf`.
    pos: usize,
    /// Bits not yet read, the next one lowest. Bits above `avail` are either
    /// 0 or the true bits of the bytes that follow.
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            buf: 0,
            avail: 0,
        }
    }

    /// Tops `buf` up to at least 56 bits, or to the end of the data.
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..).and_then(|d| d.first_chunk::<8>()) {
            self.buf |= u64::from_le_bytes(*word) << self.avail;
            let bytes = (63 - self.avail) / 8;
            self.pos += bytes as usize;
            self.avail += 8 * bytes;
        } else {
            while self.avail <= 56 {
                let Some(&b) = self.data.get(self.pos) else {
                    break;
                };
                self.buf |= u64::from(b) << self.avail;
                self.avail += 8;
                self.pos += 1;
            }
        }
    }

    fn consume(&mut self, n: u32) {
        // n < 64 at every call.
        self.buf >>= n;
        self.avail -= n;
    }

    /// Reads `n` ≤ 56 bits.
    fn read(&mut self, n: u32) -> Result<u64, ColumnError> {
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(truncated());
            }
        }
        let v = self.buf & low_bits(n);
        self.consume(n);
        Ok(v)
    }

    /// Reads `n` ≤ 64 bits.
    fn read_long(&mut self, n: u32) -> Result<u64, ColumnError> {
        if n <= 56 {
            self.read(n)
        } else {
            let low = self.read(32)?;
            Ok(low | (self.read(n - 32)? << 32))
        }
    }

    /// Counts 0 bits up to the next 1 (consumed too), or up to `limit`
    /// (< 56) 0 bits, whichever comes first.
    fn read_unary(&mut self, limit: u32) -> Result<u32, ColumnError> {
        if self.avail <= limit {
            self.refill();
        }
        let zeros = self.buf.trailing_zeros().min(self.avail);
        if zeros >= limit {
            self.consume(limit);
            Ok(limit)
        } else if zeros < self.avail {
            self.consume(zeros + 1);
            Ok(zeros)
        } else {
            Err(truncated())
        }
    }

    /// Checks that only the padding of the last byte is left, and that it
    /// is 0.
    fn finish(self) -> Result<(), ColumnError> {
        let left = u64::from(self.avail) + 8 * (self.data.len() - self.pos) as u64;
        if left >= 8 {
            return Err(ColumnError::new("trailing bytes"));
        }
        if self.buf & low_bits(self.avail) != 0 {
            return Err(ColumnError::new("padding that is not zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
