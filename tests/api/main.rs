//! Black-box integration tests: real PostgreSQL, real sockets, the real binary.
//! All test files are modules of this one binary so it links once.

mod auth;
mod browser;
mod chaos;
mod chat;
mod chat_v2;
mod cli;
mod cluster;
mod faults;
mod hardening;
mod helpers;
mod integrations;
mod memory;
mod migrations;
mod moderation;
mod moderation_browser;
mod moderation_v2;
mod pages;
mod pages_browser;
mod reactions;
mod replay_browser;
mod restrictions_model;
mod room_core;
mod security;
mod tenancy;
mod timeline;
mod ws;
