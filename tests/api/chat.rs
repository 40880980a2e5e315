//! Real-time chat over real sockets: handshake checks, messages stored then
//! broadcast, acks and idempotency, validation, limits and close codes,
//! history and resume, presence, replay API, stream status.

use std::time::Duration;

use awc::ws;
use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

#[actix_web::test]
async fn two_clients_see_each_others_messages_with_ids() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let [alice, bob] = app.viewers(["alice", "bob"]).await;
    let (mut a, hello, history) = app.ws_ready(stream, Some(&alice.cookie)).await;
    assert_eq!(hello["stream_id"], stream);
    assert_eq!(hello["user"]["username"], "alice");
    assert_eq!(hello["can_chat"], true);
    assert_eq!(hello["stamps"].as_array().unwrap().len(), 6);
    assert_eq!(history["messages"], json!([]));
    assert_eq!(history["truncated"], false);
    let (mut b, hello_b, _) = app.ws_ready(stream, Some(&bob.cookie)).await;
    assert_eq!(hello_b["viewers"], 2);

    a.send(json!({"type":"message","message":"  hello <b>bob</b>  ","client_id":"c-1"}))
        .await;
    let got_b = b.expect("message").await;
    let got_a = a.expect("message").await;
    assert_eq!(got_a, got_b);
    assert_eq!(got_b["username"], "alice");
    assert_eq!(got_b["message"], "hello <b>bob</b>");
    assert_eq!(got_b["message_type"], "message");
    assert_eq!(got_b["role"], "viewer");
    assert_eq!(got_b["client_id"], "c-1");
    let ts = got_b["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    let id = got_b["id"].as_i64().unwrap();
    let ack = a.expect("ack").await;
    assert_eq!(ack, json!({"type":"ack","client_id":"c-1","id":id}));
    assert_eq!(app.stored_ids(stream).await, vec![id]);

    b.send(json!({"message":"hi alice"})).await;
    let m = a.expect("message").await;
    assert_eq!(m["username"], "bob");
    assert!(m["id"].as_i64().unwrap() > id);
    assert_eq!(b.expect("message").await["client_id"], Value::Null);
    assert_eq!(b.expect("ack").await["client_id"], Value::Null);
}

/// The seed's client speaks only `{"message": ...}` and reads username,
/// message, message_type and timestamp.
#[actix_web::test]
async fn seed_protocol_client_works_unchanged() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let alice = app.user("alice", Role::Viewer).await;
    let mut c = app.ws(stream, Some(&alice.cookie)).await;
    c.send(json!({"message":"こんにちは"})).await;
    let m = c.expect("message").await;
    for k in ["username", "message", "message_type", "timestamp"] {
        assert!(m.get(k).is_some(), "{k} missing in {m}");
    }
    assert_eq!(m["message"], "こんにちは");
}

#[actix_web::test]
async fn duplicate_client_id_is_acked_stored_and_broadcast_once() {
    let app = spawn_app().await;
    let (stream, alice, mut a) = app.stream_with_viewer("alice").await;
    let (mut watcher, _, _) = app.ws_ready(stream, None).await;
    // Twice back to back (the second may arrive while the first is in flight),
    // then again on a new socket after the room has it.
    a.send(json!({"type":"message","message":"once","client_id":"dup-1"}))
        .await;
    a.send(json!({"type":"message","message":"once","client_id":"dup-1"}))
        .await;
    let first = a.expect("ack").await["id"].as_i64().unwrap();
    assert_eq!(a.expect("ack").await["id"].as_i64().unwrap(), first);
    let mut a2 = alice.ws(stream).await;
    a2.send(json!({"type":"message","message":"once","client_id":"dup-1"}))
        .await;
    assert_eq!(a2.expect("ack").await["id"].as_i64().unwrap(), first);
    assert_eq!(
        watcher.expect("message").await["id"].as_i64().unwrap(),
        first
    );
    watcher.assert_silent(Duration::from_millis(500)).await;
    assert_eq!(app.stored_ids(stream).await, vec![first]);
}

/// The database enforces idempotency: a room restarted (empty memory) still
/// acks a repeated client_id with the first id.
#[actix_web::test]
async fn duplicate_client_id_survives_room_restart() {
    let app = spawn_app_with(|s| s.chat.room_idle_secs = 0).await;
    let (stream, alice, mut a) = app.stream_with_viewer("alice").await;
    a.send(json!({"type":"message","message":"x","client_id":"k-9"}))
        .await;
    let first = a.expect("ack").await["id"].as_i64().unwrap();
    drop(a);
    // The empty room stops (after its presence timer and `room_idle_secs` 0).
    eventually("the empty room stops", WAIT, || async {
        (app.metric("stampede_rooms").await == 0).then_some(())
    })
    .await;
    let (mut a, _, history) = app.ws_ready(stream, Some(&alice.cookie)).await;
    assert_eq!(history["messages"][0]["id"], first);
    a.send(json!({"type":"message","message":"x","client_id":"k-9"}))
        .await;
    assert_eq!(a.expect("ack").await["id"].as_i64().unwrap(), first);
    assert_eq!(app.stored_ids(stream).await, vec![first]);
}

#[actix_web::test]
async fn every_validation_error_has_its_code() {
    let app = spawn_app().await;
    let (stream, _alice, mut a) = app.stream_with_viewer("alice").await;
    let cases = [
        (json!({"message":" \t\r\n "}).to_string(), "empty"),
        (json!({"message": "あ".repeat(501)}).to_string(), "too_long"),
        ("{not json".to_string(), "invalid_json"),
        (json!({"type":"dance"}).to_string(), "unknown_type"),
        (
            json!({"message":"x","client_id":"c".repeat(65)}).to_string(),
            "invalid",
        ),
        (json!({"message": 5}).to_string(), "invalid"),
    ];
    for (frame, code) in cases {
        a.send_raw(ws::Message::Text(frame.clone().into())).await;
        let e = a.expect("error").await;
        assert_eq!(e["code"], code, "{frame}");
        assert!(e["message"].as_str().unwrap().len() > 3);
    }
    // 500 characters exactly is fine.
    a.send(json!({"message": "あ".repeat(500)})).await;
    assert_eq!(
        a.expect("message").await["message"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        500
    );
    assert_eq!(app.stored_ids(stream).await.len(), 1);
}

#[actix_web::test]
async fn chat_rate_limit_per_user() {
    let app = spawn_app().await; // 5 per 10 s, burst 5
    let (stream, _alice, mut a) = app.stream_with_viewer("alice").await;
    for i in 0..6 {
        a.send(json!({"type":"message","message":format!("m{i}"),"client_id":format!("r{i}")}))
            .await;
    }
    let mut acks = 0;
    loop {
        let v = a.recv().await;
        match v["type"].as_str().unwrap() {
            "ack" => acks += 1,
            "error" => {
                assert_eq!(v["code"], "rate_limited");
                assert_eq!(v["client_id"], "r5");
                let retry = v["retry_after_ms"].as_u64().unwrap();
                assert!(retry > 0 && retry <= 2000, "{retry}");
                break;
            }
            _ => {}
        }
    }
    while acks < 5 {
        if a.recv().await["type"] == "ack" {
            acks += 1;
        }
    }
    assert_eq!(app.stored_ids(stream).await.len(), 5);
}

#[actix_web::test]
async fn anonymous_viewers_read_only_or_refused() {
    let app = spawn_app_with(|s| s.session.recheck_secs = 1).await;
    let stream = app.create_stream("owner").await;
    let alice = app.user("alice", Role::Viewer).await;
    let (mut anon, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["user"], Value::Null);
    assert_eq!(hello["can_chat"], false);
    anon.send(json!({"message":"let me in"})).await;
    assert_eq!(anon.expect("error").await["code"], "not_authenticated");
    anon.send(json!({"type":"reaction","stamp_id":1})).await;
    assert_eq!(anon.expect("error").await["code"], "not_authenticated");
    // Moderation is for moderators: anyone else, anonymous too, is forbidden.
    anon.send(json!({"type":"clear"})).await;
    assert_eq!(anon.expect("error").await["code"], "forbidden");
    let mut a = alice.ws(stream).await;
    a.send(json!({"message":"visible to all"})).await;
    assert_eq!(anon.expect("message").await["message"], "visible to all");
    assert_eq!(app.stored_ids(stream).await.len(), 1);

    app.configure_tenant(Some(false), None).await;
    // Until the host cache expires an anonymous socket still opens.
    eventually("anonymous sockets are refused with 401", WAIT, || async {
        (app.ws_refusal(stream, None).await == Some(401)).then_some(())
    })
    .await;
    assert_eq!(app.ws_refusal(stream, Some(&alice.cookie)).await, None);
    // The anonymous socket already open is closed too (within
    // `session.recheck_secs`), alice's stays.
    assert_eq!(anon.closed().await, Some(4001));
    a.say("still here").await;
}

/// A deleted tenant's open sockets, logged in or not, are closed (4001)
/// rather than left on rooms whose schema is gone.
#[actix_web::test]
async fn a_deleted_tenant_s_sockets_are_closed() {
    let app = spawn_app_with(|s| s.session.recheck_secs = 1).await;
    let (stream, _alice, mut a) = app.stream_with_viewer("alice").await;
    let (mut anon, _, _) = app.ws_ready(stream, None).await;
    app.store.delete_tenant(&app.tenant.slug).await.unwrap();
    assert_eq!(anon.closed().await, Some(4001));
    assert_eq!(a.closed().await, Some(4001));
}

#[actix_web::test]
async fn handshake_checks_and_status_codes() {
    let app = spawn_app_with(|s| {
        s.server.allowed_origins = vec!["https://embed.example.org".into()];
        s.limits.max_connections_per_ip = 3;
    })
    .await;
    let stream = app.create_stream("owner").await;
    let h = app.tenant.host.clone();
    let refused = |r: Result<WsClient, Refused>| r.err().map(|e| e.0);
    assert_eq!(
        refused(connect(&app.address, "nobody.test", stream, None, None, "").await),
        Some(404)
    );
    for bad in [
        "http://evil.example.com".to_string(),
        format!("https://{h}.evil.com"),
        format!("https://evil.com/{h}"),
        "null".to_string(),
    ] {
        assert_eq!(
            refused(connect(&app.address, &h, stream, None, Some(&bad), "").await),
            Some(403),
            "{bad}"
        );
    }
    assert_eq!(
        refused(connect(&app.address, &h, 999_999, None, None, "").await),
        Some(404)
    );
    // Own domain (any port, any case), configured origins, and no Origin at all.
    let _a = connect(
        &app.address,
        &h,
        stream,
        None,
        Some(&format!("https://{}:8443", h.to_uppercase())),
        "",
    )
    .await
    .unwrap();
    let _b = connect(
        &app.address,
        &h,
        stream,
        None,
        Some("https://embed.example.org"),
        "",
    )
    .await
    .unwrap();
    let _c = connect(&app.address, &h, stream, None, None, "")
        .await
        .unwrap();
    // A fourth socket from this IP is over the cap.
    assert_eq!(
        refused(connect(&app.address, &h, stream, None, None, "").await),
        Some(429)
    );
    drop(_c);
    eventually("the slot is given back", WAIT, || async {
        connect(&app.address, &h, stream, None, None, "").await.ok()
    })
    .await;
}

#[actix_web::test]
async fn protocol_violations_close_with_the_right_codes() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let alice = app.user("alice", Role::Viewer).await;
    let path = format!("/ws/chat/stream_{stream}/");

    // Over 16 KiB: 1009.
    let mut c = app.ws(stream, Some(&alice.cookie)).await;
    c.send_raw(ws::Message::Text("x".repeat(16 * 1024 + 1).into()))
        .await;
    assert_eq!(c.closed().await, Some(1009));
    // Fragments adding up to over 16 KiB: 1009.
    let mut raw = RawWs::connect(&app, &path, Some(&alice.cookie), None).await;
    raw.send_frame(1, &[b'a'; 10_000], false).await;
    raw.send_frame(0, &[b'a'; 10_000], true).await;
    assert_eq!(raw.close_code().await, Some(1009));
    // Binary: 1003.
    let mut c = app.ws(stream, Some(&alice.cookie)).await;
    c.send_raw(ws::Message::Binary(vec![1u8, 2, 3].into()))
        .await;
    assert_eq!(c.closed().await, Some(1003));
    // Invalid UTF-8: 1007.
    let mut raw = RawWs::connect(&app, &path, Some(&alice.cookie), None).await;
    raw.send_frame(1, &[0x7b, 0xff, 0xfe, 0x7d], true).await;
    assert_eq!(raw.close_code().await, Some(1007));
    // Twenty invalid frames within 10 s: 1008; nineteen are tolerated.
    let mut c = app.ws(stream, Some(&alice.cookie)).await;
    for _ in 0..19 {
        c.send_raw(ws::Message::Text("nope".into())).await;
    }
    for _ in 0..19 {
        assert_eq!(c.expect("error").await["code"], "invalid_json");
    }
    c.send(json!({"type":"bogus"})).await;
    assert_eq!(c.closed().await, Some(1008));
    // Other codes do not count towards the budget.
    let mut c = alice.ws(stream).await;
    for _ in 0..25 {
        c.send(json!({"message":""})).await;
    }
    for _ in 0..25 {
        assert_eq!(c.expect("error").await["code"], "empty");
    }
    c.send(json!({"message":"still here"})).await;
    assert_eq!(c.expect("message").await["message"], "still here");
}

/// A node with raised chat limits and a stream on which viewer `alice` has
/// said `n` messages `"{prefix}{i}"`: the node, the stream, her socket (still
/// open) and the stored message ids, ascending.
async fn alice_said(prefix: &str, n: usize) -> (TestApp, i64, WsClient, Vec<i64>) {
    let app = AppBuilder::new().raised_limits().spawn().await;
    let (stream, _alice, mut a) = app.stream_with_viewer("alice").await;
    a.say_many(prefix, n).await;
    let ids = app.stored_ids(stream).await;
    (app, stream, a, ids)
}

#[actix_web::test]
async fn history_is_the_last_fifty_visible_messages() {
    let (app, stream, _alice_ws, ids) = alice_said("n", 60).await;
    let (_, _, history) = app.ws_ready(stream, None).await;
    assert_eq!(message_ids(&history), ids[10..].to_vec());
    assert_eq!(history["truncated"], true);
    assert_eq!(history["messages"][49]["message"], "n59");
}

/// A reader that disconnects and resumes with `last_id` while another client
/// keeps sending ends up with exactly the stored messages, whether the resume
/// is served from the room's memory or from PostgreSQL (tiny ring).
#[actix_web::test]
async fn resume_misses_nothing_under_concurrent_sends() {
    for ring_size in [500usize, 3] {
        let app = AppBuilder::new()
            .raised_limits()
            .with(move |s| {
                s.chat.ring_size = ring_size;
            })
            .spawn()
            .await;
        let stream = app.create_stream("owner").await;
        let [alice, bob] = app.viewers(["alice", "bob"]).await;
        let total = 120;
        let mut sender = alice.ws(stream).await;
        // Sending starts once bob's first history is in: what came before it
        // would be beyond a tiny ring's first history, not a missed message.
        let (go, ready) = tokio::sync::oneshot::channel::<()>();
        let mut go = Some(go);
        let send = actix_rt::spawn(async move {
            ready.await.unwrap();
            for i in 0..total {
                sender
                    .send(json!({"type":"message","message":format!("s{i}"),"client_id":format!("s{i}")}))
                    .await;
                if i % 10 == 0 {
                    // Pacing: the sends must overlap the reader's resumes.
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
            for _ in 0..total {
                sender.expect("ack").await;
            }
        });
        let mut seen: Vec<i64> = Vec::new();
        let mut last_id: Option<i64> = None;
        // Resumed after its `hello`. A node that cannot read the history
        // now (a loaded database) closes with 1012, and the client
        // reconnects with the same `last_id`, as PROTOCOL.md's clients do.
        let resume = |last_id: Option<i64>| {
            let query = last_id.map(|l| format!("?last_id={l}")).unwrap_or_default();
            let (app, cookie) = (&app, &bob.cookie);
            async move {
                for _ in 0..20 {
                    let mut c = app.try_ws(stream, Some(cookie), &query).await.unwrap();
                    match c.next_frame(WAIT).await {
                        Next::Text(hello) => {
                            assert_eq!(hello["type"], "hello");
                            return c;
                        }
                        Next::Closed if c.closed_code() == Some(1012) => {
                            // Pacing the reconnects, as a client backs off.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Next::Closed => panic!("closed with {:?}", c.closed_code()),
                        Next::Idle => panic!("no hello within {WAIT:?}"),
                    }
                }
                panic!("20 resumes closed with 1012 in a row")
            }
        };
        for round in 0..6 {
            let mut c = resume(last_id).await;
            let history = c.recv().await;
            assert_eq!(history["type"], "history");
            if round > 0 {
                assert_eq!(history["truncated"], false);
            }
            if let Some(go) = go.take() {
                go.send(()).unwrap();
            }
            for m in history["messages"].as_array().unwrap() {
                let id = m["id"].as_i64().unwrap();
                assert!(
                    last_id.is_none_or(|l| id > l),
                    "resume returned {id} <= {last_id:?}"
                );
                if !seen.contains(&id) {
                    seen.push(id);
                }
                last_id = Some(id);
            }
            // A client that has seen the room empty resumes from 0, as the
            // watch page does (a plain connect brings only the newest 50).
            last_id.get_or_insert(0);
            // Read live for a while, then drop the connection mid-stream.
            let until = tokio::time::Instant::now() + Duration::from_millis(120);
            while let Ok(Some(v)) =
                tokio::time::timeout_at(until, c.next_text(Duration::from_secs(5))).await
            {
                if v["type"] == "message" {
                    let id = v["id"].as_i64().unwrap();
                    if !seen.contains(&id) {
                        seen.push(id);
                    }
                    last_id = Some(id);
                }
            }
        }
        send.await.unwrap();
        // A final resume collects the rest.
        let mut c = resume(last_id).await;
        for id in message_ids(&c.recv().await) {
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        let stored = app.stored_ids(stream).await;
        assert_eq!(stored.len(), total);
        seen.sort_unstable();
        assert_eq!(seen, stored, "ring_size {ring_size}");
    }
}

/// An app whose rooms keep `ring_size` messages, with a stream whose owner
/// said `n` messages (their ids): a resume from the first is older than the
/// ring, so its history is read from PostgreSQL.
async fn past_the_ring(ring_size: usize, n: usize) -> (TestApp, i64, Vec<i64>) {
    let app = AppBuilder::new()
        .raised_limits()
        .with(move |s| s.chat.ring_size = ring_size)
        .spawn()
        .await;
    let (stream, owner) = app.stream_with_owner().await;
    let mut o = owner.ws(stream).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(o.say(&format!("m{i}")).await);
    }
    drop((o, owner));
    (app, stream, ids)
}

/// `hello` and `history` come first even when the history is read from
/// PostgreSQL (a resume older than the ring) and the client speaks at once:
/// its frames are answered after them, not before.
#[actix_web::test]
async fn nothing_comes_before_hello_while_a_history_loads() {
    let (app, stream, ids) = past_the_ring(5, 20).await;
    let owner = app.logged_in("owner").await;
    // The history read waits on a lock the test holds.
    let mut c = app.store.client().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let schema = app.tenant.slug.schema();
    tx.batch_execute(&format!(
        "LOCK TABLE {schema}.chat_chatmessage IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let mut late = owner
        .ws_with(stream, &format!("?last_id={}", ids[0]))
        .await
        .expect("socket opens");
    late.send(json!({"type":"bogus"})).await;
    late.assert_silent(Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    assert_eq!(late.recv().await["type"], "hello");
    let history = late.recv().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["messages"].as_array().unwrap().len(), 19);
    assert_eq!(late.expect("error").await["code"], "unknown_type");
}

/// A resume whose history cannot be read (its table renamed away for the
/// moment) is not answered short, with an empty `truncated` history that
/// would skip what was missed: the socket closes with 1012 ("reconnect"),
/// and the same `last_id` once the table is back gets every message.
#[actix_web::test]
async fn a_resume_that_cannot_be_read_closes_to_reconnect_and_then_misses_nothing() {
    let (app, stream, ids) = past_the_ring(3, 8).await;
    let owner = app.logged_in("owner").await;
    let resume = format!("?last_id={}", ids[0]);
    app.tenant_sql(
        "ALTER TABLE {s}.chat_chatmessage RENAME TO chat_chatmessage_away",
        &[],
    )
    .await;
    let mut refused = owner.ws_with(stream, &resume).await.expect("socket opens");
    let code = refused.closed().await;
    app.tenant_sql(
        "ALTER TABLE {s}.chat_chatmessage_away RENAME TO chat_chatmessage",
        &[],
    )
    .await;
    assert_eq!(code, Some(1012));

    let mut again = owner.ws_with(stream, &resume).await.expect("socket opens");
    assert_eq!(again.recv().await["type"], "hello");
    let history = again.recv().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["truncated"], false);
    assert_eq!(message_ids(&history), ids[1..]);
}

/// A client that stops reading is closed with 4008 and stops counting as a
/// viewer; another client in the same room keeps receiving.
#[actix_web::test]
async fn slow_consumer_is_closed_and_others_keep_receiving() {
    let app = AppBuilder::new()
        .raised_limits()
        .with(move |s| {
            s.limits.socket_queue = 64;
        })
        .spawn()
        .await;
    let stream = app.create_stream("owner").await;
    let alice = app.user("alice", Role::Viewer).await;
    let mut slow = RawWs::connect(
        &app,
        &format!("/ws/chat/stream_{stream}/"),
        None,
        Some(4096),
    )
    .await;
    let (mut fast, _, _) = app.ws_ready(stream, None).await;
    let mut sender = alice.ws(stream).await;
    fast.await_viewers(3).await;
    let big = "😀".repeat(500); // ~2 KB per frame
    let mut i = 0;
    // Send until the slow socket is dropped by the server, reading `fast` all along.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut closed = false;
    while !closed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow consumer never closed"
        );
        for _ in 0..10 {
            sender
                .send(json!({"type":"message","message":big,"client_id":format!("b{i}")}))
                .await;
            i += 1;
        }
        for _ in 0..10 {
            let m = fast.expect("message").await;
            assert!(m["id"].as_i64().is_some());
            sender.expect("ack").await;
        }
        closed = app.metric("stampede_slow_consumers_total").await > 0;
    }
    // The fast client is still served promptly.
    sender.send(json!({"message":"after"})).await;
    let m = tokio::time::timeout(Duration::from_secs(5), fast.expect("message"))
        .await
        .expect("prompt");
    assert_eq!(m["message"], "after");
    // It no longer counts: presence says so. (The send that closed it used
    // to forget it, so its leave changed nothing and presence stayed at 3.)
    fast.await_viewers(2).await;
    // The slow one, when it reads at last, finds 4008 (or a dropped connection
    // if the close frame could not be written in time).
    let code = slow.close_code().await;
    assert!(code == Some(4008) || code.is_none(), "{code:?}");
}

#[actix_web::test]
async fn presence_counts_sockets_and_changes_are_sent() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let (mut first, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["viewers"], 1);
    let (second, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["viewers"], 2);
    // Changes are coalesced (at most one frame per 2 s): wait for the count to reach 2.
    first.await_viewers(2).await;
    drop(second);
    let p = first.expect("presence").await;
    assert_eq!(p["viewers"], 1);
}

#[actix_web::test]
async fn logout_closes_the_sessions_sockets_with_4001() {
    let app = spawn_app().await;
    let (stream, alice, mut a) = app.stream_with_viewer("alice").await;
    let (mut other, _, _) = app.ws_ready(stream, None).await;
    let r = alice.post("/api/logout", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(a.closed().await, Some(4001));
    other.assert_silent(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn replay_api_pages_back() {
    let (app, stream, _alice_ws, ids) = alice_said("p", 7).await;
    let r = app
        .get(&format!("/api/streams/{stream}/messages?limit=3"), None)
        .await;
    assert_eq!(r.status, 200);
    let page = r.json();
    assert_eq!(message_ids(&page), vec![ids[6], ids[5], ids[4]]);
    assert_eq!(page["messages"][0]["username"], "alice");
    let next = page["next_before_id"].as_i64().unwrap();
    let r = app
        .get(
            &format!("/api/streams/{stream}/messages?limit=10&before_id={next}"),
            None,
        )
        .await;
    assert_eq!(message_ids(&r.json()), vec![ids[3], ids[2], ids[1], ids[0]]);
    assert_eq!(r.json()["next_before_id"], Value::Null);
    let r = app
        .get(&format!("/api/streams/{stream}/messages?limit=0"), None)
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["code"], "invalid");
    // A stream, an id or a route that names nothing: 404 in the API's JSON.
    for path in [
        "/api/streams/999999/messages",
        "/api/streams/abc/messages",
        "/api/no/such/route",
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"]["code"], "not_found", "{path}");
    }
    // Pages keep their short plain-text 404.
    let r = app.get("/no/such/page", None).await;
    assert_eq!((r.status, r.body.as_str()), (404, "Not found"));
}

#[actix_web::test]
async fn ending_a_stream_closes_chat() {
    let app = spawn_app().await;
    let (stream, owner) = app.stream_with_owner().await;
    let alice = app.user("alice", Role::Viewer).await;
    let mut a = alice.ws(stream).await;
    let path = format!("/api/streams/{stream}/status");
    let r = alice.post(&path, json!({"status":"live"})).await;
    assert_eq!(r.status, 403);
    let r = owner
        .post_without_csrf(&path, json!({"status":"live"}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "csrf");
    let r = owner.post_ok(&path, json!({"status":"live"})).await;
    assert_eq!(r.json()["status"], "live");
    let notice = a.expect("message").await;
    assert_eq!(notice["message_type"], "system");
    assert_eq!(notice["message"], "Stream started");
    let r = owner.post(&path, json!({"status":"ended"})).await;
    assert_eq!(r.status, 200);
    a.expect("message").await;
    a.send(json!({"message":"too late"})).await;
    assert_eq!(a.expect("error").await["code"], "chat_closed");
    let r = owner.post(&path, json!({"status":"live"})).await;
    assert_eq!(r.status, 422);
    let (_, hello, _) = app.ws_ready(stream, Some(&alice.cookie)).await;
    assert_eq!(hello["can_chat"], false);
}
