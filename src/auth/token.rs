//! API tokens: `Authorization: Bearer stp_...`, the scopes they carry, and the
//! one table that says which scope each route needs. The [`super::Visitor`]
//! extractor applies it to every request that carries a token, before any
//! handler runs: a route not in the table is refused to tokens (403), so a new
//! route is closed to tokens until it is declared here.

use actix_web::{http::Method, HttpRequest};

use super::new_token;

/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "stp_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Replay, search, timeline, analytics, moderation logs; open a socket.
    Read,
    /// Post messages (HTTP and socket), react, create streams.
    Chat,
    /// Moderation routes and socket moderation commands.
    Moderate,
}

impl Scope {
    /// Parses `read|chat|moderate`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "read" => Ok(Self::Read),
            "chat" => Ok(Self::Chat),
            "moderate" => Ok(Self::Moderate),
            _ => Err(format!("invalid scope {raw:?}: use read, chat or moderate")),
        }
    }

    /// The scope as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Chat => "chat",
            Self::Moderate => "moderate",
        }
    }
}

/// Parses a comma-separated scope list (`read,chat`): at least one, no repeats.
pub fn parse_scopes(raw: &str) -> Result<Vec<Scope>, String> {
    let mut out: Vec<Scope> = Vec::new();
    for part in raw.split(',').map(str::trim) {
        let s = Scope::parse(part)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err("no scopes: give read, chat and/or moderate".into());
    }
    Ok(out)
}

/// A request authenticated by a token: which token and what it may do.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// Token id.
    pub id: i64,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

impl TokenAuth {
    /// True when the token carries `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A new token secret: `stp_` and 64 hex digits (256 random bits).
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", new_token())
}

/// The token of an `Authorization: Bearer ...` header. `Some(Err(()))` when a
/// bearer credential is there but cannot be a token (refused without a query).
pub fn bearer(req: &HttpRequest) -> Option<Result<String, ()>> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    let ok = token
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    Some(if ok { Ok(token.to_string()) } else { Err(()) })
}

/// What a token needs on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// This scope.
    Scope(Scope),
    /// Any valid token (the WebSocket: each frame kind is checked on the socket).
    AnyScope,
}

// Short names for the table below, so that each route stays on one line.
const READ: Need = Need::Scope(Scope::Read);
const CHAT: Need = Need::Scope(Scope::Chat);
const MODERATE: Need = Need::Scope(Scope::Moderate);

/// The scope each route needs from a token, by method and route pattern.
/// Routes not listed (pages, login, logout, password, status) refuse tokens.
const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/api/streams/{id}/messages", READ),
    ("GET", "/api/streams/{id}/search", READ),
    ("GET", "/api/search", READ),
    ("GET", "/api/streams/{id}/messages/{mid}/versions", READ),
    ("GET", "/api/streams/{id}/timeline", READ),
    ("GET", "/api/streams/{id}/reactions", READ),
    ("GET", "/api/streams/{id}/reactions.csv", READ),
    ("GET", "/api/streams/{id}/moderation/log", READ),
    ("POST", "/api/streams/{id}/messages", CHAT),
    ("POST", "/api/streams", CHAT),
    ("POST", "/api/streams/{id}/moderation", MODERATE),
    ("GET", "/api/streams/{id}/moderators", MODERATE),
    ("POST", "/api/streams/{id}/moderators", MODERATE),
    ("GET", "/api/streams/{id}/blocked_terms", MODERATE),
    ("POST", "/api/streams/{id}/blocked_terms", MODERATE),
    ("GET", "/ws/chat/stream_{id}/", Need::AnyScope),
];

/// What a token needs for this request, or `None` when tokens may not use it.
pub fn route_need(method: &Method, pattern: Option<&str>) -> Option<Need> {
    let pattern = pattern?;
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == pattern)
        .map(|(_, _, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse_scopes("read,chat,read").unwrap(),
            vec![Scope::Read, Scope::Chat]
        );
        assert!(parse_scopes("read,admin").is_err());
        assert!(parse_scopes("").is_err());
    }

    #[test]
    fn bearer_header() {
        let t = new_api_token();
        let req = TestRequest::default()
            .insert_header(("Authorization", format!("Bearer {t}")))
            .to_http_request();
        assert_eq!(bearer(&req), Some(Ok(t)));
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer nope"))
            .to_http_request();
        assert_eq!(bearer(&req), Some(Err(())));
        let req = TestRequest::default()
            .insert_header(("Authorization", "Basic abc"))
            .to_http_request();
        assert_eq!(bearer(&req), None);
    }

    #[test]
    fn routes_need_scopes() {
        assert_eq!(
            route_need(&Method::GET, Some("/api/streams/{id}/messages")),
            Some(Need::Scope(Scope::Read))
        );
        assert_eq!(
            route_need(&Method::POST, Some("/api/streams/{id}/messages")),
            Some(Need::Scope(Scope::Chat))
        );
        assert_eq!(route_need(&Method::POST, Some("/api/login")), None);
        assert_eq!(route_need(&Method::GET, None), None);
    }
}
