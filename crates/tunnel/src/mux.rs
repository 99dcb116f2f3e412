//! Drives one yamux connection: a single task polls the connection for
//! inbound streams (which also moves all I/O) and opens outbound streams on
//! request, since yamux 0.13 wants both done by whoever owns the connection.
//!
//! Writes are coalesced ([`Coalesce`]): yamux writes each frame as a header
//! and a body and flushes after every frame, which over TLS costs two
//! records and two system calls per frame. Here yamux writes into a buffer,
//! and the driver writes the buffer out once yamux has nothing more to do,
//! so the frames of every stream that became ready together (50 clients
//! behind one agent, say) leave in one write.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use crate::{TunnelConfig, TunnelError};

type OpenReply = oneshot::Sender<Result<yamux::Stream, TunnelError>>;

/// Extra yamux stream slots beyond `max_streams`, for keepalive streams and
/// streams whose drop the connection has not processed yet.
const STREAM_SLACK: usize = 32;

/// Upper bound of `TunnelConfig::max_streams` (larger values are clamped).
pub(crate) const MAX_STREAMS_LIMIT: usize = 4000;

/// Asks the driver for new outbound streams.
#[derive(Clone)]
pub(crate) struct MuxHandle {
    tx: mpsc::Sender<OpenReply>,
}

impl MuxHandle {
    pub(crate) async fn open(&self) -> Result<yamux::Stream, TunnelError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).await.map_err(|_| TunnelError::Closed)?;
        rx.await.map_err(|_| TunnelError::Closed)?
    }

    /// Whether the driver has stopped taking requests.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Bytes buffered before a write waits for the socket.
const WRITE_HIGH_WATER: usize = 256 * 1024;

/// The socket and the frames yamux has written but the socket not yet taken.
struct Shared<S> {
    io: S,
    out: Vec<u8>,
    /// Bytes of `out` already written to `io`.
    sent: usize,
}

impl<S: AsyncWrite + Unpin> Shared<S> {
    /// Writes `out` to the socket until it is empty (Ready) or the socket
    /// is full (Pending, with the caller's waker registered).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.sent = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

/// The socket as yamux sees it: reads go straight through; writes land in
/// a buffer that [`Mux::drive`] writes out (see the module documentation).
/// `poll_flush` does not write: yamux calls it after every frame and does
/// not wait for it, and the driver writes once yamux is done. Shutdown
/// writes what is buffered first.
struct Coalesce<S>(Arc<Mutex<Shared<S>>>);

/// Locks the shared socket; a poisoned lock (a panic while holding it) is
/// an I/O error, not a second panic.
fn lock<S>(shared: &Mutex<Shared<S>>) -> io::Result<MutexGuard<'_, Shared<S>>> {
    shared
        .lock()
        .map_err(|_| io::Error::other("tunnel socket lock poisoned"))
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut g = lock(&self.0)?;
        Pin::new(&mut g.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut g = lock(&self.0)?;
        if g.out.len() >= WRITE_HIGH_WATER {
            match g.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if g.out.len() >= WRITE_HIGH_WATER => return Poll::Pending,
                // Drained below the mark but not flushed yet: take more.
                Poll::Pending => {}
            }
        }
        g.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = lock(&self.0)?;
        match g.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut g.io).poll_shutdown(cx),
            other => other,
        }
    }
}

/// A connection not yet driven.
pub(crate) struct Mux<S> {
    conn: yamux::Connection<Compat<Coalesce<S>>>,
    socket: Arc<Mutex<Shared<S>>>,
    open_rx: mpsc::Receiver<OpenReply>,
}

pub(crate) fn yamux_config(cfg: &TunnelConfig) -> yamux::Config {
    // Both setters assert window >= 256 KiB * streams. The default window is
    // 1 GiB, so lowering the stream count first and the window second keeps
    // the assertion true at every step (the clamp keeps it under 1 GiB).
    let streams = cfg.max_streams.clamp(1, MAX_STREAMS_LIMIT) + STREAM_SLACK;
    let mut c = yamux::Config::default();
    c.set_max_num_streams(streams);
    c.set_max_connection_receive_window(Some(streams * yamux::DEFAULT_CREDIT as usize));
    c
}

pub(crate) fn new<S>(socket: S, cfg: &TunnelConfig, mode: yamux::Mode) -> (MuxHandle, Mux<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, open_rx) = mpsc::channel(16);
    let shared = Arc::new(Mutex::new(Shared {
        io: socket,
        out: Vec::with_capacity(16 * 1024),
        sent: 0,
    }));
    let conn = yamux::Connection::new(Coalesce(shared.clone()).compat(), yamux_config(cfg), mode);
    (
        MuxHandle { tx },
        Mux {
            conn,
            socket: shared,
            open_rx,
        },
    )
}

impl<S> Mux<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Runs the connection until it closes; `on_inbound` gets every stream
    /// the peer opens (and must not block).
    pub(crate) async fn drive(
        self,
        mut on_inbound: impl FnMut(yamux::Stream),
    ) -> Result<(), TunnelError> {
        let Mux {
            mut conn,
            socket,
            mut open_rx,
        } = self;
        let mut pending: Option<OpenReply> = None;
        let mut requests_closed = false;
        poll_fn(|cx| loop {
            // Inbound first: this also processes dropped streams, freeing
            // their slots before a new outbound stream is created.
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    on_inbound(stream);
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(reply) = pending.take() {
                        let _ = reply.send(Err(TunnelError::Closed));
                    }
                    return Poll::Ready(Err(TunnelError::from(e)));
                }
                Poll::Ready(None) => {
                    if let Some(reply) = pending.take() {
                        let _ = reply.send(Err(TunnelError::Closed));
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {}
            }
            if pending.is_none() && !requests_closed {
                match open_rx.poll_recv(cx) {
                    Poll::Ready(Some(reply)) => pending = Some(reply),
                    Poll::Ready(None) => requests_closed = true,
                    Poll::Pending => {}
                }
            }
            if let Some(reply) = pending.take() {
                if reply.is_closed() {
                    // The dialer gave up; take the next request.
                    continue;
                }
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        // A dialer that went away drops the stream (reset).
                        let _ = reply.send(Ok(stream));
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        let _ = reply.send(Err(TunnelError::Closed));
                        return Poll::Ready(Err(TunnelError::from(e)));
                    }
                    Poll::Pending => pending = Some(reply),
                }
            }
            // yamux has nothing more to do: write out what it buffered.
            // Pending leaves this task's waker with the socket.
            let (had, drained) = match lock(&socket) {
                Ok(mut g) => (!g.out.is_empty(), g.poll_drain(cx)),
                Err(e) => (false, Poll::Ready(Err(e))),
            };
            match drained {
                Poll::Ready(Err(e)) => {
                    if let Some(reply) = pending.take() {
                        let _ = reply.send(Err(TunnelError::Closed));
                    }
                    return Poll::Ready(Err(TunnelError::Io(e)));
                }
                // yamux may have been waiting for room (a full buffer):
                // let it write again.
                Poll::Ready(Ok(())) if had => continue,
                _ => return Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_max_streams_gives_a_valid_config() {
        for n in [0, 1, 2, 100, 256, 3999, 4000, 4001, usize::MAX] {
            let cfg = TunnelConfig {
                max_streams: n,
                ..TunnelConfig::default()
            };
            let _ = yamux_config(&cfg);
        }
    }
}
