//! QoS handshakes checked byte by byte with the raw client: inbound QoS 1 and QoS 2 (exactly
//! once, DUP resend, unknown PUBREL) and the outbound QoS 2 flow to a subscriber.

mod common;

use common::*;
use fubar::codec::{Packet, Protocol, PubResp, QoS};

#[tokio::test]
async fn inbound_qos1_gets_puback_with_same_id() {
    let b = TestBroker::start();
    let (mut p, _) = RawClient::connect(b.addr, Protocol::V311, "qr-q1", true).await;
    p.send(&publish_packet(
        "qr/q1",
        QoS::AtLeastOnce,
        Some(0x0102),
        b"one",
    ))
    .await;
    assert_eq!(p.recv_frame().await, [0x40, 0x02, 0x01, 0x02]);
}

#[tokio::test]
async fn inbound_qos2_is_delivered_exactly_once() {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, Version::V4, "qr-eo-sub").await;
    sub.subscribe_ok("qr/eo", 2).await;

    let (mut p, _) = RawClient::connect(b.addr, Protocol::V311, "qr-eo-pub", true).await;
    // PUBLISH QoS 2, id 7.
    let body = [mqtt_str("qr/eo"), vec![0x00, 0x07], b"once".to_vec()].concat();
    p.send_raw(&frame(0x34, &body)).await.expect("send");
    assert_eq!(p.recv_frame().await, [0x50, 0x02, 0x00, 0x07], "PUBREC 7");
    // The same PUBLISH again with DUP set (0x3C = PUBLISH | DUP | QoS 2).
    p.send_raw(&frame(0x3C, &body)).await.expect("send");
    assert_eq!(
        p.recv_frame().await,
        [0x50, 0x02, 0x00, 0x07],
        "PUBREC 7 again"
    );
    // PUBREL 7 (flags 0010).
    p.send_raw(&[0x62, 0x02, 0x00, 0x07]).await.expect("send");
    assert_eq!(p.recv_frame().await, [0x70, 0x02, 0x00, 0x07], "PUBCOMP 7");

    let m = sub.recv().await;
    assert_eq!(m.payload, b"once");
    assert_eq!(m.qos, 2);
    sub.expect_silence(QUIET).await;

    // The id is free again: a new message with id 7 is a new message.
    let body2 = [mqtt_str("qr/eo"), vec![0x00, 0x07], b"twice".to_vec()].concat();
    p.send_raw(&frame(0x34, &body2)).await.expect("send");
    assert_eq!(p.recv_frame().await, [0x50, 0x02, 0x00, 0x07]);
    p.send_raw(&[0x62, 0x02, 0x00, 0x07]).await.expect("send");
    assert_eq!(p.recv_frame().await, [0x70, 0x02, 0x00, 0x07]);
    assert_eq!(sub.recv().await.payload, b"twice");
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn pubrel_for_unknown_id_gets_pubcomp() {
    let b = TestBroker::start();
    let (mut p, _) = RawClient::connect(b.addr, Protocol::V311, "qr-unknown-rel", true).await;
    p.send_raw(&[0x62, 0x02, 0x00, 0x63]).await.expect("send");
    assert_eq!(p.recv_frame().await, [0x70, 0x02, 0x00, 0x63]);
    assert!(p.is_alive().await);
}

#[tokio::test]
async fn outbound_qos2_flow_to_raw_subscriber() {
    let b = TestBroker::start();
    let (mut s, _) = RawClient::connect(b.addr, Protocol::V311, "qr-out2-sub", true).await;
    assert_eq!(s.subscribe(1, "qr/out2", QoS::ExactlyOnce).await, vec![2]);
    let mut publ = Client::connect(b.addr, Version::V4, "qr-out2-pub").await;
    publ.publish_acked("qr/out2", 2, false, b"flow").await;

    let m = s.expect_publish().await;
    assert_eq!(m.qos, QoS::ExactlyOnce);
    assert!(!m.dup);
    assert_eq!(&m.payload[..], b"flow");
    let id = m.packet_id.expect("QoS 2 publish has a packet id");
    s.send(&Packet::PubRec(PubResp::new(id))).await;
    let rel = s.recv_frame().await;
    let [hi, lo] = id.to_be_bytes();
    assert_eq!(
        rel,
        [0x62, 0x02, hi, lo],
        "PUBREL with flags 0010 and the same id"
    );
    s.send(&Packet::PubComp(PubResp::new(id))).await;
    s.expect_silence(QUIET).await;
}

#[tokio::test]
async fn outbound_qos1_packet_ids_are_distinct_while_inflight() {
    let b = TestBroker::start();
    let (mut s, _) = RawClient::connect(b.addr, Protocol::V311, "qr-ids-sub", true).await;
    assert_eq!(s.subscribe(1, "qr/ids", QoS::AtLeastOnce).await, vec![1]);
    let mut publ = Client::connect(b.addr, Version::V4, "qr-ids-pub").await;
    for i in 0..10 {
        publ.publish("qr/ids", 1, false, format!("m{i}").as_bytes())
            .await;
    }
    publ.wait_acks(1, 10).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let m = s.expect_publish().await;
        assert_eq!(m.payload, format!("m{i}").as_bytes());
        let id = m.packet_id.expect("QoS 1 publish has a packet id");
        assert_ne!(id, 0, "packet id 0 is not allowed");
        assert!(
            !ids.contains(&id),
            "packet id {id} reused while still unacknowledged"
        );
        ids.push(id);
    }
    for id in ids {
        s.send(&Packet::PubAck(PubResp::new(id))).await;
    }
    assert!(s.is_alive().await);
}

#[tokio::test]
async fn unacked_qos1_is_resent_with_dup_after_retry_interval() {
    let b = TestBroker::start_with(|c| c.session.retry_interval = 1);
    let (mut s, _) = RawClient::connect(b.addr, Protocol::V311, "qr-retry-sub", true).await;
    assert_eq!(s.subscribe(1, "qr/retry", QoS::AtLeastOnce).await, vec![1]);
    let mut publ = Client::connect(b.addr, Version::V4, "qr-retry-pub").await;
    publ.publish_acked("qr/retry", 1, false, b"again").await;
    let first = s.expect_publish().await;
    assert!(!first.dup);
    // Not acknowledged: with retry_interval = 1 the broker resends on the same connection.
    let again = s.expect_publish().await;
    assert!(again.dup, "resend must have DUP=1: {again:?}");
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(&again.payload[..], b"again");
    s.send(&Packet::PubAck(PubResp::new(first.packet_id.expect("id"))))
        .await;
    // Acknowledged: no more resends (the retry interval passes twice).
    s.expect_silence(std::time::Duration::from_millis(2500))
        .await;
}

#[tokio::test]
async fn outbound_inflight_window_is_respected() {
    let b = TestBroker::start_with(|c| c.session.max_inflight = 2);
    let (mut s, _) = RawClient::connect(b.addr, Protocol::V311, "qr-window-sub", true).await;
    assert_eq!(s.subscribe(1, "qr/window", QoS::AtLeastOnce).await, vec![1]);
    let mut publ = Client::connect(b.addr, Version::V4, "qr-window-pub").await;
    for i in 0..5 {
        publ.publish("qr/window", 1, false, format!("w{i}").as_bytes())
            .await;
    }
    publ.wait_acks(1, 5).await;
    let m0 = s.expect_publish().await;
    let m1 = s.expect_publish().await;
    assert_eq!(&m0.payload[..], b"w0");
    assert_eq!(&m1.payload[..], b"w1");
    // Window full: nothing more until an acknowledgement.
    s.expect_silence(QUIET).await;
    s.send(&Packet::PubAck(PubResp::new(m0.packet_id.expect("id"))))
        .await;
    let m2 = s.expect_publish().await;
    assert_eq!(&m2.payload[..], b"w2");
    s.expect_silence(QUIET).await;
    for m in [m1, m2] {
        s.send(&Packet::PubAck(PubResp::new(m.packet_id.expect("id"))))
            .await;
    }
    for i in 3..5 {
        let m = s.expect_publish().await;
        assert_eq!(m.payload, format!("w{i}").as_bytes());
        s.send(&Packet::PubAck(PubResp::new(m.packet_id.expect("id"))))
            .await;
    }
    s.expect_silence(QUIET).await;
}
