//! Building and running a node: `Application::build` wires the store, tenant
//! resolution, auth and routes once (outside `HttpServer::new`'s per-worker
//! closure); `run_until_stopped` serves until SIGTERM/SIGINT and shuts down
//! gracefully. Tests and `main` build the application the same way.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_http::{error::DispatchError, HttpService, KeepAlive};
use actix_rt::net::TcpStream;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt as _};
use actix_web::{
    dev::{AppConfig, Server},
    web, App,
};
use anyhow::{bail, Context};

use crate::{
    auth::{AuthConfig, HashGate, LoginLimiter},
    config::Settings,
    metrics::Metrics,
    relay::Relay,
    rooms::Hub,
    store::{migrations, reaction_writer::ReactionWriter, writer::MessageWriter, Store},
    tenants::TenantResolver,
    web::{
        configure,
        connections::{ConnectionLimits, HeadDeadline},
        upgrade, TrustedProxies,
    },
};

/// The answer to a connection over `limits.max_http_connections_per_ip`.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Relay events waiting for the hub, at most.
const RELAY_QUEUE: usize = 16_384;

/// A bound, ready-to-run node.
pub struct Application {
    port: u16,
    server: Server,
    hub: Hub,
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects to PostgreSQL, refuses to start when TLS to PostgreSQL or to a
    /// `rediss://` Redis fails or while migrations are pending, binds
    /// `settings.server.bind` and prepares the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::open(&settings.database).await?;
        if !settings.redis.url.is_empty() {
            crate::relay::check_tls(&settings.redis).await?;
        }
        let pending = migrations::pending(&store)
            .await
            .context("cannot check migrations (is PostgreSQL reachable at database.url?)")?;
        if !pending.is_empty() {
            bail!(
                "{} migration(s) pending ({}): run `stampede migrate` first",
                pending.len(),
                pending.join(", ")
            );
        }
        let listener = TcpListener::bind(&settings.server.bind)
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        let port = listener.local_addr()?.port();

        let resolver = web::Data::new(TenantResolver::new(store.clone()));
        let secure = settings.server.tls || settings.server.secure_cookies;
        let auth = web::Data::new(AuthConfig {
            cookie_name: session_cookie_name(&settings.session.cookie_name, secure),
            secure,
            ttl: Duration::from_secs(settings.session.ttl_hours * 3600),
            hashes: HashGate::new(settings.limits.password_hash_concurrency),
        });
        let limiter = web::Data::new(LoginLimiter::new(
            settings.limits.logins_per_minute_per_ip,
            settings.limits.logins_per_minute_per_user,
        ));
        let proxies = web::Data::new(TrustedProxies(settings.server.trusted_proxy_ranges()?));
        let store_data = web::Data::new(store.clone());
        let settings_data = web::Data::new(settings.clone());
        // This node's metrics: every component that records holds them, and
        // `/metrics` renders them (another app in the process has its own).
        let metrics = Arc::new(Metrics::default());
        let metrics_data = web::Data::from(metrics.clone());
        // Each batch writer runs on a thread of its own with one connection
        // of its own, so its round trips never wait behind the sockets of a
        // broadcast (see `store::spawn_writer_thread`).
        let writer = MessageWriter::start(
            Store::for_writer(&settings.database, "messages")?,
            Duration::from_millis(settings.chat.batch_delay_ms),
            settings.chat.batch_max,
            metrics.clone(),
        )?;
        let reactions = ReactionWriter::start(
            Store::for_writer(&settings.database, "reactions")?,
            metrics.clone(),
        )?;
        let hub = Hub::new(
            store.clone(),
            writer,
            reactions,
            Arc::new(settings.clone()),
            metrics.clone(),
        );
        if !settings.redis.url.is_empty() {
            // Bounded: a node that cannot keep up slows its Redis subscriber
            // instead of growing memory (see `relay`).
            let (sink, mut incoming) = tokio::sync::mpsc::channel(RELAY_QUEUE);
            let node = crate::auth::new_token()[..12].to_string();
            let relay = Relay::redis(
                &settings.redis,
                node.clone(),
                hub.local_counts(),
                sink,
                metrics.clone(),
            )?;
            hub.set_relay(relay);
            let deliver = hub.clone();
            actix_rt::spawn(async move {
                while let Some(event) = incoming.recv().await {
                    deliver.deliver(event);
                }
            });
            // The rooms' safety net for relayed messages that never came.
            let sweep = hub.clone();
            every(crate::rooms::SWEEP_EVERY, move || {
                let hub = sweep.clone();
                async move { hub.sweep().await }
            });
            tracing::info!(
                node = %node,
                prefix = %settings.redis.prefix,
                cluster = settings.redis.cluster,
                "relaying rooms through Redis"
            );
        }
        let hub_data = web::Data::new(hub.clone());
        let transport = crate::webhooks::Transport::new(&settings.webhooks)?;
        if settings.webhooks.deliver {
            crate::webhooks::start(
                store.clone(),
                &settings.webhooks,
                transport.clone(),
                metrics.clone(),
            );
        }
        let transport_data = web::Data::new(transport);

        // After a wave of sockets has left, the memory they used goes back to
        // the system instead of staying at the peak.
        actix_rt::spawn(crate::memory::return_after_waves(metrics.clone()));

        // Idle limiter keys are pruned so their memory stays bounded.
        let prune = limiter.clone();
        every(Duration::from_secs(60), move || {
            prune.prune();
            std::future::ready(())
        });

        // Roles given or taken away in the database reach open sockets.
        let roles = hub.clone();
        every(crate::rooms::ROLES_EVERY, move || {
            let hub = roles.clone();
            async move { hub.refresh_roles().await }
        });
        // Held messages nobody reviewed within ten minutes are denied.
        let held = hub.clone();
        every(crate::rooms::HELD_EVERY, move || {
            let hub = held.clone();
            async move { hub.expire_held().await }
        });
        // Sockets whose session ended elsewhere (logout, password change, expiry),
        // and those their tenant no longer allows (anonymous viewers of a
        // tenant made private, every socket of a deleted tenant), are closed
        // with 4001, on every node, within `session.recheck_secs`.
        let recheck = hub.clone();
        let period = Duration::from_secs(settings.session.recheck_secs.max(1));
        every(period, move || {
            let hub = recheck.clone();
            async move {
                hub.recheck_sessions().await;
                hub.recheck_tenants().await;
            }
        });
        // Every ten minutes, tenant by tenant: expired sessions are deleted,
        // and held messages expired in tenants no node has had a room of
        // (those that waited twice the ten minutes: nodes with rooms of the
        // tenant expire the others, and tell their sockets).
        let purge = store.clone();
        let housekeeping = hub.clone();
        every(Duration::from_secs(600), move || {
            let store = purge.clone();
            let hub = housekeeping.clone();
            async move {
                let Ok(tenants) = store.list_tenants().await else {
                    return;
                };
                for t in tenants {
                    if let Err(e) = store.purge_expired_sessions(&t.slug).await {
                        tracing::debug!(tenant = %t.slug, error = %e, "session purge skipped");
                    }
                    hub.expire_held_of(&t.slug, 2 * crate::store::held::HOLD_FOR)
                        .await;
                }
            }
        });
        let hsts = settings.server.tls;
        let connections = ConnectionLimits::new(
            settings.limits.max_http_connections_per_ip,
            proxies.get_ref().clone(),
        );
        let app = move || {
            App::new()
                .wrap(actix_web::middleware::Condition::new(
                    hsts,
                    actix_web::middleware::DefaultHeaders::new().add((
                        "Strict-Transport-Security",
                        "max-age=31536000; includeSubDomains",
                    )),
                ))
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "same-origin")),
                )
                .app_data(store_data.clone())
                .app_data(resolver.clone())
                .app_data(auth.clone())
                .app_data(limiter.clone())
                .app_data(proxies.clone())
                .app_data(settings_data.clone())
                .app_data(hub_data.clone())
                .app_data(transport_data.clone())
                .app_data(metrics_data.clone())
                .configure(configure)
        };
        let head_timeout = Duration::from_secs(settings.server.request_timeout_secs.max(1));
        let local = listener.local_addr()?;
        let mut server = actix_server::Server::build()
            .disable_signals()
            .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        // A graceful stop closes idle keep-alive connections at once.
        let stopping = server.graceful_shutdown_signal();
        // actix-web's `HttpServer` with the stream wrapped: every request head
        // has the deadline (see `web::connections`), and connections are
        // counted per address.
        let server = server
            .listen("stampede-http", listener, move || {
                let app = app.clone();
                let connections = connections.clone();
                let stopping = stopping.clone();
                let metrics = metrics.clone();
                // The application as an HTTP service (one for requests, one
                // for WebSocket handshakes).
                let service = || {
                    map_config(
                        app()
                            .into_factory()
                            .map_err(|e: actix_web::Error| e.error_response()),
                        |_| AppConfig::default(),
                    )
                };
                let accept = fn_service(move |io: TcpStream| {
                    let connections = connections.clone();
                    let metrics = metrics.clone();
                    async move {
                        let peer = io.peer_addr().ok();
                        let Some(slot) = connections.admit(peer.map(|p| p.ip())) else {
                            // Over the cap: a short answer, then the connection closes.
                            metrics.rate_limited.inc();
                            let _ = io.try_write(TOO_MANY_CONNECTIONS);
                            return Err(DispatchError::Io(std::io::Error::other(
                                "too many connections from this address",
                            )));
                        };
                        let _ = io.set_nodelay(true);
                        Ok((HeadDeadline::new(io, head_timeout, slot), peer))
                    }
                });
                let http = HttpService::build()
                    .graceful_shutdown_signal(move || {
                        let stopping = stopping.clone();
                        async move { stopping.notified().await }
                    })
                    .keep_alive(KeepAlive::Timeout(head_timeout))
                    .client_request_timeout(head_timeout)
                    // As actix-web's `HttpServer`: a closing connection waits
                    // up to a second for the peer.
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // What a connection encodes before it writes: a page or
                    // a file goes out in 4 KiB writes, so a keep-alive
                    // connection's 8 KiB write buffer never has to grow (it
                    // would keep the grown size while the connection idles).
                    .h1_write_buffer_size(4 * 1024)
                    .local_addr(local)
                    // WebSocket handshakes leave the dispatcher: the same
                    // application answers them, and the socket is then served
                    // without the dispatcher's per-connection buffers.
                    .upgrade(upgrade::service(service()))
                    .h1(service());
                accept.and_then(http)
            })?
            .run();
        tracing::info!(port, "listening");
        Ok(Self {
            port,
            server,
            hub,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
        })
    }

    /// The port the node listens on (useful with `bind = "127.0.0.1:0"`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: stop
    /// accepting, store every accepted message, close sockets with 1012, stop.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let hub = self.hub.clone();
        let timeout = self.shutdown_timeout;
        actix_rt::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            handle.pause().await;
            let drained = tokio::time::timeout(timeout, hub.shutdown()).await.is_ok();
            // Let the close frames go out before connections are dropped.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if drained {
                handle.stop(true).await;
            } else {
                // Sockets were never closed (a message is still waiting on
                // PostgreSQL): a graceful stop would wait for them as long
                // again, so connections are dropped now and the node exits
                // within the one timeout.
                tracing::warn!("rooms did not drain in time; dropping connections");
                handle.stop(false).await;
            }
        });
        self.server.await
    }
}

/// The session cookie's name: with `Secure`, it takes the `__Host-` prefix, so
/// browsers accept it only from a secure origin with `Path=/` and no `Domain`
/// (a sibling subdomain or a plain-HTTP response cannot plant or shadow it).
pub fn session_cookie_name(configured: &str, secure: bool) -> String {
    if secure && !configured.starts_with("__Host-") {
        format!("__Host-{configured}")
    } else {
        configured.to_string()
    }
}

/// Runs `round` every `period` on the current thread for the node's life,
/// the first at once. A round that overruns (PostgreSQL busy) delays the
/// next ones rather than being made up for in a burst.
fn every<F, Fut>(period: Duration, mut round: F)
where
    F: FnMut() -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            round().await;
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
