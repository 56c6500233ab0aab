//! The metrics of one game, shaped as the API returns them.

use serde::{Deserialize, Serialize};

/// Every metric of one game. Absent metrics are `None` and are omitted when
/// serialised (the API never sends `null` for a metric).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// N / fs, in seconds.
    pub duration_s: f64,
    /// Range of motion per finger (P98 − P2 of the flexion), in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rom_deg: Option<Fingers>,
    /// Peak force per finger (P99 of the force), in newtons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_force_n: Option<Fingers>,
    /// Flexion cycles (peaks of the mean flexion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetitions: Option<u32>,
    /// Movement smoothness over the flexion speed profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoothness: Option<Smoothness>,
    /// Time spent in movement segments, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_time_s: Option<f64>,
    /// Tremor from the gyroscope spectrum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tremor: Option<Tremor>,
    /// The game's own score, unchanged.
    pub score: f64,
}

/// A value per finger plus the mean of the fingers present.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fingers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinky: Option<f64>,
    /// Mean of the per-finger values present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

impl Fingers {
    /// The slot of finger `i` in [`crate::FINGERS`] order.
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut Option<f64> {
        match i {
            0 => &mut self.thumb,
            1 => &mut self.index,
            2 => &mut self.middle,
            3 => &mut self.ring,
            _ => &mut self.pinky,
        }
    }

    fn is_empty(&self) -> bool {
        [
            self.thumb,
            self.index,
            self.middle,
            self.ring,
            self.pinky,
            self.mean,
        ]
        .iter()
        .all(Option::is_none)
    }
}

/// Smoothness of the flexion movements.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Smoothness {
    /// Median spectral arc length over the movement segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparc: Option<f64>,
    /// Median log dimensionless jerk over the movement segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldlj: Option<f64>,
    /// Number of movement segments.
    pub movements: u32,
}

/// Tremor measured on the gyroscope.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tremor {
    /// Frequency of the largest PSD bin within 3–12 Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_hz: Option<f64>,
    /// Share of the 0.5–25 Hz power that lies within 3–12 Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<f64>,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

impl Metrics {
    /// Drops every non-finite value, so that whatever an input does to the
    /// arithmetic (values near the f64 limits, say), no NaN or infinity is
    /// ever stored or sent. Each computation already avoids producing them;
    /// this is the last guard.
    pub(crate) fn without_non_finite(mut self) -> Self {
        let clean_fingers = |f: Option<Fingers>| {
            f.map(|f| Fingers {
                thumb: finite(f.thumb),
                index: finite(f.index),
                middle: finite(f.middle),
                ring: finite(f.ring),
                pinky: finite(f.pinky),
                mean: finite(f.mean),
            })
            .filter(|f| !f.is_empty())
        };
        self.rom_deg = clean_fingers(self.rom_deg);
        self.peak_force_n = clean_fingers(self.peak_force_n);
        self.active_time_s = finite(self.active_time_s);
        if let Some(s) = self.smoothness.as_mut() {
            s.sparc = finite(s.sparc);
            s.ldlj = finite(s.ldlj);
        }
        self.tremor = self
            .tremor
            .map(|t| Tremor {
                frequency_hz: finite(t.frequency_hz),
                index: finite(t.index),
            })
            .filter(|t| t.frequency_hz.is_some() || t.index.is_some());
        if !self.duration_s.is_finite() {
            self.duration_s = 0.0;
        }
        self
    }

    /// The value of a headline metric, if this game has it.
    pub fn headline(&self, h: crate::Headline) -> Option<f64> {
        use crate::Headline::*;
        match h {
            RomMean => self.rom_deg.as_ref().and_then(|f| f.mean),
            PeakForceMean => self.peak_force_n.as_ref().and_then(|f| f.mean),
            Repetitions => self.repetitions.map(f64::from),
            Sparc => self.smoothness.as_ref().and_then(|s| s.sparc),
            TremorIndex => self.tremor.as_ref().and_then(|t| t.index),
            Score => Some(self.score),
        }
    }
}
