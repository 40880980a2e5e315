//! A room's members on this node and the fan-out to them: one shared frame per
//! event pushed into every member's bounded outlet with `try_send`; a member
//! whose outlet is full is closed as a slow consumer (4008). Each member
//! remembers the highest message id it was sent, so no message reaches a socket
//! twice or out of id order, whatever mix of ring, database history, resume
//! point and live frames it got.
//!
//! A member leaves the map only by [`Members::remove`], which the room calls
//! for the session's `Leave`: a member whose socket a send found gone (or a
//! ban closed) is marked closed, no longer counts and gets nothing more, but
//! stays until then, so the room handles every departure (presence, leave
//! notice) in one place.

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
    /// The socket may use the user's moderation rights: a login session, or
    /// an API token with the `moderate` scope. Without it the user is a viewer
    /// here, whatever their rights (no exemption from slow mode and modes, no
    /// held queue, no hidden messages).
    pub moderate_scope: bool,
    /// When the account was made (`established_minutes`).
    pub created_at: time::OffsetDateTime,
}

/// Where a member's socket stands.
enum State {
    Ready,
    /// Waiting for its history from the database: what the room broadcasts
    /// meanwhile is buffered, (message id, frame).
    Loading(Vec<(Option<i64>, ByteString)>),
    /// Gone or closing: it gets nothing more and is not counted, until its
    /// `Leave` removes it.
    Closed,
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
    /// How many members are closed and not yet removed.
    closed: usize,
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
            closed: 0,
            metrics,
        }
    }

    /// Marks a member closed (once), so that it is no longer counted.
    fn mark_closed(closed: &mut usize, m: &mut Member) {
        if !m.is_closed() {
            m.state = State::Closed;
            *closed += 1;
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
        self.put(
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
        self.put(
            conn_id,
            Member {
                outlet,
                user: Some(user),
                state: State::Ready,
                after: i64::MAX,
                poster: true,
            },
        );
    }

    /// Adds (or replaces) a member, keeping the counts right.
    fn put(&mut self, conn_id: u64, member: Member) {
        self.remove(conn_id);
        if member.poster {
            self.posters += 1;
        }
        self.map.insert(conn_id, member);
    }

    /// Removes a member.
    pub fn remove(&mut self, conn_id: u64) -> Option<Member> {
        let m = self.map.remove(&conn_id)?;
        if m.poster {
            self.posters -= 1;
        }
        if m.is_closed() {
            self.closed -= 1;
        }
        Some(m)
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
    /// closes (1001) every socket that has not answered a ping for more
    /// than `timeout_secs` (checked at each step, so the timeout holds to a
    /// step, not to a round) and pings the others of step `step` (a
    /// connection id's remainder by `steps`); returns the closed ones'
    /// connection ids, for the room to let them leave. Over `steps`
    /// consecutive steps every socket is pinged once: a round spread over
    /// the ping interval keeps a room of 10,000 sockets from sending 10,000
    /// pings, and reading 10,000 pongs, in one burst that would delay the
    /// messages around it.
    pub fn keep_alive(&self, timeout_secs: u32, step: u64, steps: u64) -> Vec<u64> {
        let steps = steps.max(1);
        let mut silent = Vec::new();
        // One clock reading a step, not one a socket.
        let now = crate::sessions::outlet::clock();
        for (id, m) in &self.map {
            if !m.counts() {
                continue;
            }
            if m.outlet.silent_at(now) > timeout_secs {
                m.outlet.close_after_queue(1001, "no pong");
                silent.push(*id);
            } else if id % steps == step % steps {
                let _ = m.outlet.push(Outbound::Ping(bytes::Bytes::new()));
            }
        }
        silent
    }

    /// Members (sockets) on this node; posters are not counted.
    pub fn len(&self) -> usize {
        self.map.len() - self.posters - self.closed
    }

    /// True with no member (posters aside).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every logged-in user, mutably (rights refreshed).
    pub fn users_mut(&mut self) -> impl Iterator<Item = &mut RoomUser> {
        self.map.values_mut().filter_map(|m| m.user.as_mut())
    }

    /// Open sockets of one user in the room.
    pub fn sockets_of(&self, user_id: i64) -> usize {
        self.map
            .values()
            .filter(|m| m.counts() && m.user.as_ref().is_some_and(|u| u.id == user_id))
            .count()
    }

    /// Sends one event to every member; `id` is the message id of a `message`
    /// frame (members that already have it skip it). Closes slow consumers;
    /// returns how many members it closed (slow, or their socket gone).
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
        let mut gone = 0;
        let mut delivered = 0u64;
        // Encoded once, on the first socket that takes it.
        let mut encoded: Option<Bytes> = None;
        for m in self.map.values_mut() {
            if m.poster || id.is_some_and(|id| id <= m.after) || !which(m.user.as_ref()) {
                continue;
            }
            let sent = match &mut m.state {
                State::Closed => continue,
                State::Ready => {
                    if let Some(id) = id {
                        m.after = id;
                    }
                    let bytes = encoded.get_or_insert_with(|| encode_text(frame));
                    m.outlet.send_encoded(bytes)
                }
                State::Loading(buf) if buf.len() >= self.queue => {
                    m.outlet.close(codes::SLOW_CONSUMER, "slow consumer");
                    false
                }
                State::Loading(buf) => {
                    buf.push((id, frame.clone()));
                    continue;
                }
            };
            if sent {
                delivered += 1;
            } else {
                Self::mark_closed(&mut self.closed, m);
                gone += 1;
            }
        }
        // One shared counter update per event, not per socket.
        self.metrics.deliveries.add(delivered);
        if id.is_some() {
            // Frames with an id are messages.
            self.metrics.messages_sent.add(delivered);
        }
        gone
    }

    /// Sends a frame to one member (not to a closed one).
    pub fn send_to(&self, conn_id: u64, frame: &ByteString) {
        if let Some(m) = self.map.get(&conn_id).filter(|m| !m.is_closed()) {
            m.outlet.send_text(frame);
        }
    }

    /// Queues `hello`, then a history, then what was buffered while it loaded,
    /// for a member whose history came from the database. `newest` is the id
    /// of the history's last message; `queue` (a moderator's `held_queue`)
    /// goes right after the history. Returns false when the member is gone
    /// or closed (then or before).
    pub fn finish_loading(
        &mut self,
        conn_id: u64,
        hello: &ByteString,
        history: &ByteString,
        newest: Option<i64>,
        queue: Option<&ByteString>,
    ) -> bool {
        let Some(m) = self.map.get_mut(&conn_id).filter(|m| !m.is_closed()) else {
            return false;
        };
        let buffered = match std::mem::replace(&mut m.state, State::Ready) {
            State::Loading(b) => b,
            State::Ready | State::Closed => Vec::new(),
        };
        // The history may hold messages this room has not delivered yet (or
        // has buffered meanwhile): the member's mark moves past them.
        if let Some(newest) = newest {
            m.after = m.after.max(newest);
        }
        let mut ok = m.outlet.send_text(hello)
            && m.outlet.send_text(history)
            && queue.is_none_or(|q| m.outlet.send_text(q));
        let mut messages = 0;
        for (id, frame) in buffered {
            match id {
                Some(id) if id <= m.after => continue,
                Some(id) => m.after = id,
                None => {}
            }
            if ok {
                ok = m.outlet.send_text(&frame);
                messages += u64::from(ok && id.is_some());
            }
        }
        self.metrics.messages_sent.add(messages);
        if !ok {
            Self::mark_closed(&mut self.closed, m);
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
                State::Closed => {}
            }
        }
    }

    /// Closes every open socket of a user (banned: 4003); returns how many.
    pub fn close_user(&mut self, user_id: i64, code: u16, reason: &'static str) -> usize {
        self.close_where(|u| u.is_some_and(|u| u.id == user_id), code, reason)
    }

    /// Closes every open socket without a user (anonymous viewers, when the
    /// tenant no longer lets them watch); returns how many.
    pub fn close_anonymous(&mut self, code: u16, reason: &'static str) -> usize {
        self.close_where(|u| u.is_none(), code, reason)
    }

    /// Closes one open socket (after what is queued); it stops counting at
    /// once and leaves with its `Leave`. Returns false when it is gone or
    /// closed already.
    pub fn close(&mut self, conn_id: u64, code: u16, reason: &'static str) -> bool {
        let Some(m) = self.map.get_mut(&conn_id).filter(|m| m.counts()) else {
            return false;
        };
        m.outlet.close_after_queue(code, reason);
        Self::mark_closed(&mut self.closed, m);
        true
    }

    /// Closes every open socket (the tenant is gone); returns how many.
    /// Unlike [`Members::close_all`], each leaves with its `Leave`.
    pub fn close_every(&mut self, code: u16, reason: &'static str) -> usize {
        self.close_where(|_| true, code, reason)
    }

    /// Closes the open sockets whose user (`None`: anonymous) matches: they
    /// stop counting at once and leave with their `Leave`, like any other.
    fn close_where(
        &mut self,
        which: impl Fn(Option<&RoomUser>) -> bool,
        code: u16,
        reason: &'static str,
    ) -> usize {
        let mut n = 0;
        for m in self.map.values_mut() {
            if m.counts() && which(m.user.as_ref()) {
                m.outlet.close_after_queue(code, reason);
                Self::mark_closed(&mut self.closed, m);
                n += 1;
            }
        }
        n
    }

    /// Closes every socket (after what is queued) and forgets them.
    pub fn close_all(&mut self, code: u16, reason: &'static str) {
        for m in self.map.values() {
            m.outlet.close_after_queue(code, reason);
        }
        self.map.clear();
        self.posters = 0;
        self.closed = 0;
    }
}

impl Member {
    /// Closed: gone or closing, waiting for its `Leave`.
    fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Counted as a viewer: an open socket, not a poster.
    fn counts(&self) -> bool {
        !self.poster && !self.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::outlet::{detached, Answers, Outbound};

    fn user(id: i64) -> RoomUser {
        RoomUser {
            id,
            username: format!("u{id}"),
            role: Role::Viewer,
            moderate_scope: true,
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

    /// Members (connection id, user id, loading) on outlets of 8 frames, and
    /// each one's reading end.
    fn room<const N: usize>(specs: [(u64, i64, bool); N]) -> (Members, Arc<Metrics>, [Answers; N]) {
        let metrics = Arc::new(Metrics::default());
        let mut members = Members::new(8, metrics.clone());
        let readers = specs.map(|(conn_id, user_id, loading)| {
            let (outlet, answers) = detached(8, metrics.clone());
            members.insert(conn_id, outlet, Some(user(user_id)), 0, loading);
            answers
        });
        (members, metrics, readers)
    }

    /// A socket a broadcast finds gone stops counting at once, and stays a
    /// member until its `Leave`: the room's one place for departures
    /// (presence, leave notice) sees every socket go. (A broadcast used to
    /// forget it outright, so the `Leave` found nothing and the room's
    /// presence kept counting it.)
    #[test]
    fn a_socket_found_gone_stops_counting_and_is_removed_by_its_leave() {
        let (mut members, metrics, [mut stays_rx, goes_rx]) = room([(1, 1, false), (2, 2, false)]);
        drop(goes_rx);

        assert_eq!(members.broadcast(&ByteString::from("a"), Some(1)), 1);
        assert_eq!(members.len(), 1);
        assert_eq!(members.sockets_of(2), 0);
        // Closed: nothing more is tried, nothing is counted twice.
        assert_eq!(members.broadcast(&ByteString::from("b"), Some(2)), 0);
        assert_eq!(members.close_user(2, 4003, "banned"), 0);
        assert!(members.keep_alive(0, 0, 1).is_empty());
        assert_eq!(metrics.deliveries.get(), 2, "the open socket's two");

        let left = members.remove(2).expect("still a member until its leave");
        assert_eq!(left.user.map(|u| u.id), Some(2));
        assert_eq!(members.len(), 1);
        assert!(members.remove(2).is_none(), "a second leave finds nothing");
        assert!(matches!(stays_rx.try_recv(), Some(Outbound::Encoded(_))));
    }

    /// A ban closes a user's sockets: they stop counting at once and leave
    /// like any other (a loading one gets no history afterwards).
    #[test]
    fn a_closed_user_s_sockets_leave_like_any_other() {
        let (mut members, _, [mut a_rx, _b_rx, _other_rx]) =
            room([(1, 7, false), (2, 7, true), (3, 8, false)]);

        assert_eq!(members.close_user(7, 4003, "banned"), 2);
        assert_eq!(members.len(), 1);
        assert!(matches!(a_rx.try_recv(), Some(Outbound::Close(4003, _))));
        let hello = ByteString::from("hello");
        assert!(!members.finish_loading(2, &hello, &hello, None, None));
        assert!(members.remove(1).is_some() && members.remove(2).is_some());
        assert_eq!(members.len(), 1);
        members.remove(3);
        assert!(members.is_empty());
    }

    /// A tenant made private closes its anonymous viewers' sockets (a
    /// loading one too), and only theirs; posters have a user and stay.
    #[test]
    fn anonymous_sockets_close_and_logged_in_ones_stay() {
        let metrics = Arc::new(Metrics::default());
        let mut members = Members::new(8, metrics.clone());
        let (anon, mut anon_rx) = detached(8, metrics.clone());
        let (loading, _loading_rx) = detached(8, metrics.clone());
        let (alice, mut alice_rx) = detached(8, metrics.clone());
        let (poster, _poster_rx) = detached(8, metrics.clone());
        members.insert(1, anon, None, 0, false);
        members.insert(2, loading, None, 0, true);
        members.insert(3, alice, Some(user(3)), 0, false);
        members.insert_poster(4, poster, user(4));

        assert_eq!(
            members.close_anonymous(4001, "anonymous viewers are off"),
            2
        );
        assert_eq!(members.len(), 1);
        assert!(matches!(anon_rx.try_recv(), Some(Outbound::Close(4001, _))));
        assert!(alice_rx.try_recv().is_none());
        assert_eq!(members.close_anonymous(4001, "again"), 0, "closed once");
        assert_eq!(members.sockets_of(3), 1);
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

    /// One socket closed by its connection id (a resume whose history could
    /// not be read) gets the close after what it was queued, stops counting
    /// at once, and stays a member until its `Leave`; closing it again, or
    /// one that is gone, does nothing.
    #[test]
    fn one_socket_closed_stops_counting_and_leaves_with_its_leave() {
        let (mut members, _, [_stays_rx, mut closed_rx]) = room([(1, 1, false), (2, 2, true)]);
        assert!(members.close(2, 1012, "history unavailable"));
        assert!(matches!(
            closed_rx.try_recv(),
            Some(Outbound::Close(1012, _))
        ));
        assert_eq!(members.len(), 1);
        assert_eq!(members.sockets_of(2), 0);
        assert!(!members.close(2, 1012, "again"), "closed already");
        assert!(!members.close(9, 1012, "gone"), "never a member");
        assert!(members.remove(2).is_some(), "a member until its leave");
        assert!(!members.close(2, 1012, "left"));
    }
}
