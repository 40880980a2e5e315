//! Moderation tables: `moderation_log`, `moderation_ban` (bans and timeouts,
//! per stream or tenant-wide), `moderation_blockedterm`, appointed stream
//! moderators, and the message flags (`is_deleted`, `is_pinned`).

use time::OffsetDateTime;

use super::{messages::StoredMessage, tenant_sql, Params, Slug, Store, StoreResult};

/// A ban or timeout in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    /// The user.
    pub user_id: i64,
    /// `true` for a ban, `false` for a timeout.
    pub is_ban: bool,
    /// End (None: permanent ban).
    pub until: Option<OffsetDateTime>,
    /// Tenant-wide rather than for one stream.
    pub tenant_wide: bool,
}

/// A term of a stream's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermRow {
    /// As the moderator typed it.
    pub term: String,
    /// On every stream of the tenant.
    pub tenant_wide: bool,
    /// Holds for review instead of refusing.
    pub hold: bool,
}

// Documented fields, one a line, as every record here: alike in shape only.
/// A moderation log entry as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    /// Row id.
    pub id: i64,
    /// What was done.
    pub action: String,
    /// Who did it.
    pub moderator: Option<String>,
    /// To whom.
    pub target: Option<String>,
    /// Which message.
    pub message_id: Option<i64>,
    /// Why.
    pub reason: Option<String>,
    /// For how long (timeouts, slow mode).
    pub seconds: Option<i32>,
    /// When (ISO 8601).
    pub created_at: String,
}

/// One row to write to the log.
pub struct NewLogEntry<'a> {
    /// Stream.
    pub stream_id: i64,
    /// Moderator.
    pub moderator_id: i64,
    /// Action name (`delete`, `pin`, ...).
    pub action: &'a str,
    /// Target user.
    pub target_user_id: Option<i64>,
    /// Target message.
    pub message_id: Option<i64>,
    /// Reason.
    pub reason: Option<&'a str>,
    /// Seconds.
    pub seconds: Option<i32>,
}

pub(super) async fn log_in(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
    e: &NewLogEntry<'_>,
) -> StoreResult<i64> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO {}.moderation_log (stream_id, moderator_id, action, target_user_id, message_id, reason, seconds) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                slug.schema()
            ),
            &[&e.stream_id, &e.moderator_id, &e.action, &e.target_user_id, &e.message_id, &e.reason, &e.seconds],
        )
        .await?;
    Ok(row.get(0))
}

impl Store {
    /// Flags a visible message of a room deleted and logs it; returns its
    /// author and whether it was a hidden user's (shown to them and moderators
    /// only), or `None` when no such visible message exists.
    pub async fn delete_message(
        &self,
        slug: &Slug,
        room_id: i64,
        message_id: i64,
        log: NewLogEntry<'_>,
    ) -> StoreResult<Option<(Option<i64>, bool)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE {}.chat_chatmessage SET is_deleted = true, is_pinned = false \
                     WHERE id = $1 AND room_id = $2 AND NOT is_deleted RETURNING user_id, is_hidden",
                    slug.schema()
                ),
                &[&message_id, &room_id],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let author: Option<i64> = row.get(0);
        log_in(
            &tx,
            slug,
            &NewLogEntry {
                target_user_id: author,
                ..log
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some((author, row.get(1))))
    }

    // Same opening as resolve_held: a pooled client and one transaction.
    /// Pins one visible message of a room (unpinning any other) and logs it.
    /// `None` when no such visible message exists.
    pub async fn pin_message(
        &self,
        slug: &Slug,
        room_id: i64,
        message_id: i64,
        log: NewLogEntry<'_>,
    ) -> StoreResult<Option<StoredMessage>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let s = slug.schema();
        tx.execute(
            &format!("UPDATE {s}.chat_chatmessage SET is_pinned = false WHERE room_id = $1 AND is_pinned"),
            &[&room_id],
        )
        .await?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE {s}.chat_chatmessage SET is_pinned = true \
                     WHERE id = $1 AND room_id = $2 AND NOT is_deleted AND NOT is_hidden"
                ),
                &[&message_id, &room_id],
            )
            .await?;
        if n == 0 {
            return Ok(None);
        }
        log_in(&tx, slug, &log).await?;
        tx.commit().await?;
        drop(client);
        self.message(slug, message_id).await
    }

    /// Unpins every message of a room and logs it.
    pub async fn unpin(&self, slug: &Slug, room_id: i64, log: NewLogEntry<'_>) -> StoreResult<()> {
        self.execute_logged(
            slug,
            "UPDATE {schema}.chat_chatmessage SET is_pinned = false WHERE room_id = $1 AND is_pinned",
            &[&room_id],
            log,
        )
        .await
        .map(drop)
    }

    /// Hides every visible message of a room and logs it; returns the highest
    /// seq it hid (0: none), the cut-off rooms apply to messages still on
    /// their way.
    pub async fn clear_chat(
        &self,
        slug: &Slug,
        room_id: i64,
        log: NewLogEntry<'_>,
    ) -> StoreResult<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                &tenant_sql(
                    slug,
                    "WITH cleared AS (UPDATE {schema}.chat_chatmessage SET is_deleted = true, is_pinned = false \
                     WHERE room_id = $1 AND NOT is_deleted RETURNING seq) \
                     SELECT coalesce(max(seq), 0) FROM cleared",
                ),
                &[&room_id],
            )
            .await?;
        log_in(&tx, slug, &log).await?;
        tx.commit().await?;
        Ok(row.get(0))
    }

    /// Sets slow mode and logs it.
    pub async fn set_slow_mode(
        &self,
        slug: &Slug,
        stream_id: i64,
        seconds: i32,
        log: NewLogEntry<'_>,
    ) -> StoreResult<()> {
        self.execute_logged(
            slug,
            "UPDATE {schema}.streaming_stream SET slow_mode_seconds = $2 WHERE id = $1",
            &[&stream_id, &seconds],
            log,
        )
        .await
        .map(drop)
    }

    /// Bans or times out a user (replacing an earlier one of the same kind and
    /// scope) and logs it. `stream_id` None: tenant-wide.
    #[allow(clippy::too_many_arguments)]
    pub async fn restrict_user(
        &self,
        slug: &Slug,
        stream_id: Option<i64>,
        user_id: i64,
        is_ban: bool,
        until: Option<OffsetDateTime>,
        reason: Option<&str>,
        log: NewLogEntry<'_>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let s = slug.schema();
        let kind = if is_ban { "ban" } else { "timeout" };
        tx.execute(
            &format!(
                "DELETE FROM {s}.moderation_ban WHERE user_id = $1 AND kind = $2 AND stream_id IS NOT DISTINCT FROM $3"
            ),
            &[&user_id, &kind, &stream_id],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.moderation_ban (stream_id, user_id, kind, until, reason, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[&stream_id, &user_id, &kind, &until, &reason, &log.moderator_id],
        )
        .await?;
        log_in(&tx, slug, &log).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifts a user's bans and timeouts of exactly one scope, and logs it:
    /// with `tenant_wide` the tenant-wide ones only, otherwise only those of
    /// `stream_id` (the stream the action came from, also when tenant-wide).
    /// One scope's lift never touches the other's (the rule of
    /// [`crate::rooms::restrictions`]).
    pub async fn unrestrict_user(
        &self,
        slug: &Slug,
        stream_id: i64,
        user_id: i64,
        tenant_wide: bool,
        log: NewLogEntry<'_>,
    ) -> StoreResult<()> {
        let scope = (!tenant_wide).then_some(stream_id);
        self.execute_logged(
            slug,
            "DELETE FROM {schema}.moderation_ban WHERE user_id = $1 AND stream_id IS NOT DISTINCT FROM $2",
            &[&user_id, &scope],
            log,
        )
        .await
        .map(drop)
    }

    /// Runs one statement of the tenant's schema (`{schema}` in `template`,
    /// see [`tenant_sql`]) and writes its log entry, in one transaction.
    async fn execute_logged(
        &self,
        slug: &Slug,
        template: &str,
        params: &Params<'_>,
        log: NewLogEntry<'_>,
    ) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute(&tenant_sql(slug, template), params).await?;
        log_in(&tx, slug, &log).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Bans and timeouts in force on a stream (its own and tenant-wide).
    pub async fn restrictions(
        &self,
        slug: &Slug,
        stream_id: i64,
        user_id: Option<i64>,
    ) -> StoreResult<Vec<Restriction>> {
        self.query_in(
            slug,
            "SELECT user_id, kind = 'ban', until, stream_id IS NULL FROM {schema}.moderation_ban \
             WHERE (stream_id = $1 OR stream_id IS NULL) AND (until IS NULL OR until > pg_catalog.now()) \
               AND ($2::bigint IS NULL OR user_id = $2)",
            &[&stream_id, &user_id],
            |r| Restriction {
            user_id: r.get(0),
            is_ban: r.get(1),
            until: r.get(2),
            tenant_wide: r.get(3),
        },
        )
        .await
    }

    /// Blocked and held terms of a stream (its own and tenant-wide).
    pub async fn blocked_terms(&self, slug: &Slug, stream_id: i64) -> StoreResult<Vec<TermRow>> {
        self.query_in(
            slug,
            "SELECT term, stream_id IS NULL, mode = 'hold' FROM {schema}.moderation_blockedterm \
             WHERE stream_id = $1 OR stream_id IS NULL ORDER BY term",
            &[&stream_id],
            |r| TermRow {
                term: r.get(0),
                tenant_wide: r.get(1),
                hold: r.get(2),
            },
        )
        .await
    }

    /// Adds (or, with `add` false, removes) a term; `stream_id` None:
    /// tenant-wide; `hold`: messages with it are held for review, not refused.
    pub async fn set_blocked_term(
        &self,
        slug: &Slug,
        stream_id: Option<i64>,
        term: &str,
        add: bool,
        hold: bool,
    ) -> StoreResult<()> {
        let mode = if hold { "hold" } else { "block" };
        if add {
            self.execute_in(
                slug,
                "INSERT INTO {schema}.moderation_blockedterm (stream_id, term, mode) VALUES ($1, $2, $3) \
                 ON CONFLICT (COALESCE(stream_id, 0), term) DO UPDATE SET mode = EXCLUDED.mode",
                &[&stream_id, &term, &mode],
            )
            .await?;
        } else {
            self.execute_in(
                slug,
                "DELETE FROM {schema}.moderation_blockedterm WHERE term = $2 AND stream_id IS NOT DISTINCT FROM $1",
                &[&stream_id, &term],
            )
            .await?;
        }
        Ok(())
    }

    // Same shape as the store's other one-statement methods (see `Store::query_in`).
    /// The moderation log of a stream, newest first.
    pub async fn moderation_log(
        &self,
        slug: &Slug,
        stream_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<LogEntry>> {
        self.query_in(
            slug,
            "SELECT l.id, l.action, m.username, t.username, l.message_id, l.reason, l.seconds, l.created_at \
             FROM {schema}.moderation_log l \
             LEFT JOIN {schema}.accounts_user m ON m.id = l.moderator_id \
             LEFT JOIN {schema}.accounts_user t ON t.id = l.target_user_id \
             WHERE l.stream_id = $1 ORDER BY l.id DESC LIMIT $2",
            &[&stream_id, &limit],
            |r| LogEntry {
            id: r.get(0),
            action: r.get(1),
            moderator: r.get(2),
            target: r.get(3),
            message_id: r.get(4),
            reason: r.get(5),
            seconds: r.get(6),
            created_at: crate::protocol::timestamp(r.get(7)),
        },
        )
        .await
    }

    /// Usernames appointed moderator of a stream.
    pub async fn stream_moderators(&self, slug: &Slug, stream_id: i64) -> StoreResult<Vec<String>> {
        self.query_in(
            slug,
            "SELECT u.username FROM {schema}.streaming_stream_moderators m \
             JOIN {schema}.accounts_user u ON u.id = m.user_id WHERE m.stream_id = $1 ORDER BY u.username",
            &[&stream_id],
            |r| r.get(0),
        )
        .await
    }

    /// Hides (or, with `hide` false, unhides) a user in one scope (`stream_id`
    /// None: tenant-wide) and logs it.
    pub async fn set_hidden(
        &self,
        slug: &Slug,
        stream_id: Option<i64>,
        user_id: i64,
        hide: bool,
        log: NewLogEntry<'_>,
    ) -> StoreResult<()> {
        let moderator = log.moderator_id;
        if hide {
            self.execute_logged(
                slug,
                "INSERT INTO {schema}.moderation_hide (stream_id, user_id, created_by) VALUES ($1, $2, $3) \
                 ON CONFLICT (COALESCE(stream_id, 0), user_id) DO NOTHING",
                &[&stream_id, &user_id, &moderator],
                log,
            )
            .await
            .map(drop)
        } else {
            self.execute_logged(
                slug,
                "DELETE FROM {schema}.moderation_hide WHERE stream_id IS NOT DISTINCT FROM $1 AND user_id = $2",
                &[&stream_id, &user_id],
                log,
            )
            .await
            .map(drop)
        }
    }

    /// Users hidden on a stream: (user id, tenant-wide).
    pub async fn hidden_users(&self, slug: &Slug, stream_id: i64) -> StoreResult<Vec<(i64, bool)>> {
        self.query_in(
            slug,
            "SELECT user_id, stream_id IS NULL FROM {schema}.moderation_hide \
             WHERE stream_id = $1 OR stream_id IS NULL",
            &[&stream_id],
            |r| (r.get(0), r.get(1)),
        )
        .await
    }

    /// Changes a stream's chat modes (and slow mode, which the shield sets and
    /// restores) from what is stored now, and logs it, in one transaction.
    /// Returns the new state, slow mode and the log entry's id (changes of one
    /// stream are serialised on its row, so a later change has a larger id);
    /// `None` when the stream is gone.
    pub async fn change_modes(
        &self,
        slug: &Slug,
        stream_id: i64,
        change: &crate::rooms::modes::ModesChange,
        log: NewLogEntry<'_>,
    ) -> StoreResult<Option<(crate::rooms::modes::ModeState, i32, i64)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let s = slug.schema();
        let Some(row) = tx
            .query_opt(
                &format!("SELECT modes, slow_mode_seconds FROM {s}.streaming_stream WHERE id = $1 FOR UPDATE"),
                &[&stream_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut state: crate::rooms::modes::ModeState =
            serde_json::from_value(row.get(0)).unwrap_or_default();
        let slow = state.apply(change, row.get(1));
        let json = serde_json::to_value(state).unwrap_or_default();
        tx.execute(
            &format!(
                "UPDATE {s}.streaming_stream SET modes = $2, slow_mode_seconds = $3 WHERE id = $1"
            ),
            &[&stream_id, &json, &slow],
        )
        .await?;
        let version = log_in(
            &tx,
            slug,
            &NewLogEntry {
                seconds: Some(slow),
                ..log
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some((state, slow, version)))
    }

    /// Ids of the users appointed moderator of a stream.
    pub async fn stream_moderator_ids(&self, slug: &Slug, stream_id: i64) -> StoreResult<Vec<i64>> {
        self.query_in(
            slug,
            "SELECT user_id FROM {schema}.streaming_stream_moderators WHERE stream_id = $1",
            &[&stream_id],
            |r| r.get(0),
        )
        .await
    }

    // Same shape as the store's other one-statement methods (see `Store::query_in`).
    /// Appoints (or removes) a stream moderator.
    pub async fn set_stream_moderator(
        &self,
        slug: &Slug,
        stream_id: i64,
        user_id: i64,
        add: bool,
    ) -> StoreResult<()> {
        let sql = if add {
            "INSERT INTO {schema}.streaming_stream_moderators (stream_id, user_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM {schema}.streaming_stream_moderators WHERE stream_id = $1 AND user_id = $2"
        };
        self.execute_in(slug, sql, &[&stream_id, &user_id]).await?;
        Ok(())
    }
}
