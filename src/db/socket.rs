//! The socket under every database connection, and the deadline that keeps a silent one from
//! hanging its caller.
//!
//! A connection can go silent without closing: a network partition, a NAT or load balancer that
//! dropped the flow, a failover, a proxy (PgBouncer, a tunnel) that accepts bytes and forwards
//! nothing. The server never sees the query, so its `statement_timeout` cannot help, and the
//! kernel cannot either when something on the way acknowledges the bytes. So the client keeps
//! its own deadline, in the one place every statement passes: the socket. [`Watched`] notes
//! when bytes were written while no answer was pending; if nothing at all is read back within
//! the limit, reads fail with `TimedOut`. tokio-postgres then closes the connection, every call
//! on it fails, the pool discards it (its recycle check sees it closed), and the caller's retry
//! opens a fresh one. PostgreSQL answers every request, at the latest when `statement_timeout`
//! cancels it, so a limit of the session's `statement_timeout` plus a margin never cuts off a
//! statement the server is still running (see [`limit_for`]).
//!
//! For partitions where packets are lost rather than swallowed, the kernel's TCP keepalives
//! (idle connections) and `TCP_USER_TIMEOUT` (unacknowledged writes) are set too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Sleep;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// How much longer than `statement_timeout` the client waits for an answer: time for the
/// server to notice the timeout, roll back and answer, on a loaded machine.
pub const MARGIN: Duration = Duration::from_secs(5);

/// An idle connection is probed after this long without traffic, then every
/// [`KEEPALIVE_INTERVAL`], and given up after [`KEEPALIVE_RETRIES`] unanswered probes: a dead
/// peer is noticed within about 25 s even on a connection with nothing to say.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// Byte streams a connection may run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A stream whose reads fail when an answer is awaited longer than its limit.
pub struct Watched {
    io: Pin<Box<dyn Io>>,
    limit: Option<Duration>,
    /// The timer for the answer: made once, reset at the first write after the last read
    /// (every round trip), so the hot path allocates nothing.
    due: Option<Pin<Box<Sleep>>>,
    /// Whether an answer is awaited, i.e. `due` is running.
    awaiting: bool,
}

impl Watched {
    /// Wraps `io`; `None`: no limit.
    pub fn new(io: impl Io + 'static, limit: Option<Duration>) -> Watched {
        Watched {
            io: Box::pin(io),
            limit,
            due: limit.map(|limit| Box::pin(tokio::time::sleep(limit))),
            awaiting: false,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match self.io.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.awaiting = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if !self.awaiting => Poll::Pending,
            Poll::Pending => match self.due.as_mut().map(|due| due.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    let limit = self.limit.unwrap_or_default();
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the database sent nothing back for {} after a request (the \
                             connection went silent: a network partition, a dropped flow or \
                             a stuck proxy); the connection is closed and the work retried on \
                             a new one",
                            crate::pipeline::retry::human_duration(limit)
                        ),
                    )))
                }
                _ => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = self.io.as_mut().poll_write(cx, data);
        let wrote = matches!(written, Poll::Ready(Ok(n)) if n > 0);
        if wrote && !self.awaiting {
            if let (Some(limit), Some(due)) = (self.limit, self.due.as_mut()) {
                due.as_mut().reset(tokio::time::Instant::now() + limit);
                // Polled once so that its expiry wakes the connection's task: the read that
                // would poll it may already have been polled (and parked) before this write.
                let _ = due.as_mut().poll(cx);
                self.awaiting = true;
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.as_mut().poll_shutdown(cx)
    }
}

/// The answer limit for sessions made with `config`: their `statement_timeout` (from the
/// options, the last one given winning) plus [`MARGIN`]; `None` when the session has no
/// statement timeout, since then a statement may rightly run for as long as it takes
/// (`migrate`'s DDL on a large table).
pub fn limit_for(config: &Config) -> Option<Duration> {
    let options = config.get_options()?;
    let mut timeout = None;
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next().unwrap_or_default(),
            other => other
                .strip_prefix("-c")
                .unwrap_or(other)
                .trim_start_matches('-'),
        };
        if let Some(value) = setting.strip_prefix("statement_timeout=") {
            timeout = pg_duration(value);
        }
    }
    timeout.filter(|t| !t.is_zero()).map(|t| t + MARGIN)
}

/// A PostgreSQL time setting: a number of milliseconds, or a number with a unit.
fn pg_duration(value: &str) -> Option<Duration> {
    let value = value.trim_matches(|c| c == '\'' || c == '"').trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "min" => 60e3,
        "h" => 3600e3,
        "d" => 86400e3,
        "us" => 1e-3,
        _ => return None,
    };
    Some(Duration::from_secs_f64(number * millis / 1e3))
}

/// Where a connection may be made: one per host of the URL, in order.
#[derive(Debug, Clone)]
pub enum Place {
    Tcp(String, u16),
    Unix(std::path::PathBuf, u16),
}

/// The places `config` names, in the order they are tried.
pub fn places(config: &Config) -> Vec<Place> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let ports = config.get_ports();
    (0..hosts.len().max(addrs.len()))
        .filter_map(|i| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match (addrs.get(i), hosts.get(i)) {
                (Some(ip), _) => Some(Place::Tcp(ip.to_string(), port)),
                (None, Some(Host::Tcp(name))) => Some(Place::Tcp(name.clone(), port)),
                (None, Some(Host::Unix(dir))) => Some(Place::Unix(dir.clone(), port)),
                (None, None) => None,
            }
        })
        .collect()
}

/// Connects a socket to `place`, with keepalives and `TCP_USER_TIMEOUT` set, watched with
/// `limit`.
pub async fn connect(place: &Place, limit: Option<Duration>) -> io::Result<Watched> {
    match place {
        Place::Tcp(host, port) => tcp(host, *port, limit).await,
        Place::Unix(dir, port) => UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
            .await
            .map(|s| Watched::new(s, limit)),
    }
}

/// `cause` as the driver's own error type, which only the driver can make: the error of a
/// session started over a stream that fails at once with `cause`. The pool's connector must
/// return that type.
pub async fn as_driver_error(config: &Config, cause: io::Error) -> tokio_postgres::Error {
    match config
        .connect_raw(Failed(Some(cause)), tokio_postgres::NoTls)
        .await
    {
        Err(e) => e,
        Ok(_) => unreachable!("a session cannot start over a stream that fails every call"),
    }
}

/// A stream whose first use fails with the error it holds.
struct Failed(Option<io::Error>);

impl Failed {
    fn error(&mut self) -> io::Error {
        self.0
            .take()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Failed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }
}

impl AsyncWrite for Failed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.error()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn tcp(host: &str, port: u16, limit: Option<Duration>) -> io::Result<Watched> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let socket = SockRef::from(&stream);
                socket.set_tcp_keepalive(
                    &TcpKeepalive::new()
                        .with_time(KEEPALIVE_IDLE)
                        .with_interval(KEEPALIVE_INTERVAL)
                        .with_retries(KEEPALIVE_RETRIES),
                )?;
                #[cfg(target_os = "linux")]
                socket.set_tcp_user_timeout(Some(limit.unwrap_or(Duration::from_secs(60))))?;
                return Ok(Watched::new(stream, limit));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_limit_is_the_sessions_statement_timeout_and_a_margin() {
        let limit = |options: &str| {
            let mut config = Config::new();
            config.options(options);
            limit_for(&config)
        };
        assert_eq!(
            limit("-c statement_timeout=10s"),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            limit("-c statement_timeout=10s -c lock_timeout=1s -c statement_timeout=2min"),
            Some(Duration::from_secs(125))
        );
        assert_eq!(
            limit("-cstatement_timeout=1500"),
            Some(Duration::from_millis(6500))
        );
        assert_eq!(
            limit("--statement_timeout=1h"),
            Some(Duration::from_secs(3605))
        );
        assert_eq!(limit("-c statement_timeout=0"), None);
        assert_eq!(limit("-c lock_timeout=5s"), None);
        assert_eq!(limit_for(&Config::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_an_answer_fails_the_read_and_an_answer_clears_it() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut watched = Watched::new(near, Some(Duration::from_secs(15)));
        let mut buf = [0u8; 8];
        // Nothing written yet: an idle connection waits as long as it likes.
        let idle = tokio::time::timeout(Duration::from_secs(60), watched.read(&mut buf)).await;
        assert!(idle.is_err(), "an idle read never times out");
        watched.write_all(b"Q").await.unwrap();
        far.read_exact(&mut buf[..1]).await.unwrap();
        far.write_all(b"answer").await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 6);
        // Answered: waiting again is idle.
        let idle = tokio::time::timeout(Duration::from_secs(60), watched.read(&mut buf)).await;
        assert!(idle.is_err());
        // The connection's task polls its read (which parks) before it writes a request: the
        // deadline must still wake that task.
        let mut written = false;
        let err = std::future::poll_fn(|cx| {
            let mut read = ReadBuf::new(&mut buf);
            if let Poll::Ready(result) = Pin::new(&mut watched).poll_read(cx, &mut read) {
                return Poll::Ready(result);
            }
            if !written {
                assert!(Pin::new(&mut watched).poll_write(cx, b"Q").is_ready());
                written = true;
            }
            Poll::Pending
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            err.to_string().contains("sent nothing back for 15 s"),
            "{err}"
        );
    }
}
