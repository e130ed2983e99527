//! Login throttling, per account and per source address: a few free
//! attempts, then exponential back-off up to a cap. There is no permanent
//! lock: the longest wait is `max_delay`, so an attacker can slow a
//! clinician's account down but never lock it for good (Keycloak #46164).
//!
//! Attempts are counted *before* the password is checked, under one lock:
//! `begin` books the attempt as a failure, and only `succeeded` clears the
//! record. A thousand parallel guesses therefore cannot all pass the check
//! before the first failure is written (the race of Zitadel
//! GHSA-7h8m-vrxx-vr4m): only the free attempts get through.
//!
//! The table is bounded: past `capacity` keys, settled records are dropped
//! first, then the ones with the fewest failures.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// Milliseconds since the Unix epoch (the platform's clock, passed in).
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed without any wait.
    pub free_attempts: u32,
    /// Wait after the first failure beyond the free ones; doubles after each.
    pub base_delay_ms: i64,
    /// The longest wait (the "soft lock").
    pub max_delay_ms: i64,
    /// After this long without an attempt, the record is forgotten.
    pub forget_after_ms: i64,
    /// Most keys remembered.
    pub capacity: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_attempts: 5,
            base_delay_ms: 1_000,
            max_delay_ms: 15 * 60 * 1_000,
            forget_after_ms: 24 * 60 * 60 * 1_000,
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Record {
    failures: u32,
    next_allowed: Millis,
    last_attempt: Millis,
}

/// Refused for now: try again after `retry_after_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many attempts; try again in {} s", (retry_after_ms + 999) / 1000)]
pub struct Throttled {
    pub retry_after_ms: i64,
}

/// A booked attempt; report how it went.
#[derive(Debug)]
#[must_use = "report the attempt's outcome with succeeded(); dropping it keeps it counted as a failure"]
pub struct Attempt<K> {
    key: K,
}

#[derive(Debug)]
pub struct Throttle<K> {
    policy: ThrottlePolicy,
    records: Mutex<HashMap<K, Record>>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, records: Mutex::new(HashMap::new()) }
    }

    fn delay(&self, failures: u32) -> i64 {
        let beyond = failures.saturating_sub(self.policy.free_attempts);
        if beyond == 0 {
            return 0;
        }
        let doublings = (beyond - 1).min(40);
        self.policy.base_delay_ms.saturating_mul(1i64 << doublings).min(self.policy.max_delay_ms)
    }

    /// Book an attempt for `key` at `now`, or say how long to wait.
    pub fn begin(&self, key: &K, now: Millis) -> Result<Attempt<K>, Throttled> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if !records.contains_key(key) && records.len() >= self.policy.capacity {
            self.make_room(&mut records, now);
        }
        let record = records.entry(key.clone()).or_default();
        if now.saturating_sub(record.last_attempt) > self.policy.forget_after_ms {
            *record = Record::default();
        }
        if now < record.next_allowed {
            return Err(Throttled { retry_after_ms: record.next_allowed - now });
        }
        record.failures = record.failures.saturating_add(1);
        record.last_attempt = now;
        record.next_allowed = now.saturating_add(self.delay(record.failures));
        Ok(Attempt { key: key.clone() })
    }

    /// The attempt succeeded: forget the failures.
    pub fn succeeded(&self, attempt: Attempt<K>) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).remove(&attempt.key);
    }

    /// Failures on record for `key` (for audit events and tests).
    pub fn failures(&self, key: &K) -> u32 {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).get(key).map_or(0, |r| r.failures)
    }

    fn make_room(&self, records: &mut HashMap<K, Record>, now: Millis) {
        let forget = self.policy.forget_after_ms;
        records.retain(|_, r| now < r.next_allowed || now.saturating_sub(r.last_attempt) <= forget);
        if records.len() >= self.policy.capacity {
            let free = self.policy.free_attempts;
            records.retain(|_, r| r.failures > free);
        }
        if records.len() >= self.policy.capacity {
            // Everything left is being throttled: drop the mildest half.
            let mut failures: Vec<u32> = records.values().map(|r| r.failures).collect();
            failures.sort_unstable();
            let median = failures.get(failures.len() / 2).copied().unwrap_or(0);
            records.retain(|_, r| r.failures > median);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy { free_attempts: 3, base_delay_ms: 1_000, max_delay_ms: 60_000, ..Default::default() }
    }

    #[test]
    fn waits_grow_then_cap_and_success_clears() {
        let throttle = Throttle::new(policy());
        let key = "nurse".to_owned();
        let mut now = 0;
        for _ in 0..3 {
            let _failed = throttle.begin(&key, now).unwrap();
        }
        // Fourth failure: 1 s, then 2 s, 4 s ... capped at 60 s.
        let _failed = throttle.begin(&key, now).unwrap();
        assert_eq!(throttle.begin(&key, now).map(|_| ()), Err(Throttled { retry_after_ms: 1_000 }));
        let mut waits = Vec::new();
        for _ in 0..10 {
            let wait = throttle.begin(&key, now).map(|_| ()).unwrap_err().retry_after_ms;
            now += wait;
            let _failed = throttle.begin(&key, now).unwrap();
            waits.push(throttle.begin(&key, now).map(|_| ()).unwrap_err().retry_after_ms);
        }
        assert_eq!(waits[..4], [2_000, 4_000, 8_000, 16_000]);
        assert!(waits.iter().all(|w| *w <= 60_000), "{waits:?}");
        // The real user, after the wait, gets in; that clears the record.
        now += 60_000;
        throttle.succeeded(throttle.begin(&key, now).unwrap());
        assert_eq!(throttle.failures(&key), 0);
    }

    #[test]
    fn parallel_guesses_get_only_the_free_attempts() {
        let throttle = Arc::new(Throttle::new(policy()));
        let admitted: usize = (0..8)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || (0..125).filter(|_| throttle.begin(&"clinician", 5).is_ok()).count())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 4, "three free attempts and the first delayed one, no more");
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = Throttle::new(ThrottlePolicy { capacity: 100, ..policy() });
        for source in 0..10_000u32 {
            let _failed = throttle.begin(&source, 0);
        }
        assert!(throttle.records.lock().unwrap().len() <= 100);
    }
}
