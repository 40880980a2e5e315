//! A room's members on this node and the fan-out to them: one shared frame per
//! event pushed into every member's bounded outlet with `try_send`; a member
//! whose outlet is full is closed as a slow consumer (4008). Each member
//! remembers the highest message id it was sent, so no message reaches a socket
//! twice or out of id order, whatever mix of ring, database history, resume
//! point and live frames it got.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use bytestring::ByteString;

use crate::{
    domain::Role,
    metrics::Metrics,
    sessions::outlet::{codes, encode_text, Outbound, Outlet},
};

/// A logged-in member's identity as the room needs it.
#[derive(Debug, Clone)]
pub struct RoomUser {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Tenant-wide role.
    pub role: Role,
    /// May moderate this stream (admin, moderator, owner, or appointed), as
    /// last known: it exempts from slow mode. Moderation itself is checked
    /// against the database when the action arrives.
    pub can_moderate: bool,
    /// When the account was made (`established_minutes`).
    pub created_at: time::OffsetDateTime,
}

/// While a member waits for its history from the database, what the room
/// broadcasts meanwhile is buffered: (message id, frame).
enum State {
    Ready,
    Loading(Vec<(Option<i64>, ByteString)>),
}

/// One socket in the room.
pub struct Member {
    /// The socket's outlet.
    pub outlet: Outlet,
    /// The user, `None` for an anonymous viewer.
    pub user: Option<RoomUser>,
    state: State,
    /// The highest message id this socket has been sent (or resumed after).
    after: i64,
    /// A one-shot poster (an HTTP request posting one message): hears only
    /// what the room sends to it by id (ack, held, error), takes no part in
    /// fan-out, presence or join notices.
    pub poster: bool,
}

/// Every member of a room on this node, by connection id.
pub struct Members {
    map: HashMap<u64, Member>,
    /// Frames a loading member may buffer before it is a slow consumer.
    queue: usize,
    /// How many members are posters.
    posters: usize,
    /// The node's metrics (broadcasts and deliveries are counted there).
    metrics: Arc<Metrics>,
}

impl Members {
    /// No members; a loading member buffers at most `queue` frames.
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            map: HashMap::new(),
            queue,
            posters: 0,
            metrics,
        }
    }

    /// Adds a member that has been (or will be) sent everything up to message
    /// id `after`; `loading` when its history comes from the database.
    pub fn insert(
        &mut self,
        conn_id: u64,
        outlet: Outlet,
        user: Option<RoomUser>,
        after: i64,
        loading: bool,
    ) {
        let state = if loading {
            State::Loading(Vec::new())
        } else {
            State::Ready
        };
        self.map.insert(
            conn_id,
            Member {
                outlet,
                user,
                state,
                after,
                poster: false,
            },
        );
    }

    /// Adds a one-shot poster: the answer to its one message reaches it
    /// through [`Members::send_to`]; nothing else does.
    pub fn insert_poster(&mut self, conn_id: u64, outlet: Outlet, user: RoomUser) {
        let old = self.map.insert(
            conn_id,
            Member {
                outlet,
                user: Some(user),
                state: State::Ready,
                after: i64::MAX,
                poster: true,
            },
        );
        if !old.is_some_and(|m| m.poster) {
            self.posters += 1;
        }
    }

    /// Removes a member.
    pub fn remove(&mut self, conn_id: u64) -> Option<Member> {
        let m = self.map.remove(&conn_id);
        if m.as_ref().is_some_and(|m| m.poster) {
            self.posters -= 1;
        }
        m
    }

    /// A member.
    pub fn get(&self, conn_id: u64) -> Option<&Member> {
        self.map.get(&conn_id)
    }

    /// The user of a member (`None` for anonymous or gone).
    pub fn user(&self, conn_id: u64) -> Option<&RoomUser> {
        self.map.get(&conn_id).and_then(|m| m.user.as_ref())
    }

    /// One step of the room's keep-alive round, which takes `steps` steps:
    /// pings the sockets of step `step` (a connection id's remainder by
    /// `steps`), and closes (1001) those of them that have not answered a
    /// ping for more than `timeout_secs`; returns their connection ids, for
    /// the room to let them leave. Over `steps` consecutive steps every
    /// socket is pinged once: a round spread over the ping interval keeps a
    /// room of 10,000 sockets from sending 10,000 pings, and reading 10,000
    /// pongs, in one burst that would delay the messages around it.
    pub fn keep_alive(&self, timeout_secs: u32, step: u64, steps: u64) -> Vec<u64> {
        let steps = steps.max(1);
        let mut silent = Vec::new();
        for (id, m) in &self.map {
            if m.poster || id % steps != step % steps {
                continue;
            }
            if m.outlet.silent_for() > timeout_secs {
                m.outlet.close_after_queue(1001, "no pong");
                silent.push(*id);
            } else {
                let _ = m.outlet.push(Outbound::Ping(bytes::Bytes::new()));
            }
        }
        silent
    }

    /// Members (sockets) on this node; posters are not counted.
    pub fn len(&self) -> usize {
        self.map.len() - self.posters
    }

    /// True with no member (posters aside).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every logged-in user, mutably (rights refreshed).
    pub fn users_mut(&mut self) -> impl Iterator<Item = &mut RoomUser> {
        self.map.values_mut().filter_map(|m| m.user.as_mut())
    }

    /// Sockets of one user in the room.
    pub fn sockets_of(&self, user_id: i64) -> usize {
        self.map
            .values()
            .filter(|m| !m.poster && m.user.as_ref().is_some_and(|u| u.id == user_id))
            .count()
    }

    /// Sends one event to every member; `id` is the message id of a `message`
    /// frame (members that already have it skip it). Closes slow consumers;
    /// returns how many were closed.
    pub fn broadcast(&mut self, frame: &ByteString, id: Option<i64>) -> usize {
        self.broadcast_where(frame, id, |_| true)
    }

    /// [`Members::broadcast`] to the members `which` accepts (given their
    /// user, `None` for anonymous): a hidden user's message goes to them and
    /// to moderators only.
    pub fn broadcast_where(
        &mut self,
        frame: &ByteString,
        id: Option<i64>,
        which: impl Fn(Option<&RoomUser>) -> bool,
    ) -> usize {
        self.metrics.broadcasts.inc();
        let mut gone = Vec::new();
        let mut delivered = 0u64;
        // Encoded once, on the first socket that takes it.
        let mut encoded: Option<Bytes> = None;
        for (conn_id, m) in self.map.iter_mut() {
            if m.poster || id.is_some_and(|id| id <= m.after) || !which(m.user.as_ref()) {
                continue;
            }
            match &mut m.state {
                State::Ready => {
                    if let Some(id) = id {
                        m.after = id;
                    }
                    let bytes = encoded.get_or_insert_with(|| encode_text(frame));
                    if m.outlet.send_encoded(bytes) {
                        delivered += 1;
                    } else {
                        gone.push(*conn_id);
                    }
                }
                State::Loading(buf) => {
                    if buf.len() >= self.queue {
                        m.outlet.close(codes::SLOW_CONSUMER, "slow consumer");
                        gone.push(*conn_id);
                    } else {
                        buf.push((id, frame.clone()));
                    }
                }
            }
        }
        // One shared counter update per event, not per socket.
        self.metrics.deliveries.add(delivered);
        for c in &gone {
            self.map.remove(c);
        }
        gone.len()
    }

    /// Sends a frame to one member.
    pub fn send_to(&self, conn_id: u64, frame: &ByteString) {
        if let Some(m) = self.map.get(&conn_id) {
            m.outlet.send_text(frame);
        }
    }

    /// Queues `hello`, then a history, then what was buffered while it loaded,
    /// for a member whose history came from the database. `newest` is the id
    /// of the history's last message; `queue` (a moderator's `held_queue`)
    /// goes right after the history. Returns false when the member is gone.
    pub fn finish_loading(
        &mut self,
        conn_id: u64,
        hello: &ByteString,
        history: &ByteString,
        newest: Option<i64>,
        queue: Option<&ByteString>,
    ) -> bool {
        let Some(m) = self.map.get_mut(&conn_id) else {
            return false;
        };
        let buffered = match std::mem::replace(&mut m.state, State::Ready) {
            State::Loading(b) => b,
            State::Ready => Vec::new(),
        };
        // The history may hold messages this room has not delivered yet (or
        // has buffered meanwhile): the member's mark moves past them.
        if let Some(newest) = newest {
            m.after = m.after.max(newest);
        }
        let mut ok = m.outlet.send_text(hello)
            && m.outlet.send_text(history)
            && queue.is_none_or(|q| m.outlet.send_text(q));
        for (id, frame) in buffered {
            match id {
                Some(id) if id <= m.after => continue,
                Some(id) => m.after = id,
                None => {}
            }
            if ok {
                ok = m.outlet.send_text(&frame);
            }
        }
        if !ok {
            self.map.remove(&conn_id);
        }
        ok
    }

    /// Sends a frame to the members whose user matches (moderators, one
    /// user's sockets); members still loading get it after their history.
    pub fn send_where(&mut self, frame: &ByteString, which: impl Fn(&RoomUser) -> bool) {
        for m in self.map.values_mut() {
            if m.poster || !m.user.as_ref().is_some_and(&which) {
                continue;
            }
            match &mut m.state {
                State::Ready => {
                    m.outlet.send_text(frame);
                }
                State::Loading(buf) => buf.push((None, frame.clone())),
            }
        }
    }

    /// Closes every socket of a user (banned: 4003); returns how many.
    pub fn close_user(&mut self, user_id: i64, code: u16, reason: &'static str) -> usize {
        let ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, m)| !m.poster && m.user.as_ref().is_some_and(|u| u.id == user_id))
            .map(|(c, _)| *c)
            .collect();
        for c in &ids {
            if let Some(m) = self.map.remove(c) {
                m.outlet.close_after_queue(code, reason);
            }
        }
        ids.len()
    }

    /// Closes every socket (after what is queued) and forgets them.
    pub fn close_all(&mut self, code: u16, reason: &'static str) {
        for m in self.map.values() {
            m.outlet.close_after_queue(code, reason);
        }
        self.map.clear();
        self.posters = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::outlet::{detached, Outbound};

    fn user(id: i64) -> RoomUser {
        RoomUser {
            id,
            username: format!("u{id}"),
            role: Role::Viewer,
            can_moderate: false,
            created_at: time::OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn posters_hear_only_what_is_sent_to_them() {
        let metrics = Arc::new(Metrics::default());
        let mut members = Members::new(8, metrics.clone());
        let (viewer, mut viewer_rx) = detached(8, metrics.clone());
        let (poster, mut poster_rx) = detached(8, metrics.clone());
        members.insert(1, viewer, Some(user(1)), 0, false);
        members.insert_poster(2, poster, user(2));
        assert_eq!(members.len(), 1, "posters are not viewers");
        assert_eq!(members.sockets_of(2), 0);
        assert_eq!(members.user(2).map(|u| u.id), Some(2));

        members.broadcast(&ByteString::from("all"), Some(10));
        members.send_where(&ByteString::from("mods"), |_| true);
        members.send_to(2, &ByteString::from("yours"));
        assert!(matches!(poster_rx.try_recv(), Some(Outbound::Text(t)) if t == "yours"));
        assert!(poster_rx.try_recv().is_none());
        let all = encode_text(&ByteString::from("all"));
        assert!(matches!(viewer_rx.try_recv(), Some(Outbound::Encoded(b)) if b == all));
        assert_eq!(metrics.broadcasts.get(), 1);
        assert_eq!(
            metrics.deliveries.get(),
            1,
            "the viewer's, not the poster's"
        );

        assert!(members.remove(2).is_some_and(|m| m.poster));
        assert_eq!(members.len(), 1);
        members.remove(1);
        assert!(members.is_empty());
    }

    #[test]
    fn a_keep_alive_round_pings_each_socket_once_spread_over_its_steps() {
        let metrics = Arc::new(Metrics::default());
        let mut members = Members::new(8, metrics.clone());
        let mut queues = Vec::new();
        for id in 1..=40u64 {
            let (outlet, rx) = detached(8, metrics.clone());
            members.insert(id, outlet, None, 0, false);
            queues.push(rx);
        }
        let (poster, mut poster_rx) = detached(8, metrics.clone());
        members.insert_poster(41, poster, user(41));
        let pings = |queues: &mut Vec<_>| -> Vec<usize> {
            queues
                .iter_mut()
                .map(|rx: &mut crate::sessions::outlet::Answers| {
                    std::iter::from_fn(|| rx.try_recv())
                        .filter(|o| matches!(o, Outbound::Ping(_)))
                        .count()
                })
                .collect()
        };
        let mut per_step = Vec::new();
        for step in 100..110 {
            assert!(members.keep_alive(45, step, 10).is_empty());
            per_step.push(pings(&mut queues).iter().sum::<usize>());
        }
        assert_eq!(per_step, vec![4; 10], "a tenth of the sockets each step");
        // A second round pings each one once more, and only once.
        for step in 110..120 {
            members.keep_alive(45, step, 10);
        }
        assert!(pings(&mut queues).iter().all(|n| *n == 1));
        assert!(poster_rx.try_recv().is_none(), "posters are not pinged");
        // One step (the old behaviour) pings everyone at once.
        members.keep_alive(45, 0, 1);
        assert!(pings(&mut queues).iter().all(|n| *n == 1));
    }
}
