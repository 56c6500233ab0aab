//! Shared state of the gateway.

use crate::auth::{Auth, JwtSecret, LoginLimits};
use crate::hub::Hub;
use crate::publisher::Publisher;
use crate::telemetry::HttpMetrics;
use m2m_bus::Bus;
use m2m_store::Store;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the gateway behaves. `Default` gives the contract's values.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest game upload, after decompression (the account endpoints
    /// have their own limit, `extract::ACCOUNT_BODY_LIMIT`).
    pub body_limit: usize,
    pub jwt_secret: JwtSecret,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub login_limits: LoginLimits,
    /// Interval of the keep-alive comment on event streams (≤ 15 s).
    pub keep_alive: Duration,
    /// Time limit of ordinary requests (not event streams).
    pub request_timeout: Duration,
    /// How long an idempotency key answers with its first answer.
    pub idempotency_ttl: Duration,
    /// How often expired idempotency keys are deleted.
    pub sweep_interval: Duration,
}

impl GatewayConfig {
    pub fn new(jwt_secret: JwtSecret) -> Self {
        GatewayConfig {
            body_limit: 32 * 1024 * 1024,
            jwt_secret,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            login_limits: LoginLimits::default(),
            keep_alive: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(3600),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) config: GatewayConfig,
    pub(crate) auth: Auth,
    pub(crate) hub: Hub,
    /// Publishes the events of stored games (the only code that does).
    pub(crate) publisher: Publisher,
    pub(crate) metrics: HttpMetrics,
    /// The registry `/metrics` encodes; a std Mutex because encoding is
    /// synchronous and short.
    pub(crate) registry: Arc<Mutex<Registry>>,
    /// Cancelled at shutdown: event streams end on it.
    pub(crate) shutdown: CancellationToken,
}

/// Cheap-to-clone handle on the gateway's state.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state; registers the gateway's metrics in `registry`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        config: GatewayConfig,
        registry: Arc<Mutex<Registry>>,
        shutdown: CancellationToken,
    ) -> Self {
        let auth = Auth::new(
            &config.jwt_secret,
            config.access_ttl,
            config.refresh_ttl,
            config.login_limits,
        );
        let metrics = {
            let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
            HttpMetrics::register(&mut r)
        };
        AppState(Arc::new(Inner {
            store,
            bus,
            config,
            auth,
            hub: Hub::default(),
            publisher: Publisher::default(),
            metrics,
            registry,
            shutdown,
        }))
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.0.config
    }
    pub(crate) fn auth(&self) -> &Auth {
        &self.0.auth
    }
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }
    pub(crate) fn bus(&self) -> &Arc<dyn Bus> {
        &self.0.bus
    }
}
