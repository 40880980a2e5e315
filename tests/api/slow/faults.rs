//! Faults: a graceful shutdown loses nothing and closes sockets with 1012;
//! PostgreSQL going away gives `unavailable` (nothing broadcast) and recovery
//! without a restart.

use std::time::Duration;

use serde_json::json;
use stampede::store::migrations;

use crate::helpers::*;

#[actix_web::test]
async fn sigterm_closes_with_1012_and_every_acked_message_survives() {
    // The tenant, users and stream are made on the shared test database.
    let app = AppBuilder::new().raised_limits().spawn().await;
    let stream = app.stream_with_viewer_accounts(["alice"]).await;
    let port = free_port();
    let limits = [
        ("STAMPEDE_LIMITS_CHAT_MESSAGES", "1000"),
        ("STAMPEDE_LIMITS_CHAT_BURST", "1000"),
    ];
    let node = Node::start(port, &limits).await;
    let mut c = app.on_node(&node).logged_in("alice").await.ws(stream).await;
    let mut acked = Vec::new();
    // Some messages are surely accepted before the signal, more are in flight with it.
    for i in 0..40 {
        c.send(json!({"type":"message","message":format!("t{i}"),"client_id":format!("t{i}")}))
            .await;
        if i == 19 {
            acked.push(c.expect("ack").await["id"].as_i64().unwrap());
        }
    }
    node.signal("-TERM");
    let code = loop {
        match c.next_text(Duration::from_secs(20)).await {
            Some(v) if v["type"] == "ack" => acked.push(v["id"].as_i64().unwrap()),
            Some(_) => {}
            None => break c.closed_code(),
        }
    };
    assert_eq!(code, Some(1012));
    let status = node.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");

    let node = Node::start(port, &limits).await;
    let (_, _, history) = app.on_node(&node).ws_ready(stream, None).await;
    let ids = message_ids(&history);
    for id in &acked {
        assert!(ids.contains(id), "acked message {id} missing after restart");
    }
    let stored = app.stored_ids(stream).await;
    assert_eq!(stored.len(), ids.len(), "history equals what is stored");
}

/// A private cluster, migrated, and a test app on it (`change` applied to
/// the app's settings after the database URL): for tests that stop or
/// freeze PostgreSQL, which the shared one must never be.
async fn app_on_private_pg(
    change: impl FnOnce(&mut stampede::config::Settings),
) -> (PrivatePg, TestApp) {
    let pg = PrivatePg::start().await;
    migrations::migrate_all(&store_for(&pg.url(), 1))
        .await
        .unwrap();
    let url = pg.url();
    let app = spawn_app_with(move |s| {
        s.database.url = url;
        change(s);
    })
    .await;
    (pg, app)
}

/// PostgreSQL hangs (every backend frozen) with a message on its way in: the
/// rooms cannot drain, and SIGTERM still ends the node within PROTOCOL.md's
/// 30 s (`server.shutdown_timeout_secs`, 25, and no second wait).
#[actix_web::test]
async fn sigterm_with_postgres_hung_still_exits_within_30_s() {
    let (pg, app) = app_on_private_pg(|_| {}).await;
    let stream = app.stream_with_viewer_accounts(["alice"]).await;
    let url = pg.url();
    let node = Node::start(free_port(), &[("STAMPEDE_DATABASE_URL", &url)]).await;
    let mut c = app.on_node(&node).logged_in("alice").await.ws(stream).await;
    c.say("before").await;
    pg.signal_all("-STOP");
    c.send(json!({"type":"message","message":"stuck","client_id":"s-1"}))
        .await;
    // The message is on its way in (the node read it) before the signal.
    let on_node = app.on_node(&node);
    eventually("the node read the stuck message", WAIT, || async {
        (on_node.metric("stampede_messages_received_total").await >= 2).then_some(())
    })
    .await;
    node.signal("-TERM");
    let status = node.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    pg.signal_all("-CONT");
}

#[actix_web::test]
async fn postgres_down_gives_unavailable_and_recovers() {
    let (pg, app) = app_on_private_pg(|s| s.database.connect_timeout_secs = 1).await;
    let (stream, _alice, mut a) = app.stream_with_viewer("alice").await;
    let (mut watcher, _, _) = app.ws_ready(stream, None).await;
    a.send(json!({"type":"message","message":"before","client_id":"b-1"}))
        .await;
    a.expect("ack").await;
    watcher.expect("message").await;
    assert_eq!(app.get("/readyz", None).await.status, 200);

    pg.stop();
    a.send(json!({"type":"message","message":"during","client_id":"d-1"}))
        .await;
    let e = a.expect("error").await;
    assert_eq!(e["code"], "unavailable");
    assert_eq!(e["client_id"], "d-1");
    watcher.assert_silent(Duration::from_millis(500)).await;
    assert_eq!(app.get("/readyz", None).await.status, 503);

    pg.start_server();
    // The same client_id again, until the pool has a connection again:
    // stored once, broadcast once.
    let a = tokio::sync::Mutex::new(a);
    let id = eventually(
        "sending works again after PostgreSQL returns",
        WAIT,
        || async {
            let mut a = a.lock().await;
            a.send(json!({"type":"message","message":"during","client_id":"d-1"}))
                .await;
            loop {
                let v = a.recv().await;
                match v["type"].as_str() {
                    Some("ack") => return v["id"].as_i64(),
                    Some("error") => return None,
                    _ => {}
                }
            }
        },
    )
    .await;
    let m = watcher.expect("message").await;
    assert_eq!(m["id"], id);
    assert_eq!(m["message"], "during");
    assert_eq!(app.stored_ids(stream).await.len(), 2);
    assert_eq!(app.get("/readyz", None).await.status, 200);
}
