//! `public.tenants` and `public.domains`: creating, listing, configuring and
//! deleting tenants, and resolving a host to its tenant.

use super::{migrations, Slug, Store, StoreError, StoreResult};

/// A tenant as the server needs it on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Row id in `public.tenants`.
    pub id: i64,
    /// Slug, which is also the schema name.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Anyone may watch and read chat without an account.
    pub anonymous_viewers: bool,
    /// Visitors may create accounts.
    pub signup: bool,
    /// Every domain of the tenant, lower-case.
    pub domains: Vec<String>,
}

/// Why a tenant operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error("tenant {0:?} does not exist")]
    Missing(String),
    #[error("domain {0:?} already belongs to a tenant")]
    DomainTaken(String),
    #[error("invalid domain {0:?}")]
    BadDomain(String),
    #[error(transparent)]
    Migrate(#[from] migrations::MigrateError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for TenantError {
    fn from(e: tokio_postgres::Error) -> Self {
        TenantError::Store(StoreError::Db(e))
    }
}

/// Per-tenant settings changed by `tenant configure`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TenantConfig {
    /// New value of `anonymous_viewers`, when given.
    pub anonymous_viewers: Option<bool>,
    /// New value of `signup`, when given.
    pub signup: Option<bool>,
}

const TENANT_COLUMNS: &str = "t.id, t.slug, t.name, t.anonymous_viewers, t.signup, \
     COALESCE((SELECT pg_catalog.array_agg(d.domain ORDER BY d.is_primary DESC, d.id) FROM public.domains d WHERE d.tenant_id = t.id), '{}')";

fn tenant_from_row(row: &tokio_postgres::Row) -> Option<Tenant> {
    Some(Tenant {
        id: row.get(0),
        slug: Slug::parse(row.get(1)).ok()?,
        name: row.get(2),
        anonymous_viewers: row.get(3),
        signup: row.get(4),
        domains: row.get(5),
    })
}

impl Store {
    /// Creates a tenant: its row, its domains, its schema, every tenant migration
    /// and the seeded stamps, in ONE transaction: all or nothing.
    pub async fn create_tenant(
        &self,
        slug: &Slug,
        name: &str,
        domains: &[String],
    ) -> Result<Tenant, TenantError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM public.tenants WHERE slug = $1) \
                     OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&slug.as_str()],
            )
            .await?
            .get(0);
        if exists {
            return Err(TenantError::Exists(slug.to_string()));
        }
        let id: i64 = match tx
            .query_one(
                "INSERT INTO public.tenants (slug, schema_name, name) VALUES ($1, $1, $2) RETURNING id",
                &[&slug.as_str(), &name],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if super::is_unique_violation(&e) => {
                return Err(TenantError::Exists(slug.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        for (i, domain) in domains.iter().enumerate() {
            insert_domain(&tx, id, domain, i == 0).await?;
        }
        tx.batch_execute(&format!("CREATE SCHEMA {}", slug.schema()))
            .await?;
        migrations::apply_tenant_in(&tx, slug).await?;
        tx.commit().await?;
        Ok(Tenant {
            id,
            slug: slug.clone(),
            name: name.to_string(),
            anonymous_viewers: true,
            signup: true,
            domains: domains.to_vec(),
        })
    }

    /// Every tenant, oldest first.
    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {TENANT_COLUMNS} FROM public.tenants t ORDER BY t.id"),
                &[],
            )
            .await?;
        Ok(rows.iter().filter_map(tenant_from_row).collect())
    }

    /// The tenant with this slug.
    pub async fn tenant_by_slug(&self, slug: &Slug) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TENANT_COLUMNS} FROM public.tenants t WHERE t.slug = $1"),
                &[&slug.as_str()],
            )
            .await?;
        Ok(row.as_ref().and_then(tenant_from_row))
    }

    /// The tenant serving this (normalised) host.
    pub async fn tenant_by_host(&self, host: &str) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM public.tenants t \
                     JOIN public.domains d0 ON d0.tenant_id = t.id WHERE d0.domain = $1"
                ),
                &[&host],
            )
            .await?;
        Ok(row.as_ref().and_then(tenant_from_row))
    }

    /// Adds a domain to a tenant; a domain belongs to one tenant only.
    pub async fn add_domain(&self, slug: &Slug, domain: &str) -> Result<(), TenantError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_opt(
                "SELECT id FROM public.tenants WHERE slug = $1",
                &[&slug.as_str()],
            )
            .await?
            .ok_or_else(|| TenantError::Missing(slug.to_string()))?
            .get(0);
        insert_domain(&tx, id, domain, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes per-tenant settings.
    pub async fn configure_tenant(
        &self,
        slug: &Slug,
        config: TenantConfig,
    ) -> Result<Tenant, TenantError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE public.tenants SET \
                 anonymous_viewers = COALESCE($2, anonymous_viewers), \
                 signup = COALESCE($3, signup) WHERE slug = $1",
                &[&slug.as_str(), &config.anonymous_viewers, &config.signup],
            )
            .await?;
        if n == 0 {
            return Err(TenantError::Missing(slug.to_string()));
        }
        drop(client);
        self.tenant_by_slug(slug)
            .await?
            .ok_or_else(|| TenantError::Missing(slug.to_string()))
    }

    /// Drops a tenant's schema and its rows, in one transaction.
    pub async fn delete_tenant(&self, slug: &Slug) -> Result<(), TenantError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM public.tenants WHERE slug = $1",
                &[&slug.as_str()],
            )
            .await?;
        if n == 0 {
            return Err(TenantError::Missing(slug.to_string()));
        }
        tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", slug.schema()))
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_domain(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: i64,
    domain: &str,
    primary: bool,
) -> Result<(), TenantError> {
    let normalized = crate::domain::normalize_host(domain)
        .filter(|d| d == domain)
        .ok_or_else(|| TenantError::BadDomain(domain.to_string()))?;
    let taken = tx
        .query_opt(
            "SELECT 1 FROM public.domains WHERE domain = $1",
            &[&normalized],
        )
        .await?;
    if taken.is_some() {
        return Err(TenantError::DomainTaken(normalized));
    }
    match tx
        .execute(
            "INSERT INTO public.domains (domain, tenant_id, is_primary) VALUES ($1, $2, $3)",
            &[&normalized, &tenant_id, &primary],
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if super::is_unique_violation(&e) => Err(TenantError::DomainTaken(normalized)),
        Err(e) => Err(e.into()),
    }
}
