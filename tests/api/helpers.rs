//! Test support: a real PostgreSQL (the configured one, or a private cluster the
//! suite starts itself), one fresh database per test run, and `spawn_app()`
//! giving each test its own node on port 0 and its own tenant.

use std::{
    path::Path,
    process::{Command, Output},
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use awc::{http::header, Client, ClientResponse};
use serde_json::Value;
use stampede::{
    config::Settings,
    domain::{Role, Slug, Username},
    startup::Application,
    store::{accounts::User, migrations, streams::Stream, Store},
};
use tokio_postgres::types::ToSql;

use crate::ws::WsClient;

/// Random lower-case hex.
pub fn random_hex(n: usize) -> String {
    stampede::auth::new_token()[..n].to_string()
}

/// A unique tenant slug for one test.
pub fn unique_slug() -> String {
    format!("t_{}", random_hex(12))
}

/// The URL of this run's test database, created and migrated once per process.
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let base = std::env::var("STAMPEDE_TEST_DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let db = format!("stampede_test_{secs}_{}", std::process::id());
                let url = stampede::store::provision::ensure_postgres(
                    &base,
                    &db,
                    Path::new(env!("CARGO_MANIFEST_DIR")),
                )
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the tests need PostgreSQL: start one on 127.0.0.1:5432 (or set \
                         STAMPEDE_TEST_DATABASE_URL), or install Debian's postgresql so the \
                         suite can run a private cluster: {e:#}"
                    )
                });
                drop_old_test_databases(&url, secs).await;
                let store = store_for(&url, 4);
                migrations::migrate_all(&store)
                    .await
                    .expect("migrating the test database");
                url
            })
        })
        .join()
        .unwrap()
    })
    .clone()
}

/// The port of the test database's PostgreSQL.
pub fn database_port() -> u16 {
    let config: tokio_postgres::Config = database_url().parse().expect("the test database URL");
    config.get_ports().first().copied().unwrap_or(5432)
}

/// The test database's URL reaching it through 127.0.0.1:`port` (a
/// [`TcpLink`] in front of [`database_port`]) instead of directly, without
/// TLS (the link reads the queries that pass).
pub fn database_url_via(port: u16) -> String {
    let url = database_url();
    let config: tokio_postgres::Config = url.parse().expect("the test database URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) if h == "127.0.0.1" || h == "localhost" => h,
        _ => panic!("a link stands only before a PostgreSQL on 127.0.0.1, not {url}"),
    };
    let direct = format!("@{host}:{}/", database_port());
    assert!(url.contains(&direct), "{url} names no {direct}");
    assert!(
        !url.contains('?'),
        "{url}: a link takes a URL without parameters"
    );
    url.replacen(&direct, &format!("@127.0.0.1:{port}/"), 1) + "?sslmode=disable"
}

/// Drops test databases of earlier runs (older than an hour).
async fn drop_old_test_databases(url: &str, now: u64) {
    // The node's own way in, so a test database behind TLS works too.
    let mut target = stampede::store::connect::PgTarget::parse(url).unwrap();
    target.config_mut().dbname("postgres");
    let Ok(client) = target.connect().await else {
        return;
    };
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'stampede\\_test\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let ts = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(ts) > 3600 {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                .await;
        }
    }
}

/// Settings for a test node on this run's database.
pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.database.url = database_url();
    s.database.pool_size = 4;
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    // Webhook delivery is off unless a test turns it on: every node scans
    // every tenant with endpoints, and a webhook test's timing must not
    // depend on nodes other tests left running with other settings.
    s.webhooks.deliver = false;
    s
}

/// A store on `url` with `size` connections.
pub fn store_for(url: &str, size: usize) -> Store {
    let mut db = Settings::default().database;
    db.url = url.to_string();
    Store::with_pool_size(&db, size).unwrap()
}

/// A tenant made for one test.
pub struct TestTenant {
    /// Its slug.
    pub slug: Slug,
    /// Its (only) domain.
    pub host: String,
}

/// Creates a tenant with a unique slug on domain `<slug>.test`.
pub async fn create_tenant(store: &Store) -> TestTenant {
    let slug = Slug::parse(&unique_slug()).unwrap();
    let host = format!("{}.test", slug.as_str().replace('_', "-"));
    store
        .create_tenant(&slug, "Test tenant", std::slice::from_ref(&host))
        .await
        .expect("create tenant");
    TestTenant { slug, host }
}

/// The HTTP client of a [`TestApp`]. It keeps an idle connection for a
/// second at most: a node closes one idle for `request_timeout_secs` (10 s by
/// default), and a request sent on a connection the node is closing fails
/// with `Connect(Disconnected)`. A client has to let go of its idle
/// connections before the server does; on a loaded machine a test easily
/// waits 10–15 s between two requests, awc's default keep-alive.
fn http_client() -> Client {
    Client::builder()
        .connector(awc::Connector::new().conn_keep_alive(std::time::Duration::from_secs(1)))
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

/// A running node with its own tenant.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The node's store.
    pub store: Store,
    /// The test's tenant.
    pub tenant: TestTenant,
    /// HTTP client.
    pub client: Client,
    /// The Redis of the nodes behind this handle, when [`two_nodes`] started them.
    pub relay: Option<Relay>,
}

/// Starts a node (in this test's actix system) and a tenant for it.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`] with changed settings.
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    start_app(change).await
}

/// Chat limits high enough that a test sending hundreds of messages from one
/// socket is never rate limited (the tests of the limits set their own).
pub fn raise_limits(s: &mut Settings) {
    s.limits.chat_messages = 100_000;
    s.limits.chat_burst = 100_000;
}

/// One change to a test node's settings.
type SettingsChange = Box<dyn FnOnce(&mut Settings)>;

/// The settings of a test node, built up in steps:
/// `AppBuilder::new().raised_limits().with(|s| s.chat.ring_size = 20).spawn()`.
#[derive(Default)]
pub struct AppBuilder {
    changes: Vec<SettingsChange>,
}

impl AppBuilder {
    /// The default test settings.
    pub fn new() -> AppBuilder {
        AppBuilder::default()
    }

    /// Chat limits out of the way ([`raise_limits`]).
    pub fn raised_limits(self) -> AppBuilder {
        self.with(raise_limits)
    }

    /// Any other change, applied after the ones before it.
    pub fn with(mut self, change: impl FnOnce(&mut Settings) + 'static) -> AppBuilder {
        self.changes.push(Box::new(change));
        self
    }

    /// Starts the node (in this test's actix system) and a tenant for it.
    pub async fn spawn(self) -> TestApp {
        start_app(|s| {
            for change in self.changes {
                change(s);
            }
        })
        .await
    }
}

async fn start_app(change: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        stampede::telemetry::init("debug");
    }
    let mut settings = test_settings();
    change(&mut settings);
    let store = store_for(&settings.database.url, 2);
    let tenant = create_tenant(&store).await;
    let app = Application::build(settings).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        store,
        tenant,
        client: http_client(),
        relay: None,
    }
}

/// A response read whole.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: header::HeaderMap,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The `Retry-After` header in seconds; panics when it is missing.
    pub fn retry_after(&self) -> u64 {
        self.headers
            .get("retry-after")
            .expect("a Retry-After header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The value of the session cookie set by this response, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.strip_prefix("stampede_session=")
                .map(|rest| rest.split(';').next().unwrap().to_string())
                .filter(|v| !v.is_empty())
        })
    }
}

/// Reads a response whole.
pub async fn read_reply<S>(mut res: ClientResponse<S>) -> Reply
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = res.body().limit(4 << 20).await.expect("body");
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

impl TestApp {
    /// One series of this app's `/metrics`, by its exact name.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.get("/metrics", None).await.body;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The same tenant and store, for talking to another node.
    pub fn clone_handle(&self) -> TestApp {
        TestApp {
            address: self.address.clone(),
            store: self.store.clone(),
            tenant: TestTenant {
                slug: self.tenant.slug.clone(),
                host: self.tenant.host.clone(),
            },
            client: self.client.clone(),
            relay: self.relay.clone(),
        }
    }

    /// The same tenant and store on the `stampede serve` process `node`.
    pub fn on_node(&self, node: &Node) -> TestApp {
        TestApp {
            address: node.address.clone(),
            ..self.clone_handle()
        }
    }

    /// Starts `stampede serve` on `port` with extra environment (as
    /// [`Node::start`]): the process, and the same tenant and store on it.
    pub async fn start_node(&self, port: u16, envs: &[(&str, &str)]) -> (Node, TestApp) {
        let node = Node::start(port, envs).await;
        let on_node = self.on_node(&node);
        (node, on_node)
    }

    /// GET with this tenant's Host and an optional session cookie.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.get_on(&self.tenant.host, path, cookie).await
    }

    /// A request to `path` of this node with `Host: host` and an optional
    /// session cookie.
    fn request(
        &self,
        method: awc::http::Method,
        host: &str,
        path: &str,
        cookie: Option<&str>,
    ) -> awc::ClientRequest {
        let req = self
            .client
            .request(method, format!("{}{path}", self.address))
            .insert_header((header::HOST, host.to_string()));
        match cookie {
            Some(c) => req.insert_header((header::COOKIE, format!("stampede_session={c}"))),
            None => req,
        }
    }

    /// GET with any Host.
    pub async fn get_on(&self, host: &str, path: &str, cookie: Option<&str>) -> Reply {
        let req = self.request(awc::http::Method::GET, host, path, cookie);
        read_reply(req.send().await.expect("request")).await
    }

    /// POST JSON with this tenant's Host, no cookie and no CSRF token.
    pub async fn post_anonymous(&self, path: &str, body: Value) -> Reply {
        self.post_json(path, &body, None, None).await
    }

    /// POST JSON with this tenant's Host, an optional cookie and CSRF token.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> Reply {
        self.post_json_on(&self.tenant.host, path, body, cookie, csrf)
            .await
    }

    /// POST JSON with any Host.
    pub async fn post_json_on(
        &self,
        host: &str,
        path: &str,
        body: &Value,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> Reply {
        let mut req = self.request(awc::http::Method::POST, host, path, cookie);
        if let Some(t) = csrf {
            req = req.insert_header(("X-CSRF-Token", t.to_string()));
        }
        read_reply(req.send_json(body).await.expect("request")).await
    }

    /// `stampede token create` for `user` with `scopes` (and a `--name`);
    /// returns the token printed.
    pub fn cli_token(&self, user: &str, scopes: &str, name: Option<&str>) -> String {
        let mut args = vec![
            "token",
            "create",
            "--tenant",
            self.tenant.slug.as_str(),
            "--user",
            user,
            "--scopes",
            scopes,
        ];
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        let out = cli(&args, &[]);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let token = stdout(&out);
        assert_eq!(token.lines().count(), 1, "{token}");
        token.trim().to_string()
    }

    /// Creates a user on the test tenant; returns its id.
    pub async fn create_user(&self, name: &str, password: &str, role: Role) -> i64 {
        let hash = stampede::auth::hash_password(password.into())
            .await
            .unwrap();
        self.store
            .create_user(
                &self.tenant.slug,
                &Username::parse(name).unwrap(),
                &hash,
                role,
            )
            .await
            .unwrap()
            .expect("new user")
            .id
    }

    /// Creates a stream owned by `owner` (created as a streamer if missing); returns its id.
    pub async fn create_stream(&self, owner: &str) -> i64 {
        let owner_id = match self.stored_user(owner).await {
            Some(u) => u.id,
            None => {
                self.create_user(owner, "password-123", Role::Streamer)
                    .await
            }
        };
        self.store
            .create_stream(&self.tenant.slug, owner_id, "Test stream", "", None)
            .await
            .unwrap()
    }

    /// A stream of user `owner` (a streamer), and `owner` logged in.
    pub async fn stream_with_owner(&self) -> (i64, TestUser<'_>) {
        let stream = self.create_stream("owner").await;
        (stream, self.logged_in("owner").await)
    }

    /// The stored account `name` of the test tenant, if there is one.
    pub async fn stored_user(&self, name: &str) -> Option<User> {
        self.store
            .user_by_name(&self.tenant.slug, name)
            .await
            .unwrap()
    }

    /// The stored row of stream `id`; panics when there is none.
    pub async fn stored_stream(&self, id: i64) -> Stream {
        self.store
            .stream(&self.tenant.slug, id)
            .await
            .unwrap()
            .expect("stored stream")
    }

    /// A stream of user `owner`, then each `(name, role)` created (password
    /// `password-123`) but not logged in, for tests that log them in
    /// elsewhere (another node, a browser); returns the stream's id.
    pub async fn stream_with_accounts(&self, who: &[(&str, Role)]) -> i64 {
        let stream = self.create_stream("owner").await;
        for &(name, role) in who {
            self.create_user(name, "password-123", role).await;
        }
        stream
    }

    /// [`TestApp::stream_with_accounts`] with every one a viewer.
    pub async fn stream_with_viewer_accounts<const N: usize>(&self, names: [&str; N]) -> i64 {
        self.stream_with_accounts(&names.map(|name| (name, Role::Viewer)))
            .await
    }

    /// A stream of user `owner` with the viewer accounts `names` (as
    /// [`TestApp::stream_with_viewer_accounts`]), and `stampede serve`
    /// started on a free port with extra environment `envs` (as
    /// [`TestApp::start_node`]): the stream, the process, and the same tenant
    /// and store on it.
    pub async fn stream_on_node<const N: usize>(
        &self,
        names: [&str; N],
        envs: &[(&str, &str)],
    ) -> (i64, Node, TestApp) {
        let stream = self.stream_with_viewer_accounts(names).await;
        let (node, on_node) = self.start_node(free_port(), envs).await;
        (stream, node, on_node)
    }

    /// A stream of user `owner`, and viewer `name` logged in with a socket
    /// on it (after `hello` and `history`).
    pub async fn stream_with_viewer(&self, name: &str) -> (i64, TestUser<'_>, WsClient) {
        let stream = self.create_stream("owner").await;
        let viewer = self.user(name, Role::Viewer).await;
        let socket = viewer.ws(stream).await;
        (stream, viewer, socket)
    }

    /// Every stored message id of a stream, ascending.
    pub async fn stored_ids(&self, stream_id: i64) -> Vec<i64> {
        let c = self.store.client().await.unwrap();
        c.query(
            &format!(
                "SELECT m.id FROM {0}.chat_chatmessage m JOIN {0}.chat_chatroom r ON r.id = m.room_id \
                 WHERE r.stream_id = $1 ORDER BY m.id",
                self.tenant.slug.schema()
            ),
            &[&stream_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// Runs one statement on the test tenant's tables (`{s}` in `sql` stands
    /// for its schema); returns the rows it gives.
    pub async fn tenant_sql(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        let sql = sql.replace("{s}", &self.tenant.slug.schema());
        let c = self.store.client().await.unwrap();
        c.query(&sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column, a `bigint`, of the first row a query on the test
    /// tenant's tables gives (`{s}` as in [`TestApp::tenant_sql`]).
    pub async fn tenant_number(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
        self.tenant_sql(sql, params).await[0].get(0)
    }

    /// How many reactions to a stream are stored (one row each).
    pub async fn stored_reactions(&self, stream_id: i64) -> i64 {
        self.tenant_number(
            "SELECT count(*) FROM {s}.streaming_streamreaction WHERE stream_id = $1",
            &[&stream_id],
        )
        .await
    }

    /// Every stored message of a stream (deleted ones included), ascending by id.
    pub async fn stored_rows(&self, stream_id: i64) -> Vec<StoredRow> {
        let c = self.store.client().await.unwrap();
        c.query(
            &format!(
                "SELECT m.id, m.client_id, m.is_deleted FROM {0}.chat_chatmessage m \
                 JOIN {0}.chat_chatroom r ON r.id = m.room_id WHERE r.stream_id = $1 ORDER BY m.id",
                self.tenant.slug.schema()
            ),
            &[&stream_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| StoredRow {
            id: r.get(0),
            client_id: r.get(1),
            deleted: r.get(2),
        })
        .collect()
    }

    /// `POST /api/login` without a session: the reply, whatever it says.
    pub async fn try_login(&self, name: &str, password: &str) -> Reply {
        self.post_anonymous(
            "/api/login",
            serde_json::json!({"username": name, "password": password}),
        )
        .await
    }

    /// Sets the tenant's `anonymous_viewers` and `signup` (`None` keeps one).
    /// Nodes see the change within [`stampede::tenants::CACHE_TTL`]: poll.
    pub async fn configure_tenant(&self, anonymous_viewers: Option<bool>, signup: Option<bool>) {
        self.store
            .configure_tenant(
                &self.tenant.slug,
                stampede::store::tenants::TenantConfig {
                    anonymous_viewers,
                    signup,
                },
            )
            .await
            .unwrap();
    }

    /// Logs in; returns (session cookie, csrf token).
    pub async fn login(&self, name: &str, password: &str) -> (String, String) {
        let r = self.try_login(name, password).await;
        assert_eq!(r.status, 200, "login failed: {}", r.body);
        let cookie = r.session_cookie().expect("session cookie");
        (cookie, r.json()["csrf_token"].as_str().unwrap().to_string())
    }
}

/// A logged-in user of a test node: what a browser of theirs would hold.
pub struct TestUser<'a> {
    app: &'a TestApp,
    /// The username.
    pub name: String,
    /// The session cookie's value.
    pub cookie: String,
    /// The session's CSRF token.
    pub csrf: String,
}

impl TestApp {
    /// Creates `name` (password `password-123`) with `role` and logs in.
    pub async fn user(&self, name: &str, role: Role) -> TestUser<'_> {
        self.create_user(name, "password-123", role).await;
        self.logged_in(name).await
    }

    /// [`TestApp::user`] for each `(name, role)`, in order.
    pub async fn users<const N: usize>(&self, who: [(&str, Role); N]) -> [TestUser<'_>; N] {
        let mut users = Vec::with_capacity(N);
        for (name, role) in who {
            users.push(self.user(name, role).await);
        }
        let Ok(users) = users.try_into() else {
            unreachable!("one user per name")
        };
        users
    }

    /// [`TestApp::users`] with every one a viewer.
    pub async fn viewers<const N: usize>(&self, names: [&str; N]) -> [TestUser<'_>; N] {
        self.users(names.map(|name| (name, Role::Viewer))).await
    }

    /// Logs in a user that exists (password `password-123`).
    pub async fn logged_in(&self, name: &str) -> TestUser<'_> {
        let (cookie, csrf) = self.login(name, "password-123").await;
        TestUser {
            app: self,
            name: name.to_string(),
            cookie,
            csrf,
        }
    }
}

impl TestUser<'_> {
    /// POST JSON with the cookie and the CSRF token.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.app
            .post_json(path, &body, Some(&self.cookie), Some(&self.csrf))
            .await
    }

    /// [`TestUser::post`] that must answer 200 (the body is shown if not).
    pub async fn post_ok(&self, path: &str, body: Value) -> Reply {
        let r = self.post(path, body).await;
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r
    }

    /// POST JSON with the cookie but no CSRF token.
    pub async fn post_without_csrf(&self, path: &str, body: Value) -> Reply {
        self.app
            .post_json(path, &body, Some(&self.cookie), None)
            .await
    }

    /// POST JSON with the cookie and another CSRF token.
    pub async fn post_with_csrf(&self, path: &str, body: Value, csrf: &str) -> Reply {
        self.app
            .post_json(path, &body, Some(&self.cookie), Some(csrf))
            .await
    }

    /// Sets a stream's status (`live`, `ended`) as this user.
    pub async fn set_status(&self, stream: i64, status: &str) -> Reply {
        self.post(
            &format!("/api/streams/{stream}/status"),
            serde_json::json!({ "status": status }),
        )
        .await
    }

    /// GET with the cookie.
    pub async fn get(&self, path: &str) -> Reply {
        self.app.get(path, Some(&self.cookie)).await
    }

    /// A socket on `stream` with this user's cookie, after `hello` and `history`.
    pub async fn ws(&self, stream: i64) -> crate::ws::WsClient {
        self.app.ws_ready(stream, Some(&self.cookie)).await.0
    }

    /// A socket on `stream` with this user's cookie and `query` (`?last_id=…`
    /// or empty), before `hello`; `Err` with the status when it is refused.
    pub async fn ws_with(
        &self,
        stream: i64,
        query: &str,
    ) -> Result<crate::ws::WsClient, crate::ws::Refused> {
        crate::ws::connect(
            &self.app.address,
            &self.app.tenant.host,
            stream,
            Some(&self.cookie),
            None,
            query,
        )
        .await
    }

    /// The same user on another node (same tenant and store).
    pub fn on<'b>(&self, app: &'b TestApp) -> TestUser<'b> {
        TestUser {
            app,
            name: self.name.clone(),
            cookie: self.cookie.clone(),
            csrf: self.csrf.clone(),
        }
    }
}

/// A socket on `stream` for each user (after `hello` and `history`),
/// opened in order.
pub async fn sockets<const N: usize>(stream: i64, users: [&TestUser<'_>; N]) -> [WsClient; N] {
    let mut sockets = Vec::with_capacity(N);
    for user in users {
        sockets.push(user.ws(stream).await);
    }
    let Ok(sockets) = sockets.try_into() else {
        unreachable!("one socket per user")
    };
    sockets
}

/// The quoted value that follows `marker` in a page; panics naming `what`
/// when the page has none.
fn value_after(html: &str, marker: &str, what: &str) -> String {
    let at = html.find(marker).expect(what);
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The `csrf_token` hidden field of a form page.
pub fn form_token(html: &str) -> String {
    value_after(html, "name=\"csrf_token\" value=\"", "csrf_token field")
}

/// The `content` of a page's `<meta name="csrf-token">`.
pub fn meta_token(html: &str) -> String {
    value_after(
        html,
        "<meta name=\"csrf-token\" content=\"",
        "csrf-token meta",
    )
}

/// The ids of the `messages` of a history, search or replay answer.
pub fn message_ids(v: &Value) -> Vec<i64> {
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {v}"))
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

/// How long a test waits for something that should happen at once: a
/// deadline for what fails, never a wait for what passes. Generous, as two
/// cores run four test threads, their nodes, Redis and Chromium (a second
/// node's subscription was once seen to take more than ten seconds).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `check` until it gives `Some`, for at most `limit`; panics naming
/// `what` when it never does. Use instead of sleeping for something to happen.
pub async fn eventually<T, F, Fut>(what: &str, limit: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

impl TestApp {
    /// Waits until the nodes' presence counts of `stream` in Redis (each
    /// node's, as nodes share them every refresh) sum to `n`, instead of
    /// sleeping for a refresh.
    pub async fn await_presence(&self, stream: i64, n: u64) {
        let relay = self.relay.as_ref().expect("a handle from two_nodes");
        let base = format!("{}:presence:{}:{stream}", relay.prefix, self.tenant.slug);
        let client = redis::Client::open(relay.url.as_str()).expect("a Redis URL");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the test Redis answers");
        eventually(&format!("presence {n} at {base}"), WAIT, || {
            let (mut conn, base) = (conn.clone(), base.clone());
            async move {
                let nodes: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&base)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                let mut total = 0;
                for node in nodes {
                    let count: Option<u64> = redis::cmd("GET")
                        .arg(format!("{base}:{node}"))
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    total += count.unwrap_or(0);
                }
                (total == n).then_some(())
            }
        })
        .await
    }
}

/// How many subscribers Redis has on `channel` (`PUBSUB NUMSUB`).
pub async fn redis_subscribers(redis_url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(redis_url).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers");
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

/// One row of `chat_chatmessage`, as [`TestApp::stored_rows`] reads it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// The message id.
    pub id: i64,
    /// The sender's idempotency key, if any.
    pub client_id: Option<String>,
    /// Hidden by `delete` or `clear`.
    pub deleted: bool,
}

/// A command that runs the `stampede` binary with `args` on the database
/// at `url`, in the temporary directory.
pub fn stampede_on(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stampede"));
    cmd.args(args)
        .env("STAMPEDE_DATABASE_URL", url)
        .current_dir(std::env::temp_dir());
    cmd
}

/// Runs the `stampede` binary with this run's database.
pub fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = stampede_on(&database_url(), args);
    cmd.env_remove("STAMPEDE_PASSWORD");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run stampede")
}

/// [`cli`] on a blocking thread, for a command that talks to something this
/// test's runtime serves (a webhook receiver): the runtime keeps running.
pub async fn cli_beside(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let owned = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let args = owned(args);
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&args, &envs)
    })
    .await
    .expect("the CLI's thread")
}

/// stdout of a CLI run.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of a CLI run.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `stampede serve` process.
pub struct Node {
    /// The child process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Its port, for a node started there again after this one stops.
    pub port: u16,
}

impl Node {
    /// Starts `stampede serve` on `port` with extra environment, and waits until
    /// `/healthz` answers.
    pub async fn start(port: u16, envs: &[(&str, &str)]) -> Node {
        Self::start_with(port, envs, None).await
    }

    /// [`Node::start`] with everything the node writes (its log, on stderr,
    /// and stdout) in the file `log`; `RUST_LOG` in `envs` sets the level.
    pub async fn start_with_log(port: u16, envs: &[(&str, &str)], log: &std::path::Path) -> Node {
        Self::start_with(port, envs, Some(log)).await
    }

    async fn start_with(port: u16, envs: &[(&str, &str)], log: Option<&std::path::Path>) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stampede"));
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("STAMPEDE_DATABASE_URL", database_url())
            .env(
                "RUST_LOG",
                std::env::var("TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .current_dir(std::env::temp_dir())
            // Off unless `envs` turns it on (see `test_settings`).
            .env("STAMPEDE_WEBHOOKS_DELIVER", "false")
            .stdout(std::process::Stdio::null());
        if let Some(log) = log {
            let file = std::fs::File::create(log).expect("the node's log file");
            cmd.stdout(file.try_clone().unwrap()).stderr(file);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let node = Node::spawn(&mut cmd, port);
        let client = Client::default();
        // A deadline, not a count of tries: on a loaded machine (eight test
        // threads on two cores) a start can take more than ten seconds.
        let limit = std::time::Duration::from_secs(30);
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(r) = client.get(format!("{}/healthz", node.address)).send().await {
                if r.status().is_success() {
                    return node;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("stampede serve did not come up on port {port} within {limit:?}");
    }

    /// Spawns `cmd`, a `stampede serve` set to bind 127.0.0.1:`port`,
    /// without waiting for it to answer. Wrapped at once, so a failed start
    /// is killed and reaped by Drop.
    pub fn spawn(cmd: &mut Command, port: u16) -> Node {
        Node {
            child: cmd.spawn().expect("start stampede serve"),
            address: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Stops the process with SIGTERM and waits (at most 30 s) for it to
    /// exit with success; returns its port, free for a node started again.
    pub fn shut_down(self) -> u16 {
        self.signal("-TERM");
        let port = self.port;
        let status = self.wait(std::time::Duration::from_secs(30));
        assert!(status.success(), "shutdown on SIGTERM: {status:?}");
        port
    }

    /// Waits for the process to exit; returns its status.
    pub fn wait(mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < until,
                "node did not exit within {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private PostgreSQL cluster in a temporary directory, for tests that stop
/// and restart the database (never the shared one).
pub struct PrivatePg {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    /// Its port.
    pub port: u16,
    /// Server options beyond port, socket directory and `listen_addresses`.
    options: String,
    /// `listen_addresses`.
    listen: &'static str,
}

/// Hands `dir` to the `postgres` user when the tests run as root (the
/// server programs refuse to run as root).
fn chown_to_postgres(dir: &Path) {
    if stampede_devenv::is_root() {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
    }
}

/// Creates database `stampede` over a fresh connection (`conn`, its driver,
/// runs in the background).
async fn create_stampede_database(
    client: tokio_postgres::Client,
    conn: impl std::future::Future + 'static,
) {
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute("CREATE DATABASE stampede")
        .await
        .unwrap();
}

impl PrivatePg {
    fn pg_command(&self, tool: &str) -> Command {
        stampede_devenv::as_pg_user(&self.bin.join(tool), stampede_devenv::is_root())
    }

    /// Runs `cmd` and panics with its stderr, naming `what`, when it fails.
    fn run(what: &str, mut cmd: Command) {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates a cluster (trust auth) in a fresh directory; not started.
    fn init() -> PrivatePg {
        let bin = stampede_devenv::postgres_bin_dir()
            .unwrap_or_else(|e| panic!("these tests need PostgreSQL's server programs: {e:#}"));
        let dir = std::env::temp_dir().join(format!("stampede-pg-{}", random_hex(10)));
        std::fs::create_dir_all(&dir).unwrap();
        chown_to_postgres(&dir);
        let pg = PrivatePg {
            dir,
            bin,
            port: free_port(),
            options: String::new(),
            listen: "127.0.0.1",
        };
        let mut initdb = pg.pg_command("initdb");
        initdb
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&pg.dir);
        Self::run("initdb", initdb);
        pg
    }

    /// Creates and starts a cluster (trust auth) with database `stampede`.
    pub async fn start() -> PrivatePg {
        let pg = Self::init();
        pg.start_server();
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        create_stampede_database(client, conn).await;
        pg
    }

    /// Creates and starts a cluster that takes TCP connections over TLS only
    /// (`ssl=on` with `cert` and `key`, `hostssl` lines alone in pg_hba.conf),
    /// listening on 127.0.0.1 and 127.0.0.2, with database `stampede`.
    pub async fn start_tls(cert: &Path, key: &Path) -> PrivatePg {
        let mut pg = Self::init();
        std::fs::copy(cert, pg.dir.join("server.crt")).unwrap();
        std::fs::copy(key, pg.dir.join("server.key")).unwrap();
        std::fs::write(
            pg.dir.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.0/8 trust\n",
        )
        .unwrap();
        chown_to_postgres(&pg.dir);
        // PostgreSQL refuses a key others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            pg.dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        pg.options = "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        pg.listen = "127.0.0.1,127.0.0.2";
        pg.start_server();
        // Over the Unix socket: plain TCP is refused.
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(&pg.dir)
            .port(pg.port)
            .user("postgres")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        create_stampede_database(client, conn).await;
        pg
    }

    /// URL of its `stampede` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/stampede", self.port)
    }

    /// Starts the server (after `stop`).
    pub fn start_server(&self) {
        let mut start = self.pg_command("pg_ctl");
        start
            .args(["start", "-w", "-D"])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses={} -k {} {}",
                self.port,
                self.listen,
                self.dir.display(),
                self.options
            ));
        Self::run("pg_ctl start", start);
    }

    /// Freezes (`-STOP`) or thaws (`-CONT`) the server and every backend:
    /// connections stay open and nothing answers, as with a hung host.
    pub fn signal_all(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.dir.join("postmaster.pid")).expect("postmaster.pid");
        let pid = pid.lines().next().unwrap_or_default().trim().to_string();
        // Backends first, so none is started unfrozen after its parent stops.
        let _ = Command::new("pkill").args([sig, "-P", &pid]).status();
        let _ = Command::new("kill").args([sig, &pid]).status();
    }

    /// Stops the server (fast: connections are cut).
    pub fn stop(&self) {
        let mut stop = self.pg_command("pg_ctl");
        stop.args(["stop", "-w", "-m", "fast", "-D"]).arg(&self.dir);
        Self::run("pg_ctl stop", stop);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.signal_all("-CONT");
        let _ = self
            .pg_command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until a server just spawned as `child` answers (`answers`): true;
/// false when it exits first (its port was taken meanwhile, so the caller
/// starts it again on another). Panics, killing it, after 10 s.
pub fn came_up(child: &mut std::process::Child, what: &str, answers: impl Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if answers() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            panic!("{what} did not come up");
        }
        // Pacing the polls of a server that is starting.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Answers when a Redis at `addr` replies to PING.
fn redis_answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &addr.parse().unwrap(),
        std::time::Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// The path of `redis-server`, installing Debian's package when missing.
pub fn redis_server_bin() -> &'static str {
    stampede_devenv::ensure_redis_server().unwrap_or_else(|e| {
        panic!("the tests need Redis: start one on 127.0.0.1:6379 or install it ({e:#})")
    })
}

/// A Redis for this run: the one on 127.0.0.1:6379 when it answers, else a
/// private one the suite starts. Tests isolate themselves by channel prefix.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("STAMPEDE_TEST_REDIS_URL") {
            return url;
        }
        if redis_answers("127.0.0.1:6379") {
            return "redis://127.0.0.1:6379".into();
        }
        let r = PrivateRedis::start();
        let url = r.url();
        std::mem::forget(r); // lives as long as the test process
        url
    })
    .clone()
}

/// A private redis-server on a free port, for tests that stop, freeze or kill it.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    /// Its port.
    pub port: u16,
}

impl PrivateRedis {
    /// Starts one on a free port and waits until it answers. A port taken
    /// meanwhile by another process ends the server at once; it starts
    /// again on another.
    pub fn start() -> PrivateRedis {
        for _ in 0..5 {
            let mut r = PrivateRedis {
                child: None,
                port: free_port(),
            };
            if r.try_start() {
                return r;
            }
        }
        panic!("redis-server exited at start five times (its port taken?)");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port.
    pub fn start_again(&mut self) {
        assert!(
            self.try_start(),
            "redis-server exited at start on port {}",
            self.port
        );
    }

    /// Starts the server on its port and waits until it answers; false when
    /// it exits first (the port is taken).
    fn try_start(&mut self) -> bool {
        let mut child = Command::new(redis_server_bin())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let addr = format!("127.0.0.1:{}", self.port);
        let up = came_up(&mut child, &format!("redis-server on {addr}"), || {
            redis_answers(&addr)
        });
        if up {
            self.child = Some(child);
        }
        up
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs one command on the server (`["ACL", "SETUSER", ...]`), which
    /// must succeed.
    pub async fn run(&self, command: &[&str]) {
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the private Redis answers");
        redis::cmd(command[0])
            .arg(&command[1..])
            .query_async::<redis::Value>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    }

    /// How many of `channels` have a subscriber now.
    pub async fn subscribed(&self, channels: &[String]) -> usize {
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the private Redis answers");
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channels)
            .query_async(&mut conn)
            .await
            .expect("PUBSUB NUMSUB");
        counts.iter().filter(|(_, n)| *n > 0).count()
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.stop();
    }
}

/// A TCP proxy to a server on 127.0.0.1, for faults of one client's link
/// alone: it can hold each chunk the server sends back for a while (a slow
/// link, for tests that count round trips), be cut (every connection
/// through it closed, new ones closed at once) and mended, and hold the
/// answer to one request (the first the client sends with given bytes in
/// it, a query naming a table, say) until released.
pub struct TcpLink {
    /// The port to connect to instead of the server's.
    pub port: u16,
    /// Open (`true`) or cut; connections watch it.
    open: tokio::sync::watch::Sender<bool>,
    /// The bytes of the request to hold the answer of, once.
    armed: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    /// The connection whose answers are held, if any.
    holding: tokio::sync::watch::Sender<Option<u64>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpLink {
    /// Starts one in front of the server on `to`, delaying its replies by
    /// `delay` (zero: not at all).
    pub async fn start(to: u16, delay: std::time::Duration) -> TcpLink {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, watch) = tokio::sync::watch::channel(true);
        let armed = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
        let (holding, held) = tokio::sync::watch::channel(None);
        let (armed_in, holding_in) = (armed.clone(), holding.clone());
        let accept = tokio::spawn(async move {
            let mut next_id = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    // Cut: the client sees its connection closed at once.
                    continue;
                }
                next_id += 1;
                let id = next_id;
                let (mut cut, mut held) = (watch.clone(), held.clone());
                let (armed, holding) = (armed_in.clone(), holding_in.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    let (mut client_r, mut client_w) = client.into_split();
                    let (mut server_r, mut server_w) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = client_r.read(&mut buf).await {
                            let chunk = &buf[..n];
                            {
                                let mut armed = armed.lock().unwrap();
                                let hit = armed
                                    .as_ref()
                                    .is_some_and(|p| chunk.windows(p.len()).any(|w| w == &p[..]));
                                if hit {
                                    *armed = None;
                                    holding.send_replace(Some(id));
                                }
                            }
                            if server_w.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = server_r.read(&mut buf).await {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            if held.wait_for(|h| *h != Some(id)).await.is_err() {
                                break;
                            }
                            if client_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        TcpLink {
            port,
            open,
            armed,
            holding,
            accept,
        }
    }

    /// Closes every connection through the link, and each new one at once,
    /// until [`TcpLink::mend`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.open.send_replace(true);
    }

    /// Holds the answer to the next request whose bytes contain `request`
    /// (and everything after it on that connection) until
    /// [`TcpLink::release`].
    pub fn hold_answer_to(&self, request: &[u8]) {
        *self.armed.lock().unwrap() = Some(request.to_vec());
    }

    /// True once a request [`TcpLink::hold_answer_to`] waits for was sent.
    pub fn is_holding(&self) -> bool {
        self.holding.borrow().is_some()
    }

    /// Lets the held answer through.
    pub fn release(&self) {
        self.holding.send_replace(None);
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Environment for `stampede serve` nodes: chat limits out of the way
/// (what [`raise_limits`] does in-process).
pub const RAISED_LIMITS_ENV: &[(&str, &str)] = &[
    ("STAMPEDE_LIMITS_CHAT_MESSAGES", "100000"),
    ("STAMPEDE_LIMITS_CHAT_BURST", "100000"),
];

/// Environment for `stampede serve` nodes: reaction limits out of the way,
/// for tests that send hundreds of reactions from one socket.
pub const RAISED_REACTION_LIMITS_ENV: &[(&str, &str)] = &[
    ("STAMPEDE_LIMITS_REACTIONS_PER_SECOND", "100000"),
    ("STAMPEDE_LIMITS_REACTIONS_BURST", "100000"),
];

/// Two `stampede serve` nodes on the shared Redis with a fresh channel
/// prefix (and `extra` environment), with handles on both.
pub async fn two_nodes(app: &TestApp, extra: &[(&str, &str)]) -> (Node, TestApp, Node, TestApp) {
    two_nodes_on(app, &redis_url(), extra).await
}

/// [`two_nodes`] on the Redis at `redis`.
pub async fn two_nodes_on(
    app: &TestApp,
    redis: &str,
    extra: &[(&str, &str)],
) -> (Node, TestApp, Node, TestApp) {
    two_nodes_with(app, redis, redis, extra).await
}

/// [`two_nodes_on`], node A connecting to Redis with `url_a` and node B with
/// `url_b` (one Redis, as two of its users, say).
pub async fn two_nodes_with(
    app: &TestApp,
    url_a: &str,
    url_b: &str,
    extra: &[(&str, &str)],
) -> (Node, TestApp, Node, TestApp) {
    let relay = Relay {
        url: url_a.to_string(),
        prefix: format!("t{}", random_hex(10)),
    };
    let (a, ha) = node_on(app, &relay, extra, None).await;
    // B's own URL; its handle reads Redis as A's does.
    let b_env = [&[("STAMPEDE_REDIS_URL", url_b)], extra].concat();
    let (b, hb) = node_on(app, &relay, &b_env, None).await;
    (a, ha, b, hb)
}

/// A `stampede serve` on `relay` with `extra` environment (later entries
/// win; its log in `log`, if given), and a handle on it for `app`'s tenant.
pub async fn node_on(
    app: &TestApp,
    relay: &Relay,
    extra: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> (Node, TestApp) {
    let mut env = vec![
        ("STAMPEDE_REDIS_URL", relay.url.as_str()),
        ("STAMPEDE_REDIS_PREFIX", relay.prefix.as_str()),
    ];
    env.extend_from_slice(extra);
    let node = Node::start_with(free_port(), &env, log).await;
    let handle = TestApp {
        address: node.address.clone(),
        relay: Some(relay.clone()),
        ..app.clone_handle()
    };
    (node, handle)
}

/// The Redis and channel prefix nodes started by [`two_nodes`] share.
#[derive(Clone, Debug)]
pub struct Relay {
    /// The Redis URL.
    pub url: String,
    /// `redis.prefix` of the nodes.
    pub prefix: String,
}

impl TestApp {
    /// Waits until `n` nodes subscribe to the room of `stream` in Redis (a
    /// room subscribes when its first socket joins), instead of sleeping for
    /// subscriptions to settle.
    pub async fn await_subscribers(&self, stream: i64, n: i64) {
        let relay = self.relay.as_ref().expect("a handle from two_nodes");
        let channel = format!("{}:room:{}:{stream}", relay.prefix, self.tenant.slug);
        eventually(&format!("{n} subscribers on {channel}"), WAIT, || async {
            (redis_subscribers(&relay.url, &channel).await >= n).then_some(())
        })
        .await
    }
}
