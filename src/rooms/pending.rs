//! Messages a room has handed to the batch writer and not yet seen committed,
//! and the `client_id`s it has seen: a repeated `client_id` from the same user
//! is acked with the first message's id (or waits for it while it is in
//! flight), never stored twice. Pure state: no actix, no I/O.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::members::RoomUser;
use crate::store::messages::{MessageBody, MessageType, ReplyRef};

/// How long a `client_id` is remembered.
pub const CLIENT_ID_TTL: Duration = Duration::from_secs(600);
/// Most `client_id`s a room remembers: past this the older half is
/// forgotten, and a repeat of one of those is found by the writer in
/// PostgreSQL instead (a round trip, not a second message). Bounds a busy
/// room's memory (1,000 messages a second for ten minutes would be 600,000).
pub const RECENT_MAX: usize = 100_000;

/// A message handed to the writer, waiting for its commit.
#[derive(Debug)]
pub struct Pending {
    /// The sending socket (`None` for notices).
    pub conn_id: Option<u64>,
    /// Other sockets that sent the same client_id meanwhile.
    pub waiters: Vec<u64>,
    /// The author.
    pub user: Option<RoomUser>,
    /// Kind.
    pub message_type: MessageType,
    /// The message replied to.
    pub reply_to: Option<ReplyRef>,
    /// What it says.
    pub body: MessageBody,
}

impl Pending {
    /// Every socket to ack: the sender and those that repeated it.
    pub fn sockets(&self) -> impl Iterator<Item = u64> + '_ {
        self.conn_id
            .iter()
            .copied()
            .chain(self.waiters.iter().copied())
    }
}

/// What the room knows of a `client_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Stored with this id.
    Stored(i64),
    /// In flight under this token.
    InFlight(u64),
}

/// In-flight messages by token, and `client_id`s by (user, client_id).
#[derive(Debug, Default)]
pub struct Inflight {
    next_token: u64,
    by_token: HashMap<u64, Pending>,
    by_cid: HashMap<(i64, String), u64>,
    recent: HashMap<(i64, String), (i64, Instant)>,
}

impl Inflight {
    /// What is known of `client_id` from `user_id`.
    pub fn known(&self, user_id: i64, client_id: &str) -> Option<Known> {
        let key = (user_id, client_id.to_string());
        if let Some((id, at)) = self.recent.get(&key) {
            if at.elapsed() < CLIENT_ID_TTL {
                return Some(Known::Stored(*id));
            }
        }
        self.by_cid
            .get(&key)
            .filter(|t| self.by_token.contains_key(t))
            .map(|t| Known::InFlight(*t))
    }

    /// Another socket sent the in-flight message `token` again: ack it too.
    pub fn add_waiter(&mut self, token: u64, conn_id: u64) {
        if let Some(p) = self.by_token.get_mut(&token) {
            p.waiters.push(conn_id);
        }
    }

    /// The token the next [`Inflight::start`] will use.
    pub fn next_token(&self) -> u64 {
        self.next_token + 1
    }

    /// Records a message handed to the writer under [`Inflight::next_token`].
    pub fn start(&mut self, pending: Pending) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        if let (Some(u), Some(c)) = (&pending.user, &pending.body.client_id) {
            self.by_cid.insert((u.id, c.clone()), token);
        }
        self.by_token.insert(token, pending);
        token
    }

    /// The writer answered for `token`; `stored` is the id when it was stored
    /// (or found stored before). Returns the message.
    pub fn finish(&mut self, token: u64, stored: Option<i64>) -> Option<Pending> {
        let p = self.by_token.remove(&token)?;
        if let (Some(u), Some(c)) = (&p.user, &p.body.client_id) {
            let key = (u.id, c.clone());
            self.by_cid.remove(&key);
            if let Some(id) = stored {
                if self.recent.len() >= RECENT_MAX {
                    self.forget_older_half();
                }
                self.recent.insert(key, (id, Instant::now()));
            }
        }
        Some(p)
    }

    /// Nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Forgets `client_id`s older than [`CLIENT_ID_TTL`].
    pub fn prune(&mut self) {
        self.recent
            .retain(|_, (_, at)| at.elapsed() < CLIENT_ID_TTL);
    }

    /// Forgets the older half of the remembered `client_id`s (one pass to
    /// find the middle time, one to drop: once per [`RECENT_MAX`] / 2 stored).
    fn forget_older_half(&mut self) {
        let mut times: Vec<Instant> = self.recent.values().map(|(_, at)| *at).collect();
        let middle = times.len() / 2;
        let (_, &mut cut, _) = times.select_nth_unstable(middle);
        self.recent.retain(|_, (_, at)| *at > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn msg(user: i64, cid: Option<&str>, conn: u64) -> Pending {
        Pending {
            conn_id: Some(conn),
            waiters: Vec::new(),
            user: Some(RoomUser {
                id: user,
                username: format!("u{user}"),
                role: Role::Viewer,
                moderate_scope: true,
                created_at: time::OffsetDateTime::UNIX_EPOCH,
            }),
            message_type: MessageType::Message,
            reply_to: None,
            body: MessageBody {
                content: "hi".into(),
                client_id: cid.map(str::to_string),
                ..MessageBody::default()
            },
        }
    }

    #[test]
    fn a_client_id_is_in_flight_then_stored() {
        let mut f = Inflight::default();
        assert_eq!(f.known(1, "c1"), None);
        let t = f.start(msg(1, Some("c1"), 10));
        assert_eq!(f.known(1, "c1"), Some(Known::InFlight(t)));
        // Another user's same client_id is a different message.
        assert_eq!(f.known(2, "c1"), None);
        f.add_waiter(t, 11);
        let p = f.finish(t, Some(42)).unwrap();
        assert_eq!(p.sockets().collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(f.known(1, "c1"), Some(Known::Stored(42)));
        assert!(f.is_empty());
    }

    #[test]
    fn a_failed_write_forgets_the_client_id() {
        let mut f = Inflight::default();
        let t = f.start(msg(1, Some("c1"), 10));
        assert!(f.finish(t, None).is_some());
        assert_eq!(f.known(1, "c1"), None);
        assert!(f.finish(t, None).is_none(), "answered once");
    }

    /// A busy room remembers at most RECENT_MAX client_ids: the newest.
    #[test]
    fn the_older_half_is_forgotten_past_the_cap() {
        let mut f = Inflight::default();
        for i in 0..=RECENT_MAX as i64 {
            let t = f.start(msg(1, Some(&format!("c{i}")), 10));
            f.finish(t, Some(i));
        }
        assert!(f.recent.len() <= RECENT_MAX / 2 + 1, "{}", f.recent.len());
        let newest = RECENT_MAX as i64;
        assert_eq!(
            f.known(1, &format!("c{newest}")),
            Some(Known::Stored(newest))
        );
        assert_eq!(f.known(1, "c0"), None, "the oldest is forgotten");
    }

    #[test]
    fn tokens_are_announced_and_unique() {
        let mut f = Inflight::default();
        let next = f.next_token();
        let a = f.start(msg(1, None, 1));
        assert_eq!(a, next);
        let b = f.start(msg(1, None, 1));
        assert_ne!(a, b);
    }
}
