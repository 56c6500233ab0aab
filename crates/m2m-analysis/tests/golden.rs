//! The golden file of the analysis: the metrics of every reference game
//! (`fixtures/reference/games`) exactly as this code computes them, with
//! the [`ALGORITHM_VERSION`] that names their definitions.
//!
//! It fails when the metrics differ in any digit while the version is the
//! one in the file: a metric's definition changed without a bump, and the
//! stored results of the old definition would be mixed with the new ones
//! under one version. The fix is to bump `ALGORITHM_VERSION` and run
//! `M2M_BLESS=1 cargo test -p m2m-analysis --test golden` to rewrite the
//! file. It fails too when the version was bumped and the file not
//! rewritten (a stale file).
//!
//! Numbers are written as serde_json writes an `f64` (the shortest text
//! that reads back as the same bits), and compared as text, so a change in
//! the last bit of any metric shows.

use m2m_analysis::{analyze, Recording, ALGORITHM_VERSION};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_path() -> PathBuf {
    root().join("tests/golden/metrics.json")
}

/// The metrics of one reference game file, as JSON text in the order of
/// the struct's fields (not through a `serde_json::Value`, whose key order
/// depends on whether any crate of the build turns on serde_json's
/// `preserve_order`).
fn metrics_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let game: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let channels: BTreeMap<String, Vec<f64>> =
        serde_json::from_value(game["channels"].clone()).unwrap();
    let samples = channels.values().next().map_or(0, Vec::len);
    let metrics = analyze(&Recording {
        sample_rate_hz: game["sample_rate_hz"].as_f64().unwrap(),
        samples,
        score: game["score"].as_f64().unwrap(),
        channels: &channels,
    });
    serde_json::to_string(&metrics).unwrap()
}

/// The golden file's text for `version`: one line per game, sorted by file
/// name, so a difference names its game.
fn render(version: u32) -> String {
    let dir = root().join("../../fixtures/reference/games");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "expected the full set of reference games"
    );
    let lines: Vec<String> = files
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy();
            let metrics = metrics_of(path);
            format!("    {}: {metrics}", serde_json::to_string(&name).unwrap())
        })
        .collect();
    format!(
        "{{\n  \"algorithm_version\": {version},\n  \"games\": {{\n{}\n  }}\n}}\n",
        lines.join(",\n")
    )
}

#[test]
fn the_analysis_of_the_reference_games_is_as_its_version_says() {
    let actual = render(ALGORITHM_VERSION);
    if std::env::var_os("M2M_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), &actual).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(golden_path()).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with M2M_BLESS=1 cargo test -p m2m-analysis --test golden",
            golden_path().display()
        )
    });
    let stored_version = serde_json::from_str::<Value>(&stored).expect("the golden file is JSON")
        ["algorithm_version"]
        .as_u64();
    assert_eq!(
        stored_version,
        Some(u64::from(ALGORITHM_VERSION)),
        "the golden file is of another algorithm version than ALGORITHM_VERSION \
         ({ALGORITHM_VERSION}): regenerate it with \
         M2M_BLESS=1 cargo test -p m2m-analysis --test golden"
    );
    if stored != actual {
        let differing: Vec<String> = stored
            .lines()
            .zip(actual.lines())
            .filter(|(s, a)| s != a)
            .map(|(s, a)| format!("  golden:   {}\n  computed: {}", s.trim(), a.trim()))
            .collect();
        panic!(
            "the analysis of the reference games changed but ALGORITHM_VERSION is still \
             {ALGORITHM_VERSION}: bump it (docs/data-lifecycle.md) and regenerate the file with \
             M2M_BLESS=1 cargo test -p m2m-analysis --test golden\n{}",
            if differing.is_empty() {
                "  (the games differ in number)".to_owned()
            } else {
                differing.join("\n")
            }
        );
    }
}
