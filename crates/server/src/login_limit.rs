//! Throttling of login attempts, per client address and per username, so passwords cannot
//! be guessed at the speed of the network, nor the node's CPU burnt on argon2 by a flood.
//!
//! Both limits count every attempt (a GCRA from `governor`), checked before the password
//! hash is computed. The per-username limit also holds against guesses spread over many
//! addresses; the price is that a flood can keep that account's owner waiting too (the
//! `ucbridge admin` CLI and API tokens are unaffected). Behind a reverse proxy every
//! client has the proxy's address, so the per-address limit is then a node-wide one.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Above this many tracked keys, keys whose limit has fully replenished are dropped, so
/// random usernames cannot grow the maps without bound; at most every `PRUNE_EVERY`, so a
/// flood does not pay a full scan per attempt.
const PRUNE_ABOVE: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(10);

pub struct LoginLimiter {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_username: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    last_prune: std::sync::Mutex<std::time::Instant>,
}

impl LoginLimiter {
    /// `per_minute` attempts per minute per key, in a burst of as many; `0` turns
    /// throttling off.
    pub fn new(per_minute: u32) -> Option<LoginLimiter> {
        let n = NonZeroU32::new(per_minute)?;
        let quota = Quota::per_minute(n).allow_burst(n);
        Some(LoginLimiter {
            by_address: RateLimiter::keyed(quota),
            by_username: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            last_prune: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    /// Count one attempt; `Err(wait)` when it is over either limit.
    pub fn check(&self, address: Option<IpAddr>, username: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Some(ip) = address {
            self.by_address
                .check_key(&ip)
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        // Counted case-insensitively, so "Admin", "ADMIN", ... do not each get a budget.
        self.by_username
            .check_key(&username.to_lowercase())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        if self.by_address.len() > PRUNE_ABOVE || self.by_username.len() > PRUNE_ABOVE {
            // A poisoned lock only means a panic elsewhere mid-prune; pruning stays safe.
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= PRUNE_EVERY {
                *last = std::time::Instant::now();
                drop(last);
                self.by_address.retain_recent();
                self.by_username.retain_recent();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_attempts_wait() {
        let limiter = LoginLimiter::new(3).unwrap();
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            assert!(limiter.check(ip, "admin").is_ok());
        }
        let wait = limiter.check(ip, "admin").expect_err("the 4th waits");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }

    #[test]
    fn one_username_is_limited_across_addresses_and_one_address_across_usernames() {
        let limiter = LoginLimiter::new(2).unwrap();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(limiter.check(a, "Admin").is_ok());
        assert!(limiter.check(b, "admin").is_ok());
        assert!(limiter
            .check(Some(IpAddr::from([10, 0, 0, 3])), "ADMIN")
            .is_err());
        // Address a has one attempt left, for another user; then it is done too.
        assert!(limiter.check(a, "operator").is_ok());
        assert!(limiter.check(a, "someone").is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(LoginLimiter::new(0).is_none());
    }
}
