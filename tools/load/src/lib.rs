//! `stampede-load`, the load generator of `benches/run`. It is its own binary and
//! no part of the server.
//!
//! - [`coordinator`]: the run: plans, worker processes, CPU/RSS sampling, the JSON.
//! - [`worker`]: one worker process: sockets, logins, paced senders, counting viewers.
//! - [`proto`]: frames written and read (seed protocol, centrifuge v1 JSON).
//! - [`stats`]: HDR latency histograms and worker reports.
//! - [`procfs`]: CPU seconds and memory of the server processes from `/proc`.

pub mod coordinator;
pub mod procfs;
pub mod proto;
pub mod stats;
pub mod worker;
