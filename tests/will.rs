//! Will messages: published when the socket drops without DISCONNECT, not after DISCONNECT,
//! not when the session is taken over; QoS and RETAIN of the will are honoured.

mod common;

use common::*;
use fubar::codec::{Connect, Packet, Protocol, QoS};

fn connect_with_will(protocol: Protocol, id: &str, topic: &str, payload: &[u8]) -> Connect {
    Connect {
        will: Some(will(topic, payload, QoS::AtLeastOnce, false)),
        ..connect_packet(protocol, id, true, 60)
    }
}

async fn will_on_drop(protocol: Protocol, tag: &str) {
    let b = TestBroker::start();
    let mut watcher = Client::connect(b.addr, Version::V4, &format!("will-w-{tag}")).await;
    watcher.subscribe_ok("will/drop", 2).await;

    let (c, ack) = RawClient::connect_with(
        b.addr,
        connect_with_will(protocol, &format!("will-drop-{tag}"), "will/drop", b"gone"),
    )
    .await;
    assert_eq!(ack.code, 0);
    // Nothing is published while the client is connected.
    watcher.expect_silence(QUIET).await;
    drop(c);

    let m = watcher.recv().await;
    assert_eq!(m.topic, "will/drop");
    assert_eq!(m.payload, b"gone");
    assert_eq!(
        m.qos, 1,
        "will QoS 1 to a QoS 2 subscription is delivered at QoS 1"
    );
    assert!(!m.retain);
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn will_published_on_socket_drop_311() {
    will_on_drop(Protocol::V311, "311").await;
}

#[tokio::test]
async fn will_published_on_socket_drop_31() {
    will_on_drop(Protocol::V31, "31").await;
}

#[tokio::test]
async fn will_published_on_socket_drop_5() {
    will_on_drop(Protocol::V5, "5").await;
}

#[tokio::test]
async fn will_published_when_rumqttc_client_dies() {
    let b = TestBroker::start();
    let mut watcher = Client::connect(b.addr, Version::V5, "will-rq-w").await;
    watcher.subscribe_ok("will/rq", 1).await;
    let dying = Client::connect_opts(
        b.addr,
        Opts::new(Version::V4, "will-rq-dying").will("will/rq", b"rq gone", 1, false),
    )
    .await;
    dying.kill().await;
    let m = watcher.recv().await;
    assert_eq!(m.payload, b"rq gone");
}

#[tokio::test]
async fn will_not_published_after_disconnect() {
    let b = TestBroker::start();
    let mut watcher = Client::connect(b.addr, Version::V4, "will-dc-w").await;
    watcher.subscribe_ok("will/dc", 1).await;
    for protocol in [Protocol::V311, Protocol::V5] {
        let (c, _) = RawClient::connect_with(
            b.addr,
            connect_with_will(protocol, &format!("will-dc-{protocol:?}"), "will/dc", b"x"),
        )
        .await;
        c.disconnect().await;
    }
    let dc = Client::connect_opts(
        b.addr,
        Opts::new(Version::V4, "will-dc-rq").will("will/dc", b"y", 1, false),
    )
    .await;
    dc.disconnect().await;
    watcher.expect_silence(QUIET * 2).await;
}

#[tokio::test]
async fn will_not_published_on_takeover() {
    let b = TestBroker::start();
    let mut watcher = Client::connect(b.addr, Version::V4, "will-tk-w").await;
    watcher.subscribe_ok("will/tk", 1).await;
    let (mut a, _) = RawClient::connect_with(
        b.addr,
        connect_with_will(Protocol::V311, "will-tk", "will/tk", b"old"),
    )
    .await;
    let (mut bb, ack) =
        RawClient::connect_with(b.addr, connect_packet(Protocol::V311, "will-tk", true, 60)).await;
    assert_eq!(ack.code, 0);
    a.expect_closed(WAIT).await;
    watcher.expect_silence(QUIET).await;
    assert!(bb.is_alive().await);
    // The new connection has no will: dropping it publishes nothing either.
    drop(bb);
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn retained_will_is_stored() {
    let b = TestBroker::start();
    let connect = Connect {
        will: Some(will("will/ret", b"last words", QoS::AtLeastOnce, true)),
        ..connect_packet(Protocol::V311, "will-ret", true, 60)
    };
    let (mut c, _) = RawClient::connect_with(b.addr, connect).await;
    assert!(c.is_alive().await);
    drop(c);
    // Give the broker a moment to notice the drop, bounded by the retained check below.
    let mut found = None;
    for i in 0..10 {
        let mut late = Client::connect(b.addr, Version::V4, &format!("will-ret-late-{i}")).await;
        late.subscribe_ok("will/ret", 1).await;
        if let Some(m) = late.recv_within(QUIET).await {
            found = Some(m);
            break;
        }
    }
    let m = found.expect("retained will never appeared");
    assert_eq!(m.payload, b"last words");
    assert!(m.retain);
}

#[tokio::test]
async fn will_with_empty_payload_and_qos0() {
    let b = TestBroker::start();
    let mut watcher = Client::connect(b.addr, Version::V4, "will-empty-w").await;
    watcher.subscribe_ok("will/empty", 1).await;
    let connect = Connect {
        will: Some(will("will/empty", b"", QoS::AtMostOnce, false)),
        ..connect_packet(Protocol::V311, "will-empty", true, 60)
    };
    let (c, _) = RawClient::connect_with(b.addr, connect).await;
    drop(c);
    let m = watcher.recv().await;
    assert_eq!(m.topic, "will/empty");
    assert!(m.payload.is_empty());
    assert_eq!(m.qos, 0);
}

#[tokio::test]
async fn protocol_error_publishes_will() {
    let b = TestBroker::start();
    let mut watcher = Client::connect(b.addr, Version::V4, "will-perr-w").await;
    watcher.subscribe_ok("will/perr", 1).await;
    let (mut c, _) = RawClient::connect_with(
        b.addr,
        connect_with_will(Protocol::V311, "will-perr", "will/perr", b"bad client"),
    )
    .await;
    // A second CONNECT is a protocol violation: the broker closes, and the will goes out.
    c.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V311,
        "will-perr",
        true,
        60,
    ))))
    .await;
    c.expect_closed(WAIT).await;
    assert_eq!(watcher.recv().await.payload, b"bad client");
}
