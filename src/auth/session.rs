//! The session cookie and the [`Visitor`] extractor: who is making this request,
//! on which tenant. Sessions live in the tenant's own schema, so a cookie issued
//! by one tenant is unknown to every other, even on the same node.

use std::{future::Future, pin::Pin, time::Duration};

use actix_web::{
    cookie::{Cookie, SameSite},
    dev::Payload,
    web, FromRequest, HttpRequest,
};
use rand::RngCore;
use time::OffsetDateTime;

use super::token::{self, Need, Scope, TokenAuth};
use crate::{
    error::{ApiError, Code},
    store::{
        accounts::{SessionRecord, User},
        Store,
    },
    tenants::CurrentTenant,
};

/// Cookie settings and the password-hash gate shared by every handler.
pub struct AuthConfig {
    /// Cookie name.
    pub cookie_name: String,
    /// Set `Secure` on the cookie.
    pub secure: bool,
    /// Lifetime of a logged-in session.
    pub ttl: Duration,
    /// Every password hash of a request goes through it.
    pub hashes: super::HashGate,
}

/// Lifetime of an anonymous session (it only carries a CSRF token for forms).
const ANONYMOUS_TTL: Duration = Duration::from_secs(24 * 3600);

/// 32 random bytes from the OS generator, hex: session keys and CSRF tokens.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The requester: the request's tenant and either its session, if the cookie
/// names a live one, or the API token of an `Authorization: Bearer` header.
///
/// A request with a bearer token is the token's user: the cookie is ignored,
/// the token must be live on this tenant (else 401 `not_authenticated`) and
/// carry the scope [`super::token::route_need`] declares for the matched route
/// (else 403 `forbidden`), all before the handler runs. CSRF checks pass for
/// such requests: a browser never attaches the header by itself.
pub struct Visitor {
    /// The request's tenant.
    pub tenant: CurrentTenant,
    /// The session of the cookie (anonymous or logged in), if any.
    pub session: Option<SessionRecord>,
    /// The bearer token and its user, when the request carried one.
    pub token: Option<(TokenAuth, User)>,
}

impl Visitor {
    /// The logged-in user (or the token's user), if any.
    pub fn user(&self) -> Option<&User> {
        match &self.token {
            Some((_, user)) => Some(user),
            None => self.session.as_ref().and_then(|s| s.user.as_ref()),
        }
    }

    /// The token's scopes when the request came with a token (`None` for
    /// cookie sessions, which may do all their user may).
    pub fn token_scopes(&self) -> Option<&[Scope]> {
        self.token.as_ref().map(|(t, _)| t.scopes.as_slice())
    }

    /// The logged-in user, or `not_authenticated`.
    pub fn require_user(&self) -> Result<&User, ApiError> {
        self.user()
            .ok_or_else(|| ApiError::new(Code::NotAuthenticated, "Log in first."))
    }

    /// Checks a submitted CSRF token against the session's (`csrf` when missing or foreign).
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), ApiError> {
        if self.token.is_some() {
            // Authenticated by a header no browser sends on its own.
            return Ok(());
        }
        match (&self.session, submitted) {
            (Some(s), Some(t)) if constant_time_eq(s.csrf_token.as_bytes(), t.as_bytes()) => Ok(()),
            _ => Err(ApiError::new(Code::Csrf, "Missing or invalid CSRF token.")),
        }
    }

    /// Checks the `X-CSRF-Token` header of a JSON API request.
    pub fn check_csrf_header(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.check_csrf(
            req.headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// The CSRF token of the session, if there is one.
    pub fn csrf_token(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.csrf_token.as_str())
    }
}

/// Lets code that takes any requester ([`Visitor`] or [`Acting`]) read it as a
/// `Visitor` (e.g. [`crate::web::extract::ById`]).
impl AsRef<Visitor> for Visitor {
    fn as_ref(&self) -> &Visitor {
        self
    }
}

impl FromRequest for Visitor {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let tenant = CurrentTenant::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let tenant = tenant.await?;
            let config = req.app_data::<web::Data<AuthConfig>>().expect("AuthConfig");
            let store = req.app_data::<web::Data<Store>>().expect("Store");
            if let Some(bearer) = token::bearer(&req) {
                let token = by_token(store, &tenant, bearer, &req).await?;
                return Ok(Visitor {
                    tenant,
                    session: None,
                    token: Some(token),
                });
            }
            let key = req
                .cookie(&config.cookie_name)
                .map(|c| c.value().to_string());
            let session = match key {
                // Keys are 64 hex characters; anything else is not worth a query.
                Some(key) if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) => store
                    .session(&tenant.slug, &key)
                    .await
                    .map_err(ApiError::from)?,
                _ => None,
            };
            Ok(Visitor {
                tenant,
                session,
                token: None,
            })
        })
    }
}

/// A [`Visitor`] who may change something: logged in (or holding a token) and,
/// for a cookie session, carrying the session's CSRF token in `X-CSRF-Token`.
/// Every JSON `POST`/`DELETE` handler takes this instead of a bare `Visitor`,
/// so none can forget the check. Refusals, in order: `not_authenticated`,
/// then `csrf`.
pub struct Acting(pub Visitor);

impl Acting {
    /// The acting user (always present).
    pub fn user(&self) -> &User {
        self.0.user().expect("checked at extraction")
    }
}

impl std::ops::Deref for Acting {
    type Target = Visitor;
    fn deref(&self) -> &Visitor {
        &self.0
    }
}

impl AsRef<Visitor> for Acting {
    fn as_ref(&self) -> &Visitor {
        &self.0
    }
}

// Same shape as Visitor's and CurrentTenant's impls: the trait's boxed future.
impl FromRequest for Acting {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let visitor = Visitor::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let visitor = visitor.await?;
            visitor.require_user()?;
            visitor.check_csrf_header(&req)?;
            Ok(Acting(visitor))
        })
    }
}

/// Authenticates a bearer token and checks the scope the route needs.
async fn by_token(
    store: &Store,
    tenant: &CurrentTenant,
    bearer: Result<String, ()>,
    req: &HttpRequest,
) -> Result<(TokenAuth, User), ApiError> {
    let refused = || ApiError::new(Code::NotAuthenticated, "Unknown or revoked token.");
    let secret = bearer.map_err(|()| refused())?;
    let record = store
        .token(&tenant.slug, &secret)
        .await?
        .ok_or_else(refused)?;
    let auth = TokenAuth {
        id: record.id,
        scopes: record
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    };
    let allowed = match token::route_need(req.method(), req.match_pattern().as_deref()) {
        Some(Need::Scope(scope)) => auth.allows(scope),
        Some(Need::AnyScope) => !auth.scopes.is_empty(),
        None => false,
    };
    if !allowed {
        return Err(ApiError::new(
            Code::Forbidden,
            "This token's scopes do not allow this request.",
        ));
    }
    // Last use, written at most once a minute per token, off the request path.
    let stale = record
        .last_used_at
        .is_none_or(|at| OffsetDateTime::now_utc() - at > time::Duration::minutes(1));
    if stale {
        let store = store.clone();
        let slug = tenant.slug.clone();
        let id = record.id;
        actix_rt::spawn(async move {
            if let Err(e) = store.touch_token(&slug, id).await {
                tracing::debug!(error = %e, "token use not recorded");
            }
        });
    }
    Ok((auth, record.user))
}

impl AuthConfig {
    /// Starts a new session (always a new key: a planted id never becomes
    /// authenticated) and returns it with its cookie.
    pub async fn start_session(
        &self,
        store: &Store,
        tenant: &CurrentTenant,
        user: Option<User>,
    ) -> Result<(SessionRecord, Cookie<'static>), ApiError> {
        let key = new_token();
        let csrf = new_token();
        let ttl = if user.is_some() {
            self.ttl
        } else {
            ANONYMOUS_TTL
        };
        let expires_at = OffsetDateTime::now_utc() + ttl;
        let key_hash = store
            .insert_session(
                &tenant.slug,
                &key,
                user.as_ref().map(|u| u.id),
                &csrf,
                expires_at,
            )
            .await?;
        let record = SessionRecord {
            key_hash,
            user,
            csrf_token: csrf,
            expires_at,
        };
        Ok((record, self.cookie(key, ttl)))
    }

    /// The session cookie: HttpOnly, SameSite=Lax, `Secure` when configured, no Domain.
    pub fn cookie(&self, value: String, ttl: Duration) -> Cookie<'static> {
        Cookie::build(self.cookie_name.clone(), value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(time::Duration::seconds(ttl.as_secs() as i64))
            .finish()
    }

    /// A cookie that removes the session cookie from the browser.
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut c = self.cookie(String::new(), Duration::ZERO);
        c.make_removal();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_token());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
