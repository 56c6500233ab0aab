//! Movement segments of the flexion speed profile and their smoothness
//! (SPARC and LDLJ), as defined in docs/metrics.md ("How a movement is
//! found").

use crate::fft::RealFft;
use crate::stats;

/// What the movement analysis yields for one game.
#[derive(Debug)]
pub(crate) struct Movements {
    pub(crate) movements: u32,
    pub(crate) active_time_s: f64,
    pub(crate) sparc: Option<f64>,
    pub(crate) ldlj: Option<f64>,
}

/// Segments `mean_flex` into movements and measures their smoothness.
/// `None` when the speed profile cannot be computed in finite arithmetic
/// (flexion values near the f64 limits).
pub(crate) fn analyze_movements(mean_flex: &[f64], fs: f64) -> Option<Movements> {
    let speed = speed_profile(mean_flex, fs);
    if speed.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let segments = segments(&speed, fs);
    let mut sparcs = Vec::with_capacity(segments.len());
    let mut ldljs = Vec::with_capacity(segments.len());
    let mut sparc = Sparc::default();
    let mut active = 0.0;
    for &(start, end) in &segments {
        let v = &speed[start..=end];
        active += (v.len() - 1) as f64 / fs;
        sparcs.extend(sparc.compute(v, fs));
        ldljs.extend(ldlj(v, fs));
    }
    Some(Movements {
        movements: segments.len() as u32,
        active_time_s: active,
        sparc: stats::median(&sparcs),
        ldlj: stats::median(&ldljs),
    })
}

/// `|numpy.gradient(x)| · fs`; a single sample has speed 0.
pub(crate) fn speed_profile(x: &[f64], fs: f64) -> Vec<f64> {
    let mut s = gradient(x, fs);
    for v in &mut s {
        *v = v.abs();
    }
    s
}

/// numpy.gradient with unit spacing (central differences inside, one-sided
/// at the ends), times `fs`. A single sample gives 0.
fn gradient(x: &[f64], fs: f64) -> Vec<f64> {
    let n = x.len();
    if n < 2 {
        return vec![0.0; n];
    }
    let mut g = Vec::with_capacity(n);
    g.push((x[1] - x[0]) * fs);
    for w in x.windows(3) {
        // Halve before subtracting so huge but finite inputs stay finite.
        g.push((w[2] / 2.0 - w[0] / 2.0) * fs);
    }
    g.push((x[n - 1] - x[n - 2]) * fs);
    g
}

/// Movement segments as inclusive `(start, end)` sample ranges.
pub(crate) fn segments(speed: &[f64], fs: f64) -> Vec<(usize, usize)> {
    let max = speed.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return Vec::new();
    }
    let core_level = 0.10 * max;
    let rest_level = 0.02 * max;
    let n = speed.len();
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < n {
        if speed[i] < core_level {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && speed[i] >= core_level {
            i += 1;
        }
        let end = i - 1;
        if ((end - start) as f64) / fs < 0.2 {
            continue;
        }
        let left = (0..start)
            .rev()
            .find(|&j| speed[j] < rest_level)
            .unwrap_or(0);
        let right = (end + 1..n)
            .find(|&j| speed[j] < rest_level)
            .unwrap_or(n - 1);
        match out.last_mut() {
            // Cores come in order, so only the last segment can overlap.
            Some(last) if left <= last.1 => last.1 = last.1.max(right),
            _ => out.push((left, right)),
        }
    }
    out
}

/// SPARC with the parameters of docs/metrics.md, keeping one FFT per length.
#[derive(Default)]
struct Sparc {
    fft: Option<(usize, RealFft)>,
    buf: Vec<f64>,
    /// Normalised magnitudes of the bins up to `FC`.
    mag: Vec<f64>,
}

impl Sparc {
    const PADLEVEL: u32 = 4;
    const FC: f64 = 10.0;
    const AMP_TH: f64 = 0.05;

    fn compute(&mut self, v: &[f64], fs: f64) -> Option<f64> {
        let n = v.len();
        let nfft = 1usize << (n.next_power_of_two().trailing_zeros() + Self::PADLEVEL);
        let fft = match &mut self.fft {
            Some((len, fft)) if *len == nfft => fft,
            slot => &mut slot.insert((nfft, RealFft::new(nfft))).1,
        };
        self.buf.clear();
        self.buf.extend_from_slice(v);
        self.buf.resize(nfft, 0.0);
        fft.run(&mut self.buf);
        let spec = &fft.spectrum;
        // The speed is never negative, so the largest magnitude of its
        // spectrum is the DC bin (|Σ v·e^{iθ}| ≤ Σ v): normalising by it
        // equals normalising by the maximum, without computing every bin.
        let dc = spec[0].re;
        if dc <= 0.0 || !dc.is_finite() {
            return None;
        }
        // Bins with f_k = k·fs/nfft ≤ fc, computed as numpy does. For
        // fs < 2·fc they run past Nyquist into the mirrored half.
        let freq = |k: usize| k as f64 * fs / nfft as f64;
        let mut last_bin = ((Self::FC * nfft as f64 / fs).floor() as usize).min(nfft - 1);
        while last_bin + 1 < nfft && freq(last_bin + 1) <= Self::FC {
            last_bin += 1;
        }
        while last_bin > 0 && freq(last_bin) > Self::FC {
            last_bin -= 1;
        }
        self.mag.clear();
        self.mag.extend((0..=last_bin).map(|k| {
            let c = spec[k.min(nfft - k)];
            let (re, im) = (c.re / dc, c.im / dc);
            (re * re + im * im).sqrt()
        }));
        let mag = &self.mag;
        let first = mag.iter().position(|&m| m >= Self::AMP_TH)?;
        let last = mag.iter().rposition(|&m| m >= Self::AMP_TH)?;
        if last <= first {
            return None;
        }
        let span = freq(last) - freq(first);
        let mut arc = 0.0;
        for k in first + 1..=last {
            let df = (freq(k) - freq(k - 1)) / span;
            let dm = mag[k] - mag[k - 1];
            arc += (df * df + dm * dm).sqrt();
        }
        Some(-arc)
    }
}

/// Log dimensionless jerk of one segment's speed `v`; `None` when the jerk
/// integral is 0.
fn ldlj(v: &[f64], fs: f64) -> Option<f64> {
    let n = v.len();
    if n < 2 {
        return None;
    }
    let duration = (n - 1) as f64 / fs;
    let peak = v.iter().copied().fold(0.0, f64::max);
    let jerk = gradient(&gradient(v, fs), fs);
    let sq: Vec<f64> = jerk.iter().map(|j| j * j).collect();
    let integral = trapezoid(&sq, 1.0 / fs);
    if integral <= 0.0 || peak <= 0.0 {
        return None;
    }
    Some(-(duration.powi(3) / (peak * peak) * integral).ln())
}

fn trapezoid(y: &[f64], dx: f64) -> f64 {
    y.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() * dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_numpy() {
        // numpy.gradient([1, 2, 4, 7, 11]) = [1, 1.5, 2.5, 3.5, 4]
        assert_eq!(
            gradient(&[1.0, 2.0, 4.0, 7.0, 11.0], 1.0),
            vec![1.0, 1.5, 2.5, 3.5, 4.0]
        );
        assert_eq!(gradient(&[3.0], 100.0), vec![0.0]);
    }

    #[test]
    fn short_bursts_are_not_cores() {
        // fs = 10: a core needs (k − 1)/10 ≥ 0.2, so k ≥ 3 samples.
        let s = [0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 10.0, 10.0, 10.0, 0.0];
        assert_eq!(segments(&s, 10.0), vec![(5, 9)]);
    }

    #[test]
    fn overlapping_extensions_merge_and_touching_ones_do_not() {
        // Two cores separated by one resting sample share it: merged.
        let s = [0.0, 10.0, 10.0, 10.0, 0.0, 10.0, 10.0, 10.0, 0.0];
        assert_eq!(segments(&s, 10.0), vec![(0, 8)]);
        // Touching segments (0..=4 and 5..=9) stay apart.
        let s = [0.0, 10.0, 10.0, 10.0, 0.0, 0.0, 10.0, 10.0, 10.0, 0.0];
        assert_eq!(segments(&s, 10.0), vec![(0, 4), (5, 9)]);
    }

    #[test]
    fn constant_signal_has_no_segments() {
        assert!(segments(&speed_profile(&[4.0; 50], 50.0), 50.0).is_empty());
    }
}
