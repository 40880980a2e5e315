//! Video, replay, descriptions and the demo bot in headless Chromium: an HLS
//! clip (made by the test with ffmpeg) plays; a past stream replays its chat in
//! step with the video and its reaction strip peaks where the reactions were
//! and seeks on a click; no XSS payload of a description is alive; the demo
//! bot's chat and stamps show on a watch page. Screenshots of the replay page
//! go to `test-artifacts/`.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use stampede::{demo, domain::Role};
use time::{Duration as Span, OffsetDateTime};

use crate::{
    browser::{artifact, site, Browser, Tab},
    helpers::*,
    slow::common::set_status,
};

/// Length of the test clip, in seconds.
const CLIP: i64 = 30;

/// The test's HLS clip (made once per test process with ffmpeg).
fn clip_dir() -> PathBuf {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = dir.as_ref() {
        return d.clone();
    }
    let d = std::env::temp_dir().join(format!("stampede-test-hls-{}", std::process::id()));
    demo::test_pattern_hls(&d, CLIP as u32).expect("an HLS clip made with ffmpeg");
    *dir = Some(d.clone());
    d
}

/// Serves `dir` on another origin (as a CDN would, with CORS); returns the
/// playlist's URL.
fn serve_clip(dir: &Path) -> String {
    serve_clip_breaking(dir, None).0
}

/// Like [`serve_clip`], but the first request for the segment `broken`
/// answers bytes no demuxer can parse (a CDN glitch); later ones are right.
/// Returns the playlist's URL and how many broken answers were sent.
fn serve_clip_breaking(dir: &Path, broken: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
    let dir = dir.to_path_buf();
    let served_broken = Arc::new(AtomicUsize::new(0));
    let counter = served_broken.clone();
    let server = HttpServer::new(move || {
        let dir = dir.clone();
        let counter = counter.clone();
        App::new().route(
            "/{file}",
            web::get().to(move |f: web::Path<String>| {
                let name = f.into_inner().replace('/', "");
                let path = dir.join(&name);
                let break_it = broken == Some(name.as_str())
                    && counter
                        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                async move {
                    let kind = if path.extension().is_some_and(|e| e == "m3u8") {
                        "application/vnd.apple.mpegurl"
                    } else {
                        "video/mp2t"
                    };
                    match std::fs::read(&path) {
                        Ok(b) => HttpResponse::Ok()
                            .content_type(kind)
                            .insert_header(("Access-Control-Allow-Origin", "*"))
                            .body(if break_it { with_broken_sps(b) } else { b }),
                        Err(_) => HttpResponse::NotFound().finish(),
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}/index.m3u8"), served_broken)
}

/// A segment whose H.264 sequence parameter set (the first NAL unit of
/// type 7) is garbage: its video cannot be parsed.
fn with_broken_sps(mut b: Vec<u8>) -> Vec<u8> {
    let sps = b
        .windows(4)
        .position(|w| w == [0, 0, 1, 0x67])
        .expect("the segment has an SPS");
    for byte in &mut b[sps + 4..sps + 12] {
        *byte = 0xff;
    }
    b
}

async fn create_stream_via_api(owner: &TestUser<'_>, body: Value) -> i64 {
    let r = owner.post("/api/streams", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["id"].as_i64().unwrap()
}

/// Remembers in the page whether a floating stamp was ever added.
async fn watch_for_stamps(tab: &Tab) {
    tab.run("window.__stamps = 0; new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => { \
           if (n.classList && n.classList.contains('floating-stamp')) window.__stamps++; }))) \
           .observe(document.body, {childList: true, subtree: true});").await;
}

/// How a test's tab plays the watch page's HLS.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Player {
    /// The page's choice: the browser's own HLS where it has one, else hls.js.
    AsTheBrowserCan,
    /// The vendored hls.js, as in a browser without HLS of its own (the
    /// tab's `canPlayType` says no to HLS).
    HlsJs,
}

impl Player {
    /// A tab that plays HLS this way and counts its pages' media errors
    /// (`window.__mediaErrors`).
    async fn tab(self, browser: &Browser) -> Tab {
        let tab = browser.tab().await;
        let mut source = String::from(
            "window.__mediaErrors = 0; document.addEventListener('error', \
             (e) => { if (e.target instanceof HTMLMediaElement) window.__mediaErrors += 1; }, true);",
        );
        if self == Player::HlsJs {
            source.push_str(
                "const canPlay = HTMLMediaElement.prototype.canPlayType; \
                 HTMLMediaElement.prototype.canPlayType = function (t) { \
                   return /mpegurl/i.test(t) ? '' : canPlay.call(this, t); };",
            );
        }
        tab.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": source }),
        )
        .await;
        tab
    }

    /// Whether pages in `tab` (as [`Player::tab`] opened it) play HLS with
    /// the browser's own player, else through hls.js.
    async fn is_native(self, tab: &Tab) -> bool {
        self == Player::AsTheBrowserCan
            && tab
                .eval("document.createElement('video').canPlayType('application/vnd.apple.mpegurl') !== ''")
                .await
                == true
    }

    /// Waits until the page in `tab` plays its video as [`Player::is_native`]
    /// said.
    async fn wait_playing(tab: &Tab, native: bool) {
        tab.wait_for(&format!("!!$('#watch').hls === {}", !native))
            .await;
    }
}

#[actix_web::test]
async fn description_payloads_are_dead_on_the_watch_page() {
    let app = spawn_app().await;
    let owner = app.user("owner", Role::Streamer).await;
    let payloads = [
        "<script>window.__xss = 1</script>",
        "<img src=x onerror=\"window.__xss = 2\">",
        "<svg onload=\"window.__xss = 3\"></svg>",
        "[click me](javascript:window.__xss=4)",
        "<a href=\"javascript:window.__xss=5\">a</a>",
        "<iframe src=\"javascript:window.__xss=6\"></iframe>",
        "![pic](x\" onerror=\"window.__xss=7)",
        "<details open ontoggle=\"window.__xss=8\">",
        "<p style=\"background:url(javascript:window.__xss=9)\" onmouseover=\"window.__xss=10\">hover</p>",
        "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss=11\">",
        "[data](data:text/html,<script>window.__xss=12</script>)",
    ];
    let description = format!(
        "Schedule: **Fridays** and *Sundays*\n[site](https://example.com/s)\n\n- one\n- two\n\n{}",
        payloads.join("\n\n")
    );
    let stream =
        create_stream_via_api(&owner, json!({"title": "XSS", "description": description})).await;
    // The JSON API keeps the Markdown text.
    let stored = app.stored_stream(stream).await;
    assert_eq!(stored.description, description.trim());

    let browser = Browser::start().await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/streams/{stream}", site(&app))).await;
    tab.wait_for("$('#description')").await;
    // Give anything that could run a chance to: what is asserted is that
    // nothing does, so there is nothing to poll for.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let report = tab
        .eval(
            "(() => { const d = $('#description'); \
               const tags = [...new Set($$('*', d).map((e) => e.tagName.toLowerCase()))].sort(); \
               const attrs = [...new Set($$('*', d).flatMap((e) => [...e.attributes].map((a) => a.name)))].sort(); \
               const hrefs = $$('a[href]', d).map((a) => a.href); \
               const rels = $$('a', d).map((a) => a.rel); \
               return {xss: window.__xss || 0, tags, attrs, hrefs, rels, \
                       scripts: $$('script').filter((s) => !s.src && s.type !== 'application/json').length}; })()",
        )
        .await;
    assert_eq!(report["xss"], 0, "{report}");
    assert_eq!(report["scripts"], 0, "{report}");
    for tag in report["tags"].as_array().unwrap() {
        assert!(
            ["a", "br", "em", "li", "ol", "p", "strong", "ul"].contains(&tag.as_str().unwrap()),
            "{report}"
        );
    }
    for attr in report["attrs"].as_array().unwrap() {
        assert!(
            ["href", "rel"].contains(&attr.as_str().unwrap()),
            "{report}"
        );
    }
    assert_eq!(
        report["hrefs"],
        json!(["https://example.com/s"]),
        "{report}"
    );
    for rel in report["rels"].as_array().unwrap() {
        assert_eq!(rel, "nofollow noopener ugc");
    }
    assert!(
        tab.eval("!!$('#description strong') && !!$('#description li')")
            .await
            == true
    );
    // Hovering and clicking what is there runs nothing either.
    tab.click("$('#description a')").await;
    assert!(tab.incidents().is_empty(), "{:?}", tab.incidents());
}

#[actix_web::test]
async fn an_hls_stream_plays_in_chromium() {
    let app = spawn_app().await;
    let url = serve_clip(&clip_dir());
    let owner = app.user("owner", Role::Streamer).await;
    let stream = create_stream_via_api(&owner, json!({"title": "HLS", "video_url": url})).await;
    set_status(&owner, stream, "live").await;
    let browser = Browser::start().await;
    for player in [Player::AsTheBrowserCan, Player::HlsJs] {
        let tab = player.tab(&browser).await;
        let native = player.is_native(&tab).await;
        tab.goto(&format!("{}/streams/{stream}", site(&app))).await;
        Player::wait_playing(&tab, native).await;
        // It plays: its time advances by more than a second.
        let first = tab
            .wait_for("$('#video').currentTime > 0.2 && $('#video').currentTime")
            .await
            .as_f64()
            .unwrap();
        tab.wait_for(&format!("$('#video').currentTime > {}", first + 1.0))
            .await;
        assert_eq!(
            tab.eval("$('#video').error").await,
            Value::Null,
            "{player:?}"
        );
        assert_eq!(tab.eval("window.__mediaErrors").await, 0, "{player:?}");
    }
}

/// Seeks the replay's video to `t` seconds and waits until the chat shows
/// exactly the messages of [`CHAT`] (stored as `ids`) up to `t`.
async fn seek_shows_chat_until(tab: &Tab, ids: &[i64], t: f64) {
    tab.eval(&format!("$('#video').currentTime = {t}")).await;
    let expected: Vec<i64> = CHAT
        .iter()
        .zip(ids)
        .filter(|((ms, _), _)| (*ms as f64) <= t * 1000.0)
        .map(|(_, id)| *id)
        .collect();
    tab.wait_for(&format!(
        "!$('#video').seeking && JSON.stringify(messages().map((m) => Number(m.dataset.id))) === {}",
        json!(json!(expected).to_string())
    ))
    .await;
}

/// Offsets (ms) and texts of the recorded chat of the replay test.
const CHAT: &[(i64, &str)] = &[
    (1_000, "first"),
    (4_000, "second"),
    (8_500, "third"),
    (12_000, "fourth"),
    (12_600, "fifth"),
    (20_200, "burst!"),
    (27_000, "last"),
];

#[actix_web::test]
async fn a_past_stream_replays_in_step_with_its_video() {
    replays_in_step(Player::AsTheBrowserCan).await;
}

#[actix_web::test]
async fn a_past_stream_replays_in_step_with_its_video_through_hls_js() {
    replays_in_step(Player::HlsJs).await;
}

/// A past stream with chat and reactions replays in step with its video
/// played by `player`, and gets over a media error.
async fn replays_in_step(player: Player) {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let tab = player.tab(&browser).await;
    let native = player.is_native(&tab).await;
    // With the browser's own HLS, the segment the first seek needs comes
    // broken the first time. (hls.js, which parses segments itself, skips
    // such a one without a media error.)
    let (url, broken) = serve_clip_breaking(&clip_dir(), native.then_some("seg006.ts"));
    let owner = app
        .create_user("owner", "password-123", Role::Streamer)
        .await;
    let alice = app.create_user("alice", "password-123", Role::Viewer).await;
    let slug = &app.tenant.slug;
    let stream = app
        .store
        .create_stream(slug, owner, "Yesterday", "", Some(&url))
        .await
        .unwrap();
    let start = OffsetDateTime::now_utc() - Span::hours(2);
    app.store
        .set_stream_times(slug, stream, start, Some(start + Span::seconds(CLIP)))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (ms, text) in CHAT {
        ids.push(
            app.store
                .record_message_at(
                    slug,
                    stream,
                    Some(alice),
                    text,
                    start + Span::milliseconds(*ms),
                )
                .await
                .unwrap(),
        );
    }
    // A few reactions here and there, and a burst at 20 s.
    for (ms, stamp, n) in [
        (3_200, 1, 2),
        (9_000, 2, 3),
        (20_300, 4, 25),
        (20_600, 1, 6),
        (26_000, 3, 4),
    ] {
        app.store
            .record_reactions_at(
                slug,
                stream,
                alice,
                stamp,
                start + Span::milliseconds(ms),
                n,
            )
            .await
            .unwrap();
    }

    tab.goto(&format!("{}/streams/{stream}", site(&app))).await;
    tab.wait_for("$('#watch').dataset.replayReady === 'true'")
        .await;
    Player::wait_playing(&tab, native).await;
    tab.wait_for("$('#video').readyState >= 1").await;
    let shown_ids = || async {
        tab.eval("messages().map((m) => Number(m.dataset.id))")
            .await
    };
    // Paused at 0: nothing yet.
    assert_eq!(shown_ids().await, json!([]));

    // Seeking to t shows exactly the messages up to t.
    for t in [12.5_f64, 4.0, 27.5, 0.5] {
        seek_shows_chat_until(&tab, &ids, t).await;
    }

    // A media error. With the browser's own HLS, the broken segment failed
    // the video (as any error its demuxer or decoder raises): the page
    // loaded it afresh where it was, seeking works again, and the note says
    // what it said before. hls.js gets over that segment by itself; when it
    // reports a fatal media error, the page has it attach the video afresh
    // (a new Media Source), and seeking works again.
    if native {
        assert_eq!(broken.load(Ordering::SeqCst), 1);
        assert_eq!(tab.eval("window.__mediaErrors >= 1").await, true);
    } else {
        assert_eq!(tab.eval("window.__mediaErrors").await, 0);
        let source = tab.eval("$('#video').src").await;
        tab.run(
            "$('#watch').hls.trigger(Hls.Events.ERROR, {type: Hls.ErrorTypes.MEDIA_ERROR, \
               details: Hls.ErrorDetails.BUFFER_APPEND_ERROR, fatal: true, error: new Error('test')});",
        )
        .await;
        tab.wait_for(&format!(
            "$('#video').src !== {source} && $('#video').readyState >= 1"
        ))
        .await;
    }
    assert_eq!(tab.eval("$('#video').error").await, Value::Null);
    seek_shows_chat_until(&tab, &ids, 12.5).await;
    assert_eq!(
        tab.eval("$('#replay-note').textContent").await,
        "Chat replays with the video."
    );

    // The strip's peak is at the burst, in the data and on screen.
    assert_eq!(
        tab.eval("$('#reaction-strip').dataset.peakMs").await,
        "20000"
    );
    let tallest = tab
        .eval(
            "(() => { const bins = $$('.strip-bin'); let best = -1, at = null; \
               bins.forEach((b) => { const h = $$('.strip-seg', b).reduce((s, e) => s + e.getBoundingClientRect().height, 0); \
                 if (h > best) { best = h; at = b; } }); \
               const r = $('#reaction-strip').getBoundingClientRect(), br = at.getBoundingClientRect(); \
               return {offset: Number(at.dataset.offsetMs), frac: (br.x + br.width / 2 - r.x) / r.width}; })()",
        )
        .await;
    assert_eq!(tallest["offset"], 20_000, "{tallest}");
    let frac = tallest["frac"].as_f64().unwrap();
    assert!((frac - 20.5 / CLIP as f64).abs() < 0.03, "{tallest}");

    // Playing through the burst floats its stamps.
    watch_for_stamps(&tab).await;
    tab.eval("$('#video').currentTime = 19.5").await;
    tab.wait_for("!$('#video').seeking").await;
    tab.eval("$('#video').play().then(() => true)").await;
    tab.wait_for_within("window.__stamps >= 5", Duration::from_secs(10))
        .await;
    // Pause only once the video is past the burst's message (20.2 s): on a
    // busy machine the stamps can float before playback gets there.
    tab.wait_for("$('#video').currentTime > 20.4").await;
    tab.eval("$('#video').pause()").await;
    tab.wait_for("messageWith('burst!')").await;

    // A click on the strip seeks there; so do the arrow keys.
    let rect = tab
        .eval("(() => { const r = $('#reaction-strip').getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
        .await;
    let (x, y, w, h) = (
        rect[0].as_f64().unwrap(),
        rect[1].as_f64().unwrap(),
        rect[2].as_f64().unwrap(),
        rect[3].as_f64().unwrap(),
    );
    let cx = x + w * (5.5 / CLIP as f64);
    for (kind, count) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 1)] {
        tab.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": cx, "y": y + h / 2.0, "button": "left", "clickCount": count}),
        )
        .await;
    }
    tab.wait_for("!$('#video').seeking && Math.abs($('#video').currentTime - 5.5) < 0.3")
        .await;
    tab.wait_for(&format!(
        "JSON.stringify(messages().map((m) => Number(m.dataset.id))) === {}",
        json!(json!([ids[0], ids[1]]).to_string())
    ))
    .await;
    // Act, wait, check, like the studio steps in moderation_browser: other controls.
    tab.eval("$('#reaction-strip').focus()").await;
    tab.press("ArrowRight").await;
    tab.wait_for("Math.abs($('#video').currentTime - 10.5) < 0.3")
        .await;
    assert_eq!(
        tab.eval("$('#reaction-strip').getAttribute('aria-valuenow')")
            .await,
        "10"
    );
    // The top moments are buttons that seek too.
    tab.click("$('.peak[data-offset-ms=\"20000\"]')").await;
    tab.wait_for("Math.abs($('#video').currentTime - 20) < 0.3")
        .await;
    assert!(tab.incidents().is_empty(), "{:?}", tab.incidents());

    // Screenshots for the README, desktop and phone, and the phone's checks:
    // once, of the page as the browser plays it.
    if player == Player::HlsJs {
        return;
    }
    tab.eval("$('#video').currentTime = 21").await;
    tab.wait_for("!$('#video').seeking").await;
    tab.screenshot(&artifact("replay-desktop.png")).await;
    let phone = browser.tab().await;
    phone.viewport(375, 812, true).await;
    phone.accept_language("ja").await;
    phone
        .goto(&format!("{}/streams/{stream}", site(&app)))
        .await;
    phone
        .wait_for("$('#watch').dataset.replayReady === 'true'")
        .await;
    assert_eq!(phone.eval("$('#conn').textContent").await, "リプレイ");
    // Seek, wait, check as on the desktop tab above, with the phone's checks.
    phone.wait_for("$('#video').readyState >= 1").await;
    phone.eval("$('#video').currentTime = 21").await;
    phone.wait_for("messageWith('burst!')").await;
    // The strip fits the phone's width.
    let fits = phone
        .eval("$('#reaction-strip').getBoundingClientRect().right <= window.innerWidth")
        .await;
    assert_eq!(fits, true);
    phone.screenshot(&artifact("replay-phone.png")).await;
}

#[actix_web::test]
async fn the_demo_bot_chats_and_its_stamps_float() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    app.store
        .set_stream_status(
            &app.tenant.slug,
            stream,
            stampede::store::streams::StreamStatus::Live,
        )
        .await
        .unwrap();
    app.create_user("stampy", "stampy-password", Role::Viewer)
        .await;
    let browser = Browser::start().await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/streams/{stream}", site(&app))).await;
    tab.wait_for("$('#conn').dataset.state === 'live'").await;
    watch_for_stamps(&tab).await;
    actix_rt::spawn(demo::run_bot(demo::BotConfig::demo(
        app.address.clone(),
        app.tenant.host.clone(),
        "stampy".into(),
        "stampy-password".into(),
        stream,
    )));
    tab.wait_for_within(
        "messages().some((m) => m.dataset.user === 'stampy')",
        Duration::from_secs(8),
    )
    .await;
    tab.wait_for_within("window.__stamps > 0", Duration::from_secs(8))
        .await;
    // Through the room like anyone: stored, with its id.
    let rows = app.stored_rows(stream).await;
    assert!(!rows.is_empty());
}
