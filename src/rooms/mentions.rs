//! Mentions: which `@username`s of a message name users of the tenant.
//!
//! Resolution runs on the chat path without a database round trip: each node
//! keeps a per-tenant [`MentionCache`] of usernames (lower-cased → as spelled).
//! A room loads its tenant's directory when it starts (once per tenant and
//! node). Afterwards a message naming an unknown `@word` asks for the users
//! created since the newest one known (`id > max_id`, an index range that is
//! usually empty), at most once every [`REFRESH_EVERY`] per tenant and node;
//! the room holds that message (and the ones after it) until the answer is in,
//! so a user created on any node is mentioned from the first message naming
//! them, unless a refresh ran less than [`REFRESH_EVERY`] before. Usernames
//! never change and a deleted user only leaves a stale entry, so entries are
//! never evicted.
//!
//! Pure state: no actix, no I/O (the room does the query).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::Slug;

/// Most users listed in one message's `mentions`.
pub const MAX_MENTIONS: usize = 10;
/// Shortest gap between two refreshes of a tenant's directory on a miss.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);
/// Longest username (see `domain::Username`).
const MAX_NAME: usize = 32;

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The `@word`s of a text that could be usernames, lower-cased, each once, in
/// order. An `@` right after an ASCII letter or digit (`a@b.com`) is not a
/// mention (after Japanese text it is: there are no spaces);
/// trailing `.` and `-` (end of a sentence) are not part of the name.
pub fn candidates(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts = c == '@' && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_');
        prev = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[i + 1..];
        let len = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
        let name = rest[..len].trim_end_matches(['.', '-']);
        if !name.is_empty() && name.len() <= MAX_NAME {
            let lower = name.to_ascii_lowercase();
            if !out.contains(&lower) {
                out.push(lower);
            }
        }
    }
    out
}

/// The usernames of one tenant, by lower-cased name.
#[derive(Debug, Default)]
pub struct Directory {
    /// lower-cased → spellings (usernames are unique as spelled, so two
    /// accounts may differ only in case).
    names: HashMap<String, Vec<String>>,
    max_id: i64,
}

impl Directory {
    /// Adds users `(id, username)`.
    pub fn add(&mut self, users: impl IntoIterator<Item = (i64, String)>) {
        for (id, name) in users {
            self.max_id = self.max_id.max(id);
            let spellings = self.names.entry(name.to_ascii_lowercase()).or_default();
            if !spellings.contains(&name) {
                spellings.push(name);
            }
        }
    }

    /// The newest user id known.
    pub fn max_id(&self) -> i64 {
        self.max_id
    }

    /// The users `text` mentions (as spelled in their accounts, at most
    /// [`MAX_MENTIONS`]), and whether some `@word` named no known user.
    pub fn resolve(&self, text: &str) -> (Vec<String>, bool) {
        let mut found = Vec::new();
        let mut missed = false;
        for lower in candidates(text) {
            if found.len() == MAX_MENTIONS {
                break;
            }
            match self.names.get(&lower) {
                Some(spellings) => {
                    // The spelling written wins when two accounts differ by case.
                    let pick = spellings
                        .iter()
                        .find(|s| text.contains(&format!("@{s}")))
                        .unwrap_or(&spellings[0]);
                    found.push(pick.clone());
                }
                None => missed = true,
            }
        }
        (found, missed)
    }
}

#[derive(Debug, Default)]
struct TenantEntry {
    dir: Directory,
    loaded: bool,
    refreshing: bool,
    refreshed_at: Option<Instant>,
}

/// The node's directories, one per tenant. Shared by the node's rooms.
#[derive(Debug, Default)]
pub struct MentionCache {
    tenants: Mutex<HashMap<Slug, TenantEntry>>,
}

impl MentionCache {
    /// True once the tenant's directory was loaded on this node.
    pub fn is_loaded(&self, slug: &Slug) -> bool {
        self.tenants
            .lock()
            .unwrap()
            .get(slug)
            .is_some_and(|t| t.loaded)
    }

    /// Resolves a text's mentions with what is known now; the `bool` is true
    /// when a refresh should run (an `@word` missed and none ran lately).
    pub fn resolve(&self, slug: &Slug, text: &str, now: Instant) -> (Vec<String>, bool) {
        if !text.contains('@') {
            return (Vec::new(), false);
        }
        let mut tenants = self.tenants.lock().unwrap();
        let entry = tenants.entry(slug.clone()).or_default();
        let (found, missed) = entry.dir.resolve(text);
        (found, missed && Self::may_refresh(entry, now))
    }

    fn may_refresh(entry: &TenantEntry, now: Instant) -> bool {
        !entry.refreshing
            && entry
                .refreshed_at
                .is_none_or(|at| now.duration_since(at) >= REFRESH_EVERY)
    }

    /// Starts a refresh: returns the id to load users after, or `None` when one
    /// runs or ran less than [`REFRESH_EVERY`] ago (a first load always starts).
    pub fn begin_refresh(&self, slug: &Slug, now: Instant) -> Option<i64> {
        let mut tenants = self.tenants.lock().unwrap();
        let entry = tenants.entry(slug.clone()).or_default();
        if entry.refreshing || (entry.loaded && !Self::may_refresh(entry, now)) {
            return None;
        }
        entry.refreshing = true;
        entry.refreshed_at = Some(now);
        Some(entry.dir.max_id())
    }

    /// Ends a refresh with the users loaded (`None`: the query failed).
    pub fn finish_refresh(&self, slug: &Slug, users: Option<Vec<(i64, String)>>) {
        let mut tenants = self.tenants.lock().unwrap();
        let entry = tenants.entry(slug.clone()).or_default();
        entry.refreshing = false;
        if let Some(users) = users {
            entry.dir.add(users);
            entry.loaded = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(names: &[&str]) -> Directory {
        let mut d = Directory::default();
        d.add(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (i as i64 + 1, n.to_string())),
        );
        d
    }

    #[test]
    fn candidates_are_at_words() {
        assert_eq!(candidates("hi @Bob and @alice."), vec!["bob", "alice"]);
        assert_eq!(candidates("mail a@b.com"), Vec::<String>::new());
        assert_eq!(candidates("@bob @BOB @bob!"), vec!["bob"]);
        assert_eq!(candidates("(@x_y-z.w) @ lone @"), vec!["x_y-z.w"]);
        assert_eq!(candidates("こんにちは@bobさん"), vec!["bob"]);
        assert!(candidates(&format!("@{}", "a".repeat(33))).is_empty());
    }

    #[test]
    fn resolves_known_users_case_insensitively() {
        let d = dir(&["Bob", "alice"]);
        assert_eq!(
            d.resolve("hey @bob, @ALICE"),
            (vec!["Bob".into(), "alice".into()], false)
        );
        assert_eq!(d.resolve("@carol @bob"), (vec!["Bob".into()], true));
        assert_eq!(d.resolve("no mentions"), (vec![], false));
    }

    #[test]
    fn picks_the_spelling_written_among_case_twins() {
        let d = dir(&["Bob", "bob"]);
        assert_eq!(d.resolve("@bob").0, vec!["bob".to_string()]);
        assert_eq!(d.resolve("@Bob").0, vec!["Bob".to_string()]);
        assert_eq!(d.resolve("@BOB").0.len(), 1);
    }

    #[test]
    fn at_most_ten() {
        let names: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let d = dir(&refs);
        let text: String = names.iter().map(|n| format!("@{n} ")).collect();
        assert_eq!(d.resolve(&text).0.len(), MAX_MENTIONS);
    }

    #[test]
    fn refreshes_are_spaced() {
        let cache = MentionCache::default();
        let slug = Slug::parse("acme").unwrap();
        let t0 = Instant::now();
        assert!(!cache.is_loaded(&slug));
        assert_eq!(cache.begin_refresh(&slug, t0), Some(0));
        assert_eq!(cache.begin_refresh(&slug, t0), None, "one at a time");
        cache.finish_refresh(&slug, Some(vec![(5, "bob".into())]));
        assert!(cache.is_loaded(&slug));
        let (found, refresh) = cache.resolve(&slug, "@bob @carol", t0);
        assert_eq!(found, vec!["bob".to_string()]);
        assert!(!refresh, "refreshed just now");
        let later = t0 + REFRESH_EVERY;
        assert!(cache.resolve(&slug, "@carol", later).1);
        assert_eq!(cache.begin_refresh(&slug, later), Some(5));
        cache.finish_refresh(&slug, Some(vec![(6, "carol".into())]));
        assert_eq!(
            cache.resolve(&slug, "@Carol", later).0,
            vec!["carol".to_string()]
        );
        // Without '@' nothing is looked at.
        assert_eq!(cache.resolve(&slug, "carol", later), (vec![], false));
    }
}
