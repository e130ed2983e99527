//! Spine throughput: durable, group-committed publishes per second on SQLite (WAL,
//! synchronous=FULL), with one consumer reading and acknowledging, for one
//! and for several concurrent producers. Prints numbers; asserts nothing
//! about speed. Run: `cargo bench -p caduceus-spine`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use caduceus_core::config::Config;
use caduceus_core::event::EventId;
use caduceus_core::{Actor, Payload, SecurityEvent, Severity, Status, Timestamp};
use caduceus_spine::{InProcessSpine, Spine};

fn event(i: usize) -> SecurityEvent {
    let at = Timestamp(1_764_428_400_000);
    SecurityEvent::new(
        EventId::new(at),
        at,
        Severity::Informational,
        Status::Success,
        Actor::system(),
        None,
        format!("bench {i}"),
        Payload::ConfigChange { key: "bench".into(), detail: "x".repeat(64) },
    )
    .unwrap()
}

async fn run(producers: usize, per_producer: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = caduceus_store::open(&Config::with_data_dir(dir.path())).await.unwrap();
    let spine = Arc::new(InProcessSpine::open(store, 1024, Duration::from_secs(30)).await.unwrap());
    let mut sub = spine.subscribe("bench").await.unwrap();
    let total = producers * per_producer;
    let consumer = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            let e = sub.next().await.unwrap().unwrap();
            n += 1;
            if n % 64 == 0 || n == total {
                sub.ack(e.seq).await.unwrap();
            }
        }
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let spine = spine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_producer {
                spine.publish(event(p * per_producer + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let published = started.elapsed().as_secs_f64();
    consumer.await.unwrap();
    let consumed = started.elapsed().as_secs_f64();
    (total as f64 / published, total as f64 / consumed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    println!("spine publish, SQLite WAL synchronous=FULL, group commit (one fsync per batch), {events} events");
    for producers in [1, 4, 16, 64] {
        let (publish_rate, end_to_end) = run(producers, events / producers).await;
        println!(
            "  {producers:>2} producer(s): {publish_rate:>8.0} durable publishes/s, {end_to_end:>8.0} events/s through to the consumer"
        );
    }
}
