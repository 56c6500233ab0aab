//! The operations endpoint of a process without a gateway (`m2m processor
//! --metrics-listen`): `/metrics`, `/healthz` and `/readyz`, the same
//! paths and meanings as the gateway's, so one scrape and probe
//! configuration fits both roles.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use m2m_bus::Bus;
use m2m_store::Store;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Ops {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// A std Mutex, as the gateway's: encoding is synchronous and short.
    registry: Arc<Mutex<Registry>>,
}

pub(crate) fn router(
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    registry: Arc<Mutex<Registry>>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Ops {
            store,
            bus,
            registry,
        })
}

/// The process is alive.
async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the store and the bus answer; otherwise 503 saying which does
/// not.
async fn readyz(State(ops): State<Ops>) -> Response {
    if let Err(e) = ops.store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database is not reachable: {e}"),
        )
            .into_response();
    }
    if !ops.bus.ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the event bus is not reachable",
        )
            .into_response();
    }
    "ready".into_response()
}

/// The registry in the Prometheus text format (OpenMetrics).
async fn metrics(State(ops): State<Ops>) -> Response {
    let mut text = String::new();
    let encoded = {
        let registry = ops.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
    };
    match encoded {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
