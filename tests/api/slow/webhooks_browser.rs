//! The studio's Integrations section in a real browser, as an admin: add a
//! webhook (its secret shown once), send a test, see the delivery, create and
//! revoke a token, remove the webhook.

use std::time::Duration;

use stampede::domain::Role;

use crate::{
    browser::{site, Browser, Tab},
    helpers::*,
    slow::webhooks::{fast, until, Receiver, SERIAL},
};

/// A GET with a bearer token; its status.
async fn bearer_status(app: &TestApp, path: &str, token: &str) -> u16 {
    app.client
        .get(format!("{}{path}", app.address))
        .insert_header(("Host", app.tenant.host.clone()))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The word starting with `prefix` in the status line shown once (a new
/// secret or token).
async fn shown_once(tab: &Tab, prefix: &str) -> String {
    let shown = tab
        .wait_for("$('#integrations-status .once') && $('#integrations-status .once').textContent")
        .await;
    let shown = shown.as_str().unwrap();
    let word = shown.split_whitespace().find(|w| w.starts_with(prefix));
    word.unwrap_or_else(|| panic!("no {prefix}… shown: {shown}"))
        .to_string()
}

#[actix_web::test]
async fn an_admin_manages_webhooks_and_tokens_in_the_studio() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app_with(fast).await;
    let rx = Receiver::up().await;
    app.create_user("root", "password-123", Role::Admin).await;
    app.create_user("helper", "password-123", Role::Bot).await;
    let stream = app.create_stream("owner").await;
    let (_browser, [tab]) = Browser::logged_in(&app, ["root"]).await;
    tab.goto(&format!("{}/studio", site(&app))).await;
    tab.wait_for("$('#integrations') !== null").await;

    // A plain http:// URL is fine here (allow_http); a bad one is explained.
    tab.type_into("field('Endpoint URL')", "ftp://nope").await;
    tab.click("button('Add webhook')").await;
    tab.wait_for("$('#integrations-alert').textContent.includes('https://')")
        .await;
    tab.run("field('Endpoint URL').value = '';").await;
    tab.type_into("field('Endpoint URL')", &rx.url()).await;
    tab.type_into(
        "field('Events (comma-separated; empty for all)')",
        "ping, stream.status",
    )
    .await;
    tab.click("button('Add webhook')").await;
    let secret = shown_once(&tab, "whsec_").await;
    rx.set_secret(&secret);

    // Listed after a reload, never with its secret; a test reaches the receiver.
    tab.goto(&format!("{}/studio", site(&app))).await;
    tab.wait_for("$('[data-webhook-id]') !== null").await;
    let html = tab.eval("document.documentElement.outerHTML").await;
    assert!(!html.as_str().unwrap().contains(&secret));
    tab.click("button('Send test')").await;
    tab.wait_for(
        "$('[data-webhook-id] [data-role=result]').textContent.startsWith('Answered 200')",
    )
    .await;
    until("the ping", Duration::from_secs(10), || {
        rx.acked().iter().any(|g| g.body["type"] == "ping")
    })
    .await;
    rx.assert_all_signed();
    tab.goto(&format!("{}/studio", site(&app))).await;
    tab.wait_for(
        "$('table.deliveries') !== null && $('table.deliveries').textContent.includes('ping')",
    )
    .await;

    // A token for the bot, shown once, works, and is revoked from the table.
    tab.type_into("field('User')", "helper").await;
    tab.click("button('Create token')").await;
    let token = shown_once(&tab, "stp_").await;
    let path = format!("/api/streams/{stream}/messages");
    assert_eq!(bearer_status(&app, &path, &token).await, 200);
    tab.goto(&format!("{}/studio", site(&app))).await;
    tab.wait_for("$('[data-token-id]') !== null").await;
    let html = tab.eval("document.documentElement.outerHTML").await;
    assert!(!html.as_str().unwrap().contains(&token[4..]));
    tab.click("button('Revoke')").await;
    tab.wait_for("$('[data-token-id] [data-role=state]').textContent === 'revoked'")
        .await;
    assert_eq!(bearer_status(&app, &path, &token).await, 401);

    // Removed from the page and from the server.
    tab.click("button('Remove')").await;
    tab.wait_for("$('[data-webhook-id]') === null").await;
    assert!(app
        .store
        .list_webhooks(&app.tenant.slug)
        .await
        .unwrap()
        .is_empty());
    assert!(tab.incidents().is_empty(), "{:?}", tab.incidents());
}
