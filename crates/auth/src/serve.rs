//! Serving an axum router over TLS, with the caller taken from the client
//! certificate.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::Caller;

/// The caller of a TLS connection: from the verified client certificate, or
/// anonymous when there is none. A certificate we cannot read (it verified, so
/// it came from one of our CAs) is treated as anonymous and logged.
pub fn caller_of(conn: &rustls::CommonState) -> Caller {
    match pki::tls::peer_identity(conn) {
        None => Caller::Anonymous,
        Some(Ok(id)) => Caller::from_identity(id),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "unreadable client certificate");
            Caller::Anonymous
        }
    }
}

/// Address of the connection's peer, in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers, counted from
/// when the server starts waiting for them (so an idle HTTP/1.1 connection
/// is closed after it too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an HTTP/2 connection may go without sending a byte.
pub const H2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections a client address may hold open before it has authenticated
/// (during the TLS handshake, and for their lifetime when it presented no
/// client certificate). Addresses count as [`client_key`] groups them.
pub const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 256;

/// The address a client is counted by: IPv4 as is (IPv4-mapped IPv6 too),
/// IPv6 by its /64, the block a single host usually holds.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts the unauthenticated connections of each client address and
/// refuses those beyond a bound.
#[derive(Clone)]
pub struct UnauthenticatedConnections {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl UnauthenticatedConnections {
    /// At most `max` unauthenticated connections per client address.
    pub fn new(max: usize) -> Self {
        UnauthenticatedConnections {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one more connection from `ip`, or `None` when the address
    /// already holds the maximum. The count drops with the guard.
    pub fn admit(&self, ip: IpAddr) -> Option<ConnectionGuard> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            open: self.open.clone(),
            key,
        })
    }

    /// The next connection on `listener` whose address may open one more, counted, with
    /// `TCP_NODELAY` set (small frames such as tunnel pings and HTTP heads must not wait for
    /// delayed ACKs); `None` once `shutdown` completes. A failed accept and a connection over
    /// its address's limit are logged and passed over.
    pub async fn accept(
        &self,
        listener: &TcpListener,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Option<(TcpStream, SocketAddr, ConnectionGuard)> {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut *shutdown => return None,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let Some(guard) = self.admit(peer.ip()) else {
                tracing::debug!(%peer, "too many unauthenticated connections from this address");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            return Some((tcp, peer, guard));
        }
    }

    /// Open unauthenticated connections counted for `ip`'s address.
    pub fn count(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

impl Default for UnauthenticatedConnections {
    fn default() -> Self {
        Self::new(MAX_UNAUTHENTICATED_PER_ADDRESS)
    }
}

/// One counted connection of [`UnauthenticatedConnections`]; dropping it
/// (when the connection ends or authenticates) uncounts it.
pub struct ConnectionGuard {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Whether the client of a finished handshake presented a certificate
/// (which rustls has verified against the client CAs).
pub fn is_authenticated(conn: &rustls::CommonState) -> bool {
    conn.peer_certificates().is_some_and(|c| !c.is_empty())
}

/// Serve HTTP on one accepted TLS stream, as its ALPN says: HTTP/2 for
/// `h2`, HTTP/1.1 otherwise (as Go's servers do, a client that wants HTTP/2
/// over TLS says so in its ALPN). HTTP/1.1 requests must bring their headers
/// within [`HEADER_READ_TIMEOUT`] and HTTP/2 connections that send nothing
/// for [`H2_IDLE_TIMEOUT`] are closed, so a client that stops mid-request
/// holds nothing for long.
pub async fn serve_connection<S>(
    stream: tokio_rustls::server::TlsStream<S>,
    router: Router,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_connection_with(stream, router, peer, HEADER_READ_TIMEOUT, H2_IDLE_TIMEOUT).await
}

/// [`serve_connection`] with explicit timeouts.
pub async fn serve_connection_with<S>(
    stream: tokio_rustls::server::TlsStream<S>,
    router: Router,
    peer: std::net::SocketAddr,
    header_read_timeout: Duration,
    h2_idle_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = caller_of(stream.get_ref().1);
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let svc = TowerToHyperService::new(
        router
            .layer(Extension(caller))
            .layer(Extension(PeerAddr(peer))),
    );
    let result = if h2 {
        let io = TokioIo::new(crate::idle::idle_read(stream, h2_idle_timeout));
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Accept TLS connections on `listener` until `shutdown` completes: the
/// handshake within [`HANDSHAKE_TIMEOUT`], at most
/// [`MAX_UNAUTHENTICATED_PER_ADDRESS`] connections per client address until
/// they have presented a client certificate.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let unauthenticated = UnauthenticatedConnections::default();
    tokio::pin!(shutdown);
    while let Some((tcp, peer, guard)) = unauthenticated.accept(&listener, &mut shutdown).await {
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _guard = (!is_authenticated(tls.get_ref().1)).then_some(guard);
                    serve_connection(tls, router, peer).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A TLS server of one route on a free port, with short timeouts.
    async fn server(header: Duration, h2_idle: Duration) -> (std::net::SocketAddr, String) {
        let (cert, key) = pki::self_signed_server_cert(&["localhost".to_string()]).unwrap();
        let config = Arc::new(
            pki::tls::server_config(
                &cert,
                &key,
                &[],
                pki::tls::ClientAuth::None,
                &[b"h2", b"http/1.1"],
            )
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let (tcp, peer) = listener.accept().await.unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                tokio::spawn(serve_connection_with(
                    tls,
                    router.clone(),
                    peer,
                    header,
                    h2_idle,
                ));
            }
        });
        (addr, cert)
    }

    async fn connect(
        addr: std::net::SocketAddr,
        cert: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let config =
            pki::tls::client_config(None, None, &[cert.to_string()], false, &[alpn]).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Reads until the server closes; returns what it sent and when.
    async fn until_closed(
        tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) -> (String, Duration) {
        let started = Instant::now();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the server held the connection");
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn clients_that_never_finish_their_headers_are_closed() {
        let timeout = Duration::from_millis(400);
        let (addr, cert) = server(timeout, timeout).await;
        // Nothing at all after the handshake.
        let mut idle = connect(addr, &cert, b"http/1.1").await;
        let (_, took) = until_closed(&mut idle).await;
        assert!(took >= Duration::from_millis(300), "{took:?}");
        // Half a request head.
        let mut slow = connect(addr, &cert, b"http/1.1").await;
        slow.write_all(b"GET /ping HTTP/1.1\r\nhost: localhost\r\n")
            .await
            .unwrap();
        let (answer, _) = until_closed(&mut slow).await;
        assert!(!answer.contains("pong"), "{answer}");
        // HTTP/2 that sends nothing.
        let mut h2 = connect(addr, &cert, b"h2").await;
        until_closed(&mut h2).await;
        // A whole request is answered; the idle connection after it is
        // closed in its turn.
        let mut good = connect(addr, &cert, b"http/1.1").await;
        good.write_all(b"GET /ping HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let (answer, _) = until_closed(&mut good).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("pong"), "{answer}");
    }

    #[test]
    fn unauthenticated_connections_are_bounded_per_address() {
        let limit = UnauthenticatedConnections::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        assert!(
            limit.admit(b).is_some(),
            "another address has its own count"
        );
        drop(first);
        assert_eq!(limit.count(a), 1);
        let _third = limit.admit(a).unwrap();
        // IPv6 counts by /64; IPv4-mapped addresses as IPv4.
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        let _x = limit.admit(v6("2001:db8::1")).unwrap();
        let _y = limit.admit(v6("2001:db8::ffff:2")).unwrap();
        assert!(limit.admit(v6("2001:db8::3")).is_none());
        assert!(limit.admit(v6("2001:db8:0:1::1")).is_some());
        assert!(limit.admit(v6("::ffff:10.0.0.1")).is_none());
    }
}
