//! Admission: may this member send this chat message, or this reaction, now?
//! One function per kind of input returns the decision, from the room's state
//! (stream status, slow mode, blocked terms, bans and timeouts, rate limits);
//! [`Refusal::frame`] turns a refusal into the `error` frame the client gets.
//! Pure rules: no actix, no I/O.

use std::time::{Duration, Instant};

use bytestring::ByteString;
use time::OffsetDateTime;

use super::{
    modes::{Modes, RecentTexts},
    restrictions::{Muted, Restrictions},
};
use crate::{
    auth::{retry_after_ms, KeyedLimiter},
    error::Code,
    moderation::blocked::{self, BlockedTerm},
    protocol,
    store::streams::StreamStatus,
};

/// Why an input is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Anonymous socket.
    NotAuthenticated,
    /// The node is shutting down.
    ShuttingDown,
    /// The stream has ended.
    ChatClosed,
    /// Banned from this stream or the tenant.
    Banned,
    /// Timed out until then.
    TimedOut(OffsetDateTime),
    /// Slow mode: one message every `seconds`; retry after `retry_ms`.
    SlowMode { seconds: i32, retry_ms: u64 },
    /// The text holds a blocked term.
    BlockedTerm,
    /// Too many messages or reactions; retry after this many ms.
    RateLimited(u64),
    /// No such stamp.
    UnknownStamp,
    /// The stream takes stamps only.
    StampsOnly,
    /// The account is younger than `established_minutes`; retry after this many ms.
    TooNew(u64),
    /// The same text was sent in the room in the last 30 s (`unique_chat`).
    Duplicate,
}

impl Refusal {
    /// The wire error code.
    pub fn code(&self) -> Code {
        match self {
            Refusal::NotAuthenticated => Code::NotAuthenticated,
            Refusal::ShuttingDown => Code::Unavailable,
            Refusal::ChatClosed => Code::ChatClosed,
            Refusal::Banned => Code::Banned,
            Refusal::TimedOut(_) => Code::TimedOut,
            Refusal::SlowMode { .. } => Code::SlowMode,
            Refusal::BlockedTerm => Code::BlockedTerm,
            Refusal::RateLimited(_) => Code::RateLimited,
            Refusal::UnknownStamp => Code::NotFound,
            Refusal::StampsOnly => Code::StampsOnly,
            Refusal::TooNew(_) => Code::TooNew,
            Refusal::Duplicate => Code::Duplicate,
        }
    }

    /// The `error` frame for the client (`reaction` picks the wording).
    pub fn frame(&self, client_id: Option<&str>, reaction: bool) -> ByteString {
        let code = self.code();
        match self {
            Refusal::NotAuthenticated if reaction => {
                protocol::error_frame(code, "Log in to react.", None, client_id)
            }
            Refusal::NotAuthenticated => {
                protocol::error_frame(code, "Log in to chat.", None, client_id)
            }
            Refusal::ShuttingDown => protocol::error_frame(
                code,
                "The server is restarting; send again after reconnecting.",
                None,
                client_id,
            ),
            Refusal::ChatClosed => protocol::error_frame(
                code,
                "The stream has ended; chat is closed.",
                None,
                client_id,
            ),
            Refusal::Banned => {
                protocol::error_frame(code, "You are banned from this chat.", None, client_id)
            }
            Refusal::TimedOut(until) => {
                let ms = (*until - OffsetDateTime::now_utc())
                    .whole_milliseconds()
                    .max(1) as u64;
                protocol::error_frame_until(
                    code,
                    "You are timed out.",
                    ms,
                    &protocol::timestamp_seconds(*until),
                    client_id,
                )
            }
            Refusal::SlowMode { seconds, retry_ms } => protocol::error_frame(
                code,
                &format!("Slow mode is on: one message every {seconds} s."),
                Some(*retry_ms),
                client_id,
            ),
            Refusal::BlockedTerm => protocol::error_frame(
                code,
                "Your message contains a blocked term.",
                None,
                client_id,
            ),
            Refusal::RateLimited(ms) if reaction => {
                protocol::error_frame(code, "You are reacting too fast.", Some(*ms), client_id)
            }
            Refusal::RateLimited(ms) => protocol::error_frame(
                code,
                "You are sending messages too fast.",
                Some(*ms),
                client_id,
            ),
            Refusal::UnknownStamp => protocol::error_frame(code, "No such stamp.", None, client_id),
            Refusal::StampsOnly => protocol::error_frame(
                code,
                "Only stamps for now: chat is paused.",
                None,
                client_id,
            ),
            Refusal::TooNew(ms) => protocol::error_frame(
                code,
                "Your account is too new to chat here yet.",
                Some(*ms),
                client_id,
            ),
            Refusal::Duplicate => protocol::error_frame(
                code,
                "That was just said; say something new.",
                None,
                client_id,
            ),
        }
    }
}

/// An accepted message: posted, or held for review (with the reason:
/// `term` or `link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Store and broadcast it.
    Post,
    /// Hold it for a moderator.
    Hold(&'static str),
}

/// True when a text holds a link (a scheme, `www.`, or a host name with a
/// common top-level domain followed by a path).
pub fn has_link(text: &str) -> bool {
    const TLDS: [&str; 14] = [
        "com", "net", "org", "jp", "io", "ly", "gg", "tv", "me", "co", "info", "xyz", "ru", "cn",
    ];
    let lower = crate::moderation::fold::fold_text(text);
    if lower.contains("://") || lower.contains("www.") {
        return true;
    }
    lower.split_whitespace().any(|word| {
        let host = word.split('/').next().unwrap_or("");
        let mut parts = host.rsplit('.');
        let tld = parts.next().unwrap_or("");
        let name = parts.next().unwrap_or("");
        !name.is_empty()
            && name.chars().all(|c| c.is_alphanumeric() || c == '-')
            && TLDS.contains(&tld.trim_end_matches(|c: char| !c.is_alphanumeric()))
    })
}

/// The room's state that admission reads.
pub struct Rules<'a> {
    /// Stream status.
    pub status: StreamStatus,
    /// Slow mode (0 = off).
    pub slow_mode_seconds: i32,
    /// Blocked terms of the stream and the tenant.
    pub terms: &'a [BlockedTerm],
    /// Terms that hold a message for review.
    pub hold_terms: &'a [BlockedTerm],
    /// Bans and timeouts in force.
    pub restrictions: &'a Restrictions,
    /// The node is shutting down.
    pub shutting_down: bool,
    /// Chat modes.
    pub modes: &'a Modes,
    /// Texts of the last 30 s (`unique_chat`).
    pub recent: &'a RecentTexts,
}

/// Who is sending, as admission needs it.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    /// User id.
    pub user_id: i64,
    /// Exempt from slow mode (the stream's moderators, its owner, admins).
    pub exempt: bool,
    /// When this user's last message in the room was accepted.
    pub last_chat: Option<Instant>,
    /// When the account was made (`established_minutes`).
    pub account_created: OffsetDateTime,
}

impl Rules<'_> {
    /// May this user take part at all: authenticated, stream not ended, not
    /// banned or timed out. Reactions and messages alike.
    pub fn may_take_part(
        &self,
        sender: Option<&Sender>,
        now: OffsetDateTime,
    ) -> Result<i64, Refusal> {
        let sender = sender.ok_or(Refusal::NotAuthenticated)?;
        if self.status == StreamStatus::Ended {
            return Err(Refusal::ChatClosed);
        }
        match self.restrictions.muted(sender.user_id, now) {
            Some(Muted::Banned) => Err(Refusal::Banned),
            Some(Muted::TimedOut(until)) => Err(Refusal::TimedOut(until)),
            None => Ok(sender.user_id),
        }
    }

    /// Whether `can_chat` is true for this member in `hello`.
    pub fn can_chat(&self, sender: Option<&Sender>, now: OffsetDateTime) -> bool {
        self.may_take_part(sender, now).is_ok()
    }

    /// May `sender` post `text` now. `repeat` is true when the message's
    /// `client_id` is already known (stored or in flight): it will be acked with
    /// the first id, so only the sender's standing is checked, not slow mode,
    /// terms or limits. Counts against the rate limit when accepted so far.
    pub fn admit_message(
        &self,
        sender: Option<&Sender>,
        text: &str,
        repeat: bool,
        limiter: &KeyedLimiter<i64>,
        now: OffsetDateTime,
    ) -> Result<Admit, Refusal> {
        if sender.is_some() && self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        self.may_take_part(sender, now)?;
        let Some(sender) = sender else {
            return Err(Refusal::NotAuthenticated);
        };
        if repeat {
            return Ok(Admit::Post);
        }
        // Moderators and the owner are exempt from every mode.
        if !sender.exempt {
            if self.modes.stamps_only {
                return Err(Refusal::StampsOnly);
            }
            if self.modes.established_minutes > 0 {
                let needed = time::Duration::minutes(i64::from(self.modes.established_minutes));
                let age = now - sender.account_created;
                if age < needed {
                    let wait = (needed - age).whole_milliseconds().max(1) as u64;
                    return Err(Refusal::TooNew(wait));
                }
            }
        }
        if self.slow_mode_seconds > 0 && !sender.exempt {
            let gap = Duration::from_secs(self.slow_mode_seconds as u64);
            if let Some(elapsed) = sender.last_chat.map(|at| at.elapsed()) {
                if elapsed < gap {
                    return Err(Refusal::SlowMode {
                        seconds: self.slow_mode_seconds,
                        retry_ms: (gap - elapsed).as_millis().max(1) as u64,
                    });
                }
            }
        }
        if self.modes.unique_chat
            && !sender.exempt
            && self
                .recent
                .contains(&RecentTexts::key(text), Instant::now())
        {
            return Err(Refusal::Duplicate);
        }
        if blocked::find(self.terms, text).is_some() {
            return Err(Refusal::BlockedTerm);
        }
        if let Some(ms) = retry_after_ms(limiter, &sender.user_id) {
            return Err(Refusal::RateLimited(ms));
        }
        if !sender.exempt {
            if blocked::find(self.hold_terms, text).is_some() {
                return Ok(Admit::Hold("term"));
            }
            if self.modes.hold_links && has_link(text) {
                return Ok(Admit::Hold("link"));
            }
        }
        Ok(Admit::Post)
    }

    /// May `sender` react with `stamp_id` now (`known_stamp`: it is one of the
    /// tenant's stamps). Counts against the reaction limit when accepted so far.
    pub fn admit_reaction(
        &self,
        sender: Option<&Sender>,
        known_stamp: bool,
        limiter: &KeyedLimiter<i64>,
        now: OffsetDateTime,
    ) -> Result<(), Refusal> {
        let user_id = self.may_take_part(sender, now)?;
        if !known_stamp {
            return Err(Refusal::UnknownStamp);
        }
        if let Some(ms) = retry_after_ms(limiter, &user_id) {
            return Err(Refusal::RateLimited(ms));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{auth::keyed, rooms::restrictions::Change};

    fn limiter(n: u32) -> KeyedLimiter<i64> {
        keyed(n, Duration::from_secs(10), n)
    }

    static NO_MODES: Modes = Modes {
        stamps_only: false,
        established_minutes: 0,
        unique_chat: false,
        hold_links: false,
        shield: false,
    };

    fn rules<'a>(restrictions: &'a Restrictions, terms: &'a [BlockedTerm]) -> Rules<'a> {
        static NOTHING_RECENT: std::sync::OnceLock<RecentTexts> = std::sync::OnceLock::new();
        Rules {
            status: StreamStatus::Live,
            slow_mode_seconds: 0,
            terms,
            hold_terms: &[],
            restrictions,
            shutting_down: false,
            modes: &NO_MODES,
            recent: NOTHING_RECENT.get_or_init(RecentTexts::default),
        }
    }

    fn alice() -> Sender {
        Sender {
            user_id: 1,
            exempt: false,
            last_chat: None,
            account_created: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// Alice, an ordinary member, sends `text` now (a new message, not a repeat).
    fn alice_says(rules: &Rules, text: &str, l: &KeyedLimiter<i64>) -> Result<Admit, Refusal> {
        rules.admit_message(Some(&alice()), text, false, l, now())
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn anonymous_may_neither_chat_nor_react() {
        let r = Restrictions::default();
        let rules = rules(&r, &[]);
        let l = limiter(5);
        assert_eq!(
            rules.admit_message(None, "hi", false, &l, now()),
            Err(Refusal::NotAuthenticated)
        );
        assert_eq!(
            rules.admit_reaction(None, true, &l, now()),
            Err(Refusal::NotAuthenticated)
        );
        assert!(!rules.can_chat(None, now()));
    }

    #[test]
    fn an_ended_stream_closes_chat_and_reactions() {
        let r = Restrictions::default();
        let mut rules = rules(&r, &[]);
        rules.status = StreamStatus::Ended;
        let l = limiter(5);
        let a = alice();
        assert_eq!(
            rules.admit_message(Some(&a), "hi", false, &l, now()),
            Err(Refusal::ChatClosed)
        );
        assert_eq!(
            rules.admit_reaction(Some(&a), true, &l, now()),
            Err(Refusal::ChatClosed)
        );
        assert!(!rules.can_chat(Some(&a), now()));
        rules.status = StreamStatus::Scheduled;
        assert!(rules.can_chat(Some(&a), now()));
    }

    #[test]
    fn banned_and_timed_out_users_may_not_react_either() {
        let mut r = Restrictions::default();
        let until = now() + time::Duration::minutes(5);
        r.apply(&Change::Restrict {
            user_id: 1,
            is_ban: false,
            until: Some(until),
            tenant_wide: false,
        });
        r.apply(&Change::Restrict {
            user_id: 2,
            is_ban: true,
            until: None,
            tenant_wide: true,
        });
        let rules = rules(&r, &[]);
        let l = limiter(5);
        let bob = Sender {
            user_id: 2,
            ..alice()
        };
        assert_eq!(
            rules.admit_reaction(Some(&alice()), true, &l, now()),
            Err(Refusal::TimedOut(until))
        );
        assert_eq!(alice_says(&rules, "hi", &l), Err(Refusal::TimedOut(until)));
        assert_eq!(
            rules.admit_reaction(Some(&bob), true, &l, now()),
            Err(Refusal::Banned)
        );
        // Standing is checked for a repeated client_id too.
        assert_eq!(
            rules.admit_message(Some(&bob), "hi", true, &l, now()),
            Err(Refusal::Banned)
        );
    }

    #[test]
    fn slow_mode_spares_the_exempt_and_names_the_wait() {
        let r = Restrictions::default();
        let mut rules = rules(&r, &[]);
        rules.slow_mode_seconds = 10;
        let l = limiter(100);
        let recent = Sender {
            last_chat: Some(Instant::now()),
            ..alice()
        };
        match rules.admit_message(Some(&recent), "hi", false, &l, now()) {
            Err(Refusal::SlowMode { seconds, retry_ms }) => {
                assert_eq!(seconds, 10);
                assert!(retry_ms > 9_000 && retry_ms <= 10_000, "{retry_ms}");
            }
            other => panic!("{other:?}"),
        }
        let moderator = Sender {
            exempt: true,
            ..recent
        };
        assert_eq!(
            rules.admit_message(Some(&moderator), "hi", false, &l, now()),
            Ok(Admit::Post)
        );
        // A repeated client_id is acked, not refused by slow mode.
        assert_eq!(
            rules.admit_message(Some(&recent), "hi", true, &l, now()),
            Ok(Admit::Post)
        );
        assert_eq!(alice_says(&rules, "hi", &l), Ok(Admit::Post));
    }

    #[test]
    fn blocked_terms_refuse_before_the_limit_counts() {
        let r = Restrictions::default();
        let terms = vec![BlockedTerm::new("spam").unwrap()];
        let rules = rules(&r, &terms);
        let l = limiter(1);
        assert_eq!(
            alice_says(&rules, "buy SPAM now", &l),
            Err(Refusal::BlockedTerm)
        );
        // The refused message did not use the one message allowed.
        assert_eq!(alice_says(&rules, "hello", &l), Ok(Admit::Post));
        assert!(matches!(
            alice_says(&rules, "again", &l),
            Err(Refusal::RateLimited(ms)) if ms > 0
        ));
    }

    // Same setup as the tests above: no restrictions, no terms, a limiter.
    #[test]
    fn unknown_stamps_and_reaction_limits() {
        let r = Restrictions::default();
        let rules = rules(&r, &[]);
        let l = limiter(2);
        assert_eq!(
            rules.admit_reaction(Some(&alice()), false, &l, now()),
            Err(Refusal::UnknownStamp)
        );
        assert_eq!(
            rules.admit_reaction(Some(&alice()), true, &l, now()),
            Ok(())
        );
        assert_eq!(
            rules.admit_reaction(Some(&alice()), true, &l, now()),
            Ok(())
        );
        assert!(matches!(
            rules.admit_reaction(Some(&alice()), true, &l, now()),
            Err(Refusal::RateLimited(_))
        ));
    }

    #[test]
    fn shutting_down_refuses_chat_with_unavailable() {
        let r = Restrictions::default();
        let mut rules = rules(&r, &[]);
        rules.shutting_down = true;
        let refusal = rules
            .admit_message(Some(&alice()), "hi", false, &limiter(5), now())
            .unwrap_err();
        assert_eq!(refusal.code(), Code::Unavailable);
        let frame: serde_json::Value =
            serde_json::from_str(&refusal.frame(Some("c1"), false)).unwrap();
        assert_eq!(frame["code"], "unavailable");
        assert_eq!(frame["client_id"], "c1");
    }

    #[test]
    fn modes_refuse_everyone_but_the_exempt() {
        let r = Restrictions::default();
        let l = limiter(100);
        let moderator = Sender {
            exempt: true,
            ..alice()
        };
        let mut rules = rules(&r, &[]);

        let stamps_only = Modes {
            stamps_only: true,
            ..NO_MODES
        };
        rules.modes = &stamps_only;
        assert_eq!(alice_says(&rules, "hi", &l), Err(Refusal::StampsOnly));
        assert_eq!(
            rules.admit_reaction(Some(&alice()), true, &l, now()),
            Ok(())
        );
        assert_eq!(
            rules.admit_message(Some(&moderator), "hi", false, &l, now()),
            Ok(Admit::Post)
        );

        let established = Modes {
            established_minutes: 10,
            ..NO_MODES
        };
        rules.modes = &established;
        let newcomer = Sender {
            account_created: now() - time::Duration::minutes(4),
            ..alice()
        };
        match rules.admit_message(Some(&newcomer), "hi", false, &l, now()) {
            Err(Refusal::TooNew(ms)) => assert!(ms > 5 * 60_000 && ms <= 6 * 60_000, "{ms}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(alice_says(&rules, "hi", &l), Ok(Admit::Post));

        let unique = Modes {
            unique_chat: true,
            ..NO_MODES
        };
        let mut recent = RecentTexts::default();
        recent.add(RecentTexts::key("GG  wp"), Instant::now());
        rules.modes = &unique;
        rules.recent = &recent;
        assert_eq!(alice_says(&rules, "gg wp", &l), Err(Refusal::Duplicate));
        assert_eq!(alice_says(&rules, "gg wp!", &l), Ok(Admit::Post));
        assert_eq!(
            rules.admit_message(Some(&moderator), "gg wp", false, &l, now()),
            Ok(Admit::Post)
        );
    }
}
