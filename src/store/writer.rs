//! The message batch writer: one task per node that gathers chat messages from
//! every room, writes them in batches (one transaction per tenant per batch:
//! what queued while the previous batch was written, up to `chat.batch_max`,
//! after waiting `chat.batch_delay_ms` for more when that is set), and
//! reports each room's outcomes back to it, in order, after commit. A room never
//! awaits the database: it hands a job over with `try_send` and gets a
//! [`Written`] message later.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actix::{Message, Recipient};
use tokio::sync::mpsc;

use super::{
    messages::{InsertOutcome, NewMessage},
    spawn_writer_thread, Slug, Store,
};
use crate::metrics::Metrics;

/// One message to store, and where to report it.
pub struct WriteJob {
    /// The tenant.
    pub slug: Slug,
    /// The message.
    pub message: NewMessage,
    /// The room's token for this message (echoed back).
    pub token: u64,
    /// The room to report to.
    pub reply_to: Recipient<Written>,
}

/// One message's outcome: `Err` means not stored (storage unavailable).
pub type Outcome = (u64, Result<InsertOutcome, ()>);

/// Outcomes for one room's messages of a batch, in submission order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Written {
    /// (token, outcome).
    pub results: Vec<Outcome>,
}

/// Handle to the writer task. Cloning is cheap.
#[derive(Clone)]
pub struct MessageWriter {
    tx: mpsc::Sender<WriteJob>,
}

/// Why a job was not accepted.
#[derive(Debug)]
pub struct WriterFull;

impl MessageWriter {
    /// Starts the writer task on a thread of its own (see
    /// [`spawn_writer_thread`]); `store` should be a pool only it uses. It
    /// records its batches in `metrics`.
    pub fn start(
        store: Store,
        delay: Duration,
        max: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(65_536);
        spawn_writer_thread(
            "stampede-messages",
            run(store, rx, delay, max.max(1), metrics),
        )?;
        Ok(Self { tx })
    }

    /// Queues a job without waiting; fails when the writer is overloaded or gone.
    pub fn submit(&self, job: WriteJob) -> Result<(), WriterFull> {
        self.tx.try_send(job).map_err(|_| WriterFull)
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<WriteJob>,
    delay: Duration,
    max: usize,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if jobs.len() < max && !delay.is_zero() {
            // Let a burst gather into this batch.
            tokio::time::sleep(delay).await;
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
        }
        write_batch(&store, jobs, &metrics).await;
    }
}

async fn write_batch(store: &Store, jobs: Vec<WriteJob>, metrics: &Metrics) {
    let mut by_tenant: BTreeMap<Slug, Vec<WriteJob>> = BTreeMap::new();
    for j in jobs {
        by_tenant.entry(j.slug.clone()).or_default().push(j);
    }
    for (slug, jobs) in by_tenant {
        let batch: Vec<NewMessage> = jobs.iter().map(|j| j.message.clone()).collect();
        let started = std::time::Instant::now();
        let mut result = store.insert_messages(&slug, &batch).await;
        if let Err(e) = &result {
            // One quick retry: a pooled connection may have died with a restart.
            tracing::warn!(tenant = %slug, error = %e, "message batch failed, retrying once");
            tokio::time::sleep(Duration::from_millis(50)).await;
            result = store.insert_messages(&slug, &batch).await;
        }
        metrics.observe_batch(batch.len(), started.elapsed());
        match result {
            Ok(outcomes) => report(jobs, outcomes.into_iter().map(Ok).collect()),
            Err(e) => {
                tracing::warn!(tenant = %slug, error = %e, "message batch not stored");
                let n = jobs.len();
                report(jobs, vec![Err(()); n]);
            }
        }
    }
}

/// Sends each room its outcomes in order (one message per room per batch).
fn report(jobs: Vec<WriteJob>, outcomes: Vec<Result<InsertOutcome, ()>>) {
    let mut rooms: Vec<(Recipient<Written>, i64, Vec<Outcome>)> = Vec::new();
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        match rooms.iter_mut().find(|r| r.1 == job.message.room_id) {
            Some(r) => r.2.push((job.token, outcome)),
            None => rooms.push((
                job.reply_to,
                job.message.room_id,
                vec![(job.token, outcome)],
            )),
        }
    }
    for (to, _, results) in rooms {
        to.do_send(Written { results });
    }
}
