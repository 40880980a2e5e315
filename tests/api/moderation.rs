//! Moderation over the socket and over HTTP: rights, delete, pin, timeouts,
//! bans (4003, 403 on reconnect), slow mode, clear, blocked terms, the log,
//! appointed moderators, and state that survives a restart.

use std::time::Duration;

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// Sends a chat message and returns the error frame it got.
async fn refused(c: &mut WsClient, text: &str) -> Value {
    let v = c.try_say(text).await.expect_err("expected a refusal");
    assert_eq!(v["type"], "error", "expected a refusal: {v}");
    v
}

#[actix_web::test]
async fn delete_over_socket_and_http_hides_everywhere() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let viewer = app.user("viewer", Role::Viewer).await;
    let [mut o, mut v] = sockets(stream, [&owner, &viewer]).await;
    let first = v.say("first").await;
    let second = v.say("second").await;
    let third = v.say("third").await;

    // A viewer may not delete.
    v.send(json!({"type":"delete","message_id":first})).await;
    assert_eq!(v.expect("error").await["code"], "forbidden");
    let r = viewer
        .post(
            &format!("/api/streams/{stream}/moderation"),
            json!({"type":"delete","message_id":first}),
        )
        .await;
    assert_eq!(r.status, 403);

    // Over the socket.
    o.send(json!({"type":"delete","message_id":first})).await;
    let m = v.expect("moderation").await;
    assert_eq!(
        m,
        json!({"type":"moderation","action":"delete","message_id":first})
    );
    // Over HTTP (CSRF first).
    let path = format!("/api/streams/{stream}/moderation");
    let r = owner
        .post_without_csrf(&path, json!({"type":"delete","message_id":second}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "csrf");
    let r = owner
        .post_ok(&path, json!({"type":"delete","message_id":second}))
        .await;
    assert_eq!(r.json(), json!({"ok": true}));
    assert_eq!(v.expect("moderation").await["message_id"], second);
    let r = owner
        .post(&path, json!({"type":"delete","message_id":999_999_999}))
        .await;
    assert_eq!(r.status, 404);

    // Gone from history, resume and replay; still in the table, flagged.
    let (_, _, history) = app.ws_ready(stream, None).await;
    assert_eq!(message_ids(&history), vec![third]);
    let mut resumed = app
        .try_ws(stream, None, &format!("?last_id={}", first - 1))
        .await
        .unwrap();
    resumed.recv().await;
    assert_eq!(message_ids(&resumed.recv().await), vec![third]);
    let replay = app
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await
        .json();
    assert_eq!(replay["messages"].as_array().unwrap().len(), 1);
    let page = app.get(&format!("/streams/{stream}"), None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("data-id=\"{third}\"")),
        "the watch page renders the chat"
    );
    for gone in [first, second] {
        assert!(
            !page.body.contains(&format!("data-id=\"{gone}\"")),
            "deleted {gone} is rendered"
        );
    }
    assert_eq!(app.stored_ids(stream).await.len(), 3);
}

#[actix_web::test]
async fn a_streamer_cannot_moderate_another_streamers_stream() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let [other, viewer] = app
        .users([("other", Role::Streamer), ("viewer", Role::Viewer)])
        .await;
    let mut v = viewer.ws(stream).await;
    let id = v.say("hello").await;
    let mut s = other.ws(stream).await;
    s.send(json!({"type":"delete","message_id":id})).await;
    assert_eq!(s.expect("error").await["code"], "forbidden");
    let r = other
        .post(
            &format!("/api/streams/{stream}/moderation"),
            json!({"type":"clear"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = other
        .get(&format!("/api/streams/{stream}/moderation/log"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.get(&format!("/api/streams/{stream}/moderation/log"), None)
            .await
            .status,
        401
    );
}

#[actix_web::test]
async fn pin_unpin_and_hello() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let (mut o, hello, _) = app.ws_ready(stream, Some(&owner.cookie)).await;
    assert_eq!(hello["pinned"], Value::Null);
    let id = o.say("Welcome! Be nice.").await;
    o.send(json!({"type":"pin","message_id":id})).await;
    let p = o.expect("moderation").await;
    assert_eq!(p["action"], "pin");
    assert_eq!(p["message"]["id"], id);
    assert_eq!(p["message"]["message"], "Welcome! Be nice.");
    let (_, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["pinned"]["id"], id);
    o.send(json!({"type":"unpin"})).await;
    assert_eq!(
        o.expect("moderation").await,
        json!({"type":"moderation","action":"unpin"})
    );
    let (_, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["pinned"], Value::Null);
}

#[actix_web::test]
async fn timeout_blocks_chat_until_it_ends() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let bob = app.user("bob", Role::Viewer).await;
    let [mut o, mut b] = sockets(stream, [&owner, &bob]).await;
    o.send(json!({"type":"timeout","username":"bob","seconds":2,"reason":"calm down"}))
        .await;
    let t = b.expect("moderation").await;
    assert_eq!(t["action"], "timeout");
    assert_eq!(t["username"], "bob");
    assert!(t["until"].as_str().unwrap().ends_with('Z'));
    let e = refused(&mut b, "let me talk").await;
    assert_eq!(e["code"], "timed_out");
    assert!(e["retry_after_ms"].as_u64().unwrap() <= 2000);
    assert_eq!(e["until"], t["until"]);
    // A reconnect does not lift it.
    let (mut b2, hello, _) = app.ws_ready(stream, Some(&bob.cookie)).await;
    assert_eq!(hello["can_chat"], false);
    let again = refused(&mut b2, "again").await;
    assert_eq!(again["code"], "timed_out");
    // Waiting out the timeout is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(
        again["retry_after_ms"].as_u64().unwrap() + 100,
    ))
    .await;
    b2.say("I am back").await;
    // Bad durations are refused.
    o.send(json!({"type":"timeout","username":"bob","seconds":0}))
        .await;
    assert_eq!(o.expect("error").await["code"], "invalid");
    o.send(json!({"type":"timeout","username":"nobody","seconds":5}))
        .await;
    assert_eq!(o.expect("error").await["code"], "not_found");
}

#[actix_web::test]
async fn ban_closes_4003_refuses_reconnect_and_unban_lets_back() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let other_stream = app.create_stream("owner").await;
    let bob = app.user("bob", Role::Viewer).await;
    let [mut o, mut b] = sockets(stream, [&owner, &bob]).await;
    let mut b_other = bob.ws(other_stream).await;
    o.send(json!({"type":"ban","username":"bob","reason":"spam"}))
        .await;
    let m = o.expect("moderation").await;
    assert_eq!(
        m,
        json!({"type":"moderation","action":"ban","username":"bob","until":null})
    );
    assert_eq!(b.closed().await, Some(4003));
    assert_eq!(app.ws_refusal(stream, Some(&bob.cookie)).await, Some(403));
    // Who may not watch may not read the chat over HTTP either.
    let reads = [
        format!("/api/streams/{stream}/messages"),
        format!("/api/streams/{stream}/timeline"),
    ];
    for path in &reads {
        let r = bob.get(path).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (403, json!("banned")),
            "{path}"
        );
    }
    assert_eq!(
        bob.get(&format!("/api/streams/{other_stream}/messages"))
            .await
            .status,
        200
    );
    // The watch page says so instead of a page whose socket is refused.
    let page = bob.get(&format!("/streams/{stream}")).await;
    assert_eq!(page.status, 403);
    assert!(page
        .body
        .contains("<p role=\"alert\">You are banned from this stream.</p>"));
    // The ban is for this stream only.
    b_other.say("still fine here").await;
    // Only an admin may ban tenant-wide, or name a scope at all.
    for scope in ["tenant", "stream"] {
        o.send(json!({"type":"ban","username":"bob","scope":scope}))
            .await;
        assert_eq!(o.expect("error").await["code"], "forbidden", "{scope}");
    }
    // The owner may not be banned.
    let admin = app.user("root", Role::Admin).await;
    let mut a = admin.ws(stream).await;
    a.send(json!({"type":"ban","username":"owner"})).await;
    assert_eq!(a.expect("error").await["code"], "forbidden");

    let r = owner
        .post(
            &format!("/api/streams/{stream}/moderation"),
            json!({"type":"unban","username":"bob"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let (mut b, hello, _) = app.ws_ready(stream, Some(&bob.cookie)).await;
    assert_eq!(hello["can_chat"], true);
    b.say("thanks").await;
    for path in &reads {
        assert_eq!(bob.get(path).await.status, 200, "{path}");
    }

    // An admin's tenant-wide ban closes and refuses every stream.
    a.send(json!({"type":"ban","username":"bob","scope":"tenant"}))
        .await;
    assert_eq!(b.closed().await, Some(4003));
    assert_eq!(b_other.closed().await, Some(4003));
    for s in [stream, other_stream] {
        assert_eq!(app.ws_refusal(s, Some(&bob.cookie)).await, Some(403));
    }
}

#[actix_web::test]
async fn tenant_unban_keeps_a_stream_timeout() {
    // PROTOCOL.md: lifting a tenant-wide restriction never lifts a stream-scope one.
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let [bob, admin] = app
        .users([("bob", Role::Viewer), ("root", Role::Admin)])
        .await;
    let bob_id = app.stored_user("bob").await.expect("bob").id;
    let [mut o, mut a, mut b] = sockets(stream, [&owner, &admin, &bob]).await;
    o.send(json!({"type":"timeout","username":"bob","seconds":600}))
        .await;
    assert_eq!(b.expect("moderation").await["action"], "timeout");
    assert_eq!(a.expect("moderation").await["action"], "timeout");
    assert_eq!(refused(&mut b, "hi").await["code"], "timed_out");

    a.send(json!({"type":"unban","username":"bob","scope":"tenant"}))
        .await;
    assert_eq!(
        a.expect("moderation").await,
        json!({"type":"moderation","action":"unban","username":"bob"})
    );
    assert_eq!(b.expect("moderation").await["action"], "unban");
    // The database keeps the stream's timeout...
    let rows = app
        .store
        .restrictions(&app.tenant.slug, stream, Some(bob_id))
        .await
        .unwrap();
    assert!(
        rows.iter().any(|r| !r.is_ban && !r.tenant_wide),
        "the stream's timeout is gone: {rows:?}"
    );
    // ...and so does the room, on the open socket and for a new one.
    assert_eq!(refused(&mut b, "free?").await["code"], "timed_out");
    let (mut b2, hello, _) = app.ws_ready(stream, Some(&bob.cookie)).await;
    assert_eq!(hello["can_chat"], false);
    assert_eq!(refused(&mut b2, "free now?").await["code"], "timed_out");
}

#[actix_web::test]
async fn slow_mode_with_exemptions() {
    // The opening of tenant_unban_keeps_a_stream_timeout, a kit call a step;
    // the rule tested differs.
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let [modr, bob] = app
        .users([("modr", Role::Moderator), ("bob", Role::Viewer)])
        .await;
    let [mut o, mut m, mut b] = sockets(stream, [&owner, &modr, &bob]).await;
    o.send(json!({"type":"slow_mode","seconds":2})).await;
    assert_eq!(
        b.expect("moderation").await,
        json!({"type":"moderation","action":"slow_mode","seconds":2})
    );
    let (_, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["slow_mode_seconds"], 2);
    b.say("one").await;
    let e = refused(&mut b, "two").await;
    assert_eq!(e["code"], "slow_mode");
    let retry = e["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 2000, "{retry}");
    // Moderators and the owner are exempt.
    m.say("mod one").await;
    m.say("mod two").await;
    o.say("owner one").await;
    o.say("owner two").await;
    // Waiting out slow mode is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(retry + 100)).await;
    b.say("two, later").await;
    o.send(json!({"type":"slow_mode","seconds":0})).await;
    b.expect("moderation").await;
    b.say("three").await;
    b.say("four").await;
}

#[actix_web::test]
async fn blocked_terms_catch_disguises_without_false_positives() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let bob = app.user("bob", Role::Viewer).await;
    let path = format!("/api/streams/{stream}/blocked_terms");
    let r = owner
        .post_ok(&path, json!({"term":"spam","action":"add"}))
        .await;
    assert_eq!(
        r.json()["terms"],
        json!([{"term":"spam","mode":"block","scope":"stream"}])
    );
    let r = owner
        .post(&path, json!({"term":"...","action":"add"}))
        .await;
    assert_eq!(r.status, 422);
    let r = owner
        .post(&path, json!({"term":"x","action":"add","scope":"tenant"}))
        .await;
    assert_eq!(r.status, 403);
    let mut b = bob.ws(stream).await;
    let before = app.stored_ids(stream).await.len();
    for msg in [
        "spam",
        "SPAM!!",
        "buy s p a m now",
        "s.p.a.m",
        "sp4m",
        "ｓｐａｍ",
    ] {
        assert_eq!(refused(&mut b, msg).await["code"], "blocked_term", "{msg}");
    }
    assert_eq!(
        app.stored_ids(stream).await.len(),
        before,
        "blocked messages are not stored"
    );
    for clean in [
        "I love this stream",
        "spammer is a word",
        "a s k me anything",
    ] {
        b.say(clean).await;
    }
    let r = owner
        .post(&path, json!({"term":"spam","action":"remove"}))
        .await;
    assert_eq!(r.json()["terms"], json!([]));
    // The room reloads its terms on its own time: try until it lets it through.
    b.say_when_allowed("spam is fine now", WAIT, |_| {}).await;
    assert_eq!(owner.get(&path).await.json()["terms"], json!([]));
}

#[actix_web::test]
async fn clear_and_the_log_in_order() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let bob = app.user("bob", Role::Viewer).await;
    let [mut o, mut b] = sockets(stream, [&owner, &bob]).await;
    let id = b.say("hi").await;
    b.say("hello").await;
    o.send(json!({"type":"pin","message_id":id})).await;
    o.expect("moderation").await;
    o.send(json!({"type":"timeout","username":"bob","seconds":60,"reason":"cool off"}))
        .await;
    o.expect("moderation").await;
    o.send(json!({"type":"slow_mode","seconds":5})).await;
    o.expect("moderation").await;
    o.send(json!({"type":"clear"})).await;
    // bob saw pin, timeout and slow_mode first.
    let mut last = b.expect("moderation").await;
    while last["action"] != "clear" {
        last = b.expect("moderation").await;
    }
    assert_eq!(last, json!({"type":"moderation","action":"clear"}));
    let (_, hello, history) = app.ws_ready(stream, None).await;
    assert_eq!(history["messages"], json!([]));
    assert_eq!(hello["pinned"], Value::Null);
    let log = owner
        .get(&format!("/api/streams/{stream}/moderation/log"))
        .await;
    assert_eq!(log.status, 200);
    let entries = log.json()["entries"].as_array().unwrap().clone();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["clear", "slow_mode", "timeout", "pin"]);
    let timeout = &entries[2];
    assert_eq!(timeout["moderator"], "owner");
    assert_eq!(timeout["target"], "bob");
    assert_eq!(timeout["reason"], "cool off");
    assert_eq!(timeout["seconds"], 60);
    assert_eq!(entries[3]["message_id"], id);
    assert!(entries[0]["created_at"].as_str().unwrap().ends_with('Z'));
}

/// `by` asks to `action` (`add`, `remove`) `username` as a moderator of
/// `stream`: the status and the JSON answer (`Null` when it is not JSON).
async fn change_moderators(
    by: &TestUser<'_>,
    stream: i64,
    username: &str,
    action: &str,
) -> (u16, Value) {
    let path = format!("/api/streams/{stream}/moderators");
    let body = json!({"username":username,"action":action});
    let r = by.post(&path, body).await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn owners_appoint_moderators() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let [helper, bob] = app.viewers(["helper", "bob"]).await;
    let appointed = change_moderators(&helper, stream, "helper", "add").await;
    assert_eq!(appointed.0, 403, "a viewer appoints itself");
    let appointed = change_moderators(&owner, stream, "helper", "add").await;
    assert_eq!(appointed, (200, json!({"moderators":["helper"]})));
    let appointed = change_moderators(&owner, stream, "ghost", "add").await;
    assert_eq!(appointed.0, 404, "an unknown user");
    // Appointed moderators can moderate this stream (after reconnecting).
    let mut b = bob.ws(stream).await;
    let id = b.say("oops").await;
    let mut h = helper.ws(stream).await;
    h.send(json!({"type":"delete","message_id":id})).await;
    assert_eq!(b.expect("moderation").await["message_id"], id);
    // Moderators cannot appoint others.
    let appointed = change_moderators(&helper, stream, "bob", "add").await;
    assert_eq!(appointed.0, 403, "a moderator appoints another");
    let removed = change_moderators(&owner, stream, "helper", "remove").await;
    assert_eq!(removed.1, json!({"moderators":[]}));
}

/// Bans, timeouts, pins and slow mode are in PostgreSQL: a restarted server
/// enforces them.
#[actix_web::test]
async fn moderation_state_survives_a_restart() {
    let app = spawn_app().await;
    let (stream, node, remote) = app.stream_on_node(["bob", "carol"], &[]).await;
    let owner = remote.logged_in("owner").await;
    let carol = remote.logged_in("carol").await;
    let bob = remote.logged_in("bob").await;
    let mut o = owner.ws(stream).await;
    let id = o.say("pinned note").await;
    for frame in [
        json!({"type":"pin","message_id":id}),
        json!({"type":"ban","username":"bob"}),
        json!({"type":"timeout","username":"carol","seconds":600}),
        json!({"type":"slow_mode","seconds":30}),
    ] {
        o.send(frame).await;
        o.expect("moderation").await;
    }
    drop(o);
    let port = node.shut_down();

    let (node, remote) = app.start_node(port, &[]).await;
    assert_eq!(
        remote.ws_refusal(stream, Some(&bob.cookie)).await,
        Some(403)
    );
    let (mut c, hello, _) = remote.ws_ready(stream, Some(&carol.cookie)).await;
    assert_eq!(hello["pinned"]["id"], id);
    assert_eq!(hello["slow_mode_seconds"], 30);
    assert_eq!(hello["can_chat"], false);
    assert_eq!(refused(&mut c, "hi").await["code"], "timed_out");
    drop(node);
}
