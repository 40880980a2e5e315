//! What the load tool writes and reads on a socket, as pure functions: client
//! frames for the seed protocol (Stampede, the floor, Django Channels) and for
//! centrifuge protocol v1 JSON, and the cheap classification of received frames
//! (no full JSON parse except for the rare `reactions` frame).

use memchr::memmem;

/// Which wire protocol the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// `/ws/chat/stream_{id}/`, `{"message": ...}` in, chat frames out.
    Stampede,
    /// Centrifuge protocol v1 JSON at `/connection/websocket`, channel `stream_{id}`.
    Centrifuge,
}

/// Id of the centrifuge `subscribe` command sent at connect.
pub const CENTRIFUGE_SUBSCRIBE_ID: u32 = 2;

/// The chat text the tool sends: the send time first, so every delivery's
/// end-to-end latency can be read back from the frame that carries it.
pub fn chat_text(sent_unix_nanos: u64, sender: usize, seq: u64) -> String {
    format!("t={sent_unix_nanos} s={sender} n={seq}")
}

/// A chat frame for `proto`; `cmd_id` numbers centrifuge commands.
pub fn chat_frame(proto: Proto, room: i64, text: &str, cmd_id: u32) -> String {
    match proto {
        Proto::Stampede => format!(r#"{{"message":"{text}"}}"#),
        Proto::Centrifuge => format!(
            r#"{{"id":{cmd_id},"method":3,"params":{{"channel":"stream_{room}","data":{{"message":"{text}"}}}}}}"#
        ),
    }
}

/// A reaction frame for `proto` (centrifuge publishes it like any data).
pub fn reaction_frame(proto: Proto, room: i64, stamp_id: u32, cmd_id: u32) -> String {
    match proto {
        Proto::Stampede => format!(r#"{{"type":"reaction","stamp_id":{stamp_id}}}"#),
        Proto::Centrifuge => format!(
            r#"{{"id":{cmd_id},"method":3,"params":{{"channel":"stream_{room}","data":{{"type":"reaction","stamp_id":{stamp_id}}}}}}}"#
        ),
    }
}

/// Centrifuge `connect` (anonymous) and `subscribe` to the room, in one frame:
/// the server reads newline-separated commands in order.
pub fn centrifuge_hello(room: i64) -> String {
    format!(
        "{{\"id\":1,\"params\":{{}}}}\n{{\"id\":{CENTRIFUGE_SUBSCRIBE_ID},\"method\":1,\"params\":{{\"channel\":\"stream_{room}\"}}}}"
    )
}

/// What one received frame (or one line of a centrifuge frame) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A chat delivery sent by the tool at this unix time (ns).
    Chat(u64),
    /// Reactions, with the number of reactions the frame stands for.
    Reactions(u64),
    /// An error, with its code when the frame has one.
    Error(String),
    /// A centrifuge reply to the command with this id (no error).
    Reply(u32),
    /// Anything else (hello, history, presence, acks...).
    Other,
}

/// Splits a centrifuge frame into its newline-separated replies and pushes.
pub fn split_lines(frame: &str) -> impl Iterator<Item = &str> {
    frame.split('\n').filter(|l| !l.trim().is_empty())
}

fn digits_after(s: &[u8], at: usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s.get(at..)? {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

/// The value of `"key":"..."` or `"key": "..."` (no escapes expected).
fn string_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let at = s.find(&pat)? + pat.len();
    let rest = s[at..].trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// Classifies one frame of the seed protocol, or one line of a centrifuge frame.
pub fn classify(line: &str) -> Received {
    let b = line.as_bytes();
    // History replays old messages: never a delivery.
    if memmem::find(b, b"\"history\"").is_some() {
        return Received::Other;
    }
    if let Some(at) = memmem::find(b, b"\"t=") {
        if let Some(t) = digits_after(b, at + 3) {
            return Received::Chat(t);
        }
    }
    if memmem::find(b, b"\"reactions\"").is_some() {
        // Stampede: {"type":"reactions",...,"stamps":[{...,"count":N},...]}
        let total = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v.get("stamps")?.as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.get("count")?.as_u64())
                        .sum::<u64>()
                })
            })
            .unwrap_or(0);
        return Received::Reactions(total);
    }
    if memmem::find(b, b"\"reaction\"").is_some() && memmem::find(b, b"\"stamp_id\"").is_some() {
        // One frame per reaction (Django Channels, or a centrifuge publication).
        return Received::Reactions(1);
    }
    if memmem::find(b, b"\"error\"").is_some() {
        // Seed: {"type":"error","code":"rate_limited",...}; Django has no code;
        // centrifuge: {"id":5,"error":{"code":108,"message":"..."}}.
        let code = string_field(line, "code")
            .map(str::to_string)
            .or_else(|| {
                let at = memmem::find(b, b"\"code\":")?;
                digits_after(b, at + 7).map(|c| c.to_string())
            })
            .unwrap_or_else(|| "error".to_string());
        return Received::Error(code);
    }
    if b.starts_with(b"{\"id\":") {
        if let Some(id) = digits_after(b, 6) {
            return Received::Reply(id as u32);
        }
    }
    Received::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_round_trip_on_every_shape() {
        let text = chat_text(1_700_000_000_123_456_789, 3, 9);
        // Stampede
        let f = format!(
            r#"{{"type":"message","id":42,"username":"b0","message":"{text}","message_type":"message","timestamp":"x","role":"viewer","client_id":null}}"#
        );
        assert_eq!(classify(&f), Received::Chat(1_700_000_000_123_456_789));
        // Django (json.dumps puts spaces after colons)
        let f = format!(
            r#"{{"username": "bench0", "message": "{text}", "message_type": "message", "timestamp": null}}"#
        );
        assert_eq!(classify(&f), Received::Chat(1_700_000_000_123_456_789));
        // Centrifuge push
        let f = format!(
            r#"{{"result":{{"channel":"stream_1","data":{{"data":{{"message":"{text}"}}}}}}}}"#
        );
        assert_eq!(classify(&f), Received::Chat(1_700_000_000_123_456_789));
    }

    #[test]
    fn history_is_not_a_delivery() {
        let f = r#"{"type":"history","messages":[{"type":"message","message":"t=5 s=0 n=0"}],"truncated":false}"#;
        assert_eq!(classify(f), Received::Other);
    }

    #[test]
    fn reactions_are_summed() {
        let f = r#"{"type":"reactions","window_ms":250,"stamps":[{"stamp_id":1,"stamp_name":":smile:","stamp_image_url":"/a","count":37},{"stamp_id":2,"stamp_name":":cry:","stamp_image_url":"/b","count":5}]}"#;
        assert_eq!(classify(f), Received::Reactions(42));
        let f = r#"{"type": "reaction", "stamp_id": 1, "stamp_name": ":smile:", "stamp_image_url": "/m", "username": "bench0"}"#;
        assert_eq!(classify(f), Received::Reactions(1));
    }

    #[test]
    fn errors_and_replies() {
        let f = r#"{"type":"error","code":"rate_limited","message":"x","retry_after_ms":1200}"#;
        assert_eq!(classify(f), Received::Error("rate_limited".into()));
        assert_eq!(
            classify(r#"{"id":7,"error":{"code":103,"message":"permission denied"}}"#),
            Received::Error("103".into())
        );
        assert_eq!(
            classify(r#"{"type": "error", "message": "x"}"#),
            Received::Error("error".into())
        );
        assert_eq!(classify(r#"{"id":2,"result":{}}"#), Received::Reply(2));
        assert_eq!(
            classify(r#"{"type":"ack","client_id":null,"id":3}"#),
            Received::Other
        );
        assert_eq!(
            classify(r#"{"type":"presence","viewers":3}"#),
            Received::Other
        );
    }

    #[test]
    fn centrifuge_frames_split_on_newlines() {
        let frame = "{\"id\":1,\"result\":{\"client\":\"c\"}}\n{\"id\":2,\"result\":{}}\n{\"result\":{\"channel\":\"stream_1\",\"data\":{\"data\":{\"message\":\"t=9 s=0 n=1\"}}}}\n";
        let got: Vec<Received> = split_lines(frame).map(classify).collect();
        assert_eq!(
            got,
            vec![Received::Reply(1), Received::Reply(2), Received::Chat(9)]
        );
    }

    #[test]
    fn frames_are_well_formed_json() {
        for proto in [Proto::Stampede, Proto::Centrifuge] {
            let f = chat_frame(proto, 4, &chat_text(1, 2, 3), 10);
            serde_json::from_str::<serde_json::Value>(&f).unwrap();
            let f = reaction_frame(proto, 4, 2, 11);
            serde_json::from_str::<serde_json::Value>(&f).unwrap();
        }
        for line in split_lines(&centrifuge_hello(3)) {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }
}
