//! [`ById`]: the extractor of the handlers whose path names one record by
//! `{id}` (a stream, a webhook, a token), built on [`Visitor`] and [`Acting`].

use std::{future::Future, ops::Deref, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use crate::{
    auth::Visitor,
    domain::Role,
    error::{ApiError, Code},
    store::{accounts::User, streams::Stream, Store},
    web::{
        api::{readable_stream, watchable_stream},
        moderation::{moderated_stream, user_and_stream},
    },
};

/// A request about the record `{id}` of its path: the requester `V` (a
/// [`Visitor`], or an [`Acting`](crate::auth::Acting) one for changes), the id
/// and the store.
///
/// It is extracted as `V`, `web::Path<i64>` and `web::Data<Store>` in that
/// order, so its refusals, and their order against the handler's other
/// extractors, are those of taking the three one by one. What the visitor may
/// do with the record is checked by the handler, after extraction (a stream:
/// [`ById::watchable_stream`], [`ById::readable_stream`], [`ById::moderated_stream`],
/// [`ById::owned_stream`]). Derefs to `V`.
pub struct ById<V = Visitor> {
    /// The requester.
    pub visitor: V,
    /// The `{id}` of the path.
    pub id: i64,
    /// The store.
    pub store: web::Data<Store>,
}

impl<V> Deref for ById<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.visitor
    }
}

impl<V> FromRequest for ById<V>
where
    V: FromRequest + 'static,
{
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let parts = <(V, web::Path<i64>, web::Data<Store>)>::from_request(req, payload);
        Box::pin(async move {
            let (visitor, id, store) = parts.await?;
            Ok(ById {
                visitor,
                id: id.into_inner(),
                store,
            })
        })
    }
}

impl<V: AsRef<Visitor>> ById<V> {
    /// The stream `{id}`, if the visitor may watch it (see [`watchable_stream`]).
    pub async fn watchable_stream(&self) -> Result<Stream, ApiError> {
        watchable_stream(self.visitor.as_ref(), &self.store, self.id).await
    }

    /// The stream `{id}`, if the visitor may read its chat (see [`readable_stream`]).
    pub async fn readable_stream(&self) -> Result<Stream, ApiError> {
        readable_stream(self.visitor.as_ref(), &self.store, self.id).await
    }

    /// The visitor's user and the stream `{id}`, when the user moderates it
    /// (see [`moderated_stream`]; 403 with `refusal` otherwise).
    pub async fn moderated_stream(
        &self,
        refusal: &'static str,
    ) -> Result<(&User, Stream), ApiError> {
        moderated_stream(self.visitor.as_ref(), &self.store, self.id, refusal).await
    }

    /// The visitor's user and the stream `{id}`, when the user owns it or is an
    /// admin: 401 without a user, 404 without the stream, 403 with `refusal`
    /// otherwise.
    pub async fn owned_stream(&self, refusal: &'static str) -> Result<(&User, Stream), ApiError> {
        let (user, stream) = user_and_stream(self.visitor.as_ref(), &self.store, self.id).await?;
        if user.role != Role::Admin && stream.owner_id != user.id {
            return Err(ApiError::new(Code::Forbidden, refusal));
        }
        Ok((user, stream))
    }
}
