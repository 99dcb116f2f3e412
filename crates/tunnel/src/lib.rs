//! Reverse tunnel between agents and proxies.
//!
//! An agent (app or database service) dials the proxy and keeps one
//! multiplexed connection to it; the proxy opens streams to the agent by
//! server ID. The transport is any `AsyncRead + AsyncWrite` byte stream: TLS
//! (ALPN `teleport-reversetunnel`, mutual TLS with host certificates) is the
//! caller's business. The proxy hands [`TunnelServer::serve_agent`] the
//! terminated stream with the identity from the agent's verified certificate;
//! the agent gives [`AgentTunnel`] a [`Connector`] that returns a ready stream.
//!
//! # Wire format
//!
//! The connection is multiplexed with yamux (the proxy is the yamux server,
//! the agent the client). Every stream the proxy opens starts with a target
//! header: a big-endian `u16` length followed by that many bytes (at most
//! [`MAX_TARGET_LEN`]), e.g. `{"kind":"app","name":"azure-cli"}`; the agent
//! hands the target and the rest of the stream to its [`StreamHandler`].
//!
//! Streams the agent opens are keepalives only: the agent writes one byte
//! ([`PING`]) and the proxy echoes it and closes the stream.
//!
//! # Keepalive
//!
//! Every [`TunnelConfig::keepalive_interval`] (15 s) the agent opens a
//! keepalive stream; when the echo does not come back within
//! [`TunnelConfig::keepalive_timeout`] (10 s) the agent drops the connection
//! and reconnects. The proxy drops a connection on which no keepalive arrived
//! for [`TunnelConfig::agent_idle_timeout`] (60 s). Both ends therefore notice
//! a vanished peer whatever the transport (no reliance on TCP keepalive).
//!
//! # Wiring
//!
//! Proxy: route ALPN [`ALPN`] to a task that builds [`AgentInfo`] from the
//! verified client (host) certificate and awaits
//! [`TunnelServer::serve_agent`]; share one [`TunnelServer`] (it is `Clone`)
//! with whatever dials agents. Agent: one [`AgentTunnel`] per proxy address,
//! whose [`Connector`] does TCP + TLS with the host certificate, the CA pin
//! and ALPN [`ALPN`]. Set `TCP_NODELAY` on both sockets: each dial writes
//! small frames, and Nagle with delayed ACKs adds about 40 ms to each.
//! Close a [`TunnelStream`] with `shutdown()` before dropping it; a dropped
//! open stream is reset.
//!
//! # Limits
//!
//! Per connection: at most [`TunnelConfig::max_streams`] streams opened by the
//! proxy (more dials wait up to the dial timeout), yamux frames of at most
//! 1 MiB, a receive window bounded to 256 KiB per stream, at most
//! [`MAX_CONCURRENT_PINGS`] keepalive streams answered at once (further
//! agent-opened streams are reset), and at most [`MAX_CONNECTIONS_PER_AGENT`]
//! connections registered per server ID (the oldest is closed).

mod agent;
mod mux;
mod server;
mod session;
pub mod watched;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::compat::Compat;

pub use agent::{
    connector_fn, handler_fn, AgentTunnel, Backoff, ConnectFuture, Connector, HandleFuture,
    StreamHandler, TunnelState,
};
pub use server::TunnelServer;
pub use session::{serve_mux, set_keepalive, MuxClient};

/// Sessions one multiplexed database connection may carry at once; the
/// client opens another connection beyond that.
pub const DB_MUX_MAX_STREAMS: usize = 1000;

/// The multiplexing settings of a database connection, at both ends (the
/// proxy's fallback and the agent that takes a relayed one apart).
pub fn db_mux_config() -> TunnelConfig {
    TunnelConfig {
        max_streams: DB_MUX_MAX_STREAMS,
        ..TunnelConfig::default()
    }
}

/// Largest target header, in bytes.
pub const MAX_TARGET_LEN: usize = 4096;

/// Byte an agent sends (and the proxy echoes) on a keepalive stream.
pub const PING: u8 = b'P';

/// Keepalive streams answered concurrently per agent connection.
pub const MAX_CONCURRENT_PINGS: usize = 4;

/// Connections kept per server ID; a newer one is used for dials.
pub const MAX_CONNECTIONS_PER_AGENT: usize = 4;

/// Who an agent is (from its verified host certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub server_id: String,
    pub cluster: String,
    pub roles: Vec<String>,
}

/// Errors of the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("agent {0} is not connected to this proxy")]
    NotConnected(String),
    #[error("timed out waiting for agent {0} to connect")]
    WaitTimeout(String),
    #[error("target is {0} bytes, more than the {MAX_TARGET_LEN} allowed")]
    TargetTooLarge(usize),
    #[error("timed out opening a stream to agent {0}")]
    DialTimeout(String),
    #[error("no keepalive from agent {0} within {1:?}")]
    AgentIdle(String, Duration),
    #[error("proxy did not answer a keepalive within {0:?}")]
    KeepaliveTimeout(Duration),
    #[error("connection to agent {0} was closed by a newer one")]
    Evicted(String),
    #[error("tunnel connection closed")]
    Closed,
    #[error("tunnel protocol error: {0}")]
    Protocol(String),
    #[error("tunnel i/o: {0}")]
    Io(#[from] io::Error),
}

impl From<yamux::ConnectionError> for TunnelError {
    fn from(e: yamux::ConnectionError) -> Self {
        match e {
            yamux::ConnectionError::Io(io) => TunnelError::Io(io),
            yamux::ConnectionError::Closed => TunnelError::Closed,
            other => TunnelError::Protocol(other.to_string()),
        }
    }
}

/// Timers and limits of both ends. The defaults suit production; tests
/// shorten the timers.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    /// Agent: how often a keepalive is sent.
    pub keepalive_interval: Duration,
    /// Agent: how long a keepalive may take before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// Proxy: a connection with no keepalive for this long is dropped.
    pub agent_idle_timeout: Duration,
    /// Agent: connect timeout. Proxy: how long `dial` may take.
    pub dial_timeout: Duration,
    /// Agent: how long the proxy may take to send a stream's target header.
    pub header_timeout: Duration,
    /// Agent: first reconnect delay.
    pub backoff_min: Duration,
    /// Agent: largest reconnect delay.
    pub backoff_max: Duration,
    /// Agent: a connection that lived this long resets the backoff.
    pub backoff_reset_after: Duration,
    /// Streams the proxy may have open on one connection.
    pub max_streams: usize,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(10),
            agent_idle_timeout: Duration::from_secs(60),
            dial_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            backoff_reset_after: Duration::from_secs(10),
            max_streams: 256,
        }
    }
}

/// Any bidirectional byte stream a [`Connector`] can return.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

/// A bidirectional byte stream over the tunnel. Shutting down the write side
/// sends end-of-file to the peer; dropping it resets the stream.
///
/// Drive both directions from one task (e.g. `copy_bidirectional`, or
/// `tokio::io::split` halves polled in one `select!`/`join!`): yamux keeps a
/// single waker for a stream's outgoing frames (data and window updates),
/// so halves polled by two tasks can lose a wake-up and stall once a flow
/// control window fills (seen with 1 MiB echoes under 100 concurrent
/// streams).
pub struct TunnelStream {
    // Declared before the permit: the stream is dropped (and its slot freed
    // in the multiplexer) before another dial may take the permit.
    inner: Compat<yamux::Stream>,
    /// Bytes of the caller's buffer offered to the next read (see
    /// `poll_read`).
    read_offer: usize,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Smallest and largest read offer of a [`TunnelStream`].
const READ_OFFER_MIN: usize = 4 * 1024;
const READ_OFFER_MAX: usize = 1024 * 1024;

impl TunnelStream {
    pub(crate) fn new(stream: yamux::Stream, permit: Option<OwnedSemaphorePermit>) -> Self {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        TunnelStream {
            inner: stream.compat(),
            read_offer: READ_OFFER_MIN,
            _permit: permit,
        }
    }
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream")
            .field("stream", self.inner.get_ref())
            .finish()
    }
}

/// yamux reads into initialised memory, so a read into a fresh buffer (a
/// `BytesMut` with room reserved, as `read_buf` gives) zeroes all the room
/// it is offered first: 16 KiB for a 40-byte command. The offer therefore
/// follows what reads return: it doubles when a read fills it and halves
/// when a read uses under a quarter of it, between 4 KiB and 1 MiB.
impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let offer = buf.remaining().min(self.read_offer);
        let mut part = ReadBuf::new(buf.initialize_unfilled_to(offer));
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        buf.advance(n);
        if n == offer && offer == self.read_offer {
            self.read_offer = (self.read_offer * 2).min(READ_OFFER_MAX);
        } else if n < self.read_offer / 4 {
            self.read_offer = (self.read_offer / 2).max(READ_OFFER_MIN);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Encodes a target header; `None` when the target is too large.
pub(crate) fn encode_target(target: &[u8]) -> Option<Vec<u8>> {
    if target.len() > MAX_TARGET_LEN {
        return None;
    }
    let len = u16::try_from(target.len()).ok()?;
    let mut out = Vec::with_capacity(2 + target.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(target);
    Some(out)
}

/// Reads a target header; refuses one longer than [`MAX_TARGET_LEN`] before
/// allocating it.
pub(crate) async fn read_target<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_TARGET_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("target header of {len} bytes exceeds {MAX_TARGET_LEN}"),
        ));
    }
    let mut target = vec![0u8; len];
    r.read_exact(&mut target).await?;
    Ok(target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn target_header_round_trip() {
        let enc = encode_target(br#"{"kind":"app","name":"azure-cli"}"#).unwrap();
        let mut r = &enc[..];
        assert_eq!(
            read_target(&mut r).await.unwrap(),
            br#"{"kind":"app","name":"azure-cli"}"#
        );
        let empty = encode_target(b"").unwrap();
        assert_eq!(read_target(&mut &empty[..]).await.unwrap(), b"");
        assert!(encode_target(&[0u8; MAX_TARGET_LEN]).is_some());
        assert!(encode_target(&[0u8; MAX_TARGET_LEN + 1]).is_none());
    }

    #[tokio::test]
    async fn oversized_or_short_header_is_refused() {
        let mut big = (MAX_TARGET_LEN as u16 + 1).to_be_bytes().to_vec();
        big.extend(vec![0u8; MAX_TARGET_LEN + 1]);
        let err = read_target(&mut &big[..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let short = [0u8, 10, 1, 2];
        let err = read_target(&mut &short[..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
