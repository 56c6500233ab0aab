//! The whole system in the test process, built by m2m-app's
//! `Application::build` as `m2m serve` builds it.

use crate::client::Api;
use m2m_app::{AppConfig, Application, BusSource, GatewaySetup, Listen, StoreSource};
use m2m_bus::InProcessBus;
use m2m_gateway::{GatewayConfig, JwtSecret, LoginLimits};
use m2m_processor::ProcessorConfig;
use m2m_store::{SqliteStore, Store};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to build the app under test. `Default` is `m2m serve`'s set-up
/// with a processor of concurrency 2.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether a processor runs from the start (else see
    /// [`TestApp::start_processor`]).
    pub processor: bool,
    pub body_limit: usize,
    pub keep_alive: Duration,
    pub login_limits: LoginLimits,
    /// ProcessingEvents the in-process bus holds at most.
    pub bus_capacity: usize,
    pub idempotency_ttl: Duration,
    pub sweep_interval: Duration,
    /// An SQLite file to serve, which outlives the app (as `m2m serve` on
    /// a data directory); a new one in a temporary directory if `None`.
    pub db: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            processor: true,
            body_limit: 32 * 1024 * 1024,
            keep_alive: Duration::from_secs(10),
            login_limits: LoginLimits::default(),
            bus_capacity: m2m_bus::DEFAULT_CAPACITY,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(3600),
            db: None,
        }
    }
}

/// The running app and a client of it (`app.user(…)`, `app.get(…)`: the
/// [`Api`] methods, through `Deref`). The store and the bus are there to
/// look behind the API. Stops when dropped.
pub struct TestApp {
    pub api: Api,
    pub store: Arc<dyn Store>,
    /// The bus itself, not a trait object: tests close it and read its
    /// dead letters.
    pub bus: InProcessBus,
    /// Behind a mutex so that a processor can be started on a shared
    /// `TestApp`; `None` once stopped.
    app: Mutex<Option<Application>>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("base", &self.api.base)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Dropping the application cancels its shutdown token.
        self.app.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        self.bus.close();
    }
}

/// The default app: gateway and processor.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    let (dir, db) = match opts.db.clone() {
        Some(db) => (None, db),
        None => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let db = dir.path().join("m2m.db");
            (Some(dir), db)
        }
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).expect("the SQLite store opens"));
    spawn_app_with_store(store, dir, opts).await
}

/// The app as [`spawn_app_with`] builds it, on a store given (a MongoDB
/// store, say); `opts.db` is not used.
pub async fn spawn_app_on(store: Arc<dyn Store>, opts: Options) -> TestApp {
    spawn_app_with_store(store, None, opts).await
}

async fn spawn_app_with_store(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    opts: Options,
) -> TestApp {
    let bus = InProcessBus::with_capacity(opts.bus_capacity);
    let mut gateway = GatewayConfig::new(JwtSecret::new(
        b"test-secret-test-secret-test-secret".to_vec(),
    ));
    gateway.body_limit = opts.body_limit;
    gateway.keep_alive = opts.keep_alive;
    gateway.login_limits = opts.login_limits;
    gateway.idempotency_ttl = opts.idempotency_ttl;
    gateway.sweep_interval = opts.sweep_interval;
    let mut config = AppConfig::new(
        StoreSource::Ready(store.clone()),
        BusSource::Ready(Arc::new(bus.clone())),
    );
    config.gateway = Some(GatewaySetup {
        listen: Listen::Addr("127.0.0.1:0".into()),
        config: gateway,
    });
    if opts.processor {
        config.processor = Some(processor_config(5));
    }
    let app = Application::build(config).await.expect("the app starts");
    let addr = app.address().expect("the gateway's address");
    TestApp {
        api: Api::new(&format!("http://{addr}")),
        store,
        bus,
        app: Mutex::new(Some(app)),
        _dir: dir,
    }
}

fn processor_config(max_attempts: u32) -> ProcessorConfig {
    ProcessorConfig {
        concurrency: 2,
        max_attempts,
        ..ProcessorConfig::default()
    }
}

impl TestApp {
    /// Starts a processor (concurrency 2) on the app's bus and store.
    pub fn start_processor(&self, max_attempts: u32) {
        let mut app = self.app.lock().unwrap_or_else(|p| p.into_inner());
        app.as_mut()
            .expect("the app runs")
            .start_processor(processor_config(max_attempts));
    }

    /// Creates a therapist account as `m2m users add --role therapist`
    /// does (through the store, with the test password) and logs it in;
    /// returns its user id and access token.
    pub async fn therapist(&self, username: &str) -> (uuid::Uuid, String) {
        let user_id = uuid::Uuid::now_v7();
        let password = m2m_domain::Password::parse(crate::PASSWORD.to_owned())
            .expect("the test password is valid");
        let password_hash =
            tokio::task::spawn_blocking(move || m2m_gateway::hash_password(&password))
                .await
                .expect("the hashing task ends")
                .expect("the password hashes");
        self.store
            .create_user(m2m_store::NewUser {
                user_id,
                username: m2m_domain::Username::parse(username).expect("a valid username"),
                password_hash,
                role: m2m_domain::Role::Therapist,
                created_at: chrono::Utc::now(),
            })
            .await
            .expect("the therapist is stored");
        (user_id, self.api.access_token(username).await)
    }

    /// Stops the app as a shutdown does, and waits until it has stopped.
    pub async fn stop(self) {
        let app = self.app.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(app) = app {
            app.stop().await.expect("the app stops cleanly");
        }
        self.bus.close();
    }
}
