//! Device telemetry over MQTT: subscribes to a broker (Mosquitto or any
//! MQTT 3.1.1 broker) and hands each publish on as a [`Telemetry`] record
//! over a bounded channel, reconnecting with backoff when the broker goes
//! away. The record keeps the topic, the device named by a topic segment,
//! and the payload as fields: a JSON object's numbers, booleans and short
//! strings (two levels deep, capped, values under patient-identifying keys
//! masked), a bare number as `value`, anything else as its length only.
//!
//! `mqtt://` is plain TCP (port 1883); `mqtts://` is TLS (port 8883), the broker's certificate
//! checked against a CA file when one is given, else the system's trusted roots, and its name
//! against the host in the URL. There is no way to turn the check off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caduceus_core::{Clock, Payload, Redacted, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::NetError;
use crate::util::{cap_chars, clean_token};

/// Most fields kept from one JSON payload.
pub const MAX_TELEMETRY_FIELDS: usize = 64;
/// Longest string value kept from a payload, in characters.
const MAX_STRING_CHARS: usize = 64;
/// Keys whose string values are masked: telemetry should name devices, not
/// patients, but some devices put the patient in their messages.
const PATIENT_KEYS: &[&str] = &["patient", "name", "mrn", "dob", "birth", "ssn", "address", "phone", "email"];

/// Broker login. The password never prints.
#[derive(Clone, Debug)]
pub struct MqttCredentials {
    pub username: String,
    pub password: Redacted<String>,
}

/// Where and what to subscribe.
#[derive(Clone, Debug)]
pub struct MqttInput {
    /// `mqtt://host:port` (port 1883 when left out).
    pub broker: String,
    /// Topic filters (`+` and `#` wildcards allowed).
    pub topics: Vec<String>,
    pub client_id: String,
    /// Larger publishes are refused by the client (the connection is
    /// dropped and re-established).
    pub max_payload_bytes: usize,
    /// Which `/`-separated segment of the topic names the device (0-based):
    /// with 1, `icu/pump-17/status` comes from `pump-17`.
    pub device_segment: usize,
    /// Telemetry records waiting for the consumer; more are dropped and counted.
    pub channel_capacity: usize,
    pub keep_alive_secs: u64,
    /// Longest wait between reconnection attempts.
    pub max_backoff_secs: u64,
    pub credentials: Option<MqttCredentials>,
    /// PEM certificates trusted for an `mqtts://` broker (the hospital's CA). `None`: the
    /// system's trusted roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl MqttInput {
    /// Defaults for a broker and topics: 64 KiB payloads, device from
    /// segment 1, a channel of 1024.
    pub fn new(broker: impl Into<String>, topics: Vec<String>, client_id: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
            topics,
            client_id: client_id.into(),
            max_payload_bytes: 64 * 1024,
            device_segment: 1,
            channel_capacity: 1024,
            keep_alive_secs: 30,
            max_backoff_secs: 30,
            credentials: None,
            ca_pem: None,
        }
    }
}

/// One message from a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    pub topic: String,
    /// The device, from the configured topic segment.
    pub device: Option<String>,
    /// `data` (a JSON object's kept fields) or `value` (a number), and
    /// always `payload_bytes`.
    pub fields: Map<String, Value>,
    pub received_at: Timestamp,
}

impl Telemetry {
    /// Builds the record from a received publish.
    pub fn from_publish(topic: &str, payload: &[u8], device_segment: usize, received_at: Timestamp) -> Self {
        let topic = cap_chars(topic, 256);
        let device = topic.split('/').nth(device_segment).and_then(|s| clean_token(s.as_bytes(), 64));
        let mut fields = Map::new();
        fields.insert("payload_bytes".into(), payload.len().into());
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(object)) => {
                let mut data = Map::new();
                let mut budget = MAX_TELEMETRY_FIELDS;
                keep_fields(&object, &mut data, 0, &mut budget);
                fields.insert("data".into(), Value::Object(data));
            }
            _ => {
                let number = std::str::from_utf8(payload).ok().and_then(|t| t.trim().parse::<f64>().ok());
                if let Some(n) = number.and_then(serde_json::Number::from_f64) {
                    fields.insert("value".into(), Value::Number(n));
                }
            }
        }
        Self { topic, device, fields, received_at }
    }

    /// The record as a spine payload: product `caduceus`, service `mqtt`,
    /// category `device_telemetry`; fields `topic`, `device`, `payload_bytes`
    /// and `data` or `value`.
    pub fn to_payload(&self) -> Payload {
        let mut fields = self.fields.clone();
        fields.insert("topic".into(), self.topic.clone().into());
        if let Some(device) = &self.device {
            fields.insert("device".into(), device.clone().into());
        }
        Payload::LogRecord {
            product: Some("caduceus".into()),
            service: Some("mqtt".into()),
            category: Some("device_telemetry".into()),
            fields,
        }
    }
}

/// Copies numbers, booleans and short strings, two levels deep, at most
/// [`MAX_TELEMETRY_FIELDS`] values in all.
fn keep_fields(object: &Map<String, Value>, out: &mut Map<String, Value>, depth: usize, budget: &mut usize) {
    for (key, value) in object {
        if *budget == 0 {
            return;
        }
        let key = cap_chars(key, 64);
        let lower = key.to_ascii_lowercase();
        let kept = match value {
            Value::Number(_) | Value::Bool(_) => value.clone(),
            Value::String(_) if PATIENT_KEYS.iter().any(|k| lower.contains(k)) => Value::String("***".into()),
            Value::String(s) => Value::String(cap_chars(s, MAX_STRING_CHARS)),
            Value::Object(inner) if depth == 0 => {
                let mut nested = Map::new();
                keep_fields(inner, &mut nested, depth + 1, budget);
                if nested.is_empty() {
                    continue;
                }
                out.insert(key, Value::Object(nested));
                continue;
            }
            _ => continue,
        };
        *budget -= 1;
        out.insert(key, kept);
    }
}

/// Counters of a running input.
#[derive(Debug, Default)]
pub struct MqttStats {
    pub received: AtomicU64,
    /// Dropped because the channel was full.
    pub dropped: AtomicU64,
    pub connects: AtomicU64,
    pub connection_errors: AtomicU64,
}

/// The running input: its task and counters.
pub struct MqttHandle {
    pub task: JoinHandle<()>,
    pub stats: Arc<MqttStats>,
}

/// Where the broker is: host, port, and whether to speak TLS.
#[derive(Debug, PartialEq, Eq)]
struct Broker {
    host: String,
    port: u16,
    tls: bool,
}

fn parse_broker(url: &str) -> Result<Broker, NetError> {
    let (rest, tls) = if let Some(rest) = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("ssl://")) {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")) {
        (rest, false)
    } else {
        return Err(NetError::Mqtt("broker must be mqtt://host:port or mqtts://host:port".into()));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| NetError::Mqtt("bad broker address".into()))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| NetError::Mqtt("bad broker port".into()))?,
        None if tls => 8883,
        None => 1883,
    };
    if host.is_empty() {
        return Err(NetError::Mqtt("broker host is empty".into()));
    }
    Ok(Broker { host: host.to_owned(), port, tls })
}

/// Most certificates read from a CA file.
const MAX_CA_CERTS: usize = 1000;

/// A TLS client configuration trusting `ca_pem`'s certificates, or the system's roots.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, NetError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let mut read = 0;
            for cert in CertificateDer::pem_slice_iter(pem).take(MAX_CA_CERTS) {
                let cert = cert.map_err(|e| NetError::Mqtt(format!("the MQTT CA file is not PEM: {e}")))?;
                roots.add(cert).map_err(|e| NetError::Mqtt(format!("a certificate in the MQTT CA file: {e}")))?;
                read += 1;
            }
            if read == 0 {
                return Err(NetError::Mqtt("the MQTT CA file holds no certificate".into()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(NetError::Mqtt("no trusted roots on this system: give an MQTT CA file".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Mqtt(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl MqttInput {
    /// Starts the subscriber task on the current tokio runtime. Records
    /// arrive on the returned receiver; the task ends when it is dropped.
    pub fn spawn(self, clock: Arc<dyn Clock>) -> Result<(mpsc::Receiver<Telemetry>, MqttHandle), NetError> {
        let broker = parse_broker(&self.broker)?;
        if self.topics.is_empty() {
            return Err(NetError::Mqtt("no topics to subscribe".into()));
        }
        let mut options = MqttOptions::new(self.client_id.clone(), broker.host, broker.port);
        if broker.tls {
            let config = tls_config(self.ca_pem.as_deref())?;
            options.set_transport(rumqttc::Transport::tls_with_config(config.into()));
        }
        options.set_keep_alive(Duration::from_secs(self.keep_alive_secs.max(5)));
        options.set_clean_session(true);
        options.set_max_packet_size(self.max_payload_bytes + 4096, 64 * 1024);
        if let Some(c) = &self.credentials {
            options.set_credentials(c.username.clone(), c.password.expose().clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, self.topics.len() + 16);
        let (tx, rx) = mpsc::channel(self.channel_capacity.max(1));
        let stats = Arc::new(MqttStats::default());
        let task_stats = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            let min_backoff = Duration::from_millis(500);
            let max_backoff = Duration::from_secs(self.max_backoff_secs.max(1));
            let mut backoff = min_backoff;
            loop {
                if tx.is_closed() {
                    let _ = client.try_disconnect();
                    return;
                }
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    () = tx.closed() => {
                        let _ = client.try_disconnect();
                        return;
                    }
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        task_stats.connects.fetch_add(1, Ordering::Relaxed);
                        backoff = min_backoff;
                        for topic in &self.topics {
                            if let Err(e) = client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                                tracing::warn!(error = %e, "mqtt subscribe request failed");
                            }
                        }
                        tracing::info!(broker = %self.broker, topics = self.topics.len(), "mqtt connected");
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        task_stats.received.fetch_add(1, Ordering::Relaxed);
                        let record =
                            Telemetry::from_publish(&publish.topic, &publish.payload, self.device_segment, clock.now());
                        if tx.try_send(record).is_err() {
                            task_stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        task_stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(broker = %self.broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connection failed");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = tx.closed() => return,
                        }
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
        });
        Ok((rx, MqttHandle { task, stats }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn payloads_become_bounded_fields() {
        let at = Timestamp(1_717_000_000_000);
        let t = Telemetry::from_publish(
            "icu/pump-17/status",
            br#"{"rate_ml_h": 12.5, "occlusion": false, "patient_name": "Jane Roe", "drug": "heparin", "battery": {"pct": 81, "cells": [1,2]}, "log": [1,2,3]}"#,
            1,
            at,
        );
        assert_eq!(t.device.as_deref(), Some("pump-17"));
        let data = &t.fields["data"];
        assert_eq!(data["rate_ml_h"], 12.5);
        assert_eq!(data["patient_name"], "***");
        assert_eq!(data["battery"]["pct"], 81);
        assert!(data["battery"].get("cells").is_none());
        assert!(data.get("log").is_none());
        let Payload::LogRecord { service, category, fields, .. } = t.to_payload() else { panic!() };
        assert_eq!((service.as_deref(), category.as_deref()), (Some("mqtt"), Some("device_telemetry")));
        assert_eq!(fields["topic"], "icu/pump-17/status");
        assert!(!serde_json::to_string(&fields).unwrap().contains("Roe"));

        let n = Telemetry::from_publish("ward/monitor-3/spo2", b" 97 ", 1, at);
        assert_eq!(n.fields["value"], 97.0);
        let raw = Telemetry::from_publish("x", &[0xFF, 0x00, 0x12], 1, at);
        assert_eq!(raw.fields.len(), 1);
        assert_eq!(raw.fields["payload_bytes"], 3);
        assert_eq!(raw.device, None);
        let many: String = format!("{{{}}}", (0..200).map(|i| format!("\"k{i}\": {i}")).collect::<Vec<_>>().join(","));
        let big = Telemetry::from_publish("a/b", many.as_bytes(), 1, at);
        assert_eq!(big.fields["data"].as_object().unwrap().len(), MAX_TELEMETRY_FIELDS);
        let nested = format!("{{{}}}", (0..20).map(|i| format!("\"o{i}\": {many}")).collect::<Vec<_>>().join(","));
        let capped = Telemetry::from_publish("a/b", nested.as_bytes(), 1, at);
        assert!(serde_json::to_string(&capped.fields).unwrap().len() < 4096);
    }

    #[test]
    fn broker_addresses() {
        let at = |host: &str, port, tls| Broker { host: host.into(), port, tls };
        assert_eq!(parse_broker("mqtt://127.0.0.1:1883").unwrap(), at("127.0.0.1", 1883, false));
        assert_eq!(parse_broker("mqtt://broker.local").unwrap(), at("broker.local", 1883, false));
        assert_eq!(parse_broker("tcp://[::1]:1884").unwrap(), at("::1", 1884, false));
        assert_eq!(parse_broker("mqtt://[fd00::5]").unwrap(), at("fd00::5", 1883, false));
        assert_eq!(parse_broker("mqtts://broker.local").unwrap(), at("broker.local", 8883, true));
        assert_eq!(parse_broker("mqtts://x:8884").unwrap(), at("x", 8884, true));
        assert!(parse_broker("http://x:8883").is_err());
        assert!(parse_broker("mqtt://:1883").is_err());
        assert!(parse_broker("mqtt://x:port").is_err());
    }

    #[test]
    fn ca_files_are_checked() {
        assert!(tls_config(Some(b"not pem")).unwrap_err().to_string().contains("no certificate"));
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(tls_config(Some(bad)).is_err());
    }
}
