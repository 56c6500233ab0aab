//! Peak counting as `scipy.signal.find_peaks(x, distance=d, prominence=p)`
//! does it: local maxima (plateaus by their middle sample), then the distance
//! rule by decreasing height, then the prominence threshold.

/// Number of peaks of `x` at least `distance` samples apart with a
/// prominence of at least `min_prominence`.
pub(crate) fn count_peaks(x: &[f64], distance: usize, min_prominence: f64) -> usize {
    let mut peaks = local_maxima(x);
    if distance > 1 {
        peaks = select_by_distance(&peaks, x, distance);
    }
    peaks
        .into_iter()
        .filter(|&p| prominence(x, p) >= min_prominence)
        .count()
}

/// Indices of local maxima; a flat peak counts once, at its middle
/// (rounded down), and never at the signal's edges.
fn local_maxima(x: &[f64]) -> Vec<usize> {
    let mut out = Vec::new();
    if x.len() < 3 {
        return out;
    }
    let i_max = x.len() - 1;
    let mut i = 1;
    while i < i_max {
        if x[i - 1] < x[i] {
            let mut ahead = i + 1;
            while ahead < i_max && x[ahead] == x[i] {
                ahead += 1;
            }
            if x[ahead] < x[i] {
                let left = i;
                let right = ahead - 1;
                out.push((left + right) / 2);
                i = ahead;
            }
        }
        i += 1;
    }
    out
}

/// Keeps the highest peaks first and removes any peak closer than
/// `distance` samples to a kept one.
fn select_by_distance(peaks: &[usize], x: &[f64], distance: usize) -> Vec<usize> {
    let n = peaks.len();
    let mut keep = vec![true; n];
    let mut by_height: Vec<usize> = (0..n).collect();
    by_height.sort_by(|&a, &b| x[peaks[a]].total_cmp(&x[peaks[b]]));
    for &j in by_height.iter().rev() {
        if !keep[j] {
            continue;
        }
        let mut k = j;
        while k > 0 && peaks[j] - peaks[k - 1] < distance {
            keep[k - 1] = false;
            k -= 1;
        }
        let mut k = j + 1;
        while k < n && peaks[k] - peaks[j] < distance {
            keep[k] = false;
            k += 1;
        }
    }
    peaks
        .iter()
        .zip(keep)
        .filter_map(|(&p, k)| k.then_some(p))
        .collect()
}

/// Prominence of the peak at `p` over the whole signal (no window).
fn prominence(x: &[f64], p: usize) -> f64 {
    let h = x[p];
    let mut left_min = h;
    for &v in x[..=p].iter().rev() {
        if v > h {
            break;
        }
        left_min = left_min.min(v);
    }
    let mut right_min = h;
    for &v in &x[p..] {
        if v > h {
            break;
        }
        right_min = right_min.min(v);
    }
    h - left_min.max(right_min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_counts_once_at_its_middle() {
        let x = [0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 1.0, 0.0];
        assert_eq!(local_maxima(&x), vec![3]);
    }

    #[test]
    fn edges_are_not_peaks() {
        assert!(local_maxima(&[5.0, 1.0, 0.0, 1.0, 5.0]).is_empty());
    }

    #[test]
    fn distance_keeps_the_higher_peak() {
        // scipy: find_peaks([0,3,0,5,0,0,0,4,0], distance=3) -> [3, 7]
        let x = [0.0, 3.0, 0.0, 5.0, 0.0, 0.0, 0.0, 4.0, 0.0];
        assert_eq!(select_by_distance(&local_maxima(&x), &x, 3), vec![3, 7]);
    }

    #[test]
    fn prominence_uses_the_higher_of_the_two_bases() {
        // scipy: peak_prominences([0, 5, 2, 4, 1], [3]) -> 2
        let x = [0.0, 5.0, 2.0, 4.0, 1.0];
        assert_eq!(prominence(&x, 3), 2.0);
        assert_eq!(count_peaks(&x, 1, 2.0), 2);
        assert_eq!(count_peaks(&x, 1, 2.5), 1);
    }
}
