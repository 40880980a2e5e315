//! The room actor: a thin shell that feeds a room's inputs (sockets, the batch
//! writer, the relay, timers) into its rules and carries the decisions out.
//! The rules live in plain modules beside it: [`super::admission`] (may this
//! be sent now), [`super::restrictions`] (bans and timeouts, as the database
//! has them), [`super::sequencer`] (messages out in seq order, each once, gaps
//! filled from PostgreSQL), [`super::pending`] (in-flight messages and
//! `client_id`s), [`super::members`] (fan-out) and [`super::ring`] (history).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytestring::ByteString;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::{
    admission::{Refusal, Rules, Sender},
    inbox::*,
    members::{Members, RoomUser},
    pending::{Inflight, Known, Pending},
    restrictions::{Change, Restrictions},
    ring::{Ring, RingEntry},
    sequencer::{Sequencer, Slot},
    Hub, RoomKey,
};
use crate::{
    auth::{keyed, KeyedLimiter},
    domain::Role,
    error::{ApiError, Code},
    metrics,
    moderation::{blocked::BlockedTerm, can_moderate, execute, ModEvent},
    protocol::{self, Hello, StampView, UserView},
    reactions::ReactionWindow,
    relay::RelayEvent,
    sessions::outlet::codes,
    store::{
        messages::{InsertOutcome, MessageType, NewMessage, StoredMessage},
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
/// With several nodes, how often a room asks PostgreSQL for messages newer
/// than what it has delivered (a relay event may have been lost).
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// How long a gap in the sequence may wait for the relay before it is
/// fetched from PostgreSQL.
const GAP_WAIT: Duration = Duration::from_millis(250);
/// Most messages fetched per catch-up query.
const CATCH_UP_MAX: i64 = 500;
/// Deleted ids remembered before their message arrived (bounded).
const EARLY_DELETES: usize = 1024;
/// Shortest gap between two `presence` frames.
const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// A stored message ready to go out.
#[derive(Debug)]
struct Delivery {
    id: i64,
    frame: ByteString,
    user_id: Option<i64>,
    /// Stored by another node (slow mode counts it on delivery).
    remote: bool,
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
    order: Sequencer<Delivery>,
    /// The highest message id delivered.
    newest_id: i64,
    /// A catch-up query is running.
    catching_up: bool,
    /// A gap timer is armed.
    gap_timer: bool,
    /// Ids deleted before their message reached this room.
    early_deletes: VecDeque<i64>,
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
    /// Users appointed moderator of this stream.
    appointed: HashSet<i64>,
    /// Last accepted chat message per user (slow mode).
    last_chat: HashMap<i64, Instant>,
    /// Sockets on other nodes (from the relay's presence).
    remote_viewers: u64,
    /// Set while the relay is down (events of other nodes may be missing).
    relay_down: bool,
}

impl RoomActor {
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
        let queue = limits.socket_queue;
        Self {
            hub,
            key,
            store,
            writer,
            stream: stream.clone(),
            status: stream.status,
            slow_mode_seconds: stream.slow_mode_seconds,
            stamps: Vec::new(),
            members: Members::new(queue),
            ring: Ring::new(ring_size, Vec::new(), true),
            order: Sequencer::unknown(),
            newest_id: 0,
            catching_up: false,
            gap_timer: false,
            early_deletes: VecDeque::new(),
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
            appointed: HashSet::new(),
            last_chat: HashMap::new(),
            remote_viewers: 0,
            relay_down: false,
        }
    }

    /// Starts the actor with a roomy mailbox.
    pub fn start_room(self) -> Addr<Self> {
        Self::create(|ctx| {
            ctx.set_mailbox_capacity(4096);
            self
        })
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            status: self.status,
            slow_mode_seconds: self.slow_mode_seconds,
            terms: &self.terms,
            restrictions: &self.restrictions,
            shutting_down: self.shutdown.is_some(),
        }
    }

    fn sender(&self, user: Option<&RoomUser>) -> Option<Sender> {
        user.map(|u| Sender {
            user_id: u.id,
            exempt: self.may_moderate(u),
            last_chat: self.last_chat.get(&u.id).copied(),
        })
    }

    /// The room's current view of a user's rights (slow mode exemption, held
    /// queues); moderation actions are checked against the database.
    fn may_moderate(&self, u: &RoomUser) -> bool {
        matches!(u.role, Role::Admin | Role::Moderator)
            || u.id == self.stream.owner_id
            || self.appointed.contains(&u.id)
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
            viewers: self.viewers(),
            pinned: pinned.as_deref(),
            stamps: &self.stamps,
        })
    }

    /// Sends a frame to every member (`id` for `message` frames).
    fn broadcast(&mut self, frame: &ByteString, id: Option<i64>) {
        if self.members.broadcast(frame, id) > 0 {
            self.report_viewers();
        }
    }

    fn report_viewers(&self) {
        self.hub
            .set_viewers(&self.key, self.members.len() as u64, self.viewers());
    }

    fn refuse(&self, conn_id: u64, refusal: &Refusal, cid: Option<&str>, reaction: bool) {
        if matches!(refusal, Refusal::RateLimited(_)) {
            metrics::RATE_LIMITED.inc();
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

    /// Hands a message to the batch writer.
    fn submit(&mut self, ctx: &mut Context<Self>, pending: Pending) -> Result<(), ()> {
        let job = WriteJob {
            slug: self.key.slug.clone(),
            message: NewMessage {
                room_id: self.stream.room_id,
                user_id: pending.user.as_ref().map(|u| u.id),
                content: pending.content.clone(),
                message_type: pending.message_type,
                client_id: pending.client_id.clone(),
            },
            token: self.inflight.next_token(),
            reply_to: ctx.address().recipient(),
        };
        self.writer.submit(job).map_err(|_| ())?;
        self.inflight.start(pending);
        Ok(())
    }

    /// Posts a system notice (stored, then broadcast).
    fn notice(&mut self, ctx: &mut Context<Self>, text: &str, kind: MessageType) {
        let _ = self.submit(
            ctx,
            Pending {
                conn_id: None,
                waiters: Vec::new(),
                user: None,
                content: text.to_string(),
                message_type: kind,
                client_id: None,
            },
        );
    }

    /// Offers a stored message to the sequencer and sends out whatever is
    /// now in order.
    fn deliver(&mut self, ctx: &mut Context<Self>, seq: i64, slot: Slot<Delivery>) {
        let slot = match slot {
            Slot::Deliver(d) if self.early_deletes.contains(&d.id) => Slot::Skip,
            other => other,
        };
        for d in self.order.offer(seq, slot, Instant::now()) {
            self.emit(d);
        }
        self.watch_gap(ctx);
    }

    fn emit(&mut self, d: Delivery) {
        self.newest_id = self.newest_id.max(d.id);
        if let (Some(u), true) = (d.user_id, d.remote) {
            self.last_chat.insert(u, Instant::now());
        }
        self.ring.push(RingEntry {
            id: d.id,
            frame: d.frame.clone(),
        });
        self.broadcast(&d.frame, Some(d.id));
    }

    /// While later messages wait behind a gap, checks every [`GAP_WAIT`]
    /// and fetches the gap from PostgreSQL once it is overdue.
    fn watch_gap(&mut self, ctx: &mut Context<Self>) {
        if self.order.held() == 0 || self.gap_timer {
            return;
        }
        self.gap_timer = true;
        ctx.run_later(GAP_WAIT, |room, ctx| {
            room.gap_timer = false;
            if room.order.overdue(Instant::now(), GAP_WAIT).is_some() {
                room.catch_up(ctx);
            }
            room.watch_gap(ctx);
        });
    }

    /// Fetches every stored message newer than what the room has delivered
    /// and delivers it in order (deleted ones only fill their seq). Asks only
    /// for what is newer, so nothing delivered is ever delivered again.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        if self.catching_up {
            return;
        }
        self.catching_up = true;
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.stream.room_id;
        if !self.order.is_known() {
            // The room never learnt its position: take it from a snapshot.
            let ring_size = self.hub.settings().chat.ring_size as i64;
            ctx.spawn(
                async move { store.room_snapshot(&slug, room_id, ring_size).await }
                    .into_actor(self)
                    .map(|r, room, _| {
                        room.catching_up = false;
                        if let Ok((messages, has_older, last_seq)) = r {
                            room.load_ring(&messages, has_older);
                            for d in room.order.learn(last_seq) {
                                room.emit(d);
                            }
                        }
                    }),
            );
            return;
        }
        let after = self.order.delivered();
        ctx.spawn(
            async move {
                store
                    .messages_after_seq(&slug, room_id, after, CATCH_UP_MAX)
                    .await
            }
            .into_actor(self)
            .map(|r, room, ctx| {
                room.catching_up = false;
                match r {
                    Ok(rows) => {
                        let more = rows.len() as i64 == CATCH_UP_MAX;
                        for (m, deleted) in rows {
                            let seq = m.seq;
                            let slot = if deleted {
                                Slot::Skip
                            } else {
                                Slot::Deliver(Delivery {
                                    id: m.id,
                                    frame: protocol::message_frame(&m),
                                    user_id: m.user_id,
                                    remote: true,
                                })
                            };
                            room.deliver(ctx, seq, slot);
                        }
                        if more {
                            room.catch_up(ctx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %room.key.slug, stream = room.key.stream_id, error = %e, "catch-up failed")
                    }
                }
            }),
        );
    }

    fn load_ring(&mut self, messages: &[StoredMessage], has_older: bool) {
        let entries = messages
            .iter()
            .map(|m| RingEntry {
                id: m.id,
                frame: protocol::message_frame(m),
            })
            .collect();
        self.newest_id = self.newest_id.max(messages.last().map_or(0, |m| m.id));
        self.ring = Ring::new(self.hub.settings().chat.ring_size, entries, has_older);
    }

    /// Starts the window timer unless it runs.
    fn arm_window(&mut self, ctx: &mut Context<Self>) {
        if !self.window_timer {
            self.window_timer = true;
            let window = Duration::from_millis(self.hub.settings().reactions.window_ms.max(1));
            ctx.run_later(window, |room, _| {
                room.window_timer = false;
                room.flush_window();
            });
        }
    }

    /// Sends the current reaction window, if anything is in it.
    fn flush_window(&mut self) {
        let local = self.window.take_local();
        if !local.is_empty() {
            self.hub
                .relay()
                .publish(&self.key, RelayEvent::Reactions { counts: local });
        }
        let window_ms = self.hub.settings().reactions.window_ms;
        if let Some(frame) = self.window.take_frame(&self.stamps, window_ms) {
            self.broadcast(&frame, None);
        }
    }

    fn finish_shutdown_if_drained(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_some() && self.inflight.is_empty() {
            self.flush_window();
            self.members.close_all(1012, "server restarting");
            if let Some(done) = self.shutdown.take() {
                let _ = done.send(());
            }
            self.hub.remove_room(&self.key, &ctx.address());
            ctx.stop();
        }
    }

    fn load_terms(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let stream_id = self.key.stream_id;
        ctx.spawn(
            async move { store.blocked_terms(&slug, stream_id).await }
                .into_actor(self)
                .map(|r, room, _| match r {
                    Ok(terms) => room.terms = compile_terms(&terms),
                    Err(e) => tracing::warn!(error = %e, "blocked terms not loaded"),
                }),
        );
    }

    /// Reads the stream's appointed moderators again and refreshes members'
    /// rights.
    fn load_rights(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let stream_id = self.key.stream_id;
        ctx.spawn(
            async move { store.stream_moderator_ids(&slug, stream_id).await }
                .into_actor(self)
                .map(|r, room, _| match r {
                    Ok(ids) => {
                        room.appointed = ids.into_iter().collect();
                        let owner = room.stream.owner_id;
                        let appointed = room.appointed.clone();
                        for u in room.members.users_mut() {
                            u.can_moderate = matches!(u.role, Role::Admin | Role::Moderator)
                                || u.id == owner
                                || appointed.contains(&u.id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "moderators not loaded"),
                }),
        );
    }

    /// Applies a stored moderation event to the room's state and broadcasts it.
    fn apply_event(&mut self, event: ModEvent) {
        if let Some(change) = Change::of(&event) {
            self.restrictions.apply(&change);
        }
        match &event {
            ModEvent::Delete { message_id } => {
                if self.ring.contains(*message_id) || *message_id <= self.newest_id {
                    self.ring.remove(*message_id);
                } else {
                    // Its message has not reached this room yet: skip it then.
                    self.early_deletes.push_back(*message_id);
                    if self.early_deletes.len() > EARLY_DELETES {
                        self.early_deletes.pop_front();
                    }
                }
                if self.pinned.as_ref().is_some_and(|(id, _)| id == message_id) {
                    self.pinned = None;
                }
            }
            ModEvent::Pin { message } => {
                let id = message["id"].as_i64().unwrap_or_default();
                self.pinned = Some((id, message.clone()));
            }
            ModEvent::Unpin => self.pinned = None,
            ModEvent::Clear => {
                self.ring.clear();
                self.pinned = None;
            }
            ModEvent::SlowMode { seconds } => self.slow_mode_seconds = *seconds,
            ModEvent::Ban { .. } | ModEvent::Timeout { .. } | ModEvent::Unban { .. } => {}
        }
        let frame = event.frame();
        self.broadcast(&frame, None);
        if let ModEvent::Ban { user_id, .. } = &event {
            if self.members.close_user(*user_id, codes::BANNED, "banned") > 0 {
                self.report_viewers();
            }
        }
    }

    /// After a relay outage: what other nodes did meanwhile comes from
    /// PostgreSQL — messages (newer than delivered), deletions of messages the
    /// ring holds, bans, status, slow mode, pin, terms and rights.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        self.catch_up(ctx);
        self.load_terms(ctx);
        self.load_rights(ctx);
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.stream.room_id;
        let stream_id = self.key.stream_id;
        let ring_size = self.hub.settings().chat.ring_size as i64;
        ctx.spawn(
            async move {
                let visible = store.room_snapshot(&slug, room_id, ring_size).await;
                let restrictions = store.restrictions(&slug, stream_id, None).await;
                let stream = store.stream(&slug, stream_id).await;
                let pinned = store.pinned_message(&slug, room_id).await;
                (visible, restrictions, stream, pinned)
            }
            .into_actor(self)
            .map(|(visible, restrictions, stream, pinned), room, _| {
                if let Ok((messages, has_older, _)) = visible {
                    room.drop_deleted(&messages, has_older);
                }
                if let Ok(list) = restrictions {
                    room.restrictions = Restrictions::from_rows(list);
                }
                if let Ok(Some(s)) = stream {
                    room.status = s.status;
                    room.slow_mode_seconds = s.slow_mode_seconds;
                }
                if let Ok(p) = pinned {
                    room.pinned = p.map(|m| (m.id, crate::moderation::pinned_json(&m)));
                }
            }),
        );
    }

    /// Removes from the ring, and tells members to delete, every message the
    /// ring holds that PostgreSQL no longer shows (deleted on another node
    /// while the relay was away). `visible` is the newest visible messages.
    fn drop_deleted(&mut self, visible: &[StoredMessage], has_older: bool) {
        let oldest = visible.first().map_or(i64::MAX, |m| m.id);
        let fresh: HashSet<i64> = visible.iter().map(|m| m.id).collect();
        for id in self.ring.ids() {
            // Without older messages in the database, the snapshot covers everything.
            if !fresh.contains(&id) && (!has_older || id >= oldest) {
                self.ring.remove(id);
                self.broadcast(&ModEvent::Delete { message_id: id }.frame(), None);
            }
        }
    }
}

/// Blocked terms as the matcher wants them.
fn compile_terms(terms: &[(String, bool)]) -> Vec<BlockedTerm> {
    terms
        .iter()
        .filter_map(|(t, _)| BlockedTerm::new(t))
        .collect()
}

/// Time since the commit (clock skew between PostgreSQL and us clamps to zero).
fn commit_age(at: OffsetDateTime) -> Duration {
    let age = OffsetDateTime::now_utc() - at;
    Duration::try_from(age).unwrap_or(Duration::ZERO)
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::ROOMS.inc();
        tracing::info!(tenant = %self.key.slug, stream = self.key.stream_id, "room started");
        let relay = self.hub.relay();
        relay.subscribe(&self.key);
        if relay.is_distributed() {
            ctx.run_interval(SWEEP_EVERY, |room, ctx| {
                if !room.members.is_empty() {
                    room.catch_up(ctx);
                }
            });
        }
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
                (
                    stamps,
                    snapshot,
                    pinned,
                    restrictions,
                    terms,
                    appointed,
                    elsewhere,
                )
            }
            .into_actor(self)
            .map(
                |(stamps, snapshot, pinned, restrictions, terms, appointed, elsewhere), room, _| {
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
                        room.terms = compile_terms(&terms);
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
                },
            ),
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
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::ROOMS.dec();
        tracing::info!(tenant = %self.key.slug, stream = self.key.stream_id, "room stopped");
        self.hub.relay().unsubscribe(&self.key);
        self.hub.set_viewers(&self.key, 0, 0);
        self.members.close_all(1012, "room closed");
    }
}

impl Handler<Join> for RoomActor {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Context<Self>) {
        let conn_id = join.conn_id;
        if self.shutdown.is_some() {
            join.outlet.close_after_queue(1012, "server restarting");
            return;
        }
        if let Some(u) = &join.user {
            self.announce(u, "join");
        }
        let from_ring = match join.last_id {
            None => self.ring.recent(HISTORY),
            Some(after) => self.ring.after(after, RESUME_MAX),
        };
        let resume_point = join.last_id.unwrap_or(0);
        match from_ring {
            Some((frames, truncated)) => {
                // Everything delivered so far is in that history or before it.
                let after = resume_point.max(self.newest_id);
                let outlet = join.outlet.clone();
                let user = join.user.clone();
                self.members
                    .insert(conn_id, join.outlet, join.user, after, false);
                let hello = self.hello(user.as_ref());
                let ok = outlet.send_text(&hello)
                    && outlet.send_text(&protocol::history_frame(frames.iter(), truncated));
                if !ok {
                    self.members.remove(conn_id);
                }
            }
            None => {
                self.members
                    .insert(conn_id, join.outlet, join.user, resume_point, true);
                let store = self.store.clone();
                let slug = self.key.slug.clone();
                let room_id = self.stream.room_id;
                let last_id = join.last_id;
                ctx.spawn(
                    async move {
                        match last_id {
                            None => store.recent_messages(&slug, room_id, HISTORY as i64).await,
                            Some(after) => {
                                store
                                    .messages_after(&slug, room_id, after, RESUME_MAX as i64)
                                    .await
                            }
                        }
                    }
                    .into_actor(self)
                    .map(move |r, room, _| {
                        let (messages, truncated) = r.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "history unavailable");
                            (Vec::new(), true)
                        });
                        let Some(user) = room.members.get(conn_id).map(|m| m.user.clone()) else {
                            return;
                        };
                        let hello = room.hello(user.as_ref());
                        let frames: Vec<ByteString> =
                            messages.iter().map(protocol::message_frame).collect();
                        let history = protocol::history_frame(frames.iter(), truncated);
                        let newest = messages.last().map(|m| m.id);
                        room.members
                            .finish_loading(conn_id, &hello, &history, newest);
                    }),
                );
            }
        }
        self.presence_changed(ctx);
    }
}

impl Handler<Leave> for RoomActor {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Context<Self>) {
        if let Some(m) = self.members.remove(leave.conn_id) {
            if let Some(u) = &m.user {
                self.announce(u, "leave");
            }
            self.presence_changed(ctx);
        }
        self.maybe_idle(ctx);
    }
}

impl Handler<Chat> for RoomActor {
    type Result = ();

    fn handle(&mut self, chat: Chat, ctx: &mut Context<Self>) {
        let conn_id = chat.conn_id;
        let cid = chat.client_id.as_deref();
        let user = self.members.user(conn_id).cloned();
        let known = match (&user, cid) {
            (Some(u), Some(c)) => self.inflight.known(u.id, c),
            _ => None,
        };
        let sender = self.sender(user.as_ref());
        let decision = self.rules().admit_message(
            sender.as_ref(),
            chat.text.as_str(),
            known.is_some(),
            &self.chat_limiter,
            OffsetDateTime::now_utc(),
        );
        if let Err(refusal) = decision {
            self.refuse(conn_id, &refusal, cid, false);
            return;
        }
        // A client_id seen before is acknowledged with the first message's id.
        match known {
            Some(Known::Stored(id)) => {
                self.members.send_to(conn_id, &protocol::ack_frame(cid, id));
                return;
            }
            Some(Known::InFlight(token)) => {
                self.inflight.add_waiter(token, conn_id);
                return;
            }
            None => {}
        }
        let Some(user) = user else { return };
        self.last_chat.insert(user.id, Instant::now());
        let pending = Pending {
            conn_id: Some(conn_id),
            waiters: Vec::new(),
            user: Some(user),
            content: chat.text.into_string(),
            message_type: MessageType::Message,
            client_id: chat.client_id.clone(),
        };
        if self.submit(ctx, pending).is_err() {
            self.members.send_to(
                conn_id,
                &protocol::error_frame(
                    Code::Unavailable,
                    "The message could not be stored; send it again.",
                    None,
                    chat.client_id.as_deref(),
                ),
            );
        }
    }
}

impl Handler<Written> for RoomActor {
    type Result = ();

    fn handle(&mut self, written: Written, ctx: &mut Context<Self>) {
        for (token, outcome) in written.results {
            let stored_id = match &outcome {
                Ok(InsertOutcome::Stored { id, .. } | InsertOutcome::Duplicate { id }) => Some(*id),
                Err(()) => None,
            };
            let Some(p) = self.inflight.finish(token, stored_id) else {
                continue;
            };
            match outcome {
                Ok(InsertOutcome::Stored { id, seq, at }) => {
                    metrics::MESSAGES_STORED.inc();
                    let message = StoredMessage {
                        id,
                        seq,
                        user_id: p.user.as_ref().map(|u| u.id),
                        username: p.user.as_ref().map(|u| u.username.clone()),
                        role: p.user.as_ref().map(|u| u.role),
                        content: p.content.clone(),
                        message_type: p.message_type,
                        client_id: p.client_id.clone(),
                        created_at: at,
                    };
                    let frame = protocol::message_frame(&message);
                    let started = Instant::now();
                    self.hub.relay().publish(
                        &self.key,
                        RelayEvent::Message {
                            frame: frame.to_string(),
                            id,
                            seq,
                            user_id: message.user_id,
                        },
                    );
                    self.deliver(
                        ctx,
                        seq,
                        Slot::Deliver(Delivery {
                            id,
                            frame,
                            user_id: message.user_id,
                            remote: false,
                        }),
                    );
                    metrics::BROADCAST_LATENCY.observe(started.elapsed() + commit_age(at));
                    let ack = protocol::ack_frame(p.client_id.as_deref(), id);
                    for c in p.sockets() {
                        self.members.send_to(c, &ack);
                    }
                }
                Ok(InsertOutcome::Duplicate { id }) => {
                    let ack = protocol::ack_frame(p.client_id.as_deref(), id);
                    for c in p.sockets() {
                        self.members.send_to(c, &ack);
                    }
                }
                Err(()) => {
                    let err = protocol::error_frame(
                        Code::Unavailable,
                        "The message could not be stored; send it again.",
                        None,
                        p.client_id.as_deref(),
                    );
                    for c in p.sockets() {
                        self.members.send_to(c, &err);
                    }
                }
            }
        }
        self.finish_shutdown_if_drained(ctx);
    }
}

impl Handler<React> for RoomActor {
    type Result = ();

    fn handle(&mut self, react: React, ctx: &mut Context<Self>) {
        let conn_id = react.conn_id;
        let user = self.members.user(conn_id).cloned();
        let stamp = self
            .stamps
            .iter()
            .find(|s| i64::from(s.stamp_id) == react.stamp_id)
            .map(|s| s.stamp_id);
        let sender = self.sender(user.as_ref());
        let decision = self.rules().admit_reaction(
            sender.as_ref(),
            stamp.is_some(),
            &self.reaction_limiter,
            OffsetDateTime::now_utc(),
        );
        let (Ok(()), Some(user), Some(stamp_id)) = (decision.clone(), user, stamp) else {
            if let Err(refusal) = decision {
                self.refuse(conn_id, &refusal, None, true);
            }
            return;
        };
        let queued = self.hub.reactions().push(
            &self.key.slug,
            NewReaction {
                stream_id: self.key.stream_id,
                user_id: user.id,
                stamp_id,
                at: OffsetDateTime::now_utc(),
            },
        );
        if queued.is_err() {
            // Not counted anywhere: the window and the table stay equal.
            self.error_to(
                conn_id,
                Code::Unavailable,
                "Reactions cannot be taken now; try again.",
            );
            return;
        }
        metrics::REACTIONS_RECEIVED.inc();
        self.window.add(stamp_id, 1);
        self.arm_window(ctx);
    }
}

impl Handler<StatusChanged> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: StatusChanged, ctx: &mut Context<Self>) {
        if self.status == msg.status {
            return;
        }
        self.status = msg.status;
        match msg.status {
            StreamStatus::Live => self.notice(ctx, "Stream started", MessageType::System),
            StreamStatus::Ended => self.notice(ctx, "Stream ended", MessageType::System),
            StreamStatus::Scheduled => {}
        }
    }
}

impl Handler<Shutdown> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.shutdown = Some(msg.done);
        self.finish_shutdown_if_drained(ctx);
    }
}

impl Handler<Moderate> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Moderate, ctx: &mut Context<Self>) {
        let conn_id = msg.conn_id;
        let Some(user) = self.members.user(conn_id).cloned() else {
            self.error_to(conn_id, Code::NotAuthenticated, "Log in first.");
            return;
        };
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let stream = self.stream.clone();
        let hub = self.hub.clone();
        ctx.spawn(
            async move {
                // Rights as they are now in the database, not at connect.
                let forbidden = || ApiError::new(Code::Forbidden, "Only moderators can do that.");
                let fresh = store
                    .user_by_id(&slug, user.id)
                    .await?
                    .filter(|u| u.is_active)
                    .ok_or_else(forbidden)?;
                if !can_moderate(&store, &slug, &fresh, &stream).await? {
                    return Err(forbidden());
                }
                execute(&store, &slug, &stream, &fresh, msg.command).await
            }
            .into_actor(self)
            .map(move |r, room, _| match r {
                Ok(event) => hub.apply(&room.key, event),
                Err(e) => {
                    if e.code() == Code::Unavailable {
                        tracing::warn!(tenant = %room.key.slug, stream = room.key.stream_id, error = ?e, "moderation not stored");
                    }
                    room.error_to(conn_id, e.code(), &e.to_string());
                }
            }),
        );
    }
}

impl Handler<Apply> for RoomActor {
    type Result = ();

    fn handle(&mut self, Apply(event): Apply, _: &mut Context<Self>) {
        self.apply_event(event);
    }
}

impl Handler<Remote> for RoomActor {
    type Result = ();

    fn handle(&mut self, Remote(event): Remote, ctx: &mut Context<Self>) {
        match event {
            RelayEvent::Message {
                frame,
                id,
                seq,
                user_id,
            } => self.deliver(
                ctx,
                seq,
                Slot::Deliver(Delivery {
                    id,
                    frame: ByteString::from(frame),
                    user_id,
                    remote: true,
                }),
            ),
            RelayEvent::Reactions { counts } => {
                for (stamp, n) in counts {
                    self.window.add_remote(stamp, n);
                }
                self.arm_window(ctx);
            }
            RelayEvent::Announce { frame } => self.broadcast(&ByteString::from(frame), None),
            RelayEvent::Moderation { event } => self.apply_event(event),
            RelayEvent::Status { status } => self.status = status,
            RelayEvent::Terms => self.load_terms(ctx),
            RelayEvent::Rights => self.load_rights(ctx),
            RelayEvent::SessionEnded { .. } | RelayEvent::UserSessionsEnded { .. } => {}
        }
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

impl Handler<RelayState> for RoomActor {
    type Result = ();

    fn handle(&mut self, state: RelayState, ctx: &mut Context<Self>) {
        if !state.up {
            self.relay_down = true;
            return;
        }
        if !std::mem::take(&mut self.relay_down) {
            return;
        }
        tracing::info!(
            stream = self.key.stream_id,
            "relay back: catching up from PostgreSQL"
        );
        self.resync(ctx);
    }
}

impl Handler<ReloadTerms> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: ReloadTerms, ctx: &mut Context<Self>) {
        self.load_terms(ctx);
    }
}

impl Handler<ReloadRights> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: ReloadRights, ctx: &mut Context<Self>) {
        self.load_rights(ctx);
    }
}
