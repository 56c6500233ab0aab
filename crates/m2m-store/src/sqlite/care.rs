//! [`Care`] on SQLite: therapists' invite codes and their links to
//! patients, each method one transaction.

use super::error::{db, db_insert};
use super::rows::{row_id, text, well_formed_time};
use super::SqliteStore;
use crate::format::{
    corrupt_detail, id, link_row, link_username, linked_at, ts, Redeem, StoredInvite,
};
use crate::{Care, InviteOutcome, NewInvite, PatientLink, RedeemOutcome, Result, TherapistLink};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Transaction};
use uuid::Uuid;

/// The link of a therapist and a patient as the patient sees it, if any.
fn therapist_link(
    tx: &Transaction<'_>,
    therapist_id: Uuid,
    patient_id: Uuid,
) -> Result<Option<TherapistLink>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT l.linked_at, u.username
             FROM links l LEFT JOIN users u ON u.user_id = l.therapist_id
             WHERE l.therapist_id = ?1 AND l.patient_id = ?2",
        )
        .map_err(db)?;
    let mut rows = stmt.query([id(therapist_id), id(patient_id)]).map_err(db)?;
    let Some(row) = rows.next().map_err(db)? else {
        return Ok(None);
    };
    let link = link_row(&therapist_id, &patient_id);
    Ok(Some(TherapistLink {
        therapist_id,
        linked_at: linked_at(&link, text(row, 0)?),
        username: link_username(&link, text(row, 1)?),
    }))
}

/// Links a patient to a therapist at `now`, unless they are linked already
/// (then the link keeps its first `linked_at`), and returns the link.
fn link(
    tx: &Transaction<'_>,
    therapist_id: Uuid,
    patient_id: Uuid,
    now: DateTime<Utc>,
) -> Result<RedeemOutcome> {
    tx.execute(
        "INSERT INTO links (therapist_id, patient_id, linked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (therapist_id, patient_id) DO NOTHING",
        params![id(therapist_id), id(patient_id), ts(now)],
    )
    .map_err(db)?;
    let link = therapist_link(tx, therapist_id, patient_id)?
        .ok_or_else(|| corrupt_detail("link", "not found in the transaction that stored it"))?;
    Ok(RedeemOutcome::Linked(link))
}

#[async_trait]
impl Care for SqliteStore {
    async fn create_invite(&self, invite: NewInvite, max_open: u32) -> Result<InviteOutcome> {
        self.blocking(move |inner| {
            // Counted and stored under the write lock (`BEGIN IMMEDIATE`):
            // requests at once, from any process, take turns, so none sees
            // room that another is taking. An `expires_at` that is not a
            // time in the stored format counts as expired.
            inner.write(|tx| {
                let open: i64 = tx
                    .query_row(
                        &format!(
                            "SELECT COUNT(*) FROM invites
                             WHERE therapist_id = ?1 AND used_by IS NULL AND expires_at > ?2
                               AND {}",
                            well_formed_time("expires_at")
                        ),
                        params![id(invite.therapist_id), ts(invite.created_at)],
                        |row| row.get(0),
                    )
                    .map_err(db)?;
                if open >= i64::from(max_open) {
                    return Ok(InviteOutcome::TooManyOpen);
                }
                tx.execute(
                    "INSERT INTO invites (code, therapist_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        invite.code,
                        id(invite.therapist_id),
                        ts(invite.created_at),
                        ts(invite.expires_at),
                    ],
                )
                .map_err(|e| db_insert(e, "invite code exists"))?;
                Ok(InviteOutcome::Created)
            })
        })
        .await
    }

    async fn redeem_invite(
        &self,
        code: &str,
        patient_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<RedeemOutcome> {
        let code = code.to_owned();
        self.blocking(move |inner| {
            // One transaction: the code is marked used and the link made
            // together, or neither.
            inner.write(|tx| {
                let decided = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT therapist_id, expires_at, used_by FROM invites WHERE code = ?1",
                        )
                        .map_err(db)?;
                    let mut rows = stmt.query([&code]).map_err(db)?;
                    let Some(row) = rows.next().map_err(db)? else {
                        return Ok(RedeemOutcome::Unknown);
                    };
                    StoredInvite {
                        code: &code,
                        therapist_id: text(row, 0)?,
                        expires_at: text(row, 1)?,
                        used_by: text(row, 2)?,
                    }
                    .redeem(patient_id, now)
                };
                match decided {
                    Redeem::Refused(outcome) => Ok(outcome),
                    Redeem::Open { therapist_id } => {
                        tx.execute(
                            "UPDATE invites SET used_by = ?2, used_at = ?3 WHERE code = ?1",
                            params![code, id(patient_id), ts(now)],
                        )
                        .map_err(db)?;
                        link(tx, therapist_id, patient_id, now)
                    }
                    Redeem::Mine {
                        therapist_id,
                        relink,
                    } => match therapist_link(tx, therapist_id, patient_id)? {
                        Some(existing) => Ok(RedeemOutcome::Linked(existing)),
                        None if relink => link(tx, therapist_id, patient_id, now),
                        None => Ok(RedeemOutcome::Used),
                    },
                }
            })
        })
        .await
    }

    async fn therapists_of(&self, patient_id: Uuid) -> Result<Vec<TherapistLink>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT l.therapist_id, l.linked_at, u.username
                         FROM links l LEFT JOIN users u ON u.user_id = l.therapist_id
                         WHERE l.patient_id = ?1",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([id(patient_id)]).map_err(db)?;
                let mut links = Vec::new();
                while let Some(row) = rows.next().map_err(db)? {
                    let what = format!("link of patient {patient_id} to therapist");
                    let Some(therapist_id) = row_id(row, 0, &what)? else {
                        continue;
                    };
                    let link = link_row(&therapist_id, &patient_id);
                    links.push(TherapistLink {
                        therapist_id,
                        linked_at: linked_at(&link, text(row, 1)?),
                        username: link_username(&link, text(row, 2)?),
                    });
                }
                links.sort_by_key(|l| (l.linked_at, l.therapist_id));
                Ok(links)
            })
        })
        .await
    }

    async fn patients_of(&self, therapist_id: Uuid) -> Result<Vec<PatientLink>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT l.patient_id, l.linked_at, u.username
                         FROM links l LEFT JOIN users u ON u.user_id = l.patient_id
                         WHERE l.therapist_id = ?1",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([id(therapist_id)]).map_err(db)?;
                let mut links = Vec::new();
                while let Some(row) = rows.next().map_err(db)? {
                    let what = format!("link of therapist {therapist_id} to patient");
                    let Some(patient_id) = row_id(row, 0, &what)? else {
                        continue;
                    };
                    let link = link_row(&therapist_id, &patient_id);
                    links.push(PatientLink {
                        patient_id,
                        linked_at: linked_at(&link, text(row, 1)?),
                        username: link_username(&link, text(row, 2)?),
                    });
                }
                links.sort_by_key(|l| (l.linked_at, l.patient_id));
                Ok(links)
            })
        })
        .await
    }

    async fn linked_at(
        &self,
        therapist_id: Uuid,
        patient_id: Uuid,
    ) -> Result<Option<DateTime<Utc>>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT linked_at FROM links WHERE therapist_id = ?1 AND patient_id = ?2",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([id(therapist_id), id(patient_id)]).map_err(db)?;
                let Some(row) = rows.next().map_err(db)? else {
                    return Ok(None);
                };
                let link = link_row(&therapist_id, &patient_id);
                Ok(Some(linked_at(&link, text(row, 0)?)))
            })
        })
        .await
    }

    async fn unlink(&self, patient_id: Uuid, therapist_id: Uuid) -> Result<bool> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                let deleted = tx
                    .execute(
                        "DELETE FROM links WHERE therapist_id = ?1 AND patient_id = ?2",
                        [id(therapist_id), id(patient_id)],
                    )
                    .map_err(db)?;
                Ok(deleted > 0)
            })
        })
        .await
    }
}
