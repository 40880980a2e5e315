//! What several slow suites do over the HTTP API as a logged-in user.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{helpers::TestUser, ws::WsClient};

/// Sets the status of `stream` (`live`, `ended`) as `user`, its owner; it
/// must answer 200.
pub async fn set_status(user: &TestUser<'_>, stream: i64, status: &str) {
    let r = user.set_status(stream, status).await;
    assert_eq!(r.status, 200, "status {status}: {}", r.body);
}

/// Posts each moderation frame in turn as `user`.
pub async fn moderate(user: &TestUser<'_>, stream: i64, frames: &[Value]) {
    for frame in frames {
        let path = format!("/api/streams/{stream}/moderation");
        let r = user.post(&path, frame.clone()).await;
        assert_eq!(r.status, 200, "{frame}: {}", r.body);
    }
}

/// Adds `term` to the blocked terms of `stream`, holding matches for review.
pub async fn hold_term(user: &TestUser<'_>, stream: i64, term: &str) {
    let path = format!("/api/streams/{stream}/blocked_terms");
    let body = json!({"term": term, "action": "add", "mode": "hold"});
    user.post_ok(&path, body).await;
}

/// Reactions: 150 from `a` and 100 from `b`, sockets of one room on two
/// nodes; each side sees all 250, exactly.
pub async fn reactions_cross_nodes(a: &mut WsClient, b: &mut WsClient) {
    a.react_many(150).await;
    b.react_many(100).await;
    assert_eq!(b.reactions_until(250).await, 250);
    assert_eq!(a.reactions_until(250).await, 250);
    a.assert_silent(Duration::from_millis(700)).await;
}
