//! MQTT wire codec: bytes in, [`Packet`]s out, and back.
//!
//! Pure and total: no I/O, no actix, no panics on any input. [`decode()`] takes a read
//! buffer and returns `Ok(None)` while a packet is incomplete; the remaining length is checked
//! against `max_packet_size` before the body is buffered, and PUBLISH payloads are `Bytes`
//! slices of the read buffer. Errors name the clause of the specification they enforce.
//! Covers MQTT 3.1, 3.1.1 and 5.0 plus the fubar extensions (CONNECT `max_recursion`,
//! CONNACK keep-alive payload, CONNACK code 6 alternate server). The transport's read loop
//! and write side are its users in the broker; test clients and the bench tool use it too.
//!
//! # Layout
//!
//! - `packet`: the packet types every other layer codes against.
//! - [`decode()`] / [`encode()`], [`encoded_len`]: one packet at a time, per protocol version.
//! - `properties`: the MQTT 5 property table (identifier, field, wire type, allowed packets).
//! - `reader` / `writer`: checked reads over a packet body; writes that can also just count.
//!
//! # Leniency for MQTT 3.1
//!
//! On an MQTT 3.1 (`MQIsdp`) connection the decoder accepts what the original fubar and the
//! 3.1 specification allowed: any fixed-header flags on packets other than PUBLISH (the
//! original sent PUBREL as `0x60`), DUP on a QoS 0 PUBLISH, unused bits in a SUBSCRIBE QoS
//! byte, and bytes after the last field. A 3.1/3.1.1 CONNECT may carry trailing bytes, which
//! are ignored. The encoder always writes the 3.1.1/5.0 form.

mod packet;

pub use packet::*;

/// Why a byte stream is not a valid MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet is larger than the configured maximum.
    #[error("packet of {size} bytes exceeds max_packet_size {max}")]
    PacketTooLarge {
        /// Total packet size (fixed header + remaining length).
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// CONNECT names a protocol level the server does not speak (answer: CONNACK 1 / 0x84).
    #[error("[MQTT-3.1.2-2] unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// Protocol name sent by the client.
        name: String,
        /// Protocol level sent by the client.
        level: u8,
    },
    /// Anything else that violates the specification; the text cites the clause.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded packet would exceed the MQTT maximum (268 435 455 bytes of remaining
    /// length) or a string/binary field exceeds 65 535 bytes.
    #[error("packet too large to encode: {0}")]
    TooLarge(&'static str),
    /// The packet cannot be expressed in the given protocol version.
    #[error("invalid packet for this protocol version: {0}")]
    Invalid(&'static str),
}

mod decode;
mod encode;
mod properties;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use decode::decode;
pub use encode::{encode, encode_publish_v3, encoded_len};
