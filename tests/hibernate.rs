//! Idle sessions hibernate (`session.hibernate_after`) and wake on the first message that
//! needs them, end to end over sockets: connected clients keep receiving (QoS 0 without
//! waking their session), in order across hibernation, and a persistent client finds its
//! dormant session with what was published for it meanwhile.

mod common;

use common::*;
use std::time::Duration;

/// A broker whose sessions hibernate after a second with nothing to do.
fn sleepy_broker() -> TestBroker {
    TestBroker::start_with(|c| c.session.hibernate_after = 1)
}

/// Waits (at most 6 s) until `n` sessions are dormant.
async fn until_dormant(b: &TestBroker, n: u64) {
    for _ in 0..120 {
        if b.metrics().sessions_dormant == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("dormant sessions: {:?}", b.metrics());
}

#[tokio::test]
async fn idle_clients_hibernate_and_receive_in_order_across_wake_ups() {
    let b = sleepy_broker();
    let mut sub = Client::connect(b.addr, Version::V4, "hib-sub").await;
    sub.subscribe_ok("hib/t", 1).await;
    let mut publ = Client::connect(b.addr, Version::V5, "hib-pub").await;
    until_dormant(&b, 2).await;
    assert_eq!(
        b.metrics().sessions,
        2,
        "a dormant session is still a session"
    );
    let mut n = 0u32;
    for round in 0..3 {
        // QoS 0 and 1 mixed on one topic: the QoS 0 ones go straight to the link, the QoS 1
        // ones wake the subscriber's session; all arrive in publishing order.
        for i in 0..30 {
            let qos = if i % 3 == 0 { 1 } else { 0 };
            publ.publish("hib/t", qos, false, &n.to_be_bytes()).await;
            n += 1;
        }
        publ.wait_acks(1, 10).await;
        for expected in (n - 30)..n {
            let m = sub.recv().await;
            assert_eq!(m.payload, expected.to_be_bytes(), "round {round}: in order");
        }
        // Both go back to sleep once everything is acknowledged.
        until_dormant(&b, 2).await;
    }
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn qos0_messages_do_not_wake_a_dormant_subscriber() {
    let b = sleepy_broker();
    let mut sub = Client::connect(b.addr, Version::V4, "hib-q0-sub").await;
    sub.subscribe_ok("hib/q0", 0).await;
    let publ = Client::connect(b.addr, Version::V4, "hib-q0-pub").await;
    until_dormant(&b, 2).await;
    for i in 0..20u8 {
        publ.publish("hib/q0", 0, false, &[i]).await;
    }
    for i in 0..20u8 {
        assert_eq!(sub.recv().await.payload, vec![i]);
    }
    // The publisher's session woke for its PUBLISHes; the subscriber's did not.
    assert!(b.metrics().sessions_dormant >= 1, "{:?}", b.metrics());
    until_dormant(&b, 2).await;
}

#[tokio::test]
async fn a_persistent_client_comes_back_to_its_dormant_session() {
    let b = sleepy_broker();
    let opts = Opts::new(Version::V4, "hib-p").clean(false);
    let mut sub = Client::connect_opts(b.addr, opts.clone()).await;
    sub.subscribe_ok("hib/p", 1).await;
    until_dormant(&b, 1).await;
    sub.disconnect().await;
    // Offline and idle: dormant again, and still collecting QoS 1 messages.
    until_dormant(&b, 1).await;
    let mut publ = Client::connect(b.addr, Version::V4, "hib-p-pub").await;
    publ.publish_acked("hib/p", 1, false, b"kept").await;
    let mut sub = Client::connect_opts(b.addr, opts).await;
    assert!(sub.session_present());
    let m = sub.recv().await;
    assert_eq!((m.payload.as_slice(), m.qos), (&b"kept"[..], 1));
    sub.expect_silence(QUIET).await;
}
