//! Model test of bans and timeouts: random sequences of ban, timeout and unban
//! actions (stream or tenant scope, over 3 users and 2 streams) go both to the
//! real store and to one in-memory [`Restrictions`] per stream, and after every
//! step each (stream, user) must be muted alike in the model and in what
//! `Store::restrictions` returns. Failing cases are shrunk and reported by
//! proptest (`PROPTEST_RNG_SEED` fixes a run's seed).

use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed, TestCaseError, TestRunner},
};
use stampede::{
    domain::{Role, Slug, Username},
    rooms::restrictions::{Change, Muted, Restrictions},
    store::{
        moderation::{NewLogEntry, Restriction},
        Store,
    },
};
use time::{Duration, OffsetDateTime};

use crate::helpers::{create_tenant, database_url, store_for};

const USERS: usize = 3;
const STREAMS: usize = 2;

/// What a moderator does.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Ban,
    /// A timeout of that many seconds (long enough not to end during a case).
    Timeout(i64),
    Unban,
}

/// One moderation action, sent from a stream, at that stream's scope or the
/// tenant's.
#[derive(Debug, Clone, Copy)]
struct Action {
    kind: Kind,
    user: usize,
    stream: usize,
    tenant_wide: bool,
}

fn action() -> impl Strategy<Value = Action> {
    let kind = prop_oneof![
        Just(Kind::Ban),
        (10i64..60).prop_map(Kind::Timeout),
        (2i64..30).prop_map(|m| Kind::Timeout(m * 60)),
        Just(Kind::Unban),
    ];
    (kind, 0..USERS, 0..STREAMS, any::<bool>()).prop_map(|(kind, user, stream, tenant_wide)| {
        Action {
            kind,
            user,
            stream,
            tenant_wide,
        }
    })
}

/// The tenant, its streams' owner, 3 users and 2 streams, made once per run.
struct World {
    store: Store,
    slug: Slug,
    owner: i64,
    users: [i64; USERS],
    streams: [i64; STREAMS],
}

impl World {
    async fn new() -> World {
        let store = store_for(&database_url(), 2);
        let slug = create_tenant(&store).await.slug;
        let user = |name: &'static str, role| {
            let (store, slug) = (store.clone(), slug.clone());
            async move {
                // Nobody logs in here: the hash is never checked.
                store
                    .create_user(&slug, &Username::parse(name).unwrap(), "-", role)
                    .await
                    .unwrap()
                    .expect("new user")
                    .id
            }
        };
        let owner = user("owner", Role::Streamer).await;
        let users = [
            user("ann", Role::Viewer).await,
            user("bob", Role::Viewer).await,
            user("cat", Role::Viewer).await,
        ];
        let mut streams = [0; STREAMS];
        for s in &mut streams {
            *s = store
                .create_stream(&slug, owner, "Model stream", "", None)
                .await
                .unwrap();
        }
        World {
            store,
            slug,
            owner,
            users,
            streams,
        }
    }

    /// Runs one sequence from no restrictions at all.
    async fn check(&self, actions: &[Action]) -> Result<(), TestCaseError> {
        let store_err = |e| TestCaseError::fail(format!("store: {e}"));
        self.store
            .client()
            .await
            .map_err(store_err)?
            .execute(
                &format!("DELETE FROM {}.moderation_ban", self.slug.schema()),
                &[],
            )
            .await
            .map_err(|e| TestCaseError::fail(format!("clearing: {e}")))?;
        let mut model = vec![Restrictions::default(); STREAMS];
        for (step, a) in actions.iter().enumerate() {
            let change = self.act(a).await.map_err(store_err)?;
            for (s, m) in model.iter_mut().enumerate() {
                if a.tenant_wide || s == a.stream {
                    m.apply(&change);
                }
            }
            for (s, &stream) in self.streams.iter().enumerate() {
                for (u, &user) in self.users.iter().enumerate() {
                    let rows = self
                        .store
                        .restrictions(&self.slug, stream, Some(user))
                        .await
                        .map_err(store_err)?;
                    let now = OffsetDateTime::now_utc();
                    let expected = muted_in(&rows);
                    prop_assert_eq!(
                        model[s].muted(user, now),
                        expected,
                        "after step {} ({:?}): stream {}, user {}; rows {:?}",
                        step,
                        a,
                        s,
                        u,
                        rows
                    );
                    // The handshake's view (rows read through the module) agrees.
                    prop_assert_eq!(
                        Restrictions::from_rows(rows.clone()).muted(user, now),
                        expected
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes one action as `moderation::execute` would; returns its change.
    async fn act(&self, a: &Action) -> stampede::store::StoreResult<Change> {
        let user_id = self.users[a.user];
        let stream_id = self.streams[a.stream];
        let log = |action| NewLogEntry {
            stream_id,
            moderator_id: self.owner,
            action,
            target_user_id: Some(user_id),
            message_id: None,
            reason: None,
            seconds: None,
        };
        let scope = (!a.tenant_wide).then_some(stream_id);
        let (is_ban, until, log) = match a.kind {
            Kind::Unban => {
                self.store
                    .unrestrict_user(&self.slug, stream_id, user_id, a.tenant_wide, log("unban"))
                    .await?;
                return Ok(Change::Lift {
                    user_id,
                    tenant_wide: a.tenant_wide,
                });
            }
            Kind::Ban => (true, None, log("ban")),
            Kind::Timeout(secs) => {
                // Whole seconds: PostgreSQL keeps microseconds.
                let until = (OffsetDateTime::now_utc() + Duration::seconds(secs))
                    .replace_nanosecond(0)
                    .unwrap();
                let log = NewLogEntry {
                    seconds: Some(secs as i32),
                    ..log("timeout")
                };
                (false, Some(until), log)
            }
        };
        self.store
            .restrict_user(&self.slug, scope, user_id, is_ban, until, None, log)
            .await?;
        Ok(Change::Restrict {
            user_id,
            is_ban,
            until,
            tenant_wide: a.tenant_wide,
        })
    }
}

/// What the rows say, read on their own: the SQL keeps only those in force; a
/// ban among them mutes for good, else the latest timeout end.
fn muted_in(rows: &[Restriction]) -> Option<Muted> {
    if rows.iter().any(|r| r.is_ban) {
        return Some(Muted::Banned);
    }
    rows.iter()
        .filter_map(|r| r.until)
        .max()
        .map(Muted::TimedOut)
}

#[test]
fn restrictions_model_matches_the_store() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let world = rt.block_on(World::new());
    let mut config = Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    };
    // PROPTEST_RNG_SEED, or a fresh seed; printed so a failing run can be replayed.
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => rand::random(),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    eprintln!("restrictions_model: PROPTEST_RNG_SEED={seed}");
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(action(), 1..=25), |actions| {
        rt.block_on(world.check(&actions))
    });
    if let Err(e) = result {
        panic!("{e} (replay with PROPTEST_RNG_SEED={seed})");
    }
}
