//! Malformed and hostile input: each attack runs on its own connection, which the broker must
//! close, while a well-behaved rumqttc publisher/subscriber pair (and an idle raw bystander)
//! keeps working. The broker runs with `max_packet_size = 1024` and `connect_timeout = 1`.

mod common;

use common::*;
use fubar::codec::Protocol;

/// The broker under attack plus the pair that must keep working.
struct Arena {
    broker: TestBroker,
    publ: Client,
    sub: Client,
    bystander: RawClient,
    round: usize,
}

impl Arena {
    async fn new(tag: &str) -> Arena {
        let broker = TestBroker::start_with(|c| {
            c.mqtt.max_packet_size = 1024;
            c.mqtt.connect_timeout = 1;
        });
        let mut sub = Client::connect(broker.addr, Version::V4, &format!("mf-{tag}-sub")).await;
        sub.subscribe_ok("mf/alive", 1).await;
        let publ = Client::connect(broker.addr, Version::V5, &format!("mf-{tag}-pub")).await;
        let (bystander, _) =
            RawClient::connect(broker.addr, Protocol::V311, &format!("mf-{tag}-by"), true).await;
        let mut a = Arena {
            broker,
            publ,
            sub,
            bystander,
            round: 0,
        };
        a.check("setup").await;
        a
    }

    /// Asserts the pair still exchanges a message and the bystander still answers pings.
    async fn check(&mut self, after: &str) {
        self.round += 1;
        let payload = format!("alive {} after {after}", self.round);
        self.publ
            .publish_acked("mf/alive", 1, false, payload.as_bytes())
            .await;
        let m = self.sub.recv().await;
        assert_eq!(
            String::from_utf8_lossy(&m.payload),
            payload,
            "pair broken after {after}"
        );
        assert!(
            self.bystander.is_alive().await,
            "bystander closed after {after}"
        );
    }

    /// A fresh connection that has completed CONNECT.
    async fn connected(&self, id: &str) -> RawClient {
        RawClient::connect(self.broker.addr, Protocol::V311, id, true)
            .await
            .0
    }

    /// A fresh TCP connection with nothing sent yet.
    async fn fresh(&self) -> RawClient {
        RawClient::open(self.broker.addr, Protocol::V311).await
    }
}

/// Sends `bytes` and asserts that the broker closes the connection; returns what it sent.
async fn attack(c: &mut RawClient, bytes: &[u8], what: &str) -> Vec<u8> {
    // The broker may close before everything is written: a write error is fine here.
    let _ = c.send_raw(bytes).await;
    let got = c.expect_closed(WAIT).await;
    eprintln!("{what}: closed after sending {got:02x?}");
    got
}

#[tokio::test]
async fn remaining_length_with_five_bytes() {
    let mut a = Arena::new("rl5").await;
    let mut c = a.fresh().await;
    let got = attack(
        &mut c,
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        "5-byte length before CONNECT",
    )
    .await;
    assert!(
        got.is_empty(),
        "no CONNACK for a malformed CONNECT: {got:02x?}"
    );
    a.check("5-byte remaining length before CONNECT").await;

    let mut c = a.connected("mf-rl5-c").await;
    attack(
        &mut c,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        "5-byte length PUBLISH",
    )
    .await;
    a.check("5-byte remaining length after CONNECT").await;
}

#[tokio::test]
async fn publish_with_qos_3() {
    let mut a = Arena::new("q3").await;
    let mut c = a.connected("mf-q3-c").await;
    let body = [mqtt_str("mf/alive"), vec![0x00, 0x01], b"qos3".to_vec()].concat();
    attack(&mut c, &frame(0x36, &body), "PUBLISH QoS 3").await;
    a.check("PUBLISH QoS 3").await;
    // The bad publish was not routed.
    a.sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn publish_with_wildcard_in_topic_name() {
    let mut a = Arena::new("pwc").await;
    for (i, topic) in ["mf/+", "mf/#"].iter().enumerate() {
        let mut c = a.connected(&format!("mf-pwc-{i}")).await;
        let body = [mqtt_str(topic), b"wild".to_vec()].concat();
        attack(&mut c, &frame(0x30, &body), "PUBLISH to a wildcard name").await;
        a.check("PUBLISH to a wildcard name").await;
    }
    // MQTT 5 names the reason: DISCONNECT 0x90 "topic name invalid" [MQTT-3.3.2-2].
    let (mut c, _) = RawClient::connect(a.broker.addr, Protocol::V5, "mf-pwc-v5", true).await;
    let body = [mqtt_str("mf/#"), vec![0x00], b"wild".to_vec()].concat();
    let got = attack(&mut c, &frame(0x30, &body), "v5 PUBLISH to a wildcard name").await;
    assert_eq!(
        got.first(),
        Some(&0xE0),
        "expected a DISCONNECT: {got:02x?}"
    );
    assert_eq!(got.get(2), Some(&0x90), "DISCONNECT reason: {got:02x?}");
    a.check("v5 PUBLISH to a wildcard name").await;
}

#[tokio::test]
async fn subscribe_with_wrong_reserved_flags() {
    let mut a = Arena::new("subflags").await;
    let mut c = a.connected("mf-subflags-c").await;
    // SUBSCRIBE must have flags 0010; 0x80 has 0000.
    let body = [vec![0x00, 0x01], mqtt_str("mf/#"), vec![0x00]].concat();
    let got = attack(&mut c, &frame(0x80, &body), "SUBSCRIBE flags 0").await;
    assert!(
        !got.starts_with(&[0x90]),
        "a malformed SUBSCRIBE must not be acknowledged: {got:02x?}"
    );
    a.check("SUBSCRIBE with flags 0").await;
}

#[tokio::test]
async fn v5_connect_with_reserved_flag() {
    let mut a = Arena::new("v5res").await;
    let mut c = RawClient::open(a.broker.addr, Protocol::V5).await;
    // Flags 0x03: clean start plus the reserved bit, which MQTT 5 forbids ([MQTT-3.1.2-3]).
    let bytes = raw_connect("MQTT", 5, 0x03, 60, Some(&[]), &mqtt_str("mf-v5res-c"));
    let got = attack(&mut c, &bytes, "v5 CONNECT reserved flag").await;
    // Either nothing or a CONNACK with a failure reason (>= 0x80) may precede the close.
    assert!(
        got.is_empty() || (got.len() >= 4 && got[0] == 0x20 && got[3] >= 0x80),
        "v5 CONNECT with reserved flag was accepted: {got:02x?}"
    );
    a.check("v5 CONNECT with reserved flag").await;
}

#[tokio::test]
async fn packet_larger_than_max_packet_size_is_refused_before_its_body() {
    let mut a = Arena::new("big").await;
    // PUBLISH announcing 1 MiB (0x100000 = 80 80 40); the body is never sent.
    let mut c = a.connected("mf-big-c").await;
    let got = attack(&mut c, &[0x30, 0x80, 0x80, 0x40], "1 MiB PUBLISH header").await;
    assert!(
        got.is_empty(),
        "3.1.1: nothing is sent before the close: {got:02x?}"
    );
    a.check("oversized PUBLISH").await;

    // The same as the very first packet.
    let mut c = a.fresh().await;
    attack(&mut c, &[0x10, 0x80, 0x80, 0x40], "1 MiB CONNECT header").await;
    a.check("oversized CONNECT").await;

    // Just over the limit with the body actually sent: also refused.
    let mut c = a.connected("mf-big-c2").await;
    let body = [mqtt_str("mf/alive"), vec![b'x'; 1100]].concat();
    attack(&mut c, &frame(0x30, &body), "1.1 KB PUBLISH").await;
    a.check("PUBLISH just over the limit").await;
    a.sub.expect_silence(QUIET).await;

    // And a PUBLISH under the limit still goes through from a fresh client.
    let mut c = a.connected("mf-big-ok").await;
    let body = [mqtt_str("mf/alive"), vec![b'y'; 900]].concat();
    c.send_raw(&frame(0x30, &body)).await.expect("send");
    let m = a.sub.recv().await;
    assert_eq!(m.payload.len(), 900);
}

#[tokio::test]
async fn garbage_before_connect() {
    let mut a = Arena::new("garbage").await;
    for (i, junk) in [
        &[0x00u8, 0x01, 0x02, 0x03][..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xF0, 0x00],
    ]
    .iter()
    .enumerate()
    {
        let mut c = a.fresh().await;
        let bytes = [
            junk.to_vec(),
            raw_connect(
                "MQTT",
                4,
                0x02,
                60,
                None,
                &mqtt_str(format!("mf-garbage-{i}")),
            ),
        ]
        .concat();
        let got = attack(&mut c, &bytes, "garbage before CONNECT").await;
        assert!(got.is_empty(), "garbage {i}: broker answered {got:02x?}");
        a.check("garbage before CONNECT").await;
    }
}

#[tokio::test]
async fn truncated_connect_is_closed_by_connect_timeout() {
    let mut a = Arena::new("trunc").await;
    let full = raw_connect("MQTT", 4, 0x02, 60, None, &mqtt_str("mf-trunc-c"));
    let mut c = a.fresh().await;
    c.send_raw(&full[..7]).await.expect("send");
    // connect_timeout = 1: closed well within WAIT, without a CONNACK.
    let got = c.expect_closed(WAIT).await;
    assert!(got.is_empty(), "{got:02x?}");
    // A connection that sends nothing at all is closed too.
    let mut idle = a.fresh().await;
    let got = idle.expect_closed(WAIT).await;
    assert!(got.is_empty(), "{got:02x?}");
    a.check("stalled CONNECT").await;
}

#[tokio::test]
async fn bad_utf8_topic_is_refused() {
    let mut a = Arena::new("utf8").await;
    let mut c = a.connected("mf-utf8-c").await;
    let body = [vec![0x00, 0x03, b'm', 0xFF, b'f'], b"x".to_vec()].concat();
    attack(
        &mut c,
        &frame(0x30, &body),
        "PUBLISH with invalid UTF-8 topic",
    )
    .await;
    a.check("invalid UTF-8 topic").await;
}

/// A small deterministic generator (xorshift64*), so failures can be reproduced by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test]
async fn random_bytes_only_hurt_their_own_connection() {
    let mut a = Arena::new("rand").await;
    let mut rng = Rng(0x5EED_F00B_A12F_0001);
    for i in 0..50 {
        let len = 1 + (rng.next() % 300) as usize;
        let mut junk = rng.bytes(len);
        // Half the buffers look like a packet of a plausible type with a plausible length.
        if i % 2 == 1 && junk.len() > 2 {
            junk[0] = (junk[0] & 0xF0).max(0x10);
            junk[1] = (junk.len() - 2).min(127) as u8;
        }
        let mut c = if i % 3 == 0 {
            a.fresh().await
        } else {
            a.connected(&format!("mf-rand-{i}")).await
        };
        let _ = c.send_raw(&junk).await;
        // Read whatever comes back for a moment; closed or not, the broker must survive.
        let _ = tokio::time::timeout(QUIET / 6, c.expect_closed(WAIT)).await;
        drop(c);
        if i % 10 == 9 {
            a.check(&format!("random buffer {i} (seed 0x5EEDF00BA12F0001)"))
                .await;
        }
    }
    a.check("all random buffers").await;
}
