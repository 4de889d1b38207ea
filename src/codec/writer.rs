//! The output side of `encode`: a [`Writer`] is either the real buffer or a byte [`Counter`].
//!
//! Every packet body is written by one generic function that runs twice: once into a
//! [`Counter`] to learn the remaining length (and to catch every size error before a byte
//! is appended), then into the [`BytesMut`]. Because both passes run the same code,
//! `encoded_len` and the bytes `encode` appends cannot disagree.

use super::reader::MAX_VARINT;
use super::EncodeError;
use bytes::{BufMut, BytesMut};

/// Somewhere encoded bytes go.
pub(super) trait Writer {
    /// Appends one byte.
    fn put_u8(&mut self, v: u8);
    /// Appends a Two Byte Integer (big-endian).
    fn put_u16(&mut self, v: u16);
    /// Appends a Four Byte Integer (big-endian).
    fn put_u32(&mut self, v: u32);
    /// Appends raw bytes.
    fn put_slice(&mut self, v: &[u8]);

    /// Appends a Variable Byte Integer.
    fn put_varint(&mut self, v: usize) -> Result<(), EncodeError> {
        if v > MAX_VARINT as usize {
            return Err(EncodeError::TooLarge(
                "variable byte integer above 268 435 455",
            ));
        }
        let mut rest = v;
        loop {
            // Truncation is the point: the low seven bits of what is left.
            let digit = (rest & 0x7F) as u8;
            rest >>= 7;
            if rest == 0 {
                self.put_u8(digit);
                return Ok(());
            }
            self.put_u8(digit | 0x80);
        }
    }

    /// Appends Binary Data: a two-byte length and the bytes.
    fn put_binary(&mut self, v: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(v.len()).map_err(|_| {
            EncodeError::TooLarge("string or binary field longer than 65 535 bytes")
        })?;
        self.put_u16(len);
        self.put_slice(v);
        Ok(())
    }

    /// Appends a UTF-8 Encoded String.
    fn put_str(&mut self, v: &str) -> Result<(), EncodeError> {
        self.put_binary(v.as_bytes())
    }
}

impl Writer for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn put_slice(&mut self, v: &[u8]) {
        BufMut::put_slice(self, v);
    }
}

/// A [`Writer`] that only counts.
#[derive(Debug, Default)]
pub(super) struct Counter(pub(super) usize);

impl Writer for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }
}

/// Number of bytes of the Variable Byte Integer encoding of `v` (`v` ≤ 268 435 455).
pub(super) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Measures what `write` would append.
pub(super) fn measure(
    write: impl FnOnce(&mut Counter) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    write(&mut counter)?;
    Ok(counter.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_spec_table() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in cases {
            let mut buf = BytesMut::new();
            buf.put_varint(*value).unwrap();
            assert_eq!(&buf[..], *bytes, "{value}");
            assert_eq!(varint_len(*value), bytes.len(), "{value}");
        }
    }

    #[test]
    fn oversized_varint_is_refused() {
        let mut buf = BytesMut::new();
        assert!(matches!(
            buf.put_varint(268_435_456),
            Err(EncodeError::TooLarge(_))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn binary_field_limit_is_65535() {
        let mut buf = BytesMut::new();
        buf.put_binary(&[7; 65_535]).unwrap();
        assert_eq!(buf.len(), 65_537);
        assert_eq!(&buf[..2], &[0xFF, 0xFF]);
        let mut buf = BytesMut::new();
        assert!(matches!(
            buf.put_binary(&[7; 65_536]),
            Err(EncodeError::TooLarge(_))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn counter_counts_what_the_buffer_gets() {
        let mut buf = BytesMut::new();
        let mut counter = Counter::default();
        fn fill<W: Writer>(w: &mut W) -> Result<(), EncodeError> {
            w.put_u8(1);
            w.put_u16(2);
            w.put_u32(3);
            w.put_varint(300)?;
            w.put_str("héllo")?;
            w.put_slice(b"xyz");
            Ok(())
        }
        fill(&mut buf).unwrap();
        fill(&mut counter).unwrap();
        assert_eq!(counter.0, buf.len());
        assert_eq!(buf.len(), 1 + 2 + 4 + 2 + 2 + 6 + 3);
    }
}
