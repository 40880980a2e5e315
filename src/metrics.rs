//! Process-wide counters and histograms, rendered at `/metrics` in the
//! Prometheus text format. Plain atomics: recording is a relaxed add, never a lock.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// A monotonically increasing counter.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1)
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
pub struct Gauge(AtomicU64);

impl Gauge {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Removes one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Bucket bounds of latency histograms, in seconds.
const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with fixed buckets.
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; 12],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BOUNDS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }
    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BOUNDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Open WebSocket connections.
pub static CONNECTIONS: Gauge = Gauge::new();
/// Room actors alive on this node.
pub static ROOMS: Gauge = Gauge::new();
/// Entries of the node's socket index (per-address and per-user slots, login
/// sessions with sockets): back to the idle figure once every socket has gone.
pub static SOCKET_INDEX_ENTRIES: Gauge = Gauge::new();
/// Chat frames received from clients.
pub static MESSAGES_RECEIVED: Counter = Counter::new();
/// Chat messages committed to PostgreSQL.
pub static MESSAGES_STORED: Counter = Counter::new();
/// Room events broadcast (one per event, not per socket).
pub static BROADCASTS: Counter = Counter::new();
/// Broadcast frames queued to sockets (one per socket per room event).
pub static DELIVERIES: Counter = Counter::new();
/// Sockets closed as slow consumers (4008).
pub static SLOW_CONSUMERS: Counter = Counter::new();
/// Requests refused by a rate limit.
pub static RATE_LIMITED: Counter = Counter::new();
/// Reactions accepted from clients.
pub static REACTIONS_RECEIVED: Counter = Counter::new();
/// Reactions committed to PostgreSQL.
pub static REACTIONS_STORED: Counter = Counter::new();
/// Events published to Redis.
pub static RELAY_PUBLISHED: Counter = Counter::new();
/// Events received from other nodes.
pub static RELAY_RECEIVED: Counter = Counter::new();
/// Events that could not be published (Redis away or too slow).
pub static RELAY_DROPPED: Counter = Counter::new();
/// Successful (re)connections of the relay subscriber.
pub static RELAY_CONNECTS: Counter = Counter::new();
/// Time from publish on one node to receipt on another.
pub static RELAY_LAG: Histogram = Histogram::new();
/// Messages in storage batches.
pub static BATCH_ROWS: Counter = Counter::new();
/// Storage batch latency.
pub static BATCH_LATENCY: Histogram = Histogram::new();
/// Time from a message's commit to its fan-out to local sockets.
pub static BROADCAST_LATENCY: Histogram = Histogram::new();

/// Records one storage batch.
pub fn observe_batch(rows: usize, took: Duration) {
    BATCH_ROWS.add(rows as u64);
    BATCH_LATENCY.observe(took);
}

/// The whole registry in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::with_capacity(4096);
    let gauges: [(&str, &str, &Gauge); 3] = [
        (
            "stampede_connections",
            "Open WebSocket connections.",
            &CONNECTIONS,
        ),
        ("stampede_rooms", "Room actors on this node.", &ROOMS),
        (
            "stampede_socket_index_entries",
            "Entries of the socket index (address and user slots, login sessions).",
            &SOCKET_INDEX_ENTRIES,
        ),
    ];
    for (name, help, g) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            g.get()
        );
    }
    let counters: [(&str, &str, &Counter); 13] = [
        (
            "stampede_relay_published_total",
            "Events published to Redis.",
            &RELAY_PUBLISHED,
        ),
        (
            "stampede_relay_received_total",
            "Events received from other nodes.",
            &RELAY_RECEIVED,
        ),
        (
            "stampede_relay_dropped_total",
            "Events not published (Redis away).",
            &RELAY_DROPPED,
        ),
        (
            "stampede_relay_connects_total",
            "Relay subscriber (re)connections.",
            &RELAY_CONNECTS,
        ),
        (
            "stampede_reactions_received_total",
            "Reactions accepted.",
            &REACTIONS_RECEIVED,
        ),
        (
            "stampede_reactions_stored_total",
            "Reactions committed.",
            &REACTIONS_STORED,
        ),
        (
            "stampede_messages_received_total",
            "Chat frames received.",
            &MESSAGES_RECEIVED,
        ),
        (
            "stampede_messages_stored_total",
            "Chat messages committed.",
            &MESSAGES_STORED,
        ),
        (
            "stampede_broadcasts_total",
            "Room events broadcast.",
            &BROADCASTS,
        ),
        (
            "stampede_deliveries_total",
            "Broadcast frames queued to sockets.",
            &DELIVERIES,
        ),
        (
            "stampede_slow_consumers_total",
            "Sockets closed as slow consumers.",
            &SLOW_CONSUMERS,
        ),
        (
            "stampede_rate_limited_total",
            "Requests refused by rate limits.",
            &RATE_LIMITED,
        ),
        (
            "stampede_batch_rows_total",
            "Rows written in storage batches.",
            &BATCH_ROWS,
        ),
    ];
    for (name, help, c) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.get()
        );
    }
    BATCH_LATENCY.render(
        "stampede_storage_batch_seconds",
        "Storage batch latency.",
        &mut out,
    );
    BROADCAST_LATENCY.render(
        "stampede_broadcast_seconds",
        "Commit to local fan-out latency.",
        &mut out,
    );
    RELAY_LAG.render(
        "stampede_relay_lag_seconds",
        "Publish to receipt latency between nodes.",
        &mut out,
    );
    out
}
