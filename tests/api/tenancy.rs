//! Tenant resolution from Host, and isolation of tenants through a shared pool.

use crate::helpers::*;
use stampede::domain::{Role, Username};

#[actix_web::test]
async fn host_selects_tenant_port_and_case_ignored() {
    let app = spawn_app().await;
    let host = format!("{}:8000", app.tenant.host.to_uppercase());
    assert_eq!(app.get_on(&host, "/healthz", None).await.status, 200);
    let r = app.get_on(&host, "/api/session", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["user"].is_null());
}

#[actix_web::test]
async fn unknown_host_is_404_naming_no_tenant() {
    let app = spawn_app().await;
    for path in ["/", "/api/session", "/streams/1"] {
        let r = app.get_on("nobody.example.com", path, None).await;
        assert_eq!(r.status, 404, "{path}");
        let ct = r.headers.get("content-type").unwrap().to_str().unwrap();
        assert!(ct.starts_with("text/plain"), "{ct}");
        assert!(!r.body.contains(app.tenant.slug.as_str()));
        assert!(r.body.len() < 100);
    }
}

#[actix_web::test]
async fn added_and_deleted_domains_reach_a_running_node() {
    let app = spawn_app().await;
    let extra = format!("extra-{}.test", random_hex(8));
    // Warm the negative cache first: the change must still arrive within 5 s.
    assert_eq!(app.get_on(&extra, "/api/session", None).await.status, 404);
    app.store
        .add_domain(&app.tenant.slug, &extra)
        .await
        .unwrap();
    let limit = std::time::Duration::from_secs(6);
    let answers = |status: u16| {
        let (app, extra) = (&app, &extra);
        move || async move {
            (app.get_on(extra, "/api/session", None).await.status == status).then_some(())
        }
    };
    eventually("the new domain resolves", limit, answers(200)).await;
    app.store.delete_tenant(&app.tenant.slug).await.unwrap();
    eventually(
        "the deleted tenant is no longer served",
        limit,
        answers(404),
    )
    .await;
}

/// Interleaved queries for two tenants through a pool of ONE connection never
/// see each other's rows, including after a statement that fails mid-transaction.
#[actix_web::test]
async fn pool_of_one_never_mixes_tenants() {
    let setup = store_for(&database_url(), 2);
    let a = create_tenant(&setup).await;
    let b = create_tenant(&setup).await;
    let store = store_for(&database_url(), 1);
    for (t, name) in [(&a, "only_in_a"), (&b, "only_in_b")] {
        store
            .create_user(&t.slug, &Username::parse(name).unwrap(), "x", Role::Viewer)
            .await
            .unwrap()
            .unwrap();
    }
    for round in 0..5 {
        for (t, name, there) in [
            (&a, "only_in_a", true),
            (&a, "only_in_b", false),
            (&b, "only_in_b", true),
            (&b, "only_in_a", false),
        ] {
            let found = store.user_by_name(&t.slug, name).await.unwrap();
            assert_eq!(found.is_some(), there, "{name} in {}", t.slug.as_str());
        }
        // A transaction on tenant A that sets its path and then fails halfway.
        {
            let mut client = store.client().await.unwrap();
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(&format!("SET LOCAL search_path TO {}", a.slug.schema()))
                .await
                .unwrap();
            let err = tx
                .batch_execute("INSERT INTO accounts_user (username, password_hash) VALUES ('only_in_a', 'dup')")
                .await;
            assert!(err.is_err(), "round {round}: duplicate must fail");
            // Dropped without commit: rolled back, path gone with it.
        }
        // An unqualified query on the same (only) connection sees no tenant table.
        let client = store.client().await.unwrap();
        let path: String = client
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            !path.contains(a.slug.as_str()),
            "search_path leaked: {path}"
        );
        let unqualified = client
            .query("SELECT username FROM accounts_user", &[])
            .await;
        assert!(
            unqualified.is_err(),
            "an unqualified tenant table must not resolve"
        );
        drop(client);
        assert!(store
            .user_by_name(&b.slug, "only_in_a")
            .await
            .unwrap()
            .is_none());
    }
}
