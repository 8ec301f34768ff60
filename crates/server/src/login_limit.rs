//! Throttling of login attempts, per client address and per username, so passwords cannot
//! be guessed at the speed of the network, nor the node's CPU burnt on argon2 by a flood.
//!
//! Both limits count every attempt (a GCRA from `governor`), checked before the password
//! hash is computed. The per-username limit also holds against guesses spread over many
//! addresses; the price is that a flood can keep that account's owner waiting too (the
//! `ucbridge admin` CLI and API tokens are unaffected). Behind a reverse proxy every
//! client has the proxy's address, so the per-address limit is then a node-wide one.
//!
//! Memory is bounded whatever a flood sends: usernames are cut to [`MAX_USERNAME_BYTES`]
//! before anything else looks at them, and both limits are kept per *bucket* — a keyed
//! hash (random per process) of the username or address, 65,536 of them (a `u16`) — so the
//! key maps hold at most that many small entries. Two names in one bucket share a budget;
//! with 65,536 buckets that is rare, and nobody can aim for it without the process's key.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Longest username looked at (bytes). Account names are at most 64 characters; longer
/// input is cut here, before throttling, lookups and logging.
pub(crate) const MAX_USERNAME_BYTES: usize = 256;

/// Keys whose limit has fully replenished are dropped at most every `PRUNE_EVERY`, once a
/// map holds more than `PRUNE_ABOVE` of them, to give the memory of a past flood back.
const PRUNE_ABOVE: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// `text` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub struct LoginLimiter {
    by_address: DefaultKeyedRateLimiter<u16>,
    by_username: DefaultKeyedRateLimiter<u16>,
    hasher: RandomState,
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
            hasher: RandomState::new(),
            clock: DefaultClock::default(),
            last_prune: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    fn bucket<T: std::hash::Hash>(&self, key: T) -> u16 {
        // Truncation is the point: the low 16 bits of a keyed 64-bit hash.
        self.hasher.hash_one(key) as u16
    }

    /// Count one attempt; `Err(wait)` when it is over either limit.
    pub fn check(&self, address: Option<IpAddr>, username: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Some(ip) = address {
            self.by_address
                .check_key(&self.bucket(address_key(ip)))
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        // Counted case-insensitively, so "Admin", "ADMIN", ... do not each get a budget.
        let name = truncate(username, MAX_USERNAME_BYTES).to_lowercase();
        self.by_username
            .check_key(&self.bucket(name))
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.prune_now_and_then();
        Ok(())
    }

    fn prune_now_and_then(&self) {
        if self.by_address.len() <= PRUNE_ABOVE && self.by_username.len() <= PRUNE_ABOVE {
            return;
        }
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
    fn a_flood_of_distinct_names_keeps_the_key_maps_bounded() {
        let limiter = LoginLimiter::new(1000).unwrap();
        for i in 0..200_000u32 {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 64));
            let _ = limiter.check(Some(ip), &format!("user-{i}-{}", "x".repeat(300)));
        }
        let buckets = usize::from(u16::MAX) + 1;
        assert!(
            limiter.by_username.len() <= buckets,
            "{}",
            limiter.by_username.len()
        );
        assert!(
            limiter.by_address.len() <= buckets,
            "{}",
            limiter.by_address.len()
        );
    }

    #[test]
    fn usernames_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 256), "abc");
        let long = "é".repeat(200);
        let cut = truncate(&long, MAX_USERNAME_BYTES);
        assert_eq!(cut.len(), MAX_USERNAME_BYTES);
        assert_eq!(truncate("aé", 2), "a");
        // Two names equal in their first 256 bytes share a budget: the rest is not read.
        let limiter = LoginLimiter::new(1).unwrap();
        let a = format!("{}a", "x".repeat(MAX_USERNAME_BYTES));
        let b = format!("{}b", "x".repeat(MAX_USERNAME_BYTES));
        assert!(limiter.check(None, &a).is_ok());
        assert!(limiter.check(None, &b).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(LoginLimiter::new(0).is_none());
    }
}
