//! What a therapist reads of their linked patients (`/v1/patients…`), and
//! the samples of a game for plots (`/v1/games/{game_id}/samples`, and the
//! same under a linked patient). The rules are docs/therapists.md's.
//!
//! Every route under `/v1/patients/{patient_id}` answers 404 for a patient
//! who is not linked to the caller, exactly as for one who does not exist:
//! [`linked_patient`] is the one check, made before anything is read.

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AuthUser, QueryParams, TherapistUser};
use crate::routes::games::{self, GamePage, ListQuery};
use crate::routes::me::time_zone;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use m2m_analysis::{AdherenceDay, Progress};
use m2m_domain::{Game, GameSamples};
use m2m_store::PatientLink;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// A linked patient in the therapist's list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PatientSummary {
    patient_id: Uuid,
    username: String,
    linked_at: DateTime<Utc>,
    /// When their most recent game started; absent without games.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_game_at: Option<DateTime<Utc>>,
    /// Games started in the last 7 × 24 hours.
    games_7d: u32,
    /// Their total duration, in seconds.
    active_seconds_7d: f64,
    /// `inactive` and `declining:<metric>` (docs/therapists.md, "Flags").
    #[schema(example = json!(["inactive", "declining:rom_deg.mean"]))]
    flags: Vec<String>,
}

/// The caller's linked patients, most recently active first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Patients {
    patients: Vec<PatientSummary>,
}

/// Days of a patient's adherence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Adherence {
    /// The patient's time zone, in which the days are counted.
    tz: String,
    /// One entry per day from `from` to `to`, zeros included.
    days: Vec<AdherenceDay>,
}

/// The span of `…/adherence` (read by [`QueryParams`]; this type only
/// documents them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AdherenceQuery {
    /// The first day, `YYYY-MM-DD`, in the patient's time zone.
    #[param(value_type = String, format = Date)]
    from: NaiveDate,
    /// The last day, included; at most 365 days after `from`.
    #[param(value_type = String, format = Date)]
    to: NaiveDate,
}

/// The resolution of `…/samples` (read by [`QueryParams`]).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct SamplesQuery {
    /// At most this many points per channel, by Largest-Triangle-Three-
    /// Buckets; every sample when absent.
    #[param(minimum = 10, maximum = 10000)]
    max_points: Option<u32>,
}

/// A game's samples (the documentation of [`Samples`]' JSON).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct SamplesDoc {
    sample_rate_hz: f64,
    /// Seconds from the game's start of each point kept.
    t: Vec<f64>,
    /// Each channel's values at the times of `t`.
    #[schema(value_type = std::collections::BTreeMap<String, Vec<f64>>)]
    channels: std::collections::BTreeMap<String, Vec<f64>>,
}

/// Least and most points a downsampled answer may ask for.
const MAX_POINTS: std::ops::RangeInclusive<u32> = 10..=10_000;
/// Longest adherence span, in days.
const MAX_ADHERENCE_DAYS: i64 = 366;

/// The patient of `patient_id` if they are linked to `therapist`; 404
/// otherwise, malformed ids included.
async fn linked_patient(
    state: &AppState,
    therapist: &TherapistUser,
    patient_id: &str,
) -> ApiResult<Uuid> {
    let patient_id: Uuid = patient_id.parse().map_err(|_| ApiError::NotFound)?;
    state
        .store()
        .linked_at(therapist.0.user_id, patient_id)
        .await?
        .map(|_| patient_id)
        .ok_or(ApiError::NotFound)
}

async fn summary(
    state: &AppState,
    link: PatientLink,
    now: DateTime<Utc>,
) -> ApiResult<PatientSummary> {
    let store = state.store();
    let id = link.patient_id;
    let (last_game_at, week, progress) = futures::try_join!(
        async { store.last_started_at(id).await.map_err(ApiError::from) },
        async {
            store
                .activity(id, now - TimeDelta::days(7), now + TimeDelta::seconds(1))
                .await
                .map_err(ApiError::from)
        },
        games::progress_of(state, id),
    )?;
    Ok(PatientSummary {
        patient_id: id,
        username: link.username,
        linked_at: link.linked_at,
        last_game_at,
        games_7d: u32::try_from(week.len()).unwrap_or(u32::MAX),
        active_seconds_7d: week.iter().map(|a| a.active_seconds).sum(),
        flags: m2m_analysis::flags(&progress, last_game_at, now),
    })
}

/// The caller's linked patients, with their last week and flags.
#[utoipa::path(get, path = "/v1/patients", tag = "therapists", security(("bearer" = [])),
    responses(
        (status = 200, body = Patients),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    therapist: TherapistUser,
) -> ApiResult<Json<Patients>> {
    let links = state.store().patients_of(therapist.0.user_id).await?;
    let now = Utc::now();
    let mut patients =
        futures::future::try_join_all(links.into_iter().map(|l| summary(&state, l, now))).await?;
    // Most recent activity first; patients without games last.
    patients.sort_by_key(|p| std::cmp::Reverse(p.last_game_at));
    Ok(Json(Patients { patients }))
}

/// A linked patient's games, as `GET /v1/games` pages them.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/games", tag = "therapists", security(("bearer" = [])),
    params(("patient_id" = Uuid, Path), ListQuery),
    responses(
        (status = 200, body = GamePage),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such patient linked to the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn games(
    State(state): State<AppState>,
    therapist: TherapistUser,
    Path(patient_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<GamePage>> {
    let patient_id = linked_patient(&state, &therapist, &patient_id).await?;
    games::games_page(&state, patient_id, &q).await.map(Json)
}

/// One of a linked patient's games.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/games/{game_id}", tag = "therapists", security(("bearer" = [])),
    params(("patient_id" = Uuid, Path), ("game_id" = Uuid, Path)),
    responses(
        (status = 200, body = Game),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such patient linked to the caller, or no such game of theirs", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn game(
    State(state): State<AppState>,
    therapist: TherapistUser,
    Path((patient_id, game_id)): Path<(String, String)>,
) -> ApiResult<Json<Game>> {
    let patient_id = linked_patient(&state, &therapist, &patient_id).await?;
    games::game_of(&state, patient_id, &game_id).await.map(Json)
}

/// A linked patient's progress, as `GET /v1/progress` shows it.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/progress", tag = "therapists", security(("bearer" = [])),
    params(("patient_id" = Uuid, Path)),
    responses(
        (status = 200, body = Progress),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such patient linked to the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn progress(
    State(state): State<AppState>,
    therapist: TherapistUser,
    Path(patient_id): Path<String>,
) -> ApiResult<Json<Progress>> {
    let patient_id = linked_patient(&state, &therapist, &patient_id).await?;
    games::progress_of(&state, patient_id).await.map(Json)
}

/// A date query parameter, `YYYY-MM-DD`.
fn date_param(q: &QueryParams, name: &str) -> ApiResult<NaiveDate> {
    let value = q
        .get(name)
        .ok_or_else(|| ApiError::bad_field(name, "is required (YYYY-MM-DD)"))?;
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| ApiError::bad_field(name, "must be a date, YYYY-MM-DD"))
}

/// A linked patient's games and active time per day of their time zone.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/adherence", tag = "therapists", security(("bearer" = [])),
    params(("patient_id" = Uuid, Path), AdherenceQuery),
    responses(
        (status = 200, body = Adherence),
        (status = 400, description = "`from` or `to` missing or not a date, `to` before `from`, or more than 366 days", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such patient linked to the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn adherence(
    State(state): State<AppState>,
    therapist: TherapistUser,
    Path(patient_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Adherence>> {
    let patient_id = linked_patient(&state, &therapist, &patient_id).await?;
    let from = date_param(&q, "from")?;
    let to = date_param(&q, "to")?;
    if to < from {
        return Err(ApiError::bad_field("to", "must not be before `from`"));
    }
    if (to - from).num_days() >= MAX_ADHERENCE_DAYS {
        return Err(ApiError::bad_field(
            "to",
            format!("the span may be at most {MAX_ADHERENCE_DAYS} days"),
        ));
    }
    let profile = state
        .store()
        .profile(patient_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tz = time_zone(&profile);
    let after_to = to
        .succ_opt()
        .ok_or_else(|| ApiError::bad_field("to", "is too late"))?;
    let games = state
        .store()
        .activity(
            patient_id,
            m2m_analysis::day_start(from, tz),
            m2m_analysis::day_start(after_to, tz),
        )
        .await?;
    let games: Vec<(DateTime<Utc>, f64)> = games
        .iter()
        .map(|a| (a.started_at, a.active_seconds))
        .collect();
    Ok(Json(Adherence {
        tz: tz.name().to_owned(),
        days: m2m_analysis::adherence(from, to, tz, &games),
    }))
}

/// The samples of one of the caller's games, for plots.
#[utoipa::path(get, path = "/v1/games/{game_id}/samples", tag = "games", security(("bearer" = [])),
    params(("game_id" = Uuid, Path), SamplesQuery),
    responses(
        (status = 200, body = SamplesDoc),
        (status = 400, description = "`max_points` is not an integer from 10 to 10 000", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown or not yours", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn own_samples(
    State(state): State<AppState>,
    user: AuthUser,
    Path(game_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Response> {
    samples(&state, user.user_id, &game_id, &q).await
}

/// The samples of a linked patient's game, for plots.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/games/{game_id}/samples", tag = "therapists", security(("bearer" = [])),
    params(("patient_id" = Uuid, Path), ("game_id" = Uuid, Path), SamplesQuery),
    responses(
        (status = 200, body = SamplesDoc),
        (status = 400, description = "`max_points` is not an integer from 10 to 10 000", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the caller is not a therapist", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such patient linked to the caller, or no such game of theirs", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn patient_samples(
    State(state): State<AppState>,
    therapist: TherapistUser,
    Path((patient_id, game_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Response> {
    let patient_id = linked_patient(&state, &therapist, &patient_id).await?;
    samples(&state, patient_id, &game_id, &q).await
}

async fn samples(
    state: &AppState,
    user_id: Uuid,
    game_id: &str,
    q: &QueryParams,
) -> ApiResult<Response> {
    let max_points = match q.get("max_points") {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| MAX_POINTS.contains(n))
                .ok_or_else(|| {
                    ApiError::bad_field("max_points", "must be an integer from 10 to 10000")
                })?,
        ),
    };
    let game_id: Uuid = game_id.parse().map_err(|_| ApiError::NotFound)?;
    let game = state
        .store()
        .game_samples(user_id, game_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // A full-resolution game is tens of megabytes of JSON: off the runtime.
    let body = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&Samples::new(&game, max_points.map(|n| n as usize)))
    })
    .await
    .map_err(|e| anyhow::anyhow!("encoding task: {e}"))?
    .map_err(anyhow::Error::from)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A game's samples at the indices kept.
struct Samples<'a> {
    game: &'a GameSamples,
    /// `None`: every sample.
    kept: Option<Vec<usize>>,
}

impl<'a> Samples<'a> {
    fn new(game: &'a GameSamples, max_points: Option<usize>) -> Self {
        let n = game.channels.samples();
        let kept = max_points.filter(|&m| n > m).map(|m| {
            let columns: Vec<&[f64]> = game.channels.iter().map(|(_, c)| c).collect();
            m2m_analysis::lttb_indices(&columns, m)
        });
        Samples { game, kept }
    }

    fn indices(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match &self.kept {
            Some(kept) => Box::new(kept.iter().copied()),
            None => Box::new(0..self.game.channels.samples()),
        }
    }
}

impl Serialize for Samples<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rate = self.game.sample_rate_hz;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("sample_rate_hz", &rate)?;
        map.serialize_entry("t", &Column(self, &|i| i as f64 / rate))?;
        map.serialize_entry("channels", &ChannelsAt(self))?;
        map.end()
    }
}

struct ChannelsAt<'a, 'g>(&'a Samples<'g>);

impl Serialize for ChannelsAt<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.game.channels.len()))?;
        for (name, column) in self.0.game.channels.iter() {
            map.serialize_entry(name, &Column(self.0, &|i| column[i]))?;
        }
        map.end()
    }
}

/// The values `value(i)` at the kept indices. A value that an f32 holds
/// exactly (every value of a column stored as f32 by an earlier version,
/// or uploaded as float32) is written as the shortest text of that f32
/// ("0.3", not "0.30000001192092896"); any other as the shortest text of
/// its f64, which reads back as the same value.
struct Column<'a, 'g>(&'a Samples<'g>, &'a dyn Fn(usize) -> f64);

impl Serialize for Column<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for i in self.0.indices() {
            let v = (self.1)(i);
            let narrow = v as f32;
            if f64::from(narrow) == v {
                seq.serialize_element(&narrow)?;
            } else {
                seq.serialize_element(&v)?;
            }
        }
        seq.end()
    }
}
