//! Structured logs with `tracing`: level from `RUST_LOG` (default `info`),
//! written to stderr so stdout stays clean for CLI output.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once; later calls are ignored.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
