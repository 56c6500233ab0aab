//! The web dashboard: its assets under `/app/`, embedded in the binary so
//! that a gateway serves it with nothing beside it; `/` redirects there;
//! and the browser's sessions, whose refresh token lives in an HttpOnly
//! cookie that JavaScript never reads (docs/therapists.md, "The web
//! dashboard").
//!
//! Every answer under `/app` carries a Content-Security-Policy that allows
//! only the gateway's own scripts and styles, none inline: the assets are
//! written for it (classes, not `style=""`; uPlot sets its styles through
//! the CSSOM, which the policy does not block).

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ClientAddr, JsonBody};
use crate::routes::accounts::{self, Credentials, Session};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use m2m_domain::Role;
use serde::{Deserialize, Serialize};

/// The name of the cookie that holds a browser's refresh token.
pub(crate) const REFRESH_COOKIE: &str = "m2m_refresh";

/// The only path the browser sends the cookie to.
const COOKIE_PATH: &str = "/app/session";

/// The policy of every answer under `/app`: the gateway's own scripts,
/// styles, images and API, nothing inline, never framed.
const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file of the dashboard.
struct Asset {
    /// Its path under `/app/`.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file of the dashboard. uPlot is vendored at a pinned version with
/// its licence (`web/vendor/uplot-<version>/`).
static ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/app.css"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "vendor/uplot-1.6.32/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/vendor/uplot-1.6.32/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uplot-1.6.32/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/vendor/uplot-1.6.32/uPlot.min.css"),
    },
    Asset {
        path: "vendor/uplot-1.6.32/LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../web/vendor/uplot-1.6.32/LICENSE"),
    },
];

/// The dashboard's routes: `/` and `/app` redirect to `/app/`, the assets,
/// and the browser's sessions; all under the security headers.
pub(crate) fn router() -> Router<AppState> {
    let app = Router::new()
        .route("/app/", get(index))
        .route("/app/{*asset}", get(asset))
        .route("/app/session", post(create_session).delete(delete_session))
        .route("/app/session/refresh", post(refresh_session))
        .layer(axum::middleware::from_fn(security_headers));
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/") }))
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .merge(app)
}

/// Adds the security headers to every answer under `/app`, errors
/// included.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn index() -> Response {
    serve_asset("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    serve_asset(&path)
}

/// The embedded file at `path`, or a 404 problem.
fn serve_asset(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::NotFound.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Small files: the browser asks again each time, so a new
            // binary's assets are never mixed with an old one's.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.bytes,
    )
        .into_response()
}

/// The body of the refresh and logout requests: an empty JSON object. It
/// exists so that these requests, like the login, must be sent as
/// `application/json`, which a cross-site form cannot do.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct EmptyObject {}

/// The browser's tokens: the refresh token is in the `m2m_refresh` cookie,
/// never in the body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebTokens {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// The account's role: which pages the dashboard shows.
    #[schema(value_type = String, pattern = "^(patient|therapist)$")]
    role: Role,
}

/// Whether the request reached the proxy in front of the gateway over
/// HTTPS, as its `X-Forwarded-Proto` says: then the cookie is `Secure`.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get(HeaderName::from_static("x-forwarded-proto"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for the refresh cookie: `token` for `max_age_s`
/// seconds, or an empty value that expires at once (logout).
fn refresh_cookie(token: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{REFRESH_COOKIE}={token}; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; Max-Age={max_age_s}{secure}"
    );
    // The token is base64url and the rest is fixed text: always a valid
    // header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The refresh token of the request's `m2m_refresh` cookie, if any.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// The answer to a login or a refresh: the tokens' body and the new
/// refresh cookie.
fn session_answer(state: &AppState, session: Session, secure: bool) -> Response {
    let cookie = refresh_cookie(
        &session.refresh_token,
        state.auth().refresh_ttl.as_secs(),
        secure,
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(WebTokens {
            access_token: session.access_token,
            token_type: "Bearer",
            expires_in: session.expires_in,
            role: session.role,
        }),
    )
        .into_response()
}

/// The `Set-Cookie` header that removes the refresh cookie.
fn cleared_cookie(secure: bool) -> [(HeaderName, HeaderValue); 1] {
    [(header::SET_COOKIE, refresh_cookie("", 0, secure))]
}

/// Log in from the browser: the access token in the body, the refresh
/// token in the `m2m_refresh` cookie.
#[utoipa::path(post, path = "/app/session", tag = "web", request_body = Credentials,
    responses(
        (status = 200, body = WebTokens, description = "logged in; `Set-Cookie: m2m_refresh=…; HttpOnly; SameSite=Strict; Path=/app/session` (and `Secure` when `X-Forwarded-Proto: https`)",
            headers(("set-cookie" = String, description = "the refresh token"))),
        (status = 401, description = "unknown user or wrong password (same answer)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed logins; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let session = accounts::log_in(&state, addr, c).await?;
    Ok(session_answer(&state, session, forwarded_https(&headers)))
}

/// Exchange the `m2m_refresh` cookie for a new access token and a new
/// cookie; the old one stops working, and presenting it again revokes the
/// whole login.
#[utoipa::path(post, path = "/app/session/refresh", tag = "web", request_body = EmptyObject,
    params(("m2m_refresh" = Option<String>, Cookie, description = "the refresh token, as the last answer set it")),
    responses(
        (status = 200, body = WebTokens, description = "a new access token; `Set-Cookie` replaces the refresh cookie",
            headers(("set-cookie" = String, description = "the new refresh token"))),
        (status = 401, description = "no cookie, or an unknown, expired, revoked or already used one (which revokes the whole login); the cookie is removed", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn refresh_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(_empty): JsonBody<EmptyObject>,
) -> Response {
    let secure = forwarded_https(&headers);
    let Some(token) = presented_token(&headers) else {
        return (
            cleared_cookie(secure),
            ApiError::Unauthorized("no session: log in"),
        )
            .into_response();
    };
    match accounts::rotate(&state, &token).await {
        Ok(session) => session_answer(&state, session, secure),
        Err(e @ ApiError::Unauthorized(_)) => (cleared_cookie(secure), e).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Log out from the browser: revokes the login of the `m2m_refresh` cookie
/// and removes the cookie.
#[utoipa::path(delete, path = "/app/session", tag = "web", request_body = EmptyObject,
    params(("m2m_refresh" = Option<String>, Cookie, description = "the refresh token, as the last answer set it")),
    responses(
        (status = 204, description = "the login is revoked and the cookie removed (also answered without a cookie or for an unknown one)",
            headers(("set-cookie" = String, description = "removes the refresh cookie"))),
    ))]
pub(crate) async fn delete_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(_empty): JsonBody<EmptyObject>,
) -> ApiResult<Response> {
    if let Some(token) = presented_token(&headers) {
        accounts::log_out(&state, &token).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        cleared_cookie(forwarded_https(&headers)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; m2m_refresh=tok-en_1; b=2"),
        );
        assert_eq!(presented_token(&headers).as_deref(), Some("tok-en_1"));
        headers.insert(header::COOKIE, HeaderValue::from_static("m2m_refreshx=1"));
        assert_eq!(presented_token(&headers), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("m2m_refresh="));
        assert_eq!(presented_token(&headers), None);
    }

    #[test]
    fn the_cookie_is_secure_only_behind_https() {
        let mut headers = HeaderMap::new();
        assert!(!forwarded_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        assert!(forwarded_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!forwarded_https(&headers));
        let cookie = refresh_cookie("t", 60, true);
        assert_eq!(
            cookie,
            "m2m_refresh=t; HttpOnly; SameSite=Strict; Path=/app/session; Max-Age=60; Secure"
        );
    }

    #[test]
    fn every_asset_is_served_with_its_type() {
        for a in ASSETS {
            let r = serve_asset(a.path);
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            assert!(!a.bytes.is_empty(), "{} is empty", a.path);
        }
        assert_eq!(serve_asset("nope.js").status(), StatusCode::NOT_FOUND);
    }
}
