//! `chat_heldmessage`: messages held for review. A held message waits in the
//! table until a moderator approves it (then it is stored as a chat message in
//! the same transaction) or denies it, or ten minutes pass (denied by itself).

use time::OffsetDateTime;

use super::{
    messages::{
        insert_in, message_from, message_sql, InsertOutcome, MessageBody, MessageType, NewMessage,
        StoredMessage,
    },
    moderation::{log_in, NewLogEntry},
    tenant_sql, Slug, Store, StoreResult,
};
use crate::domain::Role;

/// How long a message waits for review before it is denied by itself.
pub const HOLD_FOR: time::Duration = time::Duration::minutes(10);

/// A message waiting for review, with its author.
#[derive(Debug, Clone)]
pub struct Held {
    /// Row id (`held_id`).
    pub id: i64,
    /// Author.
    pub user_id: i64,
    /// Author's username.
    pub username: String,
    /// Author's role.
    pub role: Role,
    /// Why it is held (`term` or `link`).
    pub reason: String,
    /// When it was held.
    pub created_at: OffsetDateTime,
    /// The message it replies to (checked when it was held).
    pub reply_to_id: Option<i64>,
    /// What it says; `hidden` if its author was hidden when it was sent
    /// (approved, it stays hidden).
    pub body: MessageBody,
}

/// A message to hold: what the room resolved of it before holding it.
#[derive(Debug, Clone)]
pub struct NewHeld<'a> {
    /// The chat room's row id.
    pub room_id: i64,
    /// Author.
    pub user_id: i64,
    /// Why it is held (`term` or `link`).
    pub reason: &'a str,
    /// The message it replies to.
    pub reply_to_id: Option<i64>,
    /// What it says.
    pub body: &'a MessageBody,
}

/// A held message that was resolved now.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The held message.
    pub held: Held,
    /// For an approval: the message as stored, as history will read it.
    pub stored: Option<StoredMessage>,
}

/// A statement template (see [`super::tenant_sql`]) reading held messages for
/// [`held_from`]: the rows `h` of `source` (the table, or a `WITH h AS (...)`
/// that changed them) with their authors; `extra` adds columns after them.
fn held_sql(source: &str, extra: &str) -> String {
    format!(
        "SELECT h.id, h.user_id, u.username, u.role, h.content, h.client_id, h.reason, h.created_at, \
         h.reply_to_id, h.mentions, h.is_hidden{extra} \
         FROM {source} JOIN {{schema}}.accounts_user u ON u.id = h.user_id"
    )
}

fn held_from(row: &tokio_postgres::Row) -> Held {
    Held {
        id: row.get(0),
        user_id: row.get(1),
        username: row.get(2),
        role: Role::parse(row.get(3)).unwrap_or(Role::Viewer),
        reason: row.get(6),
        created_at: row.get(7),
        reply_to_id: row.get(8),
        body: MessageBody {
            content: row.get(4),
            client_id: row.get(5),
            mentions: row.get(9),
            hidden: row.get(10),
        },
    }
}

/// The condition of a message still waiting: neither resolved nor older than
/// [`HOLD_FOR`] (`$n` binds `HOLD_FOR` in seconds). Past it, a message is as
/// good as denied even before [`Store::expire_held`] records the denial.
fn waiting(n: usize) -> String {
    format!("h.state = 'held' AND h.created_at >= now() - ${n}::bigint * interval '1 second'")
}

impl Store {
    /// Holds a message for review; returns it with its id.
    pub async fn hold_message(&self, slug: &Slug, m: &NewHeld<'_>) -> StoreResult<Held> {
        self.query_one_in(
            slug,
            &format!(
                "WITH h AS (INSERT INTO {{schema}}.chat_heldmessage \
                   (room_id, user_id, content, client_id, reason, reply_to_id, mentions, is_hidden) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *) {}",
                held_sql("h", "")
            ),
            &[
                &m.room_id,
                &m.user_id,
                &m.body.content,
                &m.body.client_id,
                &m.reason,
                &m.reply_to_id,
                &m.body.mentions,
                &m.body.hidden,
            ],
            held_from,
        )
        .await
    }

    /// Messages of a room waiting for review, oldest first. Those past
    /// [`HOLD_FOR`] are left out: they can no longer be approved, and
    /// [`Store::expire_held`] records their denial.
    pub async fn held_queue(&self, slug: &Slug, room_id: i64) -> StoreResult<Vec<Held>> {
        self.query_in(
            slug,
            &format!(
                "{} WHERE h.room_id = $1 AND {} ORDER BY h.id",
                held_sql("{schema}.chat_heldmessage h", ""),
                waiting(2)
            ),
            &[&room_id, &HOLD_FOR.whole_seconds()],
            held_from,
        )
        .await
    }

    /// Approves (storing it as a chat message, in the same transaction) or
    /// denies a held message of a room, and logs it. `None` when it is not
    /// waiting (unknown, another room's, resolved already, or held longer
    /// than [`HOLD_FOR`]).
    pub async fn resolve_held(
        &self,
        slug: &Slug,
        room_id: i64,
        held_id: i64,
        approve: bool,
        log: NewLogEntry<'_>,
    ) -> StoreResult<Option<Resolved>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let state = if approve { "approved" } else { "denied" };
        let Some(row) = tx
            .query_opt(
                &tenant_sql(
                    slug,
                    &format!(
                        "WITH h AS (UPDATE {{schema}}.chat_heldmessage h \
                           SET state = $3, resolved_by = $4, resolved_at = now() \
                         WHERE h.id = $1 AND h.room_id = $2 AND {} RETURNING h.*) {}",
                        waiting(5),
                        held_sql("h", "")
                    ),
                ),
                &[
                    &held_id,
                    &room_id,
                    &state,
                    &log.moderator_id,
                    &HOLD_FOR.whole_seconds(),
                ],
            )
            .await?
        else {
            return Ok(None);
        };
        let held = held_from(&row);
        let mut stored = None;
        if approve {
            let out = insert_in(
                &tx,
                slug,
                &[NewMessage {
                    room_id,
                    user_id: Some(held.user_id),
                    message_type: MessageType::Message,
                    reply_to_id: held.reply_to_id,
                    body: held.body.clone(),
                }],
            )
            .await?;
            if let Some(InsertOutcome::Stored { id, .. }) = out.first().copied() {
                tx.execute(
                    &tenant_sql(
                        slug,
                        "UPDATE {schema}.chat_heldmessage SET message_id = $2 WHERE id = $1",
                    ),
                    &[&held_id, &id],
                )
                .await?;
                // Read back as history reads it: the reply's excerpt as it is now.
                let row = tx
                    .query_one(&tenant_sql(slug, &message_sql("WHERE m.id = $1")), &[&id])
                    .await?;
                stored = Some(message_from(&row));
            }
        }
        log_in(
            &tx,
            slug,
            &NewLogEntry {
                target_user_id: Some(held.user_id),
                message_id: stored.as_ref().map(|m| m.id),
                ..log
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Resolved { held, stored }))
    }

    /// Denies the messages of a tenant held longer than `age` (at least
    /// [`HOLD_FOR`]), in every stream, logging each (no moderator), in one
    /// statement; returns them, oldest first, with their streams' ids.
    /// Several nodes may run this at once: each message is denied, and
    /// logged, by one.
    pub async fn expire_held(
        &self,
        slug: &Slug,
        age: time::Duration,
    ) -> StoreResult<Vec<(i64, Held)>> {
        self.query_in(
            slug,
            &format!(
                "WITH h AS (UPDATE {{schema}}.chat_heldmessage h \
                   SET state = 'denied', resolved_at = now() \
                 FROM {{schema}}.chat_chatroom r \
                 WHERE r.id = h.room_id AND h.state = 'held' \
                   AND h.created_at < now() - $1::bigint * interval '1 second' \
                 RETURNING h.*, r.stream_id), \
                 logged AS (INSERT INTO {{schema}}.moderation_log \
                   (stream_id, moderator_id, action, target_user_id, reason) \
                 SELECT stream_id, NULL, 'deny', user_id, 'not reviewed within 10 minutes' FROM h) \
                 {} ORDER BY h.id",
                held_sql("h", ", h.stream_id")
            ),
            &[&age.max(HOLD_FOR).whole_seconds()],
            |row| (row.get(11), held_from(row)),
        )
        .await
    }
}
