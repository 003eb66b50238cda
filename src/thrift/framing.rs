//! Transport framing: which transport a client speaks, frame headers, SASL negotiation. No I/O.
//!
//! After the SASL handshake, TSaslTransport data frames and TFramedTransport frames share one layout
//! (a 4-byte big-endian length, then payload); both are [`Framing::Framed`] here. A Thrift message may
//! span frames and a frame may hold parts of two messages: payload is a stream.

use std::fmt;

/// What the first bytes of a client connection say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// `80 01`: a strict binary-protocol message with no length prefix.
    Unframed,
    /// A 4-byte length followed by `80 01`.
    Framed,
    /// `01` (START) followed by a 4-byte length: SASL negotiation.
    Sasl,
    /// An HTTP request line.
    Http,
    /// A TLS ClientHello.
    Tls,
    Unknown,
}

/// Bytes needed to tell transports apart (a frame length plus the version bytes).
pub const SNIFF_BYTES: usize = 6;

/// Classifies a connection from its first bytes; `None` until enough bytes are there.
pub fn sniff(first: &[u8]) -> Option<Sniffed> {
    let b0 = *first.first()?;
    Some(match b0 {
        0x80 => Sniffed::Unframed,
        0x01 => Sniffed::Sasl,
        0x16 => Sniffed::Tls,
        b'P' | b'G' | b'H' | b'O' => Sniffed::Http,
        0x00 => {
            if first.len() < SNIFF_BYTES {
                return None;
            }
            if first[4] == 0x80 && first[5] == 0x01 {
                Sniffed::Framed
            } else {
                Sniffed::Unknown
            }
        }
        _ => Sniffed::Unknown,
    })
}

/// How Thrift payload is carried on a connection once any handshake is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Unframed,
    Framed,
}

/// SASL negotiation status bytes (TSaslTransport).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslStatus {
    Start = 1,
    Ok = 2,
    Bad = 3,
    Error = 4,
    Complete = 5,
}

impl SaslStatus {
    pub fn from_u8(b: u8) -> Option<SaslStatus> {
        Some(match b {
            1 => SaslStatus::Start,
            2 => SaslStatus::Ok,
            3 => SaslStatus::Bad,
            4 => SaslStatus::Error,
            5 => SaslStatus::Complete,
            _ => return None,
        })
    }
}

/// A framing error: the stream cannot be read further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    FrameTooLarge(u64, u64),
    #[error("unknown SASL status byte {0}")]
    BadSaslStatus(u8),
    #[error("malformed SASL PLAIN response")]
    BadPlain,
}

/// One SASL negotiation message: status byte, 4-byte length, payload.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslMessage {
    pub status: SaslStatus,
    pub payload: Vec<u8>,
}

impl fmt::Debug for SaslMessage {
    // The payload may hold a password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaslMessage({:?}, {} bytes)", self.status, self.payload.len())
    }
}

impl SaslMessage {
    pub fn new(status: SaslStatus, payload: &[u8]) -> SaslMessage {
        SaslMessage { status, payload: payload.to_vec() }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.payload.len());
        out.push(self.status as u8);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes one message from the front of `buf`: `Ok(None)` until it is complete; returns bytes used.
    pub fn decode(buf: &[u8], max_payload: u64) -> Result<Option<(SaslMessage, usize)>, FramingError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let status = SaslStatus::from_u8(buf[0]).ok_or(FramingError::BadSaslStatus(buf[0]))?;
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as u64;
        if len > max_payload {
            return Err(FramingError::FrameTooLarge(len, max_payload));
        }
        let total = 5 + len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        Ok(Some((SaslMessage { status, payload: buf[5..total].to_vec() }, total)))
    }
}

/// The parts of a SASL PLAIN initial response (`authzid \0 user \0 password`).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authzid: String,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainCredentials {{ user: {:?}, password: <redacted> }}", self.user)
    }
}

impl PlainCredentials {
    pub fn parse(payload: &[u8]) -> Result<PlainCredentials, FramingError> {
        let mut parts = payload.split(|b| *b == 0);
        let (Some(a), Some(u), Some(p), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(FramingError::BadPlain);
        };
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| FramingError::BadPlain);
        let creds = PlainCredentials { authzid: text(a)?, user: text(u)?, password: text(p)? };
        if creds.user.is_empty() {
            return Err(FramingError::BadPlain);
        }
        Ok(creds)
    }

    pub fn encode(user: &str, password: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + user.len() + password.len());
        out.push(0);
        out.extend_from_slice(user.as_bytes());
        out.push(0);
        out.extend_from_slice(password.as_bytes());
        out
    }
}

/// The header of a frame carrying `len` payload bytes.
pub fn frame_header(len: usize) -> [u8; 4] {
    (len as u32).to_be_bytes()
}

/// Strips frame headers from a byte stream, leaving payload; remembers where it is inside a frame.
#[derive(Debug)]
pub struct Deframer {
    framing: Framing,
    left_in_frame: u64,
    max_frame: u64,
}

impl Deframer {
    pub fn new(framing: Framing, max_frame: u64) -> Deframer {
        Deframer { framing, left_in_frame: 0, max_frame }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Payload bytes of the current frame not read yet (0 at a frame header, and when unframed).
    pub fn left_in_frame(&self) -> u64 {
        self.left_in_frame
    }

    /// `n` bytes of the current frame's payload were taken from the socket past this deframer (spliced).
    pub fn took_from_frame(&mut self, n: u64) {
        self.left_in_frame = self.left_in_frame.saturating_sub(n);
    }

    /// How many of the bytes at the front of `raw` are payload, skipping a frame header first when one is
    /// due. Returns `(header bytes to drop, payload bytes available)`; `(0, 0)` means "need more".
    pub fn next_chunk(&mut self, raw: &[u8]) -> Result<(usize, usize), FramingError> {
        if self.framing == Framing::Unframed {
            return Ok((0, raw.len()));
        }
        let mut header = 0;
        if self.left_in_frame == 0 {
            if raw.len() < 4 {
                return Ok((0, 0));
            }
            let len = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as u64;
            if len > self.max_frame {
                return Err(FramingError::FrameTooLarge(len, self.max_frame));
            }
            self.left_in_frame = len;
            header = 4;
        }
        let payload = (self.left_in_frame.min((raw.len() - header) as u64)) as usize;
        self.left_in_frame -= payload as u64;
        Ok((header, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_transport() {
        assert_eq!(sniff(&[0x80, 1, 0, 1]), Some(Sniffed::Unframed));
        assert_eq!(sniff(&[1, 0, 0, 0, 5]), Some(Sniffed::Sasl));
        assert_eq!(sniff(&[0, 0, 0, 40, 0x80, 1]), Some(Sniffed::Framed));
        assert_eq!(sniff(&[0, 0, 0]), None);
        assert_eq!(sniff(b"POST /cliservice"), Some(Sniffed::Http));
        assert_eq!(sniff(&[0x16, 3, 1]), Some(Sniffed::Tls));
        assert_eq!(sniff(&[0, 0, 0, 4, 1, 2]), Some(Sniffed::Unknown));
        assert_eq!(sniff(&[]), None);
    }

    #[test]
    fn sasl_messages_round_trip_and_wait_for_bytes() {
        let m = SaslMessage::new(SaslStatus::Start, b"PLAIN");
        let bytes = m.encode();
        for n in 0..bytes.len() {
            assert_eq!(SaslMessage::decode(&bytes[..n], 100), Ok(None));
        }
        assert_eq!(SaslMessage::decode(&bytes, 100), Ok(Some((m, bytes.len()))));
        assert_eq!(SaslMessage::decode(&[9, 0, 0, 0, 0], 100), Err(FramingError::BadSaslStatus(9)));
        assert_eq!(SaslMessage::decode(&[2, 0, 0, 1, 0], 100), Err(FramingError::FrameTooLarge(256, 100)));
    }

    #[test]
    fn plain_credentials_parse_and_hide_the_password() {
        let c = PlainCredentials::parse(&PlainCredentials::encode("alice", "s3cret")).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(PlainCredentials::parse(b"alice"), Err(FramingError::BadPlain));
        assert_eq!(PlainCredentials::parse(b"\0\0pw"), Err(FramingError::BadPlain));
    }

    #[test]
    fn deframer_splits_and_joins_frames() {
        let mut stream = Vec::new();
        for part in [&b"abc"[..], b"", b"defgh"] {
            stream.extend_from_slice(&frame_header(part.len()));
            stream.extend_from_slice(part);
        }
        // Feed one byte more each time, as a socket might.
        let mut d = Deframer::new(Framing::Framed, 16);
        let (mut raw, mut payload) = (Vec::new(), Vec::new());
        for b in stream {
            raw.push(b);
            loop {
                let (h, p) = d.next_chunk(&raw).unwrap();
                if h + p == 0 {
                    break;
                }
                payload.extend_from_slice(&raw[h..h + p]);
                raw.drain(..h + p);
            }
        }
        assert_eq!(payload, b"abcdefgh");
        let mut d = Deframer::new(Framing::Framed, 16);
        assert_eq!(d.next_chunk(&[0, 0, 1, 0]), Err(FramingError::FrameTooLarge(256, 16)));
    }
}
