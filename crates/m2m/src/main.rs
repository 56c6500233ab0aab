//! The `m2m` executable. Parses the subcommand and hands over to the library
//! function of that role; no logic lives here.

mod analyze;
mod serve;
mod telemetry;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze { file } => analyze::run(&file),
        Command::Serve(args) => {
            telemetry::init();
            match serve::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("m2m serve: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
