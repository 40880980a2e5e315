//! Message search for moderators (PROTOCOL.md, "Chat v2").
//!
//! Design: every message has `search_text`, its text folded by [`fold`]
//! (lower case, full-width ASCII as ASCII, katakana as hiragana, the blocked
//! terms' look-alike digits and signs as letters, zero-width and bidirectional
//! controls removed), written by the batch writer and by edits. A GIN index
//! over `chat_bigrams(search_text)` — the set of adjacent character pairs
//! without white space — finds candidates for any query of 2 or more
//! characters: every bigram of the folded query must be present. `LIKE` on
//! `search_text` then checks the substring itself. The index is fast for rare
//! and absent terms; a common term has so many candidates that reading the
//! newest rows in id order fills a page sooner, so a search reads a window of
//! the newest rows first and uses the index for what the window did not
//! find (see [`Store::search_messages`]). This finds Japanese, which
//! has no spaces, by any substring (`にち` in `こんにちは`), where a word-based
//! full-text index would not; `pg_trgm` needs 3 characters for an indexed
//! `LIKE`, and `pg_bigm` is not packaged here. Results are newest first, paged
//! by `before_id` like replay. See `benches/search` for the figures.

use tokio_postgres::types::ToSql;

use super::{
    messages::{message_from, message_sql, StoredMessage},
    tenant_sql, Slug, Store, StoreResult,
};

/// Shortest query, in characters after folding.
pub const MIN_QUERY_CHARS: usize = 2;

/// A text folded for search (the writer's `search_text`, and queries): the
/// same folding as blocked terms ([`crate::moderation::fold`]), so what a term
/// sees through, search sees through too. The SQL function `chat_fold` filled
/// `search_text` for rows stored before search existed with an approximation
/// of it (case, full-width ASCII, kana, digits, invisible characters; not
/// NFKC or Cyrillic and Greek look-alikes).
pub fn fold(text: &str) -> String {
    crate::moderation::fold::fold_text(text)
}

/// A `LIKE` pattern matching `folded` anywhere.
pub fn like_pattern(folded: &str) -> String {
    let mut s = String::with_capacity(folded.len() + 2);
    s.push('%');
    for c in folded.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// True when the folded query has a bigram the index can use.
fn has_bigram(folded: &str) -> bool {
    let chars: Vec<char> = folded.chars().collect();
    chars
        .windows(2)
        .any(|w| !w.contains(&' ') && !w.contains(&'\n'))
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// One stream's room, or every room of the tenant.
    pub room_id: Option<i64>,
    /// Text, as typed (folded here).
    pub q: Option<String>,
    /// Author's username (case-insensitive).
    pub user: Option<String>,
    /// Only messages with a smaller id.
    pub before_id: Option<i64>,
    /// Most results.
    pub limit: i64,
}

/// One result.
#[derive(Debug, Clone)]
pub struct Found {
    /// The message (latest text).
    pub message: StoredMessage,
    /// Deleted by a moderator.
    pub is_deleted: bool,
    /// Its stream.
    pub stream_id: i64,
}

/// Newest rows a text search first reads in id order, before it turns to
/// the bigram index.
const WINDOW: i64 = 5_000;
/// Most rows a second, longer read in id order may take (when the first
/// window suggests a common term, it is cheaper than the index).
const WINDOW_MAX: i64 = 60_000;

/// The rows of a search, as chosen by one of the plans.
struct Pick {
    ids: Vec<i64>,
    /// Lowest id read (the next read starts below it); `None` when every row
    /// was read.
    floor: Option<i64>,
}

impl Store {
    /// Messages matching `query`, newest first, deleted ones included.
    ///
    /// Plan: with an author, one query on the author's index. With text
    /// only, the newest [`WINDOW`] rows are read in id order and checked with
    /// `LIKE` (a common term fills the page there, where the bigram index
    /// would fetch every one of its many matches before sorting); a term seen
    /// in that window at a rate that promises the rest of the page within
    /// [`WINDOW_MAX`] rows gets a second, longer read; otherwise the bigram
    /// index finds the rest (a rare or absent term has few candidates).
    pub async fn search_messages(
        &self,
        slug: &Slug,
        query: &SearchQuery,
    ) -> StoreResult<Vec<Found>> {
        let client = self.client().await?;
        let ids: Vec<i64> = match (&query.q, &query.user) {
            (Some(q), None) => {
                let folded = fold(q);
                let mut ids = Vec::new();
                let floor = query.before_id.unwrap_or(i64::MAX);
                let first =
                    window(&client, slug, query, &folded, floor, WINDOW, query.limit).await?;
                ids.extend(first.ids);
                let mut next = first.floor;
                let found = ids.len() as i64;
                if let Some(f) = next.filter(|_| found < query.limit && found > 0) {
                    let want = (query.limit - found) * WINDOW * 3 / (2 * found);
                    if want <= WINDOW_MAX {
                        let more = window(
                            &client,
                            slug,
                            query,
                            &folded,
                            f,
                            want.max(WINDOW),
                            query.limit - found,
                        )
                        .await?;
                        ids.extend(more.ids);
                        next = more.floor;
                    }
                }
                if let Some(floor) = next.filter(|_| (ids.len() as i64) < query.limit) {
                    let rest = indexed(
                        &client,
                        slug,
                        query,
                        &folded,
                        floor,
                        query.limit - ids.len() as i64,
                    )
                    .await?;
                    ids.extend(rest);
                }
                ids
            }
            _ => direct(&client, slug, query).await?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let schema = slug.schema();
        let rows = client
            .query(
                &tenant_sql(
                    slug,
                    &message_sql("WHERE m.id = ANY($1) ORDER BY m.id DESC").replacen(
                        " FROM ",
                        ", m.room_id FROM ",
                        1,
                    ),
                ),
                &[&ids],
            )
            .await?;
        let mut rooms: Vec<i64> = rows.iter().map(|r| r.get(17)).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let streams: Vec<(i64, i64)> = client
            .query(
                &format!("SELECT id, stream_id FROM {schema}.chat_chatroom WHERE id = ANY($1)"),
                &[&rooms],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(rows
            .iter()
            .map(|r| {
                let room: i64 = r.get(17);
                Found {
                    message: message_from(r),
                    is_deleted: r.get(9),
                    stream_id: streams
                        .iter()
                        .find(|(id, _)| *id == room)
                        .map_or(0, |(_, s)| *s),
                }
            })
            .collect())
    }
}

/// The newest `size` rows below `floor` (of the room, if any), read in id
/// order: those matching, at most `limit`.
async fn window(
    client: &deadpool_postgres::Object,
    slug: &Slug,
    query: &SearchQuery,
    folded: &str,
    floor: i64,
    size: i64,
    limit: i64,
) -> StoreResult<Pick> {
    let pattern = like_pattern(folded);
    let room = query
        .room_id
        .map_or(String::new(), |_| "m.room_id = $5 AND ".into());
    let sql = format!(
        "WITH w AS MATERIALIZED (SELECT m.id, m.search_text FROM {}.chat_chatmessage m \
           WHERE {room}m.id < $1 ORDER BY m.id DESC LIMIT $2) \
         SELECT (SELECT min(id) FROM w), (SELECT count(*) FROM w), \
           ARRAY(SELECT id FROM w WHERE search_text LIKE $3 ORDER BY id DESC LIMIT $4)",
        slug.schema()
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&floor, &size, &pattern, &limit];
    if let Some(r) = &query.room_id {
        params.push(r);
    }
    let row = client.query_one(&sql, &params).await?;
    let lowest: Option<i64> = row.get(0);
    let read: i64 = row.get(1);
    Ok(Pick {
        ids: row.get(2),
        floor: lowest.filter(|_| read == size),
    })
}

/// Matches below `floor` through the bigram index, newest first.
async fn indexed(
    client: &deadpool_postgres::Object,
    slug: &Slug,
    query: &SearchQuery,
    folded: &str,
    floor: i64,
    limit: i64,
) -> StoreResult<Vec<i64>> {
    let schema = slug.schema();
    let pattern = like_pattern(folded);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&floor, &pattern, &limit];
    let mut conds = vec!["m.id < $1".to_string(), "m.search_text LIKE $2".to_string()];
    if let Some(r) = &query.room_id {
        params.push(r);
        conds.push(format!("m.room_id = ${}", params.len()));
    }
    if has_bigram(folded) {
        params.push(&folded);
        conds.push(format!(
            "{schema}.chat_bigrams(m.search_text) @> {schema}.chat_bigrams(${}::text)",
            params.len()
        ));
    }
    let rows = client
        .query(
            &format!(
                "SELECT m.id FROM {schema}.chat_chatmessage m WHERE {} ORDER BY m.id DESC LIMIT $3",
                conds.join(" AND ")
            ),
            &params,
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// With an author: one query, on the author's index (and the text checked).
async fn direct(
    client: &deadpool_postgres::Object,
    slug: &Slug,
    query: &SearchQuery,
) -> StoreResult<Vec<i64>> {
    let schema = slug.schema();
    let pattern = query.q.as_deref().map(|q| like_pattern(&fold(q)));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&query.limit];
    let mut conds: Vec<String> = Vec::new();
    if let Some(room) = &query.room_id {
        params.push(room);
        conds.push(format!("m.room_id = ${}", params.len()));
    }
    if let Some(p) = &pattern {
        params.push(p);
        conds.push(format!("m.search_text LIKE ${}", params.len()));
    }
    if let Some(user) = &query.user {
        params.push(user);
        let n = params.len();
        conds.push(format!(
            "m.user_id = (SELECT id FROM {schema}.accounts_user WHERE lower(username) = lower(${n}) \
             ORDER BY username = ${n} DESC, id LIMIT 1)"
        ));
    }
    if let Some(before) = &query.before_id {
        params.push(before);
        conds.push(format!("m.id < ${}", params.len()));
    }
    let where_clause = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let rows = client
        .query(
            &format!(
                "SELECT m.id FROM {schema}.chat_chatmessage m{where_clause} ORDER BY m.id DESC LIMIT $1"
            ),
            &params,
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_width_kana_and_disguises() {
        assert_eq!(fold("Hello ＷＯＲＬＤ"), "hello world");
        assert_eq!(fold("ライブ"), fold("らいぶ"));
        assert_eq!(fold("ライブ"), "らいぶ");
        assert_eq!(fold("h3ll0"), "hello");
        assert_eq!(fold("sp\u{200B}am"), "spam");
        assert_eq!(fold("こんにちは"), "こんにちは");
        // The same folding as blocked terms: look-alikes and NFKC too.
        assert_eq!(fold("spаm"), fold("spam"), "Cyrillic а");
        assert_eq!(fold("ﾗｲﾌﾞ"), fold("ライブ"), "half-width katakana");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("にち"), "%にち%");
        assert_eq!(like_pattern("10%_a\\"), "%10\\%\\_a\\\\%");
    }

    #[test]
    fn bigrams_need_two_characters_without_space() {
        assert!(has_bigram("にち"));
        assert!(!has_bigram("a b"));
        assert!(!has_bigram("x"));
    }
}
