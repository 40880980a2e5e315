//! PostgreSQL access: the pool, the migration runner, and the SQL of every table
//! group. All SQL of the server lives under this module.
//!
//! Tenant isolation rule: every statement on a tenant table names its schema
//! through [`Slug::schema`], a validated, quoted identifier (most statements
//! write `{schema}`, which `tenant_sql` and the `Store::*_in` helpers replace
//! with it). No statement relies on `search_path` outside [`migrations`], which
//! sets it with `SET LOCAL` inside the migration's own transaction, so a pooled
//! connection never carries one tenant's path into another tenant's query.
//!
//! Search-path rule: every pooled connection starts with `search_path =
//! pg_catalog`, built-in functions are called as `pg_catalog.name(...)`, and the
//! public migrations revoke `CREATE` on `public` from `PUBLIC`.

pub mod accounts;
pub mod analysts;
pub mod analytics;
pub mod chat_v2;
pub mod connect;
pub mod held;
pub mod messages;
pub mod migrations;
pub mod moderation;
pub mod provision;
pub mod reaction_writer;
pub mod reactions;
pub mod search;
pub mod streams;
pub mod tenants;
pub mod timeline;
pub mod tokens;
pub mod webhooks;
pub mod writer;

use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, QueueMode, RecyclingMethod, Runtime,
};
use tokio_postgres::{types::ToSql, Row};

use crate::config::DatabaseSettings;
pub use crate::domain::Slug;
use connect::{PgTarget, SslMode};

/// The `search_path` of every pooled connection (see [`Store::with_pool_size`]).
pub const SEARCH_PATH_OPTION: &str = "-c search_path=pg_catalog";

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (PostgreSQL down or the pool exhausted).
    #[error("database unavailable: {0}")]
    Pool(#[from] PoolError),
    /// A statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A statement answered something it cannot (a bug, or a schema changed
    /// under the node).
    #[error("unexpected database answer: {0}")]
    Unexpected(&'static str),
}

impl StoreError {
    /// True for a unique-constraint violation (a duplicate key).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(e) if is_unique_violation(e))
    }
}

/// True when a statement failed on a unique constraint.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The bind parameters of a statement, `$1` first.
type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A statement of a tenant's schema: `template` with every `{schema}` replaced
/// by [`Slug::schema`], the validated, quoted identifier. That is the only text
/// spliced in; every value is a bind parameter (`$1`, `$2`, ...). A template
/// built with `format!` (to splice a column list) writes it `{{schema}}`.
fn tenant_sql(slug: &Slug, template: &str) -> String {
    template.replace("{schema}", &slug.schema())
}

/// Runs a background writer (`task`) on a thread of its own, named `name`,
/// with a single-threaded runtime, until the task ends (when every handle to
/// its queue is gone).
///
/// Give such a writer a pool of its own ([`Store::for_writer`]): a
/// tokio-postgres connection's socket is read and written by a task on the
/// runtime that opened the connection. The shared pool's connections are
/// opened mostly by request handlers and rooms on the HTTP workers, whose run
/// queues hold every socket write of a broadcast; a writer using one of them
/// waited, at each round trip, for that worker to get through those writes.
/// A writer's own connections are opened by the writer, on its own thread.
pub fn spawn_writer_thread<F>(name: &str, task: F) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || runtime.block_on(task))?;
    Ok(())
}

/// The connection pool shared by every part of a node.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    target: PgTarget,
}

impl Store {
    /// Builds a pool from settings. Connections are opened lazily.
    pub fn new(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::with_pool_size(settings, settings.pool_size)
    }

    /// Builds a pool of exactly `size` connections.
    pub fn with_pool_size(settings: &DatabaseSettings, size: usize) -> anyhow::Result<Self> {
        Self::build(settings, size, None)
    }

    /// The pool of one batch writer (see [`spawn_writer_thread`]): one
    /// connection, which PostgreSQL lists (`pg_stat_activity`) under the
    /// node's application name followed by `-{writer}`.
    pub fn for_writer(settings: &DatabaseSettings, writer: &str) -> anyhow::Result<Self> {
        Self::build(settings, 1, Some(writer))
    }

    fn build(
        settings: &DatabaseSettings,
        size: usize,
        writer: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut target = PgTarget::parse(&settings.url)?;
        let pg = target.config_mut();
        let timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
        pg.connect_timeout(timeout);
        let name = pg.get_application_name().unwrap_or("stampede").to_string();
        match writer {
            Some(writer) => pg.application_name(format!("{name}-{writer}")),
            None => pg.application_name(name),
        };
        // Every connection resolves unqualified functions and operators in
        // pg_catalog only: nothing another role plants in `public` (or any
        // schema) can capture arguments (CVE-2018-1058). Sent in the startup
        // packet, so it holds from the first statement and survives RESET.
        let options = match pg.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {SEARCH_PATH_OPTION}"),
            _ => SEARCH_PATH_OPTION.to_string(),
        };
        pg.options(&options);
        let manager = Manager::from_config(
            pg.clone(),
            target.tls(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Last in, first out: the connection used last is used next, so a
        // quiet node keeps reusing one warm backend (its prepared statements
        // and generic plans, its catalog caches) instead of cycling through
        // every pooled connection cold.
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()?;
        Ok(Self { pool, target })
    }

    /// Like [`Store::new`], and when `database.url` asks for TLS, proves it
    /// with one connection: a failed handshake (untrusted CA, wrong host name,
    /// no TLS on the server) is an error naming PostgreSQL and the reason.
    /// Any other failure is left to the first query, as with [`Store::new`].
    pub async fn open(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let store = Self::new(settings)?;
        if store.target.ssl_mode() != SslMode::Disable {
            if let Err(e) = store.client().await {
                if let Some(line) = store.target.tls_failure(&e) {
                    anyhow::bail!(line);
                }
            }
        }
        Ok(store)
    }

    /// A pooled connection.
    pub async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// Runs one statement of a tenant's schema (`{schema}` in `template`, see
    /// [`tenant_sql`]) on a pooled connection; returns how many rows it changed.
    async fn execute_in(
        &self,
        slug: &Slug,
        template: &str,
        params: &Params<'_>,
    ) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client.execute(&tenant_sql(slug, template), params).await?)
    }

    /// Like [`Store::execute_in`], for a statement that returns rows: each of
    /// them, read by `from_row`, in order.
    async fn query_in<T>(
        &self,
        slug: &Slug,
        template: &str,
        params: &Params<'_>,
        from_row: impl Fn(&Row) -> T,
    ) -> StoreResult<Vec<T>> {
        let client = self.client().await?;
        let rows = client.query(&tenant_sql(slug, template), params).await?;
        Ok(rows.iter().map(from_row).collect())
    }

    // Same shape as query_in and query_one_in: the three mirror tokio-postgres's
    // query, query_opt and query_one, whose row-count checks differ.
    /// Like [`Store::query_in`], for a statement that returns at most one row.
    async fn query_opt_in<T>(
        &self,
        slug: &Slug,
        template: &str,
        params: &Params<'_>,
        from_row: impl FnOnce(&Row) -> T,
    ) -> StoreResult<Option<T>> {
        let client = self.client().await?;
        let row = client
            .query_opt(&tenant_sql(slug, template), params)
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    /// Like [`Store::query_in`], for a statement that returns exactly one row.
    async fn query_one_in<T>(
        &self,
        slug: &Slug,
        template: &str,
        params: &Params<'_>,
        from_row: impl FnOnce(&Row) -> T,
    ) -> StoreResult<T> {
        let client = self.client().await?;
        let row = client
            .query_one(&tenant_sql(slug, template), params)
            .await?;
        Ok(from_row(&row))
    }

    /// True when PostgreSQL answers a trivial query.
    pub async fn ping(&self) -> bool {
        match self.client().await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }
}
