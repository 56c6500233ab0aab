//! The one place the log subscriber is built.

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
        .with_writer(std::io::stderr);
    if std::env::var("M2M_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
