//! Latency histograms (HDR, microseconds) and what crosses from a worker to the
//! coordinator: counts, and a histogram as its recorded (value, count) pairs.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded: 10 minutes, in µs (above is clamped).
const MAX_US: u64 = 600_000_000;

/// An end-to-end latency histogram in microseconds, 3 significant digits.
pub struct Latency {
    h: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            h: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds"),
        }
    }
}

/// Percentiles in milliseconds, as the run's JSON shows them.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// Deliveries recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// 50th percentile.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    /// Records one latency in µs (0 counts as 1 µs; beyond the bound is clamped).
    pub fn record_us(&mut self, us: u64) {
        self.h.saturating_record(us.clamp(1, MAX_US));
    }

    /// Recorded values as (value, count) pairs for the coordinator.
    pub fn to_pairs(&self) -> Vec<(u64, u64)> {
        self.h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// Adds pairs from [`Latency::to_pairs`].
    pub fn add_pairs(&mut self, pairs: &[(u64, u64)]) {
        for &(v, n) in pairs {
            let _ = self.h.record_n(v.clamp(1, MAX_US), n);
        }
    }

    /// Percentiles in ms.
    pub fn percentiles(&self) -> Percentiles {
        let q = |p: f64| ms(self.h.value_at_quantile(p));
        Percentiles {
            count: self.h.len(),
            mean_ms: (self.h.mean()).round() / 1000.0,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(self.h.max()),
        }
    }
}

/// Everything one worker measured, sent to the coordinator as one JSON line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Sockets that connected (and, for centrifuge, subscribed).
    pub opened: u64,
    /// Sockets that did not.
    pub failed: u64,
    /// Why they failed (first words of the error) → count.
    pub failures: BTreeMap<String, u64>,
    /// Viewer sockets connected per room (stream id → sockets).
    pub viewers_per_room: BTreeMap<i64, u64>,
    /// Viewer sockets that closed or failed during the run.
    pub closed_during_run: u64,
    /// Chat messages sent, in all.
    pub chat_sent: u64,
    /// Deliveries of messages sent in the window (viewer sockets only).
    pub chat_received_in_window: u64,
    /// Deliveries of messages sent before or after the window.
    pub chat_received_outside: u64,
    /// Latency of deliveries in the window, as (µs, count) pairs.
    pub latency_pairs: Vec<(u64, u64)>,
    /// Reactions sent, in all.
    pub reactions_sent: u64,
    /// Reactions received (sums of `reactions` counts), over every viewer.
    pub reactions_received: u64,
    /// Fewest and most reactions one viewer received.
    pub reactions_received_min: u64,
    /// See `reactions_received_min`.
    pub reactions_received_max: u64,
    /// Reaction frames received by viewers during the measured window.
    pub reaction_frames_in_window: u64,
    /// Error frames received by senders, by code.
    pub errors: BTreeMap<String, u64>,
    /// Messages this worker sent in the window, as (room, send time in unix ns).
    pub sent_in_window: Vec<(i64, u64)>,
    /// Deliveries in time (before the drain ended) per message, by send time.
    pub delivered_per_message: BTreeMap<u64, u64>,
    /// Deliveries after the drain ended (before the report) per message.
    pub late_per_message: BTreeMap<u64, u64>,
    /// Largest latency of a late delivery, µs.
    pub late_max_us: u64,
}

/// A message that did not reach every viewer of its room in time.
#[derive(Debug, Serialize, PartialEq)]
pub struct ShortMessage {
    /// Send time, ms after the window opened.
    pub at_ms: f64,
    /// Stream id of its room.
    pub room: i64,
    /// Viewers of the room.
    pub expected: u64,
    /// Deliveries before the drain ended.
    pub in_time: u64,
    /// Deliveries after it (before the report).
    pub late: u64,
}

/// Most short messages listed one by one.
const SHORT_LISTED: usize = 10;

/// The run's deliveries message by message: whether a loss is whole messages
/// (never broadcast, or broadcast after the drain) or single viewers missing
/// some, and how much of it came late rather than never.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct MessageTally {
    /// Messages sent in the window.
    pub messages: u64,
    /// Messages that reached every viewer of their room in time.
    pub complete: u64,
    /// Messages that reached some of their room's viewers in time, not all.
    pub partial: u64,
    /// Messages that reached no viewer in time.
    pub none_in_time: u64,
    /// Deliveries that came after the drain: counted in the loss, but late,
    /// not lost.
    pub late_deliveries: u64,
    /// Deliveries not seen at all, even late.
    pub never_delivered: u64,
    /// The first short messages, in send order.
    pub short: Vec<ShortMessage>,
}

/// Tallies every message sent in the window against its room's viewers.
/// `w0` is the window's start (unix ns), for the listed messages' times.
pub fn tally(
    sent: &[(i64, u64)],
    viewers: &BTreeMap<i64, u64>,
    in_time: &BTreeMap<u64, u64>,
    late: &BTreeMap<u64, u64>,
    w0: u64,
) -> MessageTally {
    let mut sent = sent.to_vec();
    sent.sort_by_key(|&(_, t)| t);
    let mut out = MessageTally {
        messages: sent.len() as u64,
        ..MessageTally::default()
    };
    for (room, t) in sent {
        let expected = viewers.get(&room).copied().unwrap_or(0);
        let got = in_time.get(&t).copied().unwrap_or(0);
        let came_late = late.get(&t).copied().unwrap_or(0);
        if got >= expected {
            out.complete += 1;
            continue;
        }
        if got == 0 {
            out.none_in_time += 1;
        } else {
            out.partial += 1;
        }
        out.late_deliveries += came_late;
        out.never_delivered += expected.saturating_sub(got + came_late);
        if out.short.len() < SHORT_LISTED {
            out.short.push(ShortMessage {
                at_ms: t.saturating_sub(w0) as f64 / 1e6,
                room,
                expected,
                in_time: got,
                late: came_late,
            });
        }
    }
    out
}

/// Adds `from`'s counts into `into`.
pub fn merge_counts(into: &mut BTreeMap<u64, u64>, from: BTreeMap<u64, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut l = Latency::default();
        for us in 1..=10_000u64 {
            l.record_us(us * 100); // 0.1 ms .. 1000 ms, uniform
        }
        let p = l.percentiles();
        assert_eq!(p.count, 10_000);
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.p999_ms - 999.0).abs() < 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn pairs_merge_losslessly_enough() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in [5u64, 50, 500, 5_000, 50_000] {
            a.record_us(us);
            b.record_us(us * 2);
        }
        let mut m = Latency::default();
        m.add_pairs(&a.to_pairs());
        m.add_pairs(&b.to_pairs());
        let p = m.percentiles();
        assert_eq!(p.count, 10);
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        // Zero and huge values are clamped, not lost.
        m.record_us(0);
        m.record_us(u64::MAX);
        assert_eq!(m.percentiles().count, 12);
    }

    #[test]
    fn a_tally_tells_whole_messages_from_single_viewers_and_late_from_never() {
        let w0 = 1_000_000_000;
        let viewers = BTreeMap::from([(1, 3), (2, 2)]);
        // Room 1: t=w0+1ms complete; +2 ms one viewer missed; +3 ms nobody in
        // time, two came late. Room 2: +4 ms complete.
        let sent = [
            (1, w0 + 3_000_000),
            (1, w0 + 1_000_000),
            (1, w0 + 2_000_000),
            (2, w0 + 4_000_000),
        ];
        let in_time = BTreeMap::from([
            (w0 + 1_000_000, 3),
            (w0 + 2_000_000, 2),
            (w0 + 4_000_000, 2),
        ]);
        let late = BTreeMap::from([(w0 + 3_000_000, 2)]);
        let t = tally(&sent, &viewers, &in_time, &late, w0);
        assert_eq!(
            (t.messages, t.complete, t.partial, t.none_in_time),
            (4, 2, 1, 1)
        );
        assert_eq!((t.late_deliveries, t.never_delivered), (2, 2));
        assert_eq!(
            t.short,
            vec![
                ShortMessage {
                    at_ms: 2.0,
                    room: 1,
                    expected: 3,
                    in_time: 2,
                    late: 0
                },
                ShortMessage {
                    at_ms: 3.0,
                    room: 1,
                    expected: 3,
                    in_time: 0,
                    late: 2
                },
            ]
        );
    }
}
