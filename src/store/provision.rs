//! The database `stampede dev` and the tests use: the configured server when
//! it answers (over TLS when its URL asks), else the project's private cluster
//! that `stampede-devenv` starts. Never used by `stampede serve`.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context};

use super::connect::PgTarget;

/// Returns a URL of a reachable PostgreSQL whose database `db` exists: `url`
/// when its server answers, else a private cluster under `project_dir`.
/// The URL keeps its TLS options (`sslmode`, `sslrootcert`); a configured
/// server whose TLS handshake fails is an error, not a reason to start another.
pub async fn ensure_postgres(url: &str, db: &str, project_dir: &Path) -> anyhow::Result<String> {
    let target = PgTarget::parse(url)?;
    match ensure_database(&target, db).await {
        Ok(u) => return Ok(u),
        Err(e) => {
            if let Some(line) = e.chain().find_map(|c| target.tls_failure(c)) {
                bail!(line);
            }
        }
    }
    // A private cluster of this project (maybe of another checkout) may already run.
    let private = PgTarget::parse(&stampede_devenv::private_cluster_url(project_dir))?;
    if let Ok(u) = ensure_database(&private, db).await {
        return Ok(u);
    }
    eprintln!("PostgreSQL at the configured URL does not answer; starting a private cluster");
    let private = PgTarget::parse(&stampede_devenv::start_private_cluster(project_dir)?)?;
    ensure_database(&private, db)
        .await
        .context("the private PostgreSQL cluster started but does not answer")
}

/// Connects to the server of `target`, creates `db` if missing, and returns its URL.
async fn ensure_database(target: &PgTarget, db: &str) -> anyhow::Result<String> {
    let mut admin = target.clone();
    admin.config_mut().dbname("postgres");
    admin.config_mut().connect_timeout(Duration::from_secs(2));
    let client = admin.connect().await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await?
        .is_some();
    if !exists {
        // The name is ours (config or test support), still quote it as an identifier.
        if db.contains('"') {
            bail!("invalid database name {db:?}");
        }
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await
        {
            // Another process may have created it meanwhile.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e.into());
            }
        }
    }
    Ok(url_of(target, db))
}

fn url_of(target: &PgTarget, db: &str) -> String {
    let config = target.config();
    let host = config
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let url = match config.get_password() {
        Some(pw) => format!(
            "postgres://{user}:{}@{host}:{port}/{db}",
            String::from_utf8_lossy(pw)
        ),
        None => format!("postgres://{user}@{host}:{port}/{db}"),
    };
    match target.tls_query() {
        Some(q) => format!("{url}?{q}"),
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_user_host_port_password_and_tls_options() {
        let t = PgTarget::parse("postgres://u:pw@10.0.0.1:6000/x").unwrap();
        assert!(url_of(&t, "db").starts_with("postgres://u:pw@10.0.0.1:6000/db"));
        let t = PgTarget::parse("postgres://u@h/x?sslmode=verify-full").unwrap();
        let url = url_of(&t, "db");
        assert!(url.starts_with("postgres://u@h:5432/db?"), "{url}");
        assert!(url.contains("sslmode=verify-full"), "{url}");
    }
}
