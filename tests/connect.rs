//! CONNECT / CONNACK over raw sockets: protocol versions, client id rules, the first-packet
//! rule, session present, and fubar's keep-alive negotiation (exact CONNACK bytes).

mod common;

use common::*;
use fubar::codec::{Packet, Protocol, QoS};

/// CONNECT flags: clean session.
const CLEAN: u8 = 0x02;
/// CONNECT flags: fubar extension opt-in (bit 0, reserved in the spec).
const OPT_IN: u8 = 0x01;

/// Sends `connect` on a fresh socket and returns the raw bytes of the first reply packet.
async fn connack_bytes(b: &TestBroker, connect: &[u8]) -> (RawClient, Vec<u8>) {
    let mut c = RawClient::open(b.addr, Protocol::V311).await;
    c.send_raw(connect).await.expect("send CONNECT");
    let ack = c.recv_frame().await;
    (c, ack)
}

#[tokio::test]
async fn mqtt_31_is_accepted() {
    let b = TestBroker::start();
    // "MQIsdp", level 3, clean session, keep-alive 60, client id.
    let bytes = raw_connect("MQIsdp", 3, CLEAN, 60, None, &mqtt_str("conn-v31"));
    let (mut c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    assert!(
        c.is_alive().await,
        "3.1 connection not usable after CONNACK"
    );
}

#[tokio::test]
async fn mqtt_311_is_accepted() {
    let b = TestBroker::start();
    let bytes = raw_connect("MQTT", 4, CLEAN, 60, None, &mqtt_str("conn-v311"));
    let (mut c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    assert!(
        c.is_alive().await,
        "3.1.1 connection not usable after CONNACK"
    );
}

#[tokio::test]
async fn mqtt_5_is_accepted() {
    let b = TestBroker::start();
    // Level 5 with an empty property block.
    let bytes = raw_connect("MQTT", 5, CLEAN, 1800, Some(&[]), &mqtt_str("conn-v5"));
    let mut c = RawClient::open(b.addr, Protocol::V5).await;
    c.send_raw(&bytes).await.expect("send");
    let ack = c.expect_connack().await;
    assert_eq!(ack.code, 0, "{ack:?}");
    assert!(!ack.session_present);
    assert!(
        c.is_alive().await,
        "5.0 connection not usable after CONNACK"
    );
}

#[tokio::test]
async fn unknown_protocol_level_gets_connack_1_and_close() {
    let b = TestBroker::start();
    let mut wrong = Vec::new();
    for (name, level) in [("MQTT", 6u8), ("MQTT", 3), ("MQTT", 0)] {
        let id = format!("conn-lvl-{level}");
        let bytes = raw_connect(name, level, CLEAN, 60, None, &mqtt_str(&id));
        let mut c = RawClient::open(b.addr, Protocol::V311).await;
        c.send_raw(&bytes).await.expect("send");
        let got = c.expect_closed(WAIT).await;
        if got != [0x20, 0x02, 0x00, 0x01] {
            wrong.push(format!("{name:?}/{level} -> {got:02x?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected CONNACK 1 (20 02 00 01) then close, got: {wrong:?}"
    );
}

#[tokio::test]
async fn empty_client_id_with_clean_session_is_accepted_311() {
    let b = TestBroker::start();
    let bytes = raw_connect("MQTT", 4, CLEAN, 60, None, &mqtt_str(""));
    let (mut c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    assert!(c.is_alive().await);
    // The anonymous client can subscribe and receive.
    assert_eq!(c.subscribe(1, "conn/anon", QoS::AtMostOnce).await, vec![0]);
    let mut p = Client::connect(b.addr, Version::V4, "conn-anon-pub").await;
    p.publish_acked("conn/anon", 1, false, b"hi").await;
    let m = c.expect_publish().await;
    assert_eq!(&m.payload[..], b"hi");
}

#[tokio::test]
async fn empty_client_id_v5_gets_assigned_identifier() {
    let b = TestBroker::start();
    let (mut c, ack) =
        RawClient::connect_with(b.addr, connect_packet(Protocol::V5, "", true, 1800)).await;
    assert_eq!(ack.code, 0, "{ack:?}");
    let assigned = ack
        .properties
        .assigned_client_identifier
        .clone()
        .unwrap_or_else(|| panic!("no Assigned Client Identifier in {ack:?}"));
    assert!(!assigned.is_empty(), "assigned client identifier is empty");
    assert!(c.is_alive().await);
    // Two anonymous clients get different identifiers.
    let (_c2, ack2) =
        RawClient::connect_with(b.addr, connect_packet(Protocol::V5, "", true, 1800)).await;
    assert_eq!(ack2.code, 0);
    assert_ne!(ack2.properties.assigned_client_identifier, Some(assigned));
}

#[tokio::test]
async fn empty_client_id_without_clean_session_is_rejected_311() {
    let b = TestBroker::start();
    let bytes = raw_connect("MQTT", 4, 0x00, 60, None, &mqtt_str(""));
    let mut c = RawClient::open(b.addr, Protocol::V311).await;
    c.send_raw(&bytes).await.expect("send");
    let got = c.expect_closed(WAIT).await;
    assert_eq!(
        got,
        [0x20, 0x02, 0x00, 0x02],
        "expected CONNACK 2 then close"
    );
}

#[tokio::test]
async fn first_packet_not_connect_closes_without_connack() {
    let b = TestBroker::start();
    let attempts: [(&str, Vec<u8>); 3] = [
        ("PINGREQ", vec![0xC0, 0x00]),
        (
            "PUBLISH",
            frame(0x30, &[mqtt_str("conn/x"), b"payload".to_vec()].concat()),
        ),
        (
            "SUBSCRIBE",
            frame(
                0x82,
                &[vec![0x00, 0x01], mqtt_str("conn/#"), vec![0x00]].concat(),
            ),
        ),
    ];
    for (what, bytes) in attempts {
        let mut c = RawClient::open(b.addr, Protocol::V311).await;
        c.send_raw(&bytes).await.expect("send");
        let got = c.expect_closed(WAIT).await;
        assert!(
            got.is_empty(),
            "{what} as first packet: expected close with nothing sent, got {got:02x?}"
        );
    }
}

#[tokio::test]
async fn second_connect_closes_the_connection() {
    let b = TestBroker::start();
    let (mut c, _) = RawClient::connect(b.addr, Protocol::V311, "conn-twice", true).await;
    c.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V311,
        "conn-twice",
        true,
        60,
    ))))
    .await;
    c.expect_closed(WAIT).await;
}

#[tokio::test]
async fn client_id_equal_to_subscribed_topic_is_rejected() {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, Version::V4, "conn-clash-sub").await;
    sub.subscribe_ok("conn-clash-topic", 0).await;

    // 3.1.1: CONNACK 2, then close.
    let bytes = raw_connect("MQTT", 4, CLEAN, 60, None, &mqtt_str("conn-clash-topic"));
    let mut c = RawClient::open(b.addr, Protocol::V311).await;
    c.send_raw(&bytes).await.expect("send");
    let got = c.expect_closed(WAIT).await;
    assert_eq!(
        got,
        [0x20, 0x02, 0x00, 0x02],
        "expected CONNACK 2 then close"
    );

    // 5.0: reason 0x85 Client Identifier not valid.
    let mut c5 = RawClient::open(b.addr, Protocol::V5).await;
    c5.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V5,
        "conn-clash-topic",
        true,
        1800,
    ))))
    .await;
    let ack = c5.expect_connack().await;
    assert_eq!(ack.code, 0x85, "{ack:?}");
    c5.expect_closed(WAIT).await;

    // The topic still works for its subscriber.
    let mut p = Client::connect(b.addr, Version::V4, "conn-clash-pub").await;
    p.publish_acked("conn-clash-topic", 1, false, b"still a topic")
        .await;
    assert_eq!(sub.recv().await.payload, b"still a topic");
}

#[tokio::test]
async fn session_present_reflects_persistent_session() {
    let b = TestBroker::start();
    let id = "conn-sp";
    // New persistent session: session present 0, exact bytes.
    let bytes = raw_connect("MQTT", 4, 0x00, 60, None, &mqtt_str(id));
    let (c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "new session");
    c.disconnect().await;

    // Resume: session present 1.
    let (c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x02, 0x01, 0x00], "resumed session");
    c.disconnect().await;

    // Clean session discards it: session present 0.
    let clean = raw_connect("MQTT", 4, CLEAN, 60, None, &mqtt_str(id));
    let (c, ack) = connack_bytes(&b, &clean).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "clean session");
    c.disconnect().await;

    // And nothing is left to resume afterwards.
    let (c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "after a clean session");
    c.disconnect().await;
}

// --- keep-alive negotiation (valid_keep_alive defaults to [1800, 3600]) -------------------

/// A 3.1 CONNECT that opts into the fubar extensions: flags bit 0 set and max_recursion
/// appended after the client id.
fn opted_in_31(id: &str, keep_alive: u16) -> Vec<u8> {
    let payload = [mqtt_str(id), 0u16.to_be_bytes().to_vec()].concat();
    raw_connect("MQIsdp", 3, CLEAN | OPT_IN, keep_alive, None, &payload)
}

#[tokio::test]
async fn keep_alive_negotiation_31_opted_in() {
    let b = TestBroker::start();
    let cases: [(u16, &[u8]); 4] = [
        // Below the range: raised to 1800 (0x0708).
        (600, &[0x20, 0x04, 0x00, 0x00, 0x07, 0x08]),
        // 0 counts as infinite: max 3600 (0x0E10).
        (0, &[0x20, 0x04, 0x00, 0x00, 0x0E, 0x10]),
        // Above the range: lowered to 3600.
        (7200, &[0x20, 0x04, 0x00, 0x00, 0x0E, 0x10]),
        // Inside the range: unchanged, plain CONNACK.
        (2000, &[0x20, 0x02, 0x00, 0x00]),
    ];
    for (ka, expected) in cases {
        let id = format!("conn-ka31-{ka}");
        let (mut c, ack) = connack_bytes(&b, &opted_in_31(&id, ka)).await;
        assert_eq!(ack, expected, "3.1 opted-in client asking keep-alive {ka}");
        assert!(c.is_alive().await, "keep-alive {ka}: connection not usable");
    }
}

#[tokio::test]
async fn keep_alive_negotiation_31_opted_in_with_max_recursion() {
    let b = TestBroker::start();
    // max_recursion 10 (the eunit fixture's value): the node is not offloading, so this is
    // an ordinary accept with the negotiated keep-alive.
    let payload = [mqtt_str("conn-ka31-mr"), vec![0x00, 0x0A]].concat();
    let bytes = raw_connect("MQIsdp", 3, CLEAN | OPT_IN, 600, None, &payload);
    let (_c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x04, 0x00, 0x00, 0x07, 0x08]);
}

#[tokio::test]
async fn keep_alive_negotiation_311_opted_in() {
    let b = TestBroker::start();
    let payload = [mqtt_str("conn-ka311-opt"), vec![0x00, 0x00]].concat();
    let bytes = raw_connect("MQTT", 4, CLEAN | OPT_IN, 600, None, &payload);
    let (_c, ack) = connack_bytes(&b, &bytes).await;
    assert_eq!(ack, [0x20, 0x04, 0x00, 0x00, 0x07, 0x08]);
}

#[tokio::test]
async fn plain_311_client_never_sees_extension_bytes() {
    let b = TestBroker::start();
    for ka in [600u16, 0, 7200] {
        let id = format!("conn-ka311-{ka}");
        let bytes = raw_connect("MQTT", 4, CLEAN, ka, None, &mqtt_str(&id));
        let (mut c, ack) = connack_bytes(&b, &bytes).await;
        assert_eq!(
            ack,
            [0x20, 0x02, 0x00, 0x00],
            "plain 3.1.1, keep-alive {ka}"
        );
        assert!(c.is_alive().await);
    }
}

#[tokio::test]
async fn v5_client_gets_server_keep_alive() {
    let b = TestBroker::start();
    let (_c, ack) =
        RawClient::connect_with(b.addr, connect_packet(Protocol::V5, "conn-ka5", true, 60)).await;
    assert_eq!(ack.code, 0, "{ack:?}");
    assert_eq!(ack.properties.server_keep_alive, Some(1800), "{ack:?}");

    // Also through rumqttc's v5 client.
    let c = Client::connect(b.addr, Version::V5, "conn-ka5-rumqttc").await;
    match &c.connack {
        Ctl::ConnAck {
            server_keep_alive, ..
        } => assert_eq!(*server_keep_alive, Some(1800)),
        other => panic!("{other:?}"),
    }
}
