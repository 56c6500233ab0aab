//! The caller's own account: `GET /v1/me` and `PATCH /v1/me` (the time
//! zone adherence days are counted in, docs/therapists.md).

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AuthUser, JsonBody};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono_tz::Tz;
use m2m_domain::Role;
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
    #[schema(min_length = 1, max_length = 64, example = "Europe/Zurich")]
    tz: Option<String>,
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

async fn profile(state: &AppState, user: AuthUser) -> ApiResult<Profile> {
    // A valid token whose account is gone: as for any unknown account.
    state
        .store()
        .profile(user.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))
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
            return Err(ApiError::Unauthorized("the account no longer exists"));
        }
    }
    Ok(Json(me(&profile(&state, user).await?)))
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
