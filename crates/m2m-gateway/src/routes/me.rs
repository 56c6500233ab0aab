//! The caller's own account: `GET /v1/me` and `PATCH /v1/me` (the time
//! zone adherence days are counted in, docs/therapists.md), and
//! `DELETE /v1/me`, which erases it (docs/data-lifecycle.md, "A patient's
//! copy and erasure"; the copy is `me_export.rs`).

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AuthUser, ClientAddr, JsonBody, JsonOrEmptyBody, ACCOUNT_GONE};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono_tz::Tz;
use m2m_domain::{Role, Username, PASSWORD_CHARS};
use m2m_store::Profile;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The caller's account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    user_id: Uuid,
    username: String,
    role: Role,
    /// The IANA time zone of the account's days (adherence); `UTC` unless
    /// set.
    tz: String,
}

/// Settings to change; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeUpdate {
    /// An IANA time zone name, e.g. `Europe/Zurich`.
    #[schema(schema_with = tz_schema)]
    #[serde(default, deserialize_with = "present")]
    tz: Option<String>,
}

/// A field that may be absent but, when present, is a string (`null` is
/// refused, not read as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A name of the IANA time zone database, as this build knows them (an
/// enumeration, so that the document states exactly which are accepted).
fn tz_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
        .description(Some(
            "A name of the IANA time zone database, e.g. `Europe/Zurich`",
        ))
        .examples(["Europe/Zurich"])
        .build()
}

/// The time zone a profile's days are counted in: its setting when that is
/// a known IANA name, else UTC (a stored name this build does not know is
/// left as it is, and logged).
pub(crate) fn time_zone(profile: &Profile) -> Tz {
    match profile.tz.as_deref() {
        None => Tz::UTC,
        Some(name) => name.parse().unwrap_or_else(|_| {
            tracing::warn!(user_id = %profile.user_id, tz = name, "unknown stored time zone; using UTC");
            Tz::UTC
        }),
    }
}

fn me(profile: &Profile) -> Me {
    Me {
        user_id: profile.user_id,
        username: profile.username.clone(),
        role: profile.role,
        tz: time_zone(profile).name().to_owned(),
    }
}

/// A time zone as the API accepts it: a name of the IANA database.
fn parse_tz(name: &str) -> ApiResult<Tz> {
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::invalid_field("tz", "must be 1–64 characters"));
    }
    name.parse::<Tz>().map_err(|_| {
        ApiError::invalid_field(
            "tz",
            "is not a time zone name of the IANA database (e.g. Europe/Zurich)",
        )
    })
}

/// The caller's profile; 401 when the account is gone.
pub(crate) async fn profile(state: &AppState, user: AuthUser) -> ApiResult<Profile> {
    // A valid token whose account is gone: as for any unknown account.
    state
        .store()
        .profile(user.user_id)
        .await?
        .ok_or(ApiError::Unauthorized(ACCOUNT_GONE))
}

/// The caller's account and settings.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Me)))]
pub(crate) async fn get_me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Me>> {
    Ok(Json(me(&profile(&state, user).await?)))
}

/// Changes the caller's settings.
#[utoipa::path(patch, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    request_body = MeUpdate,
    responses(
        (status = 200, body = Me),
        (status = 422, description = "an unknown time zone, or an unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn patch_me(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(update): JsonBody<MeUpdate>,
) -> ApiResult<Json<Me>> {
    if let Some(name) = update.tz {
        let tz = parse_tz(&name)?;
        if !state.store().set_time_zone(user.user_id, tz.name()).await? {
            return Err(ApiError::Unauthorized(ACCOUNT_GONE));
        }
    }
    Ok(Json(me(&profile(&state, user).await?)))
}

/// The confirmation of an account's deletion: its password, as at login.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountDeletion {
    /// The account's password (10–256 characters).
    #[schema(format = Password, min_length = 10, max_length = 256)]
    password: String,
}

impl std::fmt::Debug for AccountDeletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountDeletion(<redacted>)")
    }
}

/// The answer to a wrong password at deletion. A 403, not login's 401:
/// the access token is valid, and a client that takes every 401 for an
/// expired token would refresh and try again instead of asking the user.
const WRONG_PASSWORD: &str = "the password is wrong";

/// Deletes the caller's account and everything stored that names it.
#[utoipa::path(delete, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    request_body = AccountDeletion,
    responses(
        (status = 204, description = "the account and all its data are deleted: its access tokens now get 401, its refresh tokens are unknown, its username can be registered again"),
        (status = 403, description = "the password is wrong (counts as a failed login)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`password` missing, not a string, or not 10–256 characters; or an unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed logins or deletions for this username or address; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn delete_me(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    user: AuthUser,
    JsonOrEmptyBody(body): JsonOrEmptyBody<AccountDeletion>,
) -> ApiResult<StatusCode> {
    // The password is checked as at login: its length first (422), then
    // under the failed-login limiter, by argon2 on the blocking pool.
    if !PASSWORD_CHARS.contains(&body.password.chars().count()) {
        return Err(ApiError::invalid_field(
            "password",
            "must be 10–256 characters",
        ));
    }
    let profile = profile(&state, user).await?;
    let key = profile.username.to_ascii_lowercase();
    if let Some(retry_after_s) = state.auth().limiter().check(&key, addr) {
        return Err(ApiError::TooManyRequests { retry_after_s });
    }
    let account = match Username::parse(&profile.username) {
        Ok(name) => state.store().user_by_username(&name).await?,
        Err(_) => None,
    }
    .filter(|a| a.user_id == user.user_id)
    .ok_or(ApiError::Unauthorized(ACCOUNT_GONE))?;
    let ok = state
        .auth()
        .verify_password(body.password, Some(account.password_hash))
        .await?;
    if !ok {
        state.auth().limiter().record_failure(&key, addr);
        return Err(ApiError::Forbidden(WRONG_PASSWORD));
    }
    state.store().delete_account(user.user_id).await?;
    state.0.hub.end_streams(user.user_id);
    tracing::info!(user_id = %user.user_id, role = user.role.as_str(), "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// After a write for `user_id` that passed [`AuthUser`] before the account
/// was deleted: whether the account still exists; if it does not, sweeps
/// up what the write left (deleting again removes everything naming the
/// id) and answers 401. The write committed before this check, so either
/// the deletion ran after it and removed it, or this check sees the
/// account gone.
pub(crate) async fn still_exists(state: &AppState, user_id: uuid::Uuid) -> ApiResult<()> {
    if state.store().account_exists(user_id).await? {
        return Ok(());
    }
    state.store().delete_account(user_id).await?;
    tracing::info!(%user_id, "a write raced the deletion of its account; removed");
    Err(ApiError::Unauthorized(ACCOUNT_GONE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(parse_tz("Europe/Zurich").unwrap(), Tz::Europe__Zurich);
        assert_eq!(parse_tz("UTC").unwrap(), Tz::UTC);
        for bad in [
            "",
            "Mars/Olympus",
            "europe/zurich ",
            "+02:00",
            &"A".repeat(65),
        ] {
            assert!(parse_tz(bad).is_err(), "{bad:?} accepted");
        }
    }
}
