//! `chat_chatmessage`: batched inserts with idempotent `client_id`s, and the
//! history, resume and replay reads. Message ids are assigned from the table's
//! sequence while the room's advisory lock is held, so within a room the commit
//! order is the id order, on every node: a client resuming after id N can never
//! miss a message with a smaller id committed later.

use time::OffsetDateTime;

use super::{tenant_sql, Slug, Store, StoreError, StoreResult};
use crate::domain::Role;

/// Kind of a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A user's chat message.
    Message,
    /// A server notice ("Stream started").
    System,
    /// A moderation notice ("Slow mode is on (10 s)").
    Moderation,
}

impl MessageType {
    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::System => "system",
            Self::Moderation => "moderation",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "system" => Self::System,
            "moderation" => Self::Moderation,
            _ => Self::Message,
        }
    }
}

/// A message as stored, with its author.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Database id, increasing per room.
    pub id: i64,
    /// The room's dense sequence number (1, 2, 3, ... per room).
    pub seq: i64,
    /// From a hidden user: shown only to them and to moderators.
    pub hidden: bool,
    /// Author's user id (`None` for system notices or deleted users).
    pub user_id: Option<i64>,
    /// Author's username.
    pub username: Option<String>,
    /// Author's role.
    pub role: Option<Role>,
    /// The text, exactly as stored.
    pub content: String,
    /// Kind.
    pub message_type: MessageType,
    /// Sender's idempotency key.
    pub client_id: Option<String>,
    /// Commit time.
    pub created_at: OffsetDateTime,
    /// The message this one replies to.
    pub reply_to: Option<ReplyRef>,
    /// Users named with `@username`, as spelled in their accounts.
    pub mentions: Vec<String>,
    /// Time of the latest edit (`None` if never edited).
    pub edited_at: Option<OffsetDateTime>,
}

/// What a `<message>` shows of the message it replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRef {
    /// Its id.
    pub id: i64,
    /// Its author (`None` for notices or deleted users).
    pub username: Option<String>,
    /// Its first [`EXCERPT_CHARS`] characters (empty once it is deleted).
    pub excerpt: String,
}

/// Characters of a replied message shown in a reply.
pub const EXCERPT_CHARS: usize = 80;

impl ReplyRef {
    /// The reference to show for a message replied to.
    pub fn new(id: i64, username: Option<String>, content: &str, deleted: bool) -> Self {
        let excerpt = if deleted {
            String::new()
        } else {
            content.chars().take(EXCERPT_CHARS).collect()
        };
        Self {
            id,
            username,
            excerpt,
        }
    }
}

/// What a user's message says and carries, at every stage before it is read
/// back: in flight in its room, held for review, written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageBody {
    /// The text (already cleaned).
    pub content: String,
    /// The sender's idempotency key.
    pub client_id: Option<String>,
    /// Usernames mentioned, as spelled in their accounts.
    pub mentions: Vec<String>,
    /// From a hidden user: stored flagged, shown to them and moderators only.
    pub hidden: bool,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The chat room's row id.
    pub room_id: i64,
    /// Author (`None` for notices).
    pub user_id: Option<i64>,
    /// Kind.
    pub message_type: MessageType,
    /// The message replied to (checked by the room).
    pub reply_to_id: Option<i64>,
    /// What it says.
    pub body: MessageBody,
}

/// What happened to one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored now with this id and time.
    Stored {
        id: i64,
        seq: i64,
        at: OffsetDateTime,
    },
    /// The same client_id was stored before (within 10 minutes): its id.
    Duplicate { id: i64 },
}

/// The columns [`message_from`] reads: a message `m` with its author `u`, and
/// the message `p` it replies to with that one's author `pu`.
const MESSAGE_SELECT: &str =
    "SELECT m.id, m.user_id, u.username, u.role, m.content, m.message_type, \
     m.client_id, m.created_at, m.seq, m.is_deleted, m.is_hidden, m.reply_to_id, pu.username, \
     p.content, p.is_deleted, m.mentions, m.edited_at \
     FROM {schema}.chat_chatmessage m LEFT JOIN {schema}.accounts_user u ON u.id = m.user_id \
     LEFT JOIN {schema}.chat_chatmessage p ON p.id = m.reply_to_id \
     LEFT JOIN {schema}.accounts_user pu ON pu.id = p.user_id";

/// A statement template (see [`super::tenant_sql`]) reading messages for
/// [`message_from`], narrowed and ordered by `clause` (`WHERE m.id = $1`).
pub(super) fn message_sql(clause: &str) -> String {
    format!("{MESSAGE_SELECT} {clause}")
}

pub(super) fn message_from(row: &tokio_postgres::Row) -> StoredMessage {
    StoredMessage {
        id: row.get(0),
        user_id: row.get(1),
        username: row.get(2),
        role: row
            .get::<_, Option<&str>>(3)
            .and_then(|r| Role::parse(r).ok()),
        content: row.get(4),
        message_type: MessageType::parse(row.get(5)),
        client_id: row.get(6),
        created_at: row.get(7),
        seq: row.get(8),
        hidden: row.get(10),
        reply_to: row.get::<_, Option<i64>>(11).map(|id| {
            ReplyRef::new(
                id,
                row.get(12),
                row.get::<_, Option<&str>>(13).unwrap_or_default(),
                row.get::<_, Option<bool>>(14).unwrap_or(true),
            )
        }),
        mentions: row.get::<_, Option<Vec<String>>>(15).unwrap_or_default(),
        edited_at: row.get(16),
    }
}

/// Advisory-lock key of a room (its schema and id).
fn room_lock_sql(slug: &Slug) -> String {
    format!(
        "SELECT pg_advisory_xact_lock(hashtext('{}'), (r % 2147483647)::int) \
         FROM unnest($1::bigint[]) AS r ORDER BY r",
        slug.as_str()
    )
}

/// Earlier copies (within 10 minutes) of keyed messages: `$1` rooms, `$2`
/// users, `$3` client ids, one entry per keyed message.
fn earlier_copies_sql(slug: &Slug) -> String {
    tenant_sql(
        slug,
        "SELECT m.room_id, m.user_id, m.client_id, min(m.id) \
         FROM {schema}.chat_chatmessage m \
         JOIN unnest($1::bigint[], $2::bigint[], $3::text[]) AS k(room_id, user_id, client_id) \
           ON m.room_id = k.room_id AND m.user_id = k.user_id AND m.client_id = k.client_id \
         WHERE m.created_at > now() - interval '10 minutes' \
         GROUP BY 1, 2, 3",
    )
}

/// Stores a batch of messages (one array per column, `$1` their ids) with
/// their seqs: each room's `last_seq` moves by its number of messages, and the
/// messages take the seqs after the old value in batch order. A room without
/// a counter row has no room row either: its insert fails on the foreign key.
/// Returns `(id, seq, created_at)` per message.
fn insert_sql(slug: &Slug) -> String {
    tenant_sql(
        slug,
        "WITH b AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], \
           $5::text[], $6::text[], $7::bool[], $8::bigint[], $9::text[], $10::text[]) \
           WITH ORDINALITY AS b(i, r, u, c, t, k, h, p, x, f, o)), \
         n AS (SELECT r, count(*) AS n FROM b GROUP BY r), \
         s AS (UPDATE {schema}.chat_chatroom room SET last_seq = room.last_seq + n.n FROM n \
           WHERE room.id = n.r RETURNING room.id, room.last_seq - n.n AS base) \
         INSERT INTO {schema}.chat_chatmessage (id, room_id, user_id, content, message_type, \
           client_id, seq, is_hidden, reply_to_id, mentions, search_text) \
         SELECT b.i, b.r, b.u, b.c, b.t, b.k, \
           COALESCE(s.base, 0) + row_number() OVER (PARTITION BY b.r ORDER BY b.o), \
           b.h, b.p, b.x::text[], b.f \
         FROM b LEFT JOIN s ON s.id = b.r \
         RETURNING id, seq, created_at",
    )
}

/// A PostgreSQL array literal of `items` (`{"a","b"}`), quoted and escaped.
fn pg_text_array(items: &[String]) -> String {
    let mut s = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
    }
    s.push('}');
    s
}

impl Store {
    /// Stores a batch of one tenant's messages in one transaction. Returns one
    /// outcome per message, in order. Duplicate `client_id`s (same room and user,
    /// within 10 minutes, in the table or earlier in this batch) are not stored again.
    pub async fn insert_messages(
        &self,
        slug: &Slug,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<InsertOutcome>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let out = insert_in(&tx, slug, batch).await?;
        tx.commit().await?;
        Ok(out)
    }
}

/// [`Store::insert_messages`] inside a transaction the caller commits (an
/// approved held message is stored with its approval).
pub(crate) async fn insert_in(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
    batch: &[NewMessage],
) -> StoreResult<Vec<InsertOutcome>> {
    let mut rooms: Vec<i64> = batch.iter().map(|m| m.room_id).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let keyed: Vec<&NewMessage> = batch
        .iter()
        .filter(|m| m.body.client_id.is_some() && m.user_id.is_some())
        .collect();
    let (lock, select, nextval, insert) = futures_util::future::try_join4(
        tx.prepare_cached(&room_lock_sql(slug)),
        tx.prepare_cached(&earlier_copies_sql(slug)),
        tx.prepare_cached(&format!(
            "SELECT nextval('{}.chat_chatmessage_id_seq') FROM generate_series(1, $1::int)",
            slug.as_str()
        )),
        tx.prepare_cached(&insert_sql(slug)),
    )
    .await?;

    // One round trip: the rooms' lock (it serialises inserts per room across
    // nodes: commit order = id order), then, under it, the earlier copies of
    // keyed messages and an id for every message. The statements are sent
    // together and PostgreSQL runs them in the order sent; an id a duplicate
    // does not use is a gap in the id sequence, as a rollback leaves.
    let r: Vec<i64> = keyed.iter().map(|m| m.room_id).collect();
    let u: Vec<i64> = keyed.iter().filter_map(|m| m.user_id).collect();
    let c: Vec<&str> = keyed
        .iter()
        .filter_map(|m| m.body.client_id.as_deref())
        .collect();
    let n = batch.len() as i32;
    let (_, earlier, ids) = futures_util::future::try_join3(
        tx.execute(&lock, &[&rooms]),
        async {
            if keyed.is_empty() {
                Ok(Vec::new())
            } else {
                tx.query(&select, &[&r, &u, &c]).await
            }
        },
        tx.query(&nextval, &[&n]),
    )
    .await?;
    let earlier: Vec<(i64, i64, String, i64)> = earlier
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();

    // Decide per message: duplicate of an earlier one, or new.
    enum Slot {
        Dup(i64),
        DupOfBatch(usize),
        New(usize),
    }
    let mut slots = Vec::with_capacity(batch.len());
    let mut fresh: Vec<&NewMessage> = Vec::new();
    for (i, m) in batch.iter().enumerate() {
        let key = m.body.client_id.as_deref().zip(m.user_id);
        let slot = match key {
            Some((cid, uid)) => {
                if let Some(e) = earlier
                    .iter()
                    .find(|e| e.0 == m.room_id && e.1 == uid && e.2 == cid)
                {
                    Slot::Dup(e.3)
                } else if let Some(j) = batch[..i].iter().position(|p| {
                    p.room_id == m.room_id
                        && p.user_id == Some(uid)
                        && p.body.client_id.as_deref() == Some(cid)
                }) {
                    Slot::DupOfBatch(j)
                } else {
                    fresh.push(m);
                    Slot::New(fresh.len() - 1)
                }
            }
            None => {
                fresh.push(m);
                Slot::New(fresh.len() - 1)
            }
        };
        slots.push(slot);
    }

    // One more round trip: the rooms' seq counters move and the new messages
    // are stored with their seqs, in one statement.
    let mut stored: Vec<(i64, i64, OffsetDateTime)> = Vec::new();
    if !fresh.is_empty() {
        let ids: Vec<i64> = ids.iter().take(fresh.len()).map(|r| r.get(0)).collect();
        let room_ids: Vec<i64> = fresh.iter().map(|m| m.room_id).collect();
        let hidden: Vec<bool> = fresh.iter().map(|m| m.body.hidden).collect();
        let user_ids: Vec<Option<i64>> = fresh.iter().map(|m| m.user_id).collect();
        let contents: Vec<&str> = fresh.iter().map(|m| m.body.content.as_str()).collect();
        let types: Vec<&str> = fresh.iter().map(|m| m.message_type.as_str()).collect();
        let cids: Vec<Option<&str>> = fresh.iter().map(|m| m.body.client_id.as_deref()).collect();
        let replies: Vec<Option<i64>> = fresh.iter().map(|m| m.reply_to_id).collect();
        let folded: Vec<String> = fresh
            .iter()
            .map(|m| super::search::fold(&m.body.content))
            .collect();
        // text[] of each message's mentions, NULL for none (one array literal each:
        // unnest cannot take a ragged two-dimensional array).
        let mentions: Vec<Option<String>> = fresh
            .iter()
            .map(|m| (!m.body.mentions.is_empty()).then(|| pg_text_array(&m.body.mentions)))
            .collect();
        let rows = tx
            .query(
                &insert,
                &[
                    &ids, &room_ids, &user_ids, &contents, &types, &cids, &hidden, &replies,
                    &mentions, &folded,
                ],
            )
            .await?;
        stored = ids
            .iter()
            .map(|id| {
                rows.iter()
                    .find(|row| row.get::<_, i64>(0) == *id)
                    .map(|row| (*id, row.get(1), row.get(2)))
                    .ok_or(StoreError::Unexpected("a stored message was not returned"))
            })
            .collect::<StoreResult<_>>()?;
    }

    let mut out: Vec<InsertOutcome> = Vec::with_capacity(batch.len());
    for slot in slots {
        let o = match slot {
            Slot::Dup(id) => InsertOutcome::Duplicate { id },
            Slot::New(k) => InsertOutcome::Stored {
                id: stored[k].0,
                seq: stored[k].1,
                at: stored[k].2,
            },
            Slot::DupOfBatch(j) => match out[j] {
                InsertOutcome::Stored { id, .. } | InsertOutcome::Duplicate { id } => {
                    InsertOutcome::Duplicate { id }
                }
            },
        };
        out.push(o);
    }
    Ok(out)
}

/// Which hidden users' messages a reader sees besides everyone's: none, their
/// own (a reader who may have been hidden is never shown that), or all (the
/// stream's moderators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenShown {
    /// Hidden messages are left out (anonymous readers, the ring).
    None,
    /// The reader's own hidden messages are in.
    Author(i64),
    /// Every hidden message is in.
    All,
}

impl HiddenShown {
    /// The rule: all to a reader who moderates the stream, their own to any
    /// other logged-in user (`user`), none to an anonymous one.
    pub fn for_reader(user: Option<i64>, moderates: bool) -> HiddenShown {
        match user {
            Some(_) if moderates => HiddenShown::All,
            Some(id) => HiddenShown::Author(id),
            None => HiddenShown::None,
        }
    }

    /// The condition on `m` for a reader, with the two bind parameters
    /// numbered `n` and `n + 1` that [`HiddenShown::params`] gives.
    fn sql(n: usize) -> String {
        format!(
            "(NOT m.is_hidden OR ${n}::bool OR m.user_id = ${}::bigint)",
            n + 1
        )
    }

    /// The values of [`HiddenShown::sql`]'s two parameters: every hidden
    /// message, and the author whose own are shown.
    fn params(self) -> (bool, Option<i64>) {
        match self {
            HiddenShown::None => (false, None),
            HiddenShown::Author(id) => (false, Some(id)),
            HiddenShown::All => (true, None),
        }
    }
}

/// A room's newest messages as `shown` reads them, newest first, `$1` the
/// room, `$2` the limit (one more than wanted, for [`newest_page`]) and `$3`,
/// `$4` those of [`HiddenShown::sql`].
fn recent_sql() -> String {
    message_sql(&format!(
        "WHERE m.room_id = $1 AND NOT m.is_deleted AND {} ORDER BY m.id DESC LIMIT $2",
        HiddenShown::sql(3)
    ))
}

/// Messages read newest first with a limit of `limit + 1`: the newest `limit`,
/// oldest first, and whether there was one more (older ones exist).
fn newest_page(mut messages: Vec<StoredMessage>, limit: i64) -> (Vec<StoredMessage>, bool) {
    let more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    messages.reverse();
    (messages, more)
}

impl Store {
    /// The newest `limit` messages of a room that a reader sees (deleted ones
    /// never; hidden ones as `shown` says), oldest first, and whether older
    /// ones exist.
    pub async fn recent_messages(
        &self,
        slug: &Slug,
        room_id: i64,
        limit: i64,
        shown: HiddenShown,
    ) -> StoreResult<(Vec<StoredMessage>, bool)> {
        let (all, author) = shown.params();
        let messages = self
            .query_in(
                slug,
                &recent_sql(),
                &[&room_id, &(limit + 1), &all, &author],
                message_from,
            )
            .await?;
        Ok(newest_page(messages, limit))
    }

    /// The newest `limit` visible messages of a room, oldest first, whether older
    /// ones exist, and the room's `last_seq` — all from one snapshot, so the
    /// messages are exactly those visible up to that seq.
    pub async fn room_snapshot(
        &self,
        slug: &Slug,
        room_id: i64,
        limit: i64,
    ) -> StoreResult<(Vec<StoredMessage>, bool, i64)> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let last_seq: i64 = tx
            .query_opt(
                &tenant_sql(
                    slug,
                    "SELECT last_seq FROM {schema}.chat_chatroom WHERE id = $1",
                ),
                &[&room_id],
            )
            .await?
            .map_or(0, |r| r.get(0));
        let (all, author) = HiddenShown::None.params();
        let rows = tx
            .query(
                &tenant_sql(slug, &recent_sql()),
                &[&room_id, &(limit + 1), &all, &author],
            )
            .await?;
        tx.commit().await?;
        let (out, more) = newest_page(rows.iter().map(message_from).collect(), limit);
        Ok((out, more, last_seq))
    }

    /// The authors of the hidden messages among a room's newest `window`
    /// messages: whose histories hold messages the ring does not.
    pub async fn hidden_authors(
        &self,
        slug: &Slug,
        room_id: i64,
        window: i64,
    ) -> StoreResult<Vec<i64>> {
        self.query_in(
            slug,
            "SELECT DISTINCT w.user_id FROM (SELECT m.user_id, m.is_hidden, m.is_deleted \
               FROM {schema}.chat_chatmessage m WHERE m.room_id = $1 ORDER BY m.id DESC LIMIT $2) w \
             WHERE w.is_hidden AND NOT w.is_deleted AND w.user_id IS NOT NULL",
            &[&room_id, &window],
            |r| r.get(0),
        )
        .await
    }

    /// The latest seq of each of these streams' rooms (`(stream_id,
    /// last_seq)`): one read per tenant tells a node's rooms which of them
    /// lack messages (see `Hub::sweep`).
    pub async fn room_heads(
        &self,
        slug: &Slug,
        stream_ids: &[i64],
    ) -> StoreResult<Vec<(i64, i64)>> {
        self.query_in(
            slug,
            "SELECT stream_id, last_seq FROM {schema}.chat_chatroom WHERE stream_id = ANY($1)",
            &[&stream_ids],
            |r| (r.get(0), r.get(1)),
        )
        .await
    }

    /// Every stored message of a room with seq > `after_seq`, deleted ones
    /// included (flagged `true`), in seq order, at most `limit`: what a room
    /// that has delivered up to `after_seq` still lacks.
    pub async fn messages_after_seq(
        &self,
        slug: &Slug,
        room_id: i64,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<(StoredMessage, bool)>> {
        self.query_in(
            slug,
            &message_sql("WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3"),
            &[&room_id, &after_seq, &limit],
            |r| (message_from(r), r.get(9)),
        )
        .await
    }

    /// Messages a reader sees (as [`Store::recent_messages`]) with id >
    /// `after`, oldest first; at most `limit` (the newest ones) and whether
    /// more were missed.
    pub async fn messages_after(
        &self,
        slug: &Slug,
        room_id: i64,
        after: i64,
        limit: i64,
        shown: HiddenShown,
    ) -> StoreResult<(Vec<StoredMessage>, bool)> {
        let (hidden, (all, author)) = (HiddenShown::sql(4), shown.params());
        let messages = self
            .query_in(
                slug,
                &message_sql(&format!(
                    "WHERE m.room_id = $1 AND m.id > $2 AND NOT m.is_deleted AND {hidden} \
                     ORDER BY m.id DESC LIMIT $3"
                )),
                &[&room_id, &after, &(limit + 1), &all, &author],
                message_from,
            )
            .await?;
        Ok(newest_page(messages, limit))
    }

    /// Replay: visible messages before `before_id` (or the newest), newest first.
    pub async fn messages_before(
        &self,
        slug: &Slug,
        room_id: i64,
        before_id: Option<i64>,
        limit: i64,
        shown: HiddenShown,
    ) -> StoreResult<Vec<StoredMessage>> {
        let before = before_id.unwrap_or(i64::MAX);
        let (hidden, (all, author)) = (HiddenShown::sql(4), shown.params());
        self.query_in(
            slug,
            &message_sql(&format!(
                "WHERE m.room_id = $1 AND m.id < $2 AND NOT m.is_deleted AND {hidden} \
                 ORDER BY m.id DESC LIMIT $3"
            )),
            &[&room_id, &before, &limit, &all, &author],
            message_from,
        )
        .await
    }

    /// Visible chat of a room in [from, to), oldest first, at most `limit`.
    pub async fn messages_between(
        &self,
        slug: &Slug,
        room_id: i64,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.query_in(
            slug,
            &message_sql(
                "WHERE m.room_id = $1 AND m.created_at >= $2 AND m.created_at < $3 \
                 AND NOT m.is_deleted AND NOT m.is_hidden ORDER BY m.id LIMIT $4",
            ),
            &[&room_id, &from, &to, &limit],
            message_from,
        )
        .await
    }

    /// One message by id (deleted or not).
    pub async fn message(&self, slug: &Slug, id: i64) -> StoreResult<Option<StoredMessage>> {
        self.query_opt_in(slug, &message_sql("WHERE m.id = $1"), &[&id], message_from)
            .await
    }

    // Same shape as the store's other one-statement methods (see `Store::query_in`).
    /// The pinned visible message of a room, if any.
    pub async fn pinned_message(
        &self,
        slug: &Slug,
        room_id: i64,
    ) -> StoreResult<Option<StoredMessage>> {
        self.query_opt_in(
            slug,
            &message_sql(
                "WHERE m.room_id = $1 AND m.is_pinned AND NOT m.is_deleted AND NOT m.is_hidden \
                 ORDER BY m.id DESC LIMIT 1",
            ),
            &[&room_id],
            message_from,
        )
        .await
    }
}
