//! [`Care`] on MongoDB: therapists' invite codes and their links to
//! patients, each write safe to repeat (module documentation of `mongo`,
//! "No multi-document transactions").

use super::documents::{doc_id, doc_text, link_id, InviteDoc, WELL_FORMED_TIME};
use super::error::{db, db_insert, is_duplicate_key};
use super::{collect, MongoStore};
use crate::format::{
    corrupt_detail, id, link_row, link_username, linked_at, ts, Field, Redeem, StoredInvite,
};
use crate::{
    Care, InviteOutcome, NewInvite, PatientLink, RedeemOutcome, Result, StoreError, TherapistLink,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use std::collections::HashMap;
use uuid::Uuid;

/// How many times `redeem_invite` reads the code again after another
/// redemption of it came first. Once: a code is marked used only once, so
/// the second reading finds it used and decides from that.
const MAX_REDEEM_ATTEMPTS: usize = 2;

impl MongoStore {
    /// The stored `username` of each of these accounts (absent for an
    /// account that does not exist).
    async fn usernames(&self, user_ids: &[Uuid]) -> Result<HashMap<Uuid, Field<String>>> {
        let ids: Vec<String> = user_ids.iter().copied().map(id).collect();
        let cursor = self
            .users
            .clone_with_type::<Document>()
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "username": 1 })
            .await
            .map_err(db)?;
        Ok(collect(cursor)
            .await?
            .iter()
            .filter_map(|d| Some((doc_id(d, "_id", "user")?, doc_text(d, "username"))))
            .collect())
    }

    /// A link as the patient sees it, from its stored `linked_at`.
    async fn therapist_link(
        &self,
        therapist_id: Uuid,
        patient_id: Uuid,
        stored_linked_at: Field<String>,
    ) -> Result<TherapistLink> {
        let row = link_row(&therapist_id, &patient_id);
        let mut names = self.usernames(&[therapist_id]).await?;
        Ok(TherapistLink {
            therapist_id,
            linked_at: linked_at(&row, stored_linked_at),
            username: link_username(&row, names.remove(&therapist_id).unwrap_or(Ok(None))),
        })
    }

    /// The stored link of a therapist and a patient, if any.
    async fn find_link(&self, therapist_id: Uuid, patient_id: Uuid) -> Result<Option<Document>> {
        self.links
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": link_id(therapist_id, patient_id) })
            .await
            .map_err(db)
    }

    /// Links a patient to a therapist at `now` unless they are linked
    /// already (the link keeps its first `linked_at`), and returns the
    /// link. One upsert on the pair's `_id`: repeating it, or racing it,
    /// makes one link.
    async fn link(
        &self,
        therapist_id: Uuid,
        patient_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<TherapistLink> {
        let upserted = self
            .links
            .clone_with_type::<Document>()
            .find_one_and_update(
                doc! { "_id": link_id(therapist_id, patient_id) },
                doc! { "$setOnInsert": {
                    "therapist_id": id(therapist_id),
                    "patient_id": id(patient_id),
                    "linked_at": ts(now),
                } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        let stored = match upserted {
            Ok(stored) => stored,
            // Two upserts of one link at once: the other inserted it.
            Err(e) if is_duplicate_key(&e) => self.find_link(therapist_id, patient_id).await?,
            Err(e) => return Err(db(e)),
        }
        .ok_or_else(|| corrupt_detail("link", "not found after it was stored"))?;
        self.therapist_link(therapist_id, patient_id, doc_text(&stored, "linked_at"))
            .await
    }
}

#[async_trait]
impl Care for MongoStore {
    async fn create_invite(&self, invite: NewInvite, max_open: u32) -> Result<InviteOutcome> {
        // Stored first, then counted with the others: the invite stays only
        // if the therapist's open invites, itself included, are at most
        // `max_open`; otherwise it is removed again, unseen. Whatever the
        // interleaving of requests at once, the last to count sees every
        // invite that stays, so they never keep more than `max_open`
        // between them (module documentation: "No multi-document
        // transactions").
        let therapist = id(invite.therapist_id);
        let created_at = ts(invite.created_at);
        self.invites
            .insert_one(InviteDoc {
                code: invite.code.clone(),
                therapist_id: therapist.clone(),
                created_at: created_at.clone(),
                expires_at: ts(invite.expires_at),
                used_by: None,
                used_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "invite code exists"))?;
        // An `expires_at` that is not a time in the stored format counts as
        // expired. (The two conditions on it are written apart: MongoDB
        // reads them the same either way, but some servers that speak its
        // protocol drop the comparison when one operator document also
        // holds a `$regex`.)
        let open = self
            .invites
            .count_documents(doc! {
                "therapist_id": &therapist,
                "used_by": null,
                "$and": [
                    { "expires_at": { "$gt": &created_at } },
                    { "expires_at": { "$regex": WELL_FORMED_TIME } },
                ],
            })
            .await
            .map_err(db)?;
        if open <= u64::from(max_open) {
            return Ok(InviteOutcome::Created);
        }
        self.invites
            .delete_one(doc! { "_id": &invite.code, "used_by": null })
            .await
            .map_err(db)?;
        Ok(InviteOutcome::TooManyOpen)
    }

    async fn redeem_invite(
        &self,
        code: &str,
        patient_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<RedeemOutcome> {
        let patient = id(patient_id);
        for _ in 0..MAX_REDEEM_ATTEMPTS {
            let Some(d) = self
                .invites
                .clone_with_type::<Document>()
                .find_one(doc! { "_id": code })
                .await
                .map_err(db)?
            else {
                return Ok(RedeemOutcome::Unknown);
            };
            let decided = StoredInvite {
                code,
                therapist_id: doc_text(&d, "therapist_id"),
                expires_at: doc_text(&d, "expires_at"),
                used_by: doc_text(&d, "used_by"),
            }
            .redeem(patient_id, now);
            match decided {
                Redeem::Refused(outcome) => return Ok(outcome),
                Redeem::Open { therapist_id } => {
                    // The code first, then the link: only one patient can
                    // mark it (the filter wants it unused). A crash between
                    // the two leaves the code used by this patient without
                    // a link, which their next redemption of it within its
                    // 72 hours makes (the `Mine` case).
                    let marked = self
                        .invites
                        .update_one(
                            doc! { "_id": code, "used_by": null },
                            doc! { "$set": { "used_by": &patient, "used_at": ts(now) } },
                        )
                        .await
                        .map_err(db)?;
                    if marked.matched_count == 0 {
                        // Another redemption came first: decide again.
                        continue;
                    }
                    let link = self.link(therapist_id, patient_id, now).await?;
                    return Ok(RedeemOutcome::Linked(link));
                }
                Redeem::Mine {
                    therapist_id,
                    relink,
                } => {
                    if let Some(existing) = self.find_link(therapist_id, patient_id).await? {
                        let stored = doc_text(&existing, "linked_at");
                        let link = self
                            .therapist_link(therapist_id, patient_id, stored)
                            .await?;
                        return Ok(RedeemOutcome::Linked(link));
                    }
                    if !relink {
                        return Ok(RedeemOutcome::Used);
                    }
                    let link = self.link(therapist_id, patient_id, now).await?;
                    return Ok(RedeemOutcome::Linked(link));
                }
            }
        }
        Err(StoreError::unavailable_because(format!(
            "invite {code} kept changing while it was redeemed; retry"
        )))
    }

    async fn therapists_of(&self, patient_id: Uuid) -> Result<Vec<TherapistLink>> {
        let cursor = self
            .links
            .clone_with_type::<Document>()
            .find(doc! { "patient_id": id(patient_id) })
            .await
            .map_err(db)?;
        let what = format!("link of patient {patient_id} to therapist");
        let found: Vec<(Uuid, Field<String>)> = collect(cursor)
            .await?
            .iter()
            .filter_map(|d| Some((doc_id(d, "therapist_id", &what)?, doc_text(d, "linked_at"))))
            .collect();
        let ids: Vec<Uuid> = found.iter().map(|(t, _)| *t).collect();
        let mut names = self.usernames(&ids).await?;
        let mut links: Vec<TherapistLink> = found
            .into_iter()
            .map(|(therapist_id, stored)| {
                let row = link_row(&therapist_id, &patient_id);
                TherapistLink {
                    therapist_id,
                    linked_at: linked_at(&row, stored),
                    username: link_username(&row, names.remove(&therapist_id).unwrap_or(Ok(None))),
                }
            })
            .collect();
        links.sort_by_key(|l| (l.linked_at, l.therapist_id));
        Ok(links)
    }

    async fn patients_of(&self, therapist_id: Uuid) -> Result<Vec<PatientLink>> {
        let cursor = self
            .links
            .clone_with_type::<Document>()
            .find(doc! { "therapist_id": id(therapist_id) })
            .await
            .map_err(db)?;
        let what = format!("link of therapist {therapist_id} to patient");
        let found: Vec<(Uuid, Field<String>)> = collect(cursor)
            .await?
            .iter()
            .filter_map(|d| Some((doc_id(d, "patient_id", &what)?, doc_text(d, "linked_at"))))
            .collect();
        let ids: Vec<Uuid> = found.iter().map(|(p, _)| *p).collect();
        let mut names = self.usernames(&ids).await?;
        let mut links: Vec<PatientLink> = found
            .into_iter()
            .map(|(patient_id, stored)| {
                let row = link_row(&therapist_id, &patient_id);
                PatientLink {
                    patient_id,
                    linked_at: linked_at(&row, stored),
                    username: link_username(&row, names.remove(&patient_id).unwrap_or(Ok(None))),
                }
            })
            .collect();
        links.sort_by_key(|l| (l.linked_at, l.patient_id));
        Ok(links)
    }

    async fn linked_at(
        &self,
        therapist_id: Uuid,
        patient_id: Uuid,
    ) -> Result<Option<DateTime<Utc>>> {
        let found = self.find_link(therapist_id, patient_id).await?;
        Ok(found.map(|d| {
            linked_at(
                &link_row(&therapist_id, &patient_id),
                doc_text(&d, "linked_at"),
            )
        }))
    }

    async fn unlink(&self, patient_id: Uuid, therapist_id: Uuid) -> Result<bool> {
        let deleted = self
            .links
            .delete_one(doc! { "_id": link_id(therapist_id, patient_id) })
            .await
            .map_err(db)?;
        Ok(deleted.deleted_count > 0)
    }
}
