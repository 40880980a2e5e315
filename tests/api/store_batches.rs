//! The message writer's batch insert against a real PostgreSQL: what one batch
//! of several rooms, with repeated `client_id`s, stores — ids in batch order,
//! each room's `seq` dense and in batch order, duplicates answered with the
//! first copy —, that a batch naming a room that does not exist stores
//! nothing, and that each batch writer has a connection of its own.

use stampede::{
    domain::Role,
    store::messages::{InsertOutcome, MessageBody, MessageType, NewMessage},
};

use crate::helpers::*;

fn message(room_id: i64, user_id: i64, content: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        room_id,
        user_id: Some(user_id),
        message_type: MessageType::Message,
        reply_to_id: None,
        body: MessageBody {
            content: content.into(),
            client_id: client_id.map(str::to_string),
            ..MessageBody::default()
        },
    }
}

/// A stream of "owner" and its room's id, and the user id of "alice".
async fn room_and_alice(app: &TestApp) -> (i64, i64, i64) {
    let stream = app.create_stream("owner").await;
    let room = app.stored_stream(stream).await.room_id;
    let alice = app.create_user("alice", "password-123", Role::Viewer).await;
    (stream, room, alice)
}

/// `(id, seq)` of a stored outcome; panics on a duplicate.
fn stored(o: &InsertOutcome) -> (i64, i64) {
    match o {
        InsertOutcome::Stored { id, seq, .. } => (*id, *seq),
        InsertOutcome::Duplicate { id } => panic!("{id} taken for a duplicate"),
    }
}

#[actix_web::test]
async fn a_batch_of_two_rooms_takes_dense_seqs_per_room_in_batch_order() {
    let app = spawn_app().await;
    let (_, ra, alice) = room_and_alice(&app).await;
    let b = app.create_stream("owner").await;
    let rb = app.stored_stream(b).await.room_id;
    let slug = &app.tenant.slug;

    // One message in room a first: the batch continues after its seq.
    let first = app
        .store
        .insert_messages(slug, &[message(ra, alice, "before", Some("k0"))])
        .await
        .unwrap();
    assert_eq!(stored(&first[0]).1, 1);

    let batch = [
        message(ra, alice, "a1", None),
        message(rb, alice, "b1", Some("k1")),
        message(ra, alice, "again", Some("k0")), // stored before this batch
        message(ra, alice, "a2", Some("k1")),    // same key, other room: new
        message(rb, alice, "b1 again", Some("k1")), // earlier in this batch
        message(rb, alice, "b2", None),
        message(ra, alice, "a3", None),
    ];
    let out = app.store.insert_messages(slug, &batch).await.unwrap();
    assert_eq!(out.len(), batch.len());
    assert_eq!(
        out[2],
        InsertOutcome::Duplicate {
            id: stored(&first[0]).0
        }
    );
    assert_eq!(
        out[4],
        InsertOutcome::Duplicate {
            id: stored(&out[1]).0
        }
    );

    let new: Vec<(i64, i64)> = [0, 1, 3, 5, 6].iter().map(|&i| stored(&out[i])).collect();
    let ids: Vec<i64> = new.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids in batch order: {ids:?}"
    );
    assert!(ids[0] > stored(&first[0]).0);
    let seqs: Vec<i64> = new.iter().map(|(_, seq)| *seq).collect();
    // Room a: before = 1, then a1, a2, a3; room b: b1, b2.
    assert_eq!(seqs, vec![2, 1, 3, 2, 4]);

    // What PostgreSQL holds agrees: both rooms' counters and rows.
    let client = app.store.client().await.unwrap();
    for (room, last, count) in [(ra, 4i64, 4i64), (rb, 2, 2)] {
        let row = client
            .query_one(
                &format!(
                    "SELECT r.last_seq, (SELECT count(*) FROM {0}.chat_chatmessage m \
                     WHERE m.room_id = r.id), (SELECT array_agg(m.seq ORDER BY m.id) \
                     FROM {0}.chat_chatmessage m WHERE m.room_id = r.id) \
                     FROM {0}.chat_chatroom r WHERE r.id = $1",
                    slug.schema()
                ),
                &[&room],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), last);
        assert_eq!(row.get::<_, i64>(1), count);
        let stored_seqs: Vec<i64> = row.get(2);
        assert_eq!(stored_seqs, (1..=count).collect::<Vec<_>>(), "room {room}");
    }
}

#[actix_web::test]
async fn a_batch_naming_a_missing_room_stores_nothing() {
    let app = spawn_app().await;
    let (a, ra, alice) = room_and_alice(&app).await;
    let slug = &app.tenant.slug;
    let batch = [
        message(ra, alice, "fine", None),
        message(ra + 1_000_000, alice, "nowhere", None),
    ];
    assert!(app.store.insert_messages(slug, &batch).await.is_err());
    assert!(app.stored_ids(a).await.is_empty());
    let ok = app.store.insert_messages(slug, &batch[..1]).await.unwrap();
    assert_eq!(stored(&ok[0]).1, 1, "the failed batch took no seq");
}

#[actix_web::test]
async fn a_batch_dropped_half_way_leaves_no_open_transaction_in_the_pool() {
    let app = spawn_app().await;
    let (a, ra, alice) = room_and_alice(&app).await;
    let slug = &app.tenant.slug;
    // A pool of two, so both of its connections can be checked after.
    let store = store_for(&database_url(), 2);
    for k in 0..150u64 {
        // Dropped at every point of the batch: before BEGIN, under the lock,
        // between the insert and COMMIT, after it.
        let batch = [message(ra, alice, &format!("m{k}"), None)];
        let insert = store.insert_messages(slug, &batch);
        let _ = tokio::time::timeout(std::time::Duration::from_micros(20 * k), insert).await;
        let (one, two) = (store.client().await.unwrap(), store.client().await.unwrap());
        for c in [&one, &two] {
            // Outside a transaction each statement runs in one of its own; in
            // a transaction left open, both run in that one.
            let mut xids = Vec::new();
            for _ in 0..2 {
                let row = c
                    .query_one("SELECT txid_current()", &[])
                    .await
                    .expect("a pooled connection is not in a failed transaction");
                xids.push(row.get::<_, i64>(0));
            }
            assert_ne!(
                xids[0], xids[1],
                "dropped after {k} × 20 µs: a pooled connection is in a transaction"
            );
        }
    }
    // Whatever committed took dense seqs, and the room takes more.
    let out = store
        .insert_messages(slug, &[message(ra, alice, "after", None)])
        .await
        .unwrap();
    let ids = app.stored_ids(a).await;
    assert_eq!(stored(&out[0]).1, ids.len() as i64);
}

/// Each batch writer writes through a connection of its own, opened on its
/// own thread: a connection of the shared pool is driven by the HTTP worker
/// that opened it, where the writer's round trips waited behind every socket
/// write of a broadcast. PostgreSQL lists the writers' connections under the
/// node's application name followed by the writer's.
#[actix_web::test]
async fn each_batch_writer_writes_through_a_connection_of_its_own() {
    let name = format!("stampede_{}", random_hex(8));
    let url_name = name.clone();
    let app = AppBuilder::new()
        .with(move |s| s.database.url = format!("{}?application_name={url_name}", s.database.url))
        .spawn()
        .await;
    let (_, _alice, mut ws) = app.stream_with_viewer("alice").await;
    ws.say("stored by the writer").await;
    ws.react_many(1).await;
    ws.reactions_until(1).await;

    let client = app.store.client().await.unwrap();
    let names = eventually("both writers' connections", WAIT, || async {
        let rows = client
            .query(
                "SELECT DISTINCT application_name FROM pg_catalog.pg_stat_activity \
                 WHERE application_name LIKE $1 ORDER BY 1",
                &[&format!("{name}%")],
            )
            .await
            .unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        (names.len() == 3).then_some(names)
    })
    .await;
    assert_eq!(
        names,
        [
            name.clone(),
            format!("{name}-messages"),
            format!("{name}-reactions")
        ]
    );
}
