//! One Thrift connection over a byte stream: the only code that reads and writes Thrift sockets.
//!
//! A [`ThriftConn`] turns socket bytes into payload (stripping frame headers when the transport is
//! framed), reads whole request messages, writes messages with the connection's framing, and relays a
//! reply from one connection to another as it arrives: bytes are forwarded as soon as the scanner has
//! walked them, so memory does not grow with reply size.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::thrift::framing::{frame_header, Deframer, Framing, FramingError, SaslMessage};
use crate::thrift::scanner::Scanner;
use crate::thrift::{Limits, ProtocolError};

/// Any byte stream a Thrift connection can run over (TCP now, TLS later).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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
    /// A message whose header was read but whose body is refused (too large, malformed): the peer can
    /// still be told why, with that header's name and seqid.
    #[error("bad {name} message: {error}")]
    BadMessage { name: String, seqid: i32, error: ProtocolError },
}

/// A relay that failed on the backend side (a client's failure is kept on the client connection, see
/// [`ThriftConn::relay_reply`]). A reply that broke after bytes reached the client cannot be replaced.
#[derive(Debug, thiserror::Error)]
#[error("backend: {error} (after {forwarded} bytes reached the client)")]
pub struct RelayError {
    pub error: ConnError,
    pub forwarded: u64,
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
    /// A write that failed while a reply was being relayed to this (client) connection: the relay goes
    /// on reading the backend's reply, and this error is returned by the next read or write here.
    failed: Option<(io::ErrorKind, String)>,
}

impl ThriftConn {
    pub fn new(io: Box<dyn Io>, framing: Framing, max_frame: u64) -> ThriftConn {
        ThriftConn {
            io,
            deframer: Deframer::new(framing, max_frame),
            raw: BytesMut::with_capacity(READ_CHUNK),
            payload: BytesMut::with_capacity(READ_CHUNK),
            // A frame length is a u32 on the wire.
            max_write_frame: u32::MAX as usize,
            failed: None,
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
        if self.deframer.framing() == Framing::Unframed {
            // Unframed: socket bytes are payload; read straight into it, no copy.
            if !self.raw.is_empty() {
                self.payload.extend_from_slice(&self.raw);
                self.raw.clear();
                return Ok(true);
            }
            self.payload.reserve(READ_CHUNK);
            return Ok(self.io.read_buf(&mut self.payload).await? > 0);
        }
        loop {
            if self.move_frames_to_payload()? {
                return Ok(true);
            }
            self.raw.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.raw).await? == 0 {
                return Ok(false);
            }
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

    /// The error of a write that failed during a relay, again (the stream position is lost).
    fn check_failed(&self) -> Result<(), ConnError> {
        match &self.failed {
            None => Ok(()),
            Some((kind, text)) => Err(ConnError::Io(io::Error::new(*kind, format!("earlier write failed: {text}")))),
        }
    }

    /// Reads one whole message; `Ok(None)` when the peer closed cleanly between messages.
    pub async fn read_message(&mut self, limits: Limits) -> Result<Option<Bytes>, ConnError> {
        self.check_failed()?;
        let mut scanner = Scanner::new(limits, &[]);
        let mut scanned = 0;
        loop {
            if self.payload.len() > scanned {
                scanned += scanner.feed(&self.payload[scanned..]).map_err(|error| match scanner.header() {
                    Some(h) => ConnError::BadMessage { name: h.name.clone(), seqid: h.seqid, error },
                    None => ConnError::Protocol(error),
                })?;
                if scanner.is_done() {
                    return Ok(Some(self.payload.split_to(scanned).freeze()));
                }
            }
            if !self.fill().await? {
                let idle = self.payload.is_empty() && self.raw.is_empty();
                return if idle { Ok(None) } else { Err(ConnError::Eof) };
            }
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
        self.check_failed()?;
        if self.deframer.framing() == Framing::Unframed {
            self.io.write_all(bytes).await?;
            return Ok(());
        }
        for part in bytes.chunks(self.max_write_frame) {
            if part.len() <= COALESCE_BYTES {
                let mut buf = Vec::with_capacity(4 + part.len());
                buf.extend_from_slice(&frame_header(part.len()));
                buf.extend_from_slice(part);
                self.io.write_all(&buf).await?;
            } else {
                self.io.write_all(&frame_header(part.len())).await?;
                self.io.write_all(part).await?;
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

    /// Relays one reply from this (backend) connection to `client` as its bytes arrive.
    ///
    /// `scanner` finds the end of the reply and captures what routing needs; the bytes are forwarded
    /// unchanged, re-framed for the client's transport.
    ///
    /// The backend's reply is always read to its end, even when the client fails midway (it closed, or
    /// reset the connection): this connection then stays in step and reusable, which matters on
    /// Hive/Spark, where closing the upstream connection that opened a session closes the session. The
    /// client's failure is kept on `client` and returned by its next read or write; the result counts
    /// the bytes that did reach the client. `Err` only for a backend failure.
    pub async fn relay_reply(&mut self, client: &mut ThriftConn, scanner: &mut Scanner) -> Result<u64, RelayError> {
        let mut forwarded = 0u64;
        let backend = |error: ConnError, forwarded| RelayError { error, forwarded };
        loop {
            if !self.payload.is_empty() {
                let n = scanner.feed(&self.payload).map_err(|e| backend(e.into(), forwarded))?;
                if n > 0 {
                    let chunk = self.payload.split_to(n);
                    if client.relay_write(&chunk).await {
                        forwarded += n as u64;
                    }
                }
                if scanner.is_done() {
                    if client.failed.is_none() {
                        if let Err(e) = client.io.flush().await {
                            client.failed = Some((e.kind(), e.to_string()));
                        }
                    }
                    if self.has_buffered_bytes() {
                        return Err(backend(ConnError::TrailingBytes, forwarded));
                    }
                    return Ok(forwarded);
                }
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Err(backend(ConnError::Eof, forwarded)),
                Err(e) => return Err(backend(e, forwarded)),
            }
        }
    }

    /// Writes part of a relayed reply unless an earlier part failed; false when it was not written.
    async fn relay_write(&mut self, chunk: &[u8]) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.write_chunk(chunk).await {
            Ok(()) => true,
            Err(e) => {
                let (kind, text) = match e {
                    ConnError::Io(e) => (e.kind(), e.to_string()),
                    e => (io::ErrorKind::Other, e.to_string()),
                };
                self.failed = Some((kind, text));
                false
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thrift::value::{encode_message, Struct, Value};
    use crate::thrift::{MessageHeader, MessageKind};

    /// A client that goes away mid-reply: the backend's reply is still read to its end (its connection
    /// stays usable), and the client's failure comes back on the client's next read.
    #[tokio::test]
    async fn a_failed_client_does_not_break_the_backend_connection() {
        let body = Struct::new().with(0, Value::Bytes(vec![7u8; 300 * 1024]));
        let reply = encode_message(&MessageHeader::new("FetchResults", MessageKind::Reply, 1), &body);
        let (up_io, mut server) = tokio::io::duplex(16 * 1024);
        let (client_io, gone) = tokio::io::duplex(1024);
        drop(gone);
        let sent = reply.clone();
        let writer = tokio::spawn(async move { server.write_all(&sent).await.map(|_| server) });
        let mut up = ThriftConn::new(Box::new(up_io), Framing::Unframed, 1 << 20);
        let mut client = ThriftConn::new(Box::new(client_io), Framing::Unframed, 1 << 20);
        let mut scanner = Scanner::new(Limits::REPLY, &[]);
        let forwarded = up.relay_reply(&mut client, &mut scanner).await.expect("the backend side completed");
        assert_eq!(forwarded, 0, "nothing reached the client");
        assert!(scanner.is_done() && !up.has_buffered_bytes(), "the whole reply was read, nothing more");
        let _server = writer.await.expect("join").expect("the backend wrote its whole reply");
        assert!(client.read_message(Limits::REPLY).await.is_err(), "the client's failure is reported");
        assert!(client.write_message(b"x").await.is_err());
    }
}
