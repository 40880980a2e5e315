//! Security round two: each test is an attack that used to work.

use std::net::IpAddr;

use crate::helpers::*;
use awc::{http::header, Client};
use serde_json::{json, Value};
use stampede::domain::Role;

/// An HTTP client whose connections come from `ip` (any 127.0.0.x works on
/// Linux's loopback without configuration).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

/// `POST /api/login` from `ip`: (status, body).
async fn login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> (u16, Value) {
    let mut res = client_from(ip)
        .post(format!("{}/api/login", app.address))
        .insert_header((header::HOST, app.tenant.host.clone()))
        .send_json(&json!({"username": username, "password": password}))
        .await
        .expect("request");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Item 1: 25 wrong passwords for alice from one address used to make her
/// right password answer 429 from everywhere.
#[actix_web::test]
async fn failed_logins_from_one_address_never_lock_out_another() {
    let app = spawn_app_with(|s| {
        s.limits.logins_per_minute_per_ip = 20;
        s.limits.logins_per_minute_per_user = 5;
    })
    .await;
    app.create_user("alice", "correct horse", Role::Viewer)
        .await;
    app.create_user("bob", "battery staple", Role::Viewer).await;

    let mut limited = 0;
    for _ in 0..25 {
        let (status, body) = login_from(&app, "127.0.0.2", "alice", "guess").await;
        match status {
            401 => {}
            429 => {
                assert_eq!(body["error"]["code"], "rate_limited");
                limited += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    assert!(limited >= 20, "only {limited} of 25 guesses were refused");
    // The attacker's own address is refused even with the right password...
    let (status, _) = login_from(&app, "127.0.0.2", "alice", "correct horse").await;
    assert_eq!(status, 429);
    // ...but alice, from an address that has not failed, logs in.
    let (status, body) = login_from(&app, "127.0.0.3", "alice", "correct horse").await;
    assert_eq!(status, 200, "{body}");

    // Per address: guessing many names from one address runs out too, and
    // successes there do not count against it.
    let (status, _) = login_from(&app, "127.0.0.4", "bob", "battery staple").await;
    assert_eq!(status, 200);
    let mut refused = false;
    for i in 0..25 {
        let (status, _) = login_from(&app, "127.0.0.4", &format!("user{i}"), "guess").await;
        if status == 429 {
            refused = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(refused, "per-address failures were never limited");
    let (status, _) = login_from(&app, "127.0.0.4", "bob", "battery staple").await;
    assert_eq!(status, 429, "an address that failed too often is refused");
    let (status, _) = login_from(&app, "127.0.0.5", "bob", "battery staple").await;
    assert_eq!(status, 200);
}
