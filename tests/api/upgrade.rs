//! WebSocket connections as the server serves them once upgraded (off the
//! HTTP dispatcher, `src/web/upgrade.rs`): frames sent with the handshake,
//! refused handshakes, and a peer that stops reading.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{helpers::*, ws::*};

/// A ping frame as a client sends it (masked), with this payload.
fn masked_ping(payload: &[u8]) -> Vec<u8> {
    let mask = [0x0au8, 0x0b, 0x0c, 0x0d];
    let mut f = vec![0x89, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Frames that reach the server in the same packets as the handshake (a
/// client need not wait for the 101) are read, in order.
#[actix_web::test]
async fn frames_sent_with_the_handshake_are_read() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let first = [masked_ping(b"one"), masked_ping(b"two")].concat();
    let mut ws = RawWs::try_connect_sending(
        &app,
        &format!("/ws/chat/stream_{stream}/"),
        None,
        None,
        "",
        &first,
    )
    .await
    .expect("handshake");
    let mut pongs = Vec::new();
    while pongs.len() < 2 {
        let (opcode, payload) = ws.next_frame().await.expect("connection open");
        if opcode == 0xA {
            pongs.push(String::from_utf8(payload).unwrap());
        }
    }
    assert_eq!(pongs, ["one", "two"]);
}

/// A refused handshake gets the route's answer, and the connection closes
/// after it (nothing else can follow an upgrade request).
#[actix_web::test]
async fn a_refused_handshake_is_answered_and_the_connection_closes() {
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws/chat/stream_987654/ HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        app.tenant.host
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after its answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 404"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
}

/// Whether process `pid` holds the server side of the TCP connection from
/// the client port `client_port` (IPv4, as test nodes listen).
fn holds_connection(pid: u32, client_port: u16) -> bool {
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let remote_port = cols.get(2)?.rsplit(':').next()?;
            (u16::from_str_radix(remote_port, 16).ok()? == client_port)
                .then(|| cols.get(9).map(|s| s.to_string()))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|link| {
            inodes
                .iter()
                .any(|i| link.to_string_lossy() == format!("socket:[{i}]"))
        })
}

/// A socket closed as a slow consumer whose peer never reads again cannot
/// hold its connection: once the close frame could not be written within
/// the closing deadline, the node lets the connection go.
#[actix_web::test]
async fn a_slow_consumer_that_never_reads_loses_its_connection() {
    let app = spawn_app().await;
    let only_here = [("STAMPEDE_LIMITS_SOCKET_QUEUE", "64")];
    let env = [RAISED_LIMITS_ENV, &only_here].concat();
    let (stream, node, remote) = app.stream_on_node(["alice"], &env).await;
    let pid = node.child.id();
    let path = format!("/ws/chat/stream_{stream}/");
    let slow = RawWs::connect(&remote, &path, None, Some(4096)).await;
    let port = slow.local_port();
    eventually(
        "the node holding the slow socket's connection",
        Duration::from_secs(10),
        || async { holds_connection(pid, port).then_some(()) },
    )
    .await;

    let mut sender = remote.logged_in("alice").await.ws(stream).await;
    let big = "記".repeat(500);
    let mut sent = 0;
    while remote.metric("stampede_slow_consumers_total").await == 0 {
        assert!(sent < 2_000, "no slow consumer after {sent} messages");
        sender
            .send_and_await_acks((0..10).map(|_| json!({"message": big})))
            .await;
        sent += 10;
    }
    eventually(
        "the node dropping the slow socket's connection",
        Duration::from_secs(30),
        || async { (!holds_connection(pid, port)).then_some(()) },
    )
    .await;
    drop(slow);
}
