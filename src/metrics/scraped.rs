//! The figures `/metrics` reads from the database at scrape time: the `hookrelay.backlog`
//! view, and whether that read worked.
//!
//! A figure that could not be read is left out of the exposition rather than repeated from an
//! earlier scrape, so a dashboard shows a gap (and `hookrelay_database_up 0`) during an outage
//! instead of a backlog frozen at its last value.

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::per_endpoint::{self, EndpointBacklog};
use crate::admin::operator::{Backlog, OperatorError};

/// How long a scrape waits for the database, connecting included: well under Prometheus's
/// default 10 s scrape timeout, so `/metrics` answers (with `hookrelay_database_up 0`) even when
/// the database does not.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the backlog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no answer from the database within {0:?}")]
    Timeout(Duration),
    #[error("no database connection: {0}")]
    Connect(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Query(#[from] OperatorError),
}

/// The outcome of the latest scrape-time read, encoded by [`Collector::encode`].
#[derive(Debug, Default)]
pub struct Scraped {
    latest: Mutex<Option<Latest>>,
    /// Whether each endpoint's backlog is read too (`--metrics-per-endpoint`).
    per_endpoint: bool,
}

/// What one scrape read.
#[derive(Debug, Clone)]
struct Latest {
    backlog: Backlog,
    endpoints: Vec<EndpointBacklog>,
}

impl Scraped {
    /// Reads the global backlog, and with `per_endpoint` each endpoint's as well.
    pub fn new(per_endpoint: bool) -> Self {
        Scraped {
            latest: Mutex::default(),
            per_endpoint,
        }
    }

    /// Reads the backlog (within [`READ_TIMEOUT`]) and keeps it, or forgets the previous one.
    pub async fn refresh(&self, pool: &Pool) -> Result<(), ReadError> {
        let read = tokio::time::timeout(READ_TIMEOUT, read(pool, self.per_endpoint))
            .await
            .unwrap_or(Err(ReadError::Timeout(READ_TIMEOUT)));
        let (kept, result) = match read {
            Ok(backlog) => (Some(backlog), Ok(())),
            Err(e) => (None, Err(e)),
        };
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = kept;
        result
    }
}

async fn read(pool: &Pool, per_endpoint: bool) -> Result<Latest, ReadError> {
    let client = pool.get().await?;
    let backlog = crate::admin::operator::backlog(&**client).await?;
    let endpoints = if per_endpoint {
        per_endpoint::read(&**client)
            .await
            .map_err(|e| ReadError::Query(e.into()))?
    } else {
        Vec::new()
    };
    Ok(Latest { backlog, endpoints })
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let up = ConstGauge::new(i64::from(latest.is_some()));
        up.encode(encoder.encode_descriptor(
            "database_up",
            "1 if this scrape read the backlog from the database, 0 if the read failed or \
             timed out (the backlog figures are then left out).",
            None,
            MetricType::Gauge,
        )?)?;
        let Some(Latest {
            backlog: b,
            endpoints,
        }) = latest
        else {
            return Ok(());
        };
        if self.per_endpoint {
            per_endpoint::encode(&endpoints, &mut encoder)?;
        }
        let mut backlog = encoder.encode_descriptor(
            "backlog",
            "Waiting work, by kind (from hookrelay.backlog).",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in [
            ("events_to_fan_out", b.events_to_fan_out),
            ("due", b.due),
            ("in_flight", b.in_flight),
            ("retrying", b.retrying),
            ("paused", b.paused),
            ("waiting_for_slot", b.waiting_for_slot),
        ] {
            backlog
                .encode_family(&super::Kind { kind })?
                .encode_gauge(&n)?;
        }
        let age = ConstGauge::new(b.oldest_pending_age_seconds.unwrap_or(0.0));
        age.encode(encoder.encode_descriptor(
            "oldest_pending_age_seconds",
            "Age of the oldest pending delivery, 0 when none is pending.",
            None,
            MetricType::Gauge,
        )?)
    }
}
