//! `m2m gateway` and `m2m processor`: the scaled-out roles, any number of
//! each, talking through RabbitMQ and sharing one database.
//!
//! A binary built without the `rabbitmq` feature keeps both subcommands
//! (same arguments, same help) but they stop at once with an error saying
//! so: clearer to an operator than an unknown subcommand.

// Without RabbitMQ the roles' arguments and helpers are parsed but unused.
#![cfg_attr(not(feature = "rabbitmq"), allow(dead_code, unused_imports))]

use crate::serve::{print_line, wait_for_signal, Secret};
use anyhow::Context;
use m2m_app::{AppConfig, Application, BusSource, GatewaySetup, Listen, StoreSource};
use m2m_gateway::GatewayConfig;
use m2m_processor::ProcessorConfig;
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
    /// The secret signing access tokens, at least 32 characters, the same
    /// at every gateway (prefer the environment: a command line is visible
    /// to every user).
    #[arg(long, env = "M2M_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<Secret>,
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
    /// Serve `/metrics`, `/healthz` and `/readyz` on HOST:PORT (port 0
    /// picks a free one). Off when not given: several processors often
    /// share a host, and a fixed default port would collide.
    #[arg(long, env = "M2M_METRICS_LISTEN")]
    metrics_listen: Option<String>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

impl Shared {
    /// The store and the bus they name, nothing running yet.
    fn app_config(&self) -> AppConfig {
        AppConfig::new(
            StoreSource::Url(self.database_url.clone()),
            BusSource::Rabbit {
                url: self.amqp_url.clone(),
            },
        )
    }
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
        let listener = m2m_app::bind(&args.listen).await?;
        let secret = args.jwt_secret.context(
            "M2M_JWT_SECRET (--jwt-secret) must be set: every gateway signs and checks tokens \
             with this shared secret",
        )?;
        let mut gateway = GatewayConfig::new(secret.jwt()?);
        gateway.body_limit = args.body_limit;
        let mut config = args.shared.app_config();
        config.gateway = Some(GatewaySetup {
            listen: Listen::Bound(listener),
            config: gateway,
        });
        let app = Application::build(config).await?;
        let addr = app.address().context("the gateway has no address")?;
        print_line(&format!("m2m gateway serving on http://{addr}"));
        info!(%addr, "m2m gateway started");
        tokio::spawn(wait_for_signal(app.shutdown_token()));
        app.run_until_stopped().await?;
        info!("m2m gateway stopped");
        Ok(())
    })
}

#[cfg(feature = "rabbitmq")]
pub(crate) fn run_processor(args: ProcessorArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut processor = ProcessorConfig {
            max_attempts: args.max_attempts.max(1),
            algorithm_version: crate::algorithm_version()?,
            ..ProcessorConfig::default()
        };
        if let Some(c) = args.concurrency {
            processor.concurrency = c.max(1);
        }
        let concurrency = processor.concurrency;
        let mut config = args.shared.app_config();
        config.processor = Some(processor);
        config.ops_listen = args.metrics_listen.map(Listen::Addr);
        let app = Application::build(config).await?;
        if let Some(addr) = app.ops_address() {
            print_line(&format!(
                "m2m processor serving /metrics, /healthz and /readyz on http://{addr}"
            ));
            info!(%addr, "operations endpoint started");
        }
        print_line(&format!(
            "m2m processor consuming with concurrency {concurrency}"
        ));
        tokio::spawn(wait_for_signal(app.shutdown_token()));
        // Every delivery is settled and the consumer's channel closed
        // before the connection goes.
        app.run_until_stopped().await?;
        info!("m2m processor stopped");
        Ok(())
    })
}
