//! Direct messaging (fubar extension): a PUBLISH whose topic is a client id goes straight to
//! that client's session, online or offline-persistent, without a subscription; subscribing
//! to another client's id is refused.

mod common;

use common::*;
use fubar::codec::{Protocol, QoS};

#[tokio::test]
async fn publish_to_client_id_reaches_that_client() {
    let b = TestBroker::start();
    let mut c1 = Client::connect(b.addr, Version::V4, "dm-c1").await;
    let mut c2 = Client::connect(b.addr, Version::V4, "dm-c2").await;
    for qos in 0..=2u8 {
        let payload = format!("hello at {qos}");
        c2.publish_acked("dm-c1", qos, false, payload.as_bytes())
            .await;
        let m = c1.recv().await;
        assert_eq!(m.topic, "dm-c1", "receiver sees its own id as the topic");
        assert_eq!(m.payload, payload.as_bytes());
        assert_eq!(m.qos, qos, "direct messages keep the sender's QoS");
    }
    c1.expect_silence(QUIET).await;
    c2.expect_silence(QUIET).await;
}

#[tokio::test]
async fn direct_message_between_protocol_versions() {
    let b = TestBroker::start();
    let mut c5 = Client::connect(b.addr, Version::V5, "dm-v5").await;
    let mut c4 = Client::connect(b.addr, Version::V4, "dm-v4").await;
    c4.publish_acked("dm-v5", 1, false, b"4 to 5").await;
    let m = c5.recv().await;
    assert_eq!(m.topic, "dm-v5");
    assert_eq!(m.payload, b"4 to 5");
    c5.publish_acked("dm-v4", 1, false, b"5 to 4").await;
    let m = c4.recv().await;
    assert_eq!(m.topic, "dm-v4");
    assert_eq!(m.payload, b"5 to 4");
}

#[tokio::test]
async fn raw_receiver_sees_plain_publish() {
    let b = TestBroker::start();
    let (mut r, _) = RawClient::connect(b.addr, Protocol::V311, "dm-raw", true).await;
    let mut s = Client::connect(b.addr, Version::V4, "dm-raw-sender").await;
    s.publish_acked("dm-raw", 1, false, b"raw direct").await;
    let p = r.expect_publish().await;
    assert_eq!(&p.topic[..], "dm-raw");
    assert_eq!(&p.payload[..], b"raw direct");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(p.packet_id.is_some());
}

#[tokio::test]
async fn client_can_send_to_itself() {
    let b = TestBroker::start();
    let mut c = Client::connect(b.addr, Version::V4, "dm-self").await;
    c.publish_acked("dm-self", 1, false, b"note to self").await;
    let m = c.recv().await;
    assert_eq!(m.topic, "dm-self");
    assert_eq!(m.payload, b"note to self");
}

#[tokio::test]
async fn direct_message_to_offline_persistent_session_is_queued() {
    let b = TestBroker::start();
    let opts = || Opts::new(Version::V4, "dm-offline").clean(false);
    let c1 = Client::connect_opts(b.addr, opts()).await;
    c1.disconnect().await;

    let mut c2 = Client::connect(b.addr, Version::V4, "dm-offline-sender").await;
    for i in 0..3 {
        c2.publish_acked("dm-offline", 1, false, format!("while away {i}").as_bytes())
            .await;
    }

    let mut c1 = Client::connect_opts(b.addr, opts()).await;
    assert!(c1.session_present());
    for i in 0..3 {
        let m = c1.recv().await;
        assert_eq!(m.topic, "dm-offline");
        assert_eq!(m.payload, format!("while away {i}").as_bytes());
    }
    c1.expect_silence(QUIET).await;
}

#[tokio::test]
async fn subscribing_to_another_clients_id_is_refused() {
    let b = TestBroker::start();
    let _target = Client::connect(b.addr, Version::V4, "dm-target").await;
    let mut snoop = Client::connect(b.addr, Version::V4, "dm-snoop").await;
    assert_eq!(snoop.subscribe("dm-target", 1).await, vec![0x80]);

    // Raw, to check the exact SUBACK bytes.
    let (mut raw, _) = RawClient::connect(b.addr, Protocol::V311, "dm-snoop-raw", true).await;
    let body = [vec![0x00, 0x11], mqtt_str("dm-target"), vec![0x01]].concat();
    raw.send_raw(&frame(0x82, &body)).await.expect("send");
    assert_eq!(raw.recv_frame().await, [0x90, 0x03, 0x00, 0x11, 0x80]);

    // A message to the id still goes to the client, not to the would-be subscriber.
    let mut sender = Client::connect(b.addr, Version::V4, "dm-snoop-sender").await;
    sender
        .publish_acked("dm-target", 1, false, b"private")
        .await;
    snoop.expect_silence(QUIET).await;
    raw.expect_silence(QUIET).await;
}

#[tokio::test]
async fn direct_message_is_not_seen_by_wildcard_subscribers() {
    let b = TestBroker::start();
    let mut everything = Client::connect(b.addr, Version::V4, "dm-wild").await;
    everything.subscribe_ok("#", 1).await;
    let mut target = Client::connect(b.addr, Version::V4, "dm-wild-target").await;
    let mut sender = Client::connect(b.addr, Version::V4, "dm-wild-sender").await;
    sender
        .publish_acked("dm-wild-target", 1, false, b"for your eyes")
        .await;
    assert_eq!(target.recv().await.payload, b"for your eyes");
    everything.expect_silence(QUIET).await;
}
