//! Operations endpoints: `/healthz` (process alive), `/readyz` (PostgreSQL
//! and, when configured, Redis answer; on a Redis Cluster with each shard's
//! state) and `/metrics` (the app's own metrics, Prometheus text format).

use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpResponse};

use crate::{metrics::Metrics, store::Store};

/// Registers `/healthz` and `/readyz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(
    store: web::Data<Store>,
    hub: web::Data<crate::rooms::Hub>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    let relay = hub.relay();
    let (postgres, redis) = tokio::join!(store.ping(), relay.redis_ok());
    let mut body = serde_json::json!({ "postgres": postgres, "redis": redis });
    if relay.is_cluster() {
        // Per shard of a Redis Cluster, by primary address.
        let shards: serde_json::Map<String, serde_json::Value> = metrics
            .shards()
            .into_iter()
            .map(|(addr, s)| {
                let stats = serde_json::json!({
                    "connected": s.connected.load(Relaxed),
                    "subscriptions": s.subscriptions.load(Relaxed),
                    "publish_errors": s.publish_errors.load(Relaxed),
                });
                (addr, stats)
            })
            .collect();
        body["redis_shards"] = shards.into();
    }
    if postgres && redis != Some(false) {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}
