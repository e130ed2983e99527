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

    /// Add the detection stage's counters (lag is `spine_consumer_lag`
    /// for the `detect` and `alerts` consumers).
    pub fn register_detection(&mut self, service: Arc<crate::detect::DetectService>) {
        self.registry.register_collector(Box::new(DetectCollector { service }));
    }

    pub fn register_network(&mut self, service: Arc<crate::network::NetworkService>) {
        self.registry.register_collector(Box::new(NetworkCollector { service }));
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

/// Reads the detection stage's counters at scrape time.
#[derive(Debug)]
struct DetectCollector {
    service: Arc<crate::detect::DetectService>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutputLabel {
    output: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

impl Collector for DetectCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.service.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(&mut encoder, "detect_events", "Events run through the detection engine", load(&c.events))?;
        let proto = ConstCounter::new(0u64);
        let mut findings =
            encoder.encode_descriptor("detect_findings", "Findings, by kind", None, proto.metric_type())?;
        for (kind, value) in [
            ("sigma", load(&c.findings_sigma)),
            ("correlation", load(&c.findings_correlation)),
            ("ehr", load(&c.findings_ehr)),
        ] {
            ConstCounter::new(value).encode(findings.encode_family(&KindLabel { kind })?)?;
        }
        let busy = ConstCounter::new(load(&c.busy_nanos) as f64 / 1e9);
        busy.encode(encoder.encode_descriptor(
            "detect_busy_seconds",
            "Time spent running the engine (throughput = detect_events / detect_busy_seconds)",
            None,
            busy.metric_type(),
        )?)?;
        counter(
            &mut encoder,
            "detect_backpressure_waits",
            "Times the detection stage found the spine full and waited (nothing is dropped)",
            load(&c.backpressure_waits),
        )?;
        counter(&mut encoder, "detect_alerts_opened", "New alerts", load(&c.alerts_opened))?;
        counter(&mut encoder, "detect_alerts_grouped", "Findings added to an open alert", load(&c.alerts_grouped))?;
        counter(
            &mut encoder,
            "detect_alerts_suppressed",
            "Findings kept as suppressed (a suppression matched)",
            load(&c.alerts_suppressed),
        )?;
        counter(
            &mut encoder,
            "detect_store_retries",
            "Alert writes retried after a storage error",
            load(&c.store_retries),
        )?;
        let loaded = self.service.loaded();
        gauge(&mut encoder, "detect_rules_loaded", "Sigma rules loaded", loaded.rules.rules().count() as u64)?;
        gauge(&mut encoder, "detect_rules_failed", "Sigma rules that did not load", loaded.errors.len() as u64)?;
        if let Some(outputs) = self.service.outputs() {
            let stats = outputs.stats();
            for (name, help, pick) in [
                ("detect_output_sent", "Alerts delivered, by output", 0),
                ("detect_output_failed", "Alerts given up on after every retry, by output", 1),
                ("detect_output_dropped", "Alerts that found an output's queue full, by output", 2),
            ] {
                let proto = ConstCounter::new(0u64);
                let mut family = encoder.encode_descriptor(name, help, None, proto.metric_type())?;
                for s in &stats {
                    let value = [s.sent, s.failed, s.dropped].get(pick).copied().unwrap_or(0);
                    ConstCounter::new(value).encode(family.encode_family(&OutputLabel { output: s.output })?)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads the network stage's counters at scrape time.
#[derive(Debug)]
struct NetworkCollector {
    service: Arc<crate::network::NetworkService>,
}

impl Collector for NetworkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.service.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "network_flows_ingested",
            "Flows published by the network sources",
            load(&c.flows_ingested),
        )?;
        counter(
            &mut encoder,
            "network_ids_alerts_ingested",
            "Suricata alerts forwarded",
            load(&c.ids_alerts_ingested),
        )?;
        counter(
            &mut encoder,
            "network_telemetry_ingested",
            "Device telemetry messages from MQTT",
            load(&c.telemetry_ingested),
        )?;
        counter(&mut encoder, "network_source_errors", "Source lines that could not be read", load(&c.source_errors))?;
        counter(&mut encoder, "network_flows_judged", "Flows judged by the network stage", load(&c.flows_judged))?;
        let proto = ConstCounter::new(0u64);
        let mut findings =
            encoder.encode_descriptor("network_findings", "Network findings, by judge", None, proto.metric_type())?;
        for (kind, value) in [
            ("model", load(&c.findings_model)),
            ("online", load(&c.findings_online)),
            ("protocol", load(&c.findings_protocol)),
            ("baseline", load(&c.findings_baseline)),
        ] {
            ConstCounter::new(value).encode(findings.encode_family(&KindLabel { kind })?)?;
        }
        counter(&mut encoder, "network_baseline_saves", "Device baselines written to disk", load(&c.baseline_saves))?;
        counter(
            &mut encoder,
            "network_baseline_save_errors",
            "Writes of the device baselines that failed",
            load(&c.baseline_save_errors),
        )?;
        counter(&mut encoder, "network_online_saves", "Online detector states written to disk", load(&c.online_saves))?;
        counter(
            &mut encoder,
            "network_online_save_errors",
            "Writes of the online detector state that failed",
            load(&c.online_save_errors),
        )?;
        counter(&mut encoder, "network_model_loads", "Model files loaded", load(&c.model_loads))?;
        counter(
            &mut encoder,
            "network_model_load_errors",
            "Model files that failed to load",
            load(&c.model_load_errors),
        )?;
        let busy = ConstCounter::new(load(&c.busy_nanos) as f64 / 1e9);
        busy.encode(encoder.encode_descriptor(
            "network_busy_seconds",
            "Time spent judging flows (throughput = network_flows_judged / network_busy_seconds)",
            None,
            busy.metric_type(),
        )?)?;
        Ok(())
    }
}
