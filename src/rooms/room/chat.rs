//! The chat and reaction path of a room: admission, the batch writer and
//! its answers (ack, relay, delivery), reaction windows, status notices.

use super::*;
use crate::store::held::NewHeld;

impl RoomActor {
    /// Hands a message to the batch writer.
    pub(super) fn submit(&mut self, ctx: &mut Context<Self>, pending: Pending) -> Result<(), ()> {
        let job = WriteJob {
            slug: self.key.slug.clone(),
            message: NewMessage {
                room_id: self.stream.room_id,
                user_id: pending.user.as_ref().map(|u| u.id),
                message_type: pending.message_type,
                reply_to_id: pending.reply_to.as_ref().map(|r| r.id),
                body: pending.body.clone(),
            },
            token: self.inflight.next_token(),
            reply_to: ctx.address().recipient(),
        };
        self.writer.submit(job).map_err(|_| ())?;
        self.inflight.start(pending);
        Ok(())
    }

    /// Posts a system notice (stored, then broadcast).
    pub(super) fn notice(&mut self, ctx: &mut Context<Self>, text: &str, kind: MessageType) {
        let _ = self.submit(
            ctx,
            Pending {
                conn_id: None,
                waiters: Vec::new(),
                user: None,
                message_type: kind,
                reply_to: None,
                body: MessageBody {
                    content: text.to_string(),
                    ..MessageBody::default()
                },
            },
        );
    }

    /// Starts the window timer unless it runs.
    pub(super) fn arm_window(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn flush_window(&mut self) {
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
}

impl RoomActor {
    /// Holds a message for review, with the reply and mentions resolved for
    /// it and its author's hidden flag: stored in the held table, then the
    /// sender hears `held`, and every moderator socket on every node sees the
    /// item.
    pub(super) fn hold(&mut self, ctx: &mut Context<Self>, pending: Pending, reason: &'static str) {
        let (Some(conn_id), Some(user_id)) = (pending.conn_id, pending.user.as_ref().map(|u| u.id))
        else {
            return;
        };
        self.with_store(
            ctx,
            move |db| async move {
                let m = NewHeld {
                    room_id: db.room_id,
                    user_id,
                    reason,
                    reply_to_id: pending.reply_to.as_ref().map(|r| r.id),
                    body: &pending.body,
                };
                db.store
                    .hold_message(&db.slug, &m)
                    .await
                    .map_err(|e| (e, pending.body.client_id))
            },
            move |r, room, _| match r {
                Ok(held) => {
                    room.members.send_to(
                        conn_id,
                        &protocol::held_ack_frame(held.body.client_id.as_deref(), held.id),
                    );
                    let item = protocol::held_item(&held).to_string();
                    room.hub.relay().publish(
                        &room.key,
                        RelayEvent::Held {
                            held_id: held.id,
                            item: item.clone(),
                        },
                    );
                    room.add_held(held.id, ByteString::from(item));
                }
                Err((e, client_id)) => {
                    tracing::warn!(tenant = %room.key.slug, error = %e, "message not held");
                    room.members.send_to(
                        conn_id,
                        &protocol::error_frame(
                            Code::Unavailable,
                            "The message could not be stored; send it again.",
                            None,
                            client_id.as_deref(),
                        ),
                    );
                }
            },
        );
    }
}

/// Time since the commit (clock skew between PostgreSQL and us clamps to zero).
fn commit_age(at: OffsetDateTime) -> Duration {
    let age = OffsetDateTime::now_utc() - at;
    Duration::try_from(age).unwrap_or(Duration::ZERO)
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
        let admit = match decision {
            Ok(admit) => admit,
            Err(refusal) => {
                self.refuse(conn_id, &refusal, cid, false);
                return;
            }
        };
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
        if self.modes.modes.unique_chat {
            self.recent
                .add(RecentTexts::key(chat.text.as_str()), Instant::now());
        }
        let hidden = !self.may_moderate(&user) && self.hidden.is_hidden(user.id);
        let pending = Pending {
            conn_id: Some(conn_id),
            waiters: Vec::new(),
            user: Some(user),
            message_type: MessageType::Message,
            reply_to: None,
            body: MessageBody {
                content: chat.text.into_string(),
                client_id: chat.client_id.clone(),
                mentions: Vec::new(),
                hidden,
            },
        };
        let hold = match admit {
            Admit::Hold(reason) => Some(reason),
            _ => None,
        };
        // Mentions and the message replied to are resolved in `replies`,
        // then the message is stored or, like any other, held.
        self.submit_chat(ctx, pending, chat.reply_to, hold);
    }
}

impl Handler<Post> for RoomActor {
    type Result = ();

    /// A message over HTTP: a poster member, then exactly a socket's path.
    fn handle(&mut self, post: Post, ctx: &mut Context<Self>) {
        self.members
            .insert_poster(post.conn_id, post.outlet, post.user);
        <Self as Handler<Chat>>::handle(
            self,
            Chat {
                conn_id: post.conn_id,
                text: post.text,
                client_id: post.client_id,
                reply_to: post.reply_to,
            },
            ctx,
        );
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
            let Some(mut p) = self.inflight.finish(token, stored_id) else {
                continue;
            };
            match outcome {
                Ok(InsertOutcome::Stored { id, seq, at }) => {
                    self.hub.metrics().messages_stored.inc();
                    // The text, mentions and reply move into the stored message: the
                    // in-flight copy is done with them.
                    let message = StoredMessage {
                        id,
                        seq,
                        user_id: p.user.as_ref().map(|u| u.id),
                        username: p.user.as_ref().map(|u| u.username.clone()),
                        role: p.user.as_ref().map(|u| u.role),
                        content: std::mem::take(&mut p.body.content),
                        message_type: p.message_type,
                        client_id: p.body.client_id.clone(),
                        created_at: at,
                        reply_to: p.reply_to.take(),
                        mentions: std::mem::take(&mut p.body.mentions),
                        edited_at: None,
                        hidden: p.body.hidden,
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
                            hidden: message.hidden,
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
                            hidden: message.hidden,
                        }),
                    );
                    self.hub
                        .metrics()
                        .broadcast_latency
                        .observe(started.elapsed() + commit_age(at));
                    let ack = protocol::ack_frame(message.client_id.as_deref(), id);
                    for c in p.sockets() {
                        self.members.send_to(c, &ack);
                    }
                }
                Ok(InsertOutcome::Duplicate { id }) => {
                    let ack = protocol::ack_frame(p.body.client_id.as_deref(), id);
                    for c in p.sockets() {
                        self.members.send_to(c, &ack);
                    }
                }
                Err(()) => {
                    let err = protocol::error_frame(
                        Code::Unavailable,
                        "The message could not be stored; send it again.",
                        None,
                        p.body.client_id.as_deref(),
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
        self.hub.metrics().reactions_received.inc();
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
        self.state_changes += 1;
        self.status = msg.status;
        match msg.status {
            StreamStatus::Live => self.notice(ctx, "Stream started", MessageType::System),
            StreamStatus::Ended => self.notice(ctx, "Stream ended", MessageType::System),
            StreamStatus::Scheduled => {}
        }
    }
}
