//! A real publish through the Mosquitto broker on 127.0.0.1:1883, received
//! by `MqttInput`. Skips (loudly) when no broker listens there, unless
//! `TEST_REQUIRE_MQTT=1`, when it fails instead.
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
    assert!(MqttInput::new("mqtts://x", vec!["t".into()], "c").spawn(Arc::new(SystemClock)).is_err());
    assert!(MqttInput::new("mqtt://x", vec![], "c").spawn(Arc::new(SystemClock)).is_err());
}
