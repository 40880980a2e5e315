//! One [`SessionActor`] per WebSocket. It reads the socket as an actor stream
//! (`ctx.add_stream`), enforces the per-socket rules (frame size and kind, JSON,
//! protocol-error budget, anonymous read-only), records pongs for its room's
//! keep-alive round, and forwards commands
//! to its room. Its write half is an [`outlet::Outlet`]: a bounded queue that
//! is the socket's response body. It leaves its room in `stopped()`, on every exit path.

pub mod outlet;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_ws::{Message as WsMessage, ProtocolError};
use bytes::BytesMut;

use crate::{
    auth::Scope,
    domain::{ChatText, ChatTextError},
    error::Code,
    protocol::{self, ClientFrame},
    rooms::{
        Chat, Hub, IpSlot, Join, Leave, Moderate, React, RoomActor, RoomKey, RoomUser, UserSlot,
    },
    store::streams::Stream,
};
use outlet::{Outbound, Outlet};

/// Protocol errors (`invalid_json`, `unknown_type`) tolerated per window before 1008.
const ERROR_BUDGET: usize = 20;
/// The window of the error budget.
const ERROR_WINDOW: Duration = Duration::from_secs(10);

/// Everything a socket's actor needs, gathered by the handshake.
pub struct SessionParams {
    /// The node's hub.
    pub hub: Hub,
    /// Room identity.
    pub key: RoomKey,
    /// The stream (as loaded by the handshake), for joining its room; taken
    /// then, so an idle socket does not keep a copy.
    pub stream: Option<Stream>,
    /// The user, or `None` for an anonymous viewer.
    pub user: Option<RoomUser>,
    /// The login session's key hash (for closing on logout).
    pub session_key: Option<String>,
    /// Resume after this id.
    pub last_id: Option<i64>,
    /// The IP connection slot, released when the actor is dropped.
    pub ip_slot: IpSlot,
    /// The user's connection slot, likewise.
    pub user_slot: Option<UserSlot>,
    /// The scopes of the API token that opened the socket (`None` for a
    /// cookie session): chat, edits and reactions need `chat`, moderation
    /// commands `moderate`.
    pub scopes: Option<Vec<Scope>>,
}

/// The actor of one socket.
pub struct SessionActor {
    params: SessionParams,
    conn_id: u64,
    outlet: Outlet,
    room: Option<Addr<RoomActor>>,
    errors: VecDeque<Instant>,
    /// A fragmented text message being reassembled.
    fragments: Option<BytesMut>,
    max_frame: usize,
    stream: Option<actix_ws::MessageStream>,
}

/// The response body finished: the socket is closed or gone.
#[derive(Message)]
#[rtype(result = "()")]
struct WriterDone;

/// Starts the actor for an upgraded socket.
/// Starts the actor for an upgraded socket; returns the body of the 101
/// response, which carries everything the socket sends.
pub fn start(params: SessionParams, stream: actix_ws::MessageStream) -> outlet::OutletBody {
    let queue = params.hub.settings().limits.socket_queue;
    let max_frame = params.hub.settings().limits.max_frame_bytes;
    let conn_id = params.hub.next_conn_id();
    let metrics = params.hub.metrics().clone();
    let mut body = None;
    SessionActor::create(|ctx| {
        let addr = ctx.address();
        let (outlet, b) = outlet::channel(queue, metrics, move || addr.do_send(WriterDone));
        body = Some(b);
        SessionActor {
            params,
            conn_id,
            outlet,
            room: None,
            errors: VecDeque::new(),
            fragments: None,
            max_frame,
            stream: Some(stream),
        }
    });
    body.expect("created")
}

impl SessionActor {
    fn send(&self, frame: &bytestring::ByteString) {
        self.outlet.send_text(frame);
    }

    /// The room's mailbox is full: the frame was not taken, counted as rate
    /// limited, and the client is told to retry in a second.
    fn room_busy(&self, message: &str, client_id: Option<&str>) {
        self.params.hub.metrics().rate_limited.inc();
        self.send(&protocol::error_frame(
            Code::RateLimited,
            message,
            Some(1000),
            client_id,
        ));
    }

    /// The text of a `message` or `edit` frame, from a logged-in user; else
    /// the error is answered (with the frame's `client_id`) and `None` returned.
    fn chat_text(
        &mut self,
        ctx: &mut Context<Self>,
        text: &str,
        client_id: Option<&str>,
    ) -> Option<ChatText> {
        if self.params.user.is_none() {
            self.error(ctx, Code::NotAuthenticated, "Log in to chat.", client_id);
            return None;
        }
        let (code, message) = match ChatText::parse(text) {
            Ok(t) => return Some(t),
            Err(ChatTextError::Empty) => (Code::Empty, "The message is empty."),
            Err(ChatTextError::TooLong) => {
                (Code::TooLong, "The message is longer than 500 characters.")
            }
        };
        self.error(ctx, code, message, client_id);
        None
    }

    fn error(
        &mut self,
        ctx: &mut Context<Self>,
        code: Code,
        message: &str,
        client_id: Option<&str>,
    ) {
        if matches!(code, Code::InvalidJson | Code::UnknownType) {
            let now = Instant::now();
            self.errors.push_back(now);
            while self
                .errors
                .front()
                .is_some_and(|t| now.duration_since(*t) > ERROR_WINDOW)
            {
                self.errors.pop_front();
            }
            if self.errors.len() >= ERROR_BUDGET {
                self.close(ctx, 1008, "too many invalid frames");
                return;
            }
        }
        self.send(&protocol::error_frame(code, message, None, client_id));
    }

    /// Closes the socket with `code` after what is queued; the actor stops when
    /// the writer is done (or after a grace period).
    fn close(&mut self, ctx: &mut Context<Self>, code: u16, reason: &'static str) {
        tracing::debug!(conn = self.conn_id, tenant = %self.params.key.slug, stream = self.params.key.stream_id, code, reason, "closing socket");
        self.outlet.close_after_queue(code, reason);
        ctx.run_later(Duration::from_secs(5), |_, ctx| ctx.stop());
    }

    /// True when the socket was opened with a token that lacks `scope`.
    fn lacks(&self, scope: Scope) -> bool {
        self.params
            .scopes
            .as_ref()
            .is_some_and(|s| !s.contains(&scope))
    }

    fn on_text(&mut self, ctx: &mut Context<Self>, text: &str) {
        let frame = match protocol::parse_client_frame(text) {
            Ok(f) => f,
            Err(e) => return self.error(ctx, e.code, e.message, None),
        };
        let (needs, cid) = match &frame {
            ClientFrame::Moderation(_) => (Scope::Moderate, None),
            ClientFrame::Message { client_id, .. } => (Scope::Chat, client_id.clone()),
            _ => (Scope::Chat, None),
        };
        if self.lacks(needs) {
            return self.error(
                ctx,
                Code::Forbidden,
                "This token's scopes do not allow this.",
                cid.as_deref(),
            );
        }
        match frame {
            ClientFrame::Message {
                text,
                client_id,
                reply_to,
            } => {
                self.params.hub.metrics().messages_received.inc();
                let cid = client_id.as_deref();
                let Some(text) = self.chat_text(ctx, &text, cid) else {
                    return;
                };
                let Some(room) = &self.room else { return };
                let chat = Chat {
                    conn_id: self.conn_id,
                    text,
                    client_id: client_id.clone(),
                    reply_to,
                };
                if room.try_send(chat).is_err() {
                    self.room_busy("The room is busy; send again shortly.", cid);
                }
            }
            ClientFrame::Moderation(command) => {
                // PROTOCOL.md: anyone but the stream's moderators, anonymous
                // sockets included, gets `forbidden`.
                if self.params.user.is_none() {
                    return self.error(ctx, Code::Forbidden, "Only moderators can do that.", None);
                }
                if let Some(room) = &self.room {
                    let _ = room.try_send(Moderate {
                        conn_id: self.conn_id,
                        command,
                    });
                }
            }
            ClientFrame::Edit { message_id, text } => {
                let Some(text) = self.chat_text(ctx, &text, None) else {
                    return;
                };
                let Some(room) = &self.room else { return };
                let edit = crate::rooms::Edit {
                    conn_id: self.conn_id,
                    message_id,
                    text,
                };
                if room.try_send(edit).is_err() {
                    self.send(&protocol::error_frame(
                        Code::RateLimited,
                        "The room is busy; edit again shortly.",
                        Some(1000),
                        None,
                    ));
                }
            }
            ClientFrame::Reaction { stamp_id } => {
                self.params.hub.metrics().reaction_frames.inc();
                if self.params.user.is_none() {
                    return self.error(ctx, Code::NotAuthenticated, "Log in to react.", None);
                }
                let Some(room) = &self.room else { return };
                let react = React {
                    conn_id: self.conn_id,
                    stamp_id,
                };
                if room.try_send(react).is_err() {
                    self.room_busy("The room is busy; react again shortly.", None);
                }
            }
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.params.hub.metrics().connections.inc();
        tracing::debug!(
            conn = self.conn_id,
            tenant = %self.params.key.slug,
            stream = self.params.key.stream_id,
            user = self.params.user.as_ref().map(|u| u.id),
            "socket opened"
        );
        if let Some(stream) = self.stream.take() {
            ctx.add_stream(stream.max_frame_size(self.max_frame));
        }
        if let (Some(key), Some(user)) = (&self.params.session_key, &self.params.user) {
            self.params.hub.sockets().register_session(
                &self.params.key.slug,
                key,
                user.id,
                self.conn_id,
                self.outlet.clone(),
            );
        }
        // Pings and the pong timeout are the room's keep-alive round
        // (`Members::keep_alive`): no timer per socket.
        // Join the room before anything else is read: hello and history come first.
        let join = Join {
            conn_id: self.conn_id,
            outlet: self.outlet.clone(),
            user: self.params.user.clone(),
            last_id: self.params.last_id,
        };
        let hub = self.params.hub.clone();
        let key = self.params.key.clone();
        let Some(stream) = self.params.stream.take() else {
            return self.close(ctx, 1011, "room unavailable");
        };
        ctx.wait(
            async move { hub.join(&key, &stream, join).await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(room) => act.room = Some(room),
                    Err(_) => act.close(ctx, 1011, "room unavailable"),
                }),
        );
    }

    // Same shape as started(): the actor's two lifecycle hooks count and log the socket.
    fn stopped(&mut self, _: &mut Self::Context) {
        self.params.hub.metrics().connections.dec();
        tracing::debug!(
            conn = self.conn_id,
            tenant = %self.params.key.slug,
            stream = self.params.key.stream_id,
            "socket closed"
        );
        if let Some(room) = &self.room {
            room.do_send(Leave {
                conn_id: self.conn_id,
            });
        }
        if let (Some(key), Some(_)) = (&self.params.session_key, &self.params.user) {
            self.params
                .hub
                .sockets()
                .unregister_session(&self.params.key.slug, key, self.conn_id);
        }
        // Whatever path ended the actor, the writer stops too.
        self.outlet.close(1000, "");
    }
}

impl Handler<WriterDone> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: WriterDone, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<WsMessage, ProtocolError>, ctx: &mut Context<Self>) {
        if self.outlet.is_closing() {
            return;
        }
        let msg = match item {
            Ok(m) => m,
            Err(ProtocolError::Overflow) => return self.close(ctx, 1009, "frame too large"),
            // The codec reports reserved bits and bad UTF-8 alike as invalid data.
            Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                if e.to_string().contains("reserved bits") {
                    return self.close(ctx, 1002, "reserved bits set");
                }
                return self.close(ctx, 1007, "invalid UTF-8");
            }
            Err(_) => return self.close(ctx, 1002, "protocol error"),
        };
        match msg {
            WsMessage::Text(text) => self.on_text(ctx, &text),
            WsMessage::Binary(_) => self.close(ctx, 1003, "binary frames are not accepted"),
            WsMessage::Ping(b) => {
                if b.len() > 125 {
                    return self.close(ctx, 1002, "control frame too large");
                }
                let _ = self.outlet.push(Outbound::Pong(b));
            }
            WsMessage::Pong(_) => self.outlet.heard(),
            WsMessage::Close(_) => {
                self.outlet.close_after_queue(1000, "");
                ctx.run_later(Duration::from_secs(2), |_, ctx| ctx.stop());
            }
            WsMessage::Continuation(item) => self.on_fragment(ctx, item),
            WsMessage::Nop => {}
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl SessionActor {
    fn on_fragment(&mut self, ctx: &mut Context<Self>, item: actix_ws::Item) {
        use actix_ws::Item;
        let (data, last) = match item {
            Item::FirstText(b) => {
                if self.fragments.is_some() {
                    return self.close(ctx, 1002, "unexpected first fragment");
                }
                self.fragments = Some(BytesMut::new());
                (b, false)
            }
            Item::FirstBinary(_) => return self.close(ctx, 1003, "binary frames are not accepted"),
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some(buf) = self.fragments.as_mut() else {
            return self.close(ctx, 1002, "continuation without a first fragment");
        };
        if buf.len() + data.len() > self.max_frame {
            self.fragments = None;
            return self.close(ctx, 1009, "message too large");
        }
        buf.extend_from_slice(&data);
        if last {
            let buf = self.fragments.take().unwrap_or_default();
            match std::str::from_utf8(&buf) {
                Ok(text) => self.on_text(ctx, text),
                Err(_) => self.close(ctx, 1007, "invalid UTF-8"),
            }
        }
    }
}
