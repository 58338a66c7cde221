//! Metrics labelled by endpoint name, with `--metrics-per-endpoint`: finished attempts by
//! outcome and their durations (counted as the worker works), and each endpoint's pending
//! deliveries and the age of its oldest (read at scrape time, like the global backlog).
//!
//! Off by default: one series per endpoint (and per outcome and histogram bucket) is what a
//! setup with a handful of endpoints wants, and too much for one with thousands.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio_postgres::GenericClient;

const ENDPOINT_BACKLOG: &str = include_str!("../../sql/queries/endpoint_backlog.sql");

/// Labels of the per-endpoint delivery counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointOutcome {
    pub endpoint: String,
    pub outcome: &'static str,
}

/// The label of the other per-endpoint series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub endpoint: String,
}

fn duration_histogram() -> Histogram {
    // The same buckets as hookrelay_attempt_duration_seconds: 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The per-endpoint families, registered under the `hookrelay_endpoint_` names.
pub struct PerEndpoint {
    pub deliveries: Family<EndpointOutcome, Counter>,
    pub attempt_duration: Family<Endpoint, Histogram, fn() -> Histogram>,
}

impl PerEndpoint {
    /// Makes the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let this = PerEndpoint {
            deliveries: Family::default(),
            attempt_duration: Family::new_with_constructor(duration_histogram),
        };
        registry.register(
            "endpoint_deliveries",
            "Delivery attempts finished, by endpoint name and outcome (delivered, retry, dead)",
            this.deliveries.clone(),
        );
        registry.register(
            "endpoint_attempt_duration_seconds",
            "Duration of delivery attempts by endpoint name, seconds",
            this.attempt_duration.clone(),
        );
        this
    }

    /// Counts a finished attempt to `endpoint`.
    pub fn attempt(&self, endpoint: &str, outcome: &'static str, seconds: f64) {
        self.deliveries
            .get_or_create(&EndpointOutcome {
                endpoint: endpoint.to_string(),
                outcome,
            })
            .inc();
        self.attempt_duration
            .get_or_create(&Endpoint {
                endpoint: endpoint.to_string(),
            })
            .observe(seconds);
    }
}

/// One endpoint's backlog as read at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointBacklog {
    pub endpoint: String,
    pub pending: i64,
    pub oldest_age_seconds: f64,
}

/// Every endpoint's backlog.
pub async fn read(
    client: &impl GenericClient,
) -> Result<Vec<EndpointBacklog>, tokio_postgres::Error> {
    let rows = client.query(ENDPOINT_BACKLOG, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(EndpointBacklog {
                endpoint: r.try_get(0)?,
                pending: r.try_get(1)?,
                oldest_age_seconds: r.try_get(2)?,
            })
        })
        .collect()
}

/// Writes the scrape-time gauges.
pub fn encode(backlog: &[EndpointBacklog], encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let mut pending = encoder.encode_descriptor(
        "endpoint_pending",
        "Pending deliveries, by endpoint name (read when scraped).",
        None,
        MetricType::Gauge,
    )?;
    for b in backlog {
        let label = Endpoint {
            endpoint: b.endpoint.clone(),
        };
        pending.encode_family(&label)?.encode_gauge(&b.pending)?;
    }
    let mut age = encoder.encode_descriptor(
        "endpoint_oldest_pending_age_seconds",
        "Age of each endpoint's oldest pending delivery, 0 when none is pending (read when \
         scraped).",
        None,
        MetricType::Gauge,
    )?;
    for b in backlog {
        let label = Endpoint {
            endpoint: b.endpoint.clone(),
        };
        age.encode_family(&label)?
            .encode_gauge(&b.oldest_age_seconds)?;
    }
    Ok(())
}
