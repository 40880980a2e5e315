//! The reaction batch writer: one task per node gathering every accepted
//! reaction, writing them in batches (raw rows + rollup in one transaction per
//! tenant) every few tens of milliseconds. Failed batches are kept and retried
//! with backoff; [`ReactionWriter::flush`] waits until everything queued before
//! it is written (graceful shutdown loses no reaction).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::{reactions::NewReaction, spawn_writer_thread, Slug, Store};
use crate::metrics::Metrics;

/// Most reactions kept in memory while PostgreSQL is unreachable.
const MAX_BACKLOG: usize = 2_000_000;
/// Reactions waiting for the writer task at most; past this a reaction is
/// refused (`unavailable`) before it is counted anywhere.
const QUEUE: usize = 200_000;
/// Most rows per statement.
const MAX_BATCH: usize = 10_000;
/// How long the writer gathers before writing.
const GATHER: Duration = Duration::from_millis(50);

enum Job {
    Row(Slug, NewReaction),
    Flush(oneshot::Sender<()>),
}

/// Handle to the reaction writer. Cheap to clone.
#[derive(Clone)]
pub struct ReactionWriter {
    tx: mpsc::Sender<Job>,
}

/// The writer's queue is full: the reaction was not taken.
#[derive(Debug)]
pub struct ReactionsFull;

impl ReactionWriter {
    /// Starts the writer task on a thread of its own (see
    /// [`spawn_writer_thread`]); `store` should be a pool only it uses. It
    /// records its batches in `metrics`.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        spawn_writer_thread("stampede-reactions", run(store, rx, metrics))?;
        Ok(Self { tx })
    }

    /// Queues one reaction (never blocks); refused when the queue is full.
    pub fn push(&self, slug: &Slug, reaction: NewReaction) -> Result<(), ReactionsFull> {
        self.tx
            .try_send(Job::Row(slug.clone(), reaction))
            .map_err(|_| ReactionsFull)
    }

    /// Resolves once every reaction queued before this call is written (or
    /// given up after PostgreSQL stayed unreachable).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What the writer holds: rows by tenant, and flushes waiting for them.
#[derive(Default)]
struct Pending {
    rows: BTreeMap<Slug, Vec<NewReaction>>,
    count: usize,
    waiting: Vec<oneshot::Sender<()>>,
}

impl Pending {
    fn accept(&mut self, job: Job) {
        match job {
            Job::Row(slug, r) => {
                self.rows.entry(slug).or_default().push(r);
                self.count += 1;
            }
            Job::Flush(done) => self.waiting.push(done),
        }
    }

    /// Drops the oldest rows beyond the backlog bound.
    fn trim(&mut self) {
        if self.count <= MAX_BACKLOG {
            return;
        }
        let mut excess = self.count - MAX_BACKLOG;
        tracing::error!(
            dropped = excess,
            "reaction backlog full, dropping the oldest"
        );
        for rows in self.rows.values_mut() {
            let n = excess.min(rows.len());
            rows.drain(..n);
            excess -= n;
            self.count -= n;
        }
    }

    /// Writes every pending row; false when a batch failed (its rows stay).
    async fn write_all(&mut self, store: &Store, metrics: &Metrics) -> bool {
        let mut ok = true;
        for (slug, rows) in self.rows.iter_mut() {
            while !rows.is_empty() {
                let n = rows.len().min(MAX_BATCH);
                let started = std::time::Instant::now();
                match store.insert_reactions(slug, &rows[..n]).await {
                    Ok(()) => {
                        metrics.reactions_stored.add(n as u64);
                        metrics.observe_batch(n, started.elapsed());
                        rows.drain(..n);
                        self.count -= n;
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %slug, error = %e, rows = rows.len(), "reaction batch failed");
                        ok = false;
                        break;
                    }
                }
            }
        }
        self.rows.retain(|_, rows| !rows.is_empty());
        ok
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
    let mut p = Pending::default();
    let mut failures = 0u32;
    let mut open = true;
    while open || p.count > 0 {
        if p.count == 0 && p.waiting.is_empty() {
            match rx.recv().await {
                Some(job) => p.accept(job),
                None => break,
            }
        }
        // Gather for a short window (cut short by a flush or a full batch).
        let until = tokio::time::Instant::now() + GATHER;
        while p.count < MAX_BATCH && p.waiting.is_empty() {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(job)) => p.accept(job),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if p.write_all(&store, &metrics).await {
            failures = 0;
            for w in p.waiting.drain(..) {
                let _ = w.send(());
            }
        } else {
            failures += 1;
            p.trim();
            // A flush (shutdown) does not wait forever for PostgreSQL.
            if failures >= 5 {
                p.waiting.clear();
            }
            tokio::time::sleep(Duration::from_millis((100 * failures as u64).min(2000))).await;
        }
    }
}
