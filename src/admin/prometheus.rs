//! `/metrics`: the node's [`MetricsSnapshot`] in the Prometheus text exposition format
//! (version 0.0.4), for any scraper. Pure formatting; the HTTP handler lives in
//! [`super::api`].

use crate::metrics::MetricsSnapshot;
use std::fmt::Write;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a series only grows (`counter`) or goes up and down (`gauge`).
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// The exposition text for `snapshot` plus the node's uptime.
pub fn render(snapshot: &MetricsSnapshot, uptime_secs: u64) -> String {
    use Kind::{Counter, Gauge};
    let series: [(&str, Kind, &str, u64); 12] = [
        (
            "fubar_connections",
            Gauge,
            "Open client connections.",
            snapshot.connections,
        ),
        (
            "fubar_connections_parked",
            Gauge,
            "Idle connections parked in a worker's readiness table (also in fubar_connections).",
            snapshot.parked,
        ),
        (
            "fubar_sessions",
            Gauge,
            "Live sessions, online or offline.",
            snapshot.sessions,
        ),
        (
            "fubar_sessions_dormant",
            Gauge,
            "Sessions hibernating while idle, without an actor (also in fubar_sessions).",
            snapshot.sessions_dormant,
        ),
        (
            "fubar_topics",
            Gauge,
            "Topics with subscribers or a retained message.",
            snapshot.topics,
        ),
        (
            "fubar_subscriptions",
            Gauge,
            "Subscriptions in force.",
            snapshot.subscriptions,
        ),
        (
            "fubar_retained_messages",
            Gauge,
            "Retained messages held.",
            snapshot.retained,
        ),
        (
            "fubar_queued_messages",
            Gauge,
            "Messages queued across all sessions (waiting or in flight).",
            snapshot.queued,
        ),
        (
            "fubar_publish_received_total",
            Counter,
            "PUBLISH packets received from clients.",
            snapshot.publish_in,
        ),
        (
            "fubar_publish_sent_total",
            Counter,
            "PUBLISH packets sent to clients, resends included.",
            snapshot.publish_out,
        ),
        (
            "fubar_dropped_messages_total",
            Counter,
            "Messages dropped by a session (queue full or packet too large for the client).",
            snapshot.dropped,
        ),
        (
            "fubar_uptime_seconds",
            Gauge,
            "Seconds since the node started.",
            uptime_secs,
        ),
    ];
    let mut out = String::with_capacity(2048);
    for (name, kind, help, value) in series {
        let kind = match kind {
            Counter => "counter",
            Gauge => "gauge",
        };
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_has_help_type_and_value() {
        let snapshot = MetricsSnapshot {
            connections: 3,
            publish_in: 42,
            ..MetricsSnapshot::default()
        };
        let text = render(&snapshot, 7);
        assert!(text.contains("# TYPE fubar_connections gauge\nfubar_connections 3\n"));
        assert!(text.contains("# TYPE fubar_publish_received_total counter\n"));
        assert!(text.contains("\nfubar_publish_received_total 42\n"));
        assert!(text.contains("\nfubar_uptime_seconds 7\n"));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 12);
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 12);
    }
}
