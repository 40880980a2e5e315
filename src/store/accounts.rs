//! `accounts_user` and `accounts_session` of a tenant schema: users, password
//! hashes, server-side sessions and their CSRF tokens.

use time::OffsetDateTime;

use super::{Slug, Store, StoreResult};
use crate::domain::{Role, Username};

/// A user of a tenant.
#[derive(Debug, Clone)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Unique username.
    pub username: String,
    /// Tenant-wide role.
    pub role: Role,
    /// A deactivated user cannot log in.
    pub is_active: bool,
}

/// A user row with its password hash, for login.
pub struct Credentials {
    /// The user.
    pub user: User,
    /// Argon2 PHC string.
    pub password_hash: String,
}

/// SQL for the stored form of a secret in `$1` (a cookie key, an API token):
/// its SHA-256, hex. The secret itself is never stored, so a copy of the
/// table does not hand out sessions or access.
pub(super) const SECRET_HASH: &str =
    "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to($1, 'UTF8')), 'hex')";

/// How a socket opened with an API token is registered among sessions:
/// `token:<id>` (never a session's key hash, which is hex).
pub const TOKEN_KEY: &str = "token:";

/// A live session looked up from its cookie.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// SHA-256 of the cookie key, hex: the session's id inside the server.
    pub key_hash: String,
    /// The logged-in user, or `None` for an anonymous session.
    pub user: Option<User>,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// When it stops being valid.
    pub expires_at: OffsetDateTime,
}

/// The columns [`user_from`] reads, of `accounts_user` (aliased `u` where a
/// statement joins it).
const USER_COLUMNS: &str = "id, username, role, is_active";

/// The [`User`] in the four columns of [`USER_COLUMNS`] from column `at` on.
pub(super) fn user_from(row: &tokio_postgres::Row, at: usize) -> User {
    User {
        id: row.get(at),
        username: row.get(at + 1),
        role: Role::parse(row.get(at + 2)).unwrap_or(Role::Viewer),
        is_active: row.get(at + 3),
    }
}

impl Store {
    /// Creates a user. `Ok(None)` when the username is taken, in any case.
    pub async fn create_user(
        &self,
        slug: &Slug,
        username: &Username,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<Option<User>> {
        let res = self
            .query_one_in(
                slug,
                &format!(
                    "INSERT INTO {{schema}}.accounts_user (username, password_hash, role) \
                     VALUES ($1, $2, $3) RETURNING {USER_COLUMNS}"
                ),
                &[&username.as_str(), &password_hash, &role.as_str()],
                |r| user_from(r, 0),
            )
            .await;
        match res {
            Ok(user) => Ok(Some(user)),
            Err(e) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A user by username (in any case).
    pub async fn user_by_name(&self, slug: &Slug, username: &str) -> StoreResult<Option<User>> {
        self.query_opt_in(
            slug,
            &format!(
                "SELECT {USER_COLUMNS} FROM {{schema}}.accounts_user \
                 WHERE pg_catalog.lower(username) = pg_catalog.lower($1)"
            ),
            &[&username],
            |r| user_from(r, 0),
        )
        .await
    }

    /// A user by id (role and active flag as they are now).
    pub async fn user_by_id(&self, slug: &Slug, id: i64) -> StoreResult<Option<User>> {
        self.query_opt_in(
            slug,
            &format!("SELECT {USER_COLUMNS} FROM {{schema}}.accounts_user WHERE id = $1"),
            &[&id],
            |r| user_from(r, 0),
        )
        .await
    }

    /// The active users among `ids`, and the tenant's active staff (admins
    /// and moderators, a handful) whoever they are ([`User`]s; a deleted or
    /// deactivated one is absent). A room asks with its staff members, and
    /// finds both those who lost the role and those who gained it.
    pub async fn active_staff_and(&self, slug: &Slug, ids: &[i64]) -> StoreResult<Vec<User>> {
        self.query_in(
            slug,
            &format!(
                "SELECT {USER_COLUMNS} FROM {{schema}}.accounts_user \
                 WHERE is_active AND (id = ANY($1) OR role IN ('admin', 'moderator'))"
            ),
            &[&ids],
            |r| user_from(r, 0),
        )
        .await
    }

    /// When a user's account was made.
    pub async fn user_created_at(
        &self,
        slug: &Slug,
        id: i64,
    ) -> StoreResult<Option<OffsetDateTime>> {
        self.query_opt_in(
            slug,
            "SELECT created_at FROM {schema}.accounts_user WHERE id = $1",
            &[&id],
            |r| r.get(0),
        )
        .await
    }

    /// A user with the password hash, for login.
    pub async fn credentials(
        &self,
        slug: &Slug,
        username: &str,
    ) -> StoreResult<Option<Credentials>> {
        self.query_opt_in(
            slug,
            &format!(
                "SELECT {USER_COLUMNS}, password_hash FROM {{schema}}.accounts_user \
                 WHERE pg_catalog.lower(username) = pg_catalog.lower($1)"
            ),
            &[&username],
            |r| Credentials {
                user: user_from(r, 0),
                password_hash: r.get(4),
            },
        )
        .await
    }

    /// Stores a new session (the caller made the key and token); returns its key hash.
    pub async fn insert_session(
        &self,
        slug: &Slug,
        key: &str,
        user_id: Option<i64>,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> StoreResult<String> {
        self.query_one_in(
            slug,
            &format!(
                "INSERT INTO {{schema}}.accounts_session (key_hash, user_id, csrf_token, expires_at) \
                 VALUES ({SECRET_HASH}, $2, $3, $4) RETURNING key_hash"
            ),
            &[&key, &user_id, &csrf_token, &expires_at],
            |r| r.get(0),
        )
        .await
    }

    /// The unexpired session of this cookie key, with its active user.
    pub async fn session(&self, slug: &Slug, key: &str) -> StoreResult<Option<SessionRecord>> {
        let session = self
            .query_opt_in(
                slug,
                &format!(
                    "SELECT s.key_hash, s.csrf_token, s.expires_at, s.user_id, \
                            u.id, u.username, u.role, u.is_active \
                     FROM {{schema}}.accounts_session s \
                     LEFT JOIN {{schema}}.accounts_user u ON u.id = s.user_id \
                     WHERE s.key_hash = {SECRET_HASH} AND s.expires_at > pg_catalog.now()"
                ),
                &[&key],
                |row| {
                    let user = row.get::<_, Option<i64>>(3).map(|_| user_from(row, 4));
                    // A deactivated user's session is no session.
                    if user.as_ref().is_some_and(|u| !u.is_active) {
                        return None;
                    }
                    Some(SessionRecord {
                        key_hash: row.get(0),
                        csrf_token: row.get(1),
                        expires_at: row.get(2),
                        user,
                    })
                },
            )
            .await?;
        Ok(session.flatten())
    }

    /// Ends one session. Returns whether it existed.
    pub async fn delete_session(&self, slug: &Slug, key_hash: &str) -> StoreResult<bool> {
        let n = self
            .execute_in(
                slug,
                "DELETE FROM {schema}.accounts_session WHERE key_hash = $1",
                &[&key_hash],
            )
            .await?;
        Ok(n > 0)
    }

    /// Sets a new password hash and ends every session of the user.
    pub async fn set_password(&self, slug: &Slug, user_id: i64, hash: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let s = slug.schema();
        tx.execute(
            &format!(
                "UPDATE {s}.accounts_user SET password_hash = $2, password_changed_at = pg_catalog.now() WHERE id = $1"
            ),
            &[&user_id, &hash],
        )
        .await?;
        tx.execute(
            &format!("DELETE FROM {s}.accounts_session WHERE user_id = $1"),
            &[&user_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes expired sessions; returns how many.
    pub async fn purge_expired_sessions(&self, slug: &Slug) -> StoreResult<u64> {
        self.execute_in(
            slug,
            "DELETE FROM {schema}.accounts_session WHERE expires_at <= pg_catalog.now()",
            &[],
        )
        .await
    }

    /// Which of these session key hashes are still valid (unexpired, active user).
    ///
    /// Sockets opened with an API token are registered as `token:<id>`: those
    /// are live while the token is unrevoked and its user active.
    pub async fn live_sessions(&self, slug: &Slug, hashes: &[String]) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        let (tokens, sessions): (Vec<&String>, Vec<&String>) =
            hashes.iter().partition(|h| h.starts_with(TOKEN_KEY));
        let token_ids: Vec<i64> = tokens
            .iter()
            .filter_map(|h| h[TOKEN_KEY.len()..].parse().ok())
            .collect();
        let schema = slug.schema();
        let rows = client
            .query(
                &format!(
                    "SELECT s.key_hash FROM {schema}.accounts_session s JOIN {schema}.accounts_user u ON u.id = s.user_id \
                     WHERE s.key_hash = ANY($1) AND s.expires_at > pg_catalog.now() AND u.is_active"
                ),
                &[&sessions],
            )
            .await?;
        let mut live: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if !token_ids.is_empty() {
            let rows = client
                .query(
                    &format!(
                        "SELECT t.id FROM {schema}.accounts_api_token t JOIN {schema}.accounts_user u ON u.id = t.user_id \
                         WHERE t.id = ANY($1) AND t.revoked_at IS NULL AND u.is_active"
                    ),
                    &[&token_ids],
                )
                .await?;
            live.extend(
                rows.iter()
                    .map(|r| format!("{TOKEN_KEY}{}", r.get::<_, i64>(0))),
            );
        }
        Ok(live)
    }
}
