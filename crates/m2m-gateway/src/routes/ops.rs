//! Operating endpoints: health, readiness, metrics, the OpenAPI document.

use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is alive", body = String, content_type = "text/plain", example = "ok")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the store and the bus answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "store and bus reachable", body = String, content_type = "text/plain", example = "ready"), (status = 503, description = "the database or the event bus is not reachable", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    if let Err(e) = state.store().ping().await {
        return Err(ApiError::Unavailable(format!(
            "the database is not reachable: {e}"
        )));
    }
    if !state.bus().ready().await {
        return Err(ApiError::Unavailable(
            "the event bus is not reachable".into(),
        ));
    }
    Ok("ready")
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format (OpenMetrics)", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let unpublished = state.store().unpublished_count().await.unwrap_or(0);
    let on_bus = state.bus().backlog().await.unwrap_or(0);
    state.0.metrics.backlog.set((unpublished + on_bus) as i64);
    let mut text = String::new();
    {
        let registry = state.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .map_err(anyhow::Error::from)?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "the OpenAPI 3.1 document", body = Object, content_type = "application/json")))]
pub(crate) async fn openapi() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(crate::openapi::document);
    Json(DOCUMENT.clone())
}
