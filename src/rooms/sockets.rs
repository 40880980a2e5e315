//! This node's open sockets, indexed for the limits and closes that need them:
//! connection slots per address and per user (released when a socket's actor
//! is dropped), and the sockets of each login session (closed with 4001 when
//! the session ends, on this node; the hub relays the close to the others).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::{domain::Slug, metrics::Metrics, sessions::outlet::Outlet};

/// Sockets of one login session on this node: (connection id, user id, outlet).
type SessionSockets = Vec<(u64, i64, Outlet)>;

/// Open sockets by address, user and login session.
pub struct SocketIndex {
    /// Sockets per (tenant, session key hash).
    sessions: Mutex<HashMap<(Slug, String), SessionSockets>>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    per_user: Mutex<HashMap<(Slug, i64), u32>>,
    /// The node's metrics (its entries are a gauge there).
    metrics: Arc<Metrics>,
}

/// Holds one connection slot of an IP; gives it back when dropped.
pub struct IpSlot {
    index: Arc<SocketIndex>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        release(&self.index.per_ip, &self.ip, &self.index.metrics);
    }
}

/// Holds one connection slot of a user; gives it back when dropped.
pub struct UserSlot {
    index: Arc<SocketIndex>,
    key: (Slug, i64),
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        release(&self.index.per_user, &self.key, &self.index.metrics);
    }
}

fn release<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u32>>, key: &K, metrics: &Metrics) {
    let mut map = map.lock().unwrap();
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
            removed(&mut map, metrics);
        }
    }
}

/// Bookkeeping after an entry left a map: the gauge, and the table's memory
/// handed back once a wave of sockets has left (a map keeps its peak capacity).
fn removed<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, metrics: &Metrics) {
    metrics.socket_index_entries.dec();
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// Counts one more for `key` unless it has `max` already (0 = no limit).
fn take<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, u32>>,
    key: K,
    max: u32,
    metrics: &Metrics,
) -> bool {
    let mut map = map.lock().unwrap();
    let n = map.entry(key).or_insert_with(|| {
        metrics.socket_index_entries.inc();
        0
    });
    if max > 0 && *n >= max {
        return false;
    }
    *n += 1;
    true
}

impl SocketIndex {
    /// An empty index that counts its entries in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            sessions: Mutex::default(),
            per_ip: Mutex::default(),
            per_user: Mutex::default(),
            metrics,
        }
    }

    /// Takes a connection slot for `ip`, or `None` when it has `max` already (0 = no limit).
    pub fn acquire_ip(index: &Arc<Self>, ip: IpAddr, max: u32) -> Option<IpSlot> {
        take(&index.per_ip, ip, max, &index.metrics).then(|| IpSlot {
            index: index.clone(),
            ip,
        })
    }

    /// Takes a connection slot for a user, or `None` when they have `max` (0 = no limit).
    pub fn acquire_user(
        index: &Arc<Self>,
        slug: &Slug,
        user_id: i64,
        max: u32,
    ) -> Option<UserSlot> {
        let key = (slug.clone(), user_id);
        take(&index.per_user, key.clone(), max, &index.metrics).then(|| UserSlot {
            index: index.clone(),
            key,
        })
    }

    /// Records a socket of a login session.
    pub fn register_session(
        &self,
        slug: &Slug,
        key_hash: &str,
        user_id: i64,
        conn_id: u64,
        outlet: Outlet,
    ) {
        self.sessions
            .lock()
            .unwrap()
            .entry((slug.clone(), key_hash.to_string()))
            .or_insert_with(|| {
                self.metrics.socket_index_entries.inc();
                Vec::new()
            })
            .push((conn_id, user_id, outlet));
    }

    /// Forgets a socket of a login session.
    pub fn unregister_session(&self, slug: &Slug, key_hash: &str, conn_id: u64) {
        let mut map = self.sessions.lock().unwrap();
        let key = (slug.clone(), key_hash.to_string());
        if let Some(v) = map.get_mut(&key) {
            v.retain(|(id, _, _)| *id != conn_id);
            if v.is_empty() {
                map.remove(&key);
                removed(&mut map, &self.metrics);
            }
        }
    }

    /// Closes every socket of a session on this node; returns how many.
    pub fn close_session(&self, slug: &Slug, key_hash: &str, code: u16) -> usize {
        let map = self.sessions.lock().unwrap();
        match map.get(&(slug.clone(), key_hash.to_string())) {
            Some(v) => {
                for (_, _, outlet) in v {
                    outlet.close_after_queue(code, "session ended");
                }
                v.len()
            }
            None => 0,
        }
    }

    /// Closes every socket of a user on this node.
    pub fn close_user(&self, slug: &Slug, user_id: i64, code: u16) {
        let map = self.sessions.lock().unwrap();
        for ((s, _), sockets) in map.iter() {
            if s == slug {
                for (_, uid, outlet) in sockets {
                    if *uid == user_id {
                        outlet.close_after_queue(code, "session ended");
                    }
                }
            }
        }
    }

    /// The session key hashes with sockets here, by tenant.
    pub fn sessions_by_tenant(&self) -> HashMap<Slug, Vec<String>> {
        let mut by_tenant: HashMap<Slug, Vec<String>> = HashMap::new();
        for (slug, hash) in self.sessions.lock().unwrap().keys() {
            by_tenant
                .entry(slug.clone())
                .or_default()
                .push(hash.clone());
        }
        by_tenant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back_when_dropped() {
        let index = Arc::new(SocketIndex::new(Arc::default()));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = SocketIndex::acquire_ip(&index, ip, 2).unwrap();
        let _b = SocketIndex::acquire_ip(&index, ip, 2).unwrap();
        assert!(SocketIndex::acquire_ip(&index, ip, 2).is_none());
        drop(a);
        assert!(SocketIndex::acquire_ip(&index, ip, 2).is_some());
        // 0 means no limit.
        let slug = Slug::parse("acme").unwrap();
        let many: Vec<_> = (0..5)
            .map(|_| SocketIndex::acquire_user(&index, &slug, 1, 0).unwrap())
            .collect();
        drop(many);
        assert!(index.per_user.lock().unwrap().is_empty());
        assert_eq!(index.metrics.socket_index_entries.get(), 1, "the address");
    }
}
