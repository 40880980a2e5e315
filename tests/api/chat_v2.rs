//! Chat v2: replies, mentions, edits and search (PROTOCOL.md, "Chat v2").

use std::time::Duration;

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// Reads until an `error` frame; returns its code.
async fn refused(c: &mut WsClient) -> String {
    let f = c.expect("error").await;
    f["code"].as_str().unwrap().to_string()
}

/// Reads `message` frames until the one with `id`.
async fn message_with_id(c: &mut WsClient, id: i64) -> Value {
    loop {
        let f = c.expect("message").await;
        if f["id"] == id {
            return f;
        }
    }
}

#[actix_web::test]
async fn replies_and_mentions_cross_nodes_and_stay_in_history() {
    let app = spawn_app().await;
    let stream = app.stream_with_viewer_accounts(["alice", "Bob"]).await;
    let (_a, ha, _b, hb) = two_nodes(&app, RAISED_LIMITS_ENV).await;
    let alice = ha.logged_in("alice").await;
    let bob = hb.logged_in("Bob").await;
    let [mut ca, mut cb] = sockets(stream, [&alice, &bob]).await;
    hb.await_subscribers(stream, 2).await;

    let long = "x".repeat(100);
    let first = ca
        .say_json(json!({"message": format!("hi @bob and @nobody {long}")}))
        .await;
    let on_b = message_with_id(&mut cb, first).await;
    assert_eq!(on_b["mentions"], json!(["Bob"]));
    assert_eq!(on_b["reply_to"], Value::Null);

    // Bob replies on node B; alice sees it on node A with the excerpt.
    let reply = cb
        .say_json(json!({"message":"hello @ALICE", "reply_to": first}))
        .await;
    let on_a = message_with_id(&mut ca, reply).await;
    let expected_excerpt: String = format!("hi @bob and @nobody {long}")
        .chars()
        .take(80)
        .collect();
    assert_eq!(
        on_a["reply_to"],
        json!({"id": first, "username": "alice", "excerpt": expected_excerpt})
    );
    assert_eq!(on_a["mentions"], json!(["alice"]));

    // History (fresh connect), resume and replay carry both.
    let (_c, _, history) = app.ws_ready(stream, None).await;
    let msgs = history["messages"].as_array().unwrap();
    let h = msgs.iter().find(|m| m["id"] == reply).unwrap();
    assert_eq!(h["reply_to"]["id"], first);
    assert_eq!(h["reply_to"]["excerpt"], expected_excerpt.as_str());
    assert_eq!(h["mentions"], json!(["alice"]));
    let r = app
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await;
    let replay = r.json();
    let replayed = |id: i64| {
        replay["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()
            .clone()
    };
    let m = replayed(reply);
    assert_eq!(m["reply_to"]["username"], "alice");
    assert_eq!(m["mentions"], json!(["alice"]));
    assert_eq!(replayed(first)["mentions"], json!(["Bob"]));
}

#[actix_web::test]
async fn a_user_created_after_the_room_started_is_mentioned() {
    let app = spawn_app().await;
    let (_, _alice, mut ca) = app.stream_with_viewer("alice").await;
    app.create_user("carol", "password-123", Role::Viewer).await;
    // The cache refreshes at most every `REFRESH_EVERY` (a constant) and the
    // room's first load was just now: waiting it out is part of the test.
    let refresh = stampede::rooms::mentions::REFRESH_EVERY;
    tokio::time::sleep(refresh + Duration::from_millis(100)).await;
    // The room loaded its usernames before carol existed: the miss refreshes
    // the cache, and the message waits for it (and the next one behind it).
    ca.send(json!({"message":"hey @carol", "client_id":"c1"}))
        .await;
    ca.send(json!({"message":"second", "client_id":"c2"})).await;
    let first = ca.expect("message").await;
    assert_eq!(first["message"], "hey @carol");
    assert_eq!(first["mentions"], json!(["carol"]));
    assert_eq!(ca.expect("message").await["message"], "second");
    assert_eq!(ca.expect("ack").await["client_id"], "c2");
    // An unknown name does not hold chat up for long.
    let m = ca.say_frame(json!({"message":"hey @nobody"})).await;
    assert_eq!(m["mentions"], json!([]));
}

#[actix_web::test]
async fn replies_to_deleted_or_foreign_messages_are_refused() {
    // The opening of moderation's ban test (two streams, a viewer), a kit
    // call a step; the rule tested differs.
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let other = app.create_stream("owner").await;
    let alice = app.user("alice", Role::Viewer).await;
    let mut co = owner.ws(stream).await;
    let mut cx = owner.ws(other).await;
    let mut ca = alice.ws(stream).await;

    let foreign = cx.say_json(json!({"message":"elsewhere"})).await;
    let gone = co.say_json(json!({"message":"soon deleted"})).await;
    co.send(json!({"type":"delete","message_id": gone})).await;
    co.expect("moderation").await;

    for target in [foreign, gone, 999_999_999] {
        ca.send(json!({"message":"re", "reply_to": target})).await;
        assert_eq!(refused(&mut ca).await, "not_found", "reply to {target}");
    }
    // Also after the room forgot it: a fresh room reads PostgreSQL.
    let ok = ca
        .say_json(json!({"message":"fine", "reply_to": null}))
        .await;
    assert!(ok > 0);
    let before = app.stored_ids(stream).await.len();
    ca.send(json!({"message":"re", "reply_to": "x"})).await;
    assert_eq!(refused(&mut ca).await, "invalid");
    assert_eq!(app.stored_ids(stream).await.len(), before);
}

/// Connects with `?last_id=` and returns the resumed history's messages.
async fn resumed(app: &TestApp, stream: i64, last_id: i64) -> Vec<Value> {
    let mut c = connect(
        &app.address,
        &app.tenant.host,
        stream,
        None,
        None,
        &format!("?last_id={last_id}"),
    )
    .await
    .expect("connect");
    assert_eq!(c.recv().await["type"], "hello");
    let h = c.recv().await;
    assert_eq!(h["type"], "history");
    h["messages"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn edits_reach_every_node_and_every_history() {
    // The cross-node opening of the replies test, a kit call a step; the
    // rule tested differs.
    let app = spawn_app().await;
    let stream = app.stream_with_viewer_accounts(["alice", "bob"]).await;
    let (_a, ha, _b, hb) = two_nodes(&app, RAISED_LIMITS_ENV).await;
    let alice = ha.logged_in("alice").await;
    let bob = hb.logged_in("bob").await;
    let owner = app.logged_in("owner").await;
    let [mut ca, mut cb] = sockets(stream, [&alice, &bob]).await;
    hb.await_subscribers(stream, 2).await;

    let before = cb.say_json(json!({"message":"before"})).await;
    let id = ca.say_json(json!({"message":"helo wrld"})).await;
    message_with_id(&mut cb, id).await;
    ca.send(json!({"type":"edit","message_id": id, "message":"  hello @bob\r\n"}))
        .await;
    for c in [&mut ca, &mut cb] {
        let e = c.expect("edit").await;
        assert_eq!(e["message_id"], id);
        assert_eq!(e["message"], "hello @bob");
        assert_eq!(e["mentions"], json!(["bob"]));
        assert!(e["edited_at"].as_str().unwrap().ends_with('Z'));
    }
    // Resume on either node (served from each room's ring) and on the replay API.
    for node in [&ha, &hb] {
        let msgs = resumed(node, stream, before).await;
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0]["message"], "hello @bob");
        assert!(msgs[0]["edited_at"].is_string());
        assert_eq!(msgs[0]["mentions"], json!(["bob"]));
    }
    let replay = app
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await
        .json();
    let msgs = replay["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["message"], "hello @bob");
    assert!(msgs[0]["edited_at"].is_string());
    assert_eq!(msgs[1]["edited_at"], Value::Null, "never edited");
    // A second edit; then the earlier versions, for moderators only.
    ca.send(json!({"type":"edit","message_id": id, "message":"hello @bob!"}))
        .await;
    cb.expect("edit").await;
    let path = format!("/api/streams/{stream}/messages/{id}/versions");
    let v = owner.get(&path).await;
    assert_eq!(v.status, 200, "{}", v.body);
    let texts: Vec<&str> = v.json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["message"].as_str().unwrap().to_string().leak() as &str)
        .collect();
    assert_eq!(texts, vec!["helo wrld", "hello @bob", "hello @bob!"]);
    assert_eq!(app.get(&path, Some(&alice.cookie)).await.status, 403);
    assert_eq!(app.get(&path, None).await.status, 401);
    // Another stream's path does not find it.
    let other = app.create_stream("owner").await;
    let path = format!("/api/streams/{other}/messages/{id}/versions");
    assert_eq!(owner.get(&path).await.status, 404);
}

#[actix_web::test]
async fn edits_are_refused_when_late_foreign_deleted_or_blocked() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let [alice, bob] = app.viewers(["alice", "bob"]).await;
    let [mut co, mut ca, mut cb] = sockets(stream, [&owner, &alice, &bob]).await;
    owner
        .post_ok(
            &format!("/api/streams/{stream}/blocked_terms"),
            json!({"term":"spam","action":"add"}),
        )
        .await;

    let id = ca.say_json(json!({"message":"original"})).await;
    // Someone else's message.
    cb.send(json!({"type":"edit","message_id": id, "message":"mine now"}))
        .await;
    assert_eq!(refused(&mut cb).await, "forbidden");
    // A blocked term in the new text, checked like a new message.
    ca.send(json!({"type":"edit","message_id": id, "message":"buy SPAM"}))
        .await;
    assert_eq!(refused(&mut ca).await, "blocked_term");
    // Empty, unknown.
    ca.send(json!({"type":"edit","message_id": id, "message":"  "}))
        .await;
    assert_eq!(refused(&mut ca).await, "empty");
    ca.send(json!({"type":"edit","message_id": 999_999_999, "message":"x"}))
        .await;
    assert_eq!(refused(&mut ca).await, "not_found");
    // Past the 120 s window (the message's time set back in PostgreSQL).
    app.tenant_sql(
        "UPDATE {s}.chat_chatmessage SET created_at = now() - interval '121 seconds' WHERE id = $1",
        &[&id],
    )
    .await;
    ca.send(json!({"type":"edit","message_id": id, "message":"too late"}))
        .await;
    assert_eq!(refused(&mut ca).await, "edit_window");
    // Deleted meanwhile.
    let id2 = ca.say_json(json!({"message":"second"})).await;
    co.send(json!({"type":"delete","message_id": id2})).await;
    co.expect("moderation").await;
    ca.expect("moderation").await;
    ca.send(json!({"type":"edit","message_id": id2, "message":"edited"}))
        .await;
    assert_eq!(refused(&mut ca).await, "not_found");
    // Nothing was changed, and no edit frame went out.
    co.assert_silent(Duration::from_millis(300)).await;
    let replay = app
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await
        .json();
    let m = &replay["messages"].as_array().unwrap()[0];
    assert_eq!(m["id"], id);
    assert_eq!(m["message"], "original");
    assert_eq!(m["edited_at"], Value::Null);
    // Anonymous sockets cannot edit.
    let (mut anon, _, _) = app.ws_ready(stream, None).await;
    anon.send(json!({"type":"edit","message_id": id, "message":"x"}))
        .await;
    assert_eq!(refused(&mut anon).await, "not_authenticated");
}

#[actix_web::test]
async fn search_finds_japanese_substrings_folds_case_and_kana_and_flags_deleted() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let other = app.create_stream("owner").await;
    let [alice, admin] = app
        .users([("alice", Role::Viewer), ("root", Role::Admin)])
        .await;
    let [mut co, mut ca] = sockets(stream, [&owner, &alice]).await;
    let mut cx = alice.ws(other).await;

    let jp = ca.say_json(json!({"message":"こんにちは、みなさん"})).await;
    let live = ca.say_json(json!({"message":"今日のライブ最高"})).await;
    let hello = co.say_json(json!({"message":"Hello World"})).await;
    let gone = ca
        .say_json(json!({"message":"hello again, soon deleted"}))
        .await;
    let edited = ca.say_json(json!({"message":"typo"})).await;
    let elsewhere = cx
        .say_json(json!({"message":"hello from the other stream"}))
        .await;
    co.send(json!({"type":"delete","message_id": gone})).await;
    co.expect("moderation").await;
    ca.send(json!({"type":"edit","message_id": edited, "message":"らいぶ fixed"}))
        .await;
    ca.expect("edit").await;

    let search = |q: &str| format!("/api/streams/{stream}/search?{q}");
    let r = owner.get(&search("q=%E3%81%AB%E3%81%A1")).await; // にち
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(message_ids(&r.json()), vec![jp]);
    // Katakana and hiragana as one, newest first; the edited text is searched.
    let r = owner.get(&search("q=%E3%83%A9%E3%82%A4%E3%83%96")).await; // ライブ
    assert_eq!(message_ids(&r.json()), vec![edited, live]);
    let r = owner.get(&search("q=typo")).await;
    assert_eq!(
        message_ids(&r.json()),
        Vec::<i64>::new(),
        "old text not found"
    );
    // Case folded; deleted messages included and flagged; other streams not.
    let r = owner.get(&search("q=hello")).await;
    let v = r.json();
    assert_eq!(message_ids(&v), vec![gone, hello]);
    assert_eq!(v["messages"][0]["is_deleted"], true);
    assert_eq!(v["messages"][0]["hidden"], false);
    assert_eq!(v["messages"][1]["is_deleted"], false);
    assert_eq!(v["messages"][1]["message"], "Hello World");
    assert_eq!(v["messages"][1]["stream_id"], stream);
    // By user, with and without text; paging.
    let r = owner.get(&search("user=ALICE&limit=2")).await;
    let v = r.json();
    assert_eq!(message_ids(&v), vec![edited, gone]);
    assert_eq!(v["next_before_id"], gone);
    let r = owner
        .get(&search(&format!("user=alice&limit=2&before_id={gone}")))
        .await;
    assert_eq!(message_ids(&r.json()), vec![live, jp]);
    let r = owner.get(&search("user=owner&q=HELLO")).await;
    assert_eq!(message_ids(&r.json()), vec![hello]);
    // Wildcards are literal.
    let r = owner.get(&search("q=%25%25")).await;
    assert_eq!(message_ids(&r.json()), Vec::<i64>::new());
    // Refusals: viewers 403, anonymous 401, bad queries 422.
    assert_eq!(alice.get(&search("q=hello")).await.status, 403);
    assert_eq!(app.get(&search("q=hello"), None).await.status, 401);
    assert_eq!(owner.get(&search("q=h")).await.status, 422);
    assert_eq!(owner.get(&search("")).await.status, 422);
    assert_eq!(owner.get(&search("q=hi&limit=0")).await.status, 422);
    // Tenant-wide, admins only.
    let r = admin.get("/api/search?q=hello").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(message_ids(&v), vec![elsewhere, gone, hello]);
    assert_eq!(v["messages"][0]["stream_id"], other);
    assert_eq!(owner.get("/api/search?q=hello").await.status, 403);
    assert_eq!(app.get("/api/search?q=hello", None).await.status, 401);
}

#[actix_web::test]
async fn search_pages_through_a_long_history_with_every_plan() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let s = app.tenant.slug.schema();
    let c = app.store.client().await.unwrap();
    // 12,001 messages: an old needle, then filler with a term every 400th.
    c.batch_execute(&format!(
        "INSERT INTO {s}.chat_chatmessage (room_id, content, message_type, seq, search_text) \
         SELECT r.id, t.content, 'message', g, {s}.chat_fold(t.content) \
         FROM {s}.chat_chatroom r, generate_series(1, 12001) g, \
         LATERAL (SELECT CASE WHEN g = 1 THEN 'an old ニードル here' \
                              WHEN g % 400 = 0 THEN 'a Medium term ' || g \
                              ELSE 'filler ' || g END AS content) t \
         WHERE r.stream_id = {stream}; \
         UPDATE {s}.chat_chatroom SET last_seq = 12001 WHERE stream_id = {stream};"
    ))
    .await
    .unwrap();
    let expected: Vec<i64> = c
        .query(
            &format!(
                "SELECT m.id FROM {s}.chat_chatmessage m JOIN {s}.chat_chatroom r ON r.id = m.room_id \
                 WHERE r.stream_id = $1 AND m.content LIKE 'a Medium%' ORDER BY m.id DESC"
            ),
            &[&stream],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 30);
    // Older than the first window: found through the index.
    let r = app
        .get(
            &format!("/api/streams/{stream}/search?q=%E3%81%AB%E3%83%BC%E3%81%A9"), // にーど
            Some(&owner.cookie),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["messages"][0]["message"], "an old ニードル here");
    // A term of every 400th row, paged 7 at a time and in one page of 50.
    let mut got = Vec::new();
    let mut before = String::new();
    loop {
        let v = owner
            .get(&format!(
                "/api/streams/{stream}/search?q=medium&limit=7{before}"
            ))
            .await
            .json();
        got.extend(message_ids(&v));
        match v["next_before_id"].as_i64() {
            Some(n) => before = format!("&before_id={n}"),
            None => break,
        }
    }
    assert_eq!(got, expected);
    let v = owner
        .get(&format!("/api/streams/{stream}/search?q=MEDIUM+term"))
        .await
        .json();
    assert_eq!(message_ids(&v), expected);
    assert_eq!(v["next_before_id"], Value::Null);
}

#[actix_web::test]
async fn hidden_users_replies_edits_and_search_stay_with_moderators() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let [alice, troll] = app.viewers(["alice", "troll"]).await;
    let [mut co, mut ca, mut ct] = sockets(stream, [&owner, &alice, &troll]).await;
    co.send(json!({"type":"hide","username":"troll"})).await;
    // The room applies the hide before it tells the moderators.
    co.expect("moderation").await;

    let id = ct.say_json(json!({"message":"hidden text"})).await;
    assert_eq!(message_with_id(&mut co, id).await["hidden"], true);
    // Nobody else can reply to it: its text would show in the excerpt.
    ca.send(json!({"message":"re", "reply_to": id})).await;
    assert_eq!(refused(&mut ca).await, "not_found");
    // Its edit goes to the author and moderators only.
    ct.send(json!({"type":"edit","message_id": id, "message":"hidden, edited"}))
        .await;
    assert_eq!(ct.expect("edit").await["message"], "hidden, edited");
    assert_eq!(co.expect("edit").await["message"], "hidden, edited");
    ca.assert_silent(Duration::from_millis(400)).await;
    // Moderators find it, flagged.
    let v = owner
        .get(&format!("/api/streams/{stream}/search?q=edited"))
        .await
        .json();
    assert_eq!(message_ids(&v), vec![id]);
    assert_eq!(v["messages"][0]["hidden"], true);
    assert_eq!(v["messages"][0]["is_deleted"], false);
}
