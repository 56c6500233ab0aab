//! `m2m reprocess`: analyse stored games again under this release's metric
//! definitions (docs/data-lifecycle.md, "Results that can be recomputed").
//!
//! The command chooses the games from the store (`Games::games_to_reprocess`,
//! a page at a time) and stores one reprocessing event per game in the
//! store's outbox (`Outbox::enqueue_reprocessing`, keyed by game and
//! version). Whatever publishes that store's outbox puts them on the same
//! bus as uploads: the gateways of a scaled-out deployment (RabbitMQ, so
//! every processor shares the work), a running `m2m serve`, or, on a data
//! directory nobody serves, this command itself (an in-process publisher
//! and processor, no HTTP). It then follows the games still to do, with a
//! progress bar on a terminal and a summary line at the end.
//!
//! "Done" is read from the store, never remembered by the command: stopped
//! (Ctrl-C) and run again, it selects only the games still below the
//! version, so finished games are not analysed again; the processor also
//! skips a game already analysed under the version, and the store keeps one
//! result per game and version.

use anyhow::Context;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2m_app::{AppConfig, Application, BusSource, StoreSource};
use m2m_processor::ProcessorConfig;
use m2m_store::{ReprocessSelection, Store};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Games chosen and stored per page.
const PAGE: u32 = 500;
/// How often the games still to do are counted while following.
const POLL: Duration = Duration::from_millis(250);

/// Options of `m2m reprocess`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("which")
        .required(true)
        .args(["all", "before_version"])
))]
pub(crate) struct ReprocessArgs {
    /// Every game not yet analysed under this release's algorithm version.
    #[arg(long)]
    all: bool,
    /// The games whose newest result is of an algorithm version below V
    /// (at most this release's; `--all` is `--before-version` with this
    /// release's version).
    #[arg(long, value_name = "V", value_parser = clap::value_parser!(u32).range(1..))]
    before_version: Option<u32>,
    /// Only the games of this user (a user id); repeat it for several.
    /// Without it, every user's.
    #[arg(long = "user", value_name = "ID")]
    users: Vec<Uuid>,
    /// Only store the reprocessing events, and return: the services running
    /// on the store (or the next `m2m serve` on the data directory) do the
    /// work. Without it, the command follows until every chosen game is
    /// done.
    #[arg(long)]
    no_wait: bool,
    /// The data directory of `m2m serve` (its SQLite file `m2m.db`), used
    /// when no database URL is given. With no `m2m serve` running on it,
    /// the command analyses the games itself.
    #[arg(long, env = "M2M_DATA_DIR", default_value = "./m2m-data")]
    data_dir: PathBuf,
    /// The database of a scaled-out deployment: sqlite:///absolute/path.db
    /// or mongodb://host:27017/m2m. Its gateways publish the events and its
    /// processors analyse the games. Takes precedence over --data-dir.
    #[arg(long, env = "M2M_DATABASE_URL")]
    database_url: Option<String>,
    /// Games analysed at once when the command does the work itself
    /// (default: the number of cores).
    #[arg(long, env = "M2M_CONCURRENCY")]
    concurrency: Option<usize>,
}

/// Why the command did not finish.
enum Failure {
    /// Not as asked (exit status 2): the message says why.
    Refused(String),
    /// Stopped by a signal (exit status 130); what was done stays done.
    Interrupted { done: u64, total: u64 },
    /// The store or the system failed (exit status 1).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(e)
    }
}

impl From<m2m_store::StoreError> for Failure {
    fn from(e: m2m_store::StoreError) -> Self {
        Failure::Failed(anyhow::Error::new(e).context("the store failed"))
    }
}

pub(crate) fn run(args: ReprocessArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::from)
        .and_then(|runtime| runtime.block_on(reprocess(args)));
    let (code, line) = match result {
        Ok(summary) => {
            crate::serve::print_line(&summary);
            return ExitCode::SUCCESS;
        }
        Err(Failure::Refused(why)) => (ExitCode::from(2), why),
        Err(Failure::Interrupted { done, total }) => {
            crate::serve::print_line(&format!(
                "interrupted: {done} of {total} games reprocessed; run the same command again \
                 to go on (the games done are not analysed again)"
            ));
            return ExitCode::from(130);
        }
        Err(Failure::Failed(e)) => (ExitCode::FAILURE, crate::report(&e)),
    };
    let _ = writeln!(std::io::stderr(), "m2m reprocess: {line}");
    code
}

/// Where the work happens.
enum Worker {
    /// Elsewhere: the services running on the store.
    Elsewhere,
    /// Here: an in-process publisher and processor over the data
    /// directory, which this process holds locked.
    Here {
        app: Application,
        _lock: std::fs::File,
    },
}

async fn reprocess(args: ReprocessArgs) -> Result<String, Failure> {
    let version = crate::algorithm_version()?;
    let below = match args.before_version {
        Some(v) if v > version => {
            return Err(Failure::Refused(format!(
                "--before-version {v} is above this release's algorithm version {version}: \
                 no game can be analysed under a version this release does not have"
            )))
        }
        Some(v) => v,
        None => version,
    };
    let selection = ReprocessSelection {
        below,
        users: args.users,
    };
    let (store, worker, serving) = open(
        args.database_url,
        &args.data_dir,
        args.no_wait,
        version,
        args.concurrency,
    )
    .await?;

    let total = store.count_to_reprocess(&selection).await?;
    let trace_id = Uuid::now_v7().simple().to_string();
    let mut after = None;
    let mut stored = 0;
    loop {
        let page = store.games_to_reprocess(&selection, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.game_id);
        stored += store
            .enqueue_reprocessing(&page, version, &trace_id, Utc::now())
            .await?;
    }
    tracing::info!(total, stored, version, %trace_id, "reprocessing events stored");

    if args.no_wait {
        return Ok(format!(
            "{total} games to reprocess under algorithm version {version}: {stored} events \
             stored for {serving}"
        ));
    }
    let bar = progress_bar(total);
    let followed = follow(&*store, &selection, total, version, &bar).await;
    bar.finish_and_clear();
    if let Worker::Here { app, .. } = worker {
        app.stop()
            .await
            .context("stopping the in-process processor")?;
    }
    followed?;
    Ok(format!(
        "{total} games reprocessed under algorithm version {version}"
    ))
}

/// Opens the store, and starts the in-process work where nobody else would
/// do it. The text says who does the work, for the summary of `--no-wait`.
async fn open(
    database_url: Option<String>,
    data_dir: &std::path::Path,
    no_wait: bool,
    version: u32,
    concurrency: Option<usize>,
) -> Result<(Arc<dyn Store>, Worker, &'static str), Failure> {
    if let Some(url) = database_url {
        let store = m2m_app::open_store(StoreSource::Url(url))
            .await
            .context("cannot open the store")?;
        return Ok((store, Worker::Elsewhere, "the deployment's processors"));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join("m2m.db");
    let lock = match crate::serve::try_lock_data_dir(data_dir)? {
        Ok(lock) if !no_wait => lock,
        Ok(_) => {
            // Released: the next `m2m serve` publishes what is stored.
            let store = m2m_app::open_store(StoreSource::Sqlite(path))
                .await
                .context("cannot open the store")?;
            return Ok((store, Worker::Elsewhere, "the next m2m serve"));
        }
        Err(_) => {
            // `m2m serve` runs on it: its publisher and processor do the
            // work.
            let store = m2m_app::open_store(StoreSource::Sqlite(path))
                .await
                .context("cannot open the store")?;
            return Ok((store, Worker::Elsewhere, "the running m2m serve"));
        }
    };
    let mut processor = ProcessorConfig {
        algorithm_version: version,
        ..ProcessorConfig::default()
    };
    if let Some(c) = concurrency {
        processor.concurrency = c.max(1);
    }
    let mut config = AppConfig::new(
        StoreSource::Sqlite(path),
        BusSource::InProcess {
            capacity: m2m_bus::DEFAULT_CAPACITY,
        },
    );
    config.processor = Some(processor);
    config.publisher = true;
    let app = Application::build(config)
        .await
        .context("cannot start the in-process processor")?;
    let store = app.store().clone();
    Ok((store, Worker::Here { app, _lock: lock }, "this command"))
}

/// Counts the games still to do until there are none, or a signal comes
/// (SIGINT, Ctrl-C, or SIGTERM). The first line on stdout says what it
/// follows, once the signals are caught.
async fn follow(
    store: &dyn Store,
    selection: &ReprocessSelection,
    total: u64,
    version: u32,
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let mut signal = std::pin::pin!(interrupted()?);
    crate::serve::print_line(&format!(
        "reprocessing {total} games under algorithm version {version}"
    ));
    loop {
        let left = store.count_to_reprocess(selection).await?;
        let done = total.saturating_sub(left);
        bar.set_position(done);
        if left == 0 {
            return Ok(());
        }
        tokio::select! {
            () = &mut signal => return Err(Failure::Interrupted { done, total }),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Resolves at SIGINT or SIGTERM; both are caught from the moment this
/// returns.
fn interrupted() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// A bar on stderr when the command runs on a terminal (stdout and stderr
/// both), else a hidden one: the summary line on stdout is what a script
/// reads.
fn progress_bar(total: u64) -> ProgressBar {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} games reprocessed ({eta} left)",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
