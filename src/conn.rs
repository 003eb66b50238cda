//! One Thrift connection over a byte stream: the only code that reads and writes Thrift sockets.
//!
//! A [`ThriftConn`] turns socket bytes into payload (stripping frame headers when the transport is
//! framed), reads whole request messages, writes messages with the connection's framing, and relays a
//! reply from a backend connection into a [`ReplySink`] as it arrives: bytes are forwarded as soon as the
//! scanner has walked them, so memory does not grow with reply size. Every wait on a peer here has a
//! deadline that says whose fault it is when it passes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::splice::{SpliceEnd, SpliceSource, SpliceTarget};
use crate::thrift::framing::{frame_header, Deframer, Framing, FramingError, SaslMessage};
use crate::thrift::scanner::{CaptureChoice, Scanner};
use crate::thrift::{Limits, ProtocolError};

/// Any byte stream a Thrift connection can run over: TCP, TLS, an HTTP body, a test's in-memory pipe.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    /// The plain TCP socket this stream is, if it is one: a relay between two of them may move bytes in
    /// the kernel ([`crate::splice`]).
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Io for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}
impl Io for Box<dyn Io> {
    fn tcp(&self) -> Option<&TcpStream> {
        (**self).tcp()
    }
}
impl<S: Io> Io for tokio_rustls::client::TlsStream<S> {}
impl<S: Io> Io for tokio_rustls::server::TlsStream<S> {}
impl Io for tokio::io::DuplexStream {}

/// Bytes asked of the socket per read: large enough for throughput, small enough that a relayed reply
/// never holds much.
pub const READ_CHUNK: usize = 64 * 1024;

/// Messages up to this size are written with their frame header in one write.
const COALESCE_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("bad thrift message: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("bad framing: {0}")]
    Framing(#[from] FramingError),
    #[error("connection closed in the middle of a message")]
    Eof,
    #[error("unexpected bytes after a complete reply")]
    TrailingBytes,
    /// A message whose header was read but whose body is refused (too large, malformed, over the
    /// buffered-bytes budget): the peer can still be told why, with that header's name and seqid.
    #[error("refused {name} message: {reason}")]
    BadMessage { name: String, seqid: i32, reason: String },
    /// Nothing arrived for this long while a message was expected to continue.
    #[error("no bytes for {0:?} in the middle of a message")]
    Stalled(Duration),
    /// No message began within the idle timeout.
    #[error("no request for {0:?}")]
    Idle(Duration),
    /// A request began but was not whole within `timeouts.request_total` (its bytes trickled in).
    #[error("a request not whole within {0:?} (timeouts.request_total)")]
    TooSlow(Duration),
}

/// Where a reply goes: the client's binary connection, or an HTTP response body. Both bound how long
/// the client may accept nothing (`stall`), so that a client that stops reading is found out and
/// blamed, never the backend.
pub trait ReplySink: Send {
    /// Writes the next part of a reply.
    fn write_part(&mut self, bytes: &[u8], stall: Duration) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Ends a reply: everything written reaches the client.
    fn end_reply(&mut self, stall: Duration) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// The client's plain TCP socket, when reply bytes may be spliced into it: nothing of the reply is
    /// buffered in user space on the way, and its framing, if any, is simple length prefixes.
    fn splice_target(&mut self) -> Option<crate::splice::SpliceTarget<'_>> {
        None
    }
}

/// The client side of a relay failed; the backend side is unaffected.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the client accepted no reply bytes for {0:?}")]
    Stalled(Duration),
    #[error("the client went away: {0}")]
    Gone(io::Error),
}

impl SinkError {
    /// The metric label of this failure.
    pub fn label(&self) -> &'static str {
        match self {
            SinkError::Stalled(_) => "client_stalled",
            SinkError::Gone(_) => "client_gone",
        }
    }
}

/// How long each side of a relay may go without progress.
#[derive(Clone, Copy, Debug)]
pub struct RelayDeadlines {
    /// The backend sends no reply byte for this long: the call fails (`timeouts.backend_reply`).
    pub backend_inactivity: Duration,
    /// The client accepts no reply byte for this long: the client is dropped (`timeouts.client_write`).
    pub client_stall: Duration,
}

/// A relay whose backend side completed: the whole reply was read, and the upstream connection is in
/// step. The reply's last piece is held back ([`Relayed::finish`] writes it), so that the caller can
/// update its tables from the reply before the client can see the reply's end and act on it (a Hue-like
/// client that uses a new handle at once, from another connection).
#[derive(Debug)]
pub struct Relayed {
    /// Reply bytes that reached the client.
    pub forwarded: u64,
    /// Set when the client failed midway (the rest of the reply was read and dropped).
    pub client: Option<SinkError>,
    /// The reply's last piece, not written yet.
    tail: Bytes,
}

impl Relayed {
    /// Writes the held-back end of the reply and ends it; afterwards `client` says whether the client
    /// got the whole reply.
    pub async fn finish<S: ReplySink>(&mut self, sink: &mut S, stall: Duration) -> &Option<SinkError> {
        if self.client.is_none() {
            let tail = std::mem::take(&mut self.tail);
            self.client = match sink.write_part(&tail, stall).await {
                Ok(()) => {
                    self.forwarded += tail.len() as u64;
                    sink.end_reply(stall).await.err()
                }
                Err(e) => Some(e),
            };
        }
        &self.client
    }
}

/// A relay that failed on the backend side. A reply that broke after bytes reached the client cannot be
/// replaced by an error reply.
#[derive(Debug, thiserror::Error)]
#[error("backend: {error} (after {forwarded} bytes reached the client)")]
pub struct RelayError {
    pub error: ConnError,
    pub forwarded: u64,
}

/// How a request is read from a client: idle wait, then progress deadlines, and the shared budget.
pub struct RequestRead<'a> {
    pub limits: Limits,
    /// Between requests: a client that starts none within this is closed (`timeouts.client_idle`).
    pub idle: Duration,
    /// Within a request: no more bytes for this long closes the connection (`timeouts.request_read`).
    pub stall: Duration,
    /// A begun request must be whole within this (`timeouts.request_total`).
    pub whole: Duration,
    pub budget: &'a RequestBudget,
    /// What to capture of a request while reading it, by its method (`hs2::call::request_captures`).
    pub captures: CaptureChoice,
}

pub struct ThriftConn {
    io: Box<dyn Io>,
    deframer: Deframer,
    /// Socket bytes not yet deframed (framed transports only).
    raw: BytesMut,
    /// Payload bytes not yet consumed as a message.
    payload: BytesMut,
    /// Largest frame written; longer messages are split (real servers do this: Impala uses 128 KiB).
    max_write_frame: usize,
    /// Budget held for the request being read (client connections only).
    reserved: Reserved,
    /// The last bytes taken from the socket were spliced: the next read is a small one.
    after_splice: bool,
    /// The timer of every read wait on this connection ([`within_lazily`]).
    read_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Bytes read right after a splice: enough for a few Thrift headers, not for much of a large string.
const AFTER_SPLICE_READ: usize = 512;

impl ThriftConn {
    pub fn new(io: Box<dyn Io>, framing: Framing, max_frame: u64) -> ThriftConn {
        ThriftConn {
            io,
            deframer: Deframer::new(framing, max_frame),
            // Only framed transports and sniffed first bytes use it: allocated when first needed.
            raw: BytesMut::new(),
            payload: BytesMut::with_capacity(READ_CHUNK),
            // A frame length is a u32 on the wire.
            max_write_frame: u32::MAX as usize,
            reserved: Reserved::default(),
            after_splice: false,
            read_timer: None,
        }
    }

    /// Starts with bytes already read from the socket (by transport sniffing).
    pub fn with_initial_bytes(mut self, bytes: &[u8]) -> ThriftConn {
        self.raw.extend_from_slice(bytes);
        self
    }

    pub fn set_framing(&mut self, framing: Framing, max_frame: u64) {
        self.deframer = Deframer::new(framing, max_frame);
    }

    pub fn framing(&self) -> Framing {
        self.deframer.framing()
    }

    pub fn set_max_write_frame(&mut self, bytes: usize) {
        self.max_write_frame = bytes.max(1);
    }

    /// Reads more payload; `Ok(false)` at end of stream.
    async fn fill(&mut self) -> Result<bool, ConnError> {
        let unframed = self.deframer.framing() == Framing::Unframed;
        if unframed && !self.raw.is_empty() {
            self.payload.extend_from_slice(&self.raw);
            self.raw.clear();
            return Ok(true);
        }
        loop {
            if !unframed && self.move_frames_to_payload()? {
                return Ok(true);
            }
            // Unframed: socket bytes are payload; read straight into it, no copy.
            let buf = if unframed { &mut self.payload } else { &mut self.raw };
            let read = if std::mem::take(&mut self.after_splice) {
                // Just past a spliced string: the next bytes are likely the next string's length, and
                // that string's bytes are better spliced than read here.
                buf.reserve(AFTER_SPLICE_READ);
                (&mut self.io).take(AFTER_SPLICE_READ as u64).read_buf(buf).await?
            } else {
                buf.reserve(READ_CHUNK);
                self.io.read_buf(buf).await?
            };
            if unframed || read == 0 {
                return Ok(read > 0);
            }
        }
    }

    /// [`ThriftConn::fill`] that gives up after `limit` without bytes.
    async fn fill_within(&mut self, limit: Duration, on_timeout: ConnError) -> Result<bool, ConnError> {
        // The timer is lent to the wait: `fill` borrows the whole connection.
        let mut timer = self.read_timer.take();
        let filled = within_lazily(&mut timer, limit, self.fill()).await;
        self.read_timer = timer;
        match filled {
            Ok(r) => r,
            Err(_) => Err(on_timeout),
        }
    }

    /// Moves deframed payload from `raw` to `payload`; true if any payload moved.
    fn move_frames_to_payload(&mut self) -> Result<bool, ConnError> {
        let mut moved = false;
        loop {
            let (header, len) = self.deframer.next_chunk(&self.raw)?;
            if header + len == 0 {
                return Ok(moved);
            }
            self.payload.extend_from_slice(&self.raw[header..header + len]);
            let _ = self.raw.split_to(header + len);
            moved |= len > 0;
        }
    }

    /// Reads one whole message; `Ok(None)` when the peer closed cleanly between messages. No deadlines:
    /// for the proxy's own connections (probes, the mock, the test client), whose callers bound the call.
    pub async fn read_message(&mut self, limits: Limits) -> Result<Option<Bytes>, ConnError> {
        let mut scanner = Scanner::new(limits, &[]);
        let mut scanned = 0;
        loop {
            if let Some(message) = self.scan_buffered(&mut scanner, &mut scanned)? {
                return Ok(Some(message));
            }
            if !self.fill().await? {
                return self.end_of_stream();
            }
        }
    }

    /// Reads one whole client request with the deadlines and the shared budget of `how`, with the
    /// scanner that read it (its captures: `how.captures`). The budget taken stays held until
    /// [`ThriftConn::release_budget`] (after the call is served).
    pub async fn read_request(&mut self, how: &RequestRead<'_>) -> Result<Option<(Bytes, Scanner)>, ConnError> {
        let mut scanner = Scanner::choosing(how.limits, how.captures);
        let mut scanned = 0;
        let mut begun: Option<Instant> = None;
        loop {
            if let Some(message) = self.scan_buffered(&mut scanner, &mut scanned)? {
                return Ok(Some((message, scanner)));
            }
            let started = self.has_buffered_bytes();
            let filled = if started {
                let left = how.whole.saturating_sub(begun.get_or_insert_with(Instant::now).elapsed());
                if left.is_zero() {
                    return Err(ConnError::TooSlow(how.whole));
                }
                match tokio::time::timeout(left, self.fill_within(how.stall, ConnError::Stalled(how.stall))).await {
                    Ok(filled) => filled?,
                    Err(_) => return Err(ConnError::TooSlow(how.whole)),
                }
            } else {
                self.fill_within(how.idle, ConnError::Idle(how.idle)).await?
            };
            if !filled {
                return self.end_of_stream();
            }
            let buffered = (self.payload.len() + self.raw.len()) as u64;
            if !how.budget.grow(&mut self.reserved, buffered) {
                let (name, seqid) = scanner.header().map_or((String::new(), 0), |h| (h.name.to_string(), h.seqid));
                let reason = format!(
                    "the proxy is holding its limit of {} bytes of unfinished requests \
                     (limits.max_buffered_request_bytes); try again",
                    how.budget.limit()
                );
                return Err(ConnError::BadMessage { name, seqid, reason });
            }
        }
    }

    /// Gives back the budget the last request took.
    pub fn release_budget(&mut self) {
        self.reserved = Reserved::default();
    }

    /// Feeds buffered payload to `scanner`; a whole message when it ends.
    fn scan_buffered(&mut self, scanner: &mut Scanner, scanned: &mut usize) -> Result<Option<Bytes>, ConnError> {
        if self.payload.len() > *scanned {
            *scanned += scanner.feed(&self.payload[*scanned..]).map_err(|error| match scanner.header() {
                Some(h) => {
                    ConnError::BadMessage { name: h.name.to_string(), seqid: h.seqid, reason: error.to_string() }
                }
                None => ConnError::Protocol(error),
            })?;
            if scanner.is_done() {
                return Ok(Some(self.payload.split_to(*scanned).freeze()));
            }
        }
        Ok(None)
    }

    fn end_of_stream<T>(&self) -> Result<Option<T>, ConnError> {
        if self.has_buffered_bytes() {
            Err(ConnError::Eof)
        } else {
            Ok(None)
        }
    }

    /// True when bytes beyond the last message are waiting (a pipelining client, or a confused backend).
    pub fn has_buffered_bytes(&self) -> bool {
        !self.payload.is_empty() || !self.raw.is_empty()
    }

    /// Writes one message with this connection's framing.
    pub async fn write_message(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.write_chunk(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Writes part of a message: framed transports get it as frame(s) of its own.
    async fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.write_chunk_within(bytes, None).await.map_err(|e| match e {
            SinkError::Gone(e) => ConnError::Io(e),
            SinkError::Stalled(d) => ConnError::Stalled(d),
        })
    }

    /// Writes part of a message; with `stall`, fails when the peer accepts nothing for that long.
    async fn write_chunk_within(&mut self, bytes: &[u8], stall: Option<Duration>) -> Result<(), SinkError> {
        if self.deframer.framing() == Framing::Unframed {
            return write_all_within(&mut self.io, bytes, stall).await;
        }
        for part in bytes.chunks(self.max_write_frame) {
            if part.len() <= COALESCE_BYTES {
                let mut buf = Vec::with_capacity(4 + part.len());
                buf.extend_from_slice(&frame_header(part.len()));
                buf.extend_from_slice(part);
                write_all_within(&mut self.io, &buf, stall).await?;
            } else {
                write_all_within(&mut self.io, &frame_header(part.len()), stall).await?;
                write_all_within(&mut self.io, part, stall).await?;
            }
        }
        Ok(())
    }

    /// Writes raw bytes (SASL negotiation), bypassing framing.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Reads one SASL negotiation message from the raw stream.
    pub async fn read_sasl_message(&mut self, max_payload: u64) -> Result<SaslMessage, ConnError> {
        loop {
            if let Some((msg, used)) = SaslMessage::decode(&self.raw, max_payload)? {
                let _ = self.raw.split_to(used);
                return Ok(msg);
            }
            self.raw.reserve(1024);
            if self.io.read_buf(&mut self.raw).await? == 0 {
                return Err(ConnError::Eof);
            }
        }
    }

    /// Relays one reply from this (backend) connection to `sink` as its bytes arrive.
    ///
    /// `scanner` finds the end of the reply and captures what routing needs; the bytes are forwarded
    /// unchanged, re-framed by the sink for the client's transport.
    ///
    /// The deadlines are per side and per progress: the backend may not go quiet for
    /// `backend_inactivity`, the client may not refuse bytes for `client_stall`; a long reply that keeps
    /// moving is never cut. When the client fails (stalls, or goes away) the rest of the reply is still
    /// read and dropped, so that this connection stays in step and reusable: on Hive/Spark, closing the
    /// upstream connection that opened a session closes the session. `Err` only for a backend failure.
    /// The reply's last piece is left to [`Relayed::finish`].
    pub async fn relay_reply<S: ReplySink>(
        &mut self,
        sink: &mut S,
        scanner: &mut Scanner,
        deadlines: RelayDeadlines,
    ) -> Result<Relayed, RelayError> {
        let mut forwarded = 0u64;
        let mut client: Option<SinkError> = None;
        let backend = |error: ConnError, forwarded| RelayError { error, forwarded };
        loop {
            if !self.payload.is_empty() {
                let n = scanner.feed(&self.payload).map_err(|e| backend(e.into(), forwarded))?;
                let chunk = self.payload.split_to(n).freeze();
                if scanner.is_done() {
                    if self.has_buffered_bytes() {
                        return Err(backend(ConnError::TrailingBytes, forwarded));
                    }
                    return Ok(Relayed { forwarded, client, tail: chunk });
                }
                if n > 0 && client.is_none() {
                    match sink.write_part(&chunk, deadlines.client_stall).await {
                        Ok(()) => forwarded += n as u64,
                        Err(e) => client = Some(e),
                    }
                }
            }
            if client.is_none() && self.payload.is_empty() && self.raw.is_empty() {
                let want = scanner.skippable();
                if want >= crate::splice::MIN_SPLICE_BYTES {
                    if let Some(spliced) = self.splice_into(sink, want, deadlines).await {
                        let (taken, end) = spliced;
                        scanner.skip(taken).map_err(|e| backend(e.into(), forwarded))?;
                        match end {
                            Ok(()) => forwarded += taken,
                            Err(SpliceEnd::Backend(e)) => return Err(backend(e, forwarded)),
                            Err(SpliceEnd::Client(e)) => client = Some(e),
                        }
                        continue;
                    }
                }
            }
            let limit = deadlines.backend_inactivity;
            match self.fill_within(limit, ConnError::Stalled(limit)).await {
                Ok(true) => {}
                Ok(false) => return Err(backend(ConnError::Eof, forwarded)),
                Err(e) => return Err(backend(e, forwarded)),
            }
        }
    }

    /// Splices up to `want` bytes of the reply from this (backend) connection's socket into the sink's,
    /// when both are plain TCP; `None` when they are not (the caller copies). Called with nothing
    /// buffered on this side.
    async fn splice_into<S: ReplySink>(
        &mut self,
        sink: &mut S,
        want: u64,
        deadlines: RelayDeadlines,
    ) -> Option<(u64, Result<(), SpliceEnd>)> {
        if !crate::splice::available() {
            return None;
        }
        let frame_left = match self.deframer.framing() {
            Framing::Unframed => None,
            // At a frame header: it is read the ordinary way first.
            _ if self.deframer.left_in_frame() == 0 => return None,
            _ => Some(self.deframer.left_in_frame()),
        };
        let from = SpliceSource { tcp: self.io.tcp()?, frame_left };
        let to = sink.splice_target()?;
        let (taken, end) =
            crate::splice::relay(from, to, want, deadlines.backend_inactivity, deadlines.client_stall).await?;
        self.deframer.took_from_frame(taken);
        self.after_splice = true;
        Some((taken, end))
    }

    /// Checks, without waiting, whether an idle connection is still usable: the peer has not closed it
    /// and has sent nothing unasked. Called before a pooled connection carries a request, so that a dead
    /// one is replaced while nothing has been written yet.
    pub fn is_idle_and_open(&mut self) -> bool {
        if self.has_buffered_bytes() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Ready means EOF, an error, or unsolicited bytes: none is safe to reuse. Except that over HTTP
        // (`http::upstream`) a zero-byte read may be the end of the previous reply's body: ask twice; a
        // stream that really ended says so again.
        for _ in 0..2 {
            let mut buf = ReadBuf::new(&mut probe);
            match Pin::new(&mut self.io).poll_read(&mut cx, &mut buf) {
                Poll::Pending => return true,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => continue,
                Poll::Ready(_) => return false,
            }
        }
        false
    }

    /// Shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }

    /// Closes after a refusal the client may still be sending into: the write side is shut down, then
    /// what the client sends is read and dropped until it closes, for at most [`REFUSAL_LINGER`] and
    /// [`REFUSAL_DRAIN_BYTES`]. Closing with unread bytes would make the kernel answer with a reset,
    /// and a reset can discard the refusal before the client has read it.
    pub async fn close_after_refusal(&mut self) {
        let _ = self.io.flush().await;
        let _ = self.io.shutdown().await;
        // On the heap: an array here would be part of every client connection's future (16 KiB of
        // each idle connection's memory, measured with -Zprint-type-sizes), for a path rarely taken.
        let mut sink = vec![0u8; 16 * 1024];
        let mut drained = 0;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while drained < REFUSAL_DRAIN_BYTES {
                match self.io.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => drained += n,
                }
            }
        })
        .await;
    }
}

/// How long a refused client is given to stop sending before its connection closes.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How much of a refused client's input is read and dropped at most.
pub const REFUSAL_DRAIN_BYTES: usize = 64 << 20;

/// A client's binary connection is a reply sink: parts go out with the connection's framing.
impl ReplySink for ThriftConn {
    async fn write_part(&mut self, bytes: &[u8], stall: Duration) -> Result<(), SinkError> {
        self.write_chunk_within(bytes, Some(stall)).await
    }

    async fn end_reply(&mut self, stall: Duration) -> Result<(), SinkError> {
        match within(stall, self.io.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::Gone(e)),
            Err(_) => Err(SinkError::Stalled(stall)),
        }
    }

    fn splice_target(&mut self) -> Option<SpliceTarget<'_>> {
        let framed = match self.deframer.framing() {
            Framing::Unframed => None,
            _ => Some(self.max_write_frame),
        };
        self.io.tcp().map(|tcp| SpliceTarget { tcp, framed })
    }
}

/// A deadline that ran out ([`within`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// `fut` with a deadline `limit` from now, like `tokio::time::timeout`, but the timer is made only if
/// `fut` is not ready at its first poll. Most writes and many reads are: a timer costs a clock read and
/// a timer-wheel entry, a few hundred instructions on every proxied call (callgrind). `fut` is never
/// polled twice in a row: after its first Pending, the same task is woken by whichever comes first.
/// (Not [`within_lazily`] with a timer of its own: that future's extra layer cost about a hundred
/// instructions per call on the write path, callgrind.)
pub async fn within<F: Future>(limit: Duration, fut: F) -> Result<F::Output, TimedOut> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(v) = first {
        return Ok(v);
    }
    let mut sleep = std::pin::pin!(tokio::time::sleep(limit));
    let mut just_polled = true;
    std::future::poll_fn(|cx| {
        if !std::mem::take(&mut just_polled) {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// [`within`] with a timer that outlives the wait: a connection keeps one for all its reads. Most
/// reads wait (for the client's next request, for the backend's reply), and a new timer for each was a
/// timer-wheel insertion and removal per wait, twice per proxied call. The kept timer is moved only
/// when the wait's deadline is earlier than the timer's; one that fires before the current wait's
/// deadline (armed by an earlier wait) is moved on and the wait goes on. So a timer fires about once
/// per `limit` per connection, whatever the call rate.
pub async fn within_lazily<F: Future>(
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
    fut: F,
) -> Result<F::Output, TimedOut> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(v) = first {
        return Ok(v);
    }
    let deadline = tokio::time::Instant::now() + limit;
    let sleep = match timer {
        Some(sleep) => {
            if sleep.deadline() > deadline {
                sleep.as_mut().reset(deadline);
            }
            sleep
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    let mut just_polled = true;
    std::future::poll_fn(|cx| {
        if !std::mem::take(&mut just_polled) {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
        }
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if tokio::time::Instant::now() >= deadline => return Poll::Ready(Err(TimedOut)),
                // Armed for an earlier wait: moved to this one's deadline, and polled to register it.
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    })
    .await
}

/// Writes all of `buf`; with `stall`, each write must make progress within it (a slow reader that keeps
/// reading is never cut off, whatever the size).
async fn write_all_within(io: &mut Box<dyn Io>, mut buf: &[u8], stall: Option<Duration>) -> Result<(), SinkError> {
    while !buf.is_empty() {
        let written = match stall {
            None => io.write(buf).await,
            Some(limit) => match within(limit, io.write(buf)).await {
                Ok(r) => r,
                Err(_) => return Err(SinkError::Stalled(limit)),
            },
        };
        match written {
            Ok(0) => return Err(SinkError::Gone(io::ErrorKind::WriteZero.into())),
            Ok(n) => buf = &buf[n..],
            Err(e) => return Err(SinkError::Gone(e)),
        }
    }
    Ok(())
}

/// The buffered-request budget shared by every client connection (`limits.max_buffered_request_bytes`).
/// Each connection reads its first [`READ_CHUNK`] bytes of a request for free (it holds that buffer
/// anyway); only requests larger than that take from the budget, so ordinary calls never touch it.
#[derive(Debug)]
pub struct RequestBudget {
    semaphore: Arc<Semaphore>,
    limit: u64,
}

/// Budget one connection holds for the request it is reading.
#[derive(Debug, Default)]
pub struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl RequestBudget {
    pub fn new(limit: u64) -> RequestBudget {
        let permits = usize::try_from(limit).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        RequestBudget { semaphore: Arc::new(Semaphore::new(permits)), limit }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by requests being read now.
    pub fn in_use(&self) -> u64 {
        let free = self.semaphore.available_permits() as u64;
        self.limit.saturating_sub(free)
    }

    /// Makes `held` cover a request of `buffered` bytes; false when the budget cannot.
    pub fn grow(&self, held: &mut Reserved, buffered: u64) -> bool {
        let wanted = buffered.saturating_sub(READ_CHUNK as u64);
        if wanted <= held.bytes {
            return true;
        }
        let Ok(more) = u32::try_from(wanted - held.bytes) else { return false };
        match self.semaphore.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                match held.permit.as_mut() {
                    Some(p) => p.merge(permit),
                    None => held.permit = Some(permit),
                }
                held.bytes = wanted;
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thrift::value::{encode_message, Struct, Value};
    use crate::thrift::{MessageHeader, MessageKind};

    const DEADLINES: RelayDeadlines =
        RelayDeadlines { backend_inactivity: Duration::from_secs(5), client_stall: Duration::from_millis(200) };

    fn big_reply(bytes: usize) -> Vec<u8> {
        let body = Struct::new().with(0, Value::Bytes(vec![7u8; bytes]));
        encode_message(&MessageHeader::new("FetchResults", MessageKind::Reply, 1), &body)
    }

    /// Every client connection's task holds the futures of the paths it may take: a large buffer kept
    /// inside one of them (close_after_refusal's drain buffer was a 16 KiB array) costs every idle
    /// connection that much memory.
    #[tokio::test]
    async fn connection_futures_hold_no_large_buffers() {
        let (io, _peer) = tokio::io::duplex(1024);
        let mut conn = ThriftConn::new(Box::new(io), Framing::Unframed, 1 << 20);
        let refusal = std::mem::size_of_val(&conn.close_after_refusal());
        assert!(refusal < 1024, "close_after_refusal's future is {refusal} bytes");
        let limits = Limits::REPLY;
        let fill = std::mem::size_of_val(&conn.read_message(limits));
        assert!(fill < 2048, "read_message's future is {fill} bytes");
    }

    /// Two connected loopback TCP sockets.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// A reply with several large strings, as a bulk FetchResults has: relayed between two TCP sockets,
    /// they are spliced (the counter moves by nearly their size), and the client gets every byte in
    /// order, over each combination of framings.
    #[tokio::test]
    async fn large_strings_are_spliced_between_tcp_sockets_unchanged() {
        let values: Vec<Value> = (0..4u8).map(|i| Value::Bytes(vec![i; 300 * 1024 + i as usize])).collect();
        let body = Struct::new().with(0, Value::List(crate::thrift::TType::String, values));
        let reply = encode_message(&MessageHeader::new("FetchResults", MessageKind::Reply, 1), &body);
        for (up_framing, client_framing) in [
            (Framing::Unframed, Framing::Unframed),
            (Framing::Unframed, Framing::Framed),
            (Framing::Framed, Framing::Unframed),
            (Framing::Framed, Framing::Framed),
        ] {
            let (up_io, mut server) = tcp_pair().await;
            let (client_io, mut client_end) = tcp_pair().await;
            // Impala frames its replies at 128 KiB: a splice must stop at each frame's end.
            let wire = match up_framing {
                Framing::Unframed => reply.clone(),
                _ => reply.chunks(128 * 1024).flat_map(|c| [&frame_header(c.len())[..], c].concat()).collect(),
            };
            let writer = tokio::spawn(async move { server.write_all(&wire).await.map(|_| server) });
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                client_end.read_to_end(&mut got).await.map(|_| got)
            });
            let mut up = ThriftConn::new(Box::new(up_io), up_framing, 1 << 20);
            let mut client = ThriftConn::new(Box::new(client_io), client_framing, 1 << 20);
            client.set_max_write_frame(100 * 1024);
            let before = crate::splice::spliced_bytes();
            let mut scanner = Scanner::new(Limits::REPLY, &[]);
            let mut relayed = up.relay_reply(&mut client, &mut scanner, DEADLINES).await.expect("relayed");
            relayed.finish(&mut client, DEADLINES.client_stall).await;
            assert!(relayed.client.is_none(), "{up_framing:?} -> {client_framing:?}: {:?}", relayed.client);
            assert_eq!(relayed.forwarded, reply.len() as u64);
            assert_eq!(scanner.consumed(), reply.len() as u64);
            let spliced = crate::splice::spliced_bytes() - before;
            assert!(spliced > 900 * 1024, "{up_framing:?} -> {client_framing:?}: only {spliced} bytes spliced");
            drop(client);
            let got = reader.await.expect("join").expect("read");
            let got = match client_framing {
                Framing::Unframed => got,
                _ => deframe_all(&got),
            };
            assert!(got == reply, "{up_framing:?} -> {client_framing:?}: the client got other bytes");
            let _ = writer.await.expect("join").expect("written");
        }
    }

    fn deframe_all(mut framed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while framed.len() >= 4 {
            let len = u32::from_be_bytes([framed[0], framed[1], framed[2], framed[3]]) as usize;
            assert!(len <= 100 * 1024, "a frame of {len} bytes, over the sink's largest");
            out.extend_from_slice(&framed[4..4 + len]);
            framed = &framed[4 + len..];
        }
        assert!(framed.is_empty(), "a partial frame at the end");
        out
    }

    /// A client that closes in the middle of a spliced string: the relay reads the rest of the reply
    /// (the backend connection stays in step and carries the next reply), and says the client failed.
    #[tokio::test]
    async fn a_client_gone_mid_splice_leaves_the_backend_connection_in_step() {
        let reply = big_reply(8 << 20);
        let (up_io, mut server) = tcp_pair().await;
        let (client_io, client_end) = tcp_pair().await;
        let sent = reply.clone();
        let (next_tx, next_rx) = tokio::sync::oneshot::channel::<()>();
        // The backend sends the second reply only when asked (after the first was relayed), as a
        // server answers only the request it was sent.
        let writer = tokio::spawn(async move {
            server.write_all(&sent).await?;
            let _ = next_rx.await;
            server.write_all(&sent).await.map(|_| server)
        });
        // The client reads nothing and goes away: its socket is reset, so splicing into it fails.
        let _ = client_end.set_zero_linger();
        drop(client_end);
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let relayed = up.relay_reply(&mut client, &mut scanner, DEADLINES).await.expect("backend side completed");
        assert!(relayed.client.is_some(), "the client's failure is reported");
        assert!(scanner.is_done() && !up.has_buffered_bytes());
        let _ = next_tx.send(());
        let (other_io, mut other_end) = tcp_pair().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            other_end.read_to_end(&mut got).await.map(|_| got)
        });
        let mut other = ThriftConn::new(Box::new(other_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let mut relayed = up.relay_reply(&mut other, &mut scanner, DEADLINES).await.expect("the next reply");
        relayed.finish(&mut other, DEADLINES.client_stall).await;
        assert!(relayed.client.is_none());
        drop(other);
        assert!(reader.await.expect("join").expect("read") == reply, "the next reply arrives whole");
        let _ = writer.await.expect("join").expect("written");
    }

    /// A backend that closes in the middle of a spliced string fails the relay as the backend's fault.
    #[tokio::test]
    async fn a_backend_gone_mid_splice_fails_the_relay() {
        let reply = big_reply(4 << 20);
        let (up_io, mut server) = tcp_pair().await;
        let (client_io, mut client_end) = tcp_pair().await;
        let half = reply[..2 << 20].to_vec();
        let writer = tokio::spawn(async move { server.write_all(&half).await });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client_end.read_to_end(&mut got).await.map(|_| got.len())
        });
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        writer.await.expect("join").expect("written");
        let err = up.relay_reply(&mut client, &mut scanner, DEADLINES).await.expect_err("the backend broke");
        assert!(matches!(err.error, ConnError::Eof), "{err}");
        drop(client);
        let _ = reader.await;
    }

    /// A client that goes away mid-reply: the backend's reply is still read to its end (its connection
    /// stays usable), and the relay says the client failed.
    #[tokio::test]
    async fn a_failed_client_does_not_break_the_backend_connection() {
        let reply = big_reply(300 * 1024);
        let (up_io, mut server) = tokio::io::duplex(16 * 1024);
        let (client_io, gone) = tokio::io::duplex(1024);
        drop(gone);
        let sent = reply.clone();
        let writer = tokio::spawn(async move { server.write_all(&sent).await.map(|_| server) });
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let mut relayed =
            up.relay_reply(&mut client, &mut scanner, DEADLINES).await.expect("the backend side completed");
        relayed.finish(&mut client, DEADLINES.client_stall).await;
        assert_eq!(relayed.forwarded, 0, "nothing reached the client");
        assert!(matches!(relayed.client, Some(SinkError::Gone(_))));
        assert!(scanner.is_done() && !up.has_buffered_bytes(), "the whole reply was read, nothing more");
        let _server = writer.await.expect("join").expect("the backend wrote its whole reply");
    }

    /// A client that stops reading is found out by the client deadline, on paused time: the rest of the
    /// reply is drained, and no backend deadline fires.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_client_is_the_clients_fault() {
        let reply = big_reply(1 << 20);
        let (up_io, mut server) = tokio::io::duplex(64 * 1024);
        let (client_io, _never_read) = tokio::io::duplex(1024);
        let sent = reply.clone();
        let writer = tokio::spawn(async move { server.write_all(&sent).await.map(|_| server) });
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let mut relayed = up.relay_reply(&mut client, &mut scanner, DEADLINES).await.expect("backend side fine");
        relayed.finish(&mut client, DEADLINES.client_stall).await;
        assert!(matches!(relayed.client, Some(SinkError::Stalled(d)) if d == DEADLINES.client_stall));
        assert!(relayed.forwarded <= 64 * 1024, "only what the client's buffer took");
        assert!(scanner.is_done());
        let _ = writer.await.expect("join").expect("the backend wrote its whole reply");
    }

    /// A slow reader that keeps reading is never cut off, however long the whole reply takes.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_gets_everything() {
        let reply = big_reply(256 * 1024);
        let (up_io, mut server) = tokio::io::duplex(64 * 1024);
        let (client_io, mut reader) = tokio::io::duplex(4 * 1024);
        let sent = reply.clone();
        let writer = tokio::spawn(async move { server.write_all(&sent).await.map(|_| server) });
        let slow = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                // Slower than the whole-reply time would allow at once, faster than the stall deadline.
                tokio::time::sleep(Duration::from_millis(150)).await;
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let mut relayed = up.relay_reply(&mut client, &mut scanner, DEADLINES).await.expect("backend side fine");
        assert!(relayed.finish(&mut client, DEADLINES.client_stall).await.is_none(), "the client kept reading");
        drop(client);
        assert_eq!(slow.await.unwrap(), reply);
        let _ = writer.await.unwrap().unwrap();
    }

    /// A backend that goes quiet mid-reply fails the call on the backend's deadline.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_backend_is_the_backends_fault() {
        let reply = big_reply(100_000);
        let (up_io, mut server) = tokio::io::duplex(1 << 20);
        server.write_all(&reply[..1000]).await.unwrap();
        let (client_io, _reader) = tokio::io::duplex(1 << 20);
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let err = up.relay_reply(&mut client, &mut scanner, DEADLINES).await.unwrap_err();
        assert!(matches!(err.error, ConnError::Stalled(d) if d == DEADLINES.backend_inactivity), "{err}");
        assert_eq!(err.forwarded, 1000);
        drop(server);
    }

    #[test]
    fn the_budget_is_shared_and_requests_within_a_chunk_are_free() {
        let budget = RequestBudget::new(1 << 20);
        let (mut a, mut b) = (Reserved::default(), Reserved::default());
        assert!(budget.grow(&mut a, READ_CHUNK as u64), "within the first chunk: free");
        assert_eq!(budget.in_use(), 0);
        assert!(budget.grow(&mut a, (READ_CHUNK + 800_000) as u64));
        assert!(!budget.grow(&mut b, (READ_CHUNK + 300_000) as u64), "over the shared limit");
        drop(a);
        assert_eq!(budget.in_use(), 0, "released when the request is done");
        assert!(budget.grow(&mut b, (READ_CHUNK + 300_000) as u64));
    }
}
