//! [`Accounts`] on MongoDB: users, logins and refresh tokens.

use super::documents::{binary, doc_text, parse_id, LoginDoc, TokenDoc, UserDoc};
use super::error::{db, db_insert, duplicate_key_message, is_duplicate_key};
use super::MongoStore;
use crate::format::{id, parse_time, required, stored_role, stored_tz, ts};
use crate::{
    Accounts, Digest, NewLogin, NewUser, Profile, RefreshOutcome, Result, StoreError, UserRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use m2m_domain::Username;
use mongodb::bson::{doc, Bson, Document};
use uuid::Uuid;

#[async_trait]
impl Accounts for MongoStore {
    async fn create_user(&self, user: NewUser) -> Result<()> {
        let doc = UserDoc {
            user_id: id(user.user_id),
            username: user.username.as_str().to_owned(),
            username_key: user.username.key().to_owned(),
            password_hash: user.password_hash,
            role: Some(Bson::String(user.role.as_str().to_owned())),
            created_at: ts(user.created_at),
            tz: None,
        };
        match self.users.insert_one(&doc).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict(
                if duplicate_key_message(&e).contains("username_key") {
                    "username is taken"
                } else {
                    "user id exists"
                },
            )),
            Err(e) => Err(db(e)),
        }
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<UserRecord>> {
        let found = self
            .users
            .find_one(doc! { "username_key": username.key(), DELETING: { "$exists": false } })
            .await
            .map_err(db)?;
        found
            .map(|u| {
                let user_id = parse_id(&u.user_id)?;
                let role = stored_role(&user_id, u.role_field());
                Ok(UserRecord {
                    user_id,
                    username: u.username,
                    password_hash: u.password_hash,
                    role,
                })
            })
            .transpose()
    }

    async fn create_login(&self, login: NewLogin) -> Result<()> {
        // Crash safety: the login first, then its first token. A crash
        // between them leaves a login no token leads to: unusable and
        // harmless (the client got no answer and logs in again).
        let login_id = id(login.login_id);
        self.logins
            .insert_one(LoginDoc {
                login_id: login_id.clone(),
                user_id: id(login.user_id),
                created_at: ts(login.created_at),
                revoked_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "login id exists"))?;
        self.tokens
            .insert_one(TokenDoc {
                token_hash: binary(&login.token_hash),
                login_id,
                created_at: ts(login.created_at),
                expires_at: ts(login.expires_at),
                spent_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "refresh token exists"))?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented: Digest,
        next: Digest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<RefreshOutcome> {
        let Some(token) = self
            .tokens
            .find_one(doc! { "_id": binary(&presented) })
            .await
            .map_err(db)?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        let Some(login) = self
            .logins
            .find_one(doc! { "_id": &token.login_id })
            .await
            .map_err(db)?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if login.revoked_at.is_some() || parse_time(&token.expires_at)? <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        if token.spent_at.is_some() {
            self.revoke(&login.login_id, now).await?;
            tracing::warn!(login_id = %login.login_id, "spent refresh token presented again: login revoked");
            return Ok(RefreshOutcome::Reused);
        }
        // An account gone or being deleted rotates nothing (its tokens are
        // about to be removed).
        let Some(user) = self
            .users
            .find_one(doc! { "_id": &login.user_id, DELETING: { "$exists": false } })
            .await
            .map_err(db)?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        // Crash safety: the next token is stored first, then the presented
        // one is spent. A crash between them leaves the presented token
        // current (the client, which got no answer, presents it again and
        // rotates normally) and an extra token whose secret nobody holds.
        // The other order would lose the client's login to a crash.
        self.tokens
            .insert_one(TokenDoc {
                token_hash: binary(&next),
                login_id: login.login_id.clone(),
                created_at: ts(now),
                expires_at: ts(expires_at),
                spent_at: None,
            })
            .await
            .map_err(|e| db_insert(e, "refresh token exists"))?;
        // Only one rotation can spend a token: a concurrent one presenting
        // the same token finds it spent, which is a reuse, as if the two
        // had come one after the other.
        let spent = self
            .tokens
            .update_one(
                doc! { "_id": binary(&presented), "spent_at": null },
                doc! { "$set": { "spent_at": ts(now) } },
            )
            .await
            .map_err(db)?;
        if spent.matched_count == 0 {
            self.revoke(&login.login_id, now).await?;
            tracing::warn!(login_id = %login.login_id, "refresh token rotated twice at once: login revoked");
            return Ok(RefreshOutcome::Reused);
        }
        let user_id = parse_id(&login.user_id)?;
        Ok(RefreshOutcome::Rotated {
            user_id,
            login_id: parse_id(&login.login_id)?,
            role: stored_role(&user_id, user.role_field()),
        })
    }

    async fn profile(&self, user_id: Uuid) -> Result<Option<Profile>> {
        // Read as a plain document, field by field: one value that cannot
        // be read shows its fallback and spoils nothing else.
        let Some(d) = self
            .users
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(user_id) })
            .projection(doc! { "username": 1, "role": 1, "tz": 1 })
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let row = format!("user {user_id}");
        Ok(Some(Profile {
            user_id,
            username: required(&row, "username", doc_text(&d, "username"), "\"\"")
                .unwrap_or_default(),
            role: stored_role(&user_id, doc_text(&d, "role")),
            tz: stored_tz(&user_id, doc_text(&d, "tz")),
        }))
    }

    async fn set_time_zone(&self, user_id: Uuid, tz: &str) -> Result<bool> {
        let updated = self
            .users
            .update_one(doc! { "_id": id(user_id) }, doc! { "$set": { "tz": tz } })
            .await
            .map_err(db)?;
        Ok(updated.matched_count > 0)
    }

    async fn delete_account(&self, user_id: Uuid) -> Result<bool> {
        let user = id(user_id);
        // The mark first: from now on the account does not exist for
        // `account_exists`, its username does not log in and its refresh
        // tokens do not rotate. `$min` keeps the first mark's time.
        let marked = self
            .users
            .update_one(
                doc! { "_id": &user },
                doc! { "$min": { DELETING: ts(Utc::now()) } },
            )
            .await
            .map_err(db)?;
        self.erase_dependents(&user).await?;
        // The account last, so that a crash before this leaves the mark
        // for `finish_deletions`.
        self.users
            .delete_one(doc! { "_id": &user })
            .await
            .map_err(db)?;
        Ok(marked.matched_count > 0)
    }

    async fn account_exists(&self, user_id: Uuid) -> Result<bool> {
        let found = self
            .users
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id(user_id), DELETING: { "$exists": false } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn finish_deletions(&self) -> Result<u64> {
        let marked = self
            .users
            .clone_with_type::<Document>()
            .find(doc! { DELETING: { "$exists": true } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?;
        let marked: Vec<Document> = marked.try_collect().await.map_err(db)?;
        let mut finished = 0;
        for d in marked {
            let Ok(user) = d.get_str("_id") else {
                tracing::warn!(id = ?d.get("_id"), "an account marked for deletion has no readable id; left as it is");
                continue;
            };
            self.erase_dependents(user).await?;
            self.users
                .delete_one(doc! { "_id": user })
                .await
                .map_err(db)?;
            tracing::info!(user_id = user, "finished an interrupted account deletion");
            finished += 1;
        }
        Ok(finished)
    }

    async fn revoke_login(&self, presented: Digest, now: DateTime<Utc>) -> Result<bool> {
        let Some(token) = self
            .tokens
            .find_one(doc! { "_id": binary(&presented) })
            .await
            .map_err(db)?
        else {
            return Ok(false);
        };
        self.revoke(&token.login_id, now).await
    }
}

/// The field that marks an account as being deleted (the time the
/// deletion began); absent on every other account.
const DELETING: &str = "deleting_since";

impl MongoStore {
    /// Removes every document but the account's own that names the user
    /// `user` (its id as stored): refresh tokens before their logins (a
    /// token is found through its login), games before their changes, so
    /// that a completion racing the deletion is caught by one or the other
    /// (`ChangeFeed::complete_game` checks the game first). Each step is a
    /// `delete_many` by an indexed field, safe to repeat.
    async fn erase_dependents(&self, user: &str) -> Result<()> {
        let logins = self
            .logins
            .clone_with_type::<Document>()
            .find(doc! { "user_id": user })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?;
        let logins: Vec<Document> = logins.try_collect().await.map_err(db)?;
        let login_ids: Vec<Bson> = logins
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        for chunk in login_ids.chunks(1000) {
            self.tokens
                .delete_many(doc! { "login_id": { "$in": chunk.to_vec() } })
                .await
                .map_err(db)?;
        }
        let by_user = doc! { "user_id": user };
        self.logins.delete_many(by_user.clone()).await.map_err(db)?;
        self.idempotency
            .delete_many(by_user.clone())
            .await
            .map_err(db)?;
        self.games.delete_many(by_user.clone()).await.map_err(db)?;
        self.columns
            .delete_many(by_user.clone())
            .await
            .map_err(db)?;
        self.changes
            .delete_many(by_user.clone())
            .await
            .map_err(db)?;
        self.reprocessing.delete_many(by_user).await.map_err(db)?;
        self.invites
            .delete_many(doc! { "$or": [{ "therapist_id": user }, { "used_by": user }] })
            .await
            .map_err(db)?;
        self.links
            .delete_many(doc! { "$or": [{ "therapist_id": user }, { "patient_id": user }] })
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Revokes a login, keeping the first revocation time. Whether the
    /// login exists.
    async fn revoke(&self, login_id: &str, now: DateTime<Utc>) -> Result<bool> {
        // `$min` sets an absent field and keeps an earlier time: one atomic
        // write whether or not the login was revoked before.
        let updated = self
            .logins
            .update_one(
                doc! { "_id": login_id },
                doc! { "$min": { "revoked_at": ts(now) } },
            )
            .await
            .map_err(db)?;
        Ok(updated.matched_count > 0)
    }
}
