//! Opening connections: one time limit over the whole of connecting and starting the session,
//! and the server's notices and warnings shown to the user.
//!
//! tokio-postgres's `connect_timeout` bounds only the TCP connect: a server (or a proxy, or a
//! half-open tunnel) that accepts the socket and then says nothing would hold the command, the
//! worker's start and its pool forever. Every connection hookrelay opens (the CLI's, the
//! listener's, the pool's) goes through [`open`] or [`Connector`], which bound the whole
//! handshake by the same limit.
//!
//! The driver that runs each connection also reads the server's asynchronous messages: a
//! `WARNING` (say, "could not create role … lacks CREATEROLE" during `migrate`) is logged at
//! warn level with its hint, and a `NOTICE` at info level, each once per process. Left to
//! tokio-postgres they would be logged at its own info level, which the routine filters hide
//! with its connection noise.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::DbError as ServerMessage;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Notification};

use super::socket::{self, Watched};
use super::DbError;

/// How long connecting and starting a session may take when the URL says nothing
/// (`?connect_timeout=N`) and `--connect-timeout` is not given. A server on the same network
/// answers in milliseconds; a few seconds leave room for a busy one and for TLS, and still
/// report a silent one before a supervisor's start timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that is open and whose messages are not yet read.
pub type Opened = (Client, Connection<Watched, NoTlsStream>);

/// The time limit for connecting with `config`: its `connect_timeout`, which [`super::config`]
/// always sets.
pub fn limit(config: &Config) -> Duration {
    config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

/// Connects and starts a session within [`limit`], on a socket that fails a request left
/// unanswered past the session's statement timeout (see [`socket`]).
pub async fn open(config: &Config) -> Result<Opened, DbError> {
    open_within(config, socket::limit_for(config)).await
}

/// [`open`] with the answer deadline given instead of derived from the configuration's
/// options (behind a pooler they carry no session settings).
async fn open_within(config: &Config, answer_limit: Option<Duration>) -> Result<Opened, DbError> {
    let limit = limit(config);
    match tokio::time::timeout(limit, first_within(config, answer_limit)).await {
        Ok(opened) => Ok(opened?),
        Err(_) => Err(DbError::ConnectTimeout(limit)),
    }
}

/// Tries the URL's hosts in order and keeps the first that connects and, when the URL asks
/// with `target_session_attrs`, takes writes (or refuses them).
async fn first_within(
    config: &Config,
    answer_limit: Option<Duration>,
) -> Result<Opened, tokio_postgres::Error> {
    let mut last = None;
    for place in socket::places(config) {
        let stream = match socket::connect(&place, answer_limit).await {
            Ok(stream) => stream,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let (client, connection) = config.connect_raw(stream, NoTls).await?;
        let wanted = config.get_target_session_attrs();
        if wanted == TargetSessionAttrs::Any {
            return Ok((client, connection));
        }
        let driver = tokio::spawn(connection);
        let read_only = client
            .query_one("SHOW transaction_read_only", &[])
            .await?
            .get::<_, String>(0)
            == "on";
        drop(client);
        let _ = driver.await;
        if read_only == (wanted == TargetSessionAttrs::ReadOnly) {
            // Connected again, for a connection whose messages the caller reads.
            match socket::connect(&place, answer_limit).await {
                Ok(stream) => return config.connect_raw(stream, NoTls).await,
                Err(e) => last = Some(e),
            }
        } else {
            last = Some(std::io::Error::other(format!(
                "the server does not have the target_session_attrs asked ({wanted:?})"
            )));
        }
    }
    let cause = last.unwrap_or_else(|| std::io::Error::other("the database URL names no host"));
    Err(socket::as_driver_error(config, cause).await)
}

/// Connects within [`limit`] and drives the connection in the background, showing the server's
/// notices; the client is ready for statements.
pub async fn connect(config: &Config) -> Result<Client, DbError> {
    connect_within(config, socket::limit_for(config)).await
}

/// [`connect`] with the answer deadline given (see `open_within`).
pub async fn connect_within(
    config: &Config,
    answer_limit: Option<Duration>,
) -> Result<Client, DbError> {
    let (client, connection) = open_within(config, answer_limit).await?;
    drive(connection, |_| true);
    Ok(client)
}

/// Runs `connection` until it closes: notices are shown (see the module's notes), and
/// notifications and the error that ends it, if any, go to `forward`, which returns false
/// when nobody wants them any more.
pub fn drive<F>(mut connection: Connection<Watched, NoTlsStream>, mut forward: F) -> JoinHandle<()>
where
    F: FnMut(Result<Notification, tokio_postgres::Error>) -> bool + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            let wanted = match message {
                Ok(AsyncMessage::Notice(notice)) => {
                    show_notice(&notice);
                    true
                }
                Ok(AsyncMessage::Notification(n)) => forward(Ok(n)),
                Ok(_) => true,
                Err(e) => {
                    let cause = super::explain(&e);
                    tracing::debug!(error = %cause, "database connection closed");
                    closed_because(cause);
                    forward(Err(e));
                    return;
                }
            };
            if !wanted {
                return;
            }
        }
    })
}

/// Why a connection closed lately, and when. A call on a connection that its driver closed
/// fails with only "connection closed"; the cause (a deadline, a reset) is the driver's, and
/// this lets the caller's error name it.
static LAST_CLOSED: Mutex<Option<(std::time::Instant, String)>> = Mutex::new(None);

/// How recent a connection's closing must be to explain a caller's "connection closed".
const RECENT: Duration = Duration::from_secs(2);

fn closed_because(cause: String) {
    *LAST_CLOSED.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((std::time::Instant::now(), cause));
}

/// Why a connection closed within the last moments, if one did.
pub fn recent_close_cause() -> Option<String> {
    let last = LAST_CLOSED.lock().unwrap_or_else(|e| e.into_inner());
    last.as_ref()
        .filter(|(at, _)| at.elapsed() < RECENT)
        .map(|(_, cause)| cause.clone())
}

/// How a server message is shown, by its severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Warn,
    Info,
    Debug,
}

fn shown(severity: &str) -> Shown {
    match severity {
        "WARNING" => Shown::Warn,
        "NOTICE" | "INFO" => Shown::Info,
        _ => Shown::Debug,
    }
}

/// The notice as one line: its message, detail and hint.
fn notice_line(notice: &ServerMessage) -> String {
    let mut line = notice.message().to_string();
    if let Some(detail) = notice.detail() {
        line.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = notice.hint() {
        line.push_str(&format!("; hint: {hint}"));
    }
    line
}

/// Lines already shown: a notice raised on every connection (or every statement) is shown
/// once. Bounded: past this many distinct lines, later ones are shown without being kept.
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
const SEEN_MAX: usize = 1000;

/// True the first time `line` is offered.
fn first_time(line: &str) -> bool {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.contains(line) {
        return false;
    }
    if seen.len() < SEEN_MAX {
        seen.insert(line.to_string());
    }
    true
}

fn show_notice(notice: &ServerMessage) {
    let line = notice_line(notice);
    let how = shown(notice.severity());
    if how == Shown::Debug || !first_time(&line) {
        tracing::debug!(severity = notice.severity(), "database: {line}");
        return;
    }
    match how {
        Shown::Warn => tracing::warn!("database warning: {line}"),
        _ => tracing::info!("database notice: {line}"),
    }
}

/// Opens the pool's connections: within [`limit`] (the pool's create timeout) and with the
/// same driver as every other connection.
#[derive(Debug, Clone, Default)]
pub struct Connector {
    /// The answer deadline when the configuration's options do not carry the session's
    /// statement timeout (behind a pooler); `None`: derived from them.
    pub answer_limit: Option<Duration>,
    /// Statements run once on each new connection (`SET …` in session pooling).
    pub session: Option<String>,
}

type Connecting<'a> = Pin<
    Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>,
>;

impl deadpool_postgres::Connect for Connector {
    fn connect(&self, config: &Config) -> Connecting<'_> {
        let config = config.clone();
        let answer_limit = self.answer_limit.or_else(|| socket::limit_for(&config));
        let session = self.session.clone();
        Box::pin(async move {
            // The pool's create timeout (the same limit) bounds this whole future.
            let (client, connection) = first_within(&config, answer_limit).await?;
            let driver = drive(connection, |_| true);
            if let Some(session) = session {
                client.batch_execute(&session).await?;
            }
            Ok((client, driver))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_show_as_warnings_and_routine_chatter_is_debug() {
        assert_eq!(shown("WARNING"), Shown::Warn);
        assert_eq!(shown("NOTICE"), Shown::Info);
        assert_eq!(shown("INFO"), Shown::Info);
        assert_eq!(shown("DEBUG"), Shown::Debug);
        assert_eq!(shown("LOG"), Shown::Debug);
    }

    #[test]
    fn a_line_is_shown_once() {
        let line = "a line only this test offers";
        assert!(first_time(line));
        assert!(!first_time(line));
    }

    #[test]
    fn the_limit_is_the_configs_connect_timeout() {
        let config = super::super::config("postgres://u@127.0.0.1:5/d").unwrap();
        assert_eq!(limit(&config), DEFAULT_CONNECT_TIMEOUT);
        let config = super::super::config("postgres://u@127.0.0.1:5/d?connect_timeout=2").unwrap();
        assert_eq!(limit(&config), Duration::from_secs(2));
    }
}
