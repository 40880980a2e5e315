//! Moderation: who may moderate, the commands of PROTOCOL.md (over the socket
//! or `POST /api/streams/{id}/moderation`), and [`execute`], which checks a
//! command, writes its effect and the moderation log to PostgreSQL, and
//! returns the [`ModEvent`] that rooms apply and broadcast. Everything is
//! logged before it is broadcast.

pub mod blocked;
pub mod fold;

use serde::Deserialize;
use serde_json::{value::RawValue, Value};
use time::{Duration, OffsetDateTime};

use crate::{
    domain::Role,
    error::{ApiError, Code},
    store::{
        accounts::User, messages::StoredMessage, moderation::NewLogEntry, streams::Stream, Slug,
        Store, StoreResult,
    },
};

/// Longest timeout: a week.
pub const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;
/// Longest slow mode: an hour.
pub const MAX_SLOW_MODE_SECS: i64 = 3600;
/// Longest reason.
const MAX_REASON_CHARS: usize = 500;

/// The user a command or request names (`NotFound` when there is none).
pub async fn user_named(store: &Store, slug: &Slug, username: &str) -> Result<User, ApiError> {
    store
        .user_by_name(slug, username)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "No such user."))
}

/// True when `user` may moderate `stream` (and see its analytics and log).
pub async fn can_moderate(
    store: &Store,
    slug: &Slug,
    user: &User,
    stream: &Stream,
) -> StoreResult<bool> {
    if matches!(user.role, Role::Admin | Role::Moderator) || stream.owner_id == user.id {
        return Ok(true);
    }
    store.is_stream_moderator(slug, stream.id, user.id).await
}

/// The `scope` a ban, timeout, unban, hide or unhide names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetScope {
    /// None named: the stream.
    #[default]
    Unnamed,
    /// `"scope":"stream"`.
    Stream,
    /// `"scope":"tenant"`: every stream of the tenant (admins only).
    Tenant,
}

impl TargetScope {
    /// True for the whole tenant.
    pub fn tenant(self) -> bool {
        self == TargetScope::Tenant
    }
}

/// A moderation command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Hide one message.
    Delete { message_id: i64 },
    /// Pin one message.
    Pin { message_id: i64 },
    /// Unpin.
    Unpin,
    /// Ban a user (from this stream, or the tenant).
    Ban {
        username: String,
        reason: Option<String>,
        scope: TargetScope,
    },
    /// Stop a user chatting for a while.
    Timeout {
        username: String,
        seconds: i64,
        reason: Option<String>,
        scope: TargetScope,
    },
    /// Lift bans and timeouts.
    Unban {
        username: String,
        scope: TargetScope,
    },
    /// Slow mode seconds (0 = off).
    SlowMode { seconds: i64 },
    /// Hide every message.
    Clear,
    /// Change chat modes.
    Modes(crate::rooms::modes::ModesChange),
    /// Hide a user's new messages from everyone but them and moderators.
    Hide {
        username: String,
        scope: TargetScope,
    },
    /// Lift a hide.
    Unhide {
        username: String,
        scope: TargetScope,
    },
    /// Approve a held message: it is stored and broadcast.
    Approve { held_id: i64 },
    /// Deny a held message.
    Deny { held_id: i64 },
}

/// The fields a moderation command may carry, borrowed from the frame's or the
/// request's JSON text as raw JSON: other fields are skipped without being
/// built, and each is read as the command needs it. `null` and a missing field
/// are the same (`None`).
#[derive(Debug, Default, Deserialize)]
pub struct CommandFields<'a> {
    /// `type`: which command.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<&'a RawValue>,
    /// The message deleted or pinned.
    #[serde(borrow, default)]
    pub message_id: Option<&'a RawValue>,
    /// The user banned, timed out, hidden, ...
    #[serde(borrow, default)]
    pub username: Option<&'a RawValue>,
    /// Why, for the log.
    #[serde(borrow, default)]
    pub reason: Option<&'a RawValue>,
    /// `"stream"` (default) or `"tenant"`.
    #[serde(borrow, default)]
    pub scope: Option<&'a RawValue>,
    /// Timeout or slow-mode seconds.
    #[serde(borrow, default)]
    pub seconds: Option<&'a RawValue>,
    /// The held message approved or denied.
    #[serde(borrow, default)]
    pub held_id: Option<&'a RawValue>,
    /// Chat modes (`modes`).
    #[serde(borrow, default)]
    pub stamps_only: Option<&'a RawValue>,
    /// Chat modes (`modes`).
    #[serde(borrow, default)]
    pub established_minutes: Option<&'a RawValue>,
    /// Chat modes (`modes`).
    #[serde(borrow, default)]
    pub unique_chat: Option<&'a RawValue>,
    /// Chat modes (`modes`).
    #[serde(borrow, default)]
    pub hold_links: Option<&'a RawValue>,
    /// Chat modes (`modes`).
    #[serde(borrow, default)]
    pub shield: Option<&'a RawValue>,
}

impl Command {
    /// True for the frame types this module handles.
    pub fn is_moderation_type(kind: &str) -> bool {
        matches!(
            kind,
            "delete"
                | "pin"
                | "unpin"
                | "ban"
                | "timeout"
                | "unban"
                | "slow_mode"
                | "clear"
                | "modes"
                | "approve"
                | "deny"
                | "hide"
                | "unhide"
        )
    }

    /// Parses a moderation frame or request body (`{"type":"ban",...}`).
    /// `Invalid` for a body that is not a JSON object.
    pub fn parse_json(text: &str) -> Result<Command, (Code, &'static str)> {
        let fields: CommandFields = serde_json::from_str(text)
            .map_err(|_| (Code::Invalid, "The command must be a JSON object."))?;
        Command::parse(&fields)
    }

    /// Parses the fields of a moderation frame or request body.
    pub fn parse(v: &CommandFields<'_>) -> Result<Command, (Code, &'static str)> {
        use crate::protocol::{integer, string};
        let kind = v.kind.and_then(string).unwrap_or_default();
        let kind = kind.as_str();
        let int = |f: Option<&RawValue>| f.and_then(integer);
        let username = || {
            v.username
                .and_then(string)
                .filter(|u| !u.is_empty() && u.len() <= 64)
                .ok_or((Code::Invalid, "\"username\" is required."))
        };
        let reason = || -> Result<Option<String>, (Code, &'static str)> {
            match v.reason {
                None => Ok(None),
                Some(raw) => match string(raw) {
                    Some(r) if r.chars().count() <= MAX_REASON_CHARS => {
                        Ok(Some(r.trim().to_string()).filter(|r| !r.is_empty()))
                    }
                    _ => Err((
                        Code::Invalid,
                        "\"reason\" must be text of at most 500 characters.",
                    )),
                },
            }
        };
        // `seconds`, required and within `range` (`out_of_range` says which).
        let seconds = |range: std::ops::RangeInclusive<i64>, out_of_range: &'static str| {
            let seconds = int(v.seconds).ok_or((Code::Invalid, "\"seconds\" is required."))?;
            if range.contains(&seconds) {
                Ok(seconds)
            } else {
                Err((Code::Invalid, out_of_range))
            }
        };
        let message_id = || int(v.message_id).ok_or((Code::Invalid, "\"message_id\" is required."));
        let scope = match v.scope.map(string) {
            None => TargetScope::Unnamed,
            Some(Some(s)) if s == "tenant" => TargetScope::Tenant,
            Some(Some(s)) if s == "stream" => TargetScope::Stream,
            _ => return Err((Code::Invalid, "\"scope\" must be \"tenant\" or \"stream\".")),
        };
        let scoped = v.scope.is_some();
        let cmd = match kind {
            "delete" => Command::Delete {
                message_id: message_id()?,
            },
            "pin" => Command::Pin {
                message_id: message_id()?,
            },
            "unpin" => Command::Unpin,
            "ban" => Command::Ban {
                username: username()?,
                reason: reason()?,
                scope,
            },
            "timeout" => {
                let seconds = seconds(
                    1..=MAX_TIMEOUT_SECS,
                    "\"seconds\" must be between 1 and 604800.",
                )?;
                Command::Timeout {
                    username: username()?,
                    seconds,
                    reason: reason()?,
                    scope,
                }
            }
            "unban" => Command::Unban {
                username: username()?,
                scope,
            },
            "slow_mode" => Command::SlowMode {
                seconds: seconds(
                    0..=MAX_SLOW_MODE_SECS,
                    "\"seconds\" must be between 0 and 3600.",
                )?,
            },
            "clear" => Command::Clear,
            "modes" => Command::Modes(
                crate::rooms::modes::ModesChange::parse(v).map_err(|m| (Code::Invalid, m))?,
            ),
            // Commands that name a user in a scope are built alike; each is its own variant.
            "hide" => Command::Hide {
                username: username()?,
                scope,
            },
            "unhide" => Command::Unhide {
                username: username()?,
                scope,
            },
            "approve" => Command::Approve {
                held_id: int(v.held_id).ok_or((Code::Invalid, "\"held_id\" is required."))?,
            },
            "deny" => Command::Deny {
                held_id: int(v.held_id).ok_or((Code::Invalid, "\"held_id\" is required."))?,
            },
            _ => return Err((Code::UnknownType, "Unknown frame type.")),
        };
        // Only bans, timeouts, unbans, hides and unhides take a scope.
        if scoped
            && !matches!(
                cmd,
                Command::Ban { .. }
                    | Command::Timeout { .. }
                    | Command::Unban { .. }
                    | Command::Hide { .. }
                    | Command::Unhide { .. }
            )
        {
            return Err((
                Code::Invalid,
                "\"scope\" applies to ban, timeout and unban only.",
            ));
        }
        Ok(cmd)
    }

    /// True when the command names a scope (only admins may).
    fn names_scope(&self) -> bool {
        match self {
            Command::Ban { scope, .. }
            | Command::Timeout { scope, .. }
            | Command::Unban { scope, .. }
            | Command::Hide { scope, .. }
            | Command::Unhide { scope, .. } => *scope != TargetScope::Unnamed,
            _ => false,
        }
    }
}

/// The effect of a moderation action, applied by every room it concerns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ModEvent {
    /// A message is hidden.
    Delete {
        message_id: i64,
        /// Set when the message was a hidden user's: its author, who with the
        /// moderators is all that saw it, and all that are told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden_author: Option<i64>,
    },
    /// A message is pinned (its `message` frame as JSON).
    Pin { message: Value },
    /// Nothing is pinned.
    Unpin,
    /// A user is banned (`until` None: for good).
    Ban {
        user_id: i64,
        username: String,
        tenant: bool,
    },
    /// A user is timed out until a time (RFC 3339).
    Timeout {
        user_id: i64,
        username: String,
        until: String,
        until_unix: i64,
        tenant: bool,
    },
    /// Bans and timeouts of a user are lifted.
    Unban {
        user_id: i64,
        username: String,
        tenant: bool,
    },
    /// Slow mode changed.
    SlowMode { seconds: i32 },
    /// Every message is hidden.
    Clear {
        /// The highest seq hidden: a message up to it that reaches a room
        /// later (relayed late, or held behind a gap) is not shown.
        #[serde(default)]
        through_seq: i64,
    },
    /// Chat modes changed (with slow mode, which the shield sets).
    Modes {
        modes: crate::rooms::modes::Modes,
        slow_mode_seconds: i32,
        /// Orders the changes of one stream: two changes made at once may
        /// reach a room in either order, and the later one must win.
        #[serde(default)]
        version: i64,
    },
    /// A user's new messages are hidden (`hide` true) or shown again.
    Hide {
        user_id: i64,
        username: String,
        tenant: bool,
        hide: bool,
    },
    /// A held message was approved and stored.
    Approve(Approved),
    /// A hidden user's held message was approved and stored flagged hidden:
    /// shown to its author and moderators only. A variant of its own, so a
    /// node of an earlier version, which does not know it, drops the event
    /// and reads the message from PostgreSQL (flagged) instead of showing it
    /// to everyone.
    ApproveHidden(Approved),
    /// A held message was denied (by a moderator, or after ten minutes).
    Deny {
        held_id: i64,
        user_id: i64,
        client_id: Option<String>,
    },
}

/// A held message approved and stored: its `message` frame, id and seq.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Approved {
    /// The held message's id.
    pub held_id: i64,
    /// Its author.
    pub user_id: i64,
    /// The author's idempotency key.
    pub client_id: Option<String>,
    /// The stored message's `message` frame.
    pub frame: String,
    /// The stored message's id.
    pub id: i64,
    /// Its seq in the room.
    pub seq: i64,
}

impl ModEvent {
    /// The `moderation` frame clients receive.
    pub fn frame(&self) -> bytestring::ByteString {
        let v = match self {
            ModEvent::Delete { message_id, .. } => {
                serde_json::json!({"type":"moderation","action":"delete","message_id":message_id})
            }
            ModEvent::Pin { message } => {
                serde_json::json!({"type":"moderation","action":"pin","message":message})
            }
            ModEvent::Unpin => serde_json::json!({"type":"moderation","action":"unpin"}),
            ModEvent::Ban { username, .. } => {
                serde_json::json!({"type":"moderation","action":"ban","username":username,"until":null})
            }
            ModEvent::Timeout {
                username, until, ..
            } => {
                serde_json::json!({"type":"moderation","action":"timeout","username":username,"until":until})
            }
            ModEvent::Unban { username, .. } => {
                serde_json::json!({"type":"moderation","action":"unban","username":username})
            }
            ModEvent::SlowMode { seconds } => {
                serde_json::json!({"type":"moderation","action":"slow_mode","seconds":seconds})
            }
            ModEvent::Clear { .. } => serde_json::json!({"type":"moderation","action":"clear"}),
            ModEvent::Hide { username, hide, .. } => serde_json::json!({
                "type":"moderation","action":if *hide { "hide" } else { "unhide" },"username":username,
            }),
            ModEvent::Approve(a) | ModEvent::ApproveHidden(a) => {
                serde_json::json!({"type":"moderation","action":"approve","held_id":a.held_id})
            }
            ModEvent::Deny { held_id, .. } => {
                serde_json::json!({"type":"moderation","action":"deny","held_id":held_id})
            }
            ModEvent::Modes {
                modes,
                slow_mode_seconds,
                ..
            } => serde_json::json!({
                "type":"moderation","action":"modes","modes":modes,
                "slow_mode_seconds":slow_mode_seconds,
            }),
        };
        bytestring::ByteString::from(v.to_string())
    }

    /// True when the event concerns every stream of the tenant.
    pub fn tenant_wide(&self) -> bool {
        matches!(
            self,
            ModEvent::Ban { tenant: true, .. }
                | ModEvent::Timeout { tenant: true, .. }
                | ModEvent::Unban { tenant: true, .. }
                | ModEvent::Hide { tenant: true, .. }
        )
    }
}

/// The pinned message as the JSON of its `message` frame.
pub fn pinned_json(m: &StoredMessage) -> Value {
    serde_json::from_str(&crate::protocol::message_frame(m)).expect("frame is JSON")
}

/// Checks a command against the moderator's rights, writes its effect and the
/// log, and returns the event to apply. `moderator` must already be known to
/// be able to moderate `stream` (see [`can_moderate`]).
pub async fn execute(
    store: &Store,
    slug: &Slug,
    stream: &Stream,
    moderator: &User,
    cmd: Command,
) -> Result<ModEvent, ApiError> {
    // PROTOCOL.md: an admin may name a scope; anyone else who does is refused.
    if cmd.names_scope() && moderator.role != Role::Admin {
        return Err(ApiError::new(
            Code::Forbidden,
            "Only an admin can choose a scope (\"tenant\" acts on every stream).",
        ));
    }
    let log = |action: &'static str| NewLogEntry {
        stream_id: stream.id,
        moderator_id: moderator.id,
        action,
        target_user_id: None,
        message_id: None,
        reason: None,
        seconds: None,
    };
    let not_found = || ApiError::new(Code::NotFound, "No such message in this stream.");
    match cmd {
        Command::Delete { message_id } => {
            let (author, hidden) = store
                .delete_message(
                    slug,
                    stream.room_id,
                    message_id,
                    NewLogEntry {
                        message_id: Some(message_id),
                        ..log("delete")
                    },
                )
                .await?
                .ok_or_else(not_found)?;
            Ok(ModEvent::Delete {
                message_id,
                hidden_author: author.filter(|_| hidden),
            })
        }
        Command::Pin { message_id } => {
            let m = store
                .pin_message(
                    slug,
                    stream.room_id,
                    message_id,
                    NewLogEntry {
                        message_id: Some(message_id),
                        ..log("pin")
                    },
                )
                .await?
                .ok_or_else(not_found)?;
            Ok(ModEvent::Pin {
                message: pinned_json(&m),
            })
        }
        Command::Unpin => {
            store.unpin(slug, stream.room_id, log("unpin")).await?;
            Ok(ModEvent::Unpin)
        }
        Command::Clear => {
            let through_seq = store.clear_chat(slug, stream.room_id, log("clear")).await?;
            Ok(ModEvent::Clear { through_seq })
        }
        Command::Hide {
            ref username,
            scope,
        }
        | Command::Unhide {
            ref username,
            scope,
        } => {
            let tenant = scope.tenant();
            let hide = matches!(cmd, Command::Hide { .. });
            let target = user_named(store, slug, username).await?;
            if hide
                && (target.id == moderator.id
                    || target.id == stream.owner_id
                    || target.role == Role::Admin)
            {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "That user cannot be hidden.",
                ));
            }
            store
                .set_hidden(
                    slug,
                    (!tenant).then_some(stream.id),
                    target.id,
                    hide,
                    NewLogEntry {
                        target_user_id: Some(target.id),
                        ..log(if hide { "hide" } else { "unhide" })
                    },
                )
                .await?;
            Ok(ModEvent::Hide {
                user_id: target.id,
                username: target.username,
                tenant,
                hide,
            })
        }
        Command::Approve { held_id } | Command::Deny { held_id } => {
            let approve = matches!(cmd, Command::Approve { .. });
            let r = store
                .resolve_held(
                    slug,
                    stream.room_id,
                    held_id,
                    approve,
                    log(if approve { "approve" } else { "deny" }),
                )
                .await?
                .ok_or_else(|| ApiError::new(Code::NotFound, "No such held message waiting."))?;
            let h = r.held;
            match r.stored {
                Some(m) => {
                    let approved = Approved {
                        held_id,
                        user_id: h.user_id,
                        client_id: h.body.client_id,
                        frame: crate::protocol::message_frame(&m).to_string(),
                        id: m.id,
                        seq: m.seq,
                    };
                    Ok(if m.hidden {
                        ModEvent::ApproveHidden(approved)
                    } else {
                        ModEvent::Approve(approved)
                    })
                }
                None => Ok(ModEvent::Deny {
                    held_id,
                    user_id: h.user_id,
                    client_id: h.body.client_id,
                }),
            }
        }
        Command::Modes(change) => {
            let (state, slow_mode_seconds, version) = store
                .change_modes(slug, stream.id, &change, log("modes"))
                .await?
                .ok_or_else(|| ApiError::new(Code::NotFound, "No such stream."))?;
            Ok(ModEvent::Modes {
                modes: state.modes,
                slow_mode_seconds,
                version,
            })
        }
        Command::SlowMode { seconds } => {
            let seconds = seconds as i32;
            store
                .set_slow_mode(
                    slug,
                    stream.id,
                    seconds,
                    NewLogEntry {
                        seconds: Some(seconds),
                        ..log("slow_mode")
                    },
                )
                .await?;
            Ok(ModEvent::SlowMode { seconds })
        }
        Command::Ban {
            ref username,
            ref reason,
            scope,
        }
        | Command::Timeout {
            ref username,
            ref reason,
            scope,
            ..
        } => {
            let tenant = scope.tenant();
            let target = user_named(store, slug, username).await?;
            if target.id == moderator.id
                || target.id == stream.owner_id
                || target.role == Role::Admin
            {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "That user cannot be banned or timed out.",
                ));
            }
            let scope = (!tenant).then_some(stream.id);
            match cmd {
                Command::Ban { .. } => {
                    store
                        .restrict_user(
                            slug,
                            scope,
                            target.id,
                            true,
                            None,
                            reason.as_deref(),
                            NewLogEntry {
                                target_user_id: Some(target.id),
                                reason: reason.as_deref(),
                                ..log("ban")
                            },
                        )
                        .await?;
                    Ok(ModEvent::Ban {
                        user_id: target.id,
                        username: target.username,
                        tenant,
                    })
                }
                Command::Timeout { seconds, .. } => {
                    let until = OffsetDateTime::now_utc() + Duration::seconds(seconds);
                    store
                        .restrict_user(
                            slug,
                            scope,
                            target.id,
                            false,
                            Some(until),
                            reason.as_deref(),
                            NewLogEntry {
                                target_user_id: Some(target.id),
                                reason: reason.as_deref(),
                                seconds: Some(seconds as i32),
                                ..log("timeout")
                            },
                        )
                        .await?;
                    Ok(ModEvent::Timeout {
                        user_id: target.id,
                        username: target.username,
                        until: crate::protocol::timestamp_seconds(until),
                        until_unix: until.unix_timestamp(),
                        tenant,
                    })
                }
                _ => unreachable!("matched above"),
            }
        }
        Command::Unban { username, scope } => {
            let tenant = scope.tenant();
            let target = user_named(store, slug, &username).await?;
            store
                .unrestrict_user(
                    slug,
                    stream.id,
                    target.id,
                    tenant,
                    NewLogEntry {
                        target_user_id: Some(target.id),
                        ..log("unban")
                    },
                )
                .await?;
            Ok(ModEvent::Unban {
                user_id: target.id,
                username: target.username,
                tenant,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_commands() {
        assert_eq!(
            Command::parse_json(&json!({"type":"delete","message_id":5}).to_string()).unwrap(),
            Command::Delete { message_id: 5 }
        );
        assert_eq!(
            Command::parse_json(
                &json!({"type":"timeout","username":"bob","seconds":600,"reason":"calm down"})
                    .to_string()
            )
            .unwrap(),
            Command::Timeout {
                username: "bob".into(),
                seconds: 600,
                reason: Some("calm down".into()),
                scope: TargetScope::Unnamed
            }
        );
        assert_eq!(
            Command::parse_json(
                &json!({"type":"ban","username":"bob","scope":"tenant"}).to_string()
            )
            .unwrap(),
            Command::Ban {
                username: "bob".into(),
                reason: None,
                scope: TargetScope::Tenant
            }
        );
        assert_eq!(
            Command::parse_json(
                &json!({"type":"unban","username":"bob","scope":"stream"}).to_string()
            )
            .unwrap(),
            Command::Unban {
                username: "bob".into(),
                scope: TargetScope::Stream
            }
        );
        assert_eq!(
            Command::parse_json(&json!({"type":"slow_mode","seconds":0}).to_string()).unwrap(),
            Command::SlowMode { seconds: 0 }
        );
        for bad in [
            json!({"type":"delete"}),
            json!({"type":"timeout","username":"bob","seconds":0}),
            json!({"type":"slow_mode","seconds":-1}),
            json!({"type":"ban"}),
            json!({"type":"ban","username":"bob","scope":"galaxy"}),
            json!({"type":"clear","scope":"tenant"}),
            json!({"type":"delete","message_id":"5"}),
            json!({"type":"ban","username":7}),
            json!({"type":"ban","username":"bob","reason":["spam"]}),
            json!({"type":"ban","username":"bob","scope":7}),
            json!({"type":"modes","shield":"yes"}),
        ] {
            assert_eq!(
                Command::parse_json(&bad.to_string()).unwrap_err().0,
                Code::Invalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn null_is_missing_and_other_fields_are_ignored() {
        assert_eq!(
            Command::parse_json(
                r#"{"type":"ban","username":"bob","reason":null,"scope":null,"extra":{"a":[1]}}"#
            )
            .unwrap(),
            Command::Ban {
                username: "bob".into(),
                reason: None,
                scope: TargetScope::Unnamed
            }
        );
        assert_eq!(
            Command::parse_json(r#"{"type":"galaxy"}"#).unwrap_err().0,
            Code::UnknownType
        );
        assert_eq!(
            Command::parse_json(r#"{"message_id":5}"#).unwrap_err().0,
            Code::UnknownType
        );
    }

    /// Between nodes of two versions: an approval reads as before, and a
    /// hidden one has an action an earlier node does not know (it drops the
    /// event rather than show the message to everyone).
    #[test]
    fn approvals_on_the_wire() {
        let earlier = json!({"action":"approve","held_id":3,"user_id":7,"client_id":null,
            "frame":"{}","id":40,"seq":12});
        let a: ModEvent = serde_json::from_value(earlier.clone()).unwrap();
        assert!(matches!(&a, ModEvent::Approve(x) if x.id == 40 && x.seq == 12));
        assert_eq!(serde_json::to_value(&a).unwrap(), earlier);
        let ModEvent::Approve(x) = a else {
            unreachable!()
        };
        let hidden = serde_json::to_value(ModEvent::ApproveHidden(x)).unwrap();
        assert_eq!(hidden["action"], "approve_hidden");
        assert_eq!(
            ModEvent::ApproveHidden(serde_json::from_value(hidden).unwrap()).frame(),
            bytestring::ByteString::from(
                json!({"type":"moderation","action":"approve","held_id":3}).to_string()
            )
        );
    }

    /// A delete reads the same between versions; the author of a hidden
    /// message travels between nodes and never reaches a client.
    #[test]
    fn deletes_on_the_wire() {
        let earlier = json!({"action":"delete","message_id":5});
        let d: ModEvent = serde_json::from_value(earlier.clone()).unwrap();
        assert_eq!(
            d,
            ModEvent::Delete {
                message_id: 5,
                hidden_author: None
            }
        );
        assert_eq!(serde_json::to_value(&d).unwrap(), earlier);
        let hidden = ModEvent::Delete {
            message_id: 5,
            hidden_author: Some(7),
        };
        let relayed = serde_json::to_value(&hidden).unwrap();
        assert_eq!(relayed["hidden_author"], 7);
        assert_eq!(serde_json::from_value::<ModEvent>(relayed).unwrap(), hidden);
        assert_eq!(hidden.frame(), d.frame());
        assert_eq!(
            serde_json::from_str::<Value>(&d.frame()).unwrap(),
            json!({"type":"moderation","action":"delete","message_id":5})
        );
    }

    /// A clear carries its cut-off between new nodes; an earlier node's clear
    /// (none) reads as no cut-off, and a new one reads on an earlier node.
    #[test]
    fn clears_on_the_wire() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(tag = "action", rename_all = "snake_case")]
        enum Earlier {
            Clear,
        }
        let clear = ModEvent::Clear { through_seq: 41 };
        let relayed = serde_json::to_value(&clear).unwrap();
        assert_eq!(relayed, json!({"action":"clear","through_seq":41}));
        assert!(matches!(
            serde_json::from_value::<Earlier>(relayed).unwrap(),
            Earlier::Clear
        ));
        let earlier: ModEvent = serde_json::from_value(json!({"action":"clear"})).unwrap();
        assert_eq!(earlier, ModEvent::Clear { through_seq: 0 });
        assert_eq!(
            serde_json::from_str::<Value>(&clear.frame()).unwrap(),
            json!({"type":"moderation","action":"clear"})
        );
    }

    #[test]
    fn frames() {
        let f = ModEvent::Timeout {
            user_id: 1,
            username: "bob".into(),
            until: "2026-11-22T08:10:00Z".into(),
            until_unix: 0,
            tenant: false,
        }
        .frame();
        assert_eq!(
            serde_json::from_str::<Value>(&f).unwrap(),
            json!({"type":"moderation","action":"timeout","username":"bob","until":"2026-11-22T08:10:00Z"})
        );
    }
}
