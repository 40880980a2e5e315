//! The messages a [`super::RoomActor`] handles: what sockets, the hub and the
//! relay tell a room.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::members::RoomUser;
use crate::{
    domain::ChatText, moderation::Command, moderation::ModEvent, relay::RelayEvent,
    sessions::outlet::Outlet, store::streams::StreamStatus,
};

/// A socket joins the room. The room queues `hello` and `history` itself and
/// answers once they are queued (after a history read from PostgreSQL, too).
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

// Each room message is its own type (actix dispatches on it): alike in shape only to other records.
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
    /// The message replied to (checked by the room).
    pub reply_to: Option<i64>,
}

/// One message posted over HTTP (`POST /api/streams/{id}/messages`): the room
/// adds a one-shot poster member for `user` with `outlet`, then runs the very
/// same path as a socket's [`Chat`] — cleaning was done by the caller with the
/// same [`ChatText`], every rule and the writer are the room's. The first
/// frame the outlet gets is the answer (`ack`, `held` or `error`); the caller
/// then sends [`Leave`] with `conn_id`.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Post {
    /// A connection id from the hub, for the poster.
    pub conn_id: u64,
    /// Where the answer goes.
    pub outlet: Outlet,
    /// The sender.
    pub user: RoomUser,
    /// The text.
    pub text: ChatText,
    /// Idempotency key.
    pub client_id: Option<String>,
    /// The message replied to.
    pub reply_to: Option<i64>,
}

// Each room message is its own type (actix dispatches on it): fields alike, messages distinct.
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

/// The room's latest seq as PostgreSQL had it at the node's last sweep
/// (`Hub::sweep`): a room with members that has delivered less fetches the
/// rest.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sweep {
    /// `chat_chatroom.last_seq`.
    pub last_seq: i64,
}

/// The node's round of role reads ([`crate::rooms::Hub::refresh_roles`])
/// asks a room whom to read: the ids of its members with a staff role, or
/// `None` when none of its members is logged in. The room remembers who was
/// there for the answer, [`Roles`].
#[derive(Message)]
#[rtype(result = "Option<Vec<i64>>")]
pub struct AskRoles;

/// The answer to [`AskRoles`]: the active users asked about and the
/// tenant's active staff, as PostgreSQL has them now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Roles(pub std::sync::Arc<Vec<crate::store::accounts::User>>);

/// The tenant no longer allows some of the room's sockets: anonymous
/// viewers once `anonymous_viewers` is off, everyone once the tenant is
/// deleted (`gone`). They are closed with 4001, as an ended session is.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TenantAccess {
    /// The tenant was deleted.
    pub gone: bool,
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

/// The stream's appointed moderators changed: read them again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReloadRights;

/// The stream's term lists as stored now (set by the node that changed them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTerms(pub Vec<crate::store::moderation::TermRow>);
