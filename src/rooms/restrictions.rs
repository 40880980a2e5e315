//! Bans and timeouts in force on one stream (provisional; replaced by the full module).

use time::OffsetDateTime;

use crate::{moderation::ModEvent, store::moderation::Restriction};

/// Why a user may not chat now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Muted {
    /// Banned.
    Banned,
    /// Timed out until then.
    TimedOut(OffsetDateTime),
}

/// A change to bans and timeouts, as one moderation action makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A ban or a timeout.
    Restrict {
        user_id: i64,
        is_ban: bool,
        until: Option<OffsetDateTime>,
        tenant_wide: bool,
    },
    /// Lifts one scope.
    Lift { user_id: i64, tenant_wide: bool },
}

impl Change {
    /// The change a moderation event makes, if any.
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
                until: OffsetDateTime::from_unix_timestamp(*until_unix).ok(),
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

/// Bans and timeouts in force on one stream.
#[derive(Debug, Default, Clone)]
pub struct Restrictions {
    rows: Vec<Restriction>,
}

impl Restrictions {
    /// From the store's rows.
    pub fn from_rows(rows: impl IntoIterator<Item = Restriction>) -> Self {
        Self {
            rows: rows.into_iter().collect(),
        }
    }

    /// Applies a change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Restrict {
                user_id,
                is_ban,
                until,
                tenant_wide,
            } => {
                self.rows.retain(|r| {
                    !(r.user_id == *user_id && r.is_ban == *is_ban && r.tenant_wide == *tenant_wide)
                });
                self.rows.push(Restriction {
                    user_id: *user_id,
                    is_ban: *is_ban,
                    until: *until,
                    tenant_wide: *tenant_wide,
                });
            }
            Change::Lift {
                user_id,
                tenant_wide,
            } => self
                .rows
                .retain(|r| !(r.user_id == *user_id && r.tenant_wide == *tenant_wide)),
        }
    }

    /// Whether a user is banned or timed out at `now`.
    pub fn muted(&self, user_id: i64, now: OffsetDateTime) -> Option<Muted> {
        let mine = self.rows.iter().filter(|r| r.user_id == user_id);
        if mine
            .clone()
            .any(|r| r.is_ban && r.until.is_none_or(|u| u > now))
        {
            return Some(Muted::Banned);
        }
        mine.filter(|r| !r.is_ban)
            .filter_map(|r| r.until)
            .filter(|u| *u > now)
            .max()
            .map(Muted::TimedOut)
    }

    /// Drops expired entries.
    pub fn prune(&mut self, now: OffsetDateTime) {
        self.rows.retain(|r| r.until.is_none_or(|u| u > now));
    }
}
