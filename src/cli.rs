//! The `stampede` command line: `serve`, `migrate`, `tenant`, `user`, `stream`,
//! `analyst`, `token`, `webhook` and `dev` (the demo). Failures print one line on stderr naming what
//! is wrong and exit non-zero; nothing is left half-created.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{anyhow, bail};
use clap::{Args, Parser, Subcommand};

use crate::{
    auth::{
        hash_password,
        token::{new_api_token, parse_scopes},
    },
    config::Settings,
    domain::{normalize_host, Role, Slug, Username},
    startup::Application,
    store::{
        migrations,
        streams::StreamStatus,
        tenants::{Tenant, TenantConfig},
        Store,
    },
    webhooks,
};

/// Live-stream chat and reaction server.
#[derive(Parser)]
#[command(name = "stampede", version, about)]
pub struct Cli {
    /// Configuration file (settings may also come from STAMPEDE_<SECTION>_<KEY>).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket traffic.
    Serve {
        /// Address to listen on (overrides server.bind).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Bring the public schema and every tenant schema to the newest migration.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage streams.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Give analysts read-only SQL access.
    #[command(subcommand)]
    Analyst(AnalystCommand),
    /// Manage API tokens (`Authorization: Bearer stp_...`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage webhook endpoints.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Run the demo: PostgreSQL (started if needed), migrations, a demo tenant on
    /// `localhost` with accounts and a live stream, then serve.
    Dev {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
        bind: String,
        /// Do not run the demo bot that chats and taps stamps.
        #[arg(long)]
        no_bot: bool,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant: its schema, tables, stamps and domains.
    Create {
        /// Slug, also the schema name: a-z, 0-9 and _.
        slug: String,
        /// A host name that reaches the tenant (repeatable).
        #[arg(long = "domain", required = true)]
        domains: Vec<String>,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants and their domains.
    List,
    /// Add a domain to a tenant.
    AddDomain { slug: String, host: String },
    /// Change per-tenant settings.
    Configure(ConfigureArgs),
    /// Drop a tenant's schema and everything in it.
    Delete {
        slug: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
struct ConfigureArgs {
    slug: String,
    /// Anyone may watch and read chat without an account.
    #[arg(long, value_name = "true|false")]
    anonymous_viewers: Option<bool>,
    /// Visitors may create accounts.
    #[arg(long, value_name = "true|false")]
    signup: Option<bool>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (password from STAMPEDE_PASSWORD or a prompt; a bot has
    /// none and authenticates with API tokens).
    Create {
        #[arg(long)]
        tenant: String,
        username: String,
        #[arg(long, value_name = "viewer|moderator|streamer|admin|bot")]
        role: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a user; prints it once, alone on stdout.
    Create {
        #[arg(long)]
        tenant: String,
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// Comma-separated: read, chat, moderate.
        #[arg(long, value_name = "read,chat,moderate")]
        scopes: String,
        /// A label to recognise the token by.
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's tokens (never the tokens themselves).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a token: refused from the next request on.
    Revoke {
        #[arg(long)]
        tenant: String,
        /// The token's id (from `token list`).
        id: i64,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Register an endpoint; prints `<id> <secret>` on one line.
    Add {
        #[arg(long)]
        tenant: String,
        /// `https://...` (plain `http://` only with webhooks.allow_http).
        url: String,
        /// Comma-separated event types (default: all).
        #[arg(long, value_name = "message.created,stream.status,...")]
        events: Option<String>,
    },
    /// List a tenant's endpoints.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Remove an endpoint (and what is queued for it).
    Remove {
        #[arg(long)]
        tenant: String,
        /// The endpoint's id (from `webhook list`).
        id: i64,
    },
    /// Send a `ping` event to an endpoint now and print the answer.
    Test {
        #[arg(long)]
        tenant: String,
        /// The endpoint's id (from `webhook list`).
        id: i64,
    },
    /// The last attempts to an endpoint, newest first.
    Deliveries {
        #[arg(long)]
        tenant: String,
        /// The endpoint's id (from `webhook list`).
        id: i64,
    },
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Create a stream; prints its id alone on stdout.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        title: String,
    },
}

#[derive(Subcommand)]
enum AnalystCommand {
    /// Create (if missing) a NOLOGIN role that can read this tenant's schema only.
    Grant {
        #[arg(long)]
        tenant: String,
        /// PostgreSQL role name.
        role: String,
    },
}

/// Parses arguments, runs the command, and maps errors to one stderr line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. } | Command::Dev { .. });
    crate::telemetry::init(if serving { "info" } else { "warn" });
    let result = actix_rt::System::new().block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost message and its causes.
            let mut line = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !line.contains(&c) {
                    line.push_str(": ");
                    line.push_str(&c);
                }
            }
            eprintln!("error: {}", line.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn load_settings(path: Option<&Path>) -> anyhow::Result<Settings> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("config.toml"), false),
    };
    Ok(Settings::load(&path, required, std::env::vars())?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = load_settings(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { bind } => {
            if let Some(bind) = bind {
                settings.server.bind = bind;
            }
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?;
            Ok(())
        }
        Command::Migrate => {
            let store = Store::open(&settings.database).await?;
            let report = migrations::migrate_all(&store).await?;
            if report.applied.is_empty() {
                println!("migrations: up to date");
            } else {
                for m in &report.applied {
                    println!("applied {m}");
                }
            }
            Ok(())
        }
        Command::Tenant(cmd) => tenant(&Store::open(&settings.database).await?, cmd).await,
        Command::User(UserCommand::Create {
            tenant,
            username,
            role,
        }) => {
            let store = Store::open(&settings.database).await?;
            let slug = existing_tenant(&store, &tenant).await?.slug;
            let username = Username::parse(&username).map_err(|e| anyhow!(e))?;
            let role = Role::parse(&role).map_err(|e| anyhow!(e))?;
            if role == Role::Bot {
                // No password: the stored hash is not a PHC string, so nothing
                // could ever verify against it (and login refuses bots first).
                store
                    .create_user(&slug, &username, NO_PASSWORD, role)
                    .await?
                    .ok_or_else(|| anyhow!("user {username:?} already exists on tenant {slug}"))?;
            } else {
                let password = read_password()?;
                create_user(&store, &slug, &username, &password, role).await?;
            }
            println!("created user {username} ({role}) on tenant {slug}");
            Ok(())
        }
        Command::Stream(StreamCommand::Create {
            tenant,
            owner,
            title,
        }) => {
            let store = Store::open(&settings.database).await?;
            let slug = existing_tenant(&store, &tenant).await?.slug;
            let title = title.trim();
            if title.is_empty() || title.chars().count() > 200 {
                bail!("invalid title: use 1-200 characters");
            }
            let owner = store
                .user_by_name(&slug, &owner)
                .await?
                .ok_or_else(|| anyhow!("user {owner:?} does not exist on tenant {slug}"))?;
            let id = store
                .create_stream(&slug, owner.id, title, "", None)
                .await?;
            println!("{id}");
            Ok(())
        }
        Command::Analyst(AnalystCommand::Grant { tenant, role }) => {
            let store = Store::open(&settings.database).await?;
            let slug = existing_tenant(&store, &tenant).await?.slug;
            store.grant_analyst(&slug, &role).await?;
            println!("role {role} can now read schema {slug}");
            Ok(())
        }
        Command::Token(cmd) => token(&Store::open(&settings.database).await?, cmd).await,
        Command::Webhook(cmd) => {
            webhook(&Store::open(&settings.database).await?, &settings, cmd).await
        }
        Command::Dev { bind, no_bot } => dev(settings, bind, !no_bot).await,
    }
}

/// A time for listings: RFC 3339, or `never`.
/// Prints a header line (tab-separated) and one line a row, the cells separated
/// by tabs.
fn print_table<const N: usize>(header: &str, rows: impl IntoIterator<Item = [String; N]>) {
    println!("{header}");
    for row in rows {
        println!("{}", row.join("\t"));
    }
}

fn when(at: Option<time::OffsetDateTime>) -> String {
    at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "never".into())
}

async fn token(store: &Store, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            tenant,
            user,
            scopes,
            name,
        } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            let scopes = parse_scopes(&scopes).map_err(|e| anyhow!(e))?;
            let label = name.unwrap_or_default();
            let label = label.trim();
            if label.chars().count() > 100 || label.chars().any(char::is_control) {
                bail!("invalid name: use at most 100 characters, no control characters");
            }
            let owner = store
                .user_by_name(&slug, &user)
                .await?
                .filter(|u| u.is_active)
                .ok_or_else(|| anyhow!("user {user:?} does not exist on tenant {slug}"))?;
            let secret = new_api_token();
            let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            store
                .create_token(&slug, &secret, owner.id, &names, label)
                .await?;
            println!("{secret}");
            Ok(())
        }
        TokenCommand::List { tenant } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            let tokens = store.list_tokens(&slug).await?;
            print_table(
                "id\tuser\tscopes\tlabel\tcreated\tlast_used\tstate",
                tokens.into_iter().map(|t| {
                    [
                        t.id.to_string(),
                        t.username,
                        t.scopes.join(","),
                        t.label,
                        when(Some(t.created_at)),
                        when(t.last_used_at),
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                        .to_string(),
                    ]
                }),
            );
            Ok(())
        }
        TokenCommand::Revoke { tenant, id } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            if !store.revoke_token(&slug, id).await? {
                bail!("no active token {id} on tenant {slug}");
            }
            println!("revoked token {id} on tenant {slug}");
            Ok(())
        }
    }
}

async fn webhook(store: &Store, settings: &Settings, cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Add {
            tenant,
            url,
            events,
        } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            let url = webhooks::validate_url(&url, settings.webhooks.allow_http)
                .map_err(|e| anyhow!(e))?;
            let events = webhooks::parse_events(events.as_deref()).map_err(|e| anyhow!(e))?;
            let secret = webhooks::new_secret();
            let id = store
                .add_webhook(&slug, &url, &secret, events.as_deref())
                .await?;
            println!("{id} {secret}");
            Ok(())
        }
        // Like the token list: a header and one row of cells per record.
        WebhookCommand::List { tenant } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            let endpoints = store.list_webhooks(&slug).await?;
            print_table(
                "id\turl\tevents\tstate\tlast_success\tlast_failure\tpending",
                endpoints.into_iter().map(|e| {
                    [
                        e.id.to_string(),
                        e.url,
                        e.events.map_or_else(|| "all".to_string(), |v| v.join(",")),
                        e.state,
                        when(e.last_success_at),
                        when(e.last_failure_at),
                        e.pending.to_string(),
                    ]
                }),
            );
            Ok(())
        }
        WebhookCommand::Remove { tenant, id } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            if !store.remove_webhook(&slug, id).await? {
                bail!("no webhook {id} on tenant {slug}");
            }
            println!("removed webhook {id} on tenant {slug}");
            Ok(())
        }
        WebhookCommand::Test { tenant, id } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            let transport = webhooks::Transport::new(&settings.webhooks)?;
            let answer = webhooks::ping(store, &slug, id, &transport)
                .await?
                .ok_or_else(|| anyhow!("no webhook {id} on tenant {slug}"))?;
            match answer.status {
                Some(status) => {
                    println!("{status} in {} ms", answer.latency_ms);
                    let body = answer.body.trim();
                    if !body.is_empty() {
                        println!("{}", body.replace(['\n', '\r'], " "));
                    }
                    if !answer.ok() {
                        bail!("webhook {id} answered {status}");
                    }
                    Ok(())
                }
                None => bail!(
                    "webhook {id} did not answer: {}",
                    answer.error.unwrap_or_default()
                ),
            }
        }
        WebhookCommand::Deliveries { tenant, id } => {
            let slug = existing_tenant(store, &tenant).await?.slug;
            if store.webhook(&slug, id).await?.is_none() {
                bail!("no webhook {id} on tenant {slug}");
            }
            let deliveries = store.webhook_deliveries(&slug, id, 100).await?;
            print_table(
                "time\tevent_id\ttype\tattempt\tstatus\tlatency_ms",
                deliveries.into_iter().map(|d| {
                    [
                        when(Some(d.created_at)),
                        d.event_id,
                        d.event_type,
                        d.attempt.to_string(),
                        d.status_code
                            .map(|c| c.to_string())
                            .or(d.error)
                            .unwrap_or_default(),
                        d.latency_ms.to_string(),
                    ]
                }),
            );
            Ok(())
        }
    }
}

async fn existing_tenant(store: &Store, raw: &str) -> anyhow::Result<Tenant> {
    let slug = Slug::parse(raw).map_err(|e| anyhow!(e))?;
    store
        .tenant_by_slug(&slug)
        .await?
        .ok_or_else(|| anyhow!("tenant {raw:?} does not exist"))
}

fn parse_domain(raw: &str) -> anyhow::Result<String> {
    normalize_host(raw)
        .filter(|h| !raw.contains(':') || h.starts_with('['))
        .ok_or_else(|| anyhow!("invalid domain {raw:?}: give a host name without scheme or port"))
}

async fn tenant(store: &Store, cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create {
            slug,
            domains,
            name,
        } => {
            let slug = Slug::parse(&slug).map_err(|e| anyhow!(e))?;
            let domains = domains
                .iter()
                .map(|d| parse_domain(d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut unique = domains.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != domains.len() {
                bail!("a domain is given twice");
            }
            let name = name.unwrap_or_else(|| slug.to_string());
            store.create_tenant(&slug, name.trim(), &domains).await?;
            println!("created tenant {slug} ({})", domains.join(", "));
            Ok(())
        }
        TenantCommand::List => {
            for t in store.list_tenants().await? {
                println!(
                    "{}\t{}\tanonymous_viewers={}\tsignup={}\t{}",
                    t.slug,
                    t.name,
                    t.anonymous_viewers,
                    t.signup,
                    t.domains.join(",")
                );
            }
            Ok(())
        }
        TenantCommand::AddDomain { slug, host } => {
            let slug = Slug::parse(&slug).map_err(|e| anyhow!(e))?;
            let host = parse_domain(&host)?;
            store.add_domain(&slug, &host).await?;
            println!("added {host} to tenant {slug}");
            Ok(())
        }
        TenantCommand::Configure(args) => {
            let slug = Slug::parse(&args.slug).map_err(|e| anyhow!(e))?;
            if args.anonymous_viewers.is_none() && args.signup.is_none() {
                bail!("nothing to change: give --anonymous-viewers and/or --signup");
            }
            let t = store
                .configure_tenant(
                    &slug,
                    TenantConfig {
                        anonymous_viewers: args.anonymous_viewers,
                        signup: args.signup,
                    },
                )
                .await?;
            println!(
                "tenant {}: anonymous_viewers={} signup={}",
                t.slug, t.anonymous_viewers, t.signup
            );
            Ok(())
        }
        TenantCommand::Delete { slug, yes } => {
            let slug = Slug::parse(&slug).map_err(|e| anyhow!(e))?;
            if !yes {
                bail!("refusing to delete tenant {slug} without --yes");
            }
            store.delete_tenant(&slug).await?;
            println!("deleted tenant {slug}");
            Ok(())
        }
    }
}

/// The password hash of a bot: matches no password.
const NO_PASSWORD: &str = "!bot";

/// The password for `user create`: `STAMPEDE_PASSWORD`, or a prompt on a terminal.
fn read_password() -> anyhow::Result<String> {
    let password = match std::env::var("STAMPEDE_PASSWORD") {
        Ok(p) => p,
        Err(_) if std::io::stdin().is_terminal() => {
            let p = rpassword::prompt_password("Password: ")?;
            let again = rpassword::prompt_password("Password (again): ")?;
            if p != again {
                bail!("the passwords do not match");
            }
            p
        }
        Err(_) => bail!("no password: set STAMPEDE_PASSWORD or run on a terminal to be prompted"),
    };
    check_password(&password)?;
    Ok(password)
}

fn check_password(p: &str) -> anyhow::Result<()> {
    let n = p.chars().count();
    if !(8..=256).contains(&n) {
        bail!("invalid password: use 8 to 256 characters");
    }
    Ok(())
}

async fn create_user(
    store: &Store,
    slug: &Slug,
    username: &Username,
    password: &str,
    role: Role,
) -> anyhow::Result<crate::store::accounts::User> {
    let hash = hash_password(password.to_string()).await?;
    store
        .create_user(slug, username, &hash, role)
        .await?
        .ok_or_else(|| anyhow!("user {username:?} already exists on tenant {slug}"))
}

/// The tenant `dev` makes.
const DEMO_SLUG: &str = "demo";

/// The demo accounts: (username, role, password).
const DEMO_USERS: &[(&str, Role, &str)] = &[
    ("streamer", Role::Streamer, "streamer-demo"),
    ("mod", Role::Moderator, "moderator-demo"),
    ("alice", Role::Viewer, "alice-demo"),
    ("bob", Role::Viewer, "bob-demo"),
    (DEMO_BOT.0, Role::Viewer, DEMO_BOT.1),
];

/// The demo bot's account (username, password): an ordinary viewer.
const DEMO_BOT: (&str, &str) = ("stampy", "stampy-bot-demo");

async fn dev(mut settings: Settings, bind: String, bot: bool) -> anyhow::Result<()> {
    let project = std::env::current_dir()?;
    let db = crate::store::connect::PgTarget::parse(&settings.database.url)?
        .config()
        .get_dbname()
        .map(str::to_string)
        .unwrap_or_else(|| "stampede".into());
    settings.database.url =
        crate::store::provision::ensure_postgres(&settings.database.url, &db, &project).await?;
    let store = Store::open(&settings.database).await?;
    migrations::migrate_all(&store).await?;

    // The demo accounts have published passwords: never in a database that
    // holds tenants `dev` did not make (a real deployment's, say).
    let foreign: Vec<String> = store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.slug.as_str() != DEMO_SLUG)
        .map(|t| t.slug.to_string())
        .collect();
    if !foreign.is_empty() {
        bail!(
            "refusing to set up the demo: the database holds tenants `dev` did not make ({}); \
             point database.url at a database of its own",
            foreign.join(", ")
        );
    }

    let tenant = match store.tenant_by_host("localhost").await? {
        Some(t) => t,
        None => {
            let slug = Slug::parse(DEMO_SLUG).expect("valid");
            match store.tenant_by_slug(&slug).await? {
                Some(t) => {
                    store.add_domain(&slug, "localhost").await?;
                    t
                }
                None => {
                    store
                        .create_tenant(&slug, "Stampede demo", &["localhost".into()])
                        .await?
                }
            }
        }
    };
    let slug = tenant.slug.clone();
    let mut streamer_id = None;
    for (name, role, password) in DEMO_USERS {
        let username = Username::parse(name).expect("valid");
        let user = match store.user_by_name(&slug, name).await? {
            Some(u) => u,
            None => create_user(&store, &slug, &username, password, *role).await?,
        };
        if *role == Role::Streamer {
            streamer_id = Some(user.id);
        }
    }
    let streams = store.list_streams(&slug).await?;
    let stream_id = match streams.iter().find(|s| s.status != StreamStatus::Ended) {
        Some(s) => s.id,
        None => {
            let id = store
                .create_stream(
                    &slug,
                    streamer_id.expect("streamer exists"),
                    "Stampede demo stream",
                    "A live demo: chat, tap a stamp, watch it float.",
                    None,
                )
                .await?;
            store
                .set_stream_status(&slug, id, StreamStatus::Live)
                .await?;
            id
        }
    };
    let port = bind.rsplit(':').next().unwrap_or("8000");
    // The demo video: a test pattern made here, served by this process.
    let media = project.join(".stampede").join("demo-video");
    let video_url = match crate::demo::test_pattern_hls(&media, crate::demo::CLIP_SECONDS) {
        Ok(_) => {
            crate::web::media::serve_from(media);
            Some(format!("http://localhost:{port}/media/index.m3u8"))
        }
        Err(e) => {
            eprintln!("no demo video: {e:#}");
            None
        }
    };
    let replay_id = crate::demo::seed(
        &store,
        &slug,
        stream_id,
        streamer_id.expect("streamer exists"),
        video_url.as_deref(),
    )
    .await?;
    println!();
    println!("Stampede demo: tenant {slug} on http://localhost:{port}/");
    println!("  watch page:  http://localhost:{port}/streams/{stream_id}");
    if let Some(id) = replay_id {
        println!("  replay:      http://localhost:{port}/streams/{id}");
    }
    println!("  accounts (username / password):");
    for (name, role, password) in DEMO_USERS {
        println!("    {name:<9} / {password:<15} ({role})");
    }
    if bot {
        println!(
            "  {} is the demo bot: it chats and taps stamps (--no-bot turns it off)",
            DEMO_BOT.0
        );
    }
    println!();
    settings.server.bind = bind;
    let app = Application::build(settings).await?;
    if bot {
        actix_rt::spawn(crate::demo::run_bot(crate::demo::BotConfig::demo(
            format!("http://127.0.0.1:{}", app.port()),
            "localhost".into(),
            DEMO_BOT.0.into(),
            DEMO_BOT.1.into(),
            stream_id,
        )));
    }
    app.run_until_stopped().await?;
    Ok(())
}
