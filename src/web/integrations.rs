//! Integrations over HTTP, for a tenant's admins: webhook endpoints (list,
//! add, remove, test, deliveries) and API tokens (list, create, revoke).
//! Only a logged-in admin's session may use them (CSRF on every change); API
//! tokens are refused here, whatever their scopes, so a token can never mint
//! tokens or redirect the tenant's events.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    auth::{
        token::{new_api_token, parse_scopes},
        Acting, Visitor,
    },
    config::Settings,
    domain::Role,
    error::{ApiError, Code},
    protocol::timestamp,
    store::{webhooks::Endpoint, Store},
    web::extract::ById,
    webhooks,
};

/// Attempts `GET /api/webhooks/{id}/deliveries` lists.
const DELIVERIES_SHOWN: i64 = 100;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/webhooks", web::get().to(list_webhooks))
        .route("/api/webhooks", web::post().to(add_webhook))
        .route("/api/webhooks/{id}", web::delete().to(remove_webhook))
        .route("/api/webhooks/{id}/test", web::post().to(test_webhook))
        .route(
            "/api/webhooks/{id}/deliveries",
            web::get().to(webhook_deliveries),
        )
        .route("/api/tokens", web::get().to(list_tokens))
        .route("/api/tokens", web::post().to(create_token))
        .route("/api/tokens/{id}", web::delete().to(revoke_token));
}

/// The visitor, when a logged-in admin (401 / 403 otherwise). Handlers that
/// change something take an [`Acting`] visitor, whose extraction checked CSRF.
fn admin(visitor: &Visitor) -> Result<(), ApiError> {
    let user = visitor.require_user()?;
    if user.role != Role::Admin {
        return Err(ApiError::new(
            Code::Forbidden,
            "Only an admin can manage integrations.",
        ));
    }
    Ok(())
}

/// The JSON body, read only once the visitor may make the request.
fn json_body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::new(Code::Invalid, e.to_string()))
}

fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "id": e.id,
        "url": e.url,
        "events": e.events,
        "state": e.state,
        "created_at": timestamp(e.created_at),
        "last_success_at": e.last_success_at.map(timestamp),
        "last_failure_at": e.last_failure_at.map(timestamp),
        "pending": e.pending,
    })
}

async fn list_webhooks(
    visitor: Visitor,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    admin(&visitor)?;
    let list = store.list_webhooks(&visitor.tenant.slug).await?;
    Ok(HttpResponse::Ok().json(json!({
        "webhooks": list.iter().map(endpoint_json).collect::<Vec<_>>()
    })))
}

/// `events` as a list of names or one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Names {
    List(Vec<String>),
    Text(String),
}

impl Names {
    fn joined(&self) -> String {
        match self {
            Names::List(v) => v.join(","),
            Names::Text(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
struct NewWebhook {
    url: String,
    events: Option<Names>,
}

async fn add_webhook(
    visitor: Acting,
    body: web::Bytes,
    store: web::Data<Store>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    admin(&visitor)?;
    let body: NewWebhook = json_body(&body)?;
    let url = webhooks::validate_url(&body.url, settings.webhooks.allow_http)
        .map_err(|e| ApiError::new(Code::Invalid, e))?;
    let events = match &body.events {
        None => None,
        Some(names) => {
            let joined = names.joined();
            if joined.trim().is_empty() {
                return Err(ApiError::new(
                    Code::Invalid,
                    "events: name at least one event, or leave it out for all",
                ));
            }
            webhooks::parse_events(Some(&joined)).map_err(|e| ApiError::new(Code::Invalid, e))?
        }
    };
    let secret = webhooks::new_secret();
    let id = store
        .add_webhook(&visitor.tenant.slug, &url, &secret, events.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(json!({"id": id, "secret": secret})))
}

/// `{"ok":true}` when the thing to remove was `found`, else the error `missing` makes.
fn done_if(found: bool, missing: impl FnOnce() -> ApiError) -> Result<HttpResponse, ApiError> {
    if !found {
        return Err(missing());
    }
    Ok(HttpResponse::Ok().json(json!({"ok": true})))
}

fn no_webhook() -> ApiError {
    ApiError::new(Code::NotFound, "No such webhook.")
}

async fn remove_webhook(r: ById<Acting>) -> Result<HttpResponse, ApiError> {
    admin(&r)?;
    let found = r.store.remove_webhook(&r.tenant.slug, r.id).await?;
    done_if(found, no_webhook)
}

async fn test_webhook(
    r: ById<Acting>,
    transport: web::Data<webhooks::Transport>,
) -> Result<HttpResponse, ApiError> {
    admin(&r)?;
    let answer = webhooks::ping(&r.store, &r.tenant.slug, r.id, &transport)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "webhook ping failed");
            ApiError::new(Code::Unavailable, "The test could not be recorded.")
        })?
        .ok_or_else(no_webhook)?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": answer.ok(),
        "status_code": answer.status,
        "error": answer.error,
        "latency_ms": answer.latency_ms,
    })))
}

async fn webhook_deliveries(r: ById) -> Result<HttpResponse, ApiError> {
    admin(&r)?;
    let (store, slug, id) = (&r.store, &r.tenant.slug, r.id);
    if store.webhook(slug, id).await?.is_none() {
        return Err(no_webhook());
    }
    let rows = store.webhook_deliveries(slug, id, DELIVERIES_SHOWN).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "event_id": d.event_id,
                "type": d.event_type,
                "attempt": d.attempt,
                "status_code": d.status_code,
                "error": d.error,
                "latency_ms": d.latency_ms,
                "created_at": timestamp(d.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"deliveries": list})))
}

async fn list_tokens(visitor: Visitor, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    admin(&visitor)?;
    let list: Vec<Value> = store
        .list_tokens(&visitor.tenant.slug)
        .await?
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "username": t.username,
                "scopes": t.scopes,
                "label": t.label,
                "created_at": timestamp(t.created_at),
                "last_used_at": t.last_used_at.map(timestamp),
                "revoked_at": t.revoked_at.map(timestamp),
                "state": if t.revoked_at.is_some() { "revoked" } else { "active" },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"tokens": list})))
}

#[derive(Deserialize)]
struct NewToken {
    username: String,
    scopes: Names,
    name: Option<String>,
}

async fn create_token(
    visitor: Acting,
    body: web::Bytes,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    admin(&visitor)?;
    let body: NewToken = json_body(&body)?;
    let slug = &visitor.tenant.slug;
    let scopes =
        parse_scopes(&body.scopes.joined()).map_err(|e| ApiError::new(Code::Invalid, e))?;
    let label = body.name.as_deref().unwrap_or("").trim();
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::new(
            Code::Invalid,
            "name: use at most 100 characters, no control characters",
        ));
    }
    let owner = store
        .user_by_name(slug, &body.username)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| ApiError::new(Code::Invalid, "username: no such user"))?;
    let secret = new_api_token();
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let id = store
        .create_token(slug, &secret, owner.id, &names, label)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "token": secret,
        "username": owner.username,
        "scopes": names,
    })))
}

async fn revoke_token(r: ById<Acting>) -> Result<HttpResponse, ApiError> {
    admin(&r)?;
    let found = r.store.revoke_token(&r.tenant.slug, r.id).await?;
    done_if(found, || {
        ApiError::new(Code::NotFound, "No such active token.")
    })
}
