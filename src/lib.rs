//! Stampede: a live-stream chat and reaction server.
//!
//! Modules and their jobs:
//! - [`cli`]: the `stampede` command line (serve, migrate, tenant, user, stream, analyst, dev).
//! - [`config`]: settings from `config.toml` and `STAMPEDE_*` variables.
//! - [`startup`]: `Application::build / port / run_until_stopped`, shared by tests and `main`.
//! - [`error`]: wire error codes and their HTTP mapping.
//! - [`protocol`]: WebSocket frames: client parsing, server serialisation.
//! - [`rooms`]: the hub, the room's rules as plain modules (admission, restrictions,
//!   modes, sequencer...), and one `RoomActor` per (tenant, stream) that applies them.
//! - [`sessions`]: one `SessionActor` per socket and its bounded outlet.
//! - [`reactions`]: coalescing windows of stamp reactions.
//! - [`moderation`]: rights, commands and their events, blocked terms, term folding.
//! - [`analytics`]: reaction series, CSV and the SVG chart.
//! - [`relay`]: relaying room events between nodes (in-process, Redis pub/sub, or
//!   sharded pub/sub over a Redis Cluster).
//! - [`metrics`]: counters and histograms for `/metrics`.
//! - [`memory`]: free memory handed back to the system after a wave of sockets left.
//! - [`domain`]: validated newtypes (slugs, usernames, roles, chat text).
//! - [`store`]: PostgreSQL pool, migrations, and every SQL statement.
//! - [`tenants`]: the request's tenant from its `Host`.
//! - [`auth`]: passwords, cookie sessions, CSRF, login limits.
//! - [`web`]: routes: pages, JSON API, operations, static files.
//! - [`webhooks`]: webhook events: signing, HTTP delivery, the deliverer of every node.
//! - [`telemetry`]: structured logs.
//! - [`tls`]: TLS to PostgreSQL and Redis (rustls with ring): roots, checks, failure reasons.

pub mod analytics;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod moderation;
pub mod protocol;
pub mod reactions;
pub mod relay;
pub mod rooms;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod tls;
pub mod web;
pub mod webhooks;

#[cfg(test)]
mod fuzz_tests;
