//! Streams that watch their reads and pass their writes straight through: the agent's audit
//! throttle, the auth service's idle timeout and the tunnel's last-heard clock are each only a
//! [`ReadWatch`].

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`Watched`] stream does with each read: wait before it, fail it, or note what it
/// brought.
pub trait ReadWatch {
    /// The watched stream's read: reads `io` into `buf`, or waits, or fails.
    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        io: Pin<&mut S>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>>;
}

/// A stream whose reads go through a [`ReadWatch`] and whose writes go straight to the stream.
pub struct Watched<S, W> {
    io: S,
    watch: W,
}

impl<S, W> Watched<S, W> {
    /// `io`, its reads watched by `watch`.
    pub fn new(io: S, watch: W) -> Self {
        Watched { io, watch }
    }
}

impl<S: AsyncRead + Unpin, W: ReadWatch + Unpin> AsyncRead for Watched<S, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.watch.poll_read(Pin::new(&mut this.io), cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, W: Unpin> AsyncWrite for Watched<S, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Counts the bytes read; fails reads once `limit` is reached.
    struct Count {
        read: usize,
        limit: usize,
    }

    impl ReadWatch for Count {
        fn poll_read<S: AsyncRead + Unpin>(
            &mut self,
            io: Pin<&mut S>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.read >= self.limit {
                return Poll::Ready(Err(std::io::ErrorKind::Other.into()));
            }
            let before = buf.filled().len();
            let r = io.poll_read(cx, buf);
            self.read += buf.filled().len() - before;
            r
        }
    }

    #[tokio::test]
    async fn reads_go_through_the_watch_and_writes_straight_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut watched = Watched::new(a, Count { read: 0, limit: 3 });
        watched.write_all(b"out").await.unwrap();
        watched.flush().await.unwrap();
        let mut got = [0u8; 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"out");
        b.write_all(b"abc").await.unwrap();
        watched.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abc");
        assert_eq!(watched.watch.read, 3);
        b.write_all(b"d").await.unwrap();
        assert!(watched.read_u8().await.is_err());
    }
}
