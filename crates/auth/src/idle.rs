//! A stream that fails its reads once the peer has sent nothing for a while.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tunnel::watched::{ReadPoll, ReadWatch, Watched};

/// A stream whose reads time out ([`idle_read`]); writes pass through.
pub type IdleRead<S> = Watched<S, Idle>;

/// Wraps a stream: a read that has waited `limit` since the last byte
/// arrived fails with [`std::io::ErrorKind::TimedOut`].
pub fn idle_read<S>(inner: S, limit: Duration) -> IdleRead<S> {
    let idle = Idle {
        limit,
        deadline: Box::pin(tokio::time::sleep(limit)),
    };
    Watched::new(inner, idle)
}

/// The deadline of [`IdleRead`]'s next byte.
pub struct Idle {
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl ReadWatch for Idle {
    fn after(&mut self, cx: &mut Context<'_>, read: ReadPoll, bytes: usize) -> ReadPoll {
        if read.is_pending() {
            return match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            };
        }
        if bytes > 0 {
            let next = Instant::now() + self.limit;
            self.deadline.as_mut().reset(next);
        }
        read
    }
}
