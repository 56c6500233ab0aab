//! Order statistics as numpy computes them, and the Theil–Sen slope built
//! on them.

/// Mean of finite values, `None` for an empty slice. Divides before adding so
/// values near the f64 limits do not overflow.
pub(crate) fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    Some(values.iter().map(|v| v / n).sum())
}

/// Median (mean of the two middle values for an even count), `None` if empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut scratch = Vec::new();
    Some(percentile(values, 50.0, &mut scratch))
}

/// Theil–Sen slope of the points `(x, y)`: the median of the slopes
/// `(y_j − y_i) / (x_j − x_i)` over every pair with `x_i ≠ x_j`, as
/// scipy.stats.theilslopes computes it. One unusual point barely moves it,
/// which is why progress and flags use it rather than least squares.
///
/// `None` when no pair has distinct `x`, or when the median is not finite.
/// The points may come in any order: a pair's slope is the same either way
/// round (negating both differences is exact).
pub(crate) fn theil_sen_slope(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(xi, yi)) in points.iter().enumerate() {
        for &(xj, yj) in &points[i + 1..] {
            let dx = xj - xi;
            if dx != 0.0 {
                slopes.push((yj - yi) / dx);
            }
        }
    }
    median(&slopes).filter(|s| s.is_finite())
}

/// The `p`-th percentile with linear interpolation between closest ranks
/// (numpy's default), in O(n) by selection rather than a full sort.
/// `scratch` is reused between calls to avoid an allocation per column.
pub(crate) fn percentile(values: &[f64], p: f64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend_from_slice(values);
    select_percentile(scratch, p)
}

/// `P(hi) − P(lo)` of `values`, sharing one copy of the column.
pub(crate) fn percentile_range(values: &[f64], lo: f64, hi: f64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend_from_slice(values);
    let top = select_percentile(scratch, hi);
    let bottom = select_percentile(scratch, lo);
    // Halve first so that the difference of two huge values stays finite
    // whenever the true range is representable.
    2.0 * (top / 2.0 - bottom / 2.0)
}

/// Percentile of `buf`, which it reorders (any order in, any order out).
fn select_percentile(buf: &mut [f64], p: f64) -> f64 {
    let n = buf.len();
    debug_assert!(n > 0);
    let h = (n - 1) as f64 * (p / 100.0);
    let lo = h.floor() as usize;
    let t = h - lo as f64;
    let (_, &mut a, right) = buf.select_nth_unstable_by(lo, f64::total_cmp);
    if t == 0.0 || right.is_empty() {
        return a;
    }
    // The next order statistic is the smallest value right of `lo`.
    let b = right.iter().copied().fold(f64::INFINITY, f64::min);
    lerp(a, b, t)
}

/// numpy's `_lerp`: exact at both ends and monotonic.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b / 2.0 - a / 2.0;
    let v = if t < 0.5 {
        a + 2.0 * diff * t
    } else {
        b - 2.0 * diff * (1.0 - t)
    };
    if v.is_finite() {
        v
    } else {
        a * (1.0 - t) + b * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        let mut s = Vec::new();
        // numpy.percentile([1,2,3,4,10], [2, 50, 98, 99]) = 1.08, 3.0, 9.52, 9.76
        assert!((percentile(&v, 2.0, &mut s) - 1.08).abs() < 1e-12);
        assert_eq!(percentile(&v, 50.0, &mut s), 3.0);
        assert!((percentile(&v, 98.0, &mut s) - 9.52).abs() < 1e-12);
        assert!((percentile(&v, 99.0, &mut s) - 9.76).abs() < 1e-12);
        assert!((percentile_range(&v, 2.0, 98.0, &mut s) - 8.44).abs() < 1e-12);
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle_values() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn theil_sen_slope_is_the_median_of_pairwise_slopes() {
        // Pairs: (0,0)-(1,1): 1, (0,0)-(2,10): 5, (1,1)-(2,10): 9 → median 5.
        assert_eq!(
            theil_sen_slope(&[(0.0, 0.0), (1.0, 1.0), (2.0, 10.0)]),
            Some(5.0)
        );
        // The same points in another order give the same slope.
        assert_eq!(
            theil_sen_slope(&[(2.0, 10.0), (0.0, 0.0), (1.0, 1.0)]),
            Some(5.0)
        );
        // The pair at the same x is skipped: (0,0)-(1,3) is 3, (0,4)-(1,3) is -1.
        assert_eq!(
            theil_sen_slope(&[(0.0, 0.0), (0.0, 4.0), (1.0, 3.0)]),
            Some(1.0)
        );
    }

    #[test]
    fn theil_sen_slope_needs_two_distinct_x() {
        assert_eq!(theil_sen_slope(&[]), None);
        assert_eq!(theil_sen_slope(&[(1.0, 2.0)]), None);
        assert_eq!(theil_sen_slope(&[(1.0, 2.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn range_of_extreme_values_stays_finite() {
        let v = [-f64::MAX * 0.4, f64::MAX * 0.4];
        let mut s = Vec::new();
        assert!(percentile_range(&v, 2.0, 98.0, &mut s).is_finite());
        assert_eq!(mean(&[f64::MAX, f64::MAX]), Some(f64::MAX));
    }
}
