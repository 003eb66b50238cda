//! Moving reply bytes from a backend socket to a client socket inside the kernel, with `splice(2)`
//! through a pipe: the large strings of a bulk FetchResults reply, which the scanner passes without
//! looking at, never cross into user space. A relay through user space copies every byte twice more
//! than a direct connection does (socket to buffer, buffer to socket); this moves page references.
//!
//! Only between two plain TCP sockets: TLS and HTTP bodies need the bytes in user space. A framed
//! client gets a frame header in front of each spliced piece; a splice from a framed backend stops at
//! the end of its frame. Linux only; elsewhere [`available`] is false and the relay copies as before.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::conn::{within, SinkError};

/// Remaining string bytes below this are copied: two splices cost more than a read and a write then.
pub const MIN_SPLICE_BYTES: u64 = 32 * 1024;

/// Bytes a pipe is asked to hold (`F_SETPIPE_SZ`; the kernel's default is 64 KiB, its usual maximum
/// for an unprivileged process 1 MiB). Fewer, larger splices per reply.
const PIPE_BYTES: usize = 1 << 20;

/// Idle pipes kept for reuse: two descriptors each, and no pages while empty.
const SPARE_PIPES: usize = 64;

/// Reply bytes moved by splicing since start: `hs2_proxy_reply_bytes_spliced_total`.
static SPLICED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Reply bytes that reached clients by splicing since the process started.
pub fn spliced_bytes() -> u64 {
    SPLICED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether splicing is possible on this platform.
pub fn available() -> bool {
    cfg!(target_os = "linux")
}

/// Why a splice stopped; bytes taken from the backend are counted in both cases.
#[derive(Debug)]
pub enum SpliceEnd {
    /// The backend side failed (closed, stalled, error): the call fails.
    Backend(crate::conn::ConnError),
    /// The client side failed: the rest of the reply must still be read from the backend.
    Client(SinkError),
}

/// Where spliced bytes go: the client's socket, and whether each piece needs a frame header first.
pub struct SpliceTarget<'a> {
    pub tcp: &'a TcpStream,
    /// Framed client transport (SASL, TFramedTransport): each spliced piece is written as its own
    /// frame, of at most `max_frame` bytes.
    pub framed: Option<usize>,
}

/// Where spliced bytes come from: the backend's socket, and how much of the current frame is left when
/// the backend's transport is framed (a splice never crosses into the next frame header).
pub struct SpliceSource<'a> {
    pub tcp: &'a TcpStream,
    pub frame_left: Option<u64>,
}

/// Moves up to `want` bytes from `from` to `to`; returns how many were taken from `from` (all of them
/// reached `to` unless the result is [`SpliceEnd::Client`]). `None` when no pipe could be had (out of
/// descriptors): nothing moved, and the caller copies instead.
pub async fn relay(
    from: SpliceSource<'_>,
    to: SpliceTarget<'_>,
    want: u64,
    backend_inactivity: Duration,
    client_stall: Duration,
) -> Option<(u64, Result<(), SpliceEnd>)> {
    let mut pipe = match Pipe::take() {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "no pipe for splicing; the reply is copied");
            return None;
        }
    };
    let mut taken = 0u64;
    let want = from.frame_left.map_or(want, |left| want.min(left));
    let result = async {
        while taken < want {
            let mut piece = (want - taken).min(pipe.capacity as u64) as usize;
            if let Some(max) = to.framed {
                piece = piece.min(max);
            }
            let n = pipe.fill(from.tcp, piece, backend_inactivity).await.map_err(SpliceEnd::Backend)?;
            taken += n as u64;
            if let Some(_max) = to.framed {
                write_all(to.tcp, &crate::thrift::framing::frame_header(n), client_stall)
                    .await
                    .map_err(SpliceEnd::Client)?;
            }
            pipe.drain(to.tcp, client_stall).await.map_err(SpliceEnd::Client)?;
            SPLICED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    pipe.give_back();
    Some((taken, result))
}

/// A pipe and the bytes it holds.
struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    held: usize,
    capacity: usize,
}

static SPARE: std::sync::Mutex<Vec<Pipe>> = std::sync::Mutex::new(Vec::new());

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = SPARE.lock().ok().and_then(|mut s| s.pop()) {
            return Ok(p);
        }
        Pipe::open()
    }

    /// Kept for reuse only when empty: bytes left in a pipe belong to a reply that failed.
    fn give_back(self) {
        if self.held != 0 {
            return;
        }
        if let Ok(mut spare) = SPARE.lock() {
            if spare.len() < SPARE_PIPES {
                spare.push(self);
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn open() -> io::Result<Pipe> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Best effort: a smaller pipe only means more splices.
        // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ/F_GETPIPE_SZ take and return an int.
        let capacity = unsafe {
            use std::os::fd::AsRawFd;
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        let capacity = if capacity > 0 { capacity as usize } else { 64 * 1024 };
        Ok(Pipe { read, write, held: 0, capacity })
    }

    #[cfg(not(target_os = "linux"))]
    fn open() -> io::Result<Pipe> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "splice(2) is Linux only"))
    }

    /// Moves at least one and at most `max` bytes from the socket into the (empty) pipe, waiting for the
    /// backend at most `inactivity` between bytes.
    async fn fill(
        &mut self,
        from: &TcpStream,
        max: usize,
        inactivity: Duration,
    ) -> Result<usize, crate::conn::ConnError> {
        use crate::conn::ConnError;
        let max = max.min(self.capacity - self.held);
        match once_ready(from, Interest::READABLE, inactivity, || splice(from, &self.write, max)).await {
            Ok(0) => Err(ConnError::Eof),
            Ok(n) => {
                self.held += n;
                Ok(n)
            }
            Err(Waited::Failed(e)) => Err(ConnError::Io(e)),
            Err(Waited::TimedOut) => Err(ConnError::Stalled(inactivity)),
        }
    }

    /// Moves everything the pipe holds into the socket; the client may accept nothing for at most
    /// `stall` at a time.
    async fn drain(&mut self, to: &TcpStream, stall: Duration) -> Result<(), SinkError> {
        while self.held > 0 {
            self.held -= to_client(to, stall, || splice(&self.read, to, self.held)).await?;
        }
        Ok(())
    }
}

/// Why [`once_ready`] gave up.
enum Waited {
    Failed(io::Error),
    TimedOut,
}

/// Runs the non-blocking `op` on `tcp` until it does something (`Ok(n)`, `n` may be 0 for an end of
/// stream), waiting for `interest` at most `limit` at a time. `op`'s `WouldBlock` clears the socket's
/// readiness, so only an operation that would block *on that socket* may be run this way.
async fn once_ready(
    tcp: &TcpStream,
    interest: Interest,
    limit: Duration,
    mut op: impl FnMut() -> io::Result<usize>,
) -> Result<usize, Waited> {
    loop {
        match tcp.try_io(interest, &mut op) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match within(limit, tcp.ready(interest)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(Waited::Failed(e)),
                Err(_) => return Err(Waited::TimedOut),
            },
            Err(e) => return Err(Waited::Failed(e)),
        }
    }
}

/// [`once_ready`] writing to the client: a write of nothing, an error or a stall is the client's.
async fn to_client(to: &TcpStream, stall: Duration, op: impl FnMut() -> io::Result<usize>) -> Result<usize, SinkError> {
    match once_ready(to, Interest::WRITABLE, stall, op).await {
        Ok(0) => Err(SinkError::Gone(io::ErrorKind::WriteZero.into())),
        Ok(n) => Ok(n),
        Err(Waited::Failed(e)) => Err(SinkError::Gone(e)),
        Err(Waited::TimedOut) => Err(SinkError::Stalled(stall)),
    }
}

/// One non-blocking `splice(2)` call.
#[cfg(target_os = "linux")]
fn splice(from: &impl std::os::fd::AsRawFd, to: &impl std::os::fd::AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both are open descriptors borrowed for the call; null offsets mean "the current position"
    // (required for sockets and pipes).
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn splice(_: &impl std::os::fd::AsRawFd, _: &impl std::os::fd::AsRawFd, _: usize) -> io::Result<usize> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "splice(2) is Linux only"))
}

/// Writes a frame header straight to the socket, waiting at most `stall` at a time.
async fn write_all(to: &TcpStream, mut bytes: &[u8], stall: Duration) -> Result<(), SinkError> {
    while !bytes.is_empty() {
        let n = to_client(to, stall, || to.try_write(bytes)).await?;
        bytes = &bytes[n..];
    }
    Ok(())
}
