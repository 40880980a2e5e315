//! Integrations: bot accounts, API tokens (CLI, bearer auth and scopes on the
//! JSON API and the WebSocket) and posting messages over HTTP through the
//! room's own rules.

use std::time::Duration;

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// GET with `Authorization: Bearer` on `host`.
async fn bearer_get_on(app: &TestApp, host: &str, path: &str, token: &str) -> Reply {
    let req = app
        .client
        .get(format!("{}{path}", app.address))
        .insert_header(("Host", host.to_string()))
        .insert_header(("Authorization", format!("Bearer {token}")));
    read_reply(req.send().await.expect("request")).await
}

async fn bearer_get(app: &TestApp, path: &str, token: &str) -> Reply {
    bearer_get_on(app, &app.tenant.host, path, token).await
}

/// POST JSON with `Authorization: Bearer` (no cookie, no CSRF token).
async fn bearer_post(app: &TestApp, path: &str, body: &Value, token: &str) -> Reply {
    let req = app
        .client
        .post(format!("{}{path}", app.address))
        .insert_header(("Host", app.tenant.host.clone()))
        .insert_header(("Authorization", format!("Bearer {token}")));
    read_reply(req.send_json(body).await.expect("request")).await
}

/// A socket opened with a bearer token, after `hello` and `history`.
async fn bearer_ws(app: &TestApp, stream: i64, token: &str) -> WsClient {
    let mut c = connect_bearer(app, stream, token).await.expect("socket");
    c.expect("hello").await;
    c.expect("history").await;
    c
}

/// The arguments of `stampede token create` on tenant `slug` for `user`
/// with `scopes`.
fn token_create<'a>(slug: &'a str, user: &'a str, scopes: &'a str) -> Vec<&'a str> {
    vec![
        "token", "create", "--tenant", slug, "--user", user, "--scopes", scopes,
    ]
}

/// `stampede token create`; returns the token printed.
fn create_token(app: &TestApp, user: &str, scopes: &str) -> String {
    let out = cli(&token_create(app.tenant.slug.as_str(), user, scopes), &[]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
    let token = stdout(&out);
    assert_eq!(token.lines().count(), 1, "{token}");
    token.trim().to_string()
}

/// Makes a bot account through the CLI.
fn create_bot(app: &TestApp, name: &str) {
    let out = cli(
        &[
            "user",
            "create",
            "--tenant",
            app.tenant.slug.as_str(),
            name,
            "--role",
            "bot",
        ],
        &[],
    );
    assert!(out.status.success(), "bot create: {}", stderr(&out));
}

/// Makes bot `name` and a token of `scopes` for it.
fn bot_token(app: &TestApp, name: &str, scopes: &str) -> String {
    create_bot(app, name);
    create_token(app, name, scopes)
}

/// The messages route of `stream`: its replay on GET, a new message on POST.
fn messages_path(stream: i64) -> String {
    format!("/api/streams/{stream}/messages")
}

/// A node and a stream of `owner` on it, where every test here starts.
async fn app_with_stream() -> (TestApp, i64) {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    (app, stream)
}

fn error_code(r: &Reply) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

/// The reply has `status` and the error `code`.
fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(
        (r.status, error_code(r).as_str()),
        (status, code),
        "{}",
        r.body
    );
}

#[actix_web::test]
async fn a_bot_cannot_log_in_and_posts_as_a_bot() {
    let (app, stream) = app_with_stream().await;
    create_bot(&app, "greeter");
    // No password login, whatever is tried, on the API and on the form.
    for password in ["", "!bot", "password-123"] {
        let r = app.try_login("greeter", password).await;
        assert_error(&r, 401, "not_authenticated");
    }
    let (_, anon, csrf) = app.form_page("/login").await;
    let r = app
        .post_login_form("greeter", "!bot", &[("csrf_token", &csrf)], Some(&anon))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.session_cookie().is_none() || r.status != 303);

    // With a token it posts; every viewer sees role "bot".
    let token = create_token(&app, "greeter", "chat");
    let alice = app.user("alice", Role::Viewer).await;
    let mut a = alice.ws(stream).await;
    let r = bearer_post(
        &app,
        &messages_path(stream),
        &json!({"message":"Welcome!"}),
        &token,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = a.expect("message").await;
    assert_eq!(m["username"], "greeter");
    assert_eq!(m["role"], "bot");
    assert_eq!(m["message"], "Welcome!");
    assert_eq!(m["id"], r.json()["id"]);
}

#[actix_web::test]
async fn tokens_are_created_listed_and_revoked_by_the_cli() {
    let (app, stream) = app_with_stream().await;
    create_bot(&app, "archiver");
    let slug = app.tenant.slug.as_str();
    let mut args = token_create(slug, "archiver", "read");
    args.extend(["--name", "nightly archive"]);
    let out = cli(&args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("stp_") && token.len() > 40, "{token}");
    assert_eq!(stdout(&out), format!("{token}\n"));

    // Used once: the last use is recorded.
    let r = bearer_get(&app, &messages_path(stream), &token).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The last use is written behind the request: poll the listing.
    let listed = eventually("the token's last use is listed", WAIT, || async {
        let out = cli(&["token", "list", "--tenant", slug], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let listed = stdout(&out);
        (!listed.lines().nth(1).unwrap_or("").contains("\tnever\t")).then_some(listed)
    })
    .await;
    assert!(!listed.contains(&token), "the token is never listed");
    assert!(!listed.contains(&token[4..]), "nor any of its secret");
    let row: Vec<&str> = listed.lines().nth(1).expect("a row").split('\t').collect();
    let id = row[0].to_string();
    assert_eq!(row[1], "archiver");
    assert_eq!(row[2], "read");
    assert_eq!(row[3], "nightly archive");
    assert_ne!(row[5], "never", "last use recorded: {listed}");
    assert_eq!(row[6], "active");

    // Revoked: refused at once.
    let out = cli(&["token", "revoke", "--tenant", slug, &id], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = bearer_get(&app, &messages_path(stream), &token).await;
    assert_error(&r, 401, "not_authenticated");
    let listed = stdout(&cli(&["token", "list", "--tenant", slug], &[]));
    assert!(
        listed.lines().nth(1).unwrap().ends_with("\trevoked"),
        "{listed}"
    );

    // Bad input: one line on stderr, non-zero exit, nothing printed.
    for args in [
        vec!["token", "revoke", "--tenant", slug, &id],
        vec!["token", "revoke", "--tenant", slug, "999999"],
        token_create(slug, "archiver", "read,admin"),
        token_create(slug, "nobody", "read"),
        token_create("no_such_tenant", "archiver", "read"),
        vec!["token", "list", "--tenant", "no_such_tenant"],
    ] {
        let out = cli(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[actix_web::test]
async fn bearer_tokens_are_scoped_and_tenant_bound() {
    let (app, stream) = app_with_stream().await;
    let read = bot_token(&app, "helper", "read");
    let chat = create_token(&app, "helper", "chat");
    let replay = messages_path(stream);

    // Replay with `read`, no cookie, no CSRF.
    let r = bearer_get(&app, &replay, &read).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Outside the token's scopes: 403.
    let r = bearer_get(&app, &replay, &chat).await;
    assert_error(&r, 403, "forbidden");
    let r = bearer_post(&app, &replay, &json!({"message":"hi"}), &read).await;
    assert_error(&r, 403, "forbidden");
    let moderation = format!("/api/streams/{stream}/moderation");
    let slow = json!({"action":"slow_mode","seconds":5});
    let r = bearer_post(&app, &moderation, &slow, &chat).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Routes not declared for tokens refuse them (password, logout).
    let r = bearer_post(&app, "/api/logout", &json!({}), &chat).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // `chat` posts, without CSRF.
    let r = bearer_post(&app, &replay, &json!({"message":"hi"}), &chat).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Unknown and malformed tokens: 401.
    let unknown = format!("stp_{}", "0".repeat(64));
    for t in [unknown.as_str(), "stp_short", "not-a-token"] {
        let r = bearer_get(&app, &replay, t).await;
        assert_eq!(r.status, 401, "{t}: {}", r.body);
        assert_eq!(error_code(&r), "not_authenticated");
    }

    // Another tenant does not know the token.
    let other = create_tenant(&app.store).await;
    let other_owner = app
        .store
        .create_user(
            &other.slug,
            &stampede::domain::Username::parse("owner").unwrap(),
            "x",
            Role::Streamer,
        )
        .await
        .unwrap()
        .unwrap();
    let other_stream = app
        .store
        .create_stream(&other.slug, other_owner.id, "Other", "", None)
        .await
        .unwrap();
    let elsewhere = format!("/api/streams/{other_stream}/messages");
    let r = bearer_get_on(&app, &other.host, &elsewhere, &read).await;
    assert_error(&r, 401, "not_authenticated");
}

#[actix_web::test]
async fn a_bearer_token_opens_a_websocket() {
    let (app, stream) = app_with_stream().await;
    let token = bot_token(&app, "echo", "read,chat");
    let mut bot = connect_bearer(&app, stream, &token)
        .await
        .expect("socket with a token");
    let hello = bot.recv().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["user"]["username"], "echo");
    assert_eq!(hello["user"]["role"], "bot");
    bot.expect("history").await;
    bot.send(json!({"type":"message","message":"beep","client_id":"b1"}))
        .await;
    let ack = bot.expect("ack").await;
    assert_eq!(ack["client_id"], "b1");

    // A read-only token reads but does not chat.
    let read = create_token(&app, "echo", "read");
    let mut reader = bearer_ws(&app, stream, &read).await;
    reader
        .send(json!({"type":"message","message":"boop","client_id":"r1"}))
        .await;
    let err = reader.expect("error").await;
    assert_eq!(err["code"], "forbidden");
    assert_eq!(err["client_id"], "r1");

    // Unknown token: refused at the handshake.
    let unknown = format!("stp_{}", "1".repeat(64));
    let refused = connect_bearer(&app, stream, &unknown).await;
    assert!(matches!(refused, Err(Refused(401))), "{:?}", refused.err());
}

/// A moderator's socket opened with a token uses their moderation rights only
/// when the token has `moderate`: without it, no held queue and no exemption
/// from slow mode.
#[actix_web::test]
async fn a_socket_without_the_moderate_scope_is_a_viewer_there() {
    let (app, stream) = app_with_stream().await;
    app.user("boss", Role::Moderator).await;
    let chat = create_token(&app, "boss", "chat");
    let full = create_token(&app, "boss", "chat,moderate");
    let moderation = format!("/api/streams/{stream}/moderation");
    let slow = json!({"type":"slow_mode","seconds":60});
    assert_eq!(
        bearer_post(&app, &moderation, &slow, &full).await.status,
        200
    );

    let mut with = connect_bearer(&app, stream, &full).await.expect("socket");
    for kind in ["hello", "history", "held_queue"] {
        assert_eq!(with.recv().await["type"], kind);
    }
    with.say("one").await;
    with.say("two").await;

    let mut without = connect_bearer(&app, stream, &chat).await.expect("socket");
    for kind in ["hello", "history"] {
        assert_eq!(without.recv().await["type"], kind);
    }
    // Boss spoke a moment ago on the other socket: here that is slow mode.
    without
        .send(json!({"type":"message","message":"three","client_id":"c3"}))
        .await;
    let next = loop {
        let v = without.recv().await;
        if v["type"] != "presence" {
            break v;
        }
    };
    assert_eq!(
        (&next["type"], &next["code"]),
        (&json!("error"), &json!("slow_mode")),
        "no held queue and no exemption: {next}"
    );

    // A message held for review reaches the moderator's socket, not this one.
    let terms = format!("/api/streams/{stream}/blocked_terms");
    let hold = json!({"term":"cheap","mode":"hold"});
    assert_eq!(bearer_post(&app, &terms, &hold, &full).await.status, 200);
    let bob = app.user("bob", Role::Viewer).await;
    let mut b = bob.ws(stream).await;
    b.send(json!({"message":"cheap pills"})).await;
    b.expect("held").await;
    assert_eq!(with.expect("held").await["message"], "cheap pills");
    with.say("marker").await;
    loop {
        let v = without.recv().await;
        assert_ne!(v["type"], "held", "a viewer's socket got a held item");
        if v["message"] == "marker" {
            break;
        }
    }
}

#[actix_web::test]
async fn http_posts_are_acked_once_per_client_id_and_broadcast() {
    let (app, stream) = app_with_stream().await;
    let token = bot_token(&app, "poster", "chat");
    let alice = app.user("alice", Role::Viewer).await;
    let mut a = alice.ws(stream).await;
    let path = messages_path(stream);

    let body = json!({"message":"  hello  there  ","client_id":"c-1"});
    let first = bearer_post(&app, &path, &body, &token).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_i64().unwrap();
    assert_eq!(first.json()["client_id"], "c-1");
    let again = bearer_post(&app, &path, &body, &token).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], id);

    let m = a.expect("message").await;
    assert_eq!(m["id"], id);
    assert_eq!(m["client_id"], "c-1");
    a.assert_silent(Duration::from_millis(500)).await;
    assert_eq!(app.stored_ids(stream).await, vec![id]);

    // Cleaning and validation are the socket's.
    let r = bearer_post(&app, &path, &json!({"message":"   "}), &token).await;
    assert_error(&r, 422, "empty");
    let r = bearer_post(&app, &path, &json!({"message":"x".repeat(501)}), &token).await;
    assert_error(&r, 422, "too_long");
    let r = bearer_post(
        &app,
        &path,
        &json!({"message":"hi","client_id":"c".repeat(65)}),
        &token,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = bearer_post(
        &app,
        "/api/streams/999999/messages",
        &json!({"message":"hi"}),
        &token,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // A session posts with its CSRF token, not without.
    let r = alice
        .post_without_csrf(&path, json!({"message":"from alice"}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    alice.post_ok(&path, json!({"message":"from alice"})).await;
    let m = a.expect("message").await;
    assert_eq!(m["username"], "alice");
    assert_eq!(m["role"], "viewer");
    // Anonymous: 401.
    let r = app.post_anonymous(&path, json!({"message":"anon"})).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[actix_web::test]
async fn http_posts_are_refused_by_the_rooms_rules() {
    // Opens like the other token tests, each making the tokens it needs.
    let (app, stream) = app_with_stream().await;
    let spam = bot_token(&app, "spammer", "chat");
    let pest = bot_token(&app, "pest", "chat");
    let path = messages_path(stream);

    // Rate limited like a socket (5 per 10 s by default), with Retry-After.
    let mut limited = None;
    for i in 0..8 {
        let r = bearer_post(&app, &path, &json!({"message":format!("m{i}")}), &spam).await;
        if r.status != 200 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited");
    assert_error(&r, 429, "rate_limited");
    let retry = r.retry_after();
    assert!((1..=10).contains(&retry), "{retry}");

    // Banned by a moderator on a socket: 403 banned.
    let owner = app.logged_in("owner").await;
    let mut o = owner.ws(stream).await;
    o.send(json!({"type":"ban","username":"pest"})).await;
    o.expect("moderation").await;
    let r = bearer_post(&app, &path, &json!({"message":"let me in"}), &pest).await;
    assert_error(&r, 403, "banned");

    // Chat closed when the stream ended: 409.
    let r = owner.set_status(stream, "ended").await;
    assert_eq!(r.status, 200, "{}", r.body);
    o.expect("message").await; // "Stream ended"
    let late = bot_token(&app, "late", "chat");
    let r = bearer_post(&app, &path, &json!({"message":"too late"}), &late).await;
    assert_error(&r, 409, "chat_closed");
}

#[actix_web::test]
async fn a_moderate_token_moderates_and_posts_follow_its_rules() {
    let (app, stream) = app_with_stream().await;
    let owner_mod = create_token(&app, "owner", "moderate");
    let owner_read = create_token(&app, "owner", "read");
    let seller = bot_token(&app, "seller", "chat");
    let chatty = bot_token(&app, "chatty", "chat");
    let path = messages_path(stream);

    // A hold term set with the owner's `moderate` token: the bot's message is held.
    let r = bearer_post(
        &app,
        &format!("/api/streams/{stream}/blocked_terms"),
        &json!({"term":"cheap","action":"add","mode":"hold"}),
        &owner_mod,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = bearer_post(
        &app,
        &path,
        &json!({"message":"cheap watches","client_id":"h1"}),
        &seller,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.json()["held_id"].as_i64().is_some(), "{}", r.body);
    assert!(app.stored_ids(stream).await.is_empty(), "held, not stored");

    // Slow mode set over HTTP with the token: the second message waits.
    let moderation = format!("/api/streams/{stream}/moderation");
    let slow = json!({"type":"slow_mode","seconds":30});
    let r = bearer_post(&app, &moderation, &slow, &owner_mod).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = bearer_post(&app, &path, &json!({"message":"one"}), &chatty).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = bearer_post(&app, &path, &json!({"message":"two"}), &chatty).await;
    assert_error(&r, 429, "slow_mode");
    assert!(r.headers.get("retry-after").is_some());

    // The log with `read`; not with `moderate` alone.
    let log = format!("/api/streams/{stream}/moderation/log");
    assert_eq!(bearer_get(&app, &log, &owner_read).await.status, 200);
    assert_eq!(bearer_get(&app, &log, &owner_mod).await.status, 403);
}

#[actix_web::test]
async fn revoking_a_token_closes_its_sockets() {
    let app = spawn_app_with(|s| s.session.recheck_secs = 1).await;
    let stream = app.create_stream("owner").await;
    let token = bot_token(&app, "watcher", "read");
    let other = create_token(&app, "watcher", "read");
    let mut revoked = bearer_ws(&app, stream, &token).await;
    let mut kept = bearer_ws(&app, stream, &other).await;
    let listed = stdout(&cli(
        &["token", "list", "--tenant", app.tenant.slug.as_str()],
        &[],
    ));
    let id = listed
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    let out = cli(
        &["token", "revoke", "--tenant", app.tenant.slug.as_str(), &id],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(revoked.closed().await, Some(4001));
    kept.assert_silent(Duration::from_millis(1500)).await;
}
