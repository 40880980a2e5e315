//! Property tests over everything a client's frame goes through before it
//! reaches a room: frame parsing, chat text cleaning, moderation commands and
//! blocked-term matching. No input may panic, and what passes must satisfy the
//! protocol's rules. (Run in CI with the rest of the unit tests.)

use proptest::prelude::*;
use serde_json::Value;

use crate::{
    domain::{ChatText, MAX_CHAT_CHARS},
    moderation::{blocked, Command},
    protocol::{parse_client_frame, ClientFrame},
};

/// Arbitrary JSON values, a few levels deep, with the protocol's keys likely.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("message"),
            Just("reaction"),
            Just("delete"),
            Just("ban"),
            Just("timeout"),
            Just("slow_mode"),
            Just("clear"),
            Just("pin"),
            Just("unpin"),
            Just("unban"),
            Just("tenant"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("type".to_string()),
                        Just("message".to_string()),
                        Just("client_id".to_string()),
                        Just("stamp_id".to_string()),
                        Just("message_id".to_string()),
                        Just("username".to_string()),
                        Just("seconds".to_string()),
                        Just("scope".to_string()),
                        Just("reason".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_frame_parses_or_errors(text in ".{0,300}") {
        let _ = parse_client_frame(&text);
    }

    #[test]
    fn any_json_frame_parses_or_errors(v in json_value()) {
        let text = v.to_string();
        if let Ok(ClientFrame::Message { client_id, .. }) = parse_client_frame(&text) {
            prop_assert!(client_id.is_none_or(|c| c.chars().count() <= 64));
        }
        let _ = Command::parse_json(&text);
    }

    #[test]
    fn chat_text_obeys_the_rules(raw in "(.|\\s|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]){0,700}") {
        if let Ok(t) = ChatText::parse(&raw) {
            let s = t.as_str();
            prop_assert!(!s.is_empty());
            prop_assert!(s.chars().count() <= MAX_CHAT_CHARS);
            prop_assert_eq!(s.trim(), s);
            prop_assert!(s.chars().all(|c| c == '\n' || !c.is_control()));
            prop_assert!(!s.contains('\r') && !s.contains('\t'));
        }
    }

    #[test]
    fn blocked_terms_never_panic(terms in prop::collection::vec(".{0,20}", 0..5), msg in ".{0,200}") {
        let prepared: Vec<_> = terms.iter().filter_map(|t| blocked::BlockedTerm::new(t)).collect();
        let _ = blocked::find(&prepared, &msg);
    }
}
