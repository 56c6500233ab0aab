//! `m2m gateway` and `m2m processor`: the scaled-out roles, any number of
//! each, talking through RabbitMQ and sharing one database.
//!
//! A binary built without the `rabbitmq` feature keeps both subcommands
//! (same arguments, same help) but they stop at once with an error saying
//! so: clearer to an operator than an unknown subcommand.

// Without RabbitMQ the roles' arguments and helpers are parsed but unused.
#![cfg_attr(not(feature = "rabbitmq"), allow(dead_code, unused_imports))]

use crate::serve::{bind, print_line, wait_for_signal};
use anyhow::Context;
use m2m_bus::Bus;
#[cfg(feature = "rabbitmq")]
use m2m_bus::RabbitBus;
use m2m_gateway::{AppState, GatewayConfig, JwtSecret};
use m2m_processor::{Processor, ProcessorConfig};
#[cfg(feature = "mongodb")]
use m2m_store::MongoStore;
use m2m_store::{SqliteStore, Store};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Where the shared parts are.
#[derive(Debug, clap::Args)]
pub(crate) struct Shared {
    /// The RabbitMQ broker, e.g. amqp://guest:guest@127.0.0.1:5672/%2f
    #[arg(long, env = "M2M_AMQP_URL")]
    amqp_url: String,
    /// The database: sqlite:///absolute/path.db or mongodb://host:27017/m2m
    #[arg(long, env = "M2M_DATABASE_URL")]
    database_url: String,
}

/// Options of `m2m gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Address to listen on, HOST:PORT; the host is an IP address or a
    /// name (localhost), port 0 picks a free port.
    #[arg(long, env = "M2M_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    shared: Shared,
    /// Largest game upload in bytes, after decompression (the account
    /// endpoints take at most 8 KiB).
    #[arg(long, env = "M2M_BODY_LIMIT", default_value_t = 32 * 1024 * 1024)]
    body_limit: usize,
}

/// Options of `m2m processor`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProcessorArgs {
    #[command(flatten)]
    shared: Shared,
    /// Games analysed at once, and the broker prefetch (default: the
    /// number of cores).
    #[arg(long, env = "M2M_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Deliveries of a message that fails on its own account before its
    /// game is marked failed and the message dead-lettered.
    #[arg(long, env = "M2M_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Opens the store a database URL names: `sqlite:///abs/path.db`, or
/// `mongodb://…` / `mongodb+srv://…` with the URL's options (replica set,
/// TLS, authSource, timeouts) honoured and the database named in its path.
pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open_url(url)
            .with_context(|| format!("cannot open the database {url}"))?;
        return Ok(Arc::new(store));
    }
    #[cfg(feature = "mongodb")]
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        // The URL may hold a password: the error names the server only.
        let store = MongoStore::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the MongoDB database: {e}"))?;
        return Ok(Arc::new(store));
    }
    #[cfg(not(feature = "mongodb"))]
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        anyhow::bail!(
            "this m2m was built without MongoDB support (cargo feature `mongodb`): \
             it cannot use a mongodb:// database; use sqlite:///absolute/path.db or a \
             build with default features"
        );
    }
    anyhow::bail!("unsupported database URL (expected sqlite:///absolute/path.db or mongodb://…)")
}

#[cfg(feature = "rabbitmq")]
fn open_bus(url: &str) -> anyhow::Result<RabbitBus> {
    RabbitBus::start(url).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Why the scaled-out roles cannot run in a build without RabbitMQ.
#[cfg(not(feature = "rabbitmq"))]
fn without_rabbitmq() -> anyhow::Error {
    anyhow::anyhow!(
        "this m2m was built without RabbitMQ support (cargo feature `rabbitmq`), which \
         the scaled-out roles need; run `m2m serve`, or use a build with default features"
    )
}

#[cfg(not(feature = "rabbitmq"))]
pub(crate) fn run_gateway(_: GatewayArgs) -> anyhow::Result<()> {
    Err(without_rabbitmq())
}

#[cfg(not(feature = "rabbitmq"))]
pub(crate) fn run_processor(_: ProcessorArgs) -> anyhow::Result<()> {
    Err(without_rabbitmq())
}

#[cfg(feature = "rabbitmq")]
pub(crate) fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let listener = bind(&args.listen).await?;
        let secret = std::env::var("M2M_JWT_SECRET").context(
            "M2M_JWT_SECRET must be set: every gateway signs and checks tokens with this shared secret",
        )?;
        anyhow::ensure!(secret.len() >= 32, "M2M_JWT_SECRET must be at least 32 characters");
        let store = open_store(&args.shared.database_url).await?;
        let bus: Arc<dyn Bus> = Arc::new(open_bus(&args.shared.amqp_url)?);
        let mut config = GatewayConfig::new(JwtSecret::new(secret.into_bytes()));
        config.body_limit = args.body_limit;
        let registry = Arc::new(Mutex::new(Registry::default()));
        let shutdown = CancellationToken::new();
        let state = AppState::new(store, bus, config, registry, shutdown.clone());
        let addr = listener.local_addr()?;
        print_line(&format!("m2m gateway serving on http://{addr}"));
        info!(%addr, "m2m gateway started");
        tokio::spawn(wait_for_signal(shutdown));
        m2m_gateway::serve(listener, state).await.context("the HTTP server failed")?;
        info!("m2m gateway stopped");
        Ok(())
    })
}

#[cfg(feature = "rabbitmq")]
pub(crate) fn run_processor(args: ProcessorArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let store = open_store(&args.shared.database_url).await?;
        let rabbit = open_bus(&args.shared.amqp_url)?;
        let bus: Arc<dyn Bus> = Arc::new(rabbit.clone());
        let mut config = ProcessorConfig {
            max_attempts: args.max_attempts.max(1),
            ..ProcessorConfig::default()
        };
        if let Some(c) = args.concurrency {
            config.concurrency = c.max(1);
        }
        let concurrency = config.concurrency;
        let mut registry = Registry::default();
        let processor = Arc::new(Processor::new(store, bus, config, &mut registry));
        let shutdown = CancellationToken::new();
        print_line(&format!(
            "m2m processor consuming with concurrency {concurrency}"
        ));
        tokio::spawn(wait_for_signal(shutdown.clone()));
        let run = processor.run(shutdown).await;
        // Every delivery is settled and the consumer's channel closed: the
        // connection can go.
        rabbit.close().await;
        run.map_err(|e| anyhow::anyhow!("{e}"))?;
        info!("m2m processor stopped");
        Ok(())
    })
}
