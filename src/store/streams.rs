//! `streaming_stream` and `chat_chatroom`: streams and their one chat room each.

use time::OffsetDateTime;

use super::{Slug, Store, StoreResult};
use crate::rooms::modes::ModeState;

/// A stream's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// Created, not started: chat is open.
    Scheduled,
    /// On air: chat is open.
    Live,
    /// Over: chat is closed.
    Ended,
}

impl StreamStatus {
    /// Parses the stored text.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "scheduled" => Some(Self::Scheduled),
            "live" => Some(Self::Live),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }
}

/// A stream with its chat room.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Stream id (the `{id}` of `/streams/{id}`).
    pub id: i64,
    /// The chat room's row id (`chat_chatmessage.room_id`).
    pub room_id: i64,
    /// Owner's user id.
    pub owner_id: i64,
    /// Owner's username.
    pub owner: String,
    /// Title (plain text).
    pub title: String,
    /// Description (plain text; rendered escaped).
    pub description: String,
    /// Video URL, if any.
    pub video_url: Option<String>,
    /// Lifecycle state.
    pub status: StreamStatus,
    /// Slow mode seconds (0 = off).
    pub slow_mode_seconds: i32,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Went live.
    pub started_at: Option<OffsetDateTime>,
    /// Ended.
    pub ended_at: Option<OffsetDateTime>,
    /// Chat modes and what the shield saved.
    pub modes: ModeState,
}

fn stream_select(slug: &Slug) -> String {
    format!(
        "SELECT s.id, r.id, s.owner_id, u.username, s.title, s.description, s.video_url, \
                s.status, s.slow_mode_seconds, s.created_at, s.started_at, s.ended_at, s.modes \
         FROM {0}.streaming_stream s \
         JOIN {0}.chat_chatroom r ON r.stream_id = s.id \
         JOIN {0}.accounts_user u ON u.id = s.owner_id",
        slug.schema()
    )
}

fn stream_from(row: &tokio_postgres::Row) -> Stream {
    Stream {
        id: row.get(0),
        room_id: row.get(1),
        owner_id: row.get(2),
        owner: row.get(3),
        title: row.get(4),
        description: row.get(5),
        video_url: row.get(6),
        status: StreamStatus::parse(row.get(7)).unwrap_or(StreamStatus::Ended),
        slow_mode_seconds: row.get(8),
        created_at: row.get(9),
        started_at: row.get(10),
        ended_at: row.get(11),
        modes: serde_json::from_value(row.get(12)).unwrap_or_default(),
    }
}

impl Store {
    /// Creates a stream and its chat room in one transaction.
    pub async fn create_stream(
        &self,
        slug: &Slug,
        owner_id: i64,
        title: &str,
        description: &str,
        video_url: Option<&str>,
    ) -> StoreResult<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO {}.streaming_stream (owner_id, title, description, video_url) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    slug.schema()
                ),
                &[&owner_id, &title, &description, &video_url],
            )
            .await?
            .get(0);
        tx.execute(
            &format!(
                "INSERT INTO {}.chat_chatroom (name, stream_id) VALUES ($1, $2)",
                slug.schema()
            ),
            &[&format!("stream_{id}"), &id],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One stream.
    pub async fn stream(&self, slug: &Slug, id: i64) -> StoreResult<Option<Stream>> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("{} WHERE s.id = $1", stream_select(slug)), &[&id])
            .await?;
        Ok(row.as_ref().map(stream_from))
    }

    /// Every stream of the tenant: live first, then scheduled, then ended, newest first.
    pub async fn list_streams(&self, slug: &Slug) -> StoreResult<Vec<Stream>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{} ORDER BY CASE s.status WHEN 'live' THEN 0 WHEN 'scheduled' THEN 1 ELSE 2 END, \
                     s.id DESC LIMIT 200",
                    stream_select(slug)
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(stream_from).collect())
    }

    /// The streams of one owner: live first, then scheduled, then ended, newest first.
    pub async fn streams_owned_by(&self, slug: &Slug, owner_id: i64) -> StoreResult<Vec<Stream>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{} WHERE s.owner_id = $1 ORDER BY CASE s.status WHEN 'live' THEN 0 WHEN 'scheduled' THEN 1 ELSE 2 END, \
                     s.id DESC LIMIT 200",
                    stream_select(slug)
                ),
                &[&owner_id],
            )
            .await?;
        Ok(rows.iter().map(stream_from).collect())
    }

    /// Sets a stream's status (and its start or end time).
    pub async fn set_stream_status(
        &self,
        slug: &Slug,
        id: i64,
        status: StreamStatus,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "UPDATE {}.streaming_stream SET status = $2, \
                     started_at = CASE WHEN $2 = 'live' THEN COALESCE(started_at, pg_catalog.now()) ELSE started_at END, \
                     ended_at = CASE WHEN $2 = 'ended' THEN pg_catalog.now() ELSE ended_at END \
                     WHERE id = $1",
                    slug.schema()
                ),
                &[&id, &status.as_str()],
            )
            .await?;
        Ok(())
    }
}

impl Store {
    /// The tenant's stamps, by id.
    pub async fn stamps(&self, slug: &Slug) -> StoreResult<Vec<crate::protocol::StampView>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, name, image_url FROM {}.chat_chatstamp ORDER BY id",
                    slug.schema()
                ),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| crate::protocol::StampView {
                stamp_id: r.get(0),
                stamp_name: r.get(1),
                stamp_image_url: r.get(2),
            })
            .collect())
    }
}

impl Store {
    /// True when the user was appointed moderator of this stream.
    pub async fn is_stream_moderator(
        &self,
        slug: &Slug,
        stream_id: i64,
        user_id: i64,
    ) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!(
                    "SELECT 1 FROM {}.streaming_stream_moderators WHERE stream_id = $1 AND user_id = $2",
                    slug.schema()
                ),
                &[&stream_id, &user_id],
            )
            .await?
            .is_some())
    }
}
