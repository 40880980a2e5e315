//! Many nodes, one stream: two real `stampede serve` processes sharing
//! PostgreSQL and Redis, real sockets. Each test has its own channel prefix.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use serde_json::json;
use stampede::domain::Role;

use crate::{helpers::*, slow::common::*, ws::*};

/// A tenant with a stream of `owner` and the viewers `users`, and two nodes
/// on the Redis at `redis` with chat limits out of the way and `extra`
/// environment.
async fn room_on_two_nodes(
    redis: &str,
    users: &[&str],
    extra: &[(&str, &str)],
) -> (TestApp, i64, (Node, TestApp, Node, TestApp)) {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    for user in users {
        app.create_user(user, "password-123", Role::Viewer).await;
    }
    let env = [RAISED_LIMITS_ENV, extra].concat();
    let nodes = two_nodes_on(&app, redis, &env).await;
    (app, stream, nodes)
}

#[actix_web::test]
async fn messages_reactions_and_presence_cross_nodes() {
    let (app, stream, (_a, ha, _b, hb)) =
        room_on_two_nodes(&redis_url(), &["alice", "bob"], RAISED_REACTION_LIMITS_ENV).await;
    let alice = ha.logged_in("alice").await;
    // A session cookie from node A works on node B.
    let r = hb.get("/api/session", Some(&alice.cookie)).await;
    assert_eq!(r.json()["user"]["username"], "alice");
    let bob = hb.logged_in("bob").await;
    let [mut ca, mut cb] = sockets(stream, [&alice, &bob]).await;
    hb.await_subscribers(stream, 2).await;

    ca.send(json!({"type":"message","message":"from A","client_id":"a1"}))
        .await;
    let on_b = cb.expect("message").await;
    assert_eq!(on_b["message"], "from A");
    assert_eq!(on_b["username"], "alice");
    let id_a = ca.expect("ack").await["id"].as_i64().unwrap();
    assert_eq!(on_b["id"], id_a);
    cb.send(json!({"type":"message","message":"from B","client_id":"b1"}))
        .await;
    assert_eq!(ca.expect("message").await["message"], "from B");
    assert_eq!(
        app.stored_ids(stream).await.len(),
        2,
        "stored once, by the accepting node"
    );

    reactions_cross_nodes(&mut ca, &mut cb).await;

    // Presence sums both nodes: 1 + 1, then a second socket on B.
    let (_c2, _, _) = hb.ws_ready(stream, None).await;
    ca.await_viewers(3).await;
}

#[actix_web::test]
async fn ban_and_delete_on_one_node_act_on_the_other() {
    let (_app, stream, (_a, ha, _b, hb)) = room_on_two_nodes(&redis_url(), &["bob"], &[]).await;
    let owner = ha.logged_in("owner").await;
    let bob = hb.logged_in("bob").await;
    let [mut o, mut b] = sockets(stream, [&owner, &bob]).await;
    let (mut watcher, _, _) = hb.ws_ready(stream, None).await;
    hb.await_subscribers(stream, 2).await;
    b.send(json!({"type":"message","message":"oops","client_id":"x"}))
        .await;
    let id = b.expect("ack").await["id"].as_i64().unwrap();
    o.expect("message").await;
    o.send(json!({"type":"delete","message_id":id})).await;
    assert_eq!(
        watcher.expect("moderation").await,
        json!({"type":"moderation","action":"delete","message_id":id})
    );
    // Node B's history no longer has it.
    let (_, _, history) = hb.ws_ready(stream, None).await;
    assert_eq!(history["messages"], json!([]));
    // Slow mode set on A holds on B.
    o.send(json!({"type":"slow_mode","seconds":30})).await;
    watcher.expect("moderation").await;
    // (bob's "oops" was within the last 30 s)
    b.send(json!({"type":"message","message":"two","client_id":"s2"}))
        .await;
    let e = b.expect("error").await;
    assert_eq!(e["code"], "slow_mode");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 20_000);
    // A ban on A closes bob's socket on B.
    o.send(json!({"type":"ban","username":"bob"})).await;
    assert_eq!(b.closed().await, Some(4003));
    let refused = bob.ws_with(stream, "").await.err().map(|e| e.0);
    assert_eq!(refused, Some(403));
}

#[actix_web::test]
async fn logout_on_one_node_closes_sockets_on_the_other() {
    let (_app, stream, (_a, ha, _b, hb)) = room_on_two_nodes(&redis_url(), &["alice"], &[]).await;
    let alice = ha.logged_in("alice").await;
    let (mut on_b, _, _) = hb.ws_ready(stream, Some(&alice.cookie)).await;
    hb.await_subscribers(stream, 1).await;
    let r = alice.post("/api/logout", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(on_b.closed().await, Some(4001));
}

#[actix_web::test]
async fn tenants_with_the_same_stream_id_never_cross() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    // Both tenants' first stream has id 1 (ids are per schema).
    let s1 = app.create_stream("owner").await;
    let s2 = other.create_stream("owner").await;
    assert_eq!(s1, s2);
    app.create_user("alice", "password-123", Role::Viewer).await;
    let (_a, ha, b, hb_same) = two_nodes(&app, &[]).await;
    let hb_other = TestApp {
        relay: hb_same.relay.clone(),
        ..other.on_node(&b)
    };
    let alice = ha.logged_in("alice").await;
    let mut sender = alice.ws(s1).await;
    let (mut foreign, _, _) = hb_other.ws_ready(s2, None).await;
    let (mut same, _, _) = hb_same.ws_ready(s1, None).await;
    hb_same.await_subscribers(s1, 2).await;
    hb_other.await_subscribers(s2, 1).await;
    sender
        .send(json!({"type":"message","message":"only for tenant one"}))
        .await;
    assert_eq!(
        same.expect("message").await["message"],
        "only for tenant one"
    );
    while let Some(v) = foreign.next_text(Duration::from_millis(800)).await {
        assert_ne!(v["type"], "message", "a message crossed tenants: {v}");
    }
}

/// Redis stopped mid-stream: each node keeps serving and storing; when Redis
/// returns, the nodes relay again by themselves and clients get what they missed.
#[actix_web::test]
async fn redis_outage_keeps_local_rooms_and_recovers() {
    let mut redis = PrivateRedis::start();
    let (app, stream, (_a, ha, _b, hb)) =
        room_on_two_nodes(&redis.url(), &["alice", "bob"], &[]).await;
    let alice = ha.logged_in("alice").await;
    let bob = hb.logged_in("bob").await;
    let [mut ca, mut cb] = sockets(stream, [&alice, &bob]).await;
    let (mut wa, _, _) = ha.ws_ready(stream, None).await;
    hb.await_subscribers(stream, 2).await;
    ca.send(json!({"message":"before"})).await;
    let before = ca.expect("ack").await["id"].as_i64().unwrap();
    assert_eq!(cb.expect("message").await["message"], "before");
    assert_eq!(ha.get("/readyz", None).await.status, 200);

    redis.stop();
    eventually("readyz reports Redis down", WAIT, || async {
        (ha.get("/readyz", None).await.status == 503).then_some(())
    })
    .await;
    // Local delivery and storage go on.
    ca.send(json!({"type":"message","message":"during A","client_id":"d1"}))
        .await;
    let mut m = wa.expect("message").await;
    while m["message"] == "before" {
        m = wa.expect("message").await;
    }
    assert_eq!(m["message"], "during A");
    let during_a = ca.expect("ack").await["id"].as_i64().unwrap();
    cb.send(json!({"type":"message","message":"during B","client_id":"d2"}))
        .await;
    let during_b = cb.expect("ack").await["id"].as_i64().unwrap();
    assert_eq!(app.stored_ids(stream).await.len(), 3);
    // A moderator on A deletes "before" while B cannot hear it.
    let owner = ha.logged_in("owner").await;
    moderate(
        &owner,
        stream,
        &[json!({"type":"delete","message_id":before})],
    )
    .await;

    redis.start_again();
    // B's client gets A's message from the outage and the delete it missed
    // (resynchronised from PostgreSQL)...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut got, mut deleted) = (false, false);
    while !(got && deleted) {
        assert!(
            std::time::Instant::now() < deadline,
            "B never got the outage message ({got}) or the delete ({deleted})"
        );
        if let Some(v) = cb.next_text(Duration::from_secs(1)).await {
            got |= v["type"] == "message" && v["id"] == during_a;
            deleted |=
                v["type"] == "moderation" && v["action"] == "delete" && v["message_id"] == before;
        }
    }
    let (_, _, history) = hb.ws_ready(stream, None).await;
    let ids = message_ids(&history);
    assert!(
        !ids.contains(&before),
        "a message deleted during the outage came back: {ids:?}"
    );
    // ...and live relaying works again without a restart.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "relay never came back"
        );
        ca.send(json!({"type":"message","message":"after","client_id":random_hex(8)}))
            .await;
        let mut seen = false;
        while let Some(v) = cb.next_text(Duration::from_millis(700)).await {
            if v["message"] == "after" {
                seen = true;
                break;
            }
        }
        if seen {
            break;
        }
    }
    assert_eq!(ha.get("/readyz", None).await.status, 200);
    // A's watcher also saw B's outage message.
    let mut ids = Vec::new();
    while let Some(v) = wa.next_text(Duration::from_millis(500)).await {
        if v["type"] == "message" {
            ids.push(v["id"].as_i64().unwrap());
        }
    }
    assert!(
        ids.contains(&during_b),
        "A's clients got B's outage message: {ids:?}"
    );
}

/// What an author and a moderator did on node A while Redis was away reaches
/// node B's clients once it returns, as it would have live: the edit, the
/// ban (the banned socket on B closes, 4003), the pin, slow mode and modes,
/// and the held queue to B's moderator; and a socket opened on B afterwards
/// finds them in its hello and history.
#[actix_web::test]
async fn changes_made_during_a_redis_outage_reach_the_other_nodes_clients() {
    // The opening of the outage test above, a kit call a step; what happens
    // during the outage differs.
    let mut redis = PrivateRedis::start();
    let (_app, stream, (_a, ha, _b, hb)) =
        room_on_two_nodes(&redis.url(), &["alice", "carol"], &[]).await;
    let alice = ha.logged_in("alice").await;
    let carol = hb.logged_in("carol").await;
    let owner = ha.logged_in("owner").await;
    let mut ca = alice.ws(stream).await;
    let mut cc = carol.ws(stream).await;
    let (mut wb, _, _) = hb.ws_ready(stream, None).await;
    hold_term(&owner, stream, "cheap").await;
    let mut ob = owner.on(&hb).ws(stream).await;
    assert_eq!(ob.expect("held_queue").await["items"], json!([]));
    hb.await_subscribers(stream, 2).await;
    let id = ca.say("first version").await;
    assert_eq!(wb.expect("message").await["id"], id);

    redis.stop();
    for node in [&ha, &hb] {
        eventually("readyz reports Redis down", WAIT, || async {
            (node.get("/readyz", None).await.status == 503).then_some(())
        })
        .await;
    }
    ca.send(json!({"type":"edit","message_id":id,"message":"second version"}))
        .await;
    assert_eq!(ca.expect("edit").await["message"], "second version");
    ca.send(json!({"type":"message","message":"cheap followers","client_id":"h"}))
        .await;
    ca.expect("held").await;
    moderate(
        &owner,
        stream,
        &[
            json!({"type":"ban","username":"carol"}),
            json!({"type":"pin","message_id":id}),
            json!({"type":"slow_mode","seconds":30}),
            json!({"type":"modes","unique_chat":true}),
        ],
    )
    .await;

    redis.start_again();
    let deadline = Instant::now() + WAIT;
    let (mut edit, mut pin, mut modes) = (None, None, None);
    while edit.is_none() || pin.is_none() || modes.is_none() {
        assert!(
            Instant::now() < deadline,
            "B's watcher missed the edit ({edit:?}), pin ({pin:?}) or modes ({modes:?})"
        );
        let Some(v) = wb.next_text(Duration::from_secs(1)).await else {
            continue;
        };
        match (v["type"].as_str(), v["action"].as_str()) {
            (Some("edit"), _) => edit = Some(v),
            (Some("moderation"), Some("pin")) => pin = Some(v),
            (Some("moderation"), Some("modes")) => modes = Some(v),
            _ => {}
        }
    }
    let edit = edit.unwrap();
    assert_eq!(edit["message_id"], id);
    assert_eq!(edit["message"], "second version");
    assert_eq!(pin.unwrap()["message"]["id"], id);
    let modes = modes.unwrap();
    assert_eq!(modes["modes"]["unique_chat"], true);
    assert_eq!(modes["slow_mode_seconds"], 30);
    assert_eq!(
        cc.closed().await,
        Some(4003),
        "carol, banned, is closed on B"
    );

    // B's moderator gets the held queue again, now with alice's message.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "B's moderator missed the held queue"
        );
        let Some(v) = ob.next_text(Duration::from_secs(1)).await else {
            continue;
        };
        if v["type"] == "held_queue" {
            assert_eq!(v["items"][0]["message"], "cheap followers", "{v}");
            break;
        }
    }

    let (_, hello, history) = hb.ws_ready(stream, None).await;
    assert_eq!(hello["pinned"]["id"], id, "{hello}");
    assert_eq!(hello["slow_mode_seconds"], 30);
    assert_eq!(hello["modes"]["unique_chat"], true);
    let shown = &history["messages"][0];
    assert_eq!(shown["message"], "second version", "{history}");
    assert!(shown["edited_at"].is_string());
}

/// A tenant with a stream of `owner` and a viewer alice, a private Redis,
/// and node A on it reaching PostgreSQL through a [`TcpLink`] (its log in
/// the returned file); with `and_b`, a node B on the same Redis, directly.
struct LinkedNodes {
    redis: PrivateRedis,
    link: TcpLink,
    app: TestApp,
    stream: i64,
    alice_id: i64,
    ha: TestApp,
    hb: Option<TestApp>,
    log: std::path::PathBuf,
    _nodes: Vec<Node>,
}

impl LinkedNodes {
    async fn start(and_b: bool) -> LinkedNodes {
        let redis = PrivateRedis::start();
        let link = TcpLink::start(database_port(), Duration::ZERO).await;
        let app = spawn_app().await;
        let stream = app.create_stream("owner").await;
        let alice_id = app.create_user("alice", "password-123", Role::Viewer).await;
        let relay = Relay {
            url: redis.url(),
            prefix: format!("t{}", random_hex(10)),
        };
        let log = std::env::temp_dir().join(format!("stampede-linked-{}.log", random_hex(8)));
        let via = database_url_via(link.port);
        let (a, ha) = node_on(&app, &relay, &[("STAMPEDE_DATABASE_URL", &via)], Some(&log)).await;
        let mut nodes = vec![a];
        let hb = if and_b {
            let (b, hb) = node_on(&app, &relay, &[], Some(&log.with_extension("b.log"))).await;
            nodes.push(b);
            Some(hb)
        } else {
            None
        };
        LinkedNodes {
            redis,
            link,
            app,
            stream,
            alice_id,
            ha,
            hb,
            log,
            _nodes: nodes,
        }
    }

    /// Stops Redis, and waits until node A notices.
    async fn redis_down(&mut self) {
        self.redis.stop();
        eventually("readyz reports Redis down", WAIT, || async {
            (self.ha.get("/readyz", None).await.status == 503).then_some(())
        })
        .await;
    }

    /// Bans alice from the stream in PostgreSQL, as a node A cannot hear
    /// would.
    async fn ban_alice_unheard(&self) {
        let owner_id = self.app.stored_user("owner").await.unwrap().id;
        let ban = stampede::store::moderation::NewLogEntry {
            stream_id: self.stream,
            moderator_id: owner_id,
            action: "ban",
            target_user_id: Some(self.alice_id),
            message_id: None,
            reason: None,
            seconds: None,
        };
        self.app
            .store
            .restrict_user(
                &self.app.tenant.slug,
                Some(self.stream),
                self.alice_id,
                true,
                None,
                None,
                ban,
            )
            .await
            .unwrap();
    }
}

impl Drop for LinkedNodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the nodes' logs are kept: {}", self.log.display());
            return;
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(self.log.with_extension("b.log"));
    }
}

/// A resync that could not read everything runs again: node A's link to
/// PostgreSQL is cut as Redis comes back, so the resync that would find the
/// ban made meanwhile elsewhere fails; once the link is mended, the retry
/// (2 to 4 s on) closes the banned viewer's socket (4003).
#[actix_web::test]
async fn a_resync_that_could_not_read_everything_runs_again() {
    let mut t = LinkedNodes::start(false).await;
    let alice = t.ha.logged_in("alice").await;
    let mut ca = alice.ws(t.stream).await;
    t.ha.await_subscribers(t.stream, 1).await;

    t.redis_down().await;
    t.ban_alice_unheard().await;
    t.link.cut();
    t.redis.start_again();
    eventually("node A's resync failed", WAIT, || async {
        let text = std::fs::read_to_string(&t.log).ok()?;
        text.contains("resync incomplete").then_some(())
    })
    .await;
    t.link.mend();
    assert_eq!(ca.closed().await, Some(4003), "closed by the retry");
}

/// A resync whose read overlapped a change the room applied meanwhile reads
/// again rather than act on what it read: node A's resync after an outage
/// reads alice banned (banned meanwhile, unheard), and before its read ends
/// the owner lifts the ban on node B; A applies the unban live, and its
/// resync, the room changed while it read, reads again. Alice stays: acting
/// on the first read would close her socket (4003) for a lifted ban.
#[actix_web::test]
async fn a_resync_that_overlapped_a_change_reads_again() {
    let mut t = LinkedNodes::start(true).await;
    let hb = t.hb.as_ref().unwrap();
    let alice = t.ha.logged_in("alice").await;
    let owner = hb.logged_in("owner").await;
    let mut ca = alice.ws(t.stream).await;
    let mut co = owner.ws(t.stream).await;
    t.ha.await_subscribers(t.stream, 2).await;

    t.redis_down().await;
    t.ban_alice_unheard().await;
    // The resync's last read is of the hidden users: its answer waits, so
    // the bans it read before are read and not yet acted on.
    t.link
        .hold_answer_to(b"SELECT user_id, stream_id IS NULL FROM");
    t.redis.start_again();
    eventually("node A's resync reading", WAIT, || async {
        t.link.is_holding().then_some(())
    })
    .await;
    co.send(json!({"type":"unban","username":"alice"})).await;
    while ca.expect("moderation").await["action"] != "unban" {}
    t.link.release();
    // What is asserted is that no close comes.
    ca.assert_silent(Duration::from_secs(2)).await;
    ca.say("still here").await;
}

/// A stream of `owner`, a viewer `user`, and two nodes on `redis`, node B
/// connecting as its own Redis user `nodeb`, whose rights a test can change
/// (`ACL SETUSER nodeb -publish`).
async fn b_as_its_own_redis_user(
    redis: &PrivateRedis,
    user: &str,
) -> (TestApp, i64, (Node, TestApp, Node, TestApp)) {
    b_as_its_own_redis_user_with(redis, user, &[]).await
}

/// [`b_as_its_own_redis_user`], the nodes with `extra` environment too.
async fn b_as_its_own_redis_user_with(
    redis: &PrivateRedis,
    user: &str,
    extra: &[(&str, &str)],
) -> (TestApp, i64, (Node, TestApp, Node, TestApp)) {
    let nodeb = [
        "ACL",
        "SETUSER",
        "nodeb",
        "on",
        ">secret-b",
        "~*",
        "&*",
        "+@all",
    ];
    redis.run(&nodeb).await;
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    app.create_user(user, "password-123", Role::Viewer).await;
    let url_b = format!("redis://nodeb:secret-b@127.0.0.1:{}", redis.port);
    let env = [RAISED_LIMITS_ENV, extra].concat();
    let nodes = two_nodes_with(&app, &redis.url(), &url_b, &env).await;
    (app, stream, nodes)
}

/// Node B cannot publish for a while (its Redis user loses the right to)
/// while every subscriber stays up: the pin and the ban made through B
/// meanwhile still reach node A, as B tells the other nodes to read the room
/// again from PostgreSQL once it can publish.
#[actix_web::test]
async fn what_a_node_could_not_publish_reaches_the_others_once_it_can() {
    let redis = PrivateRedis::start();
    let (_app, stream, (_a, ha, _b, hb)) = b_as_its_own_redis_user(&redis, "carol").await;
    let carol = ha.logged_in("carol").await;
    let owner = hb.logged_in("owner").await;
    let mut cc = carol.ws(stream).await;
    let (mut wa, _, _) = ha.ws_ready(stream, None).await;
    let mut co = owner.ws(stream).await;
    hb.await_subscribers(stream, 2).await;
    let id = cc.say("hello").await;
    assert_eq!(co.expect("message").await["id"], id);
    assert_eq!(wa.expect("message").await["id"], id);

    redis.run(&["ACL", "SETUSER", "nodeb", "-publish"]).await;
    moderate(
        &owner,
        stream,
        &[
            json!({"type":"pin","message_id":id}),
            json!({"type":"ban","username":"carol"}),
        ],
    )
    .await;
    wa.assert_silent(Duration::from_secs(1)).await;
    redis.run(&["ACL", "SETUSER", "nodeb", "+publish"]).await;
    assert_eq!(
        cc.closed().await,
        Some(4003),
        "carol, banned on B, is closed on A"
    );
    let pin = wa.expect("moderation").await;
    assert_eq!(pin["action"], "pin", "{pin}");
    assert_eq!(pin["message"]["id"], id);
}

/// A node running hundreds of rooms over a slow link to Redis (15 ms a
/// reply) resubscribes after its pub/sub connection is dropped: its rooms'
/// channels go in a few commands, not one round trip each (300 of those
/// would not fit the 2 s a reconnection may take, and it would retry for
/// ever).
#[actix_web::test]
async fn a_node_with_hundreds_of_rooms_resubscribes_over_a_slow_link() {
    const ROOMS: usize = 300;
    let redis = PrivateRedis::start();
    let link = TcpLink::start(redis.port, Duration::from_millis(15)).await;
    let app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..ROOMS {
        streams.push(app.create_stream("owner").await);
    }
    let slow_url = format!("redis://127.0.0.1:{}", link.port);
    // Nobody reads these sockets, so none answers a ping: a long pong
    // timeout keeps the first ones (and their rooms) open however long a
    // loaded machine takes to open the rest.
    let env = [
        ("STAMPEDE_LIMITS_MAX_CONNECTIONS_PER_IP", "0"),
        ("STAMPEDE_SERVER_PONG_TIMEOUT_SECS", "3600"),
    ];
    let (_a, ha, _b, _hb) = two_nodes_with(&app, &slow_url, &redis.url(), &env).await;
    let mut sockets = Vec::new();
    for stream in &streams {
        sockets.push(ha.ws_ready(*stream, None).await.0);
    }
    let prefix = &ha.relay.as_ref().unwrap().prefix;
    let channels: Vec<String> = streams
        .iter()
        .map(|s| format!("{prefix}:room:{}:{s}", app.tenant.slug))
        .collect();
    let every_room = || async { (redis.subscribed(&channels).await == ROOMS).then_some(()) };
    eventually("node A subscribed to every room", WAIT, every_room).await;
    let connects = ha.metric("stampede_relay_connects_total").await;
    redis.run(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    eventually("node A subscribed again", WAIT, || async {
        (ha.metric("stampede_relay_connects_total").await > connects).then_some(())
    })
    .await;
    eventually("node A subscribed to every room again", WAIT, every_room).await;
    drop(sockets);
}

/// The node's sweep is the safety net for relayed messages that never came,
/// and costs idle rooms nothing: a message node B stored but could not relay
/// reaches A's socket with no other traffic in the room to reveal the gap;
/// meanwhile 20 quiet rooms with sockets on both nodes read none of their
/// messages from PostgreSQL (the sweep reads their latest seqs once per
/// tenant and round, not each room once per round).
#[actix_web::test]
async fn the_sweep_brings_what_was_not_relayed_and_leaves_quiet_rooms_unread() {
    const QUIET: usize = 20;
    let redis = PrivateRedis::start();
    let (app, stream, (_a, ha, _b, hb)) = b_as_its_own_redis_user(&redis, "carol").await;
    let mut sockets = Vec::new();
    for _ in 0..QUIET {
        let quiet = app.create_stream("owner").await;
        sockets.push(ha.ws_ready(quiet, None).await.0);
        sockets.push(hb.ws_ready(quiet, None).await.0);
    }
    let carol = hb.logged_in("carol").await;
    let mut cc = carol.ws(stream).await;
    let (mut wa, _, _) = ha.ws_ready(stream, None).await;
    hb.await_subscribers(stream, 2).await;

    const CATCH_UPS: &str = "stampede_catch_ups_total";
    let before_a = ha.metric(CATCH_UPS).await;
    const SWEEPS: &str = "stampede_sweeps_total";
    let sweeps = [ha.metric(SWEEPS).await, hb.metric(SWEEPS).await];
    redis.run(&["ACL", "SETUSER", "nodeb", "-publish"]).await;
    let id = cc.say("only in PostgreSQL").await;
    // Acked: B's room has the message from its own commit.
    let before_b = hb.metric(CATCH_UPS).await;
    assert_eq!(wa.expect("message").await["id"], id, "swept to node A");
    // Three more rounds of both nodes' sweeps with nothing missed.
    for (node, base) in [(&ha, sweeps[0]), (&hb, sweeps[1])] {
        eventually("three more sweeps", WAIT, || async {
            (node.metric(SWEEPS).await >= base + 4).then_some(())
        })
        .await;
    }
    assert_eq!(
        ha.metric(CATCH_UPS).await - before_a,
        1,
        "node A read missed messages once, for the one room behind"
    );
    assert_eq!(
        hb.metric(CATCH_UPS).await,
        before_b,
        "node B, never behind, read none"
    );
    drop(sockets);
}

/// A clear hides every message up to the last one stored before it, on
/// every node, even one that reaches a node after the clear: here bob's
/// message on node B is not relayed (B cannot publish), so node A holds its
/// own next message behind that gap, and the owner clears meanwhile. Neither
/// may show on A afterwards.
#[actix_web::test]
async fn a_clear_hides_messages_still_on_their_way() {
    // The opening of the unpublished-events test, a kit call a step; the
    // rule tested differs.
    let redis = PrivateRedis::start();
    let (_app, stream, (_a, ha, _b, hb)) = b_as_its_own_redis_user(&redis, "bob").await;
    let owner = ha.logged_in("owner").await;
    let bob = hb.logged_in("bob").await;
    let mut co = owner.ws(stream).await;
    let mut cb = bob.ws(stream).await;
    hb.await_subscribers(stream, 2).await;
    let first = cb.say("before").await;
    assert_eq!(co.expect("message").await["id"], first);

    redis.run(&["ACL", "SETUSER", "nodeb", "-publish"]).await;
    cb.say("not relayed").await;
    co.send(json!({"type":"message","message":"held behind the gap","client_id":"z"}))
        .await;
    // Acked once stored (its seq is then below the clear's), shown only once
    // the gap before it is filled, 250 ms on.
    while co.expect("ack").await["client_id"] != "z" {}
    co.send(json!({"type":"clear"})).await;
    loop {
        let v = co.recv().await;
        if v["type"] == "moderation" && v["action"] == "clear" {
            break;
        }
    }
    // The next message goes out once the gap before it is filled from
    // PostgreSQL (the ack does not wait for that).
    let shown = co
        .say_frame(json!({"type":"message","message":"after the clear"}))
        .await;
    let after = shown["id"].as_i64().unwrap();
    if shown.get("message").is_none() {
        while co.expect("message").await["id"] != after {}
    }
    let (_, _, history) = ha.ws_ready(stream, None).await;
    assert_eq!(message_ids(&history), [after], "{history}");
    let (_, _, history) = hb.ws_ready(stream, None).await;
    assert_eq!(message_ids(&history), [after], "{history}");
}

/// Node A catches up from PostgreSQL on 1,200 messages it did not hear of
/// (node B could not publish them): more than one catch-up query takes (500)
/// and far more than a socket's queue holds (16 here). Its sockets get every
/// one, once, in order, and none is closed as a slow consumer: the room lets
/// a backlog out a quarter of a queue at a time.
#[actix_web::test]
async fn a_catch_up_larger_than_a_socket_queue_closes_no_socket() {
    // The opening of the unpublished-events test, a kit call a step; the
    // rule tested differs.
    let redis = PrivateRedis::start();
    let env = [("STAMPEDE_LIMITS_SOCKET_QUEUE", "16")];
    let (_app, stream, (_a, ha, _b, hb)) = b_as_its_own_redis_user_with(&redis, "bob", &env).await;
    let bob = hb.logged_in("bob").await;
    let mut cb = bob.ws(stream).await;
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(ha.ws_ready(stream, None).await.0);
    }
    hb.await_subscribers(stream, 2).await;
    redis.run(&["ACL", "SETUSER", "nodeb", "-publish"]).await;
    // Eight at a time: bob's own socket, with its 16-frame queue, keeps up.
    let mut sent = Vec::new();
    for i in 0..150 {
        sent.extend(cb.say_many(&format!("unheard {i}."), 8).await);
    }
    // Read side by side, as clients do: none waits on another.
    let received = watchers.iter_mut().map(|w| async {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let v = w.recv().await;
            if v["type"] == "message" {
                got.push(v["id"].as_i64().unwrap());
            }
        }
        got
    });
    for got in futures_util::future::join_all(received).await {
        assert_eq!(got, sent);
    }
}

/// A frozen Redis (SIGSTOP) must not stall local rooms either.
#[actix_web::test]
async fn frozen_redis_does_not_stall_local_rooms() {
    let redis = PrivateRedis::start();
    let (_app, stream, (_a, ha, _b, _hb)) = room_on_two_nodes(&redis.url(), &["alice"], &[]).await;
    let alice = ha.logged_in("alice").await;
    let mut ca = alice.ws(stream).await;
    let (mut wa, _, _) = ha.ws_ready(stream, None).await;
    redis.signal("-STOP");
    for i in 0..5 {
        ca.send(json!({"type":"message","message":format!("frozen {i}")}))
            .await;
        let m = tokio::time::timeout(Duration::from_secs(5), wa.expect("message"))
            .await
            .expect("local delivery is prompt");
        assert_eq!(m["message"], format!("frozen {i}"));
    }
    redis.signal("-CONT");
}

/// kill -9 of node A: its clients reconnect to B and resume with last_id,
/// missing nothing; A's viewers vanish from B's count within the TTL.
#[actix_web::test]
async fn killed_node_clients_resume_on_the_other() {
    let (_app, stream, (mut a, ha, _b, hb)) =
        room_on_two_nodes(&redis_url(), &["alice", "bob"], &[]).await;
    let alice = ha.logged_in("alice").await;
    let bob = hb.logged_in("bob").await;
    let mut on_a = alice.ws(stream).await;
    let _extra = ha.ws_ready(stream, None).await;
    let mut sender = bob.ws(stream).await;
    hb.await_subscribers(stream, 2).await;
    // Presence on B reaches 3 (2 on A + 1 on B).
    sender.await_viewers(3).await;
    let mut last_id = 0;
    for i in 0..5 {
        sender
            .send(json!({"type":"message","message":format!("m{i}"),"client_id":format!("m{i}")}))
            .await;
        sender.expect("ack").await;
        last_id = on_a.expect("message").await["id"].as_i64().unwrap();
    }
    a.child.kill().unwrap();
    let _ = a.child.wait();
    // Meanwhile B goes on.
    for i in 5..10 {
        sender
            .send(json!({"type":"message","message":format!("m{i}"),"client_id":format!("m{i}")}))
            .await;
        sender.expect("ack").await;
    }
    let mut resumed = alice
        .on(&hb)
        .ws_with(stream, &format!("?last_id={last_id}"))
        .await
        .unwrap();
    assert_eq!(resumed.recv().await["type"], "hello");
    let history = resumed.recv().await;
    let got: Vec<String> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, (5..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // A's two viewers vanish within the TTL (10 s) plus a refresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(16);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "a dead node's viewers never vanished"
        );
        if let Some(p) = sender.next_text(Duration::from_secs(3)).await {
            if p["type"] == "presence" && p["viewers"] == 2 {
                break; // bob + alice's resumed socket on B
            }
        }
    }
}

/// Going live on a node that runs no room for the stream still tells the
/// viewers on the other node, once.
#[actix_web::test]
async fn status_notices_reach_other_nodes_once() {
    let (app, stream, (_a, ha, _b, hb)) = room_on_two_nodes(&redis_url(), &[], &[]).await;
    let (mut viewer, _, _) = hb.ws_ready(stream, None).await;
    hb.await_subscribers(stream, 1).await;
    let owner = ha.logged_in("owner").await;
    set_status(&owner, stream, "live").await;
    let m = viewer.expect("message").await;
    assert_eq!(m["message_type"], "system");
    assert_eq!(m["message"], "Stream started");
    viewer.assert_silent(Duration::from_millis(700)).await;
    assert_eq!(
        app.stored_ids(stream).await.len(),
        1,
        "the notice is stored once"
    );
}

/// Reads one frame before `until`, recording a `message`'s id; false when
/// the wait ran out. The socket must stay open.
async fn read_frame(c: &mut WsClient, got: &mut Vec<i64>, until: Instant) -> bool {
    match c
        .next_frame(until.saturating_duration_since(Instant::now()))
        .await
    {
        Next::Text(v) => {
            if v["type"] == "message" {
                got.push(v["id"].as_i64().expect("message id"));
            }
            true
        }
        Next::Idle => false,
        Next::Closed => panic!(
            "the viewer's socket closed (code {:?}) after {} message frames",
            c.closed_code(),
            got.len()
        ),
    }
}

/// A busy room with a ring smaller than its traffic (`chat.ring_size` 20): a
/// viewer on node B gets each of 60 messages sent on node A exactly once, in
/// increasing id order, and then nothing more — whatever keeps the nodes in
/// step must never send a socket a message it already has.
#[actix_web::test]
async fn busy_room_with_a_small_ring_sends_each_message_once() {
    const COUNT: usize = 60;
    const AFTERWARDS: Duration = Duration::from_secs(12);
    let (_app, stream, (_a, ha, _b, hb)) = room_on_two_nodes(
        &redis_url(),
        &["alice"],
        &[("STAMPEDE_CHAT_RING_SIZE", "20")],
    )
    .await;
    let alice = ha.logged_in("alice").await;
    let (mut viewer, _, _) = hb.ws_ready(stream, None).await;
    let mut sender = alice.ws(stream).await;

    // Every `message` id the viewer gets, in arrival order.
    let mut got: Vec<i64> = Vec::new();
    // The first message reaching B shows the nodes are relaying.
    let send =
        |i: usize| json!({"type":"message","message":format!("m{i}"),"client_id":format!("m{i}")});
    sender.send(send(0)).await;
    let first = sender.expect("ack").await["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !got.contains(&first) {
        assert!(
            Instant::now() < deadline,
            "B's viewer never got the first message (id {first}); got {got:?}"
        );
        read_frame(&mut viewer, &mut got, deadline).await;
    }
    let mut acked = vec![first];
    for i in 1..COUNT {
        sender.send(send(i)).await;
    }
    while acked.len() < COUNT {
        acked.push(sender.expect("ack").await["id"].as_i64().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !acked.iter().all(|id| got.contains(id)) && Instant::now() < deadline {
        read_frame(&mut viewer, &mut got, deadline).await;
    }
    let complete_at = got.len();
    let quiet_until = Instant::now() + AFTERWARDS;
    while Instant::now() < quiet_until {
        if !read_frame(&mut viewer, &mut got, quiet_until).await {
            break;
        }
    }

    if got != acked {
        let mut count: HashMap<i64, usize> = HashMap::new();
        for id in &got {
            *count.entry(*id).or_default() += 1;
        }
        let missing: Vec<i64> = acked
            .iter()
            .copied()
            .filter(|id| !count.contains_key(id))
            .collect();
        let repeated: BTreeSet<i64> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        let most = count.values().max().copied().unwrap_or(0);
        let disorder = got.windows(2).filter(|w| w[1] <= w[0]).count();
        let late = &got[complete_at..];
        panic!(
            "B's viewer got {} message frames for {COUNT} acked messages ({}..={}): \
             {} ids missing {missing:?}; {} ids repeated (up to {most} times each, e.g. {:?}); \
             {disorder} frames not above the one before; {} frames in the {AFTERWARDS:?} after \
             every message had arrived (e.g. {:?})",
            got.len(),
            acked[0],
            acked[COUNT - 1],
            missing.len(),
            repeated.len(),
            repeated.iter().take(10).collect::<Vec<_>>(),
            late.len(),
            &late[..late.len().min(10)],
        );
    }
}

/// `hello.viewers` counts the sockets of every node, also when the joined
/// node had no room for the stream yet.
#[actix_web::test]
async fn hello_counts_other_nodes_viewers_in_a_room_new_on_this_node() {
    let (_app, stream, (_a, ha, _b, hb)) = room_on_two_nodes(&redis_url(), &[], &[]).await;
    let (_on_b, hello_b, _) = hb.ws_ready(stream, None).await;
    assert_eq!(hello_b["viewers"], 1, "{hello_b}");
    // B has shared its count (nodes refresh presence every 2 s); read in
    // Redis, as a socket opened on A before the one under test would create
    // A's room.
    hb.await_presence(stream, 1).await;
    let (_on_a, hello_a, _) = ha.ws_ready(stream, None).await;
    assert_eq!(
        hello_a["viewers"], 2,
        "hello on A must count B's socket and A's own: {hello_a}"
    );
}
