//! Chat modes of a stream (`stamps_only`, `established_minutes`, `unique_chat`,
//! `hold_links`, `shield`) and the raid shield's switch: on, it sets slow mode
//! 10 s, `established_minutes` 10 and `hold_links`; off, it restores what was
//! there before. Also the recent-text memory of `unique_chat`. Pure state:
//! no actix, no I/O; persisted as JSON in `streaming_stream.modes`.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// Slow mode the shield sets.
pub const SHIELD_SLOW_MODE: i32 = 10;
/// Account age (minutes) the shield requires.
pub const SHIELD_ESTABLISHED: u32 = 10;
/// Longest `established_minutes`: a year.
pub const MAX_ESTABLISHED: u32 = 525_600;
/// How long `unique_chat` remembers a text.
pub const UNIQUE_WINDOW: Duration = Duration::from_secs(30);

/// The modes as clients see them (`hello`, the `modes` notice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Modes {
    /// Chat refused (`stamps_only`); reactions allowed.
    pub stamps_only: bool,
    /// Accounts younger than this many minutes may not chat (0 = off).
    pub established_minutes: u32,
    /// A text equal to one sent in the last 30 s is refused (`duplicate`).
    pub unique_chat: bool,
    /// Messages with links are held for review.
    pub hold_links: bool,
    /// The raid shield is on.
    pub shield: bool,
}

/// What the shield replaced, restored when it is switched off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Slow mode before.
    pub slow_mode_seconds: i32,
    /// `established_minutes` before.
    pub established_minutes: u32,
    /// `hold_links` before.
    pub hold_links: bool,
}

/// A stream's modes with slow mode and what the shield saved: what is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModeState {
    /// The modes.
    pub modes: Modes,
    /// Settings from before the shield (while it is on).
    pub saved: Option<Saved>,
}

/// A moderator's `modes` frame: only the keys it names change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModesChange {
    /// New `stamps_only`.
    pub stamps_only: Option<bool>,
    /// New `established_minutes`.
    pub established_minutes: Option<u32>,
    /// New `unique_chat`.
    pub unique_chat: Option<bool>,
    /// New `hold_links`.
    pub hold_links: Option<bool>,
    /// Shield on or off.
    pub shield: Option<bool>,
}

impl ModesChange {
    /// Parses the keys of a `modes` frame; `Err` names what is wrong.
    pub fn parse(v: &crate::moderation::CommandFields<'_>) -> Result<Self, &'static str> {
        use crate::protocol::{boolean, integer};
        let flag = |f: Option<&serde_json::value::RawValue>| match f {
            None => Ok(None),
            Some(raw) => boolean(raw)
                .map(Some)
                .ok_or("Chat modes are true or false, and established_minutes a number."),
        };
        let established_minutes = match v.established_minutes {
            None => None,
            Some(n) => Some(
                integer(n)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= MAX_ESTABLISHED)
                    .ok_or("\"established_minutes\" must be between 0 and 525600.")?,
            ),
        };
        let change = Self {
            stamps_only: flag(v.stamps_only)?,
            established_minutes,
            unique_chat: flag(v.unique_chat)?,
            hold_links: flag(v.hold_links)?,
            shield: flag(v.shield)?,
        };
        if change == Self::default() {
            return Err("Name at least one mode to change.");
        }
        Ok(change)
    }
}

impl ModeState {
    /// Applies a change; `slow_mode_seconds` is the stream's slow mode, which
    /// the shield sets and restores. Returns the new slow mode.
    pub fn apply(&mut self, change: &ModesChange, slow_mode_seconds: i32) -> i32 {
        let mut slow = slow_mode_seconds;
        let m = &mut self.modes;
        if let Some(v) = change.stamps_only {
            m.stamps_only = v;
        }
        if let Some(v) = change.unique_chat {
            m.unique_chat = v;
        }
        match change.shield {
            Some(true) if !m.shield => {
                self.saved = Some(Saved {
                    slow_mode_seconds: slow,
                    established_minutes: m.established_minutes,
                    hold_links: m.hold_links,
                });
                m.shield = true;
                slow = SHIELD_SLOW_MODE;
                m.established_minutes = SHIELD_ESTABLISHED;
                m.hold_links = true;
            }
            Some(false) if m.shield => {
                let saved = self.saved.take().unwrap_or_default();
                m.shield = false;
                slow = saved.slow_mode_seconds;
                m.established_minutes = saved.established_minutes;
                m.hold_links = saved.hold_links;
            }
            _ => {}
        }
        // Explicit values win over what the shield set in the same frame.
        if let Some(v) = change.established_minutes {
            m.established_minutes = v;
        }
        if let Some(v) = change.hold_links {
            m.hold_links = v;
        }
        slow
    }
}

/// Texts sent in the room in the last [`UNIQUE_WINDOW`], folded, for
/// `unique_chat`: the last time each was sent.
#[derive(Debug, Default)]
pub struct RecentTexts {
    order: VecDeque<(Instant, String)>,
    last: HashMap<String, Instant>,
}

impl RecentTexts {
    /// Folds a text the way `unique_chat` compares them: the term folding,
    /// with white space collapsed.
    pub fn key(text: &str) -> String {
        crate::moderation::fold::fold_text(text)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// True when an equal text was sent in the window before `now`.
    pub fn contains(&self, key: &str, now: Instant) -> bool {
        self.last
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < UNIQUE_WINDOW)
    }

    /// Remembers a sent text (and forgets those out of the window).
    pub fn add(&mut self, key: String, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < UNIQUE_WINDOW {
                break;
            }
            let (at, old) = self.order.pop_front().expect("front exists");
            if self.last.get(&old) == Some(&at) {
                self.last.remove(&old);
            }
        }
        self.last.insert(key.clone(), now);
        self.order.push_back((now, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shield_sets_and_restores_exactly_what_was_there() {
        let mut s = ModeState::default();
        let slow = s.apply(
            &ModesChange {
                established_minutes: Some(3),
                unique_chat: Some(true),
                ..Default::default()
            },
            5,
        );
        assert_eq!(slow, 5);
        let before = s.modes;
        let shield = |s: &mut ModeState, on: bool, slow: i32| {
            s.apply(
                &ModesChange {
                    shield: Some(on),
                    ..Default::default()
                },
                slow,
            )
        };
        let slow = shield(&mut s, true, slow);
        assert_eq!(slow, SHIELD_SLOW_MODE);
        assert!(s.modes.shield && s.modes.hold_links);
        assert_eq!(s.modes.established_minutes, SHIELD_ESTABLISHED);
        assert!(s.modes.unique_chat, "other modes stay");
        // Switching it on again changes nothing (nothing is saved twice).
        let again = shield(&mut s, true, slow);
        assert_eq!(again, SHIELD_SLOW_MODE);
        let slow = shield(&mut s, false, again);
        assert_eq!(slow, 5);
        assert_eq!(s.modes, before);
        assert_eq!(s.saved, None);
    }

    #[test]
    fn stored_form_round_trips() {
        let mut s = ModeState::default();
        s.apply(
            &ModesChange {
                shield: Some(true),
                ..Default::default()
            },
            0,
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ModeState>(&text).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<ModeState>("{}").unwrap(),
            ModeState::default()
        );
    }

    #[test]
    fn parses_frames() {
        let parse = |v: serde_json::Value| {
            let text = v.to_string();
            ModesChange::parse(&serde_json::from_str(&text).unwrap())
        };
        let c = parse(json!({"type":"modes","stamps_only":true,"established_minutes":5})).unwrap();
        assert_eq!(c.stamps_only, Some(true));
        assert_eq!(c.established_minutes, Some(5));
        assert_eq!(c.shield, None);
        for bad in [
            json!({"type":"modes"}),
            json!({"type":"modes","shield":"yes"}),
            json!({"type":"modes","established_minutes":-1}),
            json!({"type":"modes","established_minutes":600000}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn recent_texts_fold_and_expire() {
        let mut r = RecentTexts::default();
        let t0 = Instant::now();
        r.add(RecentTexts::key("Hello   World"), t0);
        assert!(r.contains(&RecentTexts::key("hello world"), t0));
        assert!(r.contains(&RecentTexts::key("ＨＥＬＬＯ world"), t0));
        assert!(!r.contains(&RecentTexts::key("hello worlds"), t0));
        assert!(!r.contains(&RecentTexts::key("hello world"), t0 + UNIQUE_WINDOW));
        r.add("other".into(), t0 + UNIQUE_WINDOW);
        assert_eq!(r.last.len(), 1, "expired texts are forgotten");
    }
}
