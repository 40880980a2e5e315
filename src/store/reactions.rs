//! `streaming_streamreaction` and its per-minute rollup
//! `streaming_reaction_minute`: one batched write inserts the raw rows and
//! upserts the rollup in the same transaction, so the two always agree.

use time::OffsetDateTime;

use super::{Slug, Store, StoreResult};

/// One accepted reaction.
#[derive(Debug, Clone)]
pub struct NewReaction {
    /// Stream id.
    pub stream_id: i64,
    /// Who reacted.
    pub user_id: i64,
    /// Which stamp.
    pub stamp_id: i32,
    /// When it was accepted.
    pub at: OffsetDateTime,
}

impl Store {
    /// Writes a batch of one tenant's reactions and their rollup, in one transaction.
    /// (Multi-array `unnest(a, b, ...)` in FROM is SQL syntax, not a function
    /// looked up on the search path, so it is not qualified.)
    pub async fn insert_reactions(&self, slug: &Slug, batch: &[NewReaction]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let streams: Vec<i64> = batch.iter().map(|r| r.stream_id).collect();
        let users: Vec<i64> = batch.iter().map(|r| r.user_id).collect();
        let stamps: Vec<i32> = batch.iter().map(|r| r.stamp_id).collect();
        let ats: Vec<OffsetDateTime> = batch.iter().map(|r| r.at).collect();
        let s = slug.schema();
        let raw = tx
            .prepare_cached(&format!(
                "INSERT INTO {s}.streaming_streamreaction (stream_id, user_id, stamp_id, created_at) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::timestamptz[])"
            ))
            .await?;
        tx.execute(&raw, &[&streams, &users, &stamps, &ats]).await?;
        let rollup = tx
            .prepare_cached(&format!(
                "INSERT INTO {s}.streaming_reaction_minute AS m (stream_id, stamp_id, minute, count) \
                 SELECT stream_id, stamp_id, pg_catalog.date_trunc('minute', at), pg_catalog.count(*) \
                 FROM unnest($1::bigint[], $2::int[], $3::timestamptz[]) AS r(stream_id, stamp_id, at) \
                 GROUP BY 1, 2, 3 \
                 ON CONFLICT (stream_id, minute, stamp_id) DO UPDATE SET count = m.count + EXCLUDED.count"
            ))
            .await?;
        tx.execute(&rollup, &[&streams, &stamps, &ats]).await?;
        tx.commit().await?;
        Ok(())
    }
}
