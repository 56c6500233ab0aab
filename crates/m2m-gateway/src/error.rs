//! The one error type of the HTTP API, rendered as `application/problem+json`
//! (RFC 9457) with a stable `type` per kind of problem.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use m2m_domain::FieldError;
use m2m_store::StoreError;
use serde::Serialize;
use std::sync::Arc;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a query parameter or header is malformed.
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 401: no valid token, or wrong credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated, but the account's role may not do this (a
    /// therapist uploading a game).
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: unknown, or not the caller's.
    #[error("not found")]
    NotFound,
    /// 405: the path exists, the method does not (the `Allow` header lists
    /// the methods it has).
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// 409: a uniqueness rule (e.g. a taken username).
    #[error("{0}")]
    Conflict(String),
    /// 409: the therapist has as many open invite codes as allowed.
    #[error("{max} invite codes are open already; wait until one is used or expires")]
    TooManyInvites { max: u32 },
    /// 422: an invite code that cannot link (each case its own type).
    #[error("{}", .0.detail())]
    Invite(InviteProblem),
    /// 413: the body is over the limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: the body is not sent in a media type the operation reads
    /// (named: `application/json`, or for game uploads also
    /// `application/cbor`).
    #[error("the request body must be sent as {0}")]
    UnsupportedMediaType(&'static str),
    /// 415: the body is compressed with a coding the server does not
    /// decode (the `Accept-Encoding` header lists those it does).
    #[error("the request body's Content-Encoding is not supported; send it uncompressed or gzip-compressed")]
    UnsupportedEncoding,
    /// 422: well-formed but invalid.
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<FieldError>),
    /// 429: too many attempts.
    #[error("too many failed attempts; retry in {retry_after_s} s")]
    TooManyRequests { retry_after_s: u64 },
    /// 503: a dependency is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the request took longer than the server's time limit.
    #[error("the request took longer than {0} s; it may or may not have taken effect")]
    Timeout(u64),
    /// An error status made by a layer of the framework that no other kind
    /// stands for (see [`ensure_problem`]).
    #[error("{detail}")]
    Status { status: StatusCode, detail: String },
    /// 500: a bug or an unexpected failure. The body says nothing more;
    /// the cause is logged.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 naming one field.
    pub(crate) fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let e = FieldError::new(field, message);
        ApiError::BadRequest {
            detail: e.to_string(),
            errors: vec![e],
        }
    }

    /// A 422 naming one field.
    pub(crate) fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::TooManyInvites { .. } => StatusCode::CONFLICT,
            ApiError::Invite(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Status { status, .. } => *status,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem type and its title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => ("bad-request", "Malformed request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Not authenticated"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed for this account"),
            ApiError::NotFound => ("not-found", "Not found"),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::TooManyInvites { .. } => ("too-many-invites", "Too many open invite codes"),
            ApiError::Invite(InviteProblem::Unknown) => ("invite-unknown", "Unknown invite code"),
            ApiError::Invite(InviteProblem::Used) => ("invite-used", "Invite code already used"),
            ApiError::Invite(InviteProblem::Expired) => ("invite-expired", "Invite code expired"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Request body too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::UnsupportedEncoding => {
                ("unsupported-encoding", "Unsupported content encoding")
            }
            ApiError::Invalid(_) => ("validation", "Invalid request"),
            ApiError::TooManyRequests { .. } => ("rate-limited", "Too many requests"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Timeout(_) => ("timeout", "Request timed out"),
            ApiError::Status { status, .. } if status.is_client_error() => {
                ("client-error", "Request not accepted")
            }
            ApiError::Status { .. } => ("server-error", "Server error"),
            ApiError::Unexpected(_) => ("internal", "Internal server error"),
        }
    }
}

/// Why an invite code cannot link a patient (docs/therapists.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteProblem {
    /// No such code.
    Unknown,
    /// Redeemed by another patient (or by this one, who removed the link).
    Used,
    /// Not redeemed within its validity.
    Expired,
}

impl InviteProblem {
    fn detail(self) -> &'static str {
        match self {
            InviteProblem::Unknown => "no invite has this code; check it with your therapist",
            InviteProblem::Used => {
                "this invite code has been used; ask your therapist for a new one"
            }
            InviteProblem::Expired => {
                "this invite code has expired; ask your therapist for a new one"
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => ApiError::Conflict(what.to_owned()),
            StoreError::UnknownCursor => {
                ApiError::bad_field("since", "unknown or malformed cursor")
            }
            e @ StoreError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            // Kept whole, with its cause, for the log.
            e @ StoreError::Corrupt { .. } => ApiError::Unexpected(e.into()),
            // The game is valid but larger than the store can keep as one
            // record (MongoDB's document limit): a problem with the data.
            StoreError::TooLarge(m) => ApiError::invalid_field("channels", m),
        }
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:m2m:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, naming the field at fault when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// One field at fault.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

/// The cause of a 500, put in the response's extensions so the request's
/// middleware logs it inside the request span.
#[derive(Debug, Clone)]
pub(crate) struct InternalCause(pub(crate) Arc<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (slug, title) = self.kind();
        let detail = match &self {
            ApiError::Unexpected(_) => None,
            other => Some(other.to_string()),
        };
        let errors = match &self {
            ApiError::Invalid(errors) | ApiError::BadRequest { errors, .. } => errors
                .iter()
                .map(|e| ProblemField {
                    field: e.field.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            ApiError::Invite(why) => vec![ProblemField {
                field: "code".to_owned(),
                message: why.detail().to_owned(),
            }],
            _ => Vec::new(),
        };
        let body = Problem {
            kind: format!("urn:m2m:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::TooManyRequests { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unexpected(cause) => {
                response
                    .extensions_mut()
                    .insert(InternalCause(Arc::new(format!("{cause:#}"))));
            }
            _ => {}
        }
        response
    }
}

/// Result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Whether a request has a body to read (a non-zero length, or chunked).
fn has_body(headers: &header::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Whether a response is already problem+json.
fn is_problem(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// Turns every error response that is not problem+json yet into one, so
/// that the answers made by the framework's own layers have the same shape
/// as the handlers' and the same `type` for the same status: the router's
/// 405, the decompression's 415, an extractor's 400. The headers they set
/// (`Allow`, `Accept-Encoding`, ...) are kept; their text, if any, becomes
/// the detail.
///
/// An error answer to a request that came with a body also says
/// `Connection: close`: the server may answer before reading the body (a
/// 401 or 403 before an upload is read, a 413), and then closes the
/// connection; without the header a client would keep the connection for
/// its next request, which would fail.
pub(crate) async fn ensure_problem(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let with_body = has_body(req.headers());
    let mut response = next.run(req).await;
    let status = response.status();
    if with_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !(status.is_client_error() || status.is_server_error()) || is_problem(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let detail = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    });
    let error = match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest {
            detail,
            errors: Vec::new(),
        },
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
            if parts.headers.contains_key(header::ACCEPT_ENCODING) =>
        {
            ApiError::UnsupportedEncoding
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType("application/json"),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(detail),
        StatusCode::INTERNAL_SERVER_ERROR => ApiError::Unexpected(anyhow::anyhow!(detail)),
        _ => ApiError::Status { status, detail },
    };
    let mut problem = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name, value.clone());
        }
    }
    problem
}
