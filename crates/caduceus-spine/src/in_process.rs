//! The single-machine spine: events are persisted to the store, consumers
//! read them back from the store in batches, and a semaphore of `capacity`
//! permits bounds how far producers may run ahead of the slowest consumer.
//!
//! Group commit: publishers hand their event to one committer task and wait
//! for its answer. The committer writes everything that arrived while it was
//! busy in one transaction (one fsync), so throughput grows with the number
//! of concurrent publishers while each still waits for durability. Because
//! the commit runs in its own task, a publisher that goes away (an HTTP client
//! disconnecting) cannot interrupt a commit half-way; its event and its permit
//! travel together, so a cancelled publish never miscounts the room.
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::{Receipt, Spine, SpineError, SpineStats, Subscription};

/// How many events a consumer reads from the store at a time.
const READ_BATCH: u32 = 256;

/// How often an append that collided with another writer is retried.
const MAX_APPEND_RETRIES: u32 = 8;

/// Most events written in one group commit.
const MAX_GROUP: usize = 1024;

/// A publish on its way to the committer, with the permit it holds.
struct Queued {
    event: StoredEvent,
    permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Receipt, SpineError>>,
}

#[derive(Clone)]
pub struct InProcessSpine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    capacity: usize,
    publish_timeout: Duration,
    /// One permit per event that may still be in flight.
    room: Arc<Semaphore>,
    /// To the committer; taken away on close so the committer drains and ends.
    to_committer: Mutex<Option<mpsc::Sender<Queued>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// Announces the new head (highest persisted seq) to waiting consumers.
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
    /// Starts the committer task on the current tokio runtime.
    pub async fn open(store: Arc<dyn Store>, capacity: usize, publish_timeout: Duration) -> Result<Self, SpineError> {
        let head = store.last_seq().await?;
        let (head_tx, _) = watch::channel(head);
        // Never full: every queued publish holds one of `capacity` permits.
        let (to_committer, from_publishers) = mpsc::channel(capacity.max(1));
        let inner = Arc::new(Inner {
            store,
            capacity,
            publish_timeout,
            room: Arc::new(Semaphore::new(capacity)),
            to_committer: Mutex::new(Some(to_committer)),
            committer: Mutex::new(None),
            head_tx,
            state: Mutex::new(State { consumers: HashMap::new(), held: VecDeque::new() }),
            closed: AtomicBool::new(false),
            published: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            rejected_closed: AtomicU64::new(0),
            persist_failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        let task = tokio::spawn(committer(inner.clone(), from_publishers, head));
        *lock(&inner.committer) = Some(task);
        Ok(Self { inner })
    }
}

/// Lock a std mutex. A poisoned lock only means another thread panicked
/// while holding it; what these locks guard (cursors, a sender, a handle)
/// stays consistent at every await-free step, so carry on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The one writer: takes whatever publishes are waiting, commits them
/// together, answers each. Ends when the spine is closed and drained.
async fn committer(inner: Arc<Inner>, mut from_publishers: mpsc::Receiver<Queued>, mut head: u64) {
    let mut batch = Vec::with_capacity(MAX_GROUP);
    while from_publishers.recv_many(&mut batch, MAX_GROUP).await > 0 {
        head = inner.commit(head, std::mem::take(&mut batch)).await;
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
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

    fn closed_error(&self) -> SpineError {
        self.rejected_closed.fetch_add(1, Ordering::Relaxed);
        SpineError::Closed
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
            return Err(self.closed_error());
        }
        let permit = if wait {
            match tokio::time::timeout(self.publish_timeout, self.room.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => return Err(self.closed_error()),
                Err(_elapsed) => return Err(self.full_error()),
            }
        } else {
            match self.room.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(tokio::sync::TryAcquireError::Closed) => return Err(self.closed_error()),
                Err(tokio::sync::TryAcquireError::NoPermits) => return Err(self.full_error()),
            }
        };
        let event = match StoredEvent::new(0, event) {
            Ok(event) => event,
            Err(e) => {
                self.persist_failed.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let (reply, answer) = oneshot::channel();
        let sender = lock(&self.to_committer).clone();
        let Some(sender) = sender else { return Err(self.closed_error()) };
        let sent = sender.try_send(Queued { event, permit, reply });
        // Let go of the sender at once: the committer ends (on close) when
        // every sender is gone and the queue is drained.
        drop(sender);
        match sent {
            Ok(()) => {}
            // Cannot happen while every queued publish holds a permit, but
            // if it did, it is back-pressure, not loss.
            Err(mpsc::error::TrySendError::Full(_)) => return Err(self.full_error()),
            // Closed between the check above and now.
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.closed_error()),
        }
        answer.await.unwrap_or(Err(SpineError::Closed))
    }

    /// Write one group of publishes in one transaction and answer each.
    /// Returns the new head.
    async fn commit(&self, mut head: u64, batch: Vec<Queued>) -> u64 {
        let mut events = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for queued in batch {
            events.push(queued.event);
            waiting.push((queued.permit, queued.reply));
        }
        let mut attempts = 0;
        let outcome = loop {
            for (event, seq) in events.iter_mut().zip(head + 1..) {
                event.seq = seq;
            }
            match self.store.append_events(&events).await {
                Ok(()) => break Ok(()),
                // Another process sharing the store (an admin command, a
                // second server on PostgreSQL) appended first: continue
                // after its events.
                Err(StoreError::Conflict(_)) if attempts < MAX_APPEND_RETRIES => {
                    attempts += 1;
                    match self.store.last_seq().await {
                        Ok(last) => head = last,
                        Err(e) => break Err(e),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(()) => {
                head = events.last().map_or(head, |e| e.seq);
                self.head_tx.send_replace(head);
                self.published.fetch_add(events.len() as u64, Ordering::Relaxed);
                {
                    let mut state = self.state();
                    state.held.extend(events.iter().map(|e| e.seq));
                    self.release(&mut state, head);
                }
                for (event, (permit, reply)) in events.iter().zip(waiting) {
                    // Durable: the permit now belongs to the event and comes
                    // back when every consumer has acknowledged it.
                    permit.forget();
                    let _ = reply.send(Ok(Receipt { seq: event.seq, digest: event.digest }));
                }
            }
            Err(e) => {
                self.persist_failed.fetch_add(events.len() as u64, Ordering::Relaxed);
                tracing::error!(events = events.len(), error = %e, "spine could not persist events");
                // Dropping each permit returns it: nothing was published.
                for (_permit, reply) in waiting {
                    let _ = reply.send(Err(SpineError::Storage(e.clone())));
                }
            }
        }
        head
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
        // ... let the committer finish what was already handed to it ...
        lock(&self.inner.to_committer).take();
        let task = lock(&self.inner.committer).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "spine committer task failed");
        }
        // ... and wake consumers waiting for events (they drain, then get `None`).
        self.inner.head_tx.send_modify(|_| {});
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
