//! A therapist's event stream: the changes of their linked patients, as
//! `patient.game.processed` / `patient.game.failed` /
//! `patient.game.reprocessed` (docs/therapists.md, "Live updates").
//!
//! The stream follows each patient linked when it opens from that moment,
//! and each patient linked later from their link (no history, no `id:`),
//! woken by the same hub signal as
//! the patient's own streams, without counting as one of them. The links
//! are read when the stream opens, again when the therapist's own signal
//! fires (a link made or removed on this gateway) and at least every
//! [`RELOAD_LINKS`]; before a patient's changes are sent the link is
//! checked again, so a removed link carries nothing more.

use crate::extract::AuthUser;
use crate::hub::Subscription;
use crate::state::AppState;
use axum::response::sse::Event;
use chrono::{DateTime, Utc};
use futures::future::{select_all, BoxFuture, FutureExt};
use futures::stream::{self, BoxStream, StreamExt};
use m2m_domain::{Change, ChangeType};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often the links are read again (links made on another gateway).
pub(crate) const RELOAD_LINKS: Duration = Duration::from_secs(30);
/// Read size of one patient's changes.
const BATCH: u32 = 200;

/// A linked patient the stream follows.
struct Followed {
    /// The cursor of the last change sent (or the start point).
    last: Option<String>,
    wake: watch::Receiver<u64>,
    /// Woken since its changes were last read.
    due: bool,
    /// For a patient linked while the stream is open: changes processed
    /// before the link are not sent.
    not_before: Option<DateTime<Utc>>,
}

struct TherapistStream {
    state: AppState,
    therapist_id: Uuid,
    /// The therapist's own signal (link changes); holding it keeps the
    /// stream counted as open.
    sub: Subscription,
    patients: HashMap<Uuid, Followed>,
    pending: VecDeque<Event>,
    reload: bool,
    /// Whether the links have been read once (the patients linked then
    /// are followed from the present).
    started: bool,
}

/// The events of a therapist's stream (the caller of [`crate::routes::feed`]
/// adds the keep-alive and the end).
pub(crate) fn changes(
    state: AppState,
    user: AuthUser,
    sub: Subscription,
) -> BoxStream<'static, Result<Event, Infallible>> {
    let st = TherapistStream {
        state,
        therapist_id: user.user_id,
        sub,
        patients: HashMap::new(),
        pending: VecDeque::new(),
        reload: true,
        started: false,
    };
    stream::unfold(st, next_event).boxed()
}

async fn next_event(
    mut st: TherapistStream,
) -> Option<(Result<Event, Infallible>, TherapistStream)> {
    loop {
        if let Some(event) = st.pending.pop_front() {
            return Some((Ok(event), st));
        }
        if st.reload {
            if let Err(e) = reload_links(&mut st).await {
                tracing::warn!(error = %e, "therapist's event stream cannot read the links; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            st.reload = false;
        }
        let woken: Vec<Uuid> = st
            .patients
            .iter()
            .filter(|(_, f)| f.due || f.wake.has_changed().unwrap_or(false))
            .map(|(id, _)| *id)
            .collect();
        for patient_id in woken {
            if let Err(e) = read_patient(&mut st, patient_id).await {
                tracing::warn!(error = %e, %patient_id, "therapist's event stream cannot read a patient's feed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if !st.pending.is_empty() {
            continue;
        }
        wait(&mut st).await?;
    }
}

/// Follows the patients linked now, and only those. Those linked when the
/// stream opens are followed from the present; one linked later from its
/// link, so that a game processed between the link and this read is sent.
async fn reload_links(st: &mut TherapistStream) -> m2m_store::Result<()> {
    let links = st.state.store().patients_of(st.therapist_id).await?;
    st.patients
        .retain(|id, _| links.iter().any(|l| l.patient_id == *id));
    for link in links {
        if st.patients.contains_key(&link.patient_id) {
            continue;
        }
        // Watch before reading the cursor, so nothing falls in between.
        let mut wake = st.state.0.hub.watch(link.patient_id);
        wake.borrow_and_update();
        let (last, not_before, due) = if st.started {
            (None, Some(link.linked_at), true)
        } else {
            let last = st.state.store().latest_cursor(link.patient_id).await?;
            (last, None, false)
        };
        st.patients.insert(
            link.patient_id,
            Followed {
                last,
                wake,
                due,
                not_before,
            },
        );
    }
    st.started = true;
    Ok(())
}

/// Queues a patient's new changes, if they are still linked.
async fn read_patient(st: &mut TherapistStream, patient_id: Uuid) -> m2m_store::Result<()> {
    let store = st.state.store().clone();
    if store
        .linked_at(st.therapist_id, patient_id)
        .await?
        .is_none()
    {
        st.patients.remove(&patient_id);
        return Ok(());
    }
    let Some(followed) = st.patients.get_mut(&patient_id) else {
        return Ok(());
    };
    followed.wake.borrow_and_update();
    followed.due = false;
    loop {
        let changes = store
            .changes_since(patient_id, followed.last.as_deref(), BATCH)
            .await?;
        let Some(last) = changes.last() else {
            return Ok(());
        };
        followed.last = Some(last.cursor.clone());
        let full = changes.len() == BATCH as usize;
        let not_before = followed.not_before;
        st.pending.extend(
            changes
                .iter()
                .filter(|c| match (not_before, c.processed_at) {
                    (Some(link), Some(at)) => at >= link,
                    _ => true,
                })
                .map(|c| to_event(patient_id, c)),
        );
        if !full {
            return Ok(());
        }
    }
}

/// Waits for a followed patient's signal, the therapist's own (links
/// changed), or the time to read the links again. `None` when the hub is
/// gone (shutdown).
async fn wait(st: &mut TherapistStream) -> Option<()> {
    enum Woken {
        /// The therapist's own signal (links changed); `false` if gone.
        Links(bool),
        Timer,
        Patient(Uuid),
    }
    let TherapistStream { sub, patients, .. } = st;
    let mut waits: Vec<BoxFuture<'_, Woken>> = Vec::with_capacity(patients.len() + 2);
    waits.push(async { Woken::Links(sub.wake.changed().await.is_ok()) }.boxed());
    waits.push(
        async {
            tokio::time::sleep(RELOAD_LINKS).await;
            Woken::Timer
        }
        .boxed(),
    );
    for (id, followed) in patients.iter_mut() {
        let id = *id;
        waits.push(
            async move {
                // An error means the signal is gone: read once more anyway.
                let _ = followed.wake.changed().await;
                Woken::Patient(id)
            }
            .boxed(),
        );
    }
    let (woken, _, rest) = select_all(waits).await;
    drop(rest);
    match woken {
        Woken::Links(false) => return None,
        Woken::Links(true) | Woken::Timer => st.reload = true,
        // `changed()` marked the signal seen: remember it is due.
        Woken::Patient(id) => {
            if let Some(f) = st.patients.get_mut(&id) {
                f.due = true;
            }
        }
    }
    Some(())
}

fn to_event(patient_id: Uuid, change: &Change) -> Event {
    let name = match change.kind {
        ChangeType::GameProcessed => "patient.game.processed",
        ChangeType::GameFailed => "patient.game.failed",
        ChangeType::GameReprocessed => "patient.game.reprocessed",
    };
    let mut data = serde_json::to_value(change).unwrap_or_default();
    if let Some(object) = data.as_object_mut() {
        object.insert("patient_id".to_owned(), patient_id.to_string().into());
    }
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().comment("unencodable change"))
}
