//! Prometheus metrics: HTTP requests by route and status, their latency, and
//! the spine's depth and counters. Labels carry route templates
//! (`/api/v1/events`), never concrete paths, ids or anything about a patient.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use caduceus_spine::Spine;

use crate::ledger::LedgerService;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    latency: HistogramFamily,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new(spine: Arc<dyn Spine>, ledger: Option<Arc<LedgerService>>) -> Self {
        let mut registry = Registry::with_prefix("caduceus");
        let requests = Family::<HttpLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered, by method, route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status",
            latency.clone(),
        );
        registry.register_collector(Box::new(SpineCollector { spine }));
        if let Some(ledger) = ledger {
            registry.register_collector(Box::new(LedgerCollector { ledger }));
        }
        Self { registry, requests, latency }
    }

    pub fn observe(&self, labels: HttpLabels, seconds: f64) {
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads the spine's counters at scrape time.
#[derive(Clone)]
struct SpineCollector {
    spine: Arc<dyn Spine>,
}

impl std::fmt::Debug for SpineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpineCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for SpineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.spine.stats();
        gauge(&mut encoder, "spine_depth", "Events the slowest spine consumer has yet to acknowledge", s.depth)?;
        gauge(&mut encoder, "spine_capacity", "Most events in flight before producers wait", s.capacity as u64)?;
        gauge(&mut encoder, "spine_head_seq", "Sequence number of the newest event on the spine", s.head)?;
        counter(&mut encoder, "spine_published", "Events persisted and published", s.published)?;
        counter(&mut encoder, "spine_delivered", "Events delivered to consumers", s.delivered)?;
        let proto = ConstCounter::new(0u64);
        let mut rejected =
            encoder.encode_descriptor("spine_rejected", "Events refused, by reason", None, proto.metric_type())?;
        for (reason, value) in
            [("full", s.rejected_full), ("closed", s.rejected_closed), ("persist_failed", s.persist_failed)]
        {
            ConstCounter::new(value).encode(rejected.encode_family(&ReasonLabel { reason })?)?;
        }
        let proto = ConstGauge::new(0i64);
        let mut lag = encoder.encode_descriptor(
            "spine_consumer_lag",
            "Events each consumer has yet to acknowledge",
            None,
            proto.metric_type(),
        )?;
        for (consumer, acked) in s.consumers {
            let value = i64::try_from(s.head.saturating_sub(acked)).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(lag.encode_family(&ConsumerLabel { consumer })?)?;
        }
        Ok(())
    }
}

/// Reads the ledger's size, checkpoint and witness counters at scrape time.
#[derive(Debug)]
struct LedgerCollector {
    ledger: Arc<LedgerService>,
}

impl Collector for LedgerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let progress = self.ledger.ledger.progress();
        let checkpoint = self.ledger.latest().map_or(0, |p| p.checkpoint.size);
        let counters = &self.ledger.counters;
        gauge(&mut encoder, "ledger_entries", "Entries durable in the ledger", progress.size)?;
        gauge(
            &mut encoder,
            "ledger_last_sealed_seq",
            "Spine sequence number of the last sealed event",
            progress.last_seq,
        )?;
        gauge(&mut encoder, "ledger_checkpoint_size", "Tree size of the latest published checkpoint", checkpoint)?;
        gauge(
            &mut encoder,
            "ledger_failed",
            "1 once a ledger write failed (no more events are sealed)",
            u64::from(progress.failed.is_some()),
        )?;
        counter(
            &mut encoder,
            "ledger_checkpoints_published",
            "Checkpoints published",
            counters.checkpoints_published.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "ledger_checkpoints_withheld",
            "Checkpoints not published because the witness quorum was not met",
            counters.checkpoints_withheld.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "ledger_witness_failures",
            "Cosignature requests a witness refused or did not answer",
            counters.witness_failures.load(Ordering::Relaxed),
        )
    }
}
