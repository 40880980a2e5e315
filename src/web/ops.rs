//! Operations endpoints: `/healthz` (process alive) and `/readyz` (storage answers).

use actix_web::{web, HttpResponse};

use crate::store::Store;

/// Registers `/healthz` and `/readyz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(store: web::Data<Store>) -> HttpResponse {
    let postgres = store.ping().await;
    let body = serde_json::json!({ "postgres": postgres });
    if postgres {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
