//! Codec tests: the original fubar's byte fixtures, byte fixtures for 3.1.1 and 5.0 with a
//! comment per field, one test per error path, and property-based round trips.

mod errors;
mod fixtures;
mod fuzz_regressions;
mod roundtrip;
mod v311;
mod v5;

use super::{decode, encode, encoded_len, DecodeError, Packet, Protocol};
use bytes::BytesMut;

/// A `max_packet_size` no test packet reaches.
const NO_LIMIT: usize = 1 << 24;

/// Concatenates byte pieces, so fixtures can be written one field per line.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes exactly one packet that uses all of `bytes`.
fn decode_one(bytes: &[u8], protocol: Protocol) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, NO_LIMIT)
        .unwrap_or_else(|e| panic!("decode {bytes:02X?} as {protocol:?}: {e}"))
        .unwrap_or_else(|| panic!("decode {bytes:02X?} as {protocol:?}: incomplete"));
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

/// Encodes `packet`, checking that `encoded_len` agrees.
fn encode_vec(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf)
        .unwrap_or_else(|e| panic!("encode {packet:?} as {protocol:?}: {e}"));
    assert_eq!(buf.len(), encoded_len(packet, protocol), "encoded_len");
    buf.to_vec()
}

/// `bytes` decodes to `packet` and `packet` encodes to `bytes`.
fn both_ways(bytes: &[u8], protocol: Protocol, packet: &Packet) {
    assert_eq!(&decode_one(bytes, protocol), packet, "decode");
    assert_eq!(encode_vec(packet, protocol), bytes, "encode");
}

/// The error decoding `bytes` ends with.
fn decode_err(bytes: &[u8], protocol: Protocol) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, protocol, NO_LIMIT) {
        Err(e) => e,
        Ok(other) => {
            panic!("decode {bytes:02X?} as {protocol:?}: expected an error, got {other:?}")
        }
    }
}

/// Decoding `bytes` is `Malformed` with a message containing `needle` (e.g. the clause).
#[track_caller]
fn assert_malformed(bytes: &[u8], protocol: Protocol, needle: &str) {
    match decode_err(bytes, protocol) {
        DecodeError::Malformed(m) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Malformed({needle:?}), got {other:?}"),
    }
}
