//! The pages over plain HTTP: what the server renders (stream list, watch page,
//! escaping, hooks for assistive technology), the account forms with their
//! CSRF tokens and errors, sign-up on and off, the studio's access and
//! `POST /api/streams`, and the choice of language.

use serde_json::json;
use stampede::domain::Role;

use crate::helpers::*;

/// A client that reports redirects instead of following them.
fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

impl TestApp {
    /// POSTs a urlencoded form with an optional session cookie (redirects not followed).
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> Reply {
        self.post_form_with(path, form, cookie, &[]).await
    }

    /// GETs a form page, which must answer 200: the page, the anonymous
    /// session it comes with and its form's CSRF token.
    pub async fn form_page(&self, path: &str) -> (Reply, String, String) {
        let page = self.get(path, None).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let anon = page
            .session_cookie()
            .unwrap_or_else(|| panic!("{path}: an anonymous session for the token"));
        let token = form_token(&page.body);
        (page, anon, token)
    }

    /// POSTs the login form: `username`, `password`, then the fields in
    /// `more` (`csrf_token`, `next`).
    pub async fn post_login_form(
        &self,
        username: &str,
        password: &str,
        more: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> Reply {
        let mut form = vec![("username", username), ("password", password)];
        form.extend_from_slice(more);
        self.post_form("/login", &form, cookie).await
    }

    /// A request to `path` of the test tenant that reports redirects instead
    /// of following them, with a raw `Cookie` header and extra headers.
    fn page_request(
        &self,
        method: awc::http::Method,
        path: &str,
        cookie: Option<String>,
        headers: &[(&str, &str)],
    ) -> awc::ClientRequest {
        let mut req = client()
            .request(method, format!("{}{path}", self.address))
            .insert_header(("Host", self.tenant.host.clone()));
        if let Some(c) = cookie {
            req = req.insert_header(("Cookie", c));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        req
    }

    /// POSTs a urlencoded form with extra headers.
    pub async fn post_form_with(
        &self,
        path: &str,
        form: &[(&str, &str)],
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let cookie = cookie.map(|c| format!("stampede_session={c}"));
        let req = self.page_request(awc::http::Method::POST, path, cookie, headers);
        read_reply(req.send_form(&form).await.expect("request")).await
    }

    /// GET with a raw `Cookie` header and extra headers (redirects not followed).
    pub async fn get_with(
        &self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let cookie = cookie.map(str::to_string);
        let req = self.page_request(awc::http::Method::GET, path, cookie, headers);
        read_reply(req.send().await.expect("request")).await
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[actix_web::test]
async fn the_front_page_lists_live_streams_first_with_viewer_counts() {
    let app = spawn_app().await;
    let (first, owner) = app.stream_with_owner().await;
    let second = app.create_stream("owner").await;
    let r = owner.set_status(first, "live").await;
    assert_eq!(r.status, 200);
    let _a = app.ws_ready(first, None).await;
    let _b = app.ws_ready(first, None).await;
    let page = app.get("/", None).await;
    assert_eq!(page.status, 200);
    let live = page.body.find(&format!("/streams/{first}\"")).unwrap();
    let scheduled = page.body.find(&format!("/streams/{second}\"")).unwrap();
    assert!(live < scheduled, "live first");
    assert!(page.body.contains("data-viewers=\"2\""), "{}", page.body);
    assert!(page.body.contains("data-viewers=\"0\""));
    assert!(header(&page, "content-security-policy").contains("default-src 'self'"));
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("style=\""), "no inline style");
}

#[actix_web::test]
async fn the_watch_page_renders_the_last_50_messages_escaped() {
    let app = AppBuilder::new().raised_limits().spawn().await;
    let (stream, alice, mut a) = app.stream_with_viewer("alice").await;
    for i in 0..54 {
        a.send(json!({"type":"message","message":format!("m{i:02}"),"client_id":format!("k{i}")}))
            .await;
        a.expect("ack").await;
    }
    a.send(json!({"message":"<script>alert(1)</script> & \"q\""}))
        .await;
    a.expect("ack").await;

    let page = app.get(&format!("/streams/{stream}"), None).await;
    assert_eq!(page.status, 200);
    let b = &page.body;
    assert_eq!(b.matches("class=\"msg ").count(), 50);
    assert!(!b.contains(">m04<"), "only the last 50");
    assert!(b.contains(">m05<") && b.contains(">m53<"));
    assert!(b.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;q&#34;"));
    assert!(!b.contains("<script>alert"));
    assert!(b.contains("role=\"log\""));
    assert!(b.contains("data-id=\""));
    assert!(b.contains("<label for=\"message-box\">Message</label>"));
    assert!(b.contains("aria-label=\":smile:\""));
    assert!(b.contains("data-viewers=\"1\""));
    assert!(b.contains("data-can-moderate=\"false\""));
    assert!(b.contains("<meta name=\"csrf-token\""));
    // Anonymous: the box is off, with the reason and a way to log in.
    assert!(b.contains("name=\"message\" rows=\"2\" autocomplete=\"off\" aria-describedby=\"counter composer-reason\" disabled"));
    assert!(b.contains("Log in to chat"));
    assert!(b.contains("/login?next=/streams/"));
    assert!(!b.contains("data-action=\"delete\""));
    // No inline code: scripts are files, data is JSON.
    assert!(b.contains("<script type=\"application/json\" id=\"i18n\">"));
    assert!(b.contains("<script src=\"/static/watch.js\" defer></script>"));
    assert_eq!(b.matches("<script").count(), 3, "i18n, common.js, watch.js");
    assert!(!b.contains("style=\"") && !b.contains(" onclick="));

    // The stream's owner moderates: flag and controls.
    let owner = app.logged_in("owner").await;
    let page = owner.get(&format!("/streams/{stream}")).await;
    assert!(page.body.contains("data-can-moderate=\"true\""));
    assert_eq!(page.body.matches("data-action=\"delete\"").count(), 50);
    assert_eq!(page.body.matches("data-action=\"ban\"").count(), 50);
    let page = alice.get(&format!("/streams/{stream}")).await;
    assert!(page.body.contains("data-can-moderate=\"false\""));
    assert!(!page
        .body
        .contains("aria-describedby=\"counter composer-reason\" disabled"));

    for path in ["/streams/999999", "/streams/abc"] {
        let r = app.get(path, None).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(header(&r, "content-type").starts_with("text/html"));
    }
}

#[actix_web::test]
async fn an_ended_stream_closes_the_box_and_shows_its_video() {
    let app = spawn_app().await;
    let streamer = app.user("sam", Role::Streamer).await;
    let r = streamer
        .post(
            "/api/streams",
            json!({"title":"With video","video_url":"https://cdn.example.com/v.mp4"}),
        )
        .await;
    let id = r.json()["id"].as_i64().unwrap();
    let page = streamer.get(&format!("/streams/{id}")).await;
    assert!(page
        .body
        .contains("<video class=\"video\" src=\"https://cdn.example.com/v.mp4\""));
    for status in ["live", "ended"] {
        streamer.set_status(id, status).await;
    }
    let page = streamer.get(&format!("/streams/{id}")).await;
    assert!(page.body.contains("Chat is closed"));
    assert!(page
        .body
        .contains("aria-describedby=\"counter composer-reason\" disabled"));
    let other = app.create_stream("sam").await;
    let page = app.get(&format!("/streams/{other}"), None).await;
    assert!(page.body.contains("No video for this stream yet."));
    assert!(!page.body.contains("<video"));
}

#[actix_web::test]
async fn private_tenants_send_anonymous_visitors_to_log_in() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    app.configure_tenant(Some(false), None).await;
    // Nodes cache the tenant's settings for a moment.
    let r = eventually("the watch page sends visitors to log in", WAIT, || async {
        let r = app.get_with(&format!("/streams/{stream}"), None, &[]).await;
        (r.status == 303).then_some(r)
    })
    .await;
    assert_eq!(
        header(&r, "location"),
        format!("/login?next=/streams/{stream}")
    );
}

/// Every page has a real CSRF token, anonymous visitors too: the page comes
/// with an anonymous session (as from `GET /api/session`) whose token the
/// login form accepts; a visitor who sends that cookie back keeps its session.
#[actix_web::test]
async fn anonymous_pages_carry_a_usable_csrf_token() {
    let app = spawn_app().await;
    app.create_user("erin", "password-123", Role::Viewer).await;
    let stream = app.create_stream("owner").await;

    let missing = app.get("/streams/999999999", None).await;
    assert_eq!(missing.status, 404);
    assert!(!meta_token(&missing.body).is_empty(), "the 404 page too");
    assert!(missing.session_cookie().is_some());

    for path in ["/".to_string(), format!("/streams/{stream}")] {
        let page = app.get(&path, None).await;
        assert_eq!(page.status, 200, "{path}");
        let token = meta_token(&page.body);
        assert!(!token.is_empty(), "{path}: an empty csrf-token meta");
        let anon = page
            .session_cookie()
            .unwrap_or_else(|| panic!("{path}: an anonymous session for the token"));
        let session = app.get("/api/session", Some(&anon)).await.json();
        assert!(session["user"].is_null());
        assert_eq!(session["csrf_token"], token.as_str(), "{path}");

        // The cookie sent back: the same session, no new one.
        let again = app.get(&path, Some(&anon)).await;
        assert_eq!(meta_token(&again.body), token, "{path}");
        assert!(again.session_cookie().is_none(), "{path}");

        let r = app
            .post_login_form(
                "erin",
                "password-123",
                &[("csrf_token", &token), ("next", &path)],
                Some(&anon),
            )
            .await;
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        assert_eq!(header(&r, "location"), path);
        let cookie = r.session_cookie().expect("a new session at login");
        assert_eq!(
            app.get("/api/session", Some(&cookie)).await.json()["user"]["username"],
            "erin"
        );
    }
}

#[actix_web::test]
async fn login_form_checks_csrf_credentials_and_issues_a_new_session() {
    let app = spawn_app().await;
    app.create_user("carol", "password-123", Role::Viewer).await;
    let (form, anon, token) = app.form_page("/login?next=/streams/5").await;
    assert_login_labels(&form.body, "Username", "Password");
    assert!(form.body.contains(">Log in</button>"));
    assert!(form.body.contains("name=\"next\" value=\"/streams/5\""));

    // No token, or another session's token: refused, with a fresh form.
    let r = app
        .post_login_form("carol", "password-123", &[], Some(&anon))
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("The form expired"));
    let r = app
        .post_login_form("carol", "password-123", &[("csrf_token", &token)], None)
        .await;
    assert_eq!(r.status, 403);
    assert!(r.session_cookie().is_some(), "a session for the new form");

    // Wrong password: the error sits next to the password field.
    let to_stream = [("csrf_token", token.as_str()), ("next", "/streams/5")];
    let r = app
        .post_login_form("carol", "nope", &to_stream, Some(&anon))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains(
        "<p class=\"field-error\" id=\"password-error\" role=\"alert\">Wrong username or password.</p>"
    ));
    assert!(r.body.contains("value=\"carol\""));

    let r = app
        .post_login_form("carol", "password-123", &to_stream, Some(&anon))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(header(&r, "location"), "/streams/5");
    let cookie = r.session_cookie().unwrap();
    assert_ne!(cookie, anon, "a new session id at login");
    assert_eq!(
        app.get("/api/session", Some(&cookie)).await.json()["user"]["username"],
        "carol"
    );
    assert!(app.get("/api/session", Some(&anon)).await.json()["user"].is_null());

    // Only local redirects are followed.
    let (_, anon2, t2) = app.form_page("/login").await;
    let r = app
        .post_login_form(
            "carol",
            "password-123",
            &[("csrf_token", &t2), ("next", "//evil.example/x")],
            Some(&anon2),
        )
        .await;
    assert_eq!(header(&r, "location"), "/");

    // Logout needs the token; then the session is gone.
    let r = app
        .post_form("/logout", &[("csrf_token", "forged")], Some(&cookie))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.get("/api/session", Some(&cookie)).await.json()["user"]["username"],
        "carol"
    );
    let token = form_token(&app.get("/", Some(&cookie)).await.body);
    let r = app
        .post_form("/logout", &[("csrf_token", &token)], Some(&cookie))
        .await;
    assert_eq!(r.status, 303);
    assert!(app.get("/api/session", Some(&cookie)).await.json()["user"].is_null());
}

#[actix_web::test]
async fn the_login_form_is_rate_limited() {
    let app = spawn_app_with(|s| s.limits.logins_per_minute_per_user = 2).await;
    app.create_user("dave", "password-123", Role::Viewer).await;
    let (_, anon, token) = app.form_page("/login").await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = app
            .post_login_form("dave", "bad", &[("csrf_token", &token)], Some(&anon))
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.body.contains("Too many attempts"));
        }
    }
    assert_eq!(statuses, vec![401, 401, 429]);
}

#[actix_web::test]
async fn signup_creates_a_viewer_and_can_be_turned_off() {
    let app = spawn_app().await;
    app.create_user("taken", "password-123", Role::Viewer).await;
    let (_, anon, token) = app.form_page("/signup").await;
    let post = |u: &'static str, p: &'static str| {
        let token = token.clone();
        let anon = anon.clone();
        let app = app.clone_handle();
        async move {
            app.post_form(
                "/signup",
                &[("username", u), ("password", p), ("csrf_token", &token)],
                Some(&anon),
            )
            .await
        }
    };
    let r = post("bad name!", "password-123").await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"username-error\""));
    let r = post("newbie", "short").await;
    assert_eq!(r.status, 422);
    assert!(r
        .body
        .contains("<p class=\"field-error\" id=\"password-error\" role=\"alert\">Use at least 8 characters.</p>"));
    let r = post("taken", "password-123").await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("That username is taken."));
    let r = post("newbie", "password-123").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.session_cookie().unwrap();
    let me = app.get("/api/session", Some(&cookie)).await.json();
    assert_eq!(me["user"], json!({"username":"newbie","role":"viewer"}));

    app.configure_tenant(None, Some(false)).await;
    // Nodes cache the tenant's settings for a moment.
    let closed = eventually("the sign-up form is gone", WAIT, || async {
        let page = app.get("/signup", None).await;
        (page.status == 404).then_some(page)
    })
    .await;
    assert!(
        !meta_token(&closed.body).is_empty(),
        "a token on every page"
    );
    let r = post("another", "password-123").await;
    assert_eq!(r.status, 404);
    assert!(app.stored_user("another").await.is_none());
    assert!(!app
        .get("/login", None)
        .await
        .body
        .contains("href=\"/signup\""));
}

#[actix_web::test]
async fn creating_streams_is_for_streamers_and_admins() {
    let app = spawn_app().await;
    let body = json!({"title":"  Show  ","description":"about it","video_url":""});
    let r = app.post_anonymous("/api/streams", body.clone()).await;
    assert_eq!(r.status, 401);
    let [viewer, streamer, admin] = app
        .users([
            ("vic", Role::Viewer),
            ("sam", Role::Streamer),
            ("ada", Role::Admin),
        ])
        .await;
    assert_eq!(
        streamer
            .post_without_csrf("/api/streams", body.clone())
            .await
            .status,
        403
    );
    let r = viewer.post("/api/streams", body.clone()).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    for bad in [
        json!({"title":""}),
        json!({"title":"x".repeat(201)}),
        json!({"title":"ok","video_url":"javascript:alert(1)"}),
        json!({"title":"ok","video_url":"ftp://example.com/v"}),
        json!({"description":"no title"}),
    ] {
        let r = streamer.post("/api/streams", bad.clone()).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid");
    }
    let r = streamer.post_ok("/api/streams", body.clone()).await;
    let id = r.json()["id"].as_i64().unwrap();
    let s = app.stored_stream(id).await;
    assert_eq!(
        (s.title.as_str(), s.owner.as_str(), s.video_url),
        ("Show", "sam", None)
    );
    assert_eq!(s.status.as_str(), "scheduled");
    let r = admin
        .post(
            "/api/streams",
            json!({"title":"Admin's","video_url":"http://v.example/a.mp4"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let other = r.json()["id"].as_i64().unwrap();

    // The studio: streamers see their own streams, admins all; others are kept out.
    let page = streamer.get("/studio").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("id=\"stream-{id}\"")));
    assert!(!page.body.contains(&format!("id=\"stream-{other}\"")));
    assert!(page
        .body
        .contains(&format!("href=\"/streams/{id}/analytics\"")));
    assert!(page
        .body
        .contains("<script src=\"/static/studio.js\" defer></script>"));
    let page = admin.get("/studio").await;
    assert!(
        page.body.contains(&format!("id=\"stream-{id}\""))
            && page.body.contains(&format!("id=\"stream-{other}\""))
    );
    assert_eq!(viewer.get("/studio").await.status, 403);
    let r = app.get_with("/studio", None, &[]).await;
    assert_eq!(
        (r.status, header(&r, "location")),
        (303, "/login?next=/studio")
    );
}

#[actix_web::test]
async fn the_language_follows_accept_language_then_the_switch() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let path = format!("/streams/{stream}");
    let ja = app
        .get_with(&path, None, &[("Accept-Language", "ja,en;q=0.5")])
        .await;
    assert!(ja.body.contains("<html lang=\"ja\">"));
    assert!(ja.body.contains(">送信</button>"));
    assert!(
        ja.body.contains("\"connected\":\"接続中（ライブ）\""),
        "the script's strings"
    );
    assert!(ja.body.contains("hreflang=\"en\""));
    let en = app
        .get_with(&path, None, &[("Accept-Language", "en-GB,ja;q=0.5")])
        .await;
    assert!(en.body.contains("<html lang=\"en\">") && en.body.contains(">Send</button>"));
    assert!(
        app.get(&path, None)
            .await
            .body
            .contains("<html lang=\"en\">"),
        "English by default"
    );

    let switched = app
        .get_with(
            &format!("{path}?lang=en"),
            None,
            &[("Accept-Language", "ja")],
        )
        .await;
    assert!(switched.body.contains("<html lang=\"en\">"));
    let set = switched.set_cookies().join("\n");
    assert!(set.contains("lang=en"), "{set}");
    let remembered = app
        .get_with("/", Some("lang=en"), &[("Accept-Language", "ja")])
        .await;
    assert!(remembered.body.contains("<html lang=\"en\">"));
    let login = app.get_with("/login?lang=ja", None, &[]).await;
    assert_login_labels(&login.body, "ユーザー名", "パスワード");
}

#[actix_web::test]
async fn static_files_of_the_pages_are_served() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/static/watch.js", "text/javascript"),
        ("/static/studio.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/docs/watch.png", "image/png"),
        ("/static/no-video.svg", "image/svg+xml"),
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(header(&r, "content-type").starts_with(kind), "{path}");
    }
}

#[actix_web::test]
async fn markdown_preview_is_cleaned_and_needs_a_session_and_csrf() {
    let app = spawn_app().await;
    let sam = app.user("sam", Role::Streamer).await;
    let body =
        serde_json::json!({"markdown":"**hi** [x](javascript:alert(1)) <script>alert(1)</script>"});
    let r = app
        .post_anonymous("/api/markdown/preview", body.clone())
        .await;
    assert_eq!(r.status, 401);
    let r = sam
        .post_without_csrf("/api/markdown/preview", body.clone())
        .await;
    assert_eq!(r.status, 403);
    let r = sam.post_ok("/api/markdown/preview", body.clone()).await;
    let html = r.json()["html"].as_str().unwrap().to_string();
    assert!(html.contains("<strong>hi</strong>"), "{html}");
    assert!(
        !html.contains("<script") && !html.contains("javascript:"),
        "{html}"
    );
}

/// The login form in `page` labels its fields `username` and `password`
/// (in the page's language).
fn assert_login_labels(page: &str, username: &str, password: &str) {
    for (field, label) in [("username", username), ("password", password)] {
        let tag = format!("<label for=\"{field}\">{label}</label>");
        assert!(page.contains(&tag), "{tag}");
    }
}

#[actix_web::test]
async fn a_refused_login_query_starts_no_session() {
    let app = spawn_app().await;
    let sessions = || async {
        let c = app.store.client().await.unwrap();
        let sql = format!(
            "SELECT count(*) FROM {}.accounts_session",
            app.tenant.slug.schema()
        );
        c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0)
    };
    let before = sessions().await;
    let r = app.get("/login?next=/a&next=/b", None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("\"invalid\""), "{}", r.body);
    assert!(r.headers.get("set-cookie").is_none());
    assert_eq!(sessions().await, before);
    // The same page with a good query does start one.
    assert_eq!(app.get("/login?next=/a", None).await.status, 200);
    assert_eq!(sessions().await, before + 1);
}
