//! Black-box integration tests: real PostgreSQL, real sockets, the real binary.
//! All test files are modules of this one binary so it links once.

mod auth;
mod browser;
mod chat;
mod cli;
mod faults;
mod helpers;
mod migrations;
mod pages;
mod pages_browser;
mod reactions;
mod tenancy;
mod ws;
