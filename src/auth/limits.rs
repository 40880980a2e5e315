//! Keyed rate limiters (governor) for logins, with periodic pruning of idle keys.

use std::{hash::Hash, num::NonZeroU32, time::Duration};

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

/// Login attempts, limited per client IP and per (tenant, username).
pub struct LoginLimiter {
    per_ip: KeyedLimiter,
    per_user: KeyedLimiter,
}

impl LoginLimiter {
    /// Limits from `[limits]`.
    pub fn new(per_ip_per_minute: u32, per_user_per_minute: u32) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            per_ip: keyed(per_ip_per_minute, minute, per_ip_per_minute),
            per_user: keyed(per_user_per_minute, minute, per_user_per_minute),
        }
    }

    /// Counts one attempt; `Some(ms)` when it must be refused.
    pub fn check(&self, ip: &str, tenant: &str, username: &str) -> Option<u64> {
        let by_ip = retry_after_ms(&self.per_ip, &ip.to_string());
        let by_user = retry_after_ms(&self.per_user, &format!("{tenant}/{username}"));
        by_ip.max(by_user)
    }

    /// Drops the state of keys that are back to full capacity.
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        self.per_user.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_user.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_limit_per_user_and_ip() {
        let l = LoginLimiter::new(100, 3);
        for _ in 0..3 {
            assert_eq!(l.check("1.1.1.1", "t", "alice"), None);
        }
        let wait = l.check("1.1.1.1", "t", "alice").expect("limited");
        assert!(wait > 1000 && wait <= 20_000, "{wait}");
        // Another user from the same IP is not limited by alice's attempts.
        assert_eq!(l.check("1.1.1.1", "t", "bob"), None);
        // The same name on another tenant is a different key.
        assert_eq!(l.check("2.2.2.2", "u", "alice"), None);
    }
}
