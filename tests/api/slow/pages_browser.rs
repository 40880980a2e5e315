//! The pages in a real browser (headless Chromium): two people chatting and
//! sending stamps, viewer counts, anonymous read-only viewing, escaping,
//! reconnecting across a server restart, accounts, the studio, moderation
//! controls, the Japanese UI, the phone layout, and replies, edits, mentions
//! and search. Screenshots of the watch page go to `test-artifacts/`.

use std::time::Duration;

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{
    browser::{artifact, site, Browser, Tab},
    helpers::*,
    slow::common::set_status,
};

/// How many confirmed messages in the tab have exactly this text.
async fn count_of(tab: &Tab, text: &str) -> i64 {
    tab.eval(&format!(
        "texts().filter((t) => t === {}).length",
        json!(text)
    ))
    .await
    .as_i64()
    .unwrap()
}

/// Waits until the watch page's video box is at most `max_width` wide (the
/// layout follows a viewport change), then checks that the chat box starts
/// where the video box ends, or later, along one axis: the video's
/// `video_edge` against the chat's `chat_edge` (`right` and `left`: beside
/// it; `bottom` and `top`: below it), naming `arrangement` when it does not.
/// Returns `[video edge, chat edge, page width]`.
async fn chat_after_video(
    tab: &Tab,
    video_edge: &str,
    chat_edge: &str,
    max_width: u32,
    arrangement: &str,
) -> Value {
    let layout = tab
        .wait_for(&format!("(() => {{ const v = $('.video-box').getBoundingClientRect(); const c = $('.chat').getBoundingClientRect(); return v.width <= {max_width} ? [v.{video_edge}, c.{chat_edge}, document.documentElement.scrollWidth] : null; }})()"))
        .await;
    assert!(
        layout[1].as_f64() >= layout[0].as_f64(),
        "{arrangement}: {layout}"
    );
    layout
}

#[actix_web::test]
async fn two_people_chat_send_stamps_and_see_the_viewer_count() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    set_status(&app.logged_in("owner").await, stream, "live").await;
    app.create_user("alice", "password-123", Role::Viewer).await;
    app.create_user("bob", "password-123", Role::Viewer).await;
    let browser = Browser::start().await;
    let [alice, bob] = browser.watching(&app, stream, ["alice", "bob"]).await;

    // Both sockets count, in both pages (alice learns it from a presence frame).
    for tab in [&alice, &bob] {
        tab.wait_for("$('[data-viewers]').dataset.viewers === '2'")
            .await;
    }

    // The counter follows the text; a message typed in one page shows in the other.
    alice.type_into("field('Message')", "héllo").await;
    assert_eq!(alice.eval("$('#counter').textContent").await, "5/500");
    alice.click("button('Send')").await;
    bob.wait_for("messageWith('héllo')").await;
    alice
        .wait_for("messageWith('héllo') && !$('.pending')")
        .await;
    assert_eq!(count_of(&alice, "héllo").await, 1);
    assert_eq!(alice.eval("field('Message').value").await, "");
    let id = bob.eval("Number(messageWith('héllo').dataset.id)").await;
    assert_eq!(
        app.stored_ids(stream).await.last().copied(),
        id.as_i64(),
        "stored"
    );

    // Enter sends too; a mention of alice is highlighted in her page only.
    bob.type_into("field('Message')", "@alice look up").await;
    bob.press("Enter").await;
    alice
        .wait_for("messageWith('@alice look up') && messageWith('@alice look up').classList.contains('mention')")
        .await;
    bob.wait_for("messageWith('@alice look up')").await;
    assert_eq!(
        bob.eval("messageWith('@alice look up').classList.contains('mention')")
            .await,
        false
    );

    // Over 500 characters the Send button is off.
    alice.type_into("field('Message')", &"x".repeat(501)).await;
    assert_eq!(alice.eval("button('Send').disabled").await, true);
    assert_eq!(alice.eval("$('#counter').textContent").await, "501/500");
    alice.fill("Message", "").await;

    // A stamp clicked by alice floats in bob's page, and is gone after its animation.
    alice.click("button(':smile:')").await;
    let src = bob
        .wait_for("$('.floating-stamp') && $('.floating-stamp').getAttribute('src')")
        .await;
    assert_eq!(src, "/static/stamps/01_smile.svg");
    bob.wait_for_within("!$('.floating-stamp')", Duration::from_secs(6))
        .await;

    // Screenshots of the watch page at desktop and phone widths, stamps in flight.
    bob.say("What a goal!").await;
    alice.wait_for("messageWith('What a goal!')").await;
    alice.viewport(1280, 800, false).await;
    for name in [":love:", ":surprise:", ":smile:", ":love:", ":scream:"] {
        alice.click(&format!("button({})", json!(name))).await;
    }
    alice.wait_for("$$('.floating-stamp').length >= 4").await;
    // Well on their way up (or already gone on a slow machine).
    alice
        .wait_for("!$('.floating-stamp') || $$('.floating-stamp').some((e) => e.getAnimations().some((a) => a.currentTime >= 900))")
        .await;
    let beside = "chat beside the video on a desktop";
    chat_after_video(&alice, "right", "left", 1280, beside).await;
    alice.screenshot(&artifact("watch-desktop.png")).await;
    alice.viewport(375, 812, true).await;
    let below = "chat below the video on a phone";
    let layout = chat_after_video(&alice, "bottom", "top", 375, below).await;
    assert!(
        layout[2].as_f64().unwrap() <= 375.0,
        "nothing wider than a phone: {layout}"
    );
    alice.screenshot(&artifact("watch-phone.png")).await;
    assert!(alice.incidents().is_empty(), "{:?}", alice.incidents());
    assert!(bob.incidents().is_empty(), "{:?}", bob.incidents());
}

#[actix_web::test]
async fn anonymous_viewers_read_along_but_cannot_chat() {
    let app = spawn_app().await;
    let (stream, _alice, mut a) = app.stream_with_viewer("alice").await;
    a.send(json!({"type":"message","message":"before you came","client_id":"b-1"}))
        .await;
    a.expect("ack").await;

    let browser = Browser::start().await;
    let tab = browser.tab().await;
    tab.watch(&app, stream).await;
    assert_eq!(tab.eval("texts()").await, json!(["before you came"]));
    assert_eq!(tab.eval("field('Message').disabled").await, true);
    assert_eq!(tab.eval("button('Send').disabled").await, true);
    assert_eq!(tab.eval("button(':smile:').disabled").await, true);
    let reason = tab.eval("$('#composer-reason').textContent").await;
    assert!(
        reason.as_str().unwrap().contains("Log in"),
        "the box says why: {reason}"
    );
    assert_eq!(tab.eval("!!link('Log in', $('#composer'))").await, true);

    a.send(json!({"type":"message","message":"live now"})).await;
    tab.wait_for("messageWith('live now')").await;
    assert_eq!(
        tab.eval("$$('.mod-tools').length").await,
        0,
        "no moderation controls for viewers"
    );
}

#[actix_web::test]
async fn chat_text_is_shown_as_text_and_runs_nothing() {
    let app = spawn_app().await;
    let (stream, _browser, [alice, bob]) =
        Browser::watching_new_stream(&app, [("alice", Role::Viewer), ("bob", Role::Viewer)]).await;

    let payloads = [
        "<img src=x onerror=\"window.__xss = 1\">",
        "<script>window.__xss = 2</script><b>bold?</b>",
        "\"><svg onload=window.__xss=3>",
    ];
    for p in payloads {
        alice.say(p).await;
        bob.wait_for(&format!("messageWith({})", json!(p))).await;
    }
    let check =
        "chat().querySelectorAll('img, script, svg, b').length === 0 && window.__xss === undefined";
    assert_eq!(bob.eval(check).await, true);
    assert_eq!(alice.eval(check).await, true);

    // Rendered by the server after a reload: still text.
    bob.goto(&format!("{}/streams/{stream}", site(&app))).await;
    for p in payloads {
        assert_eq!(
            bob.eval(&format!("!!messageWith({})", json!(p))).await,
            true,
            "{p}"
        );
    }
    assert_eq!(bob.eval(check).await, true);
    assert!(bob.incidents().is_empty(), "{:?}", bob.incidents());
}

#[actix_web::test]
async fn log_in_and_out_through_the_forms() {
    let app = spawn_app().await;
    app.create_user("carol", "password-123", Role::Viewer).await;
    let browser = Browser::start().await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", site(&app))).await;
    tab.click_and_wait("link('Log in')").await;

    // A wrong password is reported next to the password field.
    tab.type_into("field('Username')", "carol").await;
    tab.type_into("field('Password')", "wrong-password").await;
    tab.click_and_wait("button('Log in')").await;
    let error = tab.eval("$('#password-error').textContent").await;
    assert_eq!(error, "Wrong username or password.");
    assert_eq!(
        tab.eval("field('Password').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    assert_eq!(
        tab.eval("field('Username').value").await,
        "carol",
        "the username is kept"
    );

    tab.type_into("field('Password')", "password-123").await;
    tab.click_and_wait("button('Log in')").await;
    tab.wait_for("$('.who') && $('.who').textContent === 'carol'")
        .await;
    let session = tab
        .eval("fetch('/api/session').then((r) => r.json())")
        .await;
    assert_eq!(session["user"]["username"], "carol");

    tab.click_and_wait("button('Log out')").await;
    tab.wait_for("!!link('Log in')").await;
    let session = tab
        .eval("fetch('/api/session').then((r) => r.json())")
        .await;
    assert_eq!(session["user"], Value::Null);
}

#[actix_web::test]
async fn the_page_comes_back_by_itself_after_a_server_restart() {
    let app = spawn_app().await;
    let (stream, node, on_node) = app.stream_on_node(["alice", "bob"], &[]).await;
    let (_browser, [tab]) = Browser::logged_in(&on_node, ["alice"]).await;
    tab.watch(&on_node, stream).await;
    tab.say("before the restart").await;
    tab.say("deleted while down").await;
    tab.wait_for("messageWith('deleted while down') && !$('.pending')")
        .await;

    let port = node.shut_down();
    // Deleted while this page is away (by a moderator on another node): a
    // resume does not carry it, the page still removes it.
    let deleted = *app.stored_ids(stream).await.last().unwrap();
    app.tenant_sql(
        "UPDATE {s}.chat_chatmessage SET is_deleted = true WHERE id = $1",
        &[&deleted],
    )
    .await;
    tab.wait_for("$('#conn').dataset.state === 'reconnecting'")
        .await;
    assert_eq!(
        tab.eval("$('#conn').textContent").await,
        "Reconnecting…",
        "a visible reconnecting state"
    );
    // Typed while the server is away: kept as pending, not lost.
    tab.say("typed while down").await;
    tab.wait_for("$('.msg.pending') && $('.msg.pending .text').textContent === 'typed while down'")
        .await;

    let node = Node::start(port, &[]).await;
    let bob = on_node.logged_in("bob").await;
    let mut b = on_node.ws(stream, Some(&bob.cookie)).await;
    b.send(json!({"type":"message","message":"sent meanwhile"}))
        .await;
    b.expect("ack").await;

    tab.wait_for("$('#conn').dataset.state === 'live'").await;
    tab.wait_for(
        "messageWith('sent meanwhile') && messageWith('typed while down') && !$('.pending')",
    )
    .await;
    tab.wait_for("!messageWith('deleted while down')").await;
    // A while for a repeat to show: what is asserted is that none comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for text in ["before the restart", "sent meanwhile", "typed while down"] {
        assert_eq!(count_of(&tab, text).await, 1, "{text} shown once");
    }
    let ids = tab
        .eval("messages().map((m) => Number(m.dataset.id))")
        .await;
    let mut sorted: Vec<i64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let shown = sorted.clone();
    sorted.sort();
    assert_eq!(shown, sorted, "in id order");
    let visible: Vec<i64> = app
        .stored_ids(stream)
        .await
        .into_iter()
        .filter(|id| *id != deleted)
        .collect();
    assert_eq!(visible, shown, "stored once each, all shown");
    drop(node);
}

/// A page that saw its room empty and was away while more than a plain
/// history's 50 messages were said comes back with every one of them.
#[actix_web::test]
async fn a_page_that_saw_an_empty_room_misses_nothing_said_while_away() {
    let app = AppBuilder::new().raised_limits().spawn().await;
    let (stream, node, on_node) = app.stream_on_node(["alice", "bob"], &[]).await;
    let (_browser, [tab]) = Browser::logged_in(&on_node, ["alice"]).await;
    tab.watch(&on_node, stream).await;
    assert_eq!(tab.eval("messages().length").await, 0);

    let port = node.shut_down();
    tab.wait_for("$('#conn').dataset.state === 'reconnecting'")
        .await;
    let bob = app.logged_in("bob").await;
    let said = app
        .ws(stream, Some(&bob.cookie))
        .await
        .say_many("away", 60)
        .await;
    let node = Node::start(port, &[]).await;

    tab.wait_for("$('#conn').dataset.state === 'live' && messages().length === 60")
        .await;
    let shown = tab
        .eval("messages().map((m) => Number(m.dataset.id))")
        .await;
    assert_eq!(shown, json!(said), "all 60, in order");
    assert_eq!(
        tab.eval("$('[role=alert]').textContent").await,
        "",
        "nothing said to be skipped"
    );
    drop(node);
}

#[actix_web::test]
async fn a_closed_session_does_not_reconnect() {
    let app = spawn_app().await;
    let (_, _browser, [tab]) = Browser::watching_new_stream(&app, [("alice", Role::Viewer)]).await;
    // Log out from elsewhere (the API, as another tab would): the socket closes 4001.
    let status = tab
        .eval("fetch('/api/logout', {method: 'POST', headers: {'X-CSRF-Token': $('meta[name=csrf-token]').content}}).then((r) => r.status)")
        .await;
    assert_eq!(status, 200);
    tab.wait_for("$('#conn').dataset.state === 'stopped'").await;
    let alert = tab.eval("$('[role=alert]').textContent").await;
    assert!(alert.as_str().unwrap().contains("session ended"), "{alert}");
    // Longer than the page's first reconnect delay: what is asserted is
    // that no reconnect happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        tab.eval("$('#conn').dataset.state").await,
        "stopped",
        "no reconnect"
    );
    assert_eq!(tab.eval("field('Message').disabled").await, true);
}

/// An anonymous viewer watching when the site is made private is told why
/// the chat stopped, and the page does not reconnect.
#[actix_web::test]
async fn an_anonymous_viewer_is_told_when_the_site_goes_private() {
    let app = spawn_app_with(|s| s.session.recheck_secs = 1).await;
    let stream = app.create_stream("owner").await;
    let browser = Browser::start().await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/streams/{stream}", site(&app))).await;
    tab.wait_for("$('#conn').dataset.state === 'live'").await;
    app.configure_tenant(Some(false), None).await;
    tab.wait_for("$('#conn').dataset.state === 'stopped'").await;
    let alert = tab.eval("$('[role=alert]').textContent").await;
    assert!(
        alert.as_str().unwrap().contains("Log in to keep watching"),
        "{alert}"
    );
}

#[actix_web::test]
async fn the_studio_creates_a_stream_and_starts_it() {
    let app = spawn_app().await;
    app.create_user("sam", "password-123", Role::Streamer).await;
    let (_browser, [tab]) = Browser::logged_in(&app, ["sam"]).await;
    tab.click_and_wait("link('Studio')").await;

    // Bad input is reported next to its field, and nothing is created.
    tab.type_into("field('Video URL')", "ftp://example.com/v.mp4")
        .await;
    tab.click("button('Create stream')").await;
    tab.wait_for(
        "$('#ns-title-error').textContent !== '' && $('#ns-video-error').textContent !== ''",
    )
    .await;
    let sam = app.stored_user("sam").await.expect("sam");
    assert!(app
        .store
        .streams_owned_by(&app.tenant.slug, sam.id)
        .await
        .unwrap()
        .is_empty());

    tab.type_into("field('Title')", "Friday night <live>").await;
    tab.type_into(
        "field('Description')",
        "Music & **chat** <img src=x onerror=alert(1)>",
    )
    .await;
    // The preview shows the Markdown as the watch page will, cleaned.
    tab.wait_for("$('#ns-preview strong') && $('#ns-preview strong').textContent === 'chat'")
        .await;
    assert_eq!(tab.eval("$('#ns-preview img') === null").await, true);
    tab.run("field('Video URL').value = '';").await;
    tab.click_and_wait("button('Create stream')").await;
    let streams = app
        .store
        .streams_owned_by(&app.tenant.slug, sam.id)
        .await
        .unwrap();
    assert_eq!(streams.len(), 1);
    let s = &streams[0];
    assert_eq!(
        (
            s.title.as_str(),
            s.description.as_str(),
            s.video_url.as_deref()
        ),
        (
            "Friday night <live>",
            "Music & **chat** <img src=x onerror=alert(1)>",
            None
        )
    );
    let section = format!("$('#stream-{}')", s.id);
    tab.wait_for(&format!(
        "{section} && link('Friday night <live>', {section})"
    ))
    .await;
    assert_eq!(
        tab.eval(&format!(
            "link('Analytics', {section}).getAttribute('href')"
        ))
        .await,
        format!("/streams/{}/analytics", s.id)
    );

    tab.click(&format!("button('Go live', {section})")).await;
    tab.wait_for(&format!("{section}.dataset.status === 'live'"))
        .await;
    let status = app
        .store
        .stream(&app.tenant.slug, s.id)
        .await
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status.as_str(), "live");
    assert!(tab.incidents().is_empty(), "{:?}", tab.incidents());

    // The new stream is on the front page, live.
    tab.click_and_wait("$('.brand')").await;
    assert_eq!(
        tab.eval("$('.stream-card.live .stream-title').textContent")
            .await,
        "Friday night <live>"
    );
}

/// An admin removes a site-wide term from the studio's list: the removal
/// names the list the term is on. A streamer sees the term, with no button.
#[actix_web::test]
async fn the_studio_removes_a_site_wide_term() {
    let app = spawn_app().await;
    app.create_user("root", "password-123", Role::Admin).await;
    let stream = app.create_stream("root").await;
    let own = app.create_stream("sam").await;
    let slug = &app.tenant.slug;
    app.store
        .set_blocked_term(slug, None, "spam", true, false)
        .await
        .unwrap();
    let (_browser, [tab, sam]) = Browser::logged_in(&app, ["root", "sam"]).await;
    sam.click_and_wait("link('Studio')").await;
    sam.click(&format!("$('#stream-{own} [data-role=manage] summary')"))
        .await;
    let terms = format!("$$('#stream-{own} [data-role=terms] li')");
    sam.wait_for(&format!(
        "{terms}.some(li => li.textContent.includes('spam (whole site)'))"
    ))
    .await;
    assert_eq!(
        sam.eval(&format!("{terms}[0].querySelector('button') === null"))
            .await,
        true
    );
    tab.click_and_wait("link('Studio')").await;
    tab.click(&format!("$('#stream-{stream} [data-role=manage] summary')"))
        .await;
    let chips = format!("$$('#stream-{stream} [data-role=terms] li span').map(e => e.textContent)");
    tab.wait_for(&format!("{chips}.includes('spam (whole site)')"))
        .await;
    tab.click(&format!(
        "$('#stream-{stream} [aria-label=\"Remove: spam\"]')"
    ))
    .await;
    tab.wait_for(&format!("!{chips}.includes('spam (whole site)')"))
        .await;
    let left = app.store.blocked_terms(slug, stream).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[actix_web::test]
async fn moderators_get_controls_on_each_message() {
    let app = spawn_app().await;
    let stream = app.stream_with_accounts(&[("mod", Role::Moderator)]).await;
    let viewer = app.user("viewer", Role::Viewer).await;
    let mut v = viewer.ws(stream).await;
    v.send(json!({"message":"rendered by the server"})).await;
    v.expect("ack").await;
    let browser = Browser::start().await;
    let [tab] = browser.watching(&app, stream, ["mod"]).await;
    assert_eq!(tab.eval("$('#watch').dataset.canModerate").await, "true");
    v.send(json!({"message":"arrived live"})).await;
    tab.wait_for("messageWith('arrived live')").await;
    for text in ["rendered by the server", "arrived live"] {
        let names = tab
            .eval(&format!(
                "$$('.mod-tools button', messageWith({})).map(nameOf)",
                json!(text)
            ))
            .await;
        assert_eq!(
            names,
            json!(["Delete", "Pin", "Timeout", "Ban", "Hide"]),
            "{text}"
        );
    }
    // "Message" names the box alone, even on a moderator's page with its
    // mode switches: no other label or aria-label holds the word.
    let named = tab
        .eval(
            "[...$$('label'), ...$$('[aria-label]')]\
             .map(e => e.getAttribute('aria-label') || e.textContent)\
             .filter(t => /message/i.test(t)).map(t => t.trim())",
        )
        .await;
    assert_eq!(named, json!(["Message"]));
}

#[actix_web::test]
async fn a_moderator_deletes_a_message_from_every_page() {
    let app = spawn_app().await;
    let who = [("mod", Role::Moderator), ("viewer", Role::Viewer)];
    let (stream, _browser, [moderator, viewer]) = Browser::watching_new_stream(&app, who).await;
    viewer.say("spam spam spam").await;
    viewer.say("a fine message").await;
    moderator.wait_for("messageWith('a fine message')").await;
    moderator
        .click("button('Delete', messageWith('spam spam spam'))")
        .await;
    viewer.wait_for("!messageWith('spam spam spam')").await;
    moderator.wait_for("!messageWith('spam spam spam')").await;
    assert_eq!(
        viewer.eval("texts()").await,
        json!(["a fine message"]),
        "only the deleted message is gone"
    );
    // A reload does not bring it back.
    viewer.watch(&app, stream).await;
    assert_eq!(viewer.eval("texts()").await, json!(["a fine message"]));
    // Timed out, the viewer is told in the page's alert (by the live
    // `timeout` frame: the reloaded page's socket is live by now, where a
    // socket that joins after the timeout hears only `can_chat: false`).
    moderator
        .click("button('Timeout', messageWith('a fine message'))")
        .await;
    viewer
        .wait_for("$('[role=alert]').textContent.startsWith('You are timed out until')")
        .await;
}

#[actix_web::test]
async fn japanese_from_accept_language_with_a_switch_back() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let browser = Browser::start().await;
    let tab = browser.tab().await;
    tab.accept_language("ja-JP,ja;q=0.9").await;
    tab.watch(&app, stream).await;
    assert_eq!(tab.eval("document.documentElement.lang").await, "ja");
    assert_eq!(tab.eval("!!field('メッセージ')").await, true);
    assert_eq!(tab.eval("!!button('送信')").await, true);
    assert_eq!(tab.eval("!!link('ログイン')").await, true);
    // The script's strings too.
    assert_eq!(tab.eval("$('#conn').textContent").await, "接続中（ライブ）");

    tab.click_and_wait("link('English')").await;
    assert_eq!(tab.eval("document.documentElement.lang").await, "en");
    assert_eq!(tab.eval("!!button('Send')").await, true);
    // The choice is remembered over Accept-Language.
    tab.goto(&format!("{}/", site(&app))).await;
    assert_eq!(tab.eval("document.documentElement.lang").await, "en");
    assert_eq!(tab.eval("!!link('日本語')").await, true);
}

/// Replies, edits, mentions and the moderators' search on the watch page.
#[actix_web::test]
async fn the_watch_page_replies_edits_highlights_and_searches() {
    let app = spawn_app().await;
    let stream = app.stream_with_viewer_accounts(["alice", "bob"]).await;
    let bob_cookie = app.logged_in("bob").await;
    let mut cb = bob_cookie.ws(stream).await;
    // Rendered by the server, then upgraded by the socket's history.
    cb.say_json(json!({"message":"first from bob"})).await;

    let browser = Browser::start().await;
    let [alice, owner] = browser.watching(&app, stream, ["alice", "owner"]).await;

    // Reply: the bar names the message; the reply shows its quote everywhere.
    alice
        .click("button('Reply', messageWith('first from bob'))")
        .await;
    let bar = alice
        .wait_for("$('.intent:not([hidden])') && $('.intent span').textContent")
        .await;
    assert_eq!(bar, "Replying to @bob: first from bob");
    alice.say("a reply to @bob").await;
    let quote = owner
        .wait_for("messageWith('a reply to @bob') && $('.reply-ref', messageWith('a reply to @bob')).textContent")
        .await;
    assert_eq!(quote, "\u{21aa} @bob: first from bob");
    let f = cb.expect("message").await;
    assert_eq!(f["mentions"], json!(["bob"]));
    assert_eq!(alice.eval("$('.intent').hidden").await, true);

    // Edit: own messages only; the new text and "(edited)" reach every page.
    assert_eq!(
        alice
            .eval("!!button('Edit', messageWith('first from bob'))")
            .await,
        false
    );
    alice
        .wait_for("messageWith('a reply to @bob') && !$('.pending')")
        .await;
    alice
        .click("button('Edit', messageWith('a reply to @bob'))")
        .await;
    assert_eq!(
        alice.eval("field('Message').value").await,
        "a reply to @bob"
    );
    alice.fill("Message", "a reply, edited").await;
    alice.click("button('Send')").await;
    owner
        .wait_for(
            "messageWith('a reply, edited') && !!$('.edited', messageWith('a reply, edited'))",
        )
        .await;
    let e = cb.expect("edit").await;
    assert_eq!(e["message"], "a reply, edited");

    // A mention of the viewer is highlighted in their page.
    cb.say_json(json!({"message":"thanks @Alice"})).await;
    alice
        .wait_for("messageWith('thanks @Alice') && messageWith('thanks @Alice').classList.contains('mention')")
        .await;

    // Moderators search the stream's chat.
    assert_eq!(alice.eval("!!$('.chat-search')").await, false);
    owner.click("$('.chat-search summary')").await;
    owner.type_into("$('.chat-search input')", "EDITED").await;
    owner.click("button('Search', $('.chat-search'))").await;
    let hit = owner
        .wait_for("$('.search-results a') && $('.search-results a').textContent")
        .await;
    assert!(
        hit.as_str().unwrap().ends_with("alice: a reply, edited"),
        "{hit}"
    );
    // A result no longer in the live list opens its place in the replay.
    owner.run("messageWith('a reply, edited').remove();").await;
    owner.click("$('.search-results a')").await;
    let context = owner
        .wait_for("$('.search-context .hit') && $('.search-context .hit').textContent")
        .await;
    assert!(
        context
            .as_str()
            .unwrap()
            .ends_with("alice: a reply, edited"),
        "{context}"
    );
    assert!(
        owner
            .eval("$$('.search-context li').some((li) => li.textContent.endsWith('bob: first from bob'))")
            .await
            == true,
        "the messages before it are shown too"
    );
    for tab in [&alice, &owner] {
        assert!(tab.incidents().is_empty(), "{:?}", tab.incidents());
    }
}
