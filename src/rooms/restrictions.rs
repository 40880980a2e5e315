//! Owns the rule for bans and timeouts on one stream: which are in force, how
//! a moderation action changes them, and whether a user may chat now. It is
//! the rule of the SQL in `store::moderation` (`restrict_user`,
//! `unrestrict_user`, `restrictions`), written once for rooms and handshakes.
//!
//! A restriction has a kind (ban or timeout) and a scope (this stream, or the
//! whole tenant). A user holds at most one restriction of each kind and scope:
//! a new one replaces the earlier one of the same kind and scope and leaves the
//! others alone. A lift clears exactly one scope, so lifting the tenant-wide
//! restrictions never lifts the stream's own, nor the other way round. A
//! restriction is in force while it has no end or its end is after `now`.
//!
//! Pure: no actor, no I/O. Rooms load it from [`Store::restrictions`] rows
//! with [`Restrictions::from_rows`] and keep it current with [`Change`]s.
//!
//! [`Store::restrictions`]: crate::store::Store::restrictions

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::{moderation::ModEvent, store::moderation::Restriction};

/// Why a user may not chat now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Muted {
    /// A ban is in force (on this stream or tenant-wide).
    Banned,
    /// Timed out until then (the latest end of the timeouts in force).
    TimedOut(OffsetDateTime),
}

/// A change to bans and timeouts, as one moderation action makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A ban (`until` None = for good) or a timeout; replaces the user's earlier one of the same kind and scope.
    Restrict {
        /// The user.
        user_id: i64,
        /// `true` for a ban, `false` for a timeout.
        is_ban: bool,
        /// End (None: for good; a timeout always has one).
        until: Option<OffsetDateTime>,
        /// Tenant-wide rather than for this stream.
        tenant_wide: bool,
    },
    /// Lifts the user's bans and timeouts of exactly one scope (tenant-wide ones, or this stream's ones).
    Lift {
        /// The user.
        user_id: i64,
        /// The tenant-wide ones rather than this stream's.
        tenant_wide: bool,
    },
}

impl Change {
    /// The change a `Ban`, `Timeout` or `Unban` event makes; `None` for other
    /// events, and for a timeout whose end is not a valid time.
    pub fn of(event: &ModEvent) -> Option<Change> {
        match event {
            ModEvent::Ban {
                user_id, tenant, ..
            } => Some(Change::Restrict {
                user_id: *user_id,
                is_ban: true,
                until: None,
                tenant_wide: *tenant,
            }),
            ModEvent::Timeout {
                user_id,
                until_unix,
                tenant,
                ..
            } => Some(Change::Restrict {
                user_id: *user_id,
                is_ban: false,
                until: Some(OffsetDateTime::from_unix_timestamp(*until_unix).ok()?),
                tenant_wide: *tenant,
            }),
            ModEvent::Unban {
                user_id, tenant, ..
            } => Some(Change::Lift {
                user_id: *user_id,
                tenant_wide: *tenant,
            }),
            _ => None,
        }
    }
}

/// One restriction slot of a user: its kind and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot {
    is_ban: bool,
    tenant_wide: bool,
}

/// Every slot, bans first.
const SLOTS: [Slot; 4] = [
    Slot {
        is_ban: true,
        tenant_wide: false,
    },
    Slot {
        is_ban: true,
        tenant_wide: true,
    },
    Slot {
        is_ban: false,
        tenant_wide: false,
    },
    Slot {
        is_ban: false,
        tenant_wide: true,
    },
];

/// True while a restriction ending at `until` is in force.
fn in_force(until: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    until.is_none_or(|u| u > now)
}

/// Bans and timeouts in force on one stream: its own and the tenant's.
#[derive(Debug, Default, Clone)]
pub struct Restrictions {
    /// Per user, the end of the restriction held in each slot (None: no end).
    users: HashMap<i64, HashMap<Slot, Option<OffsetDateTime>>>,
}

impl Restrictions {
    /// From the rows of `moderation_ban` that concern the stream. Should two
    /// rows share a user, kind and scope, the one that lasts longer counts.
    pub fn from_rows(rows: impl IntoIterator<Item = Restriction>) -> Self {
        let mut this = Self::default();
        for r in rows {
            let slot = Slot {
                is_ban: r.is_ban,
                tenant_wide: r.tenant_wide,
            };
            this.users
                .entry(r.user_id)
                .or_default()
                .entry(slot)
                .and_modify(|until| {
                    *until = match (*until, r.until) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    }
                })
                .or_insert(r.until);
        }
        this
    }

    /// Applies one moderation action's change.
    pub fn apply(&mut self, change: &Change) {
        match *change {
            Change::Restrict {
                user_id,
                is_ban,
                until,
                tenant_wide,
            } => {
                self.users.entry(user_id).or_default().insert(
                    Slot {
                        is_ban,
                        tenant_wide,
                    },
                    until,
                );
            }
            Change::Lift {
                user_id,
                tenant_wide,
            } => {
                if let Some(slots) = self.users.get_mut(&user_id) {
                    slots.retain(|slot, _| slot.tenant_wide != tenant_wide);
                    if slots.is_empty() {
                        self.users.remove(&user_id);
                    }
                }
            }
        }
    }

    /// Why `user_id` may not chat at `now`: any ban in force makes them
    /// [`Muted::Banned`]; otherwise the latest end of their timeouts in force
    /// makes them [`Muted::TimedOut`]. A timeout without an end is not counted
    /// (none is ever written).
    pub fn muted(&self, user_id: i64, now: OffsetDateTime) -> Option<Muted> {
        let slots = self.users.get(&user_id)?;
        let held = SLOTS
            .iter()
            .filter_map(|slot| slots.get(slot).map(|until| (slot, *until)))
            .filter(|(_, until)| in_force(*until, now));
        let mut latest_timeout: Option<OffsetDateTime> = None;
        for (slot, until) in held {
            if slot.is_ban {
                return Some(Muted::Banned);
            }
            if let Some(u) = until {
                latest_timeout = latest_timeout.max(Some(u));
            }
        }
        latest_timeout.map(Muted::TimedOut)
    }

    /// Drops the restrictions that have ended by `now`.
    pub fn prune(&mut self, now: OffsetDateTime) {
        self.users.retain(|_, slots| {
            slots.retain(|_, until| in_force(*until, now));
            !slots.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    const BOB: i64 = 7;
    const EVE: i64 = 8;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-22 08:00 UTC)
    }

    fn ban(user_id: i64, tenant_wide: bool) -> Change {
        Change::Restrict {
            user_id,
            is_ban: true,
            until: None,
            tenant_wide,
        }
    }

    fn timeout(user_id: i64, secs: i64, tenant_wide: bool) -> Change {
        Change::Restrict {
            user_id,
            is_ban: false,
            until: Some(now() + Duration::seconds(secs)),
            tenant_wide,
        }
    }

    fn lift(user_id: i64, tenant_wide: bool) -> Change {
        Change::Lift {
            user_id,
            tenant_wide,
        }
    }

    fn with(changes: &[Change]) -> Restrictions {
        let mut r = Restrictions::default();
        for c in changes {
            r.apply(c);
        }
        r
    }

    fn timed_out(secs: i64) -> Option<Muted> {
        Some(Muted::TimedOut(now() + Duration::seconds(secs)))
    }

    #[test]
    fn nobody_is_muted_at_first() {
        assert_eq!(Restrictions::default().muted(BOB, now()), None);
        assert_eq!(Restrictions::from_rows([]).muted(BOB, now()), None);
    }

    #[test]
    fn a_restriction_replaces_the_same_kind_and_scope_only() {
        // A shorter timeout of the same scope replaces a longer one.
        let r = with(&[timeout(BOB, 600, false), timeout(BOB, 60, false)]);
        assert_eq!(r.muted(BOB, now()), timed_out(60));
        // Of the other scope, it is kept beside it: the later end counts.
        let r = with(&[timeout(BOB, 600, true), timeout(BOB, 60, false)]);
        assert_eq!(r.muted(BOB, now()), timed_out(600));
        // A timeout does not replace a ban, nor a ban a timeout.
        let r = with(&[ban(BOB, false), timeout(BOB, 60, false)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        let r = with(&[timeout(BOB, 60, false), ban(BOB, false)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        // A ban for a while replaces one for good.
        let r = with(&[
            ban(BOB, false),
            Change::Restrict {
                user_id: BOB,
                is_ban: true,
                until: Some(now() + Duration::seconds(5)),
                tenant_wide: false,
            },
        ]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        assert_eq!(r.muted(BOB, now() + Duration::seconds(5)), None);
    }

    #[test]
    fn scopes_are_independent() {
        for tenant_wide in [false, true] {
            let r = with(&[ban(BOB, tenant_wide)]);
            assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
            assert_eq!(r.muted(EVE, now()), None, "only the user is muted");
            let r = with(&[timeout(BOB, 30, tenant_wide)]);
            assert_eq!(r.muted(BOB, now()), timed_out(30));
        }
        let r = with(&[ban(BOB, true), timeout(BOB, 30, false)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
    }

    #[test]
    fn a_lift_clears_one_scope_and_keeps_the_other() {
        // The case of PROTOCOL.md: a tenant-wide unban keeps the stream's timeout.
        let r = with(&[timeout(BOB, 600, false), lift(BOB, true)]);
        assert_eq!(r.muted(BOB, now()), timed_out(600));
        let r = with(&[ban(BOB, false), lift(BOB, true)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        // And a stream's unban keeps the tenant's.
        let r = with(&[ban(BOB, true), lift(BOB, false)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        let r = with(&[timeout(BOB, 60, true), ban(BOB, false), lift(BOB, false)]);
        assert_eq!(r.muted(BOB, now()), timed_out(60));
        // A lift clears both kinds of its scope.
        let r = with(&[
            ban(BOB, true),
            timeout(BOB, 60, true),
            timeout(BOB, 600, false),
            lift(BOB, true),
        ]);
        assert_eq!(r.muted(BOB, now()), timed_out(600));
        let r = with(&[ban(BOB, false), timeout(BOB, 60, false), lift(BOB, false)]);
        assert_eq!(r.muted(BOB, now()), None);
        // Only the user's.
        let r = with(&[ban(BOB, true), ban(EVE, true), lift(EVE, true)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        assert_eq!(r.muted(EVE, now()), None);
        // Both lifts clear everything.
        let r = with(&[
            ban(BOB, true),
            timeout(BOB, 60, false),
            lift(BOB, false),
            lift(BOB, true),
        ]);
        assert_eq!(r.muted(BOB, now()), None);
    }

    #[test]
    fn restrictions_end() {
        let r = with(&[timeout(BOB, 60, false), timeout(BOB, 30, true)]);
        assert_eq!(r.muted(BOB, now() + Duration::seconds(29)), timed_out(60));
        assert_eq!(r.muted(BOB, now() + Duration::seconds(59)), timed_out(60));
        // The end itself is free, as in SQL's `until > now()`.
        assert_eq!(r.muted(BOB, now() + Duration::seconds(60)), None);
        // A ban for good never ends.
        let r = with(&[ban(BOB, false)]);
        assert_eq!(
            r.muted(BOB, now() + Duration::days(10_000)),
            Some(Muted::Banned)
        );
    }

    #[test]
    fn a_ban_beats_a_timeout() {
        let r = with(&[timeout(BOB, 600, true), ban(BOB, false)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        let r = with(&[ban(BOB, true), timeout(BOB, 600, false)]);
        assert_eq!(r.muted(BOB, now()), Some(Muted::Banned));
        // An ended ban does not: the timeout shows.
        let r = with(&[
            Change::Restrict {
                user_id: BOB,
                is_ban: true,
                until: Some(now() + Duration::seconds(10)),
                tenant_wide: true,
            },
            timeout(BOB, 600, false),
        ]);
        assert_eq!(r.muted(BOB, now() + Duration::seconds(10)), timed_out(600));
    }

    #[test]
    fn prune_drops_what_has_ended() {
        let mut r = with(&[
            timeout(BOB, 30, false),
            timeout(BOB, 90, true),
            timeout(EVE, 30, false),
            ban(EVE, true),
        ]);
        r.prune(now() + Duration::seconds(30));
        assert_eq!(r.muted(BOB, now()), timed_out(90), "the ended one is gone");
        assert_eq!(r.muted(EVE, now()), Some(Muted::Banned));
        r.apply(&lift(EVE, true));
        assert_eq!(r.muted(EVE, now()), None, "EVE's ended timeout is gone");
        r.prune(now() + Duration::seconds(90));
        assert!(r.users.is_empty(), "{r:?}");
    }

    #[test]
    fn from_rows_matches_applying_the_same_restrictions() {
        let rows = [
            Restriction {
                user_id: BOB,
                is_ban: false,
                until: Some(now() + Duration::seconds(60)),
                tenant_wide: false,
            },
            Restriction {
                user_id: BOB,
                is_ban: false,
                until: Some(now() + Duration::seconds(30)),
                tenant_wide: true,
            },
            Restriction {
                user_id: EVE,
                is_ban: true,
                until: None,
                tenant_wide: false,
            },
        ];
        let mut r = Restrictions::from_rows(rows.clone());
        assert_eq!(r.muted(BOB, now()), timed_out(60));
        assert_eq!(r.muted(EVE, now()), Some(Muted::Banned));
        r.apply(&lift(BOB, false));
        assert_eq!(r.muted(BOB, now()), timed_out(30));
        // Two rows of one slot (writes that raced): the longer counts.
        let mut twice = rows.to_vec();
        twice.push(Restriction {
            until: Some(now() + Duration::seconds(90)),
            ..rows[0].clone()
        });
        twice.push(rows[0].clone());
        let r = Restrictions::from_rows(twice);
        assert_eq!(r.muted(BOB, now()), timed_out(90));
    }

    #[test]
    fn changes_of_events() {
        let cases = [
            (
                ModEvent::Ban {
                    user_id: BOB,
                    username: "bob".into(),
                    tenant: true,
                },
                Some(ban(BOB, true)),
            ),
            (
                ModEvent::Timeout {
                    user_id: BOB,
                    username: "bob".into(),
                    until: "2026-11-22T08:10:00Z".into(),
                    until_unix: (now() + Duration::seconds(600)).unix_timestamp(),
                    tenant: false,
                },
                Some(timeout(BOB, 600, false)),
            ),
            // A timeout whose end is not a valid time is not a change.
            (
                ModEvent::Timeout {
                    user_id: BOB,
                    username: "bob".into(),
                    until: String::new(),
                    until_unix: i64::MAX,
                    tenant: false,
                },
                None,
            ),
            (
                ModEvent::Unban {
                    user_id: BOB,
                    username: "bob".into(),
                    tenant: false,
                },
                Some(lift(BOB, false)),
            ),
            (ModEvent::Clear { through_seq: 0 }, None),
            (ModEvent::SlowMode { seconds: 3 }, None),
        ];
        for (event, change) in cases {
            assert_eq!(Change::of(&event), change, "{event:?}");
        }
    }
}
