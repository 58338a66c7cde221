//! Recording results: finished attempts are written back in batches, one statement per batch
//! (arrays unnested server-side), never row by row.
//!
//! The channel into the recorder is bounded: while the database is slow or away, request tasks
//! wait to hand over their results, the worker's queue stays full, and it stops claiming until
//! the recorder catches up. Unrecorded results never pile up without bound.
//!
//! A `410 Gone` answer disables its endpoint and cancels the endpoint's pending deliveries
//! (`hookrelay.endpoint_gone`), in the same transaction as the batch that recorded it. After
//! each batch the recorder signals the worker, which listens only while it has sent deliveries
//! of ordered keys: their results may make a key's next delivery due. (Slots are freed earlier,
//! when a request ends: see [`Held::ended`].)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use deadpool_postgres::{Client, Pool};

use crate::db::pooler;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db::task::Session;
use crate::db::{DbError, DbTask, Flow, Health, Proof, Step};
use crate::pipeline::claim::Unwritten;
use crate::pipeline::deliver::Attempt;
use crate::pipeline::retry::Outcome;

const RECORD_RESULTS: &str = include_str!("../../sql/queries/record_results.sql");
const RELEASE_LEASES: &str = include_str!("../../sql/queries/release_leases.sql");
const RELEASE_ORPHANS: &str = include_str!("../../sql/queries/release_orphans.sql");
const ENDPOINT_GONE: &str = include_str!("../../sql/queries/endpoint_gone.sql");

/// Most results written by one statement.
pub const MAX_BATCH: usize = 512;

/// A finished attempt on its way to the database.
#[derive(Debug)]
pub struct Finished {
    pub delivery_id: i64,
    /// The delivery's event: its partition key, so the result reads one day's partition.
    pub event_id: Uuid,
    pub endpoint_id: i64,
    pub attempt: u32,
    pub outcome: Outcome,
    pub result: Attempt,
}

/// The deliveries this process holds a lease on and has not written back yet: in flight, or
/// finished and waiting for the recorder. Any other lease in this worker's name is an orphan
/// (see [`release_orphans`]). A finished one is noted with its endpoint: its request is over,
/// so it holds none of the endpoint's slots (see [`Unwritten`]).
#[derive(Debug, Default)]
pub struct Held(Mutex<HashMap<i64, Hold>>);

/// One held delivery.
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// It holds its ordering key's place: its result, once written, may release the key's
    /// next delivery.
    keyed: bool,
    /// The endpoint, once its request has ended.
    ended: Option<i64>,
}

impl Held {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Hold>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A claimed delivery, now this process's to send and record; `keyed`: of an ordered key.
    pub fn insert(&self, delivery_id: i64, keyed: bool) {
        let hold = Hold { keyed, ended: None };
        self.ids().insert(delivery_id, hold);
    }

    /// A held delivery's request to `endpoint_id` ended; its result is on its way to the
    /// recorder.
    pub fn ended(&self, delivery_id: i64, endpoint_id: i64) {
        if let Some(hold) = self.ids().get_mut(&delivery_id) {
            hold.ended = Some(endpoint_id);
        }
    }

    /// Deliveries whose results are written (or whose leases were given back).
    pub fn remove(&self, delivery_ids: impl IntoIterator<Item = i64>) {
        let mut ids = self.ids();
        for id in delivery_ids {
            ids.remove(&id);
        }
    }

    /// Whether a delivery of an ordered key is held: its result is still to be written.
    pub fn holds_keyed(&self) -> bool {
        self.ids().values().any(|hold| hold.keyed)
    }

    /// The ids held now.
    pub fn snapshot(&self) -> Vec<i64> {
        self.ids().keys().copied().collect()
    }

    /// Per endpoint, the held deliveries whose requests have ended.
    pub fn unwritten(&self) -> Unwritten {
        let mut per_endpoint: HashMap<i64, i32> = HashMap::new();
        for endpoint in self.ids().values().filter_map(|hold| hold.ended) {
            *per_endpoint.entry(endpoint).or_default() += 1;
        }
        let (endpoints, counts) = per_endpoint.into_iter().unzip();
        Unwritten { endpoints, counts }
    }
}

/// The recorder's handles: where to send results, its task, and its signal that a batch was
/// written.
pub struct Recorder {
    pub tx: mpsc::Sender<Finished>,
    pub task: JoinHandle<()>,
    pub written: Arc<Notify>,
}

/// Starts the recorder task. It ends once every sender is dropped and all it was given is
/// written; database failures are reported to `health` and the batch is kept and written
/// again after a backoff delay.
pub fn spawn(
    pool: Pool,
    worker: String,
    capacity: usize,
    health: &Health,
    held: Arc<Held>,
) -> Recorder {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let written = Arc::new(Notify::new());
    let outage = DbTask::new("recorder", health).forgetting(&pool);
    let task = tokio::spawn(run(pool, rx, worker, outage, written.clone(), held));
    Recorder { tx, task, written }
}

async fn run(
    pool: Pool,
    mut rx: mpsc::Receiver<Finished>,
    worker: String,
    mut outage: DbTask,
    written: Arc<Notify>,
    held: Arc<Held>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Results are never dropped: the retries are not stopped by anything but success.
    let never = CancellationToken::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut writing = Writing {
            pool: &pool,
            batch: &batch,
            worker: &worker,
        };
        outage.run(&never, &mut writing).await;
        held.remove(batch.drain(..).map(|f| f.delivery_id));
        written.notify_one();
    }
}

/// Writing one batch, until it is written.
struct Writing<'a> {
    pool: &'a Pool,
    batch: &'a [Finished],
    worker: &'a str,
}

impl Step for Writing<'_> {
    type Error = DbError;

    async fn step(&mut self, session: &mut Session<'_>) -> Result<Flow, DbError> {
        let written = async {
            let mut client = self.pool.get().await?;
            session.opened(deadpool_postgres::Object::metrics(&client).created);
            write(&mut client, self.batch, self.worker).await
        };
        written.await.inspect_err(|e| {
            tracing::debug!(error = %e, results = self.batch.len(),
                "could not record delivery results; keeping them and retrying");
        })?;
        session.proved(Proof::Wrote);
        Ok(Flow::Done)
    }
}

fn clamp_ms(d: Duration) -> i64 {
    d.as_millis().min(i32::MAX as u128) as i64
}

/// Gives back this worker's leases on deliveries it does not hold (see
/// `sql/queries/release_orphans.sql`); returns how many.
pub async fn release_orphans(client: &Client, worker: &str, held: &Held) -> Result<u64, DbError> {
    pooler::execute(client, RELEASE_ORPHANS, &[&worker, &held.snapshot()]).await
}

/// The least and greatest event id of a batch: the range of the partition key that lets
/// record_results.sql read only the batch's days.
fn key_range(events: &[Uuid]) -> (Uuid, Uuid) {
    let first = events.iter().min().copied().unwrap_or_default();
    let last = events.iter().max().copied().unwrap_or_default();
    (first, last)
}

/// Writes one batch of results in a single statement.
pub async fn write(client: &mut Client, batch: &[Finished], worker: &str) -> Result<(), DbError> {
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut excerpts = Vec::with_capacity(n);
    let mut delays = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    for f in batch {
        ids.push(f.delivery_id);
        events.push(f.event_id);
        attempts.push(f.attempt as i32);
        outcomes.push(f.outcome.as_str());
        statuses.push(f.result.status.map(i32::from));
        codes.push(f.result.error.as_ref().map(|e| e.code.as_str()));
        errors.push(f.result.error.as_ref().map(|e| e.message.as_str()));
        excerpts.push(f.result.excerpt.as_deref());
        delays.push(match f.outcome {
            Outcome::Retry { after } => Some(after.as_millis().min(i64::MAX as u128) as i64),
            _ => None,
        });
        durations.push(clamp_ms(f.result.duration) as i32);
        started.push(f.result.started_at);
    }
    let mut gone: Vec<i64> = batch
        .iter()
        .filter(|f| f.result.is_gone())
        .map(|f| f.endpoint_id)
        .collect();
    gone.sort_unstable();
    gone.dedup();
    let (first, last) = key_range(&events);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 14] = [
        &ids, &attempts, &outcomes, &statuses, &codes, &errors, &excerpts, &delays, &durations,
        &started, &worker, &events, &first, &last,
    ];
    if gone.is_empty() {
        // The common case: one statement, no transaction round trips.
        pooler::execute(client, RECORD_RESULTS, &params).await?;
        return Ok(());
    }
    let tx = pooler::begin(client).await?;
    pooler::in_transaction(&tx, RECORD_RESULTS, &params).await?;
    let rows = pooler::in_transaction(&tx, ENDPOINT_GONE, &[&gone]).await?;
    // One row: the statement aggregates.
    let (cancelled, names): (i64, Vec<String>) = rows
        .first()
        .map_or((0, Vec::new()), |row| (row.get(0), row.get(1)));
    tx.commit().await?;
    tracing::warn!(endpoints = ?names, cancelled,
        "a receiver answered 410 Gone: its endpoint is disabled and its pending deliveries \
         cancelled; `hookrelay endpoint enable NAME` turns it back on");
    Ok(())
}

/// Gives back the leases of claimed deliveries (`(delivery id, attempt)`) that were never
/// sent, uncounting their attempt, so any worker can send them at once.
pub async fn release(pool: &Pool, claims: &[(i64, u32)], worker: &str) -> Result<u64, DbError> {
    if claims.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = claims.iter().map(|c| c.0).collect();
    let attempts: Vec<i32> = claims.iter().map(|c| c.1 as i32).collect();
    let client = pool.get().await?;
    pooler::execute(&client, RELEASE_LEASES, &[&ids, &attempts, &worker]).await
}
