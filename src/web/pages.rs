//! Server-rendered pages (askama templates in `templates/`).

use actix_web::{http::header, web, HttpResponse};
use askama::Template;

use crate::{
    auth::Visitor,
    error::ApiError,
    store::{streams::Stream, Store},
};

/// Registers the page routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index));
}

/// Security headers of every page: no inline scripts, no framing.
pub fn page(html: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; media-src 'self' https: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .body(html)
}

/// Renders a template as a page.
pub fn render(t: impl Template) -> Result<HttpResponse, ApiError> {
    Ok(page(
        t.render().map_err(|e| ApiError::Unexpected(e.into()))?,
    ))
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    tenant_name: &'a str,
    username: Option<&'a str>,
    csrf_token: &'a str,
    streams: Vec<Stream>,
}

async fn index(visitor: Visitor, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let streams = store.list_streams(&visitor.tenant.slug).await?;
    render(IndexPage {
        tenant_name: &visitor.tenant.name,
        username: visitor.user().map(|u| u.username.as_str()),
        csrf_token: visitor.csrf_token().unwrap_or(""),
        streams,
    })
}
