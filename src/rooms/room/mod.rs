//! The room actor: a thin shell that feeds a room's inputs (sockets, the batch
//! writer, the relay, timers) into its rules and carries the decisions out.
//! This file holds its state, members coming and going, presence and
//! shutdown; [`chat`] the chat and reaction path, [`sync`] delivery order and
//! catching up with other nodes, [`moderation`] moderation and rights.
//! The rules live in plain modules beside it: [`super::admission`] (may this
//! be sent now), [`super::restrictions`] (bans and timeouts, as the database
//! has them), [`super::sequencer`] (messages out in seq order, each once, gaps
//! filled from PostgreSQL), [`super::pending`] (in-flight messages and
//! `client_id`s), [`super::members`] (fan-out) and [`super::ring`] (history).

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytestring::ByteString;
use time::OffsetDateTime;
use tokio::sync::oneshot;

mod chat;
mod edits;
mod moderation;
mod replies;
mod sync;

pub use edits::Edit;
use moderation::compile_terms;
use sync::Delivery;

use super::{
    admission::{Admit, Refusal, Rules, Sender},
    hidden::Hidden,
    inbox::*,
    members::{Members, RoomUser},
    modes::{ModeState, RecentTexts},
    pending::{Inflight, Known, Pending},
    restrictions::{Change, Muted, Restrictions},
    ring::{Ring, RingEntry},
    sequencer::{Sequencer, Slot},
    Hub, RoomKey,
};
use crate::{
    auth::{keyed, KeyedLimiter},
    domain::Role,
    error::{ApiError, Code},
    moderation::{blocked::BlockedTerm, can_moderate, execute, ModEvent},
    protocol::{self, Hello, StampView, UserView},
    reactions::ReactionWindow,
    relay::RelayEvent,
    sessions::outlet::codes,
    store::{
        messages::{
            HiddenShown, InsertOutcome, MessageBody, MessageType, NewMessage, StoredMessage,
        },
        reactions::NewReaction,
        streams::{Stream, StreamStatus},
        writer::{MessageWriter, WriteJob, Written},
        Store,
    },
};

/// Messages in a plain connect's history.
const HISTORY: usize = 50;
/// Most messages in a resume.
const RESUME_MAX: usize = 500;
/// Steps a second of the keep-alive round: each pings a slice of the sockets.
const KEEP_ALIVE_STEPS_PER_SEC: u64 = 4;
/// How long a gap in the sequence may wait for the relay before it is
/// fetched from PostgreSQL.
const GAP_WAIT: Duration = Duration::from_millis(250);
/// Most messages fetched per catch-up query.
const CATCH_UP_MAX: i64 = 500;
/// Deleted ids remembered before their message arrived (bounded).
const EARLY_DELETES: usize = 1024;
/// How long after an incomplete resync (PostgreSQL busy or away) the room
/// tries again, at the least (at most twice this).
const RESYNC_RETRY: Duration = Duration::from_secs(2);
/// How often a room may send another quarter of a socket's queue of
/// messages (see `send_out`).
const DRAIN_PAUSE: Duration = Duration::from_millis(20);
/// Shortest gap between two `presence` frames.
const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// Ids deleted before their message reached this room, the last
/// [`EARLY_DELETES`] of them: a set to look up on every delivery, in O(1).
#[derive(Default)]
struct EarlyDeletes {
    order: VecDeque<i64>,
    ids: HashSet<i64>,
}

impl EarlyDeletes {
    fn insert(&mut self, id: i64) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > EARLY_DELETES {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }

    fn contains(&self, id: &i64) -> bool {
        self.ids.contains(id)
    }
}

/// What a store call of the room needs, owned, so that the call runs while the
/// room goes on (see [`RoomActor::with_store`]).
pub(super) struct Db {
    pub store: Store,
    pub slug: crate::store::Slug,
    pub room_id: i64,
    pub stream_id: i64,
}

/// The actor of one (tenant, stream) on this node.
pub struct RoomActor {
    hub: Hub,
    key: RoomKey,
    store: Store,
    writer: MessageWriter,
    stream: Stream,
    status: StreamStatus,
    slow_mode_seconds: i32,
    stamps: Vec<StampView>,
    members: Members,
    ring: Ring,
    /// Delivery order of stored messages.
    order: Sequencer<(i64, Delivery)>,
    /// The highest message id delivered.
    newest_id: i64,
    /// A catch-up query is running.
    catching_up: bool,
    /// What the node's last role read asked about: the logged-in members
    /// present then, and those of them with a staff role (see [`AskRoles`]).
    roles_asked: Option<(HashSet<i64>, HashSet<i64>)>,
    /// Released messages waiting to go out, in order, with their seqs (a
    /// backlog is let out a few at a time); `sent_in_pause` counts those
    /// sent since the last pause, and `draining` is set while the end of the
    /// pause is scheduled.
    outbox: VecDeque<(i64, Delivery)>,
    sent_in_pause: usize,
    draining: bool,
    /// A resync is reading PostgreSQL; `resync_again` asks for another once
    /// it is done (resyncs never overlap).
    resyncing: bool,
    resync_again: bool,
    /// Changes to the room's state applied so far (moderation events, edits,
    /// held messages, status): a resync whose read overlapped one may have
    /// read what is already out of date, and reads again instead.
    state_changes: u64,
    /// A gap timer is armed.
    gap_timer: bool,
    /// Ids deleted before their message reached this room.
    early_deletes: EarlyDeletes,
    chat_limiter: KeyedLimiter<i64>,
    reaction_limiter: KeyedLimiter<i64>,
    window: ReactionWindow,
    window_timer: bool,
    inflight: Inflight,
    presence_sent: Option<u64>,
    presence_at: Option<Instant>,
    presence_timer: bool,
    shutdown: Option<oneshot::Sender<()>>,
    /// The pinned message's frame JSON and id.
    pinned: Option<(i64, serde_json::Value)>,
    /// Bans and timeouts in force.
    restrictions: Restrictions,
    /// Blocked terms of the stream and the tenant.
    terms: Vec<BlockedTerm>,
    /// Terms that hold a message for review.
    hold_terms: Vec<BlockedTerm>,
    /// Users appointed moderator of this stream.
    appointed: HashSet<i64>,
    /// Chat modes (and what the shield saved).
    modes: ModeState,
    /// The newest modes change applied (see `ModEvent::Modes`).
    modes_version: i64,
    /// Texts of the last 30 s, for `unique_chat`.
    recent: RecentTexts,
    /// Hidden users (shadow ban).
    hidden: Hidden,
    /// Authors of hidden messages among the newest [`RESUME_MAX`] when the
    /// room started, and of those it delivered since: their histories, and
    /// moderators', are read from PostgreSQL, which has those messages (the
    /// ring holds only what everyone sees).
    hidden_authors: HashSet<i64>,
    /// Messages waiting for review: held id → the item moderators see.
    held: BTreeMap<i64, ByteString>,
    /// Last accepted chat message per user (slow mode).
    last_chat: HashMap<i64, Instant>,
    /// Sockets on other nodes (from the relay's presence).
    remote_viewers: u64,
    /// Set while the relay is down (events of other nodes may be missing).
    relay_down: bool,
    /// New messages waiting, in order, for their mentions or reply target.
    chat_queue: replies::ChatQueue,
}

/// The room's rule for whose socket moderates it: staff, the stream's owner
/// and the moderators appointed on it, on a socket that may use those rights
/// ([`RoomUser::moderate_scope`]).
fn moderates(u: &RoomUser, owner: i64, appointed: &HashSet<i64>) -> bool {
    u.moderate_scope
        && (matches!(u.role, Role::Admin | Role::Moderator)
            || u.id == owner
            || appointed.contains(&u.id))
}

impl RoomActor {
    /// Runs a store call (`call` gets the store and the room's ids) while the
    /// room goes on with other work, then hands the answer to `then` on the
    /// room. The room's store calls go this way, except the two that must
    /// answer before the room handles anything else (its state at start, the
    /// tenant's usernames for mentions), which use `ctx.wait`.
    pub(super) fn with_store<T, F>(
        &self,
        ctx: &mut Context<Self>,
        call: impl FnOnce(Db) -> F,
        then: impl FnOnce(T, &mut Self, &mut Context<Self>) + 'static,
    ) where
        T: 'static,
        F: std::future::Future<Output = T> + 'static,
    {
        ctx.spawn(call(self.db()).into_actor(self).map(then));
    }

    /// What a store call of this room needs.
    fn db(&self) -> Db {
        Db {
            store: self.store.clone(),
            slug: self.key.slug.clone(),
            room_id: self.stream.room_id,
            stream_id: self.key.stream_id,
        }
    }

    /// A room for `stream` (not started).
    pub fn new(
        hub: Hub,
        key: RoomKey,
        stream: &Stream,
        store: Store,
        writer: MessageWriter,
    ) -> Self {
        let limits = &hub.settings().limits;
        let chat_limiter = keyed(
            limits.chat_messages,
            Duration::from_secs(limits.chat_period_secs.max(1)),
            limits.chat_burst,
        );
        let reaction_limiter = keyed(
            limits.reactions_per_second,
            Duration::from_secs(1),
            limits.reactions_burst,
        );
        let ring_size = hub.settings().chat.ring_size;
        let members = Members::new(limits.socket_queue, hub.metrics().clone());
        Self {
            hub,
            key,
            store,
            writer,
            stream: stream.clone(),
            status: stream.status,
            slow_mode_seconds: stream.slow_mode_seconds,
            stamps: Vec::new(),
            members,
            ring: Ring::new(ring_size, Vec::new(), true),
            order: Sequencer::unknown(),
            newest_id: 0,
            catching_up: false,
            roles_asked: None,
            outbox: VecDeque::new(),
            sent_in_pause: 0,
            draining: false,
            resyncing: false,
            resync_again: false,
            state_changes: 0,
            gap_timer: false,
            early_deletes: EarlyDeletes::default(),
            chat_limiter,
            reaction_limiter,
            window: ReactionWindow::default(),
            window_timer: false,
            inflight: Inflight::default(),
            presence_sent: None,
            presence_at: None,
            presence_timer: false,
            shutdown: None,
            pinned: None,
            restrictions: Restrictions::default(),
            terms: Vec::new(),
            hold_terms: Vec::new(),
            appointed: HashSet::new(),
            modes: stream.modes,
            modes_version: 0,
            recent: RecentTexts::default(),
            held: BTreeMap::new(),
            hidden: Hidden::default(),
            hidden_authors: HashSet::new(),
            last_chat: HashMap::new(),
            remote_viewers: 0,
            relay_down: false,
            chat_queue: replies::ChatQueue::default(),
        }
    }

    /// Starts the actor on `thread` (one of the hub's room threads) with a
    /// roomy mailbox.
    pub fn start_room_on(self, thread: &actix::dev::ArbiterHandle) -> Addr<Self> {
        Self::start_in_arbiter(thread, move |ctx| {
            ctx.set_mailbox_capacity(4096);
            self
        })
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            status: self.status,
            slow_mode_seconds: self.slow_mode_seconds,
            terms: &self.terms,
            hold_terms: &self.hold_terms,
            restrictions: &self.restrictions,
            shutting_down: self.shutdown.is_some(),
            modes: &self.modes.modes,
            recent: &self.recent,
        }
    }

    fn sender(&self, user: Option<&RoomUser>) -> Option<Sender> {
        user.map(|u| Sender {
            user_id: u.id,
            exempt: self.may_moderate(u),
            last_chat: self.last_chat.get(&u.id).copied(),
            account_created: u.created_at,
        })
    }

    /// The room's current view of a member's rights (exemption from slow
    /// mode and modes, held queues, hidden messages): the user's, when the
    /// socket may use them; moderation actions are checked against the
    /// database.
    fn may_moderate(&self, u: &RoomUser) -> bool {
        moderates(u, self.stream.owner_id, &self.appointed)
    }

    fn viewers(&self) -> u64 {
        self.members.len() as u64 + self.remote_viewers
    }

    fn hello(&self, user: Option<&RoomUser>) -> ByteString {
        let pinned = self
            .pinned
            .as_ref()
            .and_then(|(_, v)| serde_json::value::to_raw_value(v).ok());
        let sender = self.sender(user);
        protocol::hello_frame(&Hello {
            kind: "hello",
            stream_id: self.key.stream_id,
            user: user.map(|u| UserView {
                username: &u.username,
                role: u.role.as_str(),
            }),
            can_chat: self
                .rules()
                .can_chat(sender.as_ref(), OffsetDateTime::now_utc()),
            slow_mode_seconds: self.slow_mode_seconds,
            modes: &self.modes.modes,
            viewers: self.viewers(),
            pinned: pinned.as_deref(),
            stamps: &self.stamps,
        })
    }

    /// Sends a frame to every member (`id` for `message` frames). Members it
    /// closes stop counting now; they leave, and presence follows, with their
    /// session's `Leave`.
    fn broadcast(&mut self, frame: &ByteString, id: Option<i64>) {
        if self.members.broadcast(frame, id) > 0 {
            self.report_viewers();
        }
    }

    /// Sends a frame to every member who may moderate the stream.
    fn notify_moderators(&mut self, frame: &ByteString) {
        let owner = self.stream.owner_id;
        let appointed = &self.appointed;
        self.members
            .send_where(frame, |u| moderates(u, owner, appointed));
    }

    /// [`Self::broadcast`] of a hidden user's message (or its edit): only its
    /// `author` and the members who may moderate the stream get it.
    fn broadcast_hidden(&mut self, frame: &ByteString, id: Option<i64>, author: Option<i64>) {
        let owner = self.stream.owner_id;
        let appointed = &self.appointed;
        let closed = self.members.broadcast_where(frame, id, |u| {
            u.is_some_and(|u| Some(u.id) == author || moderates(u, owner, appointed))
        });
        if closed > 0 {
            self.report_viewers();
        }
    }

    /// A message is held for review: moderators here see it at once, and in
    /// the queue when they connect.
    fn add_held(&mut self, held_id: i64, item: ByteString) {
        self.state_changes += 1;
        self.notify_moderators(&item);
        self.held.insert(held_id, item);
    }

    /// Replaces the queue of held messages (from PostgreSQL).
    fn load_held(&mut self, held: &[crate::store::held::Held]) {
        self.held = held
            .iter()
            .map(|h| (h.id, ByteString::from(protocol::held_item(h).to_string())))
            .collect();
    }

    /// `{"type":"held_queue","items":[...]}`.
    fn held_queue_frame(&self) -> ByteString {
        let mut s = String::from("{\"type\":\"held_queue\",\"items\":[");
        for (i, item) in self.held.values().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(item);
        }
        s.push_str("]}");
        ByteString::from(s)
    }

    fn report_viewers(&self) {
        self.hub
            .set_viewers(&self.key, self.members.len() as u64, self.viewers());
    }

    fn refuse(&self, conn_id: u64, refusal: &Refusal, cid: Option<&str>, reaction: bool) {
        if matches!(refusal, Refusal::RateLimited(_)) {
            self.hub.metrics().rate_limited.inc();
        }
        self.members.send_to(conn_id, &refusal.frame(cid, reaction));
    }

    fn error_to(&self, conn_id: u64, code: Code, message: &str) {
        self.members
            .send_to(conn_id, &protocol::error_frame(code, message, None, None));
    }

    /// Marks the viewer count changed; sends `presence` at most every 2 s.
    fn presence_changed(&mut self, ctx: &mut Context<Self>) {
        self.report_viewers();
        if self.presence_timer {
            return;
        }
        let wait = match self.presence_at {
            Some(at) if at.elapsed() < PRESENCE_EVERY => PRESENCE_EVERY - at.elapsed(),
            _ => Duration::ZERO,
        };
        self.presence_timer = true;
        ctx.run_later(wait, |room, ctx| {
            room.presence_timer = false;
            let n = room.viewers();
            if room.presence_sent != Some(n) && !room.members.is_empty() {
                room.presence_sent = Some(n);
                room.presence_at = Some(Instant::now());
                let frame = protocol::presence_frame(n);
                room.broadcast(&frame, None);
            }
            room.maybe_idle(ctx);
        });
    }

    /// Stops the room after it has been empty for `chat.room_idle_secs`.
    fn maybe_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.members.is_empty() {
            return;
        }
        let idle = Duration::from_secs(self.hub.settings().chat.room_idle_secs);
        ctx.run_later(idle, |room, ctx| {
            if room.members.is_empty() && room.inflight.is_empty() && !room.presence_timer {
                room.hub.remove_room(&room.key, &ctx.address());
                ctx.stop();
            }
        });
    }

    /// `join` / `leave` notices when `chat.announce_joins` is on: sent for a
    /// user's first socket in and last socket out, on every node, never stored.
    fn announce(&mut self, user: &RoomUser, kind: &'static str) {
        if !self.hub.settings().chat.announce_joins || self.members.sockets_of(user.id) != 0 {
            return;
        }
        let frame = protocol::announce_frame(&user.username, user.role, kind);
        self.broadcast(&frame, None);
        self.hub.relay().publish(
            &self.key,
            RelayEvent::Announce {
                frame: frame.to_string(),
            },
        );
    }

    fn finish_shutdown_if_drained(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_some() && self.inflight.is_empty() && self.chat_queue.is_empty() {
            self.flush_window();
            self.members.close_all(1012, "server restarting");
            if let Some(done) = self.shutdown.take() {
                let _ = done.send(());
            }
            self.hub.remove_room(&self.key, &ctx.address());
            ctx.stop();
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.hub.metrics().rooms.inc();
        tracing::info!(tenant = %self.key.slug, stream = self.key.stream_id, "room started");
        let relay = self.hub.relay();
        relay.subscribe(&self.key);
        // One keep-alive round for the whole room, not a timer per socket:
        // every socket is pinged, and one silent for too long is closed.
        let settings = self.hub.settings();
        // The round is spread over the interval, four steps a second (see
        // `Members::keep_alive`).
        let steps = settings.server.ping_interval_secs.max(1) * KEEP_ALIVE_STEPS_PER_SEC;
        let pong_timeout = settings.server.pong_timeout_secs.max(1) as u32;
        let mut step = 0u64;
        let every = Duration::from_secs(1) / KEEP_ALIVE_STEPS_PER_SEC as u32;
        ctx.run_interval(every, move |room, ctx| {
            step = step.wrapping_add(1);
            for conn_id in room.members.keep_alive(pong_timeout, step, steps) {
                room.leave(conn_id, ctx);
            }
        });
        if !relay.is_up() {
            // Catch up from PostgreSQL once the relay is back.
            self.relay_down = true;
        }
        // The room's state is loaded before any join is handled (this room
        // only: other rooms go on).
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.stream.room_id;
        let ring_size = self.hub.settings().chat.ring_size as i64;
        let stream_id = self.key.stream_id;
        let key = self.key.clone();
        self.load_mentions(ctx);
        ctx.wait(
            async move {
                let stamps = store.stamps(&slug).await;
                let snapshot = store.room_snapshot(&slug, room_id, ring_size).await;
                let pinned = store.pinned_message(&slug, room_id).await;
                let restrictions = store.restrictions(&slug, stream_id, None).await;
                let terms = store.blocked_terms(&slug, stream_id).await;
                let appointed = store.stream_moderator_ids(&slug, stream_id).await;
                // Sockets already open on other nodes, for the first hello.
                let elsewhere = relay.presence_total(&key).await;
                let held = store.held_queue(&slug, room_id).await;
                let hidden = store.hidden_users(&slug, stream_id).await;
                let hidden_authors = store
                    .hidden_authors(&slug, room_id, RESUME_MAX as i64)
                    .await;
                // Applied on the room once everything is read.
                move |room: &mut RoomActor| {
                    if let Ok(rows) = hidden {
                        room.hidden = Hidden::from_rows(rows);
                    }
                    match hidden_authors {
                        Ok(ids) => room.hidden_authors.extend(ids),
                        Err(e) => {
                            tracing::warn!(error = %e, "room started without its hidden authors")
                        }
                    }
                    if let Ok(held) = held {
                        room.load_held(&held);
                    }
                    if let Ok(stamps) = stamps {
                        room.stamps = stamps;
                    }
                    if let Ok(Some(m)) = pinned {
                        room.pinned = Some((m.id, crate::moderation::pinned_json(&m)));
                    }
                    match restrictions {
                        Ok(list) => room.restrictions = Restrictions::from_rows(list),
                        Err(e) => tracing::warn!(error = %e, "room started without its bans"),
                    }
                    if let Ok(terms) = terms {
                        (room.terms, room.hold_terms) = compile_terms(&terms);
                    }
                    if let Ok(ids) = appointed {
                        room.appointed = ids.into_iter().collect();
                    }
                    room.remote_viewers = elsewhere.unwrap_or(0);
                    match snapshot {
                        Ok((messages, has_older, last_seq)) => {
                            room.load_ring(&messages, has_older);
                            room.order = Sequencer::new(last_seq);
                        }
                        Err(e) => {
                            // History comes from the database per join, and the
                            // position from the first message or a later snapshot.
                            tracing::warn!(error = %e, "room started without history");
                        }
                    }
                }
            }
            .into_actor(self)
            .map(|apply, room, _| apply(room)),
        );
        // Forget old client_ids, expired bans and idle limiter keys every minute.
        ctx.run_interval(Duration::from_secs(60), |room, _| {
            room.inflight.prune();
            room.restrictions.prune(OffsetDateTime::now_utc());
            room.chat_limiter.retain_recent();
            room.reaction_limiter.retain_recent();
            let gap = Duration::from_secs(room.slow_mode_seconds.max(0) as u64);
            room.last_chat.retain(|_, at| at.elapsed() < gap);
        });
        // A room started without a socket (a status notice) stops when idle.
        self.maybe_idle(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.hub.metrics().rooms.dec();
        tracing::info!(tenant = %self.key.slug, stream = self.key.stream_id, "room stopped");
        self.hub.relay().unsubscribe(&self.key);
        self.hub.set_viewers(&self.key, 0, 0);
        self.members.close_all(1012, "room closed");
    }
}

/// A join is answered once the socket's `hello` and history are queued: the
/// session reads nothing from its client before (see `sessions`), so no
/// answer to a client frame can come before them. While a history loads from
/// PostgreSQL the room goes on with its other work.
impl Handler<Join> for RoomActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, join: Join, ctx: &mut Context<Self>) -> Self::Result {
        let conn_id = join.conn_id;
        if self.shutdown.is_some() {
            join.outlet.close_after_queue(1012, "server restarting");
            return Box::pin(actix::fut::ready(()));
        }
        if let Some(u) = &join.user {
            self.announce(u, "join");
        }
        // Hidden users' messages a reader is shown: all to moderators, their
        // own to a user who is (or was) hidden. The ring has none of them, so
        // such a history is read from PostgreSQL.
        let moderates = join.user.as_ref().is_some_and(|u| self.may_moderate(u));
        let shown = HiddenShown::for_reader(join.user.as_ref().map(|u| u.id), moderates);
        let sees_hidden = match shown {
            HiddenShown::All => !self.hidden_authors.is_empty(),
            HiddenShown::Author(id) => self.hidden_authors.contains(&id),
            HiddenShown::None => false,
        };
        let from_ring = match join.last_id {
            _ if sees_hidden => None,
            None => self.ring.recent(HISTORY),
            Some(after) => self.ring.after(after, RESUME_MAX),
        };
        let resume_point = join.last_id.unwrap_or(0);
        let loaded: Self::Result = match from_ring {
            Some((frames, truncated)) => {
                // Everything delivered so far is in that history or before it.
                let after = resume_point.max(self.newest_id);
                let outlet = join.outlet.clone();
                let user = join.user.clone();
                self.members
                    .insert(conn_id, join.outlet, join.user, after, false);
                let hello = self.hello(user.as_ref());
                let queue = user
                    .as_ref()
                    .filter(|u| self.may_moderate(u))
                    .map(|_| self.held_queue_frame());
                let ok = outlet.send_text(&hello)
                    && outlet.send_text(&protocol::history_frame(frames.iter(), truncated))
                    && queue.is_none_or(|q| outlet.send_text(&q));
                if !ok {
                    self.members.remove(conn_id);
                }
                Box::pin(actix::fut::ready(()))
            }
            None => {
                self.members
                    .insert(conn_id, join.outlet, join.user, resume_point, true);
                let last_id = join.last_id;
                let db = self.db();
                Box::pin(
                    async move {
                        match last_id {
                            None => {
                                db.store
                                    .recent_messages(&db.slug, db.room_id, HISTORY as i64, shown)
                                    .await
                            }
                            Some(after) => {
                                db.store
                                    .messages_after(
                                        &db.slug,
                                        db.room_id,
                                        after,
                                        RESUME_MAX as i64,
                                        shown,
                                    )
                                    .await
                            }
                        }
                    }
                    .into_actor(self)
                    .map(move |r, room, ctx| {
                        let (messages, truncated) = match r {
                            Ok(page) => page,
                            // A resumed history misses nothing (PROTOCOL.md):
                            // one that cannot be read now is not sent short;
                            // the socket closes to reconnect (1012) and its
                            // client resumes from the same id.
                            Err(e) if last_id.is_some() => {
                                tracing::warn!(error = %e, "resume unavailable; closing to reconnect");
                                if room.members.close(conn_id, 1012, "history unavailable") {
                                    room.presence_changed(ctx);
                                }
                                return;
                            }
                            // A first history says older messages exist (to
                            // be paged back through the replay API).
                            Err(e) => {
                                tracing::warn!(error = %e, "history unavailable");
                                (Vec::new(), true)
                            }
                        };
                        let Some(user) = room.members.get(conn_id).map(|m| m.user.clone()) else {
                            return;
                        };
                        let hello = room.hello(user.as_ref());
                        let frames: Vec<ByteString> =
                            messages.iter().map(protocol::message_frame).collect();
                        let history = protocol::history_frame(frames.iter(), truncated);
                        let newest = messages.last().map(|m| m.id);
                        let queue = user
                            .as_ref()
                            .filter(|u| room.may_moderate(u))
                            .map(|_| room.held_queue_frame());
                        room.members.finish_loading(
                            conn_id,
                            &hello,
                            &history,
                            newest,
                            queue.as_ref(),
                        );
                    }),
                )
            }
        };
        self.presence_changed(ctx);
        loaded
    }
}

impl Handler<Leave> for RoomActor {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Context<Self>) {
        self.leave(leave.conn_id, ctx);
    }
}

impl RoomActor {
    /// A socket leaves (closed, gone, or silent too long); a second leave of
    /// the same socket does nothing.
    fn leave(&mut self, conn_id: u64, ctx: &mut Context<Self>) {
        if let Some(m) = self.members.remove(conn_id).filter(|m| !m.poster) {
            if let Some(u) = &m.user {
                self.announce(u, "leave");
            }
            self.presence_changed(ctx);
        }
        self.maybe_idle(ctx);
    }
}

impl Handler<Shutdown> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.shutdown = Some(msg.done);
        self.finish_shutdown_if_drained(ctx);
    }
}

impl Handler<PresenceTotal> for RoomActor {
    type Result = ();

    fn handle(&mut self, p: PresenceTotal, ctx: &mut Context<Self>) {
        let remote = p.total.saturating_sub(p.mine);
        if remote != self.remote_viewers {
            self.remote_viewers = remote;
            self.presence_changed(ctx);
        }
    }
}
