//! Argon2id password hashes (PHC strings). Hashing is slow on purpose, so it
//! runs on the blocking pool, never on an async worker. Requests hash through a
//! [`HashGate`], which bounds how many hashes run at once (each holds ~19 MiB)
//! and how many wait.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::Semaphore;

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

/// Hashes a password (Argon2id, default parameters, random salt), outside any
/// [`HashGate`]: for the CLI and tests, not for requests.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

/// True when `password` matches the PHC string `hash` (outside any gate).
pub async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_now(&hash, &password))
        .await
        .unwrap_or(false)
}

/// Refused: as many hashes are running and waiting as the gate allows.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many password hashes in progress")]
pub struct HashBusy;

/// Bounds the password hashes of a node: `concurrent` run at once on the
/// blocking pool, as many more wait, and any beyond are refused at once
/// ([`HashBusy`]) instead of queueing memory and threads.
pub struct HashGate {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// Holds one admission until the hash is done (or abandoned before it ran).
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashGate {
    /// `concurrent` hashes at once (0: one per core), as many waiting.
    pub fn new(concurrent: usize) -> Self {
        let concurrent = match concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Self {
            running: Arc::new(Semaphore::new(concurrent)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrent * 2,
        }
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashBusy> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(HashBusy);
        }
        let admission = Admission(self.admitted.clone());
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashBusy)?;
        // The permit and the admission go with the work: a client that hangs
        // up does not free the slot of a hash that is still running.
        tokio::task::spawn_blocking(move || {
            let _held = (permit, admission);
            work()
        })
        .await
        .map_err(|_| HashBusy)
    }

    /// Hashes a password (Argon2id, random salt).
    pub async fn hash(&self, password: String) -> Result<anyhow::Result<String>, HashBusy> {
        self.run(move || hash_now(&password)).await
    }

    /// True when `password` matches the PHC string `hash`.
    pub async fn verify(&self, hash: String, password: String) -> Result<bool, HashBusy> {
        self.run(move || verify_now(&hash, &password)).await
    }
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

fn verify_now(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn round_trip() {
        let h = hash_password("s3cret pw".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(h.clone(), "s3cret pw".into()).await);
        assert!(!verify_password(h, "wrong".into()).await);
        assert!(!verify_password("not a hash".into(), "x".into()).await);
    }

    #[actix_rt::test]
    async fn the_gate_refuses_beyond_running_and_waiting() {
        let gate = Arc::new(HashGate::new(1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (gate, rx) = (gate.clone(), rx.clone());
            held.push(actix_rt::spawn(async move {
                gate.run(move || rx.lock().unwrap().recv().unwrap()).await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // One running, one waiting: the third is refused at once.
        assert!(gate.run(|| ()).await.is_err());
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for h in held {
            assert!(h.await.unwrap().is_ok());
        }
        assert!(gate.verify("x".into(), "y".into()).await.is_ok());
    }
}
