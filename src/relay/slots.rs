//! Redis Cluster key slots and the cluster names of the relay's channels and
//! keys. A slot is CRC16-XMODEM of the key (or of its hash tag, the part
//! between the first `{` and the next `}`) modulo 16384. Every channel and key
//! of one room carries the same tag, `{tenant:stream}`, so a room's events and
//! presence stay on one shard while rooms spread evenly over all of them.

use crate::{domain::Slug, rooms::RoomKey};

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster uses.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key or channel, honouring its hash tag.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % SLOTS
}

/// A room's channel on a cluster: `{prefix}:room:{tenant:stream}`.
pub fn room_channel(prefix: &str, key: &RoomKey) -> String {
    format!("{prefix}:room:{{{}:{}}}", key.slug, key.stream_id)
}

/// A tenant's channel on a cluster: `{prefix}:tenant:{tenant}`.
pub fn tenant_channel(prefix: &str, slug: &Slug) -> String {
    format!("{prefix}:tenant:{{{slug}}}")
}

/// A room's presence key on a cluster (a set of node ids; each node's count
/// is at `{base}:{node}`, in the same slot).
pub fn presence_base(prefix: &str, key: &RoomKey) -> String {
    format!("{prefix}:presence:{{{}:{}}}", key.slug, key.stream_id)
}

/// The tenant and stream a cluster channel is for (stream 0: the tenant's
/// channel, every room of it).
pub fn parse_channel(prefix: &str, channel: &str) -> Option<(Slug, i64)> {
    let rest = channel.strip_prefix(prefix)?.strip_prefix(':')?;
    if let Some(tag) = rest.strip_prefix("room:{") {
        let (slug, stream) = tag.strip_suffix('}')?.split_once(':')?;
        Some((Slug::parse(slug).ok()?, stream.parse().ok()?))
    } else {
        let slug = rest.strip_prefix("tenant:{")?.strip_suffix('}')?;
        Some((Slug::parse(slug).ok()?, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(slug: &str, stream_id: i64) -> RoomKey {
        RoomKey {
            slug: Slug::parse(slug).unwrap(),
            stream_id,
        }
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` of a Redis 7 server.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("hello"), 866);
        assert_eq!(key_slot(""), 0);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(key_slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
    }

    #[test]
    fn one_rooms_channel_and_presence_share_a_slot() {
        let k = room("acme", 42);
        let slot = key_slot(&room_channel("p", &k));
        assert_eq!(key_slot(&presence_base("p", &k)), slot);
        assert_eq!(key_slot(&format!("{}:node1", presence_base("p", &k))), slot);
        // The prefix does not move rooms between slots.
        assert_eq!(key_slot(&room_channel("other", &k)), slot);
    }

    #[test]
    fn channels_parse_back() {
        let k = room("acme_2", 7);
        assert_eq!(
            parse_channel("p:x", &room_channel("p:x", &k)),
            Some((k.slug.clone(), 7))
        );
        assert_eq!(
            parse_channel("p:x", &tenant_channel("p:x", &k.slug)),
            Some((k.slug.clone(), 0))
        );
        assert_eq!(parse_channel("q", &room_channel("p", &k)), None);
        assert_eq!(parse_channel("p", "p:room:acme:7"), None);
    }

    #[test]
    fn rooms_spread_evenly_over_three_shards() {
        // Three shards as `redis-cli --cluster create` splits the slots.
        let shard = |slot: u16| match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        let mut per_shard = [0usize; 3];
        let mut slots = std::collections::HashSet::new();
        // Ten tenants of 300 streams each, the way ids are handed out.
        for t in 0..10 {
            for s in 1..=300 {
                let slot = key_slot(&room_channel("stampede", &room(&format!("t{t}"), s)));
                slots.insert(slot);
                per_shard[shard(slot)] += 1;
            }
        }
        for n in per_shard {
            assert!((900..=1100).contains(&n), "uneven: {per_shard:?}");
        }
        assert!(slots.len() > 2500, "only {} distinct slots", slots.len());
        // A tenant's own channel is spread too, apart from its rooms'.
        let tenants: std::collections::HashSet<usize> = (0..30)
            .map(|t| {
                shard(key_slot(&tenant_channel(
                    "p",
                    &Slug::parse(&format!("t{t}")).unwrap(),
                )))
            })
            .collect();
        assert_eq!(tenants.len(), 3);
    }
}
