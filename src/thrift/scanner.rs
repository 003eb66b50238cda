//! A resumable scanner for one binary-protocol message. No I/O, no copies of the stream.
//!
//! The proxy never decodes a whole message: it needs to know where a message ends (unframed transports
//! have no length prefix), and the values of a few fields (handles, the status code, the error text).
//! [`Scanner::feed`] walks the bytes it is given with an explicit stack, consumes every value it can
//! finish, and says how many bytes it consumed: those bytes may be forwarded at once, so a 100 MB reply
//! streams through in buffer-sized pieces. Values that straddle the end of the input wait for more bytes,
//! except long strings and runs of fixed-width list elements, which are skipped piecewise.
//!
//! Fields are named by their *path* of field ids from the message body (the args or result struct):
//! `[1, 1, 1, 1]` is `args.req.sessionHandle.sessionId.guid`. List, set and map elements are never on a
//! path, so a capture cannot match inside a container. A field that repeats reads as a Thrift reader
//! reads it: the last scalar wins, and a repeated struct replaces the earlier one wholly.

use std::mem::ManuallyDrop;

use super::{
    Limits, MessageHeader, MessageKind, MethodName, ProtocolError, TType, MAX_CAPTURE_BYTES, MAX_METHOD_NAME_BYTES,
};

/// A path of field ids from the message body.
pub type FieldPath = &'static [i16];

/// The captures for a message, by the method name in its header.
pub type CaptureChoice = fn(&str) -> &'static [FieldPath];

/// A captured scalar value.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    /// byte, i16, i32 and i64 alike.
    Int(i64),
    Double(f64),
    /// A string or binary, at most [`MAX_CAPTURE_BYTES`] of it.
    Bytes(Vec<u8>),
}

impl Scalar {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Scalar::Int(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Scalar::Bytes(v) => Some(v),
            _ => None,
        }
    }
}

/// Marks a container element on the current path: no capture path contains it.
const ELEMENT: i16 = i16::MIN;

#[derive(Debug)]
enum Frame {
    Struct,
    List { elem: TType, left: u32 },
    Map { key: TType, val: TType, left: u32, at_key: bool },
}

#[derive(Debug)]
enum Step {
    Header,
    FieldHeader,
    Value(TType),
    /// Bytes of a string (or a run of fixed-width elements) still to pass; captured into `found[i]`.
    Blob {
        left: u64,
        capture: Option<usize>,
    },
    Done,
}

/// Scans one message; create a new one (or [`ScanState::reset`]) for the next.
///
/// Its state lives in a box that goes back to a per-thread spare list when the scanner is dropped: a
/// proxied call makes two scanners (the request, its reply), and allocating their vectors each time was a
/// tenth of the proxy's instructions per call; moving the scanner (it travels with the request it read)
/// moves a pointer. Every method is the state's ([`ScanState`]), reached through `Deref`.
#[derive(Debug)]
pub struct Scanner {
    state: ManuallyDrop<Box<ScanState>>,
}

/// What a [`Scanner`] knows of the message it is scanning.
#[derive(Debug)]
pub struct ScanState {
    limits: Limits,
    /// Static: capture lists come from the generated method table, so a scanner never copies them.
    captures: &'static [FieldPath],
    /// Chooses `captures` by the method the header names ([`Scanner::choosing`]).
    choose: Option<CaptureChoice>,
    found: Vec<Option<Scalar>>,
    /// Where in the message each captured string's bytes begin (after its length prefix).
    found_at: Vec<Option<u64>>,
    /// Some capture has been set in this message: until then a repeated struct has nothing to forget.
    any_found: bool,
    header: Option<MessageHeader>,
    stack: Vec<Frame>,
    path: Vec<i16>,
    step: Step,
    consumed: u64,
    /// Emptied byte buffers of earlier captures (guids, secrets): a capture takes one instead of
    /// allocating, and gives it back when the scanner is done (an allocation and a free per captured
    /// handle otherwise).
    bytes: Vec<Vec<u8>>,
}

/// Capture buffers kept per scanner: more than a request or reply captures strings.
const SPARE_BYTE_BUFFERS: usize = 8;
/// Capture buffers that grew past this (a long error text) are freed rather than kept.
const SPARE_BYTES_MAX_LEN: usize = 256;

/// Spare states per thread: more than the scanners one worker thread keeps alive at once in practice.
const SPARE_STATES_PER_THREAD: usize = 64;
/// A state whose vectors grew past this (a deeply nested message) is freed rather than kept.
const SPARE_MAX_LEN: usize = 64;

std::thread_local! {
    // Boxes, not states: a scanner takes its box whole, so handing one out moves a pointer.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<ScanState>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Empties `found`, keeping its captured byte buffers (emptied) in `spare`.
fn keep_capture_buffers(found: &mut Vec<Option<Scalar>>, spare: &mut Vec<Vec<u8>>) {
    for value in found.drain(..) {
        keep_capture_buffer(value, spare);
    }
}

/// Keeps a captured string's buffer (emptied) in `spare`, unless there are enough or it grew large.
fn keep_capture_buffer(value: Option<Scalar>, spare: &mut Vec<Vec<u8>>) {
    if let Some(Scalar::Bytes(mut buf)) = value {
        if spare.len() < SPARE_BYTE_BUFFERS && buf.capacity() <= SPARE_BYTES_MAX_LEN {
            buf.clear();
            spare.push(buf);
        }
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        // SAFETY: `state` is never used again: this is the scanner's last moment.
        let mut state = unsafe { ManuallyDrop::take(&mut self.state) };
        // Emptied now, not when it is next used: no captured handle or secret waits in the spare list.
        state.clear();
        let caps = [state.found.capacity(), state.found_at.capacity(), state.stack.capacity(), state.path.capacity()];
        if caps.iter().any(|&c| c > SPARE_MAX_LEN) {
            return;
        }
        let _ = SPARE.try_with(|s| {
            if let Ok(mut spare) = s.try_borrow_mut() {
                if spare.len() < SPARE_STATES_PER_THREAD {
                    spare.push(state);
                }
            }
        });
    }
}

impl std::ops::Deref for Scanner {
    type Target = ScanState;
    fn deref(&self) -> &ScanState {
        &self.state
    }
}

impl std::ops::DerefMut for Scanner {
    fn deref_mut(&mut self) -> &mut ScanState {
        &mut self.state
    }
}

impl Scanner {
    /// A scanner that records the scalar values found at `captures`.
    pub fn new(limits: Limits, captures: &'static [FieldPath]) -> Scanner {
        let spare = SPARE.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop())).ok().flatten();
        let mut state = spare.unwrap_or_else(|| {
            Box::new(ScanState {
                limits,
                captures: &[],
                choose: None,
                found: Vec::new(),
                found_at: Vec::new(),
                any_found: false,
                header: None,
                // HS2 messages nest a few levels: one allocation each covers them.
                stack: Vec::with_capacity(8),
                path: Vec::with_capacity(8),
                step: Step::Header,
                consumed: 0,
                bytes: Vec::new(),
            })
        });
        // A spare state was cleared when its scanner dropped.
        state.limits = limits;
        state.capture(captures);
        Scanner { state: ManuallyDrop::new(state) }
    }

    /// A scanner whose captures `choose` picks once the header has named the method: one pass finds
    /// both where a request ends and its handles (it used to take two, a tenth of a call's instructions).
    pub fn choosing(limits: Limits, choose: CaptureChoice) -> Scanner {
        let mut scanner = Scanner::new(limits, &[]);
        scanner.choose = Some(choose);
        scanner
    }
}

impl ScanState {
    /// Starts over for the next message with other captures, keeping the allocations.
    pub fn reset(&mut self, captures: &'static [FieldPath]) {
        self.clear();
        self.capture(captures);
    }

    /// Forgets the message: its captured values, header and place. What a state waits in the spare list as.
    fn clear(&mut self) {
        self.captures = &[];
        self.choose = None;
        keep_capture_buffers(&mut self.found, &mut self.bytes);
        self.found_at.clear();
        self.any_found = false;
        self.header = None;
        self.stack.clear();
        self.path.clear();
        self.step = Step::Header;
        self.consumed = 0;
    }

    /// Records the values at `captures` from here on, in a cleared state: one empty slot each.
    fn capture(&mut self, captures: &'static [FieldPath]) {
        self.captures = captures;
        self.found.resize(captures.len(), None);
        self.found_at.resize(captures.len(), None);
    }

    /// The header, once its bytes have been consumed.
    pub fn header(&self) -> Option<&MessageHeader> {
        self.header.as_ref()
    }

    /// True when the whole message has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.step, Step::Done)
    }

    /// Bytes consumed so far in this message.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Bytes the scanner is passing without looking at them: the rest of a string it does not capture
    /// (or of a run of fixed-width elements). A relay may move them without showing them to the scanner
    /// ([`Scanner::skip`]): `splice(2)` for the large values of a bulk reply.
    pub fn skippable(&self) -> u64 {
        match self.step {
            Step::Blob { left, capture: None } => left,
            _ => 0,
        }
    }

    /// Counts `n` bytes, at most [`Scanner::skippable`], as passed without being fed.
    pub fn skip(&mut self, n: u64) -> Result<(), ProtocolError> {
        let Step::Blob { left, capture: None } = self.step else {
            return Err(ProtocolError::Other("skipped bytes the scanner must see".into()));
        };
        let n = n.min(left);
        self.step = Step::Blob { left: left - n, capture: None };
        self.consumed += n;
        self.within_limit(0)?;
        if left == n {
            self.value_done();
        }
        Ok(())
    }

    /// The value captured for `captures[i]`, if the message had that field.
    pub fn found(&self, i: usize) -> Option<&Scalar> {
        self.found.get(i).and_then(|v| v.as_ref())
    }

    /// Where the bytes of the string captured for `captures[i]` begin, counted from the message's first
    /// byte: the place to rewrite them in the original bytes (same length, nothing else moves).
    pub fn found_offset(&self, i: usize) -> Option<u64> {
        self.found_at.get(i).copied().flatten()
    }

    /// Consumes as much of `input` as can be finished; returns how many bytes that was.
    ///
    /// Stops at the end of the message: bytes after it belong to the next one and are not consumed.
    /// `Ok(n)` with `!is_done()` means "give me the rest of the input after `n` plus more bytes".
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            let avail = &input[pos..];
            let used = match self.step {
                Step::Done => break,
                Step::Header => self.header_step(avail)?,
                Step::FieldHeader => self.field_header_step(avail)?,
                Step::Value(t) => self.value_step(t, avail)?,
                Step::Blob { left, capture } => self.blob_step(left, capture, avail),
            };
            match used {
                Some(n) => {
                    pos += n;
                    self.consumed += n as u64;
                    self.within_limit(0)?;
                }
                None => break,
            }
        }
        Ok(pos)
    }

    /// Every step returns `Some(bytes used)` or `None` when it needs more input than `avail`.
    fn header_step(&mut self, avail: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let Some((header, total)) = parse_header(avail)? else { return Ok(None) };
        if let Some(choose) = self.choose {
            // `captures` was empty until now: nothing was found yet.
            self.capture(choose(&header.name));
        }
        self.header = Some(header);
        self.step = Step::Value(TType::Struct);
        Ok(Some(total))
    }

    /// The fields of a struct. Scalars, strings and nested structs that are in `avail` whole are taken
    /// here in one loop, without a step each through [`ScanState::feed`] (a step cost about a hundred
    /// instructions, and a small RPC is a few dozen of them, twice per call). What is not here whole, and
    /// containers, go the step-by-step way, which gives the same result, captures and errors.
    fn field_header_step(&mut self, avail: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let mut pos = 0;
        loop {
            let rest = &avail[pos..];
            let Some(&type_byte) = rest.first() else { return Ok((pos > 0).then_some(pos)) };
            if type_byte == TType::Stop as u8 {
                self.stack.pop();
                self.value_done();
                pos += 1;
                self.within_limit(pos)?;
                if matches!(self.step, Step::FieldHeader) {
                    continue;
                }
                return Ok(Some(pos));
            }
            if rest.len() < 3 {
                return Ok((pos > 0).then_some(pos));
            }
            let t = TType::from_u8(type_byte).ok_or(ProtocolError::BadType(type_byte))?;
            let id = i16::from_be_bytes([rest[1], rest[2]]);
            let value = &rest[3..];
            if let Some(width) = t.fixed_width() {
                let width = width as usize;
                if value.len() >= width {
                    self.within_limit(pos + 3 + width)?;
                    if let Some(i) = self.capture_of_field(id) {
                        self.record_fixed(t, &value[..width], i);
                    }
                    pos += 3 + width;
                    continue;
                }
            } else if t == TType::String && value.len() >= 4 {
                let len = be_i32(&value[..4]);
                if len >= 0 && value.len() - 4 >= len as usize {
                    let len = len as usize;
                    self.within_limit(pos + 7 + len)?;
                    if let Some(i) = self.capture_of_field(id) {
                        let at = self.consumed + (pos + 7) as u64;
                        self.begin_string_capture(i, at);
                        self.extend_capture(Some(i), &value[4..4 + len]);
                    }
                    pos += 7 + len;
                    continue;
                }
            } else if t == TType::Struct {
                self.within_limit(pos + 3)?;
                self.path.push(id);
                if self.any_found {
                    self.forget_below();
                }
                self.push(Frame::Struct)?;
                pos += 3;
                continue;
            }
            // Step by step: the value is not here whole, or is a container.
            self.path.push(id);
            self.step = Step::Value(t);
            return Ok(Some(pos + 3));
        }
    }

    /// The message up to `pos` bytes past what is consumed (0: what is consumed) stays within its limit.
    fn within_limit(&self, pos: usize) -> Result<(), ProtocolError> {
        if self.consumed + pos as u64 > self.limits.max_message_bytes {
            return Err(ProtocolError::TooLarge(self.limits.max_message_bytes));
        }
        Ok(())
    }

    /// A struct field that appears again replaces the earlier one wholly, as a Thrift reader assigns it
    /// again: what was captured inside the earlier one is dropped, so that a handle is never pieced
    /// together from two occurrences (the guid of one, the secret of the other).
    fn forget_below(&mut self) {
        let path = self.path.as_slice();
        // Checking `found` first: a capture not yet set has nothing to forget.
        for ((found, at), capture) in self.found.iter_mut().zip(self.found_at.iter_mut()).zip(self.captures) {
            if found.is_some() && capture.len() > path.len() && capture.starts_with(path) {
                *found = None;
                *at = None;
            }
        }
    }

    fn value_step(&mut self, t: TType, avail: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if let Some(width) = t.fixed_width() {
            let width = width as usize;
            if avail.len() < width {
                return Ok(None);
            }
            if let Some(i) = self.capture_index() {
                self.record_fixed(t, &avail[..width], i);
            }
            self.value_done();
            return Ok(Some(width));
        }
        match t {
            TType::String => self.string_step(avail),
            TType::Struct => {
                self.push(Frame::Struct)?;
                self.step = Step::FieldHeader;
                Ok(Some(0))
            }
            TType::List | TType::Set => {
                if avail.len() < 5 {
                    return Ok(None);
                }
                let elem = TType::from_u8(avail[0]).ok_or(ProtocolError::BadType(avail[0]))?;
                let count = self.checked_count(be_i32(&avail[1..5]))?;
                self.start_container(Frame::List { elem, left: count }, count, elem.fixed_width())?;
                Ok(Some(5))
            }
            TType::Map => {
                if avail.len() < 6 {
                    return Ok(None);
                }
                let key = TType::from_u8(avail[0]).ok_or(ProtocolError::BadType(avail[0]))?;
                let val = TType::from_u8(avail[1]).ok_or(ProtocolError::BadType(avail[1]))?;
                let count = self.checked_count(be_i32(&avail[2..6]))?;
                let pair_width = key.fixed_width().zip(val.fixed_width()).map(|(k, v)| k + v);
                self.start_container(Frame::Map { key, val, left: count, at_key: true }, count, pair_width)?;
                Ok(Some(6))
            }
            TType::Stop => Err(ProtocolError::BadType(0)),
            _ => Err(ProtocolError::Other(format!("unhandled type {t:?}"))),
        }
    }

    /// A string value, and the strings after it while the enclosing container holds more (a column of
    /// a FetchResults reply, an OpenSession reply's configuration map): each one that is in `avail`
    /// whole is taken here, not in three steps (length, bytes, end) through [`ScanState::feed`]. A
    /// string cut by the end of `avail` goes the step-by-step way.
    fn string_step(&mut self, avail: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let mut pos = 0;
        loop {
            let rest = &avail[pos..];
            if rest.len() < 4 {
                return Ok((pos > 0).then_some(pos));
            }
            let len = self.checked_len(be_i32(&rest[..4]))? as usize;
            let capture = self.capture_index();
            if rest.len() - 4 < len {
                if pos > 0 {
                    return Ok(Some(pos));
                }
                if let Some(i) = capture {
                    // `consumed` is where this value's length prefix starts.
                    self.begin_string_capture(i, self.consumed + 4);
                }
                self.step = Step::Blob { left: len as u64, capture };
                return Ok(Some(4));
            }
            self.within_limit(pos + 4 + len)?;
            if let Some(i) = capture {
                self.begin_string_capture(i, self.consumed + (pos + 4) as u64);
                self.extend_capture(Some(i), &rest[4..4 + len]);
            }
            pos += 4 + len;
            self.value_done();
            if !matches!(self.step, Step::Value(TType::String)) {
                return Ok(Some(pos));
            }
        }
    }

    fn blob_step(&mut self, left: u64, capture: Option<usize>, avail: &[u8]) -> Option<usize> {
        if left == 0 {
            self.value_done();
            return Some(0);
        }
        if avail.is_empty() {
            return None;
        }
        let n = (left.min(avail.len() as u64)) as usize;
        self.extend_capture(capture, &avail[..n]);
        self.step = Step::Blob { left: left - n as u64, capture };
        Some(n)
    }

    /// Containers of fixed-width elements are skipped as one blob: no per-element work.
    fn start_container(&mut self, frame: Frame, count: u32, elem_width: Option<u64>) -> Result<(), ProtocolError> {
        if count == 0 {
            self.value_done();
            return Ok(());
        }
        if let Some(w) = elem_width {
            self.step = Step::Blob { left: w * count as u64, capture: None };
            return Ok(());
        }
        let first = match frame {
            Frame::List { elem, .. } => elem,
            Frame::Map { key, .. } => key,
            Frame::Struct => TType::Struct,
        };
        self.push(frame)?;
        self.path.push(ELEMENT);
        self.step = Step::Value(first);
        Ok(())
    }

    fn push(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(ProtocolError::TooDeep(self.limits.max_depth));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A value just ended: decide what comes next from the enclosing frame.
    fn value_done(&mut self) {
        loop {
            match self.stack.last_mut() {
                None => {
                    self.step = Step::Done;
                    return;
                }
                Some(Frame::Struct) => {
                    // The value was a field of this struct: leave the field.
                    self.path.pop();
                    self.step = Step::FieldHeader;
                    return;
                }
                Some(Frame::List { elem, left }) => {
                    *left -= 1;
                    if *left > 0 {
                        self.step = Step::Value(*elem);
                        return;
                    }
                }
                Some(Frame::Map { key, val, left, at_key }) => {
                    if *at_key {
                        *at_key = false;
                        self.step = Step::Value(*val);
                        return;
                    }
                    *left -= 1;
                    if *left > 0 {
                        *at_key = true;
                        self.step = Step::Value(*key);
                        return;
                    }
                }
            }
            // A container ended: it is itself a value of the frame below.
            self.stack.pop();
            self.path.pop();
        }
    }

    fn capture_index(&self) -> Option<usize> {
        self.captures.iter().position(|p| *p == self.path.as_slice())
    }

    /// [`ScanState::capture_index`] for field `id` of the current struct, before it is on the path.
    fn capture_of_field(&self, id: i16) -> Option<usize> {
        let path = self.path.as_slice();
        let depth = path.len();
        self.captures.iter().position(|p| p.len() == depth + 1 && p[depth] == id && p[..depth] == *path)
    }

    /// A captured string starts at message offset `at`: its bytes follow ([`ScanState::extend_capture`]).
    fn begin_string_capture(&mut self, i: usize, at: u64) {
        let buf = self.bytes.pop().unwrap_or_default();
        // The field may appear twice: the later one wins, the earlier one's buffer is kept.
        let earlier = self.found[i].replace(Scalar::Bytes(buf));
        keep_capture_buffer(earlier, &mut self.bytes);
        self.found_at[i] = Some(at);
        self.any_found = true;
    }

    /// More bytes of the string captured into `found[i]`, kept up to [`MAX_CAPTURE_BYTES`].
    fn extend_capture(&mut self, capture: Option<usize>, bytes: &[u8]) {
        if let Some(Some(Scalar::Bytes(buf))) = capture.map(|i| &mut self.found[i]) {
            let room = MAX_CAPTURE_BYTES.saturating_sub(buf.len()).min(bytes.len());
            buf.extend_from_slice(&bytes[..room]);
        }
    }

    fn record_fixed(&mut self, t: TType, bytes: &[u8], i: usize) {
        let value = match t {
            TType::Bool => Scalar::Bool(bytes[0] != 0),
            TType::Byte => Scalar::Int(bytes[0] as i8 as i64),
            TType::I16 => Scalar::Int(i16::from_be_bytes([bytes[0], bytes[1]]) as i64),
            TType::I32 => Scalar::Int(be_i32(bytes) as i64),
            TType::I64 => Scalar::Int(be_i64(bytes)),
            _ => Scalar::Double(f64::from_bits(be_i64(bytes) as u64)),
        };
        self.found[i] = Some(value);
        self.any_found = true;
    }

    fn checked_len(&self, len: i32) -> Result<u32, ProtocolError> {
        if len < 0 {
            return Err(ProtocolError::NegativeLength(len));
        }
        if len as u64 > self.limits.max_message_bytes {
            return Err(ProtocolError::TooLarge(self.limits.max_message_bytes));
        }
        Ok(len as u32)
    }

    fn checked_count(&self, count: i32) -> Result<u32, ProtocolError> {
        if count < 0 {
            return Err(ProtocolError::NegativeLength(count));
        }
        if count as u32 > self.limits.max_container_len {
            return Err(ProtocolError::ContainerTooLong(count as i64, self.limits.max_container_len));
        }
        Ok(count as u32)
    }
}

/// Reads a strict message header from the front of `avail`; `Ok(None)` until it is all there.
/// Returns the header and its length in bytes.
pub fn parse_header(avail: &[u8]) -> Result<Option<(MessageHeader, usize)>, ProtocolError> {
    if avail.len() < 8 {
        return Ok(None);
    }
    if avail[0] != 0x80 || avail[1] != 0x01 {
        return Err(ProtocolError::BadVersion(avail[0], avail[1]));
    }
    let kind = MessageKind::from_u8(avail[3]).ok_or(ProtocolError::BadMessageKind(avail[3]))?;
    let name_len = be_i32(&avail[4..8]);
    if name_len < 0 || name_len as usize > MAX_METHOD_NAME_BYTES {
        return Err(ProtocolError::NameTooLong(name_len as i64));
    }
    let total = 8 + name_len as usize + 4;
    if avail.len() < total {
        return Ok(None);
    }
    let name = MethodName::from_utf8(&avail[8..8 + name_len as usize]).ok_or(ProtocolError::NameNotUtf8)?;
    let seqid = be_i32(&avail[total - 4..total]);
    Ok(Some((MessageHeader { name, kind, seqid }, total)))
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

#[cfg(test)]
#[path = "scanner_tests.rs"]
mod tests;
