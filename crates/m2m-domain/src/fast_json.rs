//! The fast path of [`GameSubmission::from_json`](crate::GameSubmission::from_json):
//! a hand-written scanner over the `channels` object that parses each
//! column's numbers straight into its `Vec<f64>`, while serde still parses
//! every other field from its own slice of the text.
//!
//! Nearly all of an upload's bytes are the columns' numbers, and serde_json
//! reads them one byte at a time through its generic deserializer. Here a
//! number is checked against the JSON grammar and its digits gathered in the
//! same pass; a number of at most 19 digits whose value and power of ten
//! are exact in f64 (every value a glove sends: a few decimals) takes one
//! correctly rounded multiplication or division (Clinger's fast path), and
//! any other goes to `fast-float2`, which is correctly rounded too.
//!
//! The fast path accepts only what it fully understands. Anything else
//! (a key with an escape, a column holding something other than finite
//! numbers, a repeated top-level key, text that is not JSON, …) makes it
//! give up with `None`, and the caller parses the whole text again with
//! serde, which builds the same error it always did. So a valid upload pays
//! for one pass, and an invalid one gets exactly today's error.

use crate::submission::{RawChannels, RawSubmission, MAX_CHANNELS, MAX_SAMPLES};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, MapAccess};
use serde::Deserialize;

/// Parses a submission's JSON text, or `None` if the fast path cannot
/// (the text then needs the serde path, which also finds the error).
pub(crate) fn parse(bytes: &[u8]) -> Option<RawSubmission> {
    let mut fields = Fields {
        text: bytes,
        pos: skip_ws(bytes, 0),
        value: None,
        channels: None,
        first: true,
    };
    if bytes.get(fields.pos) != Some(&b'{') {
        return None;
    }
    fields.pos += 1;
    let mut raw =
        RawSubmission::deserialize(de::value::MapAccessDeserializer::new(&mut fields)).ok()?;
    // Only whitespace may follow the object.
    if skip_ws(bytes, fields.pos) != bytes.len() {
        return None;
    }
    raw.channels = Some(RawChannels(fields.channels?));
    Some(raw)
}

/// Why the fast path gives up; never shown to anyone (the serde path
/// builds the error a user sees).
#[derive(Debug)]
struct GiveUp;

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not for the fast path")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

/// The top-level object as a serde map, walked by hand: each value except
/// `channels` is handed to serde_json as its own slice of the text; the
/// `channels` value is scanned here and kept aside.
struct Fields<'a> {
    text: &'a [u8],
    /// Just after the `{` or the last value.
    pos: usize,
    /// The slice of the value whose key was just returned.
    value: Option<&'a [u8]>,
    channels: Option<Columns>,
    first: bool,
}

impl<'de> MapAccess<'de> for &mut Fields<'de> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, GiveUp> {
        loop {
            let text = self.text;
            let mut i = skip_ws(text, self.pos);
            if !self.first {
                match text.get(i) {
                    Some(b'}') => {
                        self.pos = i + 1;
                        return Ok(None);
                    }
                    Some(b',') => i = skip_ws(text, i + 1),
                    _ => return Err(GiveUp),
                }
            } else if text.get(i) == Some(&b'}') {
                self.pos = i + 1;
                return Ok(None);
            }
            self.first = false;
            let (key, after) = plain_string(text, i).ok_or(GiveUp)?;
            i = skip_ws(text, after);
            if text.get(i) != Some(&b':') {
                return Err(GiveUp);
            }
            i = skip_ws(text, i + 1);
            if key == "channels" {
                if self.channels.is_some() {
                    return Err(GiveUp);
                }
                let (channels, end) = scan_channels(text, i).ok_or(GiveUp)?;
                self.channels = Some(channels);
                self.pos = end;
                continue;
            }
            let end = skip_value(text, i).ok_or(GiveUp)?;
            self.value = Some(&text[i..end]);
            self.pos = end;
            return seed
                .deserialize(BorrowedStrDeserializer::<GiveUp>::new(key))
                .map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GiveUp> {
        let slice = self.value.take().ok_or(GiveUp)?;
        let mut de = serde_json::Deserializer::from_slice(slice);
        let value = seed.deserialize(&mut de).map_err(|_| GiveUp)?;
        de.end().map_err(|_| GiveUp)?;
        Ok(value)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// A string at `i` without escapes or control characters (a key or a
/// channel name as phones send them), and the index after its closing quote.
fn plain_string(b: &[u8], i: usize) -> Option<(&str, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = b.get(start..)?.iter().position(|&c| c == b'"')?;
    let raw = &b[start..start + len];
    if raw.iter().any(|&c| c == b'\\' || c < 0x20) {
        return None;
    }
    Some((std::str::from_utf8(raw).ok()?, start + len + 1))
}

/// Deepest nesting the fast path hands to serde_json within one field's
/// value. serde_json refuses a document nested deeper than 128 levels, and
/// a field's value parsed on its own starts one level down: giving up well
/// before that keeps both paths refusing the same texts.
const MAX_DEPTH: usize = 100;

/// The end of the JSON value starting at `i`, found without checking it:
/// serde_json parses exactly that slice afterwards and refuses it if it is
/// not one JSON value.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return None;
                        }
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            ) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The index after the string that starts at `i` (escapes skipped, not
/// checked).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The columns by name, in document order.
type Columns = Vec<(String, Vec<f64>)>;

/// The `channels` object at `i`: each column's numbers straight into its
/// `Vec<f64>`, in document order with duplicates kept (as the serde path
/// keeps them, for validation to name). `None` for anything but an object
/// of at most [`MAX_CHANNELS`] plain names, each an array of at most
/// [`MAX_SAMPLES`] finite numbers.
fn scan_channels(b: &[u8], i: usize) -> Option<(Columns, usize)> {
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out: Columns = Vec::new();
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some((out, i + 1));
    }
    loop {
        if out.len() == MAX_CHANNELS {
            return None;
        }
        let (name, after) = plain_string(b, i)?;
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        // Room for the same number of samples as the previous column.
        let capacity = out.last().map_or(1024, |(_, c)| c.len());
        let (column, after) = scan_column(b, i, capacity)?;
        out.push((name.to_owned(), column));
        i = skip_ws(b, after);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some((out, i + 1)),
            _ => return None,
        }
    }
}

/// One column: an array of finite numbers at `i`, and the index after `]`.
fn scan_column(b: &[u8], i: usize, capacity: usize) -> Option<(Vec<f64>, usize)> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut column = Vec::with_capacity(capacity);
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some((column, i + 1));
    }
    loop {
        if column.len() == MAX_SAMPLES {
            return None;
        }
        let (value, after) = number(b, i)?;
        column.push(value);
        i = after;
        // The common case, `,` right after the number, first.
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Some((column, i + 1)),
            _ => {
                i = skip_ws(b, i);
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b']') => return Some((column, i + 1)),
                    _ => return None,
                }
            }
        }
        if !matches!(b.get(i), Some(b'-' | b'0'..=b'9')) {
            i = skip_ws(b, i);
        }
    }
}

/// Powers of ten that f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A finite JSON number at `start`, correctly rounded to f64, and the index
/// after it. `None` if the text there is not a JSON number or its value is
/// too large for f64 (the serde path then names it).
///
/// The shape a glove sends, an optional `-`, 1–7 integer digits and an
/// optional `.` with 1–7 decimals, is read eight bytes at a time: the
/// digits are found and summed with a few integer operations instead of a
/// branch per character. Every other number goes through [`number_general`].
#[inline]
pub(crate) fn number(b: &[u8], start: usize) -> Option<(f64, usize)> {
    // The eight bytes at the start and the eight after it are loaded at
    // once, and the second taken after a `-` without a branch: loading
    // after the sign was known put a second load on the path from one
    // number's start to the next's, the path that bounds a column's speed.
    let (Some(first), Some(second)) = (load8(b, start), load8(b, start + 1)) else {
        return number_general(b, start);
    };
    let negative = first & 0xFF == u64::from(b'-');
    let take_second = u64::from(negative).wrapping_neg();
    let word = (second & take_second) | (first & !take_second);
    let i = start + usize::from(negative);
    if let Some((value, len)) = short_number(word) {
        return Some((value * SIGN[usize::from(negative)], i + len));
    }
    let int_digits = leading_digits(word);
    // No digit, eight or more, or a leading zero before another digit:
    // the general path decides (and refuses what JSON refuses).
    if int_digits == 0 || int_digits == 8 || (int_digits > 1 && word & 0xFF == u64::from(b'0')) {
        return number_general(b, start);
    }
    let mut mantissa = digits_value(word, int_digits);
    let mut end = i + int_digits;
    let mut fraction = 0;
    if b.get(end) == Some(&b'.') {
        let Some(word) = load8(b, end + 1) else {
            return number_general(b, start);
        };
        fraction = leading_digits(word);
        if fraction == 0 || fraction == 8 {
            return number_general(b, start);
        }
        mantissa = mantissa * POW10_INT[fraction] + digits_value(word, fraction);
        end += 1 + fraction;
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        return number_general(b, start);
    }
    // At most 14 digits (below 2^53) over at most 1e7: both exact, so the
    // one division is correctly rounded.
    // (Through i64, which converts in one instruction, unlike u64.)
    let value = mantissa as i64 as f64 / POW10[fraction];
    Some((value * SIGN[usize::from(negative)], end))
}

/// A number of at most seven characters without its sign (`d`, `ddd.ddd`,
/// …) followed by a character that ends it, all within `word`: its
/// magnitude and its length, read with one classification of the eight
/// bytes and one sum of the digits. `None` for anything else.
#[inline]
fn short_number(word: u64) -> Option<(f64, usize)> {
    let non_digit = non_digits(word);
    let int_digits = (non_digit.trailing_zeros() / 8) as usize;
    if int_digits == 0 || int_digits == 8 || (int_digits > 1 && word & 0xFF == u64::from(b'0')) {
        return None;
    }
    let (digits, fraction, end) = if (word >> (8 * int_digits)) & 0xFF == u64::from(b'.') {
        // Join the decimals to the integer digits over the point.
        let rest = non_digit & !(0xFF << (8 * int_digits));
        let end = (rest.trailing_zeros() / 8) as usize;
        if end == 8 || end == int_digits + 1 {
            return None;
        }
        let low = (1u64 << (8 * int_digits)) - 1;
        let digits = (word & low) | ((word >> 8) & !low);
        (digits, end - int_digits - 1, end)
    } else {
        (word, 0, int_digits)
    };
    if matches!((word >> (8 * end)) as u8, b'e' | b'E') {
        return None;
    }
    let mantissa = digits_value(digits, end - usize::from(fraction > 0));
    // At most seven digits over at most 1e6: exact, one rounding.
    Some((mantissa as i64 as f64 / POW10[fraction], end))
}

/// The top bit of each byte of `word` that is not an ASCII digit, the
/// others clear. Each byte is classified on its own (no carry between
/// bytes), so every non-digit is found, not only the first.
#[inline]
fn non_digits(word: u64) -> u64 {
    let x = word ^ 0x3030_3030_3030_3030;
    // Digits become 0–9; adding 0x76 to the low seven bits reaches 0x80
    // from 10 up, and a byte with its top bit set was no digit to begin with.
    (((x & 0x7F7F_7F7F_7F7F_7F7F) + 0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080
}

/// The sign of a number as a factor (exact, -0 included), by whether it has
/// a `-`: a branch on it would be mispredicted half the time.
const SIGN: [f64; 2] = [1.0, -1.0];

/// Powers of ten as integers, for joining the integer and decimal digits.
const POW10_INT: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// The eight bytes at `i`, little-endian (the first byte lowest).
#[inline]
fn load8(b: &[u8], i: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// How many of the eight bytes in `word`, from the first, are ASCII digits.
#[inline]
fn leading_digits(word: u64) -> usize {
    // A byte's top bit is set if it is below b'0' (the subtraction borrows)
    // or above b'9' (adding 0x46 reaches 0x80). Carries and borrows only
    // run towards later bytes, so the first non-digit is found exactly.
    let non_digit = (word.wrapping_add(0x4646_4646_4646_4646)
        | word.wrapping_sub(0x3030_3030_3030_3030))
        & 0x8080_8080_8080_8080;
    (non_digit.trailing_zeros() / 8) as usize
}

/// The value of the first `n` (1–7) digits of `word`.
#[inline]
fn digits_value(word: u64, n: usize) -> u64 {
    // Move the n digits to the end and fill the front with '0', then sum
    // the eight digits pairwise: 2 → 4 → 8 digits.
    let shift = 8 * (8 - n as u32);
    let word = (word << shift) | (0x3030_3030_3030_3030 >> (64 - shift));
    let word = word.wrapping_sub(0x3030_3030_3030_3030);
    let word = word.wrapping_mul(10).wrapping_add(word >> 8);
    let low = (word & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32));
    let high = ((word >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32));
    (low.wrapping_add(high) >> 32) & 0xFFFF_FFFF
}

/// Any JSON number at `start`, one character at a time; see [`number`].
fn number_general(b: &[u8], start: usize) -> Option<(f64, usize)> {
    let mut i = start;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits_start = i;
    let mut mantissa: u64 = 0;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                i += 1;
            }
        }
        _ => return None,
    }
    let mut digits = i - digits_start;
    let mut exp10: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let fraction_start = i;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        let fraction = i - fraction_start;
        if fraction == 0 {
            return None;
        }
        digits += fraction;
        exp10 = -(fraction as i64);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative_exp = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        let mut exp: i64 = 0;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            // Saturates far beyond any exponent the fast path takes.
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        exp10 += if negative_exp { -exp } else { exp };
    }
    // At most 19 digits cannot wrap a u64; a mantissa up to 2^53 and a
    // power of ten up to 1e22 are exact in f64, so one IEEE operation
    // rounds the exact value once, correctly.
    let value = if digits <= 19 && mantissa <= 1 << 53 && (-22..=22).contains(&exp10) {
        let m = mantissa as f64;
        let v = if exp10 < 0 {
            m / POW10[exp10.unsigned_abs() as usize]
        } else {
            m * POW10[exp10 as usize]
        };
        if negative {
            -v
        } else {
            v
        }
    } else {
        fast_float2::parse::<f64, _>(&b[start..i]).ok()?
    };
    value.is_finite().then_some((value, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => b'0'..=b'9',
            1 => prop::sample::select(b".-eE,] \n+x\0\xff".to_vec()),
            1 => any::<u8>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The eight-bytes-at-a-time path agrees with the one character at
        /// a time path, which takes any JSON number, on anything.
        #[test]
        fn a_number_read_eight_bytes_at_a_time_is_read_as_one_byte_at_a_time(
            text in prop::collection::vec(byte(), 0..20),
        ) {
            let bits = |r: Option<(f64, usize)>| r.map(|(v, n)| (v.to_bits(), n));
            prop_assert_eq!(bits(number(&text, 0)), bits(number_general(&text, 0)));
        }
    }
}
