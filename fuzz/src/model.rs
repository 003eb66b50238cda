//! A reference reading of a decoded message (`thrift::value::decode_message`), written independently of
//! the scanner, that the targets compare the scanner's captures and limits with.

use hs2_proxy::thrift::scanner::Scalar;
use hs2_proxy::thrift::value::{Struct, Value};
use hs2_proxy::thrift::MAX_CAPTURE_BYTES;

/// A value as the scanner captures it: integers widened, strings cut to `MAX_CAPTURE_BYTES`; `None` for
/// structs and containers, which are never captured.
pub fn as_capture(v: &Value) -> Option<Scalar> {
    Some(match v {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Byte(_) | Value::I16(_) | Value::I32(_) | Value::I64(_) => Scalar::Int(v.as_i64()?),
        Value::Double(d) => Scalar::Double(*d),
        Value::Bytes(b) => Scalar::Bytes(b[..b.len().min(MAX_CAPTURE_BYTES)].to_vec()),
        _ => return None,
    })
}

/// Equality that treats two NaNs with the same bits as equal (a captured double is compared by bits).
pub fn same_capture(a: Option<&Scalar>, b: Option<&Scalar>) -> bool {
    match (a, b) {
        (Some(Scalar::Double(x)), Some(Scalar::Double(y))) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// What a Thrift reader of the IDL sees at `path`: at every level the *last* occurrence of the field
/// wins, and a struct replaces an earlier struct of the same id wholly (generated readers assign the
/// field again). At the leaf the last scalar counts; a struct or container there is not a value.
/// Intermediate fields of another type than struct are skipped, as generated readers skip a field of an
/// unexpected type.
pub fn reader_value(body: &Struct, path: &[i16]) -> Option<Scalar> {
    let (id, rest) = path.split_first()?;
    let fields = body.fields.iter().filter(|(i, _)| i == id).map(|(_, v)| v);
    if rest.is_empty() {
        return fields.filter_map(as_capture).next_back();
    }
    let inner = fields.filter_map(Value::as_struct).next_back()?;
    reader_value(inner, rest)
}

/// Like [`reader_value`], but a leaf of another type than string is skipped too (the typed reader of a
/// `binary` field): what the backend would read for a handle's guid or secret.
pub fn reader_bytes(body: &Struct, path: &[i16]) -> Option<Vec<u8>> {
    let (id, rest) = path.split_first()?;
    let fields = body.fields.iter().filter(|(i, _)| i == id).map(|(_, v)| v);
    if rest.is_empty() {
        return fields.filter_map(Value::as_bytes).next_back().map(<[u8]>::to_vec);
    }
    let inner = fields.filter_map(Value::as_struct).next_back()?;
    reader_bytes(inner, rest)
}

/// True when some struct on `path` (below `body`) holds the same field id more than once.
pub fn has_duplicates_on(body: &Struct, path: &[i16]) -> bool {
    let Some((id, rest)) = path.split_first() else { return false };
    let mut n = 0;
    let mut dup_below = false;
    for (i, v) in &body.fields {
        if i == id {
            n += 1;
            if let Value::Struct(inner) = v {
                dup_below |= has_duplicates_on(inner, rest);
            }
        }
    }
    n > 1 || dup_below
}

/// The deepest stack the scanner needs for `v`: a frame per struct and per non-empty container whose
/// elements are not all fixed-width (those are skipped as one run of bytes).
pub fn frame_depth(v: &Value) -> usize {
    let deepest = |it: &mut dyn Iterator<Item = &Value>| it.map(frame_depth).max().unwrap_or(0);
    match v {
        Value::Struct(s) => 1 + deepest(&mut s.fields.iter().map(|(_, v)| v)),
        Value::List(t, items) | Value::Set(t, items) => {
            if items.is_empty() || t.fixed_width().is_some() {
                0
            } else {
                1 + deepest(&mut items.iter())
            }
        }
        Value::Map(k, t, entries) => {
            if entries.is_empty() || (k.fixed_width().is_some() && t.fixed_width().is_some()) {
                0
            } else {
                1 + deepest(&mut entries.iter().flat_map(|(k, v)| [k, v]))
            }
        }
        _ => 0,
    }
}

/// The longest list, set or map (in elements or entries) anywhere in `v`.
pub fn longest_container(v: &Value) -> usize {
    let longest = |it: &mut dyn Iterator<Item = &Value>| it.map(longest_container).max().unwrap_or(0);
    match v {
        Value::Struct(s) => longest(&mut s.fields.iter().map(|(_, v)| v)),
        Value::List(_, items) | Value::Set(_, items) => items.len().max(longest(&mut items.iter())),
        Value::Map(_, _, entries) => entries.len().max(longest(&mut entries.iter().flat_map(|(k, v)| [k, v]))),
        _ => 0,
    }
}

/// The longest string or binary anywhere in `v`.
pub fn longest_string(v: &Value) -> usize {
    let longest = |it: &mut dyn Iterator<Item = &Value>| it.map(longest_string).max().unwrap_or(0);
    match v {
        Value::Bytes(b) => b.len(),
        Value::Struct(s) => longest(&mut s.fields.iter().map(|(_, v)| v)),
        Value::List(_, items) | Value::Set(_, items) => longest(&mut items.iter()),
        Value::Map(_, _, entries) => longest(&mut entries.iter().flat_map(|(k, v)| [k, v])),
        _ => 0,
    }
}
