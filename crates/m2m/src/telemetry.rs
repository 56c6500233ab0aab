//! The one place the log subscriber is built.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The values `M2M_LOG_FORMAT` accepts.
const FORMATS: &str = "text, json";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// The log format `M2M_LOG_FORMAT` names (`None`: unset, text); an unknown
/// value is an error, not a silent fallback.
fn format_from(value: Option<std::ffi::OsString>) -> anyhow::Result<Format> {
    let Some(value) = value else {
        return Ok(Format::Text);
    };
    match value.to_str() {
        Some("text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json),
        _ => anyhow::bail!(
            "M2M_LOG_FORMAT={} is not a log format; accepted values: {FORMATS}",
            value.to_string_lossy()
        ),
    }
}

/// Logs to stderr, filtered by `M2M_LOG` (or `RUST_LOG`; default `info`),
/// as text or, when `M2M_LOG_FORMAT=json`, as JSON lines. Fails on an
/// unknown `M2M_LOG_FORMAT` or a filter that cannot be parsed, before
/// anything has started.
pub(crate) fn init() -> anyhow::Result<()> {
    let format = format_from(std::env::var_os("M2M_LOG_FORMAT"))?;
    let (name, filter) = match (std::env::var("M2M_LOG"), std::env::var("RUST_LOG")) {
        (Ok(f), _) => ("M2M_LOG", f),
        (Err(_), Ok(f)) => ("RUST_LOG", f),
        _ => ("M2M_LOG", "info".to_owned()),
    };
    // A filter with a directive that cannot be parsed is refused, rather
    // than that directive silently dropped.
    let filter = EnvFilter::try_new(&filter)
        .map_err(|e| anyhow::anyhow!("{name}={filter} is not a log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(Stderr)
        // Its report of a failed write goes to stderr with `eprintln!`,
        // which panics when stderr is the failure.
        .log_internal_errors(false);
    match format {
        Format::Json => builder.json().init(),
        Format::Text => builder.init(),
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_is_text_json_or_refused() {
        assert_eq!(format_from(None).unwrap(), Format::Text);
        assert_eq!(format_from(Some("text".into())).unwrap(), Format::Text);
        assert_eq!(format_from(Some("json".into())).unwrap(), Format::Json);
        for bad in ["yaml", "", "JSON", "json "] {
            let e = format_from(Some(bad.into())).unwrap_err().to_string();
            assert!(e.contains("accepted values: text, json"), "{bad:?}: {e}");
            assert!(e.contains(&format!("M2M_LOG_FORMAT={bad}")), "{bad:?}: {e}");
        }
    }
}
