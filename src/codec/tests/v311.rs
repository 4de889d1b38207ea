//! MQTT 3.1.1 byte fixtures, one comment per field.

use super::*;
use crate::codec::{
    connack_v3, ConnAck, Connect, Disconnect, LastWill, Properties, PubResp, Publish, QoS, SubAck,
    Subscribe, SubscribeTopic, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use bytes::Bytes;
use Protocol::V311;

#[test]
fn connect_with_every_field() {
    let bytes = cat(&[
        &[0x10, 0x1F], // CONNECT, remaining length 31
        &[0x00, 0x04],
        b"MQTT",       // protocol name
        &[0x04],       // protocol level 4
        &[0xEE],       // user name, password, will retain, will QoS 1, will, clean
        &[0x00, 0x3C], // keep-alive 60
        &[0x00, 0x02],
        b"c1", // client id
        &[0x00, 0x03],
        b"w/t", // will topic
        &[0x00, 0x03],
        b"bye", // will payload
        &[0x00, 0x01],
        b"u", // user name
        &[0x00, 0x02],
        b"pw", // password
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "c1".into(),
        will: Some(LastWill {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
        max_recursion: None,
        properties: Properties::default(),
    }));
    both_ways(&bytes, V311, &packet);
}

#[test]
fn connect_with_max_recursion_and_empty_client_id() {
    let bytes = cat(&[
        &[0x10, 0x0E], // CONNECT, remaining length 14
        &[0x00, 0x04],
        b"MQTT",       // protocol name
        &[0x04],       // level 4
        &[0x03],       // clean session + bit 0 (fubar extension)
        &[0x00, 0x00], // keep-alive 0
        &[0x00, 0x00], // empty client id
        &[0x00, 0x05], // max_recursion 5
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: true,
        max_recursion: Some(5),
        ..Default::default()
    }));
    both_ways(&bytes, V311, &packet);
}

#[test]
fn connack_session_present() {
    let packet = Packet::ConnAck(ConnAck {
        session_present: true,
        ..Default::default()
    });
    // CONNACK, length 2, session present, accepted.
    both_ways(&[0x20, 0x02, 0x01, 0x00], V311, &packet);
}

#[test]
fn connack_refused() {
    let packet = Packet::ConnAck(ConnAck {
        code: connack_v3::NOT_AUTHORIZED,
        ..Default::default()
    });
    // CONNACK, length 2, no flags, return code 5.
    both_ways(&[0x20, 0x02, 0x00, 0x05], V311, &packet);
}

#[test]
fn publish_with_dup_qos1_retain_and_empty_payload() {
    let bytes = cat(&[
        &[0x3B, 0x07], // PUBLISH, DUP | QoS 1 | RETAIN, remaining length 7
        &[0x00, 0x03],
        b"a/b",        // topic
        &[0x12, 0x34], // packet id 0x1234
    ]);
    let packet = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/b".into(),
        packet_id: Some(0x1234),
        ..Default::default()
    });
    both_ways(&bytes, V311, &packet);
}

#[test]
fn publish_with_two_byte_remaining_length() {
    let payload = [0xAB; 200];
    let bytes = cat(&[
        &[0x30, 0xCB, 0x01], // PUBLISH QoS 0, remaining length 203 (0xCB 0x01)
        &[0x00, 0x01],
        b"t",     // topic
        &payload, // payload
    ]);
    let packet = Packet::Publish(Publish {
        topic: "t".into(),
        payload: Bytes::copy_from_slice(&payload),
        ..Default::default()
    });
    both_ways(&bytes, V311, &packet);
}

#[test]
fn publish_payload_is_a_slice_of_the_read_buffer() {
    let bytes = cat(&[&[0x30, 0x08, 0x00, 0x01], b"t", b"hello"]);
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(publish))) = decode(&mut buf, V311, NO_LIMIT) else {
        panic!("not a PUBLISH")
    };
    assert_eq!(&publish.payload[..], b"hello");
    assert_eq!(
        publish.payload.as_ptr() as usize,
        start + 5,
        "payload was copied"
    );
    assert_eq!(
        publish.topic.as_bytes().as_ptr() as usize,
        start + 4,
        "topic was copied"
    );
}

#[test]
fn subscribe_one_filter() {
    let bytes = cat(&[
        &[0x82, 0x08], // SUBSCRIBE, remaining length 8
        &[0x00, 0x01], // packet id 1
        &[0x00, 0x03],
        b"a/#",  // filter
        &[0x01], // requested QoS 1
    ]);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 1,
        topics: vec![SubscribeTopic {
            filter: "a/#".into(),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
        properties: Properties::default(),
    });
    both_ways(&bytes, V311, &packet);
}

#[test]
fn suback_with_failure() {
    let packet = Packet::SubAck(SubAck {
        packet_id: 1,
        return_codes: vec![0x80, 0x01],
        properties: Properties::default(),
    });
    // SUBACK, length 4, packet id 1, failure, granted QoS 1.
    both_ways(&[0x90, 0x04, 0x00, 0x01, 0x80, 0x01], V311, &packet);
}

#[test]
fn unsubscribe_and_unsuback() {
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec!["x".into()],
        properties: Properties::default(),
    });
    // UNSUBSCRIBE, length 5, packet id 2, filter "x".
    both_ways(
        &[0xA2, 0x05, 0x00, 0x02, 0x00, 0x01, b'x'],
        V311,
        &unsubscribe,
    );
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 2,
        ..Default::default()
    });
    // UNSUBACK, length 2, packet id 2.
    both_ways(&[0xB0, 0x02, 0x00, 0x02], V311, &unsuback);
}

#[test]
fn five_point_o_fields_are_not_written() {
    let props = Properties {
        reason_string: Some("why".into()),
        ..Default::default()
    };
    let puback = Packet::PubAck(PubResp {
        packet_id: 3,
        reason: 0x80,
        properties: props.clone(),
    });
    assert_eq!(encode_vec(&puback, V311), [0x40, 0x02, 0x00, 0x03]);
    let disconnect = Packet::Disconnect(Disconnect {
        reason: 0x8E,
        properties: props.clone(),
    });
    assert_eq!(encode_vec(&disconnect, V311), [0xE0, 0x00]);
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 3,
        reason_codes: vec![0x11],
        properties: props.clone(),
    });
    assert_eq!(encode_vec(&unsuback, V311), [0xB0, 0x02, 0x00, 0x03]);
    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        properties: Properties {
            message_expiry_interval: Some(5),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(encode_vec(&publish, V311), [0x30, 0x03, 0x00, 0x01, b't']);
}

#[test]
fn packets_back_to_back_decode_one_at_a_time() {
    let bytes = cat(&[
        &[0xC0, 0x00],                         // PINGREQ
        &[0x40, 0x02, 0x00, 0x01],             // PUBACK 1
        &[0x30, 0x04, 0x00, 0x01, b't', b'!'], // PUBLISH "t" "!"
        &[0xE0],                               // first byte of a DISCONNECT
    ]);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut packets = Vec::new();
    while let Some(packet) = decode(&mut buf, V311, NO_LIMIT).unwrap() {
        packets.push(packet);
    }
    assert_eq!(packets.len(), 3);
    assert_eq!(packets[0], Packet::PingReq);
    assert_eq!(packets[1], Packet::PubAck(PubResp::new(1)));
    assert!(matches!(&packets[2], Packet::Publish(p) if &p.payload[..] == b"!"));
    assert_eq!(&buf[..], &[0xE0]);
    buf.extend_from_slice(&[0x00]);
    assert_eq!(
        decode(&mut buf, V311, NO_LIMIT),
        Ok(Some(Packet::Disconnect(Disconnect::default())))
    );
}

#[test]
fn packet_of_exactly_max_size_is_accepted() {
    // PINGREQ is 2 bytes; PUBLISH "t" + 1 byte payload is 6.
    let mut buf = BytesMut::from(&[0xC0, 0x00][..]);
    assert_eq!(decode(&mut buf, V311, 2), Ok(Some(Packet::PingReq)));
    let bytes = [0x30, 0x04, 0x00, 0x01, b't', b'!'];
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(decode(&mut buf, V311, 6).unwrap().is_some());
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        decode(&mut buf, V311, 5),
        Err(DecodeError::PacketTooLarge { size: 6, max: 5 })
    );
}
