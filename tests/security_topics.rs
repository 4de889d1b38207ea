//! Topic permissions over real sockets: per-account rules with `%c` / `%u`, the configured
//! rules and default policy, refused publishes and subscriptions in 3.x and MQTT 5, direct
//! messages and wills.

mod common;

use bytes::Bytes;
use common::*;
use fubar::codec::{Connect, Packet, Protocol, PubResp, QoS};

const REMOTE: &str = "127.0.0.2";

fn login(protocol: Protocol, id: &str, user: &str) -> Connect {
    Connect {
        username: Some(user.to_string()),
        password: Some(Bytes::from_static(b"pw")),
        ..connect_packet(protocol, id, true, 60)
    }
}

/// A broker whose default policy is deny, with accounts:
/// - `dev`: publish and subscribe under `clients/<client id>/`, subscribe to `users/<user>/+`;
/// - `watcher`: subscribe to everything;
/// - `quiet`: may not send direct messages.
fn broker(tweak: impl FnOnce(&mut fubar::Config)) -> TestBroker {
    let broker = TestBroker::start_with(|c| {
        cheap_hashes(c);
        c.auth.default_policy = "deny".into();
        c.auth.rules = vec!["allow publish public/#".into()];
        tweak(c);
    });
    let security = broker.security();
    let rules = |texts: &[&str]| texts.iter().map(|t| t.parse().unwrap()).collect();
    security
        .set_account(
            "dev",
            b"pw",
            rules(&[
                "allow publish,subscribe clients/%c/#",
                "allow subscribe users/%u/+",
            ]),
        )
        .unwrap();
    security
        .set_account(
            "watcher",
            b"pw",
            rules(&["allow subscribe #", "allow direct #"]),
        )
        .unwrap();
    security
        .set_account("quiet", b"pw", rules(&["deny direct #", "allow publish #"]))
        .unwrap();
    broker
}

async fn client(broker: &TestBroker, protocol: Protocol, id: &str, user: &str) -> RawClient {
    let (c, ack) = RawClient::connect_from(broker.addr, REMOTE, login(protocol, id, user)).await;
    assert_eq!(ack.code, 0, "{user} as {id}");
    c
}

#[tokio::test]
async fn v5_refusals_carry_reason_0x87_and_nothing_is_routed() {
    let broker = broker(|_| {});
    let mut watcher = client(&broker, Protocol::V5, "w", "watcher").await;
    assert_eq!(watcher.subscribe(1, "#", QoS::AtLeastOnce).await, vec![1]);
    let mut dev = client(&broker, Protocol::V5, "d1", "dev").await;

    // %c: its own subtree is allowed, a neighbour's is not.
    dev.send(&publish_packet(
        "clients/d1/temp",
        QoS::AtLeastOnce,
        Some(1),
        b"ok",
    ))
    .await;
    assert_eq!(dev.recv().await, Packet::PubAck(PubResp::new(1)));
    assert_eq!(&watcher.expect_publish().await.payload[..], b"ok");
    dev.send(&publish_packet(
        "clients/d2/temp",
        QoS::AtLeastOnce,
        Some(2),
        b"no",
    ))
    .await;
    match dev.recv().await {
        Packet::PubAck(ack) => assert_eq!((ack.packet_id, ack.reason), (2, 0x87)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    dev.send(&publish_packet(
        "clients/d2/temp",
        QoS::ExactlyOnce,
        Some(3),
        b"no",
    ))
    .await;
    match dev.recv().await {
        Packet::PubRec(rec) => assert_eq!((rec.packet_id, rec.reason), (3, 0x87)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    dev.send(&publish_packet(
        "clients/d2/temp",
        QoS::AtMostOnce,
        None,
        b"no",
    ))
    .await;
    // The configured rules apply after the account's own.
    dev.send(&publish_packet(
        "public/news",
        QoS::AtMostOnce,
        None,
        b"pub",
    ))
    .await;
    assert_eq!(&watcher.expect_publish().await.payload[..], b"pub");
    watcher.expect_silence(QUIET).await;

    // %u in subscribe rules; wildcards cannot reach beyond the allowed filter.
    assert_eq!(
        dev.subscribe(4, "users/dev/+", QoS::AtMostOnce).await,
        vec![0]
    );
    assert_eq!(
        dev.subscribe(5, "users/eve/+", QoS::AtMostOnce).await,
        vec![0x87]
    );
    assert_eq!(
        dev.subscribe(6, "users/#", QoS::AtMostOnce).await,
        vec![0x87]
    );
    assert_eq!(
        dev.subscribe(7, "clients/d1/#", QoS::AtMostOnce).await,
        vec![0]
    );
    assert!(dev.is_alive().await);
}

#[tokio::test]
async fn v3_refused_publish_is_dropped_and_refused_subscribe_gets_0x80() {
    let broker = broker(|_| {});
    let mut watcher = client(&broker, Protocol::V311, "w", "watcher").await;
    assert_eq!(watcher.subscribe(1, "#", QoS::AtLeastOnce).await, vec![1]);
    let mut dev = client(&broker, Protocol::V311, "d1", "dev").await;
    assert_eq!(
        dev.subscribe(2, "clients/d2/#", QoS::AtMostOnce).await,
        vec![0x80]
    );
    // A refused QoS 1 publish is acknowledged (3.x cannot say no) but never delivered.
    dev.send(&publish_packet("secret", QoS::AtLeastOnce, Some(3), b"no"))
        .await;
    assert_eq!(dev.recv().await, Packet::PubAck(PubResp::new(3)));
    dev.send(&publish_packet(
        "clients/d1/x",
        QoS::AtLeastOnce,
        Some(4),
        b"yes",
    ))
    .await;
    assert_eq!(dev.recv().await, Packet::PubAck(PubResp::new(4)));
    assert_eq!(&watcher.expect_publish().await.payload[..], b"yes");
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn disconnect_on_denied_closes_a_v3_publisher() {
    let broker = broker(|c| c.auth.disconnect_on_denied = true);
    let mut dev = client(&broker, Protocol::V311, "d1", "dev").await;
    dev.send(&publish_packet(
        "clients/d1/x",
        QoS::AtMostOnce,
        None,
        b"fine",
    ))
    .await;
    assert!(dev.is_alive().await);
    dev.send(&publish_packet("elsewhere", QoS::AtMostOnce, None, b"no"))
        .await;
    dev.expect_closed(WAIT).await;
}

#[tokio::test]
async fn direct_messages_are_a_permission_of_their_own() {
    let broker = broker(|_| {});
    let mut target = client(&broker, Protocol::V5, "target", "watcher").await;
    let mut quiet = client(&broker, Protocol::V5, "q", "quiet").await;
    // `quiet` may publish anywhere, but not to a client id.
    quiet
        .send(&publish_packet(
            "target",
            QoS::AtLeastOnce,
            Some(1),
            b"psst",
        ))
        .await;
    match quiet.recv().await {
        Packet::PubAck(ack) => assert_eq!(ack.reason, 0x87),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    target.expect_silence(QUIET).await;
    // `watcher` may message `target` (itself here: any id its rule covers).
    let mut sender = client(&broker, Protocol::V5, "w2", "watcher").await;
    sender
        .send(&publish_packet(
            "target",
            QoS::AtLeastOnce,
            Some(2),
            b"hello",
        ))
        .await;
    assert_eq!(sender.recv().await, Packet::PubAck(PubResp::new(2)));
    let got = target.expect_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        ("target", &b"hello"[..])
    );
}

#[tokio::test]
async fn a_will_the_client_may_not_publish_refuses_the_connection() {
    let broker = broker(|_| {});
    for (protocol, code) in [(Protocol::V311, 5), (Protocol::V5, 0x87)] {
        let mut connect = login(protocol, "d1", "dev");
        connect.will = Some(will("forbidden", b"bye", QoS::AtMostOnce, false));
        let (mut c, ack) = RawClient::connect_from(broker.addr, REMOTE, connect).await;
        assert_eq!(ack.code, code, "{protocol:?}");
        c.expect_closed(WAIT).await;
    }
    let mut connect = login(Protocol::V311, "d1", "dev");
    connect.will = Some(will("clients/d1/status", b"bye", QoS::AtMostOnce, false));
    let (_, ack) = RawClient::connect_from(broker.addr, REMOTE, connect).await;
    assert_eq!(ack.code, 0);
}

#[tokio::test]
async fn anonymous_trusted_clients_get_the_configured_rules() {
    let broker = broker(|_| {});
    // 127.0.0.1 is trusted: no account, so only `auth.rules` and the default policy apply.
    let (mut anon, ack) =
        RawClient::connect_with(broker.addr, connect_packet(Protocol::V5, "anon", true, 60)).await;
    assert_eq!(ack.code, 0);
    assert_eq!(
        anon.subscribe(1, "public/#", QoS::AtMostOnce).await,
        vec![0x87]
    );
    anon.send(&publish_packet("public/x", QoS::AtLeastOnce, Some(2), b"x"))
        .await;
    assert_eq!(anon.recv().await, Packet::PubAck(PubResp::new(2)));
    anon.send(&publish_packet(
        "private/x",
        QoS::AtLeastOnce,
        Some(3),
        b"x",
    ))
    .await;
    match anon.recv().await {
        Packet::PubAck(ack) => assert_eq!(ack.reason, 0x87),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}
