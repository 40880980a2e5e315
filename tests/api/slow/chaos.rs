//! Chaos: a Jepsen-style delivery checker across two nodes.
//!
//! Two `stampede serve` processes share PostgreSQL and a private redis-server.
//! One busy stream with a small ring (`chat.ring_size` 20, so most history and
//! resume answers cannot come from memory) has [`SENDERS`] logged-in senders
//! and [`VIEWERS`] viewers (anonymous and logged in, two of them joining late),
//! spread over both nodes. Senders send with a `client_id` every 100–250 ms and,
//! after each reconnect, re-send what was not acked with the same `client_id`.
//! Every client, senders included, reconnects on any failure to the other node
//! (then to whichever answers), resuming with `?last_id=<highest id it has
//! seen>`, and now and then drops its socket by itself. Meanwhile, at moments
//! drawn from a seeded RNG, one fault at a time: a node is SIGKILLed and
//! restarted on the same port after a short random delay, or Redis is frozen
//! (SIGSTOP) for a few seconds and thawed (SIGCONT).
//!
//! When the faults stop, the senders get their last messages acked, the clients
//! get time to catch up, and a quiet spell follows (late re-sends are still
//! recorded). Then, against PostgreSQL:
//! - (a) every acked `client_id` is stored exactly once, with the acked id, and
//!   no `client_id` is stored twice;
//! - (b) on every socket of every client, the `message` frames (history, then
//!   live) have strictly increasing ids: none repeated, none out of order, none
//!   at or below the `last_id` the socket resumed from;
//! - (c) every client received every visible stored message it could have
//!   seen: all of them when its first history was complete, else every one
//!   above the highest id of that first history (less the range a resume marked
//!   `truncated` skipped, if any) — and nothing that is not stored and visible.
//!
//! Every violation is counted; the failure gives the counts, example ids and
//! the seed.
//!
//! Environment:
//! - `STAMPEDE_CHAOS_SEED=<u64>`: seed of the fault schedule and of the
//!   clients' timing; random when unset, and printed as `chaos seed: N` at the
//!   start. The processes' own timing is not reproducible: a seed replays the
//!   schedule, not the exact interleaving.
//! - `STAMPEDE_CHAOS_SECS=<seconds>`: how long faults are injected (default
//!   25, the suite's run). A longer run is the benchmark mode, e.g.
//!   `STAMPEDE_CHAOS_SECS=300 cargo test --test api -- chaos:: --nocapture`.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt::Write as _,
    rc::Rc,
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// Clients that send (and read, and are checked like viewers).
const SENDERS: usize = 4;
/// Clients that only read.
const VIEWERS: usize = 4;
/// `chat.ring_size` of both nodes: far less than the traffic of a few seconds.
const RING_SIZE: &str = "20";
/// Seconds of faults when `STAMPEDE_CHAOS_SECS` is unset.
const DEFAULT_SECS: u64 = 25;
/// A socket handshake that takes longer has failed.
const CONNECT_WAIT: Duration = Duration::from_secs(4);
/// `hello` and `history` must come within this after the handshake.
const FIRST_FRAMES_WAIT: Duration = Duration::from_secs(5);
/// During the faults, a socket silent this long counts as failed.
const SILENCE: Duration = Duration::from_secs(6);
/// An unacked message is sent again (same `client_id`) after this long.
const RESEND_AFTER: Duration = Duration::from_secs(4);
/// After the faults: how long senders get to have every message acked, and
/// clients to catch up.
const FLUSH_WAIT: Duration = Duration::from_secs(30);
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// Clients keep reading this long after they caught up.
const QUIET: Duration = Duration::from_secs(6);
/// Examples given per kind of violation.
const EXAMPLES: usize = 8;

/// Phases, set by the driver and read by the clients.
#[derive(Default)]
struct Control {
    /// Senders make new messages.
    sending: Cell<bool>,
    /// Faults are on: clients also drop sockets by themselves and treat a long
    /// silence as a failure.
    chaos: Cell<bool>,
    /// Clients close their socket and return.
    stop: Cell<bool>,
}

/// Who a client is.
struct Spec {
    name: String,
    cookie: Option<String>,
    sends: bool,
    start_after: Duration,
}

/// A message sent and not yet acked.
struct Pending {
    cid: String,
    text: String,
    sent_at: Option<Instant>,
}

/// One socket of a client, as the checker follows it.
struct Socket {
    /// 1 for the client's first socket, and so on.
    no: usize,
    /// The `last_id` it resumed from.
    floor: Option<i64>,
    /// The highest id it delivered.
    top: Option<i64>,
    ids: HashSet<i64>,
}

/// What one socket got, for the report of a client that missed a message.
struct Trail {
    no: usize,
    node: usize,
    floor: Option<i64>,
    /// The history's ids, then each live id, in arrival order.
    history: Vec<i64>,
    live: Vec<i64>,
}

impl Trail {
    /// One line: where it connected, what its history held and the live ids
    /// around `near` (laid out like the clients' summary lines, fields apart).
    fn describe(&self, near: i64) -> String {
        let around: Vec<i64> = self
            .live
            .iter()
            .copied()
            .filter(|id| (id - near).abs() <= 3)
            .collect();
        format!(
            "#{} node {} last_id {:?}: history {}, live {}, live near {near}: {around:?}",
            self.no,
            self.node,
            self.floor,
            span(&self.history),
            span(&self.live),
        )
    }
}

/// `N ids (first..last)` of a list of ids in arrival order.
fn span(ids: &[i64]) -> String {
    format!("{} ids ({:?}..{:?})", ids.len(), ids.first(), ids.last())
}

/// Everything one client saw and did.
#[derive(Default)]
struct ClientLog {
    name: String,
    // Sending.
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    acked: HashMap<String, i64>,
    /// (client_id, first acked id, a later different one).
    ack_conflicts: Vec<(String, i64, i64)>,
    errors: BTreeMap<String, usize>,
    // Receiving.
    received: BTreeSet<i64>,
    max_seen: Option<i64>,
    /// Set by the first history: `Some(None)` when it was complete (the client
    /// may expect every message), `Some(Some(top))` when truncated (every
    /// message above `top`).
    origin: Option<Option<i64>>,
    /// Ranges (exclusive) that a resume answered `truncated` legitimately skipped.
    gaps: Vec<(i64, i64)>,
    sockets: usize,
    trails: Vec<Trail>,
    failed_connects: usize,
    frames: usize,
    // Ordering violations: (socket number, id, what it came after).
    repeated: Vec<(usize, i64)>,
    below_floor: Vec<(usize, i64, i64)>,
    out_of_order: Vec<(usize, i64, i64)>,
    bad_frames: Vec<(usize, String)>,
}

impl ClientLog {
    /// The query of the next socket: a plain connect until the first history,
    /// then always a resume (from 0 when nothing was seen yet).
    fn resume_from(&self) -> Option<i64> {
        self.origin.map(|_| self.max_seen.unwrap_or(0))
    }

    fn open_socket(&mut self, floor: Option<i64>, node: usize) -> Socket {
        self.sockets += 1;
        self.trails.push(Trail {
            no: self.sockets,
            node,
            floor,
            history: Vec::new(),
            live: Vec::new(),
        });
        Socket {
            no: self.sockets,
            floor,
            top: None,
            ids: HashSet::new(),
        }
    }

    /// One `message` (live or in a history) on socket `s`.
    fn message(&mut self, s: &mut Socket, id: i64) {
        self.frames += 1;
        if !s.ids.insert(id) {
            self.repeated.push((s.no, id));
        } else if let Some(f) = s.floor.filter(|f| id <= *f) {
            self.below_floor.push((s.no, id, f));
        } else if let Some(t) = s.top.filter(|t| id < *t) {
            self.out_of_order.push((s.no, id, t));
        }
        s.top = Some(s.top.map_or(id, |t| t.max(id)));
        self.received.insert(id);
        self.max_seen = Some(self.max_seen.map_or(id, |m| m.max(id)));
    }

    fn history(&mut self, s: &mut Socket, v: &Value) {
        let Some(messages) = v["messages"].as_array() else {
            self.bad_frames
                .push((s.no, format!("history without messages: {v}")));
            return;
        };
        let mut ids = Vec::new();
        for m in messages {
            match m["id"].as_i64() {
                Some(id) => ids.push(id),
                None => self
                    .bad_frames
                    .push((s.no, format!("history message without id: {m}"))),
            }
        }
        for &id in &ids {
            self.message(s, id);
        }
        if let Some(t) = self.trails.last_mut() {
            t.history.clone_from(&ids);
        }
        let truncated = v["truncated"] == true;
        if self.origin.is_none() {
            self.origin = Some(if truncated {
                ids.iter().max().copied()
            } else {
                None
            });
        } else if truncated {
            let lo = s.floor.unwrap_or(i64::MIN);
            let hi = ids.iter().min().copied().unwrap_or(i64::MAX);
            self.gaps.push((lo, hi));
        }
    }

    /// A frame after `hello` and `history`.
    fn frame(&mut self, s: &mut Socket, v: &Value) {
        match v["type"].as_str().unwrap_or("") {
            "message" => match v["id"].as_i64() {
                Some(id) => {
                    self.message(s, id);
                    if let Some(t) = self.trails.last_mut() {
                        t.live.push(id);
                    }
                }
                None => self
                    .bad_frames
                    .push((s.no, format!("message without id: {v}"))),
            },
            "ack" => {
                let (Some(cid), Some(id)) = (v["client_id"].as_str(), v["id"].as_i64()) else {
                    self.bad_frames.push((s.no, format!("bad ack: {v}")));
                    return;
                };
                match self.acked.get(cid) {
                    Some(&first) if first != id => {
                        self.ack_conflicts.push((cid.to_string(), first, id));
                    }
                    Some(_) => {}
                    None => {
                        self.acked.insert(cid.to_string(), id);
                    }
                }
                self.pending.retain(|_, p| p.cid != cid);
            }
            "error" => {
                let code = v["code"].as_str().unwrap_or("?").to_string();
                *self.errors.entry(code.clone()).or_default() += 1;
                if code == "unavailable" {
                    // Not stored: send it again soon, with the same client_id.
                    if let Some(p) = self
                        .pending
                        .values_mut()
                        .find(|p| v["client_id"].as_str() == Some(p.cid.as_str()))
                    {
                        p.sent_at = None;
                    }
                }
            }
            "hello" | "history" => self
                .bad_frames
                .push((s.no, format!("{} in the middle of a socket", v["type"]))),
            _ => {}
        }
    }

    /// A new message to send: (client_id, text).
    fn new_message(&mut self) -> (String, String) {
        self.next_seq += 1;
        let n = self.next_seq;
        let cid = format!("{}-{n}", self.name);
        let text = format!("{} says {n}", self.name);
        self.pending.insert(
            n,
            Pending {
                cid: cid.clone(),
                text: text.clone(),
                sent_at: Some(Instant::now()),
            },
        );
        (cid, text)
    }

    /// Unacked messages to send (again): all of them, or those not sent for a while.
    fn due(&mut self, all: bool) -> Vec<(String, String)> {
        let now = Instant::now();
        self.pending
            .values_mut()
            .filter(|p| all || p.sent_at.is_none_or(|t| now - t >= RESEND_AFTER))
            .map(|p| {
                p.sent_at = Some(now);
                (p.cid.clone(), p.text.clone())
            })
            .collect()
    }

    /// Whether the client may be expected to have `id`.
    fn expects(&self, id: i64) -> bool {
        let above_origin = match self.origin {
            Some(Some(top)) => id > top,
            _ => true,
        };
        above_origin && !self.gaps.iter().any(|&(lo, hi)| lo < id && id < hi)
    }

    /// Visible stored messages the client should have and has not.
    fn missing(&self, visible: &BTreeSet<i64>) -> Vec<i64> {
        visible
            .iter()
            .copied()
            .filter(|id| self.expects(*id) && !self.received.contains(id))
            .collect()
    }
}

/// A client: connects, reads, sends when it is a sender, and reconnects on
/// every failure until told to stop.
async fn client(
    spec: Spec,
    addresses: Rc<[String; 2]>,
    host: String,
    stream: i64,
    ctl: Rc<Control>,
    log: Rc<RefCell<ClientLog>>,
    mut rng: StdRng,
) {
    tokio::time::sleep(spec.start_after).await;
    let mut node = rng.gen_range(0..2);
    while !ctl.stop.get() {
        let floor = log.borrow().resume_from();
        let query = floor.map(|l| format!("?last_id={l}")).unwrap_or_default();
        match try_connect(
            &addresses[node],
            &host,
            stream,
            spec.cookie.as_deref(),
            &query,
            CONNECT_WAIT,
        )
        .await
        {
            Ok(mut c) => socket(&mut c, &spec, floor, node, &ctl, &log, &mut rng).await,
            Err(_) => log.borrow_mut().failed_connects += 1,
        }
        node = 1 - node;
        if !ctl.stop.get() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
        }
    }
}

/// One socket's life; returns when it failed, was dropped on purpose, or the
/// client is told to stop.
async fn socket(
    c: &mut WsClient,
    spec: &Spec,
    floor: Option<i64>,
    node: usize,
    ctl: &Control,
    log: &RefCell<ClientLog>,
    rng: &mut StdRng,
) {
    let mut s = log.borrow_mut().open_socket(floor, node);
    for want in ["hello", "history"] {
        match c.next_frame(FIRST_FRAMES_WAIT).await {
            Next::Text(v) if v["type"] == want => {
                if want == "history" {
                    log.borrow_mut().history(&mut s, &v);
                }
            }
            Next::Text(v) => {
                log.borrow_mut()
                    .bad_frames
                    .push((s.no, format!("expected {want} first, got {v}")));
                return;
            }
            Next::Idle | Next::Closed => return,
        }
    }
    let send_gap = |rng: &mut StdRng| Duration::from_millis(rng.gen_range(100..=250));
    if spec.sends {
        let resend = log.borrow_mut().due(true);
        for (cid, text) in resend {
            if !c
                .try_send(json!({"type":"message","message":text,"client_id":cid}))
                .await
            {
                return;
            }
        }
    }
    let mut next_send = Instant::now() + send_gap(rng);
    let drop_at = Instant::now() + Duration::from_millis(rng.gen_range(4_000..12_000));
    let mut last_frame = Instant::now();
    loop {
        if ctl.stop.get() {
            return;
        }
        let now = Instant::now();
        if ctl.chaos.get() && (now >= drop_at || now - last_frame > SILENCE) {
            return;
        }
        if spec.sends && now >= next_send {
            let mut batch = log.borrow_mut().due(false);
            if ctl.sending.get() {
                batch.push(log.borrow_mut().new_message());
            }
            for (cid, text) in batch {
                if !c
                    .try_send(json!({"type":"message","message":text,"client_id":cid}))
                    .await
                {
                    return;
                }
            }
            next_send = now + send_gap(rng);
        }
        let mut wake = now + Duration::from_millis(500);
        if spec.sends {
            wake = wake.min(next_send);
        }
        match c.next_frame(wake.saturating_duration_since(now)).await {
            Next::Text(v) => {
                last_frame = Instant::now();
                log.borrow_mut().frame(&mut s, &v);
            }
            Next::Idle => {}
            Next::Closed => return,
        }
    }
}

/// Counted violations of one kind, with a few examples.
fn violation(out: &mut Vec<String>, what: &str, examples: &[String]) {
    if examples.is_empty() {
        return;
    }
    let shown: Vec<&str> = examples.iter().take(EXAMPLES).map(String::as_str).collect();
    out.push(format!(
        "{} {what} (e.g. {}{})",
        examples.len(),
        shown.join(", "),
        if examples.len() > EXAMPLES {
            ", ..."
        } else {
            ""
        }
    ));
}

/// Ids as short ranges: `3..7, 9, 12..13`.
fn ranges(ids: &[i64]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}..{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    if out.len() > EXAMPLES {
        let n = out.len();
        out.truncate(EXAMPLES);
        out.push(format!("... ({n} runs)"));
    }
    out.join(", ")
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v}: not a number")),
    )
}

#[actix_web::test]
async fn chaos_every_socket_gets_every_message_once_in_order() {
    let seed = env_u64("STAMPEDE_CHAOS_SEED").unwrap_or_else(|| rand::random::<u32>().into());
    let secs = env_u64("STAMPEDE_CHAOS_SECS").unwrap_or(DEFAULT_SECS);
    eprintln!("chaos seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let redis = PrivateRedis::start();
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let redis_url = redis.url();
    let prefix = format!("c{}", random_hex(8));
    let env = [
        ("STAMPEDE_REDIS_URL", redis_url.as_str()),
        ("STAMPEDE_REDIS_PREFIX", prefix.as_str()),
        ("STAMPEDE_CHAT_RING_SIZE", RING_SIZE),
        ("STAMPEDE_LIMITS_CHAT_MESSAGES", "1000000"),
        ("STAMPEDE_LIMITS_CHAT_BURST", "1000000"),
    ];
    let ports = [free_port(), free_port()];
    let mut nodes = [
        Some(Node::start(ports[0], &env).await),
        Some(Node::start(ports[1], &env).await),
    ];
    let addresses = Rc::new(ports.map(|p| format!("http://127.0.0.1:{p}")));

    // Senders s0.. (logged in); viewers v0.. (even ones anonymous, odd ones
    // logged in; v0 and v1 from the start, the others joining in the first half).
    let mut specs = Vec::new();
    for i in 0..SENDERS {
        let name = format!("s{i}");
        let cookie = app.user(&name, Role::Viewer).await.cookie;
        specs.push(Spec {
            name,
            cookie: Some(cookie),
            sends: true,
            start_after: Duration::from_millis(rng.gen_range(0..500)),
        });
    }
    for i in 0..VIEWERS {
        let name = format!("v{i}");
        let cookie = if i % 2 == 1 {
            Some(app.user(&name, Role::Viewer).await.cookie)
        } else {
            None
        };
        let start_after = if i < 2 {
            Duration::from_millis(rng.gen_range(0..500))
        } else {
            Duration::from_millis(rng.gen_range(2_000..(secs * 500).max(2_001)))
        };
        specs.push(Spec {
            name,
            cookie,
            sends: false,
            start_after,
        });
    }

    let ctl = Rc::new(Control::default());
    ctl.sending.set(true);
    ctl.chaos.set(true);
    let started = Instant::now();
    let mut logs = Vec::new();
    let mut tasks = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let log = Rc::new(RefCell::new(ClientLog {
            name: spec.name.clone(),
            ..ClientLog::default()
        }));
        logs.push(log.clone());
        tasks.push(actix_rt::spawn(client(
            spec,
            addresses.clone(),
            app.tenant.host.clone(),
            stream,
            ctl.clone(),
            log,
            StdRng::seed_from_u64(seed.wrapping_add(1 + i as u64)),
        )));
    }

    // The faults, one at a time, until `secs` have passed.
    let chaos_end = started + Duration::from_secs(secs);
    let mut faults = Vec::new();
    loop {
        let pause = Duration::from_millis(rng.gen_range(1_000..3_000));
        if Instant::now() + pause + Duration::from_secs(1) >= chaos_end {
            break;
        }
        tokio::time::sleep(pause).await;
        let at = started.elapsed().as_secs_f32();
        let fault = match rng.gen_range(0..3) {
            n @ (0 | 1) => {
                let down = Duration::from_millis(rng.gen_range(200..2_000));
                if let Some(mut node) = nodes[n].take() {
                    node.child.kill().unwrap(); // SIGKILL
                    let _ = node.child.wait();
                }
                tokio::time::sleep(down).await;
                nodes[n] = Some(Node::start(ports[n], &env).await);
                format!("{at:.1}s kill node {n}, down {down:?}")
            }
            _ => {
                let frozen = Duration::from_millis(rng.gen_range(1_000..4_000));
                redis.signal("-STOP");
                tokio::time::sleep(frozen).await;
                redis.signal("-CONT");
                format!("{at:.1}s freeze redis {frozen:?}")
            }
        };
        eprintln!("chaos: {fault}");
        faults.push(fault);
    }
    tokio::time::sleep(chaos_end.saturating_duration_since(Instant::now())).await;

    // Heal: no more faults or new messages; every unacked message is re-sent
    // until acked, then the clients catch up.
    ctl.chaos.set(false);
    ctl.sending.set(false);
    // Polls that do not panic: what is not done by their deadlines is
    // reported below, with the run's statistics.
    let deadline = Instant::now() + FLUSH_WAIT;
    while Instant::now() < deadline && logs.iter().any(|l| !l.borrow().pending.is_empty()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let visible: BTreeSet<i64> = app
            .stored_rows(stream)
            .await
            .into_iter()
            .filter(|r| !r.deleted)
            .map(|r| r.id)
            .collect();
        let behind = logs
            .iter()
            .any(|l| !l.borrow().missing(&visible).is_empty());
        if !behind || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A wait, not a poll: a repeated or out-of-order frame late after the
    // catch-up would show in this time.
    tokio::time::sleep(QUIET).await;
    ctl.stop.set(true);
    let mut crashed = Vec::new();
    for (t, log) in tasks.into_iter().zip(&logs) {
        if t.await.is_err() {
            crashed.push(log.borrow().name.clone());
        }
    }

    // The checks.
    let rows = app.stored_rows(stream).await;
    let visible: BTreeSet<i64> = rows.iter().filter(|r| !r.deleted).map(|r| r.id).collect();
    let mut by_cid: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut no_cid = Vec::new();
    for r in &rows {
        match &r.client_id {
            Some(c) => by_cid.entry(c).or_default().push(r.id),
            None => no_cid.push(r.id.to_string()),
        }
    }
    let mut v = Vec::new();
    if !crashed.is_empty() {
        v.push(format!("client tasks panicked: {crashed:?}"));
    }

    // (a) acked ↔ stored.
    let mut twice: Vec<String> = by_cid
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(c, ids)| format!("{c} as {ids:?}"))
        .collect();
    twice.sort();
    violation(&mut v, "client_ids stored more than once", &twice);
    violation(&mut v, "messages stored without a client_id", &no_cid);
    let (mut unstored, mut wrong_id, mut conflicts, mut unacked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut total_acked = 0;
    for log in &logs {
        let l = log.borrow();
        total_acked += l.acked.len();
        for (cid, id) in &l.acked {
            match by_cid.get(cid.as_str()) {
                None => unstored.push(format!("{cid} acked as {id}")),
                Some(ids) if !ids.contains(id) => {
                    wrong_id.push(format!("{cid} acked as {id}, stored as {ids:?}"))
                }
                Some(_) => {}
            }
        }
        for (cid, a, b) in &l.ack_conflicts {
            conflicts.push(format!("{cid} acked as {a} then {b}"));
        }
        unacked.extend(l.pending.values().map(|p| p.cid.clone()));
    }
    violation(&mut v, "acked client_ids not stored", &unstored);
    violation(
        &mut v,
        "acked client_ids stored under another id",
        &wrong_id,
    );
    violation(
        &mut v,
        "client_ids acked twice with different ids",
        &conflicts,
    );
    violation(
        &mut v,
        &format!("messages never acked within {FLUSH_WAIT:?} after the faults stopped"),
        &unacked,
    );

    // (b) order on each socket, and (c) completeness per client.
    let (mut repeated, mut below, mut disorder, mut bad) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stats = String::new();
    for log in &logs {
        let l = log.borrow();
        let n = &l.name;
        repeated.extend(l.repeated.iter().map(|(s, id)| format!("{n}#{s} id {id}")));
        below.extend(
            l.below_floor
                .iter()
                .map(|(s, id, f)| format!("{n}#{s} id {id} after last_id={f}")),
        );
        disorder.extend(
            l.out_of_order
                .iter()
                .map(|(s, id, t)| format!("{n}#{s} id {id} after {t}")),
        );
        bad.extend(l.bad_frames.iter().map(|(s, f)| format!("{n}#{s} {f}")));
        let missing = l.missing(&visible);
        let top = l.max_seen.unwrap_or(i64::MIN);
        let (holes, tail): (Vec<i64>, Vec<i64>) = missing.iter().partition(|&&id| id < top);
        if !holes.is_empty() {
            let trail: Vec<String> = l.trails.iter().map(|t| t.describe(holes[0])).collect();
            v.push(format!(
                "{n} never got {} visible messages below the highest id it saw ({top}): {}\n    {}",
                holes.len(),
                ranges(&holes),
                trail.join("\n    ")
            ));
        }
        if !tail.is_empty() {
            v.push(format!(
                "{n} never got the last {} visible messages (above {top}): {}",
                tail.len(),
                ranges(&tail)
            ));
        }
        let extra: Vec<i64> = l.received.difference(&visible).copied().collect();
        if !extra.is_empty() {
            v.push(format!(
                "{n} got {} ids that are not stored visible messages: {}",
                extra.len(),
                ranges(&extra)
            ));
        }
        let origin = match l.origin {
            None => "never connected".to_string(),
            Some(None) => "from the start".to_string(),
            Some(Some(t)) => format!("from above {t}"),
        };
        let _ = writeln!(
            stats,
            "  {n}: {} sockets ({} failed connects), {} message frames, {} ids, {origin}, \
             {} truncated resumes, acked {}, errors {:?}",
            l.sockets,
            l.failed_connects,
            l.frames,
            l.received.len(),
            l.gaps.len(),
            l.acked.len(),
            l.errors
        );
    }
    violation(&mut v, "message frames repeated on one socket", &repeated);
    violation(
        &mut v,
        "message frames at or below the socket's last_id",
        &below,
    );
    violation(&mut v, "message frames out of order", &disorder);
    violation(&mut v, "unexpected frames", &bad);
    let floor = 2 * secs as usize;
    if total_acked < floor {
        v.push(format!(
            "too little traffic to judge: {total_acked} acked messages (want at least {floor})"
        ));
    }

    let summary = format!(
        "chaos seed {seed}, {secs} s of faults ({}), {} stored ({} visible), {total_acked} acked\n{stats}",
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join("; ")
        },
        rows.len(),
        visible.len(),
    );
    if v.is_empty() {
        eprintln!("{summary}");
    }
    assert!(
        v.is_empty(),
        "{} kinds of violation (replay with STAMPEDE_CHAOS_SEED={seed} STAMPEDE_CHAOS_SECS={secs}):\n- {}\n{summary}",
        v.len(),
        v.join("\n- ")
    );
}
