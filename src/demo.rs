//! What makes `stampede dev` alive: a test-pattern HLS clip made locally with
//! ffmpeg (Debian's package, installed when missing, like PostgreSQL), a few
//! messages of history, a recorded past stream to replay, and a demo bot that
//! chats now and then and taps stamps in bursts. The bot is an ordinary
//! account that logs in and talks over its own server's WebSocket, so every
//! room rule (rights, rate limits, blocked terms, ordering) applies to it as to
//! anyone.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use rand::{seq::SliceRandom, Rng};

/// The bot's chat lines (English and Japanese, like the audience).
const LINES: &[&str] = &[
    "Hello from the demo bot 👋",
    "Tap a stamp below the video, it floats up for everyone",
    "こんにちは！",
    "This clip is a test pattern made by ffmpeg on your machine",
    "Past streams replay their chat in step with the video",
    "きたー！",
    "GG",
    "Try logging in as alice in another window and say hi",
    "wwww",
    "Nice stream!",
];

/// Length of the demo clip, in seconds.
pub const CLIP_SECONDS: u32 = 60;

/// A test-pattern HLS clip of `seconds` in `dir` (`dir/index.m3u8` and its
/// segments), made with ffmpeg unless it is already there. Returns the
/// playlist's path.
pub fn test_pattern_hls(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    let playlist = dir.join("index.m3u8");
    if playlist.exists() {
        return Ok(playlist);
    }
    stampede_devenv::ensure_ffmpeg()?;
    // Made beside, then moved in place: a half-made clip is never used.
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size=640x360:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:beep_factor=4:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-profile:v",
            "baseline",
            "-g",
            "50",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
        ])
        .arg(tmp.join("seg%03d.ts"))
        .arg(tmp.join("index.m3u8"))
        .output()
        .context("cannot run ffmpeg")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move the clip to {}", dir.display()))?;
    Ok(playlist)
}

/// Where and as whom the bot talks.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// `http://127.0.0.1:PORT` of the server.
    pub base: String,
    /// The tenant's host (sent as `Host`).
    pub host: String,
    /// The bot's account.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The stream it chats in.
    pub stream_id: i64,
    /// Seconds between chat lines (a random time in this range).
    pub chat_every: (f64, f64),
    /// Seconds between bursts of stamps.
    pub burst_every: (f64, f64),
}

impl BotConfig {
    /// The demo's pace: a line every 6–15 s, a burst every 5–12 s.
    pub fn demo(
        base: String,
        host: String,
        username: String,
        password: String,
        stream_id: i64,
    ) -> Self {
        BotConfig {
            base,
            host,
            username,
            password,
            stream_id,
            chat_every: (6.0, 15.0),
            burst_every: (5.0, 12.0),
        }
    }
}

/// Logs in over HTTP; returns the session cookie (`name=value`).
async fn log_in(client: &awc::Client, cfg: &BotConfig) -> anyhow::Result<String> {
    let res = client
        .post(format!("{}/api/login", cfg.base))
        .insert_header(("Host", cfg.host.as_str()))
        .send_json(&serde_json::json!({"username": cfg.username, "password": cfg.password}))
        .await
        .map_err(|e| anyhow!("login request: {e}"))?;
    if !res.status().is_success() {
        bail!("login refused: {}", res.status());
    }
    res.headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next().map(str::to_string))
        .ok_or_else(|| anyhow!("login gave no cookie"))
}

fn pause(range: (f64, f64)) -> Duration {
    let (lo, hi) = range;
    Duration::from_secs_f64(if hi > lo {
        rand::thread_rng().gen_range(lo..hi)
    } else {
        lo
    })
}

/// One connection's life: chat and stamps until the socket closes.
async fn session(client: &awc::Client, cfg: &BotConfig, cookie: &str) -> anyhow::Result<()> {
    let url = format!(
        "{}/ws/chat/stream_{}/",
        cfg.base.replacen("http", "ws", 1),
        cfg.stream_id
    );
    let (_, mut socket) = client
        .ws(url)
        .set_header("Host", cfg.host.as_str())
        .set_header("Cookie", cookie)
        .connect()
        .await
        .map_err(|e| anyhow!("socket: {e}"))?;
    let mut stamps: Vec<i64> = Vec::new();
    // Start soon, so a page opened now sees the bot at once.
    let mut next_chat = tokio::time::Instant::now() + Duration::from_millis(800);
    let mut next_burst = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut burst_left = 0u32;
    let mut burst_stamp = 1i64;
    let mut n = 0u64;
    loop {
        let next = next_burst.min(next_chat);
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(ws::Frame::Ping(p))) => socket.send(ws::Message::Pong(p)).await?,
                Some(Ok(ws::Frame::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_slice(&t).unwrap_or_default();
                    if v["type"] == "hello" {
                        stamps = v["stamps"].as_array().map(|a| a.iter().filter_map(|s| s["stamp_id"].as_i64()).collect()).unwrap_or_default();
                        if v["can_chat"] != true {
                            bail!("the bot may not chat in stream {}", cfg.stream_id);
                        }
                    }
                }
                Some(Ok(ws::Frame::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("socket: {e}"),
            },
            _ = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                if now >= next_chat {
                    let line = LINES[(n as usize) % LINES.len()];
                    n += 1;
                    let frame = serde_json::json!({"type": "message", "message": line, "client_id": format!("bot-{}-{n}", rand::random::<u32>())});
                    socket.send(ws::Message::Text(frame.to_string().into())).await?;
                    next_chat = now + pause(cfg.chat_every);
                }
                if now >= next_burst && !stamps.is_empty() {
                    if burst_left == 0 {
                        burst_left = rand::thread_rng().gen_range(6..18);
                        burst_stamp = *stamps.choose(&mut rand::thread_rng()).unwrap_or(&1);
                    }
                    let frame = serde_json::json!({"type": "reaction", "stamp_id": burst_stamp});
                    socket.send(ws::Message::Text(frame.to_string().into())).await?;
                    burst_left -= 1;
                    // Taps a tenth of a second apart, well inside the rate limit.
                    next_burst = if burst_left > 0 { now + Duration::from_millis(100) } else { now + pause(cfg.burst_every) };
                } else if now >= next_burst {
                    next_burst = now + Duration::from_millis(500);
                }
            }
        }
    }
}

/// Runs the bot until the process ends: logs in, joins the stream's room over
/// the WebSocket, chats and taps stamps; comes back after any failure.
pub async fn run_bot(cfg: BotConfig) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut wait = Duration::from_millis(500);
    loop {
        let result = match log_in(&client, &cfg).await {
            Ok(cookie) => session(&client, &cfg, &cookie).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "demo bot: reconnecting");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// The demo's recorded past stream: (seconds into the clip, author, text).
const REPLAY_CHAT: &[(i64, &str, &str)] = &[
    (
        2,
        "streamer",
        "Welcome back! This is the replay of yesterday's stream",
    ),
    (5, "alice", "hi everyone"),
    (9, "bob", "こんばんは"),
    (14, "alice", "here it comes…"),
    (16, "bob", "WOW"),
    (17, "stampy", "きたー！"),
    (24, "mod", "Be nice in chat, please"),
    (31, "alice", "the colours!"),
    (40, "bob", "wait for it"),
    (43, "alice", "😂😂😂"),
    (52, "streamer", "Thanks for watching, see you next time"),
];

/// Bursts of reactions in the recorded stream: (second, stamp, count).
const REPLAY_BURSTS: &[(i64, i32, i64)] = &[
    (5, 1, 3),
    (15, 2, 6),
    (16, 2, 14),
    (16, 1, 5),
    (17, 4, 9),
    (31, 4, 4),
    (42, 1, 8),
    (43, 1, 12),
    (44, 5, 3),
];

/// Seeds the demo tenant once: a few messages of history in the live stream
/// `live`, its video, and a recorded past stream (with the same video) whose
/// chat and reactions replay. Returns the past stream's id.
pub async fn seed(
    store: &crate::store::Store,
    slug: &crate::store::Slug,
    live: i64,
    owner_id: i64,
    video_url: Option<&str>,
) -> anyhow::Result<Option<i64>> {
    use time::{Duration as Span, OffsetDateTime};
    let user = |name: &'static str| async move {
        Ok::<_, anyhow::Error>(store.user_by_name(slug, name).await?.map(|u| u.id))
    };
    let client = store.client().await?;
    let s = slug.schema();
    if let Some(url) = video_url {
        client
            .execute(
                &format!("UPDATE {s}.streaming_stream SET video_url = $2 WHERE id = $1 AND video_url IS NULL"),
                &[&live, &url],
            )
            .await?;
    }
    // History for the live stream, once.
    let live_stream = store.stream(slug, live).await?.context("the demo stream")?;
    let (recent, _) = store
        .recent_messages(
            slug,
            live_stream.room_id,
            1,
            crate::store::messages::HiddenShown::None,
        )
        .await?;
    if recent.is_empty() {
        let now = OffsetDateTime::now_utc();
        for (ago, who, text) in [
            (300, "streamer", "Welcome to the Stampede demo stream!"),
            (240, "alice", "hello 👋"),
            (200, "bob", "こんにちは"),
            (120, "mod", "Chat is friendly here. Have fun"),
            (60, "alice", "the stamps are cute"),
        ] {
            store
                .record_message_at(slug, live, user(who).await?, text, now - Span::seconds(ago))
                .await?;
        }
    }
    let Some(url) = video_url else {
        return Ok(None);
    };
    const TITLE: &str = "Yesterday's demo stream (replay)";
    if let Some(s) = store
        .list_streams(slug)
        .await?
        .into_iter()
        .find(|s| s.title == TITLE)
    {
        return Ok(Some(s.id));
    }
    let id = store
        .create_stream(
            slug,
            owner_id,
            TITLE,
            "A **past stream**: press play and the chat and stamps replay in step with the video.\n\
             The strip under the video shows where reactions *peaked*; choose a moment to jump there.\n\n\
             - [Stampede on the web](https://example.com/stampede)\n- Schedule: every Friday",
            Some(url),
        )
        .await?;
    let start = OffsetDateTime::now_utc() - Span::days(1);
    store
        .set_stream_times(
            slug,
            id,
            start,
            Some(start + Span::seconds(CLIP_SECONDS as i64)),
        )
        .await?;
    for (sec, who, text) in REPLAY_CHAT {
        let at =
            start + Span::seconds(*sec) + Span::milliseconds(rand::thread_rng().gen_range(0..900));
        store
            .record_message_at(slug, id, user(who).await?, text, at)
            .await?;
    }
    let tapper = user("alice").await?.context("alice")?;
    for (sec, stamp, count) in REPLAY_BURSTS {
        store
            .record_reactions_at(
                slug,
                id,
                tapper,
                *stamp,
                start + Span::seconds(*sec) + Span::milliseconds(300),
                *count,
            )
            .await?;
    }
    Ok(Some(id))
}
