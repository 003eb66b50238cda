//! Targets over transport bytes: the frame deframer, SASL negotiation messages and PLAIN credentials,
//! and the first-bytes transport sniffer.

use hs2_proxy::thrift::framing::{
    sniff as classify, Deframer, Framing, FramingError, PlainCredentials, SaslMessage, Sniffed, SNIFF_BYTES,
};

use super::input::{control, Splits};

/// What reading a stream produced: payload (or messages), the error that stopped it, bytes consumed.
#[derive(Debug, PartialEq)]
struct Read<T> {
    out: T,
    error: Option<FramingError>,
    consumed: usize,
}

/// Frames parsed straight from the layout (4-byte big-endian length, payload), independently of
/// `Deframer`: the payload available from `data`, as far as it goes.
fn reference_frames(data: &[u8], max: u64) -> Read<Vec<u8>> {
    let (mut out, mut pos) = (Vec::new(), 0);
    while data.len() - pos >= 4 {
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as u64;
        if len > max {
            return Read { out, error: Some(FramingError::FrameTooLarge(len, max)), consumed: pos };
        }
        let take = (len as usize).min(data.len() - pos - 4);
        out.extend_from_slice(&data[pos + 4..pos + 4 + take]);
        pos += 4 + take;
        if (take as u64) < len {
            break;
        }
    }
    Read { out, error: None, consumed: pos }
}

/// Feeds `pieces` to a deframer as reads arrive; unconsumed bytes stay in front of the next read.
fn deframe(framing: Framing, max: u64, pieces: &[&[u8]]) -> Read<Vec<u8>> {
    let mut d = Deframer::new(framing, max);
    let (mut pending, mut out, mut consumed) = (Vec::new(), Vec::new(), 0);
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let (h, p) = match d.next_chunk(&pending) {
                Ok(c) => c,
                Err(e) => return Read { out, error: Some(e), consumed },
            };
            assert!(h + p <= pending.len(), "chunk ({h}, {p}) beyond {} bytes", pending.len());
            assert!(h == 0 || (h == 4 && framing == Framing::Framed), "a frame header of {h} bytes");
            if h + p == 0 {
                break;
            }
            out.extend_from_slice(&pending[h..h + p]);
            pending.drain(..h + p);
            consumed += h + p;
        }
    }
    Read { out, error: None, consumed }
}

/// Target `deframer`: control bytes `[framing and max frame, seed lo, seed hi]`, then the stream.
pub fn deframer(data: &[u8]) {
    let (ctl, stream) = control::<3>(data);
    let framing = if ctl[0] & 1 == 0 { Framing::Framed } else { Framing::Unframed };
    let max = [0, 1, 7, 64, 1 << 10, 128 << 20, u32::MAX as u64, 5][(ctl[0] >> 1 & 7) as usize];
    let once = deframe(framing, max, &[stream]);
    let split = deframe(framing, max, &Splits::new(u16::from_le_bytes([ctl[1], ctl[2]])).pieces(stream));
    assert_eq!(once, split, "one pass and piecewise reads disagree");
    match framing {
        Framing::Framed => assert_eq!(once, reference_frames(stream, max), "the deframer misreads the layout"),
        Framing::Unframed => assert_eq!(once, Read { out: stream.to_vec(), error: None, consumed: stream.len() }),
    }
}

/// Decodes negotiation messages from `pieces` as they arrive; checks each against its own bytes.
fn negotiation(max: u64, pieces: &[&[u8]]) -> Read<Vec<SaslMessage>> {
    let (mut pending, mut out, mut consumed) = (Vec::new(), Vec::new(), 0);
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let (m, n) = match SaslMessage::decode(&pending, max) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(e) => return Read { out, error: Some(e), consumed },
            };
            check_sasl_message(&m, n, &pending, max);
            pending.drain(..n);
            consumed += n;
            out.push(m);
        }
    }
    Read { out, error: None, consumed }
}

fn check_sasl_message(m: &SaslMessage, n: usize, buf: &[u8], max: u64) {
    assert!(n <= buf.len() && n == 5 + m.payload.len(), "a message of {n} bytes from {}", buf.len());
    assert!(m.payload.len() as u64 <= max, "a payload of {} bytes passed the limit {max}", m.payload.len());
    assert_eq!(m.encode(), &buf[..n], "a decoded message does not encode back to its bytes");
    for short in [0, 4, n - 1] {
        assert_eq!(SaslMessage::decode(&buf[..short.min(n - 1)], max), Ok(None), "decoded from a prefix");
    }
    check_plain(&m.payload);
}

/// PLAIN credentials are three NUL-separated UTF-8 parts, a non-empty user, nothing else, and the
/// password never shows in `Debug`.
fn check_plain(payload: &[u8]) {
    let c = match PlainCredentials::parse(payload) {
        Ok(c) => c,
        Err(e) => return assert_eq!(e, FramingError::BadPlain),
    };
    assert!(!c.user.is_empty(), "an empty user passed");
    let parts = [&c.authzid, &c.user, &c.password];
    assert!(parts.iter().all(|p| !p.contains('\0')), "a part holds a NUL");
    assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>() + 2, payload.len(), "parts do not add up");
    if c.authzid.is_empty() {
        assert_eq!(PlainCredentials::encode(&c.user, &c.password), payload);
    }
    let shown = format!("{c:?}").replace(&format!("{:?}", c.user), "");
    let skeleton = "PlainCredentials { user: , password: <redacted> }";
    assert!(!shown.contains(&c.password) || skeleton.contains(&c.password), "Debug shows the password");
}

/// Target `sasl`: control bytes `[max payload, seed lo, seed hi]`, then the negotiation stream.
pub fn sasl(data: &[u8]) {
    let (ctl, stream) = control::<3>(data);
    let max = [0, 5, 64, 1 << 20][(ctl[0] & 3) as usize];
    let once = negotiation(max, &[stream]);
    let split = negotiation(max, &Splits::new(u16::from_le_bytes([ctl[1], ctl[2]])).pieces(stream));
    assert_eq!(once, split, "one pass and piecewise reads disagree");
    check_plain(stream);
}

/// Target `sniff`: the first bytes of a connection. Once the sniffer decides, more bytes never change
/// the decision; it decides by `SNIFF_BYTES`; and each decision matches the bytes it names.
pub fn sniff(data: &[u8]) {
    let mut decided: Option<Sniffed> = None;
    for k in 0..=data.len().min(64) {
        let now = classify(&data[..k]);
        match decided {
            Some(d) => assert_eq!(now, Some(d), "{d:?} after {k} bytes became {now:?}"),
            None => decided = now,
        }
        if k >= SNIFF_BYTES {
            assert!(decided.is_some(), "undecided after {k} bytes");
        }
    }
    assert_eq!(classify(data), decided);
    let b = |i: usize| data.get(i).copied();
    match decided {
        Some(Sniffed::Unframed) => assert_eq!(b(0), Some(0x80)),
        Some(Sniffed::Framed) => assert_eq!((b(0), b(4), b(5)), (Some(0), Some(0x80), Some(1))),
        Some(Sniffed::Sasl) => assert_eq!(b(0), Some(1)),
        Some(Sniffed::Tls) => assert_eq!(b(0), Some(0x16)),
        Some(Sniffed::Http) => assert!(b(0).is_some_and(|c| c.is_ascii_uppercase())),
        Some(Sniffed::Unknown) | None => {}
    }
}
