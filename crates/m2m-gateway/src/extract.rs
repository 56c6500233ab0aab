//! Extractors that turn a request into domain input, rejecting with
//! [`ApiError`] so every failure has the problem+json shape.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap};
use m2m_domain::Role;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use uuid::Uuid;

/// The media type the request names (`Content-Type` without parameters),
/// in lower case.
fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// `application/json` or a `+json` type.
fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// `application/cbor` or a `+cbor` type (RFC 8949).
fn is_cbor(media_type: &str) -> bool {
    media_type == "application/cbor"
        || (media_type.starts_with("application/") && media_type.ends_with("+cbor"))
}

/// The body, read up to `limit` bytes after decompression: 413 once the
/// body passes the limit (without reading the rest), 400 if it cannot be
/// read.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::bad_field("body", format!("cannot read the request body: {e}"))
            }
        })
}

/// The raw body of a JSON request, as [`read_body`]; 415 if not sent as
/// JSON.
async fn read_json(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    if !media_type(req.headers()).is_some_and(|t| is_json(&t)) {
        return Err(ApiError::UnsupportedMediaType(JSON));
    }
    read_body(req, limit).await
}

/// What the account endpoints' 415 names.
const JSON: &str = "application/json";
/// What a game upload's 415 names.
const JSON_OR_CBOR: &str = "application/json or application/cbor";

/// Whether reading a body failed on its length limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// How a game upload is encoded: the same document either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadFormat {
    Json,
    /// CBOR (RFC 8949), for phones that pay for every byte: columns may be
    /// RFC 8746 typed arrays of floats.
    Cbor,
}

impl UploadFormat {
    /// The format's name in messages ("malformed CBOR: …").
    pub(crate) fn name(self) -> &'static str {
        match self {
            UploadFormat::Json => "JSON",
            UploadFormat::Cbor => "CBOR",
        }
    }
}

/// The raw body of a game upload, up to the configured body limit
/// (`--body-limit`), as [`read_body`], and its format: 415 unless it is
/// sent as JSON or CBOR.
#[derive(Debug)]
pub(crate) struct UploadBody {
    pub(crate) bytes: Bytes,
    pub(crate) format: UploadFormat,
}

impl FromRequest<AppState> for UploadBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let format = match media_type(req.headers()) {
            Some(t) if is_json(&t) => UploadFormat::Json,
            Some(t) if is_cbor(&t) => UploadFormat::Cbor,
            _ => return Err(ApiError::UnsupportedMediaType(JSON_OR_CBOR)),
        };
        let bytes = read_body(req, state.config().body_limit).await?;
        Ok(UploadBody { bytes, format })
    }
}

/// Largest body of the account endpoints (`/v1/users`, `/v1/login`,
/// `/v1/token/refresh`, `/v1/logout`): a username of at most 64 and a
/// password of at most 256 characters fit many times over, even with every
/// character escaped.
pub(crate) const ACCOUNT_BODY_LIMIT: usize = 8 * 1024;

/// A small JSON object parsed into `T`, read up to [`ACCOUNT_BODY_LIMIT`]
/// bytes: 413 past it, 400 if it is not JSON, 422 if it is not an object or
/// naming the field if a value is wrong or missing.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ApiError> {
        let bytes = read_json(req, ACCOUNT_BODY_LIMIT).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// [`JsonBody`] for a request whose body may be left out altogether (a
/// `DELETE`, which clients often send bare): no body reads as `{}`, so
/// that what is required is named as missing (422) rather than the
/// media type refused (415). A body that is there is read as
/// [`JsonBody`] reads it.
#[derive(Debug)]
pub(crate) struct JsonOrEmptyBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonOrEmptyBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ApiError> {
        let json = media_type(req.headers()).is_some_and(|t| is_json(&t));
        let bytes = read_body(req, ACCOUNT_BODY_LIMIT).await?;
        if bytes.is_empty() {
            return parse_json(b"{}").map(JsonOrEmptyBody);
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType(JSON));
        }
        parse_json(&bytes).map(JsonOrEmptyBody)
    }
}

/// Parses a JSON object, telling malformed text (400) from a value that is
/// not an object or has wrong fields (422). serde would otherwise take a
/// JSON array for a struct, field by field in order.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    let malformed = |e: &serde_json::Error| {
        ApiError::bad_field(
            "body",
            format!("malformed JSON: {}", strip_position(&e.to_string())),
        )
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| malformed(&e))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_field("body", "expected an object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        if e.inner().classify() != Category::Data {
            return malformed(e.inner());
        }
        let message = strip_position(&e.inner().to_string());
        let path = e.path().to_string();
        if let Some(key) = quoted_after(&message, "duplicate field `") {
            return ApiError::invalid_field(&key, "appears more than once");
        }
        let field = quoted_after(&message, "missing field `")
            .or_else(|| quoted_after(&message, "unknown field `"))
            .unwrap_or(if path == "." { "body".to_owned() } else { path });
        ApiError::invalid_field(&field, message)
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// serde names a missing, unknown or repeated field only in its message
/// ("missing field `x`", "unknown field `x`", "duplicate field `x`").
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The query string's parameters, each at most once: a repeated one is a
/// 400 naming it (rather than one of its values picked silently). Unknown
/// parameters are ignored.
#[derive(Debug)]
pub(crate) struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if params.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad_field(&name, "is given more than once"));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(QueryParams(params))
    }
}

impl QueryParams {
    /// The value of `name`, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter from 1 to `max`, `default` when absent.
    pub(crate) fn bounded(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_field(
                    name,
                    format!("must be an integer from 1 to {max}"),
                )),
            },
        }
    }
}

/// The 401 of a valid token whose account was deleted.
pub(crate) const ACCOUNT_GONE: &str = "the account no longer exists";

/// The authenticated caller, from `Authorization: Bearer <access token>`
/// of an account that still exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthUser {
    pub(crate) user_id: Uuid,
    /// As the token states it.
    pub(crate) role: Role,
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
        let (user_id, role) =
            state
                .auth()
                .verify_access_token(token)
                .ok_or(ApiError::Unauthorized(
                    "the access token is invalid or expired",
                ))?;
        // A token outlives a deleted account by up to its 15 minutes: one
        // point read by id ends it at once (docs/data-lifecycle.md).
        if !state.store().account_exists(user_id).await? {
            return Err(ApiError::Unauthorized(ACCOUNT_GONE));
        }
        Ok(AuthUser { user_id, role })
    }
}

/// The authenticated caller, who must be a patient: a therapist gets 403
/// before the body is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PatientUser(pub(crate) AuthUser);

impl FromRequestParts<AppState> for PatientUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        match user.role {
            Role::Patient => Ok(PatientUser(user)),
            Role::Therapist => Err(ApiError::Forbidden(
                "only patient accounts may do this; this is a therapist account",
            )),
        }
    }
}

/// The authenticated caller, who must be a therapist: a patient gets 403.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TherapistUser(pub(crate) AuthUser);

impl FromRequestParts<AppState> for TherapistUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        match user.role {
            Role::Therapist => Ok(TherapistUser(user)),
            Role::Patient => Err(ApiError::Forbidden(
                "only therapist accounts may do this; this is a patient account",
            )),
        }
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
