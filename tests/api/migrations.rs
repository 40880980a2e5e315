//! The migration runner over the real binary: idempotent, resumable after a
//! kill, safe when run twice at once, strict about changed files; `serve`
//! refuses to start while migrations are pending.

use std::time::Duration;

use crate::helpers::*;

/// A fresh, empty database on the test server; returns its URL.
async fn fresh_database() -> String {
    let base = database_url();
    let name = format!(
        "stampede_test_{}_m{}",
        base.rsplit('_').next().unwrap_or("0"),
        random_hex(8)
    );
    let mut config: tokio_postgres::Config = base.parse().unwrap();
    config.dbname("postgres");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let (head, _) = base.rsplit_once('/').unwrap();
    format!("{head}/{name}")
}

fn run(url: &str, args: &[&str]) -> std::process::Output {
    stampede_on(url, args).output().unwrap()
}

async fn applied_count(url: &str) -> i64 {
    let store = store_for(url, 1);
    let c = store.client().await.unwrap();
    let mut total: i64 = c
        .query_one("SELECT count(*) FROM public.stampede_migrations", &[])
        .await
        .unwrap()
        .get(0);
    for row in c
        .query("SELECT slug FROM public.tenants", &[])
        .await
        .unwrap()
    {
        let slug: String = row.get(0);
        let n: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM \"{slug}\".stampede_migrations"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        total += n;
    }
    total
}

#[actix_web::test]
async fn migrate_is_idempotent_and_serve_refuses_pending() {
    let url = fresh_database().await;
    // Nothing applied: serve refuses with a clear message.
    let o = run(&url, &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("stampede migrate"), "{}", stderr(&o));

    let o = run(&url, &["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("applied public/0001_tenants.sql"));
    let o = run(&url, &["tenant", "create", "acme", "--domain", "acme.test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = applied_count(&url).await;
    let o = run(&url, &["migrate"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));
    assert_eq!(applied_count(&url).await, before);

    // A changed applied file is an error, for migrate and for serve.
    let store = store_for(&url, 1);
    let c = store.client().await.unwrap();
    c.execute("UPDATE acme.stampede_migrations SET checksum = 'x'", &[])
        .await
        .unwrap();
    let o = run(&url, &["migrate"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("was changed"), "{}", stderr(&o));
    let o = run(&url, &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("was changed"), "{}", stderr(&o));
}

#[actix_web::test]
async fn migrate_resumes_after_being_killed_and_tolerates_concurrency() {
    let url = fresh_database().await;
    assert!(run(&url, &["migrate"]).status.success());
    for i in 0..3 {
        assert!(run(
            &url,
            &[
                "tenant",
                "create",
                &format!("k{i}"),
                "--domain",
                &format!("k{i}.test")
            ]
        )
        .status
        .success());
    }
    // Forget the tenants' records so migrate has real work, then kill it at
    // different moments; whatever it finished must stay whole.
    let store = store_for(&url, 1);
    let c = store.client().await.unwrap();
    for i in 0..3 {
        c.batch_execute(&format!("DROP SCHEMA k{i} CASCADE; CREATE SCHEMA k{i};"))
            .await
            .unwrap();
    }
    for delay_ms in [5u64, 30, 60, 120] {
        let mut child = stampede_on(&url, &["migrate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The moment of the kill is what the test varies.
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Two runs at once both succeed and leave everything applied once.
    let a = std::thread::spawn({
        let url = url.clone();
        move || run(&url, &["migrate"])
    });
    let b = run(&url, &["migrate"]);
    let a = a.join().unwrap();
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let expected = (stampede::store::migrations::PUBLIC.len()
        + 3 * stampede::store::migrations::TENANT.len()) as i64;
    assert_eq!(applied_count(&url).await, expected);
    for i in 0..3 {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM k{i}.chat_chatstamp"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 6);
    }
    let o = run(&url, &["migrate"]);
    assert!(stdout(&o).contains("up to date"));
}
