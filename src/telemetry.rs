//! Structured logs with `tracing`: level from `RUST_LOG` (default `info`),
//! written to stderr so stdout stays clean for CLI output.
//!
//! tokio-postgres logs every statement's parameters at `debug`, and those
//! carry secrets (API tokens and session keys are hashed in SQL, webhook
//! secrets are stored): its level is capped at `info` whatever `RUST_LOG`
//! says, so no log level ever writes a secret.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once; later calls are ignored.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        .add_directive("tokio_postgres=info".parse().expect("a valid directive"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
