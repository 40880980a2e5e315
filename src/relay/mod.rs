//! Relaying rooms between nodes. With no `redis.url` the relay is in-process:
//! nothing leaves the node. With Redis, every room event (a stored message, a
//! reaction window, a moderation action, a status or blocked-term change) is
//! published ONCE to the room's channel (`{prefix}:room:{tenant}:{stream}`), or to
//! the tenant's channel (`{prefix}:tenant:{tenant}`) for tenant-wide events such
//! as tenant bans and ended sessions, tagged with this node's id so the origin
//! skips its echo. Each node subscribes, on ONE dedicated pub/sub connection, to
//! the channels of the rooms it runs; publishing and presence use a deadpool
//! pool. Presence is each node's count per room in Redis with a TTL; a room's
//! count is the sum. Redis going away never stops local rooms: publishes are
//! dropped, the subscriber reconnects with backoff and resubscribes, and rooms
//! resynchronise from PostgreSQL when it is back. A node whose control events
//! could not be published tells the others to resynchronise those rooms
//! ([`RelayEvent::Resync`]) once it can publish again.
//!
//! `rediss://` URLs speak TLS (rustls): the server's certificate is checked
//! against the system's roots, or those of `redis.ca_file`, and must name the
//! URL's host. Both the pool and the subscriber's connection are made from the
//! one [`client`].
//! With `redis.cluster` the same events go over a Redis Cluster with sharded
//! pub/sub instead (`sharded`): channel names carry hash tags ([`slots`]),
//! the topology is read and followed ([`cluster`]), and each shard has one
//! subscriber connection speaking RESP itself (`resp`), over TLS with the same
//! checks for a `rediss://` URL.

pub mod cluster;
mod resp;
mod sharded;
pub mod slots;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    config::RedisSettings, domain::Slug, metrics::Metrics, moderation::ModEvent, rooms::RoomKey,
    store::streams::StreamStatus,
};

/// Seconds a node's presence count lives in Redis without a refresh.
pub const PRESENCE_TTL_SECS: u64 = 10;
/// How often presence is refreshed and summed.
pub(crate) const PRESENCE_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for one Redis operation before it counts as failed.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Channels named by one `SUBSCRIBE` (or `UNSUBSCRIBE`) of the subscriber.
const SUBSCRIBE_CHUNK: usize = 1000;

/// A room event relayed between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayEvent {
    /// A stored message: its `message` frame, id, room seq and author.
    Message {
        frame: String,
        id: i64,
        seq: i64,
        user_id: Option<i64>,
        /// From a hidden user: to them and moderators only.
        #[serde(default)]
        hidden: bool,
    },
    /// A message was edited: the `edit` frame and the message's new `message` frame.
    Edit {
        message_id: i64,
        frame: String,
        message: String,
        /// The message is a hidden user's: to them and moderators only.
        #[serde(default)]
        hidden: bool,
        /// Its author.
        #[serde(default)]
        user_id: Option<i64>,
    },
    /// A frame that is sent and never stored (`join` / `leave` notices).
    Announce { frame: String },
    /// The stream's appointed moderators changed: rights are read again.
    Rights,
    /// A message was held for review: its `held` item for moderators.
    Held { held_id: i64, item: String },
    /// One node's reaction window: (stamp id, count).
    Reactions { counts: Vec<(i32, u64)> },
    /// A moderation action already stored and logged.
    Moderation { event: ModEvent },
    /// The stream went live or ended.
    Status { status: StreamStatus },
    /// Blocked terms changed.
    Terms,
    /// A login session ended: close its sockets.
    SessionEnded { key_hash: String, code: u16 },
    /// Every session of a user ended (password change): close their sockets.
    UserSessionsEnded { user_id: i64, code: u16 },
    /// The sender could not publish some of the room's events (stream 0:
    /// the tenant's): read the room again from PostgreSQL, as after an outage.
    Resync,
}

/// What the relay hands to the hub.
#[derive(Debug)]
pub enum Incoming {
    /// An event for one room (`stream_id` 0: every room of the tenant).
    Event {
        slug: Slug,
        stream_id: i64,
        event: RelayEvent,
    },
    /// Summed presence of a room: total across nodes, and this node's count in it.
    Presence { key: RoomKey, total: u64, mine: u64 },
    /// The subscriber lost Redis.
    Down,
    /// The subscriber is connected (again) and resubscribed.
    Up,
    /// A Redis Cluster channel was lost (its shard's connection broke or its
    /// slot moved): its room (`stream_id` 0: every room of the tenant) may
    /// miss events until [`Incoming::Regained`].
    Lost { slug: Slug, stream_id: i64 },
    /// A lost Redis Cluster channel is subscribed again: its rooms catch up
    /// from PostgreSQL.
    Regained { slug: Slug, stream_id: i64 },
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Publisher's wall clock, ms since the epoch (for the relay lag metric).
    sent_ms: u64,
    node: String,
    slug: String,
    stream: i64,
    event: RelayEvent,
}

/// The room channels this node wants, as state rather than a queue of
/// commands: bounded by the rooms that run here, however often they start and
/// stop. The subscriber brings its connection in line when woken. Counted, so
/// a room starting again before its predecessor stopped keeps its channel,
/// and a cluster's tenant channel stays while any room of the tenant runs.
#[derive(Default)]
pub(crate) struct Wanted {
    channels: std::sync::Mutex<HashMap<String, usize>>,
    changed: tokio::sync::Notify,
}

impl Wanted {
    fn set(&self, channel: String, on: bool) {
        {
            let mut channels = self.channels.lock().unwrap();
            if on {
                *channels.entry(channel).or_default() += 1;
            } else if let Some(n) = channels.get_mut(&channel) {
                *n -= 1;
                if *n == 0 {
                    channels.remove(&channel);
                }
            }
        }
        self.changed.notify_one();
    }

    fn snapshot(&self) -> HashSet<String> {
        self.channels.lock().unwrap().keys().cloned().collect()
    }
}

/// Rooms (stream 0: tenants) whose events this node could not publish: the
/// other nodes missed them, and are told to read those rooms again from
/// PostgreSQL ([`RelayEvent::Resync`]) once a publish gets through.
#[derive(Default)]
pub(crate) struct Unsent(std::sync::Mutex<HashSet<(String, i64)>>);

impl Unsent {
    /// Notes an event (its envelope) that was not published, unless other
    /// nodes recover it without being told (messages come from PostgreSQL by
    /// the rooms' sweep; reaction windows and announcements are passing;
    /// every node checks its sockets' sessions every `session.recheck_secs`).
    pub(crate) fn note(&self, payload: &str) {
        #[derive(Deserialize)]
        struct Head {
            slug: String,
            stream: i64,
            event: Kind,
        }
        #[derive(Deserialize)]
        struct Kind {
            kind: String,
        }
        let Ok(head) = serde_json::from_str::<Head>(payload) else {
            return;
        };
        if !matches!(
            head.event.kind.as_str(),
            "message" | "reactions" | "announce" | "session_ended" | "user_sessions_ended"
        ) {
            self.0.lock().unwrap().insert((head.slug, head.stream));
        }
    }

    /// [`Self::note`] for every event of a batch.
    pub(crate) fn note_all(&self, batch: &[(String, String)]) {
        for (_, payload) in batch {
            self.note(payload);
        }
    }

    fn take(&self) -> Vec<(String, i64)> {
        self.0.lock().unwrap().drain().collect()
    }
}

/// Where events go: one Redis, or a Redis Cluster.
enum Backend {
    /// One Redis: a pool for publishing and presence.
    Single { pool: deadpool_redis::Pool },
    /// A Redis Cluster with sharded pub/sub.
    Cluster(Arc<sharded::Cluster>),
}

struct RedisRelay {
    node: String,
    prefix: String,
    backend: Backend,
    publish: mpsc::Sender<(String, String)>,
    wanted: Arc<Wanted>,
    up: Arc<AtomicBool>,
    /// Rooms whose events were not published.
    unsent: Arc<Unsent>,
    /// The node's metrics.
    metrics: Arc<Metrics>,
}

/// The node's relay; cheap to clone.
#[derive(Clone, Default)]
pub struct Relay {
    inner: Option<Arc<RedisRelay>>,
}

/// Local viewer counts of every room on this node (read by the presence task).
pub type LocalCounts = Arc<dyn Fn() -> HashMap<RoomKey, u64> + Send + Sync>;

impl Relay {
    /// A single-node relay: nothing leaves the process.
    pub fn in_process() -> Self {
        Self { inner: None }
    }

    /// Connects to Redis (one server, or a Redis Cluster with `redis.cluster`)
    /// lazily and starts the publisher, subscriber and presence tasks. Incoming
    /// events go to `sink`; what is relayed is counted in `metrics`.
    pub fn redis(
        settings: &RedisSettings,
        node: String,
        counts: LocalCounts,
        sink: mpsc::Sender<Incoming>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let prefix = settings.channel_prefix();
        let (publish, publish_rx) = mpsc::channel(100_000);
        let wanted = Arc::new(Wanted::default());
        let up = Arc::new(AtomicBool::new(false));
        let unsent = Arc::new(Unsent::default());
        let backend = if settings.cluster {
            Backend::Cluster(sharded::Cluster::start(
                client(settings)?.get_connection_info().clone(),
                subscriber_tls(settings)?,
                prefix.clone(),
                node.clone(),
                counts,
                sink,
                wanted.clone(),
                publish_rx,
                unsent.clone(),
                metrics.clone(),
            )?)
        } else {
            let client = client(settings)?;
            let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
                .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
            let pool = deadpool_redis::Pool::builder(manager)
                .max_size(8)
                .wait_timeout(Some(OP_TIMEOUT))
                .create_timeout(Some(OP_TIMEOUT))
                .recycle_timeout(Some(OP_TIMEOUT))
                .runtime(deadpool_redis::Runtime::Tokio1)
                .build()?;
            actix_rt::spawn(publisher(
                pool.clone(),
                publish_rx,
                unsent.clone(),
                metrics.clone(),
            ));
            actix_rt::spawn(subscriber(
                client,
                format!("{prefix}:tenant:*"),
                wanted.clone(),
                sink.clone(),
                node.clone(),
                up.clone(),
                metrics.clone(),
            ));
            actix_rt::spawn(presence(
                pool.clone(),
                prefix.clone(),
                node.clone(),
                counts,
                sink,
            ));
            Backend::Single { pool }
        };
        let inner = Arc::new(RedisRelay {
            node,
            prefix,
            backend,
            publish,
            wanted,
            up,
            unsent,
            metrics,
        });
        actix_rt::spawn(resend_unsent(Arc::downgrade(&inner)));
        Ok(Self { inner: Some(inner) })
    }

    /// True on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|r| matches!(r.backend, Backend::Cluster(_)))
    }

    /// True when events leave this node.
    pub fn is_distributed(&self) -> bool {
        self.inner.is_some()
    }

    /// `None` without Redis; else whether Redis answers a PING now.
    pub async fn redis_ok(&self) -> Option<bool> {
        let r = self.inner.as_ref()?;
        let pool = match &r.backend {
            Backend::Single { pool } => pool,
            Backend::Cluster(c) => return Some(c.is_up()),
        };
        let ping = async {
            let mut conn = pool.get().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        Some(matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Some(_))
        ))
    }

    /// Sockets on a room across every node, as Redis holds the counts now
    /// (`None` without Redis or when it does not answer in time).
    pub async fn presence_total(&self, key: &RoomKey) -> Option<u64> {
        let r = self.inner.as_ref()?;
        let pool = match &r.backend {
            Backend::Single { pool } => pool,
            Backend::Cluster(c) => return c.presence_total(key).await,
        };
        let base = presence_base(&r.prefix, key);
        let read = async {
            let mut conn = pool.get().await.ok()?;
            read_presence_total(&mut conn, &base).await
        };
        tokio::time::timeout(Duration::from_millis(500), read)
            .await
            .ok()
            .flatten()
    }

    /// True while the subscriber is connected (always true in-process).
    pub fn is_up(&self) -> bool {
        self.inner.as_ref().is_none_or(|r| match &r.backend {
            Backend::Single { .. } => r.up.load(Ordering::Relaxed),
            Backend::Cluster(c) => c.is_up(),
        })
    }

    /// Subscribes to a room's channel (its room started on this node); on a
    /// cluster also to its tenant's channel (sharded pub/sub has no patterns).
    pub fn subscribe(&self, key: &RoomKey) {
        self.want(key, true);
    }

    /// Unsubscribes from a room's channel (its room stopped).
    pub fn unsubscribe(&self, key: &RoomKey) {
        self.want(key, false);
    }

    /// Marks a room's channels (on a cluster with its tenant's) wanted or not.
    fn want(&self, key: &RoomKey, on: bool) {
        if let Some(r) = &self.inner {
            r.wanted.set(r.room_channel(key), on);
            if let Backend::Cluster(_) = r.backend {
                r.wanted
                    .set(slots::tenant_channel(&r.prefix, &key.slug), on);
            }
        }
    }

    /// Publishes a room event once (never waits; dropped when Redis is away).
    pub fn publish(&self, key: &RoomKey, event: RelayEvent) {
        if let Some(r) = &self.inner {
            let channel = r.room_channel(key);
            r.send(channel, &key.slug, key.stream_id, event);
        }
    }

    /// Publishes an event for every room of a tenant.
    pub fn publish_tenant(&self, slug: &Slug, event: RelayEvent) {
        if let Some(r) = &self.inner {
            r.send(r.tenant_channel(slug), slug, 0, event);
        }
    }
}

impl RedisRelay {
    /// A room's channel: `{prefix}:room:{tenant}:{stream}`, or with the
    /// room's hash tag on a cluster.
    fn room_channel(&self, key: &RoomKey) -> String {
        match self.backend {
            Backend::Single { .. } => {
                format!("{}:room:{}:{}", self.prefix, key.slug, key.stream_id)
            }
            Backend::Cluster(_) => slots::room_channel(&self.prefix, key),
        }
    }

    /// A tenant's channel: `{prefix}:tenant:{tenant}`, or with its hash tag
    /// on a cluster.
    fn tenant_channel(&self, slug: &Slug) -> String {
        match self.backend {
            Backend::Single { .. } => format!("{}:tenant:{slug}", self.prefix),
            Backend::Cluster(_) => slots::tenant_channel(&self.prefix, slug),
        }
    }

    fn send(&self, channel: String, slug: &Slug, stream: i64, event: RelayEvent) {
        let payload = serde_json::to_string(&Envelope {
            sent_ms: now_ms(),
            node: self.node.clone(),
            slug: slug.to_string(),
            stream,
            event,
        })
        .expect("envelopes serialise");
        if let Err(e) = self.publish.try_send((channel, payload)) {
            self.metrics.relay_dropped.inc();
            let (mpsc::error::TrySendError::Full((_, payload))
            | mpsc::error::TrySendError::Closed((_, payload))) = e;
            self.unsent.note(&payload);
        }
    }
}

/// Every second, tells the other nodes to read again from PostgreSQL the
/// rooms whose events this node could not publish: one
/// [`RelayEvent::Resync`] a room, noted again if it is not published either.
async fn resend_unsent(relay: std::sync::Weak<RedisRelay>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(r) = relay.upgrade() else { return };
        for (slug, stream_id) in r.unsent.take() {
            let Ok(slug) = Slug::parse(&slug) else {
                continue;
            };
            let channel = if stream_id == 0 {
                r.tenant_channel(&slug)
            } else {
                r.room_channel(&RoomKey {
                    slug: slug.clone(),
                    stream_id,
                })
            };
            r.send(channel, &slug, stream_id, RelayEvent::Resync);
        }
    }
}

/// The Redis key of a room's presence: a set of node ids; each node's count
/// is at `{base}:{node}`.
fn presence_base(prefix: &str, key: &RoomKey) -> String {
    format!("{prefix}:presence:{}:{}", key.slug, key.stream_id)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The Redis client of `settings`: `rediss://` with the roots of
/// `redis.ca_file` when it is set, else the system's.
pub fn client(settings: &RedisSettings) -> anyhow::Result<redis::Client> {
    let url = settings.url.as_str();
    let tls = url.starts_with("rediss://");
    if tls {
        crate::tls::install_default_provider();
        if url.ends_with("#insecure") {
            anyhow::bail!(
                "redis.url: #insecure (no certificate check) is not supported; \
                 set redis.ca_file to trust a private CA"
            );
        }
    }
    if settings.ca_file.is_empty() {
        return redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("redis.url is not a valid Redis URL: {e}"));
    }
    if !tls {
        anyhow::bail!("redis.ca_file is set but redis.url is not a rediss:// URL");
    }
    let path = std::path::Path::new(&settings.ca_file);
    // Read and checked here, so a bad file is a startup error naming it.
    crate::tls::roots(Some(path)).map_err(|e| anyhow::anyhow!("redis.ca_file: {e:#}"))?;
    let pem = std::fs::read(path)?;
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .map_err(|e| anyhow::anyhow!("redis.url / redis.ca_file: {e}"))
}

/// For a `rediss://` URL, the TLS of a connection the node makes itself (a
/// cluster shard's subscriber): chain and host name checked against the roots
/// of `redis.ca_file`, else the system's, as the redis crate's connections do.
fn subscriber_tls(settings: &RedisSettings) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    if !settings.url.starts_with("rediss://") {
        return Ok(None);
    }
    let ca_file = (!settings.ca_file.is_empty()).then(|| std::path::Path::new(&settings.ca_file));
    let roots = crate::tls::roots(ca_file).map_err(|e| anyhow::anyhow!("redis TLS: {e:#}"))?;
    let config = crate::tls::client_config(crate::tls::Verify::Full, Some(roots))?;
    Ok(Some(Arc::new(config)))
}

/// For a `rediss://` URL, one connection: a failed TLS handshake (untrusted
/// CA, wrong host name) is an error naming Redis and the reason. Redis not
/// answering is not: the relay connects lazily and retries.
pub async fn check_tls(settings: &RedisSettings) -> anyhow::Result<()> {
    let client = client(settings)?;
    if !settings.url.starts_with("rediss://") {
        return Ok(());
    }
    let connect = client.get_multiplexed_async_connection();
    if let Ok(Err(e)) = tokio::time::timeout(OP_TIMEOUT, connect).await {
        if let Some(r) = crate::tls::rustls_error(&e) {
            anyhow::bail!(
                "Redis TLS failed (redis.url rediss://, {}): {}",
                if settings.ca_file.is_empty() {
                    "system roots".to_string()
                } else {
                    format!("redis.ca_file={}", settings.ca_file)
                },
                crate::tls::reason(r)
            );
        }
        tracing::warn!(error = %e, "Redis does not answer yet; the relay keeps trying");
    }
    Ok(())
}

/// Publishes queued events, several per round trip.
async fn publisher(
    pool: deadpool_redis::Pool,
    mut rx: mpsc::Receiver<(String, String)>,
    unsent: Arc<Unsent>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let n = batch.len() as u64;
        let send = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            publish_batch(&mut conn, "PUBLISH", &batch).await
        };
        match tokio::time::timeout(OP_TIMEOUT, send).await {
            Ok(Ok(())) => metrics.relay_published.add(n),
            Ok(Err(e)) => {
                metrics.relay_dropped.add(n);
                unsent.note_all(&batch);
                tracing::debug!(error = %e, "relay publish failed");
            }
            Err(_) => {
                metrics.relay_dropped.add(n);
                unsent.note_all(&batch);
                tracing::debug!("relay publish timed out");
            }
        }
        batch.clear();
    }
}

/// Sends `(channel, payload)` pairs with `command` (`PUBLISH` or `SPUBLISH`),
/// one pipeline for the whole batch.
pub(crate) async fn publish_batch(
    conn: &mut impl redis::aio::ConnectionLike,
    command: &str,
    batch: &[(String, String)],
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for (channel, payload) in batch {
        pipe.cmd(command).arg(channel).arg(payload).ignore();
    }
    pipe.query_async::<()>(conn)
        .await
        .map_err(|e| e.to_string())
}

/// Keeps ONE pub/sub connection subscribed to the wanted channels, reconnecting
/// with backoff.
async fn subscriber(
    client: redis::Client,
    tenant_pattern: String,
    wanted: Arc<Wanted>,
    sink: mpsc::Sender<Incoming>,
    node: String,
    up: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut subscribed = wanted.snapshot();
        let connected = async {
            let pubsub = client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            sink.psubscribe(&tenant_pattern).await?;
            // Many channels a command: one round trip per channel would not
            // fit thousands of rooms into the timeout on a link of 1 ms.
            let channels: Vec<&String> = subscribed.iter().collect();
            for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                sink.subscribe(chunk).await?;
            }
            Ok::<_, redis::RedisError>((sink, stream))
        };
        let (mut sub, mut stream) = match tokio::time::timeout(OP_TIMEOUT, connected).await {
            Ok(Ok(pair)) => pair,
            other => {
                up.store(false, Ordering::Relaxed);
                if let Ok(Err(e)) = other {
                    match crate::tls::rustls_error(&e) {
                        Some(r) => {
                            tracing::warn!(reason = %crate::tls::reason(r), "relay: Redis TLS failed")
                        }
                        None => tracing::debug!(error = %e, "relay subscriber cannot connect"),
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        up.store(true, Ordering::Relaxed);
        metrics.relay_connects.inc();
        tracing::info!("relay subscribed");
        let _ = sink.send(Incoming::Up).await;
        let mut ping = tokio::time::interval(Duration::from_secs(3));
        ping.tick().await;
        loop {
            tokio::select! {
                _ = wanted.changed.notified() => {
                    // Bring the connection in line with what the rooms want now.
                    let now = wanted.snapshot();
                    let mut ok = true;
                    let new: Vec<&String> = now.difference(&subscribed).collect();
                    for chunk in new.chunks(SUBSCRIBE_CHUNK) {
                        ok &= matches!(tokio::time::timeout(OP_TIMEOUT, sub.subscribe(chunk)).await, Ok(Ok(())));
                    }
                    let gone: Vec<&String> = subscribed.difference(&now).collect();
                    for chunk in gone.chunks(SUBSCRIBE_CHUNK) {
                        ok &= matches!(tokio::time::timeout(OP_TIMEOUT, sub.unsubscribe(chunk)).await, Ok(Ok(())));
                    }
                    subscribed = now;
                    if !ok {
                        break;
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let Ok(env) = serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) else {
                        continue;
                    };
                    if env.node == node {
                        continue;
                    }
                    let Ok(slug) = Slug::parse(&env.slug) else { continue };
                    metrics.relay_received.inc();
                    metrics.relay_lag.observe(Duration::from_millis(now_ms().saturating_sub(env.sent_ms)));
                    // Waiting here is the backpressure: Redis buffers, and drops
                    // a subscriber that stays behind; it then resubscribes and
                    // rooms catch up from PostgreSQL.
                    if sink.send(Incoming::Event { slug, stream_id: env.stream, event: env.event }).await.is_err() {
                        return;
                    }
                }
                _ = ping.tick() => {
                    let r = tokio::time::timeout(OP_TIMEOUT, sub.ping::<redis::Value>()).await;
                    if !matches!(r, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::warn!("relay lost Redis; reconnecting");
        up.store(false, Ordering::Relaxed);
        let _ = sink.send(Incoming::Down).await;
    }
}

/// Every few seconds: write this node's count per room (with a TTL) and read the sums.
async fn presence(
    pool: deadpool_redis::Pool,
    prefix: String,
    node: String,
    counts: LocalCounts,
    sink: mpsc::Sender<Incoming>,
) {
    let mut reported: HashSet<RoomKey> = HashSet::new();
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tick.tick().await;
        let local = counts();
        let work = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            let gone: Vec<RoomKey> = reported
                .iter()
                .filter(|k| !local.contains_key(*k))
                .cloned()
                .collect();
            let keys: Vec<(RoomKey, u64)> = local.iter().map(|(k, n)| (k.clone(), *n)).collect();
            presence_round(&mut conn, |k| presence_base(&prefix, k), &node, &gone, keys).await
        };
        match tokio::time::timeout(OP_TIMEOUT, work).await {
            Ok(Ok(sums)) => {
                reported = sums.iter().map(|(k, _, _)| k.clone()).collect();
                for (key, total, mine) in sums {
                    let _ = sink.try_send(Incoming::Presence { key, total, mine });
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "presence refresh failed"),
            Err(_) => tracing::debug!("presence refresh timed out"),
        }
    }
}

/// Every node's count of the room whose presence keys start with `base`,
/// summed (one room's keys only, so one slot on a cluster).
pub(crate) async fn read_presence_total<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    base: &str,
) -> Option<u64> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(base)
        .query_async(conn)
        .await
        .ok()?;
    if nodes.is_empty() {
        return Some(0);
    }
    let names: Vec<String> = nodes.iter().map(|n| format!("{base}:{n}")).collect();
    let counts: Vec<Option<u64>> = redis::cmd("MGET").arg(names).query_async(conn).await.ok()?;
    Some(counts.into_iter().flatten().sum())
}

/// One presence round on one connection: forget this node's counts of `gone`
/// rooms, write its counts of `keys` (with a TTL) and read every node's counts
/// back. Every command names one room's keys only, so on a cluster (where
/// `base` gives the room's hash tag) each stays within one slot. Gives
/// (room, total, this node's count).
pub(crate) async fn presence_round<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    base: impl Fn(&RoomKey) -> String,
    node: &str,
    gone: &[RoomKey],
    keys: Vec<(RoomKey, u64)>,
) -> Result<Vec<(RoomKey, u64, u64)>, String> {
    let mut pipe = redis::pipe();
    for k in gone {
        let base = base(k);
        pipe.cmd("DEL").arg(format!("{base}:{node}")).ignore();
        pipe.cmd("SREM").arg(&base).arg(node).ignore();
    }
    for (k, n) in &keys {
        let base = base(k);
        pipe.cmd("SET")
            .arg(format!("{base}:{node}"))
            .arg(*n)
            .arg("EX")
            .arg(PRESENCE_TTL_SECS)
            .ignore();
        pipe.cmd("SADD").arg(&base).arg(node).ignore();
        pipe.cmd("EXPIRE")
            .arg(&base)
            .arg(PRESENCE_TTL_SECS * 6)
            .ignore();
        pipe.cmd("SMEMBERS").arg(&base);
    }
    let members: Vec<Vec<String>> = pipe.query_async(conn).await.map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for ((k, _), nodes) in keys.iter().zip(&members) {
        let base = base(k);
        let names: Vec<String> = nodes.iter().map(|n| format!("{base}:{n}")).collect();
        pipe.cmd("MGET").arg(names);
    }
    let values: Vec<Vec<Option<u64>>> = if keys.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(conn).await.map_err(|e| e.to_string())?
    };
    Ok(keys
        .into_iter()
        .zip(values)
        .map(|((key, mine), vals)| (key, vals.into_iter().flatten().sum(), mine))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unpublished control events mark their room (or tenant) for a resync;
    /// messages, reaction windows and announcements, which other nodes get
    /// back or can do without, do not.
    #[test]
    fn unsent_control_events_mark_their_room_once() {
        let envelope = |stream, event| {
            serde_json::to_string(&Envelope {
                sent_ms: 0,
                node: "n".into(),
                slug: "acme".into(),
                stream,
                event,
            })
            .unwrap()
        };
        let unsent = Unsent::default();
        let message = RelayEvent::Message {
            frame: "{}".into(),
            id: 1,
            seq: 1,
            user_id: None,
            hidden: false,
        };
        unsent.note(&envelope(7, message));
        unsent.note(&envelope(7, RelayEvent::Reactions { counts: vec![] }));
        unsent.note(&envelope(7, RelayEvent::Announce { frame: "{}".into() }));
        let ended = RelayEvent::UserSessionsEnded {
            user_id: 3,
            code: 4001,
        };
        unsent.note(&envelope(0, ended));
        assert!(unsent.take().is_empty());
        unsent.note(&envelope(7, RelayEvent::Terms));
        unsent.note(&envelope(7, RelayEvent::Resync));
        unsent.note(&envelope(0, RelayEvent::Terms));
        let mut marked = unsent.take();
        marked.sort();
        assert_eq!(marked, [("acme".to_string(), 0), ("acme".to_string(), 7)]);
        assert!(unsent.take().is_empty(), "taken once");
    }

    fn settings(url: &str, ca_file: &str) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            prefix: String::new(),
            ca_file: ca_file.into(),
            cluster: false,
        }
    }

    #[test]
    fn tls_urls_and_ca_files_are_checked_before_connecting() {
        assert!(client(&settings("rediss://127.0.0.1:6380", "")).is_ok());
        let e = client(&settings("rediss://127.0.0.1:6380/#insecure", ""))
            .err()
            .unwrap();
        assert!(e.to_string().contains("#insecure"), "{e}");
        let e = client(&settings("redis://127.0.0.1:6379", "/etc/ca.pem"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a rediss://"), "{e}");
        let e = client(&settings("rediss://127.0.0.1:6380", "/nonexistent/ca.pem"))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
    }

    #[test]
    fn wanted_channels_are_counted() {
        let w = Wanted::default();
        // A room starting again before its predecessor stopped keeps its channel.
        w.set("room".into(), true);
        w.set("room".into(), true);
        w.set("room".into(), false);
        assert_eq!(w.snapshot(), HashSet::from(["room".to_string()]));
        w.set("room".into(), false);
        assert!(w.snapshot().is_empty());
        // More stops than starts never underflow.
        w.set("room".into(), false);
        assert!(w.snapshot().is_empty());
    }
}
