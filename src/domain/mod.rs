//! Validated newtypes: values that can only be built from valid input
//! (parse, don't validate). Everything past the edge of the server works with these.

mod chat_text;
mod names;

pub use chat_text::{ChatText, ChatTextError, MAX_CHAT_CHARS};
pub use names::{normalize_host, Role, Slug, Username};
