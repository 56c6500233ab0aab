//! The HTTP gateway of m2m: accounts and tokens, game uploads, games,
//! progress, the sync feed and the event stream, health, metrics and the
//! OpenAPI document. It also runs the two background tasks a gateway owns:
//! the outbox relay and the reconciliation listener.
//!
//! [`router`] builds the routes over an [`AppState`] (tests call it
//! directly); [`serve`] runs them on a listener until shutdown.

mod auth;
mod error;
mod extract;
mod hub;
mod openapi;
mod password;
mod relay;
mod routes;
mod state;
mod telemetry;

pub use auth::{JwtSecret, LoginLimits};
pub use error::{ApiError, Problem};
pub use state::{AppState, GatewayConfig};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use routes::{accounts, feed, games, ops};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;

/// The gateway's routes.
pub fn router(state: AppState) -> Router {
    let timeout = TimeoutLayer::with_status_code(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        state.config().request_timeout,
    );
    let api = Router::new()
        .route("/v1/users", post(accounts::register))
        .route("/v1/login", post(accounts::login))
        .route("/v1/token/refresh", post(accounts::refresh))
        .route("/v1/logout", post(accounts::logout))
        .route("/v1/games", post(games::submit).get(games::list_games))
        .route("/v1/games/{game_id}", get(games::get_game))
        .route("/v1/progress", get(games::progress))
        .route("/v1/sync", get(feed::sync))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .layer(timeout);
    // Event streams stay open: no request timeout for them.
    let streams = Router::new().route("/v1/events", get(feed::events));
    api.merge(streams)
        .fallback(|| async { error::ApiError::NotFound })
        .layer(DefaultBodyLimit::max(state.config().body_limit))
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .pass_through_unaccepted(false),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::observe,
        ))
        .with_state(state)
}

/// Serves the gateway on `listener` and runs its background tasks until
/// the state's shutdown token is cancelled; then stops accepting, lets the
/// requests in flight finish (event streams end) and returns.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.0.shutdown.clone();
    let relay = tokio::spawn(relay::run_relay(state.clone()));
    let listener_task = tokio::spawn(relay::run_reconciliation_listener(state.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    let _ = relay.await;
    let _ = listener_task.await;
    result
}
