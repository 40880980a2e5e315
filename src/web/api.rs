//! The JSON API of PROTOCOL.md: `/api/login`, `/api/session`, `/api/logout`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{hash_password, verify_password, AuthConfig, LoginLimiter, Visitor},
    error::{ApiError, Code},
    store::{accounts::User, Store},
    tenants::CurrentTenant,
    web::client_ip,
};

/// Registers the API routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/login", web::post().to(login))
        .route("/api/session", web::get().to(session))
        .route("/api/logout", web::post().to(logout));
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct UserView<'a> {
    username: &'a str,
    role: &'a str,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        UserView {
            username: &u.username,
            role: u.role.as_str(),
        }
    }
}

/// Checks a username and password on a tenant; `None` for bad credentials.
/// Unknown users cost the same time as wrong passwords.
pub async fn authenticate(
    store: &Store,
    tenant: &CurrentTenant,
    username: &str,
    password: &str,
) -> Result<Option<User>, ApiError> {
    let creds = if username.len() <= 64 {
        store.credentials(&tenant.slug, username).await?
    } else {
        None
    };
    match creds {
        Some(c) if c.user.is_active => {
            let ok = verify_password(c.password_hash, password.to_string()).await;
            Ok(ok.then_some(c.user))
        }
        _ => {
            // Spend the same work as a real check.
            let _ = hash_password(password.to_string()).await;
            Ok(None)
        }
    }
}

/// Logs in with the login limiter applied; returns the user on success.
pub async fn login_checked(
    req: &HttpRequest,
    visitor: &Visitor,
    store: &Store,
    limiter: &LoginLimiter,
    username: &str,
    password: &str,
) -> Result<User, ApiError> {
    if let Some(ms) = limiter.check(&client_ip(req), visitor.tenant.slug.as_str(), username) {
        return Err(ApiError::rate_limited(ms));
    }
    authenticate(store, &visitor.tenant, username, password)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotAuthenticated, "Wrong username or password."))
}

async fn login(
    req: HttpRequest,
    visitor: Visitor,
    body: web::Json<LoginBody>,
    store: web::Data<Store>,
    auth: web::Data<AuthConfig>,
    limiter: web::Data<LoginLimiter>,
) -> Result<HttpResponse, ApiError> {
    let user = login_checked(
        &req,
        &visitor,
        &store,
        &limiter,
        &body.username,
        &body.password,
    )
    .await?;
    // The old session (anonymous or another user's) ends; a new key is issued.
    if let Some(old) = &visitor.session {
        store
            .delete_session(&visitor.tenant.slug, &old.key_hash)
            .await?;
    }
    let (session, cookie) = auth
        .start_session(&store, &visitor.tenant, Some(user))
        .await?;
    let user = session.user.as_ref().expect("logged in");
    Ok(HttpResponse::Ok().cookie(cookie).json(serde_json::json!({
        "username": user.username,
        "role": user.role.as_str(),
        "csrf_token": session.csrf_token,
    })))
}

async fn session(
    visitor: Visitor,
    store: web::Data<Store>,
    auth: web::Data<AuthConfig>,
) -> Result<HttpResponse, ApiError> {
    if let Some(s) = &visitor.session {
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "user": s.user.as_ref().map(UserView::from),
            "csrf_token": s.csrf_token,
        })));
    }
    // Anonymous visitors get a short session that carries a CSRF token.
    let (s, cookie) = auth.start_session(&store, &visitor.tenant, None).await?;
    Ok(HttpResponse::Ok().cookie(cookie).json(serde_json::json!({
        "user": null,
        "csrf_token": s.csrf_token,
    })))
}

async fn logout(
    req: HttpRequest,
    visitor: Visitor,
    store: web::Data<Store>,
    auth: web::Data<AuthConfig>,
) -> Result<HttpResponse, ApiError> {
    visitor.require_user()?;
    visitor.check_csrf_header(&req)?;
    let session = visitor.session.as_ref().expect("checked");
    store
        .delete_session(&visitor.tenant.slug, &session.key_hash)
        .await?;
    Ok(HttpResponse::Ok()
        .cookie(auth.removal_cookie())
        .json(serde_json::json!({ "ok": true })))
}
