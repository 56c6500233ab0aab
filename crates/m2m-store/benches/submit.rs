//! Uploads into a fresh SQLite store: 128 standard games (60 s at 100 Hz,
//! 16 channels, ~0.38 MB of columns each) submitted by concurrent callers,
//! from the encode of the columns to the durable commit: about 49 MB of
//! columns, so that every variant checkpoints its WAL several times. Each variant is
//! the product's settings ([`SqliteSettings::default`]) with one changed,
//! so that the figures of one run compare them (docs/performance.md,
//! "Group commit and SQLite settings").
//!
//! Two loads: `all_at_once` (128 callers: batches as large as the limits
//! allow) and `four_clients` (4 callers uploading 32 games each, one after
//! the other, as the simulator's closed loop at concurrency 4).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use m2m_domain::GameSubmission;
use m2m_store::{BatchLimits, Games, NewGame, SqliteSettings, SqliteStore, SubmitOutcome};
use m2m_synth::GameSpec;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const GAMES: usize = 128;

fn variants() -> Vec<(&'static str, SqliteSettings)> {
    let product = SqliteSettings::default();
    vec![
        (
            "one_by_one",
            SqliteSettings {
                batch: BatchLimits::ONE_BY_ONE,
                ..product
            },
        ),
        ("product", product),
        (
            // SQLite's default, and this store's before it was measured.
            "page_size_4k",
            SqliteSettings {
                page_size: 4096,
                ..product
            },
        ),
        (
            "page_size_64k",
            SqliteSettings {
                page_size: 65536,
                ..product
            },
        ),
        (
            // The WAL checkpointed at 4 MB, as with 4 KiB pages.
            "wal_autocheckpoint_250",
            SqliteSettings {
                wal_autocheckpoint: 250,
                ..product
            },
        ),
        (
            "wal_autocheckpoint_4000",
            SqliteSettings {
                wal_autocheckpoint: 4000,
                ..product
            },
        ),
        (
            "statement_cache_64",
            SqliteSettings {
                statement_cache: 64,
                ..product
            },
        ),
        (
            "mmap_256m",
            SqliteSettings {
                mmap_size: 256 << 20,
                ..product
            },
        ),
        (
            // SQLite's default: a savepoint's journal spills into a
            // temporary file past 64 KiB.
            "temp_store_file",
            SqliteSettings {
                temp_in_memory: false,
                ..product
            },
        ),
        (
            "cache_16m",
            SqliteSettings {
                cache_kib: 16 << 10,
                ..product
            },
        ),
    ]
}

/// Submits `games` from `clients` concurrent callers, each taking every
/// `clients`-th game in turn.
async fn submit_all(store: &SqliteStore, games: Vec<NewGame>, clients: usize) {
    let games = Arc::new(games);
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (store, games) = (store.clone(), Arc::clone(&games));
            tokio::spawn(async move {
                for game in games.iter().skip(client).step_by(clients) {
                    let outcome = store.submit_game(game.clone(), None).await;
                    assert_eq!(outcome.expect("stored"), SubmitOutcome::Created);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task ran");
    }
}

fn submit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let json = GameSpec::standard().submission_json("pinch-garden", 1234.0);
    let submission = GameSubmission::from_json(json.as_bytes()).expect("a valid game");
    let user = Uuid::now_v7();
    let games = || -> Vec<NewGame> {
        (0..GAMES)
            .map(|_| NewGame {
                game_id: Uuid::now_v7(),
                event_id: Uuid::now_v7(),
                user_id: user,
                submission: submission.clone(),
                submitted_at: chrono::Utc::now(),
                trace_id: "bench".into(),
            })
            .collect()
    };

    let mut group = c.benchmark_group("submit");
    group.throughput(Throughput::Elements(GAMES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (load, clients) in [("all_at_once", GAMES), ("four_clients", 4)] {
        for (name, settings) in variants() {
            group.bench_function(format!("{load}/{name}"), |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir().expect("a temporary directory");
                        let store = SqliteStore::open_with(&dir.path().join("m2m.db"), settings)
                            .expect("a store");
                        (dir, store, games())
                    },
                    |(dir, store, games)| {
                        runtime.block_on(submit_all(&store, games, clients));
                        // Dropped after the timing, with the files.
                        (dir, store)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, submit);
criterion_main!(benches);
