//! Keyed rate limiters (governor) for chat and reactions, and the failed-login
//! limiter, with periodic pruning of idle keys.

use std::{
    collections::HashMap,
    hash::Hash,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
    Quota, RateLimiter,
};

/// A governor limiter keyed by `K` (a string unless said otherwise).
pub type KeyedLimiter<K = String> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Counts one event for `key`: `None` when allowed, else milliseconds until it would be.
pub fn retry_after_ms<K: Hash + Eq + Clone>(limiter: &KeyedLimiter<K>, key: &K) -> Option<u64> {
    match limiter.check_key(key) {
        Ok(()) => None,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Some((wait.as_millis() as u64).max(1))
        }
    }
}

/// Builds a limiter allowing `n` per `period` with a burst of `burst`.
pub fn keyed<K: Hash + Eq + Clone>(n: u32, period: Duration, burst: u32) -> KeyedLimiter<K> {
    let n = NonZeroU32::new(n.max(1)).unwrap();
    let per = period / n.get();
    let quota = Quota::with_period(per.max(Duration::from_nanos(1)))
        .unwrap()
        .allow_burst(NonZeroU32::new(burst.max(1)).unwrap());
    RateLimiter::keyed(quota)
}

/// Failed logins, limited per client address and per (address, username).
///
/// Each attempt is counted as a failure before the password is checked (so a
/// burst of concurrent guesses cannot overrun the limit) and refunded when the
/// password was right. An address that has not failed is therefore never
/// refused: guesses from one address cannot lock an account's owner out from
/// another. Each key is a leaky bucket holding at most `n` failures that drain
/// at `n` per minute.
pub struct LoginLimiter {
    per_ip: FailureBuckets,
    per_ip_user: FailureBuckets,
}

/// One attempt admitted by [`LoginLimiter::begin`]; [`LoginLimiter::succeeded`]
/// refunds it.
#[must_use]
pub struct Attempt {
    ip: String,
    ip_user: String,
}

impl LoginLimiter {
    /// Limits from `[limits]`: failures per minute per address, and per
    /// address and username.
    pub fn new(per_ip_per_minute: u32, per_ip_user_per_minute: u32) -> Self {
        Self {
            per_ip: FailureBuckets::new(per_ip_per_minute),
            per_ip_user: FailureBuckets::new(per_ip_user_per_minute),
        }
    }

    /// Admits one login attempt from `ip` for `username`, counting it as a
    /// failure until [`succeeded`](Self::succeeded); `Err(ms)` when this
    /// address (or this address for this name) failed too often.
    pub fn begin(&self, ip: &str, tenant: &str, username: &str) -> Result<Attempt, u64> {
        // Usernames are one name in any case.
        let ip_user = format!("{ip}\n{tenant}\n{}", username.to_ascii_lowercase());
        let now = Instant::now();
        // Both buckets are checked before either is charged.
        let wait = self
            .per_ip
            .wait_ms(ip, now)
            .max(self.per_ip_user.wait_ms(&ip_user, now));
        if wait > 0 {
            return Err(wait);
        }
        self.per_ip.add(ip, now, 1.0);
        self.per_ip_user.add(&ip_user, now, 1.0);
        Ok(Attempt {
            ip: ip.to_string(),
            ip_user,
        })
    }

    /// The attempt's password was right: it no longer counts.
    pub fn succeeded(&self, attempt: Attempt) {
        let now = Instant::now();
        self.per_ip.add(&attempt.ip, now, -1.0);
        self.per_ip_user.add(&attempt.ip_user, now, -1.0);
    }

    /// Counts one request that is not a login (a sign-up) against the
    /// address's budget; `Err(ms)` when the address is out of it.
    pub fn charge_address(&self, ip: &str) -> Result<(), u64> {
        let now = Instant::now();
        match self.per_ip.wait_ms(ip, now) {
            0 => {
                self.per_ip.add(ip, now, 1.0);
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// Drops the state of keys that have drained.
    pub fn prune(&self) {
        let now = Instant::now();
        self.per_ip.prune(now);
        self.per_ip_user.prune(now);
    }
}

/// Leaky buckets of failures by key: each holds at most `cap` and drains at
/// `cap` per minute.
struct FailureBuckets {
    cap: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl FailureBuckets {
    fn new(per_minute: u32) -> Self {
        let cap = f64::from(per_minute.max(1));
        Self {
            cap,
            per_sec: cap / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn level(&self, (level, at): (f64, Instant), now: Instant) -> f64 {
        (level - now.saturating_duration_since(at).as_secs_f64() * self.per_sec).max(0.0)
    }

    /// Milliseconds until one more failure fits (0: it fits now).
    fn wait_ms(&self, key: &str, now: Instant) -> u64 {
        let buckets = self.buckets.lock().unwrap();
        let Some(&entry) = buckets.get(key) else {
            return 0;
        };
        let excess = self.level(entry, now) + 1.0 - self.cap;
        if excess <= 0.0 {
            0
        } else {
            ((excess / self.per_sec * 1000.0).ceil() as u64).max(1)
        }
    }

    fn add(&self, key: &str, now: Instant, n: f64) {
        let mut buckets = self.buckets.lock().unwrap();
        let level = buckets
            .get(key)
            .map_or(0.0, |&entry| self.level(entry, now));
        let level = (level + n).clamp(0.0, self.cap);
        if level == 0.0 {
            buckets.remove(key);
        } else {
            buckets.insert(key.to_string(), (level, now));
        }
    }

    fn prune(&self, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap();
        buckets.retain(|_, entry| self.level(*entry, now) > 0.0);
        buckets.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_per_address_and_name_and_successes_refunded() {
        let l = LoginLimiter::new(5, 3);
        for _ in 0..3 {
            let _ = l.begin("1.1.1.1", "t", "alice").expect("admitted");
        }
        let wait = l.begin("1.1.1.1", "t", "alice").err().expect("limited");
        assert!(wait > 1000 && wait <= 20_000, "{wait}");
        // Another address is not limited by these failures.
        l.succeeded(l.begin("2.2.2.2", "t", "alice").expect("clean address"));
        // Another name from the same address is, once the address runs out.
        let _ = l.begin("1.1.1.1", "t", "bob").expect("admitted");
        let _ = l.begin("1.1.1.1", "u", "alice").expect("other tenant");
        assert!(l.begin("1.1.1.1", "t", "carol").is_err());
        // Successes do not count.
        for _ in 0..20 {
            l.succeeded(l.begin("3.3.3.3", "t", "alice").expect("never limited"));
        }
    }
}
