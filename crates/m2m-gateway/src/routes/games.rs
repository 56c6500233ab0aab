//! Games: upload, read, list, and progress.

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AuthUser, PatientUser, QueryParams, UploadBody, UploadFormat};
use crate::state::AppState;
use crate::telemetry::TraceId;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use m2m_analysis::{Progress, ProgressGame};
use m2m_domain::{Game, GameSubmission, SubmissionError};
use m2m_store::{IdempotencyRecord, NewGame, SubmitOutcome};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The answer to an accepted upload.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    game_id: Uuid,
    event_id: Uuid,
    /// Always `queued`.
    status: String,
}

/// A game submission: the score and every sensor sample of one game.
/// Parsed and validated by `m2m_domain::GameSubmission`; this type only
/// documents it. One rule is beyond JSON Schema: every column has the same
/// number of samples (a column that differs is a 422 naming it).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct GameSubmissionDoc {
    /// The game's name.
    #[schema(min_length = 1, max_length = 64)]
    game: String,
    score: f64,
    /// RFC 3339 with any offset, within the years 0000–9999 once in UTC;
    /// defaults to the time of submission.
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<String>,
    device: Option<DeviceDoc>,
    /// Samples per second of every column.
    #[schema(minimum = 10, maximum = 1000)]
    sample_rate_hz: f64,
    /// The sensor columns by channel name.
    #[schema(schema_with = channels_schema)]
    channels: std::collections::BTreeMap<String, Vec<f64>>,
}

/// The glove that recorded a game (every field optional).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct DeviceDoc {
    #[schema(max_length = 64)]
    glove_id: Option<String>,
    #[schema(max_length = 64)]
    firmware: Option<String>,
    hand: Option<m2m_domain::Hand>,
}

/// 1–64 channels named by 1–64 of `a-z0-9_`, each a column of 1–600 000
/// numbers.
fn channels_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let column = ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::Number))
        .min_items(Some(1))
        .max_items(Some(m2m_domain::MAX_SAMPLES));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .min_properties(Some(1))
        .max_properties(Some(m2m_domain::MAX_CHANNELS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z0-9_]{1,64}$")),
        ))
        .additional_properties(Some(column))
        .description(Some(
            "1–64 channels named by 1–64 of `a-z0-9_`, each a column of 1–600 000 finite numbers, all of the same length",
        ))
        .build()
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || ApiError::bad_field("Idempotency-Key", "must be 1–255 visible ASCII characters");
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

fn accepted_response(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
    let location = serde_json::from_slice::<Accepted>(&body)
        .ok()
        .and_then(|a| HeaderValue::from_str(&format!("/v1/games/{}", a.game_id)).ok());
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(l) = location {
        response.headers_mut().insert(header::LOCATION, l);
    }
    response
}

/// Upload a game. Answers as soon as the game and its ProcessingEvent are
/// durable; the analysis follows and is announced on `/v1/events`.
#[utoipa::path(post, path = "/v1/games", tag = "games",
    request_body(
        content(
            (GameSubmissionDoc = "application/json"),
            (GameSubmissionDoc = "application/cbor"),
        ),
        description = "The game as JSON, or as the same document in CBOR (RFC 8949), which costs a phone fewer bytes and the server no number parsing. In CBOR a number may be an integer or a float of any width (float16 included), and a column may also be an RFC 8746 typed array: a byte string of IEEE 754 floats tagged 85 (float32, little-endian), 86 (float64, little-endian), 81 or 82 (the same, big-endian), e.g. `85(h'0000c03f…')`. Another tag on a column is a 422 naming it. Malformed CBOR is a 400 like malformed JSON; a value of the wrong shape is a 422 naming the field."
    ),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1–255 visible ASCII characters; a repeat within 24 h returns the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 202, body = Accepted, headers(("Location" = String))),
        (status = 400, description = "malformed JSON or CBOR, or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the account is a therapist's: only patients upload games", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is sent neither as application/json nor as application/cbor, or with a Content-Encoding other than gzip", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid submission, or the key reused with another body", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    UploadBody {
        bytes: body,
        format,
    }: UploadBody,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let submitted_at = Utc::now();
    let game_id = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    // Parsing a large game takes a millisecond or more: off the runtime.
    // The key's hash is over the body as sent (after decompression), so a
    // replay must repeat the same bytes in the same format.
    let want_hash = key.is_some();
    let (parsed, request_hash) = tokio::task::spawn_blocking(move || {
        let hash: Option<[u8; 32]> = want_hash.then(|| Sha256::digest(&body).into());
        let parsed = match format {
            UploadFormat::Json => GameSubmission::from_json(&body),
            UploadFormat::Cbor => GameSubmission::from_cbor(&body),
        };
        (parsed, hash)
    })
    .await
    .map_err(|e| anyhow::anyhow!("parsing task: {e}"))?;
    let submission = parsed.map_err(|e| match e {
        SubmissionError::Malformed(m) => {
            ApiError::bad_field("body", format!("malformed {}: {m}", format.name()))
        }
        SubmissionError::Invalid(errors) => ApiError::Invalid(errors),
    })?;
    let accepted = serde_json::to_vec(&Accepted {
        game_id,
        event_id,
        status: "queued".into(),
    })
    .map_err(anyhow::Error::from)?;
    let idempotency = key
        .zip(request_hash)
        .map(|(key, request_hash)| IdempotencyRecord {
            key,
            request_hash,
            status: StatusCode::ACCEPTED.as_u16(),
            body: accepted.clone(),
        });
    let outcome = state
        .store()
        .submit_game(
            NewGame {
                game_id,
                event_id,
                user_id: user.user_id,
                submission,
                submitted_at,
                trace_id,
            },
            idempotency,
        )
        .await?;
    match outcome {
        // A deletion of the account may have run since the token was
        // checked: then what was just stored goes too (401).
        SubmitOutcome::Created => crate::routes::me::still_exists(&state, user.user_id).await?,
        SubmitOutcome::Replayed { status, body } => return Ok(accepted_response(status, body)),
        SubmitOutcome::KeyReused => {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                "was used before with a different request body",
            ))
        }
    }
    state.0.metrics.games_accepted.inc();
    // The game and its event are durable: answer now; the publisher puts
    // the event on the bus.
    state.0.publisher.wake();
    Ok(accepted_response(StatusCode::ACCEPTED.as_u16(), accepted))
}

/// One of the caller's games.
#[utoipa::path(get, path = "/v1/games/{game_id}", tag = "games", security(("bearer" = [])),
    params(("game_id" = Uuid, Path)),
    responses((status = 200, body = Game), (status = 404, description = "unknown or not yours", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_game(
    State(state): State<AppState>,
    user: AuthUser,
    Path(game_id): Path<String>,
) -> ApiResult<Json<Game>> {
    game_of(&state, user.user_id, &game_id).await.map(Json)
}

/// A user's game by the id in a path; 404 when malformed or not theirs.
pub(crate) async fn game_of(state: &AppState, user_id: Uuid, game_id: &str) -> ApiResult<Game> {
    let game_id: Uuid = game_id.parse().map_err(|_| ApiError::NotFound)?;
    state
        .store()
        .game(user_id, game_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Paging of `GET /v1/games` (read by [`QueryParams`]; this type only
/// documents them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ListQuery {
    /// Games per page, 1–100.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
    /// A game id (the `next` of the previous page): list the games
    /// submitted before it.
    before: Option<Uuid>,
}

/// A page of games.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GamePage {
    /// Newest submission first, without metrics.
    games: Vec<Game>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Uuid>,
}

/// The caller's games, newest first.
#[utoipa::path(get, path = "/v1/games", tag = "games", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = GamePage), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_games(
    State(state): State<AppState>,
    user: AuthUser,
    q: QueryParams,
) -> ApiResult<Json<GamePage>> {
    games_page(&state, user.user_id, &q).await.map(Json)
}

/// A page of a user's games, as the paging parameters of `q` ask.
pub(crate) async fn games_page(
    state: &AppState,
    user_id: Uuid,
    q: &QueryParams,
) -> ApiResult<GamePage> {
    let limit = q.bounded("limit", 20, 100)?;
    let before = q
        .get("before")
        .map(|b| {
            b.parse::<Uuid>()
                .map_err(|_| ApiError::bad_field("before", "must be a game id"))
        })
        .transpose()?;
    let mut games = state.store().list_games(user_id, before, limit + 1).await?;
    let next = if games.len() > limit as usize {
        games.truncate(limit as usize);
        games.last().map(|g| g.game_id)
    } else {
        None
    };
    for g in &mut games {
        g.metrics = None;
    }
    Ok(GamePage { games, next })
}

/// The caller's progress over their processed games.
#[utoipa::path(get, path = "/v1/progress", tag = "games", security(("bearer" = [])),
    responses((status = 200, body = Progress)))]
pub(crate) async fn progress(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Progress>> {
    progress_of(&state, user.user_id).await.map(Json)
}

/// A user's progress over their processed games of one algorithm version:
/// the newest among them (docs/data-lifecycle.md).
pub(crate) async fn progress_of(state: &AppState, user_id: Uuid) -> ApiResult<Progress> {
    let games = state.store().processed_games(user_id).await?;
    let version = games.iter().map(|g| g.algorithm_version).max();
    let input: Vec<ProgressGame<'_>> = games
        .iter()
        .filter(|g| Some(g.algorithm_version) == version)
        .map(|g| ProgressGame {
            game_id: g.game_id,
            at: g.started_at,
            metrics: &g.metrics,
        })
        .collect();
    let mut progress = m2m_analysis::progress(&input);
    progress.algorithm_version = version;
    Ok(progress)
}
