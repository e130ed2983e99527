//! The single-machine spine: events are persisted to the store, consumers
//! read them back from the store in batches, and a semaphore of `capacity`
//! permits bounds how far producers may run ahead of the slowest consumer.
//!
//! Why read from the store instead of an in-memory queue: the store already
//! holds every event durably, so a consumer that starts late or restarts after
//! a crash catches up from the same code path, and memory stays flat however
//! far a consumer falls behind.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use caduceus_core::SecurityEvent;
use caduceus_store::{Store, StoreError, StoredEvent};
use tokio::sync::{Semaphore, watch};

use crate::{Receipt, Spine, SpineError, SpineStats, Subscription};

/// How many events a consumer reads from the store at a time.
const READ_BATCH: u32 = 256;

/// How often an append that collided with another writer is retried.
const MAX_APPEND_RETRIES: u32 = 8;

#[derive(Clone)]
pub struct InProcessSpine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    capacity: usize,
    publish_timeout: Duration,
    /// One permit per event that may still be in flight.
    room: Semaphore,
    /// The highest persisted seq. Held across the append so seqs are
    /// assigned and persisted in the same order.
    head: tokio::sync::Mutex<u64>,
    /// Announces the new head to waiting consumers.
    head_tx: watch::Sender<u64>,
    state: Mutex<State>,
    closed: AtomicBool,
    published: AtomicU64,
    rejected_full: AtomicU64,
    rejected_closed: AtomicU64,
    persist_failed: AtomicU64,
    delivered: AtomicU64,
}

struct State {
    /// Subscribed consumers and their last acknowledged seq.
    consumers: HashMap<String, u64>,
    /// Seqs of events published here whose permit is still held, in order.
    /// At most `capacity` long. Events appended by another process sharing
    /// the store hold no permit here.
    held: VecDeque<u64>,
}

impl InProcessSpine {
    /// A spine over `store`, continuing after the last event already in it.
    pub async fn open(store: Arc<dyn Store>, capacity: usize, publish_timeout: Duration) -> Result<Self, SpineError> {
        let head = store.last_seq().await?;
        let (head_tx, _) = watch::channel(head);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                capacity,
                publish_timeout,
                room: Semaphore::new(capacity),
                head: tokio::sync::Mutex::new(head),
                head_tx,
                state: Mutex::new(State { consumers: HashMap::new(), held: VecDeque::new() }),
                closed: AtomicBool::new(false),
                published: AtomicU64::new(0),
                rejected_full: AtomicU64::new(0),
                rejected_closed: AtomicU64::new(0),
                persist_failed: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            }),
        })
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding
        // it; the state (a map of cursors) is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn head_now(&self) -> u64 {
        *self.head_tx.borrow()
    }

    fn depth(&self, state: &State) -> u64 {
        let head = self.head_now();
        state.consumers.values().map(|acked| head.saturating_sub(*acked)).max().unwrap_or(0)
    }

    fn full_error(&self) -> SpineError {
        self.rejected_full.fetch_add(1, Ordering::Relaxed);
        let depth = self.depth(&self.state());
        SpineError::Full { depth, capacity: self.capacity }
    }

    /// Return the permits of every event all consumers have acknowledged.
    fn release(&self, state: &mut State, head: u64) {
        let floor = state.consumers.values().copied().min().unwrap_or(head).min(head);
        let mut freed = 0;
        while state.held.front().is_some_and(|seq| *seq <= floor) {
            state.held.pop_front();
            freed += 1;
        }
        if freed > 0 {
            self.room.add_permits(freed);
        }
    }

    async fn publish_with(&self, event: SecurityEvent, wait: bool) -> Result<Receipt, SpineError> {
        if self.closed.load(Ordering::Acquire) {
            self.rejected_closed.fetch_add(1, Ordering::Relaxed);
            return Err(SpineError::Closed);
        }
        let permit = if wait {
            match tokio::time::timeout(self.publish_timeout, self.room.acquire()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => {
                    self.rejected_closed.fetch_add(1, Ordering::Relaxed);
                    return Err(SpineError::Closed);
                }
                Err(_elapsed) => return Err(self.full_error()),
            }
        } else {
            match self.room.try_acquire() {
                Ok(permit) => permit,
                Err(tokio::sync::TryAcquireError::Closed) => {
                    self.rejected_closed.fetch_add(1, Ordering::Relaxed);
                    return Err(SpineError::Closed);
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => return Err(self.full_error()),
            }
        };

        let mut head = self.head.lock().await;
        let mut stored = match StoredEvent::new(*head + 1, event) {
            Ok(stored) => stored,
            Err(e) => {
                self.persist_failed.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let mut attempts = 0;
        loop {
            match self.store.append_events(std::slice::from_ref(&stored)).await {
                Ok(()) => break,
                // Another process sharing the store (an admin command, a
                // second server on PostgreSQL) appended first: continue
                // after its events.
                Err(StoreError::Conflict(_)) if attempts < MAX_APPEND_RETRIES => {
                    attempts += 1;
                    match self.store.last_seq().await {
                        Ok(last) => {
                            *head = last;
                            stored.seq = last + 1;
                        }
                        Err(e) => {
                            self.persist_failed.fetch_add(1, Ordering::Relaxed);
                            return Err(e.into());
                        }
                    }
                }
                Err(e) => {
                    // The permit drops back into the semaphore: nothing was published.
                    self.persist_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq = stored.seq, error = %e, "spine could not persist an event");
                    return Err(e.into());
                }
            }
        }
        let seq = stored.seq;
        // From here the event is durable: its permit is returned only when
        // every consumer has acknowledged it.
        permit.forget();
        *head = seq;
        self.head_tx.send_replace(seq);
        self.published.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.state();
            state.held.push_back(seq);
            self.release(&mut state, seq);
        }
        drop(head);
        Ok(Receipt { seq, digest: stored.digest })
    }
}

#[async_trait]
impl Spine for InProcessSpine {
    async fn publish(&self, event: SecurityEvent) -> Result<Receipt, SpineError> {
        self.inner.publish_with(event, true).await
    }

    async fn try_publish(&self, event: SecurityEvent) -> Result<Receipt, SpineError> {
        self.inner.publish_with(event, false).await
    }

    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>, SpineError> {
        let acked = self.inner.store.cursor(consumer).await?;
        {
            let mut state = self.inner.state();
            if state.consumers.contains_key(consumer) {
                return Err(SpineError::AlreadySubscribed(consumer.to_owned()));
            }
            state.consumers.insert(consumer.to_owned(), acked);
        }
        tracing::info!(consumer, acked, "spine consumer subscribed");
        Ok(Box::new(InProcessSubscription {
            inner: self.inner.clone(),
            consumer: consumer.to_owned(),
            delivered: acked,
            prefetched: VecDeque::new(),
            head_rx: self.inner.head_tx.subscribe(),
        }))
    }

    fn stats(&self) -> SpineStats {
        let inner = &self.inner;
        let state = inner.state();
        let mut consumers: Vec<(String, u64)> = state.consumers.iter().map(|(k, v)| (k.clone(), *v)).collect();
        consumers.sort();
        SpineStats {
            capacity: inner.capacity,
            head: inner.head_now(),
            depth: inner.depth(&state),
            published: inner.published.load(Ordering::Relaxed),
            rejected_full: inner.rejected_full.load(Ordering::Relaxed),
            rejected_closed: inner.rejected_closed.load(Ordering::Relaxed),
            persist_failed: inner.persist_failed.load(Ordering::Relaxed),
            delivered: inner.delivered.load(Ordering::Relaxed),
            consumers,
        }
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        // Wake producers waiting for room (they get `Closed`) ...
        self.inner.room.close();
        // ... and consumers waiting for events (they drain, then get `None`).
        // Taking the head lock waits for an in-flight append to finish.
        let head = *self.inner.head.lock().await;
        self.inner.head_tx.send_replace(head);
    }
}

struct InProcessSubscription {
    inner: Arc<Inner>,
    consumer: String,
    /// Highest seq handed to this consumer.
    delivered: u64,
    prefetched: VecDeque<StoredEvent>,
    head_rx: watch::Receiver<u64>,
}

#[async_trait]
impl Subscription for InProcessSubscription {
    fn consumer(&self) -> &str {
        &self.consumer
    }

    async fn next(&mut self) -> Result<Option<StoredEvent>, SpineError> {
        loop {
            if let Some(event) = self.prefetched.pop_front() {
                self.delivered = event.seq;
                self.inner.delivered.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(event));
            }
            let head = *self.head_rx.borrow_and_update();
            if self.delivered < head {
                let batch = self.inner.store.events_after(self.delivered, READ_BATCH).await?;
                // The store never holds gaps; check the order anyway, since
                // a consumer that skipped an event would break the guarantee.
                for (expected, event) in (self.delivered + 1..).zip(batch) {
                    if event.seq != expected {
                        return Err(caduceus_store::StoreError::Corrupt(format!(
                            "spine gap: expected seq {expected}, found {}",
                            event.seq
                        ))
                        .into());
                    }
                    self.prefetched.push_back(event);
                }
                continue;
            }
            if self.inner.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            if self.head_rx.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn ack(&mut self, seq: u64) -> Result<(), SpineError> {
        if seq > self.delivered {
            return Err(SpineError::AckBeyondDelivered {
                consumer: self.consumer.clone(),
                seq,
                delivered: self.delivered,
            });
        }
        self.inner.store.set_cursor(&self.consumer, seq).await?;
        let head = self.inner.head_now();
        let mut state = self.inner.state();
        if let Some(acked) = state.consumers.get_mut(&self.consumer) {
            *acked = (*acked).max(seq);
        }
        self.inner.release(&mut state, head);
        Ok(())
    }
}

impl Drop for InProcessSubscription {
    fn drop(&mut self) {
        // A consumer that goes away must not hold producers back.
        let head = self.inner.head_now();
        let mut state = self.inner.state();
        state.consumers.remove(&self.consumer);
        self.inner.release(&mut state, head);
    }
}
