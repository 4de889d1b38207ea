//! Keep-alive enforcement: a silent client is disconnected (and its will published); a client
//! that keeps pinging stays connected. The broker runs with `valid_keep_alive = [1, 3600]` so
//! a keep-alive of 1 s is honoured.

mod common;

use common::*;
use fubar::codec::{Connect, Protocol, QoS};
use std::time::Duration;

fn broker() -> TestBroker {
    TestBroker::start_with(|c| c.mqtt.valid_keep_alive = [1, 3600])
}

#[tokio::test]
async fn silent_client_is_disconnected_and_its_will_published() {
    let b = broker();
    let mut watcher = Client::connect(b.addr, Version::V4, "ka-w").await;
    watcher.subscribe_ok("ka/will", 1).await;

    let connect = Connect {
        will: Some(will("ka/will", b"timed out", QoS::AtLeastOnce, false)),
        ..connect_packet(Protocol::V311, "ka-silent", true, 1)
    };
    let (mut c, ack) = RawClient::connect_with(b.addr, connect).await;
    assert_eq!(ack.code, 0);
    // Say nothing: the broker must close within 1.5 x 1 s (asserted generously).
    c.expect_closed(WAIT).await;
    let m = watcher.recv().await;
    assert_eq!(m.topic, "ka/will");
    assert_eq!(m.payload, b"timed out");
}

#[tokio::test]
async fn silent_v5_client_is_disconnected() {
    let b = broker();
    let (mut c, ack) =
        RawClient::connect_with(b.addr, connect_packet(Protocol::V5, "ka-silent5", true, 1)).await;
    assert_eq!(ack.code, 0);
    // v5 may send DISCONNECT 0x8D before closing; any bytes before the close are fine.
    c.expect_closed(WAIT).await;
}

#[tokio::test]
async fn pinging_client_stays_connected() {
    let b = broker();
    let (mut c, _) =
        RawClient::connect_with(b.addr, connect_packet(Protocol::V311, "ka-pinger", true, 1)).await;
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(c.is_alive().await, "PINGREQ {i} got no PINGRESP");
    }
    // 3 s with keep-alive 1: only the pings kept it open, and it is still usable.
    assert_eq!(c.subscribe(1, "ka/ping", QoS::AtMostOnce).await, vec![0]);
}

#[tokio::test]
async fn pingresp_is_exact() {
    let b = broker();
    let (mut c, _) = RawClient::connect(b.addr, Protocol::V311, "ka-pingresp", true).await;
    c.send_raw(&[0xC0, 0x00]).await.expect("send");
    assert_eq!(c.recv_frame().await, [0xD0, 0x00]);
}

#[tokio::test]
async fn publishing_client_stays_connected() {
    let b = broker();
    let mut sub = Client::connect(b.addr, Version::V4, "ka-pubsub-sub").await;
    sub.subscribe_ok("ka/busy", 0).await;
    let (mut c, _) = RawClient::connect_with(
        b.addr,
        connect_packet(Protocol::V311, "ka-publisher", true, 1),
    )
    .await;
    for i in 0..6u16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send(&publish_packet(
            "ka/busy",
            QoS::AtLeastOnce,
            Some(i + 1),
            b"busy",
        ))
        .await;
        let [hi, lo] = (i + 1).to_be_bytes();
        assert_eq!(c.recv_frame().await, [0x40, 0x02, hi, lo], "PUBACK {i}");
        assert_eq!(sub.recv().await.payload, b"busy");
    }
}
