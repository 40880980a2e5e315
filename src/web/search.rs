//! Moderators' reads of a stream's chat: search
//! (`GET /api/streams/{id}/search`, and `GET /api/search` tenant-wide for
//! admins) and the earlier versions of an edited message
//! (`GET /api/streams/{id}/messages/{mid}/versions`). Open to the stream's
//! owner, its moderators and admins. The search design is in `store::search`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    auth::Visitor,
    domain::Role,
    error::{ApiError, Code},
    protocol::{message_frame, timestamp},
    store::{
        search::{fold, SearchQuery, MIN_QUERY_CHARS},
        Store,
    },
    web::{extract::ById, moderation::moderated_stream},
};

/// Why a visitor who does not moderate the stream is refused.
const NOT_MODERATOR: &str = "Only the stream's owner, its moderators and admins can do that.";

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/streams/{id}/messages/{mid}/versions",
        web::get().to(versions),
    )
    .route("/api/streams/{id}/search", web::get().to(stream_search))
    .route("/api/search", web::get().to(tenant_search));
}

// Route tables end, and request bodies begin, alike in every web module.
#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    user: Option<String>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

impl SearchParams {
    /// The query, checked: some text of 2+ characters (after folding) and/or a user.
    fn query(&self, room_id: Option<i64>) -> Result<SearchQuery, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if limit < 1 {
            return Err(ApiError::new(Code::Invalid, "limit must be at least 1."));
        }
        let q = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_string);
        if let Some(q) = &q {
            if fold(q).chars().count() < MIN_QUERY_CHARS {
                return Err(ApiError::new(
                    Code::Invalid,
                    "q must be at least 2 characters.",
                ));
            }
            if q.chars().count() > 100 {
                return Err(ApiError::new(Code::Invalid, "q is too long."));
            }
        }
        let user = self
            .user
            .as_deref()
            .map(str::trim)
            .map(|u| u.trim_start_matches('@'))
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        if q.is_none() && user.is_none() {
            return Err(ApiError::new(Code::Invalid, "Give q, user or both."));
        }
        Ok(SearchQuery {
            room_id,
            q,
            user,
            before_id: self.before_id,
            limit: limit.min(200),
        })
    }
}

/// `{"messages":[<message> + "is_deleted","hidden","stream_id"],"next_before_id"}`.
async fn run_search(
    visitor: &Visitor,
    store: &Store,
    query: SearchQuery,
) -> Result<HttpResponse, ApiError> {
    let found = store.search_messages(&visitor.tenant.slug, &query).await?;
    let next = if found.len() as i64 == query.limit {
        found.last().map(|f| f.message.id)
    } else {
        None
    };
    let messages: Vec<Value> = found
        .iter()
        .map(|f| {
            let mut v: Value =
                serde_json::from_str(&message_frame(&f.message)).expect("frames are JSON");
            v["is_deleted"] = f.is_deleted.into();
            v["hidden"] = f.message.hidden.into();
            v["stream_id"] = f.stream_id.into();
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"messages": messages, "next_before_id": next})))
}

async fn stream_search(
    r: ById,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let (_, stream) = r.moderated_stream(NOT_MODERATOR).await?;
    let query = params.query(Some(stream.room_id))?;
    run_search(&r, &r.store, query).await
}

async fn tenant_search(
    visitor: Visitor,
    params: web::Query<SearchParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let user = visitor.require_user()?;
    if user.role != Role::Admin {
        return Err(ApiError::new(
            Code::Forbidden,
            "Only admins can search every stream.",
        ));
    }
    let query = params.query(None)?;
    run_search(&visitor, &store, query).await
}

/// `{"message_id":N,"versions":[{"message","mentions","set_at","replaced_at"}]}`,
/// oldest first; the current text is last, with `replaced_at` null.
async fn versions(
    visitor: Visitor,
    path: web::Path<(i64, i64)>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let (stream_id, message_id) = path.into_inner();
    let (_, stream) = moderated_stream(&visitor, &store, stream_id, NOT_MODERATOR).await?;
    let versions = store
        .message_versions(&visitor.tenant.slug, stream.room_id, message_id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "No such message."))?;
    let list: Vec<_> = versions
        .iter()
        .map(|v| {
            json!({
                "message": v.content,
                "mentions": v.mentions,
                "set_at": timestamp(v.set_at),
                "replaced_at": v.replaced_at.map(timestamp),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"message_id": message_id, "versions": list})))
}
