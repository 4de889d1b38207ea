//! Inputs kept from fuzzing `fuzz/fuzz_targets/decode.rs` (cargo-fuzz, 8.25 million runs,
//! no crash): a spread of the corpus the fuzzer built, one input per packet type and size
//! class, replayed here with the fuzz target's own property so the normal test suite keeps
//! guarding the paths the fuzzer reached. Hex strings, decoded on every protocol version.

use super::{decode, encode, encoded_len, Protocol};
use bytes::BytesMut;

/// Corpus inputs (hex), each 4 to 48 bytes.
const CORPUS: &[&str] = &[
    "32050001203bbe35f800",
    "ca000000",
    "e006000125000060",
    "200b0000081a00010812000116",
    "b009ffff00110000110000",
    "820c32000007070707052a070100",
    "82230900000000000000000000001313b0ff0000110013182a04cab72c0057ff00ffa800b3",
    "9006800000020800",
    "d5820032ffffd12e",
    "200b000008220100110013ff1f200b000008220100110013ff1f",
    "310500023b0200310b0002310205023b003b0200",
    "b009ffff00110000001100b009ffff00110000001100",
    "ab05b063000000",
    "e000e000e000e000e000e000e000e000",
    "5003838383507100",
    "40033adf002c00",
    "b02d090000009191919191919191919191919191919191919191919191919191919191919191911313131313808003",
    "31210005161e62023b090100020000160b0b0b8b0b0b5e00004f00000000b04f4f1600",
    "20050000022a0020050000022a0020050000022a0020050000022a00ffff20ff",
    "900c030000000100000000000000b0091f1f1a1f1f1f1fff00",
    "400200084002000840020027400200084002002740020008",
    "e000e000e000e000e000e000e000e000e000e000e000e000e000e000e000e000",
    "900997068080000000800290099706808000000080029009970680800000000000",
    "820c320000070707070507012900820c320000070707070507012900",
    "820c3200000707070705070129008220050100020c32000007070707052c07012900820002070507012900d3ffffff12",
    "1103000040020000",
    "f080800080808070",
    "62023b0962023b096202096262023b3b",
    "ac16f6e00000000000000000000000000000000000001207",
    "7003788000700304ff007003788000700304ffff",
    "7a04e07676084002000840020008",
    "f016000516160b00000000000000050b2309160b23091616",
    "60f6f6f6f6",
    "c000c000c000c000c000c000c000c000c000c000c000c000c000c000c000c000c000c000c000c000c00000003105",
    "c000200b0000081500011616000101200b000008150001161600010101",
    "4002002740020027400200084002000840020027400200084002000840020008",
    "50030500005003050099500305000050030500995003050099",
    "152500044d51545463632c310000000000096431000000000000002a2ceaea00000000ea000000",
    "d000d000d000d000d000d000d000d000d000d000d0003d",
    "73063d2d3de0010415190006576363636363630000000000000000fc00636363636363",
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The fuzz target's property: decoding never panics, and every packet decode accepts
/// re-encodes (with `encoded_len` agreeing) to bytes that decode to the same packet.
#[test]
fn fuzz_corpus_inputs_keep_the_round_trip_property() {
    let mut accepted = 0;
    for hex in CORPUS {
        let data = unhex(hex);
        for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
            let mut buf = BytesMut::from(&data[..]);
            for _ in 0..=data.len() {
                let Ok(Some(packet)) = decode(&mut buf, protocol, 1 << 20) else {
                    break;
                };
                accepted += 1;
                let mut encoded = BytesMut::new();
                encode(&packet, protocol, &mut encoded).unwrap_or_else(|e| {
                    panic!("{hex} {protocol:?}: cannot encode {packet:?}: {e}")
                });
                assert_eq!(encoded.len(), encoded_len(&packet, protocol), "{hex}");
                let again = decode(&mut encoded, protocol, usize::MAX);
                assert_eq!(again, Ok(Some(packet)), "{hex} {protocol:?}");
                assert!(encoded.is_empty());
            }
        }
    }
    // The corpus is not only rejects: it keeps packets that decode.
    assert!(accepted > 10, "only {accepted} packets decoded");
}
