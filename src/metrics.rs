//! A node's counters, gauges and histograms: one [`Metrics`] per
//! `Application`, shared as `Arc<Metrics>` by every component that records,
//! rendered at `/metrics` in the Prometheus text format. Plain atomics:
//! recording is a relaxed add, never a lock; two apps in one process (the
//! tests) count apart.
//!
//! Not a Prometheus crate: prometheus-client writes OpenMetrics (`_total`
//! added, `# EOF`), prometheus brings protobuf; our format stays as it is.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};

/// A monotonically increasing counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
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
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
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
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

/// Bucket bounds of latency histograms, in seconds.
const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
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

/// Every series of one node. Built once per `Application` and shared as
/// `Arc<Metrics>`; dropped with the last component that records.
#[derive(Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Room actors alive on this node.
    pub rooms: Gauge,
    /// Entries of the node's socket index (per-address and per-user slots, login
    /// sessions with sockets): back to the idle figure once every socket has gone.
    pub socket_index_entries: Gauge,
    /// Chat frames received from clients.
    pub messages_received: Counter,
    /// Chat messages committed to PostgreSQL.
    pub messages_stored: Counter,
    /// Chat messages sent out: `message` frames queued to sockets (one per
    /// socket per message).
    pub messages_sent: Counter,
    /// Room events broadcast (one per event, not per socket).
    pub broadcasts: Counter,
    /// Broadcast frames queued to sockets (one per socket per room event).
    pub deliveries: Counter,
    /// Sockets closed as slow consumers (4008).
    pub slow_consumers: Counter,
    /// Requests refused by a rate limit.
    pub rate_limited: Counter,
    /// Reaction frames read from client sockets (before the room's rules).
    pub reaction_frames: Counter,
    /// Reactions accepted from clients.
    pub reactions_received: Counter,
    /// Reactions committed to PostgreSQL.
    pub reactions_stored: Counter,
    /// Events published to Redis.
    pub relay_published: Counter,
    /// Events received from other nodes.
    pub relay_received: Counter,
    /// Events that could not be published (Redis away or too slow).
    pub relay_dropped: Counter,
    /// Successful (re)connections of the relay subscriber.
    pub relay_connects: Counter,
    /// Time from publish on one node to receipt on another.
    pub relay_lag: Histogram,
    /// Reads of a room's missed messages from PostgreSQL (a gap, a sweep
    /// that found the room behind, a resync).
    pub catch_ups: Counter,
    /// Reads of the node's sweep (one per tenant with rooms, every 2 s).
    pub sweeps: Counter,
    /// Reads of tenant roles for rooms' logged-in members (one per tenant
    /// with such rooms, every 5 s).
    pub role_reads: Counter,
    /// Messages in storage batches.
    pub batch_rows: Counter,
    /// Storage batch latency.
    pub batch_latency: Histogram,
    /// Time from a message's commit to its fan-out to local sockets.
    pub broadcast_latency: Histogram,
    /// Webhook events waiting in the outboxes this node scanned last.
    pub webhook_queue: Gauge,
    /// Age in seconds of the oldest undelivered webhook event (at the last scan).
    pub webhook_oldest_secs: Gauge,
    /// Webhook attempts acknowledged with a 2xx.
    pub webhook_delivered: Counter,
    /// Webhook attempts that failed (a non-2xx answer, a timeout, no connection).
    pub webhook_failed: Counter,
    /// Webhook events given up after the retry window.
    pub webhook_gave_up: Counter,
    /// Webhook endpoints disabled after failing for the disable window.
    pub webhook_disabled: Counter,
    /// The shards of the Redis Cluster, by primary address (empty without one).
    shards: Mutex<BTreeMap<String, Arc<ShardStats>>>,
}

/// One Redis Cluster shard as this node sees it (see `relay::sharded`).
#[derive(Default)]
pub struct ShardStats {
    /// Its subscriber connection is up.
    pub connected: AtomicBool,
    /// Channels it confirmed subscribed on that connection.
    pub subscriptions: AtomicU64,
    /// Events that could not be published to it.
    pub publish_errors: AtomicU64,
}

impl Metrics {
    /// The stats of the shard whose primary is `addr` (registered on first use).
    pub fn shard(&self, addr: &str) -> Arc<ShardStats> {
        self.shards
            .lock()
            .unwrap()
            .entry(addr.to_string())
            .or_default()
            .clone()
    }

    /// Forgets shards whose primary is no longer one.
    pub fn retain_shards(&self, primaries: &BTreeSet<String>) {
        self.shards
            .lock()
            .unwrap()
            .retain(|a, _| primaries.contains(a));
    }

    /// Every shard: (primary address, stats).
    pub fn shards(&self) -> Vec<(String, Arc<ShardStats>)> {
        self.shards
            .lock()
            .unwrap()
            .iter()
            .map(|(a, s)| (a.clone(), s.clone()))
            .collect()
    }

    /// Records one storage batch.
    pub fn observe_batch(&self, rows: usize, took: Duration) {
        self.batch_rows.add(rows as u64);
        self.batch_latency.observe(took);
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges: [(&str, &str, &Gauge); 3] = [
            (
                "stampede_connections",
                "Open WebSocket connections.",
                &self.connections,
            ),
            ("stampede_rooms", "Room actors on this node.", &self.rooms),
            (
                "stampede_socket_index_entries",
                "Entries of the socket index (address and user slots, login sessions).",
                &self.socket_index_entries,
            ),
        ];
        for (name, help, g) in gauges {
            plain(&mut out, name, "gauge", help, g.get());
        }
        if let Some(heap) = crate::memory::heap() {
            plain(
                &mut out,
                "stampede_heap_allocated_bytes",
                "gauge",
                "Bytes allocated and not freed (jemalloc).",
                heap.allocated,
            );
            plain(
                &mut out,
                "stampede_heap_resident_bytes",
                "gauge",
                "Resident bytes of the allocator's pages (jemalloc).",
                heap.resident,
            );
        }
        let counters: [(&str, &str, &Counter); 18] = [
            (
                "stampede_relay_published_total",
                "Events published to Redis.",
                &self.relay_published,
            ),
            (
                "stampede_relay_received_total",
                "Events received from other nodes.",
                &self.relay_received,
            ),
            (
                "stampede_relay_dropped_total",
                "Events not published (Redis away).",
                &self.relay_dropped,
            ),
            (
                "stampede_relay_connects_total",
                "Relay subscriber (re)connections.",
                &self.relay_connects,
            ),
            (
                "stampede_reaction_frames_total",
                "Reaction frames read from sockets.",
                &self.reaction_frames,
            ),
            (
                "stampede_reactions_received_total",
                "Reactions accepted.",
                &self.reactions_received,
            ),
            (
                "stampede_reactions_stored_total",
                "Reactions committed.",
                &self.reactions_stored,
            ),
            (
                "stampede_messages_received_total",
                "Chat frames received.",
                &self.messages_received,
            ),
            (
                "stampede_messages_stored_total",
                "Chat messages committed.",
                &self.messages_stored,
            ),
            (
                "stampede_messages_sent_total",
                "Chat message frames queued to sockets.",
                &self.messages_sent,
            ),
            (
                "stampede_broadcasts_total",
                "Room events broadcast.",
                &self.broadcasts,
            ),
            (
                "stampede_deliveries_total",
                "Broadcast frames queued to sockets.",
                &self.deliveries,
            ),
            (
                "stampede_slow_consumers_total",
                "Sockets closed as slow consumers.",
                &self.slow_consumers,
            ),
            (
                "stampede_rate_limited_total",
                "Requests refused by rate limits.",
                &self.rate_limited,
            ),
            (
                "stampede_catch_ups_total",
                "Reads of a room's missed messages from PostgreSQL.",
                &self.catch_ups,
            ),
            (
                "stampede_sweeps_total",
                "Reads of the rooms' latest seqs by the node's sweep.",
                &self.sweeps,
            ),
            (
                "stampede_role_reads_total",
                "Reads of tenant roles for rooms' logged-in members.",
                &self.role_reads,
            ),
            (
                "stampede_batch_rows_total",
                "Rows written in storage batches.",
                &self.batch_rows,
            ),
        ];
        for (name, help, c) in counters {
            plain(&mut out, name, "counter", help, c.get());
        }
        self.batch_latency.render(
            "stampede_storage_batch_seconds",
            "Storage batch latency.",
            &mut out,
        );
        self.broadcast_latency.render(
            "stampede_broadcast_seconds",
            "Commit to local fan-out latency.",
            &mut out,
        );
        self.relay_lag.render(
            "stampede_relay_lag_seconds",
            "Publish to receipt latency between nodes.",
            &mut out,
        );
        self.render_shards(&mut out);
        let _ = writeln!(
            out,
            "# HELP stampede_webhook_queue Webhook events waiting for delivery.\n\
             # TYPE stampede_webhook_queue gauge\nstampede_webhook_queue {}\n\
             # HELP stampede_webhook_oldest_seconds Age of the oldest undelivered webhook event.\n\
             # TYPE stampede_webhook_oldest_seconds gauge\nstampede_webhook_oldest_seconds {}",
            self.webhook_queue.get(),
            self.webhook_oldest_secs.get()
        );
        let _ = writeln!(
            out,
            "# HELP stampede_webhook_deliveries_total Webhook delivery attempts by outcome.\n\
             # TYPE stampede_webhook_deliveries_total counter"
        );
        for (outcome, c) in [
            ("delivered", &self.webhook_delivered),
            ("failed", &self.webhook_failed),
            ("gave_up", &self.webhook_gave_up),
            ("disabled", &self.webhook_disabled),
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
    fn render_shards(&self, out: &mut String) {
        let shards = self.shards();
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
}

/// One series without labels: its HELP, TYPE and value.
fn plain(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_counter_with_its_help_and_type() {
        let m = Metrics::default();
        m.messages_received.inc();
        m.messages_received.add(2);
        let text = m.render();
        assert!(text.contains(
            "# HELP stampede_messages_received_total Chat frames received.\n\
             # TYPE stampede_messages_received_total counter\n\
             stampede_messages_received_total 3\n"
        ));
        assert!(text.contains("\nstampede_messages_stored_total 0\n"));
        assert!(
            !text.contains("stampede_redis_shard"),
            "no cluster, no shards"
        );
    }

    #[test]
    fn renders_a_histogram_with_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_batch(3, Duration::from_micros(700));
        m.observe_batch(5, Duration::from_secs(3));
        let text = m.render();
        assert!(text.contains("\nstampede_batch_rows_total 8\n"));
        assert!(text.contains(
            "# HELP stampede_storage_batch_seconds Storage batch latency.\n\
             # TYPE stampede_storage_batch_seconds histogram\n\
             stampede_storage_batch_seconds_bucket{le=\"0.0005\"} 0\n\
             stampede_storage_batch_seconds_bucket{le=\"0.001\"} 1\n"
        ));
        assert!(text.contains("stampede_storage_batch_seconds_bucket{le=\"2.5\"} 1\n"));
        assert!(text.contains(
            "stampede_storage_batch_seconds_bucket{le=\"+Inf\"} 2\n\
             stampede_storage_batch_seconds_sum 3.0007\n\
             stampede_storage_batch_seconds_count 2\n"
        ));
    }

    #[test]
    fn registries_count_apart() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.connections.inc();
        a.shard("10.0.0.1:7000")
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(b.connections.get(), 0);
        assert!(b.shards().is_empty());
        assert!(a
            .render()
            .contains("stampede_redis_shard_connected{shard=\"10.0.0.1:7000\"} 1\n"));
    }
}
