//! Replies and mentions on the chat path: a message's `@username`s are
//! resolved from the node's per-tenant [`crate::rooms::mentions::MentionCache`]
//! and its `reply_to` is checked against the room (the ring holds the recent
//! visible messages; an older one is looked up in PostgreSQL), then it goes to
//! the batch writer.
//!
//! Both usually answer at once. When one needs PostgreSQL — an `@word` naming
//! no known user (the cache takes the users created since, at most every
//! 0.5 s per tenant) or a reply to a message older than the ring — the message
//! waits for that answer, and the messages after it wait behind it: the
//! room's messages reach the writer in the order they were accepted.

use std::collections::VecDeque;

use super::*;
use crate::store::messages::ReplyRef;

/// A new message on its way to the writer.
struct Queued {
    pending: Pending,
    reply_to: Option<i64>,
    /// Held for review (why) once resolved, rather than stored.
    hold: Option<&'static str>,
    /// The mention cache was refreshed for it already.
    refreshed: bool,
}

/// Accepted messages waiting for their mentions or reply target, in order.
#[derive(Default)]
pub(super) struct ChatQueue {
    queue: VecDeque<Queued>,
    /// A lookup for the queue's head is running.
    busy: bool,
}

impl ChatQueue {
    /// Nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty() && !self.busy
    }
}

impl RoomActor {
    /// Loads the tenant's usernames once per node, before the room takes
    /// its first message.
    pub(super) fn load_mentions(&mut self, ctx: &mut Context<Self>) {
        let slug = self.key.slug.clone();
        if self.hub.mentions().is_loaded(&slug) {
            return;
        }
        if let Some(after) = self.hub.mentions().begin_refresh(&slug, Instant::now()) {
            let store = self.store.clone();
            ctx.wait(
                async move { store.usernames_after(&slug, after).await }
                    .into_actor(self)
                    .map(|r, room, _| room.finish_mentions(r)),
            );
        }
    }

    fn finish_mentions(&mut self, r: Result<Vec<(i64, String)>, crate::store::StoreError>) {
        let users = r
            .map_err(|e| tracing::warn!(error = %e, "usernames for mentions not loaded"))
            .ok();
        self.hub.mentions().finish_refresh(&self.key.slug, users);
    }

    /// Sends an accepted chat message on, in order: mentions resolved, reply
    /// checked, then to the writer, or held for review when `hold` says why.
    pub(super) fn submit_chat(
        &mut self,
        ctx: &mut Context<Self>,
        pending: Pending,
        reply_to: Option<i64>,
        hold: Option<&'static str>,
    ) {
        self.chat_queue.queue.push_back(Queued {
            pending,
            reply_to,
            hold,
            refreshed: false,
        });
        self.drain_chat(ctx);
    }

    fn drain_chat(&mut self, ctx: &mut Context<Self>) {
        while !self.chat_queue.busy {
            let Some(mut item) = self.chat_queue.queue.pop_front() else {
                break;
            };
            let now = Instant::now();
            let cache = self.hub.mentions();
            let (mentions, refresh) =
                cache.resolve(&self.key.slug, &item.pending.body.content, now);
            if refresh && !item.refreshed {
                if let Some(after) = cache.begin_refresh(&self.key.slug, now) {
                    item.refreshed = true;
                    self.chat_queue.queue.push_front(item);
                    self.chat_queue.busy = true;
                    self.with_store(
                        ctx,
                        |db| async move { db.store.usernames_after(&db.slug, after).await },
                        |r, room, ctx| {
                            room.finish_mentions(r);
                            room.chat_queue.busy = false;
                            room.drain_chat(ctx);
                        },
                    );
                    return;
                }
            }
            item.pending.body.mentions = mentions;
            let Some(target) = item.reply_to else {
                self.forward(ctx, item.pending, item.hold);
                continue;
            };
            if let Some(r) = self.ring.get(target).and_then(reply_from_frame) {
                item.pending.reply_to = Some(r);
                self.forward(ctx, item.pending, item.hold);
                continue;
            }
            // Not among the recent messages: PostgreSQL decides.
            self.chat_queue.busy = true;
            let (mut pending, hold) = (item.pending, item.hold);
            self.with_store(
                ctx,
                |db| async move { db.store.reply_target(&db.slug, db.room_id, target).await },
                move |r, room, ctx| {
                    room.chat_queue.busy = false;
                    match r {
                        Ok(Some(r)) if !room.early_deletes.contains(&r.id) => {
                            pending.reply_to = Some(r);
                            room.forward(ctx, pending, hold);
                        }
                        Ok(_) => room.refuse_pending(
                            &pending,
                            Code::NotFound,
                            "The message replied to does not exist.",
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "reply target not read");
                            room.refuse_pending(&pending, Code::Unavailable, UNAVAILABLE);
                        }
                    }
                    room.drain_chat(ctx);
                },
            );
            return;
        }
        self.finish_shutdown_if_drained(ctx);
    }

    /// A resolved message goes to the writer, or is held for review.
    fn forward(&mut self, ctx: &mut Context<Self>, pending: Pending, hold: Option<&'static str>) {
        match hold {
            Some(reason) => self.hold(ctx, pending, reason),
            None => self.submit_or_refuse(ctx, pending),
        }
    }

    fn submit_or_refuse(&mut self, ctx: &mut Context<Self>, pending: Pending) {
        let conn = pending.conn_id;
        let cid = pending.body.client_id.clone();
        if self.submit(ctx, pending).is_err() {
            if let Some(c) = conn {
                self.members.send_to(
                    c,
                    &protocol::error_frame(Code::Unavailable, UNAVAILABLE, None, cid.as_deref()),
                );
            }
        }
    }

    fn refuse_pending(&self, pending: &Pending, code: Code, text: &str) {
        if let Some(c) = pending.conn_id {
            self.members.send_to(
                c,
                &protocol::error_frame(code, text, None, pending.body.client_id.as_deref()),
            );
        }
    }
}

const UNAVAILABLE: &str = "The message could not be stored; send it again.";

/// The reply reference of a message from its `message` frame in the ring.
fn reply_from_frame(frame: &ByteString) -> Option<ReplyRef> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        id: i64,
        username: Option<&'a str>,
        message: std::borrow::Cow<'a, str>,
        message_type: &'a str,
    }
    let head: Head<'_> = serde_json::from_str(frame).ok()?;
    let username = match head.message_type {
        "message" => head.username.map(str::to_string),
        _ => None,
    };
    Some(ReplyRef::new(head.id, username, &head.message, false))
}
