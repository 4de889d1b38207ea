//! One test per decode and encode error path. Malformed errors are matched on the clause
//! they cite, so a test also pins which rule fired.

use super::*;
use crate::codec::{
    AltServer, Auth, ConnAck, Connect, EncodeError, Properties, Publish, QoS, Subscribe,
    SubscribeTopic, SubscriptionOptions,
};
use bytes::Bytes;
use Protocol::{V31, V311, V5};

/// A packet with a one-byte remaining length.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(body.len())
        .ok()
        .filter(|l| *l < 128)
        .expect("short body");
    cat(&[&[first, len], body])
}

/// A CONNECT: protocol name and level, connect flags, keep-alive 60, then `rest`.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let name_len = [0x00, name.len() as u8];
    frame(
        0x10,
        &cat(&[&name_len, name, &[level, flags, 0x00, 0x3C], rest]),
    )
}

/// Client id "c" for 3.x.
const CLIENT_C: &[u8] = &[0x00, 0x01, b'c'];
/// No properties, then client id "c", for 5.0.
const V5_CLIENT_C: &[u8] = &[0x00, 0x00, 0x01, b'c'];

// ---- Fixed header ----------------------------------------------------------------------

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    for protocol in [V31, V311, V5] {
        assert_malformed(
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            protocol,
            "[MQTT-1.5.5]",
        );
    }
}

#[test]
fn remaining_length_cut_short_needs_more() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF][..]);
    assert_eq!(decode(&mut buf, V311, NO_LIMIT), Ok(None));
    assert_eq!(buf.len(), 3);
}

#[test]
fn oversized_packet_is_refused_from_its_header_alone() {
    // Remaining length 268 435 455 (the maximum), nothing else sent.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(
        decode(&mut buf, V5, 1 << 20),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1 << 20
        })
    );
}

#[test]
fn reserved_packet_types() {
    for protocol in [V31, V311, V5] {
        assert_malformed(&[0x00, 0x00], protocol, "reserved packet type");
    }
    for protocol in [V31, V311] {
        assert_malformed(&[0xF0, 0x00], protocol, "reserved packet type");
    }
    assert_eq!(decode_one(&[0xF0, 0x00], V5), Packet::Auth(Auth::default()));
}

#[test]
fn reserved_fixed_header_flags() {
    let cases: &[&[u8]] = &[
        &[0x21, 0x02, 0x00, 0x00],       // CONNACK
        &[0x41, 0x02, 0x00, 0x01],       // PUBACK
        &[0x58, 0x02, 0x00, 0x01],       // PUBREC
        &[0x72, 0x02, 0x00, 0x01],       // PUBCOMP
        &[0x92, 0x03, 0x00, 0x01, 0x00], // SUBACK
        &[0xB2, 0x02, 0x00, 0x01],       // UNSUBACK
        &[0xC1, 0x00],                   // PINGREQ
        &[0xD4, 0x00],                   // PINGRESP
        &[0xE2, 0x00],                   // DISCONNECT
    ];
    for bytes in cases {
        for protocol in [V311, V5] {
            assert_malformed(bytes, protocol, "[MQTT-2.2.2-1]");
        }
        // MQTT 3.1 defines the flag bits on every packet and the original ignored them.
        decode_one(bytes, V31);
    }
    assert_malformed(&[0xF1, 0x00], V5, "[MQTT-2.2.2-1]");
    let mut bytes = connect(b"MQTT", 4, 0x02, CLIENT_C);
    bytes[0] = 0x18; // CONNECT with DUP set
    assert_malformed(&bytes, V311, "[MQTT-2.2.2-1]");
}

#[test]
fn pubrel_subscribe_unsubscribe_need_flags_0010() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x60, 0x02, 0x00, 0x01], "[MQTT-3.6.1-1]"),
        (&[0x6A, 0x02, 0x00, 0x01], "[MQTT-3.6.1-1]"),
        (
            &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
            "[MQTT-3.8.1-1]",
        ),
        (
            &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
            "[MQTT-3.10.1-1]",
        ),
    ];
    for (bytes, clause) in cases {
        assert_malformed(bytes, V311, clause);
        decode_one(bytes, V31);
    }
    // 5.0 has properties in SUBSCRIBE/UNSUBSCRIBE, so check PUBREL there.
    assert_malformed(&[0x60, 0x02, 0x00, 0x01], V5, "[MQTT-3.6.1-1]");
}

#[test]
fn header_errors_consume_nothing_body_errors_consume_the_packet() {
    let mut buf = BytesMut::from(&[0x30, 0x81, 0x20][..]);
    assert!(decode(&mut buf, V311, 16).is_err());
    assert_eq!(&buf[..], &[0x30, 0x81, 0x20]);
    // A PUBACK with reserved flags set, then a PINGREQ.
    let mut buf = BytesMut::from(&[0x41, 0x02, 0x00, 0x01, 0xC0, 0x00][..]);
    assert!(decode(&mut buf, V311, NO_LIMIT).is_err());
    assert_eq!(&buf[..], &[0xC0, 0x00]);
}

// ---- Common field rules ----------------------------------------------------------------

#[test]
fn truncated_fields_are_malformed() {
    let cases: &[&[u8]] = &[
        &[0x30, 0x03, 0x00, 0x06, b't'], // topic longer than the packet
        &[0x32, 0x03, 0x00, 0x01, b't'], // QoS 1 PUBLISH without packet id
        &[0x40, 0x01, 0x00],             // PUBACK with half a packet id
        &[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], // filter without its QoS byte
        &[0x20, 0x01, 0x00],             // CONNACK without a code
    ];
    for bytes in cases {
        for protocol in [V31, V311] {
            assert_malformed(bytes, protocol, "runs past the end");
        }
    }
}

#[test]
fn packet_id_zero_is_malformed() {
    let cases: &[&[u8]] = &[
        &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00], // PUBLISH QoS 1
        &[0x40, 0x02, 0x00, 0x00],                   // PUBACK
        &[0x62, 0x02, 0x00, 0x00],                   // PUBREL
        &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], // SUBSCRIBE
        &[0x90, 0x03, 0x00, 0x00, 0x00],             // SUBACK
        &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'], // UNSUBSCRIBE
        &[0xB0, 0x02, 0x00, 0x00],                   // UNSUBACK
    ];
    for bytes in cases {
        for protocol in [V31, V311] {
            assert_malformed(bytes, protocol, "[MQTT-2.3.1-1]");
        }
    }
    assert_malformed(&[0x40, 0x02, 0x00, 0x00], V5, "[MQTT-2.2.1-3]");
}

#[test]
fn strings_must_be_utf8_without_nul() {
    // PUBLISH topic with an invalid byte, then with U+0000.
    assert_malformed(&[0x30, 0x03, 0x00, 0x01, 0xFF], V311, "[MQTT-1.5.3-1]");
    assert_malformed(&[0x30, 0x03, 0x00, 0x01, 0x00], V311, "[MQTT-1.5.3-2]");
    // Client id "a\0".
    let bytes = connect(b"MQTT", 4, 0x02, &[0x00, 0x02, b'a', 0x00]);
    assert_malformed(&bytes, V311, "[MQTT-1.5.4-2]");
    // SUBSCRIBE filter with an overlong '/' (C0 AF).
    let bytes = [0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 0xC0, 0xAF, 0x00];
    assert_malformed(&bytes, V311, "[MQTT-1.5.3-1]");
}

#[test]
fn trailing_bytes_are_malformed_except_in_3_1() {
    let cases: &[&[u8]] = &[
        &[0x40, 0x03, 0x00, 0x01, 0xFF], // PUBACK
        &[0xC0, 0x01, 0x00],             // PINGREQ
        &[0xD0, 0x01, 0x00],             // PINGRESP
        &[0xE0, 0x01, 0x00],             // DISCONNECT
        &[0xB0, 0x03, 0x00, 0x01, 0x00], // UNSUBACK
    ];
    for bytes in cases {
        assert_malformed(bytes, V311, "bytes left after the last field");
        decode_one(bytes, V31);
    }
    // 5.0: after the property block of a PUBACK, and of a CONNACK.
    assert_malformed(
        &[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF],
        V5,
        "bytes left after",
    );
    assert_malformed(
        &[0x20, 0x04, 0x00, 0x00, 0x00, 0xFF],
        V5,
        "bytes left after",
    );
}

// ---- CONNECT ---------------------------------------------------------------------------

#[test]
fn unsupported_protocols_are_reported_with_name_and_level() {
    let cases: &[(&[u8], u8)] = &[(b"MQTT", 3), (b"MQTT", 6), (b"MQIsdp", 4), (b"HTTP", 4)];
    for &(name, level) in cases {
        let bytes = connect(name, level, 0x02, CLIENT_C);
        for protocol in [V31, V311, V5] {
            assert_eq!(
                decode_err(&bytes, protocol),
                DecodeError::UnsupportedProtocol {
                    name: String::from_utf8_lossy(name).into_owned(),
                    level
                }
            );
        }
    }
}

#[test]
fn unreadable_protocol_name_is_malformed() {
    // Name that is not UTF-8.
    assert_malformed(
        &connect(&[0xFF, 0xFE], 4, 0, CLIENT_C),
        V311,
        "[MQTT-1.5.3-1]",
    );
    // Name without a level byte.
    assert_malformed(
        &[0x10, 0x06, 0x00, 0x04, b'M', b'Q', b'T', b'T'],
        V311,
        "runs past",
    );
    // Name length beyond the packet.
    assert_malformed(&[0x10, 0x02, 0x00, 0x09], V311, "runs past");
}

#[test]
fn v5_reserved_connect_flag() {
    let bytes = connect(b"MQTT", 5, 0x03, V5_CLIENT_C);
    assert_malformed(&bytes, V311, "[MQTT-3.1.2-3]");
}

#[test]
fn extension_flag_without_max_recursion() {
    for (name, level) in [(&b"MQIsdp"[..], 3), (b"MQTT", 4)] {
        let bytes = connect(name, level, 0x01, CLIENT_C);
        assert_malformed(&bytes, V311, "max_recursion is missing");
        // One byte of it is not enough either.
        let bytes = connect(name, level, 0x01, &[0x00, 0x01, b'c', 0x00]);
        assert_malformed(&bytes, V311, "max_recursion is missing");
    }
}

#[test]
fn will_flag_rules() {
    let will = &[0x00, 0x01, b'c', 0x00, 0x01, b't', 0x00, 0x00][..]; // client, topic, payload
                                                                      // Will QoS 3.
    assert_malformed(&connect(b"MQTT", 4, 0x1C, will), V311, "[MQTT-3.1.2-14]");
    let v5_will = &[0x00, 0x00, 0x01, b'c', 0x00, 0x00, 0x01, b't', 0x00, 0x00][..];
    assert_malformed(&connect(b"MQTT", 5, 0x1C, v5_will), V311, "[MQTT-3.1.2-12]");
    // Will QoS 1 without the will flag.
    assert_malformed(
        &connect(b"MQTT", 4, 0x08, CLIENT_C),
        V311,
        "[MQTT-3.1.2-13]",
    );
    assert_malformed(
        &connect(b"MQTT", 5, 0x08, V5_CLIENT_C),
        V311,
        "[MQTT-3.1.2-11]",
    );
    // Will retain without the will flag.
    assert_malformed(
        &connect(b"MQTT", 4, 0x20, CLIENT_C),
        V311,
        "[MQTT-3.1.2-15]",
    );
    assert_malformed(
        &connect(b"MQTT", 5, 0x20, V5_CLIENT_C),
        V311,
        "[MQTT-3.1.2-13]",
    );
    assert_malformed(
        &connect(b"MQIsdp", 3, 0x20, CLIENT_C),
        V311,
        "[MQTT-3.1.2-15]",
    );
}

#[test]
fn will_topic_must_be_a_topic_name() {
    let wildcard = &[0x00, 0x01, b'c', 0x00, 0x01, b'#', 0x00, 0x00][..];
    assert_malformed(&connect(b"MQTT", 4, 0x04, wildcard), V311, "[MQTT-3.3.2-2]");
    let empty = &[0x00, 0x01, b'c', 0x00, 0x00, 0x00, 0x00][..];
    assert_malformed(&connect(b"MQTT", 4, 0x04, empty), V311, "[MQTT-4.7.3-1]");
}

#[test]
fn password_without_user_name_only_invalid_in_3_1_1() {
    let password = &[0x00, 0x01, b'c', 0x00, 0x01, b'p'][..];
    assert_malformed(
        &connect(b"MQTT", 4, 0x40, password),
        V311,
        "[MQTT-3.1.2-22]",
    );
    let Packet::Connect(c) = decode_one(&connect(b"MQIsdp", 3, 0x40, password), V311) else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    assert_eq!(c.username, None);
}

#[test]
fn connect_trailing_bytes_are_ignored_in_3x_and_malformed_in_5() {
    let Packet::Connect(c) = decode_one(&connect(b"MQTT", 4, 0x02, b"\x00\x01cjunk"), V311) else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.client_id, "c");
    assert_malformed(
        &connect(b"MQTT", 5, 0x02, b"\x00\x00\x01cjunk"),
        V311,
        "bytes left",
    );
}

#[test]
fn connect_property_rules_apply() {
    // Topic alias (0x23) is not a CONNECT property.
    let rest = &[0x03, 0x23, 0x00, 0x01, 0x00, 0x01, b'c'][..];
    assert_malformed(
        &connect(b"MQTT", 5, 0x02, rest),
        V311,
        "topic_alias is not allowed",
    );
    // Session expiry interval twice.
    let rest = &[
        0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, // property length 10, two expiries
        0x00, 0x01, b'c',
    ][..];
    assert_malformed(&connect(b"MQTT", 5, 0x02, rest), V311, "more than once");
}

// ---- CONNACK ---------------------------------------------------------------------------

#[test]
fn connack_flag_rules() {
    assert_malformed(&[0x20, 0x02, 0x02, 0x00], V311, "[MQTT-3.2.2-1]");
    assert_malformed(&[0x20, 0x03, 0x80, 0x00, 0x00], V5, "[MQTT-3.2.2-1]");
    assert_malformed(&[0x20, 0x02, 0x01, 0x05], V311, "[MQTT-3.2.2-4]");
    assert_malformed(&[0x20, 0x03, 0x01, 0x87, 0x00], V5, "[MQTT-3.2.2-6]");
    // 3.1: the byte is unused, only bit 0 is read.
    let Packet::ConnAck(ack) = decode_one(&[0x20, 0x02, 0xFE, 0x00], V31) else {
        panic!("not a CONNACK")
    };
    assert!(!ack.session_present);
}

#[test]
fn connack_alt_server_cut_short_is_malformed() {
    // Code 6 with an address length but no max_recursion.
    assert_malformed(
        &[0x20, 0x05, 0x00, 0x06, 0x00, 0x01, b'a'],
        V311,
        "runs past",
    );
    assert_malformed(&[0x20, 0x02, 0x00, 0x06], V31, "runs past");
}

#[test]
fn connack_v5_reason_and_properties() {
    assert_malformed(
        &[0x20, 0x03, 0x00, 0x06, 0x00],
        V5,
        "invalid CONNACK reason",
    );
    // Properties are not optional in a 5.0 CONNACK.
    assert_malformed(&[0x20, 0x02, 0x00, 0x00], V5, "runs past");
    // Topic alias is not a CONNACK property.
    assert_malformed(
        &[0x20, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01],
        V5,
        "not allowed",
    );
}

// ---- PUBLISH ---------------------------------------------------------------------------

#[test]
fn publish_qos_3_is_malformed() {
    for protocol in [V31, V311, V5] {
        assert_malformed(
            &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
            protocol,
            "[MQTT-3.3.1-4]",
        );
    }
}

#[test]
fn publish_dup_with_qos_0() {
    let bytes = [0x38, 0x03, 0x00, 0x01, b't'];
    assert_malformed(&bytes, V311, "[MQTT-3.3.1-2]");
    assert_malformed(&[0x38, 0x04, 0x00, 0x01, b't', 0x00], V5, "[MQTT-3.3.1-2]");
    let Packet::Publish(p) = decode_one(&bytes, V31) else {
        panic!("not a PUBLISH")
    };
    assert!(p.dup);
}

#[test]
fn publish_topic_rules() {
    // Wildcards in a PUBLISH topic are well-formed bytes: the session refuses them with
    // the spec's "topic name invalid" (v5 DISCONNECT 0x90), not the decoder with 0x81.
    for topic in [b'+', b'#'] {
        match decode_one(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', topic], V311) {
            Packet::Publish(p) => assert_eq!(p.topic.as_bytes()[2], topic),
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }
    assert_malformed(&[0x30, 0x02, 0x00, 0x00], V311, "[MQTT-4.7.3-1]");
    assert_malformed(&[0x30, 0x03, 0x00, 0x00, 0x00], V5, "without a topic alias");
}

#[test]
fn publish_property_rules() {
    // Session expiry interval (0x11) is not a PUBLISH property.
    let bytes = [0x30, 0x09, 0x00, 0x01, b't', 0x05, 0x11, 0, 0, 0, 1];
    assert_malformed(&bytes, V5, "session_expiry_interval is not allowed");
    // Topic alias 0.
    let bytes = [0x30, 0x07, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00];
    assert_malformed(&bytes, V5, "topic alias 0");
    // Subscription identifier 0.
    let bytes = [0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x0B, 0x00];
    assert_malformed(&bytes, V5, "subscription identifier 0");
    // Property block longer than the packet.
    let bytes = [0x30, 0x05, 0x00, 0x01, b't', 0x09, 0x01];
    assert_malformed(&bytes, V5, "runs past");
}

// ---- PUBACK family ---------------------------------------------------------------------

#[test]
fn pub_resp_v5_reason_codes() {
    assert_malformed(&[0x40, 0x03, 0x00, 0x01, 0x05], V5, "invalid PUBACK reason");
    assert_malformed(&[0x50, 0x03, 0x00, 0x01, 0x92], V5, "invalid PUBREC reason");
    assert_malformed(&[0x62, 0x03, 0x00, 0x01, 0x10], V5, "invalid PUBREL reason");
    assert_malformed(
        &[0x70, 0x03, 0x00, 0x01, 0x80],
        V5,
        "invalid PUBCOMP reason",
    );
    // A PUBACK may carry a reason string but not a topic alias.
    let bytes = [0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01];
    assert_malformed(&bytes, V5, "topic_alias is not allowed");
}

// ---- SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK ----------------------------------------

#[test]
fn subscribe_needs_a_topic() {
    assert_malformed(&[0x82, 0x02, 0x00, 0x01], V311, "[MQTT-3.8.3-3]");
    assert_malformed(&[0x82, 0x03, 0x00, 0x01, 0x00], V5, "[MQTT-3.8.3-2]");
}

#[test]
fn subscribe_option_rules() {
    let sub = |options: u8| [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', options];
    assert_malformed(&sub(0x03), V311, "[MQTT-3.8.3-4]");
    assert_malformed(&sub(0x04), V311, "[MQTT-3.8.3-4]");
    // 3.1: upper bits unused, QoS 3 still invalid.
    let Packet::Subscribe(s) = decode_one(&sub(0xF1), V31) else {
        panic!("not a SUBSCRIBE")
    };
    assert_eq!(
        s.topics[0].options,
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        }
    );
    assert_malformed(&sub(0x03), V31, "[MQTT-3.8.3-4]");

    let sub5 = |filter: &[u8], options: u8| {
        frame(
            0x82,
            &cat(&[
                &[0x00, 0x01, 0x00, 0x00, filter.len() as u8],
                filter,
                &[options],
            ]),
        )
    };
    assert_malformed(&sub5(b"a", 0x03), V5, "maximum QoS must be 0, 1 or 2");
    assert_malformed(&sub5(b"a", 0x40), V5, "[MQTT-3.8.3-5]");
    assert_malformed(&sub5(b"a", 0x30), V5, "retain handling 3");
    assert_malformed(&sub5(b"$share/g/a", 0x04), V5, "[MQTT-3.8.3-4]");
    // No local on an ordinary filter is fine.
    decode_one(&sub5(b"a", 0x04), V5);
}

#[test]
fn subscribe_with_two_subscription_identifiers() {
    let bytes = [
        0x82, 0x0B, // SUBSCRIBE, remaining length 11
        0x00, 0x01, // packet id 1
        0x04, 0x0B, 0x01, 0x0B, 0x02, // property length 4: subscription ids 1 and 2
        0x00, 0x01, b'a', 0x00, // filter "a", QoS 0
    ];
    assert_malformed(&bytes, V5, "subscription identifier appears more than once");
}

#[test]
fn suback_rules() {
    assert_malformed(&[0x90, 0x02, 0x00, 0x01], V311, "[MQTT-3.8.4-5]");
    assert_malformed(&[0x90, 0x03, 0x00, 0x01, 0x03], V311, "[MQTT-3.9.3-2]");
    assert_malformed(&[0x90, 0x03, 0x00, 0x01, 0x81], V31, "[MQTT-3.9.3-2]");
    assert_malformed(
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x03],
        V5,
        "invalid SUBACK reason",
    );
}

#[test]
fn unsubscribe_needs_a_filter() {
    assert_malformed(&[0xA2, 0x02, 0x00, 0x01], V311, "[MQTT-3.10.3-2]");
    assert_malformed(&[0xA2, 0x03, 0x00, 0x01, 0x00], V5, "[MQTT-3.10.3-2]");
}

#[test]
fn unsuback_v5_rules() {
    assert_malformed(
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        V5,
        "reason code per topic filter",
    );
    assert_malformed(
        &[0xB0, 0x04, 0x00, 0x01, 0x00, 0x10],
        V5,
        "invalid UNSUBACK reason",
    );
}

// ---- DISCONNECT / AUTH -----------------------------------------------------------------

#[test]
fn disconnect_and_auth_v5_reason_codes() {
    assert_malformed(&[0xE0, 0x01, 0x01], V5, "invalid DISCONNECT reason");
    assert_malformed(&[0xF0, 0x01, 0x04], V5, "invalid AUTH reason");
    // Server reference is allowed in DISCONNECT, not in AUTH.
    let props = [0x04, 0x1C, 0x00, 0x01, b'h'];
    assert!(matches!(
        decode_one(&frame(0xE0, &cat(&[&[0x9C], &props])), V5),
        Packet::Disconnect(d) if d.properties.server_reference.as_deref() == Some("h")
    ));
    assert_malformed(&frame(0xF0, &cat(&[&[0x18], &props])), V5, "not allowed");
}

// ---- Encode errors ---------------------------------------------------------------------

/// `encode` fails with `expected`, appends nothing, and `encoded_len` is 0.
#[track_caller]
fn encode_fails(packet: &Packet, protocol: Protocol, expected: fn(&EncodeError) -> bool) {
    let mut buf = BytesMut::from(&b"keep"[..]);
    match encode(packet, protocol, &mut buf) {
        Err(e) => assert!(expected(&e), "unexpected error {e:?}"),
        Ok(()) => panic!("encoded {packet:?}"),
    }
    assert_eq!(&buf[..], b"keep", "encode appended bytes before failing");
    assert_eq!(encoded_len(packet, protocol), 0);
}

fn too_large(e: &EncodeError) -> bool {
    matches!(e, EncodeError::TooLarge(_))
}

fn invalid(e: &EncodeError) -> bool {
    matches!(e, EncodeError::Invalid(_))
}

#[test]
fn encode_string_longer_than_65535() {
    let publish = Packet::Publish(Publish {
        topic: "t".repeat(65_536).into(),
        ..Default::default()
    });
    encode_fails(&publish, V311, too_large);
    let connect = Packet::Connect(Box::new(Connect {
        password: Some(Bytes::from(vec![0; 65_536])),
        username: Some("u".into()),
        ..Default::default()
    }));
    encode_fails(&connect, V311, too_large);
}

#[test]
fn encode_remaining_length_over_the_maximum() {
    // 268 435 455 bytes of payload plus the topic: one byte too many. Zeroed memory is
    // reserved lazily, and the size check never reads it.
    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        payload: Bytes::from(vec![0u8; 268_435_455 - 3 + 1]),
        ..Default::default()
    });
    encode_fails(&publish, V311, too_large);
}

#[test]
fn encode_oversized_property() {
    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        properties: Properties {
            subscription_identifiers: vec![268_435_456],
            ..Default::default()
        },
        ..Default::default()
    });
    encode_fails(&publish, V5, too_large);
}

#[test]
fn encode_what_the_protocol_cannot_express() {
    encode_fails(&Packet::Auth(Auth::default()), V311, invalid);
    let connect = Packet::Connect(Box::new(Connect {
        protocol: V5,
        max_recursion: Some(1),
        ..Default::default()
    }));
    encode_fails(&connect, V5, invalid);
    let extra = Packet::ConnAck(ConnAck {
        extra: Bytes::from_static(b"\x00\x3C"),
        ..Default::default()
    });
    encode_fails(&extra, V5, invalid);
    let alt_without_code_6 = Packet::ConnAck(ConnAck {
        alt_server: Some(AltServer::default()),
        ..Default::default()
    });
    encode_fails(&alt_without_code_6, V311, invalid);
    let code_6_without_alt = Packet::ConnAck(ConnAck {
        code: 6,
        ..Default::default()
    });
    encode_fails(&code_6_without_alt, V311, invalid);
    let qos1_without_id = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "t".into(),
        ..Default::default()
    });
    encode_fails(&qos1_without_id, V311, invalid);
    let qos0_with_id = Packet::Publish(Publish {
        topic: "t".into(),
        packet_id: Some(1),
        ..Default::default()
    });
    encode_fails(&qos0_with_id, V311, invalid);
    let retain_handling_3 = Packet::Subscribe(Subscribe {
        packet_id: 1,
        topics: vec![SubscribeTopic {
            filter: "a".into(),
            options: SubscriptionOptions {
                retain_handling: 3,
                ..Default::default()
            },
        }],
        ..Default::default()
    });
    encode_fails(&retain_handling_3, V5, invalid);
}
