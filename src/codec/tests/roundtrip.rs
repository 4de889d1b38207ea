//! Property-based tests: arbitrary valid packets survive encode → decode for each protocol,
//! every prefix of an encoding is "need more", and no input makes `decode` panic.
//!
//! The strategies generate only what the protocol can express: no properties or 5.0 reason
//! codes for 3.x, no fubar extensions for 5.0, properties only where the packet allows them
//! and with values the specification accepts.

use super::*;
use crate::codec::decode::{
    AUTH_REASONS, CONNACK_REASONS, DISCONNECT_REASONS, PUBACK_REASONS, PUBREL_REASONS,
    SUBACK_REASONS, SUBACK_V3_CODES, UNSUBACK_REASONS,
};
use crate::codec::{
    connack_v3, AltServer, Auth, ConnAck, Connect, Disconnect, LastWill, Properties, PubResp,
    Publish, QoS, SubAck, Subscribe, SubscribeTopic, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use Protocol::{V31, V311, V5};

const MAX_VARINT: u32 = 268_435_455;

// ---- Field strategies ------------------------------------------------------------------

/// Any UTF-8 string without U+0000.
fn text() -> impl Strategy<Value = String> {
    r"[^\x00]{0,8}"
}

/// A topic name: non-empty, no wildcards.
fn topic() -> impl Strategy<Value = String> {
    r"[^\x00+#]{1,8}"
}

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn flag() -> impl Strategy<Value = u8> {
    0..=1u8
}

fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

// ---- Properties, per packet kind (5.0 table 2-4) ----------------------------------------

fn publish_properties() -> impl Strategy<Value = Properties> {
    (
        option::of(flag()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic()),
        option::of(bytes()),
        vec(1..=MAX_VARINT, 0..3),
        option::of(1..=u16::MAX),
        user_properties(),
    )
        .prop_map(
            |(pfi, expiry, content, response, correlation, ids, alias, user)| Properties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type: content,
                response_topic: response,
                correlation_data: correlation,
                subscription_identifiers: ids,
                topic_alias: alias,
                user_properties: user,
                ..Default::default()
            },
        )
}

fn will_properties() -> impl Strategy<Value = Properties> {
    (
        option::of(flag()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic()),
        option::of(bytes()),
        option::of(any::<u32>()),
        user_properties(),
    )
        .prop_map(
            |(pfi, expiry, content, response, correlation, delay, user)| Properties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type: content,
                response_topic: response,
                correlation_data: correlation,
                will_delay_interval: delay,
                user_properties: user,
                ..Default::default()
            },
        )
}

fn connect_properties() -> impl Strategy<Value = Properties> {
    (
        option::of(any::<u32>()),
        option::of(text()),
        option::of(bytes()),
        option::of(flag()),
        option::of(flag()),
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(1..=u32::MAX),
        user_properties(),
    )
        .prop_map(
            |(expiry, method, data, problem, response, receive, alias_max, size, user)| {
                Properties {
                    session_expiry_interval: expiry,
                    authentication_data: data.filter(|_| method.is_some()),
                    authentication_method: method,
                    request_problem_information: problem,
                    request_response_information: response,
                    receive_maximum: receive,
                    topic_alias_maximum: alias_max,
                    maximum_packet_size: size,
                    user_properties: user,
                    ..Default::default()
                }
            },
        )
}

fn connack_properties() -> impl Strategy<Value = Properties> {
    let strings = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(bytes()),
        user_properties(),
    );
    let numbers = (
        option::of(any::<u32>()),
        option::of(any::<u16>()),
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(1..=u32::MAX),
    );
    let flags = (
        option::of(flag()),
        option::of(flag()),
        option::of(flag()),
        option::of(flag()),
        option::of(flag()),
    );
    (strings, numbers, flags).prop_map(
        |(
            (assigned, method, info, reference, reason, data, user),
            (expiry, keep_alive, receive, alias_max, size),
            (max_qos, retain, wildcard, ids, shared),
        )| Properties {
            assigned_client_identifier: assigned,
            authentication_data: data.filter(|_| method.is_some()),
            authentication_method: method,
            response_information: info,
            server_reference: reference,
            reason_string: reason,
            user_properties: user,
            session_expiry_interval: expiry,
            server_keep_alive: keep_alive,
            receive_maximum: receive,
            topic_alias_maximum: alias_max,
            maximum_packet_size: size,
            maximum_qos: max_qos,
            retain_available: retain,
            wildcard_subscription_available: wildcard,
            subscription_identifier_available: ids,
            shared_subscription_available: shared,
            ..Default::default()
        },
    )
}

/// PUBACK family, SUBACK, UNSUBACK: reason string and user properties.
fn ack_properties() -> impl Strategy<Value = Properties> {
    (option::of(text()), user_properties()).prop_map(|(reason, user)| Properties {
        reason_string: reason,
        user_properties: user,
        ..Default::default()
    })
}

fn subscribe_properties() -> impl Strategy<Value = Properties> {
    (option::of(1..=MAX_VARINT), user_properties()).prop_map(|(id, user)| Properties {
        subscription_identifiers: id.into_iter().collect(),
        user_properties: user,
        ..Default::default()
    })
}

fn unsubscribe_properties() -> impl Strategy<Value = Properties> {
    user_properties().prop_map(|user| Properties {
        user_properties: user,
        ..Default::default()
    })
}

fn disconnect_properties() -> impl Strategy<Value = Properties> {
    (
        option::of(any::<u32>()),
        option::of(text()),
        option::of(text()),
        user_properties(),
    )
        .prop_map(|(expiry, reference, reason, user)| Properties {
            session_expiry_interval: expiry,
            server_reference: reference,
            reason_string: reason,
            user_properties: user,
            ..Default::default()
        })
}

fn auth_properties() -> impl Strategy<Value = Properties> {
    (
        option::of(text()),
        option::of(bytes()),
        option::of(text()),
        user_properties(),
    )
        .prop_map(|(method, data, reason, user)| Properties {
            authentication_data: data.filter(|_| method.is_some()),
            authentication_method: method,
            reason_string: reason,
            user_properties: user,
            ..Default::default()
        })
}

/// `props` for 5.0, empty for 3.x.
fn properties<S>(protocol: Protocol, props: S) -> BoxedStrategy<Properties>
where
    S: Strategy<Value = Properties> + 'static,
{
    if protocol == V5 {
        props.boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

/// A 5.0 reason code from `valid`, 0 for 3.x.
fn reason_code(protocol: Protocol, valid: &'static [u8]) -> BoxedStrategy<u8> {
    if protocol == V5 {
        select(valid).boxed()
    } else {
        Just(0).boxed()
    }
}

// ---- Packets ---------------------------------------------------------------------------

fn will(protocol: Protocol) -> impl Strategy<Value = LastWill> {
    (
        topic(),
        bytes(),
        qos(),
        any::<bool>(),
        properties(protocol, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let max_recursion = if protocol == V5 {
        Just(None).boxed()
    } else {
        option::of(any::<u16>()).boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(protocol)),
        option::of(text()),
        option::of(bytes()),
        max_recursion,
        properties(protocol, connect_properties()),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                max_recursion,
                properties,
            )| {
                // 3.1.1 alone forbids a password without a user name.
                let password = password.filter(|_| protocol != V311 || username.is_some());
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    max_recursion,
                    properties,
                }))
            },
        )
}

fn connack(protocol: Protocol) -> BoxedStrategy<Packet> {
    if protocol == V5 {
        return (any::<bool>(), select(CONNACK_REASONS), connack_properties())
            .prop_map(|(session_present, code, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present: session_present && code == 0,
                    code,
                    properties,
                    ..Default::default()
                })
            })
            .boxed();
    }
    let alt_server = (text(), any::<u16>()).prop_map(|(address, max_recursion)| AltServer {
        address,
        max_recursion,
    });
    (any::<bool>(), any::<u8>(), alt_server, bytes())
        .prop_map(move |(session_present, code, alt_server, extra)| {
            Packet::ConnAck(ConnAck {
                // 3.1.1 [MQTT-3.2.2-4]; in 3.1 the bit is free.
                session_present: session_present && (code == 0 || protocol == V31),
                code,
                alt_server: Some(alt_server).filter(|_| code == connack_v3::ALT_SERVER),
                extra,
                properties: Properties::default(),
            })
        })
        .boxed()
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic(),
        packet_id(),
        bytes(),
        properties(protocol, publish_properties()),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, id, payload, properties, use_alias_only)| {
                let qos0 = qos == QoS::AtMostOnce;
                // 5.0: with a topic alias the topic name may be left empty.
                let topic = if use_alias_only && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    // [MQTT-3.3.1-2] (3.1.1 and 5.0); 3.1 does not forbid it.
                    dup: dup && (!qos0 || protocol == V31),
                    qos,
                    retain,
                    topic: topic.into(),
                    packet_id: Some(id).filter(|_| !qos0),
                    payload,
                    properties,
                })
            },
        )
}

fn pub_resp(
    protocol: Protocol,
    reasons: &'static [u8],
    kind: fn(PubResp) -> Packet,
) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        reason_code(protocol, reasons),
        properties(protocol, ack_properties()),
    )
        .prop_map(move |(packet_id, reason, properties)| {
            kind(PubResp {
                packet_id,
                reason,
                properties,
            })
        })
}

fn subscribe_topic(protocol: Protocol) -> impl Strategy<Value = SubscribeTopic> {
    (text(), qos(), any::<bool>(), any::<bool>(), 0..=2u8).prop_map(
        move |(filter, qos, no_local, retain_as_published, retain_handling)| {
            let options = if protocol == V5 {
                SubscriptionOptions {
                    qos,
                    // [MQTT-3.8.3-4]: never on a shared subscription.
                    no_local: no_local && !filter.starts_with("$share/"),
                    retain_as_published,
                    retain_handling,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                }
            };
            SubscribeTopic { filter, options }
        },
    )
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(subscribe_topic(protocol), 1..4),
        properties(protocol, subscribe_properties()),
    )
        .prop_map(|(packet_id, topics, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                topics,
                properties,
            })
        })
}

fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if protocol == V5 {
        SUBACK_REASONS
    } else {
        SUBACK_V3_CODES
    };
    (
        packet_id(),
        vec(select(codes), 1..4),
        properties(protocol, ack_properties()),
    )
        .prop_map(|(packet_id, return_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                return_codes,
                properties,
            })
        })
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(text(), 1..4),
        properties(protocol, unsubscribe_properties()),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn unsuback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if protocol == V5 {
        vec(select(UNSUBACK_REASONS), 1..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), codes, properties(protocol, ack_properties())).prop_map(
        |(packet_id, reason_codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes,
                properties,
            })
        },
    )
}

fn disconnect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        reason_code(protocol, DISCONNECT_REASONS),
        properties(protocol, disconnect_properties()),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (select(AUTH_REASONS), auth_properties())
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet `protocol` can express.
fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let mut kinds = vec![
        connect(protocol).boxed(),
        connack(protocol),
        publish(protocol).boxed(),
        pub_resp(protocol, PUBACK_REASONS, Packet::PubAck).boxed(),
        pub_resp(protocol, PUBACK_REASONS, Packet::PubRec).boxed(),
        pub_resp(protocol, PUBREL_REASONS, Packet::PubRel).boxed(),
        pub_resp(protocol, PUBREL_REASONS, Packet::PubComp).boxed(),
        subscribe(protocol).boxed(),
        suback(protocol).boxed(),
        unsubscribe(protocol).boxed(),
        unsuback(protocol).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(protocol).boxed(),
    ];
    if protocol == V5 {
        kinds.push(auth().boxed());
    }
    Union::new(kinds).boxed()
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(V31), Just(V311), Just(V5)]
}

fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    protocol().prop_flat_map(|p| (Just(p), packet(p)))
}

// ---- Properties ------------------------------------------------------------------------

/// Encodes, checks `encoded_len`, decodes, and returns the decoded packet.
fn round_trip(packet: &Packet, protocol: Protocol) -> Result<Packet, TestCaseError> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(buf.len(), encoded_len(packet, protocol));
    let decoded = decode(&mut buf, protocol, NO_LIMIT);
    prop_assert!(buf.is_empty(), "{} bytes not consumed", buf.len());
    match decoded {
        Ok(Some(decoded)) => Ok(decoded),
        other => Err(TestCaseError::fail(format!("decode gave {other:?}"))),
    }
}

/// Decodes everything `bytes` holds on `protocol`; each decoded packet must survive a
/// round trip unchanged. Stops at the first error or "need more".
fn decode_all(bytes: &[u8], protocol: Protocol) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    // Each packet consumes at least two bytes, so this bound is never the one that stops.
    for _ in 0..=bytes.len() {
        match decode(&mut buf, protocol, 4096) {
            Ok(Some(packet)) => prop_assert_eq!(round_trip(&packet, protocol)?, packet),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn v31_packets_round_trip(packet in packet(V31)) {
        prop_assert_eq!(round_trip(&packet, V31)?, packet);
    }

    #[test]
    fn v311_packets_round_trip(packet in packet(V311)) {
        prop_assert_eq!(round_trip(&packet, V311)?, packet);
    }

    #[test]
    fn v5_packets_round_trip(packet in packet(V5)) {
        prop_assert_eq!(round_trip(&packet, V5)?, packet);
    }

    #[test]
    fn every_proper_prefix_needs_more((protocol, packet) in protocol_and_packet()) {
        let mut bytes = BytesMut::new();
        encode(&packet, protocol, &mut bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for end in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..end]);
            prop_assert_eq!(decode(&mut buf, protocol, NO_LIMIT), Ok(None), "prefix {}", end);
            prop_assert_eq!(&buf[..], &bytes[..end]);
        }
    }

    #[test]
    fn packet_larger_than_max_is_refused_at_any_length(
        (protocol, packet) in protocol_and_packet(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = BytesMut::new();
        encode(&packet, protocol, &mut bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let size = bytes.len();
        // However much of it has arrived, once the fixed header is complete.
        let header = 2 + bytes[1..].iter().take_while(|b| *b & 0x80 != 0).count();
        let end = header + cut.index(size - header + 1);
        let mut buf = BytesMut::from(&bytes[..end]);
        prop_assert_eq!(
            decode(&mut buf, protocol, size - 1),
            Err(DecodeError::PacketTooLarge { size, max: size - 1 })
        );
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        for protocol in [V31, V311, V5] {
            decode_all(&bytes, protocol)?;
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_packets(
        (protocol, packet) in protocol_and_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = BytesMut::new();
        encode(&packet, protocol, &mut bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bytes = bytes.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        for protocol in [V31, V311, V5] {
            decode_all(&bytes, protocol)?;
        }
    }

    #[test]
    fn concatenated_packets_decode_in_order(
        (protocol, packets) in protocol().prop_flat_map(|p| (Just(p), vec(packet(p), 1..5))),
    ) {
        let mut buf = BytesMut::new();
        for packet in &packets {
            encode(packet, protocol, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for packet in &packets {
            prop_assert_eq!(decode(&mut buf, protocol, NO_LIMIT), Ok(Some(packet.clone())));
        }
        prop_assert!(buf.is_empty());
    }
}
