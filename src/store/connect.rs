//! How a node reaches PostgreSQL: `database.url` with its TLS options read
//! as libpq reads them. Every connection (the pool, the CLI, migrations, `dev`)
//! is made from a [`PgTarget`].
//!
//! tokio-postgres knows `sslmode` only as `disable`/`prefer`/`require` and
//! rejects `sslrootcert`, so both are taken out of the URL here:
//!
//! | `sslmode` | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | no |
//! | `require` | always | no (as libpq: the chain when `sslrootcert` is given) |
//! | `verify-ca` | always | chain to a trusted root |
//! | `verify-full` | always | chain and host name |
//!
//! Trusted roots are those of `sslrootcert=<path>` (`system`, or none given:
//! the system's).

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, bail};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{self, Verify};

/// The `sslmode` of a database URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, the certificate unchecked.
    Prefer,
    /// TLS, the certificate unchecked.
    Require,
    /// TLS, the chain checked.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => bail!(
                "database.url: sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
    }

    /// Its name in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A parsed `database.url`: what to connect to and how TLS is done.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    mode: SslMode,
    /// The URL named `sslmode` (else `prefer`, libpq's default).
    mode_given: bool,
    rootcert: Option<String>,
    tls: MakeRustlsConnect,
}

impl PgTarget {
    /// Reads a libpq-style URL (`postgres://…?sslmode=verify-full&sslrootcert=/ca.pem`)
    /// or key/value string, and loads the roots its `sslmode` needs.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (rest, mode, rootcert) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| anyhow!("database.url is not a valid PostgreSQL URL: {e}"))?;
        let mode_given = mode.is_some();
        let mode = match mode {
            Some(m) => SslMode::parse(&m)?,
            None => SslMode::Prefer,
        };
        config.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        let rootcert = rootcert.filter(|r| !r.is_empty());
        let file = rootcert
            .as_deref()
            .filter(|r| *r != "system")
            .map(PathBuf::from);
        let verify = match mode {
            SslMode::Disable | SslMode::Prefer => Verify::Nothing,
            // libpq: `require` with a root certificate file checks the chain.
            SslMode::Require if file.is_some() => Verify::Chain,
            SslMode::Require => Verify::Nothing,
            SslMode::VerifyCa => Verify::Chain,
            SslMode::VerifyFull => Verify::Full,
        };
        let roots = match verify {
            Verify::Nothing => None,
            _ => Some(
                tls::roots(file.as_deref())
                    .map_err(|e| anyhow!("database.url: sslrootcert: {e:#}"))?,
            ),
        };
        let tls = MakeRustlsConnect::new(tls::client_config(verify, roots)?);
        Ok(Self {
            config,
            mode,
            mode_given,
            rootcert,
            tls,
        })
    }

    /// The connection settings (no TLS options: those are in the connector).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The connection settings, to change the database, timeouts, options.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// The TLS connector for [`tokio_postgres::Config::connect`] and pools.
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// The URL's `sslmode` (`prefer` when it names none).
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The TLS options the URL named, as URL query parameters
    /// (`sslmode=…&sslrootcert=…`), to carry them into a URL built from
    /// [`Self::config`]; `None` when it named none.
    pub fn tls_query(&self) -> Option<String> {
        if !self.mode_given && self.rootcert.is_none() {
            return None;
        }
        let mut q = format!("sslmode={}", self.mode.as_str());
        if let Some(r) = &self.rootcert {
            q.push_str("&sslrootcert=");
            q.push_str(&percent_encode(r));
        }
        Some(q)
    }

    /// Opens one connection (outside any pool); its driver runs on a task.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = self.config.connect(self.tls()).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Opens one connection within `timeout`; a failed TLS handshake is a
    /// one-line error naming PostgreSQL, the `sslmode` and the reason.
    pub async fn check(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut config = self.clone();
        config.config.connect_timeout(timeout);
        match config.connect().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match self.tls_failure(&e) {
                Some(line) => anyhow!(line),
                None => e.into(),
            }),
        }
    }

    /// When `e` (a connection error, or one wrapping it) is a failed TLS
    /// handshake: a line saying so, naming the `sslmode` and the reason.
    pub fn tls_failure(&self, e: &(dyn std::error::Error + 'static)) -> Option<String> {
        if self.mode == SslMode::Disable {
            return None;
        }
        let settings = format!(
            "database.url sslmode={}{}",
            self.mode.as_str(),
            self.rootcert
                .as_deref()
                .map(|r| format!(" sslrootcert={r}"))
                .unwrap_or_default()
        );
        if let Some(r) = tls::rustls_error(e) {
            return Some(format!(
                "PostgreSQL TLS failed ({settings}): {}",
                tls::reason(r)
            ));
        }
        // tokio-postgres's own TLS errors (a server without TLS under `require`).
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(pg) = c.downcast_ref::<tokio_postgres::Error>() {
                let mut text = pg.to_string();
                if text.contains("TLS") {
                    let mut inner = std::error::Error::source(pg);
                    while let Some(i) = inner {
                        text.push_str(": ");
                        text.push_str(&i.to_string());
                        inner = i.source();
                    }
                    return Some(format!("PostgreSQL TLS failed ({settings}): {text}"));
                }
            }
            cause = c.source();
        }
        None
    }
}

/// Splits `sslmode` and `sslrootcert` off a URL or key/value string.
fn take_tls_params(url: &str) -> anyhow::Result<(String, Option<String>, Option<String>)> {
    let (mut mode, mut root) = (None, None);
    let trimmed = url.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return Ok((trimmed.to_string(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(percent_decode(v)?),
                "sslrootcert" => root = Some(percent_decode(v)?),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, root));
    }
    // key = value pairs, values optionally 'quoted' with \' and \\ escapes.
    let b = trimmed.as_bytes();
    let (mut i, mut rest) = (0, String::new());
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &trimmed[start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            // Not ours to judge: tokio-postgres reports it.
            rest.push_str(&trimmed[start..]);
            break;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => bail!("database.url: unterminated quoted value of {key}"),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value)?;
        match key {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => {
                rest.push_str(&trimmed[start..i]);
                rest.push(' ');
            }
        }
    }
    Ok((rest.trim_end().to_string(), mode, root))
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("database.url: bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (c as char).to_string()
            }
            c => format!("%{c:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u:p@db.example:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20b.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db.example:5432/app?application_name=x"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca b.pem"));

        let (rest, mode, root) = take_tls_params("postgres://u@h/app?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://u@h/app");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, None);
    }

    #[test]
    fn tls_options_leave_key_value_strings() {
        let (rest, mode, root) = take_tls_params(
            "host=db port=5432 sslmode = verify-ca sslrootcert='/a b/c\\'s.pem' dbname=app",
        )
        .unwrap();
        assert_eq!(rest, "host=db port=5432 dbname=app");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/a b/c's.pem"));
    }

    #[test]
    fn modes_parse_and_unknown_ones_are_refused() {
        let t = PgTarget::parse("postgres://u@127.0.0.1/app").unwrap();
        assert_eq!(t.ssl_mode(), SslMode::Prefer);
        let t = PgTarget::parse("postgres://u@127.0.0.1/app?sslmode=disable").unwrap();
        assert_eq!(t.ssl_mode(), SslMode::Disable);
        assert_eq!(t.config().get_ssl_mode(), PgSslMode::Disable);
        let t = PgTarget::parse("postgres://u@127.0.0.1/app?sslmode=require").unwrap();
        assert_eq!(t.config().get_ssl_mode(), PgSslMode::Require);
        let e = PgTarget::parse("postgres://u@127.0.0.1/app?sslmode=allow-maybe")
            .err()
            .unwrap();
        assert!(e.to_string().contains("sslmode"), "{e}");
        let e = PgTarget::parse(
            "postgres://u@127.0.0.1/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
    }

    #[test]
    fn tls_query_round_trips() {
        let t = PgTarget::parse("postgres://u@127.0.0.1/app?sslmode=require&sslrootcert=system")
            .unwrap();
        let (_, mode, root) =
            take_tls_params(&format!("postgres://u@h/d?{}", t.tls_query().unwrap())).unwrap();
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root.as_deref(), Some("system"));
        let t = PgTarget::parse("postgres://u@127.0.0.1/app").unwrap();
        assert_eq!(t.tls_query(), None);
    }
}
