//! Tracking application tables: `hookrelay.track_table` and `hookrelay.untrack_table`, called
//! as an application or operator would, with errors that name the problem and the fix.
//!
//! The work happens in SQL (`sql/0004_model_events.sql`, `0014`, `0017`): row triggers that write `created`,
//! `updated` and `deleted` events in the application's own transaction.

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Row};

use crate::db::explain;

/// Errors from tracking commands.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(
        "no table {0}: give it as schema.table, with mixed-case or unusual names quoted as in \
         SQL, e.g. 'store.\"Order\"'"
    )]
    NoTable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// What to track, as given on the command line. `None` and empty lists take the defaults of
/// `hookrelay.track_table`.
#[derive(Debug, Clone, Default)]
pub struct TrackRequest {
    /// A table name as SQL would read it: `orders`, `store."Order"`.
    pub table: String,
    /// Of created, updated, deleted, truncated (default: the first three).
    pub events: Option<Vec<String>>,
    pub exclude_columns: Vec<String>,
    pub account_column: Option<String>,
    pub model: Option<String>,
    /// Columns whose changes alone send no `updated` event (still sent in `object`).
    pub ignore_columns: Vec<String>,
    /// Only an update that changes one of these columns is sent (empty: any column).
    pub columns: Vec<String>,
    /// A boolean SQL expression over `OLD`/`NEW`, as in a trigger's WHEN clause.
    pub condition: Option<String>,
    /// The column whose value is the events' ordering key (`None`: the row's own key).
    pub ordering_key: Option<String>,
}

/// A tracked table, as `hookrelay.tracked_tables` records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracked {
    pub table: String,
    pub model: String,
    pub events: Vec<String>,
    pub exclude_columns: Vec<String>,
    pub account_column: Option<String>,
    pub key_columns: Vec<String>,
    /// Columns whose changes alone send no `updated` event, by their current names.
    pub ignore_columns: Vec<String>,
    /// Only updates changing one of these columns are sent, by their current names.
    pub columns: Vec<String>,
    /// The condition rows must meet, as given.
    pub condition: Option<String>,
    /// The column whose value orders the events, by its current name.
    pub ordering_key: Option<String>,
    /// What is wrong with the tracking (its columns changed in a way it cannot follow), if
    /// anything: hookrelay then refuses the table's writes or reads columns by name.
    pub problem: Option<String>,
}

/// Column names are the current ones: the view resolves them from column numbers, so they
/// follow renames.
const COLUMNS: &str = "tbl::text AS tbl, model, events, exclude_columns, account_column, \
                       key_columns, ignore_columns, problem, columns, condition, ordering_key";

fn tracked(row: &Row) -> Result<Tracked, tokio_postgres::Error> {
    Ok(Tracked {
        table: row.try_get("tbl")?,
        model: row.try_get("model")?,
        events: row.try_get("events")?,
        exclude_columns: row.try_get("exclude_columns")?,
        account_column: row.try_get("account_column")?,
        key_columns: row.try_get("key_columns")?,
        ignore_columns: row.try_get("ignore_columns")?,
        problem: row.try_get("problem")?,
        columns: row.try_get("columns")?,
        condition: row.try_get("condition")?,
        ordering_key: row.try_get("ordering_key")?,
    })
}

/// Turns an error from track_table or untrack_table into one that says what to do.
fn classify(e: tokio_postgres::Error, table: &str) -> TrackError {
    let Some(code) = e.code() else {
        return TrackError::Db(e);
    };
    if code == &SqlState::UNDEFINED_TABLE
        || code == &SqlState::INVALID_SCHEMA_NAME
        || code == &SqlState::INVALID_NAME
    {
        TrackError::NoTable(table.to_string())
    } else if code == &SqlState::INSUFFICIENT_PRIVILEGE {
        TrackError::Invalid(format!(
            "{}: tracking installs triggers, so it must run as the table's owner",
            explain(&e)
        ))
    } else if [
        SqlState::INVALID_PARAMETER_VALUE,
        SqlState::UNDEFINED_COLUMN,
        SqlState::WRONG_OBJECT_TYPE,
        SqlState::NULL_VALUE_NOT_ALLOWED,
    ]
    .contains(code)
    {
        TrackError::Invalid(explain(&e))
    } else {
        TrackError::Db(e)
    }
}

/// Tracks a table, or changes how it is tracked (every setting is replaced).
pub async fn track(
    client: &impl GenericClient,
    request: &TrackRequest,
) -> Result<Tracked, TrackError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM hookrelay.track_table($1::text::regclass, $2, $3, $4, $5, \
         ignore_columns => $6, columns => $7, condition => $8, ordering_key => $9)"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &request.table,
                &request.events,
                &request.exclude_columns,
                &request.account_column,
                &request.model,
                &request.ignore_columns,
                &request.columns,
                &request.condition,
                &request.ordering_key,
            ],
        )
        .await
        .map_err(|e| classify(e, &request.table))?;
    Ok(tracked(&row)?)
}

/// Stops tracking a table. Returns false when it was not tracked.
pub async fn untrack(client: &impl GenericClient, table: &str) -> Result<bool, TrackError> {
    let row = client
        .query_one(
            "SELECT hookrelay.untrack_table($1::text::regclass)",
            &[&table],
        )
        .await
        .map_err(|e| classify(e, table))?;
    Ok(row.try_get(0)?)
}

/// Every tracked table, by name.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Tracked>, TrackError> {
    let sql = format!("SELECT {COLUMNS} FROM hookrelay.tracked_tables ORDER BY tbl::text");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(tracked).collect::<Result<_, _>>()?)
}

/// One line describing how a table is tracked, for people.
pub fn describe(t: &Tracked) -> String {
    let mut out = format!(
        "{} as model {}: events {}",
        t.table,
        t.model,
        t.events.join(", ")
    );
    if !t.exclude_columns.is_empty() {
        out.push_str(&format!("; excluding {}", t.exclude_columns.join(", ")));
    }
    if !t.ignore_columns.is_empty() {
        out.push_str(&format!(
            "; no update sent when only {} changed",
            t.ignore_columns.join(", ")
        ));
    }
    if !t.columns.is_empty() {
        out.push_str(&format!(
            "; updates sent only when {} changed",
            t.columns.join(" or ")
        ));
    }
    if let Some(condition) = &t.condition {
        out.push_str(&format!("; only rows where {condition}"));
    }
    if let Some(column) = &t.account_column {
        out.push_str(&format!("; account from {column}"));
    }
    if let Some(column) = &t.ordering_key {
        out.push_str(&format!("; ordering key from {column}"));
    }
    match t.key_columns.as_slice() {
        [] => out.push_str("; no primary key, so object_id is null"),
        [key] => out.push_str(&format!("; object_id from {key}")),
        keys => out.push_str(&format!("; object_id is [{}] as JSON", keys.join(", "))),
    }
    if t.events.iter().any(|e| e == "deleted") && !t.events.iter().any(|e| e == "truncated") {
        out.push_str("; TRUNCATE refused");
    }
    if let Some(problem) = &t.problem {
        out.push_str(&format!("; PROBLEM: {problem}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Tracked {
        Tracked {
            table: "store.\"Order\"".into(),
            model: "store.Order".into(),
            events: vec!["created".into(), "updated".into(), "deleted".into()],
            exclude_columns: vec![],
            account_column: None,
            key_columns: vec!["id".into()],
            ignore_columns: vec![],
            columns: vec![],
            condition: None,
            ordering_key: None,
            problem: None,
        }
    }

    #[test]
    fn descriptions_say_how_a_table_is_tracked() {
        assert_eq!(
            describe(&orders()),
            "store.\"Order\" as model store.Order: events created, updated, deleted; \
             object_id from id; TRUNCATE refused"
        );
        let t = Tracked {
            events: vec!["created".into(), "truncated".into()],
            exclude_columns: vec!["note".into(), "secret".into()],
            account_column: Some("account".into()),
            key_columns: vec!["a".into(), "b".into()],
            ..orders()
        };
        assert_eq!(
            describe(&t),
            "store.\"Order\" as model store.Order: events created, truncated; excluding note, \
             secret; account from account; object_id is [a, b] as JSON"
        );
        let t = Tracked {
            key_columns: vec![],
            events: vec!["updated".into()],
            ..orders()
        };
        assert!(describe(&t).ends_with("no primary key, so object_id is null"));
        let t = Tracked {
            ignore_columns: vec!["lock_version".into(), "updated_at".into()],
            ..orders()
        };
        assert!(
            describe(&t).contains("; no update sent when only lock_version, updated_at changed;"),
            "{}",
            describe(&t)
        );
        let t = Tracked {
            columns: vec!["status".into(), "total".into()],
            condition: Some("NEW.status = 'PAID'".into()),
            ..orders()
        };
        assert!(
            describe(&t).contains(
                "; updates sent only when status or total changed; only rows where \
                 NEW.status = 'PAID';"
            ),
            "{}",
            describe(&t)
        );
    }
}
