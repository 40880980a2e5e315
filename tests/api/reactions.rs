//! Reactions: coalesced frames with exact counts, limits, one row per accepted
//! reaction with a consistent rollup, the analytics API, CSV and page.

use std::{collections::BTreeMap, time::Duration};

use serde_json::json;
use stampede::domain::Role;

use crate::{helpers::*, ws::*};

fn generous(s: &mut stampede::config::Settings) {
    s.limits.reactions_per_second = 10_000;
    s.limits.reactions_burst = 10_000;
}

/// Reads `reactions` frames until `expected` reactions were counted (or the
/// deadline); returns totals per stamp id and the number of frames.
async fn collect(c: &mut WsClient, expected: u64) -> (BTreeMap<i64, u64>, usize) {
    let mut totals = BTreeMap::new();
    let mut frames = 0;
    let mut sum = 0;
    while sum < expected {
        let f = match c.next_text(Duration::from_secs(10)).await {
            Some(f) => f,
            None => break,
        };
        if f["type"] != "reactions" {
            continue;
        }
        frames += 1;
        assert_eq!(f["window_ms"], 250);
        for s in f["stamps"].as_array().unwrap() {
            let n = s["count"].as_u64().unwrap();
            assert!(n > 0, "empty stamps are left out: {f}");
            *totals.entry(s["stamp_id"].as_i64().unwrap()).or_insert(0) += n;
            sum += n;
        }
    }
    (totals, frames)
}

async fn table_counts(app: &TestApp, stream: i64) -> (i64, i64) {
    let raw = app.stored_reactions(stream).await;
    let rollup = app
        .tenant_number(
            "SELECT COALESCE(sum(count), 0)::bigint FROM {s}.streaming_reaction_minute WHERE stream_id = $1",
            &[&stream],
        )
        .await;
    (raw, rollup)
}

/// Waits until the writer has stored `n` rows (it flushes every ~50 ms).
async fn wait_for_rows(app: &TestApp, stream: i64, n: i64) {
    eventually(&format!("{n} reaction rows stored"), WAIT, || async {
        (app.stored_reactions(stream).await >= n).then_some(())
    })
    .await
}

#[actix_web::test]
async fn counts_are_exact_and_frames_coalesced() {
    let app = spawn_app_with(generous).await;
    let stream = app.create_stream("owner").await;
    let (mut watcher, hello, _) = app.ws_ready(stream, None).await;
    assert_eq!(hello["stamps"][0]["stamp_name"], ":smile:");
    let mut senders = Vec::new();
    for u in 0..5 {
        let fan = app.user(&format!("fan{u}"), Role::Viewer).await;
        senders.push(fan.ws(stream).await);
    }
    let started = std::time::Instant::now();
    let mut sent: BTreeMap<i64, u64> = BTreeMap::new();
    for round in 0..100 {
        for (u, s) in senders.iter_mut().enumerate() {
            let stamp = ((round + u) % 6 + 1) as i64;
            // A client's stamp_name and image are ignored.
            s.send(json!({"type":"reaction","stamp_id":stamp,"stamp_name":":evil:","stamp_image_url":"javascript:alert(1)"}))
                .await;
            *sent.entry(stamp).or_insert(0) += 1;
        }
    }
    let (got, frames) = collect(&mut watcher, 500).await;
    let elapsed = started.elapsed();
    assert_eq!(got, sent, "counts at the watcher equal what was sent");
    let windows = elapsed.as_millis() as usize / 250 + 2;
    assert!(
        frames <= windows,
        "{frames} frames in {elapsed:?}: not coalesced"
    );
    assert!(frames < 500 / 5, "one frame per reaction would be 500");
    watcher.assert_silent(Duration::from_millis(600)).await;

    wait_for_rows(&app, stream, 500).await;
    let (raw, rollup) = table_counts(&app, stream).await;
    assert_eq!(raw, 500);
    assert_eq!(rollup, 500);
    // The rollup agrees with the raw rows per stamp and minute.
    let mismatches = app
        .tenant_number(
            "SELECT count(*) FROM ( \
               SELECT stamp_id, date_trunc('minute', created_at) AS minute, count(*) AS n \
               FROM {s}.streaming_streamreaction WHERE stream_id = $1 GROUP BY 1, 2) r \
             FULL JOIN (SELECT stamp_id, minute, count AS n FROM {s}.streaming_reaction_minute WHERE stream_id = $1) m \
               USING (stamp_id, minute) \
             WHERE r.n IS DISTINCT FROM m.n",
            &[&stream],
        )
        .await;
    assert_eq!(mismatches, 0);
    let frames_in_history = app.ws_ready(stream, None).await.2;
    assert_eq!(
        frames_in_history["messages"],
        json!([]),
        "reactions are never history"
    );
}

#[actix_web::test]
async fn unknown_stamp_and_rate_limit() {
    let app = spawn_app().await; // 20/s, burst 50
    let (stream, _cookie, mut a) = app.stream_with_viewer("alice").await;
    let (mut watcher, _, _) = app.ws_ready(stream, None).await;
    a.send(json!({"type":"reaction","stamp_id":99})).await;
    assert_eq!(a.expect("error").await["code"], "not_found");
    for _ in 0..80 {
        a.send(json!({"type":"reaction","stamp_id":1})).await;
    }
    let mut limited = 0;
    while let Some(v) = a.next_text(Duration::from_millis(800)).await {
        if v["type"] == "error" {
            assert_eq!(v["code"], "rate_limited");
            assert!(v["retry_after_ms"].as_u64().unwrap() > 0);
            limited += 1;
        }
    }
    assert!(limited >= 20, "only {limited} refused");
    let accepted = 80 - limited;
    let (got, _) = collect(&mut watcher, accepted as u64).await;
    assert_eq!(got.get(&1).copied(), Some(accepted as u64));
    wait_for_rows(&app, stream, accepted as i64).await;
    assert_eq!(
        table_counts(&app, stream).await,
        (accepted as i64, accepted as i64)
    );
    // The node counts every frame it read and, apart, what the room took:
    // a reaction that goes missing between the two shows on /metrics.
    assert_eq!(app.metric("stampede_reaction_frames_total").await, 81);
    assert_eq!(
        app.metric("stampede_reactions_received_total").await,
        accepted as u64
    );
}

#[actix_web::test]
async fn analytics_api_csv_and_page() {
    // The node's connections run in a zone half an hour off UTC: buckets
    // still start on whole UTC hours (PROTOCOL.md).
    let app = spawn_app_with(|s| {
        generous(s);
        let sep = if s.database.url.contains('?') {
            '&'
        } else {
            '?'
        };
        s.database.url = format!(
            "{}{sep}options=-c%20TimeZone%3DAsia%2FKolkata",
            s.database.url
        );
    })
    .await;
    let (stream, owner) = app.stream_with_owner().await;
    let [viewer, modr] = app
        .users([("viewer", Role::Viewer), ("mod", Role::Moderator)])
        .await;
    let mut a = viewer.ws(stream).await;
    for i in 0..30 {
        a.send(json!({"type":"reaction","stamp_id": i % 3 + 1}))
            .await;
    }
    a.reactions_until(30).await;
    wait_for_rows(&app, stream, 30).await;

    for bucket in ["10s", "1m", "1h"] {
        let r = owner
            .get(&format!("/api/streams/{stream}/reactions?bucket={bucket}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["bucket"], bucket);
        assert_eq!(v["stream_id"], stream);
        assert_eq!(v["total"], 30);
        let sum: i64 = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, 30, "{bucket}");
        let start = v["series"][0]["start"].as_str().unwrap();
        let t = time::OffsetDateTime::parse(start, &time::format_description::well_known::Rfc3339)
            .unwrap();
        let width = match bucket {
            "10s" => 10,
            "1m" => 60,
            _ => 3600,
        };
        assert_eq!(
            t.unix_timestamp() % width,
            0,
            "{start} starts on a whole bucket"
        );
    }
    let r = modr.get(&format!("/api/streams/{stream}/reactions")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["bucket"], "1m");
    // A range that ends before the stream began holds nothing.
    let r = owner
        .get(&format!(
            "/api/streams/{stream}/reactions?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z"
        ))
        .await;
    assert_eq!(r.json()["total"], 0);

    let r = owner
        .get(&format!("/api/streams/{stream}/reactions.csv?bucket=10s"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let mut lines = r.body.lines();
    assert_eq!(lines.next(), Some("bucket_start,stamp_id,stamp_name,count"));
    let mut sum = 0;
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 4, "{line}");
        assert!(cols[2].starts_with(':'), "{line}");
        sum += cols[3].parse::<i64>().unwrap();
    }
    assert_eq!(sum, 30);

    for bad in [
        "bucket=5m",
        "from=yesterday",
        "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
    ] {
        let r = owner
            .get(&format!("/api/streams/{stream}/reactions?{bad}"))
            .await;
        assert_eq!(r.status, 422, "{bad}");
        assert_eq!(r.json()["error"]["code"], "invalid");
    }
    assert_eq!(
        viewer
            .get(&format!("/api/streams/{stream}/reactions"))
            .await
            .status,
        403
    );
    assert_eq!(
        app.get(&format!("/api/streams/{stream}/reactions"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        viewer
            .get(&format!("/api/streams/{stream}/reactions.csv"))
            .await
            .status,
        403
    );
    assert_eq!(owner.get("/api/streams/999999/reactions").await.status, 404);

    let page = owner.get(&format!("/streams/{stream}/analytics")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg"), "chart missing");
    assert_eq!(page.body.matches("<polyline").count(), 3);
    for name in [":smile:", ":surprise:", ":cry:"] {
        assert!(page.body.contains(name), "{name} missing");
    }
    assert!(page.body.contains("Top moments"));
    assert!(page
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(
        viewer
            .get(&format!("/streams/{stream}/analytics"))
            .await
            .status,
        403
    );
}

/// A range that starts after the stream's life (or ends before it began) is
/// an empty series, not a bad request: only an explicit `from` after an
/// explicit `to` is `invalid`.
#[actix_web::test]
async fn a_range_outside_the_stream_is_empty() {
    use time::{format_description::well_known::Rfc3339, OffsetDateTime};
    let iso = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap();

    let app = spawn_app_with(generous).await;
    let (stream, owner) = app.stream_with_owner().await;
    let viewer = app.user("viewer", Role::Viewer).await;
    let mut a = viewer.ws(stream).await;
    for i in 0..6 {
        a.send(json!({"type":"reaction","stamp_id": i % 3 + 1}))
            .await;
    }
    wait_for_rows(&app, stream, 6).await;
    let all = owner.get(&format!("/api/streams/{stream}/reactions")).await;
    assert_eq!(all.json()["total"], 6, "{}", all.body);

    let now = OffsetDateTime::now_utc();
    let later = iso(now + time::Duration::days(1));
    // Even the bucket this hour's reactions are in lies before such a `from`.
    let soon = iso(now + time::Duration::minutes(1));
    for query in [
        format!("from={later}"),
        format!("from={later}&bucket=10s"),
        format!("from={soon}&bucket=1h"),
        "to=2000-01-01T00:00:00Z".to_string(),
    ] {
        let r = owner
            .get(&format!("/api/streams/{stream}/reactions?{query}"))
            .await;
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let v = r.json();
        assert_eq!(v["series"], json!([]), "{query}");
        assert_eq!(v["total"], 0, "{query}");
        let from = OffsetDateTime::parse(v["from"].as_str().unwrap(), &Rfc3339).unwrap();
        let to = OffsetDateTime::parse(v["to"].as_str().unwrap(), &Rfc3339).unwrap();
        assert!(
            from <= to,
            "{query}: an empty range, not an inverted one: {v}"
        );
    }
    let r = owner
        .get(&format!("/api/streams/{stream}/reactions.csv?from={later}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "bucket_start,stamp_id,stamp_name,count\n");

    // Both explicit and inverted: invalid.
    let r = app
        .get(
            &format!(
                "/api/streams/{stream}/reactions?from={later}&to={}",
                iso(now)
            ),
            Some(&owner.cookie),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "invalid");
}

#[actix_web::test]
async fn graceful_shutdown_loses_no_reaction() {
    let app = spawn_app().await;
    let (stream, node, remote) = app
        .stream_on_node(["alice"], RAISED_REACTION_LIMITS_ENV)
        .await;
    let cookie = remote.logged_in("alice").await;
    let mut a = cookie.ws(stream).await;
    for i in 0..300 {
        a.send(json!({"type":"reaction","stamp_id": i % 6 + 1}))
            .await;
    }
    // Everything sent so far is read by the server once it answers this.
    a.send(json!({"type":"message","message":""})).await;
    assert_eq!(a.expect("error").await["code"], "empty");
    node.signal("-TERM");
    let mut refused = 0;
    loop {
        match a.next_text(Duration::from_secs(20)).await {
            Some(v) if v["type"] == "error" => refused += 1,
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(a.closed_code(), Some(1012));
    assert!(node.wait(Duration::from_secs(30)).success());
    let (raw, rollup) = table_counts(&app, stream).await;
    assert_eq!(refused, 0);
    assert_eq!(raw, 300);
    assert_eq!(rollup, 300);
}
