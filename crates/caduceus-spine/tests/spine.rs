//! Spine behaviour: ordering, exactly-once delivery, back-pressure when full,
//! explicit errors instead of silent loss, durability across restart.
//! The crate's only integration-test binary: add tests here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use caduceus_core::config::Config;
use caduceus_core::event::EventId;
use caduceus_core::{Actor, Payload, SecurityEvent, Severity, Status, Timestamp};
use caduceus_spine::{InProcessSpine, Spine, SpineError};
use caduceus_store::Store;

async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = caduceus_store::open(&Config::with_data_dir(dir.path())).await.unwrap();
    (store, dir)
}

fn event(label: &str) -> SecurityEvent {
    let at = Timestamp(1_764_428_400_000);
    SecurityEvent::new(
        EventId::new(at),
        at,
        Severity::Informational,
        Status::Success,
        Actor::system(),
        None,
        label,
        Payload::ConfigChange { key: "test".into(), detail: label.into() },
    )
    .unwrap()
}

async fn spine(store: &Arc<dyn Store>, capacity: usize, timeout_ms: u64) -> InProcessSpine {
    InProcessSpine::open(store.clone(), capacity, Duration::from_millis(timeout_ms)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_one_consumer_in_order_exactly_once() {
    let (store, _dir) = store().await;
    let spine = Arc::new(spine(&store, 16, 10_000).await);
    let mut sub = spine.subscribe("ledger").await.unwrap();
    const PRODUCERS: usize = 4;
    const EACH: usize = 100;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let spine = spine.clone();
        producers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                seqs.push(spine.publish(event(&format!("p{p}-{i:04}"))).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut seen = Vec::new();
    let mut per_producer: Vec<Vec<String>> = vec![Vec::new(); PRODUCERS];
    while seen.len() < PRODUCERS * EACH {
        let delivered = sub.next().await.unwrap().unwrap();
        let message = delivered.event.message().to_owned();
        let p: usize = message[1..2].parse().unwrap();
        per_producer[p].push(message);
        seen.push(delivered.seq);
        sub.ack(delivered.seq).await.unwrap();
    }
    let expected: Vec<u64> = (1..=(PRODUCERS * EACH) as u64).collect();
    assert_eq!(seen, expected, "every event exactly once, in seq order");
    for (p, messages) in per_producer.iter().enumerate() {
        let mut sorted = messages.clone();
        sorted.sort();
        assert_eq!(messages, &sorted, "producer {p}'s events arrived out of its order");
        assert_eq!(messages.len(), EACH);
    }
    for producer in producers {
        let seqs = producer.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
    let stats = spine.stats();
    assert_eq!(stats.published, (PRODUCERS * EACH) as u64);
    assert_eq!(stats.delivered, (PRODUCERS * EACH) as u64);
    assert_eq!(stats.rejected_full + stats.rejected_closed + stats.persist_failed, 0);
    assert_eq!(stats.depth, 0);
}

#[tokio::test]
async fn filling_past_the_bound_gives_back_pressure_and_counted_errors() {
    let (store, _dir) = store().await;
    let spine = Arc::new(spine(&store, 4, 50).await);
    let mut sub = spine.subscribe("slow").await.unwrap();
    for i in 0..4 {
        spine.publish(event(&format!("e{i}"))).await.unwrap();
    }
    // Full: the non-waiting publish fails at once, the waiting one after its timeout.
    let err = spine.try_publish(event("over-1")).await.unwrap_err();
    assert!(matches!(err, SpineError::Full { depth: 4, capacity: 4 }), "{err}");
    let err = spine.publish(event("over-2")).await.unwrap_err();
    assert!(matches!(err, SpineError::Full { .. }), "{err}");
    let stats = spine.stats();
    assert_eq!((stats.published, stats.rejected_full, stats.depth), (4, 2, 4));
    // Nothing refused was stored: the log holds exactly what was acknowledged.
    assert_eq!(store.last_seq().await.unwrap(), 4);

    // A producer keeps waiting while the spine is full, and proceeds once the
    // consumer acknowledges.
    let waiting = {
        let spine = spine.clone();
        tokio::spawn(async move {
            // Retry until room appears: each attempt waits 50 ms.
            loop {
                match spine.publish(event("waited")).await {
                    Ok(receipt) => return receipt.seq,
                    Err(SpineError::Full { .. }) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!waiting.is_finished(), "the producer must wait while the spine is full");
    let first = sub.next().await.unwrap().unwrap();
    let second = sub.next().await.unwrap().unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    sub.ack(2).await.unwrap();
    let seq = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    assert_eq!(seq, 5);
    assert!(spine.stats().rejected_full >= 3, "each refused attempt is counted");
}

#[tokio::test]
async fn the_slowest_of_several_consumers_bounds_producers() {
    let (store, _dir) = store().await;
    let spine = spine(&store, 3, 20).await;
    let mut fast = spine.subscribe("fast").await.unwrap();
    let mut slow = spine.subscribe("slow").await.unwrap();
    for i in 0..3 {
        spine.publish(event(&format!("e{i}"))).await.unwrap();
    }
    for _ in 0..3 {
        let e = fast.next().await.unwrap().unwrap();
        fast.ack(e.seq).await.unwrap();
    }
    assert!(matches!(spine.try_publish(event("x")).await, Err(SpineError::Full { .. })));
    let e = slow.next().await.unwrap().unwrap();
    slow.ack(e.seq).await.unwrap();
    spine.try_publish(event("fits")).await.unwrap();
    // Dropping a consumer frees the room it held.
    drop(slow);
    spine.try_publish(event("a")).await.unwrap();
    spine.try_publish(event("b")).await.unwrap();
    let stats = spine.stats();
    assert_eq!(stats.consumers, vec![("fast".to_owned(), 3)]);
}

#[tokio::test]
async fn published_means_durable_and_consumers_resume_after_restart() {
    let (store, dir) = store().await;
    let spine = spine(&store, 8, 100).await;
    let mut sub = spine.subscribe("ledger").await.unwrap();
    let receipts: Vec<_> = {
        let mut r = Vec::new();
        for i in 0..5 {
            r.push(spine.publish(event(&format!("e{i}"))).await.unwrap());
        }
        r
    };
    // Each acknowledged event is already in the store, with the digest the receipt gave.
    let stored = store.events_after(0, 10).await.unwrap();
    assert_eq!(stored.len(), 5);
    for (s, r) in stored.iter().zip(&receipts) {
        assert_eq!((s.seq, s.digest), (r.seq, r.digest));
    }
    for _ in 0..3 {
        sub.next().await.unwrap().unwrap();
    }
    sub.ack(2).await.unwrap(); // delivered 3, acknowledged 2
    drop(sub);
    spine.close().await;
    store.close().await;

    // "Restart": a new store and spine on the same data directory.
    let store = caduceus_store::open(&Config::with_data_dir(dir.path())).await.unwrap();
    let spine = self::spine(&store, 8, 100).await;
    let seq = spine.publish(event("after restart")).await.unwrap().seq;
    assert_eq!(seq, 6, "numbering continues after the last stored event");
    let mut sub = spine.subscribe("ledger").await.unwrap();
    let resumed = sub.next().await.unwrap().unwrap();
    assert_eq!(resumed.seq, 3, "delivery resumes after the last acknowledged event");
}

#[tokio::test]
async fn a_late_subscriber_catches_up_from_storage() {
    let (store, _dir) = store().await;
    let spine = spine(&store, 2, 50).await;
    // No consumer yet: events do not hold room, so more than `capacity` fit.
    for i in 0..600 {
        spine.try_publish(event(&format!("e{i}"))).await.unwrap();
    }
    let mut sub = spine.subscribe("detect").await.unwrap();
    for expected in 1..=600 {
        let e = sub.next().await.unwrap().unwrap();
        assert_eq!(e.seq, expected);
    }
    sub.ack(600).await.unwrap();
    assert_eq!(spine.stats().depth, 0);
}

#[tokio::test]
async fn close_drains_consumers_and_refuses_producers() {
    let (store, _dir) = store().await;
    let spine = Arc::new(spine(&store, 8, 100).await);
    let mut sub = spine.subscribe("ledger").await.unwrap();
    spine.publish(event("one")).await.unwrap();
    spine.publish(event("two")).await.unwrap();
    let waiter = {
        let spine = spine.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            spine.close().await;
        })
    };
    assert_eq!(sub.next().await.unwrap().unwrap().seq, 1);
    assert_eq!(sub.next().await.unwrap().unwrap().seq, 2);
    // Waits until the close, then ends.
    assert!(sub.next().await.unwrap().is_none());
    waiter.await.unwrap();
    assert!(matches!(spine.publish(event("late")).await, Err(SpineError::Closed)));
    assert!(matches!(spine.try_publish(event("late")).await, Err(SpineError::Closed)));
    assert_eq!(spine.stats().rejected_closed, 2);
}

#[tokio::test]
async fn misuse_gets_explicit_errors() {
    let (store, _dir) = store().await;
    let spine = spine(&store, 8, 100).await;
    let mut sub = spine.subscribe("ledger").await.unwrap();
    assert!(matches!(spine.subscribe("ledger").await, Err(SpineError::AlreadySubscribed(_))));
    spine.publish(event("one")).await.unwrap();
    let err = sub.ack(1).await.unwrap_err();
    assert!(matches!(err, SpineError::AckBeyondDelivered { seq: 1, delivered: 0, .. }), "{err}");
    assert_eq!(sub.consumer(), "ledger");
}

#[tokio::test]
async fn another_writer_on_the_same_store_does_not_break_publishing() {
    let (store, _dir) = store().await;
    let server = spine(&store, 8, 100).await;
    let admin_cli = spine(&store, 8, 100).await;
    assert_eq!(server.publish(event("server 1")).await.unwrap().seq, 1);
    assert_eq!(admin_cli.publish(event("cli 1")).await.unwrap().seq, 2);
    // The server's idea of the head is stale; it must continue after the CLI's event.
    assert_eq!(server.publish(event("server 2")).await.unwrap().seq, 3);
    let all = store.events_after(0, 10).await.unwrap();
    let messages: Vec<&str> = all.iter().map(|e| e.event.message()).collect();
    assert_eq!(messages, vec!["server 1", "cli 1", "server 2"]);
}

#[tokio::test]
async fn a_cancelled_publish_never_miscounts_the_room() {
    let (store, _dir) = store().await;
    let spine = spine(&store, 4, 50).await;
    let _slow = spine.subscribe("slow").await.unwrap();
    // Three publishers give up (a client disconnecting) right after handing
    // their events over; the events may still be committed, but the room
    // they hold must be accounted exactly.
    for i in 0..3 {
        let _ = tokio::time::timeout(Duration::ZERO, spine.publish(event(&format!("cancelled {i}")))).await;
    }
    let mut accepted = 0;
    for i in 0..10 {
        match spine.publish(event(&format!("after {i}"))).await {
            Ok(_) => accepted += 1,
            Err(SpineError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let stored = store.last_seq().await.unwrap();
    assert_eq!(stored, 4, "exactly `capacity` events are in flight, cancelled ones included");
    assert_eq!(accepted + 3, 4);
}
