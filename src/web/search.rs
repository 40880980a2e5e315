//! Moderators' reads of a stream's chat: the earlier versions of an edited
//! message (`GET /api/streams/{id}/messages/{mid}/versions`). Open to the
//! stream's owner, its moderators and admins.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{
    auth::Visitor,
    error::{ApiError, Code},
    moderation::can_moderate,
    protocol::timestamp,
    store::{streams::Stream, Store},
};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/streams/{id}/messages/{mid}/versions",
        web::get().to(versions),
    );
}

/// The stream, if the visitor moderates it (owner, its moderators, admins).
async fn moderated_stream(visitor: &Visitor, store: &Store, id: i64) -> Result<Stream, ApiError> {
    let user = visitor.require_user()?;
    let stream = store
        .stream(&visitor.tenant.slug, id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "No such stream."))?;
    if !can_moderate(store, &visitor.tenant.slug, user, &stream).await? {
        return Err(ApiError::new(
            Code::Forbidden,
            "Only the stream's owner, its moderators and admins can do that.",
        ));
    }
    Ok(stream)
}

/// `{"message_id":N,"versions":[{"message","mentions","set_at","replaced_at"}]}`,
/// oldest first; the current text is last, with `replaced_at` null.
async fn versions(
    visitor: Visitor,
    path: web::Path<(i64, i64)>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let (stream_id, message_id) = path.into_inner();
    let stream = moderated_stream(&visitor, &store, stream_id).await?;
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
