//! The room actor: members, history ring, rate limits, idempotency of
//! `client_id`s, presence, and the store-then-broadcast path of chat messages.
//! Every rule of a room is decided here, one message at a time, without locks.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytestring::ByteString;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::{
    ring::{Ring, RingEntry},
    Hub, RoomKey,
};
use crate::{
    auth::{keyed, retry_after_ms, KeyedLimiter},
    domain::{ChatText, Role},
    error::Code,
    metrics,
    moderation::{
        blocked::{self, BlockedTerm},
        execute, Command, ModEvent,
    },
    protocol::{self, Hello, StampView, UserView},
    reactions::ReactionWindow,
    relay::RelayEvent,
    sessions::outlet::Outlet,
    store::{
        messages::{InsertOutcome, MessageType, NewMessage, StoredMessage},
        moderation::Restriction,
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
/// How long a `client_id` is remembered.
const CLIENT_ID_TTL: Duration = Duration::from_secs(600);
/// How often a room of a multi-node cluster compares recent messages with PostgreSQL.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Shortest gap between two `presence` frames.
const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// A logged-in member's identity as the room needs it.
#[derive(Debug, Clone)]
pub struct RoomUser {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Tenant-wide role.
    pub role: Role,
    /// May moderate this stream (admin, moderator, owner, or appointed).
    pub can_moderate: bool,
}

impl RoomUser {
    fn as_user(&self) -> crate::store::accounts::User {
        crate::store::accounts::User {
            id: self.id,
            username: self.username.clone(),
            role: self.role,
            is_active: true,
        }
    }
}

/// A socket joins the room. The room queues `hello` and `history` itself.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Join {
    /// Connection id.
    pub conn_id: u64,
    /// The socket's outlet.
    pub outlet: Outlet,
    /// The user, or `None` for an anonymous viewer.
    pub user: Option<RoomUser>,
    /// Resume after this message id.
    pub last_id: Option<i64>,
}

/// A socket leaves (always sent from the session's `stopped()`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// Connection id.
    pub conn_id: u64,
}

/// A chat message from a member (already cleaned and checked).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Chat {
    /// Connection id.
    pub conn_id: u64,
    /// The text.
    pub text: ChatText,
    /// Idempotency key.
    pub client_id: Option<String>,
}

/// A reaction from a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct React {
    /// Connection id.
    pub conn_id: u64,
    /// The stamp (checked against the tenant's stamps here).
    pub stamp_id: i64,
}

/// A moderation command from a member's socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Moderate {
    /// Connection id.
    pub conn_id: u64,
    /// The command.
    pub command: Command,
}

/// A moderation action already stored and logged: apply and broadcast it.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Apply(pub ModEvent);

/// An event relayed from another node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Remote(pub RelayEvent);

/// The summed presence of the room across nodes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PresenceTotal {
    /// Sockets on every node.
    pub total: u64,
    /// This node's part of `total`.
    pub mine: u64,
}

/// The relay lost Redis (`up` false) or is back (`up` true: resynchronise
/// from PostgreSQL what other nodes did meanwhile).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayState {
    /// Connected or not.
    pub up: bool,
}

/// Blocked terms changed: load them again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReloadTerms;

/// The stream went live or ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StatusChanged {
    /// New status.
    pub status: StreamStatus,
}

/// Stop taking chat, finish every write, close sockets with 1012, then reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Fired when done.
    pub done: oneshot::Sender<()>,
}

/// A member still waiting for its history from the database buffers what the
/// room broadcasts meanwhile.
enum MemberState {
    Ready,
    Loading(Vec<(Option<i64>, ByteString)>),
}

struct Member {
    outlet: Outlet,
    user: Option<RoomUser>,
    state: MemberState,
}

/// A message handed to the writer, waiting for its commit.
struct Pending {
    conn_id: Option<u64>,
    /// Other sockets that sent the same client_id meanwhile.
    waiters: Vec<u64>,
    user: Option<RoomUser>,
    content: String,
    message_type: MessageType,
    client_id: Option<String>,
}

/// The actor of one (tenant, stream) on this node.
pub struct RoomActor {
    hub: Hub,
    key: RoomKey,
    store: Store,
    writer: MessageWriter,
    room_id: i64,
    stream: Stream,
    status: StreamStatus,
    slow_mode_seconds: i32,
    stamps: Vec<StampView>,
    members: HashMap<u64, Member>,
    ring: Ring,
    chat_limiter: KeyedLimiter<i64>,
    reaction_limiter: KeyedLimiter<i64>,
    window: ReactionWindow,
    window_timer: bool,
    next_token: u64,
    inflight: HashMap<u64, Pending>,
    inflight_cids: HashMap<(i64, String), u64>,
    recent_cids: HashMap<(i64, String), (i64, Instant)>,
    presence_sent: Option<u64>,
    presence_at: Option<Instant>,
    presence_timer: bool,
    shutdown: Option<oneshot::Sender<()>>,
    /// The pinned message's frame JSON and id.
    pinned: Option<(i64, serde_json::Value)>,
    /// Bans and timeouts in force, by user.
    restrictions: HashMap<i64, Vec<Restriction>>,
    /// Blocked terms of the stream and the tenant.
    terms: Vec<BlockedTerm>,
    /// Last accepted chat message per user (slow mode).
    last_chat: HashMap<i64, Instant>,
    /// Sockets on other nodes (from the relay's presence).
    remote_viewers: u64,
    /// Set while the relay is down (events of other nodes may be missing).
    relay_down: bool,
}

/// Why a user may not chat now.
enum Muted {
    Banned,
    TimedOut(OffsetDateTime),
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
        Self {
            hub,
            key,
            store,
            writer,
            room_id: stream.room_id,
            stream: stream.clone(),
            status: stream.status,
            slow_mode_seconds: stream.slow_mode_seconds,
            stamps: Vec::new(),
            members: HashMap::new(),
            ring: Ring::new(ring_size, Vec::new(), true),
            chat_limiter,
            reaction_limiter,
            window: ReactionWindow::default(),
            window_timer: false,
            next_token: 1,
            inflight: HashMap::new(),
            inflight_cids: HashMap::new(),
            recent_cids: HashMap::new(),
            presence_sent: None,
            presence_at: None,
            presence_timer: false,
            shutdown: None,
            pinned: None,
            restrictions: HashMap::new(),
            terms: Vec::new(),
            last_chat: HashMap::new(),
            remote_viewers: 0,
            relay_down: false,
        }
    }

    /// Whether a user is banned or timed out now.
    fn muted(&self, user_id: i64) -> Option<Muted> {
        let now = OffsetDateTime::now_utc();
        let list = self.restrictions.get(&user_id)?;
        if list
            .iter()
            .any(|r| r.is_ban && r.until.is_none_or(|u| u > now))
        {
            return Some(Muted::Banned);
        }
        list.iter()
            .filter(|r| !r.is_ban)
            .filter_map(|r| r.until)
            .filter(|u| *u > now)
            .max()
            .map(Muted::TimedOut)
    }

    fn load_terms(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let stream_id = self.key.stream_id;
        ctx.spawn(
            async move { store.blocked_terms(&slug, stream_id).await }
                .into_actor(self)
                .map(|r, room, _| match r {
                    Ok(terms) => {
                        room.terms = terms
                            .iter()
                            .filter_map(|(t, _)| BlockedTerm::new(t))
                            .collect()
                    }
                    Err(e) => tracing::warn!(error = %e, "blocked terms not loaded"),
                }),
        );
    }

    /// Starts the actor with a roomy mailbox.
    pub fn start_room(self) -> Addr<Self> {
        Self::create(|ctx| {
            ctx.set_mailbox_capacity(4096);
            self
        })
    }

    fn viewers(&self) -> u64 {
        self.members.len() as u64 + self.remote_viewers
    }

    fn can_chat(&self, user: Option<&RoomUser>) -> bool {
        match user {
            Some(u) => self.status != StreamStatus::Ended && self.muted(u.id).is_none(),
            None => false,
        }
    }

    fn hello(&self, user: Option<&RoomUser>) -> ByteString {
        let pinned = self
            .pinned
            .as_ref()
            .and_then(|(_, v)| serde_json::value::to_raw_value(v).ok());
        protocol::hello_frame(&Hello {
            kind: "hello",
            stream_id: self.key.stream_id,
            user: user.map(|u| UserView {
                username: &u.username,
                role: u.role.as_str(),
            }),
            can_chat: self.can_chat(user),
            slow_mode_seconds: self.slow_mode_seconds,
            viewers: self.viewers(),
            pinned: pinned.as_deref(),
            stamps: &self.stamps,
        })
    }

    /// Sends one event to every member; closes slow consumers.
    fn broadcast(&mut self, frame: &ByteString, id: Option<i64>) {
        metrics::BROADCASTS.inc();
        let mut gone = Vec::new();
        let mut delivered = 0u64;
        let queue = self.hub.settings().limits.socket_queue;
        for (conn_id, m) in self.members.iter_mut() {
            match &mut m.state {
                MemberState::Ready => {
                    if m.outlet.send_text(frame) {
                        delivered += 1;
                    } else {
                        gone.push(*conn_id);
                    }
                }
                MemberState::Loading(buf) => {
                    if buf.len() >= queue {
                        m.outlet.close(
                            crate::sessions::outlet::codes::SLOW_CONSUMER,
                            "slow consumer",
                        );
                        gone.push(*conn_id);
                    } else {
                        buf.push((id, frame.clone()));
                    }
                }
            }
        }
        // One shared counter update per event, not per socket.
        metrics::DELIVERIES.add(delivered);
        if !gone.is_empty() {
            for c in gone {
                self.members.remove(&c);
            }
            self.hub
                .set_viewers(&self.key, self.members.len() as u64, self.viewers());
        }
    }

    fn send_to(&self, conn_id: u64, frame: &ByteString) {
        if let Some(m) = self.members.get(&conn_id) {
            m.outlet.send_text(frame);
        }
    }

    fn error_to(
        &self,
        conn_id: u64,
        code: Code,
        message: &str,
        retry: Option<u64>,
        cid: Option<&str>,
    ) {
        self.send_to(conn_id, &protocol::error_frame(code, message, retry, cid));
    }

    /// Marks the viewer count changed; sends `presence` at most every 2 s.
    fn presence_changed(&mut self, ctx: &mut Context<Self>) {
        self.hub
            .set_viewers(&self.key, self.members.len() as u64, self.viewers());
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

    fn submit(&mut self, ctx: &mut Context<Self>, pending: Pending) -> Result<(), ()> {
        let token = self.next_token;
        self.next_token += 1;
        let job = WriteJob {
            slug: self.key.slug.clone(),
            message: NewMessage {
                room_id: self.room_id,
                user_id: pending.user.as_ref().map(|u| u.id),
                content: pending.content.clone(),
                message_type: pending.message_type,
                client_id: pending.client_id.clone(),
            },
            token,
            reply_to: ctx.address().recipient(),
        };
        self.writer.submit(job).map_err(|_| ())?;
        if let (Some(u), Some(c)) = (&pending.user, &pending.client_id) {
            self.inflight_cids.insert((u.id, c.clone()), token);
        }
        self.inflight.insert(token, pending);
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
            for m in self.members.values() {
                m.outlet.close_after_queue(1012, "server restarting");
            }
            self.members.clear();
            if let Some(done) = self.shutdown.take() {
                let _ = done.send(());
            }
            self.hub.remove_room(&self.key, &ctx.address());
            ctx.stop();
        }
    }

    /// Queues hello, history and anything buffered for a member whose history came
    /// from the database.
    fn finish_loading(&mut self, conn_id: u64, history: Result<(Vec<StoredMessage>, bool), ()>) {
        let hello = match self.members.get(&conn_id) {
            Some(m) => self.hello(m.user.as_ref()),
            None => return,
        };
        let Some(m) = self.members.get_mut(&conn_id) else {
            return;
        };
        let buffered = match std::mem::replace(&mut m.state, MemberState::Ready) {
            MemberState::Loading(b) => b,
            MemberState::Ready => Vec::new(),
        };
        let (messages, truncated) = history.unwrap_or_else(|_| (Vec::new(), true));
        let max_id = messages.last().map(|x| x.id).unwrap_or(i64::MIN);
        let frames: Vec<ByteString> = messages.iter().map(protocol::message_frame).collect();
        let mut ok = m.outlet.send_text(&hello)
            && m.outlet
                .send_text(&protocol::history_frame(frames.iter(), truncated));
        for (id, frame) in buffered {
            if ok && id.is_none_or(|id| id > max_id) {
                ok = m.outlet.send_text(&frame);
            }
        }
        if !ok {
            self.members.remove(&conn_id);
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::ROOMS.inc();
        tracing::info!(tenant = %self.key.slug, stream = self.key.stream_id, "room started");
        let relay = self.hub.relay();
        relay.subscribe(&self.key);
        if relay.is_distributed() {
            ctx.run_interval(SWEEP_EVERY, |room, ctx| room.sweep(ctx));
        }
        if !relay.is_up() {
            // Catch up from PostgreSQL once the relay is back.
            self.relay_down = true;
        }
        // Stamps and the ring are loaded before any join is handled.
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.room_id;
        let ring_size = self.hub.settings().chat.ring_size as i64;
        let stream_id = self.key.stream_id;
        ctx.wait(
            async move {
                let stamps = store.stamps(&slug).await;
                let recent = store.recent_messages(&slug, room_id, ring_size).await;
                let pinned = store.pinned_message(&slug, room_id).await;
                let restrictions = store.restrictions(&slug, stream_id, None).await;
                let terms = store.blocked_terms(&slug, stream_id).await;
                (stamps, recent, pinned, restrictions, terms)
            }
            .into_actor(self)
            .map(|(stamps, recent, pinned, restrictions, terms), room, _| {
                if let Ok(stamps) = stamps {
                    room.stamps = stamps;
                }
                if let Ok(Some(m)) = pinned {
                    room.pinned = Some((m.id, crate::moderation::pinned_json(&m)));
                }
                match restrictions {
                    Ok(list) => {
                        for r in list {
                            room.restrictions.entry(r.user_id).or_default().push(r);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "room started without its bans"),
                }
                if let Ok(terms) = terms {
                    room.terms = terms
                        .iter()
                        .filter_map(|(t, _)| BlockedTerm::new(t))
                        .collect();
                }
                match recent {
                    Ok((messages, has_older)) => {
                        let entries = messages
                            .iter()
                            .map(|m| RingEntry {
                                id: m.id,
                                frame: protocol::message_frame(m),
                            })
                            .collect();
                        room.ring =
                            Ring::new(room.hub.settings().chat.ring_size, entries, has_older);
                    }
                    Err(e) => {
                        // History will come from the database per join until it answers.
                        tracing::warn!(error = %e, "room started without history");
                    }
                }
            }),
        );
        // Forget old client_ids and prune the limiter every minute.
        ctx.run_interval(Duration::from_secs(60), |room, _| {
            room.recent_cids
                .retain(|_, (_, at)| at.elapsed() < CLIENT_ID_TTL);
            room.chat_limiter.retain_recent();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::ROOMS.dec();
        tracing::info!(tenant = %self.key.slug, stream = self.key.stream_id, "room stopped");
        self.hub.relay().unsubscribe(&self.key);
        self.hub.set_viewers(&self.key, 0, 0);
        for m in self.members.values() {
            m.outlet.close_after_queue(1012, "room closed");
        }
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
        self.members.insert(
            conn_id,
            Member {
                outlet: join.outlet.clone(),
                user: join.user.clone(),
                state: MemberState::Ready,
            },
        );
        let from_ring = match join.last_id {
            None => self.ring.recent(HISTORY),
            Some(after) => self.ring.after(after, RESUME_MAX),
        };
        match from_ring {
            Some((frames, truncated)) => {
                let hello = self.hello(join.user.as_ref());
                let ok = join.outlet.send_text(&hello)
                    && join
                        .outlet
                        .send_text(&protocol::history_frame(frames.iter(), truncated));
                if !ok {
                    self.members.remove(&conn_id);
                }
            }
            None => {
                if let Some(m) = self.members.get_mut(&conn_id) {
                    m.state = MemberState::Loading(Vec::new());
                }
                let store = self.store.clone();
                let slug = self.key.slug.clone();
                let room_id = self.room_id;
                let last_id = join.last_id;
                ctx.spawn(
                    async move {
                        let r = match last_id {
                            None => store.recent_messages(&slug, room_id, HISTORY as i64).await,
                            Some(after) => {
                                store
                                    .messages_after(&slug, room_id, after, RESUME_MAX as i64)
                                    .await
                            }
                        };
                        r.map_err(|e| tracing::warn!(error = %e, "history unavailable"))
                    }
                    .into_actor(self)
                    .map(move |r, room, _| room.finish_loading(conn_id, r)),
                );
            }
        }
        self.presence_changed(ctx);
    }
}

impl Handler<Leave> for RoomActor {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Context<Self>) {
        if self.members.remove(&leave.conn_id).is_some() {
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
        let Some(user) = self.members.get(&conn_id).and_then(|m| m.user.clone()) else {
            self.error_to(
                conn_id,
                Code::NotAuthenticated,
                "Log in to chat.",
                None,
                cid,
            );
            return;
        };
        if self.shutdown.is_some() {
            self.error_to(
                conn_id,
                Code::Unavailable,
                "The server is restarting; send again after reconnecting.",
                None,
                cid,
            );
            return;
        }
        if self.status == StreamStatus::Ended {
            self.error_to(
                conn_id,
                Code::ChatClosed,
                "The stream has ended; chat is closed.",
                None,
                cid,
            );
            return;
        }
        match self.muted(user.id) {
            Some(Muted::Banned) => {
                self.error_to(
                    conn_id,
                    Code::Banned,
                    "You are banned from this chat.",
                    None,
                    cid,
                );
                return;
            }
            Some(Muted::TimedOut(until)) => {
                let ms = (until - OffsetDateTime::now_utc())
                    .whole_milliseconds()
                    .max(1) as u64;
                let frame = protocol::error_frame_until(
                    Code::TimedOut,
                    "You are timed out.",
                    ms,
                    &protocol::timestamp_seconds(until),
                    cid,
                );
                self.send_to(conn_id, &frame);
                return;
            }
            None => {}
        }
        // A client_id seen before is acknowledged with the first message's id.
        if let Some(c) = &chat.client_id {
            let key = (user.id, c.clone());
            if let Some((id, at)) = self.recent_cids.get(&key) {
                if at.elapsed() < CLIENT_ID_TTL {
                    self.send_to(conn_id, &protocol::ack_frame(Some(c), *id));
                    return;
                }
            }
            if let Some(token) = self.inflight_cids.get(&key) {
                if let Some(p) = self.inflight.get_mut(token) {
                    p.waiters.push(conn_id);
                    return;
                }
            }
        }
        if self.slow_mode_seconds > 0 && !user.can_moderate {
            let gap = Duration::from_secs(self.slow_mode_seconds as u64);
            if let Some(last) = self.last_chat.get(&user.id) {
                if last.elapsed() < gap {
                    let ms = (gap - last.elapsed()).as_millis().max(1) as u64;
                    let msg = format!(
                        "Slow mode is on: one message every {} s.",
                        self.slow_mode_seconds
                    );
                    self.error_to(conn_id, Code::SlowMode, &msg, Some(ms), cid);
                    return;
                }
            }
        }
        if blocked::find(&self.terms, chat.text.as_str()).is_some() {
            self.error_to(
                conn_id,
                Code::BlockedTerm,
                "Your message contains a blocked term.",
                None,
                cid,
            );
            return;
        }
        if let Some(ms) = retry_after_ms(&self.chat_limiter, &user.id) {
            metrics::RATE_LIMITED.inc();
            self.error_to(
                conn_id,
                Code::RateLimited,
                "You are sending messages too fast.",
                Some(ms),
                cid,
            );
            return;
        }
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
            self.error_to(
                conn_id,
                Code::Unavailable,
                "The message could not be stored; send it again.",
                None,
                chat.client_id.as_deref(),
            );
        }
    }
}

impl Handler<Written> for RoomActor {
    type Result = ();

    fn handle(&mut self, written: Written, ctx: &mut Context<Self>) {
        for (token, outcome) in written.results {
            let Some(p) = self.inflight.remove(&token) else {
                continue;
            };
            if let (Some(u), Some(c)) = (&p.user, &p.client_id) {
                self.inflight_cids.remove(&(u.id, c.clone()));
            }
            let acked = |room: &Self, id: i64| {
                let ack = protocol::ack_frame(p.client_id.as_deref(), id);
                for c in p.conn_id.iter().chain(p.waiters.iter()) {
                    room.send_to(*c, &ack);
                }
            };
            match outcome {
                Ok(InsertOutcome::Stored { id, at }) => {
                    metrics::MESSAGES_STORED.inc();
                    let message = StoredMessage {
                        id,
                        user_id: p.user.as_ref().map(|u| u.id),
                        username: p.user.as_ref().map(|u| u.username.clone()),
                        role: p.user.as_ref().map(|u| u.role),
                        content: p.content.clone(),
                        message_type: p.message_type,
                        client_id: p.client_id.clone(),
                        created_at: at,
                    };
                    let frame = protocol::message_frame(&message);
                    let known = self.ring.contains(id);
                    self.ring.push(RingEntry {
                        id,
                        frame: frame.clone(),
                    });
                    let started = Instant::now();
                    if !known {
                        self.broadcast(&frame, Some(id));
                    }
                    self.hub.relay().publish(
                        &self.key,
                        RelayEvent::Message {
                            frame: frame.to_string(),
                            id,
                            user_id: message.user_id,
                        },
                    );
                    metrics::BROADCAST_LATENCY.observe(started.elapsed() + commit_age(at));
                    acked(self, id);
                    if let (Some(u), Some(c)) = (&p.user, &p.client_id) {
                        self.recent_cids
                            .insert((u.id, c.clone()), (id, Instant::now()));
                    }
                }
                Ok(InsertOutcome::Duplicate { id }) => {
                    acked(self, id);
                    if let (Some(u), Some(c)) = (&p.user, &p.client_id) {
                        self.recent_cids
                            .insert((u.id, c.clone()), (id, Instant::now()));
                    }
                }
                Err(()) => {
                    let err = protocol::error_frame(
                        Code::Unavailable,
                        "The message could not be stored; send it again.",
                        None,
                        p.client_id.as_deref(),
                    );
                    for c in p.conn_id.iter().chain(p.waiters.iter()) {
                        self.send_to(*c, &err);
                    }
                }
            }
        }
        self.finish_shutdown_if_drained(ctx);
    }
}

/// Time since the commit (clock skew between PostgreSQL and us clamps to zero).
fn commit_age(at: OffsetDateTime) -> Duration {
    let age = OffsetDateTime::now_utc() - at;
    Duration::try_from(age).unwrap_or(Duration::ZERO)
}

impl Handler<React> for RoomActor {
    type Result = ();

    fn handle(&mut self, react: React, ctx: &mut Context<Self>) {
        let conn_id = react.conn_id;
        let Some(user) = self.members.get(&conn_id).and_then(|m| m.user.clone()) else {
            self.error_to(
                conn_id,
                Code::NotAuthenticated,
                "Log in to react.",
                None,
                None,
            );
            return;
        };
        let Some(stamp) = self
            .stamps
            .iter()
            .find(|s| i64::from(s.stamp_id) == react.stamp_id)
        else {
            self.error_to(conn_id, Code::NotFound, "No such stamp.", None, None);
            return;
        };
        let stamp_id = stamp.stamp_id;
        if let Some(ms) = retry_after_ms(&self.reaction_limiter, &user.id) {
            metrics::RATE_LIMITED.inc();
            self.error_to(
                conn_id,
                Code::RateLimited,
                "You are reacting too fast.",
                Some(ms),
                None,
            );
            return;
        }
        metrics::REACTIONS_RECEIVED.inc();
        self.hub.reactions().push(
            &self.key.slug,
            NewReaction {
                stream_id: self.key.stream_id,
                user_id: user.id,
                stamp_id,
                at: OffsetDateTime::now_utc(),
            },
        );
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
        let Some(user) = self.members.get(&conn_id).and_then(|m| m.user.clone()) else {
            self.error_to(conn_id, Code::NotAuthenticated, "Log in first.", None, None);
            return;
        };
        if !user.can_moderate {
            self.error_to(
                conn_id,
                Code::Forbidden,
                "Only moderators can do that.",
                None,
                None,
            );
            return;
        }
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let stream = self.stream.clone();
        let hub = self.hub.clone();
        ctx.spawn(
            async move { execute(&store, &slug, &stream, &user.as_user(), msg.command).await }
                .into_actor(self)
                .map(move |r, room, _| match r {
                    Ok(event) => hub.apply(&room.key, event),
                    Err(e) => {
                        let message = e.to_string();
                        if e.code() == Code::Unavailable {
                            tracing::warn!(tenant = %room.key.slug, stream = room.key.stream_id, error = ?e, "moderation not stored");
                        }
                        room.error_to(conn_id, e.code(), &message, None, None);
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

impl RoomActor {
    /// Applies a stored moderation event to the room's state and broadcasts it.
    fn apply_event(&mut self, event: ModEvent) {
        let mut close_user = None;
        match &event {
            ModEvent::Delete { message_id } => {
                self.ring.remove(*message_id);
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
            ModEvent::Ban {
                user_id, tenant, ..
            } => {
                self.restrictions
                    .entry(*user_id)
                    .or_default()
                    .push(Restriction {
                        user_id: *user_id,
                        is_ban: true,
                        until: None,
                        tenant_wide: *tenant,
                    });
                close_user = Some(*user_id);
            }
            ModEvent::Timeout {
                user_id,
                until_unix,
                tenant,
                ..
            } => {
                let until = OffsetDateTime::from_unix_timestamp(*until_unix).ok();
                let list = self.restrictions.entry(*user_id).or_default();
                list.retain(|r| r.is_ban || r.tenant_wide != *tenant);
                list.push(Restriction {
                    user_id: *user_id,
                    is_ban: false,
                    until,
                    tenant_wide: *tenant,
                });
            }
            ModEvent::Unban {
                user_id, tenant, ..
            } => {
                if let Some(list) = self.restrictions.get_mut(user_id) {
                    list.retain(|r| r.tenant_wide && !tenant);
                }
            }
        }
        let frame = event.frame();
        self.broadcast(&frame, None);
        if let Some(user_id) = close_user {
            let banned: Vec<u64> = self
                .members
                .iter()
                .filter(|(_, m)| m.user.as_ref().is_some_and(|u| u.id == user_id))
                .map(|(c, _)| *c)
                .collect();
            for c in banned {
                if let Some(m) = self.members.remove(&c) {
                    m.outlet
                        .close_after_queue(crate::sessions::outlet::codes::BANNED, "banned");
                }
            }
            self.hub
                .set_viewers(&self.key, self.members.len() as u64, self.viewers());
        }
    }
}

impl Handler<Remote> for RoomActor {
    type Result = ();

    fn handle(&mut self, Remote(event): Remote, ctx: &mut Context<Self>) {
        match event {
            RelayEvent::Message { frame, id, user_id } => {
                if self.ring.contains(id) {
                    return;
                }
                let frame = ByteString::from(frame);
                self.ring.push(RingEntry {
                    id,
                    frame: frame.clone(),
                });
                if let Some(u) = user_id {
                    self.last_chat.insert(u, Instant::now());
                }
                self.broadcast(&frame, Some(id));
            }
            RelayEvent::Reactions { counts } => {
                for (stamp, n) in counts {
                    self.window.add_remote(stamp, n);
                }
                self.arm_window(ctx);
            }
            RelayEvent::Moderation { event } => self.apply_event(event),
            RelayEvent::Status { status } => self.status = status,
            RelayEvent::Terms => self.load_terms(ctx),
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
        // Catch up from PostgreSQL with what other nodes did while Redis was away.
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.room_id;
        let stream_id = self.key.stream_id;
        let ring_size = self.hub.settings().chat.ring_size as i64;
        ctx.spawn(
            async move {
                let messages = store.recent_messages(&slug, room_id, ring_size).await;
                let restrictions = store.restrictions(&slug, stream_id, None).await;
                let stream = store.stream(&slug, stream_id).await;
                let pinned = store.pinned_message(&slug, room_id).await;
                (messages, restrictions, stream, pinned)
            }
            .into_actor(self)
            .map(|(messages, restrictions, stream, pinned), room, ctx| {
                if let Ok((messages, has_older)) = messages {
                    room.replace_ring(messages, has_older);
                }
                if let Ok(list) = restrictions {
                    room.restrictions.clear();
                    for r in list {
                        room.restrictions.entry(r.user_id).or_default().push(r);
                    }
                }
                if let Ok(Some(s)) = stream {
                    room.status = s.status;
                    room.slow_mode_seconds = s.slow_mode_seconds;
                }
                if let Ok(p) = pinned {
                    room.pinned = p.map(|m| (m.id, crate::moderation::pinned_json(&m)));
                }
                room.load_terms(ctx);
            }),
        );
    }
}

impl RoomActor {
    /// Adds stored messages the room has not seen (committed on another node
    /// whose relay event was lost) and sends them to its members.
    fn merge_missing(&mut self, messages: Vec<StoredMessage>) {
        for m in messages {
            if !self.ring.contains(m.id) {
                let frame = protocol::message_frame(&m);
                self.ring.push(RingEntry {
                    id: m.id,
                    frame: frame.clone(),
                });
                self.broadcast(&frame, Some(m.id));
            }
        }
    }

    /// Replaces the ring with what PostgreSQL holds now (after a relay outage):
    /// members get the messages they missed, and a `delete` for every message
    /// that was hidden meanwhile on another node.
    fn replace_ring(&mut self, messages: Vec<StoredMessage>, has_older: bool) {
        let oldest = messages.first().map(|m| m.id).unwrap_or(i64::MAX);
        let fresh: std::collections::HashSet<i64> = messages.iter().map(|m| m.id).collect();
        for id in self.ring.ids() {
            // Without older messages in the database, the fetch covers everything.
            if !fresh.contains(&id) && (!has_older || id >= oldest) {
                self.broadcast(&ModEvent::Delete { message_id: id }.frame(), None);
            }
        }
        let known: std::collections::HashSet<i64> = self.ring.ids().into_iter().collect();
        let mut entries = Vec::with_capacity(messages.len());
        for m in &messages {
            let frame = protocol::message_frame(m);
            if !known.contains(&m.id) {
                self.broadcast(&frame, Some(m.id));
            }
            entries.push(RingEntry { id: m.id, frame });
        }
        self.ring = Ring::new(self.hub.settings().chat.ring_size, entries, has_older);
    }

    /// With several nodes: every few seconds, compare the last minute of the
    /// room's messages in PostgreSQL with the ring, so a message whose relay
    /// event was lost (its node died between commit and publish, or Redis
    /// dropped it) still reaches this node's clients.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.members.is_empty() {
            return;
        }
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.room_id;
        ctx.spawn(
            async move {
                let now = OffsetDateTime::now_utc();
                store
                    .messages_between(
                        &slug,
                        room_id,
                        now - time::Duration::minutes(1),
                        now + time::Duration::minutes(1),
                        1000,
                    )
                    .await
            }
            .into_actor(self)
            .map(|r, room, _| {
                if let Ok(messages) = r {
                    room.merge_missing(messages);
                }
            }),
        );
    }
}

impl Handler<ReloadTerms> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: ReloadTerms, ctx: &mut Context<Self>) {
        self.load_terms(ctx);
    }
}
