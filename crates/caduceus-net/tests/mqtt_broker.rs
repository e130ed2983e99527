//! A real publish through the Mosquitto broker on 127.0.0.1:1883, received
//! by `MqttInput`; and over TLS, through a Mosquitto the test starts with a
//! certificate from its own CA. Each skips (loudly) when there is no broker
//! (or no `mosquitto` binary), unless `TEST_REQUIRE_MQTT=1`, when it fails
//! instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use caduceus_core::{Payload, SystemClock};
use caduceus_net::mqtt::MqttInput;
use rumqttc::{AsyncClient, MqttOptions, QoS};

const BROKER: (&str, u16) = ("127.0.0.1", 1883);

async fn broker_listening() -> bool {
    let connect = tokio::net::TcpStream::connect(BROKER);
    matches!(tokio::time::timeout(Duration::from_secs(2), connect).await, Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_published_through_mosquitto_arrives() {
    if !broker_listening().await {
        if std::env::var("TEST_REQUIRE_MQTT").as_deref() == Ok("1") {
            panic!("no MQTT broker on {}:{} and TEST_REQUIRE_MQTT=1", BROKER.0, BROKER.1);
        }
        eprintln!("SKIP telemetry_published_through_mosquitto_arrives: no MQTT broker on {}:{}", BROKER.0, BROKER.1);
        return;
    }
    // A topic of our own, so parallel runs do not see each other.
    let run = std::process::id();
    let topic = format!("caduceus-test/{run}/pump-17/status");
    let input = MqttInput {
        device_segment: 2,
        ..MqttInput::new(
            format!("mqtt://{}:{}", BROKER.0, BROKER.1),
            vec![format!("caduceus-test/{run}/+/status")],
            format!("caduceus-sub-{run}"),
        )
    };
    let (mut rx, handle) = input.spawn(Arc::new(SystemClock)).unwrap();

    // The publisher: a separate rumqttc client, like a device gateway.
    let mut options = MqttOptions::new(format!("caduceus-pub-{run}"), BROKER.0, BROKER.1);
    options.set_keep_alive(Duration::from_secs(10));
    let (publisher, mut eventloop) = AsyncClient::new(options, 16);
    let pump = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("publisher connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let payload = br#"{"rate_ml_h": 12.5, "occlusion": false, "battery": {"pct": 81}}"#;
    // Publish until the subscriber (which may still be subscribing) gets it.
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            publisher.publish(topic.clone(), QoS::AtLeastOnce, false, payload.to_vec()).await.unwrap();
            match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                Ok(Some(t)) => break t,
                Ok(None) => panic!("subscriber ended"),
                Err(_) => continue,
            }
        }
    })
    .await
    .expect("no telemetry within 20 s");
    assert_eq!(received.topic, topic);
    assert_eq!(received.device.as_deref(), Some("pump-17"));
    assert_eq!(received.fields["data"]["rate_ml_h"], 12.5);
    assert_eq!(received.fields["data"]["battery"]["pct"], 81);
    assert_eq!(received.fields["payload_bytes"], payload.len());
    let Payload::LogRecord { category, .. } = received.to_payload() else { panic!() };
    assert_eq!(category.as_deref(), Some("device_telemetry"));
    assert!(handle.stats.connects.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), handle.task)
        .await
        .expect("subscriber stops when its receiver is dropped")
        .unwrap();
    pump.abort();
}

#[tokio::test]
async fn unreachable_broker_is_retried_until_the_receiver_goes() {
    // Nothing listens on port 1 of the loopback address.
    let input = MqttInput::new("mqtt://127.0.0.1:1", vec!["a/+/b".into()], "caduceus-retry");
    let (rx, handle) = input.spawn(Arc::new(SystemClock)).unwrap();
    let errors = || handle.stats.connection_errors.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), async {
        while errors() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the input keeps retrying");
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), handle.task).await.expect("stops during its backoff").unwrap();
    assert!(MqttInput::new("http://x", vec!["t".into()], "c").spawn(Arc::new(SystemClock)).is_err());
    let bad_ca =
        MqttInput { ca_pem: Some(b"not a certificate".to_vec()), ..MqttInput::new("mqtts://x", vec!["t".into()], "c") };
    assert!(bad_ca.spawn(Arc::new(SystemClock)).is_err());
    assert!(MqttInput::new("mqtt://x", vec![], "c").spawn(Arc::new(SystemClock)).is_err());
}

/// A Mosquitto of the test's own with a TLS listener, its certificate issued by a CA the test
/// makes. Killed when dropped.
struct TlsBroker {
    child: std::process::Child,
    port: u16,
    ca_pem: String,
    dir: tempfile::TempDir,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

async fn tls_broker(mosquitto: &std::path::Path) -> TlsBroker {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Caduceus test hospital CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let ca_pem = ca.pem();
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("mosquitto.conf"),
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n\
             keyfile {d}/server.key\ntls_version tlsv1.2\npersistence false\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new(mosquitto)
        .arg("-c")
        .arg(dir.path().join("mosquitto.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let broker = TlsBroker { child, port, ca_pem, dir };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mosquitto did not listen on {port}");
}

/// `mqtts://`: the input trusts the hospital's CA and receives what a device publishes over
/// TLS with `mosquitto_pub`; an input that does not trust that CA never connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_tls_from_a_mosquitto_signed_by_our_ca() {
    let (Some(mosquitto), Some(publish)) = (program("mosquitto"), program("mosquitto_pub")) else {
        if std::env::var("TEST_REQUIRE_MQTT").as_deref() == Ok("1") {
            panic!("mosquitto and mosquitto_pub are needed and TEST_REQUIRE_MQTT=1");
        }
        eprintln!("SKIP telemetry_over_tls_from_a_mosquitto_signed_by_our_ca: no mosquitto binary");
        return;
    };
    let broker = tls_broker(&mosquitto).await;
    let url = format!("mqtts://localhost:{}", broker.port);
    let input = MqttInput {
        device_segment: 1,
        ca_pem: Some(broker.ca_pem.clone().into_bytes()),
        ..MqttInput::new(url.clone(), vec!["icu/+/status".into()], "caduceus-tls-sub")
    };
    let (mut rx, handle) = input.spawn(Arc::new(SystemClock)).unwrap();
    // Not trusting the broker's CA: a self-made CA of its own.
    let other = rcgen::CertifiedIssuer::self_signed(
        {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        },
        rcgen::KeyPair::generate().unwrap(),
    )
    .unwrap();
    let stranger = MqttInput {
        ca_pem: Some(other.pem().into_bytes()),
        ..MqttInput::new(url, vec!["icu/+/status".into()], "caduceus-tls-stranger")
    };
    let (mut stranger_rx, stranger_handle) = stranger.spawn(Arc::new(SystemClock)).unwrap();

    let payload = r#"{"rate_ml_h": 4.5, "occlusion": true}"#;
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let status = std::process::Command::new(&publish)
                .args(["-h", "localhost", "-p", &broker.port.to_string(), "-q", "1", "-t", "icu/pump-9/status"])
                .arg("--cafile")
                .arg(broker.dir.path().join("ca.pem"))
                .args(["-m", payload])
                .status()
                .unwrap();
            assert!(status.success(), "mosquitto_pub over TLS failed");
            match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                Ok(Some(t)) => break t,
                Ok(None) => panic!("subscriber ended"),
                Err(_) => continue,
            }
        }
    })
    .await
    .expect("no telemetry over TLS within 20 s");
    assert_eq!(received.device.as_deref(), Some("pump-9"));
    assert_eq!(received.fields["data"]["occlusion"], true);
    assert!(handle.stats.connects.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    assert!(stranger_rx.try_recv().is_err(), "an untrusted broker's messages were read");
    assert_eq!(stranger_handle.stats.connects.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(stranger_handle.stats.connection_errors.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    drop(rx);
    drop(stranger_rx);
    let _ = tokio::time::timeout(Duration::from_secs(5), handle.task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), stranger_handle.task).await;
}
