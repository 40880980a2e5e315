//! Server-rendered pages (askama templates in `templates/`): the frame every
//! page shares ([`Chrome`]), the stream list `/` and the watch page
//! `/streams/{id}`. Accounts live in [`super::accounts`], the studio in
//! [`super::studio`]. Pages carry no inline script or style: behaviour comes
//! from `static/*.js`, which reads its strings from a JSON data block.

use actix_web::{
    cookie::Cookie,
    dev::Payload,
    http::{header, StatusCode},
    web, FromRequest, HttpRequest, HttpResponse,
};
use askama::Template;
use futures_util::future::LocalBoxFuture;

use crate::{
    auth::{AuthConfig, Visitor},
    domain::Role,
    error::{ApiError, Code},
    moderation::can_moderate,
    protocol::{timestamp, StampView},
    rooms::Hub,
    store::{
        messages::{HiddenShown, MessageType, StoredMessage},
        streams::{Stream, StreamStatus},
        Store,
    },
    web::{
        api::readable_stream,
        i18n::{Lang, PageLang, Strings},
        room_key,
    },
};

/// Messages the watch page renders before its socket connects.
pub const RENDERED_MESSAGES: i64 = 50;

/// Registers the page routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/streams/{id}", web::get().to(watch));
}

/// The policy of every page: nothing inline, nothing from elsewhere except
/// video, no framing.
pub const CSP: &str =
    "default-src 'self'; img-src 'self' data:; media-src 'self' http: https: blob:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Security headers of every page: no inline scripts, no framing.
pub fn page(html: String) -> HttpResponse {
    page_with(StatusCode::OK, None, html)
}

/// A page with a status and, when the language was just picked, its cookie.
pub fn page_with(status: StatusCode, lang: Option<&PageLang>, html: String) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::VARY, "Cookie, Accept-Language"));
    if let Some(cookie) = lang.and_then(PageLang::cookie) {
        res.cookie(cookie);
    }
    res.body(html)
}

/// Renders a template as a page.
pub fn render(t: impl Template) -> Result<HttpResponse, ApiError> {
    Ok(page(
        t.render().map_err(|e| ApiError::Unexpected(e.into()))?,
    ))
}

/// Renders a template as a page in the request's language, with a status.
pub fn render_in(
    lang: &PageLang,
    status: StatusCode,
    t: impl Template,
) -> Result<HttpResponse, ApiError> {
    Ok(page_with(
        status,
        Some(lang),
        t.render().map_err(|e| ApiError::Unexpected(e.into()))?,
    ))
}

/// What `base.html` needs on every page: language, strings, who is visiting.
pub struct Chrome {
    /// The page's language.
    pub lang: Lang,
    /// Its strings.
    pub s: &'static Strings,
    /// The tenant's display name.
    pub tenant_name: String,
    /// The logged-in user's name.
    pub username: Option<String>,
    /// The session's CSRF token. Page handlers give every visitor a session
    /// first ([`with_session`]), so it is empty only for a visitor built
    /// without one.
    pub csrf_token: String,
    /// Show the studio link (streamers and admins).
    pub can_stream: bool,
    /// Show the sign-up link.
    pub signup: bool,
    /// `/login?next=<this page>`.
    pub login_href: String,
}

impl Chrome {
    /// The frame of a page at `here` (a local path) for this visitor.
    pub fn new(visitor: &Visitor, lang: &PageLang, here: &str) -> Chrome {
        let user = visitor.user();
        Chrome {
            lang: lang.lang,
            s: lang.lang.strings(),
            tenant_name: visitor.tenant.name.clone(),
            username: user.map(|u| u.username.clone()),
            csrf_token: visitor.csrf_token().unwrap_or("").to_string(),
            can_stream: user.is_some_and(|u| matches!(u.role, Role::Streamer | Role::Admin)),
            signup: visitor.tenant.signup,
            login_href: login_href(here),
        }
    }

    /// The label of a stream status.
    pub fn status(&self, status: &StreamStatus) -> &'static str {
        match status {
            StreamStatus::Live => self.s.status_live,
            StreamStatus::Scheduled => self.s.status_scheduled,
            StreamStatus::Ended => self.s.status_ended,
        }
    }
}

/// `/login?next=...` for a local path (anything else goes to `/login`).
pub fn login_href(here: &str) -> String {
    if here == "/" || local_path(here).is_none() {
        return "/login".into();
    }
    let mut out = String::from("/login?next=");
    for b in here.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `raw` if it is a path on this site (`/x`, not `//host` or `/\host`), else `None`.
pub fn local_path(raw: &str) -> Option<&str> {
    let ok = raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.starts_with("/\\")
        && raw.len() <= 512
        && !raw.chars().any(|c| c.is_control());
    ok.then_some(raw)
}

/// The visitor with a session, so that the page it is shown carries a usable
/// CSRF token (`<meta name="csrf-token">` and the forms' `csrf_token`): a
/// visitor without one gets an anonymous session, as from `GET /api/session`,
/// and its cookie, which the response must carry ([`with_cookie`]).
pub async fn with_session(
    visitor: Visitor,
    store: &Store,
    auth: &AuthConfig,
) -> Result<(Visitor, Option<Cookie<'static>>), ApiError> {
    if visitor.session.is_some() {
        return Ok((visitor, None));
    }
    let (session, cookie) = auth.start_session(store, &visitor.tenant, None).await?;
    Ok((
        Visitor {
            tenant: visitor.tenant,
            session: Some(session),
            token: visitor.token,
        },
        Some(cookie),
    ))
}

/// A page request: the visitor, given an anonymous session first if it had
/// none ([`with_session`]), in the request's language, and the store. The
/// answer goes out through [`Page::render`] or [`Page::respond`], which add
/// the new session's cookie.
///
/// Extracted as `Visitor`, `PageLang`, `web::Data<Store>` and
/// `web::Data<AuthConfig>`, in that order; the session is started once they
/// are all there.
pub struct Page {
    /// The visitor, with a session.
    pub visitor: Visitor,
    /// The page's language.
    pub lang: PageLang,
    /// The store.
    pub store: web::Data<Store>,
    /// The cookie of a session started for this request.
    cookie: Option<Cookie<'static>>,
}

impl FromRequest for Page {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let parts = <(Visitor, PageLang, web::Data<Store>, web::Data<AuthConfig>)>::from_request(
            req, payload,
        );
        Box::pin(async move {
            let (visitor, lang, store, auth) = parts.await?;
            let (visitor, cookie) = with_session(visitor, &store, &auth).await?;
            Ok(Page {
                visitor,
                lang,
                store,
                cookie,
            })
        })
    }
}

impl Page {
    /// The frame of this page, at `here` (a local path).
    pub fn chrome(&self, here: &str) -> Chrome {
        Chrome::new(&self.visitor, &self.lang, here)
    }

    /// `res`, with the cookie of the session started for this request.
    pub fn respond(&self, res: HttpResponse) -> Result<HttpResponse, ApiError> {
        with_cookie(res, self.cookie.clone())
    }

    /// Renders `t` in the page's language with `status` ([`render_in`]) and
    /// the session's cookie.
    pub fn render(&self, status: StatusCode, t: impl Template) -> Result<HttpResponse, ApiError> {
        self.respond(render_in(&self.lang, status, t)?)
    }
}

/// Adds a cookie to a response, if there is one.
pub fn with_cookie(
    mut res: HttpResponse,
    cookie: Option<Cookie<'static>>,
) -> Result<HttpResponse, ApiError> {
    if let Some(c) = cookie {
        res.add_cookie(&c)
            .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("cookie: {e}")))?;
    }
    Ok(res)
}

/// A redirect after a form (`303 See Other`).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    heading: &'static str,
    text: &'static str,
}

/// An HTML error page with a heading and a sentence.
pub fn error_page(
    c: Chrome,
    lang: &PageLang,
    status: StatusCode,
    heading: &'static str,
    text: &'static str,
) -> Result<HttpResponse, ApiError> {
    render_in(lang, status, ErrorPage { c, heading, text })
}

/// The 404 page.
pub fn not_found_page(c: Chrome, lang: &PageLang) -> Result<HttpResponse, ApiError> {
    let s = c.s;
    error_page(
        c,
        lang,
        StatusCode::NOT_FOUND,
        s.not_found,
        s.not_found_text,
    )
}

/// The 403 page, saying `text` of the page's strings.
pub fn forbidden_page(
    c: Chrome,
    lang: &PageLang,
    text: fn(&Strings) -> &'static str,
) -> Result<HttpResponse, ApiError> {
    let (heading, text) = (c.s.forbidden, text(c.s));
    error_page(c, lang, StatusCode::FORBIDDEN, heading, text)
}

/// A stream in the list.
struct StreamRow {
    stream: Stream,
    viewers: u64,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    c: Chrome,
    streams: Vec<StreamRow>,
    /// A private tenant and an anonymous visitor: nothing is listed.
    login_required: bool,
}

async fn index(page: Page, hub: web::Data<Hub>) -> Result<HttpResponse, ApiError> {
    let (visitor, store) = (&page.visitor, &page.store);
    // A private tenant shows anonymous visitors no titles, owners or counts.
    let login_required = visitor.user().is_none() && !visitor.tenant.anonymous_viewers;
    let listed = if login_required {
        Vec::new()
    } else {
        store.list_streams(&visitor.tenant.slug).await?
    };
    let streams = listed
        .into_iter()
        .map(|stream| StreamRow {
            viewers: hub.viewers(&room_key(visitor, stream.id)),
            stream,
        })
        .collect();
    page.render(
        StatusCode::OK,
        IndexPage {
            c: page.chrome("/"),
            streams,
            login_required,
        },
    )
}

/// A chat message as the watch page shows it (the same markup `watch.js` builds).
pub struct MessageView {
    /// Database id.
    pub id: i64,
    /// Author (`system` for notices).
    pub username: String,
    /// Author's role, for styling (`viewer` when unknown).
    pub role: &'static str,
    /// The text, escaped by the template.
    pub text: String,
    /// `message`, `system` or `moderation`.
    pub kind: &'static str,
    /// ISO 8601 time.
    pub timestamp: String,
    /// `HH:MM` UTC (the script shows local time).
    pub clock: String,
    /// A user's message (moderators may time out or ban its author).
    pub from_user: bool,
}

impl From<StoredMessage> for MessageView {
    fn from(m: StoredMessage) -> Self {
        let t = m.created_at.to_offset(time::UtcOffset::UTC);
        MessageView {
            id: m.id,
            from_user: m.message_type == MessageType::Message && m.username.is_some(),
            username: m.username.unwrap_or_else(|| "system".into()),
            role: m.role.map_or("viewer", Role::as_str),
            text: m.content,
            kind: m.message_type.as_str(),
            timestamp: timestamp(m.created_at),
            clock: format!("{:02}:{:02}", t.hour(), t.minute()),
        }
    }
}

#[derive(Template)]
#[template(path = "watch.html")]
struct WatchPage {
    c: Chrome,
    stream: Stream,
    /// The description as clean HTML ([`crate::web::markdown`]).
    description_html: String,
    video_url: Option<String>,
    /// The video is an HLS playlist (`static/replay.js` plays it).
    hls: bool,
    /// Replay mode: an ended stream with a video (`static/replay.js`).
    replay: bool,
    replay_i18n: String,
    viewers: u64,
    stamps: Vec<StampView>,
    messages: Vec<MessageView>,
    signed_in: bool,
    can_chat: bool,
    can_moderate: bool,
    i18n_json: String,
}

/// The watch page, its 404 page, or the way to log in; each with the cookie
/// of the session it gave an anonymous visitor.
async fn watch(
    req: HttpRequest,
    page: Page,
    path: web::Path<String>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    page.respond(watch_response(&req, &page, &path, &hub).await?)
}

/// What `/streams/{id}` answers a visitor who already has a session.
async fn watch_response(
    req: &HttpRequest,
    page: &Page,
    path: &str,
    hub: &Hub,
) -> Result<HttpResponse, ApiError> {
    let (visitor, lang, store) = (&page.visitor, &page.lang, &page.store);
    let c = page.chrome(req.path());
    let Ok(id) = path.parse::<i64>() else {
        return not_found_page(c, lang);
    };
    // Who may not watch gets no page of chat: its socket would be refused.
    let stream = match readable_stream(visitor, store, id).await {
        Ok(s) => s,
        Err(e) if e.code() == Code::NotAuthenticated => return Ok(see_other(&c.login_href)),
        Err(e) if e.code() == Code::NotFound => return not_found_page(c, lang),
        Err(e) if e.code() == Code::Banned => return forbidden_page(c, lang, |s| s.watch_banned),
        Err(e) => return Err(e),
    };
    let slug = &visitor.tenant.slug;
    let video_url = stream
        .video_url
        .clone()
        .filter(|u| crate::web::studio::video_url_ok(u));
    // An ended stream with a video replays its chat in step with the video.
    let replay = stream.status == StreamStatus::Ended && video_url.is_some();
    let can_moderate = match visitor.user() {
        Some(u) => can_moderate(store, slug, u, &stream).await?,
        None => false,
    };
    let (messages, _) = if replay {
        (Vec::new(), false)
    } else {
        // A hidden user sees their own messages, as on the socket.
        let shown = HiddenShown::for_reader(visitor.user().map(|u| u.id), can_moderate);
        store
            .recent_messages(slug, stream.room_id, RENDERED_MESSAGES, shown)
            .await?
    };
    let signed_in = visitor.user().is_some();
    let policy = crate::web::replay::watch_policy(CSP, video_url.as_deref());
    let mut res = render_in(
        lang,
        StatusCode::OK,
        WatchPage {
            viewers: hub.viewers(&room_key(visitor, stream.id)),
            stamps: store.stamps(slug).await?,
            messages: messages.into_iter().map(MessageView::from).collect(),
            signed_in,
            can_chat: signed_in && stream.status != StreamStatus::Ended,
            can_moderate,
            hls: video_url.as_deref().is_some_and(crate::web::replay::is_hls),
            replay,
            replay_i18n: crate::web::replay::strings_json(lang.lang),
            video_url,
            i18n_json: lang.lang.js_json(),
            description_html: crate::web::markdown::description_html(&stream.description),
            stream,
            c,
        },
    )?;
    if let Ok(v) = header::HeaderValue::from_str(&policy) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/streams/7"), Some("/streams/7"));
        assert_eq!(local_path("//evil.com/x"), None);
        assert_eq!(local_path("/\\evil.com"), None);
        assert_eq!(local_path("https://evil.com"), None);
        assert_eq!(local_path("/a\nb"), None);
        assert_eq!(login_href("/streams/7"), "/login?next=/streams/7");
        assert_eq!(login_href("/"), "/login");
        assert_eq!(login_href("/x y"), "/login?next=/x%20y");
    }
}
