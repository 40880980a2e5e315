//! The replay timeline of a stream: its visible chat and its reactions in 1 s
//! buckets, for a range of offsets from the stream's start.
//!
//! Both are range scans on existing indexes, never full scans:
//! - chat: `chat_msg_room_created_idx (room_id, created_at DESC)` — the rows of
//!   one room between two instants (see [`Store::messages_between`]);
//! - reactions: `reaction_stream_created_idx (stream_id, created_at DESC)` —
//!   the rows of one stream between two instants, counted per second and stamp.

use time::{Duration, OffsetDateTime};

use super::{Slug, Store, StoreResult};

/// Reactions of one stamp in one second of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReactionBucket {
    /// Start of the second, in milliseconds from the stream's start.
    pub offset_ms: i64,
    /// The stamp.
    pub stamp_id: i32,
    /// Reactions in that second.
    pub count: i64,
}

/// The instant `offset_ms` after `start`.
pub fn at_offset(start: OffsetDateTime, offset_ms: i64) -> OffsetDateTime {
    start + Duration::milliseconds(offset_ms)
}

/// Milliseconds from `start` to `t`, rounded down.
pub fn offset_of(start: OffsetDateTime, t: OffsetDateTime) -> i64 {
    let d = t - start;
    let ms = d.whole_milliseconds();
    // Round towards minus infinity, so -0.5 ms is -1, not 0.
    let ms = if d.is_negative() && d.subsec_microseconds() % 1000 != 0 {
        ms - 1
    } else {
        ms
    };
    ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Store {
    /// A stream's reactions with `from <= created_at < to`, counted per whole
    /// second after `start` and per stamp, in time then stamp order.
    pub async fn reaction_buckets(
        &self,
        slug: &Slug,
        stream_id: i64,
        start: OffsetDateTime,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<ReactionBucket>> {
        self.query_in(
            slug,
            "SELECT floor(extract(epoch FROM (created_at - $2)))::bigint AS sec, \
                    stamp_id, count(*) \
             FROM {schema}.streaming_streamreaction \
             WHERE stream_id = $1 AND created_at >= $3 AND created_at < $4 \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&stream_id, &start, &from, &to],
            |r| ReactionBucket {
                offset_ms: r.get::<_, i64>(0) * 1000,
                stamp_id: r.get(1),
                count: r.get(2),
            },
        )
        .await
    }

    /// Stores a chat message as if sent at `at` (for seeding a replay: the
    /// demo and tests), taking the room's next `seq` like any message. Not
    /// broadcast.
    pub async fn record_message_at(
        &self,
        slug: &Slug,
        stream_id: i64,
        user_id: Option<i64>,
        content: &str,
        at: OffsetDateTime,
    ) -> StoreResult<i64> {
        self.query_one_in(
            slug,
            "WITH r AS (UPDATE {schema}.chat_chatroom SET last_seq = last_seq + 1 \
                        WHERE stream_id = $1 RETURNING id, last_seq) \
             INSERT INTO {schema}.chat_chatmessage (room_id, user_id, content, message_type, created_at, seq) \
             SELECT id, $2, $3, CASE WHEN $2::bigint IS NULL THEN 'system' ELSE 'message' END, $4, last_seq \
             FROM r RETURNING id",
            &[&stream_id, &user_id, &content, &at],
            |r| r.get(0),
        )
        .await
    }

    /// Stores `count` reactions as if tapped at `at` (for seeding a replay),
    /// keeping the per-minute rollup consistent with the raw rows.
    pub async fn record_reactions_at(
        &self,
        slug: &Slug,
        stream_id: i64,
        user_id: i64,
        stamp_id: i32,
        at: OffsetDateTime,
        count: i64,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let s = slug.schema();
        tx.execute(
            &format!(
                "INSERT INTO {s}.streaming_streamreaction (stream_id, user_id, stamp_id, created_at) \
                 SELECT $1, $2, $3, $4 FROM generate_series(1::bigint, $5::bigint)"
            ),
            &[&stream_id, &user_id, &stamp_id, &at, &count],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.streaming_reaction_minute (stream_id, stamp_id, minute, count) \
                 VALUES ($1, $2, date_trunc('minute', $3::timestamptz), $4::bigint) \
                 ON CONFLICT (stream_id, minute, stamp_id) \
                 DO UPDATE SET count = streaming_reaction_minute.count + EXCLUDED.count"
            ),
            &[&stream_id, &stamp_id, &at, &count],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets when a stream started and ended (for seeding a replay).
    pub async fn set_stream_times(
        &self,
        slug: &Slug,
        stream_id: i64,
        started_at: OffsetDateTime,
        ended_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        self.execute_in(
            slug,
            "UPDATE {schema}.streaming_stream SET started_at = $2, ended_at = $3, \
             status = CASE WHEN $3::timestamptz IS NULL THEN 'live' ELSE 'ended' END \
             WHERE id = $1",
            &[&stream_id, &started_at, &ended_at],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn offsets_round_down() {
        let s = datetime!(2026-01-01 10:00:00 UTC);
        assert_eq!(offset_of(s, s), 0);
        assert_eq!(offset_of(s, s + Duration::microseconds(1999)), 1);
        assert_eq!(offset_of(s, s - Duration::microseconds(500)), -1);
        assert_eq!(offset_of(s, s - Duration::milliseconds(2)), -2);
        assert_eq!(at_offset(s, 1500), s + Duration::milliseconds(1500));
    }
}
