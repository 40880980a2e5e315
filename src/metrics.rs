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

/// One Redis Cluster shard as this node sees it (see `relay::sharded`).
#[derive(Default)]
pub struct ShardStats {
    /// Its subscriber connection is up.
    pub connected: std::sync::atomic::AtomicBool,
    /// Channels it confirmed subscribed on that connection.
    pub subscriptions: AtomicU64,
    /// Events that could not be published to it.
    pub publish_errors: AtomicU64,
}

/// The shards of the Redis Cluster, by primary address (empty without one).
static SHARDS: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<ShardStats>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The stats of the shard whose primary is `addr` (registered on first use).
pub fn shard(addr: &str) -> std::sync::Arc<ShardStats> {
    SHARDS
        .lock()
        .unwrap()
        .entry(addr.to_string())
        .or_default()
        .clone()
}

/// Forgets shards whose primary is no longer one.
pub fn retain_shards(primaries: &std::collections::BTreeSet<String>) {
    SHARDS.lock().unwrap().retain(|a, _| primaries.contains(a));
}

/// Every shard: (primary address, stats).
pub fn shards() -> Vec<(String, std::sync::Arc<ShardStats>)> {
    SHARDS
        .lock()
        .unwrap()
        .iter()
        .map(|(a, s)| (a.clone(), s.clone()))
        .collect()
}

/// Records one storage batch.
pub fn observe_batch(rows: usize, took: Duration) {
    BATCH_ROWS.add(rows as u64);
    BATCH_LATENCY.observe(took);
}

/// Webhook events waiting in the outboxes this node scanned last.
pub static WEBHOOK_QUEUE: Gauge = Gauge::new();
/// Age in seconds of the oldest undelivered webhook event (at the last scan).
pub static WEBHOOK_OLDEST_SECS: Gauge = Gauge::new();
/// Webhook attempts acknowledged with a 2xx.
pub static WEBHOOK_DELIVERED: Counter = Counter::new();
/// Webhook attempts that failed (a non-2xx answer, a timeout, no connection).
pub static WEBHOOK_FAILED: Counter = Counter::new();
/// Webhook events given up after the retry window.
pub static WEBHOOK_GAVE_UP: Counter = Counter::new();
/// Webhook endpoints disabled after failing for the disable window.
pub static WEBHOOK_DISABLED: Counter = Counter::new();

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
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
    render_shards(&mut out);
    let _ = writeln!(
        out,
        "# HELP stampede_webhook_queue Webhook events waiting for delivery.\n\
         # TYPE stampede_webhook_queue gauge\nstampede_webhook_queue {}\n\
         # HELP stampede_webhook_oldest_seconds Age of the oldest undelivered webhook event.\n\
         # TYPE stampede_webhook_oldest_seconds gauge\nstampede_webhook_oldest_seconds {}",
        WEBHOOK_QUEUE.get(),
        WEBHOOK_OLDEST_SECS.get()
    );
    let _ = writeln!(
        out,
        "# HELP stampede_webhook_deliveries_total Webhook delivery attempts by outcome.\n\
         # TYPE stampede_webhook_deliveries_total counter"
    );
    for (outcome, c) in [
        ("delivered", &WEBHOOK_DELIVERED),
        ("failed", &WEBHOOK_FAILED),
        ("gave_up", &WEBHOOK_GAVE_UP),
        ("disabled", &WEBHOOK_DISABLED),
    ] {
        let _ = writeln!(
            out,
            "stampede_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}",
            c.get()
        );
    }
    out
}

/// Per-shard series of a Redis Cluster (nothing without one).
fn render_shards(out: &mut String) {
    let shards = shards();
    if shards.is_empty() {
        return;
    }
    type Read = fn(&ShardStats) -> u64;
    let series: [(&str, &str, &str, Read); 3] = [
        (
            "stampede_redis_shard_connected",
            "gauge",
            "1 while the shard's subscriber connection is up.",
            |s| u64::from(s.connected.load(Relaxed)),
        ),
        (
            "stampede_redis_shard_subscriptions",
            "gauge",
            "Channels subscribed on the shard.",
            |s| s.subscriptions.load(Relaxed),
        ),
        (
            "stampede_redis_shard_publish_errors_total",
            "counter",
            "Events that could not be published to the shard.",
            |s| s.publish_errors.load(Relaxed),
        ),
    ];
    for (name, kind, help, read) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (addr, s) in &shards {
            let _ = writeln!(out, "{name}{{shard=\"{addr}\"}} {}", read(s));
        }
    }
}
