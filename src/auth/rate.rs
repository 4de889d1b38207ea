//! Connect rate limiting: one token bucket per source IP address.
//!
//! Consulted by [`Security::admit`](super::Security::admit) for every accepted socket that
//! no `allow` entry trusts. A source that connects faster than `auth.connect_rate` per
//! second (after a burst of `auth.connect_burst`) has its sockets closed at once. The
//! table is bounded: past [`MAX_SOURCES`] entries, buckets that are full again (sources
//! that stopped) are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Sources tracked before idle ones are pruned.
pub const MAX_SOURCES: usize = 65536;

/// One source's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// The source was refused since its bucket last had a token (log once per streak).
    limited: bool,
}

/// What the limiter says about one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Under the limit.
    Pass,
    /// Over the limit, and the first refusal of this streak (worth a log line).
    FirstRefusal,
    /// Over the limit again.
    Refused,
}

/// Token buckets by source address.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; 0 disables the limiter.
    rate: f64,
    /// Bucket size.
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// A limiter of `rate` connections per second with bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for a connection from `ip` at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> RateVerdict {
        if self.rate <= 0.0 {
            return RateVerdict::Pass;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            self.prune(now);
        }
        let burst = self.burst;
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
            limited: false,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.limited = false;
            RateVerdict::Pass
        } else if bucket.limited {
            RateVerdict::Refused
        } else {
            bucket.limited = true;
            RateVerdict::FirstRefusal
        }
    }

    /// Forgets sources whose bucket has refilled; if none has, forgets all (a flood of
    /// distinct sources must not grow the table without bound).
    fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if self.buckets.len() >= MAX_SOURCES {
            self.buckets.clear();
        }
    }

    /// Sources currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let mut limiter = RateLimiter::new(2.0, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip, t0), RateVerdict::Pass);
        }
        assert_eq!(limiter.check(ip, t0), RateVerdict::FirstRefusal);
        assert_eq!(limiter.check(ip, t0), RateVerdict::Refused);
        assert_eq!(limiter.check(other, t0), RateVerdict::Pass);
        // Half a second later one token (rate 2/s) is back.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(ip, t1), RateVerdict::Pass);
        assert_eq!(limiter.check(ip, t1), RateVerdict::FirstRefusal);
    }

    #[test]
    fn zero_rate_disables() {
        let mut limiter = RateLimiter::new(0.0, 1);
        let ip: IpAddr = "::1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(limiter.check(ip, Instant::now()), RateVerdict::Pass);
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn table_is_bounded() {
        let mut limiter = RateLimiter::new(1.0, 1);
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            limiter.check(IpAddr::V4(i.into()), now);
        }
        assert!(limiter.len() <= MAX_SOURCES);
    }
}
