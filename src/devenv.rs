//! Bringing up what the demo and the test suite need on a developer's machine:
//! a PostgreSQL server (the configured one when it answers, else a private
//! cluster under the project, installing Debian's `postgresql` when missing).
//! Used by `stampede dev` and by the tests' setup; never by `serve`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context};

use crate::store::connect::PgTarget;

/// Port of the private cluster (fixed, so re-runs find it again).
pub const PRIVATE_PG_PORT: u16 = 5544;

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
    let private = PgTarget::parse(&cluster_url(&cluster_dir(project_dir), PRIVATE_PG_PORT))?;
    if let Ok(u) = ensure_database(&private, db).await {
        return Ok(u);
    }
    eprintln!("PostgreSQL at the configured URL does not answer; starting a private cluster");
    let private = PgTarget::parse(&start_private_cluster(project_dir)?)?;
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

/// The bin directory of the newest installed PostgreSQL server.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Installs Debian's `postgresql` package when no server binaries exist.
fn install_postgres() -> anyhow::Result<PathBuf> {
    if let Some(dir) = pg_bin_dir() {
        return Ok(dir);
    }
    if !is_root() {
        bail!("PostgreSQL is not installed: run `apt-get install postgresql` (as root), or set STAMPEDE_DATABASE_URL to a running server");
    }
    eprintln!("installing Debian's postgresql package...");
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    pg_bin_dir().context("postgresql was installed but no initdb was found")
}

/// Wraps a PostgreSQL command so it runs as the `postgres` user when we are root
/// (the server refuses to run as root).
fn as_pg_user(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// The data directory of the private cluster of `project_dir`.
pub fn cluster_dir(project_dir: &Path) -> PathBuf {
    let dir = project_dir.join(".stampede").join("pg");
    if is_root() && !accessible_by_postgres(project_dir) {
        // The project sits where the postgres user cannot reach (e.g. under /root).
        return PathBuf::from("/var/tmp/stampede-pg").join(
            project_dir
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        );
    }
    dir
}

/// Starts (or finds running) the private cluster and returns its URL (database `postgres`).
fn start_private_cluster(project_dir: &Path) -> anyhow::Result<String> {
    start_private_cluster_on(project_dir, PRIVATE_PG_PORT)
}

/// [`start_private_cluster`] on another port (tests).
pub fn start_private_cluster_on(project_dir: &Path, port: u16) -> anyhow::Result<String> {
    let bin = install_postgres()?;
    let root = is_root();
    let dir = cluster_dir(project_dir);
    let password_file = cluster_password_file(&dir);
    let running = Command::new(bin.join("pg_ctl"))
        .arg("status")
        .arg("-D")
        .arg(&dir)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if running {
        return Ok(cluster_url(&dir, port));
    }
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        if root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        eprintln!("creating a private PostgreSQL cluster in {}", dir.display());
        // A random superuser password, kept beside the cluster readable by its
        // maker only: other local users cannot log in over TCP or the socket.
        let password = crate::auth::new_token()[..32].to_string();
        write_private(&password_file, &password)?;
        let pwfile = std::env::temp_dir().join(format!(
            "stampede-initdb-{}",
            &crate::auth::new_token()[..12]
        ));
        write_private(&pwfile, &password)?;
        if root {
            run(Command::new("chown").arg("postgres").arg(&pwfile))?;
        }
        let made = run(as_pg_user(&bin.join("initdb"), root)
            .args(["-A", "scram-sha-256", "-U", "postgres", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&dir));
        let _ = std::fs::remove_file(&pwfile);
        made?;
    } else if !password_file.exists() {
        eprintln!(
            "warning: the private cluster in {} trusts every local login (made before \
             passwords); stop it and delete the directory to have a new one with a password",
            dir.display()
        );
    }
    let log = dir.join("server.log");
    run(as_pg_user(&bin.join("pg_ctl"), root)
        .arg("start")
        .arg("-w")
        .arg("-D")
        .arg(&dir)
        .arg("-l")
        .arg(&log)
        .arg("-o")
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=300",
            dir.display()
        )))?;
    Ok(cluster_url(&dir, port))
}

/// Where the private cluster in `dir` keeps its superuser password.
fn cluster_password_file(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    dir.with_file_name(format!("{name}.password"))
}

/// The URL of the private cluster in `dir` (database `postgres`), with its
/// password when it has one.
fn cluster_url(dir: &Path, port: u16) -> String {
    match std::fs::read_to_string(cluster_password_file(dir)) {
        Ok(pw) => format!(
            "postgres://postgres:{}@127.0.0.1:{port}/postgres",
            pw.trim()
        ),
        Err(_) => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    }
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn accessible_by_postgres(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
