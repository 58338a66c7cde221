//! The embedded default: a private PostgreSQL cluster run from the machine's own server
//! binaries, used when no database URL is given.
//!
//! Two lifetimes:
//! - [`start_persistent`] (for `run` and `demo`) starts, or reuses, a cluster under a data
//!   directory (`./.hookrelay/` by default) with `pg_ctl`; it keeps running after hookrelay
//!   exits so the next command finds it (`pg_ctl stop -D .hookrelay/pgdata` stops it).
//! - [`start_ephemeral`] (for tests and benchmarks) runs `postgres` as a child that the kernel
//!   stops when this process exits, with durability turned off for speed. Fault tests stop such
//!   a cluster in a chosen [`Shutdown`] mode and start it again on the same port and data
//!   directory ([`Cluster::stop`], [`Cluster::start_again`]).
//!
//! The cluster listens on 127.0.0.1 only, on a free port, with `trust` authentication: it is a
//! private development database. initdb refuses to run as root, so as root the cluster runs as
//! the `postgres` system user.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User};

/// Errors from the embedded launcher.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin and PATH): install them (apt-get install -y postgresql) \
         or give a database with --database-url"
    )]
    NotInstalled,
    #[error(
        "running as root and there is no `postgres` system user to run the cluster as: \
         create one (useradd --system postgres) or run hookrelay as a normal user"
    )]
    NoPostgresUser,
    #[error("{action} failed: {detail}")]
    Command { action: String, detail: String },
    #[error("could not prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("PostgreSQL did not become ready within {0:?}; its log: {1}")]
    NotReady(Duration, String),
    #[error("could not create database {name}: {source}")]
    CreateDb {
        name: String,
        source: tokio_postgres::Error,
    },
}

/// A running cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub data_dir: PathBuf,
    pub port: u16,
    pub log_file: PathBuf,
}

impl Cluster {
    /// The URL of database `database` in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A shell command that stops this cluster, for the user to run: `pg_ctl` by its full path
    /// (it is seldom on `PATH`), run as the `postgres` user when we are root, since pg_ctl
    /// refuses to run as root.
    pub fn stop_command(&self) -> String {
        let pg_ctl = bindir().map_or_else(|_| PathBuf::from("pg_ctl"), |bin| bin.join("pg_ctl"));
        let stop = format!("{} stop -D {}", pg_ctl.display(), self.data_dir.display());
        if Uid::effective().is_root() {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        }
    }

    /// Creates `database` unless it exists.
    pub async fn ensure_database(&self, database: &str) -> Result<(), EmbeddedError> {
        let wrap = |source| EmbeddedError::CreateDb {
            name: database.to_string(),
            source,
        };
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .map_err(wrap)?;
        let driver = tokio::spawn(conn);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .map_err(wrap)?
            .is_some();
        if !exists {
            let sql = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
            if let Err(e) = client.batch_execute(&sql).await {
                // Another process may have created it at the same moment.
                if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                    return Err(wrap(e));
                }
            }
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn bindir() -> Result<PathBuf, EmbeddedError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(dir) = std::env::var("HOOKRELAY_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let dir = e.path().join("bin");
            has_server(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if let Ok(initdb) = fs::canonicalize(dir.join("initdb")) {
            if let Some(real) = initdb.parent().filter(|d| has_server(d)) {
                return Ok(real.to_path_buf());
            }
        }
    }
    Err(EmbeddedError::NotInstalled)
}

/// The user to run PostgreSQL as: ourselves, or `postgres` when we are root.
fn server_user() -> Result<Option<User>, EmbeddedError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(EmbeddedError::NoPostgresUser),
    }
}

fn as_server_user(cmd: &mut Command, user: &Option<User>) {
    if let Some(user) = user {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        // initdb and postgres look at $HOME and the working directory; root's are not theirs.
        cmd.env("HOME", &user.dir).current_dir("/");
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn run(mut cmd: Command, action: &str) -> Result<String, EmbeddedError> {
    let out = cmd.output().map_err(|e| EmbeddedError::Command {
        action: action.to_string(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(EmbeddedError::Command {
            action: action.to_string(),
            detail,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates `dir` (and parents) owned by the server user.
fn prepare_dir(dir: &Path, user: &Option<User>) -> Result<(), EmbeddedError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(user) = user {
        nix::unistd::chown(dir, Some(user.uid), Some(Gid::from_raw(user.gid.as_raw())))
            .map_err(|e| io_err(dir)(e.into()))?;
    }
    Ok(())
}

fn initdb(
    bin: &Path,
    pgdata: &Path,
    user: &Option<User>,
    extra_conf: &str,
) -> Result<(), EmbeddedError> {
    if pgdata.join("PG_VERSION").is_file() {
        return Ok(());
    }
    prepare_dir(pgdata, user)?;
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D").arg(pgdata).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]);
    as_server_user(&mut cmd, user);
    run(cmd, "initdb").map_err(|e| match (e, user) {
        (EmbeddedError::Command { action, detail }, Some(_)) => EmbeddedError::Command {
            action,
            detail: format!(
                "{detail} (the postgres user must be able to reach {})",
                pgdata.display()
            ),
        },
        (e, _) => e,
    })?;
    let conf = pgdata.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).map_err(io_err(&conf))?;
    text.push_str(
        "\n# hookrelay embedded cluster\nlisten_addresses = '127.0.0.1'\n\
         unix_socket_directories = ''\nmax_connections = 300\n",
    );
    text.push_str(extra_conf);
    fs::write(&conf, text).map_err(io_err(&conf))
}

fn free_port() -> Result<u16, EmbeddedError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err(Path::new("127.0.0.1:0")))?;
    Ok(listener
        .local_addr()
        .map_err(io_err(Path::new("127.0.0.1:0")))?
        .port())
}

fn is_ready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The port of a running postmaster, from its `postmaster.pid`.
fn running_port(pgdata: &Path) -> Option<u16> {
    let pid_file = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts the cluster under `dir` (initialising it on first use), or reuses it when it is
/// already running.
pub fn start_persistent(dir: &Path) -> Result<Cluster, EmbeddedError> {
    let bin = bindir()?;
    let user = server_user()?;
    let dir = std::path::absolute(dir).map_err(io_err(dir))?;
    let pgdata = dir.join("pgdata");
    let log_file = dir.join("postgres.log");
    prepare_dir(&dir, &user)?;
    initdb(&bin, &pgdata, &user, "")?;
    if let Some(port) = running_port(&pgdata) {
        if is_ready(&bin, port) {
            return Ok(Cluster {
                data_dir: pgdata,
                port,
                log_file,
            });
        }
    }
    let port = free_port()?;
    let mut cmd = Command::new(bin.join("pg_ctl"));
    cmd.arg("-D").arg(&pgdata).arg("-l").arg(&log_file).args([
        "-w",
        "-t",
        "60",
        "-o",
        &format!("-p {port}"),
        "start",
    ]);
    as_server_user(&mut cmd, &user);
    cmd.stdout(Stdio::null());
    run(cmd, "pg_ctl start").map_err(|e| match e {
        EmbeddedError::Command { action, detail } => EmbeddedError::Command {
            action,
            detail: format!("{detail}\n{}", log_tail(&log_file)),
        },
        other => other,
    })?;
    Ok(Cluster {
        data_dir: pgdata,
        port,
        log_file,
    })
}

/// How much a throwaway cluster cares about surviving a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync and synchronous commit off: fastest, for tests.
    Off,
    /// PostgreSQL's defaults (fsync, synchronous commit): commit costs as in production,
    /// for benchmarks.
    Default,
}

/// Removes throwaway clusters named `<prefix><pid>` in the temporary directory whose process
/// is gone (their server stopped with it), as test and benchmark runs leave them.
pub fn remove_stale_ephemeral(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts a throwaway cluster under `dir` that stops when this process exits, with
/// durability off (for tests).
pub fn start_ephemeral(dir: &Path) -> Result<Cluster, EmbeddedError> {
    start_ephemeral_with(dir, Durability::Off)
}

/// Starts a throwaway cluster under `dir` that stops when this process exits.
pub fn start_ephemeral_with(dir: &Path, durability: Durability) -> Result<Cluster, EmbeddedError> {
    let bin = bindir()?;
    let user = server_user()?;
    let dir = std::path::absolute(dir).map_err(io_err(dir))?;
    let pgdata = dir.join("pgdata");
    let log_file = dir.join("postgres.log");
    prepare_dir(&dir, &user)?;
    let conf = match durability {
        Durability::Off => {
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 256MB\nmax_wal_size = 4GB\n"
        }
        Durability::Default => "shared_buffers = 256MB\nmax_wal_size = 4GB\n",
    };
    initdb(&bin, &pgdata, &user, conf)?;
    let port = free_port()?;
    let log = fs::File::create(&log_file).map_err(io_err(&log_file))?;
    if let Some(user) = &user {
        let _ = nix::unistd::chown(&log_file, Some(user.uid), None);
    }
    launch(&bin, &pgdata, port, log, &log_file, &user)?;
    Ok(Cluster {
        data_dir: pgdata,
        port,
        log_file,
    })
}

/// Runs `postgres` on `pgdata` and `port` as a child that gets SIGQUIT when this process exits,
/// logging to `log`, and waits until it accepts connections.
fn launch(
    bin: &Path,
    pgdata: &Path,
    port: u16,
    log: fs::File,
    log_file: &Path,
    user: &Option<User>,
) -> Result<(), EmbeddedError> {
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D").arg(pgdata).args(["-p", &port.to_string()]);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_err(log_file))?)
        .stderr(log);
    as_server_user(&mut cmd, user);
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGQUIT)
                .map_err(std::io::Error::from)
        });
    }
    // The parent-death signal fires when the *thread* that forked exits, so the fork happens on
    // a thread that lives exactly as long as the server.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(io_err(pgdata))?;
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("launcher thread died")))
        .map_err(|e| EmbeddedError::Command {
            action: "starting postgres".into(),
            detail: e.to_string(),
        })?;
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    while !is_ready(bin, port) {
        if started.elapsed() > limit {
            return Err(EmbeddedError::NotReady(limit, log_tail(log_file)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// How to stop a cluster: PostgreSQL's three shutdown modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Wait for every client to disconnect (SIGTERM).
    Smart,
    /// Disconnect clients, roll back their transactions, and stop cleanly (SIGINT).
    Fast,
    /// Stop at once without a checkpoint; the next start runs crash recovery (SIGQUIT).
    Immediate,
}

impl Cluster {
    /// Stops the cluster in `mode` and waits until its postmaster has exited. Used by tests
    /// that take the database away; [`Cluster::start_again`] brings it back.
    pub fn stop(&self, mode: Shutdown) -> Result<(), EmbeddedError> {
        use nix::sys::signal::{kill, Signal};
        let failed = |detail: String| EmbeddedError::Command {
            action: format!("stopping PostgreSQL ({mode:?})"),
            detail,
        };
        let pid_file = self.data_dir.join("postmaster.pid");
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
            .ok_or_else(|| {
                failed(format!(
                    "no running server ({} unreadable)",
                    pid_file.display()
                ))
            })?;
        let pid = nix::unistd::Pid::from_raw(pid);
        let signal = match mode {
            Shutdown::Smart => Signal::SIGTERM,
            Shutdown::Fast => Signal::SIGINT,
            Shutdown::Immediate => Signal::SIGQUIT,
        };
        kill(pid, signal).map_err(|e| failed(e.to_string()))?;
        let limit = Duration::from_secs(60);
        let started = Instant::now();
        // Gone once the signal cannot reach it (an ephemeral server is reaped by its thread).
        while kill(pid, None).is_ok() {
            if started.elapsed() > limit {
                return Err(failed(format!("still running after {limit:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts a stopped cluster again on the same data directory and port, as a child of this
    /// process like [`start_ephemeral`], and waits until it accepts connections (after crash
    /// recovery when it was stopped in [`Shutdown::Immediate`] mode).
    pub fn start_again(&self) -> Result<(), EmbeddedError> {
        let bin = bindir()?;
        let user = server_user()?;
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_file)
            .map_err(io_err(&self.log_file))?;
        launch(&bin, &self.data_dir, self.port, log, &self.log_file, &user)
    }
}
