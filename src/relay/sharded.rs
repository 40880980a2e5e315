//! The relay over a Redis Cluster with sharded pub/sub (`redis.cluster`).
//!
//! Every channel and key carries its room's hash tag (see [`super::slots`]),
//! so one room lives on one shard and rooms spread over all of them. A
//! manager task keeps the cluster's topology and places each wanted channel
//! on the primary owning its slot; each primary has ONE subscriber connection
//! (its own task) that brings its `SSUBSCRIBE`s in line with what is placed
//! on it, pipelined in one write. Each shard also has its own publisher,
//! sending one pipeline of `SPUBLISH` per batch (a slow shard delays only its
//! own rooms); presence sends one pipeline per shard.
//!
//! Topology changes: a broken subscriber connection, an error reply, a
//! server-side `sunsubscribe` (the slot moved) or a failed publish make the
//! manager read the topology again. Every channel that was lost (its
//! connection broke, its slot moved) is reported with [`Incoming::Lost`];
//! when it is subscribed again, wherever it now lives, [`Incoming::Regained`]
//! makes its rooms resynchronise from PostgreSQL, which fills what was
//! published meanwhile; the rooms' sequencers drop what they already have.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{atomic::Ordering, Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use redis::aio::MultiplexedConnection;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::{mpsc, watch, Notify},
};
use tokio_rustls::TlsConnector;

use super::{
    cluster::{self, Topology},
    presence_round, resp,
    resp::Resp,
    slots::{self, key_slot},
    Envelope, Incoming, LocalCounts, Wanted, OP_TIMEOUT, PRESENCE_EVERY,
};
use crate::{metrics::Metrics, rooms::RoomKey};

/// How often the topology is read even when nothing failed.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(5);
/// How often an idle subscriber connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How often a subscriber retries channels placed on it but not subscribed
/// (refused or dropped by the server while the topology was out of date).
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Events waiting for one shard's publisher.
const SHARD_QUEUE: usize = 20_000;
/// Longest backoff between reconnects to one shard.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One shard's part of a presence round: rooms gone from this node, and this
/// node's count in each room it runs.
type ShardPresence = (Vec<RoomKey>, Vec<(RoomKey, u64)>);

/// The reading half of a subscriber connection (plain TCP or TLS), buffered.
type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
/// The writing half of a subscriber connection.
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The cluster relay's shared state.
pub(super) struct Cluster {
    /// The configured URL (credentials, TLS; its address is the first seed).
    info: redis::ConnectionInfo,
    /// TLS of the subscriber connections, for a `rediss://` URL (the command
    /// connections take theirs from `info`).
    tls: Option<TlsConnector>,
    /// `host:port` of the configured URL.
    seed: String,
    prefix: String,
    node: String,
    topology: RwLock<Arc<Topology>>,
    /// When the topology was last read successfully.
    read_at: Mutex<Option<Instant>>,
    /// Command connections (publish, presence) by primary.
    conns: Mutex<HashMap<String, MultiplexedConnection>>,
    /// Asks the manager to read the topology again.
    refresh: Notify,
    /// Channels lost (connection broken, slot moved) and not yet subscribed again.
    lost: Mutex<HashSet<String>>,
    /// Rooms whose events were not published.
    unsent: Arc<super::Unsent>,
    sink: mpsc::Sender<Incoming>,
    /// The node's metrics, with a series per shard.
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// Starts the manager, publisher and presence tasks.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        info: redis::ConnectionInfo,
        tls: Option<Arc<rustls::ClientConfig>>,
        prefix: String,
        node: String,
        counts: LocalCounts,
        sink: mpsc::Sender<Incoming>,
        wanted: Arc<Wanted>,
        publish_rx: mpsc::Receiver<(String, String)>,
        unsent: Arc<super::Unsent>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let seed = cluster::seed_addr(&info).map_err(|e| anyhow::anyhow!(e))?;
        let c = Arc::new(Self {
            info,
            tls: tls.map(TlsConnector::from),
            seed,
            prefix,
            node,
            topology: RwLock::default(),
            read_at: Mutex::new(None),
            conns: Mutex::default(),
            refresh: Notify::new(),
            lost: Mutex::default(),
            unsent,
            sink,
            metrics,
        });
        actix_rt::spawn(c.clone().manager(wanted));
        actix_rt::spawn(c.clone().publisher(publish_rx));
        actix_rt::spawn(c.clone().presence(counts));
        Ok(c)
    }

    fn topology(&self) -> Arc<Topology> {
        self.topology.read().unwrap().clone()
    }

    /// The primary owning a channel or key now.
    fn owner(&self, name: &str) -> Option<String> {
        self.topology().owner(key_slot(name)).map(str::to_string)
    }

    /// A command connection to `addr` (kept and shared until it fails).
    async fn conn(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        if let Some(c) = self.conns.lock().unwrap().get(addr) {
            return Ok(c.clone());
        }
        let client =
            redis::Client::open(cluster::info_for(&self.info, addr)?).map_err(|e| e.to_string())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        self.conns
            .lock()
            .unwrap()
            .insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// Drops `addr`'s command connection after a failure and asks for the topology.
    fn failed(&self, addr: &str) {
        self.conns.lock().unwrap().remove(addr);
        self.refresh.notify_one();
    }

    /// True when the topology is fresh and complete and every shard's
    /// subscriber is connected.
    pub(super) fn is_up(&self) -> bool {
        let fresh = self
            .read_at
            .lock()
            .unwrap()
            .is_some_and(|t| t.elapsed() < TOPOLOGY_EVERY * 3);
        let topology = self.topology();
        fresh
            && topology.covers_all()
            && topology
                .primaries()
                .iter()
                .all(|a| self.metrics.shard(a).connected.load(Ordering::Relaxed))
    }

    /// Sockets on a room across every node, read from its shard.
    pub(super) async fn presence_total(&self, key: &RoomKey) -> Option<u64> {
        let base = slots::presence_base(&self.prefix, key);
        let addr = self.owner(&base)?;
        let read = async {
            let mut conn = self.conn(&addr).await.ok()?;
            super::read_presence_total(&mut conn, &base).await
        };
        let r = tokio::time::timeout(Duration::from_millis(500), read)
            .await
            .ok()
            .flatten();
        if r.is_none() {
            self.failed(&addr);
        }
        r
    }

    /// Candidates to ask for the topology: every node known, then the seed.
    fn candidates(&self) -> Vec<String> {
        let topology = self.topology();
        let mut out: Vec<String> = topology.primaries().into_iter().collect();
        for n in topology.nodes() {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        if !out.contains(&self.seed) {
            out.push(self.seed.clone());
        }
        out
    }

    /// Tells the hub a channel's rooms may have missed events (`up` false) or
    /// that it is subscribed again and they should catch up (`up` true).
    async fn report(&self, channel: &str, up: bool) {
        let Some((slug, stream_id)) = slots::parse_channel(&self.prefix, channel) else {
            return;
        };
        let msg = if up {
            Incoming::Regained { slug, stream_id }
        } else {
            Incoming::Lost { slug, stream_id }
        };
        let _ = self.sink.send(msg).await;
    }

    /// Marks channels lost and reports them.
    async fn lose(&self, channels: impl IntoIterator<Item = String>) {
        let mut fresh = Vec::new();
        {
            let mut lost = self.lost.lock().unwrap();
            for c in channels {
                if lost.insert(c.clone()) {
                    fresh.push(c);
                }
            }
        }
        for c in fresh {
            self.report(&c, false).await;
        }
    }

    /// Reads the topology when asked (and every few seconds), starts a
    /// subscriber for every primary and places every wanted channel on the
    /// primary owning its slot.
    async fn manager(self: Arc<Self>, wanted: Arc<Wanted>) {
        let mut shards: HashMap<String, watch::Sender<BTreeSet<String>>> = HashMap::new();
        let mut placed: HashMap<String, String> = HashMap::new();
        let mut tick = tokio::time::interval(TOPOLOGY_EVERY);
        let mut stale = true;
        loop {
            if stale {
                match cluster::discover(&self.info, &self.candidates()).await {
                    Ok(t) => {
                        if *self.topology() != t {
                            tracing::info!(primaries = ?t.primaries(), "redis cluster topology");
                        }
                        *self.topology.write().unwrap() = Arc::new(t);
                        *self.read_at.lock().unwrap() = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the redis cluster topology"),
                }
            }
            let topology = self.topology();
            let primaries = topology.primaries();
            for addr in &primaries {
                shards.entry(addr.clone()).or_insert_with(|| {
                    let (tx, rx) = watch::channel(BTreeSet::new());
                    actix_rt::spawn(self.clone().shard(addr.clone(), rx));
                    tx
                });
            }
            // Retired primaries: dropping the sender ends their subscriber.
            shards.retain(|addr, _| primaries.contains(addr));
            self.metrics.retain_shards(&primaries);

            let want = wanted.snapshot();
            self.lost.lock().unwrap().retain(|c| want.contains(c));
            let mut per: HashMap<&str, BTreeSet<String>> = HashMap::new();
            let mut moved = Vec::new();
            let mut next = HashMap::with_capacity(want.len());
            for channel in want {
                let Some(addr) = topology.owner(key_slot(&channel)) else {
                    moved.push(channel);
                    continue;
                };
                if placed.get(&channel).is_some_and(|old| old != addr) {
                    moved.push(channel.clone());
                }
                per.entry(addr).or_default().insert(channel.clone());
                next.insert(channel, addr.to_string());
            }
            placed = next;
            self.lose(moved).await;
            for (addr, tx) in &shards {
                let set = per.remove(addr.as_str()).unwrap_or_default();
                tx.send_if_modified(|current| {
                    let changed = *current != set;
                    *current = set;
                    changed
                });
            }
            stale = false;
            tokio::select! {
                _ = wanted.changed.notified() => {}
                _ = self.refresh.notified() => {
                    // Let a burst of failures settle into one read.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    stale = true;
                }
                _ = tick.tick() => stale = true,
                // Not every slot has a primary yet (starting, failing over):
                // ask again soon.
                _ = tokio::time::sleep(Duration::from_secs(1)), if !topology.covers_all() => {
                    stale = true;
                }
            }
        }
    }

    /// Opens a subscriber connection to `addr`: over TLS for a `rediss://`
    /// URL (the certificate must name `addr`'s host), authenticated when the
    /// URL has credentials.
    async fn subscriber_connection(&self, addr: &str) -> std::io::Result<(Reader, Writer)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut read, mut write): (Reader, Writer) = match &self.tls {
            None => {
                let (r, w) = stream.into_split();
                (BufReader::new(Box::new(r)), Box::new(w))
            }
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
                let (r, w) = tokio::io::split(tls.connect(name, stream).await?);
                (BufReader::new(Box::new(r)), Box::new(w))
            }
        };
        let settings = self.info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            write
                .write_all(&auth.arg(password).get_packed_command())
                .await?;
            if let Resp::Error(e) = resp::read(&mut read).await? {
                return Err(std::io::Error::other(format!("AUTH: {e}")));
            }
        }
        Ok((read, write))
    }

    /// One shard's subscriber: ONE connection, subscribed to the channels
    /// placed on it, reconnecting with backoff; ends when its primary is retired.
    async fn shard(self: Arc<Self>, addr: String, mut placed: watch::Receiver<BTreeSet<String>>) {
        let stats = self.metrics.shard(&addr);
        let mut backoff = Duration::from_millis(100);
        // A refused certificate is said once a streak of failures, at warn.
        let mut told = false;
        loop {
            let (read, mut write) = match tokio::time::timeout(
                OP_TIMEOUT,
                self.subscriber_connection(&addr),
            )
            .await
            {
                Ok(Ok(pair)) => pair,
                other => {
                    stats.connected.store(false, Ordering::Relaxed);
                    if let Ok(Err(e)) = other {
                        match crate::tls::rustls_error(&e) {
                            Some(tls) if !told => {
                                told = true;
                                let reason = crate::tls::reason(tls);
                                tracing::warn!(shard = %addr, %reason, "Redis TLS failed");
                            }
                            _ => {
                                tracing::debug!(shard = %addr, error = %e, "cannot connect to redis shard")
                            }
                        }
                    }
                    self.refresh.notify_one();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        r = placed.changed() => if r.is_err() { return },
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let mut subscribed = BTreeSet::new();
            let wanted = placed.borrow_and_update().clone();
            let ok = sync_subscriptions(&mut write, &mut subscribed, &wanted).await;
            if ok {
                backoff = Duration::from_millis(100);
                told = false;
                stats.connected.store(true, Ordering::Relaxed);
                self.metrics.relay_connects.inc();
                tracing::info!(shard = %addr, channels = subscribed.len(), "redis shard subscribed");
                // Reading a frame is not cancel-safe (a partly read frame
                // would be lost), so one task reads and hands whole frames over.
                let (frames_tx, mut frames) = mpsc::channel(1024);
                let reader = actix_rt::spawn(read_frames(read, frames_tx));
                let retired = self
                    .listen(&addr, &mut frames, &mut write, &mut placed, &mut subscribed)
                    .await;
                reader.abort();
                if retired {
                    stats.connected.store(false, Ordering::Relaxed);
                    return;
                }
                tracing::warn!(shard = %addr, "lost redis shard; reconnecting");
            }
            stats.connected.store(false, Ordering::Relaxed);
            stats.subscriptions.store(0, Ordering::Relaxed);
            self.lose(std::mem::take(&mut subscribed)).await;
            self.refresh.notify_one();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reads a subscribed connection until it fails (false) or the shard is
    /// retired (true).
    async fn listen(
        &self,
        addr: &str,
        frames: &mut mpsc::Receiver<std::io::Result<Resp>>,
        write: &mut Writer,
        placed: &mut watch::Receiver<BTreeSet<String>>,
        subscribed: &mut BTreeSet<String>,
    ) -> bool {
        let stats = self.metrics.shard(addr);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.tick().await;
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                r = placed.changed() => {
                    if r.is_err() {
                        return true;
                    }
                    let wanted = placed.borrow_and_update().clone();
                    if !sync_subscriptions(write, subscribed, &wanted).await {
                        return false;
                    }
                }
                v = frames.recv() => {
                    heard = Instant::now();
                    let Some(v) = v else { return false };
                    let items = match v {
                        Ok(Resp::Array(Some(items))) => items,
                        Ok(Resp::Error(e)) => {
                            // MOVED/ASK for a channel placed here: the
                            // placement is out of date. Its channels are not
                            // subscribed; the topology is read again and
                            // they are retried wherever they then belong.
                            tracing::info!(shard = %addr, error = %e, "redis shard refused a subscription");
                            self.refresh.notify_one();
                            let Some(slot) = refused_slot(&e) else {
                                return false;
                            };
                            let refused: Vec<String> = subscribed
                                .iter()
                                .filter(|c| key_slot(c) == slot)
                                .cloned()
                                .collect();
                            for c in &refused {
                                subscribed.remove(c);
                            }
                            self.lose(refused).await;
                            continue;
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::debug!(shard = %addr, error = %e, "redis shard connection failed");
                            return false;
                        }
                    };
                    let kind = items.first().and_then(Resp::text).unwrap_or("");
                    let channel = items.get(1).and_then(Resp::text).unwrap_or("").to_string();
                    match kind {
                        "smessage" => {
                            if let Some(Resp::Bulk(Some(payload))) = items.get(2) {
                                if !self.receive(payload).await {
                                    return true;
                                }
                            }
                        }
                        "ssubscribe" => {
                            if let Some(Resp::Int(n)) = items.get(2) {
                                stats.subscriptions.store(*n as u64, Ordering::Relaxed);
                            }
                            let regained = self.lost.lock().unwrap().remove(&channel);
                            if regained && subscribed.contains(&channel) {
                                self.report(&channel, true).await;
                            }
                        }
                        "sunsubscribe" => {
                            if let Some(Resp::Int(n)) = items.get(2) {
                                stats.subscriptions.store(*n as u64, Ordering::Relaxed);
                            }
                            // Still wanted here: the server dropped it (its slot moved).
                            if subscribed.remove(&channel) {
                                tracing::info!(shard = %addr, channel = %channel, "redis moved a subscription away");
                                self.lose([channel]).await;
                                self.refresh.notify_one();
                            }
                        }
                        _ => {}
                    }
                }
                _ = reconcile.tick() => {
                    let wanted = placed.borrow().clone();
                    if wanted != *subscribed && !sync_subscriptions(write, subscribed, &wanted).await {
                        return false;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > PING_EVERY * 2 + OP_TIMEOUT {
                        tracing::debug!(shard = %addr, "redis shard stopped answering");
                        return false;
                    }
                    let ping = redis::cmd("PING").get_packed_command();
                    if !matches!(tokio::time::timeout(OP_TIMEOUT, write.write_all(&ping)).await, Ok(Ok(()))) {
                        return false;
                    }
                }
            }
        }
    }

    /// Hands one relayed envelope to the hub (false: the hub is gone).
    async fn receive(&self, payload: &[u8]) -> bool {
        let Ok(env) = serde_json::from_slice::<Envelope>(payload) else {
            return true;
        };
        if env.node == self.node {
            return true;
        }
        let Ok(slug) = crate::domain::Slug::parse(&env.slug) else {
            return true;
        };
        self.metrics.relay_received.inc();
        self.metrics.relay_lag.observe(Duration::from_millis(
            super::now_ms().saturating_sub(env.sent_ms),
        ));
        // Waiting here is the backpressure, as with one Redis.
        self.sink
            .send(Incoming::Event {
                slug,
                stream_id: env.stream,
                event: env.event,
            })
            .await
            .is_ok()
    }

    /// Routes queued events to one publisher per shard, so a slow or frozen
    /// shard delays (and drops) only its own rooms' events.
    async fn publisher(self: Arc<Self>, mut rx: mpsc::Receiver<(String, String)>) {
        let mut shards: HashMap<String, mpsc::Sender<(String, String)>> = HashMap::new();
        let mut batch = Vec::with_capacity(256);
        while rx.recv_many(&mut batch, 256).await > 0 {
            let topology = self.topology();
            // Publishers of retired primaries finish what they hold and end.
            shards.retain(|addr, _| topology.owner_of_any(addr));
            let mut unplaced = 0;
            for item in batch.drain(..) {
                let Some(addr) = topology.owner(key_slot(&item.0)) else {
                    self.unsent.note(&item.1);
                    unplaced += 1;
                    continue;
                };
                let tx = shards.entry(addr.to_string()).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(SHARD_QUEUE);
                    actix_rt::spawn(self.clone().shard_publisher(addr.to_string(), rx));
                    tx
                });
                if let Err(e) = tx.try_send(item) {
                    let (mpsc::error::TrySendError::Full((_, payload))
                    | mpsc::error::TrySendError::Closed((_, payload))) = e;
                    self.unsent.note(&payload);
                    self.metrics.relay_dropped.inc();
                    self.metrics
                        .shard(addr)
                        .publish_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            if unplaced > 0 {
                self.metrics.relay_dropped.add(unplaced);
                self.refresh.notify_one();
            }
        }
    }

    /// Publishes one shard's events, one pipeline of `SPUBLISH` per batch.
    async fn shard_publisher(
        self: Arc<Self>,
        addr: String,
        mut rx: mpsc::Receiver<(String, String)>,
    ) {
        let mut batch = Vec::with_capacity(256);
        while rx.recv_many(&mut batch, 256).await > 0 {
            let n = batch.len() as u64;
            let send = async {
                let mut conn = self.conn(&addr).await?;
                super::publish_batch(&mut conn, "SPUBLISH", &batch).await
            };
            match tokio::time::timeout(OP_TIMEOUT, send).await {
                Ok(Ok(())) => self.metrics.relay_published.add(n),
                other => {
                    self.metrics.relay_dropped.add(n);
                    self.unsent.note_all(&batch);
                    self.metrics
                        .shard(&addr)
                        .publish_errors
                        .fetch_add(n, Ordering::Relaxed);
                    let error = match other {
                        Ok(Err(e)) => e,
                        _ => "timed out".into(),
                    };
                    tracing::debug!(shard = %addr, error = %error, "relay publish failed");
                    self.failed(&addr);
                }
            }
            batch.clear();
        }
    }

    /// Every few seconds: this node's count per room written to (and the sums
    /// read from) each room's shard, one pipeline per shard.
    async fn presence(self: Arc<Self>, counts: LocalCounts) {
        let mut reported: HashSet<RoomKey> = HashSet::new();
        let mut tick = tokio::time::interval(PRESENCE_EVERY);
        loop {
            tick.tick().await;
            let local = counts();
            let topology = self.topology();
            let mut per: HashMap<&str, ShardPresence> = HashMap::new();
            for gone in reported.iter().filter(|k| !local.contains_key(*k)) {
                let base = slots::presence_base(&self.prefix, gone);
                if let Some(addr) = topology.owner(key_slot(&base)) {
                    per.entry(addr).or_default().0.push(gone.clone());
                }
            }
            for (k, n) in &local {
                let base = slots::presence_base(&self.prefix, k);
                if let Some(addr) = topology.owner(key_slot(&base)) {
                    per.entry(addr).or_default().1.push((k.clone(), *n));
                }
            }
            let rounds = per.into_iter().map(|(addr, (gone, keys))| {
                let this = &self;
                async move {
                    let work = async {
                        let mut conn = this.conn(addr).await?;
                        presence_round(
                            &mut conn,
                            |k| slots::presence_base(&this.prefix, k),
                            &this.node,
                            &gone,
                            keys,
                        )
                        .await
                    };
                    match tokio::time::timeout(OP_TIMEOUT, work).await {
                        Ok(Ok(sums)) => sums,
                        other => {
                            if let Ok(Err(e)) = other {
                                tracing::debug!(shard = %addr, error = %e, "presence refresh failed");
                            }
                            this.failed(addr);
                            Vec::new()
                        }
                    }
                }
            });
            reported.clear();
            for sums in futures_util::future::join_all(rounds).await {
                for (key, total, mine) in sums {
                    reported.insert(key.clone());
                    let _ = self.sink.try_send(Incoming::Presence { key, total, mine });
                }
            }
        }
    }
}

/// Reads a subscriber connection's frames until it fails (the error is the
/// last item) or the receiver is gone.
async fn read_frames(mut read: Reader, frames: mpsc::Sender<std::io::Result<Resp>>) {
    loop {
        let frame = resp::read(&mut read).await;
        let failed = frame.is_err();
        if frames.send(frame).await.is_err() || failed {
            return;
        }
    }
}

/// The slot of a `MOVED slot addr` or `ASK slot addr` error.
fn refused_slot(error: &str) -> Option<u16> {
    let mut words = error.split_whitespace();
    match words.next()? {
        "MOVED" | "ASK" => words.next()?.parse().ok(),
        _ => None,
    }
}

/// Brings a subscriber connection's `SSUBSCRIBE`s in line with `wanted`: the
/// commands for every added and removed channel in ONE write (a sharded
/// subscribe takes one slot, so one channel, per command).
async fn sync_subscriptions(
    write: &mut Writer,
    subscribed: &mut BTreeSet<String>,
    wanted: &BTreeSet<String>,
) -> bool {
    let mut out = Vec::new();
    for c in wanted.difference(subscribed) {
        out.extend(redis::cmd("SSUBSCRIBE").arg(c).get_packed_command());
    }
    for c in subscribed.difference(wanted) {
        out.extend(redis::cmd("SUNSUBSCRIBE").arg(c).get_packed_command());
    }
    *subscribed = wanted.clone();
    out.is_empty()
        || matches!(
            tokio::time::timeout(OP_TIMEOUT, write.write_all(&out)).await,
            Ok(Ok(()))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_slot() {
        assert_eq!(refused_slot("MOVED 12182 127.0.0.1:7002"), Some(12182));
        assert_eq!(refused_slot("ASK 5 127.0.0.1:7002"), Some(5));
        assert_eq!(refused_slot("CLUSTERDOWN The cluster is down"), None);
        assert_eq!(refused_slot("MOVED x"), None);
    }
}
