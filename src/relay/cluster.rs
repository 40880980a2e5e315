//! Topology of a Redis Cluster: which primary owns which slots, and which
//! nodes to ask next time. Read with `CLUSTER SLOTS` from any node that
//! answers; a node asks again when a shard's connection fails, a command meets
//! `MOVED`/`ASK`, a subscription is moved away, and every few seconds.

use std::{collections::BTreeSet, time::Duration};

use redis::{ConnectionAddr, ConnectionInfo, Value};

use super::slots::SLOTS;

/// Longest wait for one node's answer while discovering.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// Slot ranges and their primaries, plus every node seen (replicas too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// `(first slot, last slot, primary "host:port")`, sorted by first slot.
    ranges: Vec<(u16, u16, String)>,
    /// Every node listed, primaries and replicas (`host:port`).
    nodes: BTreeSet<String>,
}

impl Topology {
    /// The primary owning `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (first, last, addr) = self.ranges.get(i.checked_sub(1)?)?;
        (*first <= slot && slot <= *last).then_some(addr.as_str())
    }

    /// True when `addr` is a primary owning slots.
    pub fn owner_of_any(&self, addr: &str) -> bool {
        self.ranges.iter().any(|(_, _, a)| a == addr)
    }

    /// Every primary that owns slots.
    pub fn primaries(&self) -> BTreeSet<String> {
        self.ranges.iter().map(|(_, _, a)| a.clone()).collect()
    }

    /// Every node listed (primaries and replicas).
    pub fn nodes(&self) -> &BTreeSet<String> {
        &self.nodes
    }

    /// True when every one of the 16384 slots has a primary.
    pub fn covers_all(&self) -> bool {
        let mut next: u32 = 0;
        for (first, last, _) in &self.ranges {
            if u32::from(*first) > next {
                return false;
            }
            next = next.max(u32::from(*last) + 1);
        }
        next == u32::from(SLOTS)
    }

    /// Parses a `CLUSTER SLOTS` reply; `asked` is the node that gave it (for
    /// entries whose address is empty: "the node you asked").
    pub fn from_cluster_slots(reply: &Value, asked: &str) -> Result<Self, String> {
        let Value::Array(entries) = reply else {
            return Err(format!("CLUSTER SLOTS gave {reply:?}"));
        };
        let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
        let mut t = Topology::default();
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err("CLUSTER SLOTS entry is not an array".into());
            };
            let (Some(Value::Int(first)), Some(Value::Int(last))) = (fields.first(), fields.get(1))
            else {
                return Err("CLUSTER SLOTS entry without a slot range".into());
            };
            let mut addrs = fields[2..].iter().map(|node| node_addr(node, asked_host));
            let Some(primary) = addrs.next().transpose()? else {
                return Err("CLUSTER SLOTS entry without a primary".into());
            };
            for replica in addrs {
                t.nodes.insert(replica?);
            }
            let (first, last) = (
                u16::try_from(*first).map_err(|_| "bad slot")?,
                u16::try_from(*last).map_err(|_| "bad slot")?,
            );
            t.nodes.insert(primary.clone());
            t.ranges.push((first, last, primary));
        }
        t.ranges.sort();
        Ok(t)
    }
}

/// `host:port` of one node of a `CLUSTER SLOTS` entry.
fn node_addr(node: &Value, asked_host: &str) -> Result<String, String> {
    let Value::Array(f) = node else {
        return Err("CLUSTER SLOTS node is not an array".into());
    };
    let host = match f.first() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => return Err("CLUSTER SLOTS node without a host".into()),
    };
    let Some(Value::Int(port)) = f.get(1) else {
        return Err("CLUSTER SLOTS node without a port".into());
    };
    let host = if host.is_empty() || host == "?" {
        asked_host.to_string()
    } else {
        host
    };
    Ok(format!("{host}:{port}"))
}

/// `info` (the configured URL: credentials, database, TLS and its roots)
/// pointed at `addr`.
pub fn info_for(info: &ConnectionInfo, addr: &str) -> Result<ConnectionInfo, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        .ok_or_else(|| format!("bad node address {addr:?}"))?;
    let addr = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    Ok(info.clone().set_addr(addr))
}

/// `host:port` of the configured URL.
pub fn seed_addr(info: &ConnectionInfo) -> Result<String, String> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Ok(format!("{host}:{port}"))
        }
        other => Err(format!(
            "redis.cluster needs a redis:// or rediss:// URL, not {other:?}"
        )),
    }
}

/// Asks `candidates` in turn for the slots; the first complete answer wins.
pub async fn discover(info: &ConnectionInfo, candidates: &[String]) -> Result<Topology, String> {
    let mut errors = Vec::new();
    for addr in candidates {
        let ask = async {
            let client = redis::Client::open(info_for(info, addr)?).map_err(|e| e.to_string())?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let reply: Value = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Topology::from_cluster_slots(&reply, addr)
        };
        match tokio::time::timeout(ASK_TIMEOUT, ask).await {
            Ok(Ok(t)) if t.covers_all() => return Ok(t),
            Ok(Ok(_)) => errors.push(format!("{addr}: not every slot is served")),
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no answer")),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn entry(first: i64, last: i64, nodes: Vec<Value>) -> Value {
        let mut f = vec![Value::Int(first), Value::Int(last)];
        f.extend(nodes);
        Value::Array(f)
    }

    #[test]
    fn parses_cluster_slots_and_finds_owners() {
        let reply = Value::Array(vec![
            entry(
                10923,
                16383,
                vec![node("127.0.0.1", 7002), node("127.0.0.1", 7005)],
            ),
            entry(
                0,
                5460,
                vec![node("127.0.0.1", 7000), node("127.0.0.1", 7003)],
            ),
            entry(5461, 10922, vec![node("", 7001), node("127.0.0.1", 7004)]),
        ]);
        let t = Topology::from_cluster_slots(&reply, "127.0.0.1:7000").unwrap();
        assert!(t.covers_all());
        assert_eq!(t.owner(0), Some("127.0.0.1:7000"));
        assert_eq!(t.owner(5460), Some("127.0.0.1:7000"));
        assert_eq!(t.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(t.owner(12182), Some("127.0.0.1:7002"));
        assert_eq!(t.owner(16383), Some("127.0.0.1:7002"));
        assert_eq!(t.primaries().len(), 3);
        assert_eq!(t.nodes().len(), 6);
        assert!(t.owner_of_any("127.0.0.1:7001"));
        assert!(!t.owner_of_any("127.0.0.1:7004"));
    }

    #[test]
    fn every_node_is_reached_as_the_url_says() {
        let url = |u: &str| redis::IntoConnectionInfo::into_connection_info(u).unwrap();
        let tls = url("rediss://user:pw@redis.internal:7000/");
        assert_eq!(seed_addr(&tls).unwrap(), "redis.internal:7000");
        let shard = info_for(&tls, "10.0.0.2:7001").unwrap();
        assert!(
            matches!(shard.addr(), ConnectionAddr::TcpTls { host, port: 7001, insecure: false, .. } if host == "10.0.0.2"),
            "{:?}",
            shard.addr()
        );
        assert_eq!(shard.redis_settings().password(), Some("pw"));
        let plain = info_for(&url("redis://10.0.0.1:7000"), "10.0.0.2:7001").unwrap();
        assert_eq!(*plain.addr(), ConnectionAddr::Tcp("10.0.0.2".into(), 7001));
        assert!(seed_addr(&url("unix:///tmp/redis.sock")).is_err());
    }

    #[test]
    fn a_gap_in_the_slots_is_not_complete() {
        let reply = Value::Array(vec![
            entry(0, 5460, vec![node("a", 1)]),
            entry(5462, 16383, vec![node("b", 2)]),
        ]);
        let t = Topology::from_cluster_slots(&reply, "a:1").unwrap();
        assert!(!t.covers_all());
        assert_eq!(t.owner(5461), None);
        assert_eq!(t.owner(5462), Some("b:2"));
        assert!(Topology::from_cluster_slots(&Value::Nil, "a:1").is_err());
    }
}
