//! A room's ring buffer of recent visible messages, already serialised, so
//! history and most resumes are served without a database round trip.

use std::collections::VecDeque;

use bytestring::ByteString;

/// One message in the ring.
#[derive(Debug, Clone)]
pub struct RingEntry {
    /// Message id.
    pub id: i64,
    /// Its `message` frame.
    pub frame: ByteString,
}

/// The newest visible messages of a room, oldest first.
#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<RingEntry>,
    capacity: usize,
    /// Older visible messages exist that are not in the ring.
    has_older: bool,
}

/// Messages served from the ring: frames and whether older ones were left out.
pub type Slice = (Vec<ByteString>, bool);

impl Ring {
    /// A ring loaded with `entries` (oldest first); `has_older` when the
    /// database holds older visible messages.
    pub fn new(capacity: usize, entries: Vec<RingEntry>, has_older: bool) -> Self {
        let capacity = capacity.max(1);
        let mut ring = Self {
            entries: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            has_older,
        };
        for e in entries {
            ring.push(e);
        }
        ring
    }

    /// Adds a stored message in id order (messages relayed from other nodes
    /// may arrive after newer local ones); a known id is ignored.
    pub fn push(&mut self, entry: RingEntry) {
        let pos = self.entries.partition_point(|e| e.id < entry.id);
        if self.entries.get(pos).is_some_and(|e| e.id == entry.id) {
            return;
        }
        if pos == 0 && self.has_older && self.entries.len() == self.capacity {
            return; // older than everything kept
        }
        self.entries.insert(pos, entry);
        if self.entries.len() > self.capacity {
            self.entries.pop_front();
            self.has_older = true;
        }
    }

    /// Every id held, oldest first.
    pub fn ids(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.id).collect()
    }

    /// True when the ring holds this id.
    pub fn contains(&self, id: i64) -> bool {
        let pos = self.entries.partition_point(|e| e.id < id);
        self.entries.get(pos).is_some_and(|e| e.id == id)
    }

    /// The frame of a message held.
    pub fn get(&self, id: i64) -> Option<&ByteString> {
        let pos = self.entries.partition_point(|e| e.id < id);
        self.entries
            .get(pos)
            .filter(|e| e.id == id)
            .map(|e| &e.frame)
    }

    /// Replaces the frame of a message held (edited); false when not held.
    pub fn replace(&mut self, id: i64, frame: ByteString) -> bool {
        let pos = self.entries.partition_point(|e| e.id < id);
        match self.entries.get_mut(pos) {
            Some(e) if e.id == id => {
                e.frame = frame;
                true
            }
            _ => false,
        }
    }

    /// Removes a message (deleted by a moderator).
    pub fn remove(&mut self, id: i64) {
        self.entries.retain(|e| e.id != id);
    }

    /// Removes every message (chat cleared).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.has_older = false;
    }

    /// The newest `n`, oldest first, and whether older ones exist; `None`
    /// when the ring cannot tell (it holds fewer than `n` but older ones exist).
    pub fn recent(&self, n: usize) -> Option<Slice> {
        let len = self.entries.len();
        if len < n && self.has_older {
            return None;
        }
        let skip = len.saturating_sub(n);
        let frames = self
            .entries
            .iter()
            .skip(skip)
            .map(|e| e.frame.clone())
            .collect();
        Some((frames, skip > 0 || self.has_older))
    }

    /// Every message with id > `after` (at most `limit`, the newest, with
    /// `truncated`); `None` when messages after `after` may be older than the ring.
    pub fn after(&self, after: i64, limit: usize) -> Option<Slice> {
        if self.has_older {
            match self.entries.front() {
                Some(front) if after >= front.id - 1 => {}
                _ => return None,
            }
        }
        let newer: Vec<&RingEntry> = self.entries.iter().filter(|e| e.id > after).collect();
        let skip = newer.len().saturating_sub(limit);
        Some((
            newer[skip..].iter().map(|e| e.frame.clone()).collect(),
            skip > 0,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: i64) -> RingEntry {
        RingEntry {
            id,
            frame: ByteString::from(format!("{{\"id\":{id}}}")),
        }
    }

    #[test]
    fn edited_frames_replace_held_ones() {
        let mut r = Ring::new(3, vec![e(1), e(2)], false);
        assert_eq!(r.get(2).map(|f| f.as_ref()), Some("{\"id\":2}"));
        assert!(r.get(3).is_none());
        assert!(r.replace(2, ByteString::from_static("{\"id\":2,\"x\":1}")));
        assert!(!r.replace(7, ByteString::from_static("{}")), "not held");
        assert_eq!(r.recent(50).unwrap().0[1], "{\"id\":2,\"x\":1}");
    }

    #[test]
    fn recent_and_after() {
        let mut r = Ring::new(3, vec![e(1), e(2)], false);
        assert_eq!(r.recent(50).unwrap().0.len(), 2);
        assert!(!r.recent(50).unwrap().1);
        r.push(e(5));
        r.push(e(9)); // evicts 1
        assert!(r.recent(50).is_none(), "older exist beyond the ring");
        let (f, t) = r.recent(2).unwrap();
        assert_eq!(f.len(), 2);
        assert!(t);
        assert_eq!(r.after(2, 500).unwrap().0.len(), 2);
        assert_eq!(
            r.after(1, 500).unwrap().0.len(),
            3,
            "2 is the oldest kept, 1 is covered"
        );
        assert!(r.after(0, 500).is_none());
        let (f, t) = r.after(2, 1).unwrap();
        assert_eq!(f.len(), 1);
        assert!(t);
        r.remove(5);
        assert_eq!(r.after(2, 500).unwrap().0.len(), 1);
        // Out of order and duplicate ids.
        r.push(e(7));
        r.push(e(7));
        assert!(r.contains(7));
        let ids: Vec<String> = r
            .after(2, 500)
            .unwrap()
            .0
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(ids, vec!["{\"id\":7}", "{\"id\":9}"]);
        r.clear();
        assert_eq!(r.recent(50).unwrap().0.len(), 0);
    }
}
