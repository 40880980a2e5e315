//! `GET /api/streams/{id}/timeline?from_ms=&to_ms=`: a stream's visible chat
//! and its reactions (1 s buckets) for a range of offsets from its start, so a
//! page can replay them in step with the video. Readable by anyone who may
//! watch the stream.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::{
    error::{ApiError, Code},
    protocol::{self, timestamp},
    store::timeline::{at_offset, offset_of},
    web::{extract::ById, json_text},
};

/// Most messages in one answer; past it the answer says where to go on.
pub const MAX_MESSAGES: usize = 1000;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/streams/{id}/timeline", web::get().to(timeline));
}

#[derive(Deserialize)]
struct TimelineQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

/// Largest offset accepted (about 10 years): keeps instant arithmetic in range.
const MAX_OFFSET_MS: i64 = 10 * 366 * 24 * 3600 * 1000;

async fn timeline(r: ById, query: web::Query<TimelineQuery>) -> Result<HttpResponse, ApiError> {
    let stream = r.readable_stream().await?;
    // A stream that never went live is timed from its creation.
    let start = stream.started_at.unwrap_or(stream.created_at);
    let end = stream.ended_at.unwrap_or_else(OffsetDateTime::now_utc);
    let from_ms = query.from_ms.unwrap_or(0);
    // By default up to and including the last millisecond of the stream.
    let to_ms = query
        .to_ms
        .unwrap_or_else(|| offset_of(start, end).max(0) + 1);
    if from_ms.abs() > MAX_OFFSET_MS || to_ms.abs() > MAX_OFFSET_MS {
        return Err(ApiError::new(
            Code::Invalid,
            "from_ms or to_ms is out of range.",
        ));
    }
    if to_ms < from_ms {
        return Err(ApiError::new(
            Code::Invalid,
            "to_ms must not be less than from_ms.",
        ));
    }
    let (store, slug) = (&r.store, &r.tenant.slug);
    let (from, to) = (at_offset(start, from_ms), at_offset(start, to_ms));
    let mut messages = store
        .messages_between(slug, stream.room_id, from, to, MAX_MESSAGES as i64 + 1)
        .await?;
    // More than fit: stop before the last full millisecond, so that the next
    // page (from `next_from_ms`) repeats nothing and misses nothing.
    let mut next_from_ms = None;
    if messages.len() > MAX_MESSAGES {
        messages.truncate(MAX_MESSAGES);
        let last = offset_of(start, messages[MAX_MESSAGES - 1].created_at);
        let kept: Vec<_> = messages
            .iter()
            .filter(|m| offset_of(start, m.created_at) < last)
            .cloned()
            .collect();
        if kept.is_empty() {
            // A whole page within one millisecond: go on after it.
            next_from_ms = Some(last + 1);
        } else {
            messages = kept;
            next_from_ms = Some(last);
        }
    }
    let reactions = store
        .reaction_buckets(slug, stream.id, start, from, to)
        .await?;

    let mut body = String::with_capacity(256 + messages.len() * 160);
    body.push_str("{\"stream_id\":");
    body.push_str(&stream.id.to_string());
    body.push_str(",\"started_at\":");
    body.push_str(&serde_json::to_string(&timestamp(start)).expect("string"));
    body.push_str(",\"ended_at\":");
    body.push_str(&serde_json::to_string(&stream.ended_at.map(timestamp)).expect("string"));
    body.push_str(&format!(
        ",\"duration_ms\":{},\"from_ms\":{from_ms},\"to_ms\":{to_ms},\"messages\":[",
        stream
            .ended_at
            .map_or("null".to_string(), |e| offset_of(start, e)
                .max(0)
                .to_string())
    ));
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        // The socket's `message` frame, plus its offset.
        let frame = protocol::message_frame(m);
        let frame: &str = &frame;
        body.push_str(&frame[..frame.len() - 1]);
        body.push_str(&format!(
            ",\"offset_ms\":{}}}",
            offset_of(start, m.created_at)
        ));
    }
    body.push_str("],\"reactions\":");
    body.push_str(&serde_json::to_string(&reactions).expect("buckets serialise"));
    body.push_str(",\"next_from_ms\":");
    body.push_str(&next_from_ms.map_or("null".to_string(), |n| n.to_string()));
    body.push('}');
    Ok(json_text(body))
}
