//! Accounts and tokens: `/v1/users`, `/v1/login`, `/v1/token/refresh`, `/v1/logout`.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ClientAddr, JsonBody};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use m2m_domain::{FieldError, Password, Role, Username, PASSWORD_CHARS, USERNAME_CHARS};
use m2m_store::{NewLogin, NewUser, RefreshOutcome, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Username and password, to register or log in.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct Credentials {
    /// 3–64 ASCII letters, digits, `.`, `_`, `-`; case-insensitive.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    username: String,
    /// 10–256 characters.
    #[schema(format = Password, min_length = 10, max_length = 256)]
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A new account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserCreated {
    user_id: Uuid,
    username: String,
}

/// Tokens of a login.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Tokens {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Use once at `/v1/token/refresh`; it is replaced at every use.
    refresh_token: String,
}

/// A refresh token.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshRequest(<redacted>)")
    }
}

fn check_credentials(c: Credentials) -> ApiResult<(Username, Password)> {
    let mut errors: Vec<FieldError> = Vec::new();
    let username = Username::parse(&c.username)
        .map_err(|e| errors.push(e))
        .ok();
    let password = Password::parse(c.password).map_err(|e| errors.push(e)).ok();
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(ApiError::Invalid(errors)),
    }
}

/// The lengths of [`Username`] and [`Password`], checked before any other
/// use of a login's credentials.
fn check_lengths(c: &Credentials) -> ApiResult<()> {
    let mut errors = Vec::new();
    if !USERNAME_CHARS.contains(&c.username.chars().count()) {
        errors.push(FieldError::new("username", "must be 3–64 characters"));
    }
    if !PASSWORD_CHARS.contains(&c.password.chars().count()) {
        errors.push(FieldError::new("password", "must be 10–256 characters"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Register an account.
#[utoipa::path(post, path = "/v1/users", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, body = UserCreated),
        (status = 409, description = "username taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid username or password", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn register(
    State(state): State<AppState>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    let (username, password) = check_credentials(c)?;
    let password_hash = state
        .auth()
        .hash_password(password.expose().to_owned())
        .await?;
    let user_id = Uuid::now_v7();
    state
        .store()
        .create_user(NewUser {
            user_id,
            username: username.clone(),
            password_hash,
            // Self-registration creates patients only; an operator creates
            // therapists (`m2m users add`).
            role: Role::Patient,
            created_at: Utc::now(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::Conflict("the username is taken".into()),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(UserCreated {
            user_id,
            username: username.as_str().to_owned(),
        }),
    ))
}

const BAD_CREDENTIALS: &str = "invalid username or password";

/// Log in: an access token and a refresh token.
#[utoipa::path(post, path = "/v1/login", tag = "accounts", request_body = Credentials,
    responses(
        (status = 200, body = Tokens),
        (status = 401, description = "unknown user or wrong password (same answer)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed logins; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<Json<Tokens>> {
    log_in(&state, addr, c).await.map(Tokens::from).map(Json)
}

/// The tokens of a new login or of a rotation, before they take the shape
/// of an answer: a JSON body for the phone (`/v1/login`), a body and a
/// cookie for the browser (`/app/session`).
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) role: Role,
    pub(crate) access_token: String,
    /// Seconds until the access token expires.
    pub(crate) expires_in: u64,
    pub(crate) refresh_token: String,
}

impl From<Session> for Tokens {
    fn from(s: Session) -> Self {
        Tokens {
            access_token: s.access_token,
            token_type: "Bearer",
            expires_in: s.expires_in,
            refresh_token: s.refresh_token,
        }
    }
}

/// Checks credentials under the failed-login limiter and opens a login:
/// the one implementation of `/v1/login` and `POST /app/session`.
pub(crate) async fn log_in(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    c: Credentials,
) -> ApiResult<Session> {
    // Lengths are checked first, as at registration (422): nothing longer
    // than a valid name is kept by the limiter or hashed. A username or
    // password of a valid length that breaks another rule cannot match any
    // account: the same 401 as a wrong password, so the answer tells
    // nothing.
    check_lengths(&c)?;
    let key = c.username.to_ascii_lowercase();
    if let Some(retry_after_s) = state.auth().limiter().check(&key, addr) {
        return Err(ApiError::TooManyRequests { retry_after_s });
    }
    let user = match Username::parse(&c.username) {
        Ok(u) => state.store().user_by_username(&u).await?,
        Err(_) => None,
    };
    let ok = state
        .auth()
        .verify_password(c.password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        state.auth().limiter().record_failure(&key, addr);
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
    };
    let now = Utc::now();
    let (refresh_token, token_hash) = Auth::new_refresh_token();
    state
        .store()
        .create_login(NewLogin {
            login_id: Uuid::now_v7(),
            user_id: user.user_id,
            token_hash,
            created_at: now,
            expires_at: now + state.auth().refresh_ttl,
        })
        .await?;
    // The account may have been deleted while its password was checked.
    crate::routes::me::still_exists(state, user.user_id).await?;
    session(state, user.user_id, user.role, refresh_token)
}

fn session(
    state: &AppState,
    user_id: Uuid,
    role: Role,
    refresh_token: String,
) -> ApiResult<Session> {
    Ok(Session {
        role,
        access_token: state.auth().access_token(user_id, role, Utc::now())?,
        expires_in: state.auth().access_ttl.as_secs(),
        refresh_token,
    })
}

/// Exchange a refresh token for new tokens; the old one stops working.
#[utoipa::path(post, path = "/v1/token/refresh", tag = "accounts", request_body = RefreshRequest,
    responses(
        (status = 200, body = Tokens),
        (status = 401, description = "unknown, expired, revoked or already used (which revokes the whole login)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    JsonBody(r): JsonBody<RefreshRequest>,
) -> ApiResult<Json<Tokens>> {
    rotate(&state, &r.refresh_token)
        .await
        .map(Tokens::from)
        .map(Json)
}

/// Replaces a refresh token by a new one, with a new access token: the one
/// implementation of `/v1/token/refresh` and `POST /app/session/refresh`.
/// A token already rotated out revokes its whole login (it was copied).
pub(crate) async fn rotate(state: &AppState, refresh_token: &str) -> ApiResult<Session> {
    let now = Utc::now();
    let (next, next_hash) = Auth::new_refresh_token();
    let outcome = state
        .store()
        .rotate_refresh_token(
            Auth::hash_token(refresh_token),
            next_hash,
            now,
            now + state.auth().refresh_ttl,
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated { user_id, role, .. } => session(state, user_id, role, next),
        RefreshOutcome::Reused => {
            tracing::warn!("a rotated-out refresh token was presented; its login is revoked");
            Err(ApiError::Unauthorized(
                "the refresh token is no longer valid",
            ))
        }
        RefreshOutcome::Invalid => Err(ApiError::Unauthorized(
            "the refresh token is no longer valid",
        )),
    }
}

/// Log out: revokes the login of the refresh token.
#[utoipa::path(post, path = "/v1/logout", tag = "accounts", request_body = RefreshRequest,
    responses((status = 204, description = "the login is revoked (also answered for an unknown token)")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    JsonBody(r): JsonBody<RefreshRequest>,
) -> ApiResult<StatusCode> {
    log_out(&state, &r.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the login of a refresh token (nothing for an unknown one): the
/// one implementation of `/v1/logout` and `DELETE /app/session`.
pub(crate) async fn log_out(state: &AppState, refresh_token: &str) -> ApiResult<()> {
    state
        .store()
        .revoke_login(Auth::hash_token(refresh_token), Utc::now())
        .await?;
    Ok(())
}
