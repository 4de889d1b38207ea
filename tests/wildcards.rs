//! Topic filters end to end: a table of filters × topic names with the exact expected
//! matches (including `$`-topics, empty levels and `#` matching its parent), overlapping
//! subscriptions delivering one copy at the highest QoS, and invalid filters refused.

mod common;

use common::*;
use fubar::codec::Protocol;
use std::collections::BTreeSet;

const NAMES: [&str; 6] = ["a", "a/b/c", "a//c", "$SYS/x", "b/x", "/x"];

/// (filter, names it must match). Everything else in [`NAMES`] must not match.
const TABLE: [(&str, &[&str]); 7] = [
    ("#", &["a", "a/b/c", "a//c", "b/x", "/x"]),
    ("+/x", &["b/x", "/x"]),
    ("a/+/c", &["a/b/c", "a//c"]),
    ("a/#", &["a", "a/b/c", "a//c"]),
    ("$SYS/#", &["$SYS/x"]),
    ("+", &["a"]),
    ("/+", &["/x"]),
];

/// A `$SYS` topic the broker published itself (not one of the test's names).
fn is_broker_sys(topic: &str) -> bool {
    topic.starts_with("$SYS/") && !NAMES.contains(&topic)
}

async fn table(v: Version, tag: &str) {
    let b = TestBroker::start();
    let mut subs = Vec::new();
    for (i, (filter, _)) in TABLE.iter().enumerate() {
        let mut s = Client::connect(b.addr, v, &format!("wc-{tag}-{i}")).await;
        s.subscribe_ok(filter, 1).await;
        subs.push(s);
    }
    let mut publ = Client::connect(b.addr, v, &format!("wc-{tag}-pub")).await;
    for name in NAMES {
        publ.publish_acked(name, 1, false, name.as_bytes()).await;
    }
    for (s, (filter, expected)) in subs.iter_mut().zip(TABLE.iter()) {
        let mut got = BTreeSet::new();
        // Bounded: each round either records an expected name or skips a broker-generated
        // `$SYS/...` topic (a broker may publish its own statistics there).
        for _ in 0..expected.len() + 100 {
            if got.len() == expected.len() {
                break;
            }
            let m = s.recv_within(WAIT).await.unwrap_or_else(|| {
                panic!("filter {filter:?}: got only {got:?}, expected {expected:?}")
            });
            if is_broker_sys(&m.topic) {
                continue;
            }
            assert_eq!(m.payload, m.topic.as_bytes(), "topic/payload mismatch");
            assert!(
                got.insert(m.topic.clone()),
                "filter {filter:?}: {} twice",
                m.topic
            );
        }
        while let Some(extra) = s.recv_within(QUIET).await {
            assert!(
                is_broker_sys(&extra.topic),
                "filter {filter:?} also matched {:?}",
                extra.topic
            );
        }
        let want: BTreeSet<String> = expected.iter().map(|n| n.to_string()).collect();
        assert_eq!(got, want, "filter {filter:?}");
    }
}

#[tokio::test]
async fn filter_table_v4() {
    table(Version::V4, "4").await;
}

#[tokio::test]
async fn filter_table_v5() {
    table(Version::V5, "5").await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    let b = TestBroker::start();
    let mut s = Client::connect(b.addr, Version::V4, "wc-ov").await;
    s.subscribe_ok("a/#", 0).await;
    s.subscribe_ok("a/b", 1).await;
    let mut publ = Client::connect(b.addr, Version::V4, "wc-ov-pub").await;
    publ.publish_acked("a/b", 1, false, b"once").await;
    let m = s.recv().await;
    assert_eq!(m.topic, "a/b");
    assert_eq!(m.payload, b"once");
    assert_eq!(m.qos, 1, "overlap must deliver at the highest granted QoS");
    s.expect_silence(QUIET).await;

    // A name only the wildcard matches still arrives, at the wildcard's QoS.
    publ.publish_acked("a/c", 1, false, b"wild").await;
    let m = s.recv().await;
    assert_eq!(m.topic, "a/c");
    assert_eq!(m.qos, 0);
    s.expect_silence(QUIET).await;
}

#[tokio::test]
async fn overlapping_wildcards_deliver_one_copy() {
    let b = TestBroker::start();
    let mut s = Client::connect(b.addr, Version::V5, "wc-ov2").await;
    s.subscribe_ok("ov/+/z", 2).await;
    s.subscribe_ok("ov/#", 1).await;
    s.subscribe_ok("+/y/z", 0).await;
    let mut publ = Client::connect(b.addr, Version::V5, "wc-ov2-pub").await;
    publ.publish_acked("ov/y/z", 2, false, b"one").await;
    let m = s.recv().await;
    assert_eq!(m.payload, b"one");
    assert_eq!(m.qos, 2);
    s.expect_silence(QUIET).await;
}

#[tokio::test]
async fn wildcard_subscription_sees_topics_created_later_and_earlier() {
    let b = TestBroker::start();
    // A topic with an exact subscriber exists before the wildcard subscription ...
    let mut exact = Client::connect(b.addr, Version::V4, "wc-late-exact").await;
    exact.subscribe_ok("late/one", 1).await;
    let mut wild = Client::connect(b.addr, Version::V4, "wc-late-wild").await;
    wild.subscribe_ok("late/+", 1).await;
    let mut publ = Client::connect(b.addr, Version::V4, "wc-late-pub").await;
    publ.publish_acked("late/one", 1, false, b"1").await;
    assert_eq!(wild.recv().await.topic, "late/one");
    assert_eq!(exact.recv().await.topic, "late/one");
    // ... and one that never had a subscriber.
    publ.publish_acked("late/two", 1, false, b"2").await;
    assert_eq!(wild.recv().await.topic, "late/two");
    exact.expect_silence(QUIET).await;
    // After unsubscribing the wildcard, the exact subscriber keeps its messages.
    wild.unsubscribe("late/+").await;
    publ.publish_acked("late/one", 1, false, b"3").await;
    assert_eq!(exact.recv().await.payload, b"3");
    wild.expect_silence(QUIET).await;
}

#[tokio::test]
async fn invalid_filters_are_refused() {
    let b = TestBroker::start();
    for (i, filter) in ["a/#/b", "a+", "#a", "a/b#", ""].iter().enumerate() {
        let (mut c, _) =
            RawClient::connect(b.addr, Protocol::V311, &format!("wc-bad-{i}"), true).await;
        let body = [vec![0x00, 0x05], mqtt_str(filter), vec![0x00]].concat();
        c.send_raw(&frame(0x82, &body)).await.expect("send");
        // Either SUBACK with failure 0x80 or a closed connection is acceptable; a grant is not.
        match c.recv_frame_or_close().await {
            None => {}
            Some(f) => assert_eq!(
                f,
                [0x90, 0x03, 0x00, 0x05, 0x80],
                "filter {filter:?} must be refused"
            ),
        }
    }
}
