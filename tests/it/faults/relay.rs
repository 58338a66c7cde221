//! A TCP relay on 127.0.0.1 that can partition its connections while a worker runs: connections
//! made before [`Relay::partition_existing`] stop carrying bytes (kept open, nothing forwarded
//! either way, as a network partition, a dropped NAT flow or a stuck proxy leaves them) while new
//! ones go through; [`Relay::partition_all`] does that to new connections too; [`Relay::heal`]
//! lets everything flow again, the held bytes included, as a network that comes back does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which connections are held.
#[derive(Debug, Clone, Copy, Default)]
struct Partition {
    /// Connections with a serial below this are held.
    below: u64,
    /// Every connection is held.
    all: bool,
}

impl Partition {
    fn holds(&self, serial: u64) -> bool {
        self.all || serial < self.below
    }
}

pub struct Relay {
    pub addr: SocketAddr,
    serials: Arc<AtomicU64>,
    partition: watch::Sender<Partition>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serials = Arc::new(AtomicU64::new(0));
        let (partition, watching) = watch::channel(Partition::default());
        let next = serials.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let serial = next.fetch_add(1, Ordering::SeqCst);
                let watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, serial, watching.clone()),
                        pump(out_read, in_write, serial, watching),
                    );
                });
            }
        });
        Relay {
            addr,
            serials,
            partition,
        }
    }

    /// Holds every connection made so far; new ones go through.
    pub fn partition_existing(&self) {
        let below = self.serials.load(Ordering::SeqCst);
        self.partition.send_modify(|p| p.below = below);
    }

    /// Holds every connection, new ones too (they are accepted, then hear nothing).
    pub fn partition_all(&self) {
        self.partition.send_modify(|p| p.all = true);
    }

    /// Lets every connection flow again.
    pub fn heal(&self) {
        self.partition.send_replace(Partition::default());
    }

    /// `url` with its host and port replaced by the relay's.
    pub fn url(&self, url: &str) -> String {
        let config: tokio_postgres::Config = url.parse().unwrap();
        let db = config.get_dbname().unwrap();
        let user = config.get_user().unwrap();
        format!("postgres://{user}@{}/{db}", self.addr)
    }
}

/// Copies `from` to `to` while the connection is not held; bytes read before a partition are
/// written once it heals, so nothing is lost or reordered.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    serial: u64,
    mut partition: watch::Receiver<Partition>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if partition.wait_for(|p| !p.holds(serial)).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Held while waiting to read: wait until it flows again.
            _ = partition.wait_for(|p| p.holds(serial)) => continue,
        };
        if partition.wait_for(|p| !p.holds(serial)).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_held_connection_carries_its_traffic_again_once_healed() {
    let db = crate::support::TestDb::new().await;
    let relay = Relay::start(crate::support::socket_of(&db.url)).await;
    let client = crate::support::connect(&relay.url(&db.url)).await;
    client.simple_query("SELECT 1").await.unwrap();
    relay.partition_existing();
    let held = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        client.simple_query("SELECT 2"),
    )
    .await;
    assert!(held.is_err(), "held");
    relay.heal();
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        client.simple_query("SELECT 3"),
    )
    .await;
    assert!(again.is_ok(), "healed connection answers");
}
