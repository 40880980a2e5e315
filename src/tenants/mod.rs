//! Which tenant a request belongs to: its `Host` header (port stripped,
//! lower-cased) looked up in `public.domains`, cached for at most
//! [`CACHE_TTL`] so `tenant add-domain`, `configure` and `delete` reach running
//! nodes quickly.

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

use crate::{
    domain::normalize_host,
    store::{tenants::Tenant, Store},
};

/// Longest a cached host → tenant answer (positive or negative) is used.
pub const CACHE_TTL: Duration = Duration::from_secs(4);

/// Most hosts kept; past this the cache is cleared (unknown hosts are cheap to refill).
const CACHE_MAX: usize = 10_000;

/// A cached answer: when it was fetched, and the tenant (or none).
type CacheEntry = (Instant, Option<Arc<Tenant>>);

/// Host → tenant resolution with a short cache.
pub struct TenantResolver {
    store: Store,
    cache: Mutex<HashMap<String, CacheEntry>>,
}

impl TenantResolver {
    /// A resolver over the given store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant of a normalised host, or `None` when no tenant has it.
    pub async fn resolve(&self, host: &str) -> Result<Option<Arc<Tenant>>, TenantLookupError> {
        if let Some((at, hit)) = self.cache.lock().unwrap().get(host) {
            if at.elapsed() < CACHE_TTL {
                return Ok(hit.clone());
            }
        }
        let found = self
            .store
            .tenant_by_host(host)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "tenant lookup failed");
                TenantLookupError::Unavailable
            })?
            .map(Arc::new);
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(host.to_string(), (Instant::now(), found.clone()));
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
