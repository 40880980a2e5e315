//! Read-only PostgreSQL roles for analysts, scoped to one tenant schema.

use super::{Slug, Store, StoreError};

/// Why a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("invalid role name {0:?}: use a-z, 0-9 and _, starting with a letter or _, at most 63 characters")]
    BadRole(String),
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

impl Store {
    /// Creates `role` (NOLOGIN) when missing and lets it read every table of the
    /// tenant's schema, except session keys and password hashes; tables created
    /// later by migrations are readable too. Nothing else is granted.
    pub async fn grant_analyst(&self, slug: &Slug, role: &str) -> Result<(), GrantError> {
        if !valid_role(role) {
            return Err(GrantError::BadRole(role.to_string()));
        }
        let quoted = format!("\"{role}\"");
        let schema = slug.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE ROLE {quoted} NOLOGIN"))
                .await?;
        }
        tx.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {schema} TO {quoted};
             GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {quoted};
             ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {quoted};
             REVOKE ALL ON {schema}.accounts_session FROM {quoted};
             REVOKE SELECT ON {schema}.accounts_user FROM {quoted};
             GRANT SELECT (id, username, role, is_active, created_at) ON {schema}.accounts_user TO {quoted};"
        ))
        .await?;
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
