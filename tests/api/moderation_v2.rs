//! Moderation, round two, over real sockets: chat modes (stamps only,
//! established accounts, unique chat, the raid shield) on one node and across
//! two, and blocked terms that see through disguises.

use std::time::Duration;

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// The error code a message gets, or "ack".
async fn outcome(c: &mut WsClient, text: &str) -> String {
    match c.try_say(text).await {
        Ok(_) => "ack".into(),
        Err(v) => v["code"].as_str().unwrap().to_string(),
    }
}

/// Sets modes from a moderator's socket and waits for the notice.
async fn set_modes(m: &mut WsClient, modes: Value) -> Value {
    let mut frame = modes;
    frame["type"] = "modes".into();
    m.send(frame).await;
    loop {
        let v = m.recv().await;
        if v["type"] == "moderation" && v["action"] == "modes" {
            return v;
        }
        assert_ne!(v["type"], "error", "{v}");
    }
}

/// The actions of the last 50 entries of a stream's moderation log.
async fn log_actions(app: &TestApp, stream: i64) -> Vec<String> {
    let log = app.store.moderation_log(&app.tenant.slug, stream, 50);
    log.await.unwrap().into_iter().map(|e| e.action).collect()
}

/// Makes an account look `minutes` old.
async fn age_account(app: &TestApp, username: &str, minutes: i32) {
    app.tenant_sql(
        "UPDATE {s}.accounts_user SET created_at = now() - make_interval(mins => $1) WHERE username = $2",
        &[&minutes, &username],
    )
    .await;
}

#[actix_web::test]
async fn modes_refuse_viewers_and_spare_the_owner() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let [bob, carol] = app.viewers(["bob", "carol"]).await;
    let (mut o, hello, _) = app.ws_ready(stream, Some(&owner.cookie)).await;
    assert_eq!(
        hello["modes"],
        json!({"stamps_only":false,"established_minutes":0,"unique_chat":false,"hold_links":false,"shield":false})
    );
    let mut b = bob.ws(stream).await;
    let (c, _, _) = app.ws_ready(stream, Some(&carol.cookie)).await;

    // A viewer may not set modes.
    b.send(json!({"type":"modes","stamps_only":true})).await;
    assert_eq!(b.expect("error").await["code"], "forbidden");
    o.send(json!({"type":"modes","shield":"yes"})).await;
    assert_eq!(o.expect("error").await["code"], "invalid");

    let notice = set_modes(&mut o, json!({"stamps_only":true})).await;
    assert_eq!(notice["modes"]["stamps_only"], true);
    assert_eq!(b.expect("moderation").await["action"], "modes");
    assert_eq!(outcome(&mut b, "hello").await, "stamps_only");
    b.send(json!({"type":"reaction","stamp_id":1})).await;
    assert_eq!(b.expect("reactions").await["stamps"][0]["count"], 1);
    assert_eq!(outcome(&mut o, "owner speaks").await, "ack");
    let (_, hello, _) = app.ws_ready(stream, Some(&bob.cookie)).await;
    assert_eq!(hello["modes"]["stamps_only"], true, "hello carries modes");

    // Established accounts only: bob is new, carol is a day old.
    set_modes(
        &mut o,
        json!({"stamps_only":false,"established_minutes":10}),
    )
    .await;
    age_account(&app, "carol", 24 * 60).await;
    let refused = b.try_say("hi").await.unwrap_err();
    assert_eq!(refused["code"], "too_new");
    let wait = refused["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 9 * 60_000 && wait <= 10 * 60_000, "{wait}");
    // Carol's socket predates the change of her age: a new one sees it.
    drop(c);
    let mut c = carol.ws(stream).await;
    assert_eq!(outcome(&mut c, "hi").await, "ack");

    // Unique chat: the same text (folded) within 30 s is refused.
    set_modes(&mut o, json!({"established_minutes":0,"unique_chat":true})).await;
    assert_eq!(outcome(&mut b, "GG  WP").await, "ack");
    assert_eq!(outcome(&mut c, "gg wp").await, "duplicate");
    assert_eq!(outcome(&mut c, "ｇｇ ｗｐ").await, "duplicate");
    assert_eq!(outcome(&mut c, "gg wp!!").await, "ack");
    assert_eq!(outcome(&mut o, "gg wp").await, "ack", "the owner is exempt");

    // Every change is in the moderation log.
    let log = log_actions(&app, stream).await;
    assert_eq!(log.iter().filter(|a| *a == "modes").count(), 3);
}

#[actix_web::test]
async fn the_shield_restores_exactly_what_was_there() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let mut o = owner.ws(stream).await;
    o.send(json!({"type":"slow_mode","seconds":5})).await;
    o.expect("moderation").await;
    set_modes(&mut o, json!({"established_minutes":3,"unique_chat":true})).await;

    let on = set_modes(&mut o, json!({"shield":true})).await;
    assert_eq!(on["slow_mode_seconds"], 10);
    assert_eq!(
        on["modes"],
        json!({"stamps_only":false,"established_minutes":10,"unique_chat":true,"hold_links":true,"shield":true})
    );
    let (_, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["slow_mode_seconds"], 10);
    assert_eq!(hello["modes"]["shield"], true);

    let off = set_modes(&mut o, json!({"shield":false})).await;
    assert_eq!(off["slow_mode_seconds"], 5);
    assert_eq!(
        off["modes"],
        json!({"stamps_only":false,"established_minutes":3,"unique_chat":true,"hold_links":false,"shield":false})
    );
    // Persisted: the stream row holds the same.
    let stream_row = app.stored_stream(stream).await;
    assert_eq!(stream_row.slow_mode_seconds, 5);
    assert_eq!(stream_row.modes.modes.established_minutes, 3);
    assert!(stream_row.modes.saved.is_none());
}

#[actix_web::test]
async fn modes_set_on_one_node_hold_on_the_other() {
    let app = spawn_app().await;
    let stream = app.stream_with_viewer_accounts(["bob", "carol"]).await;
    let (_a, ha, _b, hb) = two_nodes(&app, &[]).await;
    let owner = ha.logged_in("owner").await;
    let bob = hb.logged_in("bob").await;
    let carol = ha.logged_in("carol").await;
    let [mut o, mut viewer, mut carol_a] = sockets(stream, [&owner, &bob, &carol]).await;
    set_modes(&mut o, json!({"stamps_only":true})).await;
    let notice = tokio::time::timeout(Duration::from_secs(5), viewer.expect("moderation"))
        .await
        .expect("the modes notice reaches node B (PROTOCOL: within 1 s; 5 s allowed for a loaded machine)");
    assert_eq!(notice["modes"]["stamps_only"], true);
    assert_eq!(outcome(&mut viewer, "hello").await, "stamps_only");

    // Unique chat compares with what was sent through either node.
    set_modes(&mut o, json!({"stamps_only":false,"unique_chat":true})).await;
    let notice = viewer.expect("moderation").await;
    assert_eq!(notice["modes"]["unique_chat"], true);
    carol_a.say("Buy now!!").await;
    assert_eq!(viewer.expect("message").await["message"], "Buy now!!");
    assert_eq!(outcome(&mut viewer, "buy   NOW!!").await, "duplicate");
    assert_eq!(outcome(&mut viewer, "buy later").await, "ack");
    assert_eq!(carol_a.expect("message").await["message"], "buy later");
    assert_eq!(outcome(&mut carol_a, "BUY LATER").await, "duplicate");
}

#[actix_web::test]
async fn disguised_terms_are_blocked() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let bob = app.user("bob", Role::Viewer).await;
    for term in ["spam", "ばか"] {
        owner
            .post_ok(
                &format!("/api/streams/{stream}/blocked_terms"),
                // PROTOCOL.md's body: `action` and `mode` take their defaults.
                json!({ "term": term }),
            )
            .await;
    }
    let mut b = bob.ws(stream).await;
    for disguised in [
        "ｓｐａｍ",     // full-width
        "bye バカ",     // katakana for a hiragana term
        "ﾊﾞｶ",           // half-width katakana
        "spаm",         // Cyrillic а
        "sp\u{200D}am", // zero-width joiner inside
        "5p4m",         // digits for letters
    ] {
        assert_eq!(
            outcome(&mut b, disguised).await,
            "blocked_term",
            "{disguised}"
        );
    }
    for fine in ["ばんかい", "spa day", "バターカレー"] {
        assert_eq!(outcome(&mut b, fine).await, "ack", "{fine}");
    }
}

/// Adds a term to a stream's lists in `mode` (`block` or `hold`).
async fn add_term(app: &TestApp, stream: i64, owner: &TestUser<'_>, term: &str, mode: &str) {
    let path = format!("/api/streams/{stream}/blocked_terms");
    let body = json!({"term":term,"mode":mode});
    owner.on(app).post_ok(&path, body).await;
}

/// The two-node set-up: a stream of `owner`, users `bob` (a viewer) and
/// `mod` (a moderator), and two `stampede serve` nodes with handles.
async fn bob_and_mod_on_two_nodes() -> (TestApp, i64, (Node, TestApp, Node, TestApp)) {
    let app = spawn_app().await;
    let stream = app
        .stream_with_accounts(&[("bob", Role::Viewer), ("mod", Role::Moderator)])
        .await;
    let nodes = two_nodes(&app, &[]).await;
    (app, stream, nodes)
}

/// Reads until a frame of `kind` arrives, failing on any `message` frame
/// meanwhile (a held message must not leak).
async fn expect_without_messages(c: &mut WsClient, kind: &str) -> Value {
    loop {
        let v = c.recv().await;
        assert_ne!(v["type"], "message", "a held message leaked: {v}");
        if v["type"] == kind {
            return v;
        }
    }
}

/// A message held on node A reaches the queue of a moderator on node B;
/// approved on B, it reaches viewers on A once, and its author's ack names
/// the held id. A denial reaches the author as `denied`. Links are held in
/// shield mode. Terms list their mode.
#[actix_web::test]
async fn held_messages_are_reviewed_across_nodes() {
    let (app, stream, (_a, ha, _b, hb)) = bob_and_mod_on_two_nodes().await;
    let owner = ha.logged_in("owner").await;
    add_term(&ha, stream, &owner, "cheap", "hold").await;
    let r = owner
        .get(&format!("/api/streams/{stream}/blocked_terms"))
        .await;
    assert_eq!(
        r.json()["terms"],
        json!([{"term":"cheap","mode":"hold","scope":"stream"}])
    );
    let bob = ha.logged_in("bob").await;
    let moderator = hb.logged_in("mod").await;
    let mut sender = bob.ws(stream).await;
    let (mut watcher, _, _) = ha.ws_ready(stream, None).await;
    let mut m = hb.ws(stream, Some(&moderator.cookie)).await;
    m.expect("hello").await;
    m.expect("history").await;
    assert_eq!(m.expect("held_queue").await["items"], json!([]));

    sender
        .send(json!({"type":"message","message":"CHEAP followers","client_id":"h1"}))
        .await;
    let held = expect_without_messages(&mut sender, "held").await;
    assert_eq!(held["client_id"], "h1");
    let held_id = held["held_id"].as_i64().unwrap();
    let item = tokio::time::timeout(Duration::from_secs(5), m.expect("held"))
        .await
        .expect("the moderator on node B sees the held message");
    assert_eq!(item["held_id"], held_id);
    assert_eq!(item["username"], "bob");
    assert_eq!(item["message"], "CHEAP followers");
    assert_eq!(item["reason"], "term");
    assert!(
        app.stored_ids(stream).await.is_empty(),
        "not stored as chat"
    );

    // A second moderator socket, on node A, finds it in the queue.
    let mut o = ha.ws(stream, Some(&owner.cookie)).await;
    o.expect("history").await;
    let queue = o.expect("held_queue").await;
    assert_eq!(queue["items"][0]["held_id"], held_id);

    // Approved on B: viewers on A get it once, the author's ack names it.
    m.send(json!({"type":"approve","held_id":held_id})).await;
    let shown = watcher.expect("message").await;
    assert_eq!(shown["message"], "CHEAP followers");
    assert_eq!(shown["username"], "bob");
    let ack = sender.expect("ack").await;
    assert_eq!(ack["held_id"], held_id);
    assert_eq!(ack["client_id"], "h1");
    assert_eq!(ack["id"], shown["id"]);
    assert_eq!(
        app.stored_ids(stream).await,
        vec![shown["id"].as_i64().unwrap()]
    );
    let notice = m.expect("moderation").await;
    assert_eq!(
        notice,
        json!({"type":"moderation","action":"approve","held_id":held_id})
    );
    watcher.assert_silent(Duration::from_millis(500)).await;
    // Approving twice finds nothing waiting.
    m.send(json!({"type":"approve","held_id":held_id})).await;
    assert_eq!(m.expect("error").await["code"], "not_found");

    // Denied: the author hears `denied`; nobody else sees anything.
    sender
        .send(json!({"type":"message","message":"so cheap","client_id":"h2"}))
        .await;
    let held2 = expect_without_messages(&mut sender, "held").await["held_id"]
        .as_i64()
        .unwrap();
    assert_eq!(m.expect("held").await["held_id"], held2);
    m.send(json!({"type":"deny","held_id":held2})).await;
    let denied = sender.expect("error").await;
    assert_eq!(denied["code"], "denied");
    assert_eq!(denied["held_id"], held2);
    assert_eq!(denied["client_id"], "h2");
    watcher.assert_silent(Duration::from_millis(500)).await;

    // Shield on: links are held (carol's account is old enough to chat, and
    // she has not spoken yet, so slow mode lets her).
    app.create_user("carol", "password-123", Role::Viewer).await;
    age_account(&app, "carol", 24 * 60).await;
    let carol = ha.logged_in("carol").await;
    let mut owner_socket = o;
    set_modes(&mut owner_socket, json!({"shield":true})).await;
    let mut sender = carol.ws(stream).await;
    sender
        .send(json!({"type":"message","message":"see example.com/deal","client_id":"h3"}))
        .await;
    expect_without_messages(&mut sender, "held").await;
    let item = m.expect("held").await;
    assert_eq!(item["reason"], "link");

    let actions = log_actions(&app, stream).await;
    assert!(actions.contains(&"approve".to_string()), "{actions:?}");
    assert!(actions.contains(&"deny".to_string()), "{actions:?}");
}

/// Held messages live in PostgreSQL: a restarted node still has them in its
/// queue and can approve them; left alone for ten minutes, they are denied.
#[actix_web::test]
async fn held_messages_survive_a_restart_and_expire() {
    let app = spawn_app().await;
    let (stream, node, h) = app.stream_on_node(["bob"], &[]).await;
    let owner = h.logged_in("owner").await;
    add_term(&h, stream, &owner, "cheap", "hold").await;
    let bob = h.logged_in("bob").await;
    let mut sender = bob.ws(stream).await;
    let mut held_ids = Vec::new();
    for (i, text) in ["cheap one", "cheap two"].iter().enumerate() {
        sender
            .send(json!({"type":"message","message":text,"client_id":format!("c{i}")}))
            .await;
        held_ids.push(sender.expect("held").await["held_id"].as_i64().unwrap());
    }
    drop(sender);
    node.signal("-KILL");
    let port = node.port;
    drop(node);
    let node = Node::start(port, &[]).await;
    let mut o = h.ws(stream, Some(&owner.cookie)).await;
    o.expect("history").await;
    let queue = o.expect("held_queue").await;
    let ids: Vec<i64> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["held_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, held_ids, "still held after the restart");
    o.send(json!({"type":"approve","held_id":held_ids[0]}))
        .await;
    assert_eq!(o.expect("message").await["message"], "cheap one");

    // The other one waited too long: it is denied by itself.
    app.tenant_sql(
        "UPDATE {s}.chat_heldmessage SET created_at = now() - interval '11 minutes' WHERE id = $1",
        &[&held_ids[1]],
    )
    .await;
    let bob = h.logged_in("bob").await;
    let mut author = bob.ws(stream).await;
    // The node denies it in its next held round (every 5 s).
    let denied = author.expect("error").await;
    assert_eq!(denied["code"], "denied");
    assert_eq!(denied["held_id"], held_ids[1]);
    let notice = o.expect("moderation").await;
    assert_eq!(notice["action"], "deny");
    drop(node);
}

/// Holds a message of bob's in each of `streams` and makes it look `minutes`
/// old (past the ten minutes a held message waits, with more than ten). Their ids.
async fn hold_aged_messages(app: &TestApp, streams: &[i64], minutes: i32) -> Vec<i64> {
    use stampede::store::{held::NewHeld, messages::MessageBody};
    let bob = app.stored_user("bob").await.unwrap();
    let body = MessageBody {
        content: "cheap pills".into(),
        ..MessageBody::default()
    };
    let mut held = Vec::new();
    for &s in streams {
        let message = NewHeld {
            room_id: app.stored_stream(s).await.room_id,
            user_id: bob.id,
            reason: "term",
            reply_to_id: None,
            body: &body,
        };
        let h = app.store.hold_message(&app.tenant.slug, &message).await;
        held.push(h.unwrap().id);
    }
    app.tenant_sql(
        "UPDATE {s}.chat_heldmessage SET created_at = now() - make_interval(mins => $2) WHERE id = ANY($1)",
        &[&held, &minutes],
    )
    .await;
    held
}

/// Waits until the held messages `ids` are all denied.
async fn await_denied(app: &TestApp, ids: &[i64]) {
    let ids = ids.to_vec();
    eventually("the messages held too long are denied", WAIT, || async {
        let rows = app
            .tenant_sql(
                "SELECT count(*) FROM {s}.chat_heldmessage WHERE id = ANY($1) AND state = 'denied'",
                &[&ids],
            )
            .await;
        (rows[0].get::<_, i64>(0) == ids.len() as i64).then_some(())
    })
    .await;
}

/// Messages whose ten minutes ran out are denied, and logged, by a node
/// serving the tenant, even in a stream no room runs for anywhere (its last
/// socket had gone); a moderator who opens a stream meanwhile never finds
/// one in the queue, where it could no longer be approved.
#[actix_web::test]
async fn messages_held_too_long_are_denied_even_where_no_room_runs() {
    let app = spawn_app().await;
    let stream = app.stream_with_viewer_accounts(["bob"]).await;
    let quiet = app.create_stream("owner").await;
    let held = hold_aged_messages(&app, &[stream, quiet], 11).await;
    let owner = app.logged_in("owner").await;
    let mut o = owner.ws(stream).await;
    let queue = o.expect("held_queue").await;
    assert_eq!(
        queue["items"],
        json!([]),
        "nothing past ten minutes is queued"
    );
    // The room of `stream` runs here; none of `quiet` runs anywhere.
    await_denied(&app, &held).await;
    let notice = o.expect("moderation").await;
    assert_eq!(notice["action"], "deny");
    assert_eq!(notice["held_id"], held[0]);
    for s in [stream, quiet] {
        assert_eq!(log_actions(&app, s).await, vec!["deny".to_string()]);
    }
}

/// A message held twice the ten minutes in a tenant no node has a room of
/// is denied, and logged, by a node's housekeeping round (the first runs as
/// it starts).
#[actix_web::test]
async fn a_message_held_too_long_in_a_tenant_without_rooms_is_denied() {
    let app = spawn_app().await;
    let stream = app.stream_with_viewer_accounts(["bob"]).await;
    let held = hold_aged_messages(&app, &[stream], 21).await;
    let (_node, _) = app.start_node(free_port(), &[]).await;
    await_denied(&app, &held).await;
    assert_eq!(log_actions(&app, stream).await, vec!["deny".to_string()]);
}

/// Hidden on node A, bob's new messages reach only him and moderators, on
/// every node, with `"hidden":true`; nobody else sees them live, in history
/// or in replay, nor hears of their deletion; bob is not told. Unhidden, he
/// is seen again.
#[actix_web::test]
async fn hidden_users_are_seen_only_by_themselves_and_moderators() {
    let (app, stream, (_a, ha, _b, hb)) = bob_and_mod_on_two_nodes().await;
    let owner = ha.logged_in("owner").await;
    let bob = hb.logged_in("bob").await;
    let mut o = owner.ws(stream).await;
    let (mut viewer_a, _, _) = ha.ws_ready(stream, None).await;
    let (mut viewer_b, _, _) = hb.ws_ready(stream, None).await;
    let mut bob_ws = bob.ws(stream).await;

    let mod_b = hb.logged_in("mod").await;
    let mut m_b = mod_b.ws(stream).await;
    o.send(json!({"type":"hide","username":"bob"})).await;
    let notice = o.expect("moderation").await;
    assert_eq!(
        notice,
        json!({"type":"moderation","action":"hide","username":"bob"})
    );
    // Node B has applied it once its moderator hears of it.
    assert_eq!(m_b.expect("moderation").await["action"], "hide");
    bob_ws
        .send(json!({"type":"message","message":"psst","client_id":"p1"}))
        .await;
    let own = bob_ws.expect("message").await;
    assert_eq!(own["hidden"], true);
    assert_eq!(
        bob_ws.expect("ack").await["id"],
        own["id"],
        "acked as usual"
    );
    let seen = tokio::time::timeout(Duration::from_secs(5), o.expect("message"))
        .await
        .expect("the moderator on node A sees it");
    assert_eq!(seen["message"], "psst");
    assert_eq!(seen["hidden"], true);
    viewer_a.assert_silent(Duration::from_millis(700)).await;
    viewer_b.assert_silent(Duration::from_millis(100)).await;
    let (_, _, history) = ha.ws_ready(stream, None).await;
    assert_eq!(history["messages"], json!([]));
    let replay = ha
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await;
    assert_eq!(replay.json()["messages"], json!([]));
    assert_eq!(app.stored_ids(stream).await.len(), 1, "stored, flagged");
    // Bob still sees his message wherever he looks (he is not told), and so
    // do moderators; on either node.
    for node in [&ha, &hb] {
        let (_, _, history) = node.ws_ready(stream, Some(&bob.cookie)).await;
        assert_eq!(history["messages"][0]["message"], "psst", "bob's history");
        assert_eq!(history["messages"][0]["hidden"], true);
        let (_, _, history) = node.ws_ready(stream, Some(&mod_b.cookie)).await;
        assert_eq!(history["messages"][0]["message"], "psst", "a moderator's");
    }
    let own = bob.get(&format!("/api/streams/{stream}/messages")).await;
    assert_eq!(own.json()["messages"][0]["message"], "psst");
    assert!(bob
        .get(&format!("/streams/{stream}"))
        .await
        .body
        .contains("psst"));
    let anonymous_page = ha.get(&format!("/streams/{stream}"), None).await;
    assert!(!anonymous_page.body.contains("psst"));

    // Deleted on node A: only those who saw it hear of it, on either node.
    o.send(json!({"type":"delete","message_id":seen["id"]}))
        .await;
    let deleted = json!({"type":"moderation","action":"delete","message_id":seen["id"]});
    assert_eq!(o.expect("moderation").await, deleted);
    assert_eq!(m_b.expect("moderation").await, deleted);
    assert_eq!(bob_ws.expect("moderation").await, deleted);
    viewer_a.assert_silent(Duration::from_millis(700)).await;
    viewer_b.assert_silent(Duration::from_millis(100)).await;

    o.send(json!({"type":"unhide","username":"bob"})).await;
    o.expect("moderation").await;
    assert_eq!(m_b.expect("moderation").await["action"], "unhide");
    bob_ws
        .send(json!({"type":"message","message":"hello all","client_id":"p2"}))
        .await;
    let shown = viewer_a.expect("message").await;
    assert_eq!(shown["message"], "hello all");
    assert_eq!(shown.get("hidden"), None);
    assert_eq!(viewer_b.expect("message").await["message"], "hello all");
}

/// A held message is the message its author sent: its `reply_to` is checked
/// before it is held (`not_found`), and approved on another node it keeps its
/// reply and mentions, and a hidden author's stays hidden. Past ten minutes a
/// held message can no longer be approved, even before a room's sweep (or,
/// with the room gone, no sweep at all) has denied it.
#[actix_web::test]
async fn a_held_message_keeps_its_reply_mentions_and_hidden_author() {
    let (app, stream, (_a, ha, _b, hb)) = bob_and_mod_on_two_nodes().await;
    let owner = ha.logged_in("owner").await;
    add_term(&ha, stream, &owner, "cheap", "hold").await;
    let bob = ha.logged_in("bob").await;
    let mut sender = bob.ws(stream).await;
    let (mut watcher, _, _) = ha.ws_ready(stream, None).await;
    let moderator = hb.logged_in("mod").await;
    let mut m = moderator.ws(stream).await;
    let first = sender.say("hello").await;
    watcher.expect("message").await;
    m.expect("message").await;

    sender
        .send(json!({"type":"message","message":"cheap @mod","reply_to":999_999}))
        .await;
    assert_eq!(
        expect_without_messages(&mut sender, "error").await["code"],
        "not_found"
    );
    let reply = json!({"type":"message","message":"cheap deal @MOD","reply_to":first});
    sender.send(reply).await;
    let held_id = expect_without_messages(&mut sender, "held").await["held_id"].clone();
    assert_eq!(m.expect("held").await["held_id"], held_id);
    m.send(json!({"type":"approve","held_id":held_id})).await;
    let shown = watcher.expect("message").await;
    assert_eq!(shown["message"], "cheap deal @MOD");
    assert_eq!(shown["reply_to"]["id"], first);
    assert_eq!(shown["reply_to"]["excerpt"], "hello");
    assert_eq!(shown["mentions"], json!(["mod"]));
    assert_eq!(sender.expect("ack").await["held_id"], held_id);
    let replay = ha
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await;
    assert_eq!(replay.json()["messages"][0]["reply_to"]["id"], first);
    assert_eq!(replay.json()["messages"][0]["mentions"], json!(["mod"]));

    // Hidden, bob's held message stays hidden once approved.
    let mut o = owner.ws(stream).await;
    o.send(json!({"type":"hide","username":"bob"})).await;
    o.expect("moderation").await;
    sender.send(json!({"message":"cheap and quiet"})).await;
    let held_id = expect_without_messages(&mut sender, "held").await["held_id"].clone();
    loop {
        let v = m.recv().await;
        if v["type"] == "held" && v["held_id"] == held_id {
            break;
        }
    }
    m.send(json!({"type":"approve","held_id":held_id})).await;
    let own = sender.expect("message").await;
    assert_eq!(
        (own["message"].as_str(), own["hidden"].as_bool()),
        (Some("cheap and quiet"), Some(true))
    );
    let seen = o.expect("message").await;
    assert_eq!(seen["hidden"], true);
    watcher.assert_silent(Duration::from_millis(700)).await;
    let rows = app
        .tenant_sql(
            "SELECT is_hidden FROM {s}.chat_chatmessage WHERE content = 'cheap and quiet'",
            &[],
        )
        .await;
    assert!(rows[0].get::<_, bool>(0), "stored flagged hidden");

    // Past ten minutes: not approvable, not queued.
    o.send(json!({"type":"unhide","username":"bob"})).await;
    o.expect("moderation").await;
    sender.send(json!({"message":"cheap, but late"})).await;
    let held_id = expect_without_messages(&mut sender, "held").await["held_id"].clone();
    app.tenant_sql(
        "UPDATE {s}.chat_heldmessage SET created_at = now() - interval '11 minutes' WHERE id = $1",
        &[&held_id.as_i64().unwrap()],
    )
    .await;
    m.send(json!({"type":"approve","held_id":held_id})).await;
    assert_eq!(m.expect("error").await["code"], "not_found");
    watcher.assert_silent(Duration::from_millis(300)).await;
}

/// Two changes of chat modes made at once may reach a room in either order
/// (from two nodes, or two requests): a change that arrives after a newer one
/// neither undoes it nor tells viewers the old state.
#[actix_web::test]
async fn a_late_modes_change_does_not_undo_a_newer_one() {
    use stampede::{moderation::ModEvent, relay::RelayEvent, rooms::modes::Modes};

    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let (_a, one, _b, _two) = two_nodes(&app, &[]).await;
    let (mut viewer, _, _) = one.ws_ready(stream, None).await;
    one.await_subscribers(stream, 1).await;
    let owner = one.logged_in("owner").await;
    let path = format!("/api/streams/{stream}/moderation");
    let r = owner
        .post(&path, json!({"type":"modes","unique_chat":true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        viewer.expect("moderation").await["modes"]["unique_chat"],
        true
    );

    // What another node publishes for a change it made before that one, late,
    // then a probe on the same channel: once the probe is here, the late
    // change has been handled.
    let relay = one.relay.as_ref().unwrap();
    let channel = format!("{}:room:{}:{stream}", relay.prefix, app.tenant.slug);
    let mut redis = redis::Client::open(relay.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let late = RelayEvent::Moderation {
        event: ModEvent::Modes {
            modes: Modes::default(),
            slow_mode_seconds: 0,
            version: 0,
        },
    };
    let probe = RelayEvent::Announce {
        frame: json!({"type":"probe"}).to_string(),
    };
    for event in [late, probe] {
        let envelope = json!({
            "sent_ms": 0, "node": "late-node", "slug": app.tenant.slug.as_str(),
            "stream": stream, "event": event,
        });
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(envelope.to_string())
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    loop {
        let f = viewer.recv().await;
        if f["type"] == "probe" {
            break;
        }
        assert_ne!(
            f["type"], "moderation",
            "the late change was broadcast: {f}"
        );
    }
    let (_c, hello, _) = one.ws_ready(stream, None).await;
    assert_eq!(hello["modes"]["unique_chat"], true, "{hello}");
}
