//! Edits: the author changes their message within [`EDIT_WINDOW_SECS`] of
//! sending it. The new text passes the room's admission like a new message
//! (stream open, bans and timeouts, blocked terms, chat modes, rate limit;
//! slow mode paces new messages only, so an edit does not wait for it; text
//! that would be held for review is refused with `forbidden`); PostgreSQL then
//! decides, with the message row locked, whether it is still there (not
//! deleted), the sender's and young enough. The room broadcasts the `edit`
//! frame, keeps the new `message` frame in its ring, and relays both to the
//! other nodes.

use super::*;
use crate::{
    domain::ChatText, rooms::admission::Sender as AdmissionSender, store::chat_v2::EditOutcome,
};

/// How long after sending a message its author may edit it.
pub const EDIT_WINDOW_SECS: i64 = 120;

/// `{"type":"edit","message_id":N,"message":...}` from a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Edit {
    /// Connection id.
    pub conn_id: u64,
    /// The message edited.
    pub message_id: i64,
    /// The new text (cleaned and checked for length).
    pub text: ChatText,
}

impl RoomActor {
    /// An edit stored here or on another node: the ring's frame of the message
    /// (and the pin) take the new text, and every member gets the `edit` frame
    /// — only the author and moderators when the message is a hidden user's
    /// (`hidden_author` is then `Some(author)`).
    pub(super) fn apply_edit(
        &mut self,
        message_id: i64,
        frame: ByteString,
        message: ByteString,
        hidden_author: Option<Option<i64>>,
    ) {
        self.state_changes += 1;
        if let Some(author) = hidden_author {
            self.broadcast_hidden(&frame, None, author);
            return;
        }
        self.ring.replace(message_id, message.clone());
        if let Some((id, pinned)) = &mut self.pinned {
            if *id == message_id {
                if let Ok(v) = serde_json::from_str(&message) {
                    *pinned = v;
                }
            }
        }
        self.broadcast(&frame, None);
    }
}

impl Handler<Edit> for RoomActor {
    type Result = ();

    fn handle(&mut self, edit: Edit, ctx: &mut Context<Self>) {
        let conn_id = edit.conn_id;
        let user = self.members.user(conn_id).cloned();
        // Slow mode paces new messages: an edit is not one.
        let sender = self.sender(user.as_ref()).map(|s| AdmissionSender {
            last_chat: None,
            ..s
        });
        let decision = self.rules().admit_message(
            sender.as_ref(),
            edit.text.as_str(),
            false,
            &self.chat_limiter,
            OffsetDateTime::now_utc(),
        );
        match decision {
            Err(refusal) => {
                self.refuse(conn_id, &refusal, None, false);
                return;
            }
            // Text that a new message would hold for review cannot replace
            // text already shown: it goes through review as a new message.
            Ok(Admit::Hold(_)) => {
                self.error_to(
                    conn_id,
                    Code::Forbidden,
                    "This text needs a moderator's review: send it as a new message.",
                );
                return;
            }
            Ok(Admit::Post) => {}
        }
        let Some(user) = user else { return };
        let (mentions, _) =
            self.hub
                .mentions()
                .resolve(&self.key.slug, edit.text.as_str(), Instant::now());
        let message_id = edit.message_id;
        self.with_store(
            ctx,
            |db| async move {
                db.store
                    .edit_message(
                        &db.slug,
                        db.room_id,
                        message_id,
                        user.id,
                        edit.text.as_str(),
                        &mentions,
                        EDIT_WINDOW_SECS,
                    )
                    .await
            },
            move |r, room, _| {
                let (code, text) = match r {
                    Ok(EditOutcome::Edited(m)) => {
                        let frame = protocol::edit_frame(&m);
                        let message = protocol::message_frame(&m);
                        room.hub.relay().publish(
                            &room.key,
                            RelayEvent::Edit {
                                message_id,
                                frame: frame.to_string(),
                                message: message.to_string(),
                                hidden: m.hidden,
                                user_id: m.user_id,
                            },
                        );
                        let hidden_author = m.hidden.then_some(m.user_id);
                        room.apply_edit(message_id, frame, message, hidden_author);
                        return;
                    }
                    Ok(EditOutcome::NotFound) => (Code::NotFound, "No such message."),
                    Ok(EditOutcome::Forbidden) => {
                        (Code::Forbidden, "You can only edit your own messages.")
                    }
                    Ok(EditOutcome::TooLate) => (
                        Code::EditWindow,
                        "Messages can be edited for 120 seconds after sending.",
                    ),
                    Err(e) => {
                        tracing::warn!(tenant = %room.key.slug, error = %e, "edit not stored");
                        (
                            Code::Unavailable,
                            "The edit could not be stored; try again.",
                        )
                    }
                };
                room.error_to(conn_id, code, text);
            },
        );
    }
}
