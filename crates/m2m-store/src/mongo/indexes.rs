//! The indexes of the collections (module documentation of `mongo`,
//! "Indexes"), created at connect.

use super::error::unavailable;
use super::MongoStore;
use crate::Result;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

impl MongoStore {
    /// Creates the indexes of the module documentation, if missing.
    pub(super) async fn create_indexes(&self) -> Result<()> {
        let index = |keys: Document, name: &str, unique: bool, partial: Option<Document>| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .unique(unique.then_some(true))
                        .partial_filter_expression(partial)
                        .build(),
                )
                .build()
        };
        let failed = |e| unavailable("cannot create the MongoDB indexes", e);
        self.users
            .create_index(index(
                doc! { "username_key": 1 },
                "username_key_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        self.games
            .create_indexes([
                index(doc! { "event_id": 1 }, "event_id_unique", true, None),
                index(doc! { "user_id": 1, "_id": -1 }, "user_games", false, None),
                index(
                    doc! { "outbox.pending": 1, "outbox.created_at": 1, "event_id": 1 },
                    "outbox_pending",
                    false,
                    Some(doc! { "outbox.pending": true }),
                ),
                index(
                    doc! { "status": 1 },
                    "queued_games",
                    false,
                    Some(doc! { "status": "queued" }),
                ),
                index(
                    doc! { "user_id": 1, "started_at": 1 },
                    "user_started",
                    false,
                    None,
                ),
            ])
            .await
            .map_err(failed)?;
        self.idempotency
            .create_index(index(
                doc! { "user_id": 1, "key": 1 },
                "user_key_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        self.changes
            .create_index(index(
                doc! { "user_id": 1, "seq": 1 },
                "user_seq_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        self.changes
            .create_index(index(
                doc! { "game_id": 1, "algorithm_version": 1 },
                "game_version_unique",
                true,
                None,
            ))
            .await
            .map_err(failed)?;
        self.reprocessing
            .create_index(index(
                doc! { "pending": 1, "created_at": 1, "_id": 1 },
                "reprocessing_pending",
                false,
                Some(doc! { "pending": true }),
            ))
            .await
            .map_err(failed)?;
        self.invites
            .create_index(index(
                doc! { "therapist_id": 1, "expires_at": 1 },
                "therapist_invites",
                false,
                None,
            ))
            .await
            .map_err(failed)?;
        // Erasure (`delete_account`, `finish_deletions`): every document
        // naming an account is found by index.
        self.users
            .create_index(index(
                doc! { "deleting_since": 1 },
                "accounts_being_deleted",
                false,
                Some(doc! { "deleting_since": { "$exists": true } }),
            ))
            .await
            .map_err(failed)?;
        self.logins
            .create_index(index(doc! { "user_id": 1 }, "user_logins", false, None))
            .await
            .map_err(failed)?;
        self.tokens
            .create_index(index(doc! { "login_id": 1 }, "login_tokens", false, None))
            .await
            .map_err(failed)?;
        self.columns
            .create_index(index(doc! { "user_id": 1 }, "user_columns", false, None))
            .await
            .map_err(failed)?;
        self.invites
            .create_index(index(
                doc! { "used_by": 1 },
                "used_invites",
                false,
                Some(doc! { "used_by": { "$exists": true } }),
            ))
            .await
            .map_err(failed)?;
        self.links
            .create_indexes([
                index(doc! { "patient_id": 1 }, "patient_links", false, None),
                index(doc! { "therapist_id": 1 }, "therapist_links", false, None),
            ])
            .await
            .map_err(failed)?;
        Ok(())
    }
}
