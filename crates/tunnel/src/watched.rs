//! Streams that watch their reads and pass their writes straight through: the agent's audit
//! throttle, the auth service's idle timeout and the tunnel's last-heard clock are each only a
//! [`ReadWatch`].

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a read returns.
pub type ReadPoll = Poll<std::io::Result<()>>;

/// What a [`Watched`] stream does around each read: hold it before, and judge or note what it
/// brought after.
pub trait ReadWatch {
    /// Whether a read may go ahead now; `Pending` holds it (and `cx` is woken when it may).
    fn poll_before(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    /// What the watched read returns, given the stream's read `read`, which brought `bytes`.
    fn after(&mut self, _cx: &mut Context<'_>, read: ReadPoll, _bytes: usize) -> ReadPoll {
        read
    }
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
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> ReadPoll {
        let this = self.get_mut();
        if this.watch.poll_before(cx).is_pending() {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let bytes = buf.filled().len() - before;
        this.watch.after(cx, read, bytes)
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

    /// Counts the bytes read and the reads held; holds every other read once (waking at
    /// once), and fails the read that brings more than `limit` bytes in all.
    struct Count {
        read: usize,
        held: usize,
        limit: usize,
    }

    impl ReadWatch for Count {
        fn poll_before(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            self.held += 1;
            if self.held % 2 == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        }

        fn after(&mut self, _cx: &mut Context<'_>, read: ReadPoll, bytes: usize) -> ReadPoll {
            self.read += bytes;
            if self.read > self.limit {
                return Poll::Ready(Err(std::io::ErrorKind::Other.into()));
            }
            read
        }
    }

    #[tokio::test]
    async fn reads_go_through_the_watch_and_writes_straight_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let count = Count {
            read: 0,
            held: 0,
            limit: 3,
        };
        let mut watched = Watched::new(a, count);
        watched.write_all(b"out").await.unwrap();
        watched.flush().await.unwrap();
        let mut got = [0u8; 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"out");
        assert_eq!(watched.watch.held, 0, "writes are not watched");
        b.write_all(b"abc").await.unwrap();
        watched.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abc");
        assert_eq!(watched.watch.read, 3);
        assert!(watched.watch.held >= 2, "the read was held first");
        b.write_all(b"d").await.unwrap();
        assert!(watched.read_u8().await.is_err());
    }
}
