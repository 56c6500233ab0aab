//! Extractors that turn a request into domain input, rejecting with
//! [`ApiError`] so every failure has the problem+json shape.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use uuid::Uuid;

/// Whether the request says its body is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// The raw body of a JSON request: 415 if not sent as JSON, 413 once the
/// (decompressed) body passes the limit, without reading the rest.
#[derive(Debug)]
pub(crate) struct JsonBytes(pub(crate) Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config().body_limit;
        Bytes::from_request(req, state)
            .await
            .map(JsonBytes)
            .map_err(|e| body_error(e, limit))
    }
}

fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::bad_field(
            "body",
            format!("cannot read the request body: {}", e.body_text()),
        )
    }
}

/// A small JSON body parsed into `T`: 400 if it is not JSON, 422 naming the
/// field if a value is wrong or missing.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON text, telling malformed text (400) from wrong values (422).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    let malformed = |e: &serde_json::Error| {
        ApiError::bad_field(
            "body",
            format!("malformed JSON: {}", strip_position(&e.to_string())),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        if e.inner().classify() != Category::Data {
            return malformed(e.inner());
        }
        let message = strip_position(&e.inner().to_string());
        let path = e.path().to_string();
        let field =
            missing_field(&message).unwrap_or(if path == "." { "body".to_owned() } else { path });
        ApiError::invalid_field(&field, message)
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// serde names a missing field only in its message ("missing field `x`").
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthUser {
    pub(crate) user_id: Uuid,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthorized("a bearer access token is required"))?;
        let user_id = state
            .auth()
            .verify_access_token(token)
            .ok_or(ApiError::Unauthorized(
                "the access token is invalid or expired",
            ))?;
        Ok(AuthUser { user_id })
    }
}

/// The client's address, when the server knows it (it does when serving on
/// a socket; router tests without one share the "unknown" bucket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
