//! A small headless-Chromium driver for the browser tests, speaking the
//! DevTools protocol over one WebSocket (awc). A [`Browser`] is one Chromium
//! process; each [`Tab`] is a page in its own browser context, so tabs do not
//! share cookies (two tabs are two people). Hosts `*.test` resolve to
//! 127.0.0.1, so pages reach a test node by its tenant's host.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    rc::Rc,
    time::Duration,
};

use actix_ws::Item;
use awc::ws::{self, Frame};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = stampede_devenv::CHROMIUM;

/// How long a test waits for something to show in a page.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// Makes sure Chromium is installed (Debian's `chromium`, installed as root when
/// missing); otherwise fails saying what to install.
pub fn ensure_chromium() {
    if let Err(e) = stampede_devenv::ensure_chromium() {
        panic!("the browser tests need Chromium at {CHROMIUM}: {e:#}");
    }
}

/// Results waiting for their command id.
type Waiting = HashMap<u64, oneshot::Sender<Result<Value, String>>>;

/// The DevTools connection shared by a browser's tabs.
struct Conn {
    out: mpsc::UnboundedSender<String>,
    next_id: Cell<u64>,
    waiting: RefCell<Waiting>,
    /// Events seen, per session id (dialogs, exceptions).
    events: RefCell<HashMap<String, Vec<Value>>>,
}

impl Conn {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(id, tx);
        self.out
            .send(msg.to_string())
            .unwrap_or_else(|_| panic!("DevTools connection closed (calling {method})"));
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(Ok(v))) => v,
            Ok(Ok(Err(e))) => panic!("{method} failed: {e}"),
            Ok(Err(_)) => panic!("DevTools connection closed (waiting for {method})"),
            Err(_) => panic!("{method} got no answer within 60 s"),
        }
    }

    fn dispatch(&self, text: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            return;
        };
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            if let Some(tx) = self.waiting.borrow_mut().remove(&id) {
                let r = match v.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                };
                let _ = tx.send(r);
            }
        } else if let Some(session) = v.get("sessionId").and_then(Value::as_str) {
            let method = v["method"].as_str().unwrap_or("");
            if method == "Page.javascriptDialogOpening" || method == "Runtime.exceptionThrown" {
                self.events
                    .borrow_mut()
                    .entry(session.to_string())
                    .or_default()
                    .push(v.clone());
            }
        }
    }
}

/// One headless Chromium process.
pub struct Browser {
    child: std::process::Child,
    dir: PathBuf,
    conn: Rc<Conn>,
    user_agent: String,
}

impl Browser {
    /// Starts Chromium (installing it first if needed) and connects to it.
    pub async fn start() -> Browser {
        ensure_chromium();
        let dir = std::env::temp_dir().join(format!(
            "stampede-chromium-{}",
            crate::helpers::random_hex(12)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("chromium.log")).unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--mute-audio",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--host-resolver-rules=MAP *.test 127.0.0.1",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chromium");
        // Chromium writes its port and browser path here once it listens.
        let port_file = dir.join("profile").join("DevToolsActivePort");
        let mut url = None;
        for _ in 0..600 {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                let mut lines = s.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    url = Some(format!("ws://127.0.0.1:{port}{path}"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = url.unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default();
            panic!("Chromium did not open its DevTools port within 30 s:\n{log}")
        });
        let (_, framed) = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish()
            .ws(url)
            .max_frame_size(256 << 20)
            .connect()
            .await
            .expect("connect to Chromium's DevTools");
        let (mut sink, mut stream) = framed.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let conn = Rc::new(Conn {
            out,
            next_id: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            events: RefCell::new(HashMap::new()),
        });
        actix_rt::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(ws::Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let reader = Rc::downgrade(&conn);
        actix_rt::spawn(async move {
            let mut partial = BytesMut::new();
            while let Some(Ok(frame)) = stream.next().await {
                let Some(conn) = reader.upgrade() else { break };
                match frame {
                    Frame::Text(b) => conn.dispatch(&b),
                    Frame::Continuation(Item::FirstText(b)) => {
                        partial.clear();
                        partial.extend_from_slice(&b);
                    }
                    Frame::Continuation(Item::Continue(b)) => partial.extend_from_slice(&b),
                    Frame::Continuation(Item::Last(b)) => {
                        partial.extend_from_slice(&b);
                        conn.dispatch(&partial);
                        partial.clear();
                    }
                    Frame::Close(_) => break,
                    _ => {}
                }
            }
            // Whoever still waits learns the connection is gone.
            if let Some(conn) = reader.upgrade() {
                conn.waiting.borrow_mut().clear();
            }
        });
        let version = conn.call(None, "Browser.getVersion", json!({})).await;
        Browser {
            child,
            dir,
            user_agent: version["userAgent"].as_str().unwrap_or("").to_string(),
            conn,
        }
    }

    /// Calls a browser-level DevTools method; returns the string `field` of
    /// its answer.
    async fn call_for(&self, method: &str, params: Value, field: &str) -> String {
        let answer = self.conn.call(None, method, params).await;
        answer[field]
            .as_str()
            .unwrap_or_else(|| panic!("{method}: no {field} in {answer}"))
            .to_string()
    }

    /// A new tab in a new browser context (its own cookies).
    pub async fn tab(&self) -> Tab {
        let ctx = self
            .call_for("Target.createBrowserContext", json!({}), "browserContextId")
            .await;
        let blank = json!({"url": "about:blank", "browserContextId": ctx});
        let target = self
            .call_for("Target.createTarget", blank, "targetId")
            .await;
        let attach = json!({"targetId": target, "flatten": true});
        let session = self
            .call_for("Target.attachToTarget", attach, "sessionId")
            .await;
        let tab = Tab {
            conn: self.conn.clone(),
            session,
            user_agent: self.user_agent.clone(),
        };
        tab.call("Page.enable", json!({})).await;
        tab.call("Runtime.enable", json!({})).await;
        tab.viewport(1280, 800, false).await;
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Helpers available to every expression a test evaluates in a page: find
/// controls the way a person (or a screen reader) names them.
const PRELUDE: &str = r#"
const $ = (s, r) => (r || document).querySelector(s);
const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
const nameOf = (el) => (el.getAttribute('aria-label') || el.textContent || '').trim();
const button = (n, r) => $$('button', r).find((b) => nameOf(b) === n) || null;
const link = (n, r) => $$('a', r).find((a) => nameOf(a) === n) || null;
const field = (n) => { const l = $$('label').find((l) => l.textContent.trim() === n); return l ? l.control : null; };
const chat = () => $('[role=log]');
const messages = () => $$('[data-id]', chat());
const texts = () => messages().map((m) => $('.text', m).textContent);
const messageWith = (t) => messages().find((m) => $('.text', m).textContent === t) || null;
"#;

/// A page in its own browser context.
pub struct Tab {
    conn: Rc<Conn>,
    session: String,
    user_agent: String,
}

impl Tab {
    /// Sends a DevTools command to this page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.conn.call(Some(&self.session), method, params).await
    }

    /// Runs `body` as an async function with the helper prelude in scope
    /// (its promise awaited, its value returned by value); the whole
    /// `Runtime.evaluate` reply.
    async fn evaluate(&self, body: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({
                "expression": format!("(async () => {{ {PRELUDE}\n{body} }})()"),
                "awaitPromise": true,
                "returnByValue": true,
            }),
        )
        .await
    }

    /// Evaluates `expr` (with the helper prelude in scope; promises awaited) and
    /// returns its value; panics on a JavaScript exception.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self.evaluate(&format!("return ({expr});")).await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating `{expr}` threw: {e}");
        }
        r["result"].get("value").cloned().unwrap_or(Value::Null)
    }

    /// Runs JavaScript statements (with the helper prelude in scope), for
    /// what a test does to the page rather than asks of it; panics on a
    /// JavaScript exception.
    pub async fn run(&self, statements: &str) {
        self.eval(&format!("(() => {{ {statements} }})()")).await;
    }

    /// Waits until `expr` is truthy; returns its value. Panics after `PAGE_WAIT`
    /// saying what was awaited and what the page showed.
    pub async fn wait_for(&self, expr: &str) -> Value {
        self.wait_for_within(expr, PAGE_WAIT).await
    }

    /// [`Tab::wait_for`] with a limit.
    pub async fn wait_for_within(&self, expr: &str, limit: Duration) -> Value {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let v = self
                .evaluate(&format!(
                    "try {{ return ({expr}); }} catch (e) {{ return null; }}"
                ))
                .await["result"]
                .get("value")
                .cloned()
                .unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() >= until {
                // What the page shows, and why a video on it failed, if one did.
                let page = self
                    .eval("location.href + '\\n' + (document.body ? document.body.innerText.slice(0, 3000) : '') \
                           + Array.from(document.querySelectorAll('video')).filter((v) => v.error) \
                               .map((v) => '\\nvideo error ' + v.error.code + ': ' + v.error.message + ' at ' + v.currentTime + ' s').join('')")
                    .await;
                panic!(
                    "waited {limit:?} for `{expr}`; the page shows:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Navigates and waits until the new document has loaded.
    pub async fn goto(&self, url: &str) {
        self.mark().await;
        let r = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(e) = r.get("errorText") {
            panic!("navigating to {url}: {e}");
        }
        self.wait_loaded().await;
    }

    /// Marks the current document, so [`Tab::wait_loaded`] can tell it was replaced.
    pub async fn mark(&self) {
        self.eval("window.__old_document = true").await;
    }

    /// Waits until the marked document was replaced by a loaded one.
    pub async fn wait_loaded(&self) {
        self.wait_for("!window.__old_document && document.readyState === 'complete'")
            .await;
    }

    /// Clicks the centre of the element `target` evaluates to, with real mouse events.
    pub async fn click(&self, target: &str) {
        let rect = self
            .wait_for(&format!(
                "(() => {{ const el = {target}; if (!el) return null; el.scrollIntoView({{block: 'center'}}); \
                 const r = el.getBoundingClientRect(); return r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()"
            ))
            .await;
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        for (kind, count) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 1)] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": if kind == "mousePressed" { 1 } else { 0 }, "clickCount": count}),
            )
            .await;
        }
    }

    /// Clicks `target` and waits for the page it leads to.
    pub async fn click_and_wait(&self, target: &str) {
        self.mark().await;
        self.click(target).await;
        self.wait_loaded().await;
    }

    /// Focuses the element `target` evaluates to and types `text` into it.
    pub async fn type_into(&self, target: &str, text: &str) {
        self.wait_for(&format!(
            "(() => {{ const el = {target}; if (!el) return false; el.focus(); return document.activeElement === el; }})()"
        ))
        .await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Sets the field labelled `label` to `value`, replacing what it holds,
    /// and fires `input` on it as typing would.
    pub async fn fill(&self, label: &str, value: &str) {
        self.run(&format!(
            "const b = field({}); b.value = {}; b.dispatchEvent(new Event('input'));",
            json!(label),
            json!(value)
        ))
        .await;
    }

    /// Presses a key (`Enter`, `Tab`...) in the focused element.
    pub async fn press(&self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Tab" => (9, ""),
            _ => (0, ""),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut p =
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code});
            if kind == "keyDown" && !text.is_empty() {
                p["text"] = text.into();
            }
            self.call("Input.dispatchKeyEvent", p).await;
        }
    }

    /// Sets the viewport (CSS pixels); `mobile` emulates a phone.
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Sends `Accept-Language: <lang>` from now on.
    pub async fn accept_language(&self, lang: &str) {
        self.call(
            "Emulation.setUserAgentOverride",
            json!({"userAgent": self.user_agent, "acceptLanguage": lang}),
        )
        .await;
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// JavaScript dialogs and uncaught exceptions this page has had.
    pub fn incidents(&self) -> Vec<Value> {
        self.conn
            .events
            .borrow()
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }

    /// Logs in through the login form at `base` and waits for the next page.
    pub async fn log_in(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.type_into("field('Username')", username).await;
        self.type_into("field('Password')", password).await;
        self.click_and_wait("button('Log in')").await;
        self.wait_for(&format!(
            "document.querySelector('.who') && document.querySelector('.who').textContent === {}",
            json!(username)
        ))
        .await;
    }
}

/// `http://<tenant host>:<port>`: the address a browser uses for the test tenant.
pub fn site(app: &crate::helpers::TestApp) -> String {
    let port = app.address.rsplit(':').next().unwrap();
    format!("http://{}:{port}", app.tenant.host)
}

impl Tab {
    /// Opens the watch page of `stream` and waits until its socket is live.
    pub async fn watch(&self, app: &crate::helpers::TestApp, stream: i64) {
        self.goto(&format!("{}/streams/{stream}", site(app))).await;
        self.wait_for("$('#conn').dataset.state === 'live'").await;
    }

    /// Types a message in the box labelled "Message" and presses "Send".
    pub async fn say(&self, text: &str) {
        self.type_into("field('Message')", text).await;
        self.click("button('Send')").await;
    }
}

impl Browser {
    /// One tab a user, each logged in (password `password-123`) at `app`'s
    /// site, in order.
    pub async fn tabs_logged_in<const N: usize>(
        &self,
        app: &crate::helpers::TestApp,
        users: [&str; N],
    ) -> [Tab; N] {
        let mut tabs = Vec::new();
        for user in users {
            let tab = self.tab().await;
            tab.log_in(&site(app), user, "password-123").await;
            tabs.push(tab);
        }
        tabs.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// A new browser and its tabs, one a user, each logged in (password
    /// `password-123`) at `app`'s site, in order.
    pub async fn logged_in<const N: usize>(
        app: &crate::helpers::TestApp,
        users: [&str; N],
    ) -> (Browser, [Tab; N]) {
        let browser = Browser::start().await;
        let tabs = browser.tabs_logged_in(app, users).await;
        (browser, tabs)
    }

    /// One tab a user, each logged in (password `password-123`) and
    /// watching `stream`.
    pub async fn watching<const N: usize>(
        &self,
        app: &crate::helpers::TestApp,
        stream: i64,
        users: [&str; N],
    ) -> [Tab; N] {
        let tabs = self.tabs_logged_in(app, users).await;
        for tab in &tabs {
            tab.watch(app, stream).await;
        }
        tabs
    }

    /// A stream of user `owner` with each `(name, role)` created (password
    /// `password-123`), and a new browser in which each of them watches it
    /// in a tab of its own: the stream, the browser and the tabs in order.
    pub async fn watching_new_stream<const N: usize>(
        app: &crate::helpers::TestApp,
        who: [(&str, stampede::domain::Role); N],
    ) -> (i64, Browser, [Tab; N]) {
        let stream = app.stream_with_accounts(&who).await;
        let browser = Browser::start().await;
        let tabs = browser
            .watching(app, stream, who.map(|(name, _)| name))
            .await;
        (stream, browser, tabs)
    }
}

/// `test-artifacts/<name>` at the crate's root (git-ignored).
pub fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-artifacts")
        .join(name)
}

/// Decodes standard base64 (DevTools screenshots).
fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("AAECAw=="), [0, 1, 2, 3]);
}
