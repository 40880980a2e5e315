//! Webhook tables of a tenant schema: endpoints, the outbox (events queued per
//! endpoint, written by triggers in the transaction of the change they
//! describe, see migration 0012), the deliveries log, and the deliverer's
//! leases. `public.webhook_tenants` lists the schemas the deliverer scans.

use std::time::Duration;

use time::OffsetDateTime;

use super::{tenant_sql, Slug, Store, StoreResult};

/// An endpoint as listings show it (never its secret).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Id.
    pub id: i64,
    /// Where events are posted.
    pub url: String,
    /// Event types sent (`None`: all).
    pub events: Option<Vec<String>>,
    /// `active` or `disabled`.
    pub state: String,
    /// Registered at.
    pub created_at: OffsetDateTime,
    /// Last acknowledged delivery.
    pub last_success_at: Option<OffsetDateTime>,
    /// Last failed attempt.
    pub last_failure_at: Option<OffsetDateTime>,
    /// Events waiting for this endpoint.
    pub pending: i64,
}

// Documented fields, one a line, as every record here: alike in shape only.
/// One delivery attempt, as the deliveries log keeps it.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// The event's id (a UUID).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// The receiver's status code, when it answered.
    pub status_code: Option<i32>,
    /// What went wrong, when it did not answer.
    pub error: Option<String>,
    /// Milliseconds from sending to the answer (or the failure).
    pub latency_ms: i32,
    /// When.
    pub created_at: OffsetDateTime,
}

/// An endpoint this node holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Id.
    pub id: i64,
    /// URL.
    pub url: String,
    /// Signing secret.
    pub secret: String,
}

/// The event at the head of an endpoint's queue.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// Its place in the tenant's event order.
    pub seq: i64,
    /// Its id (a UUID), the same on every attempt.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// Its stream, if any.
    pub stream_id: Option<i64>,
    /// What it carries.
    pub data: serde_json::Value,
    /// When it happened.
    pub created_at: OffsetDateTime,
    /// Attempts made so far.
    pub attempts: i32,
}

/// What a failed attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Tried again later.
    Retry,
    /// The event is older than the give-up window: dropped for this endpoint.
    GaveUp,
    /// The endpoint failed for the whole disable window: disabled.
    Disabled,
}

/// What a failed attempt leads to, by time.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Delay before the next attempt.
    pub retry_in: Duration,
    /// Age at which an event is given up.
    pub give_up: Duration,
    /// Time without a success after which the endpoint is disabled.
    pub disable_after: Duration,
}

/// How an attempt went, for the log.
pub struct Attempt<'a> {
    /// The receiver's status, when it answered.
    pub status_code: Option<i32>,
    /// The failure, when it did not.
    pub error: Option<&'a str>,
    /// Milliseconds taken.
    pub latency_ms: i32,
}

/// The columns [`endpoint_from`] reads, of an endpoint `e` (with the count of
/// its queued events).
const ENDPOINT_COLUMNS: &str = "e.id, e.url, e.events, e.state, e.created_at, e.last_success_at, \
     e.last_failure_at, (SELECT count(*) FROM {schema}.webhook_outbox o WHERE o.endpoint_id = e.id)";

fn endpoint_from(r: &tokio_postgres::Row) -> Endpoint {
    Endpoint {
        id: r.get(0),
        url: r.get(1),
        events: r.get(2),
        state: r.get(3),
        created_at: r.get(4),
        last_success_at: r.get(5),
        last_failure_at: r.get(6),
        pending: r.get(7),
    }
}

/// A statement template (see [`super::tenant_sql`]) logging one attempt:
/// `$1` endpoint, `$2` event id (a UUID as text), `$3` event type, `$4`
/// attempt number, `$5` status code, `$6` error, `$7` latency in milliseconds.
const LOG_ATTEMPT: &str = "INSERT INTO {schema}.webhook_delivery \
     (endpoint_id, event_id, event_type, attempt, status_code, error, latency_ms) \
     VALUES ($1, $2::text::uuid, $3, $4, $5, $6, $7)";

/// Interval literal for a duration, bound as a parameter (`$n::interval`).
fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

impl Store {
    /// Registers an endpoint; returns its id. The tenant joins the deliverer's
    /// scan in the same transaction.
    pub async fn add_webhook(
        &self,
        slug: &Slug,
        url: &str,
        secret: &str,
        events: Option<&[String]>,
    ) -> StoreResult<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let events: Option<Vec<String>> = events.map(<[String]>::to_vec);
        let id: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO {}.webhook_endpoint (url, secret, events) VALUES ($1, $2, $3) RETURNING id",
                    slug.schema()
                ),
                &[&url, &secret, &events],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO public.webhook_tenants (tenant_id) \
             SELECT t.id FROM public.tenants t WHERE t.slug = $1 ON CONFLICT DO NOTHING",
            &[&slug.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every endpoint of the tenant, oldest first.
    pub async fn list_webhooks(&self, slug: &Slug) -> StoreResult<Vec<Endpoint>> {
        self.query_in(
            slug,
            &format!("SELECT {ENDPOINT_COLUMNS} FROM {{schema}}.webhook_endpoint e ORDER BY e.id"),
            &[],
            endpoint_from,
        )
        .await
    }

    /// One endpoint with its secret.
    pub async fn webhook(&self, slug: &Slug, id: i64) -> StoreResult<Option<(Endpoint, String)>> {
        self.query_opt_in(
            slug,
            &format!(
                "SELECT {ENDPOINT_COLUMNS}, e.secret FROM {{schema}}.webhook_endpoint e WHERE e.id = $1"
            ),
            &[&id],
            |r| (endpoint_from(r), r.get(8)),
        )
        .await
    }

    /// Removes an endpoint, its queue and its log; false when there is none.
    pub async fn remove_webhook(&self, slug: &Slug, id: i64) -> StoreResult<bool> {
        let n = self
            .execute_in(
                slug,
                "DELETE FROM {schema}.webhook_endpoint WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }

    /// The last `limit` attempts to an endpoint, newest first.
    pub async fn webhook_deliveries(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        self.query_in(
            slug,
            "SELECT event_id::text, event_type, attempt, status_code, error, latency_ms, created_at \
             FROM {schema}.webhook_delivery WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
            &[&endpoint_id, &limit],
            |r| DeliveryRow {
            event_id: r.get(0),
            event_type: r.get(1),
            attempt: r.get(2),
            status_code: r.get(3),
            error: r.get(4),
            latency_ms: r.get(5),
            created_at: r.get(6),
        },
        )
        .await
    }

    /// Writes one attempt to the log outside any queue (a `ping`).
    pub async fn log_webhook_attempt(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        event_id: &str,
        event_type: &str,
        attempt: &Attempt<'_>,
    ) -> StoreResult<()> {
        self.execute_in(
            slug,
            LOG_ATTEMPT,
            &[
                &endpoint_id,
                &event_id,
                &event_type,
                &1_i32,
                &attempt.status_code,
                &attempt.error,
                &attempt.latency_ms,
            ],
        )
        .await?;
        Ok(())
    }

    /// A fresh event id (a UUID) and the database's time, for a `ping`.
    pub async fn new_event_id(&self) -> StoreResult<(String, OffsetDateTime)> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT gen_random_uuid()::text, now()", &[])
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Tenants whose schemas the deliverer scans.
    pub async fn webhook_tenants(&self) -> StoreResult<Vec<Slug>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.slug FROM public.webhook_tenants w \
                 JOIN public.tenants t ON t.id = w.tenant_id ORDER BY t.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Slug::parse(r.get::<_, &str>(0)).ok())
            .collect())
    }

    /// Takes the lease of up to `limit` active endpoints whose next event is
    /// due and that no node holds. `FOR UPDATE SKIP LOCKED`: two nodes
    /// claiming at once get different endpoints, never the same one.
    pub async fn claim_webhooks(
        &self,
        slug: &Slug,
        node: &str,
        lease: Duration,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>> {
        self.query_in(
            slug,
            "UPDATE {schema}.webhook_endpoint e SET leased_by = $1, lease_until = now() + $2::text::interval \
             WHERE e.id IN (SELECT c.id FROM {schema}.webhook_endpoint c \
               WHERE c.state = 'active' AND (c.lease_until IS NULL OR c.lease_until < now()) \
               AND (SELECT o.next_attempt_at FROM {schema}.webhook_outbox o WHERE o.endpoint_id = c.id \
                    ORDER BY o.event_seq LIMIT 1) <= now() \
               ORDER BY c.id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING e.id, e.url, e.secret",
            &[&node, &interval(lease), &limit],
            |r| Claimed {
            id: r.get(0),
            url: r.get(1),
            secret: r.get(2),
        },
        )
        .await
    }

    /// Gives an endpoint's lease back.
    pub async fn release_webhook(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        node: &str,
    ) -> StoreResult<()> {
        self.execute_in(
            slug,
            "UPDATE {schema}.webhook_endpoint SET leased_by = NULL, lease_until = NULL \
             WHERE id = $1 AND leased_by = $2",
            &[&endpoint_id, &node],
        )
        .await?;
        Ok(())
    }

    /// Extends this node's lease of an endpoint; false when it is no longer
    /// this node's (expired and taken, removed or disabled).
    pub async fn renew_webhook_lease(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        node: &str,
        lease: Duration,
    ) -> StoreResult<bool> {
        let n = self
            .execute_in(
                slug,
                "UPDATE {schema}.webhook_endpoint SET lease_until = now() + $3::text::interval \
                 WHERE id = $1 AND leased_by = $2 AND state = 'active'",
                &[&endpoint_id, &node, &interval(lease)],
            )
            .await?;
        Ok(n > 0)
    }

    /// Extends this node's lease of an endpoint and reads the first `limit`
    /// events of its queue, in order, as long as they are due; empty when
    /// the lease is no longer this node's or the head is not due. One
    /// statement: per-endpoint order makes round trips the throughput.
    pub async fn next_webhook_events(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        node: &str,
        lease: Duration,
        limit: i64,
    ) -> StoreResult<Vec<QueuedEvent>> {
        let events = self
            .query_in(
                slug,
                "WITH lease AS (UPDATE {schema}.webhook_endpoint SET lease_until = now() + $3::text::interval \
                   WHERE id = $1 AND leased_by = $2 AND state = 'active' RETURNING id) \
                 SELECT ev.seq, ev.id::text, ev.type, ev.stream_id, ev.data, ev.created_at, o.attempts, \
                 o.next_attempt_at <= now() \
                 FROM lease JOIN {schema}.webhook_outbox o ON o.endpoint_id = lease.id \
                 JOIN {schema}.webhook_event ev ON ev.seq = o.event_seq \
                 ORDER BY o.event_seq LIMIT $4",
                &[&endpoint_id, &node, &interval(lease), &limit],
                |r| {
                    r.get::<_, bool>(7).then(|| QueuedEvent {
                        seq: r.get(0),
                        id: r.get(1),
                        event_type: r.get(2),
                        stream_id: r.get(3),
                        data: r.get(4),
                        created_at: r.get(5),
                        attempts: r.get(6),
                    })
                },
            )
            .await?;
        // In queue order, up to the first event not due yet.
        Ok(events.into_iter().map_while(|due| due).collect())
    }

    /// Acknowledged deliveries (in the order sent): logged, dequeued, the
    /// endpoint healthy again, in one statement.
    pub async fn webhook_delivered(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        acked: &[(&QueuedEvent, Attempt<'_>)],
    ) -> StoreResult<()> {
        if acked.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = acked.iter().map(|(e, _)| e.seq).collect();
        let ids: Vec<&str> = acked.iter().map(|(e, _)| e.id.as_str()).collect();
        let types: Vec<&str> = acked.iter().map(|(e, _)| e.event_type.as_str()).collect();
        let attempts: Vec<i32> = acked.iter().map(|(e, _)| e.attempts + 1).collect();
        let codes: Vec<Option<i32>> = acked.iter().map(|(_, a)| a.status_code).collect();
        let latencies: Vec<i32> = acked.iter().map(|(_, a)| a.latency_ms).collect();
        self.execute_in(
            slug,
            "WITH done AS (DELETE FROM {schema}.webhook_outbox \
               WHERE endpoint_id = $1 AND event_seq = ANY ($2::bigint[])), \
             logged AS (INSERT INTO {schema}.webhook_delivery \
               (endpoint_id, event_id, event_type, attempt, status_code, latency_ms) \
               SELECT $1, x.e::uuid, x.t, x.a, x.c, x.l \
               FROM unnest($3::text[], $4::text[], $5::int[], $6::int[], $7::int[]) \
                 WITH ORDINALITY AS x(e, t, a, c, l, n) ORDER BY x.n) \
             UPDATE {schema}.webhook_endpoint SET last_success_at = now(), failing_since = NULL \
             WHERE id = $1",
            &[
                &endpoint_id,
                &seqs,
                &ids,
                &types,
                &attempts,
                &codes,
                &latencies,
            ],
        )
        .await?;
        Ok(())
    }

    /// A failed attempt: logged; the event retried after `policy.retry_in`, or
    /// given up once older than `policy.give_up`; the endpoint disabled (its
    /// queue dropped) once it has had no success for `policy.disable_after`.
    pub async fn webhook_failed(
        &self,
        slug: &Slug,
        endpoint_id: i64,
        event: &QueuedEvent,
        attempt: &Attempt<'_>,
        policy: &FailurePolicy,
    ) -> StoreResult<FailureOutcome> {
        let FailurePolicy {
            retry_in,
            give_up,
            disable_after,
        } = *policy;
        let s = slug.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        log_attempt(&tx, slug, endpoint_id, event, attempt).await?;
        let disabled = tx
            .query_opt(
                &format!(
                    "UPDATE {s}.webhook_endpoint SET last_failure_at = now(), \
                       failing_since = coalesce(failing_since, now()), \
                       state = CASE WHEN coalesce(failing_since, now()) <= now() - $2::text::interval \
                                    THEN 'disabled' ELSE state END, \
                       disabled_at = CASE WHEN coalesce(failing_since, now()) <= now() - $2::text::interval \
                                    THEN now() ELSE disabled_at END \
                     WHERE id = $1 RETURNING state = 'disabled'"
                ),
                &[&endpoint_id, &interval(disable_after)],
            )
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
        let outcome = if disabled {
            tx.execute(
                &format!("DELETE FROM {s}.webhook_outbox WHERE endpoint_id = $1"),
                &[&endpoint_id],
            )
            .await?;
            FailureOutcome::Disabled
        } else {
            let gave_up = tx
                .query_one(
                    &format!(
                        "SELECT created_at <= now() - $2::text::interval FROM {s}.webhook_event WHERE seq = $1"
                    ),
                    &[&event.seq, &interval(give_up)],
                )
                .await?
                .get::<_, bool>(0);
            if gave_up {
                tx.execute(
                    &format!(
                        "DELETE FROM {s}.webhook_outbox WHERE endpoint_id = $1 AND event_seq = $2"
                    ),
                    &[&endpoint_id, &event.seq],
                )
                .await?;
                FailureOutcome::GaveUp
            } else {
                tx.execute(
                    &format!(
                        "UPDATE {s}.webhook_outbox SET attempts = attempts + 1, \
                         next_attempt_at = now() + $3::text::interval \
                         WHERE endpoint_id = $1 AND event_seq = $2"
                    ),
                    &[&endpoint_id, &event.seq, &interval(retry_in)],
                )
                .await?;
                FailureOutcome::Retry
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records `reactions.minute` for every stream's minutes that closed at
    /// least `settle` ago (within the last ten minutes). The dedup key (stream
    /// and minute) makes this idempotent: several nodes running it at once
    /// record each minute once.
    pub async fn record_reaction_minutes(&self, slug: &Slug, settle: Duration) -> StoreResult<u64> {
        let recorded = self
            .query_one_in(
                slug,
                "SELECT count({schema}.webhook_record('reactions.minute', g.stream_id, \
                   jsonb_build_object('stream_id', g.stream_id, 'minute', {schema}.webhook_ts(g.minute), \
                     'counts', g.counts, 'total', g.total), \
                   'reactions.minute:' || g.stream_id || ':' || extract(epoch FROM g.minute)::bigint)) \
                 FROM (SELECT r.stream_id, r.minute, sum(r.count)::bigint AS total, \
                         jsonb_agg(jsonb_build_object('stamp_id', r.stamp_id, 'stamp_name', st.name, \
                           'count', r.count) ORDER BY r.stamp_id) AS counts \
                       FROM {schema}.streaming_reaction_minute r \
                       LEFT JOIN {schema}.chat_chatstamp st ON st.id = r.stamp_id \
                       WHERE r.minute >= now() - interval '10 minutes' \
                         AND r.minute + interval '1 minute' <= now() - $1::text::interval \
                         AND NOT EXISTS (SELECT 1 FROM {schema}.webhook_event e WHERE e.dedup_key = \
                           'reactions.minute:' || r.stream_id || ':' || extract(epoch FROM r.minute)::bigint) \
                       GROUP BY r.stream_id, r.minute ORDER BY r.minute, r.stream_id) g",
                &[&interval(settle)],
                |r| r.get::<_, i64>(0),
            )
            .await?;
        Ok(recorded as u64)
    }

    /// Drops what is still queued for disabled endpoints. Disabling drops the
    /// queue in its own transaction, but a message committed at the same
    /// moment may have queued an event for the endpoint it still saw active:
    /// that row would never be claimed (only active endpoints are), so the
    /// housekeeping round removes it. Returns the rows dropped.
    pub async fn drop_disabled_queues(&self, slug: &Slug) -> StoreResult<u64> {
        self.execute_in(
            slug,
            "DELETE FROM {schema}.webhook_outbox o USING {schema}.webhook_endpoint e \
             WHERE o.endpoint_id = e.id AND e.state = 'disabled'",
            &[],
        )
        .await
    }

    /// Events waiting in a tenant's outbox, and the age of the oldest, seconds.
    pub async fn webhook_backlog(&self, slug: &Slug) -> StoreResult<(i64, f64)> {
        self.query_one_in(
            slug,
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(ev.created_at))::float8, 0) \
             FROM {schema}.webhook_outbox o JOIN {schema}.webhook_event ev ON ev.seq = o.event_seq",
            &[],
            |r| (r.get(0), r.get(1)),
        )
        .await
    }

    /// Deletes delivered events older than a day and log rows older than a week.
    pub async fn prune_webhooks(&self, slug: &Slug) -> StoreResult<()> {
        self.execute_in(
            slug,
            "DELETE FROM {schema}.webhook_event e WHERE e.created_at < now() - interval '1 day' \
             AND NOT EXISTS (SELECT 1 FROM {schema}.webhook_outbox o WHERE o.event_seq = e.seq)",
            &[],
        )
        .await?;
        self.execute_in(
            slug,
            "DELETE FROM {schema}.webhook_delivery WHERE created_at < now() - interval '7 days'",
            &[],
        )
        .await?;
        Ok(())
    }
}

async fn log_attempt(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
    endpoint_id: i64,
    event: &QueuedEvent,
    attempt: &Attempt<'_>,
) -> StoreResult<()> {
    tx.execute(
        &tenant_sql(slug, LOG_ATTEMPT),
        &[
            &endpoint_id,
            &event.id,
            &event.event_type,
            &(event.attempts + 1),
            &attempt.status_code,
            &attempt.error,
            &attempt.latency_ms,
        ],
    )
    .await?;
    Ok(())
}
