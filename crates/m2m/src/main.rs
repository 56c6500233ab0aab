//! The `m2m` executable. Parses the subcommand and hands over to the library
//! function of that role; no logic lives here.

mod analyze;
mod export;
mod reprocess;
mod scaled;
mod serve;
mod telemetry;
mod users;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc rather than the system allocator. Each game is a few hundred
/// KiB allocated and freed on whichever blocking-pool thread parses, stores
/// or analyses it. With glibc's malloc, `m2m serve` either kept freed memory
/// in its per-thread arenas (with its adaptive thresholds raised) or paid
/// for returning it at every game (about 9 % of throughput at its default
/// thresholds); jemalloc gives the throughput at the low footprint, without
/// tuning (docs/performance.md, "Where the memory goes"). It serves the C
/// code's `malloc` too (the feature `unprefixed_malloc_on_supported_platforms`
/// in Cargo.toml), so that SQLite's page buffers are not faulted in again
/// after glibc hands them back.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// m2m: the backend of a rehabilitation game played with a sensor glove.
#[derive(Debug, Parser)]
#[command(name = "m2m", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse one game submission (JSON) and print its metrics as JSON.
    ///
    /// Exit status 0 on success, 2 when the file cannot be read, is not JSON
    /// or is not a valid GameSubmission (the reason, naming the field, is
    /// printed on stderr).
    Analyze {
        /// The GameSubmission file; `-` reads standard input.
        file: PathBuf,
    },
    /// Run the whole system in one process: gateway, processor, in-process
    /// event bus and SQLite store. Stops cleanly on SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Run an HTTP gateway of the scaled-out deployment (any number of
    /// them, against one broker and one database). Needs M2M_JWT_SECRET.
    Gateway(scaled::GatewayArgs),
    /// Run a processing service of the scaled-out deployment (any number of
    /// them share the processing queue).
    Processor(scaled::ProcessorArgs),
    /// Simulate phones and gloves against a running server: register users,
    /// submit generated games (at a rate or a concurrency), wait for their
    /// notifications and report counts, latencies and throughput.
    Simulate(m2m_simulate::SimulateArgs),
    /// Manage accounts in the store of `m2m serve` (--data-dir) or of a
    /// scaled-out deployment (--database-url): `m2m users add --role
    /// therapist --username NAME` creates a therapist's account.
    Users(users::UsersArgs),
    /// Analyse stored games again under this release's metric definitions
    /// (algorithm version), keeping their earlier results as history:
    /// `m2m reprocess --all`, or `--before-version V`, optionally
    /// `--user ID` (repeatable). Works on the store of `m2m serve`
    /// (--data-dir; without a running serve it does the work itself) or of
    /// a scaled-out deployment (--database-url; its processors do the
    /// work). Interrupted and run again, it skips the games done.
    Reprocess(reprocess::ReprocessArgs),
    /// Export every game (or those of a time range or of some users) as
    /// two research tables, games and samples, in Parquet or CSV, with
    /// user ids pseudonymised: `m2m export --out DIR`.
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze { file } => analyze::run(&file),
        Command::Serve(args) => service("serve", || serve::run(args)),
        Command::Gateway(args) => service("gateway", || scaled::run_gateway(args)),
        Command::Processor(args) => service("processor", || scaled::run_processor(args)),
        Command::Simulate(args) => m2m_simulate::main_with(args),
        Command::Users(args) => users::run(args),
        Command::Reprocess(args) => reprocess::run(args),
        Command::Export(args) => export::run(args),
    }
}

/// The algorithm version this process stores its results under:
/// [`m2m_analysis::ALGORITHM_VERSION`]. A debug build (the tests') also
/// reads `M2M_TEST_ALGORITHM_VERSION`, a later version, to play a later
/// release over the same metric definitions; a release build has no such
/// setting, so results are never labelled with definitions they were not
/// made with.
fn algorithm_version() -> anyhow::Result<u32> {
    let version = m2m_analysis::ALGORITHM_VERSION;
    match test_algorithm_version() {
        None => Ok(version),
        Some(v) => v
            .to_str()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v >= version)
            .with_context(|| {
                format!("M2M_TEST_ALGORITHM_VERSION must be a version from {version} on")
            }),
    }
}

#[cfg(debug_assertions)]
fn test_algorithm_version() -> Option<std::ffi::OsString> {
    std::env::var_os("M2M_TEST_ALGORITHM_VERSION")
}

#[cfg(not(debug_assertions))]
fn test_algorithm_version() -> Option<std::ffi::OsString> {
    None
}

/// Runs a long-lived role with logging; failures are reported on stderr.
fn service(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match telemetry::init().and_then(|()| run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not `eprintln!`, which panics when stderr is a closed pipe:
            // the exit status says it anyway.
            let _ = writeln!(std::io::stderr(), "m2m {name}: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, as `{:#}` writes them, but each
/// cause once: the store's and the bus's errors end their own message with
/// their cause's (for the logs), which `{:#}` would then repeat.
fn report(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
