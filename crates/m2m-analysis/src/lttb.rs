//! Largest-Triangle-Three-Buckets downsampling of a game's samples for
//! plots, over every channel at once (docs/therapists.md, "Samples for
//! plots").
//!
//! The exact rule, for `n` samples kept to at most `max_points`:
//!
//! - `x` is the sample index. If `n ≤ max_points` every index is kept.
//! - Otherwise the first (0) and the last (`n − 1`) are kept, and the
//!   `n − 2` samples between them are cut into `B = max_points − 2` buckets:
//!   bucket `i` (from 0) holds the indices `1 + ⌊i·(n−2)/B⌋` up to, not
//!   including, `1 + ⌊(i+1)·(n−2)/B⌋`. This is Steinarsson's bucketing
//!   computed in integers: his `floor(i * every)` with a floating-point
//!   `every = (n−2)/B` sometimes lands one index early (e.g. `n = 17`,
//!   `B = 11`, `i = 11` gives 14.999…), which would make buckets unequal.
//! - Bucket by bucket, from the first, the kept sample is the index `j` that
//!   maximises, over channels, the area of the triangle between the sample
//!   kept before (`a`), the candidate `j`, and the mean point of the next
//!   bucket (the mean index and, per channel, the mean value; the next
//!   bucket of the last bucket is the last sample). Ties keep the earliest
//!   index; two equal scaled areas of the same channel are compared
//!   unscaled, so that rounding in the scaling makes no tie of its own.
//! - Each channel's areas are divided by the channel's range (max − min of
//!   its finite values), so that a spike shows whatever the channel's unit.
//!   (The code divides by half the range, which ranks the same and cannot
//!   overflow.) A constant channel contributes 0.
//! - Non-finite values contribute 0: a channel contributes nothing to a
//!   candidate whose value is not finite, nor to a whole bucket when the
//!   value at `a` is not finite or the next bucket has no finite value (the
//!   mean is over the finite values only); an area that overflows counts
//!   as 0.
//!
//! With one channel this is exactly the classic algorithm: dividing every
//! area by the same positive number does not change which is largest, and
//! the unscaled comparison of equal scaled areas undoes rounding.

/// The indices (ascending, 0 and `n − 1` included) of the samples to keep
/// so that at most `max_points` remain, by the rule of the module
/// documentation.
///
/// `n` is the length of the shortest column (all columns of a game have the
/// same length); no columns means no samples. `max_points` is meant to be at
/// least 3 (the route asks for at least 10); below that only the endpoints
/// fit, as many as `max_points` allows.
///
/// O(n · channels) time: each value is read three times, for its channel's
/// range, in its bucket's mean and as a candidate, column by column.
/// Allocations are per channel, per call and for the result, never per
/// sample.
pub fn lttb_indices(columns: &[&[f64]], max_points: usize) -> Vec<usize> {
    let n = columns.iter().map(|c| c.len()).min().unwrap_or(0);
    if n <= max_points {
        return (0..n).collect();
    }
    if max_points < 3 {
        return [0, n - 1].into_iter().take(max_points).collect();
    }
    let channels: Vec<Channel<'_>> = columns
        .iter()
        .map(|c| Channel::new(&c[..n]))
        .filter(|c| c.half_range > 0.0)
        .collect();
    let buckets = max_points - 2;
    // 1 + ⌊i·(n−2)/B⌋, in u128 so that the product cannot overflow.
    let bound = |i: usize| 1 + ((i as u128 * (n - 2) as u128) / buckets as u128) as usize;

    let mut kept = Vec::with_capacity(max_points);
    kept.push(0);
    // The largest area so far of each candidate of the current bucket;
    // channel by channel, so that each column is read in order.
    let mut areas: Vec<Area> = Vec::with_capacity((n - 2).div_ceil(buckets));
    let mut a = 0;
    for i in 0..buckets {
        let (start, end) = (bound(i), bound(i + 1));
        let (next_start, next_end) = (end, bound(i + 2).min(n));
        let ax = a as f64;
        // The mean of consecutive indices is the midpoint of the first and
        // the last (exact, as the sum divided by the count is).
        let mean_x = (next_start + next_end - 1) as f64 / 2.0;
        areas.clear();
        areas.resize(end - start, Area::ZERO);
        for (channel, c) in channels.iter().enumerate() {
            let ya = c.values[a];
            let Some(mean_y) = finite_mean(&c.values[next_start..next_end]) else {
                continue;
            };
            if !ya.is_finite() {
                continue;
            }
            for ((area, &yj), j) in areas.iter_mut().zip(&c.values[start..end]).zip(start..) {
                // Twice the triangle's area (the classic formula without its
                // factor ½, which changes no comparison). A non-finite `yj`
                // makes it non-finite, and so it counts as 0 as an overflow
                // does.
                let doubled = ((ax - mean_x) * (yj - ya) - (ax - j as f64) * (mean_y - ya)).abs();
                let candidate = Area {
                    scaled: doubled / c.half_range,
                    channel: Some(channel),
                    doubled,
                };
                if candidate.scaled.is_finite() && candidate.beats(area) {
                    *area = candidate;
                }
            }
        }
        let mut best = start;
        let mut best_area = Area {
            scaled: -1.0,
            ..Area::ZERO
        };
        for (area, j) in areas.iter().zip(start..) {
            if area.beats(&best_area) {
                best_area = *area;
                best = j;
            }
        }
        kept.push(best);
        a = best;
    }
    kept.push(n - 1);
    kept
}

/// The largest triangle of a candidate over the channels.
#[derive(Clone, Copy)]
struct Area {
    /// The doubled area divided by the channel's half range.
    scaled: f64,
    /// The channel of the largest area; `None` while no channel has given
    /// more than 0.
    channel: Option<usize>,
    /// The doubled area before scaling.
    doubled: f64,
}

impl Area {
    const ZERO: Area = Area {
        scaled: 0.0,
        channel: None,
        doubled: 0.0,
    };

    /// Whether `self` is strictly larger than `other`. Equal scaled areas of
    /// the same channel are told apart by their unscaled areas: the
    /// division can round two different areas to one value, and with one
    /// channel the classic algorithm, which compares the areas themselves,
    /// would not see a tie there.
    fn beats(&self, other: &Area) -> bool {
        self.scaled > other.scaled
            || (self.scaled == other.scaled
                && (other.channel.is_none() || other.channel == self.channel)
                && self.doubled > other.doubled)
    }
}

/// One column with what every bucket needs of it.
struct Channel<'a> {
    values: &'a [f64],
    /// Half of (max − min) of the finite values; 0 when the channel is
    /// constant or has no finite value, and then it never contributes.
    half_range: f64,
}

impl<'a> Channel<'a> {
    fn new(values: &'a [f64]) -> Self {
        let (min, max) = values
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let half_range = if min <= max {
            max / 2.0 - min / 2.0
        } else {
            0.0
        };
        Channel { values, half_range }
    }
}

/// The mean of the finite values, summed then divided as the classic
/// algorithm does; `None` when there is none or the sum overflows.
fn finite_mean(values: &[f64]) -> Option<f64> {
    let (sum, count) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, c), &v| (s + v, c + 1));
    let mean = sum / count as f64;
    (count > 0 && mean.is_finite()).then_some(mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Steinarsson's LTTB (2013) written as his reference code does it, on
    /// points `(index, value)`, with the bucket bounds in integers (see the
    /// module documentation).
    fn classic_lttb(data: &[f64], threshold: usize) -> Vec<usize> {
        let n = data.len();
        if threshold >= n {
            return (0..n).collect();
        }
        let bucket_start = |i: usize| i * (n - 2) / (threshold - 2) + 1;
        let mut sampled = vec![0];
        let mut a = 0;
        for i in 0..threshold - 2 {
            let avg_range_start = bucket_start(i + 1);
            let avg_range_end = bucket_start(i + 2).min(n);
            let avg_range_length = (avg_range_end - avg_range_start) as f64;
            let mut avg_x = 0.0;
            let mut avg_y = 0.0;
            for (x, y) in data
                .iter()
                .enumerate()
                .take(avg_range_end)
                .skip(avg_range_start)
            {
                avg_x += x as f64;
                avg_y += y;
            }
            avg_x /= avg_range_length;
            avg_y /= avg_range_length;

            let point_a_x = a as f64;
            let point_a_y = data[a];
            let mut max_area = -1.0;
            let mut next_a = 0;
            for (x, y) in data
                .iter()
                .enumerate()
                .take(bucket_start(i + 1))
                .skip(bucket_start(i))
            {
                let area = ((point_a_x - avg_x) * (y - point_a_y)
                    - (point_a_x - x as f64) * (avg_y - point_a_y))
                    .abs()
                    * 0.5;
                if area > max_area {
                    max_area = area;
                    next_a = x;
                }
            }
            sampled.push(next_a);
            a = next_a;
        }
        sampled.push(n - 1);
        sampled
    }

    #[test]
    fn a_small_series_keeps_the_points_worked_by_hand() {
        // n = 8, max_points = 5: buckets of (8−2)/3 = 2 samples: {1,2},
        // {3,4}, {5,6}; then the last sample, 7.
        let y = [0.0, 1.0, 5.0, 2.0, 2.0, 8.0, 0.0, 1.0];
        // Bucket {1,2}, a = (0, 0), next mean (3.5, 2): doubled areas
        // |(0−3.5)(y−0) − (0−x)(2−0)| = |2x − 3.5y|: x=1 → 1.5, x=2 → 13.5.
        // Keeps 2. Bucket {3,4}, a = (2, 5), next mean (5.5, 4):
        // |(−3.5)(y−5) − (2−x)(−1)| = |−3.5y + 17.5 + 2 − x|:
        // x=3 → |19.5 − 3 − 7| = 9.5, x=4 → |19.5 − 4 − 7| = 8.5. Keeps 3.
        // Bucket {5,6}, a = (3, 2), next = (7, 1):
        // |(−4)(y−2) − (3−x)(−1)| = |−4y + 8 + 3 − x|:
        // x=5 → |11 − 5 − 32| = 26, x=6 → |11 − 6 − 0| = 5. Keeps 5.
        assert_eq!(lttb_indices(&[&y], 5), vec![0, 2, 3, 5, 7]);
        assert_eq!(classic_lttb(&y, 5), vec![0, 2, 3, 5, 7]);
    }

    #[test]
    fn a_short_series_is_kept_whole() {
        let y = [3.0, 1.0, 4.0];
        assert_eq!(lttb_indices(&[&y, &y], 3), vec![0, 1, 2]);
        assert_eq!(lttb_indices(&[&y], 10), vec![0, 1, 2]);
        assert_eq!(lttb_indices(&[&[]], 10), Vec::<usize>::new());
        assert_eq!(lttb_indices(&[], 10), Vec::<usize>::new());
    }

    #[test]
    fn below_three_points_only_the_endpoints_fit() {
        let y = [3.0, 1.0, 4.0, 1.0, 5.0];
        assert_eq!(lttb_indices(&[&y], 2), vec![0, 4]);
        assert_eq!(lttb_indices(&[&y], 1), vec![0]);
        assert_eq!(lttb_indices(&[&y], 0), Vec::<usize>::new());
    }

    #[test]
    fn a_spike_in_one_of_several_channels_survives() {
        let n = 10_000;
        let spike_at = 6_789;
        // Two channels of large slow waves, and one almost flat channel of
        // a tiny unit whose single spike is its whole range.
        let slow: Vec<f64> = (0..n).map(|i| 1000.0 * (i as f64 / 500.0).sin()).collect();
        let other: Vec<f64> = (0..n).map(|i| 50.0 * (i as f64 / 80.0).cos()).collect();
        let mut spiky: Vec<f64> = (0..n).map(|i| 1e-3 * ((i % 7) as f64)).collect();
        spiky[spike_at] = 0.5;
        let kept = lttb_indices(&[&slow, &other, &spiky], 100);
        assert!(kept.contains(&spike_at), "{kept:?}");
        // The spike's own channel keeps it: the others alone would not.
        let kept_alone = lttb_indices(&[&slow, &other], 100);
        assert!(!kept_alone.contains(&spike_at));
    }

    #[test]
    fn a_channel_without_range_changes_nothing() {
        let y: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64).collect();
        let constant = vec![7.0; 500];
        // Not finite but at one value: no range either.
        let mut broken = vec![f64::NAN; 500];
        broken[100] = f64::INFINITY;
        broken[200] = 3.0;
        let alone = lttb_indices(&[&y], 40);
        assert_eq!(lttb_indices(&[&y, &constant, &broken], 40), alone);
        assert_eq!(lttb_indices(&[&constant, &y], 40), alone);
    }

    #[test]
    fn non_finite_samples_are_never_chosen_for_their_value() {
        // A NaN in the only channel contributes 0, so its bucket keeps the
        // finite sample whose triangle is largest.
        let mut y: Vec<f64> = (0..100).map(|i| (i % 10) as f64).collect();
        y[45] = f64::NAN;
        y[46] = f64::INFINITY;
        let kept = lttb_indices(&[&y], 12);
        assert_eq!(kept.len(), 12);
        assert!(!kept.contains(&45) && !kept.contains(&46), "{kept:?}");
    }

    #[test]
    fn a_long_game_of_sixteen_channels_comes_down_to_a_thousand_points() {
        let n = 600_000;
        let columns: Vec<Vec<f64>> = (0..16)
            .map(|c| {
                (0..n)
                    .map(|i| ((i * (c + 3)) % 1009) as f64 * (c as f64 + 1.0))
                    .collect()
            })
            .collect();
        let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let kept = lttb_indices(&refs, 1000);
        assert_eq!(kept.len(), 1000);
        assert_eq!((kept[0], kept[999]), (0, n - 1));
    }

    fn series() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(-1000.0..1000.0f64, 3..400)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn one_channel_is_the_classic_lttb(y in series(), m in 3usize..450) {
            prop_assert_eq!(lttb_indices(&[&y], m), classic_lttb(&y, m));
        }

        #[test]
        fn one_channel_of_small_integers_is_the_classic_lttb(
            y in prop::collection::vec(-3i8..4, 3..200),
            m in 3usize..250,
        ) {
            // Small integers make ties common: both keep the earliest.
            let y: Vec<f64> = y.into_iter().map(f64::from).collect();
            prop_assert_eq!(lttb_indices(&[&y], m), classic_lttb(&y, m));
        }

        #[test]
        fn the_result_is_short_ascending_and_keeps_the_ends(
            (cols, m) in (1usize..6, 2usize..400)
                .prop_flat_map(|(c, n)| {
                    (prop::collection::vec(prop::collection::vec(-1e6..1e6f64, n), c), 3usize..500)
                }),
        ) {
            let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
            let n = cols[0].len();
            let kept = lttb_indices(&refs, m);
            prop_assert_eq!(kept.len(), n.min(m));
            prop_assert!(kept.windows(2).all(|w| w[0] < w[1]), "{:?}", kept);
            prop_assert_eq!(kept[0], 0);
            prop_assert_eq!(kept[kept.len() - 1], n - 1);
        }
    }
}
