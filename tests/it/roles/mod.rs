//! Least privilege: the group roles of migration 0008, tested by connecting as login roles
//! granted each one. The app may only write events, a worker does its whole job and no more,
//! and an operator reads everything but secrets.

mod app;
mod operator;
mod worker;

use std::process::{Command, Output};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::support::{binary, connect, TestDb};

/// A login role granted one of hookrelay's group roles, and a URL that connects as it.
pub struct Login {
    pub name: String,
    pub url: String,
}

/// The database name of a test database (unique per test and run, so role names built from
/// it do not collide on the shared cluster).
fn database_name(db: &TestDb) -> String {
    let url = url::Url::parse(&db.url).expect("a database URL");
    url.path().trim_start_matches('/').to_string()
}

/// Creates a login role `<database>_<suffix>` with `password`, member of `group`.
pub async fn login(db: &TestDb, group: &str, suffix: &str, password: &str) -> Login {
    let name = format!("{}_{suffix}", database_name(db));
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD '{password}'; GRANT {group} TO {name};"
        ))
        .await
        .expect("create a login role");
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&name).unwrap();
    url.set_password(Some(password)).unwrap();
    Login {
        name,
        url: url.to_string(),
    }
}

/// Runs `sql`, which must fail for lack of a privilege; returns the message.
async fn refused(client: &Client, sql: &str) -> String {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} must be refused"));
    let db_err = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
    assert_eq!(
        db_err.code(),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "{sql}: {}",
        db_err.message()
    );
    db_err.message().to_string()
}

/// Runs `hookrelay ARGS` connected as `url`, logging warnings only.
fn hookrelay_as(url: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("HOOKRELAY_DATABASE_URL", url)
        .env("HOOKRELAY_LOG", "warn")
        .output()
        .expect("run hookrelay")
}

#[tokio::test]
async fn a_non_superuser_owner_migrates_and_grants_and_granting_again_changes_nothing() {
    // The group roles are made by the first migration on the server, run by a superuser here;
    // this owner, without CREATEROLE, only grants them.
    drop(TestDb::new().await);
    let db = TestDb::empty().await;
    let owner = format!("{}_owner", database_name(&db));
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN PASSWORD 'owner-password';
             GRANT CREATE ON DATABASE {db_name} TO {owner};",
            db_name = database_name(&db)
        ))
        .await
        .unwrap();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&owner).unwrap();
    let out = hookrelay_as(url.as_str(), &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner_client = connect(url.as_str()).await;
    let granted: Vec<String> = owner_client
        .query_one("SELECT hookrelay.grant_roles()", &[])
        .await
        .expect("the owner grants again")
        .get(0);
    assert_eq!(
        granted,
        ["hookrelay_app", "hookrelay_worker", "hookrelay_operator"]
    );
    owner_client
        .batch_execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('crm', 'https://crm.example.com/', 'owner-made-secret')",
        )
        .await
        .unwrap();
    let app = login(&db, "hookrelay_app", "app", "app-password").await;
    let operator = login(&db, "hookrelay_operator", "operator", "operator-password").await;
    connect(&app.url)
        .await
        .batch_execute("SELECT hookrelay.emit('order.paid')")
        .await
        .expect("the app emits into a schema owned by another role");
    let operator_client = connect(&operator.url).await;
    refused(&operator_client, "SELECT secret FROM hookrelay.endpoints").await;
    operator_client
        .batch_execute("SELECT name, url FROM hookrelay.endpoints")
        .await
        .unwrap();
}
