//! `spawn_app()` and typed request helpers.

use m2m_bus::{Bus, InProcessBus};
use m2m_gateway::{AppState, GatewayConfig, JwtSecret, LoginLimits};
use m2m_processor::{Processor, ProcessorConfig};
use m2m_store::{SqliteStore, Store};
use m2m_synth::GameSpec;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) const PASSWORD: &str = "correct horse battery";

/// How to build the app under test.
pub(crate) struct Options {
    pub(crate) processor: bool,
    pub(crate) body_limit: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) login_limits: LoginLimits,
    /// ProcessingEvents the in-process bus holds at most.
    pub(crate) bus_capacity: usize,
    pub(crate) idempotency_ttl: Duration,
    pub(crate) sweep_interval: Duration,
    /// An SQLite file to serve, which outlives the app (as `m2m serve` on
    /// a data directory); a new one in a temporary directory if `None`.
    pub(crate) db: Option<PathBuf>,
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

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: InProcessBus,
    registry: Arc<Mutex<Registry>>,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.bus.close();
    }
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub(crate) async fn spawn_app_with(opts: Options) -> TestApp {
    let (dir, db) = match opts.db {
        Some(db) => (None, db),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("m2m.db");
            (Some(dir), db)
        }
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let bus = InProcessBus::with_capacity(opts.bus_capacity);
    let mut config = GatewayConfig::new(JwtSecret::new(
        b"test-secret-test-secret-test-secret".to_vec(),
    ));
    config.body_limit = opts.body_limit;
    config.keep_alive = opts.keep_alive;
    config.login_limits = opts.login_limits;
    config.idempotency_ttl = opts.idempotency_ttl;
    config.sweep_interval = opts.sweep_interval;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let shutdown = CancellationToken::new();
    let state = AppState::new(
        store.clone(),
        Arc::new(bus.clone()),
        config,
        registry.clone(),
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(m2m_gateway::serve(listener, state));
    let app = TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        bus,
        registry,
        shutdown,
        served: Some(served),
        _dir: dir,
    };
    if opts.processor {
        app.start_processor(5);
    }
    app
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the app as a shutdown does, and waits until it has stopped.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        self.bus.close();
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }

    /// GET `path` with a token, asserting 200; the JSON answer.
    pub(crate) async fn read(&self, token: &str, path: &str) -> Value {
        let r = self.get(token, path).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Starts a processor on the app's bus and store.
    pub(crate) fn start_processor(&self, max_attempts: u32) {
        let bus: Arc<dyn Bus> = Arc::new(self.bus.clone());
        let processor = {
            let mut r = self.registry.lock().unwrap();
            Arc::new(Processor::new(
                self.store.clone(),
                bus,
                ProcessorConfig {
                    concurrency: 2,
                    max_attempts,
                },
                &mut r,
            ))
        };
        tokio::spawn(processor.run(self.shutdown.clone()));
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn register(&self, username: &str) -> Uuid {
        let r = self
            .post_json(
                "/v1/users",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        v["user_id"].as_str().unwrap().parse().unwrap()
    }

    /// Logs in; returns the whole token answer.
    pub(crate) async fn login(&self, username: &str) -> Value {
        let r = self
            .post_json(
                "/v1/login",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Registers and logs in; returns an access token.
    pub(crate) async fn user(&self, username: &str) -> String {
        self.register(username).await;
        self.login(username).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post_game(
        &self,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_game_with(token, &[], body).await
    }

    /// Uploads a game with an `Idempotency-Key`.
    pub(crate) async fn post_game_keyed(
        &self,
        token: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_game_with(token, &[("idempotency-key", key)], body)
            .await
    }

    /// Uploads a game as JSON with more headers.
    pub(crate) async fn post_game_with(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/v1/games"))
            .bearer_auth(token)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).send().await.unwrap()
    }

    /// The text of `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// The served OpenAPI document.
    pub(crate) async fn openapi(&self) -> Value {
        let r = self
            .client
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Uploads a small generated game; returns its game_id.
    pub(crate) async fn submit(&self, token: &str, seed: u64) -> Uuid {
        let r = self.post_game(token, small_game(seed)).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        v["game_id"].as_str().unwrap().parse().unwrap()
    }

    /// Polls the game until it has `status` (bounded).
    pub(crate) async fn wait_for(&self, token: &str, game_id: Uuid, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v: Value = self
                .get(token, &format!("/v1/games/{game_id}"))
                .await
                .json()
                .await
                .unwrap();
            if v["status"] == status {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "game {game_id} never became {status}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A 5-second generated game as JSON text.
pub(crate) fn small_game(seed: u64) -> String {
    GameSpec {
        duration_s: 5.0,
        seed,
        ..GameSpec::standard()
    }
    .submission_json("pinch-garden", 100.0 + seed as f64)
}

/// Asserts a problem+json answer with `status`, naming `field` if given.
pub(crate) async fn assert_problem(
    r: reqwest::Response,
    status: u16,
    field: Option<&str>,
) -> Value {
    assert_eq!(r.status(), status);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(
        v["type"].as_str().unwrap().starts_with("urn:m2m:problem:"),
        "{v}"
    );
    assert!(v["title"].is_string(), "{v}");
    if let Some(field) = field {
        let fields: Vec<&str> = v["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "expected field {field} in {v}");
        assert!(
            v["detail"].as_str().unwrap().contains(field),
            "detail should name {field}: {v}"
        );
    }
    v
}
