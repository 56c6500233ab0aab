//! The whole m2m system, wired in one place. [`Application::build`] opens
//! the store and the bus an [`AppConfig`] names, starts the parts it asks
//! for (the HTTP gateway, the processor, the processor's operations
//! endpoint) and returns a handle with their bound addresses;
//! [`Application::stop`] (or a cancelled [`Application::shutdown_token`]
//! followed by [`Application::run_until_stopped`]) stops them in an order
//! that loses nothing.
//!
//! `m2m serve`, `m2m gateway`, `m2m processor` and every test that runs the
//! system in process build it here, so that there is one wiring to keep
//! right. What only a process needs (signals, the data-directory lock, the
//! token secret file, the lines printed on stdout) stays in the binary.

mod ops;

#[cfg(feature = "rabbitmq")]
use m2m_bus::RabbitBus;
use m2m_bus::{Bus, BusError, InProcessBus};
use m2m_gateway::{AppState, GatewayConfig};
use m2m_processor::{Processor, ProcessorConfig};
#[cfg(feature = "mongodb")]
use m2m_store::MongoStore;
use m2m_store::{SqliteSettings, SqliteStore, Store, StoreError};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long closing the broker connection may take at the end.
#[cfg(feature = "rabbitmq")]
const BUS_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a server listens: an address to bind (HOST:PORT, the host an IP
/// address or a name, port 0 for a free one), or a listener the caller has
/// already bound (to fail on a taken port before anything else happens).
#[derive(Debug)]
pub enum Listen {
    Addr(String),
    Bound(TcpListener),
}

impl Listen {
    async fn listener(self) -> Result<TcpListener, AppError> {
        match self {
            Listen::Addr(addr) => bind(&addr).await,
            Listen::Bound(listener) => Ok(listener),
        }
    }
}

/// Listens on `addr`, HOST:PORT with the host an IP address or a name
/// (resolved; the first of its addresses that can be bound is used).
pub async fn bind(addr: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Listen {
            addr: addr.to_owned(),
            source,
        })
}

/// The store of the system.
pub enum StoreSource {
    /// An SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A database URL: `sqlite:///absolute/path.db`, or `mongodb://…` /
    /// `mongodb+srv://…` with the URL's options honoured and the database
    /// named in its path.
    Url(String),
    /// A store built by the caller (a test that reads it directly).
    Ready(Arc<dyn Store>),
}

/// The event bus of the system.
pub enum BusSource {
    /// An in-process bus holding at most `capacity` ProcessingEvents
    /// (`m2m serve`); closed when the application stops.
    InProcess { capacity: usize },
    /// RabbitMQ at `url`; its connection is closed when the application
    /// stops.
    Rabbit { url: String },
    /// A bus built by the caller, who also closes it.
    Ready(Arc<dyn Bus>),
}

impl std::fmt::Debug for StoreSource {
    /// Without a URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSource::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreSource::Url(_) => f.write_str("Url(..)"),
            StoreSource::Ready(_) => f.write_str("Ready(..)"),
        }
    }
}

impl std::fmt::Debug for BusSource {
    /// Without a URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusSource::InProcess { capacity } => f
                .debug_struct("InProcess")
                .field("capacity", capacity)
                .finish(),
            BusSource::Rabbit { .. } => f.write_str("Rabbit { .. }"),
            BusSource::Ready(_) => f.write_str("Ready(..)"),
        }
    }
}

/// The HTTP gateway: where it listens and how it behaves.
#[derive(Debug)]
pub struct GatewaySetup {
    pub listen: Listen,
    pub config: GatewayConfig,
}

/// What to run, over which store and bus.
#[derive(Debug)]
pub struct AppConfig {
    pub store: StoreSource,
    pub bus: BusSource,
    /// The HTTP gateway, if this process serves the API.
    pub gateway: Option<GatewaySetup>,
    /// The processor, if this process analyses games.
    pub processor: Option<ProcessorConfig>,
    /// `/metrics`, `/healthz` and `/readyz` of a process without a gateway
    /// (the gateway serves its own).
    pub ops_listen: Option<Listen>,
    /// Publish the outbox in a process without a gateway (a gateway
    /// publishes it anyway): `m2m reprocess` on a data directory that no
    /// `m2m serve` holds stores its events in the outbox and runs this
    /// publisher and a processor.
    pub publisher: bool,
    /// The registry every part registers its metrics in; shared, so that
    /// one `/metrics` shows the gateway's and the processor's.
    pub registry: Arc<Mutex<Registry>>,
}

impl AppConfig {
    /// Nothing running yet over `store` and `bus`: set the parts wanted.
    pub fn new(store: StoreSource, bus: BusSource) -> Self {
        AppConfig {
            store,
            bus,
            gateway: None,
            processor: None,
            ops_listen: None,
            publisher: false,
            registry: Arc::new(Mutex::new(Registry::default())),
        }
    }
}

/// Why the system did not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// `what` names the file or URL (a MongoDB URL, which may hold a
    /// password, is not named: see `Mongo`).
    #[error("cannot open the database {what}")]
    Store {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot use the MongoDB database: {0}")]
    Mongo(StoreError),
    #[error("unsupported database URL (expected sqlite:///absolute/path.db or mongodb://…)")]
    DatabaseUrl,
    /// The binary was built without the cargo feature a part needs.
    #[error(
        "this m2m was built without {what} support (cargo feature `{feature}`); \
         use a build with default features"
    )]
    Unsupported {
        what: &'static str,
        feature: &'static str,
    },
    #[error("{0}")]
    Bus(BusError),
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the processor stopped with an error: {0}")]
    Processor(String),
}

/// The bus as the application must close it.
enum OwnedBus {
    InProcess(InProcessBus),
    #[cfg(feature = "rabbitmq")]
    Rabbit(RabbitBus),
    Given,
}

/// The running system. Dropping it cancels its shutdown token, so that a
/// test that fails leaves nothing running; [`Application::stop`] also
/// waits until everything has stopped.
pub struct Application {
    address: Option<SocketAddr>,
    ops_address: Option<SocketAddr>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    owned_bus: OwnedBus,
    registry: Arc<Mutex<Registry>>,
    shutdown: CancellationToken,
    gateway: Option<JoinHandle<std::io::Result<()>>>,
    processors: JoinSet<Result<(), String>>,
    ops: Option<JoinHandle<std::io::Result<()>>>,
    /// The publisher of a process without a gateway ([`AppConfig::publisher`]).
    publisher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .field("ops_address", &self.ops_address)
            .field("processors", &self.processors.len())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listeners first (a start that cannot serve fails before
    /// it touches the database), then opens the store and the bus and
    /// starts the parts `config` asks for.
    pub async fn build(config: AppConfig) -> Result<Application, AppError> {
        let gateway_listener = match config.gateway {
            Some(setup) => Some((setup.listen.listener().await?, setup.config)),
            None => None,
        };
        let ops_listener = match config.ops_listen {
            Some(listen) => Some(listen.listener().await?),
            None => None,
        };
        // A process that both takes uploads and processes them (`m2m
        // serve`) hands each upload's samples to its processor in memory.
        let recent_samples = if gateway_listener.is_some() && config.processor.is_some() {
            RECENT_SAMPLES
        } else {
            0
        };
        let store = open_store_with(config.store, recent_samples).await?;
        let (bus, owned_bus): (Arc<dyn Bus>, OwnedBus) = match config.bus {
            BusSource::InProcess { capacity } => {
                let bus = InProcessBus::with_capacity(capacity);
                (Arc::new(bus.clone()), OwnedBus::InProcess(bus))
            }
            #[cfg(feature = "rabbitmq")]
            BusSource::Rabbit { url } => {
                let bus = RabbitBus::start(&url).map_err(AppError::Bus)?;
                (Arc::new(bus.clone()), OwnedBus::Rabbit(bus))
            }
            #[cfg(not(feature = "rabbitmq"))]
            BusSource::Rabbit { .. } => {
                return Err(AppError::Unsupported {
                    what: "RabbitMQ",
                    feature: "rabbitmq",
                })
            }
            BusSource::Ready(bus) => (bus, OwnedBus::Given),
        };
        let mut app = Application {
            address: None,
            ops_address: None,
            store,
            bus,
            owned_bus,
            registry: config.registry,
            shutdown: CancellationToken::new(),
            gateway: None,
            processors: JoinSet::new(),
            ops: None,
            publisher: None,
        };
        if let Some(processor) = config.processor {
            app.start_processor(processor);
        }
        if let Some((listener, gateway)) = gateway_listener {
            app.address = Some(listener.local_addr().map_err(AppError::Http)?);
            let state = AppState::new(
                app.store.clone(),
                app.bus.clone(),
                gateway,
                app.registry.clone(),
                app.shutdown.clone(),
            );
            app.gateway = Some(tokio::spawn(m2m_gateway::serve(listener, state)));
        }
        if config.publisher && app.gateway.is_none() {
            // The publisher lives in the gateway's state; this one serves
            // no request, so its token secret is a random one nobody holds.
            let state = AppState::new(
                app.store.clone(),
                app.bus.clone(),
                GatewayConfig::new(m2m_gateway::JwtSecret::new(
                    m2m_gateway::JwtSecret::generate_hex().into_bytes(),
                )),
                app.registry.clone(),
                app.shutdown.clone(),
            );
            app.publisher = Some(tokio::spawn(m2m_gateway::run_publisher(state)));
        }
        if let Some(listener) = ops_listener {
            app.ops_address = Some(listener.local_addr().map_err(AppError::Http)?);
            let router = ops::router(app.store.clone(), app.bus.clone(), app.registry.clone());
            let shutdown = app.shutdown.clone();
            app.ops = Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
            }));
        }
        Ok(app)
    }

    /// Starts one more processor on the application's store and bus (its
    /// metrics go to the same registry); it stops with the rest.
    pub fn start_processor(&mut self, config: ProcessorConfig) {
        let processor = {
            let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            Arc::new(Processor::new(
                self.store.clone(),
                self.bus.clone(),
                config,
                &mut registry,
            ))
        };
        let shutdown = self.shutdown.clone();
        self.processors
            .spawn(async move { processor.run(shutdown).await.map_err(|e| e.to_string()) });
    }

    /// The gateway's address, if it runs.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The operations endpoint's address, if it runs.
    pub fn ops_address(&self) -> Option<SocketAddr> {
        self.ops_address
    }

    /// Cancelling it stops the application (a signal handler holds it).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    pub fn registry(&self) -> &Arc<Mutex<Registry>> {
        &self.registry
    }

    /// Runs until the shutdown token is cancelled or a part fails, then
    /// stops: the gateway stops accepting and lets its requests finish;
    /// the processors finish what they hold (anything still queued is
    /// published again at the next start); then the bus is closed. A
    /// processor's error is the result only where no gateway runs (with
    /// one, its uploads are kept and it goes on serving: the error is
    /// logged).
    pub async fn run_until_stopped(mut self) -> Result<(), AppError> {
        let mut result = Ok(());
        if let Some(gateway) = self.gateway.take() {
            result = match gateway.await {
                Ok(served) => served.map_err(AppError::Http),
                Err(e) => Err(AppError::Http(std::io::Error::other(e))),
            };
            self.shutdown.cancel();
            while let Some(processor) = self.processors.join_next().await {
                match processor {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "the processor stopped with an error"),
                    Err(e) => warn!(error = %e, "the processor task failed"),
                }
            }
        } else if !self.processors.is_empty() {
            // The first to end (at shutdown, or failing) stops the others.
            while let Some(done) = self.processors.join_next().await {
                self.shutdown.cancel();
                let outcome = match done {
                    Ok(r) => r.map_err(AppError::Processor),
                    Err(e) => Err(AppError::Processor(e.to_string())),
                };
                if result.is_ok() {
                    result = outcome;
                }
            }
        } else {
            self.shutdown.cancelled().await;
        }
        self.shutdown.cancel();
        if let Some(publisher) = self.publisher.take() {
            if let Err(e) = publisher.await {
                warn!(error = %e, "the publisher task failed");
            }
        }
        if let Some(ops) = self.ops.take() {
            match ops.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "the operations endpoint failed"),
                Err(e) => warn!(error = %e, "the operations endpoint task failed"),
            }
        }
        match std::mem::replace(&mut self.owned_bus, OwnedBus::Given) {
            OwnedBus::InProcess(bus) => bus.close(),
            #[cfg(feature = "rabbitmq")]
            OwnedBus::Rabbit(bus) => {
                // Bounded: a broker that stopped answering must not hold
                // up the exit of a process whose work is settled.
                if tokio::time::timeout(BUS_CLOSE_TIMEOUT, bus.close())
                    .await
                    .is_err()
                {
                    warn!("the broker connection did not close in time");
                }
            }
            OwnedBus::Given => {}
        }
        result
    }

    /// Stops the application as a signal does, and waits until it has
    /// stopped.
    pub async fn stop(self) -> Result<(), AppError> {
        self.shutdown.cancel();
        self.run_until_stopped().await
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let OwnedBus::InProcess(bus) = &self.owned_bus {
            bus.close();
        }
    }
}

/// Opens the store `source` names (as [`Application::build`] does, for
/// tools that use the store without running a service: `m2m users add`).
pub async fn open_store(source: StoreSource) -> Result<Arc<dyn Store>, AppError> {
    open_store_with(source, 0).await
}

/// Uploads whose samples a SQLite store keeps for the processor of the
/// same process (`SqliteSettings::recent_samples`): as many as the
/// in-process bus holds events.
const RECENT_SAMPLES: usize = 32;

async fn open_store_with(
    source: StoreSource,
    recent_samples: usize,
) -> Result<Arc<dyn Store>, AppError> {
    let settings = SqliteSettings {
        recent_samples,
        ..SqliteSettings::default()
    };
    match source {
        StoreSource::Ready(store) => Ok(store),
        StoreSource::Sqlite(path) => {
            let store =
                SqliteStore::open_with(&path, settings).map_err(|source| AppError::Store {
                    what: path.display().to_string(),
                    source,
                })?;
            Ok(Arc::new(store))
        }
        StoreSource::Url(url) if url.starts_with("sqlite:") => {
            let store = SqliteStore::open_url_with(&url, settings)
                .map_err(|source| AppError::Store { what: url, source })?;
            Ok(Arc::new(store))
        }
        StoreSource::Url(url)
            if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") =>
        {
            #[cfg(feature = "mongodb")]
            {
                // The URL may hold a password: the error names the server only.
                let store = MongoStore::connect(&url).await.map_err(AppError::Mongo)?;
                Ok(Arc::new(store))
            }
            #[cfg(not(feature = "mongodb"))]
            Err(AppError::Unsupported {
                what: "MongoDB",
                feature: "mongodb",
            })
        }
        StoreSource::Url(_) => Err(AppError::DatabaseUrl),
    }
}
