//! `accounts_api_token` of a tenant schema: API tokens. Only the SHA-256 of a
//! token is stored (as for session keys), so the table never hands out access;
//! a token lives in its tenant's schema and is unknown to every other tenant.

use time::OffsetDateTime;

use super::{
    accounts::{user_from, User, SECRET_HASH},
    Slug, Store, StoreResult,
};

/// A live token found from its secret, with its active user.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// Token id.
    pub id: i64,
    /// The user it acts as.
    pub user: User,
    /// Its scopes, as stored (`read`, `chat`, `moderate`).
    pub scopes: Vec<String>,
    /// Last recorded use.
    pub last_used_at: Option<OffsetDateTime>,
}

/// A token as `token list` shows it (never the secret).
#[derive(Debug, Clone)]
pub struct TokenListing {
    /// Token id.
    pub id: i64,
    /// Owner's username.
    pub username: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Label.
    pub label: String,
    /// Made at.
    pub created_at: OffsetDateTime,
    /// Last recorded use.
    pub last_used_at: Option<OffsetDateTime>,
    /// Revoked at.
    pub revoked_at: Option<OffsetDateTime>,
}

impl Store {
    // Same shape as Store::insert_session: each stores a secret's hash in its own table.
    /// Stores a new token (the caller made the secret); returns its id.
    pub async fn create_token(
        &self,
        slug: &Slug,
        secret: &str,
        user_id: i64,
        scopes: &[&str],
        label: &str,
    ) -> StoreResult<i64> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.query_one_in(
            slug,
            &format!(
                "INSERT INTO {{schema}}.accounts_api_token (token_hash, user_id, scopes, label) \
                 VALUES ({SECRET_HASH}, $2, $3, $4) RETURNING id"
            ),
            &[&secret, &user_id, &scopes, &label],
            |r| r.get(0),
        )
        .await
    }

    /// The unrevoked token of this secret whose user is active.
    pub async fn token(&self, slug: &Slug, secret: &str) -> StoreResult<Option<TokenRecord>> {
        self.query_opt_in(
            slug,
            &format!(
                "SELECT t.id, t.scopes, t.last_used_at, u.id, u.username, u.role, u.is_active \
                 FROM {{schema}}.accounts_api_token t \
                 JOIN {{schema}}.accounts_user u ON u.id = t.user_id \
                 WHERE t.token_hash = {SECRET_HASH} AND t.revoked_at IS NULL AND u.is_active"
            ),
            &[&secret],
            |r| TokenRecord {
                id: r.get(0),
                scopes: r.get(1),
                last_used_at: r.get(2),
                user: user_from(r, 3),
            },
        )
        .await
    }

    /// Records a use of a token (at most one write a minute per token).
    pub async fn touch_token(&self, slug: &Slug, id: i64) -> StoreResult<()> {
        self.execute_in(
            slug,
            "UPDATE {schema}.accounts_api_token SET last_used_at = pg_catalog.now() \
             WHERE id = $1 AND (last_used_at IS NULL \
               OR last_used_at < pg_catalog.now() - interval '1 minute')",
            &[&id],
        )
        .await?;
        Ok(())
    }

    /// Every token of the tenant, oldest first.
    pub async fn list_tokens(&self, slug: &Slug) -> StoreResult<Vec<TokenListing>> {
        self.query_in(
            slug,
            "SELECT t.id, u.username, t.scopes, t.label, t.created_at, t.last_used_at, \
                    t.revoked_at \
             FROM {schema}.accounts_api_token t JOIN {schema}.accounts_user u ON u.id = t.user_id \
             ORDER BY t.id",
            &[],
            |r| TokenListing {
                id: r.get(0),
                username: r.get(1),
                scopes: r.get(2),
                label: r.get(3),
                created_at: r.get(4),
                last_used_at: r.get(5),
                revoked_at: r.get(6),
            },
        )
        .await
    }

    /// Revokes a token; false when no live token has this id.
    pub async fn revoke_token(&self, slug: &Slug, id: i64) -> StoreResult<bool> {
        let n = self
            .execute_in(
                slug,
                "UPDATE {schema}.accounts_api_token SET revoked_at = pg_catalog.now() \
                 WHERE id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }
}
