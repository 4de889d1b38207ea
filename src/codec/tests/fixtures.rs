//! The 44 codec fixtures of the original fubar's eunit suite (fubar-behaviour.md §10.1).
//!
//! The original spoke MQTT 3.1, so parse fixtures decode on a `V31` connection (and on `V311`
//! too where the bytes are valid 3.1.1). Adaptations, each noted at its test: 23–25 (type 0
//! bytes) are "need more" without consuming anything, 26 reports the total size, and 36
//! (PUBREL) encodes with flags `0010` as the specification requires.

use super::*;
use crate::codec::{
    AltServer, ConnAck, Connect, LastWill, PubResp, Publish, QoS, SubAck, Subscribe,
    SubscribeTopic, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use bytes::Bytes;
use Protocol::{V31, V311};

/// Fixture 1's CONNECT bytes: protocol MQIsdp/3, no flags, keep-alive 600, client id "test".
fn connect_1_bytes(remaining: u8) -> Vec<u8> {
    cat(&[
        &[0x10, remaining], // CONNECT, remaining length
        &[0x00, 0x06],      // protocol name length 6
        b"MQIsdp",          // protocol name
        &[0x03],            // protocol level 3
        &[0x00],            // connect flags: none
        &[0x02, 0x58],      // keep-alive 600
        &[0x00, 0x04],      // client id length 4
        b"test",            // client id
    ])
}

fn connect_1() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: V31,
        keep_alive: 600,
        client_id: "test".into(),
        ..Default::default()
    }))
}

/// Decodes one packet from `bytes` on `protocol` and returns it with what is left.
fn parse(bytes: &[u8], protocol: Protocol) -> (Packet, Vec<u8>) {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, 4096).unwrap().unwrap();
    (packet, buf.to_vec())
}

/// Parse fixture: `bytes` decode to exactly `expected` on each of `protocols`.
fn parses(bytes: &[u8], protocols: &[Protocol], expected: &Packet) {
    for &protocol in protocols {
        let (packet, rest) = parse(bytes, protocol);
        assert_eq!(&packet, expected, "{protocol:?}");
        assert!(rest.is_empty(), "{protocol:?}: {rest:02X?} left");
    }
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: "to/pic".into(),
        packet_id,
        payload: Bytes::from_static(b"payload"),
        ..Default::default()
    })
}

fn publish_bytes(first: u8, packet_id: &[u8]) -> Vec<u8> {
    let remaining = 8 + packet_id.len() + 7;
    cat(&[
        &[first, remaining as u8], // PUBLISH with flags, remaining length
        &[0x00, 0x06],             // topic length 6
        b"to/pic",                 // topic
        packet_id,                 // packet id (QoS > 0 only)
        b"payload",                // payload
    ])
}

fn subscribe() -> Packet {
    let topic = |filter: &str, qos| SubscribeTopic {
        filter: filter.into(),
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
    };
    Packet::Subscribe(Subscribe {
        packet_id: 10,
        topics: vec![
            topic("to/pic", QoS::AtMostOnce),
            topic("to/pid", QoS::AtLeastOnce),
            topic("to/pie", QoS::ExactlyOnce),
        ],
        ..Default::default()
    })
}

fn subscribe_bytes() -> Vec<u8> {
    cat(&[
        &[0x82, 0x1D], // SUBSCRIBE (flags 0010), remaining length 29
        &[0x00, 0x0A], // packet id 10
        &[0x00, 0x06], // filter length 6
        b"to/pic",     // filter
        &[0x00],       // requested QoS 0
        &[0x00, 0x06],
        b"to/pid",
        &[0x01], // requested QoS 1
        &[0x00, 0x06],
        b"to/pie",
        &[0x02], // requested QoS 2
    ])
}

fn unsubscribe() -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: 10,
        filters: vec!["to/pic".into(), "to/pid".into(), "to/pie".into()],
        ..Default::default()
    })
}

fn unsubscribe_bytes() -> Vec<u8> {
    cat(&[
        &[0xA2, 0x1A], // UNSUBSCRIBE (flags 0010), remaining length 26
        &[0x00, 0x0A], // packet id 10
        &[0x00, 0x06],
        b"to/pic", // filter 1
        &[0x00, 0x06],
        b"to/pid", // filter 2
        &[0x00, 0x06],
        b"to/pie", // filter 3
    ])
}

fn connack(code: u8, alt_server: Option<AltServer>, extra: &'static [u8]) -> Packet {
    Packet::ConnAck(ConnAck {
        code,
        alt_server,
        extra: Bytes::from_static(extra),
        ..Default::default()
    })
}

fn alt_server() -> Option<AltServer> {
    Some(AltServer {
        address: "tcp:1.2.3.4:1883".into(),
        max_recursion: 3,
    })
}

// ---- Parse success -------------------------------------------------------------------

#[test]
fn fixture_01_connect() {
    let bytes = connect_1_bytes(0x12);
    // The CONNECT names its own protocol, whatever the connection's default is.
    parses(&bytes, &[V31, V311, Protocol::V5], &connect_1());
}

#[test]
fn fixture_02_connect_with_trailing_extra_data_ignores_it() {
    let bytes = cat(&[&connect_1_bytes(0x1C), b"extra data"]);
    parses(&bytes, &[V31, V311], &connect_1());
}

#[test]
fn fixture_03_connect_followed_by_more_leaves_the_rest() {
    let bytes = cat(&[&connect_1_bytes(0x12), b"more"]);
    let (packet, rest) = parse(&bytes, V31);
    assert_eq!(packet, connect_1());
    assert_eq!(rest, b"more");
}

#[test]
fn fixture_04_connack() {
    parses(
        &[0x20, 0x02, 0x00, 0x00],
        &[V31, V311],
        &connack(0, None, b""),
    );
}

#[test]
fn fixture_05_connack_with_extra() {
    let bytes = cat(&[&[0x20, 0x0C, 0x00, 0x00], b"extra data"]);
    parses(&bytes, &[V31, V311], &connack(0, None, b"extra data"));
}

#[test]
fn fixture_05b_connack_keep_alive_payload() {
    // §3.1: client asked 600, server suggests 1800.
    let packet = decode_one(&[0x20, 0x04, 0x00, 0x00, 0x07, 0x08], V311);
    let Packet::ConnAck(ack) = packet else {
        panic!("not a CONNACK: {packet:?}")
    };
    assert_eq!(ack.negotiated_keep_alive(), Some(1800));
}

#[test]
fn fixture_06_publish_qos0() {
    parses(
        &publish_bytes(0x30, &[]),
        &[V31, V311],
        &publish(QoS::AtMostOnce, None),
    );
}

#[test]
fn fixture_07_publish_qos1() {
    let expected = publish(QoS::AtLeastOnce, Some(10));
    parses(&publish_bytes(0x32, &[0x00, 0x0A]), &[V31, V311], &expected);
}

#[test]
fn fixture_08_publish_qos2() {
    let expected = publish(QoS::ExactlyOnce, Some(10));
    parses(&publish_bytes(0x34, &[0x00, 0x0A]), &[V31, V311], &expected);
}

#[test]
fn fixture_09_puback() {
    parses(
        &[0x40, 0x02, 0x00, 0x0A],
        &[V31, V311],
        &Packet::PubAck(PubResp::new(10)),
    );
}

#[test]
fn fixture_10_pubrec() {
    parses(
        &[0x50, 0x02, 0x00, 0x0A],
        &[V31, V311],
        &Packet::PubRec(PubResp::new(10)),
    );
}

#[test]
fn fixture_11_pubrel_with_the_originals_flags() {
    // The original sent PUBREL as 0x60; a 3.1 connection accepts it, 3.1.1 does not.
    let bytes = [0x60, 0x02, 0x00, 0x0A];
    parses(&bytes, &[V31], &Packet::PubRel(PubResp::new(10)));
    assert_malformed(&bytes, V311, "[MQTT-3.6.1-1]");
    parses(
        &[0x62, 0x02, 0x00, 0x0A],
        &[V31, V311],
        &Packet::PubRel(PubResp::new(10)),
    );
}

#[test]
fn fixture_12_pubcomp() {
    parses(
        &[0x70, 0x02, 0x00, 0x0A],
        &[V31, V311],
        &Packet::PubComp(PubResp::new(10)),
    );
}

#[test]
fn fixture_13_subscribe() {
    parses(&subscribe_bytes(), &[V31, V311], &subscribe());
}

#[test]
fn fixture_14_suback() {
    let expected = Packet::SubAck(SubAck {
        packet_id: 10,
        return_codes: vec![0, 1, 2],
        ..Default::default()
    });
    parses(
        &[0x90, 0x05, 0x00, 0x0A, 0x00, 0x01, 0x02],
        &[V31, V311],
        &expected,
    );
}

#[test]
fn fixture_15_unsubscribe() {
    parses(&unsubscribe_bytes(), &[V31, V311], &unsubscribe());
}

#[test]
fn fixture_16_unsuback() {
    let expected = Packet::UnsubAck(UnsubAck {
        packet_id: 10,
        ..Default::default()
    });
    parses(&[0xB0, 0x02, 0x00, 0x0A], &[V31, V311], &expected);
}

#[test]
fn fixture_17_pingreq() {
    parses(&[0xC0, 0x00], &[V31, V311], &Packet::PingReq);
}

#[test]
fn fixture_18_pingresp() {
    parses(&[0xD0, 0x00], &[V31, V311], &Packet::PingResp);
}

#[test]
fn fixture_19_disconnect() {
    parses(
        &[0xE0, 0x00],
        &[V31, V311],
        &Packet::Disconnect(Default::default()),
    );
}

#[test]
fn fixture_20_connect_with_max_recursion_extension() {
    let bytes = cat(&[
        &[0x10, 0x14], // CONNECT, remaining length 20
        &[0x00, 0x06],
        b"MQIsdp",     // protocol name
        &[0x03],       // level 3
        &[0x01],       // connect flags: bit 0 = fubar extension
        &[0x02, 0x58], // keep-alive 600
        &[0x00, 0x04],
        b"test",       // client id
        &[0x00, 0x0A], // max_recursion 10, after every other field
        b"more",       // next packet's bytes
    ]);
    let (packet, rest) = parse(&bytes, V31);
    let Packet::Connect(connect) = packet else {
        panic!("not a CONNECT: {packet:?}")
    };
    assert_eq!(connect.max_recursion, Some(10));
    assert_eq!(connect.client_id, "test");
    assert_eq!(connect.keep_alive, 600);
    assert_eq!(rest, b"more");
}

#[test]
fn fixture_21_connack_alt_server() {
    let bytes = cat(&[
        &[0x20, 0x16],       // CONNACK, remaining length 22
        &[0x00],             // flags
        &[0x06],             // code 6: alternate server (fubar extension)
        &[0x00, 0x10],       // address length 16
        b"tcp:1.2.3.4:1883", // address, opaque
        &[0x00, 0x03],       // max_recursion 3
    ]);
    parses(&bytes, &[V31, V311], &connack(6, alt_server(), b""));
}

// ---- Parse incomplete / failure --------------------------------------------------------

/// `bytes` are "need more" and stay in the buffer untouched.
fn needs_more(bytes: &[u8]) {
    for protocol in [V31, V311, Protocol::V5] {
        let mut buf = BytesMut::from(bytes);
        assert_eq!(decode(&mut buf, protocol, 4096), Ok(None), "{bytes:02X?}");
        assert_eq!(&buf[..], bytes, "buffer changed");
    }
}

#[test]
fn fixture_22_empty_buffer_needs_more() {
    needs_more(&[]);
}

#[test]
fn fixture_23_lone_first_byte_needs_more() {
    needs_more(&[0x00]);
}

#[test]
fn fixture_24_header_without_body_needs_more() {
    needs_more(&[0x00, 0x0A]);
}

#[test]
fn fixture_25_partial_body_needs_more_and_is_kept() {
    needs_more(&[0x00, 0x0A, b'm', b'o']);
}

#[test]
fn fixture_23_25_a_complete_type_0_packet_is_malformed() {
    // What 23–25 grow into once the body is there: type 0 is reserved.
    let bytes = cat(&[&[0x00, 0x0A], b"mo01234567"]);
    for protocol in [V31, V311, Protocol::V5] {
        assert_malformed(&bytes, protocol, "reserved packet type");
    }
}

#[test]
fn fixture_26_remaining_length_over_max_is_refused_before_the_body() {
    // Remaining length 4097 = 0x81 0x20; only the fixed header has arrived.
    let mut buf = BytesMut::from(&[0x30, 0x81, 0x20][..]);
    assert_eq!(
        decode(&mut buf, V31, 4096),
        Err(DecodeError::PacketTooLarge {
            size: 4100,
            max: 4096
        })
    );
}

// ---- Encode ----------------------------------------------------------------------------

fn connect_27(max_recursion: Option<u16>) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: V31,
        keep_alive: 600,
        client_id: "test".into(),
        will: Some(LastWill {
            topic: "will".into(),
            payload: Bytes::from_static(b"byebye"),
            ..Default::default()
        }),
        username: Some("romeo".into()),
        password: Some(Bytes::from_static(b"1234")),
        max_recursion,
        ..Default::default()
    }))
}

fn connect_27_bytes(flags: u8, remaining: u8, trailer: &[u8]) -> Vec<u8> {
    cat(&[
        &[0x10, remaining], // CONNECT, remaining length
        &[0x00, 0x06],
        b"MQIsdp",     // protocol name
        &[0x03],       // level 3
        &[flags],      // user name, password, will (+ bit 0 extension)
        &[0x02, 0x58], // keep-alive 600
        &[0x00, 0x04],
        b"test", // client id
        &[0x00, 0x04],
        b"will", // will topic
        &[0x00, 0x06],
        b"byebye", // will message
        &[0x00, 0x05],
        b"romeo", // user name
        &[0x00, 0x04],
        b"1234", // password
        trailer, // max_recursion when the extension is on
    ])
}

#[test]
fn fixture_27_encode_connect() {
    both_ways(&connect_27_bytes(0xC4, 0x2D, &[]), V31, &connect_27(None));
}

#[test]
fn fixture_28_encode_connect_with_max_recursion() {
    let bytes = connect_27_bytes(0xC5, 0x2F, &[0x00, 0x0A]);
    both_ways(&bytes, V31, &connect_27(Some(10)));
}

#[test]
fn fixture_29_encode_connack_with_extra() {
    let bytes = cat(&[&[0x20, 0x07, 0x00, 0x00], b"hello"]);
    both_ways(&bytes, V31, &connack(0, None, b"hello"));
}

#[test]
fn fixture_30_encode_connack_alt_server_with_extra() {
    let bytes = cat(&[
        &[0x20, 0x1B, 0x00, 0x06], // CONNACK, length 27, flags, code 6
        &[0x00, 0x10],
        b"tcp:1.2.3.4:1883", // address
        &[0x00, 0x03],       // max_recursion 3
        b"hello",            // extra
    ]);
    both_ways(&bytes, V31, &connack(6, alt_server(), b"hello"));
}

#[test]
fn fixture_31_encode_publish_qos0() {
    both_ways(
        &publish_bytes(0x30, &[]),
        V31,
        &publish(QoS::AtMostOnce, None),
    );
}

#[test]
fn fixture_32_encode_publish_qos1() {
    let packet = publish(QoS::AtLeastOnce, Some(10));
    both_ways(&publish_bytes(0x32, &[0x00, 0x0A]), V31, &packet);
}

#[test]
fn fixture_33_encode_publish_qos2() {
    let packet = publish(QoS::ExactlyOnce, Some(10));
    both_ways(&publish_bytes(0x34, &[0x00, 0x0A]), V31, &packet);
}

#[test]
fn fixture_34_encode_puback() {
    both_ways(
        &[0x40, 0x02, 0x00, 0x0A],
        V31,
        &Packet::PubAck(PubResp::new(10)),
    );
}

#[test]
fn fixture_35_encode_pubrec() {
    both_ways(
        &[0x50, 0x02, 0x00, 0x0A],
        V31,
        &Packet::PubRec(PubResp::new(10)),
    );
}

#[test]
fn fixture_36_encode_pubrel_with_spec_flags() {
    // The original wrote 0x60; every MQTT version requires flags 0010.
    for protocol in [V31, V311, Protocol::V5] {
        both_ways(
            &[0x62, 0x02, 0x00, 0x0A],
            protocol,
            &Packet::PubRel(PubResp::new(10)),
        );
    }
}

#[test]
fn fixture_37_encode_pubcomp() {
    both_ways(
        &[0x70, 0x02, 0x00, 0x0A],
        V31,
        &Packet::PubComp(PubResp::new(10)),
    );
}

#[test]
fn fixture_38_encode_subscribe() {
    both_ways(&subscribe_bytes(), V31, &subscribe());
}

#[test]
fn fixture_39_encode_suback() {
    let packet = Packet::SubAck(SubAck {
        packet_id: 10,
        return_codes: vec![0, 1, 2],
        ..Default::default()
    });
    both_ways(&[0x90, 0x05, 0x00, 0x0A, 0x00, 0x01, 0x02], V31, &packet);
}

#[test]
fn fixture_40_encode_unsubscribe() {
    both_ways(&unsubscribe_bytes(), V31, &unsubscribe());
}

#[test]
fn fixture_41_encode_unsuback() {
    let packet = Packet::UnsubAck(UnsubAck {
        packet_id: 10,
        ..Default::default()
    });
    both_ways(&[0xB0, 0x02, 0x00, 0x0A], V31, &packet);
}

#[test]
fn fixture_42_encode_pingreq() {
    both_ways(&[0xC0, 0x00], V31, &Packet::PingReq);
}

#[test]
fn fixture_43_encode_pingresp() {
    both_ways(&[0xD0, 0x00], V31, &Packet::PingResp);
}

#[test]
fn fixture_44_encode_disconnect() {
    both_ways(&[0xE0, 0x00], V31, &Packet::Disconnect(Default::default()));
}
