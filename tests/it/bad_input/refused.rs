//! Every bad command line and SQL statement is refused by name with nothing written; a
//! malformed acting user is kept raw and warned about.

use std::time::Duration;

use serde_json::json;
use tokio_postgres::{AsyncMessage, NoTls};

use super::cases_files::Configs;
use super::sql_cases::SQL_CASES;
use super::{command_line_cases, judge, state, Case};
use crate::support::{hookrelay, TestDb};

/// A connection whose server notices (warnings) are collected.
pub(crate) async fn connect_with_notices(
    url: &str,
) -> (
    tokio_postgres::Client,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let AsyncMessage::Notice(notice) = message {
                let hint = notice.hint().unwrap_or_default().to_string();
                seen.lock()
                    .unwrap()
                    .push(format!("{} {hint}", notice.message()));
            }
        }
    });
    (client, notices)
}

/// Runs each command line; returns what each printed wrong or changed in the database.
async fn command_line_failures(db: &TestDb, cases: &[Case], before: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let out = hookrelay(db, &case.args);
        failures.extend(judge(case, &out));
        let now = state(db).await;
        if now != before {
            failures.push(format!("{:?} changed the database: {now}", case.args));
        }
    }
    failures
}

/// The whole text a refused statement gave: message, detail, constraint and hint.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db_err) => format!(
            "{} {} {} {}",
            db_err.message(),
            db_err.detail().unwrap_or_default(),
            db_err.constraint().unwrap_or_default(),
            db_err.hint().unwrap_or_default()
        ),
        None => e.to_string(),
    }
}

/// Runs each SQL case; returns those accepted, those whose error does not name the problem
/// and those that changed the database.
async fn sql_failures(db: &TestDb, before: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (sql, expected) in SQL_CASES {
        match db.client.batch_execute(sql).await {
            Ok(()) => failures.push(format!("{sql}: accepted")),
            Err(e) => {
                let text = error_text(&e);
                if !text.contains(expected) {
                    failures.push(format!("{sql}: {text:?} does not name {expected:?}"));
                }
            }
        }
        if state(db).await != before {
            failures.push(format!("{sql} changed the database"));
        }
    }
    failures
}

/// A malformed acting user does not fail the application's transaction (by design): the
/// event keeps what was given as {"raw": …}, and the application is warned, by name.
async fn assert_malformed_actor_is_kept_raw_and_warned(db: &TestDb) {
    let (client, notices) = connect_with_notices(&db.url).await;
    client
        .batch_execute(
            "BEGIN; SET LOCAL hookrelay.actor = '{\"id\": oops';
             SELECT hookrelay.emit('user.login'); COMMIT;",
        )
        .await
        .unwrap();
    let actor: serde_json::Value = db
        .client
        .query_one(
            "SELECT actor FROM hookrelay.events WHERE event = 'user.login'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, json!({"raw": "{\"id\": oops"}));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let warned = notices.lock().unwrap().clone();
    assert!(
        warned
            .iter()
            .any(|n| n.contains("hookrelay.actor is not valid JSON")
                && n.contains("a bare id such as 42")),
        "{warned:?}"
    );
}

#[tokio::test]
async fn every_bad_input_is_refused_by_name_with_nothing_written() {
    let db = TestDb::new().await;
    db.endpoint("existing", "https://example.com/hooks", "existing-secret")
        .await;
    db.client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
        .await
        .unwrap();
    let before = state(&db).await;
    let configs = Configs::write();
    let cases = command_line_cases(&configs);
    let mut failures = command_line_failures(&db, &cases, &before).await;
    failures.extend(sql_failures(&db, &before).await);
    assert_malformed_actor_is_kept_raw_and_warned(&db).await;

    let tried = cases.len() + SQL_CASES.len() + 1;
    println!(
        "bad inputs tried: {tried} ({} command lines, {} SQL statements, 1 malformed actor)",
        cases.len(),
        SQL_CASES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
