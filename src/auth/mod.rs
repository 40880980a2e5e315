//! Accounts and cookie sessions: password hashing, the session cookie, the
//! [`Visitor`] extractor, CSRF tokens, login rate limits and API tokens.

mod limits;
mod password;
mod session;
pub mod token;

pub use limits::{keyed, retry_after_ms, KeyedLimiter, LoginLimiter};
pub use password::{hash_password, verify_password, HashBusy, HashGate};
pub use session::{new_token, Acting, AuthConfig, Visitor};
pub use token::{Scope, TokenAuth};
