//! Decoding: the front of a connection's read buffer → one [`Packet`].
//!
//! Called by the transport's read loop (through its `Decoder` adapter) and by our test
//! clients and bench tool. [`decode`] first reads the fixed header from the buffer without
//! consuming anything; only once the whole packet is buffered does it split the packet off
//! and hand the body to a [`Reader`], so every payload and binary field is a slice of the
//! read buffer.
//!
//! The `protocol` argument is the connection's protocol: it decides whether a packet carries
//! 5.0 reason codes and properties. CONNECT is the exception, it is decoded by the protocol
//! name and level it carries. MQTT 3.1 (`MQIsdp`) connections get the leniency the original
//! fubar showed: fixed-header flags of packets other than PUBLISH are ignored (3.1 defines
//! DUP/QoS/RETAIN on every packet, and the original sent PUBREL as `0x60`), as are bytes after
//! the last field of a packet. For 3.1 and 3.1.1 CONNECT, trailing bytes are ignored too.

use super::properties::{self, Owner};
use super::reader::Reader;
use super::{
    AltServer, Auth, ConnAck, Connect, DecodeError, Disconnect, LastWill, Packet, Properties,
    Protocol, PubResp, Publish, QoS, SubAck, Subscribe, SubscribeTopic, SubscriptionOptions,
    UnsubAck, Unsubscribe,
};
use bytes::{Buf, BytesMut};

/// Valid 5.0 CONNACK reason codes (5.0 §3.2.2.2).
pub(super) const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// Valid 5.0 PUBACK and PUBREC reason codes (5.0 §3.4.2.1, §3.5.2.1).
pub(super) const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Valid 5.0 PUBREL and PUBCOMP reason codes (5.0 §3.6.2.1, §3.7.2.1).
pub(super) const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
/// Valid 5.0 SUBACK reason codes (5.0 §3.9.3).
pub(super) const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// Valid 3.x SUBACK return codes (3.1.1 [MQTT-3.9.3-2]).
pub(super) const SUBACK_V3_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// Valid 5.0 UNSUBACK reason codes (5.0 §3.11.3).
pub(super) const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// Valid 5.0 DISCONNECT reason codes (5.0 §3.14.2.1).
pub(super) const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// Valid 5.0 AUTH reason codes (5.0 §3.15.2.1).
pub(super) const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

const RESERVED_FLAGS: &str = "[MQTT-2.2.2-1] reserved fixed header flags must be 0";
const TRAILING: &str = "bytes left after the last field (remaining length too large)";

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet; `buf` is then left
/// untouched. On success exactly one packet is consumed. A packet whose fixed header plus
/// remaining length exceeds `max_packet_size` is refused as soon as its length is known,
/// before its body arrives. Errors in the fixed header (including `PacketTooLarge`) consume
/// nothing; any other error comes after the whole packet was taken off `buf`. Either way the
/// connection is to be closed.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = fixed_header(buf)? else {
        return Ok(None);
    };
    let size = header.len + header.remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut frame = buf.split_to(size);
    frame.advance(header.len);
    let mut body = Reader::new(frame.freeze());
    packet(header.first, &mut body, protocol).map(Some)
}

/// The fixed header of a packet.
struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    first: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    len: usize,
    /// The remaining length: bytes of variable header and payload.
    remaining: usize,
}

/// Reads the fixed header from the front of `buf` without consuming it; `None` if incomplete.
fn fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                first,
                len: 2 + i,
                remaining,
            }));
        }
    }
    Err(DecodeError::Malformed(
        "3.1.1 §2.2.3 / 5.0 [MQTT-1.5.5] remaining length longer than 4 bytes",
    ))
}

fn packet(first: u8, r: &mut Reader, protocol: Protocol) -> Result<Packet, DecodeError> {
    let flags = first & 0x0F;
    let p = protocol;
    match first >> 4 {
        1 => connect(flags, r),
        2 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            connack(r, p).map(Packet::ConnAck)
        }
        3 => publish(flags, r, p).map(Packet::Publish),
        4 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            pub_resp(
                r,
                p,
                PUBACK_REASONS,
                "5.0 §3.4.2.1: invalid PUBACK reason code",
            )
            .map(Packet::PubAck)
        }
        5 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            pub_resp(
                r,
                p,
                PUBACK_REASONS,
                "5.0 §3.5.2.1: invalid PUBREC reason code",
            )
            .map(Packet::PubRec)
        }
        6 => {
            fixed_flags(flags, 0b0010, p, "[MQTT-3.6.1-1] PUBREL flags must be 0010")?;
            pub_resp(
                r,
                p,
                PUBREL_REASONS,
                "5.0 §3.6.2.1: invalid PUBREL reason code",
            )
            .map(Packet::PubRel)
        }
        7 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            pub_resp(
                r,
                p,
                PUBREL_REASONS,
                "5.0 §3.7.2.1: invalid PUBCOMP reason code",
            )
            .map(Packet::PubComp)
        }
        8 => {
            fixed_flags(
                flags,
                0b0010,
                p,
                "[MQTT-3.8.1-1] SUBSCRIBE flags must be 0010",
            )?;
            subscribe(r, p).map(Packet::Subscribe)
        }
        9 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            suback(r, p).map(Packet::SubAck)
        }
        10 => {
            fixed_flags(
                flags,
                0b0010,
                p,
                "[MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010",
            )?;
            unsubscribe(r, p).map(Packet::Unsubscribe)
        }
        11 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            unsuback(r, p).map(Packet::UnsubAck)
        }
        12 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            finish(r, p)?;
            Ok(Packet::PingReq)
        }
        13 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            finish(r, p)?;
            Ok(Packet::PingResp)
        }
        14 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            disconnect(r, p).map(Packet::Disconnect)
        }
        15 if p == Protocol::V5 => {
            fixed_flags(flags, 0, p, RESERVED_FLAGS)?;
            auth(r).map(Packet::Auth)
        }
        _ => Err(DecodeError::Malformed(
            "3.1.1 §2.2.1 / 5.0 §2.1.2: reserved packet type",
        )),
    }
}

/// Checks the low nibble of the fixed header; MQTT 3.1 connections may set anything.
fn fixed_flags(
    flags: u8,
    expected: u8,
    protocol: Protocol,
    rule: &'static str,
) -> Result<(), DecodeError> {
    if protocol != Protocol::V31 && flags != expected {
        return Err(DecodeError::Malformed(rule));
    }
    Ok(())
}

/// Checks that every byte of the packet was used; MQTT 3.1 connections may send more.
fn finish(r: &Reader, protocol: Protocol) -> Result<(), DecodeError> {
    if protocol != Protocol::V31 && !r.is_empty() {
        return Err(DecodeError::Malformed(TRAILING));
    }
    Ok(())
}

/// Picks the 3.x or the 5.0 wording of a rule whose clause numbers differ.
fn rule(protocol: Protocol, v3: &'static str, v5: &'static str) -> DecodeError {
    DecodeError::Malformed(if protocol == Protocol::V5 { v5 } else { v3 })
}

/// A Packet Identifier, which is never 0.
fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Malformed(
            "3.1.1 [MQTT-2.3.1-1] / 5.0 [MQTT-2.2.1-3] packet identifier must be non-zero",
        )),
        id => Ok(id),
    }
}

fn check_reason(code: u8, valid: &[u8], rule: &'static str) -> Result<u8, DecodeError> {
    if valid.contains(&code) {
        Ok(code)
    } else {
        Err(DecodeError::Malformed(rule))
    }
}

/// Properties of a 5.0 packet, or none for 3.x.
fn properties_if_v5(
    r: &mut Reader,
    protocol: Protocol,
    owner: Owner,
) -> Result<Properties, DecodeError> {
    if protocol == Protocol::V5 {
        properties::read(r, owner)
    } else {
        Ok(Properties::default())
    }
}

/// A topic name as used by PUBLISH and the will: no wildcards.
fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) {
        return Err(DecodeError::Malformed(
            "[MQTT-3.3.2-2] topic name must not contain wildcards",
        ));
    }
    Ok(())
}

fn connect(flags: u8, r: &mut Reader) -> Result<Packet, DecodeError> {
    let name = r.byte_string()?;
    let level = r.u8()?;
    let protocol = match (&*name, level) {
        ("MQIsdp", 3) => Protocol::V31,
        ("MQTT", 4) => Protocol::V311,
        ("MQTT", 5) => Protocol::V5,
        _ => {
            return Err(DecodeError::UnsupportedProtocol {
                name: name.to_string(),
                level,
            })
        }
    };
    let v5 = protocol == Protocol::V5;
    fixed_flags(flags, 0, protocol, RESERVED_FLAGS)?;

    let connect_flags = r.u8()?;
    let extension = connect_flags & 0x01 != 0;
    let clean_start = connect_flags & 0x02 != 0;
    let will_flag = connect_flags & 0x04 != 0;
    let will_qos = (connect_flags >> 3) & 0x03;
    let will_retain = connect_flags & 0x20 != 0;
    let password_flag = connect_flags & 0x40 != 0;
    let username_flag = connect_flags & 0x80 != 0;
    if v5 && extension {
        return Err(DecodeError::Malformed(
            "5.0 [MQTT-3.1.2-3] reserved CONNECT flag must be 0",
        ));
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return Err(rule(
            protocol,
            "3.1.1 [MQTT-3.1.2-14] will QoS must not be 3",
            "5.0 [MQTT-3.1.2-12] will QoS must not be 3",
        ));
    };
    if !will_flag && will_qos != QoS::AtMostOnce {
        return Err(rule(
            protocol,
            "3.1.1 [MQTT-3.1.2-13] will QoS must be 0 without the will flag",
            "5.0 [MQTT-3.1.2-11] will QoS must be 0 without the will flag",
        ));
    }
    if !will_flag && will_retain {
        return Err(rule(
            protocol,
            "3.1.1 [MQTT-3.1.2-15] will retain must be 0 without the will flag",
            "5.0 [MQTT-3.1.2-13] will retain must be 0 without the will flag",
        ));
    }
    if protocol == Protocol::V311 && password_flag && !username_flag {
        return Err(DecodeError::Malformed(
            "3.1.1 [MQTT-3.1.2-22] password flag set without the user name flag",
        ));
    }
    let keep_alive = r.u16()?;
    let properties = properties_if_v5(r, protocol, Owner::Connect)?;

    let client_id = r.string()?;
    let will = if will_flag {
        let properties = properties_if_v5(r, protocol, Owner::Will)?;
        let topic = r.byte_string()?;
        if topic.is_empty() {
            return Err(DecodeError::Malformed(
                "[MQTT-4.7.3-1] will topic must be at least one character long",
            ));
        }
        check_topic_name(&topic)?;
        Some(LastWill {
            topic,
            payload: r.binary()?,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    let max_recursion = if extension {
        Some(r.u16().map_err(|_| {
            DecodeError::Malformed(
                "fubar extension: CONNECT flag bit 0 is set but max_recursion is missing",
            )
        })?)
    } else {
        None
    };
    // 3.x: bytes after the last field are ignored, as the original did.
    if v5 && !r.is_empty() {
        return Err(DecodeError::Malformed(TRAILING));
    }
    Ok(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        max_recursion,
        properties,
    })))
}

fn connack(r: &mut Reader, protocol: Protocol) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    let code = r.u8()?;
    let session_present = flags & 0x01 != 0;
    if protocol != Protocol::V31 {
        if flags & 0xFE != 0 {
            return Err(DecodeError::Malformed(
                "3.1.1 §3.2.2.1 / 5.0 [MQTT-3.2.2-1] CONNACK flag bits 7-1 must be 0",
            ));
        }
        if session_present && code != 0 {
            return Err(rule(
                protocol,
                "3.1.1 [MQTT-3.2.2-4] session present must be 0 with a non-zero return code",
                "5.0 [MQTT-3.2.2-6] session present must be 0 with a non-zero reason code",
            ));
        }
    }
    if protocol == Protocol::V5 {
        let code = check_reason(
            code,
            CONNACK_REASONS,
            "5.0 §3.2.2.2: invalid CONNACK reason code",
        )?;
        let properties = properties::read(r, Owner::ConnAck)?;
        finish(r, protocol)?;
        return Ok(ConnAck {
            session_present,
            code,
            properties,
            ..Default::default()
        });
    }
    let alt_server = if code == super::connack_v3::ALT_SERVER {
        Some(AltServer {
            address: r.string()?,
            max_recursion: r.u16()?,
        })
    } else {
        None
    };
    Ok(ConnAck {
        session_present,
        code,
        alt_server,
        extra: r.rest(),
        properties: Properties::default(),
    })
}

fn publish(flags: u8, r: &mut Reader, protocol: Protocol) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let Some(qos) = QoS::from_u8((flags >> 1) & 0x03) else {
        return Err(DecodeError::Malformed(
            "[MQTT-3.3.1-4] PUBLISH QoS must not be 3",
        ));
    };
    if dup && qos == QoS::AtMostOnce && protocol != Protocol::V31 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.3.1-2] DUP must be 0 on a QoS 0 PUBLISH",
        ));
    }
    let topic = r.byte_string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties = properties_if_v5(r, protocol, Owner::Publish)?;
    if topic.is_empty() {
        if protocol != Protocol::V5 {
            return Err(DecodeError::Malformed(
                "3.1.1 [MQTT-4.7.3-1] topic name must be at least one character long",
            ));
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Malformed(
                "5.0 §3.3.2.1: empty topic name without a topic alias",
            ));
        }
    }
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
fn pub_resp(
    r: &mut Reader,
    protocol: Protocol,
    reasons: &[u8],
    invalid_reason: &'static str,
) -> Result<PubResp, DecodeError> {
    let packet_id = packet_id(r)?;
    if protocol != Protocol::V5 {
        finish(r, protocol)?;
        return Ok(PubResp::new(packet_id));
    }
    // 5.0 §3.4.2.1: remaining length 2 means reason 0 and no properties; 3 means no properties.
    let reason = if r.is_empty() {
        0
    } else {
        check_reason(r.u8()?, reasons, invalid_reason)?
    };
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        properties::read(r, Owner::PubResp)?
    };
    finish(r, protocol)?;
    Ok(PubResp {
        packet_id,
        reason,
        properties,
    })
}

fn subscribe(r: &mut Reader, protocol: Protocol) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_if_v5(r, protocol, Owner::Subscribe)?;
    let mut topics = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = subscription_options(r.u8()?, protocol, &filter)?;
        topics.push(SubscribeTopic { filter, options });
    }
    if topics.is_empty() {
        return Err(rule(
            protocol,
            "3.1.1 [MQTT-3.8.3-3] SUBSCRIBE must contain at least one topic filter",
            "5.0 [MQTT-3.8.3-2] SUBSCRIBE must contain at least one topic filter",
        ));
    }
    Ok(Subscribe {
        packet_id,
        topics,
        properties,
    })
}

fn subscription_options(
    byte: u8,
    protocol: Protocol,
    filter: &str,
) -> Result<SubscriptionOptions, DecodeError> {
    let Some(qos) = QoS::from_u8(byte & 0x03) else {
        return Err(rule(
            protocol,
            "3.1.1 [MQTT-3.8.3-4] requested QoS must be 0, 1 or 2",
            "5.0 §3.8.3.1: maximum QoS must be 0, 1 or 2",
        ));
    };
    match protocol {
        // MQTT 3.1 leaves the upper six bits unused; the original ignored them.
        Protocol::V31 => Ok(SubscriptionOptions {
            qos,
            ..Default::default()
        }),
        Protocol::V311 if byte & 0xFC != 0 => Err(DecodeError::Malformed(
            "3.1.1 [MQTT-3.8.3-4] reserved bits of the requested QoS byte must be 0",
        )),
        Protocol::V311 => Ok(SubscriptionOptions {
            qos,
            ..Default::default()
        }),
        Protocol::V5 => {
            if byte & 0xC0 != 0 {
                return Err(DecodeError::Malformed(
                    "5.0 [MQTT-3.8.3-5] reserved subscription option bits must be 0",
                ));
            }
            let retain_handling = (byte >> 4) & 0x03;
            if retain_handling == 3 {
                return Err(DecodeError::Malformed(
                    "5.0 §3.8.3.1: retain handling 3 is a protocol error",
                ));
            }
            let no_local = byte & 0x04 != 0;
            if no_local && filter.starts_with("$share/") {
                return Err(DecodeError::Malformed(
                    "5.0 [MQTT-3.8.3-4] no local must not be set on a shared subscription",
                ));
            }
            Ok(SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: byte & 0x08 != 0,
                retain_handling,
            })
        }
    }
}

fn suback(r: &mut Reader, protocol: Protocol) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_if_v5(r, protocol, Owner::SubAck)?;
    let return_codes = r.rest().to_vec();
    if return_codes.is_empty() {
        return Err(DecodeError::Malformed(
            "3.1.1 [MQTT-3.8.4-5] SUBACK must carry a return code per topic filter",
        ));
    }
    let (valid, invalid) = if protocol == Protocol::V5 {
        (SUBACK_REASONS, "5.0 §3.9.3: invalid SUBACK reason code")
    } else {
        (
            SUBACK_V3_CODES,
            "3.1.1 [MQTT-3.9.3-2] SUBACK return code must be 0x00, 0x01, 0x02 or 0x80",
        )
    };
    for &code in &return_codes {
        check_reason(code, valid, invalid)?;
    }
    Ok(SubAck {
        packet_id,
        return_codes,
        properties,
    })
}

fn unsubscribe(r: &mut Reader, protocol: Protocol) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_if_v5(r, protocol, Owner::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Malformed(
            "[MQTT-3.10.3-2] UNSUBSCRIBE must contain at least one topic filter",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn unsuback(r: &mut Reader, protocol: Protocol) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if protocol != Protocol::V5 {
        finish(r, protocol)?;
        return Ok(UnsubAck {
            packet_id,
            ..Default::default()
        });
    }
    let properties = properties::read(r, Owner::UnsubAck)?;
    let reason_codes = r.rest().to_vec();
    if reason_codes.is_empty() {
        return Err(DecodeError::Malformed(
            "5.0 §3.11.3: UNSUBACK must carry a reason code per topic filter",
        ));
    }
    for &code in &reason_codes {
        check_reason(
            code,
            UNSUBACK_REASONS,
            "5.0 §3.11.3: invalid UNSUBACK reason code",
        )?;
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn disconnect(r: &mut Reader, protocol: Protocol) -> Result<Disconnect, DecodeError> {
    if protocol != Protocol::V5 {
        finish(r, protocol)?;
        return Ok(Disconnect::default());
    }
    let (reason, properties) = reason_and_properties(
        r,
        DISCONNECT_REASONS,
        "5.0 §3.14.2.1: invalid DISCONNECT reason code",
        Owner::Disconnect,
    )?;
    Ok(Disconnect { reason, properties })
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let (reason, properties) = reason_and_properties(
        r,
        AUTH_REASONS,
        "5.0 §3.15.2.1: invalid AUTH reason code",
        Owner::Auth,
    )?;
    Ok(Auth { reason, properties })
}

/// The 5.0 DISCONNECT/AUTH body: both fields may be omitted (remaining length 0 = success,
/// no properties; 1 = reason code only).
fn reason_and_properties(
    r: &mut Reader,
    reasons: &[u8],
    invalid_reason: &'static str,
    owner: Owner,
) -> Result<(u8, Properties), DecodeError> {
    let code = if r.is_empty() {
        0
    } else {
        check_reason(r.u8()?, reasons, invalid_reason)?
    };
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        properties::read(r, owner)?
    };
    finish(r, Protocol::V5)?;
    Ok((code, properties))
}
