//! Parked connections (`mqtt.park_after_ms`): an idle plain-TCP connection leaves its task
//! and waits in its worker's readiness table; whatever happens next (a packet from the
//! client, a message for it, its keep-alive running out, a takeover, the client going away)
//! is handled exactly as for a connection that never parked.

mod common;

use common::{connect_packet, will, Client, RawClient, TestBroker, Version, WAIT};
use fubar::codec::{Packet, Protocol, PubResp, QoS};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Idle time after which test connections park.
const PARK_AFTER_MS: u64 = 200;

fn broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.mqtt.park_after_ms = PARK_AFTER_MS;
        // Short keep-alives for the timeout test.
        c.mqtt.valid_keep_alive = [1, 3600];
    })
}

/// Waits until exactly `n` connections are parked.
async fn parked(broker: &TestBroker, n: u64) {
    let deadline = Instant::now() + WAIT;
    while broker.metrics().parked != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} parked connections, have {}",
            broker.metrics().parked
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_connection_parks_and_wakes_for_a_ping() {
    let broker = broker();
    let (mut client, _) = RawClient::connect(broker.addr, Protocol::V311, "pinger", true).await;
    parked(&broker, 1).await;
    assert_eq!(
        broker.metrics().connections,
        1,
        "a parked connection is still open"
    );
    for _ in 0..3 {
        client.send(&Packet::PingReq).await;
        assert_eq!(client.recv().await, Packet::PingResp);
        // Woken, then parked again once idle.
        parked(&broker, 1).await;
    }
    client.disconnect().await;
    parked(&broker, 0).await;
}

#[tokio::test]
async fn parked_connections_wake_one_by_one_and_park_again_in_freed_slots() {
    let broker = broker();
    let mut clients = Vec::new();
    for i in 0..5 {
        let id = format!("turn{i}");
        clients.push(
            RawClient::connect(broker.addr, Protocol::V311, &id, true)
                .await
                .0,
        );
    }
    parked(&broker, 5).await;
    // Each wake frees a slot that the next park reuses with a new generation: every
    // client still reaches its own connection.
    for round in 0..2 {
        for i in [3, 0, 4, 1, 2] {
            clients[i].send(&Packet::PingReq).await;
            assert_eq!(
                clients[i].recv().await,
                Packet::PingResp,
                "round {round}, client {i}"
            );
            parked(&broker, 5).await;
        }
    }
    for client in clients {
        client.disconnect().await;
    }
    parked(&broker, 0).await;
}

#[tokio::test]
async fn a_parked_subscriber_gets_every_message_in_order() {
    let broker = broker();
    let (mut sub, _) = RawClient::connect(broker.addr, Protocol::V311, "sub", true).await;
    sub.subscribe(1, "park/t", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.addr, Version::V4, "pub").await;
    let mut next = 0u32;
    for _ in 0..3 {
        parked(&broker, 2).await;
        for _ in 0..50 {
            publisher
                .publish("park/t", 1, false, &next.to_be_bytes())
                .await;
            next += 1;
        }
        for expected in next - 50..next {
            let publish = sub.expect_publish().await;
            assert_eq!(
                &publish.payload[..],
                &expected.to_be_bytes(),
                "out of order"
            );
            let packet_id = publish.packet_id.expect("QoS 1 has a packet id");
            sub.send(&Packet::PubAck(PubResp::new(packet_id))).await;
        }
        publisher.wait_acks(1, 50).await;
    }
    sub.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_parked_connection_whose_keep_alive_runs_out_is_closed_with_its_will() {
    let broker = broker();
    let mut watcher = Client::connect(broker.addr, Version::V4, "watcher").await;
    watcher.subscribe_ok("park/will", 0).await;
    let mut connect = connect_packet(Protocol::V311, "silent", true, 1);
    connect.will = Some(will("park/will", b"gone", QoS::AtMostOnce, false));
    let (mut silent, ack) = RawClient::connect_with(broker.addr, connect).await;
    assert_eq!(ack.code, 0);
    // Parked after 0.2 s, closed at 1.5 x the keep-alive of 1 s.
    parked(&broker, 1).await;
    silent.expect_closed(WAIT).await;
    let msg = watcher.recv().await;
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        ("park/will", &b"gone"[..])
    );
}

#[tokio::test]
async fn a_parked_connection_its_client_drops_publishes_the_will() {
    let broker = broker();
    let (mut watcher, _) = RawClient::connect(broker.addr, Protocol::V311, "watcher", true).await;
    watcher.subscribe(1, "park/will", QoS::AtMostOnce).await;
    let mut connect = connect_packet(Protocol::V311, "dropper", true, 60);
    connect.will = Some(will("park/will", b"dropped", QoS::AtMostOnce, false));
    let (dropper, _) = RawClient::connect_with(broker.addr, connect).await;
    parked(&broker, 2).await;
    drop(dropper);
    let msg = watcher.expect_publish().await;
    assert_eq!(&msg.payload[..], b"dropped");
    let deadline = Instant::now() + WAIT;
    while broker.metrics().connections != 1 {
        assert!(
            Instant::now() < deadline,
            "the dropped connection is still counted"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_parked_connection_is_taken_over() {
    let broker = broker();
    let (mut first, _) = RawClient::connect(broker.addr, Protocol::V311, "twin", false).await;
    first.subscribe(1, "park/twin", QoS::AtLeastOnce).await;
    parked(&broker, 1).await;
    let (mut second, present) =
        RawClient::connect(broker.addr, Protocol::V311, "twin", false).await;
    assert!(present, "the session carries over");
    first.expect_closed(WAIT).await;
    let publisher = Client::connect(broker.addr, Version::V4, "pub").await;
    publisher
        .publish("park/twin", 1, false, b"to the second")
        .await;
    assert_eq!(&second.expect_publish().await.payload[..], b"to the second");
}

#[tokio::test]
async fn park_after_zero_keeps_connections_in_their_tasks() {
    let broker = TestBroker::start_with(|c| c.mqtt.park_after_ms = 0);
    let (mut client, _) = RawClient::connect(broker.addr, Protocol::V311, "awake", true).await;
    sleep(Duration::from_millis(600)).await;
    assert_eq!(broker.metrics().parked, 0);
    assert!(client.is_alive().await);
}
