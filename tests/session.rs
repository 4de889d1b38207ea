//! Sessions: persistent sessions queue QoS 1 messages while offline and deliver them in order
//! on resume; unacknowledged messages are resent with DUP and the same packet id; a clean
//! session discards everything; a second connection with the same id takes the session over.

mod common;

use common::*;
use fubar::codec::{Packet, Protocol, PubResp, QoS};

/// Subscribes a persistent session, takes it offline (DISCONNECT or drop), publishes `n`
/// QoS 1 messages, resumes and checks that all arrive in order.
async fn persistent_session_queues(v: Version, graceful: bool, tag: &str) {
    let b = TestBroker::start();
    let id = format!("ss-pers-{tag}");
    let topic = format!("ss/pers/{tag}");
    let opts = || Opts::new(v, &id).clean(false).session_expiry(3600);

    let mut sub = Client::connect_opts(b.addr, opts()).await;
    assert!(
        !sub.session_present(),
        "first connect must not find a session"
    );
    sub.subscribe_ok(&topic, 1).await;
    if graceful {
        sub.disconnect().await;
    } else {
        sub.kill().await;
    }

    let mut publ = Client::connect(b.addr, Version::V4, &format!("ss-pers-pub-{tag}")).await;
    let n = 20;
    for i in 0..n {
        publ.publish(&topic, 1, false, format!("q{i}").as_bytes())
            .await;
    }
    publ.wait_acks(1, n).await;

    let mut sub = Client::connect_opts(b.addr, opts()).await;
    assert!(
        sub.session_present(),
        "resumed session must have session present = 1"
    );
    for i in 0..n {
        let m = sub.recv().await;
        assert_eq!(
            String::from_utf8_lossy(&m.payload),
            format!("q{i}"),
            "queued message {i}"
        );
        assert_eq!(m.topic, topic);
        assert_eq!(m.qos, 1);
    }
    sub.expect_silence(QUIET).await;

    // The subscription survived: live messages flow too.
    publ.publish_acked(&topic, 1, false, b"live").await;
    assert_eq!(sub.recv().await.payload, b"live");
}

#[tokio::test]
async fn persistent_session_after_disconnect_v4() {
    persistent_session_queues(Version::V4, true, "dc4").await;
}

#[tokio::test]
async fn persistent_session_after_drop_v4() {
    persistent_session_queues(Version::V4, false, "drop4").await;
}

#[tokio::test]
async fn persistent_session_after_disconnect_v5() {
    persistent_session_queues(Version::V5, true, "dc5").await;
}

#[tokio::test]
async fn offline_session_with_two_subscriptions_queues_the_matching_one() {
    let b = TestBroker::start();
    let opts = || Opts::new(Version::V4, "ss-q0").clean(false);
    let mut sub = Client::connect_opts(b.addr, opts()).await;
    sub.subscribe_ok("ss/q0", 0).await;
    sub.subscribe_ok("ss/q1", 1).await;
    sub.disconnect().await;
    let mut publ = Client::connect(b.addr, Version::V4, "ss-q0-pub").await;
    publ.publish_acked("ss/q1", 1, false, b"kept").await;
    let mut sub = Client::connect_opts(b.addr, opts()).await;
    assert!(sub.session_present());
    let m = sub.recv().await;
    assert_eq!(m.topic, "ss/q1");
    assert_eq!(m.payload, b"kept");
}

#[tokio::test]
async fn unacked_qos1_is_redelivered_with_dup_and_same_id() {
    let b = TestBroker::start();
    let id = "ss-redeliver";
    let (mut s, sp) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert!(!sp);
    assert_eq!(s.subscribe(1, "ss/rd", QoS::AtLeastOnce).await, vec![1]);

    let mut publ = Client::connect(b.addr, Version::V4, "ss-rd-pub").await;
    publ.publish_acked("ss/rd", 1, false, b"ack me").await;

    let first = s.expect_publish().await;
    assert_eq!(&first.payload[..], b"ack me");
    assert!(!first.dup);
    let pid = first.packet_id.expect("packet id");
    // No PUBACK: drop the socket.
    drop(s);

    // Reconnect; the broker may still be noticing the drop, so allow a takeover of a
    // half-closed connection by simply reconnecting.
    let (mut s, sp) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert!(sp, "session present after reconnect");
    let again = s.expect_publish().await;
    assert_eq!(&again.payload[..], b"ack me");
    assert!(again.dup, "redelivery must have DUP=1: {again:?}");
    assert_eq!(
        again.packet_id,
        Some(pid),
        "redelivery must reuse packet id {pid}"
    );
    assert_eq!(again.qos, QoS::AtLeastOnce);
    s.send(&Packet::PubAck(PubResp::new(pid))).await;
    s.expect_silence(QUIET).await;

    // Acknowledged: a third connection gets nothing.
    drop(s);
    let (mut s, sp) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert!(sp);
    s.expect_silence(QUIET).await;
}

#[tokio::test]
async fn unacked_qos2_pubrel_is_resent_after_reconnect() {
    let b = TestBroker::start();
    let id = "ss-rd2";
    let (mut s, _) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert_eq!(s.subscribe(1, "ss/rd2", QoS::ExactlyOnce).await, vec![2]);
    let mut publ = Client::connect(b.addr, Version::V4, "ss-rd2-pub").await;
    publ.publish_acked("ss/rd2", 2, false, b"two").await;
    let m = s.expect_publish().await;
    let pid = m.packet_id.expect("packet id");
    s.send(&Packet::PubRec(PubResp::new(pid))).await;
    let [hi, lo] = pid.to_be_bytes();
    assert_eq!(s.recv_frame().await, [0x62, 0x02, hi, lo]);
    // PUBREL received but not completed: drop and resume.
    drop(s);
    let (mut s, sp) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert!(sp);
    assert_eq!(
        s.recv_frame().await,
        [0x62, 0x02, hi, lo],
        "PUBREL must be resent, not the PUBLISH"
    );
    s.send(&Packet::PubComp(PubResp::new(pid))).await;
    s.expect_silence(QUIET).await;
}

#[tokio::test]
async fn clean_session_discards_subscriptions() {
    let b = TestBroker::start();
    let id = "ss-clean";
    let mut sub = Client::connect_opts(b.addr, Opts::new(Version::V4, id).clean(false)).await;
    sub.subscribe_ok("ss/clean", 1).await;
    sub.disconnect().await;

    let mut sub = Client::connect_opts(b.addr, Opts::new(Version::V4, id).clean(true)).await;
    assert!(
        !sub.session_present(),
        "clean session must report session present = 0"
    );
    let mut publ = Client::connect(b.addr, Version::V4, "ss-clean-pub").await;
    publ.publish_acked("ss/clean", 1, false, b"nobody").await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn clean_session_does_not_keep_subscriptions_after_disconnect() {
    let b = TestBroker::start();
    let id = "ss-clean2";
    let mut sub = Client::connect(b.addr, Version::V4, id).await;
    sub.subscribe_ok("ss/clean2", 1).await;
    sub.disconnect().await;
    let mut publ = Client::connect(b.addr, Version::V4, "ss-clean2-pub").await;
    publ.publish_acked("ss/clean2", 1, false, b"lost").await;
    let mut sub = Client::connect_opts(b.addr, Opts::new(Version::V4, id).clean(false)).await;
    assert!(!sub.session_present());
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn takeover_closes_old_connection_and_new_one_works() {
    let b = TestBroker::start();
    let id = "ss-takeover";
    let (mut a, _) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert_eq!(a.subscribe(1, "ss/tk", QoS::AtLeastOnce).await, vec![1]);

    let (mut bb, sp) = RawClient::connect(b.addr, Protocol::V311, id, false).await;
    assert!(sp, "taking over a persistent session: session present = 1");
    a.expect_closed(WAIT).await;

    let mut publ = Client::connect(b.addr, Version::V4, "ss-tk-pub").await;
    publ.publish_acked("ss/tk", 1, false, b"to the new one")
        .await;
    let m = bb.expect_publish().await;
    assert_eq!(&m.payload[..], b"to the new one");
    bb.send(&Packet::PubAck(PubResp::new(m.packet_id.expect("id"))))
        .await;
    assert!(bb.is_alive().await, "new connection was closed");
}

#[tokio::test]
async fn takeover_with_clean_session_starts_fresh() {
    let b = TestBroker::start();
    let id = "ss-takeover-clean";
    let mut a = Client::connect_opts(b.addr, Opts::new(Version::V4, id).clean(false)).await;
    a.subscribe_ok("ss/tkc/old", 1).await;
    let mut bb = Client::connect(b.addr, Version::V4, id).await;
    assert!(!bb.session_present());
    a.wait_ctl("close of the taken-over connection", |c| {
        matches!(c, Ctl::Closed(_))
    })
    .await;
    bb.subscribe_ok("ss/tkc/new", 1).await;
    let mut publ = Client::connect(b.addr, Version::V4, "ss-tkc-pub").await;
    publ.publish_acked("ss/tkc/old", 1, false, b"old").await;
    publ.publish_acked("ss/tkc/new", 1, false, b"new").await;
    let m = bb.recv().await;
    assert_eq!(m.payload, b"new", "old subscription must be gone: {m:?}");
    bb.expect_silence(QUIET).await;
}

#[tokio::test]
async fn repeated_takeovers_leave_exactly_one_live_connection() {
    let b = TestBroker::start();
    let id = "ss-tk-many";
    let mut conns = Vec::new();
    for _ in 0..5 {
        let (c, _) = RawClient::connect(b.addr, Protocol::V311, id, true).await;
        conns.push(c);
    }
    let mut last = conns.pop().expect("five connections");
    for mut old in conns {
        old.expect_closed(WAIT).await;
    }
    assert!(last.is_alive().await);
    assert_eq!(last.subscribe(1, "ss/tkm", QoS::AtMostOnce).await, vec![0]);
    let mut publ = Client::connect(b.addr, Version::V4, "ss-tkm-pub").await;
    publ.publish_acked("ss/tkm", 1, false, b"one").await;
    assert_eq!(&last.expect_publish().await.payload[..], b"one");
}

#[tokio::test]
async fn v5_session_expiry_zero_ends_session_at_disconnect() {
    let b = TestBroker::start();
    let id = "ss-v5-exp0";
    // Clean start 0 but no Session Expiry Interval (= 0): the session ends with the connection.
    let mut c = Client::connect_opts(b.addr, Opts::new(Version::V5, id).clean(false)).await;
    c.subscribe_ok("ss/v5exp0", 1).await;
    c.disconnect().await;
    let mut publ = Client::connect(b.addr, Version::V4, "ss-v5-exp0-pub").await;
    publ.publish_acked("ss/v5exp0", 1, false, b"gone").await;
    let mut c = Client::connect_opts(b.addr, Opts::new(Version::V5, id).clean(false)).await;
    assert!(
        !c.session_present(),
        "session with expiry 0 must not survive"
    );
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_session_with_expiry_survives_disconnect() {
    let b = TestBroker::start();
    let id = "ss-v5-exp";
    let opts = || Opts::new(Version::V5, id).clean(false).session_expiry(600);
    let mut c = Client::connect_opts(b.addr, opts()).await;
    c.subscribe_ok("ss/v5exp", 1).await;
    c.disconnect().await;
    let mut publ = Client::connect(b.addr, Version::V4, "ss-v5-exp-pub").await;
    publ.publish_acked("ss/v5exp", 1, false, b"kept").await;
    let mut c = Client::connect_opts(b.addr, opts()).await;
    assert!(c.session_present());
    assert_eq!(c.recv().await.payload, b"kept");
}
