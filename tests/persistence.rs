//! Restart tests: what a node keeps across a shutdown and start on the same data dir —
//! persistent sessions with their subscriptions and queued messages, retained messages,
//! inflight messages (resent with DUP), session expiry — and that a data dir in use is
//! refused.

mod common;

use common::{publish_packet, RawClient, TestBroker, QUIET};
use fubar::codec::{Connect, Packet, Properties, Protocol, PubResp, QoS};
use std::path::Path;
use std::time::Duration;

fn start(dir: &Path) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::start_with(move |c| c.node.data_dir = dir)
}

async fn publish_acked(c: &mut RawClient, topic: &str, qos: QoS, id: u16, payload: &[u8]) {
    c.send(&publish_packet(topic, qos, Some(id), payload)).await;
    match (qos, c.recv().await) {
        (QoS::AtLeastOnce, Packet::PubAck(a)) => assert_eq!(a.packet_id, id),
        (QoS::ExactlyOnce, Packet::PubRec(r)) => {
            assert_eq!(r.packet_id, id);
            c.send(&Packet::PubRel(PubResp::new(id))).await;
            assert!(matches!(c.recv().await, Packet::PubComp(_)));
        }
        (_, other) => panic!("expected the acknowledgement of {id}, got {other:?}"),
    }
}

/// Receives `n` PUBLISHes, acknowledging each (QoS 2 through PUBCOMP, with the broker's
/// pipelined packets in any order); returns (topic, payload, qos) in arrival order.
async fn take(c: &mut RawClient, n: usize) -> Vec<(String, Vec<u8>, QoS)> {
    let mut got = Vec::new();
    let mut releasing = 0usize;
    while got.len() < n || releasing > 0 {
        match c.recv().await {
            Packet::Publish(p) => {
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        c.send(&Packet::PubAck(PubResp::new(p.packet_id.unwrap())))
                            .await
                    }
                    QoS::ExactlyOnce => {
                        releasing += 1;
                        c.send(&Packet::PubRec(PubResp::new(p.packet_id.unwrap())))
                            .await
                    }
                }
                got.push((p.topic.to_string(), p.payload.to_vec(), p.qos));
            }
            Packet::PubRel(r) => {
                releasing -= 1;
                c.send(&Packet::PubComp(PubResp::new(r.packet_id))).await;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn sessions_queues_and_retained_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = start(dir.path());
        let (mut sub, _) = RawClient::connect(broker.addr, Protocol::V311, "p", false).await;
        assert_eq!(sub.subscribe(1, "a/+", QoS::AtLeastOnce).await, vec![1]);
        assert_eq!(sub.subscribe(2, "b", QoS::ExactlyOnce).await, vec![2]);
        sub.disconnect().await;
        let (mut publ, _) = RawClient::connect(broker.addr, Protocol::V311, "pub", true).await;
        let mut retained = publish_packet("r/1", QoS::AtLeastOnce, Some(1), b"keep");
        if let Packet::Publish(p) = &mut retained {
            p.retain = true;
        }
        publ.send(&retained).await;
        assert!(matches!(publ.recv().await, Packet::PubAck(_)));
        publish_acked(&mut publ, "a/x", QoS::AtLeastOnce, 2, b"m1").await;
        publish_acked(&mut publ, "a/x", QoS::AtLeastOnce, 3, b"m2").await;
        publish_acked(&mut publ, "b", QoS::ExactlyOnce, 4, b"m3").await;
        // QoS 0 is not kept for an offline client across a restart.
        publ.send(&publish_packet("a/x", QoS::AtMostOnce, None, b"q0"))
            .await;
        publish_acked(&mut publ, "a/z", QoS::AtLeastOnce, 5, b"m4").await;
    }
    {
        let broker = start(dir.path());
        let m = broker.metrics();
        assert_eq!(
            (m.sessions, m.subscriptions, m.retained),
            (1, 2, 1),
            "{m:?}"
        );
        // The restored session keeps collecting while its client is away.
        let (mut publ, _) = RawClient::connect(broker.addr, Protocol::V311, "pub", true).await;
        publish_acked(&mut publ, "a/y", QoS::AtLeastOnce, 1, b"m5").await;
        let (mut sub, present) = RawClient::connect(broker.addr, Protocol::V311, "p", false).await;
        assert!(present, "session present after the restart");
        let got = take(&mut sub, 5).await;
        let payloads: Vec<&[u8]> = got.iter().map(|(_, p, _)| p.as_slice()).collect();
        assert_eq!(
            payloads,
            vec![&b"m1"[..], b"m2", b"m3", b"m4", b"m5"],
            "in order"
        );
        assert_eq!(got[2].2, QoS::ExactlyOnce);
        sub.expect_silence(QUIET).await;
        let (mut late, _) = RawClient::connect(broker.addr, Protocol::V311, "late", true).await;
        late.subscribe(1, "r/#", QoS::AtLeastOnce).await;
        let p = late.expect_publish().await;
        assert_eq!((p.payload.as_ref(), p.retain), (&b"keep"[..], true));
        sub.disconnect().await;
    }
    {
        // Acknowledged messages were deleted from the store: nothing comes back.
        let broker = start(dir.path());
        let (mut sub, present) = RawClient::connect(broker.addr, Protocol::V311, "p", false).await;
        assert!(present);
        sub.expect_silence(QUIET).await;
        // Its subscriptions still work.
        let (mut publ, _) = RawClient::connect(broker.addr, Protocol::V311, "pub", true).await;
        publish_acked(&mut publ, "b", QoS::AtLeastOnce, 1, b"again").await;
        assert_eq!(take(&mut sub, 1).await[0].1, b"again");
    }
}

#[tokio::test]
async fn a_direct_message_to_an_offline_persistent_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = start(dir.path());
        let (bob, _) = RawClient::connect(broker.addr, Protocol::V311, "bob", false).await;
        bob.disconnect().await;
        let (mut alice, _) = RawClient::connect(broker.addr, Protocol::V311, "alice", true).await;
        publish_acked(&mut alice, "bob", QoS::AtLeastOnce, 1, b"hi bob").await;
    }
    let broker = start(dir.path());
    let (mut bob, present) = RawClient::connect(broker.addr, Protocol::V311, "bob", false).await;
    assert!(present);
    let got = take(&mut bob, 1).await;
    assert_eq!(
        (got[0].0.as_str(), got[0].1.as_slice()),
        ("bob", &b"hi bob"[..])
    );
}

#[tokio::test]
async fn an_unacknowledged_delivery_is_resent_with_dup_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first_id;
    {
        let broker = start(dir.path());
        let (mut sub, _) = RawClient::connect(broker.addr, Protocol::V311, "s", false).await;
        sub.subscribe(1, "t", QoS::AtLeastOnce).await;
        let (mut publ, _) = RawClient::connect(broker.addr, Protocol::V311, "pub", true).await;
        publish_acked(&mut publ, "t", QoS::AtLeastOnce, 1, b"x").await;
        let p = sub.expect_publish().await;
        assert!(!p.dup);
        first_id = p.packet_id;
        // Not acknowledged. Give the store thread a moment to record it as inflight.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let broker = start(dir.path());
    let (mut sub, present) = RawClient::connect(broker.addr, Protocol::V311, "s", false).await;
    assert!(present);
    let p = sub.expect_publish().await;
    assert_eq!(
        (p.payload.as_ref(), p.dup, p.packet_id),
        (&b"x"[..], true, first_id)
    );
}

#[tokio::test]
async fn expired_and_clean_sessions_are_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = start(dir.path());
        let connect = Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: "short".into(),
            properties: Properties {
                session_expiry_interval: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let (mut c, ack) = RawClient::connect_with(broker.addr, connect).await;
        assert_eq!(ack.code, 0);
        c.subscribe(1, "e", QoS::AtLeastOnce).await;
        c.disconnect().await;
        let (mut gone, _) = RawClient::connect(broker.addr, Protocol::V311, "gone", false).await;
        gone.subscribe(1, "g", QoS::AtLeastOnce).await;
        gone.disconnect().await;
        // A clean start replaces the persistent session and its stored state.
        let (c, present) = RawClient::connect(broker.addr, Protocol::V311, "gone", true).await;
        assert!(!present);
        c.disconnect().await;
        let (mut kept, _) = RawClient::connect(broker.addr, Protocol::V311, "kept", false).await;
        kept.subscribe(1, "k", QoS::AtLeastOnce).await;
        kept.disconnect().await;
    }
    // "short" expires while the broker is down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let broker = start(dir.path());
    let m = broker.metrics();
    assert_eq!((m.sessions, m.subscriptions), (1, 1), "{m:?}");
    for (id, expected) in [("short", false), ("gone", false), ("kept", true)] {
        let (c, present) = RawClient::connect(broker.addr, Protocol::V311, id, false).await;
        assert_eq!(present, expected, "{id}");
        c.disconnect().await;
    }
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _running = start(dir.path());
    let mut cfg = fubar::Config::default();
    cfg.mqtt.port = 0;
    cfg.mqtt.bind = "127.0.0.1".into();
    cfg.node.data_dir = dir.path().to_path_buf();
    match fubar::Broker::start(cfg, fubar::logging::discard()) {
        Err(e) => assert!(e.to_string().contains("locked"), "{e}"),
        Ok(_) => panic!("a second broker opened the same data dir"),
    }
}
