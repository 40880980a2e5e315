//! Settings: `config.toml` first, then `STAMPEDE_<SECTION>_<KEY>` environment
//! variables on top, then command-line flags. Unknown keys (in the file or in an
//! environment variable naming a known section) are an error naming the key.

use std::{net::IpAddr, path::Path};

use serde::{Deserialize, Serialize};

/// Every setting of a node. Each section mirrors a table of `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener, cookies, origins, keep-alive of sockets.
    pub server: ServerSettings,
    /// PostgreSQL connection and pool.
    pub database: DatabaseSettings,
    /// Redis relay between nodes (empty URL: single node).
    pub redis: RedisSettings,
    /// Chat behaviour.
    pub chat: ChatSettings,
    /// Rate limits, caps and queue sizes.
    pub limits: LimitSettings,
    /// Reaction coalescing.
    pub reactions: ReactionSettings,
    /// Login sessions.
    pub session: SessionSettings,
    /// Webhook delivery.
    pub webhooks: WebhookSettings,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// Number of HTTP worker threads, and of room threads (0 = one per core).
    pub workers: usize,
    /// Whole origins (`https://app.example.com`) allowed on WebSocket handshakes
    /// in addition to each tenant's own domains.
    pub allowed_origins: Vec<String>,
    /// The node terminates TLS itself (sets `Secure` cookies and HSTS).
    pub tls: bool,
    /// Set `Secure` on cookies (behind a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// Seconds between server pings on each socket.
    pub ping_interval_secs: u64,
    /// Seconds without a pong after which a socket is closed (1001).
    pub pong_timeout_secs: u64,
    /// Seconds allowed for graceful shutdown.
    pub shutdown_timeout_secs: u64,
    /// Peers whose `X-Forwarded-For` is believed: addresses (`10.0.0.5`) or
    /// CIDR ranges (`10.0.0.0/8`, `fd00::/8`); anything else is an error.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send each request's head, the first and every
    /// later one on a keep-alive connection (slow clients are dropped); also how
    /// long an idle keep-alive connection stays open.
    pub request_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            workers: 0,
            allowed_origins: Vec::new(),
            tls: false,
            secure_cookies: false,
            ping_interval_secs: 15,
            pong_timeout_secs: 45,
            shutdown_timeout_secs: 25,
            trusted_proxies: Vec::new(),
            request_timeout_secs: 10,
        }
    }
}

/// `[database]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// libpq-style URL, e.g. `postgres://postgres@127.0.0.1:5432/stampede`.
    pub url: String,
    /// Connections in the pool of each node.
    pub pool_size: usize,
    /// Seconds to wait for a pooled connection (or a new one) before `unavailable`.
    pub connect_timeout_secs: u64,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("DatabaseSettings")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/stampede".into(),
            pool_size: 16,
            connect_timeout_secs: 3,
        }
    }
}

/// `[redis]`
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://127.0.0.1:6379`, or `rediss://` for TLS; empty means a single
    /// node with an in-process relay.
    pub url: String,
    /// Prefix of every channel and key this cluster uses.
    pub prefix: String,
    /// PEM file of the CA(s) that sign a `rediss://` server's certificate, in
    /// place of the system's roots (empty: the system's).
    pub ca_file: String,
    /// `url` names a node of a Redis Cluster (7 or later): rooms are relayed
    /// with sharded pub/sub over every shard (see `relay::sharded`).
    pub cluster: bool,
}

impl RedisSettings {
    /// The prefix in use: `prefix`, or `stampede` when it is empty.
    pub fn channel_prefix(&self) -> String {
        if self.prefix.is_empty() {
            "stampede".to_string()
        } else {
            self.prefix.clone()
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &if self.url.is_empty() { "" } else { "<set>" })
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// `[chat]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Send `join`/`leave` frames (never stored).
    pub announce_joins: bool,
    /// Messages kept in memory per room for history and resume.
    pub ring_size: usize,
    /// Seconds an empty room actor lingers before it stops.
    pub room_idle_secs: u64,
    /// Milliseconds the message writer waits to fill a batch. 0 (the
    /// default): no wait; a batch is what queued while the previous one was
    /// being written, so batches grow with the load and a lone message is
    /// written at once.
    pub batch_delay_ms: u64,
    /// Most messages in one write.
    pub batch_max: usize,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            announce_joins: false,
            ring_size: 500,
            room_idle_secs: 30,
            batch_delay_ms: 0,
            batch_max: 256,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Open sockets per client IP (0 = no limit).
    pub max_connections_per_ip: u32,
    /// Open sockets per user (0 = no limit).
    pub max_connections_per_user: u32,
    /// Open HTTP connections per client address, WebSockets included (0 = no
    /// limit); connections from `server.trusted_proxies` are not counted.
    pub max_http_connections_per_ip: u32,
    /// Chat messages per user per stream in `chat_period_secs`.
    pub chat_messages: u32,
    /// Period of the chat limit, seconds.
    pub chat_period_secs: u64,
    /// Chat burst.
    pub chat_burst: u32,
    /// Reactions per second per user.
    pub reactions_per_second: u32,
    /// Reaction burst.
    pub reactions_burst: u32,
    /// Failed logins (and sign-ups) per minute per client address.
    pub logins_per_minute_per_ip: u32,
    /// Failed logins per minute per client address and username (failures
    /// never refuse the right password from an address that has not failed).
    pub logins_per_minute_per_user: u32,
    /// Password hashes (Argon2id, ~19 MiB each) computed at once (0 = one per
    /// core); as many more may wait, beyond that logins and sign-ups answer 503.
    pub password_hash_concurrency: usize,
    /// Frames queued per socket before it counts as a slow consumer (4008).
    pub socket_queue: usize,
    /// Largest accepted WebSocket frame, bytes.
    pub max_frame_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_connections_per_ip: 1000,
            max_connections_per_user: 0,
            max_http_connections_per_ip: 1100,
            chat_messages: 5,
            chat_period_secs: 10,
            chat_burst: 5,
            reactions_per_second: 20,
            reactions_burst: 50,
            logins_per_minute_per_ip: 30,
            logins_per_minute_per_user: 10,
            password_hash_concurrency: 0,
            socket_queue: 256,
            max_frame_bytes: 16 * 1024,
        }
    }
}

/// `[reactions]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReactionSettings {
    /// Coalescing window, milliseconds.
    pub window_ms: u64,
}

impl Default for ReactionSettings {
    fn default() -> Self {
        Self { window_ms: 250 }
    }
}

/// `[session]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Cookie name.
    pub cookie_name: String,
    /// Hours a session lives without use.
    pub ttl_hours: u64,
    /// Seconds between checks that open sockets' sessions are still valid
    /// (expired, logged out, password changed: closed with 4001), and that
    /// their tenant still allows them (anonymous viewers, a deleted tenant).
    pub recheck_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cookie_name: "stampede_session".into(),
            ttl_hours: 24 * 14,
            recheck_secs: 30,
        }
    }
}

/// `[webhooks]`. `allow_http` and `ca_file` are meant for operators; the time keys exist
/// so tests can shrink the windows, and their defaults are the documented ones
/// (PROTOCOL.md: backoff from about 1 s, capped at 10 min, for 24 h; a 10 s
/// timeout; an endpoint without a success for 24 h is disabled).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Accept plain `http://` endpoint URLs (receivers on a private network).
    pub allow_http: bool,
    /// PEM file of CA(s) trusted for `https://` receivers, beside the public
    /// roots built in (receivers whose certificates a private CA signs).
    pub ca_file: String,
    /// Run the deliverer on this node.
    pub deliver: bool,
    /// First retry delay, milliseconds (doubled on each failure, with jitter).
    pub retry_first_ms: u64,
    /// Largest retry delay, seconds.
    pub retry_max_secs: u64,
    /// Seconds after which an undelivered event is given up.
    pub give_up_secs: u64,
    /// Seconds without a success after which a failing endpoint is disabled.
    pub disable_after_secs: u64,
    /// Seconds a receiver has to answer.
    pub timeout_secs: u64,
    /// Milliseconds between scans for due deliveries.
    pub poll_ms: u64,
    /// Endpoints delivered to at once by this node.
    pub concurrency: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_http: false,
            ca_file: String::new(),
            deliver: true,
            retry_first_ms: 1000,
            retry_max_secs: 600,
            give_up_secs: 24 * 3600,
            disable_after_secs: 24 * 3600,
            timeout_secs: 10,
            poll_ms: 200,
            concurrency: 16,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Loads `path` (a missing file is an error only when `required`), then
    /// applies every `STAMPEDE_<SECTION>_<KEY>` variable from `env`.
    pub fn load(
        path: &Path,
        required: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::from_toml_and_env(&text, env)
    }

    /// Parses TOML text and applies environment overrides on top of it.
    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid(format!("config: {}", e.message())))?;
        // Start from the defaults so every key has a known type for env parsing.
        let mut merged = toml::Table::try_from(Settings::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (section, value) in file {
            let Some(target) = merged.get_mut(&section).and_then(|v| v.as_table_mut()) else {
                return Err(ConfigError::Invalid(format!(
                    "config: unknown section [{section}]"
                )));
            };
            let toml::Value::Table(table) = value else {
                return Err(ConfigError::Invalid(format!(
                    "config: {section} must be a table"
                )));
            };
            for (key, value) in table {
                if !target.contains_key(&key) {
                    return Err(ConfigError::Invalid(format!(
                        "config: unknown key {section}.{key}"
                    )));
                }
                target.insert(key, value);
            }
        }
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("STAMPEDE_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                continue;
            };
            // Only variables naming a known section are settings
            // (STAMPEDE_PASSWORD and friends are not).
            let Some(table) = merged.get_mut(section).and_then(|v| v.as_table_mut()) else {
                continue;
            };
            let Some(current) = table.get(key) else {
                return Err(ConfigError::Invalid(format!(
                    "environment: {name} names unknown key {section}.{key}"
                )));
            };
            let value = parse_like(current, &raw).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "environment: {name}={raw:?} is not a valid {}",
                    current.type_str()
                ))
            })?;
            table.insert(key.to_string(), value);
        }
        let settings = toml::Value::Table(merged)
            .try_into::<Settings>()
            .map_err(|e| ConfigError::Invalid(format!("config: {}", e.message())))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what the types alone do not: every `server.trusted_proxies`
    /// entry is an address or a range, and a Redis Cluster has a URL and a
    /// prefix without braces (they would change its channels' hash tags).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.trusted_proxy_ranges()?;
        if self.redis.cluster {
            if self.redis.url.is_empty() {
                return Err(ConfigError::Invalid(
                    "config: redis.cluster needs redis.url naming a node of the cluster".into(),
                ));
            }
            if self.redis.prefix.contains(['{', '}']) {
                return Err(ConfigError::Invalid(
                    "config: redis.prefix may not contain { or } with redis.cluster".into(),
                ));
            }
        }
        Ok(())
    }
}

impl ServerSettings {
    /// `trusted_proxies` parsed; an entry that is neither an address nor a
    /// CIDR range is an error naming it.
    pub fn trusted_proxy_ranges(&self) -> Result<Vec<IpRange>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                entry.trim().parse().map_err(|()| {
                    ConfigError::Invalid(format!(
                        "config: server.trusted_proxies: {entry:?} is neither an IP address nor a CIDR range"
                    ))
                })
            })
            .collect()
    }
}

/// An IP address or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// True when `ip` is in the range (IPv4-mapped IPv6 addresses count as
    /// their IPv4).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            v4 => *v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| ())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| ())?
            }
            Some(_) => return Err(()),
        };
        if prefix > max {
            return Err(());
        }
        Ok(Self { net, prefix })
    }
}

/// Parses an environment string into a value of the same TOML type as `like`.
fn parse_like(like: &toml::Value, raw: &str) -> Option<toml::Value> {
    Some(match like {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(raw.trim().parse().ok()?),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return None,
        }),
        toml::Value::Float(_) => toml::Value::Float(raw.trim().parse().ok()?),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_with_typed_values() {
        let s = Settings::from_toml_and_env(
            "[server]\nbind = \"0.0.0.0:1\"\n[limits]\nchat_burst = 3\n",
            env(&[
                ("STAMPEDE_SERVER_BIND", "127.0.0.1:9"),
                ("STAMPEDE_REDIS_URL", "redis://x"),
                ("STAMPEDE_LIMITS_SOCKET_QUEUE", "7"),
                (
                    "STAMPEDE_SERVER_ALLOWED_ORIGINS",
                    "https://a.test, https://b.test",
                ),
                ("STAMPEDE_PASSWORD", "not a setting"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:9");
        assert_eq!(s.redis.url, "redis://x");
        assert_eq!(s.limits.socket_queue, 7);
        assert_eq!(s.limits.chat_burst, 3);
        assert_eq!(
            s.server.allowed_origins,
            vec!["https://a.test", "https://b.test"]
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Settings::from_toml_and_env("[server]\nbnid = 1\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("server.bnid"), "{e}");
        let e = Settings::from_toml_and_env("[sever]\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("[sever]"), "{e}");
        let e =
            Settings::from_toml_and_env("", env(&[("STAMPEDE_SERVER_BINDX", "1")])).unwrap_err();
        assert!(e.to_string().contains("server.bindx"), "{e}");
        let e = Settings::from_toml_and_env("", env(&[("STAMPEDE_LIMITS_SOCKET_QUEUE", "x")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("STAMPEDE_LIMITS_SOCKET_QUEUE"),
            "{e}"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let range = |s: &str| s.parse::<IpRange>();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let r = range("10.0.0.0/8").unwrap();
        assert!(r.contains(&ip("10.255.1.2")));
        assert!(r.contains(&ip("::ffff:10.1.1.1")));
        assert!(!r.contains(&ip("11.0.0.1")));
        assert!(range("0.0.0.0/0").unwrap().contains(&ip("1.2.3.4")));
        assert!(range("192.0.2.1").unwrap().contains(&ip("192.0.2.1")));
        assert!(!range("192.0.2.1").unwrap().contains(&ip("192.0.2.2")));
        let r = range("fd00::/8").unwrap();
        assert!(r.contains(&ip("fd12::1")));
        assert!(!r.contains(&ip("fe80::1")));
        for bad in [
            "",
            "proxy",
            "10.0.0.0/33",
            "10.0.0.1/",
            "::/129",
            "1.2.3.4/+8",
        ] {
            assert!(range(bad).is_err(), "{bad}");
        }
        let e = Settings::from_toml_and_env(
            "[server]\ntrusted_proxies = [\"10.0.0.1\", \"lb.internal\"]\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("lb.internal"), "{e}");
    }

    #[test]
    fn shipped_config_parses_and_sets_no_redis() {
        let text = include_str!("../config.toml");
        let s = Settings::from_toml_and_env(text, env(&[])).unwrap();
        assert!(s.redis.url.is_empty());
        assert!(!s.redis.cluster);
        assert_eq!(s.reactions.window_ms, 250);
    }

    #[test]
    fn redis_cluster_from_env_needs_a_url_and_a_plain_prefix() {
        let s = Settings::from_toml_and_env(
            "",
            env(&[
                ("STAMPEDE_REDIS_URL", "redis://10.0.0.5:7000"),
                ("STAMPEDE_REDIS_CLUSTER", "true"),
            ]),
        )
        .unwrap();
        assert!(s.redis.cluster);
        let e = Settings::from_toml_and_env("", env(&[("STAMPEDE_REDIS_CLUSTER", "true")]))
            .unwrap_err();
        assert!(e.to_string().contains("redis.url"), "{e}");
        let e = Settings::from_toml_and_env(
            "[redis]\nurl = \"redis://x\"\ncluster = true\nprefix = \"a{b}\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redis.prefix"), "{e}");
    }
}
