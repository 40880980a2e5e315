//! Error types at the edges: the wire error codes shared by WebSocket `error`
//! frames and the JSON API, and their HTTP status mapping. Logs keep the whole
//! cause chain; clients see a short message.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

/// An error code of PROTOCOL.md, as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    NotAuthenticated,
    InvalidJson,
    UnknownType,
    Empty,
    TooLong,
    RateLimited,
    SlowMode,
    Banned,
    TimedOut,
    BlockedTerm,
    Forbidden,
    NotFound,
    ChatClosed,
    Csrf,
    Invalid,
    Unavailable,
    EditWindow,
    StampsOnly,
    TooNew,
    Duplicate,
    Denied,
}

impl Code {
    /// The code as text.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotAuthenticated => "not_authenticated",
            Code::InvalidJson => "invalid_json",
            Code::UnknownType => "unknown_type",
            Code::Empty => "empty",
            Code::TooLong => "too_long",
            Code::RateLimited => "rate_limited",
            Code::SlowMode => "slow_mode",
            Code::Banned => "banned",
            Code::TimedOut => "timed_out",
            Code::BlockedTerm => "blocked_term",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::ChatClosed => "chat_closed",
            Code::Csrf => "csrf",
            Code::Invalid => "invalid",
            Code::Unavailable => "unavailable",
            Code::EditWindow => "edit_window",
            Code::StampsOnly => "stamps_only",
            Code::TooNew => "too_new",
            Code::Duplicate => "duplicate",
            Code::Denied => "denied",
        }
    }

    /// Every code.
    pub const ALL: [Code; 21] = [
        Code::NotAuthenticated,
        Code::InvalidJson,
        Code::UnknownType,
        Code::Empty,
        Code::TooLong,
        Code::RateLimited,
        Code::SlowMode,
        Code::Banned,
        Code::TimedOut,
        Code::BlockedTerm,
        Code::Forbidden,
        Code::NotFound,
        Code::ChatClosed,
        Code::Csrf,
        Code::Invalid,
        Code::Unavailable,
        Code::EditWindow,
        Code::StampsOnly,
        Code::TooNew,
        Code::Duplicate,
        Code::Denied,
    ];

    /// The code of a wire name (`rate_limited` → [`Code::RateLimited`]).
    pub fn parse(raw: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// The HTTP status for this code on the JSON API.
    pub fn status(self) -> StatusCode {
        match self {
            Code::NotAuthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden | Code::Csrf | Code::Banned | Code::TimedOut | Code::TooNew => {
                StatusCode::FORBIDDEN
            }
            Code::ChatClosed => StatusCode::CONFLICT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::RateLimited | Code::SlowMode => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// An error returned by a JSON API handler.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal the client can act on.
    #[error("{message}")]
    Client {
        code: Code,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// Storage could not be reached.
    #[error("storage unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure: logged in full, reported as `unavailable`.
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// A client error with a message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError::Client {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// `rate_limited` with a retry hint.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        ApiError::Client {
            code: Code::RateLimited,
            message: "Too many attempts, try again later.".into(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// The wire code of this error.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::Unavailable(_) | ApiError::Unexpected(_) => Code::Unavailable,
        }
    }
}

impl From<crate::auth::HashBusy> for ApiError {
    fn from(_: crate::auth::HashBusy) -> Self {
        ApiError::Client {
            code: Code::Unavailable,
            message: "The server is busy, try again shortly.".into(),
            retry_after_ms: Some(1000),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Unavailable(e.into())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let (message, retry) = match self {
            ApiError::Client {
                message,
                retry_after_ms,
                ..
            } => (message.as_str(), *retry_after_ms),
            ApiError::Unavailable(e) => {
                tracing::warn!(error = ?e, "storage unavailable");
                ("The service is unavailable, try again shortly.", None)
            }
            ApiError::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected error");
                ("The service is unavailable, try again shortly.", None)
            }
        };
        let mut res = HttpResponse::build(self.status_code());
        if let Some(ms) = retry {
            res.insert_header(("Retry-After", ms.div_ceil(1000).max(1).to_string()));
        }
        res.json(Body {
            error: Inner {
                code: self.code().as_str(),
                message,
                retry_after_ms: retry,
            },
        })
    }
}
