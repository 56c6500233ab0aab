//! The game analysis of m2m: turns one game's glove data into the metrics
//! defined in docs/metrics.md, and a user's processed games into
//! their progress; for the therapist side (docs/therapists.md), a patient's
//! adherence days and flags, and the downsampling of a game's samples for
//! plots.
//!
//! This crate is pure computation. It performs no I/O, holds no global state
//! that outlives a call (FFT plans are cached per thread, see [`fft`]), and
//! never returns NaN or infinity: a value that cannot be computed is absent.

mod adherence;
mod fft;
mod flags;
mod lttb;
mod metrics;
mod movement;
mod peaks;
mod progress;
mod stats;
mod tremor;

pub use adherence::{adherence, day_start, AdherenceDay};
pub use flags::{flags, DECLINE_FRACTION, DECLINE_MIN_GAMES, DECLINE_WINDOW, INACTIVE_AFTER};
pub use lttb::lttb_indices;
pub use metrics::{Fingers, Metrics, Smoothness, Tremor};
pub use progress::{
    progress, Direction, Headline, MetricProgress, Progress, ProgressGame, SeriesPoint,
};

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// The version of the metric definitions: every metric in docs/metrics.md,
/// its value, name and meaning. Each stored result carries the version that
/// made it (docs/data-lifecycle.md, "Results that can be recomputed").
///
/// Bump it whenever any metric's definition changes, then regenerate the
/// golden file with `M2M_BLESS=1 cargo test -p m2m-analysis --test golden`:
/// that test fails when the analysis of the reference fixtures changes and
/// this number does not. `m2m reprocess` then recomputes the stored games.
pub const ALGORITHM_VERSION: u32 = 1;

/// The version of the JSON shape of a game's metrics object (the OpenAPI
/// schema `Metrics`, docs/metrics.md). Version 1 was closed (no property
/// beyond those listed); version 2 is open: a new metric may appear and
/// clients ignore the metrics they do not know. Independent of
/// [`ALGORITHM_VERSION`]: a new metric bumps both, a changed formula only
/// the algorithm's.
pub const METRICS_SCHEMA_VERSION: u32 = 2;

/// The five fingers, in the order metrics list them.
pub const FINGERS: [&str; 5] = ["thumb", "index", "middle", "ring", "pinky"];

/// Where the analysis finds a game's columns by channel name.
///
/// A trait rather than a concrete map so callers can analyse whatever
/// container they already hold (a parsed submission, a stored game) without
/// copying the samples.
pub trait ChannelSource {
    /// The samples of `name`, if the game has that channel.
    fn channel(&self, name: &str) -> Option<&[f64]>;
}

impl ChannelSource for BTreeMap<String, Vec<f64>> {
    fn channel(&self, name: &str) -> Option<&[f64]> {
        self.get(name).map(Vec::as_slice)
    }
}

impl<S: BuildHasher> ChannelSource for HashMap<String, Vec<f64>, S> {
    fn channel(&self, name: &str) -> Option<&[f64]> {
        self.get(name).map(Vec::as_slice)
    }
}

/// One game as the analysis sees it.
#[derive(Clone, Copy)]
pub struct Recording<'a> {
    /// Samples per second of every column (validated to 10–1000 upstream;
    /// the analysis only needs it positive and finite).
    pub sample_rate_hz: f64,
    /// Length of every column (all columns have the same length).
    pub samples: usize,
    /// The game's own score, copied into the metrics.
    pub score: f64,
    /// The columns by channel name; unknown names are ignored.
    pub channels: &'a dyn ChannelSource,
}

impl std::fmt::Debug for Recording<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("samples", &self.samples)
            .field("score", &self.score)
            .finish_non_exhaustive()
    }
}

/// Computes every metric of one game.
///
/// A metric whose channels are missing, or that cannot be computed (e.g. no
/// movement to measure smoothness on, see docs/metrics.md), is absent from
/// the result.
pub fn analyze(rec: &Recording<'_>) -> Metrics {
    let fs = rec.sample_rate_hz;
    let flex = finger_columns(rec, "flex");
    let force = finger_columns(rec, "force");

    let rom = per_finger(&flex, |col, scratch| {
        stats::percentile_range(col, 2.0, 98.0, scratch)
    });
    let peak_force = per_finger(&force, |col, scratch| stats::percentile(col, 99.0, scratch));

    let mut metrics = Metrics {
        duration_s: rec.samples as f64 / fs,
        rom_deg: rom,
        peak_force_n: peak_force,
        repetitions: None,
        smoothness: None,
        active_time_s: None,
        tremor: None,
        score: rec.score,
    };

    if !flex.is_empty() {
        let mean_flex = mean_columns(flex.iter().map(|(_, c)| *c), rec.samples);
        if let Some(rom_mean) = metrics.rom_deg.as_ref().and_then(|r| r.mean) {
            let prominence = f64::max(10.0, 0.5 * rom_mean);
            let distance = (0.25 * fs).ceil().max(1.0) as usize;
            metrics.repetitions = Some(peaks::count_peaks(&mean_flex, distance, prominence) as u32);
        }
        if let Some(m) = movement::analyze_movements(&mean_flex, fs) {
            metrics.smoothness = Some(Smoothness {
                sparc: m.sparc,
                ldlj: m.ldlj,
                movements: m.movements,
            });
            metrics.active_time_s = Some(m.active_time_s);
        }
    }

    let gyro: Vec<&[f64]> = ["gyro_x", "gyro_y", "gyro_z"]
        .iter()
        .filter_map(|name| rec.channels.channel(name))
        .collect();
    if !gyro.is_empty() {
        metrics.tremor = tremor::tremor(&gyro, fs);
    }

    metrics.without_non_finite()
}

/// The present `<kind>_<finger>` columns, in finger order.
fn finger_columns<'a>(rec: &Recording<'a>, kind: &str) -> Vec<(usize, &'a [f64])> {
    FINGERS
        .iter()
        .enumerate()
        .filter_map(|(i, finger)| {
            rec.channels
                .channel(&format!("{kind}_{finger}"))
                .filter(|c| !c.is_empty())
                .map(|c| (i, c))
        })
        .collect()
}

/// Applies `f` to each finger's column and adds the mean of the values.
fn per_finger(
    columns: &[(usize, &[f64])],
    f: impl Fn(&[f64], &mut Vec<f64>) -> f64,
) -> Option<Fingers> {
    if columns.is_empty() {
        return None;
    }
    let mut scratch = Vec::new();
    let mut fingers = Fingers::default();
    let mut values = Vec::with_capacity(columns.len());
    for &(i, col) in columns {
        let v = f(col, &mut scratch);
        if v.is_finite() {
            *fingers.slot_mut(i) = Some(v);
            values.push(v);
        }
    }
    fingers.mean = stats::mean(&values);
    Some(fingers)
}

/// Sample-by-sample mean of the columns, computed without overflowing
/// for values near the f64 limits.
fn mean_columns<'a>(columns: impl Iterator<Item = &'a [f64]> + Clone, samples: usize) -> Vec<f64> {
    let count = columns.clone().count() as f64;
    let mut columns = columns;
    // The first column is written, not added to zeros: a zeroed vector of
    // fresh pages is read before it is written, which costs a second page
    // fault a page and a TLB flush on every core. (`0.0 +` keeps the sum
    // as it was: it makes -0.0 into 0.0.)
    let mut out: Vec<f64> = Vec::with_capacity(samples);
    if let Some(first) = columns.next() {
        out.extend(first.iter().take(samples).map(|&x| 0.0 + x / count));
    }
    out.resize(samples, 0.0);
    for col in columns {
        for (o, &x) in out.iter_mut().zip(col) {
            *o += x / count;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The mean as first written: the columns added to zeros.
    fn mean_added_to_zeros(columns: &[Vec<f64>], samples: usize) -> Vec<f64> {
        let count = columns.len() as f64;
        let mut out = vec![0.0; samples];
        for col in columns {
            for (o, &x) in out.iter_mut().zip(col) {
                *o += x / count;
            }
        }
        out
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![Just(-0.0), Just(0.0), -1e6..1e6f64, any::<f64>()]
    }

    proptest! {
        #[test]
        fn the_mean_of_columns_is_the_sum_from_zero_bit_for_bit(
            columns in prop::collection::vec(prop::collection::vec(value(), 0..40), 0..6),
            samples in 0usize..40,
        ) {
            let mean = mean_columns(columns.iter().map(Vec::as_slice), samples);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&mean), bits(&mean_added_to_zeros(&columns, samples)));
        }
    }
}
