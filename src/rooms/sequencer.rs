//! Delivery order of a room's messages. Every stored message takes its room's
//! next dense `seq` (1, 2, 3, ...) under the room's lock, whichever node stores
//! it, so a room that has delivered up to seq N knows exactly what it lacks.
//! The [`Sequencer`] hands messages out strictly in seq order (and so in id
//! order), holds later ones back while an earlier one is missing, never hands
//! out a seq twice, and says which range to fetch from PostgreSQL when a gap has
//! waited too long. Pure state: no actix, no I/O.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// What a stored message is to this room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot<T> {
    /// Deliver it.
    Deliver(T),
    /// It is stored but not to be shown (deleted): it only fills its seq.
    Skip,
}

/// Most messages held back behind a gap; past this the gap is fetched at once.
pub const MAX_HELD: usize = 10_000;

/// Hands out a room's messages in seq order, each once.
#[derive(Debug)]
pub struct Sequencer<T> {
    /// Every seq up to this one has been delivered or skipped; `None` until the
    /// room knows where it starts (its snapshot failed: the first offer sets it).
    delivered: Option<i64>,
    /// Messages after a gap, by seq.
    held: BTreeMap<i64, Slot<T>>,
    /// When the current gap was first seen.
    gap_since: Option<Instant>,
    /// Messages up to this seq were hidden (the chat was cleared): they only
    /// fill their seqs, whenever they arrive.
    hidden_through: i64,
}

impl<T> Sequencer<T> {
    /// A sequencer for a room whose messages up to `delivered` are already out
    /// (in its ring, or before it).
    pub fn new(delivered: i64) -> Self {
        Self {
            delivered: Some(delivered),
            held: BTreeMap::new(),
            gap_since: None,
            hidden_through: 0,
        }
    }

    /// A sequencer that does not know the room's position yet: the first
    /// message offered is taken as the next one.
    pub fn unknown() -> Self {
        Self {
            delivered: None,
            held: BTreeMap::new(),
            gap_since: None,
            hidden_through: 0,
        }
    }

    /// The highest seq delivered or skipped (0 when unknown).
    pub fn delivered(&self) -> i64 {
        self.delivered.unwrap_or(0)
    }

    /// True when the room knows its position.
    pub fn is_known(&self) -> bool {
        self.delivered.is_some()
    }

    /// Sets the position of a sequencer that did not know it (a later snapshot
    /// answered); messages at or below it are dropped from the held ones.
    pub fn learn(&mut self, delivered: i64) -> Vec<T> {
        if self.delivered.is_some() {
            return Vec::new();
        }
        self.delivered = Some(delivered);
        self.held = self.held.split_off(&(delivered + 1));
        self.release(Instant::now())
    }

    /// Offers a stored message. Returns what can go out now, in seq order:
    /// nothing when `seq` is already out or waits behind a gap.
    pub fn offer(&mut self, seq: i64, slot: Slot<T>, now: Instant) -> Vec<T> {
        let delivered = *self.delivered.get_or_insert(seq - 1);
        if seq <= delivered {
            return Vec::new();
        }
        let slot = if seq <= self.hidden_through {
            Slot::Skip
        } else {
            slot
        };
        self.held.entry(seq).or_insert(slot);
        self.release(now)
    }

    /// Messages up to `seq` were hidden (a clear): those held behind a gap,
    /// and those offered later, only fill their seqs.
    pub fn hide_through(&mut self, seq: i64) {
        self.hidden_through = self.hidden_through.max(seq);
        for (_, slot) in self.held.range_mut(..=seq) {
            *slot = Slot::Skip;
        }
    }

    fn release(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        let Some(delivered) = self.delivered.as_mut() else {
            return out;
        };
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != *delivered + 1 {
                break;
            }
            *delivered += 1;
            if let Slot::Deliver(item) = entry.remove() {
                out.push(item);
            }
        }
        self.gap_since = if self.held.is_empty() {
            None
        } else {
            // A gap that moved forward starts waiting again.
            match (self.gap_since, out.is_empty()) {
                (Some(since), true) => Some(since),
                _ => Some(now),
            }
        };
        out
    }

    /// Messages waiting behind a gap.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The missing seqs (`first..=last`) once the gap has waited `wait`, or at
    /// once when too much is held. `None` when nothing is missing yet.
    pub fn overdue(&self, now: Instant, wait: Duration) -> Option<(i64, i64)> {
        let delivered = self.delivered?;
        let (&next_held, _) = self.held.first_key_value()?;
        let since = self.gap_since?;
        if now.duration_since(since) >= wait || self.held.len() >= MAX_HELD {
            Some((delivered + 1, next_held - 1))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &mut Sequencer<i64>, seq: i64) -> Vec<i64> {
        s.offer(seq, Slot::Deliver(seq * 10), Instant::now())
    }

    /// After a clear through seq 6, a message up to it never goes out,
    /// whether it waited behind a gap or arrives later; it still fills its
    /// seq, and later ones go out.
    #[test]
    fn messages_a_clear_hid_only_fill_their_seqs() {
        let mut s = Sequencer::new(2);
        assert_eq!(d(&mut s, 4), Vec::<i64>::new(), "behind the gap at 3");
        assert_eq!(d(&mut s, 7), Vec::<i64>::new());
        s.hide_through(6);
        assert_eq!(d(&mut s, 3), Vec::<i64>::new(), "3 and 4 were cleared");
        assert_eq!(s.delivered(), 4);
        assert_eq!(d(&mut s, 5), Vec::<i64>::new());
        assert_eq!(d(&mut s, 6), vec![70], "7 was not cleared");
        s.hide_through(1);
        assert_eq!(d(&mut s, 8), vec![80], "an older cut-off changes nothing");
    }

    #[test]
    fn in_order_messages_go_out_at_once() {
        let mut s = Sequencer::new(4);
        assert_eq!(d(&mut s, 5), vec![50]);
        assert_eq!(d(&mut s, 6), vec![60]);
        assert_eq!(s.delivered(), 6);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_seq_already_out_is_never_delivered_again() {
        let mut s = Sequencer::new(0);
        assert_eq!(d(&mut s, 1), vec![10]);
        assert_eq!(d(&mut s, 1), Vec::<i64>::new());
        assert_eq!(d(&mut s, 2), vec![20]);
        // Old messages found again by a sweep, whatever the ring size.
        assert!(d(&mut s, 1).is_empty() && d(&mut s, 2).is_empty());
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn later_messages_wait_for_the_gap_then_go_out_in_order() {
        let mut s = Sequencer::new(10);
        assert!(d(&mut s, 13).is_empty());
        assert!(d(&mut s, 12).is_empty());
        assert_eq!(s.held(), 2);
        assert_eq!(d(&mut s, 11), vec![110, 120, 130]);
        assert_eq!(s.delivered(), 13);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_skipped_seq_fills_the_gap_without_delivery() {
        let mut s = Sequencer::new(0);
        assert!(d(&mut s, 2).is_empty());
        assert_eq!(s.offer(1, Slot::Skip, Instant::now()), vec![20]);
        assert_eq!(s.delivered(), 2);
    }

    #[test]
    fn a_gap_is_overdue_after_the_wait_and_names_the_missing_range() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(200);
        let mut s = Sequencer::new(3);
        assert_eq!(s.overdue(t0, wait), None);
        s.offer(7, Slot::Deliver(70), t0);
        assert_eq!(s.overdue(t0, wait), None);
        assert_eq!(s.overdue(t0 + wait, wait), Some((4, 6)));
        // Part of the gap arrives: the rest waits again from now.
        let t1 = t0 + wait;
        assert!(s.offer(4, Slot::Deliver(40), t1) == vec![40]);
        assert_eq!(s.overdue(t1, wait), None);
        assert_eq!(s.overdue(t1 + wait, wait), Some((5, 6)));
    }

    #[test]
    fn too_much_held_is_overdue_at_once() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(0);
        for seq in 2..(2 + MAX_HELD as i64) {
            s.offer(seq, Slot::Deliver(seq), t0);
        }
        assert_eq!(s.overdue(t0, Duration::from_secs(60)), Some((1, 1)));
        assert_eq!(s.offer(1, Slot::Deliver(1), t0).len(), MAX_HELD + 1);
    }

    #[test]
    fn an_unknown_start_takes_the_first_offer_or_a_later_snapshot() {
        let mut s = Sequencer::unknown();
        assert!(!s.is_known());
        assert_eq!(d(&mut s, 8), vec![80]);
        assert_eq!(s.delivered(), 8);

        let mut s = Sequencer::<i64>::unknown();
        assert_eq!(s.learn(5), Vec::<i64>::new());
        assert!(d(&mut s, 5).is_empty());
        assert_eq!(d(&mut s, 6), vec![60]);
    }

    #[test]
    fn interleaved_sources_deliver_every_seq_once_in_order() {
        // Two sources (local commits and the relay) offer overlapping,
        // shuffled copies: the output is 1..=n exactly once.
        let mut s = Sequencer::new(0);
        let n = 200i64;
        let mut order: Vec<i64> = (1..=n).chain(1..=n).collect();
        // A fixed shuffle (xorshift) keeps the test deterministic.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut out = Vec::new();
        for seq in order {
            out.extend(s.offer(seq, Slot::Deliver(seq), Instant::now()));
        }
        assert_eq!(out, (1..=n).collect::<Vec<_>>());
    }
}
