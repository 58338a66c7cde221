//! Running the worker behind a connection pooler (PgBouncer).
//!
//! A pooler changes two things the worker relies on:
//!
//! - **Session settings.** The worker's limits and planner settings travel in the startup
//!   packet's `options`, which PgBouncer refuses ("unsupported startup parameter: options")
//!   unless told to ignore them, and then they never reach the server. In session pooling they
//!   are set once per connection with `SET` instead; in transaction pooling a session setting
//!   would land on whichever server the next transaction gets, so every worker statement runs
//!   in its own transaction that starts with `SET LOCAL` for each setting.
//! - **Prepared statements.** In transaction pooling a named statement prepared in one
//!   transaction is unknown to the server the next one gets (`prepared statement "sN" does not
//!   exist`; PgBouncer only tracks them itself from 1.21 on, and only when configured). So there
//!   the worker sends each statement unnamed, with its parameter types, in one round trip: the
//!   `BEGIN; SET LOCAL …`, the statement and the `COMMIT` are pipelined, so the statement costs
//!   one round trip as before, and the server parses and plans it every time. The parameter
//!   types are asked once per statement text, inside a transaction that closes what it
//!   prepared. Without a pooler nothing changes: prepared statements and startup options.
//!
//! The mode is given (`--pooler`) or detected (see [`detect`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Config, Row};

use super::DbError;

/// One statement parameter.
pub type Param<'a> = &'a (dyn ToSql + Sync);

/// What sits between the worker and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooler {
    /// Find out when the worker starts (see README, Behind a connection pooler).
    Detect,
    /// A direct connection: settings in the startup packet, prepared statements.
    None,
    /// A pooler in session mode: settings with `SET` once per connection.
    Session,
    /// A pooler in transaction mode: `SET LOCAL` and unnamed statements, no LISTEN.
    Transaction,
}

impl Pooler {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooler::Detect => "detect",
            Pooler::None => "none",
            Pooler::Session => "session",
            Pooler::Transaction => "transaction",
        }
    }
}

/// What transaction pooling needs of the worker's statements; set once, when the pool is built.
struct Pooling {
    /// The `SET LOCAL` statements every worker transaction starts with.
    prelude: String,
    /// Where parameter types are asked (see [`types_of`]), and the answer deadline there.
    config: Config,
    answer_limit: Option<Duration>,
}

static TRANSACTION_POOLING: OnceLock<Pooling> = OnceLock::new();

/// The `SET LOCAL` statements every worker transaction starts with in transaction pooling,
/// `None` otherwise.
fn prelude() -> Option<&'static str> {
    TRANSACTION_POOLING.get().map(|p| p.prelude.as_str())
}

/// Sends the worker's statements as transaction pooling requires, with these settings, the
/// pool's connections made with `config`.
pub(super) fn use_transaction_pooling(
    settings: &[(String, String)],
    config: &Config,
    answer_limit: Option<Duration>,
) {
    let _ = TRANSACTION_POOLING.set(Pooling {
        prelude: set_statements(settings, true),
        config: config.clone(),
        answer_limit,
    });
}

/// `SET` (or `SET LOCAL`) statements for `settings`, values quoted as literals.
pub(super) fn set_statements(settings: &[(String, String)], local: bool) -> String {
    let scope = if local { "SET LOCAL" } else { "SET" };
    settings
        .iter()
        .map(|(name, value)| format!("{scope} {name} = '{}';", value.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `-c name=value` settings of a startup `options` string, in order (later ones win when
/// they are applied in order, as in the startup packet). Names other than plain identifiers
/// are left out: they could not have been meant as settings.
pub(super) fn settings_of(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next().unwrap_or_default(),
            other => other
                .strip_prefix("-c")
                .unwrap_or(other)
                .trim_start_matches('-'),
        };
        if let Some((name, value)) = setting.split_once('=') {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if plain {
                out.push((name.to_string(), value.to_string()));
            }
        }
    }
    out
}

/// Parameter types of statements already asked, by statement text.
static TYPES: Mutex<Option<HashMap<String, Vec<Type>>>> = Mutex::new(None);

/// The parameter types of `sql`, asked once per process: prepared and closed inside a
/// transaction, so the statement never outlives the server connection the pooler lent, on a
/// connection of its own, so no other statement can slip into that transaction.
async fn types_of(sql: &str) -> Result<Vec<Type>, DbError> {
    if let Some(types) = TYPES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(sql)
    {
        return Ok(types.clone());
    }
    let Some(pooling) = TRANSACTION_POOLING.get() else {
        return Ok(Vec::new());
    };
    let client = super::connect::connect_within(&pooling.config, pooling.answer_limit).await?;
    // Parsing takes locks on the tables named: the worker's lock and statement timeouts apply.
    client.batch_execute(&begin_with(&pooling.prelude)).await?;
    let described = client.prepare(sql).await;
    // Dropping the statement sends its Close before the ROLLBACK below.
    let types = described.map(|statement| statement.params().to_vec());
    client.batch_execute("ROLLBACK").await?;
    let types = types?;
    TYPES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(sql.to_string(), types.clone());
    Ok(types)
}

/// Runs `sql` unnamed in a transaction of its own that starts with `prelude`, all pipelined;
/// returns its rows and how many rows it changed.
async fn unprepared(
    client: &tokio_postgres::Client,
    prelude: &str,
    sql: &str,
    params: &[Param<'_>],
) -> Result<(Vec<Row>, u64), DbError> {
    let types = types_of(sql).await?;
    let typed: Vec<(Param<'_>, Type)> = params.iter().copied().zip(types).collect();
    let begin = client.batch_execute(prelude);
    let run = async {
        let stream = client.query_typed_raw(sql, typed).await?;
        pin_mut!(stream);
        let mut rows = Vec::new();
        while let Some(row) = stream.try_next().await? {
            rows.push(row);
        }
        let changed = stream.rows_affected().unwrap_or(rows.len() as u64);
        Ok::<_, tokio_postgres::Error>((rows, changed))
    };
    // Each request is sent when its future is first polled, and join3 polls them in order: the
    // three go out together and are answered in order. A failed statement turns the COMMIT
    // into a rollback.
    let commit = client.batch_execute("COMMIT");
    let (begun, ran, committed) = futures_util::future::join3(begin, run, commit).await;
    begun?;
    let out = ran?;
    committed?;
    Ok(out)
}

/// Runs a worker statement and returns its rows: prepared (and cached) on a direct connection
/// or in session pooling, unnamed in its own transaction in transaction pooling.
pub async fn query(
    client: &ClientWrapper,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Row>, DbError> {
    match prelude() {
        None => {
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, params).await?)
        }
        Some(prelude) => Ok(unprepared(client, &begin_with(prelude), sql, params)
            .await?
            .0),
    }
}

/// Like [`query`], for a statement that returns exactly one row.
pub async fn query_one(
    client: &ClientWrapper,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Row, DbError> {
    match prelude() {
        None => {
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query_one(&statement, params).await?)
        }
        Some(prelude) => {
            let (rows, _) = unprepared(client, &begin_with(prelude), sql, params).await?;
            match rows.into_iter().next() {
                Some(row) => Ok(row),
                // The same error query_one gives.
                None => Ok(client.query_typed_one("SELECT 1 WHERE false", &[]).await?),
            }
        }
    }
}

/// Like [`query`]; returns how many rows the statement changed.
pub async fn execute(
    client: &ClientWrapper,
    sql: &str,
    params: &[Param<'_>],
) -> Result<u64, DbError> {
    match prelude() {
        None => {
            let statement = client.prepare_cached(sql).await?;
            Ok(client.execute(&statement, params).await?)
        }
        Some(prelude) => Ok(unprepared(client, &begin_with(prelude), sql, params)
            .await?
            .1),
    }
}

fn begin_with(prelude: &str) -> String {
    format!("BEGIN; {prelude}")
}

/// Opens a transaction for several worker statements ([`in_transaction`]), with the worker's
/// settings applied to it in transaction pooling.
pub async fn begin(
    client: &mut ClientWrapper,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if let Some(prelude) = prelude() {
        tx.batch_execute(prelude).await?;
    }
    Ok(tx)
}

/// Runs a statement inside a transaction from [`begin`]; returns its rows.
pub async fn in_transaction(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if prelude().is_none() {
        let statement = tx.prepare_cached(sql).await?;
        return tx.query(&statement, params).await;
    }
    // Inside a transaction the server stays the same: the types can be asked right here.
    let types = tx.prepare(sql).await?.params().to_vec();
    let typed: Vec<(Param<'_>, Type)> = params.iter().copied().zip(types).collect();
    tx.query_typed(sql, &typed).await
}

/// Finds out what is between the worker and the database, with the worker's settings in
/// `worker` (its startup `options`) and the URL as given in `bare`.
///
/// Behavioural, because a pooler does not announce itself to clients (PgBouncer answers `SHOW`
/// only on its admin database): two connections ask in turn which server process answers them.
/// Through a transaction pooler a server is lent per transaction, and an idle one is lent
/// again at once (PgBouncer reuses the most recently used server by default): the two
/// connections see the same process, or one connection sees two. Directly or through a session
/// pooler each connection keeps its own. Then, whether the startup options arrive: refused
/// ("unsupported startup parameter") or silently dropped (`ignore_startup_parameters`), they
/// mean a session pooler. A transaction pooler set to lend servers round robin under load can
/// escape the first check; `--pooler transaction` says it outright.
pub async fn detect(worker: &Config, bare: &Config) -> Result<Pooler, DbError> {
    let first = super::connect(bare).await?;
    let second = super::connect(bare).await?;
    let mut seen = Vec::new();
    for client in [&first, &second, &first, &second] {
        let pid: i32 = client
            .query_typed_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        seen.push(pid);
    }
    if seen[0] == seen[1] || seen[0] != seen[2] || seen[1] != seen[3] {
        return Ok(Pooler::Transaction);
    }
    drop((first, second));
    let with_options = match super::connect(worker).await {
        Ok(client) => client,
        Err(e) if e.to_string().contains("unsupported startup parameter") => {
            return Ok(Pooler::Session)
        }
        Err(e) => return Err(e),
    };
    // The worker's planner settings always end its options (see `worker_session`).
    let plans: String = with_options
        .query_typed_one("SELECT current_setting('plan_cache_mode')", &[])
        .await?
        .get(0);
    Ok(if plans == "force_generic_plan" {
        Pooler::None
    } else {
        Pooler::Session
    })
}

/// How long [`detect`] may take: a few connections and short questions.
pub fn detect_limit(config: &Config) -> Duration {
    super::connect::limit(config) + Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_become_set_local_statements() {
        let settings = settings_of(
            "-c statement_timeout=10s -clock_timeout=5s --jit=off -c x'y=1 -c a.b=it's",
        );
        assert_eq!(
            set_statements(&settings, true),
            "SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '5s'; \
             SET LOCAL jit = 'off'; SET LOCAL a.b = 'it''s';"
        );
        assert_eq!(
            set_statements(&settings[..1], false),
            "SET statement_timeout = '10s';"
        );
    }
}
