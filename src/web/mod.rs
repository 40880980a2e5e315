//! HTTP routes: pages (with their i18n, accounts and studio), the JSON API,
//! operations endpoints and static files.
//! Handlers are plain functions with typed extractors; each submodule registers
//! its routes through `configure`.

pub mod accounts;
pub mod analytics;
pub mod api;
pub mod connections;
pub mod extract;
pub mod i18n;
pub mod integrations;
pub mod markdown;
pub mod media;
pub mod moderation;
pub mod ops;
pub mod pages;
pub mod posting;
pub mod replay;
pub mod search;
pub mod statics;
pub mod studio;
pub mod timeline;
pub mod upgrade;
pub mod ws;

use std::net::IpAddr;

use actix_web::{web, HttpRequest};

use crate::{
    auth::Visitor,
    config::IpRange,
    error::{ApiError, Code},
    rooms::RoomKey,
};

/// Registers every route of the server.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(16 * 1024)
            .error_handler(|err, _| ApiError::new(Code::Invalid, err.to_string()).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::new(Code::Invalid, err.to_string()).into()),
    )
    // A path segment that does not parse (`/api/streams/abc/messages`) is a
    // path that names nothing: 404, in JSON on the API.
    .app_data(web::PathConfig::default().error_handler(|_, req| {
        if is_api(req.path()) {
            ApiError::new(Code::NotFound, "No such route.").into()
        } else {
            actix_web::error::InternalError::from_response("", plain_not_found()).into()
        }
    }))
    .app_data(
        web::FormConfig::default()
            .limit(16 * 1024)
            .error_handler(|err, _| ApiError::new(Code::Invalid, err.to_string()).into()),
    )
    .configure(ops::configure)
    .configure(api::configure)
    .configure(posting::configure)
    .configure(timeline::configure)
    .configure(media::configure)
    .configure(analytics::configure)
    .configure(moderation::configure)
    .configure(search::configure)
    .configure(integrations::configure)
    .configure(statics::configure)
    .configure(ws::configure)
    .configure(pages::configure)
    .configure(accounts::configure)
    .configure(studio::configure)
    .default_service(web::to(not_found));
}

/// Any other path: a short plain-text 404 that names nothing; under `/api/`
/// the JSON API's error (`not_found`).
async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    if is_api(req.path()) {
        actix_web::ResponseError::error_response(&ApiError::new(Code::NotFound, "No such route."))
    } else {
        plain_not_found()
    }
}

/// True for a path of the JSON API.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

fn plain_not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("Not found")
}

/// A 200 response of JSON text written by hand (message frames are spliced in
/// as the socket sends them).
pub fn json_text(body: String) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// The room of the stream `stream_id` on the visitor's tenant.
pub fn room_key(visitor: &Visitor, stream_id: i64) -> RoomKey {
    RoomKey {
        slug: visitor.tenant.slug.clone(),
        stream_id,
    }
}

/// Peers whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
#[derive(Clone, Default)]
pub struct TrustedProxies(pub Vec<IpRange>);

impl TrustedProxies {
    /// True when `ip` is a trusted proxy.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }
}

/// The key per-address limits count a client under: an IPv4 address as is
/// (IPv4-mapped IPv6 addresses as their IPv4), an IPv6 address by its /64 (the
/// smallest block a site is given: one client can use any address in it).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The client's [`address_key`]: what per-address limits (failed logins,
/// sockets, HTTP connections) count it under.
pub fn client_key(req: &HttpRequest) -> IpAddr {
    address_key(client_ip(req).parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
}

/// The client's IP: the socket peer, or the last untrusted hop of
/// `X-Forwarded-For` when the peer is a configured trusted proxy.
pub fn client_ip(req: &HttpRequest) -> String {
    let peer = req.peer_addr().map(|a| a.ip());
    let none = TrustedProxies::default();
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .map_or(&none, |t| t.get_ref());
    if let Some(peer) = peer {
        if trusted.contains(&peer) {
            if let Some(xff) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                // Walk from the nearest hop back past our own proxies.
                for hop in xff.rsplit(',').map(str::trim) {
                    match hop.parse::<IpAddr>() {
                        Ok(ip) if trusted.contains(&ip) => continue,
                        Ok(ip) => return ip.to_string(),
                        Err(_) => break,
                    }
                }
            }
        }
        return peer.to_string();
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::ffff"), key("2001:db8:1:2:ffff::1"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
