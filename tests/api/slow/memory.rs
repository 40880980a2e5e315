//! Memory of idle sockets, against regressions: a `stampede serve` process
//! holding 2,000 idle sockets, each sent `hello` and a 50-message history,
//! grows by less than a generous bound, and gives most of it back once they
//! have gone. Bounds only, no timing: `benches/run --mode memory` measures.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use serde_json::json;

use crate::helpers::{eventually, spawn_app, TestApp};
use crate::ws::WsClient;

/// Idle sockets opened.
const SOCKETS: usize = 2_000;
/// Most the sockets may add to the server's RSS: 12 KiB a socket, about three
/// times what this test measures (4.3 KiB in a debug build; `benches/run`
/// measures 5.0 in a release build). Sockets served through the HTTP
/// dispatcher, as before `web::upgrade`, took 13 here; 42 before idle sockets
/// were slimmed.
const MAX_GROWTH_KIB: u64 = 12 * SOCKETS as u64;
/// Most of that growth the server may keep once every socket has gone.
const MAX_KEPT_KIB: u64 = 16 * 1024;

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Waits (generously: this is not about time) until the node has no socket open.
async fn until_no_sockets(app: &TestApp) {
    eventually(
        "no socket open on the node",
        Duration::from_secs(60),
        || async { (app.metric("stampede_connections").await == 0).then_some(()) },
    )
    .await
}

#[actix_web::test]
async fn idle_sockets_with_history_cost_little_and_give_it_back() {
    let app = spawn_app().await;
    let env = [
        ("STAMPEDE_LIMITS_MAX_CONNECTIONS_PER_IP", "0"),
        ("STAMPEDE_LIMITS_MAX_HTTP_CONNECTIONS_PER_IP", "0"),
        ("STAMPEDE_LIMITS_CHAT_MESSAGES", "1000"),
        ("STAMPEDE_LIMITS_CHAT_BURST", "1000"),
    ];
    let (stream_id, node, on) = app.stream_on_node(["talker"], &env).await;
    let pid = node.child.id();

    // A full history: 50 messages, as viewers of a running stream get.
    let mut talker = on.logged_in("talker").await.ws(stream_id).await;
    for i in 0..50 {
        talker
            .send(json!({"message": format!("message {i} of a running stream, with some words in it")}))
            .await;
        loop {
            let f = talker.recv().await;
            if f["type"] == "ack" {
                break;
            }
            assert_ne!(f["type"], "error", "{f}");
        }
    }
    // Gone before the waves: "no socket open" below means none at all. (A
    // talker kept open without reading would answer no ping and stay counted
    // until the node's pong timeout closed it, up to a minute later.)
    drop(talker);
    // One warm-up wave, so the allocator and the runtime have their working set.
    let warm: Vec<WsClient> = connect_all(&on, stream_id, 200).await;
    drop(warm);
    until_no_sockets(&on).await;

    let before = rss_kib(pid);
    let sockets = connect_all(&on, stream_id, SOCKETS).await;
    let connected = rss_kib(pid);
    let growth = connected.saturating_sub(before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "{SOCKETS} idle sockets added {growth} KiB ({} KiB each), over {MAX_GROWTH_KIB} KiB",
        growth / SOCKETS as u64
    );

    drop(sockets);
    until_no_sockets(&on).await;
    // The allocator gives memory back in the background: look for a while.
    let what = format!(
        "the node giving back all but {MAX_KEPT_KIB} KiB of the {growth} KiB the sockets added"
    );
    eventually(&what, Duration::from_secs(30), || async {
        (rss_kib(pid).saturating_sub(before) < MAX_KEPT_KIB).then_some(())
    })
    .await;
}

/// Opens `n` anonymous sockets (64 handshakes at a time), each read up to its history.
async fn connect_all(app: &TestApp, stream_id: i64, n: usize) -> Vec<WsClient> {
    stream::iter(0..n)
        .map(|_| async move {
            let (c, _, history) = app.ws_ready(stream_id, None).await;
            assert_eq!(history["messages"].as_array().map(Vec::len), Some(50));
            c
        })
        .buffer_unordered(64)
        .collect()
        .await
}
