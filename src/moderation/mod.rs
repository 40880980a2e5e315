//! Who may moderate a stream: an admin, the stream's owner, a tenant-wide
//! moderator, or a moderator the owner appointed to this stream.

use crate::{
    domain::Role,
    store::{accounts::User, streams::Stream, Slug, Store, StoreResult},
};

/// True when `user` may moderate `stream` (and see its analytics and log).
pub async fn can_moderate(
    store: &Store,
    slug: &Slug,
    user: &User,
    stream: &Stream,
) -> StoreResult<bool> {
    if matches!(user.role, Role::Admin | Role::Moderator) || stream.owner_id == user.id {
        return Ok(true);
    }
    store.is_stream_moderator(slug, stream.id, user.id).await
}
