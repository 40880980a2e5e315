//! Reads for analytics: reactions per stamp per bucket (10 s from the raw
//! table, minutes and hours from the rollup), the busiest minutes, and the chat
//! around a moment.

use time::OffsetDateTime;

use super::{Slug, Store, StoreResult};

/// Bucket width of a reaction series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// 10 seconds (from the raw rows).
    TenSeconds,
    /// 1 minute (from the rollup).
    Minute,
    /// 1 hour (from the rollup).
    Hour,
}

impl Bucket {
    /// Parses `10s`, `1m` or `1h`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "10s" => Some(Self::TenSeconds),
            "1m" => Some(Self::Minute),
            "1h" => Some(Self::Hour),
            _ => None,
        }
    }

    /// As in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenSeconds => "10s",
            Self::Minute => "1m",
            Self::Hour => "1h",
        }
    }

    /// Width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::TenSeconds => 10,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Bucket start (UTC, on a whole bucket boundary).
    pub start: OffsetDateTime,
    /// Stamp id.
    pub stamp_id: i32,
    /// Stamp name.
    pub stamp_name: String,
    /// Reactions in the bucket.
    pub count: i64,
}

impl Store {
    /// Reactions of a stream per stamp per bucket whose start lies in
    /// [bucket of `from`, `to`), oldest first.
    pub async fn reaction_series(
        &self,
        slug: &Slug,
        stream_id: i64,
        bucket: Bucket,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<Point>> {
        let sql = match bucket {
            Bucket::TenSeconds => {
                "SELECT pg_catalog.date_bin('10 seconds', r.created_at, TIMESTAMPTZ 'epoch') AS b, r.stamp_id, st.name, pg_catalog.count(*)::bigint \
                 FROM {schema}.streaming_streamreaction r JOIN {schema}.chat_chatstamp st ON st.id = r.stamp_id \
                 WHERE r.stream_id = $1 AND r.created_at >= pg_catalog.date_bin('10 seconds', $2::timestamptz, TIMESTAMPTZ 'epoch') \
                   AND r.created_at < $3 \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2"
            }
            Bucket::Minute => {
                "SELECT m.minute, m.stamp_id, st.name, m.count \
                 FROM {schema}.streaming_reaction_minute m JOIN {schema}.chat_chatstamp st ON st.id = m.stamp_id \
                 WHERE m.stream_id = $1 AND m.minute >= pg_catalog.date_trunc('minute', $2::timestamptz) AND m.minute < $3 \
                 ORDER BY 1, 2"
            }
            Bucket::Hour => {
                "SELECT pg_catalog.date_trunc('hour', m.minute, 'UTC') AS b, m.stamp_id, st.name, pg_catalog.sum(m.count)::bigint \
                 FROM {schema}.streaming_reaction_minute m JOIN {schema}.chat_chatstamp st ON st.id = m.stamp_id \
                 WHERE m.stream_id = $1 AND m.minute >= pg_catalog.date_trunc('hour', $2::timestamptz, 'UTC') AND m.minute < $3 \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2"
            }
        };
        self.query_in(slug, sql, &[&stream_id, &from, &to], |r| Point {
            start: r.get(0),
            stamp_id: r.get(1),
            stamp_name: r.get(2),
            count: r.get(3),
        })
        .await
    }

    /// The `n` busiest minutes of a stream: (minute, reactions), busiest first.
    pub async fn top_minutes(
        &self,
        slug: &Slug,
        stream_id: i64,
        n: i64,
    ) -> StoreResult<Vec<(OffsetDateTime, i64)>> {
        self.query_in(
            slug,
            "SELECT minute, pg_catalog.sum(count)::bigint AS total FROM {schema}.streaming_reaction_minute \
             WHERE stream_id = $1 GROUP BY minute ORDER BY total DESC, minute LIMIT $2",
            &[&stream_id, &n],
            |r| (r.get(0), r.get(1)),
        )
        .await
    }
}
