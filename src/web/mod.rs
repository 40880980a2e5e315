//! HTTP routes: pages (with their i18n, accounts and studio), the JSON API,
//! operations endpoints and static files.
//! Handlers are plain functions with typed extractors; each submodule registers
//! its routes through `configure`.

pub mod accounts;
pub mod analytics;
pub mod api;
pub mod i18n;
pub mod moderation;
pub mod ops;
pub mod pages;
pub mod search;
pub mod statics;
pub mod studio;
pub mod ws;

use std::net::IpAddr;

use actix_web::{web, HttpRequest};

use crate::error::{ApiError, Code};

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
    .app_data(
        web::FormConfig::default()
            .limit(16 * 1024)
            .error_handler(|err, _| ApiError::new(Code::Invalid, err.to_string()).into()),
    )
    .configure(ops::configure)
    .configure(api::configure)
    .configure(analytics::configure)
    .configure(moderation::configure)
    .configure(search::configure)
    .configure(statics::configure)
    .configure(ws::configure)
    .configure(pages::configure)
    .configure(accounts::configure)
    .configure(studio::configure)
    .default_service(web::to(not_found));
}

/// Any other path: a short plain-text 404 that names nothing.
async fn not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("Not found")
}

/// Peers whose `X-Forwarded-For` is believed.
#[derive(Clone, Default)]
pub struct TrustedProxies(pub Vec<IpAddr>);

/// The client's IP: the socket peer, or the last untrusted hop of
/// `X-Forwarded-For` when the peer is a configured trusted proxy.
pub fn client_ip(req: &HttpRequest) -> String {
    let peer = req.peer_addr().map(|a| a.ip());
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
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
