use super::*;
use proptest::prelude::*;

fn bits(col: &[f64]) -> Vec<u64> {
    col.iter().map(|v| v.to_bits()).collect()
}

/// Encodes and decodes `col`, checks that every value came back bit for
/// bit and that the encoding is never larger than f64, and returns it.
fn round_trip(col: &[f64]) -> Vec<u8> {
    let encoded = encode_column(col);
    let decoded = decode_column(&encoded).expect("an encoded column decodes");
    assert_eq!(bits(&decoded), bits(col), "encoded as {encoded:?}");
    assert!(encoded.len() <= 1 + 8 * col.len());
    encoded
}

/// A deterministic stream of 64-bit values (SplitMix64).
fn noise(seed: u64, n: usize) -> Vec<u64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

#[test]
fn glove_values_are_stored_as_decimals_exactly() {
    let col = vec![12.5, -0.001, 179.999, 0.0, 1e-3, 42.0, -17.25];
    let encoded = round_trip(&col);
    assert_eq!(encoded[0], TAG_DECIMAL);
    assert_eq!(encoded[1], 3, "three decimals");
}

/// `col` as a phone sends it in a float32 typed array: each value the
/// float32 nearest to it, widened to f64 by the parser.
fn as_float32(col: &[f64]) -> Vec<f64> {
    col.iter().map(|&v| f64::from(v as f32)).collect()
}

#[test]
fn glove_values_sent_as_float32_are_stored_as_decimals_exactly() {
    let col = as_float32(&[12.5, -0.001, 179.999, 0.0, 1e-3, 42.0, -17.25, -0.0]);
    let encoded = round_trip(&col);
    assert_eq!(encoded[0], TAG_DECIMAL_F32);
    assert_eq!(encoded[1], 3, "three decimals");
    // A game's worth: the same size as the same values sent as decimals.
    let walk: Vec<f64> = (0..6000)
        .map(|i| f64::from((i * 37 % 1000) - 500 + 1000 * (i / 100)) / 1000.0)
        .collect();
    let as_decimals = round_trip(&walk);
    let as_floats = round_trip(&as_float32(&walk));
    assert_eq!(as_floats[0], TAG_DECIMAL_F32);
    assert_eq!(as_floats.len(), as_decimals.len());
}

#[test]
fn float32_values_with_a_short_decimal_expansion_take_the_smaller_scale() {
    // -16368.73 as float32 is -16368.73046875: decimal at scale 9 in f64
    // with the others, at scale 2 as float32.
    let col = as_float32(&[-16368.73, -16382.73, -16383.9, -16383.98]);
    assert_eq!(decimal_integers::<false>(&col).map(|(k, _)| k), Some(9));
    let encoded = round_trip(&col);
    assert_eq!((encoded[0], encoded[1]), (TAG_DECIMAL_F32, 2));
}

#[test]
fn float32_values_that_are_also_decimal_in_f64_stay_tag_3() {
    // 0.5 and 0.25 are the same in f32 and f64.
    let encoded = round_trip(&as_float32(&[0.5, 0.25, -3.0]));
    assert_eq!((encoded[0], encoded[1]), (TAG_DECIMAL, 2));
}

#[test]
fn the_smallest_scale_that_holds_every_value_is_chosen() {
    for (col, scale) in [
        (vec![3.0, -7.0, 1e15], 0),
        (vec![1.5, 2.25, 0.0], 2),
        (vec![0.1, 0.2, 0.3], 1),
        (vec![1e-9, 2.0], 9),
    ] {
        let encoded = round_trip(&col);
        assert_eq!((encoded[0], encoded[1]), (TAG_DECIMAL, scale), "{col:?}");
    }
}

#[test]
fn negative_zero_keeps_its_sign_in_a_decimal_column() {
    let col = vec![0.5, -0.0, 0.25, 0.0, -0.0, -0.0];
    let encoded = round_trip(&col);
    assert_eq!(encoded[0], TAG_DECIMAL);
}

#[test]
fn values_that_are_not_decimal_are_stored_exactly() {
    for col in [
        vec![std::f64::consts::PI, std::f64::consts::E, 1.0],
        vec![1.0, 1e300, 1e-50],
        vec![f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324],
        vec![1e-10, 2e-10],
        vec![9_007_199_254_740_994.0, 1.0],
    ] {
        let encoded = round_trip(&col);
        assert!(matches!(encoded[0], TAG_XOR | TAG_F64), "{col:?}");
    }
}

#[test]
fn a_smooth_signal_is_predicted_from_its_slope() {
    let col: Vec<f64> = (0..1000)
        .map(|i| (100.0 * (i as f64 / 50.0).sin() * 1000.0).round() / 1000.0)
        .collect();
    let encoded = round_trip(&col);
    assert_eq!(encoded[..3], [TAG_DECIMAL, 3, 2]);
    // Second differences of ~0.1 at a resolution of 0.001: ~8 bits.
    assert!(encoded.len() < 1000 * 10 / 8, "{} bytes", encoded.len());
}

#[test]
fn incompressible_values_take_8_bytes_a_sample() {
    let col: Vec<f64> = noise(7, 500).into_iter().map(f64::from_bits).collect();
    let encoded = round_trip(&col);
    assert_eq!(encoded[0], TAG_F64);
    assert_eq!(encoded.len(), 1 + 8 * col.len());
}

#[test]
fn a_column_longer_than_a_game_may_have_is_kept_as_f64() {
    let col = vec![1.5; MAX_SAMPLES + 1];
    let encoded = round_trip(&col);
    assert_eq!(encoded[0], TAG_F64);
    // One sample fewer is a column a game may have: compact.
    assert!(encode_column(&col[1..]).len() < MAX_SAMPLES / 100);
}

#[test]
fn an_empty_column_round_trips() {
    round_trip(&[]);
    assert!(decode_column(&[TAG_DECIMAL, 0, 1, 0, 0])
        .unwrap()
        .is_empty());
    assert!(decode_column(&[TAG_XOR, 0]).unwrap().is_empty());
}

#[test]
fn columns_written_by_format_1_still_decode() {
    // What format 1 wrote for [12.5, -0.001, 3.4e38] (f32) and
    // [1.0, 1e300] (f64).
    let f32s = [12.5f32, -0.001, 3.4e38];
    let mut tag1 = vec![TAG_F32];
    for v in f32s {
        tag1.extend_from_slice(&v.to_le_bytes());
    }
    let expected: Vec<f64> = f32s.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(bits(&decode_column(&tag1).unwrap()), bits(&expected));
    assert_eq!(decode_column(&tag1).unwrap()[1], f64::from(-0.001f32));

    let mut tag2 = vec![TAG_F64];
    for v in [1.0f64, 1e300] {
        tag2.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(decode_column(&tag2).unwrap(), [1.0, 1e300]);
}

/// A decimal column of `n` samples whose only residual is `x` (first
/// sample), written by hand with Rice parameter 0 and an escape.
fn decimal_with_first_residual(x: u64) -> Vec<u8> {
    let mut out = vec![TAG_DECIMAL, 0, 1, 1, 0];
    let mut bits = BitWriter::new(Vec::new());
    let w = 64 - x.leading_zeros();
    bits.write(0, 1);
    bits.write(0, 6);
    bits.write(0, ESCAPE);
    bits.write(u64::from(w - 1), 6);
    bits.write(x, w);
    out.extend(bits.finish());
    out
}

#[test]
fn corrupt_columns_are_errors() {
    let valid = encode_column(&[1.25, 2.5, -0.0, 3.75]);
    assert_eq!(valid[0], TAG_DECIMAL);
    let mut trailing = valid.clone();
    trailing.push(0);
    // 1 + 6 + 24 + 6 + 15 bits: the last of 7 bytes has 4 bits of padding.
    let mut padding = decimal_with_first_residual(zigzag(12345));
    *padding.last_mut().unwrap() |= 0x80;
    let xor = encode_column(&(1..20).map(|i| f64::from(i).sqrt()).collect::<Vec<_>>());
    assert_eq!(xor[0], TAG_XOR);
    let mut xor_trailing = xor.clone();
    xor_trailing.push(0);
    assert_eq!(
        decode_column(&decimal_with_first_residual(zigzag(12345))).unwrap(),
        [12345.0]
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("unknown tag", vec![9, 0, 0, 0, 0]),
        ("f32 not whole", vec![TAG_F32, 0, 0, 0]),
        ("f64 not whole", vec![TAG_F64, 0, 0, 0, 0]),
        ("decimal without header", vec![TAG_DECIMAL]),
        ("decimal scale 10", vec![TAG_DECIMAL, 10, 1, 0, 0]),
        ("decimal order 0", vec![TAG_DECIMAL, 0, 0, 0, 0]),
        ("decimal order 3", vec![TAG_DECIMAL, 0, 3, 0, 0]),
        ("float32 decimal without header", vec![TAG_DECIMAL_F32]),
        (
            "float32 decimal scale 10",
            vec![TAG_DECIMAL_F32, 10, 1, 0, 0],
        ),
        ("float32 decimal order 0", vec![TAG_DECIMAL_F32, 0, 0, 0, 0]),
        ("varint never ends", vec![TAG_DECIMAL, 0, 1, 0x80, 0x80]),
        ("varint beyond 64 bits", {
            let mut v = vec![TAG_XOR];
            v.extend([0xff; 9]);
            v.push(0x02);
            v
        }),
        ("more samples than a column may have", {
            let mut v = vec![TAG_XOR];
            write_varint(&mut v, MAX_SAMPLES as u64 + 1);
            v.extend([0; 16]);
            v
        }),
        ("more samples than the bytes hold", {
            let mut v = vec![TAG_DECIMAL, 0, 1];
            write_varint(&mut v, MAX_SAMPLES as u64);
            v.extend([0, 0xff]);
            v
        }),
        (
            "more negative zeros than samples",
            vec![TAG_DECIMAL, 0, 1, 1, 2, 0, 0, 1],
        ),
        (
            "negative zero beyond the end",
            vec![TAG_DECIMAL, 0, 1, 1, 1, 1, 1],
        ),
        ("negative zero on a value", {
            let mut v = decimal_with_first_residual(zigzag(5));
            v[4] = 1;
            v.insert(5, 0);
            v
        }),
        (
            "decimal beyond 2^53",
            decimal_with_first_residual(zigzag(1 << 53) + 2),
        ),
        ("decimal truncated", valid[..valid.len() - 1].to_vec()),
        ("decimal trailing byte", trailing),
        ("decimal padding not zero", padding),
        (
            "xor without samples",
            vec![TAG_XOR, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("xor truncated", xor[..xor.len() - 1].to_vec()),
        ("xor trailing byte", xor_trailing),
        ("xor empty with bytes", vec![TAG_XOR, 0, 0]),
        // Two samples: the first 0, then `10` (reuse) with no window yet.
        (
            "xor window reused before it was set",
            vec![TAG_XOR, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0b01],
        ),
        // `11`, 31 leading zeros, a length of 64.
        (
            "xor window beyond 64 bits",
            vec![
                TAG_XOR, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
    ];
    for (what, bytes) in cases {
        assert!(decode_column(&bytes).is_err(), "{what}: {bytes:?}");
    }
}

#[test]
fn every_strict_prefix_of_an_encoding_is_an_error() {
    let decimal: Vec<f64> = (0..300).map(|i| f64::from(i * i % 97) / 8.0).collect();
    let xor: Vec<f64> = (0..300).map(|i| f64::from(i).sqrt()).collect();
    let float32 = as_float32(&[0.1, -0.0, 2.7, 3.25]);
    for col in [
        decimal,
        xor,
        float32,
        vec![-0.0, 1.5],
        vec![f64::NAN, f64::NAN, 1.0],
    ] {
        let encoded = encode_column(&col);
        assert!(
            matches!(encoded[0], TAG_DECIMAL | TAG_XOR | TAG_DECIMAL_F32),
            "{col:?}"
        );
        for len in 0..encoded.len() {
            assert!(decode_column(&encoded[..len]).is_err(), "{len} bytes");
        }
    }
}

fn any_f64() -> impl Strategy<Value = f64> {
    any::<u64>().prop_map(f64::from_bits)
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any_f64().prop_filter("finite", |v| v.is_finite())
}

/// Integers that make the largest steps a decimal column can have.
fn extreme_mantissa() -> impl Strategy<Value = i64> {
    let max = MAX_MANTISSA as i64;
    prop_oneof![
        Just(max),
        Just(-max),
        Just(0),
        Just(max - 1),
        Just(1 - max),
        -max..=max,
    ]
}

proptest! {
    #[test]
    fn any_column_round_trips_bit_for_bit(col in prop::collection::vec(any_f64(), 0..300)) {
        round_trip(&col);
    }

    #[test]
    fn finite_columns_round_trip_bit_for_bit(col in prop::collection::vec(finite_f64(), 1..300)) {
        round_trip(&col);
    }

    #[test]
    fn float32_columns_round_trip_bit_for_bit(col in prop::collection::vec(any::<f32>(), 0..300)) {
        round_trip(&col.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
    }

    #[test]
    fn float32_decimal_columns_round_trip_as_decimals(
        scale in 0..=MAX_SCALE,
        start in -(1i64 << 30)..(1i64 << 30),
        steps in prop::collection::vec(-5000i64..5000, 1..600),
    ) {
        let p = POW10[usize::from(scale)];
        let mut m = start;
        let col: Vec<f64> = steps
            .iter()
            .map(|s| {
                m += s;
                f64::from((m as f64 / p) as f32)
            })
            .collect();
        let encoded = round_trip(&col);
        // Decimal, or f64 where that is smaller (a sample or two of large
        // values), never the XOR fallback.
        prop_assert!(matches!(encoded[0], TAG_DECIMAL | TAG_DECIMAL_F32 | TAG_F64), "tag {}", encoded[0]);
        if encoded[0] != TAG_F64 {
            prop_assert!(encoded[1] <= scale);
        }
    }

    #[test]
    fn decimal_columns_round_trip_as_decimals(
        scale in 0..=MAX_SCALE,
        start in -(1i64 << 40)..(1i64 << 40),
        steps in prop::collection::vec(-5000i64..5000, 1..600),
        negative_zeros in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let p = POW10[usize::from(scale)];
        let mut m = start;
        let mut col: Vec<f64> = steps
            .iter()
            .map(|s| {
                m += s;
                m as f64 / p
            })
            .collect();
        for i in negative_zeros {
            col[i.index(steps.len())] = -0.0;
        }
        let encoded = round_trip(&col);
        if col.len() < 8 && encoded[0] == TAG_F64 {
            // A few samples of 40 bits and the header can outweigh f64.
            return Ok(());
        }
        prop_assert_eq!(encoded[0], TAG_DECIMAL);
        prop_assert!(encoded[1] <= scale);
        if col.len() >= 128 {
            // Steps under 2^13 cost ~15 bits, far below f64's 64.
            prop_assert!(encoded.len() < 3 * col.len(), "{} bytes", encoded.len());
        }
    }

    #[test]
    fn constant_columns_round_trip_in_a_few_bytes(v in any_f64(), n in 1usize..5000) {
        let encoded = round_trip(&vec![v; n]);
        prop_assert!(encoded.len() <= 48 + n / 8, "{} bytes", encoded.len());
    }

    #[test]
    fn huge_steps_round_trip(
        scale in 0..=MAX_SCALE,
        ints in prop::collection::vec(extreme_mantissa(), 1..300),
    ) {
        let p = POW10[usize::from(scale)];
        let col: Vec<f64> = ints.iter().map(|&m| m as f64 / p).collect();
        round_trip(&col);
        let beyond: Vec<f64> = ints.iter().map(|&m| (m as f64 * 4.0) + 2.0).collect();
        round_trip(&beyond);
    }

    #[test]
    fn single_samples_round_trip(v in any_f64()) {
        round_trip(&[v]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_reencodes(
        tag in 0u8..6,
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut input = vec![tag];
        input.extend(&bytes);
        for input in [&input[..], &bytes[..]] {
            if let Ok(col) = decode_column(input) {
                round_trip(&col);
            }
        }
    }

    #[test]
    fn damaged_encodings_never_panic(
        col in prop::collection::vec(-1000i64..1000, 1..400),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let col: Vec<f64> = col.iter().map(|&m| m as f64 / 100.0).collect();
        let mut encoded = encode_column(&col);
        prop_assert_eq!(encoded[0], TAG_DECIMAL);
        let i = at.index(encoded.len());
        encoded[i] ^= flip;
        if let Ok(decoded) = decode_column(&encoded) {
            prop_assert!(decoded.len() <= MAX_SAMPLES);
        }
        prop_assert!(decode_column(&encoded[..i]).is_err());
    }
}

/// Tag 3, whether or not tag 5 would take the column at a smaller scale.
fn plain_decimal(col: &[f64]) -> Option<Vec<u8>> {
    decimal_integers::<false>(col).map(|(k, ints)| encode_integers(TAG_DECIMAL, col, k, &ints))
}

/// The residuals of a whole column, as first written.
fn residuals(ints: &[i64], order: u8) -> Vec<u64> {
    (0..ints.len())
        .map(|i| zigzag(ints[i].wrapping_sub(predict(ints, i, order))))
        .collect()
}

/// The integers as first found: one value at a time.
fn integers_one_by_one(col: &[f64]) -> Option<(usize, Vec<i64>)> {
    let mut k = 0;
    let mut ints = Vec::new();
    for &v in col {
        k = push_integer::<false>(col, &mut ints, v, k)?;
    }
    Some((k, ints))
}

/// The Rice parameter as first chosen: each candidate's exact size, in
/// `u128`.
fn parameter_by_exact_sizes(block: &[u64]) -> Option<u32> {
    let sum: u128 = block.iter().map(|&x| u128::from(x)).sum();
    if sum == 0 {
        return None;
    }
    let mean = sum / block.len() as u128;
    let by_mean = 128 - mean.leading_zeros();
    let total_bits: u32 = block.iter().map(|&x| 64 - x.leading_zeros()).sum();
    let by_bits = total_bits / block.len() as u32 + 1;
    let low = by_mean.min(by_bits).saturating_sub(3);
    let high = by_mean.max(by_bits).min(63);
    (low..=high)
        .map(|p| (p, block.iter().map(|&x| rice_bits(x, p)).sum::<u64>()))
        .min_by_key(|&(_, bits)| bits)
        .map(|(p, _)| p)
}

/// The decimal encoding as first written, from the definitions above and
/// one write a code: the faster encoder must write the very same bytes.
fn decimal_as_first_written(col: &[f64]) -> Option<Vec<u8>> {
    let (k, ints) = integers_one_by_one(col)?;
    let order = order_by_both_residuals(&ints);
    let residuals = residuals(&ints, order);
    let mut out = vec![TAG_DECIMAL, k as u8, order];
    write_varint(&mut out, col.len() as u64);
    write_negative_zeros(&mut out, col);
    let mut bits = BitWriter::new(out);
    for block in residuals.chunks(BLOCK) {
        let Some(p) = parameter_by_exact_sizes(block) else {
            bits.write(1, 1);
            continue;
        };
        bits.write(u64::from(p) << 1, 7);
        for &x in block {
            let q = x >> p;
            if q < u64::from(ESCAPE) {
                bits.write(1 << q, q as u32 + 1);
                bits.write(x & low_bits(p), p);
            } else {
                let w = 64 - x.leading_zeros();
                bits.write(0, ESCAPE);
                bits.write(u64::from(w - 1), 6);
                bits.write(x, w);
            }
        }
    }
    Some(bits.finish())
}

/// A column of decimals: a walk of `steps` from `start` at `scale`, with
/// each `spikes` step multiplied, the values at `specials` replaced by
/// `-0.0`, `0.0`, a value of more decimals or NaN.
fn decimal_walk(
    scale: u8,
    start: i64,
    steps: &[i64],
    spikes: &[(prop::sample::Index, i64)],
    specials: &[(prop::sample::Index, u8)],
) -> Vec<f64> {
    let p = POW10[usize::from(scale)];
    let mut steps = steps.to_vec();
    for (i, factor) in spikes {
        let i = i.index(steps.len());
        steps[i] = steps[i].saturating_mul(*factor);
    }
    let mut m = start;
    let mut col: Vec<f64> = steps
        .iter()
        .map(|s| {
            m = m.saturating_add(*s).clamp(-(1 << 53), 1 << 53);
            m as f64 / p
        })
        .collect();
    for (i, kind) in specials {
        col[i.index(steps.len())] = match kind % 4 {
            0 => -0.0,
            1 => 0.0,
            2 => 0.123_456_7,
            _ => f64::NAN,
        };
    }
    col
}

proptest! {
    #[test]
    fn the_encoder_writes_the_bytes_of_the_first_written_one(
        scale in 0..=MAX_SCALE,
        start in prop_oneof![-(1i64 << 20)..(1i64 << 20), -(1i64 << 53)..=(1i64 << 53)],
        steps in prop_oneof![
            prop::collection::vec(-3i64..=3, 1..700),
            prop::collection::vec(-5000i64..5000, 1..700),
            prop::collection::vec(-(1i64 << 40)..(1i64 << 40), 1..300),
        ],
        spikes in prop::collection::vec((any::<prop::sample::Index>(), 1i64..1_000_000), 0..4),
        specials in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let col = decimal_walk(scale, start, &steps, &spikes, &specials);
        prop_assert_eq!(decimal_integers::<false>(&col), integers_one_by_one(&col));
        prop_assert_eq!(plain_decimal(&col), decimal_as_first_written(&col));
    }

    #[test]
    fn a_blocks_parameter_is_the_cheapest_priced_in_full(
        bits in 0u32..56,
        block in prop::collection::vec(any::<u64>(), 1..=BLOCK),
        spikes in prop::collection::vec((any::<prop::sample::Index>(), 0u32..56), 0..3),
    ) {
        // Residuals of about `bits` bits, and a few of up to 56.
        let mut block: Vec<u64> = block.iter().map(|&x| x >> (64 - bits.max(1)) >> u32::from(bits == 0)).collect();
        for (i, width) in &spikes {
            let i = i.index(block.len());
            block[i] |= 1 << width;
        }
        prop_assert_eq!(block_parameter(&block), parameter_by_exact_sizes(&block));
    }

    #[test]
    fn any_column_is_encoded_as_first_written(col in prop::collection::vec(any_f64(), 0..300)) {
        prop_assert_eq!(decimal_integers::<false>(&col), integers_one_by_one(&col));
        prop_assert_eq!(plain_decimal(&col), decimal_as_first_written(&col));
    }
}

#[test]
fn a_single_sample_has_its_residual_under_either_order() {
    for order in [1, 2] {
        let mut out = [0u64; 1];
        block_residuals(&[5], order, 0, &mut out);
        assert_eq!(out, [zigzag(5)], "order {order}");
    }
}

/// The order as first written: both residual sequences in full.
fn order_by_both_residuals(ints: &[i64]) -> u8 {
    let bits = |r: Vec<u64>| {
        r.iter()
            .map(|&x| u64::from(64 - x.leading_zeros()))
            .sum::<u64>()
    };
    if bits(residuals(ints, 2)) < bits(residuals(ints, 1)) {
        2
    } else {
        1
    }
}

proptest! {
    #[test]
    fn the_one_pass_order_is_the_order_of_both_residuals(
        ints in prop::collection::vec(-(1i64 << 53)..=(1 << 53), 0..300),
        smooth in any::<bool>(),
    ) {
        // Smooth sequences too, where order 2 wins.
        let ints: Vec<i64> = if smooth {
            ints.iter().scan(0i64, |acc, &d| { *acc = acc.wrapping_add(d >> 40); Some(*acc) }).collect()
        } else {
            ints
        };
        prop_assert_eq!(best_order(&ints), order_by_both_residuals(&ints));
    }

    #[test]
    fn a_decimal_value_gives_back_its_integer(m in -(1i64 << 53)..=(1 << 53), k in 0usize..=9) {
        let v = m as f64 / POW10[k];
        let found = mantissa::<false>(v, k).expect("decimal at its own scale");
        prop_assert_eq!((found as f64 / POW10[k]).to_bits(), v.to_bits());
    }
}
