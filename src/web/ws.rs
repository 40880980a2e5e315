//! `GET /ws/chat/stream_{id}/`: the WebSocket handshake. Checks run in
//! PROTOCOL.md's order, each failure answered over plain HTTP: tenant (404),
//! Origin (403), stream (404), session, API token (`Authorization: Bearer`;
//! 401 unknown) or anonymous access (401), a ban in
//! force as [`Restrictions`] sees it (403), per-IP cap (429).

use std::net::IpAddr;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::{
    auth::{Scope, Visitor},
    domain::normalize_host,
    error::ApiError,
    rooms::{
        restrictions::{Muted, Restrictions},
        Hub, RoomKey, RoomUser,
    },
    sessions::{self, SessionParams},
    store::{
        accounts::{User, TOKEN_KEY},
        Store,
    },
    tenants::CurrentTenant,
    web::client_key,
};

/// Registers the socket route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/chat/stream_{id}/", web::get().to(connect));
}

#[derive(Deserialize)]
struct WsQuery {
    last_id: Option<i64>,
}

/// True when a browser's `Origin` may open sockets on this tenant: its host
/// (port ignored, case-insensitive) is exactly one of the tenant's domains, or
/// the whole origin is in `server.allowed_origins`.
pub fn origin_allowed(origin: &str, domains: &[String], allowed: &[String]) -> bool {
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        || rest.contains(['/', '@', '?', '#'])
    {
        return false;
    }
    match normalize_host(rest) {
        Some(host) => domains.contains(&host),
        None => false,
    }
}

/// A user as the room sees them: whether the socket may use their rights on
/// the stream (not from a token without `moderate`; the room knows the
/// rights themselves) and account age.
pub async fn room_user(store: &Store, visitor: &Visitor, u: &User) -> Result<RoomUser, ApiError> {
    let slug = &visitor.tenant.slug;
    Ok(RoomUser {
        id: u.id,
        username: u.username.clone(),
        role: u.role,
        moderate_scope: visitor
            .token_scopes()
            .is_none_or(|s| s.contains(&Scope::Moderate)),
        created_at: store
            .user_created_at(slug, u.id)
            .await?
            .unwrap_or_else(time::OffsetDateTime::now_utc),
    })
}

/// True when a ban of the user from this stream or the whole tenant is in
/// force now, as [`Restrictions`] reads the database's rows: such a user may
/// not watch (the socket's 403, replay's and timeline's `banned`).
pub async fn banned_from(
    store: &Store,
    slug: &crate::domain::Slug,
    stream_id: i64,
    user_id: i64,
) -> Result<bool, ApiError> {
    let rows = store.restrictions(slug, stream_id, Some(user_id)).await?;
    let muted = Restrictions::from_rows(rows).muted(user_id, OffsetDateTime::now_utc());
    Ok(muted == Some(Muted::Banned))
}

fn plain(status: actix_web::http::StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn connect(
    req: HttpRequest,
    body: web::Payload,
    tenant: CurrentTenant,
    path: web::Path<i64>,
    query: web::Query<WsQuery>,
    hub: web::Data<Hub>,
) -> actix_web::Result<HttpResponse> {
    use actix_web::http::StatusCode;
    let settings = hub.settings();
    let store = hub.store();
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(origin, &tenant.domains, &settings.server.allowed_origins) {
            return Ok(plain(StatusCode::FORBIDDEN, "Origin not allowed"));
        }
    }
    let stream_id = path.into_inner();
    let visitor = <Visitor as actix_web::FromRequest>::extract(&req).await?;
    // A private tenant says nothing, not even whether the stream exists, to an
    // anonymous visitor.
    if visitor.user().is_none() && !tenant.anonymous_viewers {
        return Ok(plain(
            StatusCode::UNAUTHORIZED,
            "Log in to watch this stream",
        ));
    }
    let Some(stream) = store
        .stream(&tenant.slug, stream_id)
        .await
        .map_err(ApiError::from)?
    else {
        return Ok(plain(StatusCode::NOT_FOUND, "Not found"));
    };
    let user = match visitor.user() {
        Some(u) => Some(room_user(store, &visitor, u).await?),
        None => None,
    };
    if user.is_none() && !tenant.anonymous_viewers {
        return Ok(plain(
            StatusCode::UNAUTHORIZED,
            "Log in to watch this stream",
        ));
    }
    if let Some(u) = &user {
        if banned_from(store, &tenant.slug, stream_id, u.id).await? {
            return Ok(plain(
                StatusCode::FORBIDDEN,
                "You are banned from this stream",
            ));
        }
    }
    if hub.is_shutting_down() {
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "Server restarting"));
    }
    // Counted by address key: an IPv6 client by its /64.
    let ip: IpAddr = client_key(&req);
    let Some(ip_slot) = hub.acquire_ip(ip, settings.limits.max_connections_per_ip) else {
        hub.metrics().rate_limited.inc();
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, "10"))
            .content_type("text/plain; charset=utf-8")
            .body("Too many connections from this address"));
    };
    let user_slot = match &user {
        Some(u) => {
            match hub.acquire_user(&tenant.slug, u.id, settings.limits.max_connections_per_user) {
                Some(slot) => Some(slot),
                None => {
                    hub.metrics().rate_limited.inc();
                    return Ok(HttpResponse::TooManyRequests()
                        .insert_header((header::RETRY_AFTER, "10"))
                        .content_type("text/plain; charset=utf-8")
                        .body("Too many connections for this user"));
                }
            }
        }
        None => None,
    };
    // actix-ws checks the handshake and decodes what the client sends; what we
    // send is the outlet's own body (one queue, many frames per write).
    let (_, _, msg_stream) = actix_ws::handle(&req, body)?;
    let mut response = actix_http::ws::handshake(req.head())?;
    let outlet = sessions::start(
        SessionParams {
            hub: hub.get_ref().clone(),
            key: RoomKey {
                slug: tenant.slug.clone(),
                stream_id,
            },
            stream: Some(stream),
            user,
            // A token's sockets are rechecked like a session's: revoked → 4001.
            session_key: match &visitor.token {
                Some((t, _)) => Some(format!("{TOKEN_KEY}{}", t.id)),
                None => visitor.session.as_ref().map(|s| s.key_hash.clone()),
            },
            last_id: query.last_id,
            ip_slot,
            user_slot,
            scopes: visitor.token_scopes().map(<[Scope]>::to_vec),
        },
        msg_stream,
    );
    // The connection watches the socket's close (see `web::upgrade`).
    let closing = outlet.closing();
    let mut response = response.message_body(actix_web::body::MessageBody::boxed(
        actix_web::body::BodyStream::new(outlet),
    ))?;
    response.extensions_mut().insert(closing);
    Ok(response.into())
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins() {
        let d = vec!["acme.example.com".to_string(), "localhost".to_string()];
        let allowed = vec!["https://app.example.org".to_string()];
        assert!(origin_allowed("https://acme.example.com", &d, &allowed));
        assert!(origin_allowed("http://ACME.example.com:8443", &d, &allowed));
        assert!(origin_allowed("http://localhost:8000", &d, &allowed));
        assert!(origin_allowed("https://app.example.org", &d, &allowed));
        assert!(!origin_allowed(
            "https://acme.example.com.evil.com",
            &d,
            &allowed
        ));
        assert!(!origin_allowed("http://evil.com", &d, &allowed));
        assert!(!origin_allowed("null", &d, &allowed));
        assert!(!origin_allowed(
            "https://acme.example.com@evil.com",
            &d,
            &allowed
        ));
        assert!(!origin_allowed("ftp://acme.example.com", &d, &allowed));
        assert!(!origin_allowed(
            "https://app.example.org.evil",
            &d,
            &allowed
        ));
    }
}
