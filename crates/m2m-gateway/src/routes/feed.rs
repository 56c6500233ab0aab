//! The change feed: `/v1/sync` (pull) and `/v1/events` (server-sent events).

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AuthUser, QueryParams};
use crate::hub::Subscription;
use crate::routes::care_feed;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::stream::{self, BoxStream, Stream};
use m2m_domain::{Change, Role};
use m2m_store::StoreError;
use serde::Serialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use uuid::Uuid;

/// Paging of `/v1/sync` (read by [`QueryParams`]; this type only documents
/// them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct SyncQuery {
    /// A cursor from an earlier answer; omitted for everything.
    since: Option<String>,
    /// Changes per page, 1–1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
}

/// Changes after a cursor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SyncPage {
    changes: Vec<Change>,
    /// The last change's cursor, or `since` when there is none: call again
    /// with it until `changes` is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// The caller's changes after a cursor, in order.
#[utoipa::path(get, path = "/v1/sync", tag = "feed", security(("bearer" = [])), params(SyncQuery),
    responses((status = 200, body = SyncPage), (status = 400, description = "unknown or malformed cursor, or a bad limit", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sync(
    State(state): State<AppState>,
    user: AuthUser,
    q: QueryParams,
) -> ApiResult<Json<SyncPage>> {
    let limit = q.bounded("limit", 100, 1000)?;
    let since = q.get("since");
    let changes = state
        .store()
        .changes_since(user.user_id, since, limit)
        .await?;
    let cursor = changes
        .last()
        .map(|c| c.cursor.clone())
        .or(since.map(str::to_owned));
    Ok(Json(SyncPage { changes, cursor }))
}

/// Read size of an event stream catching up.
const STREAM_BATCH: u32 = 200;

struct StreamState {
    state: AppState,
    user_id: Uuid,
    /// The cursor of the last change sent (or the start point).
    last: Option<String>,
    pending: VecDeque<Change>,
    /// The wake-ups; holding it keeps the stream counted as open.
    sub: Subscription,
}

/// Server-sent events of the caller's changes, resumable with
/// `Last-Event-ID`; a therapist's stream carries their linked patients'
/// changes instead.
#[utoipa::path(get, path = "/v1/events", tag = "feed", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received: the missed ones come first (ignored on a therapist's stream)")),
    responses(
        (status = 200, description = "A patient's stream: `event: game.processed`, `game.failed` or `game.reprocessed` (a newer algorithm version's result of a game; its `status` says whether it succeeded), `id:` the change's cursor, `data:` the Change. A therapist's stream: `event: patient.game.processed`, `patient.game.failed` or `patient.game.reprocessed`, no `id:`, `data:` the Change with `patient_id` added, for each patient linked when the stream opens from that moment, and for each patient linked later from their link", content_type = "text/event-stream"),
        (status = 400, description = "unknown Last-Event-ID", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let keep_alive = state.config().keep_alive;
    let shutdown = state.0.shutdown.clone();
    // Subscribe before reading the store, so a change committed while we
    // read is not missed.
    let sub = state.0.hub.subscribe(user.user_id);
    let evicted = sub.evicted.clone();
    let changes = match user.role {
        Role::Therapist => care_feed::changes(state, user, sub),
        Role::Patient => own_changes(state, user, &headers, sub).await?,
    };
    // The stream ends at shutdown, or when the user opens one too many.
    let end = async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = evicted.cancelled() => {}
        }
    };
    let until_end = futures::StreamExt::take_until(changes, end);
    Ok(Sse::new(until_end).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive")))
}

/// The caller's own changes, from `Last-Event-ID` or from now.
async fn own_changes(
    state: AppState,
    user: AuthUser,
    headers: &HeaderMap,
    sub: Subscription,
) -> ApiResult<BoxStream<'static, Result<Event, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::bad_field("Last-Event-ID", "unknown or malformed event id"))?;
    let (last, pending) = match resume {
        Some(cursor) => {
            let missed = state
                .store()
                .changes_since(user.user_id, Some(&cursor), STREAM_BATCH)
                .await
                .map_err(|e| match e {
                    StoreError::UnknownCursor => {
                        ApiError::bad_field("Last-Event-ID", "unknown or malformed event id")
                    }
                    other => other.into(),
                })?;
            (Some(cursor), missed.into())
        }
        None => (
            state.store().latest_cursor(user.user_id).await?,
            VecDeque::new(),
        ),
    };
    let st = StreamState {
        state,
        user_id: user.user_id,
        last,
        pending,
        sub,
    };
    Ok(futures::StreamExt::boxed(stream::unfold(st, next_event)))
}

async fn next_event(mut st: StreamState) -> Option<(Result<Event, Infallible>, StreamState)> {
    loop {
        if let Some(change) = st.pending.pop_front() {
            st.last = Some(change.cursor.clone());
            return Some((Ok(to_event(&change)), st));
        }
        let read = st
            .state
            .store()
            .changes_since(st.user_id, st.last.as_deref(), STREAM_BATCH)
            .await;
        match read {
            Ok(changes) if !changes.is_empty() => {
                st.pending = changes.into();
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "event stream cannot read the feed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        // Nothing new: wait for a wake-up. The sender lives in the hub as
        // long as this receiver does, so this only ends at shutdown (which
        // ends the whole stream from outside).
        if st.sub.wake.changed().await.is_err() {
            return None;
        }
    }
}

fn to_event(change: &Change) -> Event {
    Event::default()
        .event(change.kind.as_str())
        .id(change.cursor.clone())
        .json_data(change)
        .unwrap_or_else(|_| Event::default().comment("unencodable change"))
}
