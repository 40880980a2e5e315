//! `GET /api/streams/{id}/timeline`: offsets from the stream's start, reactions
//! in 1 s buckets, deleted messages left out, ranges, and who may read it.

use serde_json::{json, Value};
use stampede::domain::Role;
use time::{macros::datetime, Duration, OffsetDateTime};

use crate::helpers::*;

const START: OffsetDateTime = datetime!(2026-01-01 10:00:00 UTC);

fn at(ms: i64) -> OffsetDateTime {
    START + Duration::milliseconds(ms)
}

/// An ended stream of 60 s with chat and reactions at known moments.
async fn recorded_stream(app: &TestApp) -> (i64, Vec<i64>) {
    let stream = app.create_stream("owner").await;
    let alice = app.create_user("alice", "password-123", Role::Viewer).await;
    let slug = &app.tenant.slug;
    let s = &app.store;
    s.set_stream_times(slug, stream, START, Some(at(60_000)))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (ms, text) in [
        (-2_000, "before the start"),
        (1_500, "one and a half"),
        (3_250, "three and a quarter"),
        (10_000, "deleted later"),
        (59_999, "last moment"),
    ] {
        ids.push(
            s.record_message_at(slug, stream, Some(alice), text, at(ms))
                .await
                .unwrap(),
        );
    }
    let c = s.client().await.unwrap();
    c.execute(
        &format!(
            "UPDATE {}.chat_chatmessage SET is_deleted = true WHERE id = $1",
            slug.schema()
        ),
        &[&ids[3]],
    )
    .await
    .unwrap();
    // This test's reactions (replay_browser seeds its clip with its own).
    for (ms, stamp, n) in [
        (2_000, 1, 1),
        (2_100, 1, 1),
        (2_999, 1, 1),
        (2_500, 2, 1),
        (5_999, 1, 2),
        (-1, 3, 4),
        (61_000, 3, 4),
    ] {
        s.record_reactions_at(slug, stream, alice, stamp, at(ms), n)
            .await
            .unwrap();
    }
    (stream, ids)
}

fn texts(v: &Value) -> Vec<(String, i64)> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["message"].as_str().unwrap().to_string(),
                m["offset_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn offsets_buckets_and_deleted_messages() {
    let app = spawn_app().await;
    let (stream, ids) = recorded_stream(&app).await;

    let r = app
        .get(&format!("/api/streams/{stream}/timeline"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["started_at"], "2026-01-01T10:00:00.000Z");
    assert_eq!(v["ended_at"], "2026-01-01T10:01:00.000Z");
    // The whole stream by default: nothing before the start, nothing deleted.
    assert_eq!(
        texts(&v),
        vec![
            ("one and a half".to_string(), 1_500),
            ("three and a quarter".to_string(), 3_250),
            ("last moment".to_string(), 59_999),
        ]
    );
    // Each message is the socket's frame plus its offset.
    let m = &v["messages"][0];
    assert_eq!(m["type"], "message");
    assert_eq!(m["id"], ids[1]);
    assert_eq!(m["username"], "alice");
    assert_eq!(m["message_type"], "message");
    assert_eq!(m["timestamp"], "2026-01-01T10:00:01.500Z");
    assert_eq!(
        v["reactions"],
        json!([
            {"offset_ms": 2000, "stamp_id": 1, "count": 3},
            {"offset_ms": 2000, "stamp_id": 2, "count": 1},
            {"offset_ms": 5000, "stamp_id": 1, "count": 2},
        ])
    );
    assert_eq!(v["next_from_ms"], Value::Null);

    // A range: from inclusive, to exclusive.
    let v = app
        .get(
            &format!("/api/streams/{stream}/timeline?from_ms=1500&to_ms=3250"),
            None,
        )
        .await
        .json();
    assert_eq!(texts(&v), vec![("one and a half".to_string(), 1_500)]);
    assert_eq!(
        v["reactions"],
        json!([
            {"offset_ms": 2000, "stamp_id": 1, "count": 3},
            {"offset_ms": 2000, "stamp_id": 2, "count": 1},
        ])
    );
    // Before the start, asked for explicitly.
    let v = app
        .get(
            &format!("/api/streams/{stream}/timeline?from_ms=-5000&to_ms=0"),
            None,
        )
        .await
        .json();
    assert_eq!(texts(&v), vec![("before the start".to_string(), -2_000)]);
    assert_eq!(
        v["reactions"],
        json!([{"offset_ms": -1000, "stamp_id": 3, "count": 4}])
    );

    // Bad ranges.
    for q in ["from_ms=10&to_ms=5", "from_ms=x", "to_ms=99999999999999999"] {
        let r = app
            .get(&format!("/api/streams/{stream}/timeline?{q}"), None)
            .await;
        assert_eq!(r.status, 422, "{q}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid");
    }
    let r = app.get("/api/streams/999999/timeline", None).await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn long_ranges_page_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let alice = app.create_user("alice", "password-123", Role::Viewer).await;
    let slug = &app.tenant.slug;
    app.store
        .set_stream_times(slug, stream, START, Some(at(3_600_000)))
        .await
        .unwrap();
    // 1 200 messages, two in each millisecond from 0 to 599.
    let c = app.store.client().await.unwrap();
    c.execute(
        &format!(
            "WITH r AS (UPDATE {0}.chat_chatroom SET last_seq = last_seq + 1200 \
                        WHERE stream_id = $1 RETURNING id, last_seq) \
             INSERT INTO {0}.chat_chatmessage (room_id, user_id, content, created_at, seq) \
             SELECT r.id, $2, 'm' || g, $3::timestamptz + (g / 2) * interval '1 millisecond', \
                    r.last_seq - 1200 + g + 1 \
             FROM r, generate_series(0, 1199) g",
            slug.schema()
        ),
        &[&stream, &alice, &START],
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut from = 0;
    let mut pages = 0;
    loop {
        let v = app
            .get(
                &format!("/api/streams/{stream}/timeline?from_ms={from}"),
                None,
            )
            .await
            .json();
        for m in v["messages"].as_array().unwrap() {
            seen.push(m["message"].as_str().unwrap().to_string());
        }
        pages += 1;
        match v["next_from_ms"].as_i64() {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let expected: Vec<String> = (0..1200).map(|g| format!("m{g}")).collect();
    assert_eq!(seen, expected);
}

#[actix_web::test]
async fn readable_by_whoever_may_watch() {
    let app = spawn_app().await;
    // A private tenant, before any request reads its settings.
    app.configure_tenant(Some(false), None).await;
    let (stream, _) = recorded_stream(&app).await;
    let r = app
        .get(&format!("/api/streams/{stream}/timeline"), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "not_authenticated");
    let bob = app.user("bob", Role::Viewer).await;
    let r = bob.get(&format!("/api/streams/{stream}/timeline")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["messages"].as_array().unwrap().len(), 3);
    // Another tenant's stream is not found from this one.
    let other = spawn_app().await;
    let r = other
        .get(&format!("/api/streams/{stream}/timeline"), None)
        .await;
    assert_eq!(r.status, 404);
}
