//! The HTTP gateway of m2m: accounts and tokens, game uploads, games,
//! progress, the sync feed and the event stream, therapists' invites,
//! links and reads of their patients (docs/therapists.md), health, metrics
//! and the OpenAPI document. It also runs the three background tasks a gateway
//! owns: the publisher, the reconciliation listener and the idempotency
//! sweeper. It serves the web dashboard too (`web`).
//!
//! [`router`] builds the routes over an [`AppState`] (tests call it
//! directly); [`serve`] runs them on a listener until shutdown.

mod auth;
mod error;
mod extract;
mod hub;
mod listener;
mod openapi;
mod password;
mod publisher;
mod routes;
mod state;
mod sweep;
mod telemetry;
mod web;

pub use auth::{JwtSecret, LoginLimits};
pub use error::{ApiError, InviteProblem, Problem};
pub use password::hash_password;
pub use state::{AppState, GatewayConfig};

use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use routes::{accounts, care, feed, games, me, me_export, ops, patients};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;

/// The gateway's routes, and the layers every request goes through, from
/// the outside in: metrics, trace id and logging (`telemetry::observe`);
/// problem+json for every error, including the framework's own
/// (`error::ensure_problem`); gzip decompression; a caught panic as a 500;
/// the time limit of ordinary requests. Body limits are the extractors'
/// (`extract.rs`): each reads at most its limit, after decompression.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/users", post(accounts::register))
        .route("/v1/login", post(accounts::login))
        .route("/v1/token/refresh", post(accounts::refresh))
        .route("/v1/logout", post(accounts::logout))
        .route("/v1/games", post(games::submit).get(games::list_games))
        .route("/v1/games/{game_id}", get(games::get_game))
        .route("/v1/games/{game_id}/samples", get(patients::own_samples))
        .route("/v1/progress", get(games::progress))
        .route(
            "/v1/me",
            get(me::get_me).patch(me::patch_me).delete(me::delete_me),
        )
        .route("/v1/me/export", get(me_export::export_me))
        .route("/v1/invites", post(care::create_invite))
        .route("/v1/therapists", post(care::link).get(care::list))
        .route("/v1/therapists/{therapist_id}", delete(care::unlink))
        .route("/v1/patients", get(patients::list))
        .route("/v1/patients/{patient_id}/games", get(patients::games))
        .route(
            "/v1/patients/{patient_id}/games/{game_id}",
            get(patients::game),
        )
        .route(
            "/v1/patients/{patient_id}/games/{game_id}/samples",
            get(patients::patient_samples),
        )
        .route(
            "/v1/patients/{patient_id}/progress",
            get(patients::progress),
        )
        .route(
            "/v1/patients/{patient_id}/adherence",
            get(patients::adherence),
        )
        .route("/v1/sync", get(feed::sync))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(web::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_limit,
        ));
    // Event streams stay open: no request timeout for them.
    let streams = Router::new().route("/v1/events", get(feed::events));
    api.merge(streams)
        .fallback(|| async { error::ApiError::NotFound })
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .pass_through_unaccepted(false),
        )
        .layer(axum::middleware::from_fn(error::ensure_problem))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::observe,
        ))
        .with_state(state)
}

/// Answers 503 when an ordinary request takes longer than the configured
/// limit.
async fn time_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = state.config().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::Timeout(limit.as_secs()).into_response(),
    }
}

/// A panic in a handler is a 500 like any other unexpected failure: the
/// request's log line carries its message, the body says nothing more.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    error::ApiError::Unexpected(anyhow::anyhow!("panic: {message}")).into_response()
}

/// Runs the gateway's publisher alone, without HTTP, until the state's
/// shutdown token is cancelled: for a process that stores events in the
/// outbox where no gateway runs to publish them (`m2m reprocess` on a data
/// directory no `m2m serve` holds). A gateway runs its own (see [`serve`]).
pub async fn run_publisher(state: AppState) {
    publisher::run(state).await;
}

/// Serves the gateway on `listener` and runs its background tasks until
/// the state's shutdown token is cancelled; then stops accepting, lets the
/// requests in flight finish (event streams end) and returns.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.0.shutdown.clone();
    let publisher = tokio::spawn(publisher::run(state.clone()));
    let listener_task = tokio::spawn(listener::run(state.clone()));
    let sweeper = tokio::spawn(sweep::run_idempotency_sweeper(state.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    let _ = publisher.await;
    let _ = listener_task.await;
    let _ = sweeper.await;
    result
}
