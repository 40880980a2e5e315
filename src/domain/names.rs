//! Tenant slugs, usernames, roles and host names.

use std::fmt;

/// A tenant slug, which is also its PostgreSQL schema name:
/// `^[a-z][a-z0-9_]{0,47}$`, never `public`, `information_schema` or `pg_*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    /// Validates a slug; the error is the one-line message the CLI prints.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid slug {raw:?}: use a-z, 0-9 and _, starting with a letter, at most 48 characters")
        };
        let mut chars = raw.chars();
        match chars.next() {
            Some(c) if c.is_ascii_lowercase() => {}
            _ => return Err(bad()),
        }
        if raw.len() > 48
            || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad());
        }
        if raw == "public" || raw == "information_schema" || raw.starts_with("pg_") {
            return Err(format!(
                "invalid slug {raw:?}: the name is reserved by PostgreSQL"
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The schema name as a quoted SQL identifier, safe to splice into SQL.
    /// (The slug alphabet has no quote, so quoting never needs escaping.)
    pub fn schema(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names no account may take, in any case: `system` is the author the pages and
/// frames show on notices; the others read as the service or as nobody.
pub const RESERVED_USERNAMES: &[&str] = &[
    "system",
    "stampede",
    "anonymous",
    "everyone",
    "null",
    "undefined",
];

/// A username: 1–32 characters of ASCII letters, digits, `_`, `-` and `.`, not
/// one of [`RESERVED_USERNAMES`]. Unique per tenant without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Validates a username.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(format!(
                "invalid username {raw:?}: use 1-32 letters, digits, _, - or ."
            ));
        }
        if RESERVED_USERNAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(raw))
        {
            return Err(format!("invalid username {raw:?}: the name is reserved"));
        }
        Ok(Self(raw.to_string()))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's tenant-wide role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watches, chats and reacts.
    Viewer,
    /// Moderates every stream of the tenant.
    Moderator,
    /// Owns streams and appoints their moderators.
    Streamer,
    /// Everything in the tenant.
    Admin,
    /// An integration: chats like a viewer, never logs in with a password
    /// (API tokens only), and its messages are marked as a bot's.
    Bot,
}

impl Role {
    /// Parses `viewer|moderator|streamer|admin|bot`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "viewer" => Ok(Self::Viewer),
            "moderator" => Ok(Self::Moderator),
            "streamer" => Ok(Self::Streamer),
            "admin" => Ok(Self::Admin),
            "bot" => Ok(Self::Bot),
            _ => Err(format!(
                "invalid role {raw:?}: use viewer, moderator, streamer, admin or bot"
            )),
        }
    }

    /// The role's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Moderator => "moderator",
            Self::Streamer => "streamer",
            Self::Admin => "admin",
            Self::Bot => "bot",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Normalises a `Host` header or a domain argument: port stripped, lower-cased.
/// Returns `None` for something that cannot be a host name.
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [::1]:8000
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':'));
    valid.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["acme", "a", "a_1", &format!("a{}", "b".repeat(47))] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "a;drop",
            "pg_x",
            "public",
            "information_schema",
            "1abc",
            "_a",
            "a-b",
            "ä",
            &format!("a{}", "b".repeat(48)),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Slug::parse("acme").unwrap().schema(), "\"acme\"");
        assert!(Slug::parse("Acme!")
            .unwrap_err()
            .starts_with("invalid slug \"Acme!\": use a-z, 0-9 and _"));
    }

    #[test]
    fn hosts() {
        assert_eq!(
            normalize_host("LocalHost:8000").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            normalize_host("acme.example.com").as_deref(),
            Some("acme.example.com")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("bad host"), None);
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn usernames_and_roles() {
        assert!(Username::parse("alice_1").is_ok());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse("<script>").is_err());
        for reserved in ["system", "System", "SYSTEM", "stampede", "Anonymous"] {
            let e = Username::parse(reserved).unwrap_err();
            assert!(e.contains("reserved"), "{e}");
        }
        assert!(Username::parse("systems").is_ok());
        assert_eq!(Role::parse("admin").unwrap(), Role::Admin);
        assert!(Role::parse("root").is_err());
    }
}
