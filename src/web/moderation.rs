//! Moderation over HTTP: actions (`POST /api/streams/{id}/moderation`), the
//! moderation log, appointed moderators and blocked terms. Every `POST` needs
//! the CSRF token; rights are checked on the server for every request.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::{
    auth::{Acting, Visitor},
    domain::Role,
    error::{ApiError, Code},
    moderation::{can_moderate, execute, user_named, Command},
    rooms::Hub,
    store::{accounts::User, streams::Stream, Store},
    web::{extract::ById, room_key},
};

/// Registers the moderation routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/streams/{id}/moderation", web::post().to(moderate))
        .route("/api/streams/{id}/moderation/log", web::get().to(log))
        // Routes, one a line, as in every web module.
        .route("/api/streams/{id}/moderators", web::get().to(moderators))
        .route(
            "/api/streams/{id}/moderators",
            web::post().to(set_moderator),
        )
        .route("/api/streams/{id}/blocked_terms", web::get().to(terms))
        .route("/api/streams/{id}/blocked_terms", web::post().to(set_term));
}

/// Why a visitor without the right is refused.
const REFUSAL: &str = "You may not do that on this stream.";

/// The visitor's user and the stream `id`: 401 without a user, 404 without
/// the stream.
pub(super) async fn user_and_stream<'a>(
    visitor: &'a Visitor,
    store: &Store,
    id: i64,
) -> Result<(&'a User, Stream), ApiError> {
    let user = visitor.require_user()?;
    let stream = store
        .stream(&visitor.tenant.slug, id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "No such stream."))?;
    Ok((user, stream))
}

/// The visitor's user and the stream `id`, when the user moderates it (its
/// owner, its moderators, admins); 403 with `refusal` otherwise.
pub(super) async fn moderated_stream<'a>(
    visitor: &'a Visitor,
    store: &Store,
    id: i64,
    refusal: &'static str,
) -> Result<(&'a User, Stream), ApiError> {
    let (user, stream) = user_and_stream(visitor, store, id).await?;
    if !can_moderate(store, &visitor.tenant.slug, user, &stream).await? {
        return Err(ApiError::new(Code::Forbidden, refusal));
    }
    Ok((user, stream))
}

async fn moderate(
    r: ById<Acting>,
    body: web::Json<Box<serde_json::value::RawValue>>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let (user, stream) = r.moderated_stream(REFUSAL).await?;
    let command =
        Command::parse_json(body.get()).map_err(|(code, message)| ApiError::new(code, message))?;
    let event = execute(&r.store, &r.tenant.slug, &stream, user, command).await?;
    hub.apply(&room_key(&r, stream.id), event);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

async fn log(r: ById) -> Result<HttpResponse, ApiError> {
    let (_, stream) = r.moderated_stream(REFUSAL).await?;
    let entries = r
        .store
        .moderation_log(&r.tenant.slug, stream.id, 500)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "entries": entries })))
}

async fn moderators(r: ById) -> Result<HttpResponse, ApiError> {
    let (_, stream) = r.moderated_stream(REFUSAL).await?;
    let list = r.store.stream_moderators(&r.tenant.slug, stream.id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "moderators": list })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum AddRemove {
    #[default]
    Add,
    Remove,
}

#[derive(Deserialize)]
struct ModeratorBody {
    username: String,
    action: AddRemove,
}

// Same shape as api::set_status and set_term: an acting visitor on `{id}`, a JSON body and the hub.
async fn set_moderator(
    r: ById<Acting>,
    body: web::Json<ModeratorBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let (_, stream) = r.owned_stream(REFUSAL).await?;
    let (store, slug) = (&r.store, &r.tenant.slug);
    let target = user_named(store, slug, &body.username).await?;
    store
        .set_stream_moderator(
            slug,
            stream.id,
            target.id,
            matches!(body.action, AddRemove::Add),
        )
        .await?;
    hub.rights_changed(&room_key(&r, stream.id));
    let list = store.stream_moderators(slug, stream.id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "moderators": list })))
}

async fn terms(r: ById) -> Result<HttpResponse, ApiError> {
    let (_, stream) = r.moderated_stream(REFUSAL).await?;
    let list = r.store.blocked_terms(&r.tenant.slug, stream.id).await?;
    Ok(HttpResponse::Ok().json(terms_json(&list)))
}

/// `{"terms":[{"term","mode","scope"}]}`.
fn terms_json(list: &[crate::store::moderation::TermRow]) -> serde_json::Value {
    let terms: Vec<serde_json::Value> = list
        .iter()
        .map(|t| {
            serde_json::json!({
                "term": t.term,
                "mode": if t.hold { "hold" } else { "block" },
                "scope": if t.tenant_wide { "tenant" } else { "stream" },
            })
        })
        .collect();
    serde_json::json!({ "terms": terms })
}

#[derive(Deserialize)]
struct TermBody {
    term: String,
    /// `add` (default: PROTOCOL.md's body is `{"term","mode"}`) or `remove`.
    #[serde(default)]
    action: AddRemove,
    scope: Option<String>,
    /// `block` (default) or `hold`.
    mode: Option<String>,
}

async fn set_term(
    r: ById<Acting>,
    body: web::Json<TermBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let (user, stream) = r.moderated_stream(REFUSAL).await?;
    let tenant_wide = match body.scope.as_deref() {
        None | Some("stream") => false,
        Some("tenant") if user.role == Role::Admin => true,
        Some("tenant") => {
            return Err(ApiError::new(
                Code::Forbidden,
                "Only an admin can block terms tenant-wide.",
            ))
        }
        Some(_) => {
            return Err(ApiError::new(
                Code::Invalid,
                "scope must be \"stream\" or \"tenant\".",
            ))
        }
    };
    let hold = match body.mode.as_deref() {
        None | Some("block") => false,
        Some("hold") => true,
        Some(_) => {
            return Err(ApiError::new(
                Code::Invalid,
                "mode must be \"block\" or \"hold\".",
            ))
        }
    };
    let term = body.term.trim();
    if term.is_empty()
        || term.chars().count() > 100
        || crate::moderation::blocked::BlockedTerm::new(term).is_none()
    {
        return Err(ApiError::new(
            Code::Invalid,
            "A term is 1 to 100 characters with at least one letter or digit.",
        ));
    }
    let (store, slug) = (&r.store, &r.tenant.slug);
    store
        .set_blocked_term(
            slug,
            (!tenant_wide).then_some(stream.id),
            term,
            matches!(body.action, AddRemove::Add),
            hold,
        )
        .await?;
    let list = store.blocked_terms(slug, stream.id).await?;
    let body = terms_json(&list);
    hub.terms_changed(&room_key(&r, stream.id), tenant_wide, list)
        .await;
    Ok(HttpResponse::Ok().json(body))
}
