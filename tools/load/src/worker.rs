//! One worker process: opens its share of sockets on one single-threaded actix
//! runtime (awc), logs its senders in, waits for the coordinator's start time,
//! paces chat and reactions on an absolute schedule, counts what its viewers
//! receive, and reports one JSON line.
//!
//! Talks to the coordinator over stdin/stdout, one JSON object per line:
//! plan in, `ready` out, start times in, report out.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::poll_fn,
    io::{BufRead, Write},
    net::IpAddr,
    pin::Pin,
    rc::Rc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_codec::Framed;
use awc::{
    http::header,
    ws::{Codec, Frame, Message},
    BoxedSocket, Client, Connector,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use super::{
    proto::{self, Proto, Received},
    stats::{Latency, WorkerReport},
};

type Ws = Framed<BoxedSocket, Codec>;

/// One socket to open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SocketSpec {
    /// Index into the plan's URLs (the node it connects to).
    pub url: usize,
    /// Stream id of its room.
    pub room: i64,
    /// For senders: the username to log in with (`None`: anonymous).
    pub user: Option<String>,
}

// Documented fields, one a line, as every record here: alike in shape only.
/// What the coordinator asks of one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Worker number (0 holds every sender).
    pub index: usize,
    /// Wire protocol.
    pub proto: Proto,
    /// Base URLs, `http://127.0.0.1:8000`.
    pub urls: Vec<String>,
    /// Send an `Origin` equal to the URL's origin (browsers do; Django requires it).
    pub origin: bool,
    /// Source address of this worker's sockets.
    pub local_ip: Option<IpAddr>,
    /// Viewer sockets.
    pub viewers: Vec<SocketSpec>,
    /// Sender sockets (chat and reactions), used round-robin by the pacers.
    pub senders: Vec<SocketSpec>,
    /// Password of every sender.
    pub password: String,
    /// Chat messages per second this worker sends (in all).
    pub chat_rate: f64,
    /// Reactions per second this worker sends (in all).
    pub reaction_rate: f64,
    /// Connection attempts in flight at once.
    pub connect_concurrency: usize,
    /// Seconds one connection attempt may take.
    pub connect_timeout_secs: u64,
}

/// The run's times, unix nanoseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Schedule {
    /// Senders start.
    pub t0: u64,
    /// The measured window starts.
    pub w0: u64,
    /// The measured window ends; senders stop.
    pub w1: u64,
    /// The drain ends: deliveries after this are late.
    pub stop: u64,
    /// The worker reports (late deliveries are counted until then).
    pub report: u64,
}

/// `ready` line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ready {
    /// Sockets open.
    pub opened: u64,
    /// Sockets that failed.
    pub failed: u64,
}

/// Unix time in ns.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs a worker: reads its plan from stdin, writes `ready` and its report on stdout.
pub fn run() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let plan: WorkerPlan = serde_json::from_str(&line)?;
    // The start line arrives on stdin while the runtime is busy: read it on a thread.
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<Schedule>();
    std::thread::spawn(move || {
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_ok() {
            if let Ok(s) = serde_json::from_str(&line) {
                let _ = start_tx.send(s);
            }
        }
    });
    let report = actix_rt::System::new().block_on(drive(plan, start_rx))?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Counters shared by every task of the worker (one thread: `Rc`/`Cell`).
#[derive(Default)]
struct Shared {
    /// The measured window, unix ns (empty until the start line arrives).
    w0: Cell<u64>,
    w1: Cell<u64>,
    started: Cell<bool>,
    /// The drain has ended: what arrives now is late.
    stopped: Cell<bool>,
    latency: RefCell<Latency>,
    /// In-window deliveries per message (send time), in time and late.
    in_time: RefCell<HashMap<u64, u64>>,
    late: RefCell<HashMap<u64, u64>>,
    late_max_us: Cell<u64>,
    report: RefCell<WorkerReport>,
    viewer_reactions: RefCell<Vec<Rc<Cell<u64>>>>,
}

impl Shared {
    fn in_window(&self, t: u64) -> bool {
        t >= self.w0.get() && t < self.w1.get()
    }

    /// Counts the delivery of a message sent at `t` (in the window), now.
    fn delivered(&self, t: u64, now: u64) {
        let us = now.saturating_sub(t) / 1000;
        if self.stopped.get() {
            *self.late.borrow_mut().entry(t).or_default() += 1;
            self.late_max_us.set(self.late_max_us.get().max(us));
            return;
        }
        self.report.borrow_mut().chat_received_in_window += 1;
        self.latency.borrow_mut().record_us(us);
        *self.in_time.borrow_mut().entry(t).or_default() += 1;
    }

    /// Counts a message sent at `t` to `room` (whether or not it was written).
    fn sent(&self, room: i64, t: u64) {
        let mut r = self.report.borrow_mut();
        r.chat_sent += 1;
        if self.in_window(t) {
            r.sent_in_window.push((room, t));
        }
    }

    fn failure(&self, why: String) {
        let mut r = self.report.borrow_mut();
        r.failed += 1;
        let key: String = why.chars().take(60).collect();
        *r.failures.entry(key).or_default() += 1;
    }
}

async fn write(ws: &mut Ws, msg: Message) -> Result<(), awc::error::WsProtocolError> {
    Pin::new(&mut *ws).write(msg)?;
    poll_fn(|cx| Pin::new(&mut *ws).flush(cx)).await
}

fn cookie_header(resp: &awc::ClientResponse<impl Sized>) -> String {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn login(client: &Client, base: &str, user: &str, password: &str) -> Result<String, String> {
    let resp = client
        .post(format!("{base}/api/login"))
        .insert_header((header::ORIGIN, base))
        .send_json(&serde_json::json!({"username": user, "password": password}))
        .await
        .map_err(|e| format!("login: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("login: {}", resp.status()));
    }
    Ok(cookie_header(&resp))
}

fn ws_url(proto: Proto, base: &str, room: i64) -> String {
    match proto {
        Proto::Stampede => format!("{base}/ws/chat/stream_{room}/"),
        Proto::Centrifuge => format!("{base}/connection/websocket"),
    }
}

async fn open(
    client: &Client,
    plan: &WorkerPlan,
    spec: &SocketSpec,
    cookie: Option<&str>,
) -> Result<Ws, String> {
    let base = &plan.urls[spec.url];
    let mut req = client
        .ws(ws_url(plan.proto, base, spec.room))
        .max_frame_size(1 << 20);
    if plan.origin {
        req = req.origin(base.as_str());
    }
    if let Some(c) = cookie.filter(|c| !c.is_empty()) {
        req = req.header(header::COOKIE, c);
    }
    let (_, mut ws) = req.connect().await.map_err(|e| format!("connect: {e}"))?;
    if plan.proto == Proto::Centrifuge {
        write(
            &mut ws,
            Message::Text(proto::centrifuge_hello(spec.room).into()),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        // Wait for the reply to `subscribe`.
        loop {
            match ws.next().await {
                Some(Ok(Frame::Text(b))) => {
                    let text = std::str::from_utf8(&b).unwrap_or("");
                    for l in proto::split_lines(text) {
                        match proto::classify(l) {
                            Received::Reply(proto::CENTRIFUGE_SUBSCRIBE_ID) => return Ok(ws),
                            Received::Error(code) => return Err(format!("subscribe: {code}")),
                            _ => {}
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("subscribe: {e}")),
                None => return Err("subscribe: closed".into()),
            }
        }
    }
    Ok(ws)
}

fn text_lines(proto: Proto, text: &str) -> Box<dyn Iterator<Item = &str> + '_> {
    match proto {
        Proto::Stampede => Box::new(std::iter::once(text)),
        Proto::Centrifuge => Box::new(proto::split_lines(text)),
    }
}

/// A viewer: counts deliveries and reactions until the socket ends.
async fn viewer(shared: Rc<Shared>, proto: Proto, mut ws: Ws, reactions: Rc<Cell<u64>>) {
    while let Some(item) = ws.next().await {
        match item {
            Ok(Frame::Text(b)) => {
                let Ok(text) = std::str::from_utf8(&b) else {
                    continue;
                };
                for line in text_lines(proto, text) {
                    match proto::classify(line) {
                        Received::Chat(t) => {
                            if shared.in_window(t) {
                                shared.delivered(t, now_ns());
                            } else {
                                shared.report.borrow_mut().chat_received_outside += 1;
                            }
                        }
                        Received::Reactions(n) => {
                            reactions.set(reactions.get() + n);
                            let now = now_ns();
                            if shared.in_window(now) {
                                shared.report.borrow_mut().reaction_frames_in_window += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Ok(Frame::Ping(p)) => {
                if write(&mut ws, Message::Pong(p)).await.is_err() {
                    break;
                }
            }
            Ok(Frame::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if shared.started.get() {
        shared.report.borrow_mut().closed_during_run += 1;
    }
}

enum Cmd {
    Chat,
    React(u32),
}

/// A sender: writes what the pacers hand it, stamping chat with the send time.
async fn sender(
    shared: Rc<Shared>,
    proto: Proto,
    index: usize,
    room: i64,
    mut ws: Ws,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut cmd_id: u32 = 10;
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                cmd_id = cmd_id.wrapping_add(1);
                let frame = match cmd {
                    Cmd::Chat => {
                        let t = now_ns();
                        seq += 1;
                        shared.sent(room, t);
                        proto::chat_frame(proto, room, &proto::chat_text(t, index, seq), cmd_id)
                    }
                    Cmd::React(stamp) => {
                        shared.report.borrow_mut().reactions_sent += 1;
                        proto::reaction_frame(proto, room, stamp, cmd_id)
                    }
                };
                if write(&mut ws, Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            item = ws.next() => match item {
                Some(Ok(Frame::Text(b))) => {
                    let text = std::str::from_utf8(&b).unwrap_or("");
                    for line in text_lines(proto, text) {
                        if let Received::Error(code) = proto::classify(line) {
                            *shared.report.borrow_mut().errors.entry(code).or_default() += 1;
                        }
                    }
                }
                Some(Ok(Frame::Ping(p))) => {
                    if write(&mut ws, Message::Pong(p)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    }
    if shared.started.get() {
        *shared
            .report
            .borrow_mut()
            .errors
            .entry("sender_closed".into())
            .or_default() += 1;
    }
    // Messages this closed socket can no longer send still count as sent (and
    // so as lost), so a server that drops senders does not look lossless.
    while let Some(cmd) = rx.recv().await {
        if let Cmd::Chat = cmd {
            shared.sent(room, now_ns());
            *shared
                .report
                .borrow_mut()
                .errors
                .entry("chat_unsent_socket_closed".into())
                .or_default() += 1;
        }
    }
}

/// Sends `rate` commands per second from `t0` to `w1` on an absolute schedule:
/// the k-th is due at t0 + k/rate, so a late wake-up catches up, never drifts.
async fn pace(
    rate: f64,
    t0: u64,
    w1: u64,
    clock: (Instant, u64),
    senders: Vec<mpsc::UnboundedSender<Cmd>>,
    make: impl Fn(u64) -> Cmd,
) {
    if rate <= 0.0 || senders.is_empty() {
        return;
    }
    let at = |unix: u64| clock.0 + Duration::from_nanos(unix.saturating_sub(clock.1));
    let mut k: u64 = 0;
    loop {
        let due = t0 + (k as f64 * 1e9 / rate) as u64;
        if due >= w1 {
            return;
        }
        if due > now_ns() {
            tokio::time::sleep_until(at(due).into()).await;
        }
        let _ = senders[(k as usize) % senders.len()].send(make(k));
        k += 1;
    }
}

async fn drive(
    plan: WorkerPlan,
    start_rx: tokio::sync::oneshot::Receiver<Schedule>,
) -> anyhow::Result<WorkerReport> {
    let shared = Rc::new(Shared::default());
    shared.w0.set(u64::MAX);
    shared.w1.set(u64::MAX);
    let mut connector = Connector::new()
        .limit(0)
        .timeout(Duration::from_secs(plan.connect_timeout_secs));
    if let Some(ip) = plan.local_ip {
        connector = connector.local_address(ip);
    }
    let client = Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(plan.connect_timeout_secs))
        .finish();
    let plan = Rc::new(plan);

    // Senders first: log in, connect.
    let mut sender_txs = Vec::new();
    for (i, spec) in plan.senders.iter().enumerate() {
        let cookie = match &spec.user {
            Some(u) => match login(&client, &plan.urls[spec.url], u, &plan.password).await {
                Ok(c) => Some(c),
                Err(e) => {
                    shared.failure(e);
                    continue;
                }
            },
            None => None,
        };
        match open(&client, &plan, spec, cookie.as_deref()).await {
            Ok(ws) => {
                shared.report.borrow_mut().opened += 1;
                let (tx, rx) = mpsc::unbounded_channel();
                sender_txs.push(tx);
                actix_rt::spawn(sender(shared.clone(), plan.proto, i, spec.room, ws, rx));
            }
            Err(e) => shared.failure(e),
        }
    }

    // Viewers, a bounded number of attempts at a time.
    let gate = Rc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let mut attempts = Vec::with_capacity(plan.viewers.len());
    for spec in plan.viewers.iter().cloned() {
        let (gate, client, plan, shared) =
            (gate.clone(), client.clone(), plan.clone(), shared.clone());
        attempts.push(actix_rt::spawn(async move {
            let _permit = gate.acquire().await.expect("gate open");
            match open(&client, &plan, &spec, None).await {
                Ok(ws) => {
                    {
                        let mut r = shared.report.borrow_mut();
                        r.opened += 1;
                        *r.viewers_per_room.entry(spec.room).or_default() += 1;
                    }
                    let counter = Rc::new(Cell::new(0));
                    shared.viewer_reactions.borrow_mut().push(counter.clone());
                    actix_rt::spawn(viewer(shared, plan.proto, ws, counter));
                }
                Err(e) => shared.failure(e),
            }
        }));
    }
    for a in attempts {
        let _ = a.await;
    }

    {
        let r = shared.report.borrow();
        let ready = Ready {
            opened: r.opened,
            failed: r.failed,
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &serde_json::json!({"ready": ready}))?;
        out.write_all(b"\n")?;
        out.flush()?;
    }

    let schedule = start_rx
        .await
        .map_err(|_| anyhow::anyhow!("no start line from the coordinator"))?;
    shared.w0.set(schedule.w0);
    shared.w1.set(schedule.w1);
    shared.started.set(true);
    let clock = (Instant::now(), now_ns());

    let chat = actix_rt::spawn(pace(
        plan.chat_rate,
        schedule.t0,
        schedule.w1,
        clock,
        sender_txs.clone(),
        |_| Cmd::Chat,
    ));
    let react = actix_rt::spawn(pace(
        plan.reaction_rate,
        schedule.t0,
        schedule.w1,
        clock,
        sender_txs,
        |k| Cmd::React((k % 6) as u32 + 1),
    ));
    let at = |unix: u64| clock.0 + Duration::from_nanos(unix.saturating_sub(clock.1));
    tokio::time::sleep_until(at(schedule.stop).into()).await;
    chat.abort();
    react.abort();

    // What came in time is fixed now; what comes until the report is late.
    shared.stopped.set(true);
    let mut report = std::mem::take(&mut *shared.report.borrow_mut());
    report.latency_pairs = shared.latency.borrow().to_pairs();
    report.delivered_per_message = shared.in_time.take().into_iter().collect();
    let per_viewer: Vec<u64> = shared
        .viewer_reactions
        .borrow()
        .iter()
        .map(|c| c.get())
        .collect();
    report.reactions_received = per_viewer.iter().sum();
    report.reactions_received_min = per_viewer.iter().copied().min().unwrap_or(0);
    report.reactions_received_max = per_viewer.iter().copied().max().unwrap_or(0);
    tokio::time::sleep_until(at(schedule.report).into()).await;
    report.late_per_message = shared.late.take().into_iter().collect();
    report.late_max_us = shared.late_max_us.get();
    Ok(report)
}
