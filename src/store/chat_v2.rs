//! Chat v2 reads and writes beside `messages`: the message a reply names,
//! usernames for the mention cache, edits and their earlier versions.

use super::{messages::ReplyRef, Slug, Store, StoreResult};

impl Store {
    /// Users with an id above `after`, for the mention cache.
    pub async fn usernames_after(
        &self,
        slug: &Slug,
        after: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, username FROM {}.accounts_user WHERE id > $1 ORDER BY id",
                    slug.schema()
                ),
                &[&after],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The message `id` as a reply shows it, when it is a visible message of
    /// the room.
    pub async fn reply_target(
        &self,
        slug: &Slug,
        room_id: i64,
        id: i64,
    ) -> StoreResult<Option<ReplyRef>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT m.id, u.username, m.content FROM {0}.chat_chatmessage m \
                     LEFT JOIN {0}.accounts_user u ON u.id = m.user_id \
                     WHERE m.id = $1 AND m.room_id = $2 AND NOT m.is_deleted",
                    slug.schema()
                ),
                &[&id, &room_id],
            )
            .await?;
        Ok(row.map(|r| ReplyRef::new(r.get(0), r.get(1), r.get(2), false)))
    }
}
