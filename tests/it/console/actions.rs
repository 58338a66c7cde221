//! The console's actions: CSRF-protected POSTs whose outcome shows on the page, and the
//! database's own refusal, in words, for a role that may not.

use std::time::Duration;

use super::{csrf, delivered_event, get, post, serve, Served};
use crate::roles::login;
use crate::support::{Receiver, TestDb};

#[tokio::test]
async fn actions_need_the_forms_token_and_say_what_they_did() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let (_, delivery) = delivered_event(&db, &receiver).await;
    let console = serve(&db.url, None).await;

    let token = redeliver_needs_the_token_from_this_site(&db, &console, delivery).await;
    disable_and_enable(&db, &console, &token).await;
    redeliver_dead_and_refuse_bad_input(&db, &console, &token).await;
}

/// A redeliver POST without the form's token, or from another site, is refused; with it,
/// the delivery is scheduled and the worker's second attempt shows. Returns the token.
async fn redeliver_needs_the_token_from_this_site(
    db: &TestDb,
    console: &Served,
    delivery: i64,
) -> String {
    let path = format!("/deliveries/{delivery}/redeliver");
    let forged = post(console, &path, &[("csrf", "guess")], &[]).await;
    assert_eq!(forged.status, 403);
    assert!(
        forged.body.contains("CSRF token is missing or stale"),
        "{}",
        forged.body
    );
    let missing = post(console, &path, &[], &[]).await;
    assert_eq!(missing.status, 403);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending'")
            .await,
        0
    );

    let page = get(console, &format!("/deliveries/{delivery}"), &[]).await;
    let token = csrf(&page.body);
    let cross = post(
        console,
        &path,
        &[("csrf", &token)],
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(
        cross.status, 403,
        "a POST from another site is refused even with the token"
    );

    let done = post(console, &path, &[("csrf", &token)], &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body
            .contains(&format!("Delivery {delivery} is scheduled again")),
        "{}",
        done.body
    );
    // The worker sends it again: a second attempt shows on the page.
    let worker = db.start_worker(db.config());
    let got = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.attempts",
            2,
            Duration::from_secs(20),
        )
        .await;
    worker.stop().await;
    assert_eq!(got, 2);
    let page = get(console, &format!("/deliveries/{delivery}"), &[]).await;
    assert!(page.body.contains("Attempts (2)"), "{}", page.body);

    token
}

/// Disabling and enabling crm say what they did, and the endpoints table follows.
async fn disable_and_enable(db: &TestDb, console: &Served, token: &str) {
    let off = post(console, "/endpoints/crm/disable", &[("csrf", token)], &[]).await;
    assert_eq!(off.status, 200);
    assert!(
        off.body
            .contains("crm is disabled; its 0 pending deliveries wait"),
        "{}",
        off.body
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE active")
            .await,
        0
    );
    let on = post(console, "/endpoints/crm/enable", &[("csrf", token)], &[]).await;
    assert!(on.body.contains("crm is enabled"), "{}", on.body);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE active")
            .await,
        1
    );
}

/// Redelivering the dead deliveries of a window says how many; a bad window or endpoint is
/// refused.
async fn redeliver_dead_and_refuse_bad_input(db: &TestDb, console: &Served, token: &str) {
    db.client
        .execute("UPDATE hookrelay.deliveries SET state = 'dead'", &[])
        .await
        .unwrap();
    let dead = post(
        console,
        "/endpoints/crm/redeliver-dead",
        &[("csrf", token), ("since", "1h")],
        &[],
    )
    .await;
    assert!(
        dead.body
            .contains("1 dead deliveries of crm created in the last 1h are scheduled again"),
        "{}",
        dead.body
    );
    let bad = post(
        console,
        "/endpoints/crm/redeliver-dead",
        &[("csrf", token), ("since", "lately")],
        &[],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("since &quot;lately&quot; is neither a duration such as 24h"),
        "{}",
        bad.body
    );
    let none = post(
        console,
        "/endpoints/nobody/disable",
        &[("csrf", token)],
        &[],
    )
    .await;
    assert_eq!(none.status, 404);
}

#[tokio::test]
async fn the_operator_role_looks_and_redelivers_and_is_refused_toggling_in_words() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let (event_id, delivery) = delivered_event(&db, &receiver).await;
    let operator = login(&db, "hookrelay_operator", "console", "console-password").await;
    let console = serve(&operator.url, None).await;
    for path in [
        "/".to_string(),
        "/endpoints".into(),
        "/endpoints/crm".into(),
        format!("/deliveries?event_id={event_id}"),
        format!("/deliveries/{delivery}"),
    ] {
        let page = get(&console, &path, &[]).await;
        assert_eq!(
            page.status, 200,
            "{path} as hookrelay_operator: {}",
            page.body
        );
    }
    let page = get(&console, "/endpoints/crm", &[]).await;
    let token = csrf(&page.body);
    let done = post(
        &console,
        &format!("/deliveries/{delivery}/redeliver"),
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending'")
            .await,
        1
    );
    let refused = post(&console, "/endpoints/crm/disable", &[("csrf", &token)], &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("Refused by the database: permission denied for table endpoints")
            && refused
                .body
                .contains("hookrelay_operator may read (never secrets) and redeliver"),
        "{}",
        refused.body
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE active")
            .await,
        1
    );
}
