//! Security round two: each test is an attack that used to work.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

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

    // Guesses until 20 are refused: the limit admits at most its 5 plus
    // what drained meanwhile (one every 12 s), however slow this run is.
    let started = Instant::now();
    let (mut limited, mut admitted) = (0, 0);
    while limited < 20 && admitted < 100 {
        let (status, body) = login_from(&app, "127.0.0.2", "alice", "guess").await;
        match status {
            401 => admitted += 1,
            429 => {
                assert_eq!(body["error"]["code"], "rate_limited");
                limited += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    let drained = started.elapsed().as_secs() / 12;
    assert!(
        admitted <= 5 + drained + 1,
        "{admitted} guesses were let through, {limited} refused"
    );
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
    // Failures for ever new names: refused once 20 (plus one for every 3 s
    // that passed) have failed.
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let (status, _) = login_from(&app, "127.0.0.4", &format!("user{failed}"), "guess").await;
        if status == 429 {
            break;
        }
        assert_eq!(status, 401);
        failed += 1;
        let drained = started.elapsed().as_secs() / 3;
        assert!(
            failed <= 20 + drained + 1,
            "per-address failures were never limited"
        );
    }
    let (status, _) = login_from(&app, "127.0.0.4", "bob", "battery staple").await;
    assert_eq!(status, 429, "an address that failed too often is refused");
    let (status, _) = login_from(&app, "127.0.0.5", "bob", "battery staple").await;
    assert_eq!(status, 200);
}

/// A raw TCP connection to the app from `ip`.
async fn tcp_from(app: &TestApp, ip: &str) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{ip}:0").parse().unwrap())
        .expect("bind the client address");
    socket.connect(addr).await.expect("connect")
}

/// Reads one whole `Content-Length` response (headers and body) from `s`.
async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return text;
                }
            }
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a whole response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time")
}

/// True when the server closed `s` (EOF or reset) within `wait`.
async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => assert!(
                    String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
                    "unexpected answer: {}",
                    String::from_utf8_lossy(&buf[..n])
                ),
            }
        }
    })
    .await
    .is_ok()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Item 2: after one request on a keep-alive connection, a second head sent a
/// byte at a time used to hold the connection for as long as it took.
#[actix_web::test]
async fn a_dribbled_second_request_head_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| s.server.request_timeout_secs = 2).await;
    let mut s = tcp_from(&app, "127.0.0.1").await;
    s.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));

    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = std::time::Instant::now();
    let mut closed = false;
    for b in head {
        if s.write_all(&[*b]).await.is_err()
            || closed_within(&mut s, Duration::from_millis(250)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a second head dribbled over {:?} was served",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
}

/// Item 2: an idle keep-alive connection is closed.
#[actix_web::test]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| s.server.request_timeout_secs = 2).await;
    let mut s = tcp_from(&app, "127.0.0.1").await;
    s.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut s, Duration::from_secs(4)).await);
}

/// Item 2: one address cannot hold more than `max_http_connections_per_ip`
/// connections; others are unaffected, and a closed connection frees its slot.
#[actix_web::test]
async fn http_connections_per_address_are_capped() {
    // Each limit test opens by setting the limits it tests, alike but for those.
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| {
        s.limits.max_http_connections_per_ip = 3;
        s.server.request_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tcp_from(&app, "127.0.0.2").await;
        s.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut fourth = tcp_from(&app, "127.0.0.2").await;
    let _ = fourth.write_all(HEALTHZ).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut fourth, &mut answer),
    )
    .await
    .expect("the fourth connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("200 OK"),
        "a fourth connection from one address was served: {answer}"
    );

    let mut other = tcp_from(&app, "127.0.0.3").await;
    other.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut other).await.starts_with("HTTP/1.1 200"));

    drop(held.pop());
    // The slot comes back once the server sees the close.
    // Until then a new connection is refused (closed or reset): poll again.
    eventually("a slot given back is served again", WAIT, || async {
        let mut again = tcp_from(&app, "127.0.0.2").await;
        again.write_all(HEALTHZ).await.ok()?;
        let mut status = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut again, &mut status)
            .await
            .ok()?;
        (&status == b"HTTP/1.1 200").then_some(())
    })
    .await;
}

/// Item 3 (CVE-2018-1058): another database role that may create in `public`
/// plants `public.convert_to(text, text)`, which outranks the built-in for
/// `convert_to($1, 'UTF8')` and used to see every raw session key.
#[actix_web::test]
async fn a_function_planted_in_public_never_sees_session_keys() {
    let pg = PrivatePg::start().await;
    let admin = pg_client(&pg.url()).await;
    admin
        .batch_execute(
            "CREATE ROLE mallory LOGIN;
             GRANT CREATE ON SCHEMA public TO PUBLIC;", // the default before PostgreSQL 15
        )
        .await
        .unwrap();
    let mallory = pg_client(&format!(
        "postgres://mallory@127.0.0.1:{}/stampede",
        pg.port
    ))
    .await;
    mallory
        .batch_execute(
            "CREATE TABLE public.loot (what text);
             GRANT INSERT ON public.loot TO PUBLIC;
             CREATE FUNCTION public.convert_to(k text, enc text) RETURNS bytea
                 LANGUAGE plpgsql AS $$
                 BEGIN
                     INSERT INTO public.loot VALUES (k);
                     RETURN pg_catalog.convert_to(k, enc::name);
                 END $$;
             CREATE FUNCTION public.date_bin(s text, t timestamptz, o timestamptz) RETURNS timestamptz
                 LANGUAGE plpgsql AS $$
                 BEGIN
                     INSERT INTO public.loot VALUES ('date_bin');
                     RETURN pg_catalog.date_bin(s::interval, t, o);
                 END $$;",
        )
        .await
        .unwrap();

    stampede::store::migrations::migrate_all(&store_for(&pg.url(), 2))
        .await
        .unwrap();
    let url = pg.url();
    let app = spawn_app_with(move |s| s.database.url = url).await;
    let stream = app.create_stream("owner").await;
    let cookie = app.logged_in("owner").await;
    let r = cookie.get("/api/session").await;
    assert_eq!(r.json()["user"]["username"], "owner");
    let r = cookie
        .get(&format!("/api/streams/{stream}/reactions?bucket=10s"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let loot: Vec<String> = admin
        .query("SELECT what FROM public.loot", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(loot.is_empty(), "the planted functions ran: {loot:?}");
    // Unqualified calls (a query elsewhere that forgets `pg_catalog.`) resolve
    // in pg_catalog alone on every pooled connection.
    let c = app.store.client().await.unwrap();
    let path: String = c.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(path, "pg_catalog");
    let key = c
        .query_one("SELECT encode(convert_to('k', 'UTF8'), 'hex')", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    assert_eq!(key, "6b");
    assert!(admin
        .query("SELECT 1 FROM public.loot", &[])
        .await
        .unwrap()
        .is_empty());
    // The migrations took CREATE on public away from everyone.
    let can: bool = admin
        .query_one(
            "SELECT has_schema_privilege('mallory', 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can, "other roles may still create in public");
}

/// A plain connection to `url`.
async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Peak resident memory of this process, KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Item 4: each Argon2 hash takes ~19 MiB on the blocking pool (up to 512
/// threads); a burst of logins used to run them all at once.
#[actix_web::test]
async fn a_login_flood_runs_a_bounded_number_of_hashes() {
    let app = spawn_app_with(|s| s.limits.password_hash_concurrency = 1).await;
    app.create_user("alice", "correct horse", Role::Viewer)
        .await;
    let before = peak_rss_kib();
    // 48 guesses at once, each from its own address (no per-address limit).
    let guesses = (0..48).map(|i| {
        let app = &app;
        async move { login_from(app, &format!("127.0.1.{}", i + 1), "alice", "guess").await }
    });
    let results = futures_util::future::join_all(guesses).await;
    let refused = results
        .iter()
        .filter(|(status, body)| {
            *status == 503 && body["error"]["code"] == "unavailable"
                || *status == 429 && body["error"]["code"] == "rate_limited"
        })
        .count();
    let checked = results.iter().filter(|(s, _)| *s == 401).count();
    assert_eq!(refused + checked, 48, "{results:?}");
    assert!(
        refused >= 40,
        "only {refused} of 48 concurrent logins were refused"
    );
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 200, "peak memory grew by {grown_mib} MiB");
    // Once the flood is over, the right password works.
    let (status, body) = login_from(&app, "127.0.0.9", "alice", "correct horse").await;
    assert_eq!(status, 200, "{body}");
}

/// `POST /api/login` through a trusted proxy at 127.0.0.1 for client `xff`.
async fn login_via_proxy(app: &TestApp, xff: &str, username: &str, password: &str) -> u16 {
    app.client
        .post(format!("{}/api/login", app.address))
        .insert_header((header::HOST, app.tenant.host.clone()))
        .insert_header(("X-Forwarded-For", xff.to_string()))
        .send_json(&json!({"username": username, "password": password}))
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Item 5: an IPv6 client owns a whole /64, so limits keyed by the /128 used
/// to give it 2^64 fresh budgets.
#[actix_web::test]
async fn ipv6_clients_are_limited_by_their_64() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.limits.logins_per_minute_per_ip = 3;
        s.limits.max_connections_per_ip = 2;
    })
    .await;
    app.create_user("alice", "correct horse", Role::Viewer)
        .await;
    // Failed logins, each from a new address of one /64.
    let mut statuses = Vec::new();
    for i in 1..=5 {
        let xff = format!("2001:db8:0:7::{i:x}");
        statuses.push(login_via_proxy(&app, &xff, &format!("user{i}"), "guess").await);
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    // Another /64 is another client.
    assert_eq!(
        login_via_proxy(&app, "2001:db8:0:8::1", "alice", "correct horse").await,
        200
    );

    // Sockets: two from one /64, the third (another address of it) is refused.
    let stream = app.create_stream("owner").await;
    let path = format!("/ws/chat/stream_{stream}/");
    let from = |xff: &str| {
        let extra = format!("X-Forwarded-For: {xff}\r\n");
        let (app, path) = (&app, &path);
        async move { crate::ws::RawWs::try_connect(app, path, None, None, &extra).await }
    };
    let _a = from("2001:db8:0:9::1").await.expect("the first socket");
    let _b = from("2001:db8:0:9::2").await.expect("the second socket");
    let third = from("2001:db8:0:9:ffff::3").await;
    assert!(
        third.err().is_some_and(|e| e.contains("429")),
        "a third socket from one /64 was admitted"
    );
    let _c = from("2001:db8:0:a::1").await.expect("another /64");
}

/// Item 7: `server.trusted_proxies` used to drop anything but a plain IP
/// silently: a CIDR range trusted nobody, and a typo went unnoticed.
#[actix_web::test]
async fn trusted_proxies_take_ranges_and_refuse_what_they_cannot_parse() {
    // A range: the proxy at 127.0.0.1 is in 127.0.0.0/8, so two clients
    // behind it are two addresses.
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.0/8".into(), "fd00::/8".into()];
        s.limits.max_connections_per_ip = 1;
    })
    .await;
    let stream = app.create_stream("owner").await;
    let path = format!("/ws/chat/stream_{stream}/");
    let _a =
        crate::ws::RawWs::connect_with(&app, &path, None, None, "X-Forwarded-For: 203.0.113.7\r\n")
            .await;
    let b =
        crate::ws::RawWs::try_connect(&app, &path, None, None, "X-Forwarded-For: 203.0.113.8\r\n")
            .await;
    assert!(b.is_ok(), "the range was not trusted: {:?}", b.err());

    // An entry that is neither an address nor a range is a configuration error
    // that names it, for every command and for a node built in process.
    let o = cli(
        &["migrate"],
        &[(
            "STAMPEDE_SERVER_TRUSTED_PROXIES",
            "10.0.0.0/8, proxy.internal",
        )],
    );
    assert!(!o.status.success(), "accepted: {}", stdout(&o));
    assert!(stderr(&o).contains("proxy.internal"), "{}", stderr(&o));
    for bad in ["10.0.0.0/33", "10.0.0.1/", "::/129"] {
        let mut settings = test_settings();
        settings.server.trusted_proxies = vec![bad.into()];
        let err = match stampede::startup::Application::build(settings).await {
            Ok(_) => panic!("{bad} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(bad), "{err}");
    }
}

/// Item 9: `Alice` could sign up next to `alice`, and anyone could be
/// `system`, the author the UI shows on notices.
#[actix_web::test]
async fn usernames_are_one_name_in_any_case_and_reserved_names_are_refused() {
    let app = spawn_app().await;
    app.create_user("alice", "correct horse", Role::Streamer)
        .await;
    let (_, anon, token) = app.form_page("/signup").await;
    for (name, status) in [
        ("Alice", 409),
        ("ALICE", 409),
        ("system", 422),
        ("System", 422),
        ("SYSTEM", 422),
        ("stampede", 422),
        ("newbie", 303),
    ] {
        let r = app
            .post_form(
                "/signup",
                &[
                    ("username", name),
                    ("password", "password-123"),
                    ("csrf_token", &token),
                ],
                Some(&anon),
            )
            .await;
        assert_eq!(r.status, status, "signing up {name}: {}", r.body);
    }
    // One name: the account answers to any case and keeps its own spelling.
    let (status, body) = login_from(&app, "127.0.0.1", "ALICE", "correct horse").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "alice");
    // The CLI refuses the reserved names too.
    let o = cli(
        &[
            "user",
            "create",
            "--tenant",
            app.tenant.slug.as_str(),
            "System",
            "--role",
            "viewer",
        ],
        &[("STAMPEDE_PASSWORD", "password-123")],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("reserved"), "{}", stderr(&o));
}

/// Item 9: a `Secure` session cookie carries the `__Host-` prefix, so a
/// sibling subdomain or a plain-HTTP response cannot plant or shadow it.
#[actix_web::test]
async fn a_secure_session_cookie_takes_the_host_prefix() {
    let app = spawn_app_with(|s| s.server.secure_cookies = true).await;
    app.create_user("alice", "correct horse", Role::Viewer)
        .await;
    let r = app.try_login("alice", "correct horse").await;
    assert_eq!(r.status, 200);
    let set = r.set_cookies().join("\n");
    let value = set
        .strip_prefix("__Host-stampede_session=")
        .unwrap_or_else(|| panic!("no __Host- prefix: {set}"))
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(set.contains("Secure") && set.contains("Path=/"), "{set}");
    assert!(!set.to_lowercase().contains("domain="), "{set}");
    // `GET /api/session` with the session id under the cookie name `name`.
    let session_as = |name: &str| {
        let req = app
            .client
            .get(format!("{}/api/session", app.address))
            .insert_header((header::HOST, app.tenant.host.clone()))
            .insert_header((header::COOKIE, format!("{name}={value}")));
        async move { read_reply(req.send().await.unwrap()).await.json() }
    };
    let me = session_as("__Host-stampede_session").await;
    assert_eq!(me["user"]["username"], "alice");
    // The unprefixed name is not read on a secure node.
    let me = session_as("stampede_session").await;
    assert!(me["user"].is_null());
}

/// Item 10: `analyst grant` given the server's own role used to revoke the
/// server's access to `accounts_session` (every login broke), and an analyst
/// could read every table, also ones added later, through default privileges.
#[actix_web::test]
async fn analyst_grant_refuses_the_servers_role_and_grants_only_the_analytics_tables() {
    let pg = PrivatePg::start().await;
    let admin = pg_client(&pg.url()).await;
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN CREATEROLE;
             ALTER DATABASE stampede OWNER TO app;
             ALTER SCHEMA public OWNER TO app;",
        )
        .await
        .unwrap();
    let app_url = format!("postgres://app@127.0.0.1:{}/stampede", pg.port);
    let store = store_for(&app_url, 2);
    stampede::store::migrations::migrate_all(&store)
        .await
        .unwrap();
    let tenant = create_tenant(&store).await;
    let schema = tenant.slug.schema();
    let grant = |role: &str| {
        cli(
            &["analyst", "grant", "--tenant", tenant.slug.as_str(), role],
            &[("STAMPEDE_DATABASE_URL", &app_url)],
        )
    };

    let o = grant("app");
    assert!(!o.status.success(), "granted to the server's own role");
    assert!(stderr(&o).contains("app"), "{}", stderr(&o));
    let app = pg_client(&app_url).await;
    app.batch_execute(&format!("SELECT count(*) FROM {schema}.accounts_session"))
        .await
        .expect("the server still reads its sessions");

    // Nor a role the server inherits privileges from.
    admin
        .batch_execute("CREATE ROLE app_group NOLOGIN; GRANT app_group TO app;")
        .await
        .unwrap();
    assert!(!grant("app_group").status.success());

    let o = grant("analyst_t");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = grant("analyst_t");
    assert!(o.status.success(), "granting again: {}", stderr(&o));
    // A table a later migration adds is not readable.
    app.batch_execute(&format!("CREATE TABLE {schema}.later_table (x int)"))
        .await
        .unwrap();
    let analyst = |sql: String| {
        let admin = &admin;
        async move {
            let res = admin
                .batch_execute(&format!("BEGIN; SET LOCAL ROLE analyst_t; {sql}; ROLLBACK"))
                .await;
            if res.is_err() {
                admin.batch_execute("ROLLBACK").await.unwrap();
            }
            res
        }
    };
    for table in [
        "streaming_streamreaction",
        "streaming_reaction_minute",
        "chat_chatstamp",
        "streaming_stream",
        "chat_chatroom",
        "chat_chatmessage",
        "moderation_log",
    ] {
        analyst(format!("SELECT count(*) FROM {schema}.{table}"))
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
    analyst(format!(
        "SELECT id, username, role, is_active, created_at FROM {schema}.accounts_user"
    ))
    .await
    .unwrap();
    for denied in [
        format!("SELECT count(*) FROM {schema}.later_table"),
        format!("SELECT count(*) FROM {schema}.moderation_ban"),
        format!("SELECT count(*) FROM {schema}.moderation_blockedterm"),
        format!("SELECT count(*) FROM {schema}.stampede_migrations"),
        format!("SELECT count(*) FROM {schema}.accounts_session"),
        format!("SELECT password_hash FROM {schema}.accounts_user"),
    ] {
        let e = analyst(denied.clone()).await.expect_err(&denied);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{denied}: {e}"
        );
    }
}

/// Item 11: a private tenant (`anonymous_viewers = false`) used to list its
/// streams' titles, owners and viewer counts on `/` to anyone, and its
/// handshake said 404 or 401 depending on whether a stream existed.
#[actix_web::test]
async fn a_private_tenant_shows_anonymous_visitors_nothing() {
    let app = spawn_app().await;
    app.configure_tenant(Some(false), None).await;
    let owner_id = app
        .create_user("zed_owner", "password-123", Role::Streamer)
        .await;
    let stream = app
        .store
        .create_stream(&app.tenant.slug, owner_id, "Secret launch", "", None)
        .await
        .unwrap();
    // The tenant may cache its settings for a moment.
    let page = eventually("the index follows the private setting", WAIT, || async {
        let page = app.get("/", None).await;
        (!page.body.contains("Secret launch")).then_some(page)
    })
    .await;
    assert_eq!(page.status, 200);
    for secret in [
        "Secret launch",
        "zed_owner",
        "data-viewers",
        &format!("/streams/{stream}"),
    ] {
        assert!(
            !page.body.contains(secret),
            "an anonymous visitor sees {secret:?}"
        );
    }
    assert!(page.body.contains("href=\"/login"), "no way to log in");

    for id in [stream, stream + 1_000_000] {
        let path = format!("/ws/chat/stream_{id}/");
        let r = crate::ws::RawWs::try_connect(&app, &path, None, None, "").await;
        let status = r.err().expect("an anonymous socket was admitted");
        assert!(status.contains("401"), "stream {id}: {status}");
    }

    let cookie = app.logged_in("zed_owner").await;
    let page = cookie.get("/").await;
    assert!(page.body.contains("Secret launch"));
    let path = format!("/ws/chat/stream_{}/", stream + 1_000_000);
    let r = crate::ws::RawWs::try_connect(&app, &path, Some(&cookie.cookie), None, "").await;
    assert!(r.err().is_some_and(|s| s.contains("404")));
}

/// Item 6: the host cache cached misses and cleared itself at 10,000
/// entries, so a flood of random `Host` headers evicted every real tenant.
#[actix_web::test]
async fn a_random_host_flood_cannot_evict_known_tenants() {
    use futures_util::StreamExt;
    use stampede::tenants::TenantResolver;
    let store = store_for(&database_url(), 4);
    let tenant = create_tenant(&store).await;
    let resolver = TenantResolver::with_ttl(store.clone(), Duration::from_secs(600));
    assert!(resolver.resolve(&tenant.host).await.unwrap().is_some());
    // From now on only the cache knows the tenant's host.
    store
        .client()
        .await
        .unwrap()
        .execute(
            "DELETE FROM public.domains WHERE domain = $1",
            &[&tenant.host],
        )
        .await
        .unwrap();

    let salt = random_hex(6);
    let resolver = &resolver;
    let salt = &salt;
    let answers: Vec<_> = futures_util::stream::iter(0..12_000)
        .map(|i| async move { resolver.resolve(&format!("h{i}-{salt}.flood.test")).await })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(answers.iter().all(|a| matches!(
        a,
        Ok(None) | Err(stampede::tenants::TenantLookupError::Unavailable)
    )));
    assert!(
        resolver.resolve(&tenant.host).await.unwrap().is_some(),
        "the flood evicted a known tenant"
    );
    let (known, unknown) = resolver.cached();
    assert!(
        known >= 1 && unknown <= 4096,
        "{known} known, {unknown} unknown"
    );
}

/// Item 13: `redis = "*"` let any release in, possibly a second copy beside
/// the one deadpool-redis uses. Every dependency names a version, and the
/// lock file holds one redis.
#[test]
fn dependencies_name_their_versions_and_redis_is_one_copy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    for section in ["dependencies", "dev-dependencies"] {
        let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
            continue;
        };
        for (name, spec) in deps {
            let version = match spec {
                toml::Value::String(v) => v.as_str(),
                toml::Value::Table(t) => t.get("version").and_then(|v| v.as_str()).unwrap_or(""),
                _ => "",
            };
            assert!(
                !version.is_empty() && !version.contains('*'),
                "{section}.{name} = {version:?}"
            );
        }
    }
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let redis = lock.matches("\nname = \"redis\"\n").count();
    assert_eq!(redis, 1, "copies of redis in Cargo.lock");
}

/// Item 12: `stampede dev` pointed at a database that holds real tenants used
/// to add `localhost` to it and create accounts with published passwords.
#[actix_web::test]
async fn dev_refuses_a_database_with_tenants_it_did_not_make() {
    let base = database_url();
    let db = format!("stampede_test_dev_{}", random_hex(8));
    let admin = pg_client(&base).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
        .unwrap();
    let mut config: tokio_postgres::Config = base.parse().unwrap();
    config.dbname(&db);
    let url = {
        let (host, port) = (
            "127.0.0.1",
            config.get_ports().first().copied().unwrap_or(5432),
        );
        let user = config.get_user().unwrap_or("postgres");
        match config.get_password() {
            Some(pw) => format!(
                "postgres://{user}:{}@{host}:{port}/{db}",
                String::from_utf8_lossy(pw)
            ),
            None => format!("postgres://{user}@{host}:{port}/{db}"),
        }
    };
    let store = store_for(&url, 1);
    stampede::store::migrations::migrate_all(&store)
        .await
        .unwrap();
    let acme = stampede::domain::Slug::parse("acme").unwrap();
    store
        .create_tenant(&acme, "Acme", &["acme.example".into()])
        .await
        .unwrap();
    drop(store);

    let port = free_port();
    let mut child = stampede_on(&url, &["dev", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        // Polling by hand: a child that never exits is killed, not waited on.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let check = pg_client(&url).await;
    let demo_users = check
        .query_opt("SELECT 1 FROM public.tenants WHERE slug = 'demo'", &[])
        .await
        .unwrap()
        .is_some();
    drop(check);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .await;
    assert!(
        exited.is_some(),
        "dev started serving a database of tenants"
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acme"), "{err}");
    assert!(!demo_users, "dev made its demo tenant there");
}

/// Item 12: the private cluster `dev` and the tests start when no PostgreSQL
/// answers used to trust every TCP login: any local user was superuser.
#[actix_web::test]
async fn the_private_cluster_wants_a_password() {
    let project = std::env::temp_dir().join(format!("stampede-proj-{}", random_hex(8)));
    std::fs::create_dir_all(&project).unwrap();
    // World-traversable, as a checkout in a home directory usually is.
    let _ = std::process::Command::new("chmod")
        .arg("755")
        .arg(&project)
        .status();
    let port = free_port();
    let url = stampede_devenv::start_private_cluster_on(&project, port).unwrap();
    let stop = || {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("pg_ctl").exists())
            .unwrap();
        let dir = stampede_devenv::cluster_dir(&project);
        let root = String::from_utf8_lossy(
            &std::process::Command::new("id")
                .arg("-u")
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
            == "0";
        let mut c = if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(bin.join("pg_ctl"))
        };
        c.args(["stop", "-m", "immediate", "-D"]).arg(&dir);
        let _ = c.output();
        let _ = std::fs::remove_file(dir.with_file_name("pg.password"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&project);
    };
    let anyone = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let passwordless = tokio_postgres::connect(&anyone, tokio_postgres::NoTls).await;
    let with_password = tokio_postgres::connect(&url, tokio_postgres::NoTls).await;
    stop();
    assert!(
        passwordless.is_err(),
        "a passwordless TCP login was accepted"
    );
    assert!(with_password.is_ok(), "{:?}", with_password.err());
    assert!(
        url.contains(":postgres:") || url.contains("postgres:"),
        "{url}"
    );
}

/// Every JSON route that changes something takes the `Acting` extractor: a
/// logged-in admin's cookie without its CSRF token is refused with `csrf` on
/// each of them, and nothing changes.
#[actix_web::test]
async fn every_changing_route_needs_the_csrf_token() {
    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    let admin = app.user("root", Role::Admin).await;
    app.create_user("bob", "password-123", Role::Viewer).await;
    let before = app.store.list_streams(&app.tenant.slug).await.unwrap();
    let routes = [
        ("/api/logout".to_string(), json!({})),
        (
            "/api/password".to_string(),
            json!({"current_password":"password-123","new_password":"another-password"}),
        ),
        (
            format!("/api/streams/{stream}/status"),
            json!({"status":"live"}),
        ),
        (
            format!("/api/streams/{stream}/messages"),
            json!({"message":"forged"}),
        ),
        (
            format!("/api/streams/{stream}/moderation"),
            json!({"type":"ban","username":"bob"}),
        ),
        (
            format!("/api/streams/{stream}/moderators"),
            json!({"username":"bob","action":"add"}),
        ),
        (
            format!("/api/streams/{stream}/blocked_terms"),
            json!({"term":"forged","action":"add"}),
        ),
        ("/api/streams".to_string(), json!({"title":"Forged"})),
        (
            "/api/markdown/preview".to_string(),
            json!({"markdown":"*x*"}),
        ),
    ];
    for (path, body) in routes {
        let r = admin.post_without_csrf(&path, body).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "csrf", "{path}");
    }
    // Nothing changed: still logged in, same password, same status, no
    // message, no moderator, no term, no new stream.
    assert_eq!(
        admin.get("/api/session").await.json()["user"]["username"],
        "root"
    );
    app.login("root", "password-123").await;
    let watch = app
        .get(&format!("/api/streams/{stream}/messages"), None)
        .await
        .json();
    assert_eq!(watch["messages"], json!([]), "{watch}");
    let r = admin
        .get(&format!("/api/streams/{stream}/moderators"))
        .await
        .json();
    assert_eq!(r["moderators"], json!([]));
    let r = admin
        .get(&format!("/api/streams/{stream}/blocked_terms"))
        .await
        .json();
    assert_eq!(r["terms"], json!([]));
    let after = app.store.list_streams(&app.tenant.slug).await.unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0].status, before[0].status);
    // And with the token, the same request works (the check is not a blanket refusal).
    admin
        .post_ok(
            &format!("/api/streams/{stream}/moderators"),
            json!({"username":"bob","action":"add"}),
        )
        .await;
}
