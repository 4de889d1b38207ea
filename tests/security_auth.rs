//! Accounts, the IP access list and client-id ownership, over real sockets.
//!
//! The default configuration trusts 127.0.0.1 and ::1 only, so these tests connect from
//! other loopback addresses (127.0.0.2 and up, bound on the client side) to play remote
//! clients.

mod common;

use bytes::Bytes;
use common::*;
use fubar::auth::{AclVerdict, IpNet};
use fubar::codec::{Connect, Packet, Protocol, QoS};
use std::time::{Duration, Instant};

fn login(protocol: Protocol, id: &str, user: Option<&str>, password: Option<&str>) -> Connect {
    Connect {
        username: user.map(str::to_string),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        ..connect_packet(protocol, id, true, 60)
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[tokio::test]
async fn accounts_store_a_hash_and_check_passwords() {
    let broker = TestBroker::start_with(cheap_hashes);
    let security = broker.security();
    let record = security
        .set_account("alice", b"wonderland", vec![])
        .unwrap();
    assert!(record.password_hash.starts_with("$argon2id$"), "{record:?}");
    assert!(!record.password_hash.contains("wonderland"));
    assert_eq!(security.account_record("alice"), Some(record));
    assert_eq!(security.accounts()[0].username, "alice");

    let remote = "127.0.0.2";
    for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
        let bad = if protocol == Protocol::V5 { 0x86 } else { 4 };
        for (user, password) in [
            (None, None),
            (Some("alice"), None),
            (Some("alice"), Some("wrong")),
            (Some("mallory"), Some("wonderland")),
        ] {
            let (mut c, ack) =
                RawClient::connect_from(broker.addr, remote, login(protocol, "c", user, password))
                    .await;
            assert_eq!(ack.code, bad, "{protocol:?} {user:?} {password:?}");
            c.expect_closed(WAIT).await;
        }
        let (mut c, ack) = RawClient::connect_from(
            broker.addr,
            remote,
            login(protocol, "c", Some("alice"), Some("wonderland")),
        )
        .await;
        assert_eq!(ack.code, 0, "{protocol:?}");
        assert_eq!(c.subscribe(1, "t", QoS::AtMostOnce).await, vec![0]);
        c.send(&publish_packet("t", QoS::AtMostOnce, None, b"hi"))
            .await;
        assert_eq!(&c.expect_publish().await.payload[..], b"hi");
        c.disconnect().await;
    }

    // A changed password takes effect at the next CONNECT; a deleted account is gone.
    security
        .set_account("alice", b"looking-glass", vec![])
        .unwrap();
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        remote,
        login(Protocol::V311, "c", Some("alice"), Some("wonderland")),
    )
    .await;
    assert_eq!(ack.code, 4);
    assert!(security.delete_account("alice"));
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        remote,
        login(Protocol::V311, "c", Some("alice"), Some("looking-glass")),
    )
    .await;
    assert_eq!(ack.code, 4);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    // The production hash cost, so that a skipped verification would show.
    let broker = TestBroker::start();
    broker
        .security()
        .set_account("alice", b"wonderland", vec![])
        .unwrap();
    async fn median(broker: &TestBroker, user: &str) -> Duration {
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let (_, ack) = RawClient::connect_from(
                broker.addr,
                "127.0.0.2",
                login(Protocol::V311, "c", Some(user), Some("nope")),
            )
            .await;
            times.push(start.elapsed());
            assert_eq!(ack.code, 4);
        }
        times.sort();
        times[2]
    }
    let wrong = median(&broker, "alice").await;
    let unknown = median(&broker, "nobody").await;
    // Both verify an argon2id hash of the same cost; a skipped check would be ~100x faster.
    assert!(
        unknown * 3 > wrong && wrong * 3 > unknown,
        "wrong password {wrong:?} vs unknown user {unknown:?}"
    );
}

#[tokio::test]
async fn trusted_addresses_need_no_account_but_a_named_user_is_checked() {
    let broker = TestBroker::start_with(cheap_hashes);
    broker.security().set_account("bob", b"pw", vec![]).unwrap();
    // 127.0.0.1 is trusted by the default configuration.
    let (mut c, ack) =
        RawClient::connect_with(broker.addr, login(Protocol::V311, "anon", None, None)).await;
    assert_eq!(ack.code, 0);
    assert!(c.is_alive().await);
    let (_, ack) = RawClient::connect_with(
        broker.addr,
        login(Protocol::V5, "x", Some("bob"), Some("guess")),
    )
    .await;
    assert_eq!(ack.code, 0x86);
    let (_, ack) = RawClient::connect_with(
        broker.addr,
        login(Protocol::V5, "x", Some("bob"), Some("pw")),
    )
    .await;
    assert_eq!(ack.code, 0);
}

#[tokio::test]
async fn disabled_auth_lets_anyone_in() {
    let broker = TestBroker::start_with(|c| c.auth.enabled = false);
    let (mut c, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.2",
        login(Protocol::V311, "c", Some("who"), Some("ever")),
    )
    .await;
    assert_eq!(ack.code, 0);
    assert_eq!(c.subscribe(1, "#", QoS::AtLeastOnce).await, vec![1]);
}

#[tokio::test]
async fn deny_closes_right_after_accept_even_with_valid_credentials() {
    let broker = TestBroker::start_with(cheap_hashes);
    let security = broker.security();
    security.set_account("carol", b"pw", vec![]).unwrap();
    security.set_acl(net("127.0.0.3"), AclVerdict::Deny);
    let mut c = RawClient::open_from(broker.addr, "127.0.0.3", Protocol::V311).await;
    // The socket is closed without a single MQTT byte, whatever the client sends.
    let _ = c
        .send_raw(&encode(
            &Packet::Connect(Box::new(login(
                Protocol::V311,
                "c",
                Some("carol"),
                Some("pw"),
            ))),
            Protocol::V311,
        ))
        .await;
    assert_eq!(c.expect_closed(WAIT).await, Vec::<u8>::new());
    // Other addresses are unaffected.
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.2",
        login(Protocol::V311, "c", Some("carol"), Some("pw")),
    )
    .await;
    assert_eq!(ack.code, 0);
    // Deleting the entry lets the address in again.
    assert!(security.delete_acl(&net("127.0.0.3")));
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.3",
        login(Protocol::V311, "c2", Some("carol"), Some("pw")),
    )
    .await;
    assert_eq!(ack.code, 0);
}

#[tokio::test]
async fn most_specific_acl_entry_wins() {
    let broker = TestBroker::start_with(|c| {
        cheap_hashes(c);
        c.auth.deny = vec!["127.0.0.0/24".into()];
        c.auth.allow.push("127.0.0.4/32".into());
        c.auth.allow.push("127.0.0.16/28".into());
    });
    let security = broker.security();
    assert_eq!(
        security.acl_lookup("127.0.0.9".parse().unwrap()),
        Some(AclVerdict::Deny)
    );
    // /32 allow inside the /24 deny: no credentials needed.
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.4",
        login(Protocol::V311, "a", None, None),
    )
    .await;
    assert_eq!(ack.code, 0);
    // /28 allow inside the /24 deny.
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.20",
        login(Protocol::V5, "b", None, None),
    )
    .await;
    assert_eq!(ack.code, 0);
    // 127.0.0.1 keeps its own /32 allow from the defaults.
    let (_, ack) =
        RawClient::connect_with(broker.addr, login(Protocol::V311, "c", None, None)).await;
    assert_eq!(ack.code, 0);
    // The rest of the /24 is denied.
    let mut c = RawClient::open_from(broker.addr, "127.0.0.9", Protocol::V311).await;
    assert_eq!(c.expect_closed(WAIT).await, Vec::<u8>::new());
    // Outside the /24 nothing matches: credentials are required.
    let (_, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.1.9",
        login(Protocol::V311, "d", None, None),
    )
    .await;
    assert_eq!(ack.code, 4);
    // A runtime /32 deny beats the configured /28 allow.
    security.set_acl(net("127.0.0.17"), AclVerdict::Deny);
    let mut c = RawClient::open_from(broker.addr, "127.0.0.17", Protocol::V311).await;
    assert_eq!(c.expect_closed(WAIT).await, Vec::<u8>::new());
    assert!(security
        .acl()
        .contains(&(net("127.0.0.17"), AclVerdict::Deny)));
}

#[tokio::test]
async fn client_id_is_taken_over_only_by_its_owner() {
    let broker = TestBroker::start_with(cheap_hashes);
    let security = broker.security();
    security.set_account("alice", b"a", vec![]).unwrap();
    security.set_account("bob", b"b", vec![]).unwrap();
    let remote = "127.0.0.2";
    let (mut alice, ack) = RawClient::connect_from(
        broker.addr,
        remote,
        login(Protocol::V311, "dev", Some("alice"), Some("a")),
    )
    .await;
    assert_eq!(ack.code, 0);
    // Another user cannot take the id: CONNACK 2 (3.x) / 0x87 (MQTT 5).
    for (protocol, code) in [(Protocol::V311, 2), (Protocol::V5, 0x87)] {
        let (mut bob, ack) = RawClient::connect_from(
            broker.addr,
            remote,
            login(protocol, "dev", Some("bob"), Some("b")),
        )
        .await;
        assert_eq!(ack.code, code, "{protocol:?}");
        bob.expect_closed(WAIT).await;
    }
    // Nor can an anonymous client from a trusted address.
    let (_, ack) =
        RawClient::connect_with(broker.addr, login(Protocol::V311, "dev", None, None)).await;
    assert_eq!(ack.code, 2);
    assert!(alice.is_alive().await, "the owner's connection survives");
    // The owner can take over its own session.
    let (mut again, ack) = RawClient::connect_from(
        broker.addr,
        remote,
        login(Protocol::V311, "dev", Some("alice"), Some("a")),
    )
    .await;
    assert_eq!(ack.code, 0);
    alice.expect_closed(WAIT).await;
    assert!(again.is_alive().await);
    // Once the session is gone the id is free for anyone. The session ends after the
    // DISCONNECT is read, which the client cannot wait for: a few tries, a bounded number.
    again.disconnect().await;
    let mut code = None;
    for _ in 0..50 {
        let (_, ack) = RawClient::connect_from(
            broker.addr,
            remote,
            login(Protocol::V311, "dev", Some("bob"), Some("b")),
        )
        .await;
        code = Some(ack.code);
        if ack.code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, Some(0), "the id stays taken after its session ended");
}
