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

/// A dormant session keeps its rare state (the will of its attached client, its
/// subscriptions, inbound QoS 2 ids awaiting PUBREL, its permissions) in the extras of its
/// record: each is back, intact, when it wakes.
mod rare_state {
    use super::*;
    use fubar::codec::{Connect, Packet, Protocol, PubResp, QoS, UnsubAck, Unsubscribe};

    #[tokio::test]
    async fn the_will_of_a_client_that_vanishes_while_its_session_is_dormant_is_published() {
        let b = sleepy_broker();
        let mut watcher = Client::connect(b.addr, Version::V4, "hib-will-w").await;
        watcher.subscribe_ok("hib/will", 1).await;
        let connect = Connect {
            will: Some(will("hib/will", b"gone", QoS::AtLeastOnce, false)),
            ..connect_packet(Protocol::V311, "hib-will", true, 60)
        };
        let (c, ack) = RawClient::connect_with(b.addr, connect).await;
        assert_eq!(ack.code, 0);
        until_dormant(&b, 2).await;
        drop(c);
        let m = watcher.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            ("hib/will", &b"gone"[..])
        );
        watcher.expect_silence(QUIET).await;
    }

    #[tokio::test]
    async fn a_subscription_survives_dormancy_until_it_is_unsubscribed() {
        let b = sleepy_broker();
        let (mut sub, _) = RawClient::connect(b.addr, Protocol::V5, "hib-sub5", true).await;
        assert_eq!(sub.subscribe(1, "hib/s", QoS::AtLeastOnce).await, vec![1]);
        let mut publ = Client::connect(b.addr, Version::V4, "hib-sub5-pub").await;
        until_dormant(&b, 2).await;
        publ.publish_acked("hib/s", 1, false, b"one").await;
        let p = sub.expect_publish().await;
        assert_eq!(p.payload.as_ref(), b"one");
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id.expect("QoS 1"))))
            .await;
        until_dormant(&b, 2).await;
        // The session still knows the filter: MQTT 5 says it existed (0x11 otherwise).
        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            filters: vec!["hib/s".into()],
            properties: Default::default(),
        }))
        .await;
        match sub.recv().await {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes,
                ..
            }) => assert_eq!((packet_id, reason_codes), (2, vec![0])),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        publ.publish_acked("hib/s", 1, false, b"two").await;
        sub.expect_silence(QUIET).await;
    }

    #[tokio::test]
    async fn a_pubrel_after_dormancy_completes_the_qos2_publish_once() {
        let b = sleepy_broker();
        let mut watcher = Client::connect(b.addr, Version::V4, "hib-q2-w").await;
        watcher.subscribe_ok("hib/q2", 2).await;
        let (mut c, _) = RawClient::connect(b.addr, Protocol::V5, "hib-q2", true).await;
        c.send(&publish_packet("hib/q2", QoS::ExactlyOnce, Some(9), b"x"))
            .await;
        assert_eq!(c.recv().await, Packet::PubRec(PubResp::new(9)));
        assert_eq!(watcher.recv().await.payload, b"x");
        until_dormant(&b, 2).await;
        // The id still awaits PUBREL: a resend is acknowledged, not routed again.
        let mut again = publish_packet("hib/q2", QoS::ExactlyOnce, Some(9), b"x");
        if let Packet::Publish(p) = &mut again {
            p.dup = true;
        }
        c.send(&again).await;
        assert_eq!(c.recv().await, Packet::PubRec(PubResp::new(9)));
        until_dormant(&b, 2).await;
        // PUBCOMP with success (MQTT 5 says 0x92, not found, for an unknown id).
        c.send(&Packet::PubRel(PubResp::new(9))).await;
        assert_eq!(c.recv().await, Packet::PubComp(PubResp::new(9)));
        watcher.expect_silence(QUIET).await;
    }

    #[tokio::test]
    async fn a_dormant_session_keeps_its_clients_permissions() {
        let b = TestBroker::start_with(|c| {
            c.session.hibernate_after = 1;
            c.auth.default_policy = "deny".into();
            c.auth.rules = vec!["allow publish public/#".into()];
        });
        // 127.0.0.1 is trusted: anonymous, with the configured rules.
        let (mut c, _) = RawClient::connect(b.addr, Protocol::V5, "hib-perm", true).await;
        until_dormant(&b, 1).await;
        assert_eq!(
            c.subscribe(1, "public/#", QoS::AtMostOnce).await,
            vec![0x87]
        );
        until_dormant(&b, 1).await;
        c.send(&publish_packet(
            "private/x",
            QoS::AtLeastOnce,
            Some(2),
            b"x",
        ))
        .await;
        match c.recv().await {
            Packet::PubAck(ack) => assert_eq!((ack.packet_id, ack.reason), (2, 0x87)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        until_dormant(&b, 1).await;
        c.send(&publish_packet("public/x", QoS::AtLeastOnce, Some(3), b"x"))
            .await;
        assert_eq!(c.recv().await, Packet::PubAck(PubResp::new(3)));
    }
}
