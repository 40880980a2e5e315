//! The JSON API of PROTOCOL.md: accounts (`/api/login`, `/api/session`,
//! `/api/logout`), message replay and stream status.

use std::future::{ready, Ready};

use actix_web::{cookie::Cookie, dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Acting, AuthConfig, HashGate, LoginLimiter, Visitor},
    domain::Role,
    error::{ApiError, Code},
    moderation::can_moderate,
    protocol,
    rooms::Hub,
    sessions::outlet::codes,
    store::{
        accounts::{SessionRecord, User},
        messages::HiddenShown,
        streams::{Stream, StreamStatus},
        Store,
    },
    tenants::CurrentTenant,
    web::{client_key, extract::ById, json_text, room_key},
};

/// Registers the API routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/login", web::post().to(login))
        .route("/api/session", web::get().to(session))
        .route("/api/logout", web::post().to(logout))
        .route("/api/password", web::post().to(change_password))
        .route("/api/streams/{id}/messages", web::get().to(replay))
        .route("/api/streams/{id}/status", web::post().to(set_status));
}

// Route tables end, and request bodies begin, alike in every web module.
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
/// Unknown users cost the same time as wrong passwords. Every hash goes
/// through `hashes`: 503 `unavailable` when it is full.
pub async fn authenticate(
    store: &Store,
    hashes: &HashGate,
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
        // Bots authenticate with API tokens only; they fail here exactly like
        // a wrong password (same answer, same work).
        Some(c) if c.user.is_active && c.user.role != Role::Bot => {
            let ok = hashes.verify(c.password_hash, password.to_string()).await?;
            Ok(ok.then_some(c.user))
        }
        _ => {
            // Spend the same work as a real check.
            let _ = hashes.hash(password.to_string()).await?;
            Ok(None)
        }
    }
}

/// What a password check needs: the request (its client's address), the
/// store, the auth settings and the failed-login limiter, taken from the app
/// data as `web::Data` extractors take them.
pub struct Logins {
    /// The request.
    pub req: HttpRequest,
    /// The store.
    pub store: web::Data<Store>,
    /// Cookie settings and the password-hash gate.
    pub auth: web::Data<AuthConfig>,
    /// The failed-login limiter.
    pub limiter: web::Data<LoginLimiter>,
}

impl FromRequest for Logins {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Each part as its own extractor would take it.
        let parts = || -> Result<Self, Self::Error> {
            Ok(Logins {
                req: req.clone(),
                store: web::Data::extract(req).into_inner()?,
                auth: web::Data::extract(req).into_inner()?,
                limiter: web::Data::extract(req).into_inner()?,
            })
        };
        ready(parts())
    }
}

impl Logins {
    /// Logs `username` in on the visitor's tenant with the failed-login
    /// limiter applied; returns the user on success.
    pub async fn check(
        &self,
        visitor: &Visitor,
        username: &str,
        password: &str,
    ) -> Result<User, ApiError> {
        let limiter = &self.limiter;
        let attempt = limiter
            .begin(
                &client_key(&self.req).to_string(),
                visitor.tenant.slug.as_str(),
                username,
            )
            .map_err(ApiError::rate_limited)?;
        // Counted as a failure until the password proves right (or was never
        // checked because the server was busy).
        let hashes = &self.auth.hashes;
        match authenticate(&self.store, hashes, &visitor.tenant, username, password).await {
            Ok(Some(user)) => {
                limiter.succeeded(attempt);
                Ok(user)
            }
            Ok(None) => Err(ApiError::new(
                Code::NotAuthenticated,
                "Wrong username or password.",
            )),
            Err(e) => {
                limiter.succeeded(attempt);
                Err(e)
            }
        }
    }
}

/// Hashes a new password through the gate (503 when it is full).
pub async fn hash_new_password(auth: &AuthConfig, password: String) -> Result<String, ApiError> {
    auth.hashes
        .hash(password)
        .await?
        .map_err(ApiError::Unexpected)
}

/// Ends the visitor's current session (anonymous or another user's) and
/// starts one for `user`: a login always issues a new key.
pub async fn renew_session(
    visitor: &Visitor,
    store: &Store,
    auth: &AuthConfig,
    user: User,
) -> Result<(SessionRecord, Cookie<'static>), ApiError> {
    if let Some(old) = &visitor.session {
        store
            .delete_session(&visitor.tenant.slug, &old.key_hash)
            .await?;
    }
    auth.start_session(store, &visitor.tenant, Some(user)).await
}

/// Logs out: deletes `session`, and its sockets on this node close with 4001.
pub async fn end_session(
    visitor: &Visitor,
    store: &Store,
    hub: &Hub,
    session: &SessionRecord,
) -> Result<(), ApiError> {
    store
        .delete_session(&visitor.tenant.slug, &session.key_hash)
        .await?;
    hub.close_session(
        &visitor.tenant.slug,
        &session.key_hash,
        codes::SESSION_ENDED,
    );
    Ok(())
}

async fn login(
    visitor: Visitor,
    body: web::Json<LoginBody>,
    logins: Logins,
) -> Result<HttpResponse, ApiError> {
    let user = logins
        .check(&visitor, &body.username, &body.password)
        .await?;
    let (session, cookie) = renew_session(&visitor, &logins.store, &logins.auth, user).await?;
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
    visitor: Acting,
    store: web::Data<Store>,
    auth: web::Data<AuthConfig>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    // Tokens are refused on this route (see auth::token): a session is there.
    let session = visitor.session.as_ref().expect("a cookie session");
    end_session(&visitor, &store, &hub, session).await?;
    Ok(HttpResponse::Ok()
        .cookie(auth.removal_cookie())
        .json(serde_json::json!({ "ok": true })))
}

/// The stream, if this visitor may watch it (anonymous only when the tenant allows).
pub async fn watchable_stream(
    visitor: &Visitor,
    store: &Store,
    id: i64,
) -> Result<Stream, ApiError> {
    if visitor.user().is_none() && !visitor.tenant.anonymous_viewers {
        return Err(ApiError::new(
            Code::NotAuthenticated,
            "Log in to watch this stream.",
        ));
    }
    store
        .stream(&visitor.tenant.slug, id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "No such stream."))
}

/// The stream, if this visitor may read its chat: [`watchable_stream`], and
/// a user banned from it is refused (403 `banned`) as the socket's handshake
/// refuses them.
pub async fn readable_stream(
    visitor: &Visitor,
    store: &Store,
    id: i64,
) -> Result<Stream, ApiError> {
    let stream = watchable_stream(visitor, store, id).await?;
    if let Some(u) = visitor.user() {
        if crate::web::ws::banned_from(store, &visitor.tenant.slug, stream.id, u.id).await? {
            return Err(ApiError::new(
                Code::Banned,
                "You are banned from this stream.",
            ));
        }
    }
    Ok(stream)
}

/// Which hidden users' messages this visitor reads on `stream`: all for its
/// moderators (as search shows them, `read` tokens of such users included),
/// their own for anyone else logged in, none for anonymous visitors.
pub async fn hidden_shown(
    visitor: &Visitor,
    store: &Store,
    stream: &Stream,
) -> Result<HiddenShown, ApiError> {
    let moderates = match visitor.user() {
        Some(u) => can_moderate(store, &visitor.tenant.slug, u, stream).await?,
        None => false,
    };
    Ok(HiddenShown::for_reader(
        visitor.user().map(|u| u.id),
        moderates,
    ))
}

#[derive(Deserialize)]
struct ReplayQuery {
    before_id: Option<i64>,
    limit: Option<i64>,
}

async fn replay(r: ById, query: web::Query<ReplayQuery>) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if limit < 1 {
        return Err(ApiError::new(Code::Invalid, "limit must be at least 1."));
    }
    let limit = limit.min(200);
    let stream = r.readable_stream().await?;
    let messages = r
        .store
        .messages_before(
            &r.tenant.slug,
            stream.room_id,
            query.before_id,
            limit,
            hidden_shown(&r.visitor, &r.store, &stream).await?,
        )
        .await?;
    let next = if messages.len() as i64 == limit {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    // Each message is serialised exactly as on the socket.
    let frames: Vec<bytestring::ByteString> =
        messages.iter().map(protocol::message_frame).collect();
    let mut body = String::from("{\"messages\":[");
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(f);
    }
    body.push_str("],\"next_before_id\":");
    body.push_str(&next.map_or("null".to_string(), |n| n.to_string()));
    body.push('}');
    Ok(json_text(body))
}

#[derive(Deserialize)]
struct StatusBody {
    status: StreamStatus,
}

async fn set_status(
    r: ById<Acting>,
    body: web::Json<StatusBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let (_, stream) = r
        .owned_stream("Only the stream's owner or an admin can do that.")
        .await?;
    let allowed = match (stream.status, body.status) {
        (a, b) if a == b => true,
        (StreamStatus::Scheduled, _) => true,
        (StreamStatus::Live, StreamStatus::Ended) => true,
        _ => false,
    };
    if !allowed {
        return Err(ApiError::new(
            Code::Invalid,
            format!(
                "A stream that is {} cannot become {}.",
                stream.status.as_str(),
                body.status.as_str()
            ),
        ));
    }
    r.store
        .set_stream_status(&r.tenant.slug, stream.id, body.status)
        .await?;
    hub.status_changed(&room_key(&r, stream.id), &stream, body.status);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": body.status.as_str() })))
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the password: every session of the user ends (their sockets close
/// with 4001 on every node) and this client gets a new session.
async fn change_password(
    visitor: Acting,
    body: web::Json<PasswordBody>,
    logins: Logins,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let user = visitor.user().clone();
    let (store, auth) = (&logins.store, &logins.auth);
    logins
        .check(&visitor, &user.username, &body.current_password)
        .await
        .map_err(|e| match e.code() {
            Code::NotAuthenticated => {
                ApiError::new(Code::Forbidden, "The current password is wrong.")
            }
            _ => e,
        })?;
    let n = body.new_password.chars().count();
    if !(8..=256).contains(&n) {
        return Err(ApiError::new(
            Code::Invalid,
            "The new password must be 8 to 256 characters.",
        ));
    }
    let hash = hash_new_password(auth, body.new_password.clone()).await?;
    store
        .set_password(&visitor.tenant.slug, user.id, &hash)
        .await?;
    hub.close_user_sessions(&visitor.tenant.slug, user.id, codes::SESSION_ENDED);
    let (session, cookie) = auth
        .start_session(store, &visitor.tenant, Some(user))
        .await?;
    Ok(HttpResponse::Ok()
        .cookie(cookie)
        .json(serde_json::json!({ "ok": true, "csrf_token": session.csrf_token })))
}
