//! `/media/{file}`: the demo's video (an HLS playlist and its segments), served
//! from a directory on disk. Only `stampede dev` sets that directory
//! ([`serve_from`]); on any other server the route answers 404.

use std::{path::PathBuf, sync::OnceLock};

use actix_web::{http::header, web, HttpResponse};

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Serves `/media/*` from `dir` in this process (once; later calls are ignored).
pub fn serve_from(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// Registers `/media/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/media/{file}", web::get().to(serve));
}

fn content_type(name: &str) -> Option<&'static str> {
    match name.rsplit('.').next()? {
        "m3u8" => Some("application/vnd.apple.mpegurl"),
        "ts" => Some("video/mp2t"),
        "mp4" | "m4s" => Some("video/mp4"),
        _ => None,
    }
}

async fn serve(file: web::Path<String>) -> HttpResponse {
    let not_found = || {
        HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("Not found")
    };
    let name = file.into_inner();
    let plain = !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let (Some(dir), Some(kind), true) = (DIR.get(), content_type(&name), plain) else {
        return not_found();
    };
    match tokio::fs::read(dir.join(&name)).await {
        Ok(bytes) => HttpResponse::Ok()
            .content_type(kind)
            .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(bytes),
        Err(_) => not_found(),
    }
}
