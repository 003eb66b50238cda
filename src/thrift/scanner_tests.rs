use super::*;
use crate::thrift::value::{encode_message, Struct, Value};
use crate::thrift::MessageHeader;

fn handle(guid: u8, secret: u8) -> Value {
    let id = Struct::new().with(1, Value::Bytes(vec![guid; 16])).with(2, Value::Bytes(vec![secret; 16]));
    Struct::new().with(1, id.into_value()).into_value()
}

/// A reply shaped like FetchResults with a session-like handle in front and bulky columns behind.
fn sample_reply() -> Vec<u8> {
    let status = Struct::new().with(1, Value::I32(3)).with(5, Value::string("Invalid session id: 1:2"));
    let column = Struct::new()
        .with(1, Value::List(TType::I64, (0..50).map(Value::I64).collect()))
        .with(2, Value::Bytes(vec![0; 7]));
    let strings = Value::List(TType::String, vec![Value::string("a"), Value::string(""), Value::string("ccc")]);
    let body = Struct::new().with(
        0,
        Struct::new()
            .with(1, status.into_value())
            .with(2, handle(7, 9))
            .with(3, Value::Bool(true))
            .with(4, Value::List(TType::Struct, vec![column.into_value(), Struct::new().into_value()]))
            .with(5, strings)
            .with(6, Value::Map(TType::String, TType::Struct, vec![(Value::string("k"), handle(1, 1))]))
            .with(7, Value::Map(TType::I32, TType::I64, vec![(Value::I32(1), Value::I64(2))]))
            .with(8, Value::Double(2.5))
            .into_value(),
    );
    encode_message(&MessageHeader::new("FetchResults", MessageKind::Reply, 77), &body)
}

const CAPTURES: &[FieldPath] = &[&[0, 1, 1], &[0, 1, 5], &[0, 2, 1, 1], &[0, 2, 1, 2], &[0, 3], &[0, 8], &[0, 6, 1]];

fn check_found(s: &Scanner) {
    assert_eq!(s.header().map(|h| (h.name.as_str(), h.seqid)), Some(("FetchResults", 77)));
    assert_eq!(s.found(0), Some(&Scalar::Int(3)));
    assert_eq!(s.found(1), Some(&Scalar::Bytes(b"Invalid session id: 1:2".to_vec())));
    assert_eq!(s.found(2), Some(&Scalar::Bytes(vec![7; 16])));
    assert_eq!(s.found(3), Some(&Scalar::Bytes(vec![9; 16])));
    assert_eq!(s.found(4), Some(&Scalar::Bool(true)));
    assert_eq!(s.found(5), Some(&Scalar::Double(2.5)));
    // Map values are container elements: never on a path.
    assert_eq!(s.found(6), None);
}

#[test]
fn whole_message_at_once() {
    let bytes = sample_reply();
    let mut s = Scanner::new(Limits::REPLY, CAPTURES);
    assert_eq!(s.feed(&bytes).unwrap(), bytes.len());
    assert!(s.is_done());
    check_found(&s);
}

#[test]
fn split_at_every_byte_boundary() {
    let bytes = sample_reply();
    for split in 0..=bytes.len() {
        let mut s = Scanner::new(Limits::REPLY, CAPTURES);
        let mut buf = bytes[..split].to_vec();
        let used = s.feed(&buf).unwrap();
        buf.drain(..used);
        assert!(!s.is_done() || split == bytes.len(), "done early at split {split}");
        buf.extend_from_slice(&bytes[split..]);
        let used2 = s.feed(&buf).unwrap();
        assert_eq!(used + used2, bytes.len(), "split {split}");
        assert!(s.is_done(), "not done at split {split}");
        check_found(&s);
    }
}

#[test]
fn one_byte_at_a_time_consumes_streaming_bytes_eagerly() {
    let bytes = sample_reply();
    let mut s = Scanner::new(Limits::REPLY, CAPTURES);
    let mut pending: Vec<u8> = Vec::new();
    let mut max_pending = 0;
    for b in &bytes {
        pending.push(*b);
        let used = s.feed(&pending).unwrap();
        pending.drain(..used);
        max_pending = max_pending.max(pending.len());
    }
    assert!(s.is_done());
    assert!(pending.is_empty());
    // Nothing larger than the method header is ever held back.
    assert!(max_pending <= 8 + "FetchResults".len() + 4, "held back {max_pending} bytes");
    check_found(&s);
}

#[test]
fn stops_at_the_end_of_the_message() {
    let mut bytes = sample_reply();
    let len = bytes.len();
    bytes.extend_from_slice(&sample_reply());
    let mut s = Scanner::new(Limits::REPLY, CAPTURES);
    assert_eq!(s.feed(&bytes).unwrap(), len);
    s.reset(CAPTURES);
    assert_eq!(s.feed(&bytes[len..]).unwrap(), len);
    check_found(&s);
}

#[test]
fn large_strings_stream_without_being_held() {
    let big = vec![b'x'; 1 << 20];
    let body = Struct::new().with(0, Struct::new().with(3, Value::Bytes(big)).into_value());
    let bytes = encode_message(&MessageHeader::new("FetchResults", MessageKind::Reply, 1), &body);
    let mut s = Scanner::new(Limits::REPLY, &[&[0, 3]]);
    let mut fed = 0;
    for chunk in bytes.chunks(1000) {
        fed += s.feed(chunk).unwrap();
    }
    assert_eq!(fed, bytes.len());
    // The capture keeps only a bounded prefix.
    assert_eq!(s.found(0).and_then(Scalar::as_bytes).map(<[u8]>::len), Some(MAX_CAPTURE_BYTES));
}

#[test]
fn limits_turn_hostile_input_into_errors() {
    let limits = Limits { max_message_bytes: 100, max_depth: 4, max_container_len: 10 };
    let header = |extra: &[u8]| {
        let mut b = encode_message(&MessageHeader::new("M", MessageKind::Call, 1), &Struct::new());
        b.pop();
        b.extend_from_slice(extra);
        b
    };
    let mut s = Scanner::new(limits, &[]);
    assert_eq!(s.feed(&header(&[11, 0, 1, 0, 0, 1, 0])), Err(ProtocolError::TooLarge(100)));
    let mut s = Scanner::new(limits, &[]);
    assert_eq!(s.feed(&header(&[11, 0, 1, 0xff, 0xff, 0xff, 0xff])), Err(ProtocolError::NegativeLength(-1)));
    let mut s = Scanner::new(limits, &[]);
    assert!(matches!(s.feed(&header(&[15, 0, 1, 8, 0, 0, 0, 11])), Err(ProtocolError::ContainerTooLong(11, 10))));
    let mut s = Scanner::new(limits, &[]);
    assert_eq!(s.feed(&header(&[12, 0, 1, 12, 0, 1, 12, 0, 1, 12, 0, 1])), Err(ProtocolError::TooDeep(4)));
    let mut s = Scanner::new(limits, &[]);
    assert_eq!(s.feed(&header(&[99, 0, 1])), Err(ProtocolError::BadType(99)));
    let mut s = Scanner::new(limits, &[]);
    assert_eq!(s.feed(b"GET / HTTP/1.1\r\n"), Err(ProtocolError::BadVersion(b'G', b'E')));
    let mut s = Scanner::new(limits, &[]);
    assert_eq!(s.feed(&[0x80, 1, 0, 1, 0x7f, 0, 0, 0]), Err(ProtocolError::NameTooLong(0x7f00_0000)));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: mutate a valid message at every position.
    let base = sample_reply();
    for i in 0..base.len() {
        for x in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut b = base.clone();
            b[i] = x;
            let mut s = Scanner::new(Limits::REQUEST, CAPTURES);
            let _ = s.feed(&b);
        }
    }
}

/// What a scanner made of a message: the result, where it stopped, and what it captured.
fn outcome(s: &Scanner, result: Result<(), ProtocolError>) -> String {
    let found: Vec<_> = (0..CAPTURES.len()).map(|i| (s.found(i).cloned(), s.found_offset(i))).collect();
    match result {
        Err(e) => format!("{e:?}"),
        Ok(()) => format!("{} {} {:?} {found:?}", s.consumed(), s.is_done(), s.header()),
    }
}

/// A message that is all in the buffer is scanned field after field in one loop; fed a byte at a time,
/// each value takes its steps. Both read every variant of a message alike, errors included.
#[test]
fn whole_and_byte_by_byte_agree_on_every_mutation() {
    let base = sample_reply();
    let limits = Limits { max_message_bytes: base.len() as u64 - 40, max_depth: 5, max_container_len: 60 };
    for i in 0..base.len() {
        for x in [0u8, 1, 2, 8, 11, 12, 15, 0x7f, 0x80, 0xff] {
            let mut b = base.clone();
            b[i] = x;
            for limits in [Limits::REPLY, limits] {
                let mut whole = Scanner::new(limits, CAPTURES);
                let whole_result = whole.feed(&b).map(|_| ());
                let mut bytewise = Scanner::new(limits, CAPTURES);
                let mut pending = Vec::new();
                let mut bytewise_result = Ok(());
                for &byte in &b {
                    pending.push(byte);
                    match bytewise.feed(&pending) {
                        Ok(n) => drop(pending.drain(..n)),
                        Err(e) => {
                            bytewise_result = Err(e);
                            break;
                        }
                    }
                }
                assert_eq!(
                    outcome(&whole, whole_result),
                    outcome(&bytewise, bytewise_result),
                    "byte {i} set to {x}, limit {}",
                    limits.max_message_bytes
                );
            }
        }
    }
}

/// A message fed in two pieces, cut at every byte: the first piece's values are taken whole or left for
/// the second, which then takes them whole (a string whose length arrived in the first piece, say).
/// Every cut gives the whole message's outcome, captured strings' offsets included.
#[test]
fn every_two_piece_split_agrees_with_the_whole() {
    let msg = sample_reply();
    let mut whole = Scanner::new(Limits::REPLY, CAPTURES);
    let whole_result = whole.feed(&msg).map(|_| ());
    let want = outcome(&whole, whole_result);
    for cut in 0..=msg.len() {
        let mut s = Scanner::new(Limits::REPLY, CAPTURES);
        let result = s.feed(&msg[..cut]).and_then(|n| s.feed(&msg[n..]).map(|_| ()));
        assert_eq!(outcome(&s, result), want, "cut at {cut}");
    }
}

/// A captured string's offset points at its bytes in the message, whatever the feeding split.
#[test]
fn captured_strings_know_where_they_are() {
    let msg = sample_reply();
    for split in [1, 7, msg.len()] {
        let mut s = Scanner::new(Limits::REPLY, CAPTURES);
        let mut at = 0;
        while at < msg.len() {
            let end = (at + split).min(msg.len());
            at += s.feed(&msg[at..end]).unwrap();
            if s.is_done() {
                break;
            }
            if at < end {
                // The scanner wants more than this piece: give it the rest of the message.
                at += s.feed(&msg[at..]).unwrap();
            }
        }
        assert!(s.is_done());
        for (slot, want) in [(2usize, [7u8; 16]), (3, [9u8; 16])] {
            let off = s.found_offset(slot).unwrap() as usize;
            assert_eq!(&msg[off..off + 16], &want, "slot {slot}, split {split}");
        }
        assert_eq!(s.found_offset(0), None, "an integer has no string offset");
    }
}

#[test]
fn a_repeated_struct_field_replaces_the_earlier_one_wholly() {
    // Found by fuzzing (fuzz/regressions/request_parse/): `1: {1: guid A, 2: secret A}` then `1: {1: guid B}`.
    // A Thrift reader assigns field 1 again, so it sees guid B and no secret; the captures must agree
    // instead of mixing guid B with secret A.
    let first = Struct::new().with(1, Value::Bytes(vec![0xa; 16])).with(2, Value::Bytes(vec![0xa; 16]));
    let second = Struct::new().with(1, Value::Bytes(vec![0xb; 16]));
    let body = Struct::new().with(1, first.into_value()).with(1, second.into_value()).with(2, Value::I32(1));
    let bytes = encode_message(&MessageHeader::new("M", MessageKind::Call, 1), &body);
    let mut s = Scanner::new(Limits::REQUEST, &[&[1, 1], &[1, 2], &[2]]);
    assert_eq!(s.feed(&bytes).unwrap(), bytes.len());
    assert_eq!(s.found(0), Some(&Scalar::Bytes(vec![0xb; 16])));
    assert_eq!(s.found(1), None, "the secret of the replaced struct is gone");
    assert_eq!(s.found(2), Some(&Scalar::Int(1)));
}

/// Capture buffers are reused from scanner to scanner (and by `reset`): each capture starts empty, so
/// nothing of an earlier message shows through in a later one's handles or texts.
#[test]
fn reused_capture_buffers_start_empty() {
    let other = {
        let status = Struct::new().with(1, Value::I32(0)).with(5, Value::string("x"));
        let body = Struct::new().with(0, Struct::new().with(1, status.into_value()).with(2, handle(3, 4)).into_value());
        encode_message(&MessageHeader::new("FetchResults", MessageKind::Reply, 77), &body)
    };
    for _ in 0..3 {
        let mut s = Scanner::new(Limits::REPLY, CAPTURES);
        assert_eq!(s.feed(&sample_reply()).ok(), Some(sample_reply().len()));
        check_found(&s);
        s.reset(CAPTURES);
        s.feed(&other).expect("scans");
        assert_eq!(s.found(1), Some(&Scalar::Bytes(b"x".to_vec())));
        assert_eq!(s.found(2), Some(&Scalar::Bytes(vec![3; 16])));
        assert_eq!(s.found(3), Some(&Scalar::Bytes(vec![4; 16])));
        drop(s);
        let mut s = Scanner::new(Limits::REPLY, CAPTURES);
        s.feed(&other).expect("scans");
        assert_eq!(s.found(2), Some(&Scalar::Bytes(vec![3; 16])));
    }
}

/// A dropped scanner's state waits in the thread's spare list emptied: no handle, secret or header of its
/// message stays there, and the next scanner starts from nothing whatever the last one held.
#[test]
fn a_spare_state_keeps_nothing_of_its_message() {
    let mut s = Scanner::new(Limits::REPLY, CAPTURES);
    assert_eq!(s.feed(&sample_reply()).ok(), Some(sample_reply().len()));
    check_found(&s);
    drop(s);
    let spare_holds_nothing = SPARE.with(|spare| {
        spare
            .borrow()
            .iter()
            .all(|st| st.header.is_none() && st.found.iter().all(Option::is_none) && st.bytes.iter().all(Vec::is_empty))
    });
    assert!(spare_holds_nothing);
    // The next scanner, on the same thread, takes that state: a message without the captured fields
    // finds none of them.
    let s = Scanner::new(Limits::REPLY, CAPTURES);
    assert!(s.header().is_none() && (0..CAPTURES.len()).all(|i| s.found(i).is_none() && s.found_offset(i).is_none()));
    assert_eq!(s.consumed(), 0);
}
