//! Encoding: a [`Packet`] → the bytes a peer of the given protocol expects.
//!
//! Called by the transport's write side (through its `Encoder` adapter), by our test clients
//! and by the bench tool. Each packet body is written by one generic function that first runs
//! into a [`Counter`](super::writer::Counter) (remaining length and every size check, before
//! anything is appended) and then into the buffer; [`encoded_len`] runs only the first pass.
//!
//! Version rules: 5.0-only fields (reason codes, properties) are ignored for 3.1/3.1.1. Fields
//! that only 3.x can carry (the fubar CONNECT `max_recursion`, CONNACK `alt_server` and
//! `extra`) and AUTH in 3.x are [`EncodeError::Invalid`]. CONNECT is written for its own
//! `protocol` field, whatever the connection's protocol. PUBREL, SUBSCRIBE and UNSUBSCRIBE
//! always carry flags `0010` (the original's `0x60` PUBREL was a bug).

use super::properties;
use super::reader::MAX_VARINT;
use super::writer::{measure, varint_len, Writer};
use super::{
    connack_v3, ConnAck, Connect, EncodeError, Packet, Properties, Protocol, PubResp, Publish, QoS,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use bytes::BytesMut;

/// Appends the encoding of `packet` for a `protocol` connection to `buf`.
///
/// On error nothing is appended.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = remaining_len(packet, protocol)?;
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(first_byte(packet));
    buf.put_varint(remaining)?;
    body(packet, protocol, buf)
}

/// Appends an MQTT 3.1/3.1.1 PUBLISH built from its parts, without a [`Publish`] value: the
/// broker's hot path writes every delivery of a shared message this way (no reference
/// count touched, no properties built). Same bytes and checks as [`encode`] on the
/// equivalent packet for a 3.x connection; on error nothing is appended.
#[allow(clippy::too_many_arguments)]
pub fn encode_publish_v3(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: Option<u16>,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if topic.len() > usize::from(u16::MAX) {
        return Err(EncodeError::TooLarge(
            "string or binary field longer than 65 535 bytes",
        ));
    }
    let id_len = match (qos, packet_id) {
        (QoS::AtMostOnce, None) => 0,
        (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(_)) => 2,
        _ => {
            return Err(EncodeError::Invalid(
                "PUBLISH packet_id must be set exactly when QoS > 0",
            ))
        }
    };
    let remaining = 2 + topic.len() + id_len + payload.len();
    if remaining > MAX_VARINT as usize {
        return Err(EncodeError::TooLarge(
            "remaining length above 268 435 455 bytes",
        ));
    }
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(0x30 | u8::from(dup) << 3 | (qos as u8) << 1 | u8::from(retain));
    buf.put_varint(remaining)?;
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic.as_bytes());
    if let Some(id) = packet_id {
        buf.put_u16(id);
    }
    buf.put_slice(payload);
    Ok(())
}

/// Number of bytes [`encode`] appends for `packet` (0 if it would fail).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    remaining_len(packet, protocol).map_or(0, |n| 1 + varint_len(n) + n)
}

fn remaining_len(packet: &Packet, protocol: Protocol) -> Result<usize, EncodeError> {
    let len = measure(|counter| body(packet, protocol, counter))?;
    if len > MAX_VARINT as usize {
        return Err(EncodeError::TooLarge(
            "remaining length above 268 435 455 bytes",
        ));
    }
    Ok(len)
}

/// Packet type and flags.
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => 0x30 | u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Variable header and payload.
fn body<W: Writer>(packet: &Packet, protocol: Protocol, w: &mut W) -> Result<(), EncodeError> {
    let v5 = protocol == Protocol::V5;
    match packet {
        Packet::Connect(c) => connect(c, w),
        Packet::ConnAck(a) => connack(a, v5, w),
        Packet::Publish(p) => publish(p, v5, w),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            pub_resp(r, v5, w)
        }
        Packet::Subscribe(s) => subscribe(s, v5, w),
        Packet::SubAck(s) => suback(s, v5, w),
        Packet::Unsubscribe(u) => unsubscribe(u, v5, w),
        Packet::UnsubAck(u) => unsuback(u, v5, w),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) if v5 => reason_and_properties(d.reason, &d.properties, w),
        Packet::Disconnect(_) => Ok(()),
        Packet::Auth(a) if v5 => reason_and_properties(a.reason, &a.properties, w),
        Packet::Auth(_) => Err(EncodeError::Invalid("AUTH exists only in MQTT 5")),
    }
}

fn properties_if_v5<W: Writer>(v5: bool, props: &Properties, w: &mut W) -> Result<(), EncodeError> {
    if v5 {
        properties::write(w, props)
    } else {
        Ok(())
    }
}

fn connect<W: Writer>(c: &Connect, w: &mut W) -> Result<(), EncodeError> {
    let protocol = c.protocol;
    let v5 = protocol == Protocol::V5;
    if v5 && c.max_recursion.is_some() {
        return Err(EncodeError::Invalid(
            "max_recursion is a 3.x extension; MQTT 5 CONNECT cannot carry it",
        ));
    }
    let mut flags = 0u8;
    if c.max_recursion.is_some() {
        flags |= 0x01;
    }
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos as u8) << 3;
        if will.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    w.put_str(protocol.name())?;
    w.put_u8(protocol.level());
    w.put_u8(flags);
    w.put_u16(c.keep_alive);
    properties_if_v5(v5, &c.properties, w)?;
    w.put_str(&c.client_id)?;
    if let Some(will) = &c.will {
        properties_if_v5(v5, &will.properties, w)?;
        w.put_str(&will.topic)?;
        w.put_binary(&will.payload)?;
    }
    if let Some(username) = &c.username {
        w.put_str(username)?;
    }
    if let Some(password) = &c.password {
        w.put_binary(password)?;
    }
    if let Some(max_recursion) = c.max_recursion {
        w.put_u16(max_recursion);
    }
    Ok(())
}

fn connack<W: Writer>(a: &ConnAck, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_u8(u8::from(a.session_present));
    w.put_u8(a.code);
    if v5 {
        if a.alt_server.is_some() || !a.extra.is_empty() {
            return Err(EncodeError::Invalid(
                "alt_server and extra are 3.x extensions; MQTT 5 uses properties",
            ));
        }
        return properties::write(w, &a.properties);
    }
    match (&a.alt_server, a.code == connack_v3::ALT_SERVER) {
        (Some(alt), true) => {
            w.put_str(&alt.address)?;
            w.put_u16(alt.max_recursion);
        }
        (None, false) => {}
        _ => {
            return Err(EncodeError::Invalid(
                "alt_server must be set exactly when the CONNACK code is 6",
            ))
        }
    }
    w.put_slice(&a.extra);
    Ok(())
}

fn publish<W: Writer>(p: &Publish, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_str(&p.topic)?;
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) => w.put_u16(id),
        _ => {
            return Err(EncodeError::Invalid(
                "PUBLISH packet_id must be set exactly when QoS > 0",
            ))
        }
    }
    properties_if_v5(v5, &p.properties, w)?;
    w.put_slice(&p.payload);
    Ok(())
}

fn pub_resp<W: Writer>(r: &PubResp, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(r.packet_id);
    if v5 {
        reason_and_properties(r.reason, &r.properties, w)?;
    }
    Ok(())
}

/// The 5.0 short forms: nothing for success without properties, the reason code alone when
/// there are no properties, otherwise both.
fn reason_and_properties<W: Writer>(
    reason: u8,
    props: &Properties,
    w: &mut W,
) -> Result<(), EncodeError> {
    let no_properties = props.is_empty();
    if reason == 0 && no_properties {
        return Ok(());
    }
    w.put_u8(reason);
    if no_properties {
        return Ok(());
    }
    properties::write(w, props)
}

fn subscribe<W: Writer>(s: &Subscribe, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(s.packet_id);
    properties_if_v5(v5, &s.properties, w)?;
    for topic in &s.topics {
        w.put_str(&topic.filter)?;
        let o = topic.options;
        let mut byte = o.qos as u8;
        if v5 {
            if o.retain_handling > 2 {
                return Err(EncodeError::Invalid("retain_handling must be 0, 1 or 2"));
            }
            byte |= u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | o.retain_handling << 4;
        }
        w.put_u8(byte);
    }
    Ok(())
}

fn suback<W: Writer>(s: &SubAck, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(s.packet_id);
    properties_if_v5(v5, &s.properties, w)?;
    w.put_slice(&s.return_codes);
    Ok(())
}

fn unsubscribe<W: Writer>(u: &Unsubscribe, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(u.packet_id);
    properties_if_v5(v5, &u.properties, w)?;
    for filter in &u.filters {
        w.put_str(filter)?;
    }
    Ok(())
}

fn unsuback<W: Writer>(u: &UnsubAck, v5: bool, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(u.packet_id);
    if v5 {
        properties::write(w, &u.properties)?;
        w.put_slice(&u.reason_codes);
    }
    Ok(())
}

#[cfg(test)]
mod publish_v3_tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn parts_encode_like_the_packet() {
        for (qos, packet_id) in [
            (QoS::AtMostOnce, None),
            (QoS::AtLeastOnce, Some(7)),
            (QoS::ExactlyOnce, Some(65535)),
        ] {
            for (retain, dup, payload_len) in [(false, false, 0), (true, true, 200)] {
                let payload = Bytes::from(vec![0xA5; payload_len]);
                let packet = Packet::Publish(Publish {
                    dup,
                    qos,
                    retain,
                    topic: "a/b/c".into(),
                    packet_id,
                    payload: payload.clone(),
                    properties: Properties::default(),
                });
                let mut expected = BytesMut::new();
                encode(&packet, Protocol::V311, &mut expected).unwrap();
                let mut got = BytesMut::new();
                encode_publish_v3("a/b/c", &payload, qos, retain, dup, packet_id, &mut got)
                    .unwrap();
                assert_eq!(got, expected);
            }
        }
    }

    #[test]
    fn invalid_parts_append_nothing() {
        let mut out = BytesMut::new();
        assert!(
            encode_publish_v3("t", b"x", QoS::AtLeastOnce, false, false, None, &mut out).is_err()
        );
        let long = "x".repeat(70_000);
        assert!(
            encode_publish_v3(&long, b"", QoS::AtMostOnce, false, false, None, &mut out).is_err()
        );
        assert!(out.is_empty());
    }
}
