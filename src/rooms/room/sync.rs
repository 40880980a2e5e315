//! Delivery order and catching up: every stored message goes through the
//! room's [`Sequencer`] (local commits, relayed events and PostgreSQL alike),
//! gaps are fetched after a short wait, the node's sweep (`Hub::sweep`) has a
//! room that is behind ask only for what is newer than what it delivered, and
//! a relay outage ends with a resync.

use super::*;

/// A stored message ready to go out.
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) id: i64,
    pub(super) frame: ByteString,
    pub(super) user_id: Option<i64>,
    /// Stored by another node (slow mode counts it on delivery).
    pub(super) remote: bool,
    /// From a hidden user: to them and moderators only, never in the ring.
    pub(super) hidden: bool,
}

impl RoomActor {
    /// Offers a stored message to the sequencer and sends out whatever is
    /// now in order.
    pub(super) fn deliver(&mut self, ctx: &mut Context<Self>, seq: i64, slot: Slot<Delivery>) {
        let slot = match slot {
            Slot::Deliver(d) if self.early_deletes.contains(&d.id) => Slot::Skip,
            Slot::Deliver(d) => Slot::Deliver((seq, d)),
            Slot::Skip => Slot::Skip,
        };
        let ready = self.order.offer(seq, slot, Instant::now());
        self.send_out(ctx, ready);
        self.watch_gap(ctx);
    }

    /// Sends out what the sequencer released, in order: at most a quarter of
    /// a socket's queue every [`DRAIN_PAUSE`], the rest waiting in the
    /// outbox. A backlog (a gap filled, a catch-up of hundreds) thus goes
    /// out as the sockets' writers drain it, instead of filling their queues
    /// at once and closing healthy sockets as slow consumers. Live chat stays
    /// far below that pace (64 messages per 20 ms with the default queue).
    pub(super) fn send_out(&mut self, ctx: &mut Context<Self>, ready: Vec<(i64, Delivery)>) {
        self.outbox.extend(ready);
        self.drain_outbox(ctx);
    }

    fn drain_outbox(&mut self, ctx: &mut Context<Self>) {
        let burst = (self.hub.settings().limits.socket_queue / 4).max(1);
        while self.sent_in_pause < burst {
            let Some((_, d)) = self.outbox.pop_front() else {
                break;
            };
            self.sent_in_pause += 1;
            self.emit(d);
        }
        if self.sent_in_pause > 0 && !self.draining {
            self.draining = true;
            ctx.run_later(DRAIN_PAUSE, |room, ctx| {
                room.draining = false;
                room.sent_in_pause = 0;
                room.drain_outbox(ctx);
            });
        }
    }

    pub(super) fn emit(&mut self, d: Delivery) {
        self.newest_id = self.newest_id.max(d.id);
        if self.early_deletes.contains(&d.id) {
            // Deleted while it waited in the outbox.
            return;
        }
        if let (Some(u), true) = (d.user_id, d.remote) {
            self.last_chat.insert(u, Instant::now());
            // Sent through another node: unique chat compares with it too,
            // unless it is older than the window (a catch-up after an outage).
            if self.modes.modes.unique_chat {
                if let Some((text, at)) = frame_text(&d.frame) {
                    if OffsetDateTime::now_utc() - at < crate::rooms::modes::UNIQUE_WINDOW {
                        self.recent.add(RecentTexts::key(&text), Instant::now());
                    }
                }
            }
        }
        if d.hidden {
            self.hidden_authors.extend(d.user_id);
            self.broadcast_hidden(&d.frame, Some(d.id), d.user_id);
            return;
        }
        self.ring.push(RingEntry {
            id: d.id,
            frame: d.frame.clone(),
        });
        self.broadcast(&d.frame, Some(d.id));
    }

    /// While later messages wait behind a gap, checks every [`GAP_WAIT`]
    /// and fetches the gap from PostgreSQL once it is overdue.
    pub(super) fn watch_gap(&mut self, ctx: &mut Context<Self>) {
        if self.order.held() == 0 || self.gap_timer {
            return;
        }
        self.gap_timer = true;
        ctx.run_later(GAP_WAIT, |room, ctx| {
            room.gap_timer = false;
            if room.order.overdue(Instant::now(), GAP_WAIT).is_some() {
                room.catch_up(ctx);
            }
            room.watch_gap(ctx);
        });
    }

    /// Fetches every stored message newer than what the room has delivered
    /// and delivers it in order (deleted ones only fill their seq). Asks only
    /// for what is newer, so nothing delivered is ever delivered again.
    pub(super) fn catch_up(&mut self, ctx: &mut Context<Self>) {
        if self.catching_up {
            return;
        }
        self.catching_up = true;
        self.hub.metrics().catch_ups.inc();
        if !self.order.is_known() {
            // The room never learnt its position: take it from a snapshot.
            let ring_size = self.hub.settings().chat.ring_size as i64;
            self.with_store(
                ctx,
                |db| async move {
                    db.store
                        .room_snapshot(&db.slug, db.room_id, ring_size)
                        .await
                },
                |r, room, ctx| {
                    room.catching_up = false;
                    if let Ok((messages, has_older, last_seq)) = r {
                        room.load_ring(&messages, has_older);
                        let ready = room.order.learn(last_seq);
                        room.send_out(ctx, ready);
                    }
                },
            );
            return;
        }
        let after = self.order.delivered();
        self.with_store(
            ctx,
            |db| async move {
                db.store
                    .messages_after_seq(&db.slug, db.room_id, after, CATCH_UP_MAX)
                    .await
            },
            |r, room, ctx| {
                room.catching_up = false;
                match r {
                    Ok(rows) => {
                        let more = rows.len() as i64 == CATCH_UP_MAX;
                        for (m, deleted) in rows {
                            let seq = m.seq;
                            let slot = if deleted {
                                Slot::Skip
                            } else {
                                Slot::Deliver(Delivery {
                                    id: m.id,
                                    frame: protocol::message_frame(&m),
                                    user_id: m.user_id,
                                    remote: true,
                                    hidden: m.hidden,
                                })
                            };
                            room.deliver(ctx, seq, slot);
                        }
                        if more {
                            room.catch_up(ctx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %room.key.slug, stream = room.key.stream_id, error = %e, "catch-up failed")
                    }
                }
            },
        );
    }

    pub(super) fn load_ring(&mut self, messages: &[StoredMessage], has_older: bool) {
        let entries = messages
            .iter()
            .map(|m| RingEntry {
                id: m.id,
                frame: protocol::message_frame(m),
            })
            .collect();
        self.newest_id = self.newest_id.max(messages.last().map_or(0, |m| m.id));
        self.ring = Ring::new(self.hub.settings().chat.ring_size, entries, has_older);
    }

    /// After a relay outage: what other nodes did meanwhile comes from
    /// PostgreSQL — messages (newer than delivered), deletions and edits of
    /// messages the ring holds, bans (a banned member's sockets close, 4003),
    /// status, slow mode, modes and pin (members are told of what changed),
    /// the held queue (moderators get it again when it changed), hidden
    /// users, terms and rights. One runs at a time; one whose read overlapped
    /// a change to the room's state reads again, and one that could not read
    /// everything runs again [`RESYNC_RETRY`] later.
    pub(super) fn resync(&mut self, ctx: &mut Context<Self>) {
        if self.resyncing {
            self.resync_again = true;
            return;
        }
        self.resyncing = true;
        let changes = self.state_changes;
        self.catch_up(ctx);
        self.load_terms(ctx);
        self.load_rights(ctx);
        let ring_size = self.hub.settings().chat.ring_size as i64;
        // Delivered after commit: every id up to here is in the snapshot
        // unless deleted. What the room delivers meanwhile may not be.
        let covered = self.newest_id;
        self.with_store(
            ctx,
            |Db {
                 store,
                 slug,
                 room_id,
                 stream_id,
             }| async move {
                let visible = store.room_snapshot(&slug, room_id, ring_size).await;
                let restrictions = store.restrictions(&slug, stream_id, None).await;
                let stream = store.stream(&slug, stream_id).await;
                let pinned = store.pinned_message(&slug, room_id).await;
                let held = store.held_queue(&slug, room_id).await;
                let hidden = store.hidden_users(&slug, stream_id).await;
                (visible, restrictions, stream, (pinned, held, hidden))
            },
            move |(visible, restrictions, stream, (pinned, held, hidden)), room, ctx| {
                room.resyncing = false;
                if room.state_changes != changes {
                    // Changed while it read: what it read may be older.
                    room.resync(ctx);
                    return;
                }
                let complete = visible.is_ok()
                    && restrictions.is_ok()
                    && stream.is_ok()
                    && pinned.is_ok()
                    && held.is_ok()
                    && hidden.is_ok();
                if let Ok(rows) = hidden {
                    room.hidden = crate::rooms::hidden::Hidden::from_rows(rows);
                }
                if let Ok(held) = held {
                    let before: Vec<i64> = room.held.keys().copied().collect();
                    room.load_held(&held);
                    if !room.held.keys().copied().eq(before) {
                        let queue = room.held_queue_frame();
                        room.notify_moderators(&queue);
                    }
                }
                if let Ok((messages, has_older, _)) = visible {
                    room.reconcile_ring(&messages, has_older, covered);
                }
                if let Ok(list) = restrictions {
                    room.restrictions = Restrictions::from_rows(list);
                    room.close_banned();
                }
                if let Ok(Some(s)) = stream {
                    room.status = s.status;
                    room.settings_changed(s.slow_mode_seconds, s.modes);
                }
                if let Ok(p) = pinned {
                    room.pin_changed(p.map(|m| (m.id, crate::moderation::pinned_json(&m))));
                }
                let again = std::mem::take(&mut room.resync_again);
                if !complete {
                    tracing::warn!(tenant = %room.key.slug, stream = room.key.stream_id, "resync incomplete: trying again");
                    // Spread out: every room of the node resyncs at once
                    // after an outage, and they should not retry at once too.
                    let pause = RESYNC_RETRY.mul_f64(1.0 + rand::random::<f64>());
                    ctx.run_later(pause, |room, ctx| room.resync(ctx));
                } else if again {
                    room.resync(ctx);
                }
            },
        );
    }

    /// Brings the ring in line with `visible`, the newest visible messages
    /// read after the room had delivered every id up to `covered` (a message
    /// delivered later is newer than the snapshot, not deleted): a message it
    /// no longer shows was deleted on another node while the relay was away,
    /// and one edited since is replaced. Members are told of each, as they
    /// would have been live.
    pub(super) fn reconcile_ring(
        &mut self,
        visible: &[StoredMessage],
        has_older: bool,
        covered: i64,
    ) {
        let oldest = visible.first().map_or(i64::MAX, |m| m.id);
        let fresh: HashSet<i64> = visible.iter().map(|m| m.id).collect();
        for id in self.ring.ids() {
            // Without older messages in the database, the snapshot covers everything.
            if id <= covered && !fresh.contains(&id) && (!has_older || id >= oldest) {
                self.ring.remove(id);
                // As a live delete does: the pin goes with it, unannounced.
                if self.pinned.as_ref().is_some_and(|(p, _)| *p == id) {
                    self.pinned = None;
                }
                let delete = ModEvent::Delete {
                    message_id: id,
                    hidden_author: None,
                };
                self.broadcast(&delete.frame(), None);
            }
        }
        for m in visible.iter().filter(|m| m.edited_at.is_some()) {
            let edited_at = m.edited_at.map(protocol::timestamp);
            // Older than the snapshot's edit (timestamps of one fixed width
            // compare as text; null is older than any).
            let stale = self
                .ring
                .get(m.id)
                .and_then(|frame| serde_json::from_str::<serde_json::Value>(frame).ok())
                .is_some_and(|held| held["edited_at"].as_str() < edited_at.as_deref());
            if stale {
                self.apply_edit(
                    m.id,
                    protocol::edit_frame(m),
                    protocol::message_frame(m),
                    None,
                );
            }
        }
    }

    /// Closes (4003) the sockets of members the room's restrictions now ban.
    fn close_banned(&mut self) {
        let now = OffsetDateTime::now_utc();
        let banned: HashSet<i64> = self
            .members
            .users_mut()
            .map(|u| u.id)
            .filter(|id| self.restrictions.muted(*id, now) == Some(Muted::Banned))
            .collect();
        let mut closed = 0;
        for id in banned {
            closed += self.members.close_user(id, codes::BANNED, "banned");
        }
        if closed > 0 {
            self.report_viewers();
        }
    }

    /// Takes slow mode and modes as stored, and tells members of a change
    /// (as the `modes` notice does, which carries slow mode too).
    fn settings_changed(&mut self, slow_mode_seconds: i32, modes: ModeState) {
        let event = if modes.modes != self.modes.modes {
            Some(ModEvent::Modes {
                modes: modes.modes,
                slow_mode_seconds,
                version: self.modes_version,
            })
        } else if slow_mode_seconds != self.slow_mode_seconds {
            Some(ModEvent::SlowMode {
                seconds: slow_mode_seconds,
            })
        } else {
            None
        };
        self.slow_mode_seconds = slow_mode_seconds;
        self.modes = modes;
        if let Some(event) = event {
            self.broadcast(&event.frame(), None);
        }
    }

    /// Takes the pinned message as stored, and tells members when it is
    /// another one, none, or the same with other text (edited).
    fn pin_changed(&mut self, pinned: Option<(i64, serde_json::Value)>) {
        if pinned != self.pinned {
            let event = match &pinned {
                Some((_, message)) => ModEvent::Pin {
                    message: message.clone(),
                },
                None => ModEvent::Unpin,
            };
            self.broadcast(&event.frame(), None);
        }
        self.pinned = pinned;
    }
}

impl Handler<Remote> for RoomActor {
    type Result = ();

    fn handle(&mut self, Remote(event): Remote, ctx: &mut Context<Self>) {
        match event {
            RelayEvent::Message {
                frame,
                id,
                seq,
                user_id,
                hidden,
            } => self.deliver(
                ctx,
                seq,
                Slot::Deliver(Delivery {
                    id,
                    frame: ByteString::from(frame),
                    user_id,
                    remote: true,
                    hidden,
                }),
            ),
            RelayEvent::Reactions { counts } => {
                for (stamp, n) in counts {
                    self.window.add_remote(stamp, n);
                }
                self.arm_window(ctx);
            }
            RelayEvent::Announce { frame } => self.broadcast(&ByteString::from(frame), None),
            RelayEvent::Edit {
                message_id,
                frame,
                message,
                hidden,
                user_id,
            } => self.apply_edit(
                message_id,
                frame.into(),
                message.into(),
                hidden.then_some(user_id),
            ),
            RelayEvent::Moderation { event } => self.apply_event(ctx, event),
            RelayEvent::Held { held_id, item } => self.add_held(held_id, ByteString::from(item)),
            RelayEvent::Status { status } => {
                self.state_changes += 1;
                self.status = status;
            }
            RelayEvent::Terms => self.load_terms(ctx),
            RelayEvent::Rights => self.load_rights(ctx),
            RelayEvent::Resync => self.resync(ctx),
            RelayEvent::SessionEnded { .. } | RelayEvent::UserSessionsEnded { .. } => {}
        }
    }
}

/// The node's sweep: a room with members that has delivered less than
/// PostgreSQL holds fetches the rest (a relay event was lost: Redis away, a
/// node that could not publish, a full mailbox). Rooms that are up to date,
/// nearly all of them, read nothing.
impl Handler<Sweep> for RoomActor {
    type Result = ();

    fn handle(&mut self, sweep: Sweep, ctx: &mut Context<Self>) {
        if !self.members.is_empty()
            && (!self.order.is_known() || sweep.last_seq > self.order.delivered())
        {
            self.catch_up(ctx);
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
        self.resync(ctx);
    }
}

/// The text and time of a `message` frame (`None` for a frame that is not one).
fn frame_text(frame: &str) -> Option<(String, OffsetDateTime)> {
    #[derive(serde::Deserialize)]
    struct Text<'a> {
        #[serde(borrow)]
        message: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        timestamp: &'a str,
    }
    let t: Text<'_> = serde_json::from_str(frame).ok()?;
    let at =
        OffsetDateTime::parse(t.timestamp, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.message.into_owned(), at))
}

#[cfg(test)]
mod tests {
    use super::frame_text;

    #[test]
    fn a_message_frame_gives_its_text_and_time() {
        let frame = r#"{"type":"message","id":4,"username":"bob","message":"hi \"all\"","message_type":"message","timestamp":"2026-11-22T08:00:00.123Z"}"#;
        let (text, at) = frame_text(frame).unwrap();
        assert_eq!(text, "hi \"all\"");
        assert_eq!(at.unix_timestamp(), 1_795_334_400);
        assert!(frame_text(r#"{"type":"presence","viewers":3}"#).is_none());
    }
}
