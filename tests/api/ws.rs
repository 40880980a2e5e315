//! WebSocket clients for the tests: a real client (awc) for ordinary traffic,
//! and a raw one over TCP for what a well-behaved client never sends
//! (invalid UTF-8, oversized frames, a reader that stops reading).

use std::time::Duration;

use actix_codec::Framed;
use awc::{
    ws::{self, Codec, Frame},
    BoxedSocket,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// How long a test waits for one expected frame.
pub use crate::helpers::WAIT;

/// A connected WebSocket client.
pub struct WsClient {
    framed: Framed<BoxedSocket, Codec>,
    last_close: Option<u16>,
    /// The viewer count of the last `hello` or `presence` frame read,
    /// skipped ones included.
    viewers: Option<u64>,
}

/// What the handshake answered when it was refused.
#[derive(Debug)]
pub struct Refused(pub u16);

/// What one read of [`WsClient::next_frame`] gave.
pub enum Next {
    /// A text frame, as JSON.
    Text(Value),
    /// Nothing within the wait; the socket is still open.
    Idle,
    /// The connection ended (close frame, reset, or a protocol error).
    Closed,
}

/// The handshake request for `/ws/chat/stream_{id}/{query}` of the node at
/// `base` with `Host: host`, giving up after `wait`.
fn ws_request(
    base: &str,
    host: &str,
    stream_id: i64,
    query: &str,
    wait: Duration,
) -> awc::ws::WebsocketsRequest {
    let url = format!(
        "{}/ws/chat/stream_{stream_id}/{query}",
        base.replace("http://", "ws://")
    );
    awc::Client::builder()
        .timeout(wait)
        .finish()
        .ws(url)
        .max_frame_size(1 << 20)
        .set_header("Host", host)
}

/// Completes a handshake: the client, or the status of a refusal; panics
/// on any other failure.
async fn handshake(req: awc::ws::WebsocketsRequest) -> Result<WsClient, Refused> {
    match req.connect().await {
        Ok((_, framed)) => Ok(WsClient {
            framed,
            last_close: None,
            viewers: None,
        }),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(Refused(s.as_u16())),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Like [`connect`], for clients that expect the node to be down at times:
/// any failure (refused, reset, no answer within `wait`) is an `Err` saying what.
pub async fn try_connect(
    base: &str,
    host: &str,
    stream_id: i64,
    cookie: Option<&str>,
    query: &str,
    wait: Duration,
) -> Result<WsClient, String> {
    let mut req = ws_request(base, host, stream_id, query, wait);
    if let Some(c) = cookie {
        req = req.set_header("Cookie", format!("stampede_session={c}"));
    }
    match tokio::time::timeout(wait, req.connect()).await {
        Ok(Ok((_, framed))) => Ok(WsClient {
            framed,
            last_close: None,
            viewers: None,
        }),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {wait:?}")),
    }
}

/// Connects to `/ws/chat/stream_{id}/` of a node with a Host, optional Origin,
/// session cookie and query.
pub async fn connect(
    base: &str,
    host: &str,
    stream_id: i64,
    cookie: Option<&str>,
    origin: Option<&str>,
    query: &str,
) -> Result<WsClient, Refused> {
    let mut req = ws_request(base, host, stream_id, query, WAIT);
    if let Some(o) = origin {
        req = req.origin(o);
    }
    if let Some(c) = cookie {
        req = req.set_header("Cookie", format!("stampede_session={c}"));
    }
    handshake(req).await
}

/// Connects to a stream of `app`'s tenant with `Authorization: Bearer <token>`.
pub async fn connect_bearer(
    app: &TestApp,
    stream_id: i64,
    token: &str,
) -> Result<WsClient, Refused> {
    let req = ws_request(&app.address, &app.tenant.host, stream_id, "", WAIT)
        .set_header("Authorization", format!("Bearer {token}"));
    handshake(req).await
}

impl TestApp {
    /// Connects a socket to a stream of the test tenant (no Origin).
    pub async fn ws(&self, stream_id: i64, cookie: Option<&str>) -> WsClient {
        self.try_ws(stream_id, cookie, "")
            .await
            .expect("socket refused")
    }

    /// Connects a socket to a stream of the test tenant (no Origin) with a
    /// query (`"?last_id=5"`, or `""`): the client, or the refusal's status.
    pub async fn try_ws(
        &self,
        stream_id: i64,
        cookie: Option<&str>,
        query: &str,
    ) -> Result<WsClient, Refused> {
        connect(
            &self.address,
            &self.tenant.host,
            stream_id,
            cookie,
            None,
            query,
        )
        .await
    }

    /// The status with which the handshake to `stream_id` is refused
    /// (`None` when the socket opens).
    pub async fn ws_refusal(&self, stream_id: i64, cookie: Option<&str>) -> Option<u16> {
        self.try_ws(stream_id, cookie, "").await.err().map(|e| e.0)
    }

    /// Connects and reads `hello` and `history`; returns them too.
    pub async fn ws_ready(&self, stream_id: i64, cookie: Option<&str>) -> (WsClient, Value, Value) {
        let mut c = self.ws(stream_id, cookie).await;
        let hello = c.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        let history = c.recv().await;
        assert_eq!(history["type"], "history", "{history}");
        (c, hello, history)
    }
}

impl WsClient {
    /// Sends a JSON text frame.
    pub async fn send(&mut self, v: Value) {
        self.framed
            .send(ws::Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends a JSON text frame; false when the connection is gone.
    pub async fn try_send(&mut self, v: Value) -> bool {
        self.framed
            .send(ws::Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    /// Sends a raw message.
    pub async fn send_raw(&mut self, m: ws::Message) {
        self.framed.send(m).await.expect("send");
    }

    /// The next text frame as JSON (pings answered, pongs skipped); panics on
    /// close or when none comes within [`WAIT`], saying which.
    pub async fn recv(&mut self) -> Value {
        match self.next_frame(WAIT).await {
            Next::Text(v) => v,
            Next::Idle => panic!("no frame within {WAIT:?} while one was expected"),
            Next::Closed => panic!(
                "socket closed (code {:?}) while a frame was expected",
                self.last_close
            ),
        }
    }

    /// The next text frame within `wait`, or `None` on close or timeout.
    pub async fn next_text(&mut self, wait: Duration) -> Option<Value> {
        match self.next_frame(wait).await {
            Next::Text(v) => Some(v),
            Next::Idle | Next::Closed => None,
        }
    }

    /// The next text frame within `wait` (pings answered), telling a quiet
    /// socket from a closed one. Every read goes through here, so the last
    /// `presence` count is kept even when a caller skips the frame.
    pub async fn next_frame(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => return Next::Idle,
                Ok(None) | Ok(Some(Err(_))) => return Next::Closed,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Text(b) => match serde_json::from_slice::<Value>(&b) {
                    Ok(v) => {
                        if v["type"] == "presence" || v["type"] == "hello" {
                            self.viewers = v["viewers"].as_u64();
                        }
                        return Next::Text(v);
                    }
                    Err(e) => panic!("a text frame that is not JSON ({e}): {b:?}"),
                },
                Frame::Ping(p) => {
                    // A failed pong shows on the next read.
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                Frame::Close(r) => {
                    self.last_close = r.map(|r| u16::from(r.code));
                    return Next::Closed;
                }
                _ => {}
            }
        }
    }

    /// Reads until the room's viewer count is `n`: at once when the last
    /// `presence` frame read (by any call, skipped or not) already said so.
    /// `presence` is sent only on a change, so a count reached while a test
    /// was reading other frames would otherwise never be seen again.
    pub async fn await_viewers(&mut self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.viewers != Some(n) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Next::Text(_) => {}
                Next::Idle => panic!(
                    "presence never reached {n} within {WAIT:?} (last {:?})",
                    self.viewers
                ),
                Next::Closed => panic!(
                    "socket closed (code {:?}) before presence reached {n}",
                    self.last_close
                ),
            }
        }
    }

    /// Sends a chat message (a fresh `client_id`) and returns its id from
    /// the ack; panics when it is refused.
    pub async fn say(&mut self, text: &str) -> i64 {
        self.say_frame(json!({"type":"message","message":text}))
            .await["id"]
            .as_i64()
            .unwrap()
    }

    /// Sends a `message` frame and returns its id from the ack; panics when
    /// it is refused.
    pub async fn say_json(&mut self, frame: Value) -> i64 {
        self.say_frame(frame).await["id"].as_i64().unwrap()
    }

    /// Sends a `message` frame (given a `client_id` when it has none) and
    /// returns the broadcast `message` frame that carries its id (it comes
    /// before the ack); panics when the message is refused.
    pub async fn say_frame(&mut self, mut frame: Value) -> Value {
        if frame.get("client_id").is_none() {
            frame["client_id"] = crate::helpers::random_hex(12).into();
        }
        let cid = frame["client_id"].clone();
        self.send(frame).await;
        let mut seen = Vec::new();
        loop {
            let v = self.recv().await;
            match v["type"].as_str() {
                Some("message") => seen.push(v),
                Some("ack") if v["client_id"] == cid => {
                    return seen
                        .into_iter()
                        .find(|m| m["id"] == v["id"])
                        .unwrap_or(json!({"type":"message","id":v["id"]}));
                }
                Some("error") => panic!("refused: {v}"),
                _ => {}
            }
        }
    }

    /// Sends a chat message (a fresh `client_id`): `Ok(id)` when it is acked,
    /// `Err(frame)` with the other answer that names it (an `error`) when not.
    pub async fn try_say(&mut self, text: &str) -> Result<i64, Value> {
        let cid = crate::helpers::random_hex(12);
        self.send(json!({"type":"message","message":text,"client_id":cid}))
            .await;
        loop {
            let v = self.recv().await;
            if v["client_id"] == cid.as_str() && v["type"] != "message" {
                return match v["type"].as_str() {
                    Some("ack") => Ok(v["id"].as_i64().unwrap()),
                    _ => Err(v),
                };
            }
        }
    }

    /// Sends `text` again and again until it is acked, for at most `limit`
    /// (for changes a room applies on its own time); each refusal on the way
    /// is handed to `check`. The acked id.
    pub async fn say_when_allowed(
        &mut self,
        text: &str,
        limit: Duration,
        check: impl Fn(&Value),
    ) -> i64 {
        let me = tokio::sync::Mutex::new(self);
        crate::helpers::eventually(&format!("{text:?} accepted"), limit, || async {
            match me.lock().await.try_say(text).await {
                Ok(id) => Some(id),
                Err(refusal) => {
                    check(&refusal);
                    None
                }
            }
        })
        .await
    }

    /// Sends every frame, then reads until each has its ack; returns the
    /// acked ids in sending order. Other frames are skipped; an `error` panics.
    pub async fn send_and_await_acks(
        &mut self,
        frames: impl IntoIterator<Item = Value>,
    ) -> Vec<i64> {
        let mut order = Vec::new();
        for mut f in frames {
            if f.get("client_id").is_none() {
                f["client_id"] = crate::helpers::random_hex(12).into();
            }
            order.push(f["client_id"].as_str().unwrap().to_string());
            self.send(f).await;
        }
        let mut ids = std::collections::HashMap::new();
        while ids.len() < order.len() {
            let v = self.recv().await;
            match v["type"].as_str() {
                Some("ack") => {
                    ids.insert(
                        v["client_id"].as_str().unwrap_or("").to_string(),
                        v["id"].as_i64().unwrap(),
                    );
                }
                Some("error") => panic!("refused: {v}"),
                _ => {}
            }
        }
        order.iter().map(|c| ids[c]).collect()
    }

    /// Sends `n` messages `"{prefix}{i}"` and waits for their acks: their ids.
    pub async fn say_many(&mut self, prefix: &str, n: usize) -> Vec<i64> {
        self.send_and_await_acks(
            (0..n).map(|i| json!({"type":"message","message":format!("{prefix}{i}")})),
        )
        .await
    }

    /// Sends `n` reactions, cycling through stamps 1 to 6.
    pub async fn react_many(&mut self, n: usize) {
        for i in 0..n {
            self.send(json!({"type":"reaction","stamp_id": i % 6 + 1}))
                .await;
        }
    }

    /// Reads `reactions` frames until at least `n` reactions are counted;
    /// returns the count (more than `n` means reactions nobody sent).
    pub async fn reactions_until(&mut self, n: u64) -> u64 {
        let mut sum = 0;
        while sum < n {
            let f = self.expect("reactions").await;
            sum += f["stamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["count"].as_u64().unwrap())
                .sum::<u64>();
        }
        sum
    }

    /// Reads until a frame of `kind` arrives (others are skipped).
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code (None if the
    /// connection ended without a close frame).
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => panic!("no close within {WAIT:?}"),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Frame::Close(r)))) => return r.map(|r| u16::from(r.code)),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The close code, if the last read saw the close frame (after `next_text` gave `None`).
    pub fn closed_code(&mut self) -> Option<u16> {
        self.last_close
    }

    /// Nothing but pings and `presence` frames (asynchronous housekeeping)
    /// arrives for `wait`.
    pub async fn assert_silent(&mut self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_text(left).await {
                Some(v) if v["type"] == "presence" => continue,
                Some(v) => panic!("unexpected frame: {v}"),
                None => return,
            }
        }
    }
}

/// A bare WebSocket client over TCP.
pub struct RawWs {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects with an optional receive buffer size and performs the handshake.
    pub async fn connect(
        app: &TestApp,
        path: &str,
        cookie: Option<&str>,
        rcvbuf: Option<u32>,
    ) -> RawWs {
        Self::connect_with(app, path, cookie, rcvbuf, "").await
    }

    /// Like [`RawWs::connect`] with extra request header lines (`"X-Forwarded-For: 1.2.3.4\r\n"`).
    pub async fn connect_with(
        app: &TestApp,
        path: &str,
        cookie: Option<&str>,
        rcvbuf: Option<u32>,
        extra: &str,
    ) -> RawWs {
        Self::try_connect(app, path, cookie, rcvbuf, extra)
            .await
            .expect("handshake refused")
    }

    /// Connects; `Err(status line)` when the handshake is refused.
    pub async fn try_connect(
        app: &TestApp,
        path: &str,
        cookie: Option<&str>,
        rcvbuf: Option<u32>,
        extra: &str,
    ) -> Result<RawWs, String> {
        Self::try_connect_sending(app, path, cookie, rcvbuf, extra, &[]).await
    }

    /// Like [`RawWs::try_connect`], with `first` (frames, say) written in the
    /// same write as the handshake, before its answer is read.
    pub async fn try_connect_sending(
        app: &TestApp,
        path: &str,
        cookie: Option<&str>,
        rcvbuf: Option<u32>,
        extra: &str,
        first: &[u8],
    ) -> Result<RawWs, String> {
        let addr: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = socket.connect(addr).await.unwrap();
        let cookie = cookie
            .map(|c| format!("Cookie: stampede_session={c}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{cookie}{extra}\r\n",
            app.tenant.host
        );
        stream
            .write_all(&[req.as_bytes(), first].concat())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head.lines().next().unwrap_or("").to_string());
        }
        Ok(RawWs {
            stream,
            buf: buf[end..].to_vec(),
        })
    }

    /// Writes raw bytes (for frames a client must never send).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8], fin: bool) {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let mask = [0x11u8, 0x22, 0x33, 0x44];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // The server may close before reading everything: ignore write errors.
        let _ = self.stream.write_all(&f).await;
    }

    /// Reads frames until a close frame; returns its code, or None when the
    /// connection ends without one.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (opcode, payload) = self.next_frame_before(deadline).await?;
            if opcode == 8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }

    /// The next frame the server sent, as (opcode, payload); `None` when the
    /// connection ends first.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        self.next_frame_before(tokio::time::Instant::now() + WAIT)
            .await
    }

    async fn next_frame_before(&mut self, deadline: tokio::time::Instant) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((opcode, payload));
            }
            let mut chunk = vec![0u8; 65536];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("no frame (or no close) within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The client's port, which names this connection on the server's side.
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }
}

/// Parses one unmasked server frame: (opcode, payload, bytes used).
fn parse_frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let (len, start) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (
            u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if b.len() < start + len {
        return None;
    }
    Some((opcode, b[start..start + len].to_vec(), start + len))
}
