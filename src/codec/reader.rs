//! Checked reads over the body of one packet, used only by `decode` and `properties`.
//!
//! A [`Reader`] owns the packet body as [`Bytes`] (already split off the connection's read
//! buffer), so every binary field and every payload it hands out is a zero-copy slice of that
//! buffer. Every read is bounds-checked: running past the end of the body is a
//! [`DecodeError::Malformed`], never a panic.

use super::DecodeError;
use bytes::{Buf, Bytes};
use bytestring::ByteString;

/// A field claims more bytes than the packet has left.
const TRUNCATED: &str = "field runs past the end of the packet (remaining length too small)";

/// Largest value a Variable Byte Integer can carry (four bytes of seven bits).
pub(super) const MAX_VARINT: u32 = 268_435_455;

/// Cursor over the body of one packet.
#[derive(Debug)]
pub(super) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Reads from the start of `buf`.
    pub(super) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// True when every byte has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One byte.
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// Two Byte Integer, big-endian.
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    /// Four Byte Integer, big-endian.
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// Variable Byte Integer: seven bits per byte, least significant group first, at most
    /// four bytes. Non-minimal encodings are accepted.
    pub(super) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(
            "[MQTT-1.5.5] variable byte integer longer than 4 bytes",
        ))
    }

    /// The next `n` bytes, as a slice of the packet (no copy).
    pub(super) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Binary Data: a two-byte length followed by that many bytes.
    pub(super) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// UTF-8 Encoded String, kept as a slice of the packet.
    ///
    /// Rejects ill-formed UTF-8 (which includes encoded surrogates) and U+0000.
    pub(super) fn byte_string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(DecodeError::Malformed(
                "3.1.1 [MQTT-1.5.3-2] / 5.0 [MQTT-1.5.4-2] string contains U+0000",
            ));
        }
        ByteString::try_from(raw).map_err(|_| {
            DecodeError::Malformed(
                "3.1.1 [MQTT-1.5.3-1] / 5.0 [MQTT-1.5.4-1] string is not well-formed UTF-8",
            )
        })
    }

    /// UTF-8 Encoded String, copied into a `String`.
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from(&*self.byte_string()?))
    }

    /// Everything not read yet (e.g. a PUBLISH payload), as a slice of the packet.
    pub(super) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A reader over the next `n` bytes; this reader skips past them.
    pub(super) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.bytes(n)?))
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Malformed(TRUNCATED))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader {
        Reader::new(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn integers_are_big_endian() {
        let mut r = reader(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
        assert_eq!(r.u8(), Ok(0x01));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert!(r.is_empty());
    }

    #[test]
    fn short_reads_are_malformed_and_consume_nothing() {
        let mut r = reader(&[0x01]);
        assert_eq!(r.u16(), Err(DecodeError::Malformed(TRUNCATED)));
        assert_eq!(r.u32(), Err(DecodeError::Malformed(TRUNCATED)));
        assert_eq!(r.u8(), Ok(0x01));
        let mut r = reader(&[0x00, 0x05, b'a', b'b']);
        assert_eq!(r.binary(), Err(DecodeError::Malformed(TRUNCATED)));
    }

    #[test]
    fn varint_boundaries() {
        // 0, 127, 128, 16 383, 16 384, 2 097 151, 2 097 152, 268 435 455 (spec table 1.5.5).
        let cases: &[(&[u8], u32)] = &[
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], MAX_VARINT),
            // Non-minimal encoding of 0: accepted.
            (&[0x80, 0x00], 0),
        ];
        for (bytes, value) in cases {
            assert_eq!(reader(bytes).varint(), Ok(*value), "{bytes:02X?}");
        }
    }

    #[test]
    fn varint_of_five_bytes_is_malformed() {
        let err = reader(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01])
            .varint()
            .unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(m) if m.contains("[MQTT-1.5.5]")));
    }

    #[test]
    fn varint_cut_short_is_malformed() {
        assert_eq!(
            reader(&[0x80, 0x80]).varint(),
            Err(DecodeError::Malformed(TRUNCATED))
        );
    }

    #[test]
    fn strings_are_validated() {
        assert_eq!(
            reader(&[0x00, 0x02, b'h', b'i']).string().as_deref(),
            Ok("hi")
        );
        let nul = reader(&[0x00, 0x01, 0x00]).string().unwrap_err();
        assert!(matches!(nul, DecodeError::Malformed(m) if m.contains("[MQTT-1.5.3-2]")));
        // 0xC0 0x80 is an overlong encoding of U+0000; ED A0 80 an encoded surrogate.
        for bad in [
            &[0x00, 0x02, 0xC0, 0x80][..],
            &[0x00, 0x03, 0xED, 0xA0, 0x80],
        ] {
            let err = reader(bad).string().unwrap_err();
            assert!(matches!(err, DecodeError::Malformed(m) if m.contains("[MQTT-1.5.3-1]")));
        }
    }

    #[test]
    fn slices_share_the_packet_buffer() {
        let body = Bytes::from_static(b"\x00\x03abcpayload");
        let start = body.as_ptr() as usize;
        let mut r = Reader::new(body);
        let field = r.binary().unwrap();
        let rest = r.rest();
        assert_eq!(field.as_ptr() as usize, start + 2);
        assert_eq!(rest.as_ptr() as usize, start + 5);
        assert_eq!(&rest[..], b"payload");
        assert!(r.is_empty());
    }
}
