//! Fuzz target: arbitrary bytes through `codec::decode` for every protocol version.
//!
//! Decodes packets one after another until the input is exhausted or rejected, and checks
//! that every packet decode accepts re-encodes to bytes that decode back to the same packet.
//! A panic anywhere (including in that check) is a finding.
#![no_main]

use bytes::BytesMut;
use fubar::codec::{decode, encode, encoded_len, Protocol};
use libfuzzer_sys::fuzz_target;

/// Large enough for any input libFuzzer produces with its default `-max_len`.
const MAX_PACKET_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        // Every decoded packet consumes at least two bytes, so this bound is never reached.
        for _ in 0..=data.len() {
            let Ok(Some(packet)) = decode(&mut buf, protocol, MAX_PACKET_SIZE) else {
                break;
            };
            let mut encoded = BytesMut::new();
            if let Err(e) = encode(&packet, protocol, &mut encoded) {
                panic!("decoded {packet:?} but cannot encode it: {e}");
            }
            assert_eq!(encoded.len(), encoded_len(&packet, protocol));
            let again = decode(&mut encoded, protocol, usize::MAX);
            assert_eq!(again, Ok(Some(packet)), "re-encoded packet decodes differently");
            assert!(encoded.is_empty());
        }
    }
});
