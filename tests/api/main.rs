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
mod migrations;
mod moderation;
mod pages;
mod pages_browser;
mod reactions;
mod restrictions_model;
mod room_core;
mod tenancy;
mod ws;
