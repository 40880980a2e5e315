//! Chaos: for a bounded time, clients chat through two nodes while one node at
//! a time is SIGKILLed and restarted and Redis is stopped and restarted. Then:
//! every acked message is stored exactly once with its acked id, and every
//! client's view (live, resumed with `last_id`) equals the database.

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    rc::Rc,
    time::{Duration, Instant},
};

use rand::Rng;
use serde_json::json;
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

/// How long the chaos lasts.
const CHAOS: Duration = Duration::from_secs(30);

#[derive(Default)]
struct ClientLog {
    /// client_id → acked message id.
    acked: HashMap<String, i64>,
    /// Sent, not yet acked, in order.
    pending: Vec<(String, String)>,
    /// Every message id seen (history, resume, live).
    seen: BTreeSet<i64>,
    last_id: Option<i64>,
    sent: usize,
}

/// One chatting client: connects to a node, resumes, resends pending
/// messages with their client_id, sends a new one every 250 ms, and on any
/// failure reconnects to the other node.
async fn client(
    name: String,
    cookie: String,
    addresses: [String; 2],
    host: String,
    stream: i64,
    log: Rc<RefCell<ClientLog>>,
    until: Instant,
) {
    let mut which = 0usize;
    while Instant::now() < until {
        which = 1 - which;
        let query = log
            .borrow()
            .last_id
            .map(|l| format!("?last_id={l}"))
            .unwrap_or_default();
        let Ok(mut c) = connect(
            &addresses[which],
            &host,
            stream,
            Some(&cookie),
            None,
            &query,
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let resend: Vec<(String, String)> = log.borrow().pending.clone();
        for (cid, text) in resend {
            c.send(json!({"type":"message","message":text,"client_id":cid}))
                .await;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if Instant::now() >= until {
                        return;
                    }
                    let (cid, text) = {
                        let mut l = log.borrow_mut();
                        l.sent += 1;
                        let n = l.sent;
                        let cid = format!("{name}-{n}");
                        let text = format!("{name} says {n}");
                        l.pending.push((cid.clone(), text.clone()));
                        (cid, text)
                    };
                    c.send(json!({"type":"message","message":text,"client_id":cid})).await;
                }
                frame = c.next_text(Duration::from_secs(3)) => {
                    let Some(v) = frame else { break };
                    let mut l = log.borrow_mut();
                    match v["type"].as_str().unwrap_or("") {
                        "history" => {
                            for m in v["messages"].as_array().unwrap() {
                                let id = m["id"].as_i64().unwrap();
                                l.seen.insert(id);
                                l.last_id = Some(l.last_id.map_or(id, |x| x.max(id)));
                            }
                        }
                        "message" => {
                            let id = v["id"].as_i64().unwrap();
                            l.seen.insert(id);
                            l.last_id = Some(l.last_id.map_or(id, |x| x.max(id)));
                        }
                        "ack" => {
                            let cid = v["client_id"].as_str().unwrap().to_string();
                            let id = v["id"].as_i64().unwrap();
                            if let Some(prev) = l.acked.insert(cid.clone(), id) {
                                assert_eq!(prev, id, "{cid} acked with two ids");
                            }
                            l.pending.retain(|(p, _)| *p != cid);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

#[actix_web::test]
async fn chaos_loses_nothing() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let redis_url = redis.url();
    let prefix = format!("c{}", random_hex(8));
    let env = [
        ("STAMPEDE_REDIS_URL", redis_url.as_str()),
        ("STAMPEDE_REDIS_PREFIX", prefix.as_str()),
        ("STAMPEDE_LIMITS_CHAT_MESSAGES", "100000"),
        ("STAMPEDE_LIMITS_CHAT_BURST", "100000"),
    ];
    let ports = [free_port(), free_port()];
    let mut nodes = [
        Some(Node::start(ports[0], &env).await),
        Some(Node::start(ports[1], &env).await),
    ];
    let addresses = [
        format!("http://127.0.0.1:{}", ports[0]),
        format!("http://127.0.0.1:{}", ports[1]),
    ];
    let mut logs = Vec::new();
    let until = Instant::now() + CHAOS;
    for i in 0..3 {
        let name = format!("u{i}");
        app.create_user(&name, "password-123", Role::Viewer).await;
        let (cookie, _) = app.login(&name, "password-123").await;
        let log = Rc::new(RefCell::new(ClientLog::default()));
        logs.push(log.clone());
        actix_rt::spawn(client(
            name,
            cookie,
            addresses.clone(),
            app.tenant.host.clone(),
            stream,
            log,
            until,
        ));
    }

    // The chaos: one fault at a time, then heal.
    let mut rng = rand::thread_rng();
    while Instant::now() + Duration::from_secs(4) < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1500..3000))).await;
        match rng.gen_range(0..3) {
            n @ (0 | 1) => {
                if let Some(mut node) = nodes[n].take() {
                    node.child.kill().unwrap();
                    let _ = node.child.wait();
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
                nodes[n] = Some(Node::start(ports[n], &env).await);
            }
            _ => {
                redis.stop();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2000))).await;
                redis.start_again();
            }
        }
    }
    tokio::time::sleep(until.saturating_duration_since(Instant::now()) + Duration::from_secs(1))
        .await;

    // Heal: every client resumes once more and gets its pending messages acked.
    tokio::time::sleep(Duration::from_secs(6)).await; // relays resubscribe, sweeps run
    let node = TestApp {
        address: addresses[0].clone(),
        ..app.clone_handle()
    };
    for (i, log) in logs.iter().enumerate() {
        let name = format!("u{i}");
        let (cookie, _) = node.login(&name, "password-123").await;
        let last = log.borrow().last_id;
        let query = last.map(|l| format!("?last_id={l}")).unwrap_or_default();
        let mut c = connect(
            &node.address,
            &node.tenant.host,
            stream,
            Some(&cookie),
            None,
            &query,
        )
        .await
        .unwrap();
        let pending = log.borrow().pending.clone();
        for (cid, text) in &pending {
            c.send(json!({"type":"message","message":text,"client_id":cid}))
                .await;
        }
        let mut waiting = pending.len();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let Some(v) = c.next_text(Duration::from_millis(800)).await else {
                if waiting == 0 {
                    break;
                }
                continue;
            };
            let mut l = log.borrow_mut();
            match v["type"].as_str().unwrap_or("") {
                "history" => {
                    assert_eq!(
                        v["truncated"], false,
                        "{name} missed more than a resume holds"
                    );
                    for m in v["messages"].as_array().unwrap() {
                        l.seen.insert(m["id"].as_i64().unwrap());
                    }
                }
                "message" => {
                    l.seen.insert(v["id"].as_i64().unwrap());
                }
                "ack" => {
                    let cid = v["client_id"].as_str().unwrap().to_string();
                    let id = v["id"].as_i64().unwrap();
                    if let Some(prev) = l.acked.insert(cid.clone(), id) {
                        assert_eq!(prev, id);
                    }
                    l.pending.retain(|(p, _)| *p != cid);
                    waiting = waiting.saturating_sub(1);
                }
                _ => {}
            }
        }
        assert!(
            log.borrow().pending.is_empty(),
            "{name} still has unacked messages"
        );
    }

    // The database: each client_id exactly once, with the acked id.
    let c = app.store.client().await.unwrap();
    let rows = c
        .query(
            &format!(
                "SELECT m.id, m.client_id FROM {0}.chat_chatmessage m JOIN {0}.chat_chatroom r ON r.id = m.room_id \
                 WHERE r.stream_id = $1 ORDER BY m.id",
                app.tenant.slug.schema()
            ),
            &[&stream],
        )
        .await
        .unwrap();
    let mut by_cid: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &rows {
        by_cid
            .entry(r.get::<_, String>(1))
            .or_default()
            .push(r.get(0));
    }
    for (cid, ids) in &by_cid {
        assert_eq!(ids.len(), 1, "{cid} stored {} times", ids.len());
    }
    let stored: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut total_acked = 0;
    for (i, log) in logs.iter().enumerate() {
        let l = log.borrow();
        for (cid, id) in &l.acked {
            assert_eq!(
                by_cid.get(cid).map(|v| v[0]),
                Some(*id),
                "acked {cid} as {id}"
            );
        }
        total_acked += l.acked.len();
        assert_eq!(
            l.seen, stored,
            "client u{i} ended with a view that differs from the database"
        );
    }
    assert!(
        total_acked > 30,
        "the clients got through ({total_acked} acked)"
    );
    assert_eq!(total_acked, stored.len());
}
