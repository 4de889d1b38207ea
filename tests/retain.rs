//! Retained messages: stored before anyone subscribes, replaced, cleared by an empty payload,
//! delivered on subscribe with RETAIN=1 (also through `+` and `#`), live deliveries with
//! RETAIN=0.

mod common;

use common::*;

#[tokio::test]
async fn retained_before_any_subscriber_is_delivered_on_subscribe() {
    let b = TestBroker::start();
    let mut publ = Client::connect(b.addr, Version::V4, "rt-pub").await;
    publ.publish_acked("rt/stored", 1, true, b"kept").await;

    for (v, id) in [(Version::V4, "rt-sub4"), (Version::V5, "rt-sub5")] {
        let mut sub = Client::connect(b.addr, v, id).await;
        sub.subscribe_ok("rt/stored", 1).await;
        let m = sub.recv().await;
        assert_eq!(m.topic, "rt/stored");
        assert_eq!(m.payload, b"kept");
        assert!(m.retain, "{id}: retained delivery must have RETAIN=1");
        assert_eq!(m.qos, 1);
        sub.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn retained_qos_is_min_of_publish_and_subscription() {
    let b = TestBroker::start();
    let mut publ = Client::connect(b.addr, Version::V4, "rt-q-pub").await;
    publ.publish_acked("rt/q", 2, true, b"q2").await;
    let mut sub = Client::connect(b.addr, Version::V4, "rt-q-sub").await;
    sub.subscribe_ok("rt/q", 0).await;
    let m = sub.recv().await;
    assert_eq!(m.payload, b"q2");
    assert!(m.retain);
    assert_eq!(m.qos, 0);
}

#[tokio::test]
async fn retained_is_replaced_by_a_newer_one() {
    let b = TestBroker::start();
    let mut publ = Client::connect(b.addr, Version::V4, "rt-repl-pub").await;
    publ.publish_acked("rt/repl", 1, true, b"first").await;
    publ.publish_acked("rt/repl", 1, true, b"second").await;
    let mut sub = Client::connect(b.addr, Version::V4, "rt-repl-sub").await;
    sub.subscribe_ok("rt/repl", 1).await;
    let m = sub.recv().await;
    assert_eq!(m.payload, b"second");
    assert!(m.retain);
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn empty_retained_payload_clears() {
    let b = TestBroker::start();
    let mut publ = Client::connect(b.addr, Version::V4, "rt-clr-pub").await;
    publ.publish_acked("rt/clr", 1, true, b"soon gone").await;
    publ.publish_acked("rt/clr", 1, true, b"").await;
    let mut sub = Client::connect(b.addr, Version::V4, "rt-clr-sub").await;
    sub.subscribe_ok("rt/clr", 1).await;
    sub.subscribe_ok("rt/#", 1).await;
    sub.expect_silence(QUIET).await;
    // A non-retained publish does not create or replace a retained message either.
    publ.publish_acked("rt/clr2", 1, false, b"live only").await;
    let live = sub.recv().await;
    assert_eq!(live.payload, b"live only");
    let mut sub2 = Client::connect(b.addr, Version::V4, "rt-clr-sub2").await;
    sub2.subscribe_ok("rt/#", 1).await;
    sub2.expect_silence(QUIET).await;
}

#[tokio::test]
async fn retained_delivered_through_wildcards() {
    let b = TestBroker::start();
    let mut publ = Client::connect(b.addr, Version::V4, "rt-wc-pub").await;
    publ.publish_acked("rt/wc/a/x", 1, true, b"ax").await;
    publ.publish_acked("rt/wc/b/x", 1, true, b"bx").await;
    publ.publish_acked("rt/wc/b/y", 1, true, b"by").await;

    let mut plus = Client::connect(b.addr, Version::V4, "rt-wc-plus").await;
    plus.subscribe_ok("rt/wc/+/x", 1).await;
    let mut got = [plus.recv().await, plus.recv().await];
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(got[0].topic, "rt/wc/a/x");
    assert_eq!(got[0].payload, b"ax");
    assert_eq!(got[1].topic, "rt/wc/b/x");
    assert_eq!(got[1].payload, b"bx");
    assert!(got.iter().all(|m| m.retain));
    plus.expect_silence(QUIET).await;

    let mut hash = Client::connect(b.addr, Version::V5, "rt-wc-hash").await;
    hash.subscribe_ok("rt/wc/#", 1).await;
    let mut topics: Vec<String> = Vec::new();
    for _ in 0..3 {
        let m = hash.recv().await;
        assert!(m.retain, "{m:?}");
        topics.push(m.topic);
    }
    topics.sort();
    assert_eq!(topics, ["rt/wc/a/x", "rt/wc/b/x", "rt/wc/b/y"]);
    hash.expect_silence(QUIET).await;
}

#[tokio::test]
async fn live_delivery_has_retain_0() {
    let b = TestBroker::start();
    for v in [Version::V4, Version::V5] {
        let tag = format!("{v:?}");
        let mut sub = Client::connect(b.addr, v, &format!("rt-live-sub-{tag}")).await;
        sub.subscribe_ok(&format!("rt/live/{tag}"), 1).await;
        let mut publ = Client::connect(b.addr, v, &format!("rt-live-pub-{tag}")).await;
        publ.publish_acked(&format!("rt/live/{tag}"), 1, true, b"now")
            .await;
        let m = sub.recv().await;
        assert_eq!(m.payload, b"now");
        assert!(
            !m.retain,
            "{tag}: live delivery of a retained publish has RETAIN=1"
        );
        // But it was stored: a later subscriber gets it with RETAIN=1.
        let mut late = Client::connect(b.addr, v, &format!("rt-live-late-{tag}")).await;
        late.subscribe_ok(&format!("rt/live/{tag}"), 1).await;
        let m = late.recv().await;
        assert_eq!(m.payload, b"now");
        assert!(m.retain);
    }
}

#[tokio::test]
async fn resubscribe_delivers_retained_again() {
    let b = TestBroker::start();
    let mut publ = Client::connect(b.addr, Version::V4, "rt-resub-pub").await;
    publ.publish_acked("rt/resub", 1, true, b"again").await;
    let mut sub = Client::connect(b.addr, Version::V4, "rt-resub-sub").await;
    sub.subscribe_ok("rt/resub", 0).await;
    assert_eq!(sub.recv().await.payload, b"again");
    sub.subscribe_ok("rt/resub", 0).await;
    let m = sub.recv().await;
    assert_eq!(m.payload, b"again");
    assert!(m.retain);
}
