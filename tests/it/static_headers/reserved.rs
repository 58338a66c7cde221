//! The reserved header names Rust and SQL share.

use crate::support::TestDb;

/// The reserved-header list lives in Rust (`deliver::RESERVED_HEADERS`, used before sending)
/// and in SQL (`hookrelay.is_reserved_header`, used by the endpoints trigger). The SQL list is
/// read back from the migrated database's function and must be the Rust one, and both must
/// answer the same for every reserved name, in any case, and for names that are not reserved.
#[tokio::test]
async fn the_reserved_header_lists_in_rust_and_sql_agree() {
    use hookrelay::pipeline::deliver::{is_reserved_header, RESERVED_HEADERS, RESERVED_PREFIXES};
    let db = TestDb::new().await;
    let definition: String = db
        .client
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE oid = 'hookrelay.is_reserved_header(text)'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // The SQL literals: exact names, and LIKE patterns 'prefix%'.
    let literals: Vec<&str> = definition.split('\'').skip(1).step_by(2).collect();
    let mut names: Vec<&str> = literals
        .iter()
        .filter(|l| !l.ends_with('%'))
        .copied()
        .collect();
    let mut prefixes: Vec<&str> = literals
        .iter()
        .filter_map(|l| l.strip_suffix('%'))
        .collect();
    let (mut rust_names, mut rust_prefixes) =
        (RESERVED_HEADERS.to_vec(), RESERVED_PREFIXES.to_vec());
    for list in [
        &mut names,
        &mut prefixes,
        &mut rust_names,
        &mut rust_prefixes,
    ] {
        list.sort_unstable();
    }
    assert_eq!(names, rust_names, "reserved names: SQL, then Rust");
    assert_eq!(prefixes, rust_prefixes, "reserved prefixes: SQL, then Rust");

    let mut candidates: Vec<String> = Vec::new();
    for name in RESERVED_HEADERS {
        candidates.extend([name.to_string(), name.to_uppercase(), format!("{name}-x")]);
    }
    for prefix in RESERVED_PREFIXES {
        candidates.extend([format!("{prefix}signature"), prefix.to_uppercase() + "Id"]);
        candidates.push(prefix.trim_end_matches('-').to_string());
    }
    candidates
        .extend(["X-Tenant", "Authorization", "Accept", "X-Webhook", "hosts"].map(String::from));
    for name in &candidates {
        let sql: bool = db
            .client
            .query_one("SELECT hookrelay.is_reserved_header($1)", &[name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sql, is_reserved_header(name), "{name}: SQL says {sql}");
    }
}
