//! The embedding API: several nodes in one process, shutdown closes client sockets, the
//! `max_connections` cap, and the metrics a user of `BrokerHandle::metrics` can observe.

mod common;

use common::*;
use fubar::codec::{Packet, Protocol};
use std::time::Duration;
use tokio::time::Instant;

/// Polls `f` until it is true (bounded by [`WAIT`]); the broker updates counters
/// asynchronously.
async fn eventually(
    what: &str,
    b: &TestBroker,
    f: impl Fn(&fubar::metrics::MetricsSnapshot) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = b.metrics();
        if f(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: metrics are {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_in_one_process_are_independent() {
    let b1 = TestBroker::start();
    let b2 = TestBroker::start();
    assert_ne!(b1.addr, b2.addr);
    let mut s1 = Client::connect(b1.addr, Version::V4, "lc-same-id").await;
    let mut s2 = Client::connect(b2.addr, Version::V4, "lc-same-id").await;
    s1.subscribe_ok("lc/t", 1).await;
    s2.subscribe_ok("lc/t", 1).await;
    let mut p1 = Client::connect(b1.addr, Version::V4, "lc-pub").await;
    p1.publish_acked("lc/t", 1, false, b"node 1").await;
    assert_eq!(s1.recv().await.payload, b"node 1");
    s2.expect_silence(QUIET).await;
}

#[tokio::test]
async fn shutdown_closes_client_connections_and_frees_the_port() {
    let b = TestBroker::start();
    let addr = b.addr;
    let (mut c, _) = RawClient::connect(addr, Protocol::V311, "lc-shutdown", true).await;
    assert!(c.is_alive().await);
    drop(b);
    c.expect_closed(WAIT).await;
    // Nothing listens any more.
    let refused = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "listener still accepting after shutdown"
    );
}

#[tokio::test]
async fn max_connections_refuses_extra_clients() {
    let b = TestBroker::start_with(|c| c.mqtt.max_connections = 2);
    let (mut c1, _) = RawClient::connect(b.addr, Protocol::V311, "lc-max-1", true).await;
    let (_c2, _) = RawClient::connect(b.addr, Protocol::V311, "lc-max-2", true).await;

    let mut c3 = RawClient::open(b.addr, Protocol::V311).await;
    c3.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V311,
        "lc-max-3",
        true,
        60,
    ))))
    .await;
    let got = c3.expect_closed(WAIT).await;
    assert_eq!(got, [0x20, 0x02, 0x00, 0x03], "CONNACK 3 then close");

    let mut c5 = RawClient::open(b.addr, Protocol::V5).await;
    c5.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V5,
        "lc-max-5",
        true,
        60,
    ))))
    .await;
    let ack = c5.expect_connack().await;
    assert_eq!(ack.code, 0x89, "MQTT 5: Server busy; got {ack:?}");
    c5.expect_closed(WAIT).await;

    // When one leaves, a new client fits again.
    c1.send(&Packet::Disconnect(Default::default())).await;
    c1.expect_closed(WAIT).await;
    eventually("connection count after a DISCONNECT", &b, |m| {
        m.connections == 1
    })
    .await;
    let (mut c4, _) = RawClient::connect(b.addr, Protocol::V311, "lc-max-4", true).await;
    assert!(c4.is_alive().await);
}

#[tokio::test]
async fn metrics_follow_connections_and_messages() {
    let b = TestBroker::start();
    let m0 = b.metrics();
    assert_eq!(m0.connections, 0);
    assert_eq!(m0.publish_in, 0);

    let mut sub = Client::connect(b.addr, Version::V4, "lc-m-sub").await;
    sub.subscribe_ok("lc/m", 1).await;
    let persistent =
        Client::connect_opts(b.addr, Opts::new(Version::V4, "lc-m-pers").clean(false)).await;
    let mut publ = Client::connect(b.addr, Version::V4, "lc-m-pub").await;
    eventually("three connections", &b, |m| m.connections == 3).await;
    eventually("three sessions", &b, |m| m.sessions == 3).await;

    for i in 0..5 {
        publ.publish_acked("lc/m", 1, false, format!("{i}").as_bytes())
            .await;
        sub.recv().await;
    }
    eventually("5 publishes in, 5 out", &b, |m| {
        m.publish_in == 5 && m.publish_out == 5
    })
    .await;

    // A persistent session outlives its connection; a clean one does not.
    persistent.disconnect().await;
    sub.disconnect().await;
    eventually("one connection left", &b, |m| m.connections == 1).await;
    eventually("persistent session kept, clean one gone", &b, |m| {
        m.sessions == 2
    })
    .await;
    let m = b.metrics();
    assert_eq!(m.dropped, 0, "nothing should have been dropped: {m:?}");
}
