//! The GameSubmission of the API contract and its validation.

use crate::column::ColumnError;
use crate::error::{FieldError, SubmissionError};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Lowest accepted `sample_rate_hz`.
pub const MIN_SAMPLE_RATE_HZ: f64 = 10.0;
/// Highest accepted `sample_rate_hz`.
pub const MAX_SAMPLE_RATE_HZ: f64 = 1000.0;
/// Most channels in one game.
pub const MAX_CHANNELS: usize = 64;
/// Most samples in one column.
pub const MAX_SAMPLES: usize = 600_000;
const MAX_NAME_CHARS: usize = 64;
/// Earliest accepted `started_at`, in UTC.
pub const EARLIEST_STARTED_AT: &str = "0000-01-01T00:00:00Z";
/// Latest accepted `started_at`, in UTC.
///
/// The two bounds are the range of an RFC 3339 date-time in UTC (a
/// four-digit year). A time with any offset is accepted if its UTC form is
/// within them: outside, neither the API's answers (RFC 3339 in UTC), nor
/// the stores (fixed-width UTC text), nor the ProcessingEvent could carry
/// it, and the game could never be read back.
pub const LATEST_STARTED_AT: &str = "9999-12-31T23:59:59.999999Z";

fn earliest_started_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(EARLIEST_STARTED_AT)
        .expect("a valid constant")
        .with_timezone(&Utc)
}

fn latest_started_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(LATEST_STARTED_AT)
        .expect("a valid constant")
        .with_timezone(&Utc)
}

/// A validated game submission. The only way to get one is
/// [`GameSubmission::from_json`], [`GameSubmission::from_cbor`] (or
/// [`GameSubmission::validate`]), so
/// holding one means every rule of the contract holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GameSubmission {
    game: String,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Device>,
    sample_rate_hz: f64,
    channels: Channels,
}

/// The glove that recorded a game.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glove_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand: Option<Hand>,
}

/// Which hand wore the glove.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hand {
    Left,
    Right,
}

/// Equal-length sensor columns by channel name (names validated).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Channels(BTreeMap<String, Vec<f64>>);

impl Channels {
    /// Samples per column.
    pub fn samples(&self) -> usize {
        self.0.values().next().map_or(0, Vec::len)
    }

    /// Channel names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Columns in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[f64])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The column of `name`.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no channels (never true for a validated game).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Channels {
    /// Columns read back from a store, which were valid when they were
    /// stored. Checks only what the analysis relies on and stored data can
    /// break: 1–[`MAX_CHANNELS`] columns, all of the same length of
    /// 1–[`MAX_SAMPLES`] samples.
    pub fn from_stored(columns: BTreeMap<String, Vec<f64>>) -> Result<Self, ColumnError> {
        let Some(len) = columns.values().next().map(Vec::len) else {
            return Err(ColumnError::new("the game has no columns"));
        };
        if columns.len() > MAX_CHANNELS {
            return Err(ColumnError::new("more columns than a game may have"));
        }
        if !(1..=MAX_SAMPLES).contains(&len) {
            return Err(ColumnError::new(format!("{len} samples a column")));
        }
        if let Some((name, col)) = columns.iter().find(|(_, c)| c.len() != len) {
            let first = columns.keys().next().map_or("", String::as_str);
            return Err(ColumnError::new(format!(
                "columns {first} and {name} differ in length ({len} and {} samples)",
                col.len()
            )));
        }
        Ok(Channels(columns))
    }
}

impl m2m_analysis::ChannelSource for Channels {
    fn channel(&self, name: &str) -> Option<&[f64]> {
        self.get(name)
    }
}

impl GameSubmission {
    /// Parses and validates a submission from JSON text.
    ///
    /// Text that is not JSON is [`SubmissionError::Malformed`]; JSON that
    /// breaks the contract (including numbers that overflow to infinity,
    /// strings or `null` where numbers belong) is
    /// [`SubmissionError::Invalid`] naming the field, e.g. `channels.gyro_x[17]`.
    ///
    /// The columns are scanned by a fast path straight into their
    /// `Vec<f64>` (see `fast_json.rs`); text it does not take, such as any
    /// upload with an error, is parsed again by serde, which names the
    /// field at fault. Both paths give the same result, correctly rounded.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SubmissionError> {
        match crate::fast_json::parse(bytes) {
            Some(raw) => raw.validate(),
            None => Self::from_json_serde(bytes),
        }
    }

    /// The serde path: serde_json's deserializer for the whole text, and
    /// on failure the path-tracking parse that names the field.
    pub(crate) fn from_json_serde(bytes: &[u8]) -> Result<Self, SubmissionError> {
        match serde_json::from_slice::<Object<RawSubmission>>(bytes) {
            Ok(Object(raw)) => raw.validate(),
            Err(e) => Err(locate_error(bytes, e)),
        }
    }

    /// Parses and validates with any serde deserializer (no field paths on
    /// failure: the deserializer's own error).
    pub(crate) fn from_deserializer<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<Self, SubmissionError>, D::Error> {
        Object::<RawSubmission>::deserialize(d).map(|Object(raw)| raw.validate())
    }

    /// Validates already-parsed parts (used where the parts do not come
    /// from JSON text, such as a stored game).
    pub fn validate(
        game: Option<String>,
        score: Option<f64>,
        started_at: Option<String>,
        device: Option<Device>,
        sample_rate_hz: Option<f64>,
        channels: Option<BTreeMap<String, Vec<f64>>>,
    ) -> Result<Self, SubmissionError> {
        RawSubmission {
            game,
            score: score.map(Finite),
            started_at,
            device: device.map(|d| RawDevice {
                glove_id: d.glove_id,
                firmware: d.firmware,
                hand: d.hand.map(|h| match h {
                    Hand::Left => "left".to_owned(),
                    Hand::Right => "right".to_owned(),
                }),
            }),
            sample_rate_hz: sample_rate_hz.map(Finite),
            channels: channels.map(|c| RawChannels(c.into_iter().collect())),
        }
        .validate()
    }

    pub fn game(&self) -> &str {
        &self.game
    }
    pub fn score(&self) -> f64 {
        self.score
    }
    /// When the game was played, if the phone said so (UTC, to the
    /// microsecond, within [`EARLIEST_STARTED_AT`]..=[`LATEST_STARTED_AT`]).
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }
    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }
    pub fn sample_rate_hz(&self) -> f64 {
        self.sample_rate_hz
    }
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Runs the analysis on this game.
    pub fn analyze(&self) -> m2m_analysis::Metrics {
        crate::samples::analyze(self.sample_rate_hz, self.score, &self.channels)
    }

    /// What the analysis takes of this game, its columns moved, not copied.
    pub fn into_samples(self) -> crate::GameSamples {
        crate::GameSamples {
            sample_rate_hz: self.sample_rate_hz,
            score: self.score,
            channels: self.channels,
        }
    }
}

/// The submission as JSON gives it, before the contract's rules are checked.
/// Optional at the serde level so that a missing field is reported by
/// [`RawSubmission::validate`] with the contract's wording.
#[derive(Deserialize)]
pub(crate) struct RawSubmission {
    #[serde(default, deserialize_with = "required")]
    game: Option<String>,
    #[serde(default, deserialize_with = "required")]
    score: Option<Finite>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default, deserialize_with = "optional_object")]
    device: Option<RawDevice>,
    #[serde(default, deserialize_with = "required")]
    sample_rate_hz: Option<Finite>,
    #[serde(default, deserialize_with = "required")]
    pub(crate) channels: Option<RawChannels>,
}

#[derive(Deserialize)]
struct RawDevice {
    #[serde(default)]
    glove_id: Option<String>,
    #[serde(default)]
    firmware: Option<String>,
    #[serde(default)]
    hand: Option<String>,
}

/// A value that must be a JSON object. Serde's derived structs also accept
/// the sequence form (`[game, score, …]` for the fields in order); the
/// contract does not, so a JSON array, string, number or `null` where an
/// object belongs fails with [`EXPECTED_OBJECT`].
struct Object<T>(T);

/// What a value that should be a JSON object is told.
const EXPECTED_OBJECT: &str = "expected an object";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// Deserialises an optional field that, when present and not `null`, must
/// be a JSON object.
fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|Object(t)| t))
}

/// Deserialises a field that, when present, must not be `null`.
fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A JSON number (never `null`, a string or an overflow to infinity).
#[derive(Clone, Copy)]
struct Finite(f64);

struct FiniteVisitor;

impl Visitor<'_> for FiniteVisitor {
    type Value = Finite;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a finite number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Finite, E> {
        if v.is_finite() {
            Ok(Finite(v))
        } else {
            Err(E::custom("not a finite number"))
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Finite, E> {
        Ok(Finite(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Finite, E> {
        Ok(Finite(v as f64))
    }
}

impl<'de> Deserialize<'de> for Finite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_f64(FiniteVisitor)
    }
}

/// One column: a JSON array of finite numbers, parsed straight into
/// `Vec<f64>` (this is the hot path of every upload).
struct Column(Vec<f64>);

impl<'de> Deserialize<'de> for Column {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ColumnVisitor;
        impl<'de> Visitor<'de> for ColumnVisitor {
            type Value = Column;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of finite numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Column, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(1024).min(MAX_SAMPLES));
                while let Some(Finite(x)) = seq.next_element()? {
                    if v.len() == MAX_SAMPLES {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_SAMPLES} samples"
                        )));
                    }
                    v.push(x);
                }
                Ok(Column(v))
            }
        }
        d.deserialize_seq(ColumnVisitor)
    }
}

/// The `channels` object in document order, duplicates kept so that
/// validation can name them.
pub(crate) struct RawChannels(pub(crate) Vec<(String, Vec<f64>)>);

impl<'de> Deserialize<'de> for RawChannels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ChannelsVisitor;
        impl<'de> Visitor<'de> for ChannelsVisitor {
            type Value = RawChannels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawChannels, A::Error> {
                let mut out: Vec<(String, Vec<f64>)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.len() >= MAX_CHANNELS {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_CHANNELS} channels"
                        )));
                    }
                    let Column(col) = map.next_value()?;
                    out.push((name, col));
                }
                Ok(RawChannels(out))
            }
        }
        d.deserialize_map(ChannelsVisitor)
    }
}

/// Turns a serde_json failure into the contract's error: 400 for text that is
/// not JSON, 422 with the field's path for JSON with a wrong value.
///
/// The fast parse does not track paths (that would slow every upload), so on
/// failure the text is parsed again with path tracking to name the field.
fn locate_error(bytes: &[u8], first: serde_json::Error) -> SubmissionError {
    // Syntax first: text that is not JSON is malformed whatever else is
    // wrong with it. Skipping values does not convert numbers, so a number
    // too large for f64 passes here and is reported below as invalid.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return SubmissionError::Malformed(strip_position(&e.to_string()));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return SubmissionError::field("body", EXPECTED_OBJECT);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, Object<RawSubmission>>(&mut de) {
        Ok(_) => return SubmissionError::Malformed(strip_position(&first.to_string())),
        Err(e) => e,
    };
    let message = strip_position(&err.inner().to_string());
    let path = err.path().to_string();
    // A key repeated in one object: serde names it only in its message, and
    // the path is that of the object holding it.
    if let Some(key) = quoted_after(&message, "duplicate field `") {
        let field = if path == "." {
            key
        } else {
            format!("{path}.{key}")
        };
        return SubmissionError::field(field, "appears more than once".to_owned());
    }
    let message = if message.starts_with("number out of range") {
        "not a finite number (out of range)".to_owned()
    } else if message.starts_with("invalid type: ") && message.ends_with(", expected an object") {
        EXPECTED_OBJECT.to_owned()
    } else {
        message
    };
    SubmissionError::field(path, message)
}

/// The name serde quotes after `prefix` in an error message.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

impl RawSubmission {
    pub(crate) fn validate(self) -> Result<GameSubmission, SubmissionError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));

        match &self.game {
            None => err("game", "is required".into()),
            Some(g) if g.is_empty() || g.chars().count() > MAX_NAME_CHARS => {
                err("game", format!("must be 1–{MAX_NAME_CHARS} characters"))
            }
            Some(_) => {}
        }
        if self.score.is_none() {
            err("score", "is required".into());
        }
        match self.sample_rate_hz {
            None => err("sample_rate_hz", "is required".into()),
            Some(Finite(fs)) if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&fs) => err(
                "sample_rate_hz",
                format!("must be between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ}, got {fs}"),
            ),
            Some(_) => {}
        }
        let started_at = match self.started_at.as_deref().map(DateTime::parse_from_rfc3339) {
            None => None,
            Some(Ok(t)) => {
                let t = t.with_timezone(&Utc).trunc_subsecs(6);
                if (earliest_started_at()..=latest_started_at()).contains(&t) {
                    Some(t)
                } else {
                    err(
                        "started_at",
                        format!(
                            "must be from {} to {} in UTC (years 0000–9999), got {}",
                            EARLIEST_STARTED_AT,
                            LATEST_STARTED_AT,
                            t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                        ),
                    );
                    None
                }
            }
            Some(Err(_)) => {
                err("started_at", "must be an RFC 3339 date-time".into());
                None
            }
        };
        let device = self.device.map(|d| {
            for (name, value) in [("glove_id", &d.glove_id), ("firmware", &d.firmware)] {
                if value
                    .as_ref()
                    .is_some_and(|v| v.chars().count() > MAX_NAME_CHARS)
                {
                    err(
                        &format!("device.{name}"),
                        format!("must be at most {MAX_NAME_CHARS} characters"),
                    );
                }
            }
            let hand = match d.hand.as_deref() {
                None => None,
                Some("left") => Some(Hand::Left),
                Some("right") => Some(Hand::Right),
                Some(_) => {
                    err("device.hand", "must be `left` or `right`".into());
                    None
                }
            };
            Device {
                glove_id: d.glove_id,
                firmware: d.firmware,
                hand,
            }
        });
        let channels = match self.channels {
            None => {
                err("channels", "is required".into());
                None
            }
            Some(RawChannels(cols)) => validate_channels(cols, &mut err),
        };

        match (self.game, self.score, self.sample_rate_hz, channels) {
            (Some(game), Some(Finite(score)), Some(Finite(sample_rate_hz)), Some(channels))
                if errors.is_empty() =>
            {
                Ok(GameSubmission {
                    game,
                    score,
                    started_at,
                    device,
                    sample_rate_hz,
                    channels,
                })
            }
            _ => Err(SubmissionError::Invalid(errors)),
        }
    }
}

fn valid_channel_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn validate_channels(
    cols: Vec<(String, Vec<f64>)>,
    err: &mut impl FnMut(&str, String),
) -> Option<Channels> {
    if cols.is_empty() {
        err("channels", format!("must have 1–{MAX_CHANNELS} channels"));
        return None;
    }
    let mut ok = true;
    for (name, col) in &cols {
        if !valid_channel_name(name) {
            err(
                &format!("channels.{name}"),
                format!("channel names are 1–{MAX_NAME_CHARS} characters of a–z, 0–9 and _"),
            );
            ok = false;
        } else if col.is_empty() {
            err(&format!("channels.{name}"), "has no samples".into());
            ok = false;
        } else if let Some(i) = col.iter().position(|v| !v.is_finite()) {
            err(
                &format!("channels.{name}[{i}]"),
                "not a finite number".into(),
            );
            ok = false;
        }
    }
    // The expected length is the most common one, so the error names the
    // odd column out rather than whichever came first.
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, col) in &cols {
        *counts.entry(col.len()).or_default() += 1;
    }
    let expected = counts
        .iter()
        .max_by_key(|(len, n)| (**n, **len))
        .map_or(0, |(len, _)| *len);
    for (name, col) in &cols {
        if col.len() != expected && !col.is_empty() {
            err(
                &format!("channels.{name}"),
                format!("has {} samples, expected {expected}", col.len()),
            );
            ok = false;
        }
    }
    let mut map = BTreeMap::new();
    for (name, col) in cols {
        if map.contains_key(&name) {
            err(&format!("channels.{name}"), "appears more than once".into());
            ok = false;
        }
        map.insert(name, col);
    }
    ok.then_some(Channels(map))
}

/// A submission as a reader other than serde_json gives it (the CBOR one,
/// `submission_cbor.rs`), before the contract's rules are checked: every
/// number already finite (the reader refuses the others, naming the
/// field), the channels in document order with duplicates kept.
/// [`UncheckedSubmission::validate`] runs the same checks as JSON, so both
/// formats keep the same rules and name fields the same way.
pub(crate) struct UncheckedSubmission {
    pub(crate) game: Option<String>,
    pub(crate) score: Option<f64>,
    pub(crate) started_at: Option<String>,
    pub(crate) device: Option<UncheckedDevice>,
    pub(crate) sample_rate_hz: Option<f64>,
    pub(crate) channels: Option<Vec<(String, Vec<f64>)>>,
}

/// The `device` of an [`UncheckedSubmission`].
pub(crate) struct UncheckedDevice {
    pub(crate) glove_id: Option<String>,
    pub(crate) firmware: Option<String>,
    pub(crate) hand: Option<String>,
}

impl UncheckedSubmission {
    /// The shared validation entry point (see the type's doc).
    pub(crate) fn validate(self) -> Result<GameSubmission, SubmissionError> {
        RawSubmission {
            game: self.game,
            score: self.score.map(Finite),
            started_at: self.started_at,
            device: self.device.map(|d| RawDevice {
                glove_id: d.glove_id,
                firmware: d.firmware,
                hand: d.hand,
            }),
            sample_rate_hz: self.sample_rate_hz.map(Finite),
            channels: self.channels.map(RawChannels),
        }
        .validate()
    }
}
