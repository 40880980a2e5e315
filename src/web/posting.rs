//! `POST /api/streams/{id}/messages`: one chat message over HTTP, for bots and
//! integrations (scope `chat`, or a session with CSRF). The body is read by the
//! socket's own frame parser and the text cleaned by the same [`ChatText`];
//! every rule (bans, timeouts, slow mode, rate limit, terms, modes, hold for
//! review, `client_id` idempotency) is the room's, which takes the message as
//! [`Post`] and answers on a one-shot outlet exactly as it answers a socket.
//! The answer frame maps to HTTP: `ack` → 200, `held` → 202, `error` → its
//! code's status (with `Retry-After` when the room gave a wait).

use std::time::Duration;

use actix::prelude::SendError;
use actix_web::{web, HttpResponse};
use serde_json::Value;

use crate::{
    auth::Acting,
    domain::{ChatText, ChatTextError},
    error::{ApiError, Code},
    protocol::{self, ClientFrame},
    rooms::{Hub, Post},
    sessions::outlet,
    web::{extract::ById, room_key, ws::room_user},
};

/// How long a request waits for the room's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(15);

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/streams/{id}/messages", web::post().to(post_message));
}

/// The error of a `ChatText` refusal, worded as the socket words it.
fn text_error(e: ChatTextError) -> ApiError {
    match e {
        ChatTextError::Empty => ApiError::new(Code::Empty, "The message is empty."),
        ChatTextError::TooLong => {
            ApiError::new(Code::TooLong, "The message is longer than 500 characters.")
        }
    }
}

async fn post_message(
    visitor: ById<Acting>,
    body: web::Json<Value>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let user = visitor.user().clone();
    let store = &visitor.store;
    let stream = visitor.watchable_stream().await?;
    // The socket's parser: the same fields, limits and errors.
    let mut body = body.into_inner();
    if let Value::Object(map) = &mut body {
        if map.get("type").is_some_and(|t| t != "message") {
            return Err(ApiError::new(
                Code::Invalid,
                "Only messages are posted here.",
            ));
        }
        map.remove("type");
    }
    let frame = protocol::parse_client_frame(&body.to_string())
        .map_err(|e| ApiError::new(e.code, e.message))?;
    let ClientFrame::Message {
        text,
        client_id,
        reply_to,
    } = frame
    else {
        return Err(ApiError::new(
            Code::Invalid,
            "Only messages are posted here.",
        ));
    };
    hub.metrics().messages_received.inc();
    let text = ChatText::parse(&text).map_err(text_error)?;
    if hub.is_shutting_down() {
        return Err(ApiError::new(
            Code::Unavailable,
            "The server is restarting; send again shortly.",
        ));
    }
    let room_user = room_user(store, &visitor, &user).await?;
    let key = room_key(&visitor, stream.id);
    let (outlet, answers) = outlet::detached(4, hub.metrics().clone());
    let post = Post {
        conn_id: hub.next_conn_id(),
        outlet,
        user: room_user,
        text,
        client_id,
        reply_to,
    };
    let answer = match hub.post(&key, &stream, post, answers, ANSWER_WAIT).await {
        Ok(answer) => answer,
        Err(SendError::Full(_)) => {
            hub.metrics().rate_limited.inc();
            return Err(ApiError::Client {
                code: Code::RateLimited,
                message: "The room is busy; send again shortly.".into(),
                retry_after_ms: Some(1000),
            });
        }
        Err(SendError::Closed(_)) => {
            return Err(ApiError::new(
                Code::Unavailable,
                "The room is restarting; send again shortly.",
            ));
        }
    };
    let unavailable = || {
        ApiError::new(
            Code::Unavailable,
            "The message could not be confirmed; send it again with the same client_id.",
        )
    };
    let frame: Value = answer
        .and_then(|f| serde_json::from_str(&f).ok())
        .ok_or_else(unavailable)?;
    match frame["type"].as_str() {
        Some("ack") => Ok(HttpResponse::Ok().json(serde_json::json!({
            "id": frame["id"],
            "client_id": frame["client_id"],
        }))),
        Some("held") => Ok(HttpResponse::Accepted().json(serde_json::json!({
            "held_id": frame["held_id"],
            "client_id": frame["client_id"],
        }))),
        Some("error") => {
            let code = frame["code"]
                .as_str()
                .and_then(Code::parse)
                .ok_or_else(unavailable)?;
            Err(ApiError::Client {
                code,
                message: frame["message"].as_str().unwrap_or_default().to_string(),
                retry_after_ms: frame["retry_after_ms"].as_u64(),
            })
        }
        _ => Err(unavailable()),
    }
}
