//! Which tenant a request belongs to: its `Host` header (port stripped,
//! lower-cased) looked up in `public.domains`, cached for at most
//! [`CACHE_TTL`] so `tenant add-domain`, `configure` and `delete` reach running
//! nodes quickly. The cache is bounded, and hosts that are no tenant's cannot
//! push tenants' hosts out of it.

use std::{
    collections::HashMap,
    future::{ready, Future},
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{
    dev::Payload, http::StatusCode, web, FromRequest, HttpMessage, HttpRequest, HttpResponse,
    ResponseError,
};

use tokio::sync::Semaphore;

use crate::{
    domain::normalize_host,
    store::{tenants::Tenant, Store},
};

/// Longest a cached host → tenant answer (positive or negative) is used.
pub const CACHE_TTL: Duration = Duration::from_secs(4);

/// Most hosts of tenants kept (they come from `public.domains`, so only the
/// operator can grow them); past this the least recently fetched goes.
const KNOWN_MAX: usize = 10_000;

/// Most unknown hosts remembered; past this only they are forgotten, never a
/// known tenant.
const UNKNOWN_MAX: usize = 4_096;

/// Lookups of hosts not known as tenants' that may run at once, and how long
/// one waits for its turn before answering 503: a flood of random `Host`
/// headers holds at most this many database connections.
const UNKNOWN_LOOKUPS: usize = 4;
const UNKNOWN_WAIT: Duration = Duration::from_secs(2);

/// Host → tenant resolution with a short, bounded cache in two parts: hosts of
/// tenants, and hosts that are not. Unknown hosts (anyone can send any `Host`)
/// only ever push out other unknown hosts, and their lookups run a few at a
/// time; a known tenant's host is refreshed without waiting behind them.
pub struct TenantResolver {
    store: Store,
    ttl: Duration,
    known: Mutex<HashMap<String, (Instant, Arc<Tenant>)>>,
    unknown: Mutex<HashMap<String, Instant>>,
    unknown_lookups: Semaphore,
}

impl TenantResolver {
    /// A resolver over the given store.
    pub fn new(store: Store) -> Self {
        Self::with_ttl(store, CACHE_TTL)
    }

    /// A resolver whose answers live `ttl` (tests).
    pub fn with_ttl(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            known: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
            unknown_lookups: Semaphore::new(UNKNOWN_LOOKUPS),
        }
    }

    /// Hosts cached now: (of tenants, unknown).
    pub fn cached(&self) -> (usize, usize) {
        (
            self.known.lock().unwrap().len(),
            self.unknown.lock().unwrap().len(),
        )
    }

    /// A fresh cached answer: `Some(Some(t))` a tenant's host, `Some(None)` a
    /// known miss, `None` not cached (or stale).
    fn cached_answer(&self, host: &str) -> Option<Option<Arc<Tenant>>> {
        if let Some((at, t)) = self.known.lock().unwrap().get(host) {
            if at.elapsed() < self.ttl {
                return Some(Some(t.clone()));
            }
        }
        match self.unknown.lock().unwrap().get(host) {
            Some(at) if at.elapsed() < self.ttl => Some(None),
            _ => None,
        }
    }

    /// The tenant of a normalised host, or `None` when no tenant has it.
    pub async fn resolve(&self, host: &str) -> Result<Option<Arc<Tenant>>, TenantLookupError> {
        if let Some(answer) = self.cached_answer(host) {
            return Ok(answer);
        }
        let was_known = self.known.lock().unwrap().contains_key(host);
        let _turn = if was_known {
            None
        } else {
            let turn = tokio::time::timeout(UNKNOWN_WAIT, self.unknown_lookups.acquire())
                .await
                .map_err(|_| TenantLookupError::Unavailable)?
                .map_err(|_| TenantLookupError::Unavailable)?;
            // Another request may have looked it up meanwhile.
            if let Some(answer) = self.cached_answer(host) {
                return Ok(answer);
            }
            Some(turn)
        };
        let found = self
            .store
            .tenant_by_host(host)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "tenant lookup failed");
                TenantLookupError::Unavailable
            })?
            .map(Arc::new);
        let now = Instant::now();
        match &found {
            Some(t) => {
                self.unknown.lock().unwrap().remove(host);
                let mut known = self.known.lock().unwrap();
                if known.len() >= KNOWN_MAX && !known.contains_key(host) {
                    let oldest = known
                        .iter()
                        .min_by_key(|(_, (at, _))| *at)
                        .map(|(h, _)| h.clone());
                    if let Some(oldest) = oldest {
                        known.remove(&oldest);
                    }
                }
                known.insert(host.to_string(), (now, t.clone()));
            }
            None => {
                self.known.lock().unwrap().remove(host);
                let mut unknown = self.unknown.lock().unwrap();
                if unknown.len() >= UNKNOWN_MAX {
                    unknown.clear();
                }
                unknown.insert(host.to_string(), now);
            }
        }
        Ok(found)
    }

    /// Resolves the tenant of a request from its `Host` header (or URI authority).
    pub async fn for_request(&self, req: &HttpRequest) -> Result<Arc<Tenant>, TenantLookupError> {
        let raw = req
            .headers()
            .get(actix_web::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let host = normalize_host(raw).ok_or(TenantLookupError::Unknown)?;
        self.resolve(&host).await?.ok_or(TenantLookupError::Unknown)
    }
}

/// Why no tenant could be found for a request.
#[derive(Debug, thiserror::Error)]
pub enum TenantLookupError {
    /// No tenant has this host. The answer names no tenant.
    #[error("Not found")]
    Unknown,
    /// PostgreSQL did not answer.
    #[error("Service unavailable")]
    Unavailable,
}

impl ResponseError for TenantLookupError {
    fn status_code(&self) -> StatusCode {
        match self {
            TenantLookupError::Unknown => StatusCode::NOT_FOUND,
            TenantLookupError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

/// Extractor: the request's tenant.
#[derive(Clone)]
pub struct CurrentTenant(pub Arc<Tenant>);

impl std::ops::Deref for CurrentTenant {
    type Target = Tenant;
    fn deref(&self) -> &Tenant {
        &self.0
    }
}

impl FromRequest for CurrentTenant {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // A tenant already resolved for this request (by another extractor) is reused.
        if let Some(t) = req.extensions().get::<CurrentTenant>() {
            let t = t.clone();
            return Box::pin(ready(Ok(t)));
        }
        let req = req.clone();
        Box::pin(async move {
            let resolver = req
                .app_data::<web::Data<TenantResolver>>()
                .expect("TenantResolver registered")
                .clone();
            let tenant = CurrentTenant(resolver.for_request(&req).await?);
            req.extensions_mut().insert(tenant.clone());
            Ok(tenant)
        })
    }
}
