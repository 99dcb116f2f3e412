//! Drives one yamux connection: a single task polls the connection for
//! inbound streams (which also moves all I/O) and opens outbound streams on
//! request, since yamux 0.13 wants both done by whoever owns the connection.

use std::future::poll_fn;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
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
}

/// A connection not yet driven.
pub(crate) struct Mux<S> {
    conn: yamux::Connection<Compat<S>>,
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
    let conn = yamux::Connection::new(socket.compat(), yamux_config(cfg), mode);
    (MuxHandle { tx }, Mux { conn, open_rx })
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
            return Poll::Pending;
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
