//! `m2m export` as an operator runs it for a study: the real binary on a
//! data directory filled by the real server (and, when
//! `M2M_TEST_MONGODB_URL` is set, on a MongoDB database), its tables read
//! back with the `parquet` crate's reader, the `csv` crate and pyarrow, and
//! compared value by value with what the store holds.
//!
//! pyarrow is looked for in the system's `python3` (.ci/run installs the
//! version pinned in tests/python/requirements.txt): without it the
//! pyarrow check is skipped with a printed reason, except under
//! `CI=true`, where that is a failure.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use m2m_domain::{Game, GameSamples};
use m2m_store::Store;
use m2m_synth::GameSpec;
use m2m_testkit::{small_game_at, spawn_app_with, Options};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value as Json;
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use uuid::Uuid;

#[cfg(feature = "mongodb")]
#[path = "support/mongodb.rs"]
mod mongodb_support;
#[cfg(feature = "mongodb")]
use mongodb_support::DropDatabase;

/// Usernames that no pseudonym (hex) or other value can contain by chance.
const ADA: &str = "ada.lovelace-export";
const BOB: &str = "bob.babbage-export";

/// A key given on the command line, and another.
const KEY_A: &str = "study-key-a-0123456789-abcdefghijkl";
const KEY_B: &str = "study-key-b-0123456789-abcdefghijkl";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

// ---------------------------------------------------------------------------
// What the store holds

/// One stored game as the export must show it.
#[derive(Debug, Clone)]
struct Expected {
    user_id: Uuid,
    username: String,
    game: Game,
    samples: GameSamples,
}

/// Every game of `users` (id, username), read back through the store, in
/// game id order (the export's).
async fn expected(store: &dyn Store, games: &[(Uuid, &str, Uuid)]) -> Vec<Expected> {
    let mut all = Vec::new();
    for &(user_id, username, game_id) in games {
        let game = store.game(user_id, game_id).await.unwrap().expect("stored");
        let samples = store
            .game_samples(user_id, game_id)
            .await
            .unwrap()
            .expect("stored");
        all.push(Expected {
            user_id,
            username: username.to_owned(),
            game,
            samples,
        });
    }
    all.sort_by_key(|e| e.game.game_id);
    all
}

/// A data directory filled by the real server (gateway and processor, in
/// process, on the directory's `m2m.db`): two users, three games played on
/// 1, 2 and 3 November, one with fewer channels at another rate and no
/// device, all processed.
async fn data_dir_by_server(dir: &Path) -> Vec<Expected> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let app = spawn_app_with(Options {
        db: Some(data.join("m2m.db")),
        ..Options::default()
    })
    .await;
    let ada = app.register(ADA).await;
    let ada_token = app.access_token(ADA).await;
    let bob = app.register(BOB).await;
    let bob_token = app.access_token(BOB).await;

    let mut first: Json = serde_json::from_str(&small_game_at(1, "2026-11-01T10:00:00Z")).unwrap();
    first["device"] = serde_json::json!({"glove_id": "G-17", "firmware": "2.1.0", "hand": "left"});
    let mut second: Json = serde_json::from_str(
        &GameSpec {
            duration_s: 2.0,
            sample_rate_hz: 50.0,
            accel: false,
            seed: 2,
            ..GameSpec::standard()
        }
        .submission_json("grip-garden", 77.5),
    )
    .unwrap();
    second["started_at"] = "2026-11-02T12:00:00.250000+01:00".into();
    second.as_object_mut().unwrap().remove("device");
    let third = small_game_at(3, "2026-11-03T09:00:00Z");

    let mut games = Vec::new();
    for (user, name, token, body) in [
        (ada, ADA, &ada_token, first.to_string()),
        (bob, BOB, &bob_token, second.to_string()),
        (ada, ADA, &ada_token, third),
    ] {
        let id: Uuid = app.submit_game(token, body).await.game_id.parse().unwrap();
        app.wait_for(token, id, "processed").await;
        games.push((user, name, id));
    }
    let store = Arc::clone(&app.store);
    let games = expected(&*store, &games).await;
    app.stop().await;
    games
}

// ---------------------------------------------------------------------------
// Running the binary

fn m2m_export(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = m2m_testkit::m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.arg("export")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output().expect("m2m runs")
}

/// Runs an export that must succeed; returns its stdout.
fn export_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = m2m_export(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "m2m export {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs an export that must be refused with exit status 2 and a message
/// containing `says`; returns the message.
fn export_refused(args: &[&str], env: &[(&str, &str)], says: &str) -> String {
    let out = m2m_export(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "m2m export {args:?}: {stderr}");
    assert!(stderr.contains(says), "m2m export {args:?}: {stderr}");
    assert!(out.stdout.is_empty());
    stderr
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------
// Reading the tables back

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Double(f64),
    Int(i64),
    /// Microseconds since the Unix epoch.
    Time(i64),
}

impl Cell {
    fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Text(s) => Some(s.clone()),
            Cell::Int(n) => Some(n.to_string()),
            Cell::Double(x) => Some(x.to_string()),
            Cell::Time(_) => Some(self.time().unwrap().to_rfc3339()),
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Cell::Null => None,
            Cell::Double(x) => Some(*x),
            Cell::Int(n) => Some(*n as f64),
            Cell::Text(s) => Some(s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))),
            Cell::Time(_) => panic!("a time is not a number"),
        }
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            Cell::Null => None,
            Cell::Time(us) => DateTime::from_timestamp_micros(*us),
            Cell::Text(s) => Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)),
            other => panic!("not a time: {other:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Table {
    /// Name, type (Parquet: its logical or physical type; CSV: empty) and
    /// whether it may be null (CSV: true).
    columns: Vec<(String, String, bool)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, ..)| n.as_str()).collect()
    }

    fn index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|(n, ..)| n == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.names()))
    }

    fn get<'a>(&self, row: &'a [Cell], name: &str) -> &'a Cell {
        &row[self.index(name)]
    }
}

fn read_parquet(path: &Path) -> Table {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let columns = schema
        .columns()
        .iter()
        .map(|c| {
            let ty = match c.logical_type_ref() {
                Some(logical) => format!("{logical:?}"),
                None => format!("{:?}", c.physical_type()),
            };
            (c.name().to_owned(), ty, c.self_type().is_optional())
        })
        .collect();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(_, field)| match field {
                    Field::Null => Cell::Null,
                    Field::Str(s) => Cell::Text(s.clone()),
                    Field::Double(x) => Cell::Double(*x),
                    Field::Long(n) => Cell::Int(*n),
                    Field::TimestampMicros(us) => Cell::Time(*us),
                    other => panic!("an unexpected Parquet value {other:?}"),
                })
                .collect()
        })
        .collect();
    Table { columns, rows }
}

fn read_csv(path: &Path) -> Table {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let columns = reader
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.to_owned(), String::new(), true))
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            r.unwrap()
                .iter()
                .map(|s| {
                    if s.is_empty() {
                        Cell::Null
                    } else {
                        Cell::Text(s.to_owned())
                    }
                })
                .collect()
        })
        .collect();
    Table { columns, rows }
}

/// Both tables of an export in `dir`.
fn read_tables(dir: &Path, format: &str) -> (Table, Table) {
    let read = |name: &str| {
        let p = dir.join(format!("{name}.{format}"));
        match format {
            "parquet" => read_parquet(&p),
            _ => read_csv(&p),
        }
    };
    (read("games"), read("samples"))
}

// ---------------------------------------------------------------------------
// What the tables must hold

fn pseudonym(key: &[u8], text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(text.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A game's metrics as columns: the numbers of their JSON, nested names
/// joined by `_`, `score` as `metric_score` (docs/export.md).
fn metric_columns(game: &Game) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, v: &Json, out: &mut BTreeMap<String, f64>) {
        match v {
            Json::Object(m) => {
                for (k, v) in m {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}_{k}")
                    };
                    walk(&name, v, out);
                }
            }
            Json::Number(n) => {
                let name = if prefix == "score" {
                    "metric_score".to_owned()
                } else {
                    prefix.to_owned()
                };
                out.insert(name, n.as_f64().unwrap());
            }
            other => panic!("a metric that is not a number: {other}"),
        }
    }
    let mut out = BTreeMap::new();
    if let Some(m) = &game.metrics {
        walk("", &serde_json::to_value(m).unwrap(), &mut out);
    }
    out
}

const FIXED: &[&str] = &[
    "game_id",
    "user_pseudonym",
    "game",
    "status",
    "score",
    "started_at",
    "submitted_at",
    "processed_at",
    "sample_rate_hz",
    "samples",
    "channels",
    "device_glove_pseudonym",
    "device_firmware",
    "device_hand",
    "error",
    "algorithm_version",
];

/// Checks both tables against the games, value by value; `key` is the key
/// of the pseudonyms.
fn check_tables(games: &Table, samples: &Table, want: &[Expected], key: &[u8], usernames: bool) {
    // The games table: its columns…
    let metric_names: BTreeSet<String> = want
        .iter()
        .flat_map(|e| metric_columns(&e.game).into_keys())
        .collect();
    let mut names: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    if usernames {
        names.insert(2, "username".into());
    }
    names.extend(metric_names.iter().cloned());
    assert_eq!(games.names(), names);
    assert!(metric_names.contains("rom_deg_thumb"), "{metric_names:?}");

    // …and a row per game, in game id order.
    assert_eq!(games.rows.len(), want.len());
    for (row, e) in games.rows.iter().zip(want) {
        let g = &e.game;
        let text = |name| games.get(row, name).text();
        let num = |name| games.get(row, name).num();
        let time = |name| games.get(row, name).time();
        assert_eq!(text("game_id"), Some(g.game_id.to_string()));
        assert_eq!(
            text("user_pseudonym"),
            Some(pseudonym(key, &e.user_id.to_string()))
        );
        if usernames {
            assert_eq!(text("username"), Some(e.username.clone()));
        }
        assert_eq!(text("game"), Some(g.game.clone()));
        assert_eq!(text("status"), Some("processed".to_owned()));
        assert_eq!(num("score"), Some(g.score));
        assert_eq!(time("started_at"), Some(g.started_at));
        assert_eq!(time("submitted_at"), Some(g.submitted_at));
        assert_eq!(time("processed_at"), g.processed_at);
        assert!(g.processed_at.is_some());
        assert_eq!(num("sample_rate_hz"), Some(g.sample_rate_hz));
        assert_eq!(num("samples"), Some(g.samples as f64));
        assert_eq!(text("channels"), Some(g.channels.join(",")));
        let device = g.device.clone().unwrap_or_default();
        assert_eq!(
            text("device_glove_pseudonym"),
            device
                .glove_id
                .map(|id| pseudonym(key, &format!("glove:{id}")))
        );
        assert_eq!(text("device_firmware"), device.firmware);
        assert_eq!(
            text("device_hand"),
            device.hand.map(|h| serde_json::to_value(h)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned())
        );
        assert_eq!(text("error"), None);
        assert_eq!(num("algorithm_version"), Some(1.0));
        let metrics = metric_columns(g);
        for name in &metric_names {
            assert_eq!(
                num(name),
                metrics.get(name).copied(),
                "metric {name} of game {}",
                g.game_id
            );
        }
    }

    // The samples table: game_id, t and the union of the channels…
    let channels: BTreeSet<&str> = want
        .iter()
        .flat_map(|e| e.game.channels.iter().map(String::as_str))
        .collect();
    let mut names = vec!["game_id", "t"];
    names.extend(channels.iter().copied());
    assert_eq!(samples.names(), names);
    // …and a row per sample, game after game, every value exact.
    let total: usize = want.iter().map(|e| e.samples.channels.samples()).sum();
    assert_eq!(samples.rows.len(), total);
    let mut rows = samples.rows.iter();
    for e in want {
        let id = e.game.game_id.to_string();
        let rate = e.samples.sample_rate_hz;
        for i in 0..e.samples.channels.samples() {
            let row = rows.next().unwrap();
            assert_eq!(row[0].text().as_deref(), Some(id.as_str()));
            assert_eq!(
                row[1].num(),
                Some(i as f64 / rate),
                "t of sample {i} of {id}"
            );
            for (k, channel) in channels.iter().enumerate() {
                let want = e.samples.channels.get(channel).map(|c| c[i]);
                assert_eq!(row[k + 2].num(), want, "{channel}[{i}] of {id}");
            }
        }
    }
}

/// Neither table names a user in clear: no cell or column holds a user id
/// (in any of its forms) or, unless `usernames`, a username.
fn check_nobody_named(tables: &[&Table], want: &[Expected], usernames: bool) {
    let mut secrets: Vec<String> = Vec::new();
    for e in want {
        secrets.push(e.user_id.hyphenated().to_string());
        secrets.push(e.user_id.simple().to_string());
        if !usernames {
            secrets.push(e.username.clone());
        }
    }
    for table in tables {
        let texts = table
            .columns
            .iter()
            .map(|(n, ..)| n.clone())
            .chain(table.rows.iter().flatten().filter_map(Cell::text));
        for text in texts {
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "{secret:?} in {text:?}");
            }
        }
    }
}

/// The raw bytes of every file in `dir` hold no user id or username (the
/// CSV tables; compressed Parquet pages are checked decoded instead).
fn check_files_name_nobody(dir: &Path, want: &[Expected]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for e in want {
            assert!(!text.contains(&e.user_id.to_string()));
            assert!(!text.contains(&e.username));
        }
    }
}

/// The files of `dir`, sorted: the tables and nothing half-written.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// pyarrow

/// The tables of a Parquet export in `dir` as pyarrow reads them, or why
/// they could not be read that way (`Err`: pyarrow is missing).
fn read_with_pyarrow(dir: &Path) -> Result<Json, String> {
    let has_pyarrow = Command::new("python3")
        .args(["-c", "import pyarrow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_pyarrow {
        return Err("python3 cannot import pyarrow (pip install -r \
                    crates/m2m/tests/python/requirements.txt)"
            .into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_export.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "read_export.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout).expect("read_export.py prints JSON"))
}

/// pyarrow reads `table` (as the `parquet` crate read it) with the same
/// columns, types and values, bit for bit.
fn check_pyarrow_table(py: &Json, table: &Table) {
    let columns = py["columns"].as_array().unwrap();
    assert_eq!(columns.len(), table.columns.len());
    for (c, (name, ty, nullable)) in columns.iter().zip(&table.columns) {
        assert_eq!(c[0], name.as_str());
        let arrow = match ty.as_str() {
            "String" => "string",
            "DOUBLE" => "double",
            "INT64" => "int64",
            t if t.starts_with("Timestamp") => "timestamp[us, tz=UTC]",
            other => panic!("a Parquet type {other}"),
        };
        assert_eq!(c[1], arrow, "the type of {name}");
        assert_eq!(c[2], *nullable, "whether {name} may be null");
    }
    let rows = py["rows"].as_array().unwrap();
    assert_eq!(rows.len(), table.rows.len());
    for (py_row, row) in rows.iter().zip(&table.rows) {
        for ((py_cell, cell), (name, ..)) in py_row
            .as_array()
            .unwrap()
            .iter()
            .zip(row)
            .zip(&table.columns)
        {
            let want = match cell {
                Cell::Null => Json::Null,
                Cell::Text(s) => s.as_str().into(),
                Cell::Int(n) => (*n).into(),
                Cell::Double(x) => serde_json::json!(["f", x.to_bits()]),
                Cell::Time(us) => serde_json::json!(["t", us]),
            };
            assert_eq!(py_cell, &want, "{name}");
        }
    }
}

// ---------------------------------------------------------------------------
// The tests

/// The whole round trip on a data directory: the default (kept) key, both
/// formats, a given key, usernames on request, filters, and pyarrow.
#[test]
fn a_data_dir_exports_to_parquet_and_csv_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let want = runtime.block_on(data_dir_by_server(dir.path()));
    drop(runtime);
    let data = dir.path().join("data");
    let d = path(&data);
    let out = |name: &str| dir.path().join(name);

    // Parquet with the key kept in the data directory, made now.
    assert!(!data.join("export-key").exists());
    let stdout = export_ok(&["--data-dir", d, "--out", path(&out("p1"))], &[]);
    assert!(
        stdout.starts_with("exported 3 games (1100 samples) to ")
            && stdout.contains("a new key, kept in"),
        "{stdout}"
    );
    let key = std::fs::read_to_string(data.join("export-key")).unwrap();
    let key = key.trim().as_bytes();
    assert_eq!(files_in(&out("p1")), ["games.parquet", "samples.parquet"]);
    let (games, samples) = read_tables(&out("p1"), "parquet");
    check_tables(&games, &samples, &want, key, false);
    check_nobody_named(&[&games, &samples], &want, false);
    check_files_name_nobody(&out("p1"), &want);
    // Types: times are UTC timestamps, counts integers, the rest doubles
    // and text; only what may be missing is nullable.
    let column = |name: &str| games.columns[games.index(name)].clone();
    assert!(!column("started_at").2, "started_at is never null");
    assert!(
        column("started_at").1.starts_with("Timestamp"),
        "{:?}",
        column("started_at")
    );
    assert_eq!(column("samples").1, "INT64");
    assert!(column("processed_at").2, "processed_at may be null");
    assert_eq!(
        column("rom_deg_thumb"),
        ("rom_deg_thumb".into(), "DOUBLE".into(), true)
    );

    // The same with pyarrow, bit for bit.
    match read_with_pyarrow(&out("p1")) {
        Ok(py) => {
            check_pyarrow_table(&py["games"], &games);
            check_pyarrow_table(&py["samples"], &samples);
            println!("read by {}", py["readers"]);
        }
        Err(why) if in_ci() => panic!("{why}; CI=true, so this is a failure"),
        Err(why) => println!("skipping the pyarrow check: {why}"),
    }

    // Again, as CSV: the same values, the same pseudonyms (the kept key).
    let stdout = export_ok(
        &[
            "--data-dir",
            d,
            "--out",
            path(&out("c1")),
            "--format",
            "csv",
        ],
        &[],
    );
    assert!(
        stdout.contains("users pseudonymised with the key in"),
        "{stdout}"
    );
    assert_eq!(files_in(&out("c1")), ["games.csv", "samples.csv"]);
    let (csv_games, csv_samples) = read_tables(&out("c1"), "csv");
    check_tables(&csv_games, &csv_samples, &want, key, false);
    check_nobody_named(&[&csv_games, &csv_samples], &want, false);
    check_files_name_nobody(&out("c1"), &want);

    // The same key given as text gives the same tables, byte for byte.
    let kept = String::from_utf8(key.to_vec()).unwrap();
    export_ok(
        &["--data-dir", d, "--out", path(&out("p2"))],
        &[("M2M_PSEUDONYM_KEY", &kept)],
    );
    for table in ["games.parquet", "samples.parquet"] {
        assert_eq!(
            std::fs::read(out("p1").join(table)).unwrap(),
            std::fs::read(out("p2").join(table)).unwrap(),
            "{table}"
        );
    }

    // Two other keys: pseudonyms of their own, stable under each.
    let pseudonyms = |dir: &Path| -> Vec<Option<String>> {
        let (games, _) = read_tables(dir, "parquet");
        let i = games.index("user_pseudonym");
        games.rows.iter().map(|r| r[i].text()).collect()
    };
    export_ok(
        &[
            "--data-dir",
            d,
            "--out",
            path(&out("a")),
            "--pseudonym-key",
            KEY_A,
        ],
        &[],
    );
    export_ok(
        &["--data-dir", d, "--out", path(&out("b"))],
        &[("M2M_PSEUDONYM_KEY", KEY_B)],
    );
    let (games_a, samples_a) = read_tables(&out("a"), "parquet");
    check_tables(&games_a, &samples_a, &want, KEY_A.as_bytes(), false);
    let (a, b, kept) = (
        pseudonyms(&out("a")),
        pseudonyms(&out("b")),
        pseudonyms(&out("p1")),
    );
    for ((a, b), kept) in a.iter().zip(&b).zip(&kept) {
        assert_ne!(a, b);
        assert_ne!(a, kept);
    }
    assert_eq!(a[0], a[2], "one user, one pseudonym");
    assert_ne!(a[0], a[1]);

    // Usernames only when asked for.
    export_ok(
        &[
            "--data-dir",
            d,
            "--out",
            path(&out("u")),
            "--format",
            "csv",
            "--with-usernames",
        ],
        &[],
    );
    let (games_u, samples_u) = read_tables(&out("u"), "csv");
    check_tables(&games_u, &samples_u, &want, key, true);
    check_nobody_named(&[&games_u, &samples_u], &want, true);

    // Filters: a range of starts (since inclusive, until exclusive) and
    // users.
    let ada = want[0].user_id.to_string();
    let bob = want[1].user_id.to_string();
    let cases: Vec<(Vec<&str>, Vec<usize>)> = vec![
        (
            vec!["--since", "2026-11-02", "--until", "2026-11-03"],
            vec![1],
        ),
        (vec!["--since", "2026-11-02T11:00:00.250000Z"], vec![1, 2]),
        (vec!["--since", "2026-11-02T11:00:00.250001Z"], vec![2]),
        (vec!["--until", "2026-11-02T12:00:00.250000+01:00"], vec![0]),
        (vec!["--user", &ada], vec![0, 2]),
        (
            vec!["--user", &ada, "--user", &bob, "--until", "2026-11-03"],
            vec![0, 1],
        ),
        (
            vec!["--user", &bob, &ada, "--since", "2026-11-02"],
            vec![1, 2],
        ),
        (vec!["--since", "2026-12-01"], vec![]),
    ];
    for (i, (filter, games)) in cases.into_iter().enumerate() {
        let o = out(&format!("f{i}"));
        let mut args = vec!["--data-dir", d, "--out", path(&o)];
        args.extend(&filter);
        export_ok(&args, &[]);
        let subset: Vec<Expected> = games.iter().map(|&k| want[k].clone()).collect();
        let (g, s) = read_tables(&o, "parquet");
        if subset.is_empty() {
            assert!(g.rows.is_empty() && s.rows.is_empty(), "{filter:?}");
            assert_eq!(s.names(), ["game_id", "t"], "{filter:?}");
        } else {
            check_tables(&g, &s, &subset, key, false);
        }
    }
}

/// What the export refuses, with exit status 2 and nothing written; and
/// `--force` replacing tables that exist.
#[test]
fn the_export_refuses_what_it_cannot_do_safely() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    m2m_store::SqliteStore::open(&data.join("m2m.db")).unwrap();
    let d = path(&data);
    let out = dir.path().join("out");
    let o = path(&out);

    // No database there: not made, and no key file made either.
    let nowhere = dir.path().join("nowhere");
    export_refused(
        &["--data-dir", path(&nowhere), "--out", o],
        &[],
        "no database in",
    );
    assert!(!nowhere.exists());
    // A database URL and no key: the flag is named.
    let url = format!("sqlite://{}", data.join("m2m.db").display());
    export_refused(
        &["--database-url", &url, "--out", o],
        &[],
        "--pseudonym-key",
    );
    // A key too short, given either way.
    export_refused(
        &["--data-dir", d, "--out", o, "--pseudonym-key", "short"],
        &[],
        "at least 32",
    );
    export_refused(
        &["--data-dir", d, "--out", o],
        &[("M2M_PSEUDONYM_KEY", "short")],
        "at least 32",
    );
    // An empty or reversed range, and a date that is not one.
    export_refused(
        &[
            "--data-dir",
            d,
            "--out",
            o,
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-02",
        ],
        &[],
        "--since",
    );
    export_refused(
        &["--data-dir", d, "--out", o, "--since", "2026-11-31"],
        &[],
        "expected a date",
    );
    export_refused(
        &["--data-dir", d, "--out", o, "--format", "xlsx"],
        &[],
        "xlsx",
    );
    assert!(!out.exists(), "a refused export made its output directory");
    assert!(!data.join("export-key").exists());

    // The database URL with a key works as --data-dir does.
    let stdout = export_ok(
        &["--database-url", &url, "--out", o, "--pseudonym-key", KEY_A],
        &[],
    );
    assert!(
        stdout.starts_with("exported 0 games (0 samples)"),
        "{stdout}"
    );
    assert_eq!(files_in(&out), ["games.parquet", "samples.parquet"]);

    // Tables there already: refused, left as they are; replaced with --force.
    std::fs::write(out.join("games.parquet"), b"an older table").unwrap();
    export_refused(&["--data-dir", d, "--out", o], &[], "--force");
    assert_eq!(
        std::fs::read(out.join("games.parquet")).unwrap(),
        b"an older table"
    );
    export_ok(&["--data-dir", d, "--out", o, "--force"], &[]);
    let (games, samples) = read_tables(&out, "parquet");
    assert!(games.rows.is_empty() && samples.rows.is_empty());
    assert_eq!(files_in(&out), ["games.parquet", "samples.parquet"]);
    // The other format's tables are other files.
    export_ok(&["--data-dir", d, "--out", o, "--format", "csv"], &[]);
    assert_eq!(
        files_in(&out),
        [
            "games.csv",
            "games.parquet",
            "samples.csv",
            "samples.parquet"
        ]
    );
}

/// The same export from a MongoDB database (a fresh one, dropped after),
/// when `M2M_TEST_MONGODB_URL` names a server.
#[cfg(feature = "mongodb")]
#[test]
fn a_mongodb_database_exports_like_a_data_dir() {
    use m2m_domain::{GameStatus, GameSubmission, Role, Username};
    use m2m_store::{Accounts, ChangeFeed, Completion, Games, MongoStore, NewGame, NewUser};

    let Some(base) = std::env::var("M2M_TEST_MONGODB_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!("not run: M2M_TEST_MONGODB_URL is not set");
        return;
    };
    // The database in the URL's path (a URL with a path or options of its
    // own is not supported here).
    let database = format!("m2m_test_export_{}", Uuid::now_v7().simple());
    let url = format!("{}/{database}", base.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(MongoStore::connect(&url))
        .expect("MongoDB");
    let _drop = DropDatabase {
        url: base.clone(),
        database: database.clone(),
    };
    let want = runtime.block_on(async {
        let mut games = Vec::new();
        for (i, name) in [ADA, BOB].into_iter().enumerate() {
            let user_id = Uuid::now_v7();
            store
                .create_user(NewUser {
                    user_id,
                    username: Username::parse(name).unwrap(),
                    password_hash: "$argon2id$not-a-real-hash".into(),
                    role: Role::Patient,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
            let json = GameSpec {
                duration_s: 2.0 + i as f64,
                seed: i as u64 + 1,
                ..GameSpec::standard()
            }
            .submission_json("pinch-garden", 10.0 * (i + 1) as f64);
            let submission = GameSubmission::from_json(json.as_bytes()).unwrap();
            let game = NewGame {
                game_id: Uuid::now_v7(),
                event_id: Uuid::now_v7(),
                user_id,
                submission: submission.clone(),
                submitted_at: Utc::now(),
                trace_id: "export-test".into(),
            };
            store.submit_game(game.clone(), None).await.unwrap();
            store
                .complete_game(Completion {
                    event_id: game.event_id,
                    reconciliation_event_id: Uuid::now_v7(),
                    game_id: game.game_id,
                    user_id,
                    status: GameStatus::Processed,
                    processed_at: Utc::now(),
                    metrics: Some(submission.analyze()),
                    error: None,
                    algorithm_version: m2m_analysis::ALGORITHM_VERSION,
                })
                .await
                .unwrap();
            games.push((user_id, name, game.game_id));
        }
        expected(&store, &games).await
    });
    drop(runtime);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    export_refused(
        &["--database-url", &url, "--out", path(&out)],
        &[],
        "--pseudonym-key",
    );
    for format in ["parquet", "csv"] {
        let o = out.join(format);
        export_ok(
            &[
                "--database-url",
                &url,
                "--out",
                path(&o),
                "--format",
                format,
            ],
            &[("M2M_PSEUDONYM_KEY", KEY_A)],
        );
        let (games, samples) = read_tables(&o, format);
        check_tables(&games, &samples, &want, KEY_A.as_bytes(), false);
        check_nobody_named(&[&games, &samples], &want, false);
    }
}
