//! Node-wide counters and gauges.
//!
//! One [`Metrics`] per node, shared as `Arc<Metrics>` by the transport (connections, inbound
//! PUBLISH), sessions (queues, outbound PUBLISH, drops) and the registry (sessions, topics,
//! subscriptions, retained messages). Every field is an atomic updated with
//! relaxed ordering: the values are statistics, not synchronisation. Any thread may read a
//! consistent-enough copy with [`Metrics::snapshot`]. The counters every message touches
//! sit on cache lines of their own ([`HotCounter`]), so arbiters on different cores do not
//! fight over one line.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

/// An [`AtomicU64`] alone on its cache line (and the adjacent one the CPU prefetches with
/// it); dereferences to the atomic, so it is used like one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct HotCounter(AtomicU64);

impl Deref for HotCounter {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

/// The live counters of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open client connections (CONNECT accepted or being processed).
    pub connections: AtomicU64,
    /// Connections parked while idle (counted in `connections` too).
    pub parked: AtomicU64,
    /// Live sessions, online or offline.
    pub sessions: AtomicU64,
    /// Of `sessions`, those hibernating: no actor runs for them until a message needs one.
    pub sessions_dormant: AtomicU64,
    /// Topic actors running.
    pub topics: AtomicU64,
    /// Subscriptions (client id, filter) in force.
    pub subscriptions: AtomicU64,
    /// Retained messages held.
    pub retained: AtomicU64,
    /// PUBLISH packets received from clients.
    pub publish_in: HotCounter,
    /// PUBLISH packets handed to client connections (resends included).
    pub publish_out: HotCounter,
    /// Messages dropped by a session: its queue was full, or the message exceeded the
    /// client's Maximum Packet Size.
    pub dropped: HotCounter,
    /// Messages currently queued across all sessions (waiting or in flight).
    pub queued: HotCounter,
}

/// A point-in-time copy of the node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Open client connections (after CONNACK 0).
    pub connections: u64,
    /// Connections parked while idle (counted in `connections` too).
    pub parked: u64,
    /// Live sessions, online or offline.
    pub sessions: u64,
    /// Of `sessions`, those hibernating (no actor running).
    pub sessions_dormant: u64,
    /// PUBLISH packets received from clients.
    pub publish_in: u64,
    /// PUBLISH packets sent to clients.
    pub publish_out: u64,
    /// Messages dropped because a session queue was full.
    pub dropped: u64,
    /// Messages currently queued across all sessions.
    pub queued: u64,
    /// Topic actors running.
    pub topics: u64,
    /// Subscriptions in force.
    pub subscriptions: u64,
    /// Retained messages held.
    pub retained: u64,
}

impl Metrics {
    /// Adds one to a counter or gauge.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter or gauge.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` from a gauge, saturating at zero.
    pub fn sub(gauge: &AtomicU64, n: u64) {
        // A failed update means the closure returned None, which it never does.
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    /// Counts a new connection unless `max` are already open; `false` means refused.
    pub fn try_open_connection(&self, max: usize) -> bool {
        let max = max as u64;
        self.connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v < max).then_some(v + 1)
            })
            .is_ok()
    }

    /// Reads every value.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections: get(&self.connections),
            parked: get(&self.parked),
            sessions: get(&self.sessions),
            sessions_dormant: get(&self.sessions_dormant),
            publish_in: get(&self.publish_in),
            publish_out: get(&self.publish_out),
            dropped: get(&self.dropped),
            queued: get(&self.queued),
            topics: get(&self.topics),
            subscriptions: get(&self.subscriptions),
            retained: get(&self.retained),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_is_enforced() {
        let m = Metrics::default();
        assert!(m.try_open_connection(2));
        assert!(m.try_open_connection(2));
        assert!(!m.try_open_connection(2));
        Metrics::sub(&m.connections, 1);
        assert!(m.try_open_connection(2));
        assert_eq!(m.snapshot().connections, 2);
    }

    #[test]
    fn gauges_saturate_at_zero() {
        let m = Metrics::default();
        Metrics::add(&m.queued, 3);
        Metrics::sub(&m.queued, 5);
        assert_eq!(m.snapshot().queued, 0);
    }
}
