//! TLS to the data stores and to webhook receivers, against servers the tests
//! start: a PostgreSQL that takes TCP connections over TLS only, a
//! redis-server with only a TLS port, and an HTTPS webhook receiver, all with
//! certificates made here by a private CA (`openssl`).
//! Plain connections are refused by the servers, so whatever works here went
//! over TLS; what must fail (an untrusted CA, a certificate for another host)
//! fails with one line naming the store and the reason.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use stampede::{domain::Role, store::connect::PgTarget};

use super::webhooks;
use crate::helpers::*;

/// A private CA, a server certificate it signs for `localhost` and 127.0.0.1
/// (also good as a client certificate: a TLS Redis Cluster's nodes present it
/// to each other), and a second CA that signs nothing. Removed on drop.
pub(super) struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    pub(super) fn make() -> TestCerts {
        let certs = TestCerts {
            dir: std::env::temp_dir().join(format!("stampede-tls-{}", random_hex(10))),
        };
        std::fs::create_dir_all(&certs.dir).unwrap();
        for ca in ["ca", "other-ca"] {
            certs.new_key(
                "-x509",
                ca,
                &[
                    "-out",
                    &format!("{ca}.crt"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=Stampede test {ca}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        certs.server_cert("server", "DNS:localhost,IP:127.0.0.1");
        certs
    }

    /// `<name>.crt` and `<name>.key`: a certificate the CA signs for the
    /// subject alternative names `san` (`DNS:localhost,IP:127.0.0.1`), good
    /// for servers and clients.
    pub(super) fn server_cert(&self, name: &str, san: &str) {
        let csr = format!("{name}.csr");
        let ext = format!("{name}.ext");
        let crt = format!("{name}.crt");
        self.new_key("-new", name, &["-out", &csr, "-subj", "/CN=localhost"]);
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={san}\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// `openssl req <mode>` with a new P-256 key in `<name>.key`, then `rest`.
    fn new_key(&self, mode: &str, name: &str, rest: &[&str]) {
        let key = format!("{name}.key");
        let mut args = vec![
            "req",
            mode,
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
        ];
        args.extend_from_slice(rest);
        self.openssl(&args);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("the TLS tests make certificates with the openssl command: apt-get install openssl ({e})")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(super) fn ca(&self) -> String {
        self.path("ca.crt").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.path("other-ca.crt").display().to_string()
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server with a TLS port only (`--port 0`), killed on drop.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl TlsRedis {
    fn start(certs: &TestCerts) -> TlsRedis {
        let port = free_port();
        let log = certs.path(&format!("redis-{port}.log"));
        let child = Command::new(redis_server_bin())
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args([
                "--bind",
                "127.0.0.1 127.0.0.2",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(certs.path("server.crt"))
            .arg("--tls-key-file")
            .arg(certs.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.path("ca.crt"))
            .args(["--tls-auth-clients", "no"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut r = TlsRedis { child, port };
        for _ in 0..200 {
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!(
                    "redis-server with --tls-port exited ({status}): it must be built with TLS \
                     (Debian's redis-server 6 or newer is; apt-get install redis-server): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        r.stop();
        panic!("redis-server did not listen on TLS port {port}");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The URL of the TLS cluster's `stampede` database on `host` with `query`.
fn pg_url(pg: &PrivatePg, host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{}/stampede?{query}", pg.port)
}

/// Runs `stampede serve` until it exits (it must: start-up fails); returns
/// its exit status and stderr.
fn serve_must_fail(envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stampede"));
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .env("STAMPEDE_DATABASE_URL", database_url())
        .env("RUST_LOG", "error")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start stampede serve");
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stampede serve started although TLS to a data store fails");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// The one `error:` line of a failed command.
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    lines[0].to_string()
}

/// `stampede serve` with `envs` does not start, with one `error:` line
/// holding each of `wants`.
fn start_up_fails_with(envs: &[(&str, &str)], wants: &[&str]) {
    let (status, err) = serve_must_fail(envs);
    assert!(!status.success());
    let line = error_line(&err);
    for want in wants {
        assert!(line.contains(want), "{line}");
    }
}

/// `stampede migrate` on the database `url` fails with one `error:` line
/// holding each of `wants`.
fn migrate_fails_with(url: &str, wants: &[&str]) {
    let out = cli(&["migrate"], &[("STAMPEDE_DATABASE_URL", url)]);
    assert!(!out.status.success());
    let line = error_line(&stderr(&out));
    for want in wants {
        assert!(line.contains(want), "{line}");
    }
}

/// Whether the connection of `client` is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn postgres_verify_full_carries_a_whole_chat() {
    let certs = TestCerts::make();
    let pg = PrivatePg::start_tls(&certs.path("server.crt"), &certs.path("server.key")).await;

    // The server refuses plain TCP: what works below is TLS.
    let plain = PgTarget::parse(&pg_url(&pg, "127.0.0.1", "sslmode=disable")).unwrap();
    let e = plain.check(Duration::from_secs(5)).await.unwrap_err();
    assert!(format!("{e:#}").contains("pg_hba.conf"), "{e:#}");

    let url = pg_url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", certs.ca()),
    );
    let migrate = cli(&["migrate"], &[("STAMPEDE_DATABASE_URL", &url)]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));

    let app = spawn_app_with(|s| s.database.url = url.clone()).await;
    let stream = app.create_stream("owner").await;
    let mut ws = app.user("alice", Role::Viewer).await.ws(stream).await;
    ws.send(json!({"type":"message","message":"sealed","client_id":"s-1"}))
        .await;
    let id = ws.expect("ack").await["id"].as_i64().unwrap();
    assert_eq!(app.stored_ids(stream).await, vec![id]);

    // Every TCP connection the node and its store hold is encrypted.
    let client = app.store.client().await.unwrap();
    assert!(encrypted(&client).await);
    let row = client
        .query_one(
            "SELECT pg_catalog.count(*), pg_catalog.bool_and(s.ssl) \
             FROM pg_catalog.pg_stat_ssl s JOIN pg_catalog.pg_stat_activity a ON a.pid = s.pid \
             WHERE a.client_addr IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) >= 2, "the node's pool and the test's");
    assert!(row.get::<_, bool>(1));
}

#[actix_web::test]
async fn postgres_untrusted_ca_or_wrong_host_stops_start_up_with_the_reason() {
    let certs = TestCerts::make();
    let pg = PrivatePg::start_tls(&certs.path("server.crt"), &certs.path("server.key")).await;

    // A CA that did not sign the server's certificate.
    let wrong_ca = pg_url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", certs.other_ca()),
    );
    migrate_fails_with(
        &wrong_ca,
        &[
            "PostgreSQL TLS failed",
            "sslmode=verify-full",
            "not signed by a trusted CA",
        ],
    );
    start_up_fails_with(
        &[("STAMPEDE_DATABASE_URL", &wrong_ca)],
        &["PostgreSQL TLS failed", "not signed by a trusted CA"],
    );

    // The right CA, but the certificate names 127.0.0.1 and localhost, not 127.0.0.2.
    let query = format!("sslrootcert={}", certs.ca());
    let other_host = pg_url(&pg, "127.0.0.2", &format!("sslmode=verify-full&{query}"));
    migrate_fails_with(
        &other_host,
        &["PostgreSQL TLS failed", "does not name the host"],
    );

    // verify-ca checks the chain only: the same host is fine.
    let chain_only = pg_url(&pg, "127.0.0.2", &format!("sslmode=verify-ca&{query}"));
    let out = cli(&["migrate"], &[("STAMPEDE_DATABASE_URL", &chain_only)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // ...and still refuses a chain to an untrusted CA.
    let other = format!("sslmode=verify-ca&sslrootcert={}", certs.other_ca());
    migrate_fails_with(
        &pg_url(&pg, "127.0.0.2", &other),
        &["not signed by a trusted CA"],
    );

    // A CA file that is not there is named.
    let missing = pg_url(
        &pg,
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
    );
    migrate_fails_with(&missing, &["/nonexistent/ca.crt"]);
}

#[actix_web::test]
async fn postgres_without_tls_is_refused_by_require_and_taken_plain_by_prefer() {
    let pg = PrivatePg::start().await;
    let url = |query: &str| format!("{}?{query}", pg.url());
    migrate_fails_with(
        &url("sslmode=require"),
        &[
            "PostgreSQL TLS failed",
            "sslmode=require",
            "does not support TLS",
        ],
    );
    for query in ["sslmode=prefer", "sslmode=disable"] {
        let target = PgTarget::parse(&url(query)).unwrap();
        let client = target.connect().await.unwrap();
        assert!(!encrypted(&client).await, "{query}");
    }
}

#[actix_web::test]
async fn postgres_require_and_prefer_encrypt_without_a_ca() {
    let certs = TestCerts::make();
    let pg = PrivatePg::start_tls(&certs.path("server.crt"), &certs.path("server.key")).await;
    // No CA given and a host the certificate does not name: encrypted all the same.
    for query in ["sslmode=require", "sslmode=prefer", ""] {
        let url = pg_url(&pg, "127.0.0.2", query);
        let target = PgTarget::parse(&url).unwrap();
        let client = target.connect().await.unwrap();
        assert!(encrypted(&client).await, "{query:?}");
        let out = cli(&["migrate"], &[("STAMPEDE_DATABASE_URL", &url)]);
        assert!(out.status.success(), "{query:?}: {}", stderr(&out));
    }
}

#[actix_web::test]
async fn rediss_relays_between_nodes_and_an_untrusted_ca_stops_start_up() {
    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let ca = certs.ca();

    // Trusting another CA: the node does not start, and says why.
    let other_ca = certs.other_ca();
    start_up_fails_with(
        &[
            ("STAMPEDE_REDIS_URL", &url),
            ("STAMPEDE_REDIS_CA_FILE", &other_ca),
        ],
        &["Redis TLS failed", "not signed by a trusted CA"],
    );
    // The system's roots do not hold the test CA either.
    start_up_fails_with(&[("STAMPEDE_REDIS_URL", &url)], &["Redis TLS failed"]);
    // The right CA, but a host the certificate does not name.
    let other_host = format!("rediss://127.0.0.2:{}", redis.port);
    start_up_fails_with(
        &[
            ("STAMPEDE_REDIS_URL", &other_host),
            ("STAMPEDE_REDIS_CA_FILE", &ca),
        ],
        &["Redis TLS failed", "does not name the host"],
    );

    let app = spawn_app().await;
    let stream = app.create_stream("owner").await;
    app.create_user("alice", "password-123", Role::Viewer).await;
    let env = [
        ("STAMPEDE_REDIS_CA_FILE", ca.as_str()),
        ("STAMPEDE_LIMITS_CHAT_MESSAGES", "1000"),
        ("STAMPEDE_LIMITS_CHAT_BURST", "1000"),
    ];
    let (a, ha, b, hb) = two_nodes_on(&app, &url, &env).await;
    let mut on_a = ha.logged_in("alice").await.ws(stream).await;
    let (mut on_b, _, _) = hb.ws_ready(stream, None).await;
    // Sent until node B relays one: its subscription may still be on its way.
    let mut relayed = None;
    for i in 0..100 {
        on_a.send(
            json!({"type":"message","message":format!("over TLS {i}"),"client_id":format!("c{i}")}),
        )
        .await;
        on_a.expect("ack").await;
        while let Some(v) = on_b.next_text(Duration::from_millis(100)).await {
            if v["type"] == "message" {
                relayed = Some(v);
                break;
            }
        }
        if relayed.is_some() {
            break;
        }
    }
    let m = relayed.expect("node B relays node A's messages through rediss://");
    assert!(m["message"].as_str().unwrap().starts_with("over TLS "));
    assert_eq!(m["username"], "alice");
    drop((a, b));
}

/// Webhooks over HTTPS, the only scheme without `webhooks.allow_http`: a
/// receiver whose certificate the private CA signs gets its events once
/// `webhooks.ca_file` names that CA, from the deliverer and from both test
/// pings (HTTP route and CLI); with the public roots alone the ping is
/// refused and the reason logged; a CA file that cannot be read stops start-up.
#[actix_web::test]
async fn webhooks_reach_https_receivers_that_the_ca_file_trusts() {
    let certs = TestCerts::make();
    let ca = certs.ca();
    start_up_fails_with(
        &[("STAMPEDE_WEBHOOKS_CA_FILE", "/nonexistent/ca.pem")],
        &["webhooks.ca_file", "/nonexistent/ca.pem"],
    );

    let _serial = webhooks::SERIAL.lock().await;
    let trusted = ca.clone();
    let app = spawn_app_with(move |s| {
        webhooks::fast(s);
        s.webhooks.allow_http = false;
        s.webhooks.ca_file = trusted;
    })
    .await;
    let rx = webhooks::Receiver::up_tls(&certs.path("server.crt"), &certs.path("server.key")).await;
    assert!(rx.url().starts_with("https://"), "{}", rx.url());
    let (id, _) = webhooks::add_webhook(&app, &rx, None);
    let (stream, owner) = app.stream_with_owner().await;
    let path = format!("/api/streams/{stream}/messages");
    let r = owner.post(&path, json!({"message": "over TLS"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    webhooks::until(
        "the message reached the HTTPS receiver",
        Duration::from_secs(30),
        || rx.acked_texts("message.created", "message") == ["over TLS"],
    )
    .await;

    let admin = app.user("root", Role::Admin).await;
    let r = admin
        .post(&format!("/api/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ok"], true, "{}", r.body);

    // The CLI's ping trusts what its own settings say.
    let id_arg = id.to_string();
    let ping = [
        "webhook",
        "test",
        "--tenant",
        app.tenant.slug.as_str(),
        &id_arg,
    ];
    let out = cli_beside(&ping, &[]).await;
    assert!(!out.status.success());
    let line = error_line(&stderr(&out));
    assert!(
        line.contains("TLS failed: the server's certificate is not signed by a trusted CA"),
        "{line}"
    );
    let out = cli_beside(&ping, &[("STAMPEDE_WEBHOOKS_CA_FILE", &ca)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("200 in "), "{}", stdout(&out));

    // Every attempt is in the deliveries log, the refused one with its reason.
    let log_path = format!("/api/webhooks/{id}/deliveries");
    let errors: Vec<Value> =
        eventually("four attempts logged", Duration::from_secs(10), || async {
            let log = admin.get(&log_path).await.json()["deliveries"].clone();
            let log = log.as_array().cloned().unwrap_or_default();
            (log.len() == 4).then(|| log.iter().map(|d| d["error"].clone()).collect())
        })
        .await;
    assert_eq!(
        errors.iter().filter(|e| e.is_null()).count(),
        3,
        "{errors:?}"
    );
    let refused = errors.iter().find_map(Value::as_str).unwrap_or_default();
    assert!(refused.contains("not signed by a trusted CA"), "{errors:?}");
    assert_eq!(
        rx.got().len(),
        3,
        "one message and two pings reached the receiver"
    );
    rx.assert_all_signed();
}
