//! Bringing up what the demo and the test suite need on a developer's machine
//! (Debian, as root or not): a private PostgreSQL cluster under the project
//! (installing Debian's `postgresql` when missing), and the programs `redis-server`, `chromium` and
//! `ffmpeg`, installed from Debian when missing. Used by `stampede dev` and by
//! the tests' setup; never by `stampede serve`, and no part of the server.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

/// Port of the private cluster (fixed, so re-runs find it again).
pub const PRIVATE_PG_PORT: u16 = 5544;

/// The URL (database `postgres`) of the private cluster of `project_dir`, if it runs.
pub fn private_cluster_url(project_dir: &Path) -> String {
    cluster_url(&cluster_dir(project_dir), PRIVATE_PG_PORT)
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

/// `n` random bytes from the operating system, as lowercase hex.
fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether this process runs as root (and may install packages).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs Debian's `package` with `apt-get` (as root), saying so on stderr.
fn apt_install(package: &str) -> anyhow::Result<()> {
    eprintln!("installing Debian's {package} package...");
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))
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

/// The bin directory of the newest PostgreSQL server (`initdb`, `pg_ctl`),
/// installing Debian's `postgresql` package when no server binaries exist.
pub fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = pg_bin_dir() {
        return Ok(dir);
    }
    if !is_root() {
        bail!("PostgreSQL is not installed: run `apt-get install postgresql` (as root), or set STAMPEDE_DATABASE_URL to a running server");
    }
    apt_install("postgresql")?;
    pg_bin_dir().context("postgresql was installed but no initdb was found")
}

/// Wraps a PostgreSQL command so it runs as the `postgres` user when we are root
/// (the server refuses to run as root).
pub fn as_pg_user(bin: &Path, root: bool) -> Command {
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
pub fn start_private_cluster(project_dir: &Path) -> anyhow::Result<String> {
    start_private_cluster_on(project_dir, PRIVATE_PG_PORT)
}

/// [`start_private_cluster`] on another port (tests).
pub fn start_private_cluster_on(project_dir: &Path, port: u16) -> anyhow::Result<String> {
    let bin = postgres_bin_dir()?;
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
        let password = random_hex(16);
        write_private(&password_file, &password)?;
        let pwfile = std::env::temp_dir().join(format!("stampede-initdb-{}", random_hex(6)));
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

/// Makes sure `works()` holds, installing Debian's `package` when it does not:
/// as root with `apt-get`, else failing with a message saying what to install.
/// Concurrent callers in one process install once.
pub fn ensure_package(package: &str, works: impl Fn() -> bool) -> anyhow::Result<()> {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if works() {
        return Ok(());
    }
    let _one_at_a_time = APT.lock().unwrap_or_else(|e| e.into_inner());
    if works() {
        return Ok(());
    }
    if !is_root() {
        bail!("{package} is not installed: run `apt-get install {package}` as root");
    }
    apt_install(package)?;
    if !works() {
        bail!("{package} was installed but does not run");
    }
    Ok(())
}

/// Whether `program` runs with `arg` and exits successfully.
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Where `redis-server` is (Debian's package).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Makes sure `redis-server` and `redis-cli` are installed; returns the server's path.
pub fn ensure_redis_server() -> anyhow::Result<&'static str> {
    ensure_package("redis-server", || {
        runs(REDIS_SERVER, "--version") && runs("redis-cli", "--version")
    })?;
    Ok(REDIS_SERVER)
}

/// Where Chromium is (Debian's package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure headless Chromium is installed; returns its path.
pub fn ensure_chromium() -> anyhow::Result<&'static str> {
    ensure_package("chromium", || Path::new(CHROMIUM).exists())?;
    Ok(CHROMIUM)
}

/// Makes sure `ffmpeg` runs.
pub fn ensure_ffmpeg() -> anyhow::Result<()> {
    ensure_package("ffmpeg", || runs("ffmpeg", "-version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_two_digits_a_byte_and_differs() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16));
    }

    #[test]
    fn a_working_program_needs_no_install() {
        ensure_package("no-such-package-needed", || true).unwrap();
    }
}
