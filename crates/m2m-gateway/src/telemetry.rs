//! Request metrics, trace ids and error logging, as one middleware.

use crate::error::InternalCause;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Instant;
use tracing::Instrument;

/// The trace id of a request: sent back as `X-Trace-Id`, stored with an
/// uploaded game and carried in its event's headers into the processor's
/// logs, so one game can be followed across services.
#[derive(Debug, Clone)]
pub(crate) struct TraceId(pub(crate) String);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    route: String,
    method: String,
}

/// The gateway's Prometheus metrics.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub(crate) games_accepted: Counter,
    /// Events stored but not yet published, plus what the bus holds;
    /// refreshed at every scrape.
    pub(crate) backlog: Gauge,
}

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            games_accepted: Counter::default(),
            backlog: Gauge::default(),
        };
        registry.register(
            "m2m_http_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "m2m_http_request_duration_seconds",
            "HTTP request latency by route",
            m.latency.clone(),
        );
        registry.register(
            "m2m_games_accepted",
            "Games accepted (202)",
            m.games_accepted.clone(),
        );
        registry.register(
            "m2m_bus_backlog",
            "ProcessingEvents not yet published plus those waiting on the bus",
            m.backlog.clone(),
        );
        m
    }
}

/// The `method` label: the standard methods by name, any other under one
/// label, so that a client cannot add series by inventing method names.
/// (`route` is likewise the matched route or the one label `unmatched`, and
/// `status` one of the answers the server itself gives.)
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Gives the request a trace id and a span, counts it, times it, and logs
/// the cause of any 500 inside the span.
pub(crate) async fn observe(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method()).to_owned();
    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let span = tracing::info_span!("request", %method, %route, %trace_id);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let _enter = span.enter();
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(status, cause = %cause, "request failed");
    } else if status >= 500 {
        tracing::warn!(status, "request failed");
    } else {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
    }
    let metrics = &state.0.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.clone(),
            status,
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { route, method })
        .observe(started.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert("x-trace-id", v);
    }
    response
}
