//! `m2m analyze FILE`: the analysis of one game from the command line.

use m2m_domain::{GameSubmission, SubmissionError};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// Exit status for input that cannot be analysed (unreadable, not JSON,
/// invalid), as documented in the command's help.
const BAD_INPUT: u8 = 2;

/// What `m2m analyze` prints: the metrics in the API's key order.
#[derive(serde::Serialize)]
struct Output<'a> {
    metrics: &'a m2m_analysis::Metrics,
}

pub(crate) fn run(file: &Path) -> ExitCode {
    match analyze(file) {
        Ok(json) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{json}").and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("m2m analyze: {message}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

fn analyze(file: &Path) -> Result<String, String> {
    let bytes = read_input(file)?;
    let game = GameSubmission::from_json(&bytes).map_err(|e| match e {
        SubmissionError::Malformed(m) => format!("{}: not valid JSON: {m}", file.display()),
        SubmissionError::Invalid(errors) => {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            format!(
                "{}: invalid game submission:\n{}",
                file.display(),
                lines.join("\n")
            )
        }
    })?;
    let metrics = game.analyze();
    serde_json::to_string(&Output { metrics: &metrics })
        .map_err(|e| format!("cannot encode the metrics: {e}"))
}

fn read_input(file: &Path) -> Result<Vec<u8>, String> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
    }
}
