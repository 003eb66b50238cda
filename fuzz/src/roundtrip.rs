//! Target over the dynamic value model (`thrift::value`): what it decodes, it encodes back to the same
//! bytes up to the two things the wire allows it to normalize.

use hs2_proxy::thrift::value::{decode_message, encode_message};
use hs2_proxy::thrift::Limits;

/// Target `value_roundtrip`: one message. A decoded message re-encodes to as many bytes, differing only
/// in the version word's unused third byte (written 0) and in bool bytes other than 0 and 1 (written 1);
/// the re-encoding decodes to itself and encodes to the same bytes again (the encoder is canonical).
pub fn value_roundtrip(data: &[u8]) {
    let Ok((header, body, used)) = decode_message(data, &Limits::REPLY) else { return };
    assert!(used <= data.len(), "used {used} of {} bytes", data.len());
    let again = encode_message(&header, &body);
    assert_eq!(again.len(), used, "re-encoded to another length");
    for (i, (a, b)) in data[..used].iter().zip(&again).enumerate() {
        assert!(a == b || (i == 2 && *b == 0) || (*a > 1 && *b == 1), "byte {i}: {a:#04x} became {b:#04x}");
    }
    let (h2, b2, used2) = decode_message(&again, &Limits::REPLY).unwrap_or_else(|e| panic!("re-encoding refused: {e}"));
    assert_eq!((used2, &h2), (again.len(), &header));
    assert_eq!(encode_message(&h2, &b2), again, "the encoder is not canonical");
    for n in [0, used / 2, used.saturating_sub(1)] {
        if n < used {
            assert!(decode_message(&data[..n], &Limits::REPLY).is_err(), "a prefix of {n} bytes decoded");
        }
    }
}
