//! Chat v2 reads and writes beside `messages`: the message a reply names,
//! usernames for the mention cache, edits and their earlier versions.

use time::OffsetDateTime;

use super::{
    messages::{message_from, message_sql, ReplyRef, StoredMessage},
    tenant_sql, Slug, Store, StoreResult,
};

impl Store {
    /// Users with an id above `after`, for the mention cache.
    pub async fn usernames_after(
        &self,
        slug: &Slug,
        after: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        self.query_in(
            slug,
            "SELECT id, username FROM {schema}.accounts_user WHERE id > $1 ORDER BY id",
            &[&after],
            |r| (r.get(0), r.get(1)),
        )
        .await
    }

    // Same shape as the store's other one-statement methods (see `Store::query_in`).
    /// The message `id` as a reply shows it, when it is a visible message of
    /// the room (not deleted, not from a hidden user).
    pub async fn reply_target(
        &self,
        slug: &Slug,
        room_id: i64,
        id: i64,
    ) -> StoreResult<Option<ReplyRef>> {
        self.query_opt_in(
            slug,
            "SELECT m.id, u.username, m.content FROM {schema}.chat_chatmessage m \
             LEFT JOIN {schema}.accounts_user u ON u.id = m.user_id \
             WHERE m.id = $1 AND m.room_id = $2 AND NOT m.is_deleted AND NOT m.is_hidden",
            &[&id, &room_id],
            |r| ReplyRef::new(r.get(0), r.get(1), r.get(2), false),
        )
        .await
    }
}

/// How an edit went.
#[derive(Debug)]
pub enum EditOutcome {
    /// Stored: the message as it is now.
    Edited(Box<StoredMessage>),
    /// No such visible message in the room (or deleted meanwhile).
    NotFound,
    /// Someone else's message.
    Forbidden,
    /// Sent more than the edit window ago.
    TooLate,
}

/// One text a message had.
#[derive(Debug, Clone)]
pub struct Version {
    /// The text.
    pub content: String,
    /// Its mentions.
    pub mentions: Vec<String>,
    /// When it was set (sent, or an edit).
    pub set_at: OffsetDateTime,
    /// When an edit replaced it (`None` for the current text).
    pub replaced_at: Option<OffsetDateTime>,
}

impl Version {
    /// A version from a row whose first three columns are its content,
    /// mentions (NULL for none) and when it was set.
    fn from_row(row: &tokio_postgres::Row, replaced_at: Option<OffsetDateTime>) -> Self {
        Self {
            content: row.get(0),
            mentions: row.get::<_, Option<Vec<String>>>(1).unwrap_or_default(),
            set_at: row.get(2),
            replaced_at,
        }
    }
}

impl Store {
    /// Edits a message of `user_id` in `room_id` sent less than
    /// `window_secs` ago: the earlier text goes to `chat_message_version`.
    /// The message row is locked, so a concurrent delete or edit is seen.
    #[allow(clippy::too_many_arguments)]
    pub async fn edit_message(
        &self,
        slug: &Slug,
        room_id: i64,
        message_id: i64,
        user_id: i64,
        content: &str,
        mentions: &[String],
        window_secs: i64,
    ) -> StoreResult<EditOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT user_id, is_deleted, room_id, \
                       created_at < now() - make_interval(secs => $2::bigint) \
                     FROM {}.chat_chatmessage WHERE id = $1 FOR UPDATE",
                    slug.schema()
                ),
                &[&message_id, &window_secs],
            )
            .await?;
        let Some(row) = row else {
            return Ok(EditOutcome::NotFound);
        };
        let (author, deleted, room, late): (Option<i64>, bool, i64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if deleted || room != room_id {
            return Ok(EditOutcome::NotFound);
        }
        if author != Some(user_id) {
            return Ok(EditOutcome::Forbidden);
        }
        if late {
            return Ok(EditOutcome::TooLate);
        }
        let mentions: Option<Vec<&str>> =
            (!mentions.is_empty()).then(|| mentions.iter().map(String::as_str).collect());
        tx.execute(
            &format!(
                "WITH old AS (SELECT id, content, mentions, coalesce(edited_at, created_at) AS set_at \
                   FROM {0}.chat_chatmessage WHERE id = $1) \
                 INSERT INTO {0}.chat_message_version (message_id, content, mentions, set_at) \
                 SELECT id, content, mentions, set_at FROM old",
                slug.schema()
            ),
            &[&message_id],
        )
        .await?;
        tx.execute(
            &format!(
                "UPDATE {}.chat_chatmessage SET content = $2, mentions = $3, search_text = $4, \
                   edited_at = greatest(now(), created_at) WHERE id = $1",
                slug.schema()
            ),
            &[
                &message_id,
                &content,
                &mentions,
                &super::search::fold(content),
            ],
        )
        .await?;
        let row = tx
            .query_one(
                &tenant_sql(slug, &message_sql("WHERE m.id = $1")),
                &[&message_id],
            )
            .await?;
        tx.commit().await?;
        Ok(EditOutcome::Edited(Box::new(message_from(&row))))
    }

    /// Every text of a message of `room_id`, oldest first (the current one
    /// last); `None` when the room has no such message.
    pub async fn message_versions(
        &self,
        slug: &Slug,
        room_id: i64,
        message_id: i64,
    ) -> StoreResult<Option<Vec<Version>>> {
        let client = self.client().await?;
        let current = client
            .query_opt(
                &format!(
                    "SELECT content, mentions, coalesce(edited_at, created_at) \
                     FROM {}.chat_chatmessage WHERE id = $1 AND room_id = $2",
                    slug.schema()
                ),
                &[&message_id, &room_id],
            )
            .await?;
        let Some(current) = current else {
            return Ok(None);
        };
        let rows = client
            .query(
                &format!(
                    "SELECT content, mentions, set_at, replaced_at FROM {}.chat_message_version \
                     WHERE message_id = $1 ORDER BY id",
                    slug.schema()
                ),
                &[&message_id],
            )
            .await?;
        let mut out: Vec<Version> = rows
            .iter()
            .map(|r| Version::from_row(r, Some(r.get(3))))
            .collect();
        out.push(Version::from_row(&current, None));
        Ok(Some(out))
    }
}
