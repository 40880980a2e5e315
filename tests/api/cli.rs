//! The `stampede` binary: tenants, users, streams, analyst grants; errors are one
//! line on stderr with a non-zero exit, and nothing is half-created.

use crate::helpers::*;
use stampede::domain::Slug;

/// Whether `sql` (`SELECT 1 … WHERE … = $1`) finds a row for `name`.
async fn row_exists(sql: &str, name: &str) -> bool {
    let store = store_for(&database_url(), 1);
    let c = store.client().await.unwrap();
    c.query_opt(sql, &[&name]).await.unwrap().is_some()
}

async fn schema_exists(name: &str) -> bool {
    row_exists("SELECT 1 FROM pg_namespace WHERE nspname = $1", name).await
}

async fn tenant_row_exists(slug: &str) -> bool {
    row_exists("SELECT 1 FROM public.tenants WHERE slug = $1", slug).await
}

/// `stampede tenant create <slug> --domain <a fresh domain>`, then `more`.
fn tenant_create(slug: &str, more: &[&str]) -> std::process::Output {
    let domain = format!("{}.test", random_hex(10));
    let mut args = vec!["tenant", "create", slug, "--domain", &domain];
    args.extend_from_slice(more);
    cli(&args, &[])
}

fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

#[actix_web::test]
async fn tenant_create_list_configure_delete() {
    let slug = unique_slug();
    let host = format!("{}.example.test", slug.replace('_', "-"));
    let o = cli(
        &[
            "tenant", "create", &slug, "--domain", &host, "--name", "Acme TV",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(schema_exists(&slug).await);
    // Six stamps seeded with ids 1-6.
    let store = store_for(&database_url(), 1);
    let c = store.client().await.unwrap();
    let rows = c
        .query(
            &format!("SELECT id, name FROM \"{slug}\".chat_chatstamp ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let stamps: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        stamps,
        vec![
            (1, ":smile:".into()),
            (2, ":surprise:".into()),
            (3, ":cry:".into()),
            (4, ":love:".into()),
            (5, ":scream:".into()),
            (6, ":angry:".into())
        ]
    );
    drop(c);

    let list = stdout(&cli(&["tenant", "list"], &[]));
    let line = list.lines().find(|l| l.starts_with(&slug)).expect("listed");
    assert!(line.contains(&host) && line.contains("Acme TV"), "{line}");

    let o = cli(
        &["tenant", "configure", &slug, "--anonymous-viewers", "false"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let t = store
        .tenant_by_slug(&Slug::parse(&slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!t.anonymous_viewers);
    assert!(t.signup);

    let o = cli(&["tenant", "delete", &slug], &[]);
    assert_one_line_error(&o, "--yes");
    assert!(schema_exists(&slug).await);
    let o = cli(&["tenant", "delete", &slug, "--yes"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!schema_exists(&slug).await);
    assert!(!tenant_row_exists(&slug).await);
}

#[actix_web::test]
async fn bad_slugs_are_refused_and_create_nothing() {
    let long = format!("a{}", "b".repeat(48));
    for bad in [
        "Acme", "a;drop", "pg_x", &long, "äcme", "public", "1abc", "a b",
    ] {
        let o = tenant_create(bad, &[]);
        assert_one_line_error(&o, "invalid slug");
        assert!(!tenant_row_exists(bad).await, "{bad}");
        if bad != "public" {
            assert!(!schema_exists(bad).await, "{bad}");
        }
    }
    let o = cli(&["tenant", "create", "Acme!", "--domain", "x.test"], &[]);
    assert_one_line_error(&o, "invalid slug \"Acme!\": use a-z, 0-9 and _");
}

#[actix_web::test]
async fn duplicate_tenant_and_domain_are_refused_whole() {
    let slug = unique_slug();
    let host = format!("{}.test", random_hex(10));
    assert!(cli(&["tenant", "create", &slug, "--domain", &host], &[])
        .status
        .success());
    let o = tenant_create(&slug, &[]);
    assert_one_line_error(&o, &format!("tenant \"{slug}\" already exists"));

    // A second tenant asking for a taken domain: nothing of it is created.
    let other = unique_slug();
    let o = tenant_create(&other, &["--domain", &host]);
    assert_one_line_error(&o, "already belongs to a tenant");
    assert!(!tenant_row_exists(&other).await);
    assert!(!schema_exists(&other).await);

    let o = cli(
        &[
            "tenant",
            "add-domain",
            &other,
            &format!("{}.test", random_hex(10)),
        ],
        &[],
    );
    assert_one_line_error(&o, "does not exist");
    let second = unique_slug();
    assert!(tenant_create(&second, &[]).status.success());
    let o = cli(
        &["tenant", "add-domain", &second, &host.to_uppercase()],
        &[],
    );
    assert_one_line_error(&o, "already belongs to a tenant");
    let o = cli(&["tenant", "add-domain", &second, "http://x.test/"], &[]);
    assert_one_line_error(&o, "invalid domain");
}

#[actix_web::test]
async fn users_and_streams() {
    let slug = unique_slug();
    assert!(tenant_create(&slug, &[]).status.success());
    // No password given and no terminal: refused.
    let o = cli(
        &[
            "user", "create", "--tenant", &slug, "sam", "--role", "streamer",
        ],
        &[],
    );
    assert_one_line_error(&o, "STAMPEDE_PASSWORD");
    let o = cli(
        &["user", "create", "--tenant", &slug, "sam", "--role", "root"],
        &[("STAMPEDE_PASSWORD", "long enough")],
    );
    assert_one_line_error(&o, "invalid role");
    let o = cli(
        &[
            "user", "create", "--tenant", &slug, "sam", "--role", "streamer",
        ],
        &[("STAMPEDE_PASSWORD", "short")],
    );
    assert_one_line_error(&o, "invalid password");
    let o = cli(
        &[
            "user", "create", "--tenant", &slug, "sam", "--role", "streamer",
        ],
        &[("STAMPEDE_PASSWORD", "long enough")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (tenant, error) in [
        (slug.as_str(), "already exists"),
        ("t_nope_nope", "does not exist"),
    ] {
        let o = cli(
            &[
                "user", "create", "--tenant", tenant, "sam", "--role", "viewer",
            ],
            &[("STAMPEDE_PASSWORD", "long enough")],
        );
        assert_one_line_error(&o, error);
    }

    let o = cli(
        &[
            "stream",
            "create",
            "--tenant",
            &slug,
            "--owner",
            "sam",
            "--title",
            "First <live>",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id: i64 = stdout(&o).trim().parse().expect("the id alone on stdout");
    let store = store_for(&database_url(), 1);
    let s = store
        .stream(&Slug::parse(&slug).unwrap(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.title, "First <live>");
    assert_eq!(s.owner, "sam");
    let o = cli(
        &[
            "stream", "create", "--tenant", &slug, "--owner", "ghost", "--title", "x",
        ],
        &[],
    );
    assert_one_line_error(&o, "does not exist");
}

/// An analyst role reads its tenant's schema, writes nothing, and cannot read
/// another tenant's tables, session keys or password hashes.
#[actix_web::test]
async fn analyst_grant_is_read_only_and_scoped() {
    let store = store_for(&database_url(), 1);
    let a = create_tenant(&store).await;
    let b = create_tenant(&store).await;
    let role = format!("analyst_{}", random_hex(8));
    let o = cli(
        &["analyst", "grant", "--tenant", a.slug.as_str(), &role],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Granting again is fine (the role exists).
    assert!(cli(
        &["analyst", "grant", "--tenant", a.slug.as_str(), &role],
        &[]
    )
    .status
    .success());
    let o = cli(
        &["analyst", "grant", "--tenant", a.slug.as_str(), "Bad\"Role"],
        &[],
    );
    assert_one_line_error(&o, "invalid role name");

    let mut client = store.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE \"{role}\""))
        .await
        .unwrap();
    let sa = a.slug.schema();
    let sb = b.slug.schema();
    for ok in [
        format!("SELECT count(*) FROM {sa}.streaming_streamreaction"),
        format!("SELECT count(*) FROM {sa}.streaming_reaction_minute"),
        format!("SELECT count(*) FROM {sa}.chat_chatstamp"),
        format!("SELECT username, role FROM {sa}.accounts_user"),
    ] {
        tx.batch_execute(&format!("SAVEPOINT s; {ok}; RELEASE SAVEPOINT s"))
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for denied in [
        format!("SELECT count(*) FROM {sb}.streaming_streamreaction"),
        format!("SELECT count(*) FROM {sb}.accounts_user"),
        format!("SELECT password_hash FROM {sa}.accounts_user"),
        format!("SELECT key_hash FROM {sa}.accounts_session"),
        format!("INSERT INTO {sa}.chat_chatstamp VALUES (99, ':x:', '/x')"),
        format!("DELETE FROM {sa}.chat_chatstamp"),
        "SELECT count(*) FROM public.tenants".to_string(),
    ] {
        tx.batch_execute("SAVEPOINT s").await.unwrap();
        let e = tx.batch_execute(&denied).await.expect_err(&denied);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{denied}: {e}"
        );
        tx.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    }
}
