//! The column fast path of `GameSubmission::from_json` against the serde
//! path it replaced: numbers correctly rounded, bit for bit; the same
//! submission or the same error (field and message) on any text.

use m2m_domain::{parsers, GameSubmission, SubmissionError};
use proptest::prelude::*;

/// The correctly rounded value of a JSON number: Rust's own parser
/// (which also takes forms JSON does not, so only JSON numbers are given).
fn exact(text: &str) -> f64 {
    text.parse::<f64>().expect("a number")
}

/// The number at the start of `text` by the fast path, if it reads all of
/// it: alone (so read to the end of the text, one character at a time), and
/// followed by more of a column (so read eight bytes at a time where it can).
fn fast(text: &str) -> Option<f64> {
    let alone = match parsers::number(text.as_bytes()) {
        Some((value, len)) if len == text.len() => Some(value),
        _ => None,
    };
    let in_column = format!("{text},-1.25,2.5]");
    let followed = match parsers::number(in_column.as_bytes()) {
        Some((value, len)) if len == text.len() => Some(value),
        _ => None,
    };
    assert_eq!(
        alone.map(f64::to_bits),
        followed.map(f64::to_bits),
        "{text}: alone and in a column"
    );
    alone
}

fn assert_exact(text: &str) {
    let want = exact(text);
    let serde: f64 = serde_json::from_str(text).expect("serde_json parses it");
    assert_eq!(serde.to_bits(), want.to_bits(), "serde_json on {text}");
    match fast(text) {
        Some(got) => assert_eq!(got.to_bits(), want.to_bits(), "fast path on {text}"),
        None => panic!("fast path refused {text}"),
    }
}

#[test]
fn edge_case_numbers_are_correctly_rounded() {
    for text in [
        "0",
        "-0",
        "-0.0",
        "0.1e-5",
        "0.000",
        "-0.000",
        "12.345",
        "-1.5",
        "9007199254740993",
        "9007199254740992.5",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "-9223372036854775808",
        "0.30000000000000004",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "2.4e-324",
        "1e-400",
        "1.7976931348623157e308",
        "1e22",
        "1e23",
        "8.98846567431158e307",
        "1E5",
        "1e+5",
        "7.0000001",
        "1234567.1234567",
        "12345678.5",
        "0.12345678",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
    ] {
        assert_exact(text);
    }
}

#[test]
fn numbers_beyond_f64_and_text_that_is_no_json_number_are_refused() {
    for text in [
        "1e999", "-1e999", "1.8e308", "", "-", "+1", "01", "-01", "1.", ".5", "1e", "1e+", "inf",
        "NaN", "0x10", "1_0", "00.5",
    ] {
        assert_eq!(fast(text), None, "{text:?}");
    }
}

/// A JSON number: sign, 0 or digits without a leading zero, decimals,
/// exponent; short ones (a glove's) most often.
fn json_number() -> impl Strategy<Value = String> {
    let int = prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,6}", "[1-9][0-9]{0,25}",];
    let frac = prop_oneof![Just(String::new()), "\\.[0-9]{1,7}", "\\.[0-9]{1,30}"];
    let exp = prop_oneof![
        4 => Just(String::new()),
        1 => "[eE][+-]?[0-9]{1,3}",
    ];
    (any::<bool>(), int, frac, exp).prop_map(|(negative, int, frac, exp)| {
        format!("{}{int}{frac}{exp}", if negative { "-" } else { "" })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_numbers_are_correctly_rounded(text in json_number()) {
        let want = exact(&text);
        let got = fast(&text);
        if want.is_finite() {
            prop_assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{}", text);
            let serde: f64 = serde_json::from_str(&text).expect("serde_json parses it");
            prop_assert_eq!(serde.to_bits(), want.to_bits(), "serde_json on {}", text);
        } else {
            prop_assert_eq!(got, None, "{}", text);
        }
    }

    #[test]
    fn random_f64_round_trip_through_their_shortest_text(bits in any::<u64>()) {
        let value = f64::from_bits(bits);
        prop_assume!(value.is_finite());
        for text in [format!("{value:?}"), format!("{value:e}")] {
            // Rust writes `1e-7` where JSON wants no `+`; both are JSON here.
            let got = fast(&text);
            prop_assert_eq!(got.map(f64::to_bits), Some(bits), "{}", text);
        }
    }
}

/// What a submission parses to, with the columns' bits, so that -0 and 0
/// differ.
fn outcome(result: &Result<GameSubmission, SubmissionError>) -> String {
    match result {
        Ok(game) => {
            let columns: Vec<(String, Vec<u64>)> = game
                .channels()
                .iter()
                .map(|(name, col)| (name.to_owned(), col.iter().map(|v| v.to_bits()).collect()))
                .collect();
            format!(
                "ok {:?} {} {:?} {:?} {} {columns:?}",
                game.game(),
                game.score().to_bits(),
                game.started_at(),
                game.device(),
                game.sample_rate_hz().to_bits()
            )
        }
        Err(e) => format!("err {e:?}"),
    }
}

/// A JSON number that f64 holds (no overflow to infinity).
fn finite_json_number() -> impl Strategy<Value = String> {
    json_number().prop_filter("finite in f64", |text| exact(text).is_finite())
}

/// A submission's JSON text with random columns and optional fields,
/// written with random whitespace.
fn submission_text() -> impl Strategy<Value = String> {
    let column = prop::collection::vec(finite_json_number(), 1..40);
    let channels = prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", column), 1..6);
    let ws = prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")];
    // Compact columns (`[1,2]`, the scanner's fast case) as well as spaced.
    let separator = prop_oneof![Just(","), Just(", "), Just(" ,")];
    (
        (channels, separator),
        "[a-z -]{0,12}",
        finite_json_number(),
        prop_oneof![Just("100"), Just("50.5"), Just("1e3"), Just("5")],
        any::<bool>(),
        ws,
    )
        .prop_map(|((channels, separator), game, score, rate, device, ws)| {
            let columns: Vec<String> = channels
                .iter()
                .map(|(name, col)| {
                    format!("{ws}\"{name}\"{ws}:{ws}[{ws}{}{ws}]", col.join(separator))
                })
                .collect();
            let device = if device {
                r#""device": {"glove_id": "G-1", "hand": "left"},"#
            } else {
                ""
            };
            format!(
                "{ws}{{{ws}\"game\":{ws}\"{game}\",{ws}\"score\": {score}, {device}\
                 \"sample_rate_hz\": {rate},{ws}\"channels\":{ws}{{{}}}{ws}}}{ws}",
                columns.join(",")
            )
        })
}

/// The same text with a few bytes changed, inserted or removed: most of
/// these are malformed or invalid, some still valid.
fn mutated_text() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3u8,
        prop::sample::select(&b"-+.eE0159,:[]{}\" \\nulx\xff"[..]),
    );
    (submission_text(), prop::collection::vec(edit, 1..4)).prop_map(|(text, edits)| {
        let mut bytes = text.into_bytes();
        for (at, kind, byte) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn valid_submissions_take_the_fast_path_and_parse_as_serde_does(text in submission_text()) {
        let fast = parsers::fast(text.as_bytes());
        prop_assert!(fast.is_some(), "the fast path gave up on {}", text);
        let serde = parsers::serde(text.as_bytes());
        prop_assert_eq!(outcome(&GameSubmission::from_json(text.as_bytes())), outcome(&serde));
    }

    #[test]
    fn mutated_submissions_give_what_serde_gives(bytes in mutated_text()) {
        let serde = parsers::serde(&bytes);
        prop_assert_eq!(
            outcome(&GameSubmission::from_json(&bytes)),
            outcome(&serde),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn the_parsers_agree_bit_for_bit_on_the_standard_game() {
    let json = m2m_synth::GameSpec::standard().submission_json("pinch-garden", 1234.0);
    let bytes = json.as_bytes();
    let serde = outcome(&parsers::serde(bytes));
    assert!(serde.starts_with("ok "), "{serde}");
    let fast = parsers::fast(bytes).expect("taken by the fast path");
    assert_eq!(outcome(&fast), serde, "column fast path");
}
