//! Reaction coalescing: a room adds each accepted reaction to its current
//! window and, when the window closes (`reactions.window_ms`), sends ONE
//! `reactions` frame with the counts per stamp. Deliveries grow with viewers ×
//! windows, never with viewers × reactions; summed over frames the counts equal
//! the reactions accepted.

use std::collections::BTreeMap;

use bytestring::ByteString;
use serde::Serialize;

use crate::protocol::StampView;

/// Counts of one window, per stamp id: everything to show, and the part
/// accepted on this node (which is relayed to other nodes).
#[derive(Debug, Default)]
pub struct ReactionWindow {
    counts: BTreeMap<i32, u64>,
    local: BTreeMap<i32, u64>,
}

#[derive(Serialize)]
struct StampCount<'a> {
    stamp_id: i32,
    stamp_name: &'a str,
    stamp_image_url: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct ReactionsFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    window_ms: u64,
    stamps: Vec<StampCount<'a>>,
}

impl ReactionWindow {
    /// Adds `n` reactions accepted on this node.
    pub fn add(&mut self, stamp_id: i32, n: u64) {
        *self.counts.entry(stamp_id).or_insert(0) += n;
        *self.local.entry(stamp_id).or_insert(0) += n;
    }

    /// Adds reactions another node accepted (shown here, never relayed again).
    pub fn add_remote(&mut self, stamp_id: i32, n: u64) {
        *self.counts.entry(stamp_id).or_insert(0) += n;
    }

    /// Takes this node's part of the window, for the relay.
    pub fn take_local(&mut self) -> Vec<(i32, u64)> {
        std::mem::take(&mut self.local).into_iter().collect()
    }

    /// True when nothing was added since the last frame.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The counts so far, by stamp id.
    pub fn counts(&self) -> &BTreeMap<i32, u64> {
        &self.counts
    }

    /// Closes the window: the `reactions` frame (None when empty), counts reset.
    pub fn take_frame(&mut self, stamps: &[StampView], window_ms: u64) -> Option<ByteString> {
        if self.counts.is_empty() {
            return None;
        }
        let counts = std::mem::take(&mut self.counts);
        let stamps: Vec<StampCount<'_>> = counts
            .iter()
            .filter_map(|(id, n)| {
                stamps
                    .iter()
                    .find(|s| s.stamp_id == *id)
                    .map(|s| StampCount {
                        stamp_id: *id,
                        stamp_name: &s.stamp_name,
                        stamp_image_url: &s.stamp_image_url,
                        count: *n,
                    })
            })
            .collect();
        let frame = ReactionsFrame {
            kind: "reactions",
            window_ms,
            stamps,
        };
        Some(ByteString::from(
            serde_json::to_string(&frame).expect("frames serialise"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_and_resets() {
        let stamps = vec![
            StampView {
                stamp_id: 1,
                stamp_name: ":smile:".into(),
                stamp_image_url: "/static/stamps/01_smile.svg".into(),
            },
            StampView {
                stamp_id: 4,
                stamp_name: ":love:".into(),
                stamp_image_url: "/static/stamps/04_love.svg".into(),
            },
        ];
        let mut w = ReactionWindow::default();
        assert!(w.take_frame(&stamps, 250).is_none());
        w.add(1, 1);
        w.add(4, 2);
        w.add(1, 1);
        let f: serde_json::Value =
            serde_json::from_str(&w.take_frame(&stamps, 250).unwrap()).unwrap();
        assert_eq!(f["type"], "reactions");
        assert_eq!(f["window_ms"], 250);
        assert_eq!(f["stamps"][0]["count"], 2);
        assert_eq!(f["stamps"][0]["stamp_name"], ":smile:");
        assert_eq!(f["stamps"][1]["count"], 2);
        assert_eq!(f["stamps"].as_array().unwrap().len(), 2);
        assert!(w.is_empty());
    }
}
