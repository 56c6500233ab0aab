//! Invites and links between therapists and patients: `POST /v1/invites`
//! (therapist), `POST /v1/therapists`, `GET /v1/therapists` and `DELETE
//! /v1/therapists/{therapist_id}` (patient). The rules are those of
//! docs/therapists.md, "Invites and links".

use crate::error::{ApiError, ApiResult, InviteProblem, Problem};
use crate::extract::{JsonBody, PatientUser, TherapistUser};
use crate::routes::me::still_exists;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use m2m_store::{InviteOutcome, NewInvite, RedeemOutcome, StoreError, TherapistLink};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long an invite code can be redeemed.
pub(crate) const INVITE_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(72);
/// Open (unused, unexpired) codes a therapist may have at once.
pub(crate) const MAX_OPEN_INVITES: u32 = 20;
/// Crockford's base32 alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols of a code (40 bits).
const CODE_LEN: usize = 8;

/// A new invite code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Invite {
    /// 8 symbols of Crockford's base32, for the patient to enter.
    #[schema(pattern = "^[0-9A-HJKMNP-TV-Z]{8}$", example = "7K3QJ9MX")]
    code: String,
    /// After this the code cannot be redeemed (72 h after it was made).
    expires_at: DateTime<Utc>,
}

/// An invite code to redeem.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Redeem {
    /// As the therapist gave it: case does not matter, `I`/`L` read as
    /// `1`, `O` as `0`, hyphens and spaces are ignored.
    #[schema(min_length = 1, max_length = 64, example = "7K3Q-J9MX")]
    code: String,
}

/// A patient's link to a therapist.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Therapist {
    therapist_id: Uuid,
    username: String,
    linked_at: DateTime<Utc>,
}

impl From<TherapistLink> for Therapist {
    fn from(l: TherapistLink) -> Self {
        Therapist {
            therapist_id: l.therapist_id,
            username: l.username,
            linked_at: l.linked_at,
        }
    }
}

/// A patient's therapists, oldest link first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Therapists {
    therapists: Vec<Therapist>,
}

/// A new random code.
fn new_code() -> String {
    let mut bytes = [0u8; 5];
    rand::rng().fill_bytes(&mut bytes);
    let bits = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (0..CODE_LEN)
        .rev()
        .map(|i| char::from(CROCKFORD[((bits >> (5 * i)) & 31) as usize]))
        .collect()
}

/// The canonical form of a code as a person typed it (Crockford's
/// decoding rules), or `None` if it cannot be a code.
fn canonical_code(typed: &str) -> Option<String> {
    let mut code = String::with_capacity(CODE_LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'I' | 'L' => '1',
            'O' => '0',
            c if c.is_ascii() && CROCKFORD.contains(&(c as u8)) => c,
            _ => return None,
        };
        code.push(c);
    }
    (code.len() == CODE_LEN).then_some(code)
}

/// Makes an invite code for a patient to link to the caller.
#[utoipa::path(post, path = "/v1/invites", tag = "therapists", security(("bearer" = [])),
    responses(
        (status = 201, body = Invite),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "20 codes are open already (`too-many-invites`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_invite(
    State(state): State<AppState>,
    TherapistUser(user): TherapistUser,
) -> ApiResult<(StatusCode, Json<Invite>)> {
    let created_at = Utc::now();
    let expires_at = created_at + INVITE_TTL;
    // 2^40 codes: a clash is rare, and then another code is drawn.
    for _ in 0..4 {
        let code = new_code();
        let invite = NewInvite {
            code: code.clone(),
            therapist_id: user.user_id,
            created_at,
            expires_at,
        };
        match state.store().create_invite(invite, MAX_OPEN_INVITES).await {
            Ok(InviteOutcome::Created) => {
                // Unless the therapist's account was deleted meanwhile.
                still_exists(&state, user.user_id).await?;
                return Ok((StatusCode::CREATED, Json(Invite { code, expires_at })));
            }
            Ok(InviteOutcome::TooManyOpen) => {
                return Err(ApiError::TooManyInvites {
                    max: MAX_OPEN_INVITES,
                })
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow::anyhow!("four invite codes in a row were taken").into())
}

/// Links the caller to the therapist who made an invite code.
#[utoipa::path(post, path = "/v1/therapists", tag = "therapists", security(("bearer" = [])),
    request_body = Redeem,
    responses(
        (status = 201, description = "linked (or linked before: the existing link)", body = Therapist),
        (status = 403, description = "the caller is not a patient", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invite-unknown`, `invite-used` or `invite-expired`, or a body without `code`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn link(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    JsonBody(redeem): JsonBody<Redeem>,
) -> ApiResult<(StatusCode, Json<Therapist>)> {
    let code = canonical_code(&redeem.code).ok_or(ApiError::Invite(InviteProblem::Unknown))?;
    let outcome = state
        .store()
        .redeem_invite(&code, user.user_id, Utc::now())
        .await?;
    match outcome {
        RedeemOutcome::Linked(link) => {
            // Unless either account was deleted meanwhile: then the link
            // goes with it, and a code of a deleted therapist is unknown.
            still_exists(&state, user.user_id).await?;
            if !state.store().account_exists(link.therapist_id).await? {
                state.store().delete_account(link.therapist_id).await?;
                return Err(ApiError::Invite(InviteProblem::Unknown));
            }
            // The therapist's open streams start carrying this patient.
            state.0.hub.notify(link.therapist_id);
            Ok((StatusCode::CREATED, Json(link.into())))
        }
        RedeemOutcome::Unknown => Err(ApiError::Invite(InviteProblem::Unknown)),
        RedeemOutcome::Used => Err(ApiError::Invite(InviteProblem::Used)),
        RedeemOutcome::Expired => Err(ApiError::Invite(InviteProblem::Expired)),
    }
}

/// The caller's therapists.
#[utoipa::path(get, path = "/v1/therapists", tag = "therapists", security(("bearer" = [])),
    responses(
        (status = 200, body = Therapists),
        (status = 403, description = "the caller is not a patient", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> ApiResult<Json<Therapists>> {
    let links = state.store().therapists_of(user.user_id).await?;
    Ok(Json(Therapists {
        therapists: links.into_iter().map(Therapist::from).collect(),
    }))
}

/// Removes the caller's link to a therapist, at once.
#[utoipa::path(delete, path = "/v1/therapists/{therapist_id}", tag = "therapists", security(("bearer" = [])),
    params(("therapist_id" = Uuid, Path)),
    responses(
        (status = 204, description = "the link is gone"),
        (status = 403, description = "the caller is not a patient", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such link", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unlink(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Path(therapist_id): Path<String>,
) -> ApiResult<StatusCode> {
    let therapist_id: Uuid = therapist_id.parse().map_err(|_| ApiError::NotFound)?;
    if !state.store().unlink(user.user_id, therapist_id).await? {
        return Err(ApiError::NotFound);
    }
    state.0.hub.notify(therapist_id);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_crockford_symbols() {
        for _ in 0..1000 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LEN);
            assert!(code.bytes().all(|b| CROCKFORD.contains(&b)), "{code}");
            assert_eq!(canonical_code(&code).as_deref(), Some(code.as_str()));
        }
    }

    #[test]
    fn typed_codes_are_read_as_crockford_reads_them() {
        assert_eq!(canonical_code("7k3q-j9mx").as_deref(), Some("7K3QJ9MX"));
        assert_eq!(canonical_code("O1IL 2345").as_deref(), Some("01112345"));
        for bad in [
            "",
            "7K3QJ9M",
            "7K3QJ9MXY",
            "7K3QJ9MU",
            "7K3QJ9M!",
            "7K3QJ9MÄ",
        ] {
            assert_eq!(canonical_code(bad), None, "{bad:?}");
        }
    }
}
