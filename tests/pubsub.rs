//! Publish/subscribe end to end with rumqttc (MQTT 3.1.1 and 5): QoS 0/1/2 delivery, QoS
//! downgrade to the granted QoS, payload integrity, per-publisher ordering, QoS 2 exactly
//! once, mixed protocol versions, and UNSUBSCRIBE.

mod common;

use common::*;
use std::collections::HashMap;

/// Every (publish QoS, subscription QoS) pair is delivered once at min(pub, sub).
async fn qos_matrix(pv: Version, sv: Version, tag: &str) {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, sv, &format!("ps-mx-sub-{tag}")).await;
    for sq in 0..=2u8 {
        sub.subscribe_ok(&format!("ps/mx/{sq}"), sq).await;
    }
    let mut publ = Client::connect(b.addr, pv, &format!("ps-mx-pub-{tag}")).await;
    for sq in 0..=2u8 {
        for pq in 0..=2u8 {
            let payload = format!("p{pq}-s{sq}");
            publ.publish_acked(&format!("ps/mx/{sq}"), pq, false, payload.as_bytes())
                .await;
        }
    }
    let mut got: HashMap<String, Msg> = HashMap::new();
    for _ in 0..9 {
        let m = sub.recv().await;
        let key = String::from_utf8(m.payload.clone()).expect("utf8 payload");
        assert!(
            got.insert(key.clone(), m).is_none(),
            "{key} delivered twice"
        );
    }
    for sq in 0..=2u8 {
        for pq in 0..=2u8 {
            let key = format!("p{pq}-s{sq}");
            let m = got
                .get(&key)
                .unwrap_or_else(|| panic!("{key} not delivered"));
            assert_eq!(m.topic, format!("ps/mx/{sq}"));
            assert_eq!(m.qos, pq.min(sq), "{key}: delivered at QoS {}", m.qos);
            assert!(!m.retain, "{key}: live delivery has RETAIN set");
            assert!(!m.dup, "{key}: first delivery has DUP set");
        }
    }
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn qos_matrix_v4() {
    qos_matrix(Version::V4, Version::V4, "44").await;
}

#[tokio::test]
async fn qos_matrix_v5() {
    qos_matrix(Version::V5, Version::V5, "55").await;
}

#[tokio::test]
async fn qos_matrix_v4_publisher_v5_subscriber() {
    qos_matrix(Version::V4, Version::V5, "45").await;
}

#[tokio::test]
async fn qos_matrix_v5_publisher_v4_subscriber() {
    qos_matrix(Version::V5, Version::V4, "54").await;
}

async fn payload_integrity(v: Version, tag: &str) {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, v, &format!("ps-pl-sub-{tag}")).await;
    sub.subscribe_ok("ps/payload", 1).await;
    let mut publ = Client::connect(b.addr, v, &format!("ps-pl-pub-{tag}")).await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let payloads: Vec<Vec<u8>> = vec![Vec::new(), b"x".to_vec(), all_bytes, vec![0u8; 1000], big];
    for p in &payloads {
        publ.publish_acked("ps/payload", 1, false, p).await;
    }
    for (i, p) in payloads.iter().enumerate() {
        let m = sub.recv().await;
        assert_eq!(m.topic, "ps/payload");
        assert_eq!(m.payload.len(), p.len(), "payload {i}: length");
        assert!(m.payload == *p, "payload {i}: bytes differ");
    }
}

#[tokio::test]
async fn payload_integrity_v4() {
    payload_integrity(Version::V4, "4").await;
}

#[tokio::test]
async fn payload_integrity_v5() {
    payload_integrity(Version::V5, "5").await;
}

async fn ordering(v: Version, qos: u8, n: usize, tag: &str) {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, v, &format!("ps-ord-sub-{tag}")).await;
    sub.subscribe_ok("ps/order", qos).await;
    let mut publ = Client::connect(b.addr, v, &format!("ps-ord-pub-{tag}")).await;
    for i in 0..n {
        publ.publish("ps/order", qos, false, format!("{i}").as_bytes())
            .await;
    }
    publ.wait_acks(qos, n).await;
    let mut got: Vec<String> = Vec::new();
    while got.len() < n {
        match sub.recv_within(WAIT).await {
            Some(m) => {
                assert_eq!(m.qos, qos);
                got.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
            None => break,
        }
    }
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    if got != want {
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        panic!(
            "QoS {qos}: received {} of {n} messages; missing {missing:?}; order {got:?}; \
             broker metrics {:?}",
            got.len(),
            b.metrics()
        );
    }
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn ordering_per_publisher_qos0_v4() {
    ordering(Version::V4, 0, 100, "q0").await;
}

#[tokio::test]
async fn ordering_per_publisher_qos1_v4() {
    ordering(Version::V4, 1, 300, "q1").await;
}

#[tokio::test]
async fn ordering_per_publisher_qos2_v5() {
    ordering(Version::V5, 2, 100, "q2").await;
}

async fn qos2_exactly_once(v: Version, tag: &str) {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, v, &format!("ps-eo-sub-{tag}")).await;
    sub.subscribe_ok("ps/eo", 2).await;
    let mut publ = Client::connect(b.addr, v, &format!("ps-eo-pub-{tag}")).await;
    let n = 50;
    for i in 0..n {
        publ.publish("ps/eo", 2, false, format!("eo-{i}").as_bytes())
            .await;
    }
    publ.wait_acks(2, n).await;
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for k in 0..n {
        let m = match sub.recv_within(WAIT).await {
            Some(m) => m,
            None => panic!("only {k} of {n} QoS 2 messages arrived: {counts:?}"),
        };
        assert_eq!(m.qos, 2);
        *counts.entry(m.payload).or_default() += 1;
    }
    sub.expect_silence(QUIET).await;
    for i in 0..n {
        let key = format!("eo-{i}").into_bytes();
        assert_eq!(counts.get(&key), Some(&1), "eo-{i} delivery count");
    }
}

#[tokio::test]
async fn qos2_exactly_once_v4() {
    qos2_exactly_once(Version::V4, "4").await;
}

#[tokio::test]
async fn qos2_exactly_once_v5() {
    qos2_exactly_once(Version::V5, "5").await;
}

#[tokio::test]
async fn fan_out_to_many_subscribers() {
    let b = TestBroker::start();
    let mut subs = Vec::new();
    for i in 0..10 {
        let v = if i % 2 == 0 { Version::V4 } else { Version::V5 };
        let mut s = Client::connect(b.addr, v, &format!("ps-fan-{i}")).await;
        s.subscribe_ok("ps/fan", 1).await;
        subs.push(s);
    }
    let mut publ = Client::connect(b.addr, Version::V4, "ps-fan-pub").await;
    publ.publish_acked("ps/fan", 1, false, b"to all").await;
    for s in &mut subs {
        let m = s.recv().await;
        assert_eq!(m.payload, b"to all");
        assert_eq!(m.topic, "ps/fan");
    }
    for s in &mut subs {
        s.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn publisher_receives_its_own_publish_when_subscribed() {
    let b = TestBroker::start();
    let mut c = Client::connect(b.addr, Version::V4, "ps-self").await;
    c.subscribe_ok("ps/self", 1).await;
    c.publish_acked("ps/self", 1, false, b"echo").await;
    assert_eq!(c.recv().await.payload, b"echo");
}

#[tokio::test]
async fn publish_without_subscribers_is_acknowledged() {
    let b = TestBroker::start();
    let mut c = Client::connect(b.addr, Version::V4, "ps-nosub").await;
    c.publish_acked("ps/nobody", 1, false, b"void").await;
    c.publish_acked("ps/nobody", 2, false, b"void").await;
    let mut c5 = Client::connect(b.addr, Version::V5, "ps-nosub5").await;
    c5.publish_acked("ps/nobody", 1, false, b"void").await;
    c5.publish_acked("ps/nobody", 2, false, b"void").await;
}

async fn unsubscribe_stops_delivery(v: Version, tag: &str) {
    let b = TestBroker::start();
    let mut sub = Client::connect(b.addr, v, &format!("ps-unsub-{tag}")).await;
    sub.subscribe_ok("ps/unsub/a", 1).await;
    sub.subscribe_ok("ps/unsub/b", 1).await;
    let mut publ = Client::connect(b.addr, v, &format!("ps-unsub-pub-{tag}")).await;
    publ.publish_acked("ps/unsub/a", 1, false, b"before").await;
    assert_eq!(sub.recv().await.payload, b"before");

    sub.unsubscribe("ps/unsub/a").await;
    publ.publish_acked("ps/unsub/a", 1, false, b"after").await;
    // The other subscription still works and proves the broker processed the publish.
    publ.publish_acked("ps/unsub/b", 1, false, b"other").await;
    let m = sub.recv().await;
    assert_eq!(m.topic, "ps/unsub/b", "got {m:?} after UNSUBSCRIBE");
    assert_eq!(m.payload, b"other");
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_v4() {
    unsubscribe_stops_delivery(Version::V4, "4").await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_v5() {
    unsubscribe_stops_delivery(Version::V5, "5").await;
}

#[tokio::test]
async fn raw_unsuback_echoes_packet_id() {
    use fubar::codec::{Packet, Protocol, QoS, Unsubscribe};
    let b = TestBroker::start();
    let (mut c, _) = RawClient::connect(b.addr, Protocol::V311, "ps-raw-unsub", true).await;
    assert_eq!(
        c.subscribe(3, "ps/raw/unsub", QoS::AtLeastOnce).await,
        vec![1]
    );
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 0x1234,
        filters: vec!["ps/raw/unsub".into()],
        ..Default::default()
    }))
    .await;
    assert_eq!(c.recv_frame().await, [0xB0, 0x02, 0x12, 0x34]);
    // Unsubscribing from something never subscribed is still acknowledged.
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 9,
        filters: vec!["ps/never".into()],
        ..Default::default()
    }))
    .await;
    assert_eq!(c.recv_frame().await, [0xB0, 0x02, 0x00, 0x09]);
}
