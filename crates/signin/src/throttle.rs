//! Throttling of sign-in attempts per login name and per client address, checked before
//! anything else happens (no database read, no hash, no CUCM request).
//!
//! The one throttle of the project: the server's admin login limiter (`login_limit.rs`) is
//! this with one rate for both keys. A GCRA per key (`governor`), keys being a keyed hash (random per process) of the lower-cased
//! login or of the address (IPv6 per /64) cut to 65,536 buckets, so a flood of distinct
//! names cannot grow memory. Unlike the admin limiter the two limits have their own rates
//! (`[signin] attempts_per_minute_per_user` / `_per_address`): behind NAT many mail
//! clients share one address.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Maps are pruned of fully replenished keys at most this often, once they are large.
const PRUNE_ABOVE: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(10);

pub struct Throttle {
    by_user: Option<DefaultKeyedRateLimiter<u16>>,
    by_address: Option<DefaultKeyedRateLimiter<u16>>,
    hasher: RandomState,
    clock: DefaultClock,
    last_prune: std::sync::Mutex<std::time::Instant>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<u16>> {
    let n = NonZeroU32::new(per_minute)?;
    Some(RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)))
}

impl Throttle {
    /// `0` turns a limit off.
    pub fn new(per_user: u32, per_address: u32) -> Throttle {
        Throttle {
            by_user: limiter(per_user),
            by_address: limiter(per_address),
            hasher: RandomState::new(),
            clock: DefaultClock::default(),
            last_prune: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn bucket<T: std::hash::Hash>(&self, key: T) -> u16 {
        // Truncation is the point: the low 16 bits of a keyed 64-bit hash.
        self.hasher.hash_one(key) as u16
    }

    /// Count one attempt; `Err(wait)` when it is over either limit. `login` is bounded by
    /// the caller; it is counted case-insensitively.
    pub fn check(&self, address: Option<IpAddr>, login: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        if let (Some(limit), Some(ip)) = (&self.by_address, address) {
            limit
                .check_key(&self.bucket(address_key(ip)))
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        if let Some(limit) = &self.by_user {
            limit
                .check_key(&self.bucket(login.to_lowercase()))
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        self.prune_now_and_then();
        Ok(())
    }

    /// Keys tracked per login and per address (each at most 65,536).
    pub fn tracked_keys(&self) -> (usize, usize) {
        let len = |l: &Option<DefaultKeyedRateLimiter<u16>>| l.as_ref().map_or(0, |l| l.len());
        (len(&self.by_user), len(&self.by_address))
    }

    fn prune_now_and_then(&self) {
        let len = |l: &Option<DefaultKeyedRateLimiter<u16>>| l.as_ref().map_or(0, |l| l.len());
        if len(&self.by_user) <= PRUNE_ABOVE && len(&self.by_address) <= PRUNE_ABOVE {
            return;
        }
        let mut last = self
            .last_prune
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= PRUNE_EVERY {
            *last = std::time::Instant::now();
            drop(last);
            for l in [&self.by_user, &self.by_address].into_iter().flatten() {
                l.retain_recent();
            }
        }
    }
}

/// One IPv6 host usually holds a whole /64, so that is one client; IPv4 as it is.
fn address_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) | (1 << 127),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_per_address_limits_are_separate() {
        let t = Throttle::new(2, 3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(t.check(a, "jsmith").is_ok());
        assert!(t.check(b, "JSmith").is_ok());
        assert!(t.check(b, "jsmith").is_err(), "the user's third attempt");
        assert!(t.check(a, "other").is_ok());
        assert!(t.check(a, "third").is_ok(), "address a's third attempt");
        let wait = t.check(a, "fourth").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
    }

    #[test]
    fn zero_turns_a_limit_off_and_memory_stays_bounded() {
        let t = Throttle::new(0, 0);
        for _ in 0..100 {
            assert!(t.check(None, "x").is_ok());
        }
        let t = Throttle::new(1000, 1000);
        for i in 0..100_000u32 {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 64));
            let _ = t.check(Some(ip), &format!("user-{i}"));
        }
        let buckets = usize::from(u16::MAX) + 1;
        assert!(t.by_user.as_ref().unwrap().len() <= buckets);
        assert!(t.by_address.as_ref().unwrap().len() <= buckets);
    }
}
