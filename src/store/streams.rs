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

/// The columns [`stream_from`] reads: a stream `s` with its room `r` and owner `u`.
const STREAM_SELECT: &str = "SELECT s.id, r.id, s.owner_id, u.username, s.title, s.description, \
        s.video_url, s.status, s.slow_mode_seconds, s.created_at, s.started_at, s.ended_at, s.modes \
     FROM {schema}.streaming_stream s \
     JOIN {schema}.chat_chatroom r ON r.stream_id = s.id \
     JOIN {schema}.accounts_user u ON u.id = s.owner_id";

/// How stream listings are ordered: live first, then scheduled, then ended,
/// newest first; at most 200.
const STREAM_LIST_ORDER: &str =
    "ORDER BY CASE s.status WHEN 'live' THEN 0 WHEN 'scheduled' THEN 1 ELSE 2 END, s.id DESC LIMIT 200";

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
        let s = slug.schema();
        let id: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO {s}.streaming_stream (owner_id, title, description, video_url) \
                     VALUES ($1, $2, $3, $4) RETURNING id"
                ),
                &[&owner_id, &title, &description, &video_url],
            )
            .await?
            .get(0);
        tx.execute(
            &format!("INSERT INTO {s}.chat_chatroom (name, stream_id) VALUES ($1, $2)"),
            &[&format!("stream_{id}"), &id],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One stream.
    pub async fn stream(&self, slug: &Slug, id: i64) -> StoreResult<Option<Stream>> {
        self.query_opt_in(
            slug,
            &format!("{STREAM_SELECT} WHERE s.id = $1"),
            &[&id],
            stream_from,
        )
        .await
    }

    /// Every stream of the tenant: live first, then scheduled, then ended, newest first.
    pub async fn list_streams(&self, slug: &Slug) -> StoreResult<Vec<Stream>> {
        self.query_in(
            slug,
            &format!("{STREAM_SELECT} {STREAM_LIST_ORDER}"),
            &[],
            stream_from,
        )
        .await
    }

    /// The streams of one owner: live first, then scheduled, then ended, newest first.
    pub async fn streams_owned_by(&self, slug: &Slug, owner_id: i64) -> StoreResult<Vec<Stream>> {
        self.query_in(
            slug,
            &format!("{STREAM_SELECT} WHERE s.owner_id = $1 {STREAM_LIST_ORDER}"),
            &[&owner_id],
            stream_from,
        )
        .await
    }

    /// Sets a stream's status (and its start or end time).
    pub async fn set_stream_status(
        &self,
        slug: &Slug,
        id: i64,
        status: StreamStatus,
    ) -> StoreResult<()> {
        self.execute_in(
            slug,
            "UPDATE {schema}.streaming_stream SET status = $2, \
             started_at = CASE WHEN $2 = 'live' THEN COALESCE(started_at, pg_catalog.now()) ELSE started_at END, \
             ended_at = CASE WHEN $2 = 'ended' THEN pg_catalog.now() ELSE ended_at END \
             WHERE id = $1",
            &[&id, &status.as_str()],
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// The tenant's stamps, by id.
    pub async fn stamps(&self, slug: &Slug) -> StoreResult<Vec<crate::protocol::StampView>> {
        self.query_in(
            slug,
            "SELECT id, name, image_url FROM {schema}.chat_chatstamp ORDER BY id",
            &[],
            |r| crate::protocol::StampView {
                stamp_id: r.get(0),
                stamp_name: r.get(1),
                stamp_image_url: r.get(2),
            },
        )
        .await
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
        Ok(self
            .query_opt_in(
                slug,
                "SELECT 1 FROM {schema}.streaming_stream_moderators WHERE stream_id = $1 AND user_id = $2",
                &[&stream_id, &user_id],
                |_| (),
            )
            .await?
            .is_some())
    }
}
