//! The streamer's dashboard `/studio` (streamers and admins) and
//! `POST /api/streams`, which creates a stream. The page's script drives the
//! stream JSON API (status, moderators, moderation, blocked terms, log). An
//! admin's studio also lists the tenant's webhooks (with recent deliveries)
//! and API tokens, managed through `/api/webhooks` and `/api/tokens`.

use actix_web::{http::StatusCode, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::{
    auth::{Acting, Visitor},
    domain::Role,
    error::{ApiError, Code},
    rooms::Hub,
    store::{accounts::User, streams::Stream, Store},
    web::{
        i18n::PageLang,
        pages::{forbidden_page, render_in, see_other, Chrome},
        room_key,
    },
};

/// Longest stream title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest stream description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
/// Longest video URL, in bytes.
pub const MAX_VIDEO_URL: usize = 2048;

/// Registers the studio routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/studio", web::get().to(studio))
        .route("/api/streams", web::post().to(create_stream))
        .route("/api/markdown/preview", web::post().to(preview));
}

/// True for users who may create streams and open the studio.
fn can_stream(user: &User) -> bool {
    matches!(user.role, Role::Streamer | Role::Admin)
}

/// True when `url` is an absolute `http://` or `https://` URL with a host and
/// nothing that could break out of an attribute or smuggle a scheme.
pub fn video_url_ok(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    url.len() <= MAX_VIDEO_URL
        && !host.is_empty()
        && !host.contains('@')
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
}

/// A stream to create.
#[derive(Deserialize)]
struct NewStreamBody {
    title: String,
    /// Optional: missing and `null` are an empty description.
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    video_url: Option<String>,
}

/// A validated stream to create.
#[derive(Debug, PartialEq)]
struct NewStream {
    title: String,
    description: String,
    video_url: Option<String>,
}

fn validate(body: NewStreamBody) -> Result<NewStream, ApiError> {
    let title = body.title.trim().to_string();
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS {
        return Err(ApiError::new(
            Code::Invalid,
            "title must be 1 to 200 characters.",
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::new(
            Code::Invalid,
            "title must not contain control characters.",
        ));
    }
    let description = body
        .description
        .unwrap_or_default()
        .trim()
        .replace("\r\n", "\n");
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::new(
            Code::Invalid,
            "description must be at most 5000 characters.",
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::new(
            Code::Invalid,
            "description must not contain control characters.",
        ));
    }
    let video_url = match body.video_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) if video_url_ok(u) => Some(u.to_string()),
        Some(_) => {
            return Err(ApiError::new(
                Code::Invalid,
                "video_url must be empty or an http:// or https:// URL.",
            ))
        }
    };
    Ok(NewStream {
        title,
        description,
        video_url,
    })
}

async fn create_stream(
    visitor: Acting,
    body: web::Json<NewStreamBody>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let user = visitor.user();
    if !can_stream(user) {
        return Err(ApiError::new(
            Code::Forbidden,
            "Only streamers and admins can create streams.",
        ));
    }
    let new = validate(body.into_inner())?;
    let id = store
        .create_stream(
            &visitor.tenant.slug,
            user.id,
            &new.title,
            &new.description,
            new.video_url.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id })))
}

/// A stream on the dashboard.
struct StudioStream {
    stream: Stream,
    viewers: u64,
}

/// A webhook endpoint on the admin's integrations section.
struct WebhookRow {
    endpoint: crate::store::webhooks::Endpoint,
    deliveries: Vec<crate::store::webhooks::DeliveryRow>,
}

/// The admin's integrations section: webhooks (with recent deliveries) and tokens.
struct Integrations {
    webhooks: Vec<WebhookRow>,
    tokens: Vec<crate::store::tokens::TokenListing>,
}

/// Attempts shown per endpoint on the studio.
const STUDIO_DELIVERIES: i64 = 10;

/// A time as the studio lists it (`2026-11-22T08:00:00Z`).
fn when(at: &time::OffsetDateTime) -> String {
    crate::protocol::timestamp_seconds(*at)
}

#[derive(Template)]
#[template(path = "studio.html")]
struct StudioPage {
    c: Chrome,
    is_admin: bool,
    integrations: Option<Integrations>,
    streams: Vec<StudioStream>,
    created: Option<i64>,
    i18n_json: String,
}

#[derive(Deserialize)]
struct StudioQuery {
    created: Option<i64>,
}

// Same parameter shape as accounts::logout: page handlers list the extractors they use, one a line.
async fn studio(
    visitor: Visitor,
    lang: PageLang,
    query: web::Query<StudioQuery>,
    store: web::Data<Store>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let c = Chrome::new(&visitor, &lang, "/studio");
    let Some(user) = visitor.user() else {
        return Ok(see_other(&c.login_href));
    };
    if !can_stream(user) {
        return forbidden_page(c, &lang, |s| s.studio_forbidden);
    }
    let slug = &visitor.tenant.slug;
    let is_admin = user.role == Role::Admin;
    let streams = if is_admin {
        store.list_streams(slug).await?
    } else {
        store.streams_owned_by(slug, user.id).await?
    };
    let streams = streams
        .into_iter()
        .map(|stream| StudioStream {
            viewers: hub.viewers(&room_key(&visitor, stream.id)),
            stream,
        })
        .collect();
    let integrations = if is_admin {
        let mut webhooks = Vec::new();
        for endpoint in store.list_webhooks(slug).await? {
            let deliveries = store
                .webhook_deliveries(slug, endpoint.id, STUDIO_DELIVERIES)
                .await?;
            webhooks.push(WebhookRow {
                endpoint,
                deliveries,
            });
        }
        Some(Integrations {
            webhooks,
            tokens: store.list_tokens(slug).await?,
        })
    } else {
        None
    };
    render_in(
        &lang,
        StatusCode::OK,
        StudioPage {
            c,
            is_admin,
            integrations,
            streams,
            created: query.created,
            i18n_json: lang.lang.js_json(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(title: &str, url: Option<&str>) -> NewStreamBody {
        NewStreamBody {
            title: title.into(),
            description: None,
            video_url: url.map(Into::into),
        }
    }

    #[test]
    fn video_urls() {
        assert!(video_url_ok("https://cdn.example.com/live.m3u8"));
        assert!(video_url_ok("HTTP://example.com:8080/v.mp4?x=1"));
        assert!(!video_url_ok("javascript:alert(1)"));
        assert!(!video_url_ok("data:video/mp4;base64,AAAA"));
        assert!(!video_url_ok("https://"));
        assert!(!video_url_ok("https:///path"));
        assert!(!video_url_ok("https://user@evil.com/"));
        assert!(!video_url_ok("https://a.com/\" onerror=\"x"));
        assert!(!video_url_ok("//example.com/v.mp4"));
        assert!(!video_url_ok(&format!(
            "https://a.com/{}",
            "x".repeat(3000)
        )));
    }

    #[test]
    fn a_null_description_is_an_empty_one() {
        let b: NewStreamBody =
            serde_json::from_str(r#"{"title":"x","description":null,"video_url":null}"#).unwrap();
        assert_eq!(validate(b).unwrap().description, "");
    }

    #[test]
    fn titles_and_urls_are_checked() {
        let ok = validate(body("  My show  ", Some(" "))).unwrap();
        assert_eq!(ok.title, "My show");
        assert_eq!(ok.video_url, None);
        assert!(validate(body("   ", None)).is_err());
        assert!(validate(body(&"あ".repeat(200), None)).is_ok());
        assert!(validate(body(&"あ".repeat(201), None)).is_err());
        assert!(validate(body("a\u{7}b", None)).is_err());
        assert!(validate(body("x", Some("ftp://example.com/v"))).is_err());
        assert_eq!(
            validate(body("x", Some("https://example.com/v.mp4")))
                .unwrap()
                .video_url
                .as_deref(),
            Some("https://example.com/v.mp4")
        );
    }
}

/// Markdown to preview.
#[derive(Deserialize)]
struct PreviewBody {
    markdown: String,
}

/// `POST /api/markdown/preview` `{"markdown"}` → `{"html"}`: a description as
/// the watch page will show it (the same rendering and cleaning), for the
/// studio's preview. Logged-in users, with CSRF.
async fn preview(_acting: Acting, body: web::Json<PreviewBody>) -> Result<HttpResponse, ApiError> {
    if body.markdown.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::new(
            Code::Invalid,
            "description must be at most 5000 characters.",
        ));
    }
    let html = crate::web::markdown::description_html(&body.markdown);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "html": html })))
}
