//! Read-only PostgreSQL roles for analysts, scoped to one tenant schema.

use super::{Slug, Store, StoreError};

/// Why a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("invalid role name {0:?}: use a-z, 0-9 and _, starting with a letter or _, at most 63 characters")]
    BadRole(String),
    #[error("role {0:?} is the server's own database role (or one it is a member of, or a superuser): granting it analyst access would take the server's own privileges away")]
    ServerRole(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for GrantError {
    fn from(e: tokio_postgres::Error) -> Self {
        GrantError::Store(StoreError::Db(e))
    }
}

fn valid_role(role: &str) -> bool {
    let mut chars = role.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && role.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !role.starts_with("pg_")
        && !matches!(
            role,
            "public" | "postgres" | "none" | "current_user" | "session_user"
        )
}

/// The tables of a tenant an analyst reads (README, "Tables for analysts"),
/// with the columns when not all of them. Nothing else is granted: not
/// `accounts_session`, password hashes, bans, blocked terms, held messages,
/// nor any table a later migration adds.
pub const ANALYTICS_TABLES: &[(&str, Option<&str>)] = &[
    ("streaming_streamreaction", None),
    ("streaming_reaction_minute", None),
    ("chat_chatstamp", None),
    ("streaming_stream", None),
    ("chat_chatroom", None),
    ("chat_chatmessage", None),
    ("moderation_log", None),
    (
        "accounts_user",
        Some("id, username, role, is_active, created_at"),
    ),
];

impl Store {
    /// Creates `role` (NOLOGIN) when missing and lets it read the tenant's
    /// [`ANALYTICS_TABLES`] and nothing else (what an earlier grant gave, on
    /// any table of the schema or by default privileges, is taken back first).
    /// The server's own role, roles it is a member of, and superusers are
    /// refused.
    pub async fn grant_analyst(&self, slug: &Slug, role: &str) -> Result<(), GrantError> {
        if !valid_role(role) {
            return Err(GrantError::BadRole(role.to_string()));
        }
        let quoted = format!("\"{role}\"");
        let schema = slug.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let existing = tx
            .query_opt(
                // A role whose privileges the server's role uses (itself, or one
                // it inherits from); `pg_has_role` says every role for a
                // superuser, so only the names count then.
                "SELECT r.rolsuper OR r.rolname IN (current_user, session_user) \
                        OR (NOT (SELECT s.rolsuper FROM pg_catalog.pg_roles s \
                                 WHERE s.rolname = current_user) \
                            AND pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')) \
                 FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
                &[&role],
            )
            .await?;
        match existing {
            Some(row) if row.get::<_, bool>(0) => {
                return Err(GrantError::ServerRole(role.to_string()));
            }
            Some(_) => {}
            None => {
                tx.batch_execute(&format!("CREATE ROLE {quoted} NOLOGIN"))
                    .await?;
            }
        }
        let mut sql = format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {quoted};
             REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted};
             GRANT USAGE ON SCHEMA {schema} TO {quoted};"
        );
        for (table, columns) in ANALYTICS_TABLES {
            sql.push_str(&match columns {
                None => format!("GRANT SELECT ON {schema}.{table} TO {quoted};"),
                Some(cols) => format!("GRANT SELECT ({cols}) ON {schema}.{table} TO {quoted};"),
            });
        }
        tx.batch_execute(&sql).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn role_names() {
        assert!(super::valid_role("analyst_acme"));
        assert!(super::valid_role("_x"));
        assert!(!super::valid_role("Analyst"));
        assert!(!super::valid_role("a\"; DROP"));
        assert!(!super::valid_role("pg_monitor"));
        assert!(!super::valid_role("postgres"));
        assert!(!super::valid_role(""));
    }
}
