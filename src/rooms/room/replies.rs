//! Replies and mentions on the chat path: a message's `reply_to` is checked
//! against the room (the ring holds the recent visible messages; an older one
//! is looked up in PostgreSQL) and its `@username`s are resolved from the
//! node's per-tenant [`crate::rooms::mentions::MentionCache`], then the
//! message goes to the batch writer.

use super::*;
use crate::store::messages::ReplyRef;

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

    /// Sends a new chat message on: its mentions resolved, its reply checked,
    /// then to the writer.
    pub(super) fn submit_chat(
        &mut self,
        ctx: &mut Context<Self>,
        mut pending: Pending,
        reply_to: Option<i64>,
    ) {
        let now = Instant::now();
        let (mentions, refresh) =
            self.hub
                .mentions()
                .resolve(&self.key.slug, &pending.content, now);
        pending.mentions = mentions;
        if refresh {
            if let Some(after) = self.hub.mentions().begin_refresh(&self.key.slug, now) {
                let store = self.store.clone();
                let slug = self.key.slug.clone();
                ctx.spawn(
                    async move { store.usernames_after(&slug, after).await }
                        .into_actor(self)
                        .map(|r, room, _| room.finish_mentions(r)),
                );
            }
        }
        let Some(target) = reply_to else {
            return self.submit_or_refuse(ctx, pending);
        };
        if let Some(r) = self.ring.get(target).and_then(reply_from_frame) {
            pending.reply_to = Some(r);
            return self.submit_or_refuse(ctx, pending);
        }
        // Not among the recent messages: PostgreSQL decides.
        let store = self.store.clone();
        let slug = self.key.slug.clone();
        let room_id = self.stream.room_id;
        ctx.spawn(
            async move { store.reply_target(&slug, room_id, target).await }
                .into_actor(self)
                .map(move |r, room, ctx| match r {
                    Ok(Some(r)) if !room.early_deletes.contains(&r.id) => {
                        pending.reply_to = Some(r);
                        room.submit_or_refuse(ctx, pending);
                    }
                    Ok(_) => {
                        if let Some(c) = pending.conn_id {
                            room.members.send_to(
                                c,
                                &protocol::error_frame(
                                    Code::NotFound,
                                    "The message replied to does not exist.",
                                    None,
                                    pending.client_id.as_deref(),
                                ),
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reply target not read");
                        room.refuse_unavailable(&pending);
                    }
                }),
        );
    }

    fn submit_or_refuse(&mut self, ctx: &mut Context<Self>, pending: Pending) {
        let conn = pending.conn_id;
        let cid = pending.client_id.clone();
        if self.submit(ctx, pending).is_err() {
            if let Some(c) = conn {
                self.members.send_to(c, &unavailable(cid.as_deref()));
            }
        }
    }

    fn refuse_unavailable(&self, pending: &Pending) {
        if let Some(c) = pending.conn_id {
            self.members
                .send_to(c, &unavailable(pending.client_id.as_deref()));
        }
    }
}

fn unavailable(cid: Option<&str>) -> ByteString {
    protocol::error_frame(
        Code::Unavailable,
        "The message could not be stored; send it again.",
        None,
        cid,
    )
}

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
