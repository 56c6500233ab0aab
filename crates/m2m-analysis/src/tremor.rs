//! Tremor from the gyroscope: Welch PSD (scipy.signal.welch's defaults but
//! the segment length), summed over the axes present.

use crate::fft::RealFft;
use crate::metrics::Tremor;

const BAND: (f64, f64) = (3.0, 12.0);
const TOTAL_LOW: f64 = 0.5;
const TOTAL_HIGH: f64 = 25.0;

/// Tremor frequency and index of the gyro axes (all the same length).
/// `None` when the spectrum cannot be computed in finite arithmetic.
pub(crate) fn tremor(axes: &[&[f64]], fs: f64) -> Option<Tremor> {
    let psd = summed_welch_psd(axes, fs)?;
    let freq = psd_frequencies(axes[0].len(), fs);
    let in_band = |f: f64| (BAND.0..=BAND.1).contains(&f);
    let upper = TOTAL_HIGH.min(fs / 2.0);
    let in_total = |f: f64| (TOTAL_LOW..=upper).contains(&f);

    let mut band_sum = 0.0;
    let mut total_sum = 0.0;
    let mut best: Option<(usize, f64)> = None;
    for (k, (&p, &f)) in psd.iter().zip(&freq).enumerate() {
        if in_band(f) {
            band_sum += p;
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((k, p));
            }
        }
        if in_total(f) {
            total_sum += p;
        }
    }
    let frequency_hz = best.filter(|&(_, p)| p > 0.0).map(|(k, _)| freq[k]);
    let index = (total_sum > 0.0).then(|| band_sum / total_sum);
    Some(Tremor {
        frequency_hz,
        index,
    })
}

/// Welch segment length: the smallest power of two ≥ 2·fs, or the whole
/// signal if it is shorter.
fn segment_len(n: usize, fs: f64) -> usize {
    let target = (2.0 * fs).ceil().max(1.0) as usize;
    target.next_power_of_two().min(n)
}

/// Frequencies of the one-sided PSD bins, as scipy's `rfftfreq(nperseg, 1/fs)`.
fn psd_frequencies(n: usize, fs: f64) -> Vec<f64> {
    let nperseg = segment_len(n, fs);
    let val = 1.0 / (nperseg as f64 * (1.0 / fs));
    (0..=nperseg / 2).map(|k| k as f64 * val).collect()
}

/// The PSD of every axis, summed bin by bin; `None` if any bin is not finite.
fn summed_welch_psd(axes: &[&[f64]], fs: f64) -> Option<Vec<f64>> {
    let n = axes.first()?.len();
    if n == 0 {
        return None;
    }
    let nperseg = segment_len(n, fs);
    let step = nperseg - nperseg / 2;
    let segments = (n - nperseg) / step + 1;
    // Periodic Hann window (scipy's get_window('hann', m) with m ≤ 1 is [1]).
    let window: Vec<f64> = if nperseg == 1 {
        vec![1.0]
    } else {
        (0..nperseg)
            .map(|j| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * j as f64 / nperseg as f64).cos())
            .collect()
    };
    let win_power: f64 = window.iter().map(|w| w * w).sum();
    let mut fft = RealFft::new(nperseg);
    let mut buf = vec![0.0; nperseg];
    let mut psd = vec![0.0; nperseg / 2 + 1];
    for axis in axes {
        for s in 0..segments {
            let seg = &axis[s * step..s * step + nperseg];
            let mean = seg.iter().map(|x| x / nperseg as f64).sum::<f64>();
            for ((b, &x), &w) in buf.iter_mut().zip(seg).zip(&window) {
                *b = (x - mean) * w;
            }
            fft.run(&mut buf);
            for (p, c) in psd.iter_mut().zip(&fft.spectrum) {
                *p += c.norm_sqr();
            }
        }
    }
    // Density scaling, averaged over segments; one-sided doubling of every
    // bin but DC and (for an even length) Nyquist.
    let scale = 1.0 / (fs * win_power) / segments as f64;
    let last = psd.len() - 1;
    for (k, p) in psd.iter_mut().enumerate() {
        let doubled = k != 0 && !(nperseg.is_multiple_of(2) && k == last);
        *p *= if doubled { 2.0 * scale } else { scale };
    }
    psd.iter().all(|p| p.is_finite()).then_some(psd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_length_is_next_power_of_two_of_two_seconds() {
        assert_eq!(segment_len(6000, 100.0), 256);
        assert_eq!(segment_len(6000, 50.0), 128);
        assert_eq!(segment_len(6000, 200.0), 512);
        assert_eq!(segment_len(100, 100.0), 100);
    }

    #[test]
    fn pure_tone_is_found_at_its_bin() {
        let fs = 100.0;
        let x: Vec<f64> = (0..3000)
            .map(|i| (2.0 * std::f64::consts::PI * 6.25 * i as f64 / fs).sin())
            .collect();
        let t = tremor(&[&x], fs).unwrap();
        assert_eq!(t.frequency_hz, Some(6.25));
        assert!(t.index.unwrap() > 0.99);
    }

    #[test]
    fn zero_gyro_has_no_tremor_values() {
        let x = vec![0.0; 500];
        let t = tremor(&[&x], 100.0).unwrap();
        assert_eq!(t.frequency_hz, None);
        assert_eq!(t.index, None);
    }
}
