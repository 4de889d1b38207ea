//! MQTT 5.0 byte fixtures, one comment per field.

use super::*;
use crate::codec::{
    reason, Auth, ConnAck, Connect, Disconnect, LastWill, Properties, PubResp, Publish, QoS,
    SubAck, Subscribe, SubscribeTopic, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use bytes::Bytes;
use Protocol::V5;

#[test]
fn connect_with_properties_and_will_properties() {
    let bytes = cat(&[
        &[0x10, 0x28], // CONNECT, remaining length 40
        &[0x00, 0x04],
        b"MQTT",                         // protocol name
        &[0x05],                         // protocol level 5
        &[0xC6],                         // user name, password, will (QoS 0), clean start
        &[0x00, 0x1E],                   // keep-alive 30
        &[0x05],                         // property length 5
        &[0x11, 0x00, 0x00, 0x00, 0x78], // session expiry interval 120
        &[0x00, 0x02],
        b"c5",                           // client id
        &[0x05],                         // will property length 5
        &[0x18, 0x00, 0x00, 0x00, 0x05], // will delay interval 5
        &[0x00, 0x03],
        b"w/t", // will topic
        &[0x00, 0x02],
        b"hi", // will payload
        &[0x00, 0x01],
        b"u",          // user name
        &[0x00, 0x00], // empty password
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "c5".into(),
        will: Some(LastWill {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(5),
                ..Default::default()
            },
        }),
        username: Some("u".into()),
        password: Some(Bytes::new()),
        max_recursion: None,
        properties: Properties {
            session_expiry_interval: Some(120),
            ..Default::default()
        },
    }));
    // Decoded on a connection that has not seen a CONNECT yet (V311 default) as well.
    assert_eq!(decode_one(&bytes, Protocol::V311), packet);
    both_ways(&bytes, V5, &packet);
}

#[test]
fn connect_password_without_user_name_is_allowed() {
    let bytes = cat(&[
        &[0x10, 0x11], // CONNECT, remaining length 17
        &[0x00, 0x04],
        b"MQTT",       // protocol name
        &[0x05],       // level 5
        &[0x40],       // password only
        &[0x00, 0x00], // keep-alive 0
        &[0x00],       // no properties
        &[0x00, 0x00], // empty client id
        &[0x00, 0x02],
        b"pw", // password
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V5,
        password: Some(Bytes::from_static(b"pw")),
        ..Default::default()
    }));
    both_ways(&bytes, V5, &packet);
}

#[test]
fn connack_with_server_keep_alive() {
    let bytes = [
        0x20, 0x08, // CONNACK, remaining length 8
        0x01, // session present
        0x00, // reason: success
        0x05, // property length 5
        0x13, 0x00, 0x3C, // server keep alive 60
        0x24, 0x01, // maximum QoS 1
    ];
    let packet = Packet::ConnAck(ConnAck {
        session_present: true,
        code: reason::SUCCESS,
        properties: Properties {
            server_keep_alive: Some(60),
            maximum_qos: Some(1),
            ..Default::default()
        },
        ..Default::default()
    });
    both_ways(&bytes, V5, &packet);
}

#[test]
fn connack_use_another_server() {
    let bytes = cat(&[
        &[0x20, 0x0B], // CONNACK, remaining length 11
        &[0x00],       // no session
        &[0x9C],       // reason: use another server
        &[0x08],       // property length 8
        &[0x1C, 0x00, 0x05],
        b"host2", // server reference "host2"
    ]);
    let packet = Packet::ConnAck(ConnAck {
        code: reason::USE_ANOTHER_SERVER,
        properties: Properties {
            server_reference: Some("host2".into()),
            ..Default::default()
        },
        ..Default::default()
    });
    both_ways(&bytes, V5, &packet);
}

#[test]
fn publish_with_topic_alias_and_empty_topic() {
    let bytes = cat(&[
        &[0x32, 0x0D],       // PUBLISH QoS 1, remaining length 13
        &[0x00, 0x00],       // empty topic name (alias in use)
        &[0x00, 0x07],       // packet id 7
        &[0x05],             // property length 5
        &[0x01, 0x01],       // payload format indicator: UTF-8
        &[0x23, 0x00, 0x02], // topic alias 2
        b"hey",              // payload
    ]);
    let packet = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "".into(),
        packet_id: Some(7),
        payload: Bytes::from_static(b"hey"),
        properties: Properties {
            payload_format_indicator: Some(1),
            topic_alias: Some(2),
            ..Default::default()
        },
        ..Default::default()
    });
    both_ways(&bytes, V5, &packet);
}

#[test]
fn publish_with_several_subscription_identifiers() {
    let bytes = cat(&[
        &[0x30, 0x0A], // PUBLISH QoS 0, remaining length 10
        &[0x00, 0x01],
        b"t",                // topic
        &[0x05],             // property length 5
        &[0x0B, 0x01],       // subscription identifier 1
        &[0x0B, 0x80, 0x01], // subscription identifier 128
        b"x",                // payload
    ]);
    let packet = Packet::Publish(Publish {
        topic: "t".into(),
        payload: Bytes::from_static(b"x"),
        properties: Properties {
            subscription_identifiers: vec![1, 128],
            ..Default::default()
        },
        ..Default::default()
    });
    both_ways(&bytes, V5, &packet);
}

#[test]
fn puback_short_and_long_forms() {
    // Success without properties: the 3.x-sized form.
    both_ways(
        &[0x40, 0x02, 0x00, 0x07],
        V5,
        &Packet::PubAck(PubResp::new(7)),
    );
    // A reason code without properties: remaining length 3.
    let no_subscribers = Packet::PubAck(PubResp {
        packet_id: 7,
        reason: reason::NO_MATCHING_SUBSCRIBERS,
        properties: Properties::default(),
    });
    both_ways(&[0x40, 0x03, 0x00, 0x07, 0x10], V5, &no_subscribers);
    // An explicit empty property block decodes the same (and encodes in the short form).
    assert_eq!(
        decode_one(&[0x40, 0x04, 0x00, 0x07, 0x10, 0x00], V5),
        no_subscribers
    );
    // Reason code and a reason string.
    let bytes = cat(&[
        &[0x40, 0x09], // PUBACK, remaining length 9
        &[0x00, 0x07], // packet id 7
        &[0x87],       // reason: not authorized
        &[0x05],       // property length 5
        &[0x1F, 0x00, 0x02],
        b"no", // reason string "no"
    ]);
    let refused = Packet::PubAck(PubResp {
        packet_id: 7,
        reason: reason::NOT_AUTHORIZED,
        properties: Properties {
            reason_string: Some("no".into()),
            ..Default::default()
        },
    });
    both_ways(&bytes, V5, &refused);
}

#[test]
fn pubrec_pubrel_pubcomp() {
    both_ways(
        &[0x50, 0x02, 0x00, 0x09],
        V5,
        &Packet::PubRec(PubResp::new(9)),
    );
    let not_found = PubResp {
        packet_id: 9,
        reason: reason::PACKET_IDENTIFIER_NOT_FOUND,
        properties: Properties::default(),
    };
    // PUBREL flags 0010, remaining length 3, packet id 9, reason 0x92.
    both_ways(
        &[0x62, 0x03, 0x00, 0x09, 0x92],
        V5,
        &Packet::PubRel(not_found.clone()),
    );
    both_ways(
        &[0x70, 0x03, 0x00, 0x09, 0x92],
        V5,
        &Packet::PubComp(not_found),
    );
}

#[test]
fn subscribe_with_options_and_identifier() {
    let bytes = cat(&[
        &[0x82, 0x0B], // SUBSCRIBE, remaining length 11
        &[0x00, 0x01], // packet id 1
        &[0x02],       // property length 2
        &[0x0B, 0x05], // subscription identifier 5
        &[0x00, 0x03],
        b"a/+",  // filter
        &[0x2E], // QoS 2, no local, retain as published, retain handling 2
    ]);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 1,
        topics: vec![SubscribeTopic {
            filter: "a/+".into(),
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            },
        }],
        properties: Properties {
            subscription_identifiers: vec![5],
            ..Default::default()
        },
    });
    both_ways(&bytes, V5, &packet);
}

#[test]
fn suback_unsubscribe_unsuback() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 1,
        return_codes: vec![
            reason::GRANTED_QOS_1,
            reason::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        ],
        properties: Properties::default(),
    });
    // SUBACK, length 5, packet id 1, no properties, granted QoS 1, wildcards not supported.
    both_ways(&[0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0xA2], V5, &suback);
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: 3,
        filters: vec!["x".into()],
        properties: Properties::default(),
    });
    // UNSUBSCRIBE, length 6, packet id 3, no properties, filter "x".
    both_ways(
        &[0xA2, 0x06, 0x00, 0x03, 0x00, 0x00, 0x01, b'x'],
        V5,
        &unsubscribe,
    );
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 3,
        reason_codes: vec![reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED],
        properties: Properties::default(),
    });
    // UNSUBACK, length 5, packet id 3, no properties, success, no subscription existed.
    both_ways(&[0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11], V5, &unsuback);
}

#[test]
fn disconnect_forms() {
    // Normal disconnection: remaining length 0.
    both_ways(
        &[0xE0, 0x00],
        V5,
        &Packet::Disconnect(Disconnect::default()),
    );
    // Reason code only.
    let taken_over = Packet::Disconnect(Disconnect {
        reason: reason::SESSION_TAKEN_OVER,
        properties: Properties::default(),
    });
    both_ways(&[0xE0, 0x01, 0x8E], V5, &taken_over);
    // Reason and a property.
    let bytes = [
        0xE0, 0x07, // DISCONNECT, remaining length 7
        0x04, // reason: disconnect with will message
        0x05, // property length 5
        0x11, 0x00, 0x00, 0x00, 0x00, // session expiry interval 0
    ];
    let with_will = Packet::Disconnect(Disconnect {
        reason: reason::DISCONNECT_WITH_WILL,
        properties: Properties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    });
    both_ways(&bytes, V5, &with_will);
}

#[test]
fn auth_forms() {
    both_ways(&[0xF0, 0x00], V5, &Packet::Auth(Auth::default()));
    let bytes = cat(&[
        &[0xF0, 0x0F], // AUTH, remaining length 15
        &[0x18],       // reason: continue authentication
        &[0x0D],       // property length 13
        &[0x15, 0x00, 0x05],
        b"SCRAM",                        // authentication method
        &[0x16, 0x00, 0x02, 0xAB, 0xCD], // authentication data AB CD
    ]);
    let packet = Packet::Auth(Auth {
        reason: reason::CONTINUE_AUTHENTICATION,
        properties: Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
            ..Default::default()
        },
    });
    both_ways(&bytes, V5, &packet);
}

#[test]
fn ping_packets() {
    both_ways(&[0xC0, 0x00], V5, &Packet::PingReq);
    both_ways(&[0xD0, 0x00], V5, &Packet::PingResp);
}
