//! Moderation, round two, in a real browser: the "Held for review" panel
//! (approve, deny), hiding a user, the chat-mode errors in both languages and
//! the mode controls on the watch page and in the studio.

use serde_json::{json, Value};
use stampede::domain::Role;

use crate::{
    browser::{site, Browser, Tab},
    helpers::*,
    slow::common::{hold_term, moderate},
};

/// A moderator `mod` and viewers `bob` and `carol`, each watching `stream`
/// in a tab of the browser returned.
async fn mod_bob_and_carol(app: &TestApp, stream: i64) -> (Browser, [Tab; 3]) {
    app.create_user("mod", "password-123", Role::Moderator)
        .await;
    for viewer in ["bob", "carol"] {
        app.create_user(viewer, "password-123", Role::Viewer).await;
    }
    let browser = Browser::start().await;
    let tabs = browser.watching(app, stream, ["mod", "bob", "carol"]).await;
    (browser, tabs)
}

/// The modes a fresh socket's `hello` reports.
async fn modes_of(app: &TestApp, stream: i64) -> Value {
    let (_c, hello, _) = app.ws_ready(stream, None).await;
    hello["modes"].clone()
}

#[actix_web::test]
async fn a_moderator_approves_and_denies_held_messages_from_the_panel() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let owner = app.logged_in("owner").await;
    hold_term(&owner, stream, "cheap").await;
    let (_browser, [moderator, bob, carol]) = mod_bob_and_carol(&app, stream).await;
    // Viewers have no review panel; the moderator's starts empty.
    assert_eq!(carol.eval("!!$('#held')").await, false);
    assert_eq!(
        moderator
            .eval("$('#held-count').textContent + '|' + $('#held-empty').hidden")
            .await,
        "0|false"
    );

    // Held: the sender sees it marked, the moderator sees it in the panel.
    bob.say("cheap followers here").await;
    bob.wait_for(
        "$('.msg.held .state') && $('.msg.held .state').textContent === 'Held for review'",
    )
    .await;
    let item = "$$('.held-item').find((i) => $('.text', i).textContent === 'cheap followers here')";
    moderator.wait_for(item).await;
    assert_eq!(
        moderator
            .eval(&format!(
                "[$('.user', {item}).textContent, $('.held-reason', {item}).textContent, $('#held-count').textContent]"
            ))
            .await,
        json!(["bob", " (matches a hold term)", "1"])
    );
    assert_eq!(
        moderator
            .eval(&format!("$$('button', {item}).map(nameOf)"))
            .await,
        json!(["Approve", "Deny"])
    );
    assert_eq!(
        carol.eval("texts()").await,
        json!([]),
        "nobody else sees it"
    );

    // Approved: everyone sees it as a normal message, the panel empties.
    moderator.click(&format!("button('Approve', {item})")).await;
    carol.wait_for("messageWith('cheap followers here')").await;
    bob.wait_for("messageWith('cheap followers here') && !$('.msg.held') && !$('.pending')")
        .await;
    moderator
        .wait_for("messageWith('cheap followers here') && $$('.held-item').length === 0 && $('#held-count').textContent === '0'")
        .await;
    assert_eq!(carol.eval("texts()").await, json!(["cheap followers here"]));

    // Denied with the keyboard: the sender is told, nobody else sees anything.
    bob.say("so cheap").await;
    let item = "$$('.held-item').find((i) => $('.text', i).textContent === 'so cheap')";
    moderator.wait_for(item).await;
    moderator
        .wait_for(&format!(
            "(() => {{ const b = button('Deny', {item}); b.focus(); return document.activeElement === b; }})()"
        ))
        .await;
    moderator.press("Enter").await;
    bob.wait_for("$('[role=alert]').textContent === 'A moderator did not approve your message.'")
        .await;
    bob.wait_for(
        "$('.msg.denied .state') && $('.msg.denied .state').textContent === 'Not approved'",
    )
    .await;
    moderator.wait_for("$$('.held-item').length === 0").await;
    // Focus stays in the panel, not lost to the page.
    assert_eq!(
        moderator
            .eval("$('#held').contains(document.activeElement)")
            .await,
        true
    );
    assert_eq!(carol.eval("texts()").await, json!(["cheap followers here"]));
}

#[actix_web::test]
async fn a_hidden_user_is_marked_for_moderators_only() {
    let app = spawn_app().await;
    let who = [
        ("mod", Role::Moderator),
        ("bob", Role::Viewer),
        ("carol", Role::Viewer),
    ];
    let (_, _browser, [moderator, bob, carol]) = Browser::watching_new_stream(&app, who).await;
    bob.say("first").await;
    moderator.wait_for("messageWith('first')").await;
    assert_eq!(
        moderator
            .eval("$$('.mod-tools button', messageWith('first')).map(nameOf)")
            .await,
        json!(["Delete", "Pin", "Timeout", "Ban", "Hide"])
    );
    moderator
        .click("button('Hide', messageWith('first'))")
        .await;
    moderator
        .wait_for("!!button('Unhide', messageWith('first'))")
        .await;

    bob.say("nobody hears me").await;
    moderator
        .wait_for("messageWith('nobody hears me') && messageWith('nobody hears me').classList.contains('hidden-msg')")
        .await;
    bob.wait_for("messageWith('nobody hears me') && !$('.pending')")
        .await;
    assert_eq!(
        bob.eval("[messageWith('nobody hears me').classList.contains('hidden-msg'), !!$('.hidden-mark')]")
            .await,
        json!([false, false]),
        "the hidden user is not told"
    );
    carol.say("after").await;
    moderator.wait_for("messageWith('after')").await;
    assert_eq!(carol.eval("texts()").await, json!(["first", "after"]));

    // Unhidden: the button turns back.
    moderator
        .click("button('Unhide', messageWith('first'))")
        .await;
    moderator
        .wait_for("!!button('Hide', messageWith('first'))")
        .await;
}

#[actix_web::test]
async fn mode_errors_are_explained_in_english_and_japanese() {
    let app = spawn_app().await;
    let created = std::time::Instant::now();
    let stream = app.stream_with_viewer_accounts(["bob", "kei"]).await;
    let owner = app.logged_in("owner").await;
    let modes = json!({"type":"modes","stamps_only":true});
    moderate(&owner, stream, &[modes]).await;
    let (_browser, [bob, kei]) = Browser::logged_in(&app, ["bob", "kei"]).await;
    kei.accept_language("ja-JP,ja;q=0.9").await;
    bob.watch(&app, stream).await;
    kei.watch(&app, stream).await;
    assert_eq!(
        bob.eval("$('#modes-note').textContent").await,
        "Chat modes: stamps only"
    );

    bob.say("hello?").await;
    bob.wait_for(
        "$('[role=alert]').textContent === 'Stamps only right now: chat messages are off, stamps still work.'",
    )
    .await;
    // The text comes back to the box, nothing stays pending.
    bob.wait_for("field('Message').value === 'hello?' && !$('.pending')")
        .await;
    say_ja(&kei, "こんにちは").await;
    kei.wait_for("$('[role=alert]').textContent === '現在はスタンプのみです。チャットは送れませんが、スタンプは送れます。'")
        .await;

    // Accounts younger than 30 minutes: told how long to wait.
    let modes = json!({"type":"modes","stamps_only":false,"established_minutes":30});
    let note = "Chat modes: accounts older than 30 min";
    change_modes(&owner, stream, modes, &bob, note).await;
    bob.fill("Message", "").await;
    bob.say("now?").await;
    let en = r"^Your account is too new to chat here\. Try again in (\d+) min\.$";
    bob.wait_for(&alert_with_wait(en, 30, created)).await;
    kei.wait_for("$('#modes-note').textContent === 'チャットモード: 作成30分以上のアカウントのみ'")
        .await;
    kei.fill("メッセージ", "").await;
    say_ja(&kei, "まだ？").await;
    let ja = r"^アカウント作成から間もないため、まだチャットできません。(\d+)分後にもう一度お試しください。$";
    kei.wait_for(&alert_with_wait(ja, 30, created)).await;

    // Unique chat: the same text twice within 30 s.
    let modes = json!({"type":"modes","established_minutes":0,"unique_chat":true});
    change_modes(&owner, stream, modes, &bob, "Chat modes: unique chat").await;
    bob.fill("Message", "").await;
    bob.say("same again").await;
    bob.wait_for("messageWith('same again') && !$('.pending')")
        .await;
    bob.say("same again").await;
    bob.wait_for(
        "$('[role=alert]').textContent === 'That message was just sent. Write something new.'",
    )
    .await;
}

/// A page condition: the alert matches `pattern`, whose one group is the
/// minutes left of an `established` minutes wait for accounts made at
/// `created` (rounded up, so 30 in the first minute, fewer once a slow run
/// has taken longer).
fn alert_with_wait(pattern: &str, established: u64, created: std::time::Instant) -> String {
    // Slack for rounding and for the time the page may take to answer.
    let least = established.saturating_sub(created.elapsed().as_secs() / 60 + 2);
    format!(
        "(m => !!m && +m[1] >= {least} && +m[1] <= {established})\
         (new RegExp({}).exec($('[role=alert]').textContent))",
        json!(pattern)
    )
}

/// `owner` sends the `modes` frame for `stream` over HTTP, and `tab`'s watch
/// page notes the modes as `note`.
async fn change_modes(owner: &TestUser<'_>, stream: i64, modes: Value, tab: &Tab, note: &str) {
    moderate(owner, stream, &[modes]).await;
    let shown = format!("$('#modes-note').textContent === {}", json!(note));
    tab.wait_for(&shown).await;
}

/// Types in the Japanese page's message box and presses its send button.
async fn say_ja(tab: &Tab, text: &str) {
    tab.type_into("field('メッセージ')", text).await;
    tab.click("button('送信')").await;
}

#[actix_web::test]
async fn the_shield_checkbox_turns_slow_mode_on_and_restores_it() {
    let app = spawn_app().await;
    let who = [("mod", Role::Moderator), ("bob", Role::Viewer)];
    let (stream, _browser, [moderator, bob]) = Browser::watching_new_stream(&app, who).await;
    assert_eq!(bob.eval("!!$('#modes-panel')").await, false);

    moderator.click("$('#modes-panel summary')").await;
    moderator.click("field('Raid shield')").await;
    for tab in [&moderator, &bob] {
        tab.wait_for("!$('#slow').hidden && $('#slow').textContent === 'Slow mode: 10 s'")
            .await;
    }
    moderator
        .wait_for("field('Hold links for review').checked && field('Accounts older than (minutes, 0 = off)').value === '10' && field('Raid shield').checked")
        .await;
    assert_eq!(
        modes_of(&app, stream).await,
        json!({"stamps_only":false,"established_minutes":10,"unique_chat":false,"hold_links":true,"shield":true})
    );

    // Off again: everything as it was.
    moderator.click("field('Raid shield')").await;
    for tab in [&moderator, &bob] {
        tab.wait_for("$('#slow').hidden").await;
    }
    moderator
        .wait_for("!field('Hold links for review').checked && field('Accounts older than (minutes, 0 = off)').value === '0' && !field('Raid shield').checked")
        .await;

    // Stamps only from its checkbox, reflected in the viewer's page.
    moderator.click("field('Stamps only')").await;
    bob.wait_for("$('#modes-note').textContent === 'Chat modes: stamps only'")
        .await;
    assert_eq!(modes_of(&app, stream).await["stamps_only"], true);
}

#[actix_web::test]
async fn the_studio_sets_chat_modes_per_stream() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let (_browser, [tab]) = Browser::logged_in(&app, ["owner"]).await;
    tab.goto(&format!("{}/studio#stream-{stream}", site(&app)))
        .await;
    tab.wait_for("$('[data-role=manage]').open").await;
    // Each change is saved, then read back: the form is aria-busy until both are done.
    let settled = "!$('[data-form=modes]').hasAttribute('aria-busy')";

    tab.click("field('Raid shield')").await;
    tab.wait_for(&format!("{settled} && field('Hold links for review').checked && field('Accounts older than (minutes, 0 = off)').value === '10' && field('Seconds between messages (0 = off)').value === '10'"))
        .await;
    assert_eq!(
        modes_of(&app, stream).await,
        json!({"stamps_only":false,"established_minutes":10,"unique_chat":false,"hold_links":true,"shield":true})
    );

    tab.click("field('Raid shield')").await;
    tab.wait_for(&format!("{settled} && !field('Hold links for review').checked && field('Accounts older than (minutes, 0 = off)').value === '0' && field('Seconds between messages (0 = off)').value === '0'"))
        .await;

    // The note alone would not do: it already says so after the shield.
    tab.click("field('Unique chat (no repeats within 30 s)')")
        .await;
    tab.wait_for(&format!("{settled} && field('Unique chat (no repeats within 30 s)').checked && $('.saved-note').textContent === 'Chat modes updated.'"))
        .await;
    tab.run("field('Accounts older than (minutes, 0 = off)').value = '5';")
        .await;
    tab.click("button('Set', $('[data-form=modes]'))").await;
    tab.wait_for(&format!("{settled} && $('.saved-note').textContent === 'Chat modes updated.' && field('Accounts older than (minutes, 0 = off)').value === '5'"))
        .await;
    let modes = eventually("the new minutes in hello", WAIT, || async {
        let modes = modes_of(&app, stream).await;
        (modes["established_minutes"] == 5).then_some(modes)
    })
    .await;
    assert_eq!(
        modes,
        json!({"stamps_only":false,"established_minutes":5,"unique_chat":true,"hold_links":false,"shield":false})
    );

    // Terms can be held instead of refused, and list their mode.
    tab.type_into("field('Term')", "cheap").await;
    tab.click("field('Hold for review instead of refusing')")
        .await;
    tab.click("button('Add', $('[data-form=term]'))").await;
    tab.wait_for("$('[data-role=terms] li span') && $('[data-role=terms] li span').textContent === 'cheap (held for review)'")
        .await;

    // The same panel appoints a moderator: the list shows the server's answer
    // and the box is cleared.
    app.create_user("mia", "password-123", Role::Viewer).await;
    tab.type_into("$('[data-form=moderator] input')", "mia")
        .await;
    tab.click("button('Add', $('[data-form=moderator]'))").await;
    tab.wait_for("$('[data-role=moderators] li span') && $('[data-role=moderators] li span').textContent === 'mia' && $('[data-form=moderator] input').value === ''")
        .await;
}
