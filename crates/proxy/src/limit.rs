//! A per-address rate limit for the unauthenticated routes that write to
//! the backend, hash passwords or sign certificates (joins, password
//! logins, setting a password): each client address
//! gets a bucket of `burst` requests that refills at `per_sec`. IPv6
//! addresses count by their /64, the block a single host usually holds.
//! Memory is bounded: at most [`MAX_TRACKED`] addresses are remembered
//! (those whose bucket is full again are forgotten, looked for at most once
//! a second), and addresses beyond that share one bucket, so a flood from
//! many addresses slows the flood down, not the addresses already known.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client addresses remembered at once.
pub const MAX_TRACKED: usize = 10_000;

/// Least time between two walks of a full map for buckets to forget.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// A rate limit: `burst` requests at once, then `per_sec` a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Requests at once.
    pub burst: u32,
    /// Requests a second after the burst.
    pub per_sec: f64,
}

impl Limit {
    /// The join routes' default: a joining agent makes one or two requests,
    /// and a burst of 50 lets a scale set behind one NAT address join
    /// together (agents retry what is refused, see `join`).
    pub const JOIN_DEFAULT: Limit = Limit {
        burst: 50,
        per_sec: 5.0,
    };

    /// The password routes' default (logins, setting a password): each
    /// request costs a password hash and, when it fails, a backend write;
    /// accounts lock after failed attempts, but requests naming many users
    /// would not. People log in a few times a day.
    pub const LOGIN_DEFAULT: Limit = Limit {
        burst: 30,
        per_sec: 1.0,
    };
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, per_sec: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.at = self.at.max(now);
    }

    /// Takes one request, or says how long until one is allowed.
    fn take(&mut self, now: Instant, per_sec: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, per_sec, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }
}

struct Buckets {
    by_addr: HashMap<IpAddr, Bucket>,
    /// Shared by addresses that arrive while [`MAX_TRACKED`] are remembered.
    overflow: Bucket,
    /// When full buckets were last forgotten: at most once a second, so a
    /// flood from many addresses does not make every request walk the map.
    pruned: Option<Instant>,
}

/// Per-address token buckets (see the module documentation).
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<Buckets>,
}

/// The address a client is counted by (IPv6 by its /64).
fn key(ip: IpAddr) -> IpAddr {
    auth::serve::client_key(ip)
}

impl RateLimiter {
    /// `burst` requests at once (at least one), refilled at `per_sec` a
    /// second (a positive number; anything else counts as one a day).
    pub fn new(burst: u32, per_sec: f64) -> Self {
        let now = Instant::now();
        let burst = f64::from(burst.max(1));
        let per_sec = if per_sec.is_finite() && per_sec > 0.0 {
            per_sec
        } else {
            1.0 / 86_400.0
        };
        RateLimiter {
            burst,
            per_sec,
            buckets: Mutex::new(Buckets {
                by_addr: HashMap::new(),
                overflow: Bucket::full(burst, now),
                pruned: None,
            }),
        }
    }

    /// Counts one request from `ip` at `now`: Ok, or how long the client
    /// should wait before it tries again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let (burst, per_sec) = (self.burst, self.per_sec);
        // A poisoned lock only means a panic elsewhere mid-update; the
        // counts are still usable.
        let mut g = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let addr = key(ip);
        if !g.by_addr.contains_key(&addr)
            && g.by_addr.len() >= MAX_TRACKED
            && g.pruned
                .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_EVERY)
        {
            g.pruned = Some(now);
            g.by_addr.retain(|_, b| {
                let mut b = *b;
                b.refill(now, per_sec, burst);
                b.tokens < burst
            });
        }
        if g.by_addr.contains_key(&addr) || g.by_addr.len() < MAX_TRACKED {
            g.by_addr
                .entry(addr)
                .or_insert_with(|| Bucket::full(burst, now))
                .take(now, per_sec, burst)
        } else {
            g.overflow.take(now, per_sec, burst)
        }
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_addr
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let l = RateLimiter::new(3, 2.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check(ip("10.0.0.1"), t0).unwrap();
        }
        let wait = l.check(ip("10.0.0.1"), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another address has its own bucket.
        l.check(ip("10.0.0.2"), t0).unwrap();
        // Half a second refills one request (2 a second), not two.
        let t1 = t0 + Duration::from_millis(500);
        l.check(ip("10.0.0.1"), t1).unwrap();
        assert!(l.check(ip("10.0.0.1"), t1).is_err());
        // A long pause refills the burst, and no more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            l.check(ip("10.0.0.1"), t2).unwrap();
        }
        assert!(l.check(ip("10.0.0.1"), t2).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = RateLimiter::new(2, 1.0);
        let t0 = Instant::now();
        l.check(ip("2001:db8:1:2::1"), t0).unwrap();
        l.check(ip("2001:db8:1:2:ffff::9"), t0).unwrap();
        assert!(l.check(ip("2001:db8:1:2::77"), t0).is_err());
        l.check(ip("2001:db8:1:3::1"), t0).unwrap();
        l.check(ip("192.0.2.7"), t0).unwrap();
        l.check(ip("::ffff:192.0.2.7"), t0).unwrap();
        assert!(l.check(ip("192.0.2.7"), t0).is_err());
    }

    #[test]
    fn memory_is_bounded_and_known_addresses_keep_their_buckets() {
        let l = RateLimiter::new(2, 1.0);
        let t0 = Instant::now();
        // A known client that used part of its burst.
        l.check(ip("10.9.9.9"), t0).unwrap();
        // A flood from many addresses, each spending its whole burst.
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let _ = l.check(addr, t0);
            let _ = l.check(addr, t0);
        }
        assert_eq!(l.tracked(), MAX_TRACKED);
        // The flood's extra addresses shared one bucket, now empty.
        assert!(l.check(ip("12.0.0.1"), t0).is_err());
        // The known client still has its own request left.
        l.check(ip("10.9.9.9"), t0).unwrap();
        assert!(l.check(ip("10.9.9.9"), t0).is_err());
        // Once the flood's buckets are full again, new addresses get theirs.
        let later = t0 + Duration::from_secs(10);
        l.check(ip("12.0.0.1"), later).unwrap();
        assert!(l.tracked() < 10);
    }

    #[test]
    fn a_full_map_is_walked_at_most_once_a_second() {
        let l = RateLimiter::new(1, 10.0);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 1) {
            let _ = l.check(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)), t0);
        }
        // The last one found the map full, walked it (nothing to forget)
        // and took the shared bucket.
        assert_eq!(l.tracked(), MAX_TRACKED);
        // Half a second on, every bucket is full again, but the map was
        // walked less than a second ago: a new address shares the (full
        // again) shared bucket instead of a walk.
        let t1 = t0 + Duration::from_millis(500);
        l.check(ip("12.0.0.1"), t1).unwrap();
        assert_eq!(l.tracked(), MAX_TRACKED);
        // A second after the walk, full buckets are forgotten.
        let t2 = t0 + Duration::from_millis(1100);
        l.check(ip("12.0.0.2"), t2).unwrap();
        assert_eq!(l.tracked(), 1);
    }
}
