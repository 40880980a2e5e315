//! Moderation, round two, over real sockets: chat modes (stamps only,
//! established accounts, unique chat, the raid shield) on one node and across
//! two, and blocked terms that see through disguises.

use std::time::Duration;

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// Sends a chat message; returns the `ack` or the `error` it got.
async fn send(c: &mut WsClient, text: &str) -> Value {
    let cid = random_hex(12);
    c.send(json!({"type":"message","message":text,"client_id":cid}))
        .await;
    loop {
        let v = c.recv().await;
        if v["client_id"] == cid.as_str() && v["type"] != "message" {
            return v;
        }
    }
}

/// The error code a message gets, or "ack".
async fn outcome(c: &mut WsClient, text: &str) -> String {
    let v = send(c, text).await;
    if v["type"] == "ack" {
        "ack".into()
    } else {
        v["code"].as_str().unwrap().to_string()
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

/// Makes an account look `minutes` old.
async fn age_account(app: &TestApp, username: &str, minutes: i32) {
    app.store
        .client()
        .await
        .unwrap()
        .execute(
            &format!(
                "UPDATE {}.accounts_user SET created_at = now() - make_interval(mins => $1) WHERE username = $2",
                app.tenant.slug.schema()
            ),
            &[&minutes, &username],
        )
        .await
        .unwrap();
}

#[actix_web::test]
async fn modes_refuse_viewers_and_spare_the_owner() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let (owner, _) = app.login("owner", "password-123").await;
    let (bob, _) = app.user_session("bob", Role::Viewer).await;
    let (carol, _) = app.user_session("carol", Role::Viewer).await;
    let (mut o, hello, _) = app.ws_ready(stream, Some(&owner)).await;
    assert_eq!(
        hello["modes"],
        json!({"stamps_only":false,"established_minutes":0,"unique_chat":false,"hold_links":false,"shield":false})
    );
    let (mut b, _, _) = app.ws_ready(stream, Some(&bob)).await;
    let (c, _, _) = app.ws_ready(stream, Some(&carol)).await;

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
    let (_, hello, _) = app.ws_ready(stream, Some(&bob)).await;
    assert_eq!(hello["modes"]["stamps_only"], true, "hello carries modes");

    // Established accounts only: bob is new, carol is a day old.
    set_modes(
        &mut o,
        json!({"stamps_only":false,"established_minutes":10}),
    )
    .await;
    age_account(&app, "carol", 24 * 60).await;
    let refused = send(&mut b, "hi").await;
    assert_eq!(refused["code"], "too_new");
    let wait = refused["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 9 * 60_000 && wait <= 10 * 60_000, "{wait}");
    // Carol's socket predates the change of her age: a new one sees it.
    drop(c);
    let (mut c, _, _) = app.ws_ready(stream, Some(&carol)).await;
    assert_eq!(outcome(&mut c, "hi").await, "ack");

    // Unique chat: the same text (folded) within 30 s is refused.
    set_modes(&mut o, json!({"established_minutes":0,"unique_chat":true})).await;
    assert_eq!(outcome(&mut b, "GG  WP").await, "ack");
    assert_eq!(outcome(&mut c, "gg wp").await, "duplicate");
    assert_eq!(outcome(&mut c, "ｇｇ ｗｐ").await, "duplicate");
    assert_eq!(outcome(&mut c, "gg wp!!").await, "ack");
    assert_eq!(outcome(&mut o, "gg wp").await, "ack", "the owner is exempt");

    // Every change is in the moderation log.
    let log: Vec<String> = app
        .store
        .moderation_log(&app.tenant.slug, stream, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(log.iter().filter(|a| *a == "modes").count(), 3);
}

#[actix_web::test]
async fn the_shield_restores_exactly_what_was_there() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let (owner, _) = app.login("owner", "password-123").await;
    let (mut o, _, _) = app.ws_ready(stream, Some(&owner)).await;
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
    let stream_row = app
        .store
        .stream(&app.tenant.slug, stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream_row.slow_mode_seconds, 5);
    assert_eq!(stream_row.modes.modes.established_minutes, 3);
    assert!(stream_row.modes.saved.is_none());
}

#[actix_web::test]
async fn modes_set_on_one_node_hold_on_the_other() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    app.create_user("bob", "password-123", Role::Viewer).await;
    let prefix = format!("t{}", random_hex(10));
    let redis = redis_url();
    let env = [
        ("STAMPEDE_REDIS_URL", redis.as_str()),
        ("STAMPEDE_REDIS_PREFIX", prefix.as_str()),
    ];
    let a = Node::start(free_port(), &env).await;
    let b = Node::start(free_port(), &env).await;
    let ha = TestApp {
        address: a.address.clone(),
        ..app.clone_handle()
    };
    let hb = TestApp {
        address: b.address.clone(),
        ..app.clone_handle()
    };
    let (owner, _) = ha.login("owner", "password-123").await;
    let (bob, _) = hb.login("bob", "password-123").await;
    let (mut o, _, _) = ha.ws_ready(stream, Some(&owner)).await;
    let (mut viewer, _, _) = hb.ws_ready(stream, Some(&bob)).await;
    set_modes(&mut o, json!({"stamps_only":true})).await;
    let notice = tokio::time::timeout(Duration::from_secs(1), viewer.expect("moderation"))
        .await
        .expect("the modes notice reaches node B within 1 s");
    assert_eq!(notice["modes"]["stamps_only"], true);
    assert_eq!(outcome(&mut viewer, "hello").await, "stamps_only");
}

#[actix_web::test]
async fn disguised_terms_are_blocked() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let (owner, csrf) = app.login("owner", "password-123").await;
    let (bob, _) = app.user_session("bob", Role::Viewer).await;
    for term in ["spam", "ばか"] {
        let r = app
            .post_json(
                &format!("/api/streams/{stream}/blocked_terms"),
                &json!({"term":term,"action":"add"}),
                Some(&owner),
                Some(&csrf),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (mut b, _, _) = app.ws_ready(stream, Some(&bob)).await;
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
