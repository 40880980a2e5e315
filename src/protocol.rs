//! Wire frames of the WebSocket protocol (PROTOCOL.md): parsing client frames
//! and serialising server frames. A server frame is serialised once into a
//! [`ByteString`] and shared by every socket that receives it.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

use crate::{domain::Role, error::Code, store::messages::StoredMessage};

/// Most characters of a `client_id`.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// A chat message: `{"message": ...}` or `{"type":"message", ...}`.
    Message {
        /// Raw text (cleaned and checked later).
        text: String,
        /// Idempotency key.
        client_id: Option<String>,
        /// The message replied to.
        reply_to: Option<i64>,
    },
    /// `{"type":"edit","message_id":N,"message":...}`: the author edits a message.
    Edit {
        /// The message edited.
        message_id: i64,
        /// Raw new text (cleaned and checked later).
        text: String,
    },
    /// `{"type":"reaction","stamp_id":N}`.
    Reaction {
        /// The stamp.
        stamp_id: i64,
    },
    /// A moderation command (`delete`, `pin`, `ban`, ...).
    Moderation(crate::moderation::Command),
}

/// A client frame that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// Wire code.
    pub code: Code,
    /// Message for the user.
    pub message: &'static str,
}

fn err(code: Code, message: &'static str) -> FrameError {
    FrameError { code, message }
}

/// The fields a client frame may carry, borrowed from the frame's text as raw
/// JSON: unknown fields are skipped without being built, and nothing is
/// allocated for a field until its frame type reads it. `null` and a missing
/// field are the same (`None`).
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    client_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reply_to: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stamp_id: Option<&'a RawValue>,
}

/// A raw JSON string's text, or `None` when it is another kind of value.
pub(crate) fn string(raw: &RawValue) -> Option<String> {
    raw.get()
        .starts_with('"')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

/// A raw JSON integer that fits an `i64`, or `None`.
pub(crate) fn integer(raw: &RawValue) -> Option<i64> {
    serde_json::from_str(raw.get()).ok()
}

/// A raw JSON `true` or `false`, or `None`.
pub(crate) fn boolean(raw: &RawValue) -> Option<bool> {
    match raw.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses one text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    if !text.trim_start().starts_with('{') {
        // A derived struct would also accept an array; tell apart what is
        // not JSON from JSON that is not an object.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => err(Code::InvalidJson, "The frame must be a JSON object."),
            Err(_) => err(Code::InvalidJson, "The frame is not valid JSON."),
        });
    }
    let fields: Fields = serde_json::from_str(text)
        .map_err(|_| err(Code::InvalidJson, "The frame is not valid JSON."))?;
    let kind = match fields.kind {
        None => std::borrow::Cow::Borrowed("message"),
        Some(raw) => match string(raw) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => return Err(err(Code::UnknownType, "Unknown frame type.")),
        },
    };
    let text_of = |raw: Option<&RawValue>| {
        raw.and_then(string)
            .ok_or_else(|| err(Code::Invalid, "\"message\" must be a string."))
    };
    match kind.as_ref() {
        "message" => {
            let text = text_of(fields.message)?;
            let client_id = match fields.client_id {
                None => None,
                Some(raw) => match string(raw) {
                    Some(s) if s.chars().count() <= MAX_CLIENT_ID_CHARS => Some(s),
                    Some(_) => {
                        return Err(err(
                            Code::Invalid,
                            "\"client_id\" is longer than 64 characters.",
                        ))
                    }
                    None => return Err(err(Code::Invalid, "\"client_id\" must be a string.")),
                },
            };
            let reply_to = match fields.reply_to {
                None => None,
                Some(raw) => Some(
                    integer(raw)
                        .ok_or_else(|| err(Code::Invalid, "\"reply_to\" must be an integer."))?,
                ),
            };
            Ok(ClientFrame::Message {
                text,
                client_id,
                reply_to,
            })
        }
        "edit" => {
            let message_id = fields
                .message_id
                .and_then(integer)
                .ok_or_else(|| err(Code::Invalid, "\"message_id\" must be an integer."))?;
            let text = text_of(fields.message)?;
            Ok(ClientFrame::Edit { message_id, text })
        }
        "reaction" => match fields.stamp_id.and_then(integer) {
            Some(stamp_id) => Ok(ClientFrame::Reaction { stamp_id }),
            None => Err(err(Code::Invalid, "\"stamp_id\" must be an integer.")),
        },
        kind if crate::moderation::Command::is_moderation_type(kind) => {
            // Moderation frames are rare and have fields of their own: the
            // command parser shared with the HTTP route reads the text again
            // into its own borrowed fields.
            crate::moderation::Command::parse_json(text)
                .map(ClientFrame::Moderation)
                .map_err(|(code, message)| err(code, message))
        }
        _ => Err(err(Code::UnknownType, "Unknown frame type.")),
    }
}

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const TIMESTAMP_SECONDS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `2026-11-22T08:00:00.123Z`.
pub fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .unwrap_or_default()
}

/// `2026-11-22T08:10:00Z` (whole seconds, for ends of bans and timeouts).
pub fn timestamp_seconds(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP_SECONDS)
        .unwrap_or_default()
}

fn to_frame<T: Serialize>(value: &T) -> ByteString {
    ByteString::from(serde_json::to_string(value).expect("frames serialise"))
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    username: &'a str,
    message: &'a str,
    message_type: &'static str,
    timestamp: String,
    role: Option<&'static str>,
    client_id: Option<&'a str>,
    reply_to: Option<ReplyView<'a>>,
    mentions: &'a [String],
    edited_at: Option<String>,
    /// Only on a hidden user's messages (seen by them and moderators).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hidden: bool,
}

#[derive(Serialize)]
struct ReplyView<'a> {
    id: i64,
    username: Option<&'a str>,
    excerpt: &'a str,
}

/// The `message` frame of a stored message.
pub fn message_frame(m: &StoredMessage) -> ByteString {
    to_frame(&MessageFrame {
        kind: "message",
        id: m.id,
        username: m.username.as_deref().unwrap_or("system"),
        message: &m.content,
        message_type: m.message_type.as_str(),
        timestamp: timestamp(m.created_at),
        role: m.role.map(Role::as_str),
        client_id: m.client_id.as_deref(),
        reply_to: m.reply_to.as_ref().map(|r| ReplyView {
            id: r.id,
            username: r.username.as_deref(),
            excerpt: &r.excerpt,
        }),
        mentions: &m.mentions,
        edited_at: m.edited_at.map(timestamp),
        hidden: m.hidden,
    })
}

/// `{"type":"edit","message_id":N,"message":...,"edited_at":...,"mentions":[...]}`.
pub fn edit_frame(m: &StoredMessage) -> ByteString {
    to_frame(&serde_json::json!({
        "type": "edit", "message_id": m.id, "message": m.content,
        "edited_at": m.edited_at.map(timestamp), "mentions": m.mentions,
    }))
}

/// `{"type":"history","messages":[...],"truncated":...}` from already-serialised messages.
pub fn history_frame<'a>(
    messages: impl Iterator<Item = &'a ByteString>,
    truncated: bool,
) -> ByteString {
    let mut s = String::with_capacity(256);
    s.push_str("{\"type\":\"history\",\"messages\":[");
    for (i, m) in messages.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(m);
    }
    s.push_str("],\"truncated\":");
    s.push_str(if truncated { "true" } else { "false" });
    s.push('}');
    ByteString::from(s)
}

/// `{"type":"ack","client_id":...,"id":N}`.
pub fn ack_frame(client_id: Option<&str>, id: i64) -> ByteString {
    to_frame(&serde_json::json!({"type": "ack", "client_id": client_id, "id": id}))
}

/// `{"type":"error",...}`; `client_id` names the message refused, when there is one.
pub fn error_frame(
    code: Code,
    message: &str,
    retry_after_ms: Option<u64>,
    client_id: Option<&str>,
) -> ByteString {
    let mut v = serde_json::json!({"type": "error", "code": code.as_str(), "message": message});
    if let Some(ms) = retry_after_ms {
        v["retry_after_ms"] = ms.into();
    }
    if let Some(c) = client_id {
        v["client_id"] = c.into();
    }
    to_frame(&v)
}

/// An error with the time a restriction ends (`timed_out`).
pub fn error_frame_until(
    code: Code,
    message: &str,
    retry_after_ms: u64,
    until: &str,
    client_id: Option<&str>,
) -> ByteString {
    let mut v = serde_json::json!({
        "type": "error", "code": code.as_str(), "message": message,
        "retry_after_ms": retry_after_ms, "until": until,
    });
    if let Some(c) = client_id {
        v["client_id"] = c.into();
    }
    to_frame(&v)
}

/// A `join` or `leave` notice (`kind`): a `message` frame that is never
/// stored, so its `id` is null.
pub fn announce_frame(username: &str, role: Role, kind: &'static str) -> ByteString {
    let text = match kind {
        "join" => format!("{username} joined"),
        _ => format!("{username} left"),
    };
    to_frame(&serde_json::json!({
        "type": "message", "id": null, "username": username, "message": text,
        "message_type": kind, "timestamp": timestamp(OffsetDateTime::now_utc()),
        "role": role.as_str(), "client_id": null, "reply_to": null, "mentions": [], "edited_at": null,
    }))
}

/// The author's `ack` of an approved held message.
pub fn ack_frame_held(client_id: Option<&str>, id: i64, held_id: i64) -> ByteString {
    to_frame(&serde_json::json!({"type":"ack","client_id":client_id,"id":id,"held_id":held_id}))
}

/// The author's `error` for a denied held message.
pub fn denied_frame(client_id: Option<&str>, held_id: i64) -> ByteString {
    to_frame(&serde_json::json!({
        "type":"error","code":"denied","message":"A moderator did not let your message through.",
        "held_id":held_id,"client_id":client_id,
    }))
}

/// What a held message is to its author: `{"type":"held","held_id","client_id"}`.
pub fn held_ack_frame(client_id: Option<&str>, held_id: i64) -> ByteString {
    to_frame(&serde_json::json!({"type":"held","held_id":held_id,"client_id":client_id}))
}

/// A held message as moderators see it (`held` frames and `held_queue` items).
pub fn held_item(h: &crate::store::held::Held) -> serde_json::Value {
    serde_json::json!({
        "type":"held","held_id":h.id,"username":h.username,"message":h.body.content,
        "reason":h.reason,"timestamp":timestamp(h.created_at),
    })
}

/// `{"type":"presence","viewers":N}`.
pub fn presence_frame(viewers: u64) -> ByteString {
    to_frame(&serde_json::json!({"type": "presence", "viewers": viewers}))
}

/// A stamp as listed in `hello` and `reactions`.
#[derive(Debug, Clone, Serialize)]
pub struct StampView {
    /// Id (1–6 seeded).
    pub stamp_id: i32,
    /// `:smile:`.
    pub stamp_name: String,
    /// `/static/stamps/01_smile.svg`.
    pub stamp_image_url: String,
}

/// The `hello` frame's data.
#[derive(Serialize)]
pub struct Hello<'a> {
    #[serde(rename = "type")]
    /// Always `hello`.
    pub kind: &'static str,
    /// The stream.
    pub stream_id: i64,
    /// The user, or null for anonymous viewers.
    pub user: Option<UserView<'a>>,
    /// Whether this socket may chat now.
    pub can_chat: bool,
    /// Slow mode seconds.
    pub slow_mode_seconds: i32,
    /// Chat modes.
    pub modes: &'a crate::rooms::modes::Modes,
    /// Open sockets on the stream.
    pub viewers: u64,
    /// The pinned message, if any (already serialised).
    pub pinned: Option<&'a serde_json::value::RawValue>,
    /// The tenant's stamps.
    pub stamps: &'a [StampView],
}

/// `{"username","role"}`.
#[derive(Serialize)]
pub struct UserView<'a> {
    /// Username.
    pub username: &'a str,
    /// Role.
    pub role: &'a str,
}

/// Serialises `hello`.
pub fn hello_frame(h: &Hello<'_>) -> ByteString {
    to_frame(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_frames_get_the_documented_codes() {
        let code = |t: &str| parse_client_frame(t).unwrap_err();
        assert_eq!(code("nonsense").message, "The frame is not valid JSON.");
        assert_eq!(code("[1, 2]").message, "The frame must be a JSON object.");
        assert_eq!(
            code(" \"text\"").message,
            "The frame must be a JSON object."
        );
        assert_eq!(code("{\"message\":\"x\"} trailing").code, Code::InvalidJson);
        assert_eq!(code("{\"type\":5}").code, Code::UnknownType);
        assert_eq!(code("{\"type\":\"nope\"}").code, Code::UnknownType);
        assert_eq!(code("{\"message\":5}").code, Code::Invalid);
        assert_eq!(
            code("{\"message\":\"x\",\"reply_to\":1.5}").code,
            Code::Invalid
        );
        assert_eq!(
            code("{\"message\":\"x\",\"client_id\":7}").code,
            Code::Invalid
        );
        assert_eq!(
            code("{\"type\":\"reaction\",\"stamp_id\":\"1\"}").code,
            Code::Invalid
        );
        assert_eq!(
            code("{\"type\":\"edit\",\"message\":\"x\"}").code,
            Code::Invalid
        );
        // null is the same as missing; escapes and unknown fields are fine.
        assert_eq!(
            parse_client_frame(
                "{\"type\":null,\"message\":\"caf\\u00e9\",\"client_id\":null,\"reply_to\":null,\"x\":[{}]}"
            )
            .unwrap(),
            ClientFrame::Message {
                text: "café".into(),
                client_id: None,
                reply_to: None
            }
        );
    }

    #[test]
    fn parses_seed_and_typed_frames() {
        assert_eq!(
            parse_client_frame(r#"{"message":"hi"}"#).unwrap(),
            ClientFrame::Message {
                text: "hi".into(),
                client_id: None,
                reply_to: None
            }
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"message","message":"hi","client_id":"c-1","x":1}"#)
                .unwrap(),
            ClientFrame::Message {
                text: "hi".into(),
                client_id: Some("c-1".into()),
                reply_to: None
            }
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"message","message":"yes","reply_to":42}"#).unwrap(),
            ClientFrame::Message {
                text: "yes".into(),
                client_id: None,
                reply_to: Some(42)
            }
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"edit","message_id":7,"message":"fixed"}"#).unwrap(),
            ClientFrame::Edit {
                message_id: 7,
                text: "fixed".into()
            }
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"reaction","stamp_id":3,"stamp_name":"x"}"#).unwrap(),
            ClientFrame::Reaction { stamp_id: 3 }
        );
    }

    #[test]
    fn errors_have_codes() {
        let code = |s: &str| parse_client_frame(s).unwrap_err().code;
        assert_eq!(code("{"), Code::InvalidJson);
        assert_eq!(code("[1]"), Code::InvalidJson);
        assert_eq!(code(r#"{"type":"dance"}"#), Code::UnknownType);
        assert_eq!(code(r#"{"type":7}"#), Code::UnknownType);
        assert_eq!(code(r#"{"message":5}"#), Code::Invalid);
        assert_eq!(
            code(&format!(
                r#"{{"message":"a","client_id":"{}"}}"#,
                "x".repeat(65)
            )),
            Code::Invalid
        );
        assert_eq!(code(r#"{"type":"reaction","stamp_id":"1"}"#), Code::Invalid);
        assert_eq!(code(r#"{"message":"a","reply_to":"1"}"#), Code::Invalid);
        assert_eq!(code(r#"{"type":"edit","message":"a"}"#), Code::Invalid);
        assert_eq!(code(r#"{"type":"edit","message_id":1}"#), Code::Invalid);
    }

    #[test]
    fn timestamps() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_334_400_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2026-11-22T08:00:00.123Z");
        assert_eq!(timestamp_seconds(t), "2026-11-22T08:00:00Z");
    }

    #[test]
    fn history_concatenates() {
        let a = ByteString::from_static("{\"id\":1}");
        let f = history_frame([a.clone(), a].iter(), true);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);
        assert_eq!(v["truncated"], true);
    }
}
