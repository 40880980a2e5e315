//! Black-box integration tests: real PostgreSQL, real sockets, the real binary.
//! All test files are modules of this one binary so it links once.
//!
//! The suites that take minutes (headless Chromium, fault injection with
//! private services, several server processes under chaos) live under
//! [`slow`]; `cargo test --test api -- --skip slow::` runs the others.

mod auth;
mod browser;
mod chat;
mod chat_v2;
mod cli;
mod hardening;
mod helpers;
mod integrations;
mod migrations;
mod moderation;
mod moderation_v2;
mod pages;
mod reactions;
mod restrictions_model;
mod room_core;
mod security;
mod store_batches;
mod tenancy;
mod timeline;
mod upgrade;
mod ws;

/// The slow suites: pages in headless Chromium, faults, chaos, two-node
/// clusters, private TLS servers, Redis Clusters, webhook deliveries,
/// thousands of idle sockets.
mod slow {
    mod chaos;
    mod cluster;
    mod common;
    mod faults;
    mod memory;
    mod moderation_browser;
    mod pages_browser;
    mod redis_cluster;
    mod replay_browser;
    mod tls;
    mod webhooks;
    mod webhooks_browser;
}
