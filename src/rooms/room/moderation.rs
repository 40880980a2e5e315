//! Moderation in a room: actions checked against the rights in the database
//! when they arrive, stored events applied to the room's state, blocked terms
//! and appointed moderators read again when they change, tenant roles as the
//! node's round of role reads brings them (`Hub::refresh_roles`; a socket
//! that gains rights then gets the held queue).

use super::*;

impl RoomActor {
    pub(super) fn load_terms(&mut self, ctx: &mut Context<Self>) {
        self.with_store(
            ctx,
            |db| async move { db.store.blocked_terms(&db.slug, db.stream_id).await },
            |r, room, _| match r {
                Ok(terms) => (room.terms, room.hold_terms) = compile_terms(&terms),
                Err(e) => tracing::warn!(error = %e, "blocked terms not loaded"),
            },
        );
    }

    /// Reads the stream's appointed moderators again and refreshes members'
    /// rights.
    pub(super) fn load_rights(&mut self, ctx: &mut Context<Self>) {
        self.with_store(
            ctx,
            |db| async move { db.store.stream_moderator_ids(&db.slug, db.stream_id).await },
            |r, room, _| match r {
                Ok(ids) => {
                    let before = room.moderating();
                    room.appointed = ids.into_iter().collect();
                    room.queue_to_new_moderators(&before);
                }
                Err(e) => tracing::warn!(error = %e, "moderators not loaded"),
            },
        );
    }

    /// Applies a read of tenant roles (see [`AskRoles`]) to the members
    /// there when the room was asked: a role given, changed or taken away
    /// in the database is what the room goes by from then on.
    fn apply_roles(&mut self, users: &[crate::store::accounts::User]) {
        let Some((present, asked)) = self.roles_asked.take() else {
            return;
        };
        let before = self.moderating();
        let roles: HashMap<i64, Role> = users.iter().map(|u| (u.id, u.role)).collect();
        // Only members there when it asked: one who joined meanwhile came
        // with a role read after this answer.
        for u in self.members.users_mut().filter(|u| present.contains(&u.id)) {
            match roles.get(&u.id) {
                Some(role) => u.role = *role,
                // Asked about and gone: deactivated or deleted.
                None if asked.contains(&u.id) => u.role = Role::Viewer,
                // Not staff, and not asked about.
                None => {}
            }
        }
        self.queue_to_new_moderators(&before);
    }

    /// The users whose sockets moderate the room now.
    fn moderating(&mut self) -> HashSet<i64> {
        let (owner, appointed) = (self.stream.owner_id, &self.appointed);
        self.members
            .users_mut()
            .filter(|u| moderates(u, owner, appointed))
            .map(|u| u.id)
            .collect()
    }

    /// Sends the held queue, as a moderator gets it on connect, to the
    /// sockets that moderate now and did not when `before` was taken.
    fn queue_to_new_moderators(&mut self, before: &HashSet<i64>) {
        if self.held.is_empty() {
            return;
        }
        let queue = self.held_queue_frame();
        let (owner, appointed) = (self.stream.owner_id, &self.appointed);
        self.members.send_where(&queue, |u| {
            !before.contains(&u.id) && moderates(u, owner, appointed)
        });
    }

    /// Applies a stored moderation event to the room's state and broadcasts it
    /// (held-message decisions to moderators and their author only).
    pub(super) fn apply_event(&mut self, ctx: &mut Context<Self>, event: ModEvent) {
        self.state_changes += 1;
        if let Some(change) = Change::of(&event) {
            self.restrictions.apply(&change);
        }
        match &event {
            ModEvent::Delete {
                message_id,
                hidden_author,
            } => {
                if self.ring.contains(*message_id) || *message_id <= self.newest_id {
                    self.ring.remove(*message_id);
                } else {
                    // Its message has not reached this room yet: skip it then.
                    self.early_deletes.insert(*message_id);
                }
                if self.pinned.as_ref().is_some_and(|(id, _)| id == message_id) {
                    self.pinned = None;
                }
                if hidden_author.is_some() {
                    // Only those who saw it hear of it, as with its edits.
                    self.broadcast_hidden(&event.frame(), None, *hidden_author);
                    return;
                }
            }
            ModEvent::Pin { message } => {
                let id = message["id"].as_i64().unwrap_or_default();
                self.pinned = Some((id, message.clone()));
            }
            ModEvent::Unpin => self.pinned = None,
            ModEvent::Clear { through_seq } => {
                self.ring.clear();
                self.pinned = None;
                self.order.hide_through(*through_seq);
                self.outbox.retain(|(seq, _)| seq > through_seq);
            }
            ModEvent::SlowMode { seconds } => self.slow_mode_seconds = *seconds,
            ModEvent::Modes {
                modes,
                slow_mode_seconds,
                version,
            } => {
                if *version < self.modes_version {
                    // An earlier change arriving late: the room (and its
                    // viewers) already have what came after it.
                    return;
                }
                self.modes_version = *version;
                self.modes.modes = *modes;
                self.slow_mode_seconds = *slow_mode_seconds;
            }
            ModEvent::Ban { .. } | ModEvent::Timeout { .. } | ModEvent::Unban { .. } => {}
            ModEvent::Approve(a) | ModEvent::ApproveHidden(a) => {
                let hidden = matches!(event, ModEvent::ApproveHidden(_));
                self.held.remove(&a.held_id);
                self.notify_moderators(&event.frame());
                // Stored by the approving node: every room delivers it in order.
                self.deliver(
                    ctx,
                    a.seq,
                    Slot::Deliver(Delivery {
                        id: a.id,
                        frame: ByteString::from(a.frame.clone()),
                        user_id: Some(a.user_id),
                        remote: true,
                        hidden,
                    }),
                );
                let ack = protocol::ack_frame_held(a.client_id.as_deref(), a.id, a.held_id);
                let author = a.user_id;
                self.members.send_where(&ack, |u| u.id == author);
                return;
            }
            ModEvent::Hide {
                user_id,
                tenant,
                hide,
                ..
            } => {
                self.hidden.apply(*user_id, *tenant, *hide);
                // The user is not told: only moderators see the notice.
                self.notify_moderators(&event.frame());
                return;
            }
            // Like Approve: off the queue, moderators told; then only the author hears.
            ModEvent::Deny {
                held_id,
                user_id,
                client_id,
            } => {
                self.held.remove(held_id);
                self.notify_moderators(&event.frame());
                let denied = protocol::denied_frame(client_id.as_deref(), *held_id);
                let author = *user_id;
                self.members.send_where(&denied, |u| u.id == author);
                return;
            }
        }
        let frame = event.frame();
        self.broadcast(&frame, None);
        if let ModEvent::Ban { user_id, .. } = &event {
            if self.members.close_user(*user_id, codes::BANNED, "banned") > 0 {
                self.report_viewers();
            }
        }
    }
}

/// Terms of the stream's lists as the matcher wants them: (block, hold).
pub(super) fn compile_terms(
    terms: &[crate::store::moderation::TermRow],
) -> (Vec<BlockedTerm>, Vec<BlockedTerm>) {
    let (hold, block): (Vec<_>, Vec<_>) = terms.iter().partition(|t| t.hold);
    let prepare = |list: Vec<&crate::store::moderation::TermRow>| {
        list.iter()
            .filter_map(|t| BlockedTerm::new(&t.term))
            .collect()
    };
    (prepare(block), prepare(hold))
}

impl Handler<Moderate> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Moderate, ctx: &mut Context<Self>) {
        let conn_id = msg.conn_id;
        let Some(user) = self.members.user(conn_id).cloned() else {
            self.error_to(conn_id, Code::Forbidden, "Only moderators can do that.");
            return;
        };
        let stream = self.stream.clone();
        self.with_store(
            ctx,
            |Db { store, slug, .. }| async move {
                // Rights as they are now in the database, not at connect.
                let forbidden = || ApiError::new(Code::Forbidden, "Only moderators can do that.");
                let fresh = store
                    .user_by_id(&slug, user.id)
                    .await?
                    .filter(|u| u.is_active)
                    .ok_or_else(forbidden)?;
                if !can_moderate(&store, &slug, &fresh, &stream).await? {
                    return Err(forbidden());
                }
                execute(&store, &slug, &stream, &fresh, msg.command).await
            },
            move |r, room, _| match r {
                Ok(event) => room.hub.apply(&room.key, event),
                Err(e) => {
                    if e.code() == Code::Unavailable {
                        tracing::warn!(tenant = %room.key.slug, stream = room.key.stream_id, error = ?e, "moderation not stored");
                    }
                    room.error_to(conn_id, e.code(), &e.to_string());
                }
            },
        );
    }
}

impl Handler<Apply> for RoomActor {
    type Result = ();

    fn handle(&mut self, Apply(event): Apply, ctx: &mut Context<Self>) {
        self.apply_event(ctx, event);
    }
}

impl Handler<ReloadTerms> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: ReloadTerms, ctx: &mut Context<Self>) {
        self.load_terms(ctx);
    }
}

impl Handler<ReloadRights> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: ReloadRights, ctx: &mut Context<Self>) {
        self.load_rights(ctx);
    }
}

impl Handler<SetTerms> for RoomActor {
    type Result = ();

    fn handle(&mut self, SetTerms(list): SetTerms, _: &mut Context<Self>) {
        (self.terms, self.hold_terms) = compile_terms(&list);
    }
}

/// The node's round of role reads asks: the members whose rights come from
/// their role (admins, moderators; a handful in any room), remembered with
/// every logged-in member present now, or `None` with nobody logged in.
/// Moderation actions do not wait for this: each is checked against the
/// database when it arrives.
impl Handler<AskRoles> for RoomActor {
    type Result = MessageResult<AskRoles>;

    fn handle(&mut self, _: AskRoles, _: &mut Context<Self>) -> Self::Result {
        let mut present = HashSet::new();
        let asked: HashSet<i64> = self
            .members
            .users_mut()
            .inspect(|u| {
                present.insert(u.id);
            })
            .filter(|u| matches!(u.role, Role::Admin | Role::Moderator))
            .map(|u| u.id)
            .collect();
        if present.is_empty() {
            self.roles_asked = None;
            return MessageResult(None);
        }
        let list = asked.iter().copied().collect();
        self.roles_asked = Some((present, asked));
        MessageResult(Some(list))
    }
}

impl Handler<Roles> for RoomActor {
    type Result = ();

    fn handle(&mut self, Roles(users): Roles, _: &mut Context<Self>) {
        self.apply_roles(&users);
    }
}

impl Handler<TenantAccess> for RoomActor {
    type Result = ();

    fn handle(&mut self, access: TenantAccess, _: &mut Context<Self>) {
        let closed = if access.gone {
            self.members
                .close_every(codes::SESSION_ENDED, "the tenant was deleted")
        } else {
            self.members
                .close_anonymous(codes::SESSION_ENDED, "anonymous viewers are off")
        };
        if closed > 0 {
            self.report_viewers();
        }
    }
}
