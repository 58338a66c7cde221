//! Database connections: parsing URLs, building pools, and explaining database errors (and,
//! in [`problem`], what they mean for the operator, reported once per problem).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Config;

pub mod connect;
pub mod embedded;
pub mod pooler;
pub mod problem;
pub mod socket;
pub mod task;
pub use connect::{connect, DEFAULT_CONNECT_TIMEOUT};
pub use problem::{classify, classify_code, Alarm, Failure, Problem, Proof};
pub use task::{DbTask, Fault, Flow, Health, Retry, Step};

/// Errors from connecting to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database URL is not valid ({0}): use postgres://user:password@host:port/dbname")]
    BadUrl(String),
    #[error("could not build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("{}", pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(
        "the database did not finish connecting within {} (nothing answered, or the server \
         accepted the connection and then said nothing): check the host and port of the \
         database URL, or allow longer with --connect-timeout or the URL's \
         ?connect_timeout=SECONDS",
        crate::pipeline::retry::human_duration(*.0)
    )]
    ConnectTimeout(Duration),
    #[error("{}", explain(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// A pool's error in the user's terms: the database's own message, or which wait ran out.
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::{PoolError, TimeoutType};
    match e {
        PoolError::Backend(pg) => explain(pg),
        PoolError::Timeout(TimeoutType::Create) => {
            "the database did not answer in time when connecting: check that the server is up \
             and the database URL's host and port, or allow longer with --connect-timeout"
                .into()
        }
        PoolError::Timeout(TimeoutType::Wait) => {
            "every database connection of this process stayed busy too long: the database is \
             answering slowly (check for locks or a saturated server)"
                .into()
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            "a database connection did not answer its check before reuse".into()
        }
        PoolError::Closed => "the process is stopping".into(),
        other => format!("could not get a database connection: {other}"),
    }
}

/// Session limits for the worker's connections. Every worker statement is short (claims,
/// result batches, retention windows: milliseconds), so one that runs for 10 s is stuck, and a
/// claim that waits 5 s for a lock is better retried than left queueing behind, say, a
/// migration or an operator's long transaction. A transaction left open counts as stuck after
/// a minute. The statement timeout also sets how soon a connection that went silent is given
/// up: 5 s after it (see [`socket`]), so 15 s. A database URL's own `options` come after these
/// and win, e.g. `?options=-c%20statement_timeout%3D120s`.
pub const WORKER_SESSION: &str =
    "-c statement_timeout=10s -c lock_timeout=5s -c idle_in_transaction_session_timeout=60s";

/// Session limits for the command line's one-off connections (all but `migrate`, whose DDL
/// may rightly take long on large tables): a minute, so a command on a connection that went
/// silent ends (65 s, see [`socket`]) instead of hanging.
pub const COMMAND_SESSION: &str = "-c statement_timeout=60s";

/// A pool and the configuration it was built from (the listener opens its own connection).
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    pub config: Config,
    /// Where the LISTEN connection goes: `config` unless `--listen-database-url` gives a direct
    /// connection (behind a pooler in transaction mode, which cannot keep a LISTEN). `None`:
    /// nowhere, in transaction pooling without that URL; the worker polls.
    pub listen: Option<Config>,
    /// What is between the worker and the database (never [`pooler::Pooler::Detect`]).
    pub pooler: pooler::Pooler,
}

impl Db {
    /// The same pool, its LISTEN connection made to `url` instead (with the worker's session
    /// settings and the same connect time limit).
    pub fn listening_on(mut self, url: &str) -> Result<Db, DbError> {
        let mut listen = config_with(url, self.config.get_connect_timeout().copied())?;
        worker_session(&mut listen);
        self.listen = Some(listen);
        Ok(self)
    }
}

/// Parses a database URL and sets hookrelay's connection defaults, with the default time limit
/// for connecting when the URL sets none (see [`config_with`]).
pub fn config(url: &str) -> Result<Config, DbError> {
    config_with(url, None)
}

/// Parses a database URL and sets hookrelay's connection defaults. The time limit for
/// connecting (the whole handshake, see [`connect()`]) is the URL's own `connect_timeout` when it
/// has one, else `connect_timeout` (`--connect-timeout`), else [`DEFAULT_CONNECT_TIMEOUT`].
pub fn config_with(url: &str, connect_timeout: Option<Duration>) -> Result<Config, DbError> {
    let mut config = Config::from_str(url).map_err(|e| DbError::BadUrl(e.to_string()))?;
    if config.get_application_name().is_none() {
        config.application_name("hookrelay");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
    }
    Ok(config)
}

/// Planner settings of the worker's sessions (see [`worker_session`]).
const WORKER_PLANNING: &str = "-c enable_seqscan=off -c jit=off \
    -c plan_cache_mode=force_generic_plan -c enable_incremental_sort=off \
    -c enable_bitmapscan=off";

/// Session settings for the worker's connections.
///
/// Every worker statement is meant to go through an index (the partial indexes on pending
/// work, primary keys). Prepared statements keep the plan made when they were first run, and
/// a queue starts empty: a plan made then would scan the whole table once it has grown, on
/// every batch (measured: 420 full scans of `deliveries`, 3.6 M rows read, in a 20,000-event
/// burn-down). Turning sequential scans off makes the planner take the index whatever the
/// statistics said at the time. JIT compilation is off too: it costs far more than it saves on
/// statements this short, and the sequential-scan penalty would otherwise push their cost
/// estimates over the JIT threshold (measured: 400 ms of compiling per claim). Plans are
/// generic: with the default choice PostgreSQL re-planned the fan-out claim on every call
/// because its parameters looked worth a custom plan (measured: 0.37 ms of planning per claim,
/// a fifth of the claim), and no custom plan can do better here, since the statistics that
/// would tell the indexes apart are the ones that go stale; they are made again while the
/// tables grow (see `worker::replan`). Incremental sorts are off so that each claim's order
/// comes from its own index only (see migration 0012). Bitmap scans are off: unlike index
/// scans they never mark dead index entries, and the count of an endpoint's leases walked
/// every delivery finished within the lease period (measured: 9,406 entries read to count
/// 12 leases, on every claim).
///
/// The [`WORKER_SESSION`] time limits come first, so a database URL's own `options` can
/// change them.
pub fn worker_session(config: &mut Config) {
    with_session(config, WORKER_SESSION);
    let options = format!(
        "{} {WORKER_PLANNING}",
        config.get_options().unwrap_or_default()
    );
    config.options(&options);
}

/// Puts `session` settings before the URL's own `options`, which therefore win.
pub fn with_session(config: &mut Config, session: &str) {
    let given = config.get_options().unwrap_or_default().trim().to_string();
    let mut options = session.to_string();
    if !given.is_empty() {
        options.push(' ');
        options.push_str(&given);
    }
    config.options(&options);
}

/// Builds a pool of up to `max_size` connections for the worker, with the default time limit
/// for connecting. Connections are opened lazily.
pub fn pool(url: &str, max_size: usize) -> Result<Db, DbError> {
    pool_from(config(url)?, max_size)
}

/// Builds a pool of up to `max_size` worker connections from a parsed configuration (see
/// [`config_with`]). Connections are opened lazily, each within the configuration's time limit.
pub fn pool_from(config: Config, max_size: usize) -> Result<Db, DbError> {
    pool_behind(config, max_size, pooler::Pooler::None)
}

/// [`pool_from`] behind a pooler in the given mode (see [`pooler`]): the worker's session
/// settings leave the startup options for `SET` on each connection (session pooling) or
/// `SET LOCAL` in each transaction (transaction pooling), and the answer deadline they set is
/// kept. `Detect` is taken as `None`: detecting needs the database, see [`pooler::detect`].
pub fn pool_behind(
    mut config: Config,
    max_size: usize,
    mode: pooler::Pooler,
) -> Result<Db, DbError> {
    use pooler::Pooler;
    let bare = config.clone();
    worker_session(&mut config);
    let mut connector = connect::Connector::default();
    let settings = pooler::settings_of(config.get_options().unwrap_or_default());
    let mut listen = Some(config.clone());
    let mode = match mode {
        Pooler::Detect => Pooler::None,
        other => other,
    };
    if mode != Pooler::None {
        connector.answer_limit = socket::limit_for(&config);
        config = bare;
        listen = Some(config.clone());
    }
    if mode == Pooler::Session {
        connector.session = Some(pooler::set_statements(&settings, false));
    }
    if mode == Pooler::Transaction {
        pooler::use_transaction_pooling(&settings, &config, connector.answer_limit);
        listen = None;
    }
    let manager = Manager::from_connect(
        config.clone(),
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(connect::limit(&config)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
    Ok(Db {
        pool,
        listen,
        config,
        pooler: mode,
    })
}

/// What to do about a permission error: which of hookrelay's roles does what.
pub const PRIVILEGE_HINT: &str =
    "the database role connected lacks that privilege; hookrelay_app may emit events, \
     hookrelay_worker may run the worker, hookrelay_operator may read (never secrets) and \
     redeliver, and the schema owner may do the rest (see README, Security)";

/// A one-line description of a database error: the server's message with its detail and hint
/// when it sent them, or the client-side cause.
pub fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = db.message().to_string();
        // "Failing row contains (…)" would copy application data into logs.
        if let Some(detail) = db.detail().filter(|d| !d.starts_with("Failing row")) {
            out.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            out.push_str(&format!("; hint: {hint}"));
        } else if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
            out.push_str(&format!("; hint: {PRIVILEGE_HINT}"));
        }
        return out;
    }
    if e.is_closed() {
        if let Some(cause) = connect::recent_close_cause() {
            return format!("connection closed: {cause}");
        }
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}

/// After a failure: closes the pool's idle sessions when they cannot be trusted any more.
/// A session keeps the `default_transaction_read_only` it started with, so after a read-only
/// error only new sessions notice when writes are allowed again (or reach the new primary after
/// a failover). After a connection went silent or closed, its idle siblings were most likely
/// made over the same path: handed out one by one, each would cost the caller a full answer
/// deadline to find out, so they are all dropped at once and new ones made as needed.
pub fn forget_idle_sessions(pool: &Pool, problem: Problem) {
    if matches!(problem, Problem::ReadOnly | Problem::Unreachable) {
        pool.retain(|_, _| false);
    }
}

/// The connection string with every password in it replaced, safe to print: the URL's user
/// information (up to its last `@`, so a password with an unescaped `@` is hidden whole), a
/// `password` parameter of the URL's query, and a `password=` of the key-value form.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_keyword(url);
    };
    let rest = match (rest.split_once('@'), rest.rfind('@')) {
        (Some((userinfo, _)), Some(last)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:****{}", &rest[last..])
        }
        _ => rest.to_string(),
    };
    let redacted = match rest.split_once('?') {
        Some((before, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=****")
                    }
                    _ => param.to_string(),
                })
                .collect();
            format!("{before}?{}", params.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{redacted}")
}

/// The key-value form (`host=db password=secret`) with the password's value replaced, quoted
/// (`password='a b'`, with `\'` inside) or not.
fn redact_keyword(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    while let Some(at) = find_password_key(rest) {
        out.push_str(&rest[..at]);
        let after_key = &rest[at + "password".len()..];
        let value = after_key.trim_start().trim_start_matches('=').trim_start();
        out.push_str("password=****");
        let skipped = after_key.len() - value.len();
        let len = if let Some(quoted) = value.strip_prefix('\'') {
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + end
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &after_key[skipped + len.min(value.len())..];
    }
    out.push_str(rest);
    out
}

/// Where a `password` key starts in the key-value form: at the start or after whitespace, and
/// followed by `=`.
fn find_password_key(conninfo: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = conninfo[from..].find("password") {
        let at = from + found;
        let starts = at == 0 || conninfo[..at].ends_with(char::is_whitespace);
        let keyed = conninfo[at + "password".len()..]
            .trim_start()
            .starts_with('=');
        if starts && keyed {
            return Some(at);
        }
        from = at + "password".len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_printing() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:****@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("host=db user=x"), "host=db user=x");
        // An unescaped @ in the password: hidden whole.
        assert_eq!(
            redact_url("postgres://app:S3cr@tP@127.0.0.1:5477/shop"),
            "postgres://app:****@127.0.0.1:5477/shop"
        );
        assert_eq!(
            redact_url("postgres://app@127.0.0.1:5477/shop?password=QSECRETpw&sslmode=disable"),
            "postgres://app@127.0.0.1:5477/shop?password=****&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=127.0.0.1 port=5477 user=app password=KVSECRETpw dbname=shop"),
            "host=127.0.0.1 port=5477 user=app password=**** dbname=shop"
        );
        assert_eq!(
            redact_url("host=db password = 'a \\' b' dbname=x"),
            "host=db password=**** dbname=x"
        );
        assert_eq!(redact_url("password=x"), "password=****");
        assert_eq!(redact_url("user=password host=db"), "user=password host=db");
        for secret in ["S3cr@tP", "QSECRETpw", "KVSECRETpw", "a \\' b"] {
            for url in [
                format!("postgres://app:{secret}@db/x"),
                format!("postgres://app@db/x?password={secret}"),
                format!("host=db password='{secret}'"),
            ] {
                assert!(!redact_url(&url).contains(secret), "{url}");
            }
        }
    }

    #[test]
    fn bad_urls_name_the_fix() {
        let err = config("postgres://[nope").unwrap_err().to_string();
        assert!(err.contains("postgres://user:password@host"), "{err}");
        let ok = config("postgres://u@127.0.0.1:5/d").unwrap();
        assert_eq!(ok.get_application_name(), Some("hookrelay"));
    }

    #[test]
    fn behind_a_pooler_no_startup_options_are_sent_and_the_answer_deadline_is_kept() {
        let url = "postgres://u@127.0.0.1:5/d";
        let session = pool_behind(config(url).unwrap(), 1, pooler::Pooler::Session).unwrap();
        assert_eq!(session.config.get_options(), None);
        assert!(
            session.listen.is_some(),
            "LISTEN works through session pooling"
        );
        let direct = pool_behind(config(url).unwrap(), 1, pooler::Pooler::Detect).unwrap();
        assert_eq!(direct.pooler, pooler::Pooler::None);
        assert!(direct.config.get_options().is_some());
    }

    #[test]
    fn worker_sessions_are_time_limited_and_the_url_can_override() {
        const PLANNING: &str = WORKER_PLANNING;
        let db = pool("postgres://u@127.0.0.1:5/d", 1).unwrap();
        assert_eq!(
            db.config.get_options(),
            Some(format!("{WORKER_SESSION} {PLANNING}").as_str())
        );
        assert!(
            WORKER_SESSION.contains("statement_timeout=")
                && WORKER_SESSION.contains("lock_timeout=")
        );
        let db = pool(
            "postgres://u@127.0.0.1:5/d?options=-c%20lock_timeout%3D1s",
            1,
        )
        .unwrap();
        assert_eq!(
            db.config.get_options(),
            Some(format!("{WORKER_SESSION} -c lock_timeout=1s {PLANNING}").as_str())
        );
    }
}
