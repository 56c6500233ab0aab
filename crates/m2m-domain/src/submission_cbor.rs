//! The GameSubmission read from CBOR (RFC 8949): the same document as the
//! JSON one, for phones that pay for every byte they send.
//!
//! A column is either a CBOR array of numbers (integers or floats of any
//! width, float16 included, each converted exactly to f64) or an RFC 8746
//! typed array: a byte string of IEEE 754 floats tagged with its element
//! type ([`TAG_FLOAT32_LE`], [`TAG_FLOAT64_LE`], and the big-endian
//! [`TAG_FLOAT32_BE`], [`TAG_FLOAT64_BE`]). A typed array is read straight
//! from the body (the byte string is borrowed, not copied), so it costs
//! about what copying the column costs.
//!
//! The reader only turns CBOR into an [`UncheckedSubmission`]; the rules of
//! the contract are checked by the same code as for JSON. What the reader
//! itself refuses, it refuses as JSON would: bytes that are not one
//! well-formed CBOR item are [`SubmissionError::Malformed`] (HTTP 400), and a
//! value of the wrong shape is [`SubmissionError::Invalid`] naming the field
//! (HTTP 422), e.g. `channels.gyro_x[17]`.

use crate::error::SubmissionError;
use crate::submission::{UncheckedDevice, UncheckedSubmission};
use crate::{GameSubmission, MAX_CHANNELS, MAX_SAMPLES};
use minicbor::data::Type;
use minicbor::Decoder;
use std::borrow::Cow;

/// RFC 8746 tag of a typed array of big-endian float32 values.
pub const TAG_FLOAT32_BE: u64 = 81;
/// RFC 8746 tag of a typed array of big-endian float64 values.
pub const TAG_FLOAT64_BE: u64 = 82;
/// RFC 8746 tag of a typed array of little-endian float32 values (what
/// phones, all little-endian, have in memory).
pub const TAG_FLOAT32_LE: u64 = 85;
/// RFC 8746 tag of a typed array of little-endian float64 values.
pub const TAG_FLOAT64_LE: u64 = 86;
/// RFC 8949 "self-described CBOR" (the magic prefix `d9 d9 f7`), allowed
/// around the document.
const TAG_SELF_DESCRIBED: u64 = 55799;
/// RFC 8949 standard date/time string, allowed around `started_at`.
const TAG_DATE_TIME: u64 = 0;

/// What a value that should be a map is told (the JSON reader's words).
const EXPECTED_OBJECT: &str = "expected an object";

impl GameSubmission {
    /// Parses and validates a submission from CBOR.
    ///
    /// Bytes that are not one well-formed CBOR item are
    /// [`SubmissionError::Malformed`]; CBOR that breaks the contract (a
    /// value of the wrong type, a number that is not finite, a tag that is
    /// not a typed array on a column, and every rule [`Self::from_json`]
    /// checks) is [`SubmissionError::Invalid`] naming the field.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, SubmissionError> {
        match read_document(bytes) {
            Ok(unchecked) => unchecked.validate(),
            Err(Fault::Malformed(message)) => Err(SubmissionError::Malformed(message)),
            // The reader stops at the first value of the wrong shape, before
            // the end of the document: as for JSON, a body that is not
            // well-formed is malformed whatever else is wrong with it.
            Err(Fault::Shape { field, message }) => Err(match well_formed(bytes) {
                Ok(()) => SubmissionError::field(field, message),
                Err(malformed) => SubmissionError::Malformed(malformed),
            }),
        }
    }
}

/// Why reading stopped.
#[derive(Debug)]
enum Fault {
    /// Not well-formed CBOR.
    Malformed(String),
    /// Well-formed, but a value of the wrong shape at `field`.
    Shape { field: String, message: String },
}

impl From<minicbor::decode::Error> for Fault {
    /// Every typed read is preceded by a look at the item's type, so an
    /// error of the decoder itself means the bytes are not CBOR (the input
    /// ends early, a length overflows, text is not UTF-8).
    fn from(e: minicbor::decode::Error) -> Self {
        Fault::Malformed(e.to_string())
    }
}

fn shape(field: impl Into<String>, message: impl Into<String>) -> Fault {
    Fault::Shape {
        field: field.into(),
        message: message.into(),
    }
}

/// "invalid type: a text string, expected a finite number", as serde says
/// it for JSON.
fn wrong_type(field: impl Into<String>, found: Type, expected: &str) -> Fault {
    shape(
        field,
        format!("invalid type: {}, expected {expected}", describe(found)),
    )
}

fn describe(t: Type) -> &'static str {
    match t {
        Type::Bool => "a boolean",
        Type::Null => "null",
        Type::Undefined => "undefined",
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => "an integer",
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => "an integer",
        Type::F16 | Type::F32 | Type::F64 => "a float",
        Type::Simple => "a simple value",
        Type::Bytes | Type::BytesIndef => "a byte string",
        Type::String | Type::StringIndef => "a text string",
        Type::Array | Type::ArrayIndef => "an array",
        Type::Map | Type::MapIndef => "a map",
        Type::Tag => "a tagged value",
        Type::Break | Type::Unknown(_) => "not a value",
    }
}

/// The type of the next item, which must be a value: a stray "break" or a
/// reserved initial byte is malformed.
fn value_type(d: &Decoder<'_>) -> Result<Type, Fault> {
    match d.datatype()? {
        Type::Break => Err(Fault::Malformed(format!(
            "unexpected break at position {}",
            d.position()
        ))),
        Type::Unknown(b) => Err(Fault::Malformed(format!(
            "invalid initial byte {b:#04x} at position {}",
            d.position()
        ))),
        t => Ok(t),
    }
}

/// Whether the bytes are exactly one well-formed CBOR item (checked only
/// after a value of the wrong shape, without recursion).
fn well_formed(bytes: &[u8]) -> Result<(), String> {
    let mut d = Decoder::new(bytes);
    d.skip().map_err(|e| e.to_string())?;
    trailing(&d, bytes.len()).map_err(|f| match f {
        Fault::Malformed(m) => m,
        Fault::Shape { message, .. } => message,
    })
}

fn trailing(d: &Decoder<'_>, len: usize) -> Result<(), Fault> {
    match len - d.position() {
        0 => Ok(()),
        n => Err(Fault::Malformed(format!(
            "{n} bytes after the end of the document at position {}",
            d.position()
        ))),
    }
}

/// Consumes the tag `tag` if it is the next item; says whether it was.
fn take_tag(d: &mut Decoder<'_>, tag: u64) -> Result<bool, Fault> {
    if d.datatype()? != Type::Tag {
        return Ok(false);
    }
    let at = d.position();
    if d.tag()?.as_u64() == tag {
        Ok(true)
    } else {
        d.set_position(at);
        Ok(false)
    }
}

fn read_document(bytes: &[u8]) -> Result<UncheckedSubmission, Fault> {
    let mut d = Decoder::new(bytes);
    take_tag(&mut d, TAG_SELF_DESCRIBED)?;
    let mut sub = UncheckedSubmission {
        game: None,
        score: None,
        started_at: None,
        device: None,
        sample_rate_hz: None,
        channels: None,
    };
    let mut seen = Seen::default();
    read_map(&mut d, "body", |d, key| {
        match key.as_ref() {
            "game" => {
                seen.once("game")?;
                sub.game = Some(text(d, "game")?.into_owned());
            }
            "score" => {
                seen.once("score")?;
                sub.score = Some(finite(d, "score")?);
            }
            "started_at" => {
                seen.once("started_at")?;
                take_tag(d, TAG_DATE_TIME)?;
                sub.started_at = optional_text(d, "started_at")?;
            }
            "device" => {
                seen.once("device")?;
                sub.device = device(d)?;
            }
            "sample_rate_hz" => {
                seen.once("sample_rate_hz")?;
                sub.sample_rate_hz = Some(finite(d, "sample_rate_hz")?);
            }
            "channels" => {
                seen.once("channels")?;
                sub.channels = Some(channels(d)?);
            }
            // Unknown fields are ignored, as in JSON.
            _ => {
                value_type(d)?;
                d.skip()?;
            }
        }
        Ok(())
    })?;
    trailing(&d, bytes.len())?;
    Ok(sub)
}

/// The fields of one map seen so far, to refuse a repeated one as JSON does.
#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn once(&mut self, field: &'static str) -> Result<(), Fault> {
        if self.0.contains(&field) {
            return Err(shape(field, "appears more than once"));
        }
        self.0.push(field);
        Ok(())
    }
}

/// Reads the map at `field` (definite or indefinite length, text keys),
/// calling `entry` with each key and the decoder at its value, which
/// `entry` must consume.
fn read_map<'b>(
    d: &mut Decoder<'b>,
    field: &str,
    mut entry: impl FnMut(&mut Decoder<'b>, Cow<'b, str>) -> Result<(), Fault>,
) -> Result<(), Fault> {
    let found = value_type(d)?;
    if !matches!(found, Type::Map | Type::MapIndef) {
        return Err(shape(field, EXPECTED_OBJECT));
    }
    let len = d.map()?;
    let mut read = 0u64;
    loop {
        match len {
            Some(n) if read == n => break,
            None if d.datatype()? == Type::Break => {
                d.skip()?;
                break;
            }
            _ => {}
        }
        let key = match value_type(d)? {
            Type::String | Type::StringIndef => text(d, field)?,
            other => {
                return Err(shape(
                    field,
                    format!("keys must be text strings, found {}", describe(other)),
                ))
            }
        };
        entry(d, key)?;
        read += 1;
    }
    Ok(())
}

/// A text string (definite or indefinite length), borrowed from the body
/// when it is in one piece.
fn text<'b>(d: &mut Decoder<'b>, field: &str) -> Result<Cow<'b, str>, Fault> {
    match value_type(d)? {
        Type::String => Ok(Cow::Borrowed(d.str()?)),
        Type::StringIndef => {
            let mut s = String::new();
            for chunk in d.str_iter()? {
                s.push_str(chunk?);
            }
            Ok(Cow::Owned(s))
        }
        other => Err(wrong_type(field, other, "a string")),
    }
}

/// Text, or nothing for `null` and `undefined` (JSON's `null`).
fn optional_text(d: &mut Decoder<'_>, field: &str) -> Result<Option<String>, Fault> {
    match value_type(d)? {
        Type::Null | Type::Undefined => {
            d.skip()?;
            Ok(None)
        }
        _ => text(d, field).map(|s| Some(s.into_owned())),
    }
}

/// A number: an integer or a float of any width, as f64.
fn number(d: &mut Decoder<'_>, field: impl FnOnce() -> String) -> Result<f64, Fault> {
    Ok(match value_type(d)? {
        Type::F64 | Type::F32 | Type::F16 => d.f64()?,
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64()? as f64,
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => d.i64()? as f64,
        // A negative integer beyond i64 (CBOR goes to -2^64).
        Type::Int => i128::from(d.int()?) as f64,
        other => return Err(wrong_type(field(), other, "a finite number")),
    })
}

/// A number that must be finite (`score`, `sample_rate_hz`).
fn finite(d: &mut Decoder<'_>, field: &str) -> Result<f64, Fault> {
    let v = number(d, || field.to_owned())?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(shape(field, "not a finite number"))
    }
}

fn device(d: &mut Decoder<'_>) -> Result<Option<UncheckedDevice>, Fault> {
    if matches!(value_type(d)?, Type::Null | Type::Undefined) {
        d.skip()?;
        return Ok(None);
    }
    let mut device = UncheckedDevice {
        glove_id: None,
        firmware: None,
        hand: None,
    };
    let mut seen = Seen::default();
    read_map(d, "device", |d, key| {
        match key.as_ref() {
            "glove_id" => {
                seen.once("device.glove_id")?;
                device.glove_id = optional_text(d, "device.glove_id")?;
            }
            "firmware" => {
                seen.once("device.firmware")?;
                device.firmware = optional_text(d, "device.firmware")?;
            }
            "hand" => {
                seen.once("device.hand")?;
                device.hand = optional_text(d, "device.hand")?;
            }
            _ => {
                value_type(d)?;
                d.skip()?;
            }
        }
        Ok(())
    })?;
    Ok(Some(device))
}

/// The `channels` map in document order, duplicates kept (the shared
/// validation names them).
fn channels(d: &mut Decoder<'_>) -> Result<Vec<(String, Vec<f64>)>, Fault> {
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    read_map(d, "channels", |d, name| {
        if out.len() >= MAX_CHANNELS {
            return Err(shape(
                "channels",
                format!("more than {MAX_CHANNELS} channels"),
            ));
        }
        let col = column(d, &name)?;
        out.push((name.into_owned(), col));
        Ok(())
    })?;
    Ok(out)
}

/// One column: an array of numbers or a typed array of floats. Values that
/// are not finite (CBOR can write NaN and infinities) are kept for the
/// shared validation, which names the first one as JSON's reader would.
fn column(d: &mut Decoder<'_>, name: &str) -> Result<Vec<f64>, Fault> {
    match value_type(d)? {
        Type::Array | Type::ArrayIndef => array_column(d, name),
        Type::Tag => {
            let tag = d.tag()?.as_u64();
            typed_column(d, name, tag)
        }
        other => Err(wrong_type(
            format!("channels.{name}"),
            other,
            "an array of numbers or a typed array of floats",
        )),
    }
}

fn too_many_samples(name: &str) -> Fault {
    shape(
        format!("channels.{name}"),
        format!("more than {MAX_SAMPLES} samples"),
    )
}

fn array_column(d: &mut Decoder<'_>, name: &str) -> Result<Vec<f64>, Fault> {
    let element = |d: &mut Decoder<'_>, i: usize| number(d, || format!("channels.{name}[{i}]"));
    match d.array()? {
        Some(n) => {
            if n > MAX_SAMPLES as u64 {
                return Err(too_many_samples(name));
            }
            // Every element takes at least a byte: a length that the rest
            // of the body cannot hold allocates no more than the body.
            let input = d.input();
            let mut pos = d.position();
            let mut col = Vec::with_capacity((n as usize).min(input.len() - pos));
            for i in 0..n as usize {
                match common_number(input, pos) {
                    Some((v, len)) => {
                        col.push(v);
                        pos += len;
                    }
                    None => {
                        d.set_position(pos);
                        col.push(element(d, i)?);
                        pos = d.position();
                    }
                }
            }
            d.set_position(pos);
            Ok(col)
        }
        None => {
            let mut col = Vec::new();
            while d.datatype()? != Type::Break {
                if col.len() == MAX_SAMPLES {
                    return Err(too_many_samples(name));
                }
                let i = col.len();
                col.push(element(d, i)?);
            }
            d.skip()?;
            Ok(col)
        }
    }
}

/// The commonest elements of a column, a float64, a float32 or an integer
/// from 0 to 23, read in place: the value and its length in bytes. The
/// decoder's methods are not inlined across crates, and going through them
/// (five calls a sample) made arrays of floats slower to read than JSON
/// text. Anything else (`None`) goes through [`number`].
#[inline]
fn common_number(input: &[u8], pos: usize) -> Option<(f64, usize)> {
    match *input.get(pos)? {
        0xfb => {
            let bytes = input.get(pos + 1..pos + 9)?;
            Some((f64::from_be_bytes(bytes.try_into().ok()?), 9))
        }
        0xfa => {
            let bytes = input.get(pos + 1..pos + 5)?;
            Some((f64::from(f32::from_be_bytes(bytes.try_into().ok()?)), 5))
        }
        small @ 0x00..=0x17 => Some((f64::from(small), 1)),
        _ => None,
    }
}

/// An RFC 8746 typed array of floats (the tag already read).
fn typed_column(d: &mut Decoder<'_>, name: &str, tag: u64) -> Result<Vec<f64>, Fault> {
    let field = || format!("channels.{name}");
    let width = match tag {
        TAG_FLOAT32_LE | TAG_FLOAT32_BE => 4,
        TAG_FLOAT64_LE | TAG_FLOAT64_BE => 8,
        _ => {
            return Err(shape(
                field(),
                format!(
                    "tag {tag} is not a typed array of floats this server reads: \
                     {TAG_FLOAT32_LE} (float32, little-endian), {TAG_FLOAT64_LE} (float64, \
                     little-endian), {TAG_FLOAT32_BE} or {TAG_FLOAT64_BE} (big-endian)"
                ),
            ))
        }
    };
    let bytes: Cow<'_, [u8]> = match value_type(d)? {
        Type::Bytes => Cow::Borrowed(d.bytes()?),
        Type::BytesIndef => {
            let mut v = Vec::new();
            for chunk in d.bytes_iter()? {
                v.extend_from_slice(chunk?);
            }
            Cow::Owned(v)
        }
        other => {
            return Err(wrong_type(
                field(),
                other,
                &format!("a byte string in the typed array of tag {tag}"),
            ))
        }
    };
    if !bytes.len().is_multiple_of(width) {
        return Err(shape(
            field(),
            format!(
                "a typed array of tag {tag} holds {width}-byte values, but its {} bytes are not a whole number of them",
                bytes.len()
            ),
        ));
    }
    if bytes.len() / width > MAX_SAMPLES {
        return Err(too_many_samples(name));
    }
    Ok(match tag {
        TAG_FLOAT32_LE => f32s(&bytes, f32::from_le_bytes),
        TAG_FLOAT32_BE => f32s(&bytes, f32::from_be_bytes),
        TAG_FLOAT64_LE => f64s(&bytes, f64::from_le_bytes),
        _ => f64s(&bytes, f64::from_be_bytes),
    })
}

/// Generic over `from` (not a `fn` pointer) so that it is inlined into a
/// loop the compiler can vectorise.
fn f32s(bytes: &[u8], from: impl Fn([u8; 4]) -> f32) -> Vec<f64> {
    let (values, _) = bytes.as_chunks::<4>();
    values.iter().map(|b| f64::from(from(*b))).collect()
}

fn f64s(bytes: &[u8], from: impl Fn([u8; 8]) -> f64) -> Vec<f64> {
    let (values, _) = bytes.as_chunks::<8>();
    values.iter().map(|b| from(*b)).collect()
}
