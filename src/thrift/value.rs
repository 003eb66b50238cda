//! A dynamic Thrift value model: encode and decode *complete* binary-protocol messages. No I/O.
//!
//! Used where whole messages are small and in memory: replies the proxy synthesizes, health probes, the
//! mock impalad and tests. The relay path never uses it (see [`super::scanner`]). Decoding is bounded by
//! [`Limits`] like the scanner.

use super::{Limits, MessageHeader, MessageKind, ProtocolError, TType, MAX_METHOD_NAME_BYTES};

/// One Thrift value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    /// `string` and `binary` alike.
    Bytes(Vec<u8>),
    Struct(Struct),
    List(TType, Vec<Value>),
    Set(TType, Vec<Value>),
    Map(TType, TType, Vec<(Value, Value)>),
}

/// A struct (or union, or exception): fields in the order they are written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Struct {
    pub fields: Vec<(i16, Value)>,
}

impl Value {
    pub fn string(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    pub fn ttype(&self) -> TType {
        match self {
            Value::Bool(_) => TType::Bool,
            Value::Byte(_) => TType::Byte,
            Value::I16(_) => TType::I16,
            Value::I32(_) => TType::I32,
            Value::I64(_) => TType::I64,
            Value::Double(_) => TType::Double,
            Value::Bytes(_) => TType::String,
            Value::Struct(_) => TType::Struct,
            Value::List(..) => TType::List,
            Value::Set(..) => TType::Set,
            Value::Map(..) => TType::Map,
        }
    }

    pub fn as_struct(&self) -> Option<&Struct> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Byte(v) => Some(*v as i64),
            Value::I16(v) => Some(*v as i64),
            Value::I32(v) => Some(*v as i64),
            Value::I64(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Elements of a list or set.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(_, v) | Value::Set(_, v) => Some(v),
            _ => None,
        }
    }

    /// Entries of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(_, _, v) => Some(v),
            _ => None,
        }
    }
}

impl Struct {
    pub fn new() -> Struct {
        Struct::default()
    }

    /// Adds a field (builder style).
    pub fn with(mut self, id: i16, value: Value) -> Struct {
        self.fields.push((id, value));
        self
    }

    /// Adds a field when `value` is present.
    pub fn with_opt(self, id: i16, value: Option<Value>) -> Struct {
        match value {
            Some(v) => self.with(id, v),
            None => self,
        }
    }

    pub fn get(&self, id: i16) -> Option<&Value> {
        self.fields.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    pub fn get_struct(&self, id: i16) -> Option<&Struct> {
        self.get(id).and_then(Value::as_struct)
    }

    pub fn get_i64(&self, id: i16) -> Option<i64> {
        self.get(id).and_then(Value::as_i64)
    }

    pub fn get_bytes(&self, id: i16) -> Option<&[u8]> {
        self.get(id).and_then(Value::as_bytes)
    }

    pub fn get_str(&self, id: i16) -> Option<&str> {
        self.get(id).and_then(Value::as_str)
    }

    pub fn get_bool(&self, id: i16) -> Option<bool> {
        self.get(id).and_then(Value::as_bool)
    }

    /// The value at a path of field ids.
    pub fn at(&self, path: &[i16]) -> Option<&Value> {
        let (last, parents) = path.split_last()?;
        let mut s = self;
        for id in parents {
            s = s.get_struct(*id)?;
        }
        s.get(*last)
    }

    pub fn into_value(self) -> Value {
        Value::Struct(self)
    }
}

impl From<Struct> for Value {
    fn from(s: Struct) -> Value {
        Value::Struct(s)
    }
}

/// Encodes a whole message.
pub fn encode_message(header: &MessageHeader, body: &Struct) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x80, 0x01, 0x00, header.kind as u8]);
    out.extend_from_slice(&(header.name.len() as i32).to_be_bytes());
    out.extend_from_slice(header.name.as_bytes());
    out.extend_from_slice(&header.seqid.to_be_bytes());
    encode_struct(body, &mut out);
    out
}

/// Encodes a struct alone (no message header): a body that can be prepared once and sent many times.
pub fn encode_struct_bytes(s: &Struct) -> Vec<u8> {
    let mut out = Vec::new();
    encode_struct(s, &mut out);
    out
}

fn encode_struct(s: &Struct, out: &mut Vec<u8>) {
    for (id, v) in &s.fields {
        out.push(v.ttype() as u8);
        out.extend_from_slice(&id.to_be_bytes());
        encode_value(v, out);
    }
    out.push(TType::Stop as u8);
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bool(b) => out.push(*b as u8),
        Value::Byte(b) => out.push(*b as u8),
        Value::I16(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Double(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Bytes(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        Value::Struct(s) => encode_struct(s, out),
        Value::List(t, items) | Value::Set(t, items) => {
            out.push(*t as u8);
            out.extend_from_slice(&(items.len() as i32).to_be_bytes());
            items.iter().for_each(|i| encode_value(i, out));
        }
        Value::Map(k, vt, entries) => {
            out.push(*k as u8);
            out.push(*vt as u8);
            out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
            for (key, val) in entries {
                encode_value(key, out);
                encode_value(val, out);
            }
        }
    }
}

/// Decodes one whole message from `bytes`; returns it and the bytes it used.
pub fn decode_message(bytes: &[u8], limits: &Limits) -> Result<(MessageHeader, Struct, usize), ProtocolError> {
    let mut r = Reader { bytes, pos: 0, limits };
    let version = r.take(4)?;
    if version[0] != 0x80 || version[1] != 0x01 {
        return Err(ProtocolError::BadVersion(version[0], version[1]));
    }
    let kind = MessageKind::from_u8(version[3]).ok_or(ProtocolError::BadMessageKind(version[3]))?;
    let name_len = r.i32()?;
    if name_len < 0 || name_len as usize > MAX_METHOD_NAME_BYTES {
        return Err(ProtocolError::NameTooLong(name_len as i64));
    }
    let name = std::str::from_utf8(r.take(name_len as usize)?).map_err(|_| ProtocolError::NameNotUtf8)?;
    let seqid = r.i32()?;
    let body = r.structure(0)?;
    Ok((MessageHeader::new(name, kind, seqid), body, r.pos))
}

/// Most container elements reserved up front while decoding.
const PREALLOCATE_MAX: usize = 1024;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.bytes.len() - self.pos < n {
            return Err(ProtocolError::Truncated);
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        if self.pos as u64 > self.limits.max_message_bytes {
            return Err(ProtocolError::TooLarge(self.limits.max_message_bytes));
        }
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn ttype(&mut self) -> Result<TType, ProtocolError> {
        let b = self.u8()?;
        TType::from_u8(b).ok_or(ProtocolError::BadType(b))
    }

    fn count(&mut self) -> Result<usize, ProtocolError> {
        let n = self.i32()?;
        if n < 0 {
            return Err(ProtocolError::NegativeLength(n));
        }
        if n as u32 > self.limits.max_container_len {
            return Err(ProtocolError::ContainerTooLong(n as i64, self.limits.max_container_len));
        }
        Ok(n as usize)
    }

    fn structure(&mut self, depth: usize) -> Result<Struct, ProtocolError> {
        if depth >= self.limits.max_depth {
            return Err(ProtocolError::TooDeep(self.limits.max_depth));
        }
        let mut s = Struct::new();
        loop {
            let t = self.ttype()?;
            if t == TType::Stop {
                return Ok(s);
            }
            let id = self.take(2)?;
            let id = i16::from_be_bytes([id[0], id[1]]);
            let v = self.value(t, depth + 1)?;
            s.fields.push((id, v));
        }
    }

    fn value(&mut self, t: TType, depth: usize) -> Result<Value, ProtocolError> {
        if depth >= self.limits.max_depth {
            return Err(ProtocolError::TooDeep(self.limits.max_depth));
        }
        Ok(match t {
            TType::Bool => Value::Bool(self.u8()? != 0),
            TType::Byte => Value::Byte(self.u8()? as i8),
            TType::I16 => {
                let b = self.take(2)?;
                Value::I16(i16::from_be_bytes([b[0], b[1]]))
            }
            TType::I32 => Value::I32(self.i32()?),
            TType::I64 | TType::Double => {
                let mut a = [0u8; 8];
                a.copy_from_slice(self.take(8)?);
                let x = i64::from_be_bytes(a);
                if t == TType::I64 {
                    Value::I64(x)
                } else {
                    Value::Double(f64::from_bits(x as u64))
                }
            }
            TType::String => {
                let n = self.i32()?;
                if n < 0 {
                    return Err(ProtocolError::NegativeLength(n));
                }
                Value::Bytes(self.take(n as usize)?.to_vec())
            }
            TType::Struct => Value::Struct(self.structure(depth)?),
            TType::List | TType::Set => {
                let elem = self.ttype()?;
                let n = self.count()?;
                // A count is a peer's claim: preallocate little, let the vector grow with real elements.
                let mut items = Vec::with_capacity(n.min(PREALLOCATE_MAX));
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                if t == TType::List {
                    Value::List(elem, items)
                } else {
                    Value::Set(elem, items)
                }
            }
            TType::Map => {
                let k = self.ttype()?;
                let v = self.ttype()?;
                let n = self.count()?;
                let mut entries = Vec::with_capacity(n.min(PREALLOCATE_MAX));
                for _ in 0..n {
                    let key = self.value(k, depth + 1)?;
                    let val = self.value(v, depth + 1)?;
                    entries.push((key, val));
                }
                Value::Map(k, v, entries)
            }
            TType::Stop => return Err(ProtocolError::BadType(0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_types() {
        let body = Struct::new()
            .with(1, Value::Bool(true))
            .with(2, Value::Byte(-3))
            .with(3, Value::I16(-300))
            .with(4, Value::I32(70000))
            .with(5, Value::I64(-1 << 40))
            .with(6, Value::Double(1.5))
            .with(7, Value::string("hé"))
            .with(8, Struct::new().with(1, Value::I32(9)).into_value())
            .with(9, Value::List(TType::I64, vec![Value::I64(1), Value::I64(2)]))
            .with(10, Value::Set(TType::String, vec![Value::string("a")]))
            .with(11, Value::Map(TType::String, TType::I32, vec![(Value::string("k"), Value::I32(1))]));
        let header = MessageHeader::new("Method", MessageKind::Reply, 42);
        let bytes = encode_message(&header, &body);
        let (h, b, used) = decode_message(&bytes, &Limits::REQUEST).unwrap();
        assert_eq!((h, b, used), (header, body, bytes.len()));
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let body = Struct::new().with(1, Value::string("abc")).with(2, Value::List(TType::I32, vec![Value::I32(1)]));
        let bytes = encode_message(&MessageHeader::new("M", MessageKind::Call, 1), &body);
        for n in 0..bytes.len() {
            assert!(decode_message(&bytes[..n], &Limits::REQUEST).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn hostile_counts_and_depth_are_refused() {
        let mut bytes = encode_message(&MessageHeader::new("M", MessageKind::Call, 1), &Struct::new());
        bytes.pop();
        bytes.extend_from_slice(&[15, 0, 1, 8, 0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(decode_message(&bytes, &Limits::REQUEST), Err(ProtocolError::ContainerTooLong(..))));
        let mut deep = encode_message(&MessageHeader::new("M", MessageKind::Call, 1), &Struct::new());
        deep.pop();
        for _ in 0..100 {
            deep.extend_from_slice(&[12, 0, 1]);
        }
        assert!(matches!(decode_message(&deep, &Limits::REQUEST), Err(ProtocolError::TooDeep(64))));
    }
}
