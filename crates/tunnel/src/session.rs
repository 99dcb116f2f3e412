//! Client sessions multiplexed over one connection: `tsh` carries all the
//! local connections of a database tunnel to the proxy as streams of one
//! yamux connection (the client is the yamux client), instead of one TLS
//! connection each. The frames of every session that became ready together
//! leave in one write and arrive in one read (see [`crate::mux`]), so 50
//! busy clients cost the proxy a few system calls per round, not 100.
//!
//! Unlike the reverse tunnel, streams carry no target header: the
//! connection's client certificate says where every stream goes. The server
//! never opens streams; any it receives from the client beyond
//! [`TunnelConfig::max_streams`] end the connection (yamux's rule), so
//! [`MuxClient`] never opens more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::mux::{self, MuxHandle};
use crate::watched::ReadPoll;
use crate::{TunnelConfig, TunnelError, TunnelStream};

/// Sets TCP keepalive on the socket under a long-lived multiplexed
/// connection: first probe after 15 s of silence, then every 5 s (the
/// system's probe count, 9 on Linux), so a peer that vanished without
/// closing (a laptop changing networks) is noticed within about a minute.
/// On Linux, data left unacknowledged for [`UNACKED_TIMEOUT`] also ends the
/// connection (`TCP_USER_TIMEOUT`), instead of the kernel's retransmissions
/// for a quarter of an hour with a session waiting.
pub fn set_keepalive(tcp: &tokio::net::TcpStream) -> std::io::Result<()> {
    let params = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(15))
        .with_interval(std::time::Duration::from_secs(5));
    let sock = socket2::SockRef::from(tcp);
    sock.set_tcp_keepalive(&params)?;
    #[cfg(target_os = "linux")]
    sock.set_tcp_user_timeout(Some(UNACKED_TIMEOUT))?;
    Ok(())
}

/// How long sent data may stay unacknowledged before a long-lived
/// connection is given up (see [`set_keepalive`]).
pub const UNACKED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The client end of a multiplexed connection. Cheap to clone; clones open
/// streams on the same connection. Dropping the last clone closes the
/// connection, with any streams still open on it.
#[derive(Clone)]
pub struct MuxClient {
    open: MuxHandle,
    streams: Arc<Semaphore>,
    heard: Arc<LastHeard>,
    _alive: Arc<tokio::sync::oneshot::Sender<()>>,
}

/// When a connection last received something.
struct LastHeard {
    since: tokio::time::Instant,
    /// Milliseconds after `since`.
    at_ms: AtomicU64,
}

impl LastHeard {
    fn now(&self) -> u64 {
        self.since.elapsed().as_millis() as u64
    }
}

/// A connection's reads note when they last brought something.
impl crate::watched::ReadWatch for Arc<LastHeard> {
    fn after(&mut self, _cx: &mut Context<'_>, read: ReadPoll, bytes: usize) -> ReadPoll {
        if matches!(read, Poll::Ready(Ok(()))) && bytes > 0 {
            self.at_ms.store(self.now(), Ordering::Relaxed);
        }
        read
    }
}

impl MuxClient {
    /// Takes over `io` (an established connection, TLS done) and drives it
    /// on a spawned task until the connection closes.
    pub fn start<S>(io: S, cfg: &TunnelConfig) -> MuxClient
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let heard = Arc::new(LastHeard {
            since: tokio::time::Instant::now(),
            at_ms: AtomicU64::new(0),
        });
        let io = crate::watched::Watched::new(io, heard.clone());
        let (open, mux) = mux::new(io, cfg, yamux::Mode::Client);
        let streams = Arc::new(Semaphore::new(cfg.max_streams.max(1)));
        let on_close = streams.clone();
        let (alive, dropped) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::select! {
                // The server opens no streams: reset any it tries.
                r = mux.drive(drop) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "multiplexed connection ended");
                    }
                }
                _ = dropped => {}
            }
            // Nothing more can be opened here.
            on_close.close();
        });
        MuxClient {
            open,
            streams,
            heard,
            _alive: Arc::new(alive),
        }
    }

    /// How long the connection has received nothing (counted from its
    /// start when nothing came yet). A connection silent for a while may
    /// lead nowhere (a laptop that changed networks, a proxy that hangs)
    /// without having closed: callers can open a new one for new sessions
    /// rather than find out with a user waiting.
    pub fn silent_for(&self) -> std::time::Duration {
        let now = self.heard.now();
        let at = self.heard.at_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(now.saturating_sub(at))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.streams.is_closed() || self.open.is_closed()
    }

    /// Opens a stream if the connection has a free slot: `Ok(None)` when
    /// all [`TunnelConfig::max_streams`] are in use, an error when the
    /// connection has ended.
    pub async fn try_open(&self) -> Result<Option<TunnelStream>, TunnelError> {
        let permit = match self.streams.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => return Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(TunnelError::Closed),
        };
        let stream = self.open.open().await?;
        Ok(Some(TunnelStream::new(stream, Some(permit))))
    }
}

/// Serves the server end of a multiplexed connection until it closes:
/// every stream the client opens goes to `on_stream`, which must not block
/// (spawn the session).
pub async fn serve_mux<S>(
    io: S,
    cfg: &TunnelConfig,
    mut on_stream: impl FnMut(TunnelStream),
) -> Result<(), TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (open, mux) = mux::new(io, cfg, yamux::Mode::Server);
    let result = mux
        .drive(|stream| on_stream(TunnelStream::new(stream, None)))
        .await;
    drop(open);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cfg(max_streams: usize) -> TunnelConfig {
        TunnelConfig {
            max_streams,
            ..TunnelConfig::default()
        }
    }

    /// An echo server behind `serve_mux`.
    /// A client of an echo server over an in-memory connection, both allowing `max` sessions.
    fn echoed(max: usize) -> (MuxClient, tokio::task::JoinHandle<()>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = echo_server(b, max);
        (MuxClient::start(a, &cfg(max)), server)
    }

    fn echo_server(io: tokio::io::DuplexStream, max: usize) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _ = serve_mux(io, &cfg(max), |mut s| {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = s.shutdown().await;
                });
            })
            .await;
        })
    }

    #[tokio::test]
    async fn many_sessions_share_one_connection_and_keep_their_bytes_apart() {
        let (client, server) = echoed(64);
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = client.try_open().await.unwrap().unwrap();
                // Large enough to cross several frames and window updates.
                let msg: Vec<u8> = (0..300_000u32).map(|k| (k * 7 + i) as u8).collect();
                let (mut r, mut w) = tokio::io::split(&mut s);
                let send = async {
                    w.write_all(&msg).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let mut back = Vec::new();
                let recv = r.read_to_end(&mut back);
                let ((), got) = tokio::join!(send, recv);
                got.unwrap();
                assert_eq!(back, msg, "session {i} got another session's bytes");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(!client.is_closed());
        server.abort();
    }

    #[tokio::test]
    async fn a_full_connection_says_so_instead_of_breaking() {
        let (client, server) = echoed(2);
        let mut one = client.try_open().await.unwrap().unwrap();
        let two = client.try_open().await.unwrap().unwrap();
        assert!(client.try_open().await.unwrap().is_none());
        // Freeing a slot lets the next session in, and the connection
        // still carries the open ones.
        drop(two);
        let mut three = client.try_open().await.unwrap().unwrap();
        for s in [&mut one, &mut three] {
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_connection_refuses_new_sessions() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = MuxClient::start(a, &cfg(8));
        drop(b);
        // The driver notices the peer is gone.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !client.is_closed() {
            assert!(tokio::time::Instant::now() < deadline, "close not noticed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(matches!(client.try_open().await, Err(TunnelError::Closed)));
    }

    #[tokio::test]
    async fn read_offers_follow_what_reads_return() {
        let (client, server) = echoed(8);
        let mut s = client.try_open().await.unwrap().unwrap();
        // Reads into fresh, uninitialised room (as the Redis engine does).
        async fn round(s: &mut TunnelStream, msg: &[u8]) {
            let (mut r, mut w) = tokio::io::split(s);
            let send = async { w.write_all(msg).await.unwrap() };
            let recv = async {
                let mut got: Vec<u8> = Vec::new();
                while got.len() < msg.len() {
                    got.reserve(16 * 1024);
                    assert!(r.read_buf(&mut got).await.unwrap() > 0);
                }
                got
            };
            let ((), got) = tokio::join!(send, recv);
            assert_eq!(got, msg);
        }
        let small = b"*1\r\n$4\r\nPING\r\n".to_vec();
        round(&mut s, &small).await;
        assert_eq!(s.read_offer, crate::READ_OFFER_MIN);
        let big: Vec<u8> = (0..3_000_000u32).map(|k| k as u8).collect();
        round(&mut s, &big).await;
        assert!(s.read_offer > crate::READ_OFFER_MIN, "{}", s.read_offer);
        for _ in 0..12 {
            round(&mut s, &small).await;
        }
        assert_eq!(s.read_offer, crate::READ_OFFER_MIN);
        server.abort();
    }

    #[tokio::test]
    async fn silence_is_measured_from_the_last_bytes_received() {
        use std::time::Duration;
        let (client, server) = echoed(8);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(client.silent_for() >= Duration::from_millis(100));
        let mut s = client.try_open().await.unwrap().unwrap();
        s.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        assert!(client.silent_for() < Duration::from_millis(100));
        // Sending is not hearing.
        server.abort();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = s.write_all(b"y").await;
        assert!(client.silent_for() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn dropping_the_client_closes_the_connection() {
        let (client, server) = echoed(8);
        let mut s = client.try_open().await.unwrap().unwrap();
        s.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        drop(client);
        // The server sees the connection end, and so does the stream.
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        assert!(matches!(s.read_to_end(&mut rest).await, Ok(0) | Err(_)));
    }
}
