//! Accounts and cookie sessions: password hashing, the session cookie, the
//! [`Visitor`] extractor, CSRF tokens and login rate limits.

mod limits;
mod password;
mod session;

pub use limits::{keyed, retry_after_ms, KeyedLimiter, LoginLimiter};
pub use password::{hash_password, verify_password, HashBusy, HashGate};
pub use session::{new_token, AuthConfig, Visitor};
