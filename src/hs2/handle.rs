//! Session and operation handle identifiers. No I/O.
//!
//! A handle is a 16-byte guid plus a 16-byte secret. The guid is the identity (Impala shows it as
//! `hi:lo`, two 64-bit hex numbers read little-endian from the guid's halves); the secret proves the
//! holder may use it and never appears in logs, `Debug` output or the admin API.

use std::fmt;

use crate::thrift::scanner::Scalar;

/// Bytes in a guid and in a secret.
pub const ID_BYTES: usize = 16;

/// A session or operation guid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; ID_BYTES]);

/// A handle secret; compared in constant time, printed as `<redacted>`.
#[derive(Clone, Copy, Eq)]
pub struct Secret(pub [u8; ID_BYTES]);

/// A guid and its secret, as found in a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HandleId {
    pub guid: Guid,
    pub secret: Secret,
}

impl Guid {
    /// Impala's id form: `hi:lo`, each half read little-endian and printed as 16 hex digits.
    pub fn impala_id(&self) -> String {
        self.to_string()
    }

    /// [`Guid::impala_id`]'s 33 characters, written without formatting machinery: a guid is in the
    /// log line of every session opened and closed, and `{:016x}` twice cost about a thousand
    /// instructions a line (callgrind, the bench's query loop).
    fn impala_id_bytes(&self) -> [u8; 33] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (hi, lo) = self.halves();
        let mut out = [b':'; 33];
        for (i, shift) in (0..16).rev().map(|d| d * 4).enumerate() {
            out[i] = HEX[((hi >> shift) & 0xf) as usize];
            out[17 + i] = HEX[((lo >> shift) & 0xf) as usize];
        }
        out
    }

    fn halves(&self) -> (u64, u64) {
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&self.0[..8]);
        lo.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(hi), u64::from_le_bytes(lo))
    }

    /// Parses Impala's `hi:lo` form back into a guid.
    pub fn parse_impala_id(text: &str) -> Option<Guid> {
        let (hi, lo) = text.trim().split_once(':')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        let mut g = [0u8; ID_BYTES];
        g[..8].copy_from_slice(&hi.to_le_bytes());
        g[8..].copy_from_slice(&lo.to_le_bytes());
        Some(Guid(g))
    }

    pub fn random() -> Guid {
        Guid(rand::random())
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.impala_id_bytes();
        // ASCII hex digits and a colon: always UTF-8.
        f.write_str(std::str::from_utf8(&id).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl Secret {
    pub fn random() -> Secret {
        Secret(rand::random())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        // Constant time: a timing difference must not reveal how much of a guessed secret is right.
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl HandleId {
    /// Builds a handle from captured guid and secret bytes; `None` unless both are exactly 16 bytes.
    pub fn from_captures(guid: Option<&Scalar>, secret: Option<&Scalar>) -> Option<HandleId> {
        let guid: [u8; ID_BYTES] = guid?.as_bytes()?.try_into().ok()?;
        let secret: [u8; ID_BYTES] = secret?.as_bytes()?.try_into().ok()?;
        Some(HandleId { guid: Guid(guid), secret: Secret(secret) })
    }

    pub fn random() -> HandleId {
        HandleId { guid: Guid::random(), secret: Secret::random() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impala_id_reads_halves_little_endian() {
        let mut g = [0u8; 16];
        g[0] = 0x01;
        g[7] = 0xab;
        g[8] = 0x02;
        let guid = Guid(g);
        assert_eq!(guid.impala_id(), "ab00000000000001:0000000000000002");
        let mixed = Guid(*b"\x10\x32\x54\x76\x98\xba\xdc\xfe\xef\xcd\xab\x89\x67\x45\x23\x01");
        assert_eq!(mixed.to_string(), "fedcba9876543210:0123456789abcdef");
        assert_eq!(format!("{mixed:?}"), "Guid(fedcba9876543210:0123456789abcdef)");
        assert_eq!(Guid::parse_impala_id(&guid.impala_id()), Some(guid));
        assert_eq!(Guid::parse_impala_id("nope"), None);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret([7; 16]);
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", HandleId { guid: Guid([1; 16]), secret: s }).contains("07"));
        assert_ne!(s, Secret([8; 16]));
    }

    #[test]
    fn captures_must_be_sixteen_bytes() {
        let ok = Scalar::Bytes(vec![1; 16]);
        let short = Scalar::Bytes(vec![1; 15]);
        assert!(HandleId::from_captures(Some(&ok), Some(&ok)).is_some());
        assert!(HandleId::from_captures(Some(&short), Some(&ok)).is_none());
        assert!(HandleId::from_captures(Some(&ok), None).is_none());
    }
}
