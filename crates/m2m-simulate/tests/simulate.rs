//! Runs the simulator against the whole system embedded in the test
//! process (gateway, processor, in-process bus, SQLite in a temporary
//! directory), as `m2m serve` wires it (m2m-testkit's `spawn_app`).

use m2m_simulate::{Channel, Format, GameOptions, GamePool, Load, Report, SimulateConfig};
use m2m_testkit::{spawn_app, TestApp};
use std::time::Duration;

/// 3 users, 5-second games, a fixed seed.
fn small(system: &TestApp) -> SimulateConfig {
    let mut c = SimulateConfig::new(system.base.parse().unwrap());
    c.users = 3;
    c.game.game_seconds = 5.0;
    c.game.tremor_hz = Some(6.0);
    c.distinct_games = 6;
    c.seed = 42;
    c.drain_timeout = Duration::from_secs(60);
    c
}

fn assert_ordered(name: &str, l: &m2m_simulate::Latency, count: u64) {
    assert_eq!(l.count, count, "{name}: {l:?}");
    assert!(l.p50 > 0.0, "{name}: {l:?}");
    assert!(
        l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max,
        "{name}: {l:?}"
    );
}

fn assert_all_processed(r: &Report, games: u64) {
    assert_eq!(r.submitted, games, "{r:#?}");
    assert_eq!(r.accepted, games, "{r:#?}");
    assert_eq!(r.processed, games, "{r:#?}");
    assert_eq!((r.failed, r.errored, r.unnotified), (0, 0, 0), "{r:#?}");
    assert!(!r.drain_timed_out);
    assert_ordered("submit", &r.submit_latency_ms, games);
    assert_ordered("notify", &r.notify_latency_ms, games);
    assert!(r.notify_latency_ms.p50 >= r.submit_latency_ms.p50, "{r:#?}");
    assert!(r.games_per_s > 0.0 && r.mb_per_s > 0.0, "{r:#?}");
    assert!(r.elapsed_s >= r.submit_elapsed_s, "{r:#?}");
    assert!(r.bytes_sent as f64 >= games as f64 * r.body_bytes_mean * 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_run_is_all_processed_and_measured() {
    let system = spawn_app().await;
    let mut config = small(&system);
    config.games = Some(12);
    config.load = Load::Concurrency(4);
    let r = m2m_simulate::run(config).await.unwrap();
    assert_all_processed(&r, 12);
    assert_eq!(
        (r.mode, r.concurrency, r.rate),
        ("concurrency", Some(4), None)
    );
    assert!(r.simulator.cpu_s.is_some() && r.simulator.cores >= 1);

    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["accepted"], 12);
    assert!(json["notify_latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let table = r.to_string();
    for needle in ["accepted", "submit → event", "games/s", "of one core"] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_run_with_gzip_keeps_the_rate() {
    let system = spawn_app().await;
    let mut config = small(&system);
    config.games = Some(8);
    config.load = Load::Rate(10.0);
    config.gzip = true;
    let r = m2m_simulate::run(config).await.unwrap();
    assert_all_processed(&r, 8);
    assert_eq!((r.mode, r.rate), ("rate", Some(10.0)));
    // 8 games at 10/s: the last one is scheduled 0.7 s after the first.
    assert!(r.submit_elapsed_s >= 0.69, "{r:#?}");
    assert!(r.body_bytes_mean < r.body_bytes_raw_mean / 2.0, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cbor_run_is_all_processed_and_reports_its_format_and_bytes() {
    let system = spawn_app().await;
    let mut config = small(&system);
    config.games = Some(8);
    config.load = Load::Concurrency(2);
    let json = m2m_simulate::run(config.clone()).await.unwrap();
    config.format = Format::Cbor;
    config.run_id = format!("{}c", config.run_id);
    let cbor = m2m_simulate::run(config).await.unwrap();
    assert_all_processed(&cbor, 8);
    assert_eq!((json.format, cbor.format), ("json", "cbor"));
    // The same games: float32 typed arrays are 4 bytes a sample, under
    // two thirds of the three-decimal JSON text.
    assert!(
        cbor.bytes_sent * 3 < json.bytes_sent * 2,
        "{} vs {}",
        cbor.bytes_sent,
        json.bytes_sent
    );
    let table = cbor.to_string();
    assert!(
        table.contains("as CBOR") && table.contains("MB of CBOR bodies sent"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_for_bound_stops_the_run() {
    let system = spawn_app().await;
    let mut config = small(&system);
    config.users = 1;
    config.games = None;
    config.run_for = Some(Duration::from_millis(600));
    config.load = Load::Rate(5.0);
    let r = m2m_simulate::run(config).await.unwrap();
    // Ticks at 0, 0.2 and 0.4 s (0.6 s is the bound).
    assert!((2..=4).contains(&r.accepted), "{r:#?}");
    assert_all_processed(&r, r.accepted);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = SimulateConfig::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let e = m2m_simulate::run(config).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot reach the server at http://127.0.0.1:"),
        "{e:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_is_a_clear_error() {
    let system = spawn_app().await;
    let taken = system
        .post_json(
            "/v1/users",
            &serde_json::json!({"username": "sim-taken-0", "password": "0123456789ab"}),
        )
        .await;
    assert_eq!(taken.status(), 201);
    let mut config = small(&system);
    config.users = 1;
    config.run_id = "taken".into();
    let e = m2m_simulate::run(config).await.unwrap_err().to_string();
    assert!(
        e.starts_with("registering user sim-taken-0 failed: 409"),
        "{e}"
    );
}

#[test]
fn the_same_seed_gives_the_same_game_bodies() {
    let opts = GameOptions {
        game_seconds: 3.0,
        sample_rate_hz: 100.0,
        channels: vec![Channel::Flex, Channel::Force, Channel::Gyro, Channel::Accel],
        tremor_hz: Some(6.0),
        noise: 0.3,
    };
    let a = GamePool::generate(&opts, 7, 5, Format::Json, false);
    let b = GamePool::generate(&opts, 7, 5, Format::Json, false);
    let c = GamePool::generate(&opts, 8, 5, Format::Json, false);
    assert_eq!(a.bodies(), b.bodies());
    assert_ne!(a.bodies(), c.bodies());
    let distinct: std::collections::HashSet<_> = a.bodies().iter().collect();
    assert_eq!(distinct.len(), 5, "each game of the pool is different");
    let v: serde_json::Value = serde_json::from_slice(&a.body(0)).unwrap();
    assert_eq!(v["channels"].as_object().unwrap().len(), 16);
}
