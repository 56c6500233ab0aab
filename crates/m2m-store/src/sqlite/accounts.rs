//! [`Accounts`] on SQLite: users, logins and refresh tokens.

use super::error::{db, db_insert};
use super::rows::{get, get_uuid, text};
use super::SqliteStore;
use crate::format::{corrupt, id, parse_time, required, stored_role, stored_tz, ts};
use crate::{Accounts, Digest, NewLogin, NewUser, Profile, RefreshOutcome, Result, UserRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use m2m_domain::Username;
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

/// What `delete_account` deletes before the account itself, each statement
/// given the user id as `?1`: every row of every table that names it
/// (tables by user id; `changes`, `outbox` and `game_columns` also by the
/// user's games, so a row whose own `user_id` was edited still goes with
/// its game). `logins` and `invites.used_by` have no index by user: a
/// deletion scans them, which is rare enough not to pay an index on every
/// login.
const ERASE_ACCOUNT: &[&str] = &[
    "DELETE FROM refresh_tokens
     WHERE login_id IN (SELECT login_id FROM logins WHERE user_id = ?1)",
    "DELETE FROM logins WHERE user_id = ?1",
    "DELETE FROM changes
     WHERE user_id = ?1 OR game_id IN (SELECT game_id FROM games WHERE user_id = ?1)",
    "DELETE FROM outbox
     WHERE user_id = ?1 OR game_id IN (SELECT game_id FROM games WHERE user_id = ?1)",
    "DELETE FROM game_columns WHERE game_id IN (SELECT game_id FROM games WHERE user_id = ?1)",
    "DELETE FROM games WHERE user_id = ?1",
    "DELETE FROM idempotency WHERE user_id = ?1",
    "DELETE FROM invites WHERE therapist_id = ?1 OR used_by = ?1",
    "DELETE FROM links WHERE therapist_id = ?1 OR patient_id = ?1",
];

#[async_trait]
impl Accounts for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<()> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                tx.execute(
                    "INSERT INTO users (user_id, username, username_key, password_hash, role, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        id(user.user_id),
                        user.username.as_str(),
                        user.username.key(),
                        user.password_hash,
                        user.role.as_str(),
                        ts(user.created_at),
                    ],
                )
                .map_err(|e| {
                    let taken = e.to_string().contains("users.username_key");
                    db_insert(
                        e,
                        if taken {
                            "username is taken"
                        } else {
                            "user id exists"
                        },
                    )
                })?;
                Ok(())
            })
        })
        .await
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<UserRecord>> {
        let key = username.key().to_owned();
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT user_id, username, password_hash, role FROM users
                         WHERE username_key = ?1",
                    )
                    .map_err(db)?;
                let mut rows = stmt.query([key]).map_err(db)?;
                let Some(row) = rows.next().map_err(db)? else {
                    return Ok(None);
                };
                let user_id = get_uuid(row, 0)?;
                Ok(Some(UserRecord {
                    user_id,
                    username: get(row, 1)?,
                    password_hash: get(row, 2)?,
                    role: stored_role(&user_id, text(row, 3)?),
                }))
            })
        })
        .await
    }

    async fn create_login(&self, login: NewLogin) -> Result<()> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                tx.execute(
                    "INSERT INTO logins (login_id, user_id, created_at) VALUES (?1, ?2, ?3)",
                    params![id(login.login_id), id(login.user_id), ts(login.created_at)],
                )
                .map_err(|e| db_insert(e, "login id exists"))?;
                tx.execute(
                    "INSERT INTO refresh_tokens (token_hash, login_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        login.token_hash,
                        id(login.login_id),
                        ts(login.created_at),
                        ts(login.expires_at),
                    ],
                )
                .map_err(|e| db_insert(e, "refresh token exists"))?;
                Ok(())
            })
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        presented: Digest,
        next: Digest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<RefreshOutcome> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                let found = tx
                    .query_row(
                        "SELECT t.login_id, t.expires_at, t.spent_at IS NOT NULL,
                                l.revoked_at IS NOT NULL, l.user_id, u.role
                         FROM refresh_tokens t JOIN logins l ON l.login_id = t.login_id
                              LEFT JOIN users u ON u.user_id = l.user_id
                         WHERE t.token_hash = ?1",
                        [presented],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, bool>(2)?,
                                row.get::<_, bool>(3)?,
                                row.get::<_, String>(4)?,
                                text(row, 5),
                            ))
                        },
                    )
                    .optional()
                    .map_err(db)?;
                let Some((login_id, token_expires, spent, revoked, user_id, role)) = found else {
                    return Ok(RefreshOutcome::Invalid);
                };
                if revoked || parse_time(&token_expires)? <= now {
                    return Ok(RefreshOutcome::Invalid);
                }
                if spent {
                    tx.execute(
                        "UPDATE logins SET revoked_at = ?2 WHERE login_id = ?1",
                        params![login_id, ts(now)],
                    )
                    .map_err(db)?;
                    tracing::warn!(%login_id, "spent refresh token presented again: login revoked");
                    return Ok(RefreshOutcome::Reused);
                }
                tx.execute(
                    "UPDATE refresh_tokens SET spent_at = ?2 WHERE token_hash = ?1",
                    params![presented, ts(now)],
                )
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO refresh_tokens (token_hash, login_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![next, login_id, ts(now), ts(expires_at)],
                )
                .map_err(|e| db_insert(e, "refresh token exists"))?;
                let user_id = Uuid::parse_str(&user_id).map_err(|e| corrupt("stored id", e))?;
                Ok(RefreshOutcome::Rotated {
                    user_id,
                    login_id: Uuid::parse_str(&login_id).map_err(|e| corrupt("stored id", e))?,
                    role: stored_role(&user_id, role?),
                })
            })
        })
        .await
    }

    async fn profile(&self, user_id: Uuid) -> Result<Option<Profile>> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                let mut stmt = tx
                    .prepare_cached("SELECT username, role, tz FROM users WHERE user_id = ?1")
                    .map_err(db)?;
                let mut rows = stmt.query([id(user_id)]).map_err(db)?;
                let Some(row) = rows.next().map_err(db)? else {
                    return Ok(None);
                };
                let row_name = format!("user {user_id}");
                Ok(Some(Profile {
                    user_id,
                    username: required(&row_name, "username", text(row, 0)?, "\"\"")
                        .unwrap_or_default(),
                    role: stored_role(&user_id, text(row, 1)?),
                    tz: stored_tz(&user_id, text(row, 2)?),
                }))
            })
        })
        .await
    }

    async fn set_time_zone(&self, user_id: Uuid, tz: &str) -> Result<bool> {
        let tz = tz.to_owned();
        self.blocking(move |inner| {
            inner.write(|tx| {
                let changed = tx
                    .execute(
                        "UPDATE users SET tz = ?2 WHERE user_id = ?1",
                        params![id(user_id), tz],
                    )
                    .map_err(db)?;
                Ok(changed > 0)
            })
        })
        .await
    }

    async fn delete_account(&self, user_id: Uuid) -> Result<bool> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                let user = id(user_id);
                // Children before their parents (the foreign keys), the
                // account last; one transaction, so all of it or nothing.
                for statement in ERASE_ACCOUNT {
                    tx.prepare_cached(statement)
                        .map_err(db)?
                        .execute([&user])
                        .map_err(db)?;
                }
                let deleted = tx
                    .execute("DELETE FROM users WHERE user_id = ?1", [&user])
                    .map_err(db)?;
                Ok(deleted > 0)
            })
        })
        .await
        .inspect(|_| self.inner.recent.forget_user(user_id))
    }

    async fn account_exists(&self, user_id: Uuid) -> Result<bool> {
        self.blocking(move |inner| {
            inner.read(|tx| {
                tx.prepare_cached("SELECT 1 FROM users WHERE user_id = ?1")
                    .map_err(db)?
                    .exists([id(user_id)])
                    .map_err(db)
            })
        })
        .await
    }

    async fn finish_deletions(&self) -> Result<u64> {
        // Every deletion is one transaction: none is ever left half-done.
        Ok(0)
    }

    async fn revoke_login(&self, presented: Digest, now: DateTime<Utc>) -> Result<bool> {
        self.blocking(move |inner| {
            inner.write(|tx| {
                let changed = tx
                    .execute(
                        "UPDATE logins SET revoked_at = COALESCE(revoked_at, ?2)
                         WHERE login_id = (SELECT login_id FROM refresh_tokens WHERE token_hash = ?1)",
                        params![presented, ts(now)],
                    )
                    .map_err(db)?;
                Ok(changed > 0)
            })
        })
        .await
    }
}
