//! `m2m simulate`: simulated phones and gloves, and a load generator.
//!
//! A run registers and logs in some users, opens each user's event stream,
//! generates a pool of realistic games (before the clock starts), submits
//! them at a target rate or a fixed concurrency, waits for the
//! notifications of the accepted games, and reports counts, latencies,
//! throughput and the simulator's own CPU share.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use m2m_simulate::{Load, SimulateConfig};
//! let mut config = SimulateConfig::new("http://127.0.0.1:8080".parse()?);
//! config.users = 3;
//! config.games = Some(12);
//! config.load = Load::Concurrency(4);
//! let report = m2m_simulate::run(config).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod config;
mod cpu;
mod listener;
mod pool;
mod report;
mod submitter;
mod tracker;
mod users;

pub use config::{Channel, Format, GameOptions, Load, SimulateArgs, SimulateConfig};
pub use pool::GamePool;
pub use report::{Latency, Report, SimulatorLoad};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use reqwest::StatusCode;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use submitter::{Bound, Submitter};
use tokio::time::Instant;
use tracker::Tracker;

/// Why a run could not start. Failures during the run (errors, failed
/// games) do not stop it; they are counted in the [`Report`].
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid options: {0}")]
    Config(String),
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registering user {username} failed: {status}: {body}")]
    Register {
        username: String,
        status: StatusCode,
        body: String,
    },
    #[error("logging in user {username} failed: {status}: {body}")]
    Login {
        username: String,
        status: StatusCode,
        body: String,
    },
    #[error("opening the event stream of user {username} failed: {detail}")]
    Events { username: String, detail: String },
}

/// Runs the simulation described by `config` and returns its report.
///
/// Fails (with a [`SimulateError`]) only if the run cannot start: invalid
/// options, server unreachable, registration, login or event stream
/// refused.
pub async fn run(config: SimulateConfig) -> anyhow::Result<Report> {
    config.validate()?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()?;
    let base = &config.base_url;
    users::check_reachable(&client, base, config.request_timeout).await?;

    // Generation uses every core while the server hashes passwords.
    let generation = {
        let game = config.game.clone();
        let (seed, distinct, format, gzip) = (
            config.seed,
            config.distinct_games,
            config.format,
            config.gzip,
        );
        tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            (
                GamePool::generate(&game, seed, distinct, format, gzip),
                t.elapsed(),
            )
        })
    };
    let sessions = users::sign_up(
        &client,
        base,
        &config.run_id,
        config.users,
        config.request_timeout,
    )
    .await?;
    let (pool, generation_time) = generation.await?;

    // Streams open (answered 200) before the first submission, so no
    // notification can be missed.
    let tracker = Arc::new(Tracker::new());
    let mut background = Vec::new();
    let mut user_list = Vec::new();
    for s in &sessions {
        let listener =
            listener::listen(client.clone(), base, s.user.clone(), tracker.clone()).await;
        match listener {
            Ok(task) => background.push(task),
            Err(e) => {
                background.iter().for_each(|t| t.abort());
                return Err(e.into());
            }
        }
        user_list.push(s.user.clone());
    }
    for s in sessions {
        background.push(tokio::spawn(users::keep_fresh(
            client.clone(),
            base.clone(),
            s,
        )));
    }

    let progress = progress_bar(&config);
    let body_bytes_mean = pool.wire_mean();
    let body_bytes_raw_mean = pool.raw_mean();
    let submitter = Arc::new(Submitter {
        client,
        url: base.join("v1/games").expect("a relative path joins"),
        users: user_list,
        pool,
        tracker: tracker.clone(),
        timeout: config.request_timeout,
        progress: progress.clone(),
    });

    // The clock starts.
    let cpu_start = cpu::process_cpu_time();
    let start = Instant::now();
    let bound = Bound {
        games: config.games,
        until: config.run_for.map(|d| start + d),
    };
    submitter.run(config.load, start, bound).await;
    let submitted_at = Instant::now();

    // Drain: wait (bounded) for the notifications of the accepted games.
    let deadline = submitted_at + config.drain_timeout;
    let mut drain_timed_out = false;
    while tracker.outstanding() > 0 {
        let (done, accepted) = tracker.done_of_accepted();
        progress.set_message(format!("waiting for notifications: {done}/{accepted}"));
        if tokio::time::timeout_at(deadline, tracker.wait_progress())
            .await
            .is_err()
        {
            drain_timed_out = tracker.outstanding() > 0;
            break;
        }
    }
    let end = Instant::now();
    let cpu_end = cpu::process_cpu_time();
    progress.finish_and_clear();
    background.iter().for_each(|t| t.abort());

    let totals = tracker.finish();
    let elapsed = end.duration_since(start).as_secs_f64();
    let submit_elapsed = submitted_at.duration_since(start).as_secs_f64();
    let per_s = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
    let cpu_s = cpu_start
        .zip(cpu_end)
        .map(|(a, b)| b.saturating_sub(a).as_secs_f64());
    let completed = totals.processed + totals.failed;
    let (concurrency, rate) = match config.load {
        Load::Concurrency(n) => (Some(n), None),
        Load::Rate(r) => (None, Some(r)),
    };
    Ok(Report {
        run_id: config.run_id.clone(),
        base_url: config.base_url.to_string(),
        mode: if concurrency.is_some() {
            "concurrency"
        } else {
            "rate"
        },
        concurrency,
        rate,
        users: config.users,
        seed: config.seed,
        distinct_games: config.distinct_games,
        gzip: config.gzip,
        format: config.format.name(),
        body_bytes_mean,
        body_bytes_raw_mean,
        submitted: totals.attempted,
        accepted: totals.accepted,
        processed: totals.processed,
        failed: totals.failed,
        errored: totals.errors.values().sum(),
        errors: totals.errors.clone(),
        unnotified: totals.accepted - completed,
        drain_timed_out,
        submit_latency_ms: Latency::from_micros(&totals.submit),
        notify_latency_ms: Latency::from_micros(&totals.notify),
        elapsed_s: elapsed,
        submit_elapsed_s: submit_elapsed,
        games_per_s: per_s(totals.accepted as f64, submit_elapsed),
        completed_per_s: per_s(completed as f64, elapsed),
        bytes_sent: totals.bytes_sent,
        mb_per_s: per_s(totals.bytes_sent as f64 / 1e6, submit_elapsed),
        simulator: SimulatorLoad {
            cpu_s,
            cpu_share: cpu_s.map(|c| per_s(c, elapsed)),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pool_generation_s: generation_time.as_secs_f64(),
        },
    })
}

/// A bar on stderr when it is a terminal, else a hidden one (updates to a
/// hidden bar cost an atomic increment).
fn progress_bar(config: &SimulateConfig) -> ProgressBar {
    if !config.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match config.games {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({rate}) {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} [{elapsed_precise}] {pos} ({rate}) {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(
            style.with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} games/s", s.per_sec());
            }),
        );
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The `m2m simulate` subcommand: runs and prints the report (a table, or
/// one JSON object with `--json`) on stdout.
///
/// Exit status 0 when the run completed, even with errors or failed games
/// counted in the report; 1, with the reason on stderr, when it could not
/// start (invalid options, server unreachable, registration or login
/// refused).
pub fn main_with(args: SimulateArgs) -> ExitCode {
    let json = args.json;
    let result = SimulateConfig::try_from(args)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run(config))
        });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("m2m simulate: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let printed = if json {
        serde_json::to_writer(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write!(out, "{report}")
    };
    match printed.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("m2m simulate: cannot print the report: {e}");
            ExitCode::FAILURE
        }
    }
}
