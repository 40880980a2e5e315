//! The migration runner: plain SQL files from `migrations/public/` and
//! `migrations/tenant/` (embedded at build time), applied in name order, each in
//! its own transaction and recorded per schema with an MD5 checksum (computed by
//! PostgreSQL's `md5()`). A changed
//! applied file is an error. Runs are serialised by an advisory lock, so two
//! nodes migrating at once, or a run after one killed halfway, are both safe.

use deadpool_postgres::GenericClient;

use super::{Slug, Store, StoreError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// Public-schema migrations, in order: (file name, SQL).
pub const PUBLIC: &[(&str, &str)] = embedded::PUBLIC;
/// Tenant-schema migrations, in order: (file name, SQL).
pub const TENANT: &[(&str, &str)] = embedded::TENANT;

/// Key of the advisory lock that serialises migrations (any fixed number).
const LOCK_KEY: i64 = 0x5354_414d_5045_4445; // "STAMPEDE"

/// A migration failure.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("migration {file} was changed after it was applied to schema {schema}")]
    Changed { schema: String, file: String },
    #[error("migration {file} failed on schema {schema}: {source}")]
    Failed {
        schema: String,
        file: String,
        source: tokio_postgres::Error,
    },
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Store(StoreError::Db(e))
    }
}

/// Which schema a run targets.
#[derive(Clone, Copy)]
enum Target<'a> {
    Public,
    Tenant(&'a Slug),
}

impl Target<'_> {
    fn schema(&self) -> String {
        match self {
            Target::Public => "public".into(),
            Target::Tenant(s) => s.schema(),
        }
    }
    fn name(&self) -> String {
        match self {
            Target::Public => "public".into(),
            Target::Tenant(s) => s.to_string(),
        }
    }
    fn files(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Target::Public => PUBLIC,
            Target::Tenant(_) => TENANT,
        }
    }
}

/// What `migrate` did.
#[derive(Debug, Default)]
pub struct Report {
    /// `schema/file` of every migration applied in this run.
    pub applied: Vec<String>,
}

/// Brings the public schema and every tenant schema to head.
pub async fn migrate_all(store: &Store) -> Result<Report, MigrateError> {
    let mut client = store.client().await?;
    let mut report = Report::default();
    apply(&mut client, Target::Public, &mut report).await?;
    for slug in tenant_slugs(&client).await? {
        apply(&mut client, Target::Tenant(&slug), &mut report).await?;
    }
    Ok(report)
}

/// Applies every tenant migration to `slug` inside the caller's transaction
/// (tenant creation is all or nothing).
pub async fn apply_tenant_in<C: GenericClient>(tx: &C, slug: &Slug) -> Result<(), MigrateError> {
    let target = Target::Tenant(slug);
    tx.batch_execute(&record_table_sql(target)).await?;
    for (file, sql) in TENANT {
        apply_one(tx, target, file, sql).await?;
    }
    Ok(())
}

/// Migrations not yet applied (`schema/file`), or an error when an applied file changed.
pub async fn pending(store: &Store) -> Result<Vec<String>, MigrateError> {
    let client = store.client().await?;
    let mut out = Vec::new();
    let public_table: Option<String> = client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.stampede_migrations')::text",
            &[],
        )
        .await?
        .get(0);
    if public_table.is_none() {
        return Ok(PUBLIC.iter().map(|(f, _)| format!("public/{f}")).collect());
    }
    check(&client, Target::Public, &mut out).await?;
    for slug in tenant_slugs(&client).await? {
        let mut tenant = Vec::new();
        let checked = check(&client, Target::Tenant(&slug), &mut tenant).await;
        // A tenant deleted since the listing (its schema dropped meanwhile)
        // has nothing pending: it is gone, not new.
        if (checked.is_err() || !tenant.is_empty()) && !tenant_exists(&client, &slug).await? {
            continue;
        }
        checked?;
        out.extend(tenant);
    }
    Ok(out)
}

async fn check<C: GenericClient>(
    client: &C,
    target: Target<'_>,
    out: &mut Vec<String>,
) -> Result<(), MigrateError> {
    let sql = format!(
        "SELECT checksum = pg_catalog.md5($2) FROM {}.stampede_migrations WHERE name = $1",
        target.schema()
    );
    let stmt = match client.prepare(&sql).await {
        Ok(stmt) => stmt,
        // A tenant whose schema has no record table yet has everything pending.
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) =>
        {
            out.extend(
                target
                    .files()
                    .iter()
                    .map(|(f, _)| format!("{}/{f}", target.name())),
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    for (file, text) in target.files() {
        match client.query_opt(&stmt, &[file, text]).await? {
            None => out.push(format!("{}/{file}", target.name())),
            Some(row) if !row.get::<_, bool>(0) => {
                return Err(MigrateError::Changed {
                    schema: target.name(),
                    file: file.to_string(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether the tenant `slug` is (still) registered.
async fn tenant_exists<C: GenericClient>(client: &C, slug: &Slug) -> Result<bool, MigrateError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM public.tenants WHERE slug = $1",
            &[&slug.as_str()],
        )
        .await?
        .is_some())
}

async fn tenant_slugs<C: GenericClient>(client: &C) -> Result<Vec<Slug>, MigrateError> {
    let exists: Option<String> = client
        .query_one("SELECT pg_catalog.to_regclass('public.tenants')::text", &[])
        .await?
        .get(0);
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let rows = client
        .query("SELECT slug FROM public.tenants ORDER BY id", &[])
        .await?;
    // Slugs are checked by the table's CHECK constraint too; skip anything odd.
    Ok(rows
        .iter()
        .filter_map(|r| Slug::parse(r.get(0)).ok())
        .collect())
}

fn record_table_sql(target: Target<'_>) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.stampede_migrations (
            name text PRIMARY KEY,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT pg_catalog.now())",
        target.schema()
    )
}

/// Applies each pending file of `target` in its own transaction.
async fn apply(
    client: &mut deadpool_postgres::Object,
    target: Target<'_>,
    report: &mut Report,
) -> Result<(), MigrateError> {
    {
        let tx = client.transaction().await?;
        tx.query_one("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        tx.batch_execute(&record_table_sql(target)).await?;
        tx.commit().await?;
    }
    for (file, sql) in target.files() {
        let tx = client.transaction().await?;
        tx.query_one("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        if apply_one(&tx, target, file, sql).await? {
            report.applied.push(format!("{}/{file}", target.name()));
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Applies one file unless recorded; returns whether it ran.
async fn apply_one<C: GenericClient>(
    tx: &C,
    target: Target<'_>,
    file: &str,
    sql: &str,
) -> Result<bool, MigrateError> {
    let schema = target.schema();
    let row = tx
        .query_opt(
            &format!("SELECT checksum = pg_catalog.md5($2) FROM {schema}.stampede_migrations WHERE name = $1"),
            &[&file, &sql],
        )
        .await?;
    if let Some(row) = row {
        if !row.get::<_, bool>(0) {
            return Err(MigrateError::Changed {
                schema: target.name(),
                file: file.into(),
            });
        }
        return Ok(false);
    }
    let failed = |source| MigrateError::Failed {
        schema: target.name(),
        file: file.into(),
        source,
    };
    // The file runs with the target schema alone on the path, for this
    // transaction only.
    tx.batch_execute(&format!("SET LOCAL search_path TO {schema}"))
        .await
        .map_err(failed)?;
    tx.batch_execute(sql).await.map_err(failed)?;
    tx.batch_execute("SET LOCAL search_path TO DEFAULT")
        .await
        .map_err(failed)?;
    tx.execute(
        &format!("INSERT INTO {schema}.stampede_migrations (name, checksum) VALUES ($1, pg_catalog.md5($2))"),
        &[&file, &sql],
    )
    .await?;
    Ok(true)
}
