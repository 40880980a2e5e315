//! Webhooks (PROTOCOL.md, "Bots, tokens and webhooks"): a real HTTP receiver
//! inside the test (over TLS where a test asks: `Receiver::up_tls`) checks
//! the signature of every request; events of every
//! type arrive in order, retries keep the event id, nothing committed is lost
//! across a SIGKILL, two nodes deliver each event once, failing endpoints are
//! disabled, and bad input changes nothing.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use stampede::domain::Role;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{
    rustls::{
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

use crate::{helpers::*, slow::common::*};

/// One request the receiver accepted as correctly signed.
#[derive(Debug, Clone)]
pub struct Got {
    /// `Stampede-Event-Id`.
    pub event_id: String,
    /// The parsed body.
    pub body: Value,
    /// The status answered.
    pub answered: u16,
}

/// A webhook receiver on 127.0.0.1: verifies every signature with the
/// endpoint's secret, answers 500 to the first `fail_next` requests, then 200.
#[derive(Clone)]
pub struct Receiver {
    /// Its port.
    pub port: u16,
    /// The TLS it speaks, if any.
    tls: Option<TlsAcceptor>,
    secret: Arc<Mutex<String>>,
    got: Arc<Mutex<Vec<Got>>>,
    bad: Arc<Mutex<Vec<String>>>,
    fail_next: Arc<AtomicU32>,
    task: Arc<Mutex<Option<actix_rt::task::JoinHandle<()>>>>,
}

fn verify(secret: &str, header: &str, body: &[u8]) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_string()),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (t.ok_or("no t")?, v1.ok_or("no v1")?);
    let ts: i64 = t.parse().map_err(|_| "t not a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts).abs() > 300 {
        return Err(format!("stale t={ts}"));
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want = hex::encode(mac.finalize().into_bytes());
    if want != v1 {
        return Err(format!("bad signature {v1}"));
    }
    Ok(())
}

impl Receiver {
    /// A receiver that is not listening yet on a free port.
    pub fn down() -> Receiver {
        Receiver {
            port: free_port(),
            tls: None,
            secret: Arc::default(),
            got: Arc::default(),
            bad: Arc::default(),
            fail_next: Arc::default(),
            task: Arc::default(),
        }
    }

    /// A receiver listening on a free port.
    pub async fn up() -> Receiver {
        let r = Receiver::down();
        r.listen().await;
        r
    }

    /// A receiver listening on a free port over TLS only, with the PEM
    /// certificate chain `cert` and its key `key`.
    pub async fn up_tls(cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("PEM key");
        let config = ServerConfig::builder_with_provider(stampede::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("certificate and key");
        let mut r = Receiver::down();
        r.tls = Some(TlsAcceptor::from(Arc::new(config)));
        r.listen().await;
        r
    }

    /// `http://127.0.0.1:PORT/hook`, or `https://` for a TLS receiver.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/hook", self.port)
    }

    /// The secret to check signatures with.
    pub fn set_secret(&self, s: &str) {
        *self.secret.lock().unwrap() = s.to_string();
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Everything received with a valid signature, in arrival order.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Acknowledged events (2xx answered), in arrival order.
    pub fn acked(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.answered == 200)
            .collect()
    }

    /// `data.<field>` of each acknowledged event of type `kind`, in arrival order.
    pub fn acked_texts(&self, kind: &str, field: &str) -> Vec<String> {
        self.acked()
            .iter()
            .filter(|g| g.body["type"] == kind)
            .map(|g| g.body["data"][field].as_str().unwrap().to_string())
            .collect()
    }

    /// Starts listening (again) on its port.
    pub async fn listen(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("receiver port");
        let me = self.clone();
        let task = actix_rt::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let me = me.clone();
                actix_rt::spawn(async move {
                    match &me.tls {
                        None => me.serve(sock).await,
                        // A client that refuses the certificate sends nothing.
                        Some(tls) => {
                            if let Ok(sock) = tls.accept(sock).await {
                                me.serve(sock).await
                            }
                        }
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    async fn serve(&self, mut sock: impl AsyncRead + AsyncWrite + Unpin) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = &buf[head_end..head_end + len];
        let secret = self.secret.lock().unwrap().clone();
        let checked = (|| {
            if !head.starts_with("POST /hook ") {
                return Err(format!("request line {:?}", head.lines().next()));
            }
            if headers.get("content-type").map(String::as_str) != Some("application/json") {
                return Err("content type".to_string());
            }
            let sig = headers
                .get("stampede-signature")
                .ok_or("no signature header")?;
            verify(&secret, sig, body)?;
            let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let id = headers.get("stampede-event-id").ok_or("no event id")?;
            if value["id"].as_str() != Some(id.as_str()) {
                return Err("event id header differs from the body".to_string());
            }
            Ok((id.clone(), value))
        })();
        let status = match checked {
            Ok((event_id, body)) => {
                let fail = self
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let answered = if fail { 500 } else { 200 };
                self.got.lock().unwrap().push(Got {
                    event_id,
                    body,
                    answered,
                });
                answered
            }
            Err(e) => {
                self.bad.lock().unwrap().push(e);
                400
            }
        };
        let answer =
            format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let _ = sock.write_all(answer.as_bytes()).await;
        let _ = sock.shutdown().await;
    }

    /// Panics when any request was refused (bad signature, headers...).
    pub fn assert_all_signed(&self) {
        let bad = self.bad.lock().unwrap().clone();
        assert!(bad.is_empty(), "refused requests: {bad:?}");
    }
}

/// [`eventually`] for a check of what the receiver holds.
pub async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    eventually(what, limit, || std::future::ready(check().then_some(()))).await
}

/// Webhook tests run one at a time: each turns delivery on in its nodes, and
/// every delivering node scans every tenant, so one test's windows (the
/// disable test's second) must not act on another test's endpoints.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Environment that lets the CLI register `http://` endpoints.
const ALLOW_HTTP: (&str, &str) = ("STAMPEDE_WEBHOOKS_ALLOW_HTTP", "true");

/// `stampede webhook add`; returns (id, secret) and tells the receiver the secret.
pub fn add_webhook(app: &TestApp, rx: &Receiver, events: Option<&str>) -> (i64, String) {
    let url = rx.url();
    let mut args = vec![
        "webhook",
        "add",
        "--tenant",
        app.tenant.slug.as_str(),
        url.as_str(),
    ];
    if let Some(e) = events {
        args.extend(["--events", e]);
    }
    let out = cli(&args, &[ALLOW_HTTP]);
    assert!(out.status.success(), "webhook add: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let (id, secret) = text.trim().split_once(' ').expect("<id> <secret>");
    rx.set_secret(secret);
    (id.parse().unwrap(), secret.to_string())
}

/// Settings of a node that delivers quickly (short polls and retries).
pub fn fast(s: &mut stampede::config::Settings) {
    s.webhooks.deliver = true;
    s.webhooks.allow_http = true;
    s.webhooks.poll_ms = 50;
    s.webhooks.retry_first_ms = 100;
    s.webhooks.retry_max_secs = 1;
    s.webhooks.timeout_secs = 2;
    s.limits.chat_messages = 1000;
    s.limits.chat_burst = 1000;
}

/// The same as environment variables, for `stampede serve` nodes.
const FAST_ENV: &[(&str, &str)] = &[
    ("STAMPEDE_WEBHOOKS_DELIVER", "true"),
    ("STAMPEDE_WEBHOOKS_ALLOW_HTTP", "true"),
    ("STAMPEDE_WEBHOOKS_POLL_MS", "50"),
    ("STAMPEDE_WEBHOOKS_RETRY_FIRST_MS", "100"),
    ("STAMPEDE_WEBHOOKS_RETRY_MAX_SECS", "1"),
    ("STAMPEDE_WEBHOOKS_TIMEOUT_SECS", "2"),
    ("STAMPEDE_LIMITS_CHAT_MESSAGES", "1000"),
    ("STAMPEDE_LIMITS_CHAT_BURST", "1000"),
];

/// Posts a chat message over HTTP; returns its id.
async fn say(user: &TestUser<'_>, stream: i64, text: &str) -> i64 {
    let r = user
        .post(
            &format!("/api/streams/{stream}/messages"),
            json!({ "message": text }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["id"].as_i64().unwrap()
}

/// A webhook test's start: [`SERIAL`] held, a node with `settings`, a
/// receiver listening, and a stream of `owner` (a streamer).
async fn hooked(
    settings: impl FnOnce(&mut stampede::config::Settings),
) -> (tokio::sync::MutexGuard<'static, ()>, TestApp, Receiver, i64) {
    let serial = SERIAL.lock().await;
    let app = spawn_app_with(settings).await;
    let rx = Receiver::up().await;
    let stream = app.create_stream("owner").await;
    (serial, app, rx, stream)
}

/// Rows still queued in the tenant's outbox, and endpoints leased now.
async fn outbox_idle(app: &TestApp) -> bool {
    let queued = count(app, "webhook_outbox").await;
    let leased = count(app, "webhook_endpoint WHERE leased_by IS NOT NULL").await;
    queued == 0 && leased == 0
}

/// `SELECT count(*) FROM <the tenant's schema>.<from>`.
async fn count(app: &TestApp, from: &str) -> i64 {
    let c = app.store.client().await.unwrap();
    let sql = format!("SELECT count(*) FROM {}.{from}", app.tenant.slug.schema());
    c.query_one(&sql, &[]).await.unwrap().get(0)
}

async fn wait_idle(app: &TestApp) {
    eventually("the outbox drained", Duration::from_secs(60), || async {
        outbox_idle(app).await.then_some(())
    })
    .await
}

/// Message ids of the acknowledged `message.created` events of chat messages.
fn created_ids(rx: &Receiver) -> Vec<i64> {
    rx.acked()
        .iter()
        .filter(|g| g.body["type"] == "message.created")
        .filter(|g| g.body["data"]["message_type"] == "message")
        .map(|g| g.body["data"]["id"].as_i64().unwrap())
        .collect()
}

#[actix_web::test]
async fn every_event_type_arrives_signed_and_in_order() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    let owner = app.logged_in("owner").await;
    let bob = app.user("bob", Role::Viewer).await;
    let (id, _) = add_webhook(&app, &rx, None);

    set_status(&owner, stream, "live").await;
    let first = say(&owner, stream, "first").await;
    let r = owner
        .post(
            &format!("/api/streams/{stream}/messages"),
            json!({"message":"a reply @bob","reply_to": first}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json()["id"].as_i64().unwrap();
    let mut ws = owner.ws(stream).await;
    ws.send(json!({"type":"edit","message_id": first, "message":"first, edited"}))
        .await;
    ws.expect("edit").await;
    let frames = [
        json!({"type":"pin","message_id": second}),
        json!({"type":"delete","message_id": second}),
        json!({"type":"hide","username":"bob"}),
    ];
    moderate(&owner, stream, &frames).await;
    let hidden = say(&bob, stream, "nobody sees this").await;
    // Nor its deletion.
    moderate(
        &owner,
        stream,
        &[json!({"type":"delete","message_id": hidden})],
    )
    .await;
    let third = say(&owner, stream, "after the hidden one").await;
    let frames = [
        json!({"type":"slow_mode","seconds": 5}),
        json!({"type":"clear"}),
    ];
    moderate(&owner, stream, &frames).await;
    set_status(&owner, stream, "ended").await;

    // A closed minute of reactions, as the reaction writer rolls it up.
    let c = app.store.client().await.unwrap();
    let s = app.tenant.slug.schema();
    c.execute(
        &format!(
            "INSERT INTO {s}.streaming_reaction_minute (stream_id, stamp_id, minute, count) VALUES \
             ($1, 1, date_trunc('minute', now()) - interval '2 minutes', 3), \
             ($1, 2, date_trunc('minute', now()) - interval '2 minutes', 4)"
        ),
        &[&stream],
    )
    .await
    .unwrap();

    until("every event", Duration::from_secs(60), || {
        let got = rx.acked();
        got.iter().any(|g| g.body["type"] == "reactions.minute")
            && got
                .iter()
                .any(|g| g.body["type"] == "stream.status" && g.body["data"]["status"] == "ended")
    })
    .await;
    rx.assert_all_signed();

    // Chat events in the order they happened (notices aside).
    let seen: Vec<String> = rx
        .acked()
        .iter()
        .filter(|g| g.body["type"] != "reactions.minute")
        .filter(|g| {
            g.body["type"] != "message.created" || g.body["data"]["message_type"] == "message"
        })
        .map(|g| {
            let b = &g.body;
            match b["type"].as_str().unwrap() {
                "moderation.action" => format!(
                    "moderation.action:{}",
                    b["data"]["action"].as_str().unwrap()
                ),
                "stream.status" => {
                    format!("stream.status:{}", b["data"]["status"].as_str().unwrap())
                }
                "message.created" | "message.edited" => {
                    format!("{}:{}", b["type"].as_str().unwrap(), b["data"]["id"])
                }
                "message.deleted" => format!("message.deleted:{}", b["data"]["message_id"]),
                t => t.to_string(),
            }
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            "stream.status:live".to_string(),
            format!("message.created:{first}"),
            format!("message.created:{second}"),
            format!("message.edited:{first}"),
            "moderation.action:pin".to_string(),
            format!("message.deleted:{second}"),
            "moderation.action:hide".to_string(),
            format!("message.created:{third}"),
            "moderation.action:slow_mode".to_string(),
            "chat.cleared".to_string(),
            "stream.status:ended".to_string(),
        ]
    );
    // The hidden message was never sent.
    assert!(created_ids(&rx).iter().all(|m| *m != hidden));
    assert!(!rx
        .got()
        .iter()
        .any(|g| g.body.to_string().contains("nobody sees this")));

    // Bodies as documented.
    let all = rx.acked();
    for g in &all {
        assert_eq!(g.body["tenant"], app.tenant.slug.as_str());
        assert!(g.body["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(g.body["stream_id"], stream, "{}", g.body);
    }
    let reply = all
        .iter()
        .find(|g| g.body["type"] == "message.created" && g.body["data"]["id"] == second)
        .unwrap();
    let d = &reply.body["data"];
    assert_eq!(d["username"], "owner");
    assert_eq!(d["role"], "streamer");
    assert_eq!(d["message"], "a reply @bob");
    assert_eq!(d["reply_to"]["id"], first);
    assert_eq!(d["reply_to"]["excerpt"], "first");
    assert_eq!(d["mentions"], json!(["bob"]));
    let edit = all
        .iter()
        .find(|g| g.body["type"] == "message.edited")
        .unwrap();
    assert_eq!(edit.body["data"]["message"], "first, edited");
    assert!(edit.body["data"]["edited_at"].is_string());
    let minute = all
        .iter()
        .find(|g| g.body["type"] == "reactions.minute")
        .unwrap();
    assert_eq!(minute.body["data"]["total"], 7);
    assert_eq!(minute.body["data"]["counts"][0]["stamp_name"], ":smile:");
    assert_eq!(minute.body["data"]["counts"][1]["count"], 4);
    // Once per stream and minute, however often the deliverer looks.
    wait_idle(&app).await;
    let minutes = count(&app, "webhook_event WHERE type = 'reactions.minute'").await;
    assert_eq!(minutes, 1);

    // `webhook test` sends a ping now and prints the answer.
    let slug = app.tenant.slug.as_str();
    let out = cli_beside(&["webhook", "test", "--tenant", slug, &id.to_string()], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("200 in "), "{}", stdout(&out));
    assert!(rx.acked().iter().any(|g| g.body["type"] == "ping"));
    rx.assert_all_signed();

    // The deliveries log lists the attempts.
    let out = cli(
        &["webhook", "deliveries", "--tenant", slug, &id.to_string()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stdout(&out);
    assert!(log.contains("\tping\t1\t200\t"), "{log}");
    assert!(log.contains("\treactions.minute\t1\t200\t"), "{log}");
    let out = cli(&["webhook", "list", "--tenant", slug], &[]);
    let listed = stdout(&out);
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(row[0], id.to_string());
    assert_eq!(row[1], rx.url());
    assert_eq!(row[2], "all");
    assert_eq!(row[3], "active");
    assert_ne!(row[4], "never");
}

#[actix_web::test]
async fn a_filter_sends_only_the_events_asked_for() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    let owner = app.logged_in("owner").await;
    add_webhook(&app, &rx, Some("stream.status"));
    set_status(&owner, stream, "live").await;
    say(&owner, stream, "not wanted").await;
    set_status(&owner, stream, "ended").await;
    until("two status events", Duration::from_secs(30), || {
        rx.acked().len() >= 2
    })
    .await;
    wait_idle(&app).await;
    let types: Vec<Value> = rx.acked().iter().map(|g| g.body["type"].clone()).collect();
    assert_eq!(types, vec![json!("stream.status"), json!("stream.status")]);
    rx.assert_all_signed();
}

#[actix_web::test]
async fn a_receiver_failing_three_times_gets_the_same_event_on_the_fourth_try() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    let owner = app.logged_in("owner").await;
    let (id, _) = add_webhook(&app, &rx, Some("message.created"));
    rx.fail_next(3);
    let m = say(&owner, stream, "retry me").await;
    let after = say(&owner, stream, "then me").await;
    until("the fourth attempt", Duration::from_secs(30), || {
        created_ids(&rx).len() == 2
    })
    .await;
    rx.assert_all_signed();
    let got = rx.got();
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        vec![500, 500, 500, 200, 200],
        "the next event waits for the first: {got:?}"
    );
    let first_id = &got[0].event_id;
    assert!(got[..4].iter().all(|g| &g.event_id == first_id));
    assert!(got[..4].iter().all(|g| g.body == got[0].body));
    assert_eq!(got[3].body["data"]["id"], m);
    assert_eq!(got[4].body["data"]["id"], after);
    assert_ne!(&got[4].event_id, first_id);

    // An attempt is logged with its outcome, after the receiver answered.
    wait_idle(&app).await;
    let out = cli(
        &[
            "webhook",
            "deliveries",
            "--tenant",
            app.tenant.slug.as_str(),
            &id.to_string(),
        ],
        &[],
    );
    let log = stdout(&out);
    let attempts: Vec<(String, String)> = log
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[3].to_string(), f[4].to_string())
        })
        .collect();
    // Newest first.
    assert_eq!(
        attempts,
        vec![
            ("1".into(), "200".into()),
            ("4".into(), "200".into()),
            ("3".into(), "500".into()),
            ("2".into(), "500".into()),
            ("1".into(), "500".into()),
        ],
        "{log}"
    );
    let metrics = app.get("/metrics", None).await.body;
    assert!(metrics.contains("stampede_webhook_deliveries_total{outcome=\"failed\"}"));
    assert!(metrics.contains("stampede_webhook_queue "));
    assert!(metrics.contains("stampede_webhook_oldest_seconds "));
}

#[actix_web::test]
async fn events_committed_before_a_sigkill_reach_a_receiver_that_was_down() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let rx = Receiver::down();
    add_webhook(&app, &rx, Some("message.created"));
    let a = Node::start(free_port(), FAST_ENV).await;
    let on_a = app.on_node(&a);
    let owner = on_a.user("owner", Role::Streamer).await;
    let stream = on_a.create_stream("owner").await;
    let mut committed = Vec::new();
    for i in 0..20 {
        committed.push(say(&owner, stream, &format!("m{i}")).await);
    }
    // Node a is retrying against the closed port when it is killed.
    eventually("node a trying twice", Duration::from_secs(30), || async {
        (count(&app, "webhook_delivery").await >= 2).then_some(())
    })
    .await;
    a.signal("-KILL");
    a.wait(Duration::from_secs(10));

    let b = Node::start(free_port(), FAST_ENV).await;
    rx.listen().await;
    until("every committed message", Duration::from_secs(90), || {
        let got = created_ids(&rx);
        committed.iter().all(|m| got.contains(m))
    })
    .await;
    rx.assert_all_signed();
    // Duplicates only by event id: one event id per message, in order.
    let mut by_message: HashMap<i64, String> = HashMap::new();
    for g in rx.acked() {
        let m = g.body["data"]["id"].as_i64().unwrap();
        let prev = by_message.entry(m).or_insert_with(|| g.event_id.clone());
        assert_eq!(prev, &g.event_id, "message {m} under two event ids");
    }
    let mut order = created_ids(&rx);
    order.dedup();
    assert_eq!(order, committed);
    drop(b);
}

#[actix_web::test]
async fn two_nodes_deliver_each_event_once() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let rx = Receiver::up().await;
    add_webhook(&app, &rx, Some("message.created"));
    let (_a, on_a, _b, on_b) = two_nodes(&app, FAST_ENV).await;
    let owner = on_a.user("owner", Role::Streamer).await;
    let on_both = [owner.on(&on_a), owner.on(&on_b)];
    let stream = on_a.create_stream("owner").await;
    let mut committed = Vec::new();
    for i in 0..40 {
        committed.push(say(&on_both[i % 2], stream, &format!("m{i}")).await);
    }
    until("every message", Duration::from_secs(60), || {
        created_ids(&rx).len() >= committed.len()
    })
    .await;
    wait_idle(&app).await;
    rx.assert_all_signed();
    assert_eq!(created_ids(&rx), committed, "once each, in commit order");
    assert_eq!(rx.got().len(), committed.len());
}

#[actix_web::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled_and_reported() {
    let (_serial, app, rx, stream) = hooked(|s| {
        fast(s);
        s.webhooks.give_up_secs = 1;
        s.webhooks.disable_after_secs = 2;
    })
    .await;
    rx.fail_next(u32::MAX);
    let owner = app.logged_in("owner").await;
    let (id, _) = add_webhook(&app, &rx, None);
    let slug = app.tenant.slug.as_str().to_string();
    // Events keep coming; each is given up after a second, and after two
    // seconds without a success the endpoint is disabled.
    eventually("the endpoint disabled", Duration::from_secs(60), || async {
        say(&owner, stream, "anyone?").await;
        let out = cli(&["webhook", "list", "--tenant", &slug], &[]);
        let listed = stdout(&out);
        let state = listed.lines().nth(1)?.split('\t').nth(3)?;
        (state == "disabled").then_some(())
    })
    .await;
    let metrics = app.get("/metrics", None).await.body;
    assert!(!metrics.contains("stampede_webhook_deliveries_total{outcome=\"disabled\"} 0"));
    assert!(!metrics.contains("stampede_webhook_deliveries_total{outcome=\"gave_up\"} 0"));
    // Nothing more is queued for it, and nothing more is sent.
    wait_idle(&app).await;
    let before = rx.got().len();
    say(&owner, stream, "after").await;
    wait_idle(&app).await;
    assert_eq!(rx.got().len(), before);
    assert!(rx.got().iter().all(|g| g.answered == 500));
    let _ = id;
}

/// A message committed while its endpoint was being disabled may queue an
/// event for it after the disable dropped the queue: such a row is never
/// claimed, so housekeeping drops it (it used to stay queued for ever).
#[actix_web::test]
async fn a_row_queued_for_a_disabled_endpoint_is_dropped() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    rx.fail_next(u32::MAX);
    let owner = app.logged_in("owner").await;
    let (id, _) = add_webhook(&app, &rx, None);
    say(&owner, stream, "queued").await;
    // The race's outcome, made directly: disabled, with a row still queued.
    let c = app.store.client().await.unwrap();
    let s = app.tenant.slug.schema();
    c.execute(
        &format!("UPDATE {s}.webhook_endpoint SET state = 'disabled' WHERE id = $1"),
        &[&id],
    )
    .await
    .unwrap();
    let queued = count(&app, &format!("webhook_outbox WHERE endpoint_id = {id}")).await;
    assert!(queued > 0, "the test needs a queued row");
    wait_idle(&app).await;
}

#[actix_web::test]
async fn bad_webhook_input_is_one_line_and_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let slug = app.tenant.slug.as_str();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["http://127.0.0.1:9/h"], &[], "https://"),
        (&["ftp://example.com/h"], &[ALLOW_HTTP], "invalid URL"),
        (&["not a url"], &[ALLOW_HTTP], "invalid URL"),
        (&["https://"], &[], "invalid URL"),
        (
            &["https://example.com/h", "--events", "message.created,nope"],
            &[],
            "unknown event \"nope\"",
        ),
    ];
    for (extra, env, want) in cases {
        let mut args = vec!["webhook", "add", "--tenant", slug];
        args.extend_from_slice(extra);
        let out = cli(&args, env);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(stdout(&out).is_empty());
    }
    let out = cli(&["webhook", "list", "--tenant", slug], &[]);
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "only the header: {}",
        stdout(&out)
    );
    for args in [
        vec![
            "webhook",
            "add",
            "--tenant",
            "no_such_tenant",
            "https://example.com/h",
        ],
        vec!["webhook", "remove", "--tenant", slug, "999"],
        vec!["webhook", "test", "--tenant", slug, "999"],
        vec!["webhook", "deliveries", "--tenant", slug, "999"],
    ] {
        let out = cli(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    // An https endpoint is fine without allow_http, and removed by id.
    let out = cli(
        &["webhook", "add", "--tenant", slug, "https://example.com/h"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split(' ').next().unwrap().to_string();
    let out = cli(&["webhook", "remove", "--tenant", slug, &id], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["webhook", "list", "--tenant", slug], &[]);
    assert_eq!(stdout(&out).lines().count(), 1);
}

/// Credentials of a request: a session (cookie and CSRF token) or a bearer token.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Session(&'a TestUser<'a>),
    SessionNoCsrf(&'a TestUser<'a>),
    Bearer(&'a str),
}

/// Any JSON API call; returns the status and the JSON body (`null` if none).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    who: As<'_>,
) -> (u16, Value) {
    let url = format!("{}{path}", app.address);
    let mut req = match method {
        "GET" => app.client.get(url),
        "POST" => app.client.post(url),
        "DELETE" => app.client.delete(url),
        m => panic!("method {m}"),
    }
    .insert_header(("Host", app.tenant.host.clone()));
    match who {
        As::Nobody => {}
        As::Session(user) => {
            req = req
                .insert_header(("Cookie", format!("stampede_session={}", user.cookie)))
                .insert_header(("X-CSRF-Token", user.csrf.clone()));
        }
        As::SessionNoCsrf(user) => {
            req = req.insert_header(("Cookie", format!("stampede_session={}", user.cookie)));
        }
        As::Bearer(t) => {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request");
    let bytes = res.body().limit(1 << 20).await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (res.status().as_u16(), value)
}

/// JSON API calls to a node with one set of credentials.
struct Api<'a>(&'a TestApp, As<'a>);

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(self.0, method, path, body, self.1).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn admins_manage_webhooks_and_tokens_over_http() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    let admin = app.user("root", Role::Admin).await;
    let as_admin = Api(&app, As::Session(&admin));
    let owner = app.logged_in("owner").await;
    app.create_user("helper", "password-123", Role::Bot).await;

    let (s, v) = as_admin
        .post(
            "/api/webhooks",
            json!({"url": rx.url(), "events": ["stream.status", "ping"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_i64().unwrap();
    let secret = v["secret"].as_str().unwrap();
    rx.set_secret(secret);
    set_status(&owner, stream, "live").await;
    until("the status event", Duration::from_secs(30), || {
        !rx.acked().is_empty()
    })
    .await;
    // Logged once the receiver has answered: the deliveries list below has it.
    wait_idle(&app).await;
    rx.assert_all_signed();
    assert_eq!(rx.acked()[0].body["type"], "stream.status");

    let (s, v) = as_admin.get("/api/webhooks").await;
    assert_eq!(s, 200, "{v}");
    let hooks = v["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["id"], id);
    assert_eq!(hooks[0]["url"], rx.url());
    assert_eq!(hooks[0]["events"], json!(["stream.status", "ping"]));
    assert_eq!(hooks[0]["state"], "active");
    assert!(!v.to_string().contains(secret), "the secret is shown once");

    let (s, v) = as_admin
        .call("POST", &format!("/api/webhooks/{id}/test"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["status_code"], 200);
    let (s, v) = as_admin
        .get(&format!("/api/webhooks/{id}/deliveries"))
        .await;
    assert_eq!(s, 200, "{v}");
    let list = v["deliveries"].as_array().unwrap();
    assert_eq!(list[0]["type"], "ping");
    assert_eq!(list[0]["status_code"], 200);
    assert_eq!(list[0]["attempt"], 1);
    assert!(list[0]["latency_ms"].is_i64());
    assert_eq!(list[1]["type"], "stream.status");
    assert_eq!(list[1]["event_id"], rx.acked()[0].event_id);

    // Tokens: shown once, listed without the secret, revoked at once.
    let (s, v) = as_admin
        .post(
            "/api/tokens",
            json!({"username":"helper","scopes":["chat"],"name":"greeter"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let token_id = v["id"].as_i64().unwrap();
    assert!(token.starts_with("stp_"));
    let (s, v) = Api(&app, As::Bearer(&token))
        .post(
            &format!("/api/streams/{stream}/messages"),
            json!({"message":"hello from a bot"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = as_admin.get("/api/tokens").await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains(&token[4..]), "never the token: {v}");
    let t = &v["tokens"][0];
    assert_eq!(t["id"], token_id);
    assert_eq!(t["username"], "helper");
    assert_eq!(t["scopes"], json!(["chat"]));
    assert_eq!(t["label"], "greeter");
    assert_eq!(t["state"], "active");
    let (s, v) = as_admin.delete(&format!("/api/tokens/{token_id}")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = Api(&app, As::Bearer(&token))
        .post(
            &format!("/api/streams/{stream}/messages"),
            json!({"message":"still here?"}),
        )
        .await;
    assert_eq!((s, code(&v)), (401, "not_authenticated"), "{v}");
    let (s, _) = as_admin.delete(&format!("/api/tokens/{token_id}")).await;
    assert_eq!(s, 404);

    // Removed: gone from the list, and a second removal is a 404.
    let (s, _) = as_admin.delete(&format!("/api/webhooks/{id}")).await;
    assert_eq!(s, 200);
    let (_, v) = as_admin.get("/api/webhooks").await;
    assert_eq!(v["webhooks"], json!([]));
    let (s, v) = as_admin.delete(&format!("/api/webhooks/{id}")).await;
    assert_eq!((s, code(&v)), (404, "not_found"));
}

#[actix_web::test]
async fn integration_routes_are_for_admin_sessions_only_and_check_input() {
    let _serial = SERIAL.lock().await;
    // Default settings: plain http:// endpoints are refused.
    let app = spawn_app().await;
    let admin = app.user("root", Role::Admin).await;
    let as_admin = Api(&app, As::Session(&admin));
    let streamer = app.user("owner", Role::Streamer).await;
    let viewer = app.user("vic", Role::Viewer).await;
    let admin_token = app.cli_token("root", "read,chat,moderate", None);
    let good = json!({"url":"https://example.com/hook"});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/api/webhooks".into(), None),
        ("POST", "/api/webhooks".into(), Some(good.clone())),
        ("DELETE", "/api/webhooks/1".into(), None),
        ("POST", "/api/webhooks/1/test".into(), None),
        ("GET", "/api/webhooks/1/deliveries".into(), None),
        ("GET", "/api/tokens".into(), None),
        (
            "POST",
            "/api/tokens".into(),
            Some(json!({"username":"vic","scopes":"read"})),
        ),
        ("DELETE", "/api/tokens/1".into(), None),
    ];
    for (method, path, body) in &routes {
        let (s, v) = call(&app, method, path, body.clone(), As::Nobody).await;
        assert_eq!((s, code(&v)), (401, "not_authenticated"), "{method} {path}");
        for who in [&viewer, &streamer] {
            let (s, v) = call(&app, method, path, body.clone(), As::Session(who)).await;
            assert_eq!((s, code(&v)), (403, "forbidden"), "{method} {path}");
        }
        // An admin's token, whatever its scopes, cannot manage integrations.
        let (s, v) = call(&app, method, path, body.clone(), As::Bearer(&admin_token)).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{method} {path}");
        let unknown = format!("stp_{}", random_hex(32).repeat(2));
        let (s, v) = call(&app, method, path, body.clone(), As::Bearer(&unknown)).await;
        assert_eq!((s, code(&v)), (401, "not_authenticated"), "{method} {path}");
        if *method != "GET" {
            let (s, v) = call(&app, method, path, body.clone(), As::SessionNoCsrf(&admin)).await;
            assert_eq!((s, code(&v)), (403, "csrf"), "{method} {path}");
        }
    }

    let bad = [
        (json!({"url":"http://127.0.0.1:9/h"}), "https://"),
        (json!({"url":"ftp://example.com/h"}), "invalid URL"),
        (json!({"url":"https://"}), "invalid URL"),
        (
            json!({"url":"https://example.com/h","events":["nope"]}),
            "unknown event",
        ),
        (json!({"url":"https://example.com/h","events":[]}), "events"),
        (json!({"events":["ping"]}), "url"),
        (json!("https://example.com/h"), "invalid"),
    ];
    for (body, want) in bad {
        let (s, v) = as_admin.post("/api/webhooks", body.clone()).await;
        assert_eq!((s, code(&v)), (422, "invalid"), "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    for body in [
        json!({"username":"vic","scopes":["admin"]}),
        json!({"username":"vic","scopes":[]}),
        json!({"username":"nobody","scopes":["read"]}),
        json!({"username":"vic"}),
    ] {
        let (s, v) = as_admin.post("/api/tokens", body.clone()).await;
        assert_eq!((s, code(&v)), (422, "invalid"), "{body}: {v}");
    }
    // Nothing was made.
    let (_, v) = as_admin.get("/api/webhooks").await;
    assert_eq!(v["webhooks"], json!([]));
    let (_, v) = as_admin.get("/api/tokens").await;
    assert_eq!(
        v["tokens"].as_array().unwrap().len(),
        1,
        "only the CLI's: {v}"
    );
    // And the good request works.
    let (s, v) = as_admin.post("/api/webhooks", good).await;
    assert_eq!(s, 200, "{v}");
}

#[actix_web::test]
async fn tokens_and_secrets_never_appear_in_logs() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let rx = Receiver::up().await;
    let log_path = std::env::temp_dir().join(format!("stampede-log-{}.txt", random_hex(8)));
    let env = [FAST_ENV, &[("RUST_LOG", "debug")]].concat();
    let node = Node::start_with_log(free_port(), &env, &log_path).await;
    let on = app.on_node(&node);
    let admin = on.user("root", Role::Admin).await;
    let as_admin = Api(&on, As::Session(&admin));
    let owner = on.user("owner", Role::Streamer).await;
    let stream = on.create_stream("owner").await;
    let (_, v) = as_admin
        .post("/api/webhooks", json!({"url": rx.url()}))
        .await;
    let secret = v["secret"].as_str().expect("secret").to_string();
    rx.set_secret(&secret);
    let (_, v) = as_admin
        .post(
            "/api/tokens",
            json!({"username":"owner","scopes":["chat","read"]}),
        )
        .await;
    let token = v["token"].as_str().expect("token").to_string();
    let token_id = v["id"].as_i64().unwrap();
    let (s, _) = Api(&on, As::Bearer(&token))
        .post(
            &format!("/api/streams/{stream}/messages"),
            json!({"message":"logged?"}),
        )
        .await;
    assert_eq!(s, 200);
    set_status(&owner, stream, "live").await;
    let wrong = format!("stp_{}", random_hex(32).repeat(2));
    let (s, _) = Api(&on, As::Bearer(&wrong))
        .get(&format!("/api/streams/{stream}/messages"))
        .await;
    assert_eq!(s, 401);
    as_admin.delete(&format!("/api/tokens/{token_id}")).await;
    let (s, _) = Api(&on, As::Bearer(&token))
        .get(&format!("/api/streams/{stream}/messages"))
        .await;
    assert_eq!(s, 401);
    until("deliveries", Duration::from_secs(30), || {
        rx.acked().len() >= 2
    })
    .await;
    rx.assert_all_signed();
    node.signal("-TERM");
    node.wait(Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(log.contains("DEBUG"), "debug logs were written");
    for (what, secret) in [
        ("the token", &token[4..]),
        ("an unknown token", &wrong[4..]),
        ("the webhook secret", &secret["whsec_".len()..]),
        ("the session key", admin.cookie.as_str()),
        ("the CSRF token", admin.csrf.as_str()),
    ] {
        let line = log.lines().find(|l| l.contains(secret));
        assert!(
            line.is_none(),
            "{what} is in the logs: {}",
            line.unwrap_or("").replace(secret, "<secret>")
        );
    }
}

#[actix_web::test]
async fn the_admins_studio_lists_webhooks_deliveries_and_tokens_escaped() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    let admin = app.user("root", Role::Admin).await;
    let owner = app.logged_in("owner").await;
    let (id, secret) = add_webhook(&app, &rx, Some("stream.status"));
    set_status(&owner, stream, "live").await;
    until("a delivery", Duration::from_secs(30), || {
        !rx.acked().is_empty()
    })
    .await;
    wait_idle(&app).await;
    let token = app.cli_token("owner", "read", Some("<script>alert(1)</script>"));

    let page = admin.get("/studio").await;
    assert_eq!(page.status, 200);
    let html = &page.body;
    assert!(html.contains("id=\"integrations\""), "the section is there");
    assert!(html.contains(&format!("data-webhook-id=\"{id}\"")));
    assert!(html.contains(&rx.url()));
    assert!(html.contains("data-state=\"active\""));
    assert!(
        html.contains(&rx.acked()[0].event_id),
        "recent deliveries listed"
    );
    let at = html.find("alert(1)").expect("the label is listed");
    let before = &html[at.saturating_sub(20)..at];
    assert!(
        before.ends_with("&#60;script&#62;") || before.ends_with("&lt;script&gt;"),
        "labels escaped: {}",
        &html[at.saturating_sub(40)..at + 40]
    );
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains(&token[4..]), "never a token");
    assert!(!html.contains(&secret["whsec_".len()..]), "never a secret");
    assert!(html.contains("/static/integrations.js"));
    let js = app.get("/static/integrations.js", None).await;
    assert_eq!(js.status, 200);
    assert!(!js.body.contains("innerHTML"), "secrets are shown as text");

    // Streamers get their studio without it.
    let page = owner.get("/studio").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"integrations\""));
    assert!(!page.body.contains(&rx.url()));
}

#[actix_web::test]
async fn held_messages_are_sent_only_once_approved() {
    let (_serial, app, rx, stream) = hooked(fast).await;
    let owner = app.logged_in("owner").await;
    let bob = app.user("bob", Role::Viewer).await;
    add_webhook(&app, &rx, Some("message.created,moderation.action"));
    hold_term(&owner, stream, "cheap").await;
    let path = format!("/api/streams/{stream}/messages");
    // Both are held (202): the first to be approved, the second denied.
    let mut held = Vec::new();
    for text in ["cheap followers, approved", "cheap followers, denied"] {
        let r = bob.post(&path, json!({ "message": text })).await;
        assert_eq!(r.status, 202, "{text}: {}", r.body);
        held.push(r.json()["held_id"].as_i64().unwrap());
    }
    let marker = say(&owner, stream, "while they wait").await;
    until("the owner's message", Duration::from_secs(30), || {
        created_ids(&rx).contains(&marker)
    })
    .await;
    assert_eq!(created_ids(&rx), vec![marker], "nothing held was sent");

    let frames = [
        json!({"type":"approve","held_id": held[0]}),
        json!({"type":"deny","held_id": held[1]}),
    ];
    moderate(&owner, stream, &frames).await;
    until("the approval", Duration::from_secs(30), || {
        rx.acked()
            .iter()
            .any(|g| g.body["type"] == "moderation.action" && g.body["data"]["action"] == "deny")
    })
    .await;
    wait_idle(&app).await;
    rx.assert_all_signed();
    assert_eq!(
        rx.acked_texts("message.created", "message"),
        vec!["while they wait", "cheap followers, approved"]
    );
    assert_eq!(
        rx.acked_texts("moderation.action", "action"),
        vec!["approve", "deny"]
    );
}
