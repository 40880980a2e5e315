//! Login, sessions, cookies, CSRF and login rate limits over real HTTP.

use crate::helpers::*;
use serde_json::json;
use stampede::domain::Role;

/// Creates `name` with `role` and the password `correct horse`, and logs
/// in with it: the reply.
async fn new_user_logs_in(app: &TestApp, name: &str, role: Role) -> Reply {
    app.create_user(name, "correct horse", role).await;
    app.try_login(name, "correct horse").await
}

#[actix_web::test]
async fn login_good_and_bad() {
    let app = spawn_app().await;
    let r = new_user_logs_in(&app, "alice", Role::Streamer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["username"], "alice");
    assert_eq!(body["role"], "streamer");
    assert_eq!(body["csrf_token"].as_str().unwrap().len(), 64);

    for (user, pw) in [("alice", "wrong"), ("nobody", "correct horse")] {
        let r = app.try_login(user, pw).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "not_authenticated");
        assert!(r.session_cookie().is_none());
    }
    let r = app
        .post_anonymous("/api/login", json!({"username":"alice"}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["code"], "invalid");
}

#[actix_web::test]
async fn cookie_flags() {
    let app = spawn_app().await;
    let r = new_user_logs_in(&app, "alice", Role::Viewer).await;
    let c = r.set_cookies().join("\n");
    assert!(c.contains("HttpOnly"), "{c}");
    assert!(c.contains("SameSite=Lax"), "{c}");
    assert!(c.contains("Path=/"), "{c}");
    assert!(!c.to_lowercase().contains("domain="), "{c}");
    assert!(!c.contains("Secure"), "{c}");

    let secure = spawn_app_with(|s| s.server.secure_cookies = true).await;
    let r = new_user_logs_in(&secure, "bob", Role::Viewer).await;
    assert!(r.set_cookies().join("\n").contains("Secure"));
}

#[actix_web::test]
async fn session_endpoint_anonymous_and_logged_in() {
    let app = spawn_app().await;
    let r = app.get("/api/session", None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["user"].is_null());
    assert_eq!(r.json()["csrf_token"].as_str().unwrap().len(), 64);
    assert!(r.session_cookie().is_some());

    let alice = app.user("alice", Role::Moderator).await;
    let r = alice.get("/api/session").await;
    assert_eq!(r.json()["user"]["username"], "alice");
    assert_eq!(r.json()["user"]["role"], "moderator");
    assert_eq!(r.json()["csrf_token"], alice.csrf.as_str());
}

#[actix_web::test]
async fn cookie_of_one_tenant_is_unknown_on_another() {
    let app = spawn_app().await;
    let other = create_tenant(&app.store).await;
    let alice = app.user("alice", Role::Viewer).await;
    assert_eq!(
        alice.get("/api/session").await.json()["user"]["username"],
        "alice"
    );
    let r = app
        .get_on(&other.host, "/api/session", Some(&alice.cookie))
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["user"].is_null(),
        "cookie crossed tenants: {}",
        r.body
    );
}

#[actix_web::test]
async fn login_issues_a_new_session_id() {
    let app = spawn_app().await;
    app.create_user("alice", "correct horse", Role::Viewer)
        .await;
    // An attacker plants a session id (anonymous) in the victim's browser.
    let planted = app
        .get("/api/session", None)
        .await
        .session_cookie()
        .unwrap();
    let r = app
        .post_json(
            "/api/login",
            &json!({"username":"alice","password":"correct horse"}),
            Some(&planted),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let fresh = r.session_cookie().unwrap();
    assert_ne!(fresh, planted);
    // The planted id never becomes authenticated.
    let r = app.get("/api/session", Some(&planted)).await;
    assert!(r.json()["user"].is_null());
    // A made-up id is not accepted either.
    let made_up = "ab".repeat(32);
    assert!(app.get("/api/session", Some(&made_up)).await.json()["user"].is_null());
}

#[actix_web::test]
async fn logout_needs_csrf_and_ends_the_session() {
    let app = spawn_app().await;
    let alice = app.user("alice", Role::Viewer).await;

    let r = app.post_anonymous("/api/logout", json!({})).await;
    assert_eq!(r.status, 401, "authentication is checked before CSRF");
    let r = alice.post_without_csrf("/api/logout", json!({})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "csrf");
    let foreign = app.get("/api/session", None).await.json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = alice
        .post_with_csrf("/api/logout", json!({}), &foreign)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        alice.get("/api/session").await.json()["user"]["username"],
        "alice"
    );

    alice.post_ok("/api/logout", json!({})).await;
    assert!(alice.get("/api/session").await.json()["user"].is_null());
}

#[actix_web::test]
async fn login_attempts_are_rate_limited() {
    let app = spawn_app_with(|s| s.limits.logins_per_minute_per_user = 3).await;
    app.create_user("alice", "correct horse", Role::Viewer)
        .await;
    for _ in 0..3 {
        let r = app.try_login("alice", "nope").await;
        assert_eq!(r.status, 401);
    }
    let r = app.try_login("alice", "correct horse").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let retry = r.retry_after();
    assert!((1..=60).contains(&retry), "{retry}");
}
