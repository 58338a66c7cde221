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
use tokio_postgres::error::DbError as ServerMessage;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Notification, Socket};

use super::DbError;

/// How long connecting and starting a session may take when the URL says nothing
/// (`?connect_timeout=N`) and `--connect-timeout` is not given. A server on the same network
/// answers in milliseconds; a few seconds leave room for a busy one and for TLS, and still
/// report a silent one before a supervisor's start timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that is open and whose messages are not yet read.
pub type Opened = (Client, Connection<Socket, NoTlsStream>);

/// The time limit for connecting with `config`: its `connect_timeout`, which [`super::config`]
/// always sets.
pub fn limit(config: &Config) -> Duration {
    config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

/// Connects and starts a session within [`limit`].
pub async fn open(config: &Config) -> Result<Opened, DbError> {
    let limit = limit(config);
    match tokio::time::timeout(limit, config.connect(NoTls)).await {
        Ok(opened) => Ok(opened?),
        Err(_) => Err(DbError::ConnectTimeout(limit)),
    }
}

/// Connects within [`limit`] and drives the connection in the background, showing the server's
/// notices; the client is ready for statements.
pub async fn connect(config: &Config) -> Result<Client, DbError> {
    let (client, connection) = open(config).await?;
    drive(connection, |_| true);
    Ok(client)
}

/// Runs `connection` until it closes: notices are shown (see the module's notes), and
/// notifications and the error that ends it, if any, go to `forward`, which returns false
/// when nobody wants them any more.
pub fn drive<F>(mut connection: Connection<Socket, NoTlsStream>, mut forward: F) -> JoinHandle<()>
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
                    tracing::debug!(error = %super::explain(&e), "database connection closed");
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Connector;

type Connecting<'a> = Pin<
    Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>,
>;

impl deadpool_postgres::Connect for Connector {
    fn connect(&self, config: &Config) -> Connecting<'_> {
        let config = config.clone();
        Box::pin(async move {
            // The pool's create timeout (the same limit) bounds this whole future.
            let (client, connection) = config.connect(NoTls).await?;
            Ok((client, drive(connection, |_| true)))
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
