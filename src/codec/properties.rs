//! MQTT 5 properties: one table drives both decoding and encoding.
//!
//! Each row of the table names a property's identifier, the [`Properties`] field that holds
//! it, how its value is carried on the wire and which packets may contain it (5.0 §2.2.2.2,
//! table 2-4). `decode` and `encode` call [`read()`] and [`write()`] for every 5.0 packet
//! that has a property block; nothing else in the codec knows a property identifier.

use super::reader::{Reader, MAX_VARINT};
use super::writer::{measure, Writer};
use super::{DecodeError, EncodeError, Properties};
use bytes::Bytes;

/// The packet (or CONNECT part) a property block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    Connect,
    /// The will properties in the CONNECT payload.
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Owner {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// How a property value is carried on the wire.
trait Wire {
    type Value;
    fn read(r: &mut Reader) -> Result<Self::Value, DecodeError>;
    fn write<W: Writer>(w: &mut W, v: &Self::Value) -> Result<(), EncodeError>;
}

struct Byte;
struct TwoByte;
struct FourByte;
struct VarInt;
struct Utf8;
struct Binary;
struct Utf8Pair;

impl Wire for Byte {
    type Value = u8;
    fn read(r: &mut Reader) -> Result<u8, DecodeError> {
        r.u8()
    }
    fn write<W: Writer>(w: &mut W, v: &u8) -> Result<(), EncodeError> {
        w.put_u8(*v);
        Ok(())
    }
}

impl Wire for TwoByte {
    type Value = u16;
    fn read(r: &mut Reader) -> Result<u16, DecodeError> {
        r.u16()
    }
    fn write<W: Writer>(w: &mut W, v: &u16) -> Result<(), EncodeError> {
        w.put_u16(*v);
        Ok(())
    }
}

impl Wire for FourByte {
    type Value = u32;
    fn read(r: &mut Reader) -> Result<u32, DecodeError> {
        r.u32()
    }
    fn write<W: Writer>(w: &mut W, v: &u32) -> Result<(), EncodeError> {
        w.put_u32(*v);
        Ok(())
    }
}

impl Wire for VarInt {
    type Value = u32;
    fn read(r: &mut Reader) -> Result<u32, DecodeError> {
        r.varint()
    }
    fn write<W: Writer>(w: &mut W, v: &u32) -> Result<(), EncodeError> {
        if *v > MAX_VARINT {
            return Err(EncodeError::TooLarge(
                "variable byte integer above 268 435 455",
            ));
        }
        w.put_varint(*v as usize)
    }
}

impl Wire for Utf8 {
    type Value = String;
    fn read(r: &mut Reader) -> Result<String, DecodeError> {
        r.string()
    }
    fn write<W: Writer>(w: &mut W, v: &String) -> Result<(), EncodeError> {
        w.put_str(v)
    }
}

impl Wire for Binary {
    type Value = Bytes;
    fn read(r: &mut Reader) -> Result<Bytes, DecodeError> {
        r.binary()
    }
    fn write<W: Writer>(w: &mut W, v: &Bytes) -> Result<(), EncodeError> {
        w.put_binary(v)
    }
}

impl Wire for Utf8Pair {
    type Value = (String, String);
    fn read(r: &mut Reader) -> Result<(String, String), DecodeError> {
        Ok((r.string()?, r.string()?))
    }
    fn write<W: Writer>(w: &mut W, (name, value): &(String, String)) -> Result<(), EncodeError> {
        w.put_str(name)?;
        w.put_str(value)
    }
}

/// A [`Properties`] field: `Option` for properties that may appear once, `Vec` for those that
/// may repeat.
trait Slot<T> {
    /// Stores a decoded value; false if the property was already present and may not repeat.
    fn insert(&mut self, value: T) -> bool;
    /// The values to encode.
    fn items(&self) -> &[T];
}

impl<T> Slot<T> for Option<T> {
    fn insert(&mut self, value: T) -> bool {
        if self.is_some() {
            return false;
        }
        *self = Some(value);
        true
    }
    fn items(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> Slot<T> for Vec<T> {
    fn insert(&mut self, value: T) -> bool {
        self.push(value);
        true
    }
    fn items(&self) -> &[T] {
        self
    }
}

macro_rules! property_table {
    ($($id:literal $field:ident : $wire:ident in $($owner:ident)|+ ;)+) => {
        /// Reads the value of property `id` into `props`.
        fn read_one(
            id: u8,
            r: &mut Reader,
            owner: Owner,
            props: &mut Properties,
        ) -> Result<(), DecodeError> {
            match id {
                $($id => {
                    const ALLOWED: u16 = 0 $(| Owner::$owner.bit())+;
                    if ALLOWED & owner.bit() == 0 {
                        return Err(DecodeError::Malformed(concat!(
                            "5.0 §2.2.2.2: property ",
                            stringify!($field),
                            " is not allowed in this packet"
                        )));
                    }
                    let value = <$wire as Wire>::read(r)?;
                    if !Slot::insert(&mut props.$field, value) {
                        return Err(DecodeError::Malformed(concat!(
                            "5.0 §2.2.2.2: property ",
                            stringify!($field),
                            " appears more than once"
                        )));
                    }
                    Ok(())
                })+
                _ => Err(DecodeError::Malformed(
                    "5.0 §2.2.2.2: unknown property identifier",
                )),
            }
        }

        /// Writes every property that is set, in identifier order, without the length.
        fn write_list<W: Writer>(w: &mut W, props: &Properties) -> Result<(), EncodeError> {
            $(for value in Slot::items(&props.$field) {
                w.put_u8($id);
                <$wire as Wire>::write(w, value)?;
            })+
            Ok(())
        }
    };
}

property_table! {
    // id  field                              wire      allowed in
    0x01 payload_format_indicator:          Byte      in Publish | Will;
    0x02 message_expiry_interval:           FourByte  in Publish | Will;
    0x03 content_type:                      Utf8      in Publish | Will;
    0x08 response_topic:                    Utf8      in Publish | Will;
    0x09 correlation_data:                  Binary    in Publish | Will;
    0x0B subscription_identifiers:          VarInt    in Publish | Subscribe;
    0x11 session_expiry_interval:           FourByte  in Connect | ConnAck | Disconnect;
    0x12 assigned_client_identifier:        Utf8      in ConnAck;
    0x13 server_keep_alive:                 TwoByte   in ConnAck;
    0x15 authentication_method:             Utf8      in Connect | ConnAck | Auth;
    0x16 authentication_data:               Binary    in Connect | ConnAck | Auth;
    0x17 request_problem_information:       Byte      in Connect;
    0x18 will_delay_interval:               FourByte  in Will;
    0x19 request_response_information:      Byte      in Connect;
    0x1A response_information:              Utf8      in ConnAck;
    0x1C server_reference:                  Utf8      in ConnAck | Disconnect;
    0x1F reason_string:                     Utf8      in ConnAck | PubResp | SubAck | UnsubAck
                                                         | Disconnect | Auth;
    0x21 receive_maximum:                   TwoByte   in Connect | ConnAck;
    0x22 topic_alias_maximum:               TwoByte   in Connect | ConnAck;
    0x23 topic_alias:                       TwoByte   in Publish;
    0x24 maximum_qos:                       Byte      in ConnAck;
    0x25 retain_available:                  Byte      in ConnAck;
    0x26 user_properties:                   Utf8Pair  in Connect | Will | ConnAck | Publish
                                                         | PubResp | Subscribe | SubAck
                                                         | Unsubscribe | UnsubAck | Disconnect
                                                         | Auth;
    0x27 maximum_packet_size:               FourByte  in Connect | ConnAck;
    0x28 wildcard_subscription_available:   Byte      in ConnAck;
    0x29 subscription_identifier_available: Byte      in ConnAck;
    0x2A shared_subscription_available:     Byte      in ConnAck;
}

/// Reads a property block (Property Length, then the properties) belonging to `owner`.
pub(super) fn read(r: &mut Reader, owner: Owner) -> Result<Properties, DecodeError> {
    let len = r.varint()?;
    let mut block = r.sub(len as usize)?;
    let mut props = Properties::default();
    while !block.is_empty() {
        // The identifier is a Variable Byte Integer, but every defined one fits in one byte;
        // a byte with the continuation bit set is therefore an unknown identifier.
        let id = block.u8()?;
        read_one(id, &mut block, owner, &mut props)?;
    }
    check_values(&props, owner)?;
    Ok(props)
}

/// Writes a property block: Property Length, then every property that is set.
pub(super) fn write<W: Writer>(w: &mut W, props: &Properties) -> Result<(), EncodeError> {
    let len = measure(|c| write_list(c, props))?;
    w.put_varint(len)?;
    write_list(w, props)
}

/// Value rules the specification states property by property.
fn check_values(p: &Properties, owner: Owner) -> Result<(), DecodeError> {
    let not_bool = |v: Option<u8>| v.is_some_and(|v| v > 1);
    let rules = [
        (
            not_bool(p.payload_format_indicator),
            "5.0 §3.3.2.3.2: payload format indicator must be 0 or 1",
        ),
        (
            p.subscription_identifiers.contains(&0),
            "5.0 §3.3.2.3.8: subscription identifier 0 is a protocol error",
        ),
        (
            owner == Owner::Subscribe && p.subscription_identifiers.len() > 1,
            "5.0 §3.8.2.1.2: subscription identifier appears more than once",
        ),
        (
            not_bool(p.request_response_information),
            "5.0 §3.1.2.11.6: request response information must be 0 or 1",
        ),
        (
            not_bool(p.request_problem_information),
            "5.0 §3.1.2.11.7: request problem information must be 0 or 1",
        ),
        (
            p.receive_maximum == Some(0),
            "5.0 §3.1.2.11.3: receive maximum 0 is a protocol error",
        ),
        (
            p.maximum_packet_size == Some(0),
            "5.0 §3.1.2.11.4: maximum packet size 0 is a protocol error",
        ),
        (
            p.topic_alias == Some(0),
            "5.0 §3.3.2.3.4: topic alias 0 is a protocol error",
        ),
        (
            not_bool(p.maximum_qos),
            "5.0 §3.2.2.3.4: maximum QoS must be 0 or 1",
        ),
        (
            not_bool(p.retain_available),
            "5.0 §3.2.2.3.5: retain available must be 0 or 1",
        ),
        (
            not_bool(p.wildcard_subscription_available),
            "5.0 §3.2.2.3.11: wildcard subscription available must be 0 or 1",
        ),
        (
            not_bool(p.subscription_identifier_available),
            "5.0 §3.2.2.3.12: subscription identifiers available must be 0 or 1",
        ),
        (
            not_bool(p.shared_subscription_available),
            "5.0 §3.2.2.3.13: shared subscription available must be 0 or 1",
        ),
        (
            p.authentication_data.is_some() && p.authentication_method.is_none(),
            "5.0 §3.1.2.11.10: authentication data without an authentication method",
        ),
        (
            p.response_topic
                .as_deref()
                .is_some_and(|t| t.contains(['+', '#'])),
            "5.0 [MQTT-3.3.2-14] response topic must not contain wildcards",
        ),
    ];
    match rules.iter().find(|(broken, _)| *broken) {
        Some((_, rule)) => Err(DecodeError::Malformed(rule)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn decode(bytes: &[u8], owner: Owner) -> Result<Properties, DecodeError> {
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let props = read(&mut r, owner)?;
        assert!(r.is_empty(), "property block not fully consumed");
        Ok(props)
    }

    fn malformed_with(result: Result<Properties, DecodeError>, needle: &str) {
        match result {
            Err(DecodeError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected Malformed containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn every_wire_type_decodes() {
        let bytes = [
            0x2A, // property length 42
            0x01, 0x01, // payload format indicator = 1 (Byte)
            0x02, 0x00, 0x00, 0x0E, 0x10, // message expiry interval = 3600 (Four Byte)
            0x23, 0x00, 0x07, // topic alias = 7 (Two Byte)
            0x0B, 0x80, 0x01, // subscription identifier = 128 (Variable Byte)
            0x0B, 0x05, // a second subscription identifier = 5 (allowed in PUBLISH)
            0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type "text" (UTF-8)
            0x09, 0x00, 0x02, 0xCA, 0xFE, // correlation data CA FE (Binary)
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property ("k","v")
            0x26, 0x00, 0x01, b'k', 0x00, 0x02, b'v', b'2', // user property ("k","v2")
        ];
        let props = decode(&bytes, Owner::Publish).unwrap();
        assert_eq!(
            props,
            Properties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(3600),
                topic_alias: Some(7),
                subscription_identifiers: vec![128, 5],
                content_type: Some("text".into()),
                correlation_data: Some(Bytes::from_static(&[0xCA, 0xFE])),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into())],
                ..Default::default()
            }
        );
    }

    #[test]
    fn encoding_writes_in_identifier_order_with_length() {
        let props = Properties {
            user_properties: vec![("a".into(), "b".into())],
            session_expiry_interval: Some(10),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        write(&mut buf, &props).unwrap();
        assert_eq!(
            &buf[..],
            &[
                0x0C, // property length 12
                0x11, 0x00, 0x00, 0x00, 0x0A, // session expiry interval = 10
                0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property ("a","b")
            ]
        );
        assert_eq!(decode(&buf, Owner::Connect), Ok(props));
    }

    #[test]
    fn empty_block_is_one_zero_byte() {
        let mut buf = BytesMut::new();
        write(&mut buf, &Properties::default()).unwrap();
        assert_eq!(&buf[..], &[0x00]);
        assert_eq!(decode(&[0x00], Owner::Auth), Ok(Properties::default()));
    }

    #[test]
    fn property_not_allowed_for_the_packet_is_malformed() {
        // Topic alias (0x23) in a CONNECT.
        malformed_with(
            decode(&[0x03, 0x23, 0x00, 0x01], Owner::Connect),
            "topic_alias is not allowed",
        );
        // Will delay interval (0x18) is a will property, not a CONNECT one.
        malformed_with(
            decode(&[0x05, 0x18, 0, 0, 0, 1], Owner::Connect),
            "will_delay_interval is not allowed",
        );
    }

    #[test]
    fn duplicates_are_malformed_except_user_property_and_publish_subscription_id() {
        malformed_with(
            decode(&[0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02], Owner::Publish),
            "topic_alias appears more than once",
        );
        malformed_with(
            decode(&[0x04, 0x0B, 0x01, 0x0B, 0x02], Owner::Subscribe),
            "§3.8.2.1.2",
        );
        assert_eq!(
            decode(&[0x04, 0x0B, 0x01, 0x0B, 0x02], Owner::Publish)
                .unwrap()
                .subscription_identifiers,
            vec![1, 2]
        );
    }

    #[test]
    fn unknown_identifier_is_malformed() {
        malformed_with(
            decode(&[0x02, 0x7F, 0x00], Owner::Publish),
            "unknown property",
        );
        // 0x81 would start a multi-byte identifier; no such property exists.
        malformed_with(
            decode(&[0x02, 0x81, 0x00], Owner::Publish),
            "unknown property",
        );
    }

    #[test]
    fn block_longer_than_packet_or_cut_property_is_malformed() {
        malformed_with(
            decode(&[0x05, 0x01, 0x01], Owner::Publish),
            "remaining length",
        );
        // Length says 2 but the u32 needs 4: the read stops at the block's end.
        malformed_with(
            decode(&[0x02, 0x02, 0x00, 0x00, 0x00], Owner::Publish),
            "remaining length",
        );
    }

    #[test]
    fn value_rules() {
        let cases: &[(&[u8], Owner, &str)] = &[
            (
                &[0x02, 0x01, 0x02],
                Owner::Publish,
                "payload format indicator",
            ),
            (
                &[0x02, 0x0B, 0x00],
                Owner::Subscribe,
                "subscription identifier 0",
            ),
            (
                &[0x02, 0x0B, 0x00],
                Owner::Publish,
                "subscription identifier 0",
            ),
            (
                &[0x02, 0x17, 0x02],
                Owner::Connect,
                "request problem information",
            ),
            (
                &[0x02, 0x19, 0x02],
                Owner::Connect,
                "request response information",
            ),
            (
                &[0x03, 0x21, 0x00, 0x00],
                Owner::Connect,
                "receive maximum 0",
            ),
            (
                &[0x05, 0x27, 0, 0, 0, 0],
                Owner::ConnAck,
                "maximum packet size 0",
            ),
            (&[0x03, 0x23, 0x00, 0x00], Owner::Publish, "topic alias 0"),
            (&[0x02, 0x24, 0x02], Owner::ConnAck, "maximum QoS"),
            (&[0x02, 0x25, 0x02], Owner::ConnAck, "retain available"),
            (&[0x02, 0x28, 0x02], Owner::ConnAck, "wildcard subscription"),
            (
                &[0x02, 0x29, 0x02],
                Owner::ConnAck,
                "subscription identifiers available",
            ),
            (&[0x02, 0x2A, 0x02], Owner::ConnAck, "shared subscription"),
            (
                &[0x04, 0x08, 0x00, 0x01, b'#'],
                Owner::Will,
                "[MQTT-3.3.2-14]",
            ),
        ];
        for (bytes, owner, needle) in cases {
            malformed_with(decode(bytes, *owner), needle);
        }
    }

    #[test]
    fn oversized_values_are_refused_on_encode() {
        let mut buf = BytesMut::new();
        let props = Properties {
            subscription_identifiers: vec![MAX_VARINT + 1],
            ..Default::default()
        };
        assert!(matches!(
            write(&mut buf, &props),
            Err(EncodeError::TooLarge(_))
        ));
        let props = Properties {
            reason_string: Some("x".repeat(65_536)),
            ..Default::default()
        };
        assert!(matches!(
            write(&mut buf, &props),
            Err(EncodeError::TooLarge(_))
        ));
        assert!(buf.is_empty());
    }
}
