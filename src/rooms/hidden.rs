//! Hidden users (shadow ban) of one stream: hidden on this stream, or on every
//! stream of the tenant. Each scope is set and lifted on its own, as
//! `moderation_hide` keeps them. Pure state: no actix, no I/O.

use std::collections::HashSet;

/// Users hidden on one stream.
#[derive(Debug, Default, Clone)]
pub struct Hidden {
    stream: HashSet<i64>,
    tenant: HashSet<i64>,
}

impl Hidden {
    /// From the store's rows: (user id, tenant-wide).
    pub fn from_rows(rows: impl IntoIterator<Item = (i64, bool)>) -> Self {
        let mut this = Self::default();
        for (user_id, tenant_wide) in rows {
            this.apply(user_id, tenant_wide, true);
        }
        this
    }

    /// Hides (`hide`) or unhides a user in one scope.
    pub fn apply(&mut self, user_id: i64, tenant_wide: bool, hide: bool) {
        let set = if tenant_wide {
            &mut self.tenant
        } else {
            &mut self.stream
        };
        if hide {
            set.insert(user_id);
        } else {
            set.remove(&user_id);
        }
    }

    /// True when the user's new messages are hidden here.
    pub fn is_hidden(&self, user_id: i64) -> bool {
        self.stream.contains(&user_id) || self.tenant.contains(&user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_set_and_lifted_on_their_own() {
        let mut h = Hidden::from_rows([(1, false), (2, true)]);
        assert!(h.is_hidden(1) && h.is_hidden(2) && !h.is_hidden(3));
        h.apply(1, true, true);
        h.apply(1, true, false);
        assert!(
            h.is_hidden(1),
            "lifting the tenant scope keeps the stream's"
        );
        h.apply(2, false, false);
        assert!(
            h.is_hidden(2),
            "lifting the stream scope keeps the tenant's"
        );
        h.apply(2, true, false);
        assert!(!h.is_hidden(2));
    }
}
