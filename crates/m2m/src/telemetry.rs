//! The one place the log subscriber is built.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `M2M_LOG` (or `RUST_LOG`; default `info`),
/// as JSON lines when `M2M_LOG_FORMAT=json`.
pub(crate) fn init() {
    let filter = std::env::var("M2M_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(Stderr)
        // Its report of a failed write goes to stderr with `eprintln!`,
        // which panics when stderr is the failure.
        .log_internal_errors(false);
    if std::env::var("M2M_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Stderr that never fails: a log line that cannot be written (the reader
/// of a pipe went away, a full disk) is dropped, so logging can neither
/// take the process down nor stop a shutdown. (The Rust runtime ignores
/// SIGPIPE, so a closed pipe is an `EPIPE` error here, not a signal.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}
