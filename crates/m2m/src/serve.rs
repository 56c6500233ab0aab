//! `m2m serve`: the whole system in one process — gateway, processor,
//! in-process bus and SQLite store.

use anyhow::Context;
use m2m_app::{AppConfig, Application, BusSource, GatewaySetup, Listen, StoreSource};
use m2m_gateway::{GatewayConfig, JwtSecret};
use m2m_processor::ProcessorConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Options of `m2m serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on, HOST:PORT; the host is an IP address or a
    /// name (localhost), port 0 picks a free port.
    #[arg(long, env = "M2M_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Directory of the SQLite database (and, without M2M_JWT_SECRET, the
    /// generated token secret); one m2m serve at a time may use it.
    #[arg(long, env = "M2M_DATA_DIR", default_value = "./m2m-data")]
    data_dir: PathBuf,
    /// Largest game upload in bytes, after decompression (the account
    /// endpoints take at most 8 KiB).
    #[arg(long, env = "M2M_BODY_LIMIT", default_value_t = 32 * 1024 * 1024)]
    body_limit: usize,
    /// Games analysed at once (default: the number of cores).
    #[arg(long, env = "M2M_CONCURRENCY")]
    concurrency: Option<usize>,
    /// The secret signing access tokens, at least 32 characters (prefer
    /// the environment: a command line is visible to every user). Without
    /// it, one is generated once and kept in the data directory.
    #[arg(long, env = "M2M_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<Secret>,
}

/// A secret from the command line or the environment. `Debug` does not
/// print it, and clap never sees a reason to refuse it (its error would
/// quote the value): the length is checked in [`Secret::jwt`].
#[derive(Clone)]
pub(crate) struct Secret(String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The token secret, refused when shorter than 32 characters.
    pub(crate) fn jwt(self) -> anyhow::Result<JwtSecret> {
        anyhow::ensure!(
            self.0.len() >= 32,
            "M2M_JWT_SECRET (--jwt-secret) must be at least 32 characters"
        );
        Ok(JwtSecret::new(self.0.into_bytes()))
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // The port first: a start that cannot serve should fail before it
    // touches the data directory.
    let listener = m2m_app::bind(&args.listen).await?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    // Held until this function returns, and by the kernel until the
    // process ends, however it ends.
    let _lock = lock_data_dir(&args.data_dir)?;
    let secret = match args.jwt_secret {
        Some(secret) => secret.jwt()?,
        None => kept_jwt_secret(&args.data_dir)?,
    };
    let mut gateway = GatewayConfig::new(secret);
    gateway.body_limit = args.body_limit;
    let mut processor = ProcessorConfig {
        algorithm_version: crate::algorithm_version()?,
        ..ProcessorConfig::default()
    };
    if let Some(c) = args.concurrency {
        processor.concurrency = c.max(1);
    }
    let mut config = AppConfig::new(
        StoreSource::Sqlite(args.data_dir.join("m2m.db")),
        BusSource::InProcess {
            capacity: m2m_bus::DEFAULT_CAPACITY,
        },
    );
    config.gateway = Some(GatewaySetup {
        listen: Listen::Bound(listener),
        config: gateway,
    });
    config.processor = Some(processor);
    let app = Application::build(config).await?;

    let addr = app.address().context("the gateway has no address")?;
    // Not fatal when stdout is closed: the address is in the log too.
    print_line(&format!(
        "m2m serving on http://{addr} (data in {})",
        args.data_dir.display()
    ));
    info!(%addr, data_dir = %args.data_dir.display(), "m2m serve started");

    tokio::spawn(wait_for_signal(app.shutdown_token()));
    app.run_until_stopped().await?;
    info!("m2m serve stopped");
    Ok(())
}

/// Writes one line to stdout, ignoring a stdout that cannot be written.
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Takes the lock of the data directory, `lock` in it, for as long as the
/// returned file is open: two processes writing one SQLite database and
/// each relaying and processing its queue would diverge. The lock is the
/// operating system's (`flock`), so it goes with the process, even a killed
/// one; the file keeps the holder's pid for the message of the next one.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    match try_lock_data_dir(dir)? {
        Ok(file) => Ok(file),
        Err(holder) => anyhow::bail!(
            "the data directory {} is in use by another m2m serve{holder}; \
             stop it or choose another --data-dir",
            dir.display()
        ),
    }
}

/// Like [`lock_data_dir`], but a lock held by another process is not an
/// error: `Err` says who holds it (" (pid N)", or nothing when unknown).
/// `m2m reprocess` works either way: with `m2m serve` running, that serve
/// does the work.
pub(crate) fn try_lock_data_dir(dir: &Path) -> anyhow::Result<Result<std::fs::File, String>> {
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            return Ok(Err(holder));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot lock the data directory {} ({})",
                    dir.display(),
                    path.display()
                )
            });
        }
    }
    // Only informative: the lock is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(Ok(file))
}

/// The token secret when none is given: one generated once and kept in
/// the data directory (fine for one process; a scaled-out deployment must
/// share a secret between its gateways).
fn kept_jwt_secret(data_dir: &Path) -> anyhow::Result<JwtSecret> {
    let path = data_dir.join("jwt-secret");
    let secret = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            let s = JwtSecret::generate_hex();
            write_private(&path, &s).with_context(|| format!("cannot write {}", path.display()))?;
            s
        }
    };
    warn!(
        path = %path.display(),
        "M2M_JWT_SECRET is not set: using a secret generated and kept in the data directory"
    );
    Ok(JwtSecret::new(secret.into_bytes()))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn wait_for_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    // Cancel first: nothing, not even a log line, may stand between a
    // signal and the shutdown it asks for.
    token.cancel();
    info!("shutting down");
}
