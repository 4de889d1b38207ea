//! Hostile input against an authenticating broker: the connect rate limit, a flood of
//! password guesses that must not stall other clients, the subscription quota, and a
//! corpus of malformed packets from untrusted addresses, fired while a well-behaved
//! authenticated client keeps working.

mod common;

use bytes::Bytes;
use common::*;
use fubar::codec::{Connect, Packet, Protocol, QoS};
use std::time::{Duration, Instant};

fn login(protocol: Protocol, id: &str, user: &str, password: &str) -> Connect {
    Connect {
        username: Some(user.to_string()),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        ..connect_packet(protocol, id, true, 60)
    }
}

#[tokio::test]
async fn connect_rate_limit_closes_excess_sockets_of_one_source() {
    let broker = TestBroker::start_with(|c| {
        cheap_hashes(c);
        c.auth.connect_rate = 0.5;
        c.auth.connect_burst = 3;
    });
    broker.security().set_account("u", b"pw", vec![]).unwrap();
    let mut kept = Vec::new();
    for i in 0..3 {
        let (c, ack) = RawClient::connect_from(
            broker.addr,
            "127.0.0.5",
            login(Protocol::V311, &format!("r{i}"), "u", "pw"),
        )
        .await;
        assert_eq!(ack.code, 0, "connection {i} within the burst");
        kept.push(c);
    }
    // The fourth within the same second is closed before any MQTT byte.
    let mut over = RawClient::open_from(broker.addr, "127.0.0.5", Protocol::V311).await;
    let _ = over
        .send_raw(&encode(
            &Packet::Connect(Box::new(login(Protocol::V311, "r3", "u", "pw"))),
            Protocol::V311,
        ))
        .await;
    assert_eq!(over.expect_closed(WAIT).await, Vec::<u8>::new());
    // Other sources and trusted addresses are not affected.
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.6",
        login(Protocol::V311, "o", "u", "pw"),
    )
    .await;
    assert_eq!(ack.code, 0);
    for i in 0..10 {
        let (_, ack) = RawClient::connect_with(
            broker.addr,
            connect_packet(Protocol::V311, &format!("local{i}"), true, 60),
        )
        .await;
        assert_eq!(ack.code, 0);
    }
    for c in &mut kept {
        assert!(c.is_alive().await, "admitted connections stay up");
    }
}

#[tokio::test]
async fn password_guessing_flood_does_not_stall_other_clients() {
    // Production hash cost, one verification at a time: guesses queue up on the blocking
    // pool while the connection threads stay free.
    let broker = TestBroker::start_with(|c| {
        c.auth.max_concurrent_verifications = 1;
        c.auth.connect_rate = 0.0;
    });
    broker
        .security()
        .set_account("admin", b"correct horse", vec![])
        .unwrap();
    let (mut local, _) = RawClient::connect(broker.addr, Protocol::V311, "bystander", true).await;
    let addr = broker.addr;
    let guesses: Vec<_> = (0..24)
        .map(|i| {
            tokio::spawn(async move {
                let (mut c, ack) = RawClient::connect_from(
                    addr,
                    "127.0.0.7",
                    login(
                        Protocol::V5,
                        &format!("g{i}"),
                        "admin",
                        &format!("guess{i}"),
                    ),
                )
                .await;
                assert_eq!(ack.code, 0x86);
                c.expect_closed(WAIT).await;
            })
        })
        .collect();
    // While the guesses are being checked, a ping round trip stays fast.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let start = Instant::now();
        assert!(local.is_alive().await);
        slowest = slowest.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "ping took {slowest:?}"
    );
    for guess in guesses {
        guess.await.unwrap();
    }
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.7",
        login(Protocol::V5, "real", "admin", "correct horse"),
    )
    .await;
    assert_eq!(ack.code, 0);
}

#[tokio::test]
async fn subscription_quota_is_enforced() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_subscriptions = 2);
    for (protocol, refused) in [(Protocol::V311, 0x80), (Protocol::V5, 0x97)] {
        let (mut c, _) = RawClient::connect(broker.addr, protocol, "quota", true).await;
        assert_eq!(c.subscribe(1, "a", QoS::AtMostOnce).await, vec![0]);
        assert_eq!(c.subscribe(2, "b", QoS::AtMostOnce).await, vec![0]);
        // Re-subscribing to a held filter is not a new subscription.
        assert_eq!(c.subscribe(3, "a", QoS::AtLeastOnce).await, vec![1]);
        assert_eq!(c.subscribe(4, "c", QoS::AtMostOnce).await, vec![refused]);
        c.disconnect().await;
    }
}

/// Hand-made hostile inputs, each sent on its own connection from an untrusted address.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let connect_v311 = |flags: u8, payload: &[u8]| {
        let body = [mqtt_str("MQTT"), vec![4, flags, 0, 60], payload.to_vec()].concat();
        frame(0x10, &body)
    };
    vec![
        ("empty remaining length CONNECT", vec![0x10, 0x00]),
        (
            "five-byte remaining length",
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
        (
            "announces more than max_packet_size",
            vec![0x10, 0xff, 0xff, 0xff, 0x7f],
        ),
        ("reserved packet type 0", vec![0x00, 0x00]),
        ("reserved packet type 15 first", vec![0xf0, 0x00]),
        (
            "PUBLISH before CONNECT",
            frame(0x30, &[mqtt_str("t"), b"x".to_vec()].concat()),
        ),
        (
            "unknown protocol name",
            frame(
                0x10,
                &[mqtt_str("HTTP"), vec![4, 2, 0, 60], mqtt_str("c")].concat(),
            ),
        ),
        (
            "protocol level 9",
            frame(
                0x10,
                &[mqtt_str("MQTT"), vec![9, 2, 0, 60], mqtt_str("c")].concat(),
            ),
        ),
        (
            "reserved CONNECT flag without the fubar extension length",
            connect_v311(0x03, &mqtt_str("c")),
        ),
        (
            "password flag without username",
            connect_v311(0x42, &[mqtt_str("c"), mqtt_str("pw")].concat()),
        ),
        (
            "username flag but no username",
            connect_v311(0x82, &mqtt_str("c")),
        ),
        (
            "invalid UTF-8 client id",
            connect_v311(0x02, &[0x00, 0x02, 0xc3, 0x28]),
        ),
        (
            "invalid UTF-8 username",
            connect_v311(
                0xc2,
                &[mqtt_str("c"), vec![0x00, 0x01, 0xff], mqtt_str("pw")].concat(),
            ),
        ),
        (
            "U+0000 in client id",
            connect_v311(0x02, &[0x00, 0x03, b'a', 0x00, b'b']),
        ),
        (
            "will QoS 3",
            connect_v311(
                0x1e,
                &[mqtt_str("c"), mqtt_str("w"), mqtt_str("m")].concat(),
            ),
        ),
        (
            "will topic with wildcard",
            connect_v311(
                0x06,
                &[mqtt_str("c"), mqtt_str("w/#"), mqtt_str("m")].concat(),
            ),
        ),
        (
            "truncated string length",
            connect_v311(0x02, &[0x00, 0x40, b'c']),
        ),
        (
            "huge username and password",
            connect_v311(
                0xc2,
                &[
                    mqtt_str("c"),
                    mqtt_str("u".repeat(60000)),
                    mqtt_str("p".repeat(4000)),
                ]
                .concat(),
            ),
        ),
        (
            "v5 CONNECT with a duplicate property",
            frame(
                0x10,
                &[
                    mqtt_str("MQTT"),
                    vec![5, 2, 0, 60, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2],
                    mqtt_str("c"),
                ]
                .concat(),
            ),
        ),
        (
            "v5 CONNECT with an unknown property",
            frame(
                0x10,
                &[
                    mqtt_str("MQTT"),
                    vec![5, 2, 0, 60, 2, 0x7f, 0],
                    mqtt_str("c"),
                ]
                .concat(),
            ),
        ),
        (
            "v5 CONNECT property length past the end",
            frame(0x10, &[mqtt_str("MQTT"), vec![5, 2, 0, 60, 100]].concat()),
        ),
        (
            "random bytes",
            (0..200u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ]
}

#[tokio::test]
async fn malformed_corpus_from_untrusted_sources_only_hurts_its_own_connections() {
    let broker = TestBroker::start_with(|c| {
        cheap_hashes(c);
        c.mqtt.max_packet_size = 64 * 1024;
        c.mqtt.connect_timeout = 1;
        c.auth.connect_rate = 0.0;
    });
    broker
        .security()
        .set_account("good", b"pw", vec![])
        .unwrap();
    let remote = "127.0.0.8";
    let (mut good, ack) = RawClient::connect_from(
        broker.addr,
        remote,
        login(Protocol::V5, "good", "good", "pw"),
    )
    .await;
    assert_eq!(ack.code, 0);
    assert_eq!(good.subscribe(1, "alive", QoS::AtLeastOnce).await, vec![1]);
    for (n, (what, bytes)) in (1u16..).zip(corpus()) {
        let mut c = RawClient::open_from(broker.addr, remote, Protocol::V311).await;
        let _ = c.send_raw(&bytes).await;
        // A refusal CONNACK may come first; then the socket must close.
        let got = c.expect_closed(WAIT).await;
        assert!(
            got.is_empty() || got[0] == 0x20,
            "{what}: unexpected bytes {got:02x?}"
        );
        let payload = format!("alive {n} after {what}");
        good.send(&publish_packet(
            "alive",
            QoS::AtLeastOnce,
            Some(n),
            payload.as_bytes(),
        ))
        .await;
        let mut acked = false;
        let mut delivered = false;
        for _ in 0..4 {
            match good.recv().await {
                Packet::PubAck(ack) if ack.packet_id == n => acked = true,
                Packet::Publish(p) if p.payload == payload.as_bytes() => {
                    delivered = true;
                    if let Some(id) = p.packet_id {
                        good.send(&Packet::PubAck(fubar::codec::PubResp::new(id)))
                            .await;
                    }
                }
                other => panic!("{what}: unexpected {other:?}"),
            }
            if acked && delivered {
                break;
            }
        }
        assert!(acked && delivered, "good client broken after {what}");
    }
    // After CONNECT: a valid session that then sends garbage is closed, the rest lives on.
    for (i, junk) in [
        vec![0x30, 0x03, 0x00, 0x05, b'a'],
        vec![0x82, 0x02, 0x00, 0x01],
        vec![0x62, 0x02, 0x00, 0x01, 0xf0, 0x00],
        vec![0x10, 0x00],
    ]
    .into_iter()
    .enumerate()
    {
        let (mut c, ack) = RawClient::connect_from(
            broker.addr,
            remote,
            login(Protocol::V311, &format!("bad{i}"), "good", "pw"),
        )
        .await;
        assert_eq!(ack.code, 0);
        let _ = c.send_raw(&junk).await;
        c.expect_closed(WAIT).await;
    }
    assert!(good.is_alive().await);
    assert_eq!(
        broker.metrics().connections,
        1,
        "only the good client is left"
    );
}
