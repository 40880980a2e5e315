//! Rooms: one [`RoomActor`] per (tenant, stream) on this node, found through the
//! [`Hub`], which is built once per node (outside `HttpServer::new`'s closure):
//! the registry of rooms, their viewer counts, the dispatch of relayed
//! events to them, and the node's rounds over its rooms, each one query per
//! tenant however many rooms: the sweep for messages the relay lost, role
//! reads, and the recheck of what each tenant allows.
//!
//! Shape: each socket has a `SessionActor` (see `sessions`) that parses frames
//! and forwards commands to its room. Rooms run on threads of their own (as
//! many as HTTP workers), apart from the workers that serve the sockets, so a
//! room never waits behind the socket writes of a fan-out. The room decides
//! every rule in one place without locks, serialises each event once and
//! pushes the shared bytes into every member's bounded outlet with
//! `try_send`; it never awaits a socket. A member whose outlet is full is a
//! slow consumer and is closed with 4008 while the room goes on. Messages
//! reach the database through the node's batch writer and are broadcast only
//! after commit, with their ids, in the room's sequence order on every socket.
//!
//! The room's rules are plain modules, without actix or I/O, each unit-tested:
//! - [`admission`]: may this member send this message or reaction now;
//! - [`restrictions`]: bans and timeouts, with the database's semantics;
//! - [`hidden`]: hidden users (shadow ban);
//! - [`modes`]: chat modes, the raid shield, `unique_chat`'s memory;
//! - [`sequencer`]: messages out in seq order, each once, gaps named;
//! - [`pending`]: messages in flight and `client_id`s seen;
//! - [`members`]: the fan-out to this node's sockets;
//! - [`ring`]: recent messages for history and resume;
//! - [`sockets`]: connection slots and the sockets of each login session;
//! - [`mentions`]: `@username`s resolved from a per-tenant cache of usernames.
//!
//! [`inbox`] lists what a room is told; `room` is the actor that ties it together.

pub mod admission;
pub mod hidden;
pub mod inbox;
pub mod members;
pub mod mentions;
pub mod modes;
pub mod pending;
pub mod restrictions;
pub mod ring;
mod room;
pub mod sequencer;
pub mod sockets;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use actix::{dev::ArbiterHandle, prelude::SendError, Addr, Arbiter, MailboxError};
use tokio::sync::oneshot;

pub use inbox::{
    Apply, AskRoles, Chat, Join, Leave, Moderate, Post, PresenceTotal, React, RelayState,
    ReloadRights, ReloadTerms, Remote, Roles, SetTerms, Shutdown, StatusChanged, Sweep,
    TenantAccess,
};
pub use members::RoomUser;
pub use room::{Edit, RoomActor};
pub use sockets::{IpSlot, SocketIndex, UserSlot};

use crate::{
    config::Settings,
    domain::Slug,
    metrics::Metrics,
    relay::{Incoming, Relay, RelayEvent},
    store::{
        held::HOLD_FOR,
        reaction_writer::ReactionWriter,
        streams::{Stream, StreamStatus},
        writer::MessageWriter,
        Store,
    },
};

/// With several nodes, how often the node reads its rooms' latest seqs (one
/// read per tenant) and rooms behind fetch what they lack: a relayed message
/// may have been lost (Redis away, a node that could not publish, a full
/// mailbox). See [`Hub::sweep`].
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the node reads again the tenant roles of its rooms' logged-in
/// members with a staff role, and the tenant's staff (one read per tenant),
/// so a role given or taken away in the database gives or takes its views
/// (held queue, hidden messages, exemptions) with it. See
/// [`Hub::refresh_roles`].
pub const ROLES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How often a node denies the held messages nobody reviewed within ten
/// minutes ([`Hub::expire_held`]).
pub const HELD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A room's identity: tenant and stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    /// Tenant.
    pub slug: Slug,
    /// Stream id.
    pub stream_id: i64,
}

/// Shared services of a node's rooms and sockets. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    store: Store,
    writer: MessageWriter,
    reactions: ReactionWriter,
    settings: Arc<Settings>,
    /// The node's metrics, recorded by its rooms and sockets.
    metrics: Arc<Metrics>,
    rooms: Mutex<HashMap<RoomKey, Addr<RoomActor>>>,
    /// Open sockets by address, user and login session.
    sockets: Arc<SocketIndex>,
    /// Viewer counts of each room, as its room last reported them: (on this
    /// node, on every node).
    viewers: Arc<Mutex<HashMap<RoomKey, (u64, u64)>>>,
    /// The relay between nodes (set once at startup).
    relay: std::sync::OnceLock<Relay>,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    /// Usernames per tenant, for mentions.
    mentions: mentions::MentionCache,
    /// The threads rooms run on, apart from the sockets' (started with the
    /// first room; see [`Hub::room`]).
    room_threads: std::sync::OnceLock<Vec<ArbiterHandle>>,
    /// The room thread the next new room takes (round robin).
    next_room_thread: AtomicUsize,
}

impl Hub {
    /// Builds the hub; call once per node.
    pub fn new(
        store: Store,
        writer: MessageWriter,
        reactions: ReactionWriter,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(HubInner {
                store,
                writer,
                reactions,
                settings,
                sockets: Arc::new(SocketIndex::new(metrics.clone())),
                metrics,
                rooms: Mutex::new(HashMap::new()),
                viewers: Arc::new(Mutex::new(HashMap::new())),
                relay: std::sync::OnceLock::new(),
                next_conn: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                mentions: mentions::MentionCache::default(),
                room_threads: std::sync::OnceLock::new(),
                next_room_thread: AtomicUsize::new(0),
            }),
        }
    }

    /// The node's settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The node's reaction writer.
    pub fn reactions(&self) -> &ReactionWriter {
        &self.inner.reactions
    }

    /// The node's usernames per tenant, for mentions.
    pub fn mentions(&self) -> &mentions::MentionCache {
        &self.inner.mentions
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A new connection id, unique on this node.
    pub fn next_conn_id(&self) -> u64 {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// The room of a stream, started on first use.
    pub fn room(&self, key: &RoomKey, stream: &Stream) -> Addr<RoomActor> {
        let mut rooms = self.inner.rooms.lock().unwrap();
        if let Some(addr) = rooms.get(key) {
            if addr.connected() {
                return addr.clone();
            }
        }
        let addr = RoomActor::new(
            self.clone(),
            key.clone(),
            stream,
            self.inner.store.clone(),
            self.inner.writer.clone(),
        )
        .start_room_on(self.room_thread());
        rooms.insert(key.clone(), addr.clone());
        addr
    }

    /// The thread a new room runs on. Rooms run on threads of their own, one
    /// per HTTP worker, not on the workers that serve the sockets: a room's
    /// turn (a message to store, a stored one to fan out) never waits behind
    /// the socket writes of the previous fan-out, which on a busy worker are
    /// thousands of tasks long.
    fn room_thread(&self) -> &ArbiterHandle {
        let threads = self.inner.room_threads.get_or_init(|| {
            let n = match self.inner.settings.server.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            };
            (0..n).map(|_| Arbiter::new().handle()).collect()
        });
        let next = self.inner.next_room_thread.fetch_add(1, Ordering::Relaxed);
        &threads[next % threads.len()]
    }

    /// The room of a stream if it runs on this node.
    pub fn existing_room(&self, key: &RoomKey) -> Option<Addr<RoomActor>> {
        self.inner.rooms.lock().unwrap().get(key).cloned()
    }

    /// Forgets a room that is stopping (only if it is still the registered one).
    pub(crate) fn remove_room(&self, key: &RoomKey, addr: &Addr<RoomActor>) {
        let mut rooms = self.inner.rooms.lock().unwrap();
        if rooms.get(key) == Some(addr) {
            rooms.remove(key);
        }
    }

    /// Joins a socket to its room, retrying once if the room was just stopping.
    pub async fn join(
        &self,
        key: &RoomKey,
        stream: &Stream,
        join: Join,
    ) -> Result<Addr<RoomActor>, MailboxError> {
        let mut last = None;
        for _ in 0..3 {
            let addr = self.room(key, stream);
            match addr.send(join.clone()).await {
                Ok(()) => return Ok(addr),
                Err(e) => {
                    self.remove_room(key, &addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(MailboxError::Closed))
    }

    /// Posts one message into a stream's room as `post.user` and waits for
    /// the room's answer frame (`ack`, `held` or `error`), at most `wait`.
    /// `None` when the room could not be reached or did not answer in time.
    pub async fn post(
        &self,
        key: &RoomKey,
        stream: &Stream,
        post: Post,
        mut answers: crate::sessions::outlet::Answers,
        wait: std::time::Duration,
    ) -> Result<Option<bytestring::ByteString>, SendError<Post>> {
        let conn_id = post.conn_id;
        let mut addr = self.room(key, stream);
        if let Err(e) = addr.try_send(post) {
            match e {
                SendError::Closed(p) => {
                    // The room was stopping: a new one takes it.
                    self.remove_room(key, &addr);
                    addr = self.room(key, stream);
                    addr.try_send(p)?;
                }
                full => return Err(full),
            }
        }
        let answer = tokio::time::timeout(wait, answers.recv()).await;
        addr.do_send(Leave { conn_id });
        Ok(match answer {
            Ok(Some(crate::sessions::outlet::Outbound::Text(frame))) => Some(frame),
            _ => None,
        })
    }

    /// Open sockets on a stream across nodes, as far as this node knows (0 when
    /// its room does not run here), for pages.
    pub fn viewers(&self, key: &RoomKey) -> u64 {
        self.inner
            .viewers
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |(_, total)| *total)
    }

    /// Records a room's viewer counts (called by the room on every change).
    pub(crate) fn set_viewers(&self, key: &RoomKey, local: u64, total: u64) {
        let mut map = self.inner.viewers.lock().unwrap();
        if local == 0 {
            map.remove(key);
        } else {
            map.insert(key.clone(), (local, total));
        }
    }

    /// A reader of this node's local counts per room (for the relay's presence).
    pub fn local_counts(&self) -> crate::relay::LocalCounts {
        let viewers = self.inner.viewers.clone();
        Arc::new(move || {
            viewers
                .lock()
                .unwrap()
                .iter()
                .map(|(k, (local, _))| (k.clone(), *local))
                .collect()
        })
    }

    /// Installs the relay (once, at startup).
    pub fn set_relay(&self, relay: Relay) {
        let _ = self.inner.relay.set(relay);
    }

    /// The relay (in-process until one is installed).
    pub fn relay(&self) -> Relay {
        self.inner.relay.get().cloned().unwrap_or_default()
    }

    /// Handles what the relay received from other nodes.
    pub fn deliver(&self, incoming: Incoming) {
        match incoming {
            Incoming::Event {
                slug,
                stream_id: 0,
                event,
            } => {
                let key = RoomKey { slug, stream_id: 0 };
                match event {
                    RelayEvent::SessionEnded { key_hash, code } => {
                        self.inner.sockets.close_session(&key.slug, &key_hash, code);
                    }
                    RelayEvent::UserSessionsEnded { user_id, code } => {
                        self.inner.sockets.close_user(&key.slug, user_id, code);
                    }
                    RelayEvent::Moderation { event } => {
                        for room in self.rooms_of(&key, true) {
                            room.do_send(Apply(event.clone()));
                        }
                    }
                    RelayEvent::Terms => {
                        for room in self.rooms_of(&key, true) {
                            room.do_send(ReloadTerms);
                        }
                    }
                    RelayEvent::Resync => {
                        // As after an outage: each room reads what it missed.
                        for room in self.rooms_of(&key, true) {
                            room.do_send(RelayState { up: false });
                            room.do_send(RelayState { up: true });
                        }
                    }
                    _ => {}
                }
            }
            Incoming::Event {
                slug,
                stream_id,
                event,
            } => {
                if let Some(room) = self.existing_room(&RoomKey { slug, stream_id }) {
                    if let Err(SendError::Full(Remote(event))) = room.try_send(Remote(event)) {
                        match event {
                            // A full room drops relayed messages: its sequence
                            // sync fetches them from PostgreSQL.
                            RelayEvent::Message { .. } => {
                                self.inner.metrics.relay_dropped.inc();
                            }
                            // Control events are few and must not be lost;
                            // nor reaction windows (a few a second from each
                            // node), whose counts nothing else brings back.
                            other => room.do_send(Remote(other)),
                        }
                    }
                }
            }
            Incoming::Presence { key, total, mine } => {
                if let Some(room) = self.existing_room(&key) {
                    room.do_send(PresenceTotal { total, mine });
                }
            }
            Incoming::Down | Incoming::Up => {
                let up = matches!(incoming, Incoming::Up);
                for room in self.all_rooms() {
                    room.do_send(RelayState { up });
                }
            }
            Incoming::Lost { slug, stream_id } => {
                let key = RoomKey { slug, stream_id };
                for room in self.rooms_of(&key, stream_id == 0) {
                    room.do_send(RelayState { up: false });
                }
            }
            Incoming::Regained { slug, stream_id } => {
                // Down then up: the room catches up even if it had not
                // noticed the loss (it started meanwhile).
                let key = RoomKey { slug, stream_id };
                for room in self.rooms_of(&key, stream_id == 0) {
                    room.do_send(RelayState { up: false });
                    room.do_send(RelayState { up: true });
                }
            }
        }
    }

    /// One round of the sweep (every [`SWEEP_EVERY`] with several nodes):
    /// per tenant with rooms on this node, one read of their rooms' latest
    /// seqs, and each room told its own ([`Sweep`]); a room with members that
    /// has delivered less fetches the rest. Up-to-date rooms, nearly all of
    /// them while the relay works, read nothing more, so PostgreSQL sees one
    /// query per tenant and round, not one per room.
    pub async fn sweep(&self) {
        for (slug, rooms) in self.rooms_by_tenant() {
            let ids: Vec<i64> = rooms.iter().map(|(id, _)| *id).collect();
            self.inner.metrics.sweeps.inc();
            match self.inner.store.room_heads(&slug, &ids).await {
                Ok(heads) => {
                    let heads: HashMap<i64, i64> = heads.into_iter().collect();
                    for (stream_id, room) in rooms {
                        if let Some(&last_seq) = heads.get(&stream_id) {
                            room.do_send(Sweep { last_seq });
                        }
                    }
                }
                Err(e) => tracing::debug!(tenant = %slug, error = %e, "sweep skipped"),
            }
        }
    }

    /// One round of role reads (every [`ROLES_EVERY`]): per tenant, each
    /// room names its logged-in members with a staff role ([`AskRoles`]),
    /// one read finds those still active with their roles and the tenant's
    /// staff, and every room that asked applies it ([`Roles`]). One query
    /// per tenant and round, however many rooms.
    pub async fn refresh_roles(&self) {
        for (slug, rooms) in self.rooms_by_tenant() {
            // A room still loading (or stuck) answers next round.
            let asks = rooms
                .iter()
                .map(|(_, room)| room.send(AskRoles).timeout(ROLES_EVERY));
            let answers = futures_util::future::join_all(asks).await;
            let mut ids = std::collections::BTreeSet::new();
            let mut asking = Vec::new();
            for ((_, room), answer) in rooms.into_iter().zip(answers) {
                if let Ok(Some(staff)) = answer {
                    ids.extend(staff);
                    asking.push(room);
                }
            }
            if asking.is_empty() {
                continue;
            }
            let ids: Vec<i64> = ids.into_iter().collect();
            self.inner.metrics.role_reads.inc();
            match self.inner.store.active_staff_and(&slug, &ids).await {
                Ok(users) => {
                    let users = Arc::new(users);
                    for room in asking {
                        room.do_send(Roles(users.clone()));
                    }
                }
                Err(e) => tracing::warn!(tenant = %slug, error = %e, "member roles not read again"),
            }
        }
    }

    /// One round of held-message expiry (every [`HELD_EVERY`]): for each
    /// tenant with rooms on this node, [`Hub::expire_held_of`] the messages
    /// held longer than ten minutes. A tenant with no room on any node has
    /// its messages expired by a node's housekeeping round, once they have
    /// waited twice as long.
    pub async fn expire_held(&self) {
        for slug in self.rooms_by_tenant().into_keys() {
            self.expire_held_of(&slug, HOLD_FOR).await;
        }
    }

    /// Denies and logs, in one statement, every message of tenant `slug`
    /// held longer than `age` (at least ten minutes), in any stream, whether
    /// or not a room of it runs anywhere; each denial is applied here and
    /// relayed, so the author and moderators hear of it on every node.
    pub async fn expire_held_of(&self, slug: &Slug, age: time::Duration) {
        match self.inner.store.expire_held(slug, age).await {
            Ok(expired) => {
                for (stream_id, h) in expired {
                    let key = RoomKey {
                        slug: slug.clone(),
                        stream_id,
                    };
                    self.apply(
                        &key,
                        crate::moderation::ModEvent::Deny {
                            held_id: h.id,
                            user_id: h.user_id,
                            client_id: h.body.client_id,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(tenant = %slug, error = %e, "held messages not expired"),
        }
    }

    /// The running rooms of each tenant, with their stream ids.
    fn rooms_by_tenant(&self) -> HashMap<Slug, Vec<(i64, Addr<RoomActor>)>> {
        let mut by_tenant: HashMap<Slug, Vec<(i64, Addr<RoomActor>)>> = HashMap::new();
        for (key, room) in self.inner.rooms.lock().unwrap().iter() {
            by_tenant
                .entry(key.slug.clone())
                .or_default()
                .push((key.stream_id, room.clone()));
        }
        by_tenant
    }

    fn all_rooms(&self) -> Vec<Addr<RoomActor>> {
        self.inner.rooms.lock().unwrap().values().cloned().collect()
    }

    /// A stream's status changed from `stream.status` to `status`: tell its
    /// room here (started if it does not run: it stores the "Stream started" /
    /// "Stream ended" notice once and relays it like any message) and the
    /// rooms of other nodes.
    pub fn status_changed(&self, key: &RoomKey, stream: &Stream, status: StreamStatus) {
        self.relay().publish(key, RelayEvent::Status { status });
        self.room(key, stream).do_send(StatusChanged { status });
    }

    /// The stream's appointed moderators changed: rooms here and on other
    /// nodes read them again.
    pub fn rights_changed(&self, key: &RoomKey) {
        if let Some(room) = self.existing_room(key) {
            room.do_send(ReloadRights);
        }
        self.relay().publish(key, RelayEvent::Rights);
    }

    /// Applies a stored moderation event to the rooms it concerns on this node:
    /// the stream's room, or every room of the tenant for tenant-wide events.
    pub fn apply(&self, key: &RoomKey, event: crate::moderation::ModEvent) {
        let tenant_wide = event.tenant_wide();
        for room in self.rooms_of(key, tenant_wide) {
            room.do_send(Apply(event.clone()));
        }
        let relay = self.relay();
        if tenant_wide {
            relay.publish_tenant(&key.slug, RelayEvent::Moderation { event });
        } else {
            relay.publish(key, RelayEvent::Moderation { event });
        }
    }

    /// A stream's term lists changed (all of the tenant's when `tenant_wide`):
    /// the stream's room here takes `list` (its lists as stored now) before
    /// this returns, so a message sent after the change is checked against
    /// it; other rooms here and on other nodes read theirs again.
    pub async fn terms_changed(
        &self,
        key: &RoomKey,
        tenant_wide: bool,
        list: Vec<crate::store::moderation::TermRow>,
    ) {
        if let Some(room) = self.existing_room(key) {
            let _ = room.send(SetTerms(list)).await;
        }
        if tenant_wide {
            for room in self.rooms_of(key, true) {
                room.do_send(ReloadTerms);
            }
            self.relay().publish_tenant(&key.slug, RelayEvent::Terms);
        } else {
            self.relay().publish(key, RelayEvent::Terms);
        }
    }

    fn rooms_of(&self, key: &RoomKey, tenant_wide: bool) -> Vec<Addr<RoomActor>> {
        let rooms = self.inner.rooms.lock().unwrap();
        if tenant_wide {
            rooms
                .iter()
                .filter(|(k, _)| k.slug == key.slug)
                .map(|(_, a)| a.clone())
                .collect()
        } else {
            rooms.get(key).cloned().into_iter().collect()
        }
    }

    /// Open sockets of this node by address, user and login session.
    pub fn sockets(&self) -> &SocketIndex {
        &self.inner.sockets
    }

    /// Takes a connection slot for `ip`, or `None` when it has `max` already (0 = no limit).
    pub fn acquire_ip(&self, ip: IpAddr, max: u32) -> Option<IpSlot> {
        SocketIndex::acquire_ip(&self.inner.sockets, ip, max)
    }

    /// Takes a connection slot for a user, or `None` when they have `max` (0 = no limit).
    pub fn acquire_user(&self, slug: &Slug, user_id: i64, max: u32) -> Option<UserSlot> {
        SocketIndex::acquire_user(&self.inner.sockets, slug, user_id, max)
    }

    /// Closes every socket of a user on every node (password changed: 4001).
    pub fn close_user_sessions(&self, slug: &Slug, user_id: i64, code: u16) {
        self.relay()
            .publish_tenant(slug, RelayEvent::UserSessionsEnded { user_id, code });
        self.inner.sockets.close_user(slug, user_id, code);
    }

    /// Closes every socket of a session on every node (logout: 4001).
    pub fn close_session(&self, slug: &Slug, key_hash: &str, code: u16) -> usize {
        self.relay().publish_tenant(
            slug,
            RelayEvent::SessionEnded {
                key_hash: key_hash.to_string(),
                code,
            },
        );
        self.inner.sockets.close_session(slug, key_hash, code)
    }

    /// Closes sockets whose login session is no longer valid (expired, logged
    /// out or ended by a password change, on any node).
    pub async fn recheck_sessions(&self) {
        for (slug, hashes) in self.inner.sockets.sessions_by_tenant() {
            match self.inner.store.live_sessions(&slug, &hashes).await {
                Ok(live) => {
                    for h in hashes.iter().filter(|h| !live.contains(h)) {
                        self.inner.sockets.close_session(
                            &slug,
                            h,
                            crate::sessions::outlet::codes::SESSION_ENDED,
                        );
                    }
                }
                Err(e) => tracing::debug!(error = %e, "session recheck skipped"),
            }
        }
    }

    /// Closes what a tenant no longer allows (4001): its anonymous viewers'
    /// sockets once `anonymous_viewers` is off, every socket of a tenant that
    /// was deleted. Runs with [`Hub::recheck_sessions`], reading each tenant
    /// with rooms on this node once, so `tenant configure` and `tenant
    /// delete` reach sockets already open.
    pub async fn recheck_tenants(&self) {
        for (slug, rooms) in self.rooms_by_tenant() {
            let gone = match self.inner.store.tenant_by_slug(&slug).await {
                Ok(Some(t)) if t.anonymous_viewers => continue,
                Ok(Some(_)) => false,
                Ok(None) => true,
                Err(e) => {
                    tracing::debug!(tenant = %slug, error = %e, "tenant recheck skipped");
                    continue;
                }
            };
            for (_, room) in rooms {
                room.do_send(TenantAccess { gone });
            }
        }
    }

    /// Graceful shutdown of every room: stop taking chat, wait until every
    /// accepted message is stored and acknowledged, send the last reaction
    /// window, close sockets with 1012, then write every pending reaction.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let rooms: Vec<Addr<RoomActor>> =
            self.inner.rooms.lock().unwrap().values().cloned().collect();
        let mut waits = Vec::new();
        for room in rooms {
            let (tx, rx) = oneshot::channel();
            if room.send(Shutdown { done: tx }).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
        // Every accepted reaction is in PostgreSQL before the process exits.
        self.inner.reactions.flush().await;
    }
}
