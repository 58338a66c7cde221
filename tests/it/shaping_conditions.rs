//! Conditional tracking: `track_table(…, columns, condition)` and `hookrelay track --columns
//! --condition`: updates sent only when watched columns change, rows only when a condition
//! holds; both follow column renames, and bad ones are refused with nothing written.

use crate::model_events::{bodies, drain, setup};
use crate::support::{hookrelay, TestDb};

fn run(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = hookrelay(db, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each delivered body as `event key=value` for `key`, in arrival order sorted.
fn summary(receiver: &crate::support::Receiver, key: &str) -> Vec<String> {
    let mut out: Vec<String> = bodies(receiver, None)
        .iter()
        .map(|b| {
            format!(
                "{} {}={}",
                b["event"].as_str().unwrap(),
                key,
                b["object"][key]
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn watched_columns_gate_updates_and_follow_renames() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric, note text)",
        )
        .await
        .unwrap();
    let (ok, stdout, stderr) = run(
        &db,
        &[
            "track",
            "orders",
            "--events",
            "updated",
            "--columns",
            "status,total",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("updates sent only when status or total changed"),
        "{stdout}"
    );
    db.client
        .batch_execute(
            "INSERT INTO orders VALUES (1, 'NEW', 10, 'a');
             UPDATE orders SET note = 'b';                 -- not watched: nothing
             UPDATE orders SET total = 20, note = 'c';     -- watched: sent
             ALTER TABLE orders RENAME COLUMN status TO state;
             UPDATE orders SET note = 'd';                 -- still nothing
             UPDATE orders SET state = 'PAID';             -- the renamed column is still watched",
        )
        .await
        .unwrap();
    drain(&db).await;
    assert_eq!(
        summary(&receiver, "note"),
        [r#"updated note="c""#, r#"updated note="d""#]
    );
    let (_, stdout, _) = run(&db, &["track", "--list"]);
    assert!(
        stdout.contains("updates sent only when state or total changed"),
        "{stdout}"
    );
    let columns: Vec<String> = db
        .client
        .query_one("SELECT columns FROM hookrelay.tracked_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, ["state", "total"]);
}

/// Reinstalled from what is stored (as migrations reinstall), and re-tracked with the
/// condition as `shown`: the stored condition stays what is shown.
async fn reinstall_and_retrack(db: &TestDb, shown: &str) {
    db.client
        .batch_execute(
            "SELECT hookrelay.install_tracking(t) FROM hookrelay.tracking t;
             INSERT INTO orders VALUES (5, 'PENDING', 1), (6, 'PAID', 2);",
        )
        .await
        .unwrap();
    let (ok, _, stderr) = run(
        db,
        &[
            "track",
            "orders",
            "--events",
            "created,updated",
            "--condition",
            shown,
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(condition(db).await, shown);
}

#[tokio::test]
async fn a_condition_decides_which_rows_emit_and_follows_renames() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric);
             SELECT hookrelay.track_table('orders', '{created,updated}',
                                          condition => 'NEW.status = ''PAID''');",
        )
        .await
        .unwrap();
    db.client
        .batch_execute(
            "INSERT INTO orders VALUES (1, 'PENDING', 10), (2, 'PAID', 20);
             UPDATE orders SET status = 'PAID' WHERE id = 1;
             UPDATE orders SET total = 30 WHERE id = 1;
             ALTER TABLE orders RENAME COLUMN status TO state;
             INSERT INTO orders VALUES (3, 'PENDING', 5), (4, 'PAID', 6);",
        )
        .await
        .unwrap();
    drain(&db).await;
    assert_eq!(
        summary(&receiver, "id"),
        [
            "created id=2",
            "created id=4",
            "updated id=1",
            "updated id=1"
        ]
    );
    // Shown, and reused, with the column's new name.
    let shown = "(new.state = 'PAID'::text)";
    let (_, stdout, _) = run(&db, &["track", "--list"]);
    assert!(
        stdout.contains(&format!("only rows where {shown}")),
        "{stdout}"
    );
    assert_eq!(condition(&db).await, shown);
    // Both still hold after a reinstall and a re-track, by the new name.
    reinstall_and_retrack(&db, shown).await;
    db.client
        .batch_execute("INSERT INTO orders VALUES (7, 'PENDING', 1), (8, 'PAID', 2)")
        .await
        .unwrap();
    drain(&db).await;
    assert_eq!(
        summary(&receiver, "id"),
        [
            "created id=2",
            "created id=4",
            "created id=6",
            "created id=8",
            "updated id=1",
            "updated id=1"
        ]
    );
}

/// The condition `tracked_tables` shows for the one tracked table.
async fn condition(db: &TestDb) -> String {
    db.client
        .query_one("SELECT condition FROM hookrelay.tracked_tables", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn bad_conditions_and_columns_are_refused_with_nothing_written() {
    let db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric)")
        .await
        .unwrap();
    for (extra, wanted) in [
        (vec!["--condition", "NEW.nope = 1"], "nope"),
        (vec!["--condition", "NEW.total +"], "syntax error"),
        (vec!["--condition", "NEW.total"], "must be type boolean"),
        (
            vec!["--condition", "OLD.status = 'PAID'"],
            "cannot reference OLD",
        ),
        (
            vec!["--columns", "status,nope"],
            "has no column nope to watch",
        ),
        (
            vec!["--columns", "status", "--exclude", "status"],
            "both excluded and watched",
        ),
    ] {
        let mut args = vec!["track", "orders"];
        args.extend_from_slice(&extra);
        let (ok, _, stderr) = run(&db, &args);
        assert!(!ok, "{extra:?} accepted");
        assert!(stderr.contains(wanted), "{extra:?}: {stderr}");
        if extra[0] == "--condition" {
            assert!(stderr.contains("is refused: "), "{stderr}");
            assert!(
                stderr.contains("hint: a condition is a boolean SQL expression"),
                "{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.tracked_tables")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass")
            .await,
        0
    );
}
