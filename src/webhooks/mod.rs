//! Webhooks: the event list, endpoint URL and filter checks, the body and its
//! `Stampede-Signature`, HTTP delivery (awc over rustls with ring, trusting
//! the public roots and `webhooks.ca_file`: [`Transport`]), and the
//! deliverer every node runs over the outboxes of every tenant with endpoints.
//!
//! Events are recorded by the database itself (triggers of migration 0012),
//! in the transaction of the change they describe; this module only delivers.
//!
//! How the deliverer keeps its promises:
//! - one node at a time per endpoint: an endpoint is taken with a lease
//!   (`FOR UPDATE SKIP LOCKED`, then `leased_by`/`lease_until`), renewed so
//!   that every send starts with more than the timeout left on it, so no event
//!   is sent by two nodes at once, and a node that dies only delays its
//!   endpoints until the lease runs out (25 s by default);
//! - order per endpoint: only the head of an endpoint's queue is ever sent;
//!   the next one waits until it is acknowledged or given up;
//! - bounded work: at most `webhooks.concurrency` endpoints at once per node,
//!   at most [`BATCH`] events of each in memory, whatever the backlog;
//! - waking: a short poll (`webhooks.poll_ms`, 200 ms) rather than
//!   LISTEN/NOTIFY. The scan is one indexed query per tenant that has
//!   endpoints (listed in `public.webhook_tenants`), it needs no dedicated
//!   connection to re-establish after a PostgreSQL restart or failover, and
//!   it picks up retries whose time has come, which a notification would not.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::{
    config::WebhookSettings,
    metrics::Metrics,
    store::{
        webhooks::{Attempt, Claimed, FailureOutcome, FailurePolicy, QueuedEvent},
        Slug, Store,
    },
};

/// Every event type an endpoint may ask for.
pub const EVENTS: &[&str] = &[
    "message.created",
    "message.edited",
    "message.deleted",
    "chat.cleared",
    "moderation.action",
    "stream.status",
    "reactions.minute",
    "ping",
];

/// Longest endpoint URL accepted.
const MAX_URL_CHARS: usize = 2000;

/// Events sent to one endpoint before its lease is given back (fairness).
const EVENTS_PER_LEASE: usize = 1000;

/// Events of one endpoint read (and held in memory) at once.
const BATCH: i64 = 50;

/// Parses a comma-separated event filter; `None` (or empty) means every event.
pub fn parse_events(raw: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::new();
    for e in raw.split(',').map(str::trim) {
        if !EVENTS.contains(&e) {
            return Err(format!("unknown event {e:?}: use {}", EVENTS.join(", ")));
        }
        if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    Ok(Some(out))
}

/// Checks an endpoint URL: absolute, `https://` (or `http://` when allowed),
/// with a host, no credentials, no fragment, no whitespace.
pub fn validate_url(raw: &str, allow_http: bool) -> Result<String, String> {
    let url = raw.trim();
    if url.is_empty() || url.chars().count() > MAX_URL_CHARS {
        return Err(format!(
            "invalid URL: use an https:// URL of at most {MAX_URL_CHARS} characters"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("invalid URL: no spaces or control characters".into());
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        if !allow_http {
            return Err(
                "invalid URL: use https:// (plain http:// needs webhooks.allow_http = true)".into(),
            );
        }
        r
    } else {
        return Err("invalid URL: use an https:// URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("invalid URL: no user name or password in the URL".into());
    }
    if url.contains('#') {
        return Err("invalid URL: no fragment (#...)".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err("invalid URL: no host".into());
    }
    if url.parse::<awc::http::Uri>().is_err() {
        return Err("invalid URL".into());
    }
    Ok(url.to_string())
}

/// A new endpoint secret: `whsec_` and 64 random hex characters (256 bits).
pub fn new_secret() -> String {
    format!("whsec_{}", crate::auth::new_token())
}

/// Hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Stampede-Signature` header value for a body sent at `t`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    tenant: &'a str,
    stream_id: Option<i64>,
    created_at: String,
    data: &'a serde_json::Value,
}

/// The JSON body of an event, as posted.
pub fn event_body(
    tenant: &Slug,
    id: &str,
    kind: &str,
    stream_id: Option<i64>,
    created_at: OffsetDateTime,
    data: &serde_json::Value,
) -> Vec<u8> {
    serde_json::to_vec(&Body {
        id,
        kind,
        tenant: tenant.as_str(),
        stream_id,
        created_at: crate::protocol::timestamp(created_at),
        data,
    })
    .expect("bodies serialise")
}

/// A receiver's answer to one POST.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code, when it answered.
    pub status: Option<u16>,
    /// What went wrong, when it did not (or its answer could not be read).
    pub error: Option<String>,
    /// Milliseconds from sending to the answer.
    pub latency_ms: i32,
    /// The first KiB of the answer's body.
    pub body: String,
}

impl Answer {
    /// A 2xx status: acknowledged.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn attempt(&self) -> Attempt<'_> {
        Attempt {
            status_code: self.status.map(i32::from),
            error: self.error.as_deref(),
            latency_ms: self.latency_ms,
        }
    }
}

/// Seconds a receiver has for connecting and answering (`webhooks.timeout_secs`).
fn answer_timeout(s: &WebhookSettings) -> Duration {
    Duration::from_secs(s.timeout_secs.max(1))
}

/// How this node reaches receivers: TLS that trusts the public roots built in
/// (webpki-roots) and the CAs of `webhooks.ca_file`, checking chain and host
/// name, and the time a receiver has to answer. Built once at start-up (and by
/// the CLI), so an unreadable CA file stops the node there.
#[derive(Clone)]
pub struct Transport {
    tls: Arc<rustls::ClientConfig>,
    /// Longest wait for connecting, and for the answer's head.
    pub timeout: Duration,
}

impl Transport {
    /// The transport `settings` describe; an error names a bad `ca_file`.
    pub fn new(settings: &WebhookSettings) -> anyhow::Result<Transport> {
        let mut roots = if settings.ca_file.is_empty() {
            rustls::RootCertStore::empty()
        } else {
            crate::tls::roots(Some(std::path::Path::new(&settings.ca_file)))
                .map_err(|e| anyhow::anyhow!("webhooks.ca_file: {e:#}"))?
        };
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = crate::tls::client_config(crate::tls::Verify::Full, Some(roots))?;
        Ok(Transport {
            tls: Arc::new(tls),
            timeout: answer_timeout(settings),
        })
    }

    /// An HTTP client for deliveries: this transport's TLS, no redirects
    /// followed, [`Transport::timeout`] for connecting and for the answer's head.
    pub fn client(&self) -> awc::Client {
        awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .rustls_0_23(self.tls.clone())
                    .timeout(self.timeout),
            )
            .timeout(self.timeout)
            .disable_redirects()
            .finish()
    }
}

/// Posts one signed event body; the whole exchange is bounded by `timeout`.
pub async fn post(
    client: &awc::Client,
    url: &str,
    secret: &str,
    event_id: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Answer {
    let t = OffsetDateTime::now_utc().unix_timestamp();
    let signature = signature_header(secret, t, &body);
    let started = Instant::now();
    let exchange = async {
        let mut res = client
            .post(url)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Stampede-Event-Id", event_id))
            .insert_header(("Stampede-Signature", signature))
            .send_body(body)
            .await
            .map_err(|e| send_error(&e))?;
        let status = res.status().as_u16();
        // The body is read (a little of it) so the connection can be reused.
        let text = match res.body().limit(1024).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => String::new(),
        };
        Ok::<_, String>((status, text))
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    match result {
        Ok(Ok((status, body))) => Answer {
            status: Some(status),
            error: None,
            latency_ms,
            body,
        },
        Ok(Err(e)) => Answer {
            status: None,
            error: Some(short(&e)),
            latency_ms,
            body: String::new(),
        },
        Err(_) => Answer {
            status: None,
            error: Some(format!("timeout after {} s", timeout.as_secs_f32())),
            latency_ms,
            body: String::new(),
        },
    }
}

/// A failed send in words: a refused certificate says why, as the data
/// stores' handshakes do. (awc's errors do not expose their causes, so the
/// TLS error is read out of a failed connect's `io::Error`.)
fn send_error(e: &awc::error::SendRequestError) -> String {
    use awc::error::{ConnectError, SendRequestError};
    if let SendRequestError::Connect(ConnectError::Io(io)) = e {
        if let Some(tls) = crate::tls::rustls_error(io) {
            return format!("TLS failed: {}", crate::tls::reason(tls));
        }
    }
    e.to_string()
}

fn short(e: &str) -> String {
    let one_line = e.replace(['\n', '\r'], " ");
    one_line.chars().take(200).collect()
}

/// Sends a `ping` event to an endpoint now, outside its queue, and logs it.
pub async fn ping(
    store: &Store,
    slug: &Slug,
    endpoint_id: i64,
    transport: &Transport,
) -> anyhow::Result<Option<Answer>> {
    let Some((endpoint, secret)) = store.webhook(slug, endpoint_id).await? else {
        return Ok(None);
    };
    let (id, at) = store.new_event_id().await?;
    let data = serde_json::json!({"endpoint_id": endpoint.id});
    let body = event_body(slug, &id, "ping", None, at, &data);
    let client = transport.client();
    let answer = post(
        &client,
        &endpoint.url,
        &secret,
        &id,
        body,
        transport.timeout,
    )
    .await;
    store
        .log_webhook_attempt(slug, endpoint.id, &id, "ping", &answer.attempt())
        .await?;
    Ok(Some(answer))
}

/// The retry delay after `failures` failed attempts: `first` doubled each
/// time, capped at `max`, with up to ±20 % of jitter so that many events
/// failing together do not retry together.
pub fn backoff(failures: u32, first: Duration, max: Duration) -> Duration {
    let exp = first
        .checked_mul(1u32 << failures.saturating_sub(1).min(30))
        .unwrap_or(max)
        .min(max);
    let jitter = rand::random::<f64>() * 0.4 - 0.2;
    exp.mul_f64(1.0 + jitter)
}

/// The deliverer's settings, as durations.
#[derive(Debug, Clone)]
struct Tuning {
    first: Duration,
    max: Duration,
    give_up: Duration,
    disable_after: Duration,
    timeout: Duration,
    poll: Duration,
    lease: Duration,
    concurrency: usize,
}

impl From<&WebhookSettings> for Tuning {
    fn from(s: &WebhookSettings) -> Self {
        let timeout = answer_timeout(s);
        Self {
            first: Duration::from_millis(s.retry_first_ms.max(1)),
            max: Duration::from_secs(s.retry_max_secs.max(1)),
            give_up: Duration::from_secs(s.give_up_secs),
            disable_after: Duration::from_secs(s.disable_after_secs),
            timeout,
            poll: Duration::from_millis(s.poll_ms.max(10)),
            // Longer than one attempt and its bookkeeping, renewed before
            // each: 25 s with the default 10 s timeout.
            lease: timeout * 2 + Duration::from_secs(5),
            concurrency: s.concurrency.max(1),
        }
    }
}

/// Starts this node's deliverer on a thread of its own (an arbiter):
/// building, signing and sending events never takes time from the rooms or
/// the sockets, which live on threads of their own. It stops with the system
/// that started it (a test's runtime), not only with the process. Its queue
/// and outcomes are recorded in `metrics`.
pub fn start(
    store: Store,
    settings: &WebhookSettings,
    transport: Transport,
    metrics: Arc<Metrics>,
) {
    let tuning = Tuning::from(settings);
    let alive = Arc::new(());
    let watch = Arc::downgrade(&alive);
    actix_rt::spawn(async move {
        let _alive = alive;
        std::future::pending::<()>().await
    });
    actix_rt::Arbiter::new().spawn_fn(move || {
        actix_rt::spawn(run(store, tuning, transport, watch, metrics));
    });
}

async fn run(
    store: Store,
    tuning: Tuning,
    transport: Transport,
    alive: std::sync::Weak<()>,
    metrics: Arc<Metrics>,
) {
    let node = crate::auth::new_token()[..16].to_string();
    let client = transport.client();
    let slots = Arc::new(Semaphore::new(tuning.concurrency));
    let mut tenants: Vec<Slug> = Vec::new();
    let mut listed = None::<Instant>;
    let mut housekeeping = None::<Instant>;
    let mut pruned = None::<Instant>;
    let mut tick = tokio::time::interval(tuning.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 {
            actix_rt::Arbiter::current().stop();
            return;
        }
        let now = Instant::now();
        if listed.is_none_or(|t| now - t >= Duration::from_secs(2)) {
            match store.webhook_tenants().await {
                Ok(t) => tenants = t,
                Err(e) => tracing::debug!(error = %e, "webhook tenants not listed"),
            }
            listed = Some(now);
        }
        if housekeeping.is_none_or(|t| now - t >= Duration::from_secs(5)) {
            housekeeping = Some(now);
            let prune = pruned.is_none_or(|t| now - t >= Duration::from_secs(600));
            if prune {
                pruned = Some(now);
            }
            let (mut depth, mut oldest) = (0u64, 0f64);
            for slug in &tenants {
                // Reactions settle (the writer's batching) before a minute is sent.
                if let Err(e) = store
                    .record_reaction_minutes(slug, Duration::from_secs(3))
                    .await
                {
                    tracing::debug!(tenant = %slug, error = %e, "reaction minutes not recorded");
                }
                if let Err(e) = store.drop_disabled_queues(slug).await {
                    tracing::debug!(tenant = %slug, error = %e, "disabled queues not dropped");
                }
                if let Ok((n, age)) = store.webhook_backlog(slug).await {
                    depth += n.max(0) as u64;
                    oldest = oldest.max(age);
                }
                if prune {
                    let _ = store.prune_webhooks(slug).await;
                }
            }
            metrics.webhook_queue.set(depth);
            metrics.webhook_oldest_secs.set(oldest as u64);
        }
        for slug in &tenants {
            let free = slots.available_permits();
            if free == 0 {
                break;
            }
            let claimed = match store
                .claim_webhooks(slug, &node, tuning.lease, free as i64)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(tenant = %slug, error = %e, "webhook claim failed");
                    continue;
                }
            };
            for endpoint in claimed {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Cannot happen (claimed at most `free`); give it back.
                    let _ = store.release_webhook(slug, endpoint.id, &node).await;
                    continue;
                };
                let (store, slug, node, client, tuning, metrics) = (
                    store.clone(),
                    slug.clone(),
                    node.clone(),
                    client.clone(),
                    tuning.clone(),
                    metrics.clone(),
                );
                actix_rt::spawn(async move {
                    serve(&store, &slug, &node, &client, &tuning, &endpoint, &metrics).await;
                    let _ = store.release_webhook(&slug, endpoint.id, &node).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Sends an endpoint's due events in order while this node holds its lease,
/// until one fails, none is due, or [`EVENTS_PER_LEASE`] were sent. Events
/// are read [`BATCH`] at a time and their acknowledgements recorded together:
/// a crash in between only sends some again (receivers dedupe by id).
async fn serve(
    store: &Store,
    slug: &Slug,
    node: &str,
    client: &awc::Client,
    tuning: &Tuning,
    endpoint: &Claimed,
    metrics: &Metrics,
) {
    let mut sent = 0;
    while sent < EVENTS_PER_LEASE {
        let batch = match store
            .next_webhook_events(slug, endpoint.id, node, tuning.lease, BATCH)
            .await
        {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(tenant = %slug, error = %e, "webhook queue not read");
                return;
            }
        };
        let mut renewed = Instant::now();
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut lost = false;
        for event in &batch {
            // Every send starts with at least two thirds of a lease ahead,
            // longer than the timeout: no other node can take the endpoint
            // while this one may still be sending.
            if renewed.elapsed() > tuning.lease / 3 {
                match store
                    .renew_webhook_lease(slug, endpoint.id, node, tuning.lease)
                    .await
                {
                    Ok(true) => renewed = Instant::now(),
                    _ => {
                        lost = true;
                        break;
                    }
                }
            }
            let answer = send(slug, client, tuning, endpoint, event).await;
            let ok = answer.ok();
            answers.push(answer);
            if !ok {
                break;
            }
        }
        let acked: Vec<(&QueuedEvent, Attempt<'_>)> = batch
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.ok())
            .map(|(e, a)| (e, a.attempt()))
            .collect();
        metrics.webhook_delivered.add(acked.len() as u64);
        sent += acked.len();
        if let Err(e) = store.webhook_delivered(slug, endpoint.id, &acked).await {
            // Not recorded: they will be sent again (receivers dedupe by id).
            tracing::warn!(tenant = %slug, endpoint = endpoint.id, error = %e, "webhook acks not recorded");
            return;
        }
        if let Some((event, answer)) = batch.iter().zip(&answers).find(|(_, a)| !a.ok()) {
            failed(store, slug, tuning, endpoint, event, answer, metrics).await;
            return;
        }
        if lost {
            return;
        }
    }
}

/// Posts one event to an endpoint.
async fn send(
    slug: &Slug,
    client: &awc::Client,
    tuning: &Tuning,
    endpoint: &Claimed,
    event: &QueuedEvent,
) -> Answer {
    let body = event_body(
        slug,
        &event.id,
        &event.event_type,
        event.stream_id,
        event.created_at,
        &event.data,
    );
    post(
        client,
        &endpoint.url,
        &endpoint.secret,
        &event.id,
        body,
        tuning.timeout,
    )
    .await
}

/// Records a failed attempt: a retry later, the event given up, or the
/// endpoint disabled.
async fn failed(
    store: &Store,
    slug: &Slug,
    tuning: &Tuning,
    endpoint: &Claimed,
    event: &QueuedEvent,
    answer: &Answer,
    metrics: &Metrics,
) {
    metrics.webhook_failed.inc();
    let retry_in = backoff((event.attempts + 1).max(1) as u32, tuning.first, tuning.max);
    match store
        .webhook_failed(
            slug,
            endpoint.id,
            event,
            &answer.attempt(),
            &FailurePolicy {
                retry_in,
                give_up: tuning.give_up,
                disable_after: tuning.disable_after,
            },
        )
        .await
    {
        Ok(FailureOutcome::Retry) => {}
        Ok(FailureOutcome::GaveUp) => {
            metrics.webhook_gave_up.inc();
            tracing::warn!(tenant = %slug, endpoint = endpoint.id, event = %event.id, "webhook event given up");
        }
        Ok(FailureOutcome::Disabled) => {
            metrics.webhook_disabled.inc();
            tracing::warn!(tenant = %slug, endpoint = endpoint.id, "webhook endpoint disabled after failing too long");
        }
        Err(e) => {
            tracing::warn!(tenant = %slug, endpoint = endpoint.id, error = %e, "webhook failure not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate_url("https://example.com/hook", false).is_ok());
        assert!(validate_url("http://127.0.0.1:9000/h", false).is_err());
        assert!(validate_url("http://127.0.0.1:9000/h", true).is_ok());
        assert!(validate_url("ftp://example.com", true).is_err());
        assert!(validate_url("https://", false).is_err());
        assert!(validate_url("https://u:p@example.com/", false).is_err());
        assert!(validate_url("https://example.com/a b", false).is_err());
        assert!(validate_url("example.com", false).is_err());
    }

    #[test]
    fn events() {
        assert_eq!(parse_events(None).unwrap(), None);
        assert_eq!(
            parse_events(Some("message.created, ping,ping")).unwrap(),
            Some(vec!["message.created".to_string(), "ping".to_string()])
        );
        assert!(parse_events(Some("message.nope")).is_err());
    }

    #[test]
    fn signature_is_hmac_of_time_and_body() {
        // Known answer from Python: hmac.new(b"secret", b"1700000000.{}", sha256).
        let sig = sign("secret", 1700000000, b"{}");
        assert_eq!(
            sig,
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(sig, sign("secret", 1700000001, b"{}"));
        assert_eq!(
            signature_header("secret", 5, b"x"),
            format!("t=5,v1={}", sign("secret", 5, b"x"))
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(600);
        for (n, base) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (12, 600.0), (40, 600.0)] {
            let d = backoff(n, first, max).as_secs_f64();
            assert!(d >= base * 0.79 && d <= base * 1.21, "{n}: {d}");
        }
    }
}
